"""Health probes written in Python, watchdogs, supervision (policies,
strategies, backoff, restart intensity, GaveUp), flapping and alerts on the
hub, all on a virtual clock: deterministic, nothing sleeps. Plus argument
checking and one real-time probe."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Literal

import pytest

import pso


@pytest.fixture
def clock() -> pso.VirtualClock:
    return pso.VirtualClock()


@pytest.fixture
def vorch(clock: pso.VirtualClock) -> Iterator[pso.Orchestrator]:
    """An orchestrator on a virtual clock, alerts not deduplicated."""
    with pso.Orchestrator(workers=2, clock=clock, alert_interval=0) as o:
        yield o


_Strategy = Literal["one_for_one", "rest_for_one", "one_for_all"]


def sup(strategy: _Strategy = "one_for_one", max_restarts: int = 3) -> pso.Supervision:
    """On failure, backoff 1 s doubling to 8 s without jitter, give up after
    `max_restarts` failures within 60 s, reset after 30 s up."""
    return pso.Supervision(
        "on_failure",
        strategy=strategy,
        backoff=1.0,
        max_backoff=8.0,
        jitter=False,
        max_restarts=max_restarts,
        within=60.0,
        reset_after=30.0,
    )


def healthy(system: str) -> Literal["healthy"]:
    return "healthy"


class Counter:
    """An activate handler counting its calls."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def __call__(self, system: str) -> None:
        with self._lock:
            self.n += 1


def alerts(sub: pso.Subscription) -> list[str]:
    """`<system>.<kind>` of the alerts received so far."""
    out = []
    while (m := sub.try_recv()) is not None:
        out.append(m.topic.removeprefix("pso.alert."))
    return out


def test_options_are_validated_and_shown() -> None:
    check = pso.HealthCheck(healthy, interval=2, failures_before_unhealthy=2)
    assert (check.interval, check.timeout, check.failures_before_unhealthy) == (2.0, 5.0, 2)
    assert check.successes_before_healthy == 1 and check.watchdog is None
    assert "interval=2.0" in repr(check)
    assert pso.HealthCheck(watchdog=3).probe is None
    with pytest.raises(pso.InvalidArgumentError, match="probe or a watchdog"):
        pso.HealthCheck()
    with pytest.raises(pso.InvalidArgumentError, match="interval"):
        pso.HealthCheck(healthy, interval=0)
    with pytest.raises(pso.InvalidArgumentError, match="failures_before_unhealthy"):
        pso.HealthCheck(healthy, failures_before_unhealthy=0)
    with pytest.raises(TypeError, match="probe"):
        pso.HealthCheck(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bool"):
        pso.HealthCheck(watchdog=True)

    s = pso.Supervision()
    assert (s.policy, s.strategy, s.backoff, s.max_backoff) == ("on_failure", "one_for_one", 0.1, 30.0)
    assert (s.jitter, s.reset_after, s.max_restarts, s.within) == (True, 60.0, 5, 60.0)
    assert repr(sup(strategy="rest_for_one")).startswith("Supervision(policy='on_failure', strategy='rest_for_one'")
    with pytest.raises(pso.InvalidArgumentError, match="'sometimes'"):
        pso.Supervision("sometimes")  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="'one_for_some'"):
        pso.Supervision(strategy="one_for_some")  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="max_backoff"):
        pso.Supervision(backoff=10, max_backoff=1)
    with pytest.raises(pso.InvalidArgumentError, match="within"):
        pso.Supervision(within=0)

    r = pso.HealthReport("degraded", "slow disk")
    assert (r.status, r.detail) == ("degraded", "slow disk")
    assert r == pso.HealthReport.degraded("slow disk") != pso.HealthReport.healthy()
    assert repr(r) == "HealthReport(status='degraded', detail='slow disk')"
    with pytest.raises(pso.InvalidArgumentError, match="'ok'"):
        pso.HealthReport("ok")  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="VirtualClock"):
        pso.Orchestrator(clock=object())  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="flap_threshold"):
        pso.Orchestrator(flap_threshold=0)


