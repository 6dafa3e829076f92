"""The host runtime: the GIL, threads, fork, close and garbage collection.
Anything that could hang runs in a subprocess with a timeout."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable

import pytest

import pso

CHILD_TIMEOUT = 30


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter; a hang fails the test, not the run."""
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child process hung (deadlock?) for {CHILD_TIMEOUT}s; output: {e.stdout!r} {e.stderr!r}")


def test_gil_released_while_handlers_run_and_threads_read_status() -> None:
    # Many Python threads read status while handlers (which need the GIL) run
    # on PSO's workers and the main thread waits in activate/deactivate. If any
    # call into core kept the GIL, this would hang.
    result = run_python(
        """
        import threading, time, pso

        o = pso.Orchestrator(workers=4)
        calls = []
        def handler(name):
            calls.append(name)
            time.sleep(0.002)
            o.status(name)               # handlers may read status
            sum(range(2000))             # and do Python work
        names = [f"s{i}" for i in range(24)]
        for i, n in enumerate(names):
            o.register(n, requires=names[max(0, i - 3):i][:2], on_activate=handler, on_deactivate=handler)

        stop = threading.Event()
        reads = [0] * 8
        def reader(k):
            while not stop.is_set():
                o.system_status(); o.status("s5"); o.why_inactive("s23"); len(o)
                reads[k] += 1
        threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
        for t in threads: t.start()
        for _ in range(5):
            assert len(o.activate_all().activated) == 24
            assert len(o.deactivate_all().deactivated) == 24
        stop.set()
        for t in threads: t.join()
        o.close()
        assert len(calls) == 240, len(calls)
        assert all(r > 0 for r in reads), reads
        print("ok", sum(reads))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_handler_runs_on_a_worker_thread_while_caller_waits(orch: pso.Orchestrator) -> None:
    threads: list[str] = []
    orch.register("a", on_activate=lambda _: threads.append(threading.current_thread().name))
    orch.activate_system("a")
    assert threads and threads[0] != threading.current_thread().name


def test_concurrent_lifecycle_calls_from_threads(orch: pso.Orchestrator) -> None:
    for i in range(6):
        orch.register(f"s{i}", on_activate=lambda _: time.sleep(0.01))
    errors: list[BaseException] = []

    def activate(name: str) -> None:
        try:
            orch.activate_system(name)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=activate, args=(f"s{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {s.state for s in orch.system_status()} == {"Active"}


def test_close_then_every_call_is_closed_error() -> None:
    o = pso.Orchestrator(workers=1)
    o.register("a")
    o.close()
    o.close()  # idempotent
    calls: list[Callable[[], object]] = [
        lambda: o.register("b"),
        lambda: o.register_many([{"name": "b"}]),
        lambda: o.connect("a", "requires", "a"),
        lambda: o.set_handlers("a"),
        lambda: o.load_topology("x.toml"),
        lambda: o.load_topology_str(""),
        lambda: o.activate_system("a"),
        o.activate_all,
        lambda: o.deactivate_system("a"),
        o.deactivate_all,
        o.system_status,
        lambda: o.status("a"),
        lambda: o.why_inactive("a"),
        lambda: o.plan("a"),
        o.export,
        lambda: o.workers,
        lambda: len(o),
    ]
    for call in calls:
        with pytest.raises(pso.ClosedError, match="closed") as info:
            call()
        assert info.value.code == 19
    assert repr(o) == "<pso.Orchestrator closed>"


def test_context_manager_closes_even_on_error() -> None:
    with pytest.raises(KeyError):
        with pso.Orchestrator(workers=1) as o:
            o.register("a")
            raise KeyError("boom")
    with pytest.raises(pso.ClosedError):
        o.status("a")


def test_close_waits_for_a_running_activation() -> None:
    o = pso.Orchestrator(workers=2)
    started = threading.Event()

    def slow(system: str) -> None:
        started.set()
        time.sleep(0.2)

    o.register("slow", on_activate=slow)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(o.activate_system("slow").activated))
    t.start()
    assert started.wait(5)
    o.close()  # waits for the transaction (the GIL is released meanwhile)
    t.join(5)
    assert result == [["slow"]]
    with pytest.raises(pso.ClosedError):
        o.activate_system("slow")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_closed_error() -> None:
    result = run_python(
        """
        import os, sys, pso

        o = pso.Orchestrator(workers=2)
        o.register("a", on_activate=lambda n: None)
        o.activate_system("a")
        pid = os.fork()
        if pid == 0:
            failures = []
            for call in (lambda: o.status("a"), lambda: o.activate_system("a"),
                         lambda: o.register("b"), lambda: len(o), o.system_status):
                try:
                    call()
                    failures.append("no error")
                except pso.ClosedError as e:
                    if "belongs to process" not in str(e) or str(os.getppid()) not in str(e):
                        failures.append(str(e))
            o.close()        # a no-op in the child: the workers are the parent's
            print("child", "ok" if not failures else failures, flush=True)
            # A normal exit: dropping the parent's orchestrator must not hang.
            sys.exit(0 if not failures else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        # The parent's orchestrator is untouched.
        assert o.status("a").state == "Active"
        assert o.deactivate_system("a").deactivated == ["a"]
        o.close()
        print("parent ok")
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "child ok" in result.stdout and "parent ok" in result.stdout


def test_cycle_through_handler_is_collected() -> None:
    # A handler that refers to its orchestrator makes a reference cycle that
    # only the garbage collector can free; PSO reports its handler references
    # so the cycle (and its worker threads) do not leak.
    def make() -> weakref.ref[object]:
        o = pso.Orchestrator(workers=1)

        class Service:
            def start(self, name: str) -> None:
                o.status(name)

        svc = Service()
        o.register("a", on_activate=svc.start)
        o.activate_system("a")
        return weakref.ref(svc)

    gc.collect()
    threads_before = threading.active_count()
    ref = make()
    assert ref() is not None  # kept alive by the orchestrator's handler...
    gc.collect()
    assert ref() is None  # ...until the collector freed the whole cycle
    assert threading.active_count() == threads_before


def test_interpreter_exit_with_open_orchestrator_does_not_hang() -> None:
    result = run_python(
        """
        import time, pso
        o = pso.Orchestrator(workers=2)
        o.register("slow", timeout=0.05, on_activate=lambda n: time.sleep(0.3))
        try:
            o.activate_system("slow")
        except pso.HandlerError:
            pass
        # exit while the abandoned handler still sleeps on a worker, without close()
        print("bye")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bye"


def test_each_worker_keeps_one_python_thread_state() -> None:
    # A `threading.local` lives in the thread state: a worker that kept its
    # state across steps sees what it stored in an earlier step. (Without
    # one pinned state per worker, every step would start with a new one.)
    with pso.Orchestrator(workers=2) as o:
        local = threading.local()
        fresh: list[int] = []
        idents: set[int] = set()

        def step(ctx: pso.StepContext) -> None:
            if not hasattr(local, "seen"):
                local.seen = True
                fresh.append(threading.get_ident())
            idents.add(threading.get_ident())

        wf = o.workflow("w", [pso.Step(f"s{i}", fn=step) for i in range(300)])
        for _ in range(3):
            assert o.coordinate_systems(wf).result(timeout=30).ok
        assert 1 <= len(idents) <= 2
        assert len(fresh) == len(idents), "one new thread state per worker, not per step"


def test_interpreter_exit_closes_open_orchestrators_first() -> None:
    # Exit without close(), with pinned workers, a lease held, a thread
    # waiting for resources and a step still running: the exit hook closes
    # the orchestrator before finalization (the waiter gets ClosedError, the
    # running step finishes) and the process exits cleanly.
    result = run_python(
        """
        import atexit, threading, time
        # Registered before pso's own hook, so it runs after it.
        atexit.register(lambda: print("after pso's hook:", repr(o), flush=True))
        import pso

        o = pso.Orchestrator(workers=2)
        o.register("a", operations={"work": lambda ctx: ctx.input * 2})
        o.register("b")
        o.activate_system("a")
        wf = o.workflow("w", [pso.Step(f"s{i}", "a", "work") for i in range(100)])
        assert o.coordinate_systems(wf, 1).result(timeout=30).ok
        o.set_capacity("cpu", 1)
        lease = o.allocate_resources("b", {"cpu": 1})

        def waiter():
            try:
                o.allocate_resources("a", {"cpu": 1})
            except pso.ClosedError as e:
                print("waiter:", type(e).__name__, flush=True)
        threading.Thread(target=waiter, daemon=True).start()
        while not o.resource_status().waiters:
            time.sleep(0.001)

        started = threading.Event()
        def slow(ctx):
            started.set()
            time.sleep(0.2)
            return "done"
        run = o.coordinate_systems(o.workflow("slow", [pso.Step("slow", fn=slow)]))
        started.wait(10)
        print("bye", flush=True)
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "bye"
    assert "waiter: ClosedError" in lines
    assert lines[-1] == "after pso's hook: <pso.Orchestrator closed>"
    assert "Fatal" not in result.stderr and "panicked" not in result.stderr, result.stderr


def test_close_from_a_step_and_exit() -> None:
    # A step may close its own orchestrator (its worker is not joined by
    # itself); closing cancels the run, and the process exits cleanly.
    result = run_python(
        """
        import pso
        o = pso.Orchestrator(workers=2)
        def closer(ctx):
            o.close()
            return 1
        run = o.coordinate_systems(o.workflow("w", [pso.Step("c", fn=closer)]))
        print(run.result(timeout=10).state, repr(o), flush=True)
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "cancelled <pso.Orchestrator closed>"


def test_orchestrators_created_and_dropped_in_a_loop_do_not_leak_threads() -> None:
    gc.collect()
    before = threading.active_count()
    for _ in range(20):
        o = pso.Orchestrator(workers=2)
        wf = o.workflow("w", [pso.Step("s", fn=lambda ctx: 1)])
        assert o.coordinate_systems(wf).result(timeout=10).ok
        del o, wf
    gc.collect()
    # Pinned workers register as dummy threads while they live; they are gone.
    assert threading.active_count() <= before + 2
