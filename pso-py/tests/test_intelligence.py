"""Coordination intelligence from Python: learned patterns (and the snapshot
that carries them), insights, recommendations with their evidence,
optimize_coordination with its reversible log, and evolve_coordination with a
Python workload keeping what helps and reverting what hurts. Assertions are
on counts and orderings that hold under any load, never on tight timings."""

from __future__ import annotations

import pathlib
import threading
import time

import pytest

import pso


def sleeper(seconds: float) -> pso._pso._StepFn:
    def op(ctx: pso.StepContext) -> None:
        time.sleep(seconds)

    return op


def test_patterns_learn_durations_failures_edges_and_co_activation_and_survive_a_snapshot(
    tmp_path: pathlib.Path,
) -> None:
    def serve(ctx: pso.StepContext) -> None:
        if ctx.run_input == 3:
            raise ValueError("bad input")

    with pso.Orchestrator(workers=2) as o:
        o.register("db", operations={"read": sleeper(0.005)})
        o.register("api", operations={"serve": serve})
        o.activate_all()
        wf = o.workflow("req", [pso.Step("read", "db", "read"), pso.Step("serve", "api", "serve")])
        for i in range(4):
            assert o.coordinate_systems(wf, input=i).result(timeout=30).ok == (i != 3)
        with o.hub.subscribe("db.events", lambda m: None, owner="api"):
            for _ in range(10):
                o.hub.publish("db.events", None, sender="db")
            p = o.learn_patterns()
        read = next(x for x in p.operations if x.key == "db.read")
        assert read.samples == 4 and read.mean >= 0.005 and read.stddev >= 0.0
        serve_p = next(x for x in p.operations if x.key == "api.serve")
        assert (serve_p.recent_steps, serve_p.recent_failures) == (4, 1)
        assert serve_p.failure_rate == pytest.approx(0.25)
        co = p.co_activation[0]
        assert (co.a, co.b) == ("api", "db")
        assert co.together >= 5 and co.a_count >= co.together, "4 runs and the activation"
        edge = next(e for e in p.edges if (e.from_, e.to) == ("db", "api"))
        assert edge.messages == 10 and edge.rate >= 0.0
        assert '"failure_rate":0.25' in p.to_json()
        assert repr(read).startswith("OperationPattern(key='db.read', mean=")
        assert "from_='db'" in repr(edge) and "together=" in repr(co)
        assert repr(p) == f"<pso.Patterns operations={len(p.operations)} edges={len(p.edges)} co_activation={len(p.co_activation)}>"
        # Also in the state store, so the snapshot carries them.
        assert o.state.get("pso.patterns") is not None
        info = o.snapshot(tmp_path / "snap.json")
        assert info.path == tmp_path / "snap.json"

    with pso.Orchestrator(workers=1) as fresh:
        assert fresh.estimates() == []
        fresh.restore(tmp_path / "snap.json")
        est = next(e for e in fresh.estimates() if e.key == "db.read")
        assert est.samples == 4 and est.mean == read.mean, "a restored host starts warm"
        assert any(c.together >= 5 for c in fresh.learn_patterns().co_activation)
        with pytest.raises(pso.IoError):
            fresh.restore(tmp_path / "missing.json")


def test_insights_show_the_critical_path_contributors_and_contention() -> None:
    with pso.Orchestrator(workers=2) as o:
        o.register("fast", operations={"short": sleeper(0.005)}, concurrency=1)
        o.register("slow", operations={"long": sleeper(0.015)})
        o.activate_all()
        steps = [pso.Step(f"s{i}", "fast", "short") for i in range(6)]
        steps += [pso.Step(f"c{i}", "slow", "long", after=[f"c{i - 1}"] if i else []) for i in range(3)]
        wf = o.workflow("skewed", steps)  # insights cover runs of workflows still alive
        assert o.coordinate_systems(wf).result(timeout=30).ok
        o.set_capacity("gpu", 1)
        held = o.allocate_resources("slow", {"gpu": 1})
        waiter = threading.Thread(target=lambda: o.allocate_resources("fast", {"gpu": 1}, wait=30).release())
        waiter.start()
        deadline = time.monotonic() + 30
        while not o.resource_status().waiters:
            assert time.monotonic() < deadline, "the request never waited"
            time.sleep(0.005)
        i = o.coordination_insights()
        held.release()
        waiter.join()
        assert i.runs == 1
        cp = i.critical_paths[0]
        names = [name for name, _ in cp.steps]
        assert cp.workflow == "skewed" and names[-3:] == ["c0", "c1", "c2"], names
        assert all(seconds >= 0 for _, seconds in cp.steps)
        assert 0.045 <= cp.length <= cp.makespan + 1e-3, cp
        fast = next(c for c in i.contributors if c.key == "fast.short")
        assert fast.steps == 6 and fast.working >= 0.03
        assert fast.waiting > 0.0, "steps waited for the one slot"
        gpu = i.contention[0]
        assert (gpu.dimension, gpu.waiters, gpu.utilization) == ("gpu", 1, 1.0) and gpu.longest_wait >= 0
        assert (i.unhealthy, i.flapping, i.gave_up, i.idle_direct_pairs) == ([], [], [], [])
        assert '"critical_paths"' in i.to_json() and repr(i).startswith("<pso.Insights runs=1 ")
        assert "workflow='skewed'" in repr(cp) and "key='fast.short'" in repr(fast)
        assert "dimension='gpu'" in repr(gpu)