def test_bad_systems_and_arguments_get_typed_errors(vorch: pso.Orchestrator) -> None:
    vorch.register("a")
    with pytest.raises(pso.NotFoundError, match="ghost"):
        vorch.set_health_check("ghost", pso.HealthCheck(watchdog=1))
    with pytest.raises(pso.NotFoundError, match="ghost"):
        vorch.set_supervision("ghost", pso.Supervision())
    with pytest.raises(pso.NotFoundError, match="ghost"):
        vorch.check_in("ghost")
    with pytest.raises(pso.NotFoundError, match="ghost"):
        vorch.report_failure("ghost", "boom")
    with pytest.raises(pso.InvalidArgumentError, match="not Active"):
        vorch.report_failure("a", "boom")
    with pytest.raises(TypeError, match="pso.HealthCheck"):
        vorch.set_health_check("a", "healthy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="supervise"):
        vorch.register("b", supervise="on_failure")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"systems\[0\].health"):
        vorch.register_many([{"name": "c", "health": 1}])  # type: ignore
    assert len(vorch) == 1, "nothing registered"
    with pytest.raises(pso.InvalidArgumentError, match="seconds"):
        pso.VirtualClock().advance(-1)
    vorch.close()
    with pytest.raises(pso.ClosedError):
        vorch.check_in("a")


