"""Coordination (docs/API.md, "Coordination"): coordination_status and its
JSON, the hub settings of `Orchestrator(hub=...)`, automatic promotion with
a low threshold, lifecycle events on pso.lifecycle.*, direct channels closing
on deactivation, minimalist mode (run_minimal, idle deactivation, pinning,
leases counting as use), and SystemStatus.resources_held.

Lifecycle events are queued before the lifecycle call returns, so a pull
subscription can read them right after it; idle deactivations are waited for
through those events."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pso

BOUND = 10.0


@pytest.fixture
def o() -> Iterator[pso.Orchestrator]:
    with pso.Orchestrator(workers=2) as orch:
        yield orch


def topics(sub: pso.Subscription, n: int) -> list[str]:
    return [sub.recv(timeout=BOUND).topic for _ in range(n)]


# --- status -----------------------------------------------------------------


def test_coordination_status_is_typed_and_serializable(o: pso.Orchestrator) -> None:
    o.hub.subscribe("x")  # dropped at once: garbage unsubscribes
    sub = o.hub.subscribe("y")
    st = o.coordination_status()
    assert (st.mode, st.minimalist, st.auto_promote_every) == ("hierarchical", None, None)
    assert (st.direct_pairs, st.meshes, st.edges, st.changes, st.subscriptions) == ([], [], [], [], 1)
    assert st.pair_mode("a", "b") == "hierarchical"
    doc = json.loads(st.to_json())
    assert set(doc) == {
        "mode", "minimalist", "auto_promote_every", "direct_pairs", "meshes", "edges",
        "changes", "subscriptions",
    }
    assert doc["subscriptions"] == 1
    o.hub.open_direct("a", "b", "why not")
    o.hub.demote("a", "b", "enough")
    changes = o.coordination_status().changes
    assert [(c.a, c.b, c.from_, c.to, c.reason) for c in changes] == [
        ("a", "b", "hierarchical", "direct", "why not"),
        ("a", "b", "direct", "hierarchical", "enough"),
    ]
    assert all(c.at.tzinfo is not None for c in changes)
    assert "hierarchical" in repr(o.coordination_status())
    del sub


def test_hub_settings_are_applied_and_checked() -> None:
    with pso.Orchestrator(
        workers=1,
        hub={"queue_capacity": 3, "overflow": "drop_oldest", "direct_capacity": 5, "rate_window": 2.0},
    ) as o:
        st = o.hub.subscribe("a").status()
        assert (st.capacity, st.overflow) == (3, "drop_oldest")
        o.hub.open_direct("a", "b")
        assert o.hub.endpoint("a", "b").capacity == 5
    with pso.Orchestrator(workers=1, hub={"block_timeout": 0.5}) as o:
        st = o.hub.subscribe("a").status()
        assert (st.overflow, st.block_timeout) == ("block", 0.5)
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"queue_capacity": 0}, pso.InvalidArgumentError, "at least 1"),
        ({"queue_capacity": "8"}, TypeError, "must be an int"),
        ({"overflow": "never"}, pso.InvalidArgumentError, "overflow must be"),
        ({"overflow": "error", "block_timeout": 1}, pso.InvalidArgumentError, "block_timeout"),
        ({"promote_threshold": -1}, pso.InvalidArgumentError, "at least 0"),
        ({"rate_window": 0}, pso.InvalidArgumentError, "more than 0"),
        ({"colour": "blue"}, pso.InvalidArgumentError, "unknown setting 'colour'"),
    ]
    for settings, exc, text in bad:
        with pytest.raises(exc, match=text):
            pso.Orchestrator(workers=1, hub=settings)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="hub must be a dict"):
        pso.Orchestrator(workers=1, hub=[("queue_capacity", 1)])  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="auto_promote"):
        pso.Orchestrator(workers=1, auto_promote=0)
    with pytest.raises(pso.InvalidArgumentError, match="idle_timeout"):
        pso.Orchestrator(workers=1, idle_timeout=-1)


# --- automatic promotion ----------------------------------------------------


def test_a_hot_pair_is_promoted_automatically_with_its_reason() -> None:
    with pso.Orchestrator(
        workers=2,
        hub={"promote_threshold": 200.0, "demote_threshold": 1.0, "rate_window": 0.1},
        auto_promote=0.02,
    ) as o:
        assert o.coordination_status().auto_promote_every == pytest.approx(0.02)
        with o.hub.subscribe("orders.*", lambda m: None, owner="PPO", capacity=100_000):
            end = time.monotonic() + BOUND
            while o.coordination_status().pair_mode("PAES", "PPO") != "direct":
                assert time.monotonic() < end, "never promoted"
                for _ in range(50):
                    o.hub.publish("orders.new", 1, sender="PAES")
                time.sleep(0.001)  # pacing the load, not waiting for anything
            st = o.coordination_status()
            change = [c for c in st.changes if c.to == "direct"][-1]
            assert "promotion threshold" in change.reason
            assert (change.a, change.b) == ("PAES", "PPO")
            pair = st.direct_pairs[0]
            assert (pair.origin, pair.mode) == ("promoted", "direct")
            edge = [e for e in st.edges if (e.from_, e.to) == ("PAES", "PPO")][0]
            assert edge.routed > 0 and edge.rate > 0 and edge.mode == "direct"
            # The traffic stops: the pair cools below the demotion threshold.
            end = time.monotonic() + BOUND
            while o.coordination_status().pair_mode("PAES", "PPO") != "hierarchical":
                assert time.monotonic() < end, "never demoted"
                time.sleep(0.01)
        o.set_auto_promote(None)
        assert o.coordination_status().auto_promote_every is None


def test_promote_pairs_applies_the_candidates_now() -> None:
    with pso.Orchestrator(workers=2, hub={"promote_threshold": 1.0, "rate_window": 0.05}) as o:
        assert o.promote_pairs() == 0
        sub = o.hub.subscribe("t", owner="B", capacity=10_000)
        for _ in range(200):
            o.hub.publish("t", 1, sender="A")
        time.sleep(0.01)  # a rate needs time to pass (samples closer than 1 ms are skipped)
        assert o.promote_pairs() == 1
        assert o.coordination_status().pair_mode("A", "B") == "direct"
        o.set_auto_promote(0.5)
        assert o.coordination_status().auto_promote_every == 0.5
        with pytest.raises(pso.InvalidArgumentError):
            o.set_auto_promote(0)
        del sub


# --- lifecycle events and direct channels -----------------------------------


def test_lifecycle_transitions_are_published(o: pso.Orchestrator) -> None:
    def no_config(name: str) -> None:
        raise RuntimeError("no config")

    o.register("db")
    o.register("api", requires=["db"])
    o.register("bad", on_activate=no_config)
    o.register("uses_bad", requires=["bad"])
    events = o.hub.subscribe("pso.lifecycle.>")
    o.activate_system("api")
    m1, m2 = events.recv(timeout=BOUND), events.recv(timeout=BOUND)
    assert (m1.topic, m2.topic) == ("pso.lifecycle.db.activated", "pso.lifecycle.api.activated")
    assert m2.payload == {"system": "api", "event": "activated", "action": "activate", "target": "api"}
    o.deactivate_system("db")
    assert topics(events, 2) == ["pso.lifecycle.api.deactivated", "pso.lifecycle.db.deactivated"]
    with pytest.raises(pso.HandlerError):
        o.activate_system("uses_bad")
    failed, blocked = events.recv(timeout=BOUND), events.recv(timeout=BOUND)
    assert failed.topic == "pso.lifecycle.bad.failed"
    assert "no config" in failed.payload["error"]
    assert (blocked.topic, blocked.payload["target"]) == ("pso.lifecycle.uses_bad.blocked", "uses_bad")
    o.activate_system("api")
    assert topics(events, 2) == ["pso.lifecycle.db.activated", "pso.lifecycle.api.activated"]
    o.activate_system("api")  # already active: nothing published
    assert events.try_recv() is None


def test_a_direct_channel_closes_when_a_side_is_deactivated(o: pso.Orchestrator) -> None:
    o.register("PAES")
    o.register("PPO")
    o.activate_all()
    o.hub.open_direct("PAES", "PPO", "declared for speed")
    paes, ppo = o.hub.endpoint("PAES", "PPO"), o.hub.endpoint("PPO", "PAES")
    paes.send(1)
    assert o.coordination_status().mode == "direct"
    o.deactivate_system("PPO")
    assert paes.closed and ppo.closed
    assert ppo.recv(timeout=BOUND) == 1  # what was sent before still arrives
    with pytest.raises(pso.ClosedError) as e:
        paes.send(2)
    assert getattr(e.value, "value") == 2
    with pytest.raises(pso.ClosedError) as e2:
        ppo.recv(timeout=BOUND)
    assert "PPO deactivated" in getattr(e2.value, "reason")
    st = o.coordination_status()
    assert (st.mode, st.pair_mode("PAES", "PPO")) == ("hierarchical", "hierarchical")


# --- minimalist mode --------------------------------------------------------


def minimal(idle: float) -> pso.Orchestrator:
    o = pso.Orchestrator(workers=2, idle_timeout=idle)
    o.register("store")
    o.register("index", requires=["store"], operations={"search": lambda ctx: ctx.run_input})
    o.register("unrelated")
    o.register("cache", pinned=True)
    return o


def test_run_minimal_activates_only_what_it_needs_and_idle_systems_stop() -> None:
    with minimal(0.08) as o:
        events = o.hub.subscribe("pso.lifecycle.*.deactivated")
        o.activate_system("cache")
        wf = o.workflow("q", [pso.Step("s", "index", "search")])
        with pytest.raises(pso.NotActiveError):
            o.coordinate_systems(wf)
        started = time.monotonic()
        r = o.run_minimal(wf, 7).result(timeout=BOUND)
        assert (r.state, r.output("s")) == ("succeeded", 7)
        active = {s.name for s in o.system_status() if s.state == "Active"}
        assert active == {"store", "index", "cache"}  # not "unrelated"
        st = o.coordination_status()
        assert st.mode == "minimalist"
        assert st.minimalist is not None
        assert (st.minimalist.idle_timeout, st.minimalist.pinned) == (0.08, ["cache"])
        assert {name for name, _ in st.minimalist.idle} == {"store", "index", "cache"}
        # Idle longer than the timeout: deactivated, dependents first.
        assert topics(events, 2) == ["pso.lifecycle.index.deactivated", "pso.lifecycle.store.deactivated"]
        assert time.monotonic() - started >= 0.08
        assert o.status("cache").state == "Active"  # pinned
        # The sweep records its deactivations after the lifecycle events
        # went out: wait for the record too.
        deadline = time.monotonic() + BOUND
        while True:
            m = o.coordination_status().minimalist
            assert m is not None
            if len(m.deactivated) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert [d.system for d in m.deactivated] == ["index", "store"]
        assert all(d.idle_secs >= 0.08 and d.at.tzinfo is not None for d in m.deactivated)
        o.set_idle_timeout(None)
        assert o.coordination_status().minimalist is None


def test_run_minimal_names_the_system_that_failed_to_activate(o: pso.Orchestrator) -> None:
    def disk_full(name: str) -> None:
        raise OSError("disk full")

    o.register("db", on_activate=disk_full)
    o.register("api", requires=["db"], operations={"get": lambda ctx: None})
    wf = o.workflow("w", [pso.Step("g", "api", "get")])
    with pytest.raises(pso.HandlerError, match="activating 'api' failed") as e:
        o.run_minimal(wf)
    assert "disk full" in str(e.value)


def test_pinned_running_and_lease_holding_systems_are_not_idle() -> None:
    with minimal(0.04) as o:
        o.set_idle_timeout(None)  # sweep by hand only
        o.set_capacity("cpu", 4)
        o.activate_system("index")
        o.activate_system("unrelated")
        lease = o.allocate_resources("unrelated", {"cpu": 1})
        assert o.status("unrelated").resources_held == {"cpu": 1}
        assert o.status("index").resources_held == {}
        entered, release = threading.Event(), threading.Event()

        def slow(ctx: pso.StepContext) -> None:
            entered.set()
            release.wait(BOUND)

        o.set_operation("index", "slow", slow)
        run = o.coordinate_systems(o.workflow("long", [pso.Step("s", "index", "slow")]))
        assert entered.wait(BOUND)
        o.set_idle_timeout(0.04)
        time.sleep(0.15)  # longer than the idle timeout: that is what is tested
        assert o.deactivate_idle() == []
        release.set()
        assert run.result(timeout=BOUND).state == "succeeded"
        lease.release()
        assert o.status("unrelated").resources_held == {}
        o.pin_system("store")
        end = time.monotonic() + BOUND
        while o.status("unrelated").state == "Active" or o.status("index").state == "Active":
            assert time.monotonic() < end, "idle systems never stopped"
            time.sleep(0.01)
        assert o.status("store").state == "Active"  # pinned meanwhile
        o.pin_system("store", False)
        with pytest.raises(pso.NotFoundError):
            o.pin_system("ghost")


def test_pinned_can_be_declared_in_register_many(o: pso.Orchestrator) -> None:
    o.register_many([{"name": "a", "pinned": True}, {"name": "b", "pinned": False}, {"name": "c"}])
    o.set_idle_timeout(60)
    m = o.coordination_status().minimalist
    assert m is not None and m.pinned == ["a"]
    with pytest.raises(TypeError, match="pinned must be a bool"):
        o.register_many([{"name": "d", "pinned": "yes"}])  # type: ignore[typeddict-item]
    assert len(o) == 3