def test_recommendations_carry_evidence_and_optimize_applies_logs_and_reverts() -> None:
    with pso.Orchestrator(workers=2) as o:
        noop = lambda ctx: None  # noqa: E731
        for s in ("a", "b", "idle"):
            o.register(s, operations={"op": noop})
        o.activate_all()
        pair = o.workflow("pair", [pso.Step("x", "a", "op"), pso.Step("y", "b", "op")])
        for _ in range(25):
            assert o.coordinate_systems(pair).result(timeout=30).ok
        o.deactivate_system("b")
        time.sleep(0.1)
        recs = o.optimization_recommendations()
        for r in recs:
            assert r.evidence and r.expected_gain and 0.0 <= r.confidence <= 1.0 and r.samples >= 0
        plan = o.optimize_coordination(min_samples=0, min_confidence=0.0, idle_after=0.05)
        assert not plan.applied and plan.changes == []
        pre = next(r for r in plan.actions if r.action["kind"] == "pre_activate")
        assert pre.action == {"kind": "pre_activate", "systems": ["b"]} and pre.target == "a"
        assert pre.samples >= 25 and "pre_activate" in repr(pre)
        idle = [r.action for r in plan.actions if r.action["kind"] == "deactivate_idle"]
        assert {"kind": "deactivate_idle", "system": "idle"} in idle
        assert '"actions"' in plan.to_json() and repr(plan).startswith("<pso.CoordinationPlan applied=False")

        # The default guardrails hold back thin evidence, saying why.
        strict = o.optimize_coordination(min_samples=10**9)
        assert strict.actions == [] and strict.skipped
        rec, why = strict.skipped[0]
        assert isinstance(rec, pso.Recommendation) and "samples, fewer than" in why

        applied = o.optimize_coordination(True, min_samples=0, min_confidence=0.0)
        assert applied.applied
        change = next(c for c in applied.changes if c.action["kind"] == "pre_activate")
        assert change.error is None and not change.reverted and change.reason
        assert o.status("b").state == "Active", "pre-activated"
        assert [c.id for c in o.coordination_log()] == [c.id for c in applied.changes]
        undone = o.revert_change(change.id)
        assert undone.reverted and undone.id == change.id and "reverted=True" in repr(undone)
        assert o.status("b").state == "Inactive", "reverted"
        assert next(c for c in o.coordination_log() if c.id == change.id).reverted
        with pytest.raises(pso.InvalidArgumentError, match="already reverted"):
            o.revert_change(change.id)
        with pytest.raises(pso.NotFoundError, match="9999"):
            o.revert_change(9999)
        with pytest.raises(pso.InvalidArgumentError):
            o.revert_change(-1)
        with pytest.raises(TypeError):
            o.revert_change("1")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            o.optimize_coordination(min_confidence="high")  # type: ignore[arg-type]
        with pytest.raises(pso.InvalidArgumentError):
            o.optimize_coordination(idle_after=0)


class Overlap:
    """A workload whose round fails when two steps of `w` run at once: each
    step waits (at most `patience` seconds) at a barrier for the other. Without
    a concurrency limit both meet at once (the round fails); with a limit of 1
    the first gives up waiting and nothing overlaps (the round succeeds). So the
    outcome does not depend on how fast the machine is."""

    def __init__(self, o: pso.Orchestrator, patience: float) -> None:
        self.patience = patience
        self.barrier = threading.Barrier(2)
        self.met = False
        o.register("w", operations={"meet": self.meet})
        o.activate_system("w")
        self.wf = o.workflow("overlap", [pso.Step("m1", "w", "meet"), pso.Step("m2", "w", "meet")])
        self.calls = 0

    def meet(self, ctx: pso.StepContext) -> None:
        try:
            self.barrier.wait(self.patience)
            self.met = True
        except threading.BrokenBarrierError:
            pass

    def __call__(self, o: pso.Orchestrator) -> None:
        self.calls += 1
        self.barrier = threading.Barrier(2)
        self.met = False
        assert o.coordinate_systems(self.wf).result(timeout=60).ok
        if self.met:
            raise RuntimeError("two steps of w overlapped")


