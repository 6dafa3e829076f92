"""Workflows from Python: data flow, parallelism, failures, retries, timeouts,
deadlines, cancellation, conditions, fan-out, concurrency limits, definitions
from files, asyncio, and the GIL.

Nothing here sleeps to wait for another thread: waits are on events and
barriers with a bound, and a bound that passes fails the test. Every result is
checked for the accounting invariant (`check`)."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pso

BOUND = 10.0  # seconds: only a bug gets near this


def check(r: pso.RunResult) -> pso.RunResult:
    """Every accepted step (workflow steps plus fan-out children) ended in
    exactly one terminal state."""
    c = r.counts
    assert c.unfinished == 0, c
    assert c.accepted == c.succeeded + c.failed + c.cancelled + c.timed_out + c.skipped, c
    assert c.accepted == c.terminal
    assert len(r.steps) == c.accepted
    return r


def wait_for(event: threading.Event, what: str) -> None:
    assert event.wait(BOUND), f"timed out waiting for {what}"


def until_cancelled(ctx: pso.StepContext) -> bool:
    """Polls the live `cancelled` flag (bounded); True if it was seen."""
    end = time.monotonic() + BOUND
    while not ctx.cancelled:
        if time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


@pytest.fixture
def o() -> Iterator[pso.Orchestrator]:
    with pso.Orchestrator(workers=2) as orch:
        yield orch


@pytest.fixture
def pdt(o: pso.Orchestrator) -> pso.Orchestrator:
    """An orchestrator with an Active system PDT offering two operations."""
    o.register(
        "PDT",
        operations={
            "collect": lambda ctx: ctx.run_input + 1,
            "sum": lambda ctx: ctx.inputs["a"] + ctx.inputs["b"],
        },
    )
    o.activate_system("PDT")
    return o


# --- data flow and values ---------------------------------------------------


def test_data_flows_along_named_edges(pdt: pso.Orchestrator) -> None:
    seen: dict[str, Any] = {}

    def double(ctx: pso.StepContext) -> Any:
        seen["double"] = (ctx.step, ctx.system, ctx.op, ctx.attempt, ctx.input, ctx.run_input)
        return ctx.inputs["n"] * 2

    wf = pdt.workflow(
        "flow",
        [
            pso.Step("x", "PDT", "collect"),
            pso.Step("double", fn=double, inputs={"n": "x"}),
            pso.Step("square", fn=lambda ctx: ctx.input["n"] ** 2, inputs={"n": "x"}),
            pso.Step("total", system="PDT", op="sum", inputs={"a": "double", "b": "square"}),
        ],
    )
    assert (wf.name, len(wf), wf.systems) == ("flow", 4, ["PDT"])
    assert wf.step_names == ["x", "double", "square", "total"]
    for value in (1, 5, 10):
        r = check(pdt.coordinate_systems(wf, value).result())
        x = value + 1
        assert r.ok and r.state == "succeeded"
        assert r.output("total") == 2 * x + x * x
        assert r.outputs == {"x": x, "double": 2 * x, "square": x * x, "total": 2 * x + x * x}
    assert seen["double"] == ("double", None, None, 1, {"n": 11}, 10)
    rec = r.step("total")
    assert (rec.name, rec.system, rec.operation, rec.state, rec.attempts) == (
        "total", "PDT", "sum", "succeeded", 1
    )
    assert rec.error is None and rec.parent is None and rec.worker in (0, 1)
    assert rec.ran >= 0 and rec.queued >= 0 and r.elapsed > 0
    data = json.loads(r.to_json())
    assert data["state"] == "succeeded" and data["outputs"]["total"] == 143
    assert data["counts"]["accepted"] == 4
    est = {e.key: e for e in pdt.estimates()}
    assert est["PDT.collect"].samples >= 3 and est["PDT.collect"].mean > 0
    assert est["PDT.sum"].stddev >= 0
    # timing=False: no durations recorded.
    r = check(pdt.coordinate_systems(wf, 1, timing=False).result())
    assert r.ok and all(s.ran == 0 and s.worker is None for s in r.steps)


def test_values_cross_as_native_objects(o: pso.Orchestrator) -> None:
    value: dict[str, Any] = {
        "b": [1, 2.5, "three", None, True, b"\x00\xff", (4, 5)],
        "a": {"nested": {"deep": [[]]}},
        "big": 2**63 - 1,
        "neg": -(2**63),
    }
    wf = o.workflow(
        "values",
        [
            pso.Step("echo", fn=lambda ctx: ctx.run_input),
            pso.Step("seen", fn=lambda ctx: ctx.inputs["v"], inputs={"v": "echo"}),
            pso.Step("ba", fn=lambda ctx: bytearray(b"xy")),
        ],
    )
    r = check(o.coordinate_systems(wf, value).result())
    expected = dict(value)
    expected["b"] = [1, 2.5, "three", None, True, b"\x00\xff", [4, 5]]
    assert r.output("echo") == expected == r.output("seen")
    assert list(r.output("echo")) == ["a", "b", "big", "neg"]  # maps come back sorted
    assert r.output("ba") == b"xy" and type(r.output("ba")) is bytes
    assert type(r.output("echo")["b"][4]) is bool


def test_values_pso_cannot_carry_fail_the_step_or_the_call(o: pso.Orchestrator) -> None:
    loop: list[object] = []
    loop.append(loop)
    wf = o.workflow(
        "bad values",
        [
            pso.Step("set", fn=lambda ctx: {1, 2}),
            pso.Step("huge", fn=lambda ctx: {"n": [2**64]}),
            pso.Step("keys", fn=lambda ctx: {1: "x"}),
            pso.Step("loop", fn=lambda ctx: loop),
            pso.Step("obj", fn=lambda ctx: [object()]),
            pso.Step("fine", fn=lambda ctx: "ok"),
        ],
    )
    r = check(o.coordinate_systems(wf).result())
    assert r.state == "failed" and r.output("fine") == "ok"
    assert r.error("set") == (
        "TypeError: the output of step 'set': cannot convert an object of type 'set' "
        "(PSO values are None, bool, int, float, str, bytes, list, tuple and dict with str keys)"
    )
    assert r.error("huge") == (
        "OverflowError: the output of step 'huge' at [\"n\"][0]: "
        "int 18446744073709551616 does not fit in a 64-bit signed integer"
    )
    assert "TypeError: " in (r.error("keys") or "") and "dict keys must be str" in (r.error("keys") or "")
    assert "ValueError: " in (r.error("loop") or "") and "contains itself" in (r.error("loop") or "")
    assert "type 'object'" in (r.error("obj") or "")
    # A run input PSO cannot carry is refused at once, in the caller.
    ok = o.workflow("ok", [pso.Step("s", fn=lambda ctx: None)])
    with pytest.raises(TypeError, match="input: cannot convert an object of type 'frozenset'"):
        o.coordinate_systems(ok, frozenset())  # type: ignore[arg-type]
    with pytest.raises(OverflowError, match=r"input at \[1\]: int -9223372036854775809"):
        o.coordinate_systems(ok, [0, -(2**63) - 1])


# --- parallelism, failures, retries, timeouts, deadlines, cancel -------------


def test_independent_steps_run_in_parallel(o: pso.Orchestrator) -> None:
    # Each step waits until both are running: only possible in parallel.
    barrier = threading.Barrier(2, timeout=BOUND)

    def meet(ctx: pso.StepContext) -> str:
        barrier.wait()
        return ctx.step

    wf = o.workflow("pair", [pso.Step("left", fn=meet), pso.Step("right", fn=meet)])
    r = check(o.coordinate_systems(wf).result())
    assert r.ok, [s.error for s in r.steps]
    assert {s.worker for s in r.steps} == {0, 1}


def test_a_failure_cancels_dependents_but_not_independent_branches(o: pso.Orchestrator) -> None:
    ran = threading.Event()

    def bad(ctx: pso.StepContext) -> None:
        raise ValueError("disk full")

    def fine(ctx: pso.StepContext) -> str:
        ran.set()
        return "ok"

    wf = o.workflow(
        "partial",
        [
            pso.Step("bad", fn=bad),
            pso.Step("after_bad", fn=lambda ctx: None, after=["bad"]),
            pso.Step("after_after", fn=lambda ctx: None, after=["after_bad"]),
            pso.Step("fine", fn=fine),
        ],
    )
    r = check(o.coordinate_systems(wf).result())
    assert r.state == "failed" and not r.ok
    assert r.error("bad") == "ValueError: disk full"
    assert r.step("bad").state == "failed"
    assert r.error("after_bad") == "upstream step 'bad' did not succeed"
    assert r.step("after_bad").attempts == 0
    assert r.step("after_after").state == "cancelled"
    assert r.output("fine") == "ok" and ran.is_set()
    assert r.output("bad") is None
    c = r.counts
    assert (c.succeeded, c.failed, c.cancelled) == (1, 1, 2)


class DiskFull(Exception):
    pass


def test_a_raised_exception_keeps_its_type_and_message(o: pso.Orchestrator) -> None:
    def raises(ctx: pso.StepContext) -> None:
        raise DiskFull("no space left on /var")

    def key_error(ctx: pso.StepContext) -> None:
        raise KeyError("missing")

    wf = o.workflow("raise", [pso.Step("custom", fn=raises), pso.Step("key", fn=key_error)])
    r = check(o.coordinate_systems(wf).result())
    custom = r.error("custom") or ""
    assert custom.endswith("DiskFull: no space left on /var"), custom
    assert r.error("key") == "KeyError: 'missing'"


def test_retries_count_attempts(o: pso.Orchestrator) -> None:
    attempts: list[int] = []

    def flaky(ctx: pso.StepContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} failed")
        return ctx.attempt

    def always(ctx: pso.StepContext) -> None:
        raise RuntimeError(f"attempt {ctx.attempt}")

    wf = o.workflow(
        "flaky",
        [
            pso.Step("flaky", fn=flaky, retries=3, backoff=0.001, max_backoff=0.002),
            pso.Step("always", fn=always, retries=2, backoff=0.0),
        ],
    )
    r = check(o.coordinate_systems(wf).result())
    assert attempts == [1, 2, 3]
    assert r.output("flaky") == 3 and r.step("flaky").attempts == 3
    assert r.step("always").attempts == 3
    assert r.error("always") == "RuntimeError: attempt 3"


def test_a_step_timeout_abandons_the_attempt_and_tells_the_handler(o: pso.Orchestrator) -> None:
    saw: list[bool] = []
    returned = threading.Event()

    def slow(ctx: pso.StepContext) -> str:
        saw.append(until_cancelled(ctx))
        returned.set()
        return "too late"

    wf = o.workflow(
        "slow",
        [
            pso.Step("slow", fn=slow, timeout=0.05, retries=2),
            pso.Step("next", fn=lambda ctx: None, inputs={"x": "slow"}),
        ],
    )
    t = time.monotonic()
    r = check(o.coordinate_systems(wf).result(timeout=BOUND))
    assert time.monotonic() - t < 5
    rec = r.step("slow")
    assert (rec.state, rec.error, rec.attempts) == ("timed_out", "handler timed out after 50ms", 1)
    assert r.output("slow") is None  # the late result is ignored
    assert r.step("next").state == "cancelled" and r.state == "failed"
    wait_for(returned, "the timed-out handler to return")
    assert saw == [True], "the handler never saw ctx.cancelled"


def test_the_run_deadline_stops_everything(o: pso.Orchestrator) -> None:
    def stuck(ctx: pso.StepContext) -> None:
        until_cancelled(ctx)

    wf = o.workflow(
        "deadline",
        [
            pso.Step("stuck", fn=stuck),
            pso.Step("later", fn=lambda ctx: None, after=["stuck"]),
            pso.Step("quick", fn=lambda ctx: 1),
        ],
    )
    t = time.monotonic()
    r = check(o.coordinate_systems(wf, deadline=0.05).result(timeout=BOUND))
    assert time.monotonic() - t < 5
    assert r.state == "timed_out"
    assert r.step("stuck").state == "timed_out" and r.step("later").state == "timed_out"
    assert r.error("later") == "run deadline passed"
    assert r.output("quick") == 1


def test_cancel_stops_unstarted_steps_and_signals_running_ones(o: pso.Orchestrator) -> None:
    started = threading.Event()

    def running(ctx: pso.StepContext) -> None:
        started.set()
        if not until_cancelled(ctx):
            raise RuntimeError("never cancelled")
        raise RuntimeError("stopped on request")

    wf = o.workflow(
        "cancel",
        [
            pso.Step("running", fn=running),
            pso.Step("child", fn=lambda ctx: None, after=["running"]),
            pso.Step("grandchild", fn=lambda ctx: None, after=["child"]),
        ],
    )
    run = o.coordinate_systems(wf)
    wait_for(started, "the step to start")
    p = run.progress()
    assert p.state == "running" and not run.done and p.counts.unfinished == 3
    assert run.cancel() is True
    assert run.cancel() is False, "a second cancel does nothing"
    assert run.progress().counts.cancelled >= 2  # at once, before `running` returns
    r = check(run.result(timeout=BOUND))
    assert run.done and run.progress().state == "cancelled"
    assert r.state == "cancelled"
    assert r.error("running") == "RuntimeError: stopped on request"
    assert r.error("child") == "upstream step 'running' did not succeed"
    assert r.step("grandchild").state == "cancelled"
    assert run.cancel() is False


# --- conditions, fan-out, limits ----------------------------------------------


def test_conditions_skip_steps_and_what_depends_only_on_them(o: pso.Orchestrator) -> None:
    wf = o.workflow(
        "cond",
        [
            pso.Step("flag", fn=lambda ctx: ctx.run_input),
            pso.Step("gated", fn=lambda ctx: "ran", when="flag"),
            pso.Step("only_gated", fn=lambda ctx: None, after=["gated"]),
            pso.Step("both", fn=lambda ctx: "g" in ctx.inputs, inputs={"g": "gated"}, after=["flag"]),
            pso.Step(
                "pred",
                fn=lambda ctx: ctx.input,
                inputs={"v": "flag"},
                when=lambda ctx: ctx.inputs["v"] == 7,
            ),
        ],
    )
    r = check(o.coordinate_systems(wf, False).result())
    assert r.ok, "skipped steps do not fail a run"
    assert [r.step(s).state for s in ("gated", "only_gated", "pred")] == ["skipped"] * 3
    assert r.output("both") is False and r.counts.skipped == 3
    assert r.error("gated") is None
    r = check(o.coordinate_systems(wf, 7).result())
    assert (r.output("gated"), r.output("both"), r.output("pred")) == ("ran", True, {"v": 7})


def test_a_raising_condition_fails_its_step(o: pso.Orchestrator) -> None:
    calls: list[int] = []

    def broken(ctx: pso.StepContext) -> bool:
        raise LookupError(f"no flag (attempt {ctx.attempt})")

    def body(ctx: pso.StepContext) -> None:
        calls.append(1)

    wf = o.workflow(
        "badcond",
        [
            pso.Step("s", fn=body, when=broken, retries=1, backoff=0.0),
            pso.Step("t", fn=body, after=["s"]),
            pso.Step("u", fn=lambda ctx: "fine", when=lambda ctx: True),
        ],
    )
    for _ in range(2):
        r = check(o.coordinate_systems(wf).result())
        assert r.error("s") == "LookupError: no flag (attempt 2)"
        assert r.step("s").attempts == 2 and r.step("t").state == "cancelled"
        assert r.output("u") == "fine"
    assert calls == [], "the step function ran although its condition raised"


def test_fan_out_children_run_and_join(o: pso.Orchestrator) -> None:
    o.register("PKM", operations={"index": lambda ctx: ctx.input * 10})
    o.activate_system("PKM")
    child_ctx: list[tuple[str, str | None, Any]] = []

    def child(ctx: pso.StepContext) -> Any:
        child_ctx.append((ctx.step, ctx.system, ctx.input))
        return ctx.input + 1

    def fan(ctx: pso.StepContext) -> str:
        ctx.fan_out([pso.Child(child, i) for i in range(3)])
        ctx.fan_out([ctx.child_op("PKM", "index", 4)])  # calling again adds more
        return "ignored"

    wf = o.workflow(
        "fan",
        [
            pso.Step("fan", fn=fan),
            pso.Step("sum", fn=lambda ctx: sum(ctx.inputs["parts"]), inputs={"parts": "fan"}),
        ],
    )
    r = check(o.coordinate_systems(wf).result())
    assert r.output("fan") == [1, 2, 3, 40] and r.output("sum") == 46
    assert r.counts.accepted == 6
    assert sorted(child_ctx) == [("fan[0]", None, 0), ("fan[1]", None, 1), ("fan[2]", None, 2)]
    kids = [s for s in r.steps if s.parent == "fan"]
    assert [k.name for k in kids] == ["fan[0]", "fan[1]", "fan[2]", "fan[3]"]
    assert (kids[3].system, kids[3].operation) == ("PKM", "index")
    assert r.step("fan[1]").state == "succeeded"
    c = pso.Child(child, {"k": [1]})
    assert (c.input, c.fn is child, c.system, c.op) == ({"k": [1]}, True, None, None)


def test_fan_out_failures(o: pso.Orchestrator) -> None:
    o.register("PKM", operations={"index": lambda ctx: 1})
    o.activate_system("PKM")
    kept: list[pso.StepContext] = []

    def grandchild(ctx: pso.StepContext) -> None:
        ctx.fan_out([pso.Child(lambda c: None)])

    def bad_child(ctx: pso.StepContext) -> None:
        ctx.fan_out([pso.Child(lambda c: 1), pso.Child(grandchild), pso.Child(lambda c: 1 / 0)])

    def bad_op(ctx: pso.StepContext) -> None:
        ctx.fan_out([ctx.child_op("PKM", "nope")])

    def keep(ctx: pso.StepContext) -> None:
        kept.append(ctx)
        with pytest.raises(TypeError, match="must be a pso.Child"):
            ctx.fan_out(["not a child"])  # type: ignore[list-item]

    def when_fans(ctx: pso.StepContext) -> bool:
        ctx.fan_out([])
        return True

    wf = o.workflow(
        "fan failures",
        [
            pso.Step("kids", fn=bad_child),
            pso.Step("op", fn=bad_op),
            pso.Step("keep", fn=keep),
            pso.Step("cond", fn=lambda ctx: None, when=when_fans),
        ],
    )
    r = check(o.coordinate_systems(wf).result())
    assert r.error("kids") == (
        "2 of 3 children failed; first: kids[1]: pso.InvalidArgumentError: "
        "a fan-out child cannot fan out"
    )
    with pytest.raises(pso.NotFoundError):
        r.error("kids[2]")  # children have records (step()), not outputs or errors
    assert r.step("kids[2]").error == "ZeroDivisionError: division by zero"
    assert r.error("op") == "system 'PKM' has no operation 'nope'"
    assert r.step("keep").state == "succeeded"
    assert r.error("cond") == "pso.InvalidArgumentError: a `when` condition cannot fan out"
    # A context kept after its function returned can no longer fan out.
    with pytest.raises(pso.InvalidArgumentError, match="has returned"):
        kept[0].fan_out([pso.Child(lambda c: None)])
    # Its step is over, so it should stop: `cancelled` is live and says so.
    assert kept[0].step == "keep" and kept[0].cancelled is True


def test_a_concurrency_limit_is_never_exceeded(o: pso.Orchestrator) -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def query(ctx: pso.StepContext) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.02)  # work that releases the GIL, so steps could overlap
        with lock:
            running[0] -= 1
        return f"{ctx.system}.{ctx.op}"

    o.register_many([{"name": "db", "operations": {"query": query}, "concurrency": 1}])
    o.activate_all()
    wf = o.workflow("limited", [pso.Step(f"q{i}", "db", "query") for i in range(6)])
    r = check(o.coordinate_systems(wf).result(timeout=BOUND))
    assert r.ok and r.output("q0") == "db.query"
    assert peak[0] == 1, "the limit of 1 was exceeded"
    o.set_concurrency_limit("db", 2)
    peak[0] = 0
    assert check(o.coordinate_systems(wf).result(timeout=BOUND)).ok
    assert peak[0] <= 2
    with pytest.raises(pso.InvalidArgumentError, match="at least 1|between 1"):
        o.set_concurrency_limit("db", 0)
    with pytest.raises(pso.NotFoundError):
        o.set_concurrency_limit("nope", 1)
    o.set_concurrency_limit("db", None)
    with pytest.raises(pso.InvalidArgumentError):
        o.register("db2", concurrency=0)


# --- building, errors, definitions ------------------------------------------------


def test_operations_can_be_added_and_replaced(o: pso.Orchestrator) -> None:
    o.register("PAT")
    o.activate_system("PAT")
    o.set_operation("PAT", "parse", lambda ctx: "v1")
    old = o.workflow("parse", [pso.Step("p", "PAT", "parse")])
    o.set_operation("PAT", "parse", lambda ctx: "v2")
    new = o.workflow("parse", [pso.Step("p", "PAT", "parse")])
    assert check(o.coordinate_systems(old).result()).output("p") == "v1"  # resolved when built
    assert check(o.coordinate_systems(new).result()).output("p") == "v2"
    with pytest.raises(pso.NotFoundError):
        o.set_operation("nope", "parse", lambda ctx: None)
    with pytest.raises(TypeError, match="must be callable"):
        o.set_operation("PAT", "x", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="operations must be a dict"):
        o.register("Q", operations=[("a", lambda ctx: 1)])  # type: ignore[arg-type]


def test_invalid_workflows_are_rejected_naming_the_step(o: pso.Orchestrator) -> None:
    o.register("PSec", operations={"scan": lambda ctx: None})
    with pytest.raises(pso.NotFoundError, match="^workflow 'w': step 's' uses unknown system 'Nope'$"):
        o.workflow("w", [pso.Step("s", "Nope", "scan")])
    with pytest.raises(
        pso.NotFoundError,
        match=r"^workflow 'w': step 's' uses unknown operation 'sacn' of system 'PSec' \(it has: scan\)$",
    ):
        o.workflow("w", [pso.Step("s", "PSec", "sacn")])
    with pytest.raises(pso.NotFoundError, match="step 'a' refers to unknown step 'ghost'"):
        o.workflow("w", [pso.Step("a", fn=lambda ctx: None, inputs={"x": "ghost"})])
    with pytest.raises(pso.AlreadyExistsError, match="step 'a' is defined twice"):
        o.workflow("w", [pso.Step("a", fn=lambda ctx: None), pso.Step("a", fn=lambda ctx: None)])
    with pytest.raises(pso.CycleError) as cycle:
        o.workflow(
            "w",
            [
                pso.Step("a", fn=lambda ctx: None, after=["c"]),
                pso.Step("b", fn=lambda ctx: None, after=["a"]),
                pso.Step("c", fn=lambda ctx: None, inputs={"x": "b"}),
            ],
        )
    assert cycle.value.path == ["a", "b", "c", "a"]
    # Systems must be Active to run; nothing runs otherwise.
    wf = o.workflow("w", [pso.Step("s", "PSec", "scan")])
    with pytest.raises(pso.NotActiveError) as e:
        o.coordinate_systems(wf)
    assert str(e.value) == (
        "cannot run workflow 'w': step 's' uses system 'PSec', which is Registered (activate it first)"
    )
    assert e.value.kind == "NOT_ACTIVE" and e.value.code == 21
    # A workflow of another orchestrator.
    with pso.Orchestrator(workers=1) as other:
        with pytest.raises(pso.InvalidArgumentError, match="built for another orchestrator"):
            other.coordinate_systems(wf)
    with pytest.raises(TypeError, match="must be a pso.Workflow"):
        o.coordinate_systems("w")  # type: ignore[arg-type]
    # An empty workflow succeeds at once.
    r = check(o.coordinate_systems(o.workflow("empty", [])).result())
    assert r.ok and r.counts.accepted == 0


def test_steps_are_checked_when_made() -> None:
    def f(ctx: pso.StepContext) -> None:
        return None

    with pytest.raises(pso.InvalidArgumentError, match="either fn or system and op"):
        pso.Step("s", "PDT", "op", fn=f)
    with pytest.raises(pso.InvalidArgumentError, match="give fn, or system and op"):
        pso.Step("s")
    with pytest.raises(pso.InvalidArgumentError, match="go together"):
        pso.Step("s", "PDT")
    with pytest.raises(TypeError, match="fn must be callable"):
        pso.Step("s", fn=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a str"):
        pso.Step("s", fn=f, after="a")
    with pytest.raises(TypeError, match="inputs must be a dict"):
        pso.Step("s", fn=f, inputs=["a"])  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="retries must be between 0"):
        pso.Step("s", fn=f, retries=-1)
    with pytest.raises(pso.InvalidArgumentError, match="timeout must be"):
        pso.Step("s", fn=f, timeout=0)
    with pytest.raises(pso.InvalidArgumentError, match="unknown priority 'urgent'"):
        pso.Step("s", fn=f, priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="when must be a step name or a callable"):
        pso.Step("s", fn=f, when=3)  # type: ignore[arg-type]
    s = pso.Step(
        "s", fn=f, inputs={"a": "x"}, after=("y",), retries=2, backoff=0.5, timeout=1.5,
        priority="high", when="x",
    )
    assert (s.name, s.system, s.op, s.fn is f, s.inputs, s.after) == ("s", None, None, True, {"a": "x"}, ["y"])
    assert (s.retries, s.backoff, s.max_backoff, s.timeout, s.priority, s.when) == (
        2, 0.5, 10.0, 1.5, "high", "x"
    )
    assert pso.Step("t", "PDT", "collect").backoff == 0.01


TOML = """
name = "release"

