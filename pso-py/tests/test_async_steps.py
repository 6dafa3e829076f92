"""`async def` step functions (docs/API.md, Workflows, "defer the result"):
they run on an event loop without holding a PSO worker, on the caller's loop
when the run is started from a coroutine and on PSO's background loop
otherwise; their exceptions fail the step (and are retried); cancelling the
run, a step timeout and the run's deadline cancel their tasks."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import pso
import pso._aio

BOUND = 10.0


@pytest.fixture
def o() -> Iterator[pso.Orchestrator]:
    with pso.Orchestrator(workers=2) as orch:
        yield orch


def test_more_async_steps_than_workers_run_at_once(o: pso.Orchestrator) -> None:
    n, nap = 40, 0.3
    running = [0]
    peak = [0]

    async def sleepy(ctx: pso.StepContext) -> str:
        running[0] += 1  # on one loop thread: no lock needed
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(nap)
        running[0] -= 1
        return ctx.step

    wf = o.workflow("naps", [pso.Step(f"s{i}", fn=sleepy) for i in range(n)])
    start = time.monotonic()
    r = o.coordinate_systems(wf).result(timeout=BOUND)
    elapsed = time.monotonic() - start
    assert r.state == "succeeded"
    assert [r.output(f"s{i}") for i in range(n)] == [f"s{i}" for i in range(n)]
    assert peak[0] > o.workers * 5  # not one per worker
    # About one nap, not n / workers of them (6 s).
    assert nap <= elapsed < nap * 4, elapsed


def test_an_async_step_holds_no_worker(o: pso.Orchestrator) -> None:
    """Both workers' worth of async steps wait for a plain step that can only
    run if they do not hold a worker."""
    gate: dict[str, Any] = {}

    async def wait_gate(ctx: pso.StepContext) -> int:
        gate.setdefault("event", asyncio.Event())
        gate["loop"] = asyncio.get_running_loop()
        await asyncio.wait_for(gate["event"].wait(), BOUND)
        return 1

    def open_gate(ctx: pso.StepContext) -> str:
        end = time.monotonic() + BOUND
        while "loop" not in gate:  # the coroutines have started
            assert time.monotonic() < end
            time.sleep(0.001)
        gate["loop"].call_soon_threadsafe(gate["event"].set)
        return "opened"

    steps = [pso.Step(f"w{i}", fn=wait_gate) for i in range(o.workers * 2)]
    steps.append(pso.Step("open", fn=open_gate))
    r = o.coordinate_systems(o.workflow("gate", steps)).result(timeout=BOUND)
    assert r.state == "succeeded", [s.error for s in r.steps]
    assert r.output("open") == "opened"


def test_outputs_flow_from_async_steps_to_their_dependents(o: pso.Orchestrator) -> None:
    async def fetch(ctx: pso.StepContext) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"n": ctx.run_input}

    async def double(ctx: pso.StepContext) -> int:
        return int(ctx.inputs["x"]["n"]) * 2

    o.register("svc", operations={"fetch": fetch})
    o.activate_system("svc")
    wf = o.workflow(
        "flow",
        [
            pso.Step("f", "svc", "fetch"),
            pso.Step("d", fn=double, inputs={"x": "f"}),
            pso.Step("plain", fn=lambda ctx: ctx.inputs["y"] + 1, inputs={"y": "d"}),
            pso.Step("aw", fn=lambda ctx: asyncio.sleep(0, result=5)),  # returns an awaitable
        ],
    )
    r = o.coordinate_systems(wf, 21).result(timeout=BOUND)
    assert (r.output("f"), r.output("d"), r.output("plain"), r.output("aw")) == ({"n": 21}, 42, 43, 5)


def test_where_async_steps_run(o: pso.Orchestrator) -> None:
    where: list[str] = []

    async def record(ctx: pso.StepContext) -> None:
        where.append(threading.current_thread().name)

    wf = o.workflow("where", [pso.Step("r", fn=record)])
    o.coordinate_systems(wf).result(timeout=BOUND)
    assert where == ["pso-asyncio"]  # no loop running here: PSO's background loop

    async def main() -> str:
        r = await o.coordinate_systems(wf)
        assert r.state == "succeeded"
        r2 = await o.run_minimal(wf)
        assert r2.state == "succeeded"
        return threading.current_thread().name

    caller = asyncio.run(main())
    assert where[1:] == [caller, caller]  # the loop that started the runs


def test_an_exception_fails_the_step_and_is_retried(o: pso.Orchestrator) -> None:
    attempts: list[int] = []

    async def flaky(ctx: pso.StepContext) -> str:
        attempts.append(ctx.attempt)
        await asyncio.sleep(0)
        if ctx.attempt < 2:
            raise ConnectionError("try again")
        return "ok"

    async def broken(ctx: pso.StepContext) -> None:
        raise ValueError("nope")

    async def bad_output(ctx: pso.StepContext) -> object:
        return object()

    wf = o.workflow(
        "errors",
        [
            pso.Step("flaky", fn=flaky, retries=2, backoff=0.001),
            pso.Step("broken", fn=broken),
            pso.Step("after", fn=lambda ctx: None, after=["broken"]),
            pso.Step("bad", fn=bad_output),
        ],
    )
    r = o.coordinate_systems(wf).result(timeout=BOUND)
    assert r.state == "failed"
    assert (r.output("flaky"), attempts) == ("ok", [1, 2])
    assert r.step("flaky").attempts == 2
    assert r.error("broken") == "ValueError: nope"
    assert r.step("after").state == "cancelled"
    assert r.error("bad") is not None and "the output of step 'bad'" in r.error("bad")  # type: ignore[operator]


def test_cancelling_the_run_cancels_the_tasks(o: pso.Orchestrator) -> None:
    n = 5
    started: list[str] = []
    cancelled: list[str] = []
    all_started, all_cancelled = threading.Event(), threading.Event()

    async def forever(ctx: pso.StepContext) -> None:
        started.append(ctx.step)  # on one loop thread: no lock needed
        if len(started) == n:
            all_started.set()
        try:
            await asyncio.sleep(BOUND * 10)
        except asyncio.CancelledError:
            cancelled.append(ctx.step)
            if len(cancelled) == n:
                all_cancelled.set()
            raise

    wf = o.workflow("long", [pso.Step(f"f{i}", fn=forever) for i in range(n)])
    run = o.coordinate_systems(wf)
    assert all_started.wait(BOUND)
    assert run.cancel() is True
    r = run.result(timeout=BOUND)
    assert r.state == "cancelled"
    assert {s.state for s in r.steps} == {"cancelled"}
    # The run ends at once; each task is cancelled on its loop right after.
    assert all_cancelled.wait(BOUND)
    assert sorted(cancelled) == [f"f{i}" for i in range(n)]


def test_timeouts_and_deadlines_cancel_the_task(o: pso.Orchestrator) -> None:
    cancelled = threading.Event()

    async def stuck(ctx: pso.StepContext) -> None:
        try:
            await asyncio.sleep(BOUND * 10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    r = o.coordinate_systems(o.workflow("t", [pso.Step("s", fn=stuck, timeout=0.05)])).result(
        timeout=BOUND
    )
    assert r.step("s").state == "timed_out"
    assert cancelled.wait(BOUND)
    cancelled.clear()
    r = o.coordinate_systems(o.workflow("d", [pso.Step("s", fn=stuck)]), deadline=0.05).result(
        timeout=BOUND
    )
    assert r.state == "timed_out"
    assert cancelled.wait(BOUND)


def test_a_task_started_after_the_run_was_cancelled_never_runs(o: pso.Orchestrator) -> None:
    """The run is cancelled while the step function is still running (before
    its coroutine was started): the coroutine is closed, not run, and no
    "never awaited" warning is left."""
    ran: list[str] = []
    entered, cancelled = threading.Event(), threading.Event()

    async def body() -> None:
        ran.append("body")

    def step(ctx: pso.StepContext) -> Any:
        entered.set()
        end = time.monotonic() + BOUND
        while not ctx.cancelled:
            assert time.monotonic() < end
            time.sleep(0.001)
        cancelled.set()
        return body()

    run = o.coordinate_systems(o.workflow("late", [pso.Step("s", fn=step)]))
    assert entered.wait(BOUND)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        run.cancel()
        assert cancelled.wait(BOUND)
        r = run.result(timeout=BOUND)
        # Whatever the step scheduled on the background loop has run once a
        # later callback has (call_soon_threadsafe keeps the order).
        loop = pso._aio.background_loop()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(BOUND)
        gc.collect()
    assert r.step("s").state == "cancelled"
    assert ran == []
    assert not [x for x in w if "never awaited" in str(x.message)]


def test_an_async_step_cannot_also_fan_out(o: pso.Orchestrator) -> None:
    def both(ctx: pso.StepContext) -> Any:
        ctx.fan_out([pso.Child(lambda c: 1)])
        return asyncio.sleep(0)

    r = o.coordinate_systems(o.workflow("both", [pso.Step("b", fn=both)])).result(timeout=BOUND)
    assert r.error("b") == (
        "TypeError: step 'b' returned an awaitable: a step that fans out cannot also be async"
    )

    async def late(ctx: pso.StepContext) -> None:
        ctx.fan_out([pso.Child(lambda c: 1)])

    r = o.coordinate_systems(o.workflow("late", [pso.Step("l", fn=late)])).result(timeout=BOUND)
    assert "fan_out only works while its function runs" in (r.error("l") or "")
