"""Performance metrics from Python: the dict-like snapshot and its lookups,
JSON and Prometheus text, switching recording off and on, resetting, the
constructor's settings, and probe results counted on a virtual clock."""

from __future__ import annotations

import json
from typing import Literal

import pytest

import pso


def ok(ctx: pso.StepContext) -> None:
    pass


def test_the_snapshot_counts_steps_transitions_edges_topics_and_resources() -> None:
    with pso.Orchestrator(workers=2, latency_sample_every=1) as o:
        o.register("PAT", operations={"parse": ok})
        o.register("PUI")
        o.activate_all()
        wf = o.workflow("w", [pso.Step("p", "PAT", "parse")])
        assert o.coordinate_systems(wf).result(timeout=30).ok
        with o.hub.subscribe("ui.>", lambda m: None, owner="PUI"):
            for _ in range(3):
                o.hub.publish("ui.update", {"n": 1}, sender="PAT")
            o.set_capacity("gpu", 2)
            with o.allocate_resources("PAT", {"gpu": 1}):
                m = o.performance_metrics()
        assert o.metrics_enabled and m["enabled"] is True
        assert m["latency_sample_every"] == 1
        parse = m.operation("PAT.parse")
        assert parse is not None and parse["system"] == "PAT"
        assert (parse["succeeded"], parse["failed"], parse["run_time"]["count"]) == (1, 0, 1)
        assert parse["queue_wait"]["count"] == 1 and parse["run_time"]["max"] >= parse["run_time"]["p50"] >= 0
        pat = m.system("PAT")
        assert pat is not None and pat["transitions"]["active"] == 1
        assert pat["leases"]["granted"] == 1 and pat["leases"]["held"] == 1
        edge = m.edge("PAT", "PUI")
        assert edge is not None and edge["published"] == 3
        topic = m.topic("ui.update")
        assert topic is not None and topic["published"] == 3
        gpu = m.resource("gpu")
        assert gpu is not None and (gpu["capacity"], gpu["allocated"]) == (2, 1)
        assert m.operation("PAT.nope") is None and m.system("ghost") is None
        assert m.edge("PUI", "PAT") is None and m.topic("nope") is None and m.resource("cpu") is None
        # Dict-like.
        keys = m.keys()
        assert {"operations", "systems", "edges", "topics", "hub_share", "resources", "since", "taken"} <= set(keys)
        assert list(m) == keys and len(m) == len(keys) and "systems" in m and "nope" not in m
        assert [k for k, _ in m.items()] == keys and len(m.values()) == len(keys)
        assert m.get("nope") is None and m.get("nope", 3) == 3
        with pytest.raises(KeyError):
            m["nope"]
        assert m["systems"][0] == pat, "lookups return what indexing does"
        # JSON and Prometheus text.
        assert json.loads(m.to_json())["operations"][0]["operation"] == "PAT.parse"
        text = m.to_prometheus()
        assert 'pso_operation_steps_total{operation="PAT.parse",state="succeeded"} 1' in text
        assert repr(m).startswith("<pso.PerformanceMetrics enabled=True operations=1 systems=2")


def test_recording_switches_off_and_on_and_resets() -> None:
    with pso.Orchestrator(workers=2) as o:
        o.register("PAT", operations={"parse": ok})
        o.activate_all()
        wf = o.workflow("w", [pso.Step("p", "PAT", "parse")])

        def succeeded() -> int:
            op = o.performance_metrics().operation("PAT.parse")
            return 0 if op is None else int(op["succeeded"])

        o.coordinate_systems(wf).result(timeout=30)
        assert succeeded() == 1
        o.metrics_enabled = False
        assert not o.metrics_enabled and o.performance_metrics()["enabled"] is False
        o.coordinate_systems(wf).result(timeout=30)
        assert succeeded() == 1, "not recorded while off; kept readable"
        o.set_metrics_enabled(True)
        o.coordinate_systems(wf).result(timeout=30)
        assert succeeded() == 2
        o.reset_metrics()
        m = o.performance_metrics()
        assert m.operation("PAT.parse") is None, "series with nothing since the reset are left out"
        pat = m.system("PAT")
        assert pat is not None and pat["transitions"]["active"] == 0
        with pytest.raises(TypeError):
            o.metrics_enabled = "yes"  # type: ignore[assignment]
        o.close()
        with pytest.raises(pso.ClosedError):
            o.performance_metrics()
        with pytest.raises(pso.ClosedError):
            o.reset_metrics()


def test_constructor_settings_are_validated() -> None:
    with pso.Orchestrator(workers=1, metrics=False) as o:
        assert not o.metrics_enabled
    with pso.Orchestrator(workers=1, max_topics=1, utilization_interval=0.5, utilization_intervals=10) as o:
        o.hub.publish("a", 1)
        o.hub.publish("b", 1)
        m = o.performance_metrics()
        assert m["max_topics"] == 1 and m.topic("<other>") is not None
    with pytest.raises(pso.InvalidArgumentError, match="utilization"):
        pso.Orchestrator(utilization_interval=0)
    with pytest.raises(pso.InvalidArgumentError, match="utilization"):
        pso.Orchestrator(utilization_intervals=0)
    with pytest.raises(TypeError, match="metrics"):
        pso.Orchestrator(metrics=1)  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="latency_sample_every"):
        pso.Orchestrator(latency_sample_every=-1)


def test_probe_results_and_restarts_are_counted() -> None:
    clock = pso.VirtualClock()
    with pso.Orchestrator(workers=2, clock=clock, alert_interval=0) as o:
        answers: list[Literal["healthy", "unhealthy"]] = ["healthy", "healthy", "unhealthy"]

        def probe(system: str) -> Literal["healthy", "unhealthy"]:
            return answers.pop(0) if answers else "healthy"

        o.register(
            "db",
            health=pso.HealthCheck(probe, interval=1, failures_before_unhealthy=1),
            supervise=pso.Supervision(backoff=1, max_backoff=1, jitter=False),
        )
        o.activate_system("db")
        clock.advance(3)  # healthy, healthy, unhealthy: restart due in 1 s
        clock.advance(1)
        db = o.performance_metrics().system("db")
        assert db is not None
        assert db["probes"]["healthy"] >= 2 and db["probes"]["unhealthy"] == 1
        assert db["probe_latency"]["count"] >= 3 and db["restarts"] == 1