[[steps]]
name = "build"
system = "PBOS"
op = "build"
retries = 2

[[steps]]
name = "publish"
system = "PBOS"
op = "publish"
inputs = { artifact = "build" }
when = "build"
timeout_ms = 5000
"""


def test_definitions_load_from_toml_and_json(o: pso.Orchestrator, tmp_path: pathlib.Path) -> None:
    o.register(
        "PBOS",
        operations={
            "build": lambda ctx: "artifact.tar",
            "publish": lambda ctx: f"published {ctx.inputs['artifact']}",
        },
    )
    o.activate_system("PBOS")
    wf = o.load_workflow_str(TOML)
    assert (wf.name, wf.step_names) == ("release", ["build", "publish"])
    r = check(o.coordinate_systems(wf).result())
    assert r.output("publish") == "published artifact.tar"
    doc = {"name": "j", "steps": [{"name": "b", "system": "PBOS", "op": "build"}]}
    assert check(o.coordinate_systems(o.load_workflow_str(json.dumps(doc), "json")).result()).ok
    path = tmp_path / "release.toml"
    path.write_text(TOML)
    assert o.load_workflow(path).name == "release"
    assert len(o.load_workflow(str(path))) == 2
    with pytest.raises(pso.ParseError) as e:
        o.load_workflow_str('name = "x"\n[[steps]]\nname = "a"\nsystem = "PBOS"\nopp = "build"\n')
    assert (e.value.line, e.value.column, e.value.source) == (5, 1, "<string>")
    assert str(e.value).startswith("<string>:5:1: ")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x",\n "steps": [}')
    with pytest.raises(pso.ParseError) as e:
        o.load_workflow(bad)
    assert (e.value.line, e.value.source) == (2, str(bad))
    with pytest.raises(pso.NotFoundError, match="step 'a' uses unknown operation 'nope'"):
        o.load_workflow_str(
            '{"name": "x", "steps": [{"name": "a", "system": "PBOS", "op": "nope"}]}', "json"
        )
    with pytest.raises(pso.InvalidArgumentError):
        o.load_workflow_str("name = 'x'", "yaml")  # type: ignore[arg-type]
    with pytest.raises(pso.IoError, match="cannot read workflow file"):
        o.load_workflow(tmp_path / "missing.toml")


# --- waiting: result(timeout), asyncio, progress ------------------------------------


def test_result_with_a_timeout_raises_pso_timeout_error(o: pso.Orchestrator) -> None:
    gate = threading.Event()
    wf = o.workflow("gated", [pso.Step("wait", fn=lambda ctx: gate.wait(BOUND))])
    run = o.coordinate_systems(wf)
    t = time.monotonic()
    with pytest.raises(pso.TimeoutError, match="did not finish within 0.05 seconds") as e:
        run.result(timeout=0.05)
    assert 0.04 <= time.monotonic() - t < 5
    assert isinstance(e.value, TimeoutError) and e.value.kind == "TIMEOUT"
    with pytest.raises(pso.TimeoutError):
        run.result(timeout=0)
    with pytest.raises(pso.InvalidArgumentError):
        run.result(timeout=-1)
    assert not run.done
    gate.set()
    r = check(run.result(timeout=BOUND))
    assert r.output("wait") is True and run.result(timeout=0).ok
    assert (r.id, r.workflow) == (run.id, run.workflow) == (run.id, "gated")
    with pytest.raises(pso.NotFoundError, match="has no step 'nope'"):
        r.output("nope")
    with pytest.raises(pso.NotFoundError):
        r.error("nope")
    with pytest.raises(pso.NotFoundError):
        r.step("nope")


def test_await_a_run_without_blocking_the_event_loop(pdt: pso.Orchestrator) -> None:
    gate = threading.Event()
    wf = pdt.workflow(
        "async",
        [
            pso.Step("x", "PDT", "collect"),
            pso.Step("gated", fn=lambda ctx: gate.wait(BOUND) and ctx.inputs["x"], inputs={"x": "x"}),
        ],
    )

    async def open_gate() -> None:
        await asyncio.sleep(0)
        gate.set()  # runs only if awaiting the run left the loop free

    async def main() -> list[pso.RunResult]:
        gated = pdt.coordinate_systems(wf, 1)
        opener = asyncio.create_task(open_gate())
        first = await gated
        await opener
        more = await asyncio.gather(*(pdt.coordinate_systems(wf, i) for i in range(5)))
        done = pdt.coordinate_systems(wf, 41)
        done.result(timeout=BOUND)
        return [first, *more, await done, await done]

    results = asyncio.run(asyncio.wait_for(main(), BOUND))
    assert [check(r).output("gated") for r in results] == [2, 1, 2, 3, 4, 5, 42, 42]


def test_cancelling_the_awaiting_task_leaves_the_run_alone(o: pso.Orchestrator) -> None:
    gate = threading.Event()
    wf = o.workflow("long", [pso.Step("wait", fn=lambda ctx: gate.wait(BOUND))])
    run = o.coordinate_systems(wf)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(run, 0.01)

    asyncio.run(main())
    assert not run.done
    gate.set()
    assert check(run.result(timeout=BOUND)).ok


# --- threads, closing, the GIL ----------------------------------------------------


def test_many_threads_start_runs_concurrently(pdt: pso.Orchestrator) -> None:
    wf = pdt.workflow(
        "many",
        [
            pso.Step("x", "PDT", "collect"),
            pso.Step("double", fn=lambda ctx: ctx.inputs["n"] * 2, inputs={"n": "x"}),
            pso.Step("total", "PDT", "sum", inputs={"a": "double", "b": "x"}),
        ],
    )
    errors: list[BaseException] = []
    results: dict[int, int] = {}

    def worker(base: int) -> None:
        try:
            runs = [(base + i, pdt.coordinate_systems(wf, base + i)) for i in range(25)]
            for value, run in runs:
                r = check(run.result(timeout=BOUND))
                results[value] = r.output("total")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(1000 * t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
        assert not t.is_alive(), "a thread is stuck"
    assert errors == []
    assert len(results) == 200
    assert all(total == 3 * (value + 1) for value, total in results.items())


def test_closing_cancels_runs_in_flight() -> None:
    o = pso.Orchestrator(workers=2)
    started = threading.Event()

    def spin(ctx: pso.StepContext) -> None:
        started.set()
        until_cancelled(ctx)

    wf = o.workflow("long", [pso.Step("spin", fn=spin), pso.Step("after", fn=lambda c: None, after=["spin"])])
    run = o.coordinate_systems(wf)
    wait_for(started, "the step to start")
    o.close()
    r = check(run.result(timeout=BOUND))
    assert r.state == "cancelled"
    assert r.error("after") == "upstream step 'spin' did not succeed" or r.step("after").state == "cancelled"
    with pytest.raises(pso.ClosedError):
        o.coordinate_systems(wf)
    with pytest.raises(pso.ClosedError):
        o.workflow("x", [])


def test_an_async_fan_out_child_fails_its_step(o: pso.Orchestrator) -> None:
    # `async def` steps are tests/test_async_steps.py; a fan-out child cannot
    # defer its result, so an awaitable there fails it (with no warning about
    # a coroutine never awaited).
    async def child(ctx: pso.StepContext) -> int:
        return 1

    def parent(ctx: pso.StepContext) -> None:
        ctx.fan_out([pso.Child(child, 1)])

    wf = o.workflow("async child", [pso.Step("p", fn=parent)])
    r = check(o.coordinate_systems(wf).result(timeout=BOUND))
    assert r.state == "failed"
    assert r.step("p[0]").error == (
        "TypeError: step 'p[0]' returned an awaitable: a fan-out child cannot be async "
        "(only a step's own function can)"
    )


GIL_SCRIPT = textwrap.dedent(
    """
    import faulthandler, sys, threading
    faulthandler.dump_traceback_later(50, exit=True)
    import pso

    o = pso.Orchestrator(workers=2)
    o.register("S", operations={"op": lambda ctx: o.status("S").state})
    o.activate_system("S")
    inner = o.workflow("inner", [pso.Step("i", fn=lambda ctx: ctx.run_input * 2)])

    def nested(ctx):
        # Waiting for another run from a step: the worker helps instead of blocking.
        return o.coordinate_systems(inner, ctx.run_input).result(timeout=30).output("i")

    steps = [pso.Step(f"s{i}", fn=lambda ctx: sum(range(50))) for i in range(40)]
    steps += [pso.Step("op", "S", "op"), pso.Step("nested", fn=nested, after=["op"])]
    wf = o.workflow("gil", steps)
    failures = []

    def client(k):
        for j in range(15):
            r = o.coordinate_systems(wf, k + j).result(timeout=30)
            if not r.ok or r.output("nested") != 2 * (k + j) or r.output("op") != "Active":
                failures.append((k, j, r.state, [s.error for s in r.steps if s.error]))

    threads = [threading.Thread(target=client, args=(100 * k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    o.close()
    print("failures", failures)
    print("ok" if not failures else "FAILED")
    """
)


def test_python_threads_and_python_steps_do_not_deadlock_on_the_gil() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", GIL_SCRIPT], capture_output=True, text=True, timeout=55
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