def test_an_unhealthy_system_is_restarted_after_its_backoff(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    up = True
    calls: list[str] = []

    def probe(system: str) -> pso.HealthReport:
        calls.append(system)
        return pso.HealthReport.healthy() if up else pso.HealthReport.unhealthy("connection refused")

    starts = Counter()
    vorch.register(
        "db",
        on_activate=starts,
        health=pso.HealthCheck(probe, interval=1, failures_before_unhealthy=2),
        supervise=sup(),
    )
    sub = vorch.hub.subscribe("pso.alert.>")
    vorch.activate_system("db")
    clock.advance(3)
    st = vorch.status("db")
    assert st.health is not None and st.health.probes == 3 and calls == ["db"] * 3
    assert st.health.status == "healthy"
    assert st.supervision is not None and st.supervision.policy == "on_failure"
    up = False
    clock.advance(1)  # one failure: not yet unhealthy
    h = vorch.status("db").health
    assert h is not None and (h.status, h.consecutive_failures) == ("healthy", 1)
    clock.advance(1)  # two: unhealthy, restart in 1 s
    st = vorch.status("db")
    assert st.health is not None and st.health.status == "unhealthy"
    assert st.health.detail == "connection refused"
    assert st.supervision is not None and st.supervision.next_attempt_in == 1.0
    assert alerts(sub) == ["db.unhealthy", "db.restarting"]
    clock.advance(1)
    up = True
    assert starts.n == 2, "restarted once"
    st = vorch.status("db")
    assert st.state == "Active"
    assert st.health is not None and st.health.status == "healthy", "starts over healthy"
    sv = st.supervision
    assert sv is not None
    assert (sv.restarts, sv.recent_failures, sv.failures_left, sv.next_attempt_in) == (1, 1, 3, None)
    assert "restarts=1" in repr(sv)
    assert alerts(sub) == ["db.restarted"]


def test_probe_results_of_every_shape_and_exceptions(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    answers: list[object] = [
        pso.HealthReport.degraded("queue depth 1200"),
        ("degraded", None),
        "healthy",
        "sideways",
        42,
    ]

    def probe(system: str) -> object:
        if not answers:
            raise RuntimeError("db is down")
        return answers.pop(0)

    vorch.register("x", health=pso.HealthCheck(probe, interval=1, failures_before_unhealthy=1))  # type: ignore[arg-type]

    def health() -> pso.HealthInfo:
        h = vorch.status("x").health
        assert h is not None
        return h

    vorch.activate_system("x")
    clock.advance(1)
    assert (health().status, health().detail) == ("degraded", "queue depth 1200")
    clock.advance(1)
    assert (health().status, health().detail) == ("degraded", "")
    clock.advance(1)
    assert health().status == "healthy"
    clock.advance(1)  # an unknown status is a failed probe that says why
    assert health().status == "unhealthy" and "unknown status 'sideways'" in health().detail
    clock.advance(1)
    assert health().status == "unhealthy" and "returned a 'int'" in health().detail
    clock.advance(1)  # an exception: its type and message are the detail
    assert health().status == "unhealthy"
    assert "RuntimeError" in health().detail and "db is down" in health().detail
    assert health().probes == 6
    assert vorch.status("x").state == "Active", "not supervised: stays up"
    assert vorch.coordination_insights().unhealthy == ["x"]


def test_too_many_failures_give_up_with_growing_backoff(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    starts = Counter()
    vorch.register("flaky", on_activate=starts, supervise=sup())
    sub = vorch.hub.subscribe("pso.>")
    vorch.activate_system("flaky")
    delays = []
    for _ in range(3):
        vorch.report_failure("flaky", "segfault")
        st = vorch.status("flaky")
        assert st.state == "Failed" and st.last_error is not None and "segfault" in st.last_error
        assert st.supervision is not None and st.supervision.next_attempt_in is not None
        delays.append(st.supervision.next_attempt_in)
        clock.advance(st.supervision.next_attempt_in)
        assert vorch.status("flaky").state == "Active"
    assert delays == [1.0, 2.0, 4.0], "exponential backoff"
    vorch.report_failure("flaky", "segfault")
    clock.advance(0)
    st = vorch.status("flaky")
    assert st.state == "GaveUp"
    assert st.supervision is not None and st.supervision.gave_up and st.supervision.failures_left == 0
    assert starts.n == 4
    topics = []
    while (m := sub.try_recv()) is not None:
        topics.append(m.topic)
        if m.topic == "pso.alert.flaky.gave_up":
            assert m.payload["system"] == "flaky" and m.payload["kind"] == "gave_up"
            assert "4 failures within" in m.payload["detail"] and m.payload["suppressed"] == 0
    assert "pso.alert.flaky.gave_up" in topics and "pso.lifecycle.flaky.gave_up" in topics
    assert vorch.coordination_insights().gave_up == ["flaky"]
    # It stays down; activating it by hand starts over.
    clock.advance(100)
    assert vorch.status("flaky").state == "GaveUp"
    assert "supervisor stopped restarting it" in vorch.why_inactive("flaky")
    vorch.activate_system("flaky")
    assert vorch.status("flaky").state == "Active"


def test_a_crash_stops_dependents_and_recovery_restarts_them(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    db, api = Counter(), Counter()
    vorch.register("db", on_activate=db, supervise=sup())
    vorch.register("api", on_activate=api, requires=["db"])
    vorch.register("web", requires=["api"])
    vorch.activate_system("web")
    vorch.report_failure("db", "out of memory")
    clock.advance(0)  # the supervisor stops what requires it
    assert [vorch.status(s).state for s in ("db", "api", "web")] == ["Failed", "Inactive", "Inactive"]
    clock.advance(1)  # restart
    clock.advance(0)  # and bring the dependents back
    assert [vorch.status(s).state for s in ("db", "api", "web")] == ["Active"] * 3
    assert (db.n, api.n) == (2, 2)


@pytest.mark.parametrize(
    ("strategy", "expect"),
    [("one_for_one", [2, 1, 1]), ("rest_for_one", [2, 2, 1]), ("one_for_all", [2, 2, 2])],
)
def test_strategies_choose_what_is_restarted(strategy: _Strategy, expect: list[int]) -> None:
    clock = pso.VirtualClock()
    with pso.Orchestrator(workers=2, clock=clock, alert_interval=0) as o:
        mid, top, base = Counter(), Counter(), Counter()
        o.register("base", on_activate=base)
        o.register(
            "mid",
            on_activate=mid,
            requires=["base"],
            health=pso.HealthCheck(
                lambda s: pso.HealthReport.unhealthy("stuck"), interval=1, failures_before_unhealthy=1
            ),
            supervise=sup(strategy=strategy),
        )
        o.register("top", on_activate=top, wants=["mid"])
        o.activate_system("top")
        clock.advance(1)  # unhealthy
        clock.advance(1)  # restart due
        assert [mid.n, top.n, base.n] == expect, strategy
        assert [o.status(s).state for s in ("base", "mid", "top")] == ["Active"] * 3
        st = o.status("mid").supervision
        assert st is not None and st.strategy == strategy


def test_a_missed_watchdog_is_a_failure_and_check_ins_keep_it_alive(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    starts = Counter()
    vorch.register("worker", on_activate=starts, health=pso.HealthCheck(watchdog=5), supervise=sup())
    vorch.activate_system("worker")
    for _ in range(5):
        clock.advance(4)
        vorch.check_in("worker")
    assert starts.n == 1, "check-ins kept it alive"
    h = vorch.status("worker").health
    assert h is not None and h.since_check_in == 0.0
    clock.advance(5)  # missed
    h = vorch.status("worker").health
    assert h is not None and h.status == "unhealthy"
    assert "missed its watchdog deadline" in h.detail
    clock.advance(1)
    assert starts.n == 2, "restarted"


def test_flapping_suppresses_alerts_until_a_quiet_window(clock: pso.VirtualClock) -> None:
    with pso.Orchestrator(workers=2, clock=clock, flap_threshold=4, flap_window=20, alert_interval=0) as o:
        flips = [0]

        def flip(system: str) -> tuple[Literal["unhealthy"], str] | Literal["healthy"]:
            flips[0] += 1
            return ("unhealthy", "down") if flips[0] % 2 else "healthy"

        o.register("link", health=pso.HealthCheck(flip, interval=1, failures_before_unhealthy=1))
        sub = o.hub.subscribe("pso.alert.>")
        o.activate_system("link")
        clock.advance(10)
        assert alerts(sub) == ["link.unhealthy", "link.recovered", "link.unhealthy", "link.flapping"]
        h = o.status("link").health
        assert h is not None and h.flapping
        assert o.coordination_insights().flapping == ["link"]
        # Steady from now on: flapping ends after a quiet window.
        o.set_health_check("link", pso.HealthCheck(healthy, interval=1))
        clock.advance(40)
        assert "link.flapping_ended" in alerts(sub)
        h = o.status("link").health
        assert h is not None and not h.flapping


def test_policies_never_and_always(vorch: pso.Orchestrator, clock: pso.VirtualClock) -> None:
    vorch.register("a", supervise=pso.Supervision("never"))
    vorch.register("db")
    vorch.register("cache", requires=["db"], supervise=pso.Supervision("always"))
    vorch.register("report", requires=["db"], supervise=pso.Supervision("on_failure"))
    vorch.activate_all()
    vorch.report_failure("a", "boom")
    clock.advance(10)
    assert vorch.status("a").state == "Failed", "never restarted"
    vorch.deactivate_system("db")
    vorch.activate_system("db")
    clock.advance(0)
    assert vorch.status("cache").state == "Active", "always: back with db"
    assert vorch.status("report").state == "Inactive", "on_failure: a stop is not a failure"


def test_a_check_set_on_an_active_system_starts_probing(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    vorch.register("s")
    vorch.activate_system("s")
    assert vorch.status("s").health is None and vorch.status("s").supervision is None
    vorch.set_health_check(
        "s", pso.HealthCheck(lambda s: pso.HealthReport.unhealthy("no"), interval=1, failures_before_unhealthy=1)
    )
    clock.advance(1)
    h = vorch.status("s").health
    assert h is not None and h.status == "unhealthy"


def test_changing_and_removing_checks_and_supervision(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    vorch.register("s", health=pso.HealthCheck(healthy, interval=1))
    vorch.activate_system("s")
    clock.advance(1)
    h = vorch.status("s").health
    assert h is not None and (h.status, h.probes) == ("healthy", 1)
    vorch.set_health_check(
        "s", pso.HealthCheck(lambda s: pso.HealthReport.unhealthy("no"), interval=1, failures_before_unhealthy=1)
    )
    clock.advance(1)
    h = vorch.status("s").health
    assert h is not None and (h.status, h.detail) == ("unhealthy", "no")
    vorch.set_supervision("s", sup(max_restarts=0))
    sv = vorch.status("s").supervision
    assert sv is not None and (sv.failures_left, sv.restarts) == (1, 0), "the next failure gives up"
    vorch.set_health_check("s", None)
    vorch.set_supervision("s", None)
    clock.advance(5)
    st = vorch.status("s")
    assert st.state == "Active" and st.health is None and st.supervision is None


def test_alerts_are_deduplicated_within_the_interval(clock: pso.VirtualClock) -> None:
    with pso.Orchestrator(workers=2, clock=clock, alert_interval=10) as o:
        o.register("x", supervise=pso.Supervision("never"))
        sub = o.hub.subscribe("pso.alert.x.failed")
        for _ in range(3):
            o.activate_system("x")
            o.report_failure("x", "crash")
            clock.advance(1)
        clock.advance(10)
        o.activate_system("x")
        o.report_failure("x", "crash")
        msgs = []
        while (m := sub.try_recv()) is not None:
            msgs.append(m.payload)
        assert len(msgs) == 2, msgs
        assert msgs[1]["suppressed"] == 2


def test_a_failing_activation_is_retried_until_it_succeeds(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    tries = [0]

    def start(system: str) -> None:
        tries[0] += 1
        if tries[0] < 3:
            raise OSError("port busy")

    vorch.register("net", on_activate=start, supervise=sup())
    with pytest.raises(pso.HandlerError):
        vorch.activate_system("net")
    clock.advance(1)  # attempt 2 fails
    assert vorch.status("net").state == "Failed"
    clock.advance(2)  # attempt 3 succeeds
    assert vorch.status("net").state == "Active" and tries[0] == 3
    sv = vorch.status("net").supervision
    assert sv is not None and sv.restarts >= 2


def test_register_many_and_handlers_keep_the_probe(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    seen: list[str] = []

    def probe(system: str) -> pso.HealthReport:
        seen.append(system)
        return pso.HealthReport.healthy()

    vorch.register_many([{"name": "m", "health": pso.HealthCheck(probe, interval=1), "supervise": sup()}])
    vorch.set_handlers("m", on_activate=lambda s: None)  # the probe stays
    vorch.activate_system("m")
    clock.advance(2)
    assert seen == ["m", "m"]


def test_probes_that_refer_to_their_orchestrator_are_collected() -> None:
    # probe -> orchestrator -> core -> probe: a cycle only the collector frees.
    def make() -> weakref.ref[object]:
        o = pso.Orchestrator(workers=1)

        class Service:
            def probe(self, name: str) -> pso.HealthReport:
                return pso.HealthReport.degraded(o.status(name).state)

        svc = Service()
        o.register("a", health=pso.HealthCheck(svc.probe, interval=60))
        o.activate_system("a")
        return weakref.ref(svc)

    gc.collect()
    threads_before = threading.active_count()
    ref = make()
    assert ref() is not None  # kept alive by the orchestrator's probe...
    gc.collect()
    assert ref() is None  # ...until the collector freed the whole cycle
    assert threading.active_count() == threads_before


def test_real_time_probes_run_on_workers_and_time_out() -> None:
    release = threading.Event()

    def slow(system: str) -> Literal["healthy"]:
        release.wait(10)
        return "healthy"

    with pso.Orchestrator(workers=2) as o:
        o.register("slow", health=pso.HealthCheck(slow, interval=0.01, timeout=0.05, failures_before_unhealthy=1))
        o.activate_system("slow")
        deadline = time.monotonic() + 20
        while True:
            h = o.status("slow").health
            assert h is not None
            if h.status == "unhealthy":
                assert h.detail.startswith("no answer within"), h.detail
                break
            assert time.monotonic() < deadline, "never timed out"
            time.sleep(0.01)
        release.set()



def test_advancing_the_clock_from_a_probe_is_busy_not_a_deadlock(
    vorch: pso.Orchestrator, clock: pso.VirtualClock
) -> None:
    def probe(system: str) -> Literal["healthy"]:
        clock.advance(1)  # inside advance: refused
        return "healthy"

    vorch.register("p", health=pso.HealthCheck(probe, interval=1, failures_before_unhealthy=1))
    vorch.activate_system("p")
    clock.advance(1)
    h = vorch.status("p").health
    assert h is not None and h.status == "unhealthy"
    assert "BusyError" in h.detail and "advanced already" in h.detail
    clock.advance(0)  # the clock works again afterwards
    assert clock.elapsed == 1.0