def test_evolution_keeps_a_change_that_helps_and_reverts_one_that_hurts() -> None:
    with pso.Orchestrator(workers=2) as o:
        work = Overlap(o, patience=2.0)
        helps = o.evolve_coordination(
            ("concurrency_limit", "w", 1), work, rounds=1, metric="error_rate", margin=0.5
        )
        assert work.calls == 2, "one round per arm"
        assert (helps.baseline.error_rate, helps.trial.error_rate) == (1.0, 0.0), helps
        assert helps.kept and helps.improvement == 1.0 and "kept" in helps.reason
        assert helps.baseline.rounds == helps.trial.rounds == 1
        assert o.status("w").concurrency == 1
        hurts = o.evolve_coordination(("concurrency_limit", "w", None), work, rounds=1, metric="error_rate")
        assert (hurts.baseline.error_rate, hurts.trial.error_rate) == (0.0, 1.0), hurts
        assert not hurts.kept and hurts.improvement < 0 and "reverted" in hurts.reason
        assert o.status("w").concurrency == 1, "reverted"
        log = o.evolution_log()
        assert [e.id for e in log] == [helps.id, hurts.id]
        assert "concurrency limit 1 for w" in log[0].change and "kept=True" in repr(log[0])
        assert "ArmStats(rounds=1" in repr(log[0].baseline)
        # The kept change is in the coordination log, and reversible.
        kept = next(c for c in o.coordination_log() if c.action["kind"] == "set_concurrency_limit")
        assert kept.action == {"kind": "set_concurrency_limit", "system": "w", "from": None, "to": 1}
        o.revert_change(kept.id)
        assert o.status("w").concurrency is None


def test_evolution_by_makespan_is_consistent_and_logged() -> None:
    with pso.Orchestrator(workers=2) as o:
        o.register("s", operations={"op": sleeper(0.001)})
        o.activate_all()
        wf = o.workflow("tiny", [pso.Step("a", "s", "op"), pso.Step("b", "s", "op", after=["a"])])
        ev = o.evolve_coordination(
            ["scheduling_policy", "fifo"],  # type: ignore[arg-type]  # a list works too
            lambda o: o.coordinate_systems(wf).result(timeout=30),
            rounds=2,
        )
        assert ev.change == "scheduling policy fifo"
        assert ev.kept == (ev.improvement >= 0.05), ev
        assert ev.baseline.rounds == ev.trial.rounds == 2
        assert ev.baseline.median > 0 and ev.trial.p99 >= ev.trial.median
        policy_changes = [c for c in o.coordination_log() if c.action["kind"] == "set_scheduling_policy"]
        if ev.kept:
            assert policy_changes[0].action == {"kind": "set_scheduling_policy", "from": "critical_path", "to": "fifo"}
        else:
            assert policy_changes == []


def test_evolution_arguments_and_interrupts() -> None:
    with pso.Orchestrator(workers=2) as o:
        o.register("w")
        ok = lambda o: None  # noqa: E731
        with pytest.raises(pso.NotFoundError, match="ghost"):
            o.evolve_coordination(("concurrency_limit", "ghost", 1), ok)
        with pytest.raises(pso.InvalidArgumentError, match="limit"):
            o.evolve_coordination(("concurrency_limit", "w", 0), ok)
        with pytest.raises(pso.InvalidArgumentError, match="'lifo'"):
            o.evolve_coordination(("scheduling_policy", "lifo"), ok)  # type: ignore[arg-type]
        with pytest.raises(pso.InvalidArgumentError, match="change must be"):
            o.evolve_coordination(("workers", 3), ok)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="change must be"):
            o.evolve_coordination("fifo", ok)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            o.evolve_coordination(("scheduling_policy", "fifo"), 3)  # type: ignore[arg-type]
        with pytest.raises(pso.InvalidArgumentError, match="'speed'"):
            o.evolve_coordination(("scheduling_policy", "fifo"), ok, metric="speed")  # type: ignore[arg-type]
        with pytest.raises(pso.InvalidArgumentError, match="rounds"):
            o.evolve_coordination(("scheduling_policy", "fifo"), ok, rounds=0)
        assert o.evolution_log() == []

        # Ctrl-C in the workload ends the trial: the setting is restored and
        # KeyboardInterrupt reaches the caller; later rounds are not called.
        calls = []

        def interrupted(o: pso.Orchestrator) -> None:
            calls.append(1)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            o.evolve_coordination(("concurrency_limit", "w", 3), interrupted, rounds=3)
        assert calls == [1]
        assert o.status("w").concurrency is None, "the setting is restored"
        assert len(o.evolution_log()) == 1
        assert all(c.reverted for c in o.coordination_log())

        async def coro(o: pso.Orchestrator) -> None:
            pass

        with pytest.raises(TypeError, match="awaitable"):
            o.evolve_coordination(("concurrency_limit", "w", 3), coro)
        o.close()
        with pytest.raises(pso.ClosedError):
            o.learn_patterns()
        with pytest.raises(pso.ClosedError):
            o.evolve_coordination(("scheduling_policy", "fifo"), ok)
