"""Typed use of the public API, checked by `mypy --strict` (scripts/test-python.sh).

Not a pytest module (no test_ prefix): it only has to type-check. Each
`# type: ignore[code]` marks a call the stubs must reject; with --strict
(warn_unused_ignores) an ignore that is not needed fails the check, so the
stubs cannot silently become too loose.
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib
from typing import Any, Literal

import pso


def on_start(system: str) -> None:
    print("starting", system)


def use() -> None:
    with pso.Orchestrator(workers=2, transition_timeout=5.0) as o:
        o.register(
            "db",
            tier="foundation",
            tags=["storage"],
            priority="critical",
            resources={"memory": 512},
            timeout=2.0,
            on_activate=on_start,
            on_deactivate=lambda name: None,
        )
        o.register("api", requires=("db",), wants=[], after=[], conflicts=[], interacts=["db"])
        added: int = o.register_many(
            [{"name": "web", "requires": ["api"]}, {"name": "jobs", "priority": "low"}],
            edges=[("jobs", "wants", "db")],
        )
        o.connect("web", "interacts", "jobs")
        o.set_handlers("web", on_activate=on_start)
        o.load_topology_str('[[systems]]\nname = "x"\n', format="toml")
        path = pathlib.Path("topology.json")
        if path.exists():
            o.load_topology(path)

        report: pso.ActivationReport = o.activate_system("web")
        names: list[str] = report.activated + report.deactivated
        elapsed: float = report.elapsed
        for out in report.outcomes + report.failures:
            line: tuple[str, str, str | None, int, float, float] = (
                out.system, out.outcome, out.error, out.level, out.queued, out.ran
            )
        first: pso.SystemOutcome | None = report.outcome("db")

        status: pso.SystemStatus = o.status("db")
        since: datetime.datetime = status.since
        resources: dict[str, int] = status.resources
        for t in status.history:
            change: tuple[str, str, str, datetime.datetime] = (t.from_, t.to, t.reason, t.at)
        plan: pso.Plan = o.plan("web")
        levels: list[list[str]] = plan.levels
        text: str = o.export("mermaid") + o.why_inactive("jobs")
        count: int = len(o) + o.workers
        everything: list[pso.SystemStatus] = o.system_status()
        o.activate_all()
        o.deactivate_system("db")
        o.deactivate_all()

        try:
            o.activate_system("web")
        except pso.HandlerError as e:
            failed: tuple[pso.ActivationReport, list[str], str] = (e.report, e.chain, e.target)
            cause: BaseException | None = e.__cause__
        except pso.CycleError as e:
            cycle: list[str] = e.path
        except pso.ParseError as e:
            where: tuple[int, int, str] = (e.line, e.column, e.source)
        except pso.ConflictError as e:
            pair: tuple[str, str] = (e.system, e.other)
        except pso.PsoError as e:
            kind: tuple[str, int] = (e.kind, e.code)

        o.register("bad", priority="urgent")  # type: ignore[arg-type]
        o.connect("a", "needs", "b")  # type: ignore[arg-type]
        o.export("svg")  # type: ignore[arg-type]
        o.register(5)  # type: ignore[arg-type]
        o.register("h", on_activate=lambda: None)  # type: ignore[arg-type,misc]
        o.register_many([{"name": "x", "requries": []}])  # type: ignore[typeddict-unknown-key]
        o.status("db").state = "Active"  # type: ignore[misc]
    lookup: LookupError = pso.NotFoundError("x")
    timeout: TimeoutError = pso.TimeoutError("x")
    oserror: OSError = pso.IoError("x")


def collect(ctx: pso.StepContext) -> int:
    step: str = ctx.step
    where: tuple[str | None, str | None, int, int] = (ctx.system, ctx.op, ctx.attempt, ctx.run_id)
    stop: bool = ctx.cancelled
    base: int = ctx.run_input
    named: dict[str, Any] = ctx.inputs
    whole: Any = ctx.input
    return base + 1


def fan(ctx: pso.StepContext) -> None:
    ctx.fan_out([pso.Child(collect, 1), pso.Child(lambda c: c.input * 2, {"k": [1, 2]})])
    ctx.fan_out([ctx.child_op("PDT", "collect", 3), ctx.child_op("PDT", "collect")])


def workflows() -> None:
    with pso.Orchestrator(workers=2) as o:
        o.register("PDT", operations={"collect": collect}, concurrency=4)
        o.register_many([{"name": "PKM", "operations": {"index": fan}, "concurrency": None}])
        o.set_operation("PKM", "search", lambda ctx: [ctx.input, None, 1.5, b"x", True])
        o.set_concurrency_limit("PKM", 2)
        o.set_concurrency_limit("PKM", None)
        o.activate_all()
        steps = [
            pso.Step("collect", "PDT", "collect"),
            pso.Step("double", fn=lambda ctx: ctx.inputs["n"] * 2, inputs={"n": "collect"}),
            pso.Step("fan", fn=fan, after=["double"], retries=2, backoff=0.1, max_backoff=1.0),
            pso.Step("gated", system="PKM", op="search", when="double", timeout=5.0),
            pso.Step("pred", fn=collect, when=lambda ctx: ctx.attempt == 1, priority="high"),
        ]
        wf: pso.Workflow = o.workflow("pipeline", steps)
        names: list[str] = wf.step_names + wf.systems + [wf.name]
        size: int = len(wf)
        wf2: pso.Workflow = o.load_workflow_str('name = "w"', format="toml")
        wf3: pso.Workflow = o.load_workflow(pathlib.Path("release.json"))

        run: pso.Run = o.coordinate_systems(wf, {"rows": [1, 2], "tag": "x"}, deadline=30.0, timing=False)
        ident: tuple[int, str, bool] = (run.id, run.workflow, run.done)
        progress: pso.RunProgress = run.progress()
        state: str = progress.state
        unfinished: int = progress.counts.unfinished
        cancelled: bool = run.cancel()
        try:
            result: pso.RunResult = run.result(timeout=1.5)
        except pso.TimeoutError:
            result = run.result()
        ok: bool = result.ok and result.state == "succeeded"
        counts: pso.StepCounts = result.counts
        total: int = counts.accepted - counts.terminal + counts.skipped + counts.timed_out
        out: Any = result.output("double") + result.outputs["collect"]
        why: str | None = result.error("fan")
        for rec in result.steps + [result.step("fan[0]")]:
            row: tuple[str, str | None, str | None, str, str | None, int, float, float, int | None, str | None] = (
                rec.name, rec.system, rec.operation, rec.state, rec.error, rec.attempts,
                rec.queued, rec.ran, rec.worker, rec.parent,
            )
        text: str = result.to_json()
        seconds: float = result.elapsed
        for e in o.estimates():
            est: tuple[str, float, float, int] = (e.key, e.mean, e.stddev, e.samples)

        async def main() -> pso.RunResult:
            return await o.coordinate_systems(wf, 1)

        awaited: pso.RunResult = asyncio.run(main())

        pso.Step("s", fn=collect, retries="2")  # type: ignore[arg-type]
        pso.Step("s", fn=collect, priority="urgent")  # type: ignore[arg-type]
        pso.Step("s", fn=lambda: 1)  # type: ignore[arg-type,misc]
        o.coordinate_systems(wf, {1: "x"})  # type: ignore[dict-item]
        o.coordinate_systems(wf, {"s": {1, 2}})  # type: ignore[dict-item]
        o.register("x", operations={"a": 5})  # type: ignore[dict-item]
        o.workflow("w", [{"name": "a"}])  # type: ignore[list-item]
        o.load_workflow_str("", format="yaml")  # type: ignore[arg-type]
        result.state = "failed"  # type: ignore[misc]


def resources() -> None:
    with pso.Orchestrator(
        workers=2, resource_aging_step=0.5, preemption_grace=0.1, idle_lease_after=30.0
    ) as o:
        o.register("trainer")
        o.register("loader")
        o.set_capacity("gpu", 4)
        o.set_capacity("memory", 8192)
        o.set_group_quota("ml", "gpu", 3)
        o.set_group_quota("ml", "gpu", None)
        o.set_resource_weight("trainer", 2.0)

        lease: pso.Lease = o.allocate_resources(
            "trainer", {"gpu": 2, "memory": 1024}, priority="high", group="ml",
            preemptible=True, ttl=60.0, wait=5.0,
        )
        facts: tuple[int, str, dict[str, int], bool, float | None] = (
            lease.id, lease.system, lease.amounts, lease.held, lease.expires_in
        )
        lease.touch()

        def on_preempt(notice: pso.PreemptNotice) -> None:
            seen: tuple[int, str, float] = (notice.lease, notice.system, notice.grace)

        lease.on_preempt(on_preempt)
        lease.on_preempt(lambda notice: None)
        released: bool = lease.release()
        with o.allocate_resources("loader", {"memory": 512}) as held:
            still: bool = held.held

        gang: list[pso.Lease] = o.allocate_gang([
            pso.ResourceRequest("trainer", {"gpu": 2}, priority="critical", wait=1.0),
            pso.ResourceRequest("loader", {"memory": 256}, group="ml", ttl=10),
        ])
        req = pso.ResourceRequest("trainer", {"gpu": 1})
        parts: tuple[str, dict[str, int], str, str | None, bool, float | None, float | None] = (
            req.system, req.amounts, req.priority, req.group, req.preemptible, req.ttl, req.wait
        )

        async def main() -> pso.Lease:
            return await o.allocate_resources_async("trainer", {"gpu": 1}, wait=2.5)

        got: pso.Lease = asyncio.run(main())

        o.set_step_resources("trainer", {"gpu": 1}, priority="low", wait=10.0)
        o.set_step_resources("trainer", None)

        st: pso.ResourceStatus = o.resource_status()
        for d in st.dimensions:
            dim: tuple[str, int, int, int] = (d.name, d.capacity, d.allocated, d.free)
        for g in st.groups:
            grp: tuple[str, dict[str, int], dict[str, int]] = (g.name, g.quota, g.allocated)
        for ls in st.leases:
            row: tuple[int, str, str | None, dict[str, int], str, bool, float, float, float | None, bool] = (
                ls.id, ls.system, ls.group, ls.amounts, ls.priority, ls.preemptible,
                ls.age, ls.idle, ls.ttl_remaining, ls.revoking,
            )
        for w in st.waiters:
            wrow: tuple[list[str], dict[str, int], str, str, float, int, str] = (
                w.systems, w.amounts, w.priority, w.effective_priority, w.waited, w.ahead, w.reason
            )
        gpu: pso.DimensionStatus | None = st.dimension("gpu")
        text: str = st.to_json()

        plan: pso.ResourcePlan = o.optimize_resources(apply=True)
        applied: bool = plan.applied
        for action in plan.actions:
            if action["action"] == "reclaim_idle":
                idle: float = action["idle_secs"]
            elif action["action"] == "rebalance":
                share: float = action["share"] + action["their_share"]
                favoured: str = action["in_favor_of"]
            elif action["action"] == "resize_concurrency":
                change: tuple[str, int, int, str] = (
                    action["system"], action["from"], action["to"], action["reason"]
                )
            else:
                expired: tuple[int, str] = (action["lease"], action["system"])
        plan_text: str = o.optimize_resources().to_json()

        try:
            o.allocate_resources("trainer", {"gpu": 99})
        except pso.ExceedsCapacityError as e:
            over: tuple[str, str, int, int] = (e.system, e.dimension, e.requested, e.capacity)
        except pso.ExceedsQuotaError as e:
            quota: tuple[str, str, int, int] = (e.group, e.dimension, e.requested, e.quota)
        except pso.CancelledError as e:
            code: int = e.code
        except (pso.NoRespondersError, pso.QueueOverflowError, pso.CasConflictError, pso.CompactedError):
            pass

        o.allocate_resources("trainer", {"gpu": 1}, priority="urgent")  # type: ignore[arg-type]
        o.allocate_resources("trainer", {"gpu": 1.5})  # type: ignore[dict-item]
        o.allocate_resources("trainer", gpu=1)  # type: ignore[call-arg]
        o.allocate_gang([("trainer", {"gpu": 1})])  # type: ignore[list-item]
        lease.on_preempt(lambda: None)  # type: ignore[arg-type,misc]
        st.dimensions = []  # type: ignore[misc]
        lease_id: int = plan.actions[0]["lease"]  # type: ignore[typeddict-item]


def use_coordination() -> None:
    with pso.Orchestrator(
        workers=2,
        hub={"queue_capacity": 256, "overflow": "drop_oldest", "promote_threshold": 5000.0},
        auto_promote=1.0,
        idle_timeout=30.0,
    ) as o:
        o.register("PAES", pinned=True)
        o.register_many([{"name": "PPO", "pinned": False}])
        hub: pso.Hub = o.hub
        delivered: int = hub.publish("engine.build.done", {"ok": True, "n": [1, 2]}, sender="PAES")

        def on_message(m: pso.Message) -> None:
            fields: tuple[str, Any, str | None, bool] = (m.topic, m.payload, m.sender, m.is_request)
            if m.is_request:
                took: bool = m.reply({"echo": m.payload})

        async def on_message_async(m: pso.Message) -> None:
            await asyncio.sleep(0)

        with hub.subscribe("engine.*.done", on_message, capacity=64, overflow="block", block_timeout=0.5,
                           group="g", owner="PPO") as sub:
            status: pso.SubscriptionStatus = sub.status()
            counters: tuple[int, str, str | None, str | None, str, int, int, str, float | None, int, int, int, bool] = (
                status.id, status.pattern, status.group, status.owner, status.kind, status.queue_len,
                status.capacity, status.overflow, status.block_timeout, status.delivered, status.dropped,
                status.errors, status.closed,
            )
        async_sub = hub.subscribe("x", on_message_async)
        live: bool = async_sub.unsubscribe()
        pull = hub.subscribe("engine.>")
        first: pso.Message = pull.recv(timeout=1.0)
        maybe: pso.Message | None = pull.try_recv()
        for m in pull:
            break
        reply: pso.Message = hub.request("math.double", 21, 2.0, sender="PAES")
        replies: list[pso.Message] = hub.request_many("census", None, timeout=0.5, max=3, quiet=0.1)
        every: list[pso.SubscriptionStatus] = hub.subscriptions()
        gone: bool = hub.unsubscribe(every[0].id)

        async def main() -> None:
            r: pso.Message = await hub.request_async("math.double", 1)
            async for m in pull:
                break
            with o.state.watch("k") as w:
                async for ev in w:
                    break

        asyncio.run(main())

        hub.open_direct("PAES", "PPO", "declared")
        end: pso.DirectEnd = hub.endpoint("PAES", "PPO")
        end.send([1, 2], timeout=1.0)
        sent: bool = end.try_send(None)
        value: Any = end.recv(timeout=0.5)
        other: Any = end.try_recv(default=...)
        facts: tuple[str, str, int, bool] = (end.system, end.peer, end.capacity, end.closed)
        end.close()
        hub.promote("a", "b", "hot")
        hub.demote("a", "b")
        hub.close_direct("a", "b", reason="done")
        with hub.mesh(["a", "b", "c"]) as mesh:
            ab: pso.DirectEnd = mesh.endpoint("a", "b")
            members: list[str] = mesh.systems

        cs: pso.CoordinationStatus = o.coordination_status()
        mode: str = cs.mode
        pair_mode: str = cs.pair_mode("a", "b")
        every_s: float | None = cs.auto_promote_every
        for p in cs.direct_pairs:
            prow: tuple[str, str, str, str, str, datetime.datetime, int, tuple[bool, bool], int | None] = (
                p.a, p.b, p.mode, p.origin, p.reason, p.since, p.sent_ab, p.endpoints_taken, p.mesh
            )
        for ms in cs.meshes:
            mrow: tuple[int, list[str], datetime.datetime] = (ms.id, ms.systems, ms.since)
        for e in cs.edges:
            erow: tuple[str, str, float, int, int, str] = (e.from_, e.to, e.rate, e.routed, e.direct, e.mode)
        for c in cs.changes:
            crow: tuple[str, str, str, str, str, datetime.datetime] = (c.a, c.b, c.from_, c.to, c.reason, c.at)
        if cs.minimalist is not None:
            mini: tuple[float, list[str], list[tuple[str, float]]] = (
                cs.minimalist.idle_timeout, cs.minimalist.pinned, cs.minimalist.idle
            )
            for d in cs.minimalist.deactivated:
                drow: tuple[str, float, datetime.datetime] = (d.system, d.idle_secs, d.at)
        json_text: str = cs.to_json()

        o.set_auto_promote(None)
        o.set_auto_promote(0.5)
        changed: int = o.promote_pairs()
        o.set_idle_timeout(10.0)
        stopped: list[str] = o.deactivate_idle()
        o.pin_system("PPO")
        o.pin_system("PPO", False)
        wf = o.workflow("w", [pso.Step("s", fn=lambda ctx: None)])
        run: pso.Run = o.run_minimal(wf, {"x": 1}, deadline=5.0, timing=False)
        held: dict[str, int] = o.status("PAES").resources_held

        st: pso.StateStore = o.state
        rev: int = st.put("model.version", 1, writer="PAES")
        entry: pso.Entry | None = st.get("model.version")
        if entry is not None:
            erow2: tuple[str, Any, int, str | None, datetime.datetime] = (
                entry.key, entry.value, entry.revision, entry.writer, entry.timestamp
            )
        listed: list[pso.Entry] = st.list("model.")
        now: int = st.revision
        deleted: int | None = st.delete("model.version")
        try:
            st.compare_and_set("model.version", rev, 2)
        except pso.CasConflictError as conflict:
            current: pso.Entry | None = conflict.current
            current_rev: int = conflict.revision
        st.compare_and_delete("model.version", 3)
        new_rev: int = st.update("counter", lambda v: (v or 0) + 1, writer="PPO")
        watcher: pso.Watcher = st.watch("jobs.", prefix=True, from_revision=now)
        ev: pso.Event = watcher.recv(timeout=1.0)
        erow3: tuple[int, str, Any, bool, str | None, datetime.datetime] = (
            ev.revision, ev.key, ev.value, ev.is_delete, ev.writer, ev.timestamp
        )
        nxt: pso.Event | None = watcher.try_recv()
        for ev2 in watcher:
            break
        watcher.close()
        info: pso.SnapshotInfo = st.snapshot(pathlib.Path("state.json"))
        irow: tuple[pathlib.Path, int, int, int] = (info.path, info.revision, info.entries, info.bytes)
        st.restore("state.json")
        try:
            st.watch("k", from_revision=1)
        except pso.CompactedError as c2:
            lost: tuple[int, int] = (c2.requested, c2.oldest)
        except pso.NoRespondersError as nr:
            t: str = nr.topic
        except pso.QueueOverflowError as qo:
            qrow: tuple[str, int, str, int, bool, int] = (
                qo.topic, qo.subscription, qo.pattern, qo.capacity, qo.timed_out, qo.delivered
            )

        hub.subscribe("x", overflow="sometimes")  # type: ignore[arg-type]
        hub.publish("x", object())  # type: ignore[arg-type]
        hub.subscribe("x", lambda: None)  # type: ignore[arg-type,misc]
        hub.request_many("x", 1)  # type: ignore[call-arg]
        pso.Orchestrator(hub={"queue_capacity": "big"})  # type: ignore[arg-type]
        st.put("k", {1: 2})  # type: ignore[dict-item]
        cs.mode = "mesh"  # type: ignore[misc]


def probe(system: str) -> tuple[Literal["degraded"], str] | pso.HealthReport:
    return ("degraded", "slow") if system == "db" else pso.HealthReport.healthy()


def supervision_and_intelligence() -> None:
    clock = pso.VirtualClock()
    with pso.Orchestrator(clock=clock, flap_threshold=4, flap_window=20.0, alert_interval=0) as o:
        check = pso.HealthCheck(probe, interval=1.0, timeout=0.5, failures_before_unhealthy=2, watchdog=None)
        sup = pso.Supervision(
            "on_failure",
            strategy="rest_for_one",
            backoff=1.0,
            max_backoff=8.0,
            jitter=False,
            reset_after=30.0,
            max_restarts=3,
            within=60.0,
        )
        o.register("db", health=check, supervise=sup)
        o.register_many([{"name": "api", "health": pso.HealthCheck(watchdog=5.0), "supervise": None}])
        o.set_health_check("db", pso.HealthCheck(lambda s: "healthy"))
        o.set_health_check("db", None)
        o.set_supervision("db", pso.Supervision("always"))
        o.check_in("api")
        o.report_failure("db", "segfault")
        clock.advance(1.5)
        elapsed: float = clock.elapsed
        pending: int = clock.pending
        st = o.status("db")
        state: Literal["GaveUp", "Active", "Failed"] | str = st.state
        if st.health is not None:
            hrow: tuple[str, str, int, int, float | None, bool] = (
                st.health.status, st.health.detail, st.health.consecutive_failures,
                st.health.probes, st.health.since_check_in, st.health.flapping,
            )
        if st.supervision is not None:
            srow: tuple[str, str, int, int, int, float | None, int, bool] = (
                st.supervision.policy, st.supervision.strategy, st.supervision.restarts,
                st.supervision.recent_failures, st.supervision.failures_left,
                st.supervision.next_attempt_in, st.supervision.attempt, st.supervision.gave_up,
            )
        report: pso.HealthReport = pso.HealthReport("unhealthy", "down")
        same: bool = report == pso.HealthReport.unhealthy("down")

        p: pso.Patterns = o.learn_patterns()
        for op in p.operations:
            orow: tuple[str, float, float, int, int, int, float] = (
                op.key, op.mean, op.stddev, op.samples, op.recent_steps, op.recent_failures, op.failure_rate
            )
        erow: list[tuple[str, str, float, int]] = [(e.from_, e.to, e.rate, e.messages) for e in p.edges]
        crow: list[tuple[str, str, int]] = [(c.a, c.b, c.together) for c in p.co_activation]
        o.snapshot("snap.json")
        o.restore(pathlib.Path("snap.json"))
        i: pso.Insights = o.coordination_insights()
        paths: list[list[tuple[str, float]]] = [cp.steps for cp in i.critical_paths]
        waits: list[float] = [c.waiting for c in i.contributors] + [c.longest_wait for c in i.contention]
        names: list[str] = i.unhealthy + i.flapping + i.gave_up
        for r in o.optimization_recommendations():
            a = r.action
            if a["kind"] == "promote_to_direct":
                pair: tuple[str, str] = (a["a"], a["b"])
            elif a["kind"] == "set_concurrency_limit":
                limit: int | None = a["to"]
            elif a["kind"] == "pre_activate":
                systems: list[str] = a["systems"]
            rrow: tuple[str, str, str, float, int] = (r.target, r.evidence, r.expected_gain, r.confidence, r.samples)
        plan: pso.CoordinationPlan = o.optimize_coordination(True, min_samples=10, min_confidence=0.5, idle_after=60.0)
        skipped: list[tuple[pso.Recommendation, str]] = plan.skipped
        for ch in plan.changes + o.coordination_log():
            crow2: tuple[int, str, bool, str | None] = (ch.id, ch.reason, ch.reverted, ch.error)
            undone: pso.Change = o.revert_change(ch.id)

        def workload(orch: pso.Orchestrator) -> None:
            orch.system_status()

        ev: pso.Evolution = o.evolve_coordination(("scheduling_policy", "fifo"), workload, rounds=3, metric="p99", margin=0.1)
        o.evolve_coordination(("concurrency_limit", "db", None), workload)
        arms: tuple[int, float, float, float] = (ev.trial.rounds, ev.trial.median, ev.trial.p99, ev.baseline.error_rate)
        kept: bool = ev.kept and ev.improvement > 0
        log: list[pso.Evolution] = o.evolution_log()

        pso.HealthReport("ok")  # type: ignore[arg-type]
        pso.Supervision("sometimes")  # type: ignore[arg-type]
        pso.HealthCheck(lambda s: 1)  # type: ignore[arg-type,return-value]
        o.evolve_coordination(("scheduling_policy", "lifo"), workload)  # type: ignore[arg-type]
        o.evolve_coordination(("concurrency_limit", "db"), workload)  # type: ignore[arg-type]
        o.optimize_coordination(min_confidence="high")  # type: ignore[arg-type]
        pso.Orchestrator(clock=clock.elapsed)  # type: ignore[arg-type]


def metrics() -> None:
    with pso.Orchestrator(metrics=True, latency_sample_every=16, max_topics=64, utilization_interval=0.5,
                          utilization_intervals=10) as o:
        m: pso.PerformanceMetrics = o.performance_metrics()
        ops: list[dict[str, Any]] = m["operations"]
        one: dict[str, Any] | None = m.operation("PAT.parse") or m.system("PAT") or m.edge("a", "b")
        other: dict[str, Any] | None = m.topic("t") or m.resource("gpu")
        keys: list[str] = m.keys()
        text: str = m.to_json() + m.to_prometheus()
        enabled: bool = o.metrics_enabled and "enabled" in m and len(m) > 0
        o.metrics_enabled = False
        o.set_metrics_enabled(True)
        o.reset_metrics()
        for key in m:
            value: Any = m.get(key, None)
        o.metrics_enabled = "yes"  # type: ignore[assignment]
        pso.Orchestrator(metrics="on")  # type: ignore[arg-type]
