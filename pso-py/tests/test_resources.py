"""Resources (docs/API.md, "Resources"): leases and how they are released,
waiting and waking, typed rejections, gangs, TTLs, preemption, status,
optimize_resources, step leases in workflows, asyncio, Ctrl-C, and many
threads at once. Anything that could hang runs in a subprocess or under the
watchdog of conftest.py."""

from __future__ import annotations

import asyncio
import builtins
import gc
import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pso

CHILD_TIMEOUT = 30


def eventually(what: str, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Polls `condition` until it holds: for effects that happen on another
    thread and signal nothing (a request becoming a waiter). Bounded."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for: {what}")
        time.sleep(0.001)


def waiters(o: pso.Orchestrator) -> int:
    return len(o.resource_status().waiters)


def free(o: pso.Orchestrator, dim: str) -> int:
    d = o.resource_status().dimension(dim)
    assert d is not None
    return d.free


def thread_name() -> str:
    """The OS name of the calling thread (Linux), or "?"."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


@pytest.fixture
def res() -> Iterator[pso.Orchestrator]:
    """Systems a..d, short grace / idle / aging periods."""
    with pso.Orchestrator(
        workers=2, preemption_grace=0.05, idle_lease_after=0.05, resource_aging_step=0.2
    ) as o:
        for s in "abcd":
            o.register(s)
        yield o


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child process hung for {CHILD_TIMEOUT}s; output: {e.stdout!r} {e.stderr!r}")


# --- leases -----------------------------------------------------------------


def test_lease_facts_and_every_release_path(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 8)
    res.set_capacity("memory", 4096)
    # Zero amounts are ignored (even of a dimension without a capacity).
    lease = res.allocate_resources("a", {"cpu": 3, "memory": 1024, "gpu": 0})
    assert (lease.id, lease.system, lease.held) == (1, "a", True)
    assert lease.amounts == {"cpu": 3, "memory": 1024}
    assert lease.expires_in is None
    assert (free(res, "cpu"), free(res, "memory")) == (5, 3072)
    assert [ls.id for ls in res.resource_status().leases] == [lease.id]

    # release(): True once, then False; amounts are gone.
    assert lease.release() is True
    assert lease.release() is False
    assert not lease.held and lease.amounts == {}
    assert free(res, "cpu") == 8

    # with: released on exit, also when the block raises.
    with res.allocate_resources("b", {"cpu": 8}) as held:
        assert held.id == 2, "ids are serial and never reused"
        assert free(res, "cpu") == 0
    assert not held.held and free(res, "cpu") == 8
    with pytest.raises(KeyError):
        with res.allocate_resources("b", {"cpu": 2}):
            raise KeyError("boom")
    assert free(res, "cpu") == 8

    # Garbage: dropping the last reference releases it.
    res.allocate_resources("c", {"cpu": 4})
    assert free(res, "cpu") == 8
    kept = res.allocate_resources("c", {"cpu": 4})
    assert free(res, "cpu") == 4
    del kept
    assert free(res, "cpu") == 8
    assert res.resource_status().leases == []


def test_a_lease_in_a_reference_cycle_is_released_by_the_collector(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 2)
    gc.collect()
    gc.disable()
    try:
        class Job:
            def __init__(self) -> None:
                self.lease = res.allocate_resources("a", {"cpu": 2})
                # The callback refers back to its lease (through the job):
                # only the collector can free the two.
                self.lease.on_preempt(self.stop)

            def stop(self, notice: pso.PreemptNotice) -> None:
                self.lease.release()

        job = Job()
        del job
        assert free(res, "cpu") == 0, "a cycle: not freed by reference count"
    finally:
        gc.enable()
    gc.collect()
    assert free(res, "cpu") == 2


def test_a_waiter_is_woken_by_a_release_on_another_thread(res: pso.Orchestrator) -> None:
    res.set_capacity("memory", 2560)
    held = res.allocate_resources("a", {"memory": 2048})
    released = threading.Event()
    got: list[tuple[int, bool]] = []

    def wait_for_it() -> None:
        lease = res.allocate_resources("b", {"memory": 2048})
        got.append((lease.id, released.is_set()))
        lease.release()

    t = threading.Thread(target=wait_for_it)
    t.start()
    eventually("b waits", lambda: waiters(res) == 1)
    w = res.resource_status().waiters[0]
    assert (w.systems, w.reason, w.ahead) == (["b"], "needs 2048 memory, 512 free", 0)
    released.set()
    held.release()
    t.join(10)
    assert not t.is_alive()
    assert got == [(2, True)], "granted only after the release"
    assert free(res, "memory") == 2560


def test_a_timeout_says_how_long_it_waited_and_why(res: pso.Orchestrator) -> None:
    res.set_capacity("memory", 2560)
    held = res.allocate_resources("a", {"memory": 2048})
    with pytest.raises(pso.TimeoutError) as info:
        res.allocate_resources("b", {"memory": 2048}, wait=0)
    assert isinstance(info.value, builtins.TimeoutError)
    assert info.value.code == 17
    assert "needs 2048 memory, 512 free" in str(info.value)
    start = time.monotonic()
    with pytest.raises(pso.TimeoutError) as info:
        res.allocate_resources("b", {"memory": 2048}, wait=0.05)
    assert time.monotonic() - start >= 0.05
    message = str(info.value)
    assert message.startswith("b waited ") and "for resources: needs 2048 memory, 512 free" in message
    assert res.resource_status().waiters == [], "a timed-out request is withdrawn"
    held.release()
    assert res.allocate_resources("b", {"memory": 2048}, wait=0).held


def test_immediate_rejections_are_typed_with_attributes(res: pso.Orchestrator) -> None:
    res.set_capacity("memory", 1024)
    with pytest.raises(pso.ExceedsCapacityError) as cap:
        res.allocate_resources("a", {"memory": 2048})
    e = cap.value
    assert (e.kind, e.code) == ("EXCEEDS_CAPACITY", 30)
    assert (e.system, e.dimension, e.requested, e.capacity) == ("a", "memory", 2048, 1024)
    assert str(e) == "a asks for 2048 memory, more than the whole capacity of 1024"

    res.set_group_quota("batch", "memory", 256)
    with pytest.raises(pso.ExceedsQuotaError) as quota:
        res.allocate_resources("a", {"memory": 512}, group="batch")
    q = quota.value
    assert (q.kind, q.code) == ("EXCEEDS_QUOTA", 31)
    assert (q.group, q.dimension, q.requested, q.quota) == ("batch", "memory", 512, 256)

    with pytest.raises(pso.NotFoundError, match=r"unknown resource dimension 'cpu' \(declared: memory\)"):
        res.allocate_resources("a", {"cpu": 1})
    with pytest.raises(pso.NotFoundError, match="unknown system 'ghost'"):
        res.allocate_resources("ghost", {"memory": 1})
    assert res.resource_status().leases == [] and res.resource_status().waiters == []


def test_bad_arguments_raise_typed_errors_and_change_nothing(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 4)
    value_errors: list[Callable[[], object]] = [
        lambda: res.allocate_resources("a", {"cpu": -1}),
        lambda: res.allocate_resources("a", {"cpu": 2**64}),
        lambda: res.allocate_resources("a", {"cpu": 1}, priority="urgent"),  # type: ignore[arg-type]
        lambda: res.allocate_resources("a", {"cpu": 1}, ttl=0),
        lambda: res.allocate_resources("a", {"cpu": 1}, ttl=float("inf")),
        lambda: res.allocate_resources("a", {"cpu": 1}, wait=-1),
        lambda: res.allocate_resources("a", {"cpu": 1}, wait=float("nan")),
        lambda: res.allocate_resources("a", {"cpu": 1}, group=""),
        lambda: res.set_capacity("", 1),
        lambda: res.set_capacity("has space", 1),
        lambda: res.set_capacity("cpu", -1),
        lambda: res.set_resource_weight("a", 0.0),
        lambda: res.set_resource_weight("a", float("inf")),
        lambda: res.set_group_quota("", "cpu", 1),
        lambda: pso.ResourceRequest("a", {"cpu": -3}),
        lambda: pso.Orchestrator(resource_aging_step=0),
        lambda: pso.Orchestrator(preemption_grace=-1),
    ]
    for call in value_errors:
        with pytest.raises(pso.InvalidArgumentError):
            call()
    type_errors: list[Callable[[], object]] = [
        lambda: res.allocate_resources("a", [("cpu", 1)]),  # type: ignore[arg-type]
        lambda: res.allocate_resources("a", {"cpu": 1.5}),  # type: ignore[dict-item]
        lambda: res.allocate_resources("a", {"cpu": True}),
        lambda: res.allocate_resources("a", {1: 1}),  # type: ignore[dict-item]
        lambda: res.allocate_resources("a", {"cpu": 1}, ttl="1s"),  # type: ignore[arg-type]
        lambda: res.allocate_resources("a", {"cpu": 1}, priority=1),  # type: ignore[arg-type]
        lambda: res.set_capacity("cpu", 2.0),  # type: ignore[arg-type]
        lambda: res.set_resource_weight("a", True),
        lambda: res.allocate_gang("a"),  # type: ignore[arg-type]
        lambda: res.allocate_gang([{"system": "a"}]),  # type: ignore[list-item]
        lambda: res.allocate_resources_async("a", {"cpu": "x"}),  # type: ignore[dict-item]
    ]
    for call in type_errors:
        with pytest.raises(TypeError):
            call()
    with pytest.raises(pso.NotFoundError):
        res.set_resource_weight("ghost", 2.0)
    with pytest.raises(pso.NotFoundError):
        res.set_group_quota("g", "disk", 1)
    with pytest.raises(pso.NotFoundError):
        res.set_step_resources("ghost", {"cpu": 1})
    st = res.resource_status()
    assert [(d.name, d.capacity, d.allocated) for d in st.dimensions] == [("cpu", 4, 0)]
    assert st.leases == [] and st.waiters == [] and st.groups == []


# --- gangs, TTL, preemption --------------------------------------------------


def test_gangs_are_all_or_nothing(res: pso.Orchestrator) -> None:
    res.set_capacity("gpu", 4)
    res.set_capacity("cpu", 8)
    trainer = pso.ResourceRequest("a", {"gpu": 2, "cpu": 2}, priority="high", group="ml", ttl=60, wait=10)
    assert (trainer.system, trainer.amounts, trainer.priority, trainer.group) == (
        "a", {"cpu": 2, "gpu": 2}, "high", "ml"
    )
    assert (trainer.preemptible, trainer.ttl, trainer.wait) == (False, 60.0, 10.0)
    loader = pso.ResourceRequest("b", {"gpu": 1, "cpu": 4})
    assert (loader.priority, loader.group, loader.ttl, loader.wait) == ("normal", None, None, None)

    other = res.allocate_resources("c", {"gpu": 2})
    result: list[list[pso.Lease]] = []
    t = threading.Thread(target=lambda: result.append(res.allocate_gang([trainer, loader])))
    t.start()
    eventually("the gang waits", lambda: waiters(res) == 1)
    st = res.resource_status()
    cpu = st.dimension("cpu")
    assert cpu is not None and cpu.allocated == 0, "no part is held while the gang waits"
    assert st.waiters[0].systems == ["a", "b"]
    assert st.waiters[0].amounts == {"cpu": 6, "gpu": 3}
    assert st.waiters[0].reason == "needs 3 gpu, 2 free"
    other.release()
    t.join(10)
    [leases] = result
    assert [lease.system for lease in leases] == ["a", "b"]
    assert [lease.amounts for lease in leases] == [{"cpu": 2, "gpu": 2}, {"cpu": 4, "gpu": 1}]
    assert (free(res, "gpu"), free(res, "cpu")) == (1, 2)
    del leases, result
    assert (free(res, "gpu"), free(res, "cpu")) == (4, 8)

    big = pso.ResourceRequest("a", {"gpu": 3})
    with pytest.raises(pso.ExceedsCapacityError):
        res.allocate_gang([big, pso.ResourceRequest("b", {"gpu": 3})])
    with pytest.raises(pso.InvalidArgumentError):
        res.allocate_gang([])
    assert res.resource_status().leases == []


def test_a_ttl_revokes_the_lease_and_wakes_the_next_waiter(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 1)
    start = time.monotonic()
    lease = res.allocate_resources("a", {"cpu": 1}, ttl=0.05)
    left = lease.expires_in
    assert left is not None and 0 <= left <= 0.05
    status_ttl = res.resource_status().leases[0].ttl_remaining
    assert status_ttl is not None and status_ttl <= 0.05
    follower = res.allocate_resources("b", {"cpu": 1})  # waits for the TTL
    assert time.monotonic() - start >= 0.05
    assert not lease.held and lease.expires_in is None
    assert lease.release() is False, "already revoked"
    assert follower.held and free(res, "cpu") == 0, "nothing counted twice"


def test_preemption_notifies_the_holder_then_revokes_after_the_grace(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 4)
    batch = res.allocate_resources("a", {"cpu": 4}, priority="background", preemptible=True)
    notices: list[tuple[int, str, float, bool, str]] = []
    noticed = threading.Event()

    def on_preempt(notice: pso.PreemptNotice) -> None:
        # Called with the GIL, while the lease is still held (grace period).
        notices.append((notice.lease, notice.system, notice.grace, batch.held, thread_name()))
        noticed.set()

    batch.on_preempt(on_preempt)
    start = time.monotonic()
    online = res.allocate_resources("b", {"cpu": 2}, priority="high")
    waited = time.monotonic() - start
    assert waited >= 0.04, f"served only after the grace period ({waited})"
    assert noticed.wait(10)
    [(lease_id, system, grace, _held, thread)] = notices
    assert (lease_id, system) == (batch.id, "a")
    assert thread in ("pso-py-notify", "?"), "on PSO's notifier thread"
    assert 0 <= grace <= 0.05
    assert not batch.held and online.held
    assert free(res, "cpu") == 2


def test_an_exception_in_a_preemption_callback_goes_to_unraisablehook(
    res: pso.Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    res.set_capacity("cpu", 1)
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    low = res.allocate_resources("a", {"cpu": 1}, priority="low", preemptible=True)

    def boom(notice: pso.PreemptNotice) -> None:
        raise ValueError(f"cannot stop {notice.system}")

    low.on_preempt(boom)
    with res.allocate_resources("b", {"cpu": 1}, priority="critical") as high:
        assert high.held
    eventually("the callback ran", lambda: len(seen) == 1)
    assert isinstance(seen[0].exc_value, ValueError)
    assert str(seen[0].exc_value) == "cannot stop a"
    assert seen[0].object is boom
    with pytest.raises(TypeError):
        low.on_preempt(5)  # type: ignore[arg-type]


def test_a_non_preemptible_lease_is_never_preempted(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 1)
    low = res.allocate_resources("a", {"cpu": 1}, priority="background")
    with pytest.raises(pso.TimeoutError, match="needs 1 cpu, 0 free"):
        res.allocate_resources("b", {"cpu": 1}, priority="critical", wait=0.1)
    assert low.held


# --- status and optimize_resources -------------------------------------------


def test_status_lists_everything_in_policy_order_and_as_json(res: pso.Orchestrator) -> None:
    res.set_capacity("memory", 2560)
    res.set_group_quota("batch", "memory", 2048)
    res.set_group_quota("batch", "memory", 4096)  # replaced
    # High and preemptible: only a critical request could preempt it.
    held = res.allocate_resources("a", {"memory": 2048}, group="batch", ttl=60, preemptible=True, priority="high")
    results: list[object] = []
    high = threading.Thread(target=lambda: results.append(res.allocate_resources("b", {"memory": 1024}, priority="high")))
    high.start()
    eventually("b waits", lambda: waiters(res) == 1)
    normal = threading.Thread(target=lambda: results.append(res.allocate_resources("c", {"memory": 2048})))
    normal.start()
    eventually("c waits", lambda: waiters(res) == 2)

    st = res.resource_status()
    [dim] = st.dimensions
    assert (dim.name, dim.capacity, dim.allocated, dim.free) == ("memory", 2560, 2048, 512)
    assert st.dimension("memory") is not None and st.dimension("disk") is None
    [group] = st.groups
    assert (group.name, group.quota, group.allocated) == ("batch", {"memory": 4096}, {"memory": 2048})
    [lease] = st.leases
    assert (lease.id, lease.system, lease.group, lease.amounts) == (held.id, "a", "batch", {"memory": 2048})
    assert (lease.priority, lease.preemptible, lease.revoking) == ("high", True, False)
    assert lease.ttl_remaining is not None and 59 < lease.ttl_remaining <= 60
    assert 0 <= lease.idle <= lease.age < 10
    first, second = st.waiters
    assert (first.systems, first.priority, first.effective_priority, first.ahead) == (["b"], "high", "high", 0)
    assert first.reason == "needs 1024 memory, 512 free"
    assert (second.systems, second.priority, second.ahead) == (["c"], "normal", 1)
    assert second.reason == "needs 2048 memory, 512 free; 1 request ahead"
    assert second.amounts == {"memory": 2048} and second.waited >= 0

    doc = json.loads(st.to_json())
    assert doc["dimensions"] == [{"name": "memory", "capacity": 2560, "allocated": 2048, "free": 512}]
    assert doc["groups"] == [{"name": "batch", "quota": {"memory": 4096}, "allocated": {"memory": 2048}}]
    assert doc["leases"][0]["system"] == "a" and doc["leases"][0]["priority"] == "high"
    assert [w["reason"] for w in doc["waiters"]] == [first.reason, second.reason]

    held.release()  # b (high) goes first (512 + 2048 free), then c waits for b
    high.join(10)
    eventually("only c waits", lambda: waiters(res) == 1)
    results.clear()  # b's lease is released
    normal.join(10)
    results.clear()
    assert res.resource_status().leases == []


def test_optimize_resources_dry_run_then_apply_reclaims_idle_leases() -> None:
    with pso.Orchestrator(workers=1, idle_lease_after=0.3) as res:
        res.register("a")
        res.register("b")
        reclaim_idle_leases(res)


def reclaim_idle_leases(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 4)
    idle = res.allocate_resources("a", {"cpu": 2})
    busy = res.allocate_resources("b", {"cpu": 1})
    time.sleep(0.35)  # idle_lease_after is 0.3 s: the idle period itself
    busy.touch()
    plan = res.optimize_resources()
    assert plan.applied is False
    [action] = plan.actions
    assert action["action"] == "reclaim_idle"
    assert (action["lease"], action["system"]) == (idle.id, "a")
    assert action["idle_secs"] >= 0.3
    assert idle.held and free(res, "cpu") == 1, "a dry run changes nothing"
    assert json.loads(plan.to_json()) == {"actions": plan.actions, "applied": False}

    applied = res.optimize_resources(apply=True)
    assert applied.applied is True and [a["action"] for a in applied.actions] == ["reclaim_idle"]
    assert not idle.held and idle.release() is False
    assert busy.held and free(res, "cpu") == 3


def test_optimize_resources_grows_a_concurrency_limit_that_makes_steps_wait(res: pso.Orchestrator) -> None:
    res.set_operation("a", "work", lambda ctx: time.sleep(0.005))
    res.set_concurrency_limit("a", 1)
    res.activate_system("a")
    wf = res.workflow("w", [pso.Step(f"s{i}", "a", "work") for i in range(6)])
    assert res.coordinate_systems(wf).result(timeout=30).ok
    dry = res.optimize_resources()
    resizes = [a for a in dry.actions if a["action"] == "resize_concurrency"]
    assert len(resizes) == 1
    r = resizes[0]
    assert r["action"] == "resize_concurrency"
    assert (r["system"], r["from"], r["to"]) == ("a", 1, 2)
    assert "waited a mean of" in r["reason"]
    # The dry run changed nothing: the same plan again, then applied.
    assert [a for a in res.optimize_resources().actions if a["action"] == "resize_concurrency"] == resizes
    assert res.optimize_resources(apply=True).applied
    assert res.optimize_resources().actions == [], "measurements start over after a change"


# --- workflow steps ------------------------------------------------------------


def test_step_leases_bound_concurrency_and_are_returned() -> None:
    # More workers than gpus: the capacity is what limits the steps.
    with pso.Orchestrator(workers=4) as res:
        step_leases_bound_concurrency(res)


def step_leases_bound_concurrency(res: pso.Orchestrator) -> None:
    res.set_capacity("gpu", 2)
    lock = threading.Lock()
    running = [0, 0]  # now, peak
    pair = threading.Barrier(2, timeout=10)

    def train(ctx: pso.StepContext) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        try:
            pair.wait()  # two at a time must be possible...
            time.sleep(0.002)
        finally:
            with lock:
                running[0] -= 1
        return ctx.attempt

    def load(ctx: pso.StepContext) -> None:
        # Steps waiting upstream hold nothing yet.
        gpu = res.resource_status().dimension("gpu")
        assert gpu is not None and gpu.allocated == 0

    res.register("trainer", operations={"train": train})
    res.register("prep", operations={"load": load})
    res.set_step_resources("trainer", {"gpu": 1})
    res.activate_all()
    steps = [pso.Step("load", "prep", "load")]
    steps += [pso.Step(f"t{i}", "trainer", "train", after=["load"]) for i in range(6)]
    result = res.coordinate_systems(res.workflow("train", steps)).result(timeout=30)
    assert result.ok, [(s.name, s.error) for s in result.steps]
    assert running[1] == 2, "...but never more than the 2 gpus"
    assert free(res, "gpu") == 2, "every lease returned"


def test_a_failing_step_returns_its_lease_and_a_rejected_one_fails_with_the_reason(
    res: pso.Orchestrator,
) -> None:
    res.set_capacity("cpu", 2)

    def boom(ctx: pso.StepContext) -> None:
        cpu = res.resource_status().dimension("cpu")
        assert cpu is not None and cpu.allocated == 2, "held while it runs"
        raise RuntimeError("boom")

    res.set_operation("a", "boom", boom)
    res.activate_system("a")
    res.set_step_resources("a", {"cpu": 2}, priority="high")
    wf = res.workflow("w", [pso.Step("s", "a", "boom")])
    r = res.coordinate_systems(wf).result(timeout=30)
    assert r.state == "failed" and r.error("s") == "RuntimeError: boom"
    assert free(res, "cpu") == 2
    res.set_step_resources("a", {"cpu": 3})
    r = res.coordinate_systems(wf).result(timeout=30)
    err = r.error("s")
    assert r.state == "failed" and err is not None and "more than the whole capacity of 2" in err
    res.set_step_resources("a", None)
    r = res.coordinate_systems(wf).result(timeout=30)
    assert (r.error("s") or "").startswith("AssertionError: held while it runs")


def test_cancelling_a_run_withdraws_its_waiting_step_leases(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 1)
    res.set_operation("a", "work", lambda ctx: None)
    res.activate_system("a")
    res.set_step_resources("a", {"cpu": 1})
    hog = res.allocate_resources("b", {"cpu": 1})
    wf = res.workflow("w", [pso.Step("x", "a", "work"), pso.Step("y", "a", "work")])
    run = res.coordinate_systems(wf)
    eventually("both steps wait", lambda: waiters(res) == 2)
    assert run.cancel()
    assert run.result(timeout=10).state == "cancelled"
    assert waiters(res) == 0
    hog.release()
    assert free(res, "cpu") == 1


# --- asyncio -------------------------------------------------------------------


def test_asyncio_allocation_waits_without_blocking_the_loop(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 2)

    async def main() -> None:
        lease = await res.allocate_resources_async("a", {"cpu": 1})
        assert lease.held and lease.amounts == {"cpu": 1}
        hog = res.allocate_resources("b", {"cpu": 1})
        task = asyncio.create_task(res.allocate_resources_async("c", {"cpu": 1}, priority="high"))
        ticks = 0
        while waiters(res) == 0:  # the loop keeps running while c waits
            ticks += 1
            await asyncio.sleep(0.001)
        assert not task.done()
        threading.Thread(target=hog.release).start()  # released on another thread
        got = await asyncio.wait_for(task, 10)
        assert got.system == "c" and got.held
        got.release()
        lease.release()
        with pytest.raises(pso.ExceedsCapacityError):
            await res.allocate_resources_async("a", {"cpu": 3})
        with res.allocate_resources("b", {"cpu": 2}):
            with pytest.raises(pso.TimeoutError, match="needs 1 cpu, 0 free"):
                await res.allocate_resources_async("a", {"cpu": 1}, wait=0)
            with pytest.raises(pso.TimeoutError, match="waited"):
                await res.allocate_resources_async("a", {"cpu": 1}, wait=0.02)

    asyncio.run(main())
    assert free(res, "cpu") == 2 and waiters(res) == 0


def test_cancelling_the_task_withdraws_the_request(res: pso.Orchestrator) -> None:
    res.set_capacity("cpu", 1)

    async def main() -> None:
        hog = res.allocate_resources("a", {"cpu": 1})
        task = asyncio.create_task(res.allocate_resources_async("b", {"cpu": 1}))
        while waiters(res) == 0:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waiters(res) == 0, "withdrawn when the task was cancelled"
        # Granted and cancelled in the same loop iteration: the grant is
        # scheduled on the loop, the cancellation wins, the lease goes back.
        task = asyncio.create_task(res.allocate_resources_async("b", {"cpu": 1}))
        while waiters(res) == 0:
            await asyncio.sleep(0.001)
        hog.release()  # grants b now, on this thread; delivery is queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)  # let the queued delivery run
        assert res.resource_status().leases == []
        # A coroutine that is never awaited asks for nothing.
        coro = res.allocate_resources_async("b", {"cpu": 1})
        assert waiters(res) == 0 and res.resource_status().leases == []
        coro.close()

    asyncio.run(main())
    assert free(res, "cpu") == 1


def test_pso_cancelled_error_is_not_asyncio_cancellation() -> None:
    assert not issubclass(pso.CancelledError, asyncio.CancelledError)
    assert issubclass(pso.CancelledError, pso.PsoError)
    assert pso.CancelledError.code == 32


# --- interruption, closing, threads -------------------------------------------------


def test_ctrl_c_interrupts_a_wait_and_withdraws_the_request() -> None:
    result = run_python(
        """
        import os, signal, threading, time, pso

        o = pso.Orchestrator(workers=1)
        o.register("a"); o.register("b")
        o.set_capacity("cpu", 1)
        hog = o.allocate_resources("a", {"cpu": 1})

        def interrupt():
            while not o.resource_status().waiters:
                time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        start = time.monotonic()
        try:
            o.allocate_resources("b", {"cpu": 1})
            print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - start, 1) < 5)
        st = o.resource_status()
        print("waiters", len(st.waiters), "leases", [l.system for l in st.leases])
        hog.release()
        print("free", o.resource_status().dimension("cpu").free)
        o.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["interrupted True", "waiters 0 leases ['a']", "free 1"]


def test_closing_rejects_waiters_and_leases_stay_releasable() -> None:
    o = pso.Orchestrator(workers=1)
    o.register("a")
    o.register("b")
    o.set_capacity("cpu", 1)
    held = o.allocate_resources("a", {"cpu": 1})
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            o.allocate_resources("b", {"cpu": 1})
        except pso.PsoError as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    eventually("b waits", lambda: waiters(o) == 1)
    o.close()
    t.join(10)
    assert [type(e) for e in errors] == [pso.ClosedError]
    assert held.release() is True, "still releasable after close"
    calls: list[Callable[[], object]] = [
        lambda: o.set_capacity("cpu", 2),
        lambda: o.allocate_resources("a", {"cpu": 1}),
        lambda: o.allocate_resources_async("a", {"cpu": 1}),
        lambda: o.allocate_gang([pso.ResourceRequest("a", {"cpu": 1})]),
        o.resource_status,
        o.optimize_resources,
        lambda: o.set_step_resources("a", None),
    ]
    for call in calls:
        with pytest.raises(pso.ClosedError):
            call()


def test_many_threads_allocating_and_releasing_balance_at_the_end() -> None:
    with pso.Orchestrator(workers=2, resource_aging_step=0.01) as o:
        systems = [f"s{i}" for i in range(8)]
        for s in systems:
            o.register(s)
        o.set_capacity("cpu", 10)
        o.set_capacity("memory", 100)
        o.set_group_quota("g", "memory", 40)
        granted = [0] * 8
        over: list[str] = []
        priorities: list[Any] = ["critical", "high", "normal", "low", "background"]

        def worker(k: int) -> None:
            rng = random.Random(k)
            for _ in range(150):
                kwargs: dict[str, Any] = {"priority": rng.choice(priorities)}
                if rng.random() < 0.3:
                    kwargs["group"] = "g"
                if rng.random() < 0.25:
                    kwargs["wait"] = rng.random() / 1000
                try:
                    lease = o.allocate_resources(
                        rng.choice(systems), {"cpu": rng.randint(1, 4), "memory": rng.randint(1, 30)}, **kwargs
                    )
                except pso.TimeoutError:
                    continue
                granted[k] += 1
                for d in o.resource_status().dimensions:
                    if d.allocated > d.capacity:
                        over.append(f"{d.name} {d.allocated}/{d.capacity}")
                if rng.random() < 0.5:
                    lease.release()
                else:
                    del lease  # by reference count

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert over == []
        assert sum(granted) > 8 * 150 // 2, granted
        st = o.resource_status()
        assert st.leases == [] and st.waiters == []
        assert [(d.name, d.allocated, d.free) for d in st.dimensions] == [("cpu", 0, 10), ("memory", 0, 100)]
        assert all(g.allocated == {} for g in st.groups)


def test_weights_change_who_is_served_first(res: pso.Orchestrator) -> None:
    # Dominant-resource fairness within a class: with equal use, the system
    # of higher weight has the smaller share and is served first.
    res.set_capacity("cpu", 4)
    res.set_resource_weight("b", 4.0)
    a_held = res.allocate_resources("a", {"cpu": 1})
    b_held = res.allocate_resources("b", {"cpu": 1})
    hog = res.allocate_resources("c", {"cpu": 2})
    got: list[pso.Lease] = []

    def take(system: str) -> None:
        got.append(res.allocate_resources(system, {"cpu": 2}))

    ta = threading.Thread(target=take, args=("a",))
    ta.start()  # a asks first...
    eventually("a waits", lambda: waiters(res) == 1)
    tb = threading.Thread(target=take, args=("b",))
    tb.start()
    eventually("b waits", lambda: waiters(res) == 2)
    assert [w.systems for w in res.resource_status().waiters] == [["b"], ["a"]]
    hog.release()  # ...but b is served first
    eventually("one is served", lambda: len(got) == 1)
    assert got[0].system == "b" and waiters(res) == 1
    got[0].release()
    ta.join(10)
    tb.join(10)
    assert [lease.system for lease in got] == ["b", "a"]
    del a_held, b_held
