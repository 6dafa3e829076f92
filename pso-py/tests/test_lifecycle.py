"""Activation and deactivation through Python handlers: order, failures and
their chains, the original exception as __cause__, timeouts, re-entrancy."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable

import pytest

import pso


class Recorder:
    """Handlers that log (event, system) in the order they happen."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def log(self, event: str, system: str) -> None:
        with self._lock:
            self.events.append((event, system))

    def activate(self, system: str) -> None:
        self.log("start", system)
        time.sleep(0.01)  # give a wrong order the chance to show
        self.log("end", system)

    def deactivate(self, system: str) -> None:
        self.log("stop", system)

    def index(self, event: str, system: str) -> int:
        return self.events.index((event, system))


def register_diamond(o: pso.Orchestrator, rec: Recorder) -> None:
    #        app
    #       /    \
    #   cache    api
    #       \   /   \
    #        db      auth
    for name, requires in [
        ("db", []),
        ("auth", []),
        ("cache", ["db"]),
        ("api", ["db", "auth"]),
        ("app", ["cache", "api"]),
    ]:
        o.register(name, requires=requires, on_activate=rec.activate, on_deactivate=rec.deactivate)


def test_activation_follows_dependencies() -> None:
    rec = Recorder()
    with pso.Orchestrator(workers=4) as o:
        register_diamond(o, rec)
        report = o.activate_system("app")
        assert report.target == "app" and report.action == "activate"
        assert sorted(report.activated) == ["api", "app", "auth", "cache", "db"]
        assert report.failures == []
        for system in ["db", "auth", "cache", "api", "app"]:
            for dep in o.status(system).requires:
                # A system starts only after what it requires has finished.
                assert rec.index("end", dep) < rec.index("start", system), (dep, system)
            assert o.status(system).state == "Active"
        levels = {out.system: out.level for out in report.outcomes}
        assert levels == {"db": 0, "auth": 0, "cache": 1, "api": 1, "app": 2}
        for out in report.outcomes:
            assert out.outcome == "activated" and out.error is None
            assert out.ran >= 0.005 and out.queued >= 0.0
        assert report.elapsed >= 0.03  # three levels of 10 ms handlers
        assert report.outcome("db") is not None and report.outcome("nope") is None
        assert '"target":"app"' in report.to_json()


def test_activation_is_idempotent(orch: pso.Orchestrator) -> None:
    calls: list[str] = []
    orch.register("a", on_activate=calls.append)
    assert orch.activate_system("a").activated == ["a"]
    again = orch.activate_system("a")
    assert again.activated == [] and [o.outcome for o in again.outcomes] == ["already_active"]
    assert calls == ["a"]
    assert orch.activate_all().activated == []


def test_deactivation_stops_dependents_first() -> None:
    rec = Recorder()
    with pso.Orchestrator(workers=4) as o:
        register_diamond(o, rec)
        o.activate_system("app")
        report = o.deactivate_system("db")
        assert report.action == "deactivate"
        # db is required by cache and api, which app requires: all four stop.
        assert sorted(report.deactivated) == ["api", "app", "cache", "db"]
        assert rec.index("stop", "app") < rec.index("stop", "cache") < rec.index("stop", "db")
        assert rec.index("stop", "app") < rec.index("stop", "api") < rec.index("stop", "db")
        assert o.status("auth").state == "Active"
        assert o.status("db").state == "Inactive"
        noop = o.deactivate_system("db")
        assert [x.outcome for x in noop.outcomes] == ["not_active"]
        everything = o.deactivate_all()
        assert everything.target == "*" and everything.deactivated == ["auth"]


def test_failed_requirement_blocks_dependents_with_chain_and_cause(orch: pso.Orchestrator) -> None:
    raised: list[BaseException] = []

    def broken(system: str) -> None:
        err = ValueError(f"{system} cannot reach its disk")
        raised.append(err)
        raise err

    ran: list[str] = []
    orch.register("disk", on_activate=broken)
    orch.register("db", requires=["disk"], on_activate=ran.append)
    orch.register("api", requires=["db"], on_activate=ran.append)
    with pytest.raises(pso.HandlerError) as info:
        orch.activate_system("api")
    err = info.value
    assert (err.kind, err.code) == ("HANDLER_FAILED", 16)
    assert err.target == "api"
    assert err.chain == ["api", "db", "disk"]
    assert err.__cause__ is raised[0]  # the very exception the handler raised
    assert err.__cause__.__traceback__ is not None
    assert "disk cannot reach its disk" in str(err)
    assert ran == []  # nothing that requires the failed system ran
    outcomes = {o.system: o.outcome for o in err.report.outcomes}
    assert outcomes == {"disk": "failed", "db": "blocked", "api": "blocked"}
    failed = err.report.outcome("disk")
    assert failed is not None and failed.error == "ValueError: disk cannot reach its disk"
    assert [f.system for f in err.report.failures] == ["disk", "db", "api"]
    assert orch.status("disk").state == "Failed"
    assert "ValueError: disk cannot reach its disk" in (orch.status("disk").last_error or "")
    assert orch.status("api").state == "Registered"
    why = orch.why_inactive("api")
    assert why.startswith("api is Registered: it requires db, which requires disk, which Failed")
    assert "disk cannot reach its disk" in why


def test_failed_want_does_not_block(orch: pso.Orchestrator) -> None:
    def broken(system: str) -> None:
        raise RuntimeError("metrics down")

    orch.register("metrics", on_activate=broken)
    orch.register("api", wants=["metrics"])
    report = orch.activate_system("api")  # the target became Active: no error
    assert report.activated == ["api"]
    assert [(f.system, f.outcome) for f in report.failures] == [("metrics", "failed")]
    assert orch.status("api").state == "Active"
    assert orch.status("metrics").state == "Failed"


def test_activate_all_fails_if_anything_failed(orch: pso.Orchestrator) -> None:
    class CustomError(Exception):
        pass

    def broken(system: str) -> None:
        raise CustomError("nope")

    orch.register("ok")
    orch.register("bad", on_activate=broken)
    with pytest.raises(pso.HandlerError) as info:
        orch.activate_all()
    assert info.value.target == "*"
    assert info.value.chain == ["bad"]
    assert isinstance(info.value.__cause__, CustomError)
    assert info.value.report.activated == ["ok"]
    err = info.value.report.outcome("bad")
    assert err is not None and err.error is not None
    assert err.error.endswith("CustomError: nope")  # qualified type name, then message


def test_failing_deactivate_handler(orch: pso.Orchestrator) -> None:
    def broken(system: str) -> None:
        raise OSError("flush failed")

    orch.register("store", on_deactivate=broken)
    orch.activate_system("store")
    with pytest.raises(pso.HandlerError) as info:
        orch.deactivate_system("store")
    assert info.value.chain == ["store"] and info.value.target == "store"
    assert isinstance(info.value.__cause__, OSError)
    assert orch.status("store").state == "Failed"
    orch.set_handlers("store", on_deactivate=broken)
    orch.register("app", requires=["store"])
    orch.activate_system("app")
    with pytest.raises(pso.HandlerError) as info:
        orch.deactivate_all()
    # deactivate_all: the chain names the system whose handler failed.
    assert (info.value.target, info.value.chain) == ("*", ["store"])
    assert info.value.report.deactivated == ["app"]


def test_retry_after_fixing_the_handler(orch: pso.Orchestrator) -> None:
    def broken(system: str) -> None:
        raise ValueError("not yet")

    orch.register("svc", on_activate=broken)
    with pytest.raises(pso.HandlerError):
        orch.activate_system("svc")
    seen: list[str] = []
    orch.set_handlers("svc", on_activate=seen.append)
    assert orch.status("svc").has_activate_handler
    assert not orch.status("svc").has_deactivate_handler
    assert orch.activate_system("svc").activated == ["svc"] and seen == ["svc"]
    orch.set_handlers("svc")  # no handlers at all
    assert not orch.status("svc").has_activate_handler
    states = [(t.from_, t.to) for t in orch.status("svc").history]
    assert states == [
        ("Registered", "Activating"),
        ("Activating", "Failed"),
        ("Failed", "Activating"),
        ("Activating", "Active"),
    ]


def test_conflicts(orch: pso.Orchestrator) -> None:
    orch.register("blue")
    orch.register("green", conflicts=["blue"])
    orch.activate_system("blue")
    with pytest.raises(pso.ConflictError) as info:
        orch.activate_system("green")
    assert (info.value.system, info.value.other) == ("green", "blue")
    assert info.value.code == 15
    with pytest.raises(pso.ConflictError):
        orch.plan("green")
    assert orch.status("green").state == "Registered"
    assert orch.why_inactive("green") == "green is Registered: it conflicts with blue, which is Active"
    orch.deactivate_system("blue")
    orch.activate_system("green")
    assert orch.status("blue").conflicts == ["green"]


def test_system_timeout_marks_timed_out() -> None:
    finished = threading.Event()

    def slow(system: str) -> None:
        time.sleep(0.5)
        finished.set()

    with pso.Orchestrator(workers=2) as o:
        o.register("slow", timeout=0.1, on_activate=slow)
        o.register("user", requires=["slow"])
        start = time.monotonic()
        with pytest.raises(pso.HandlerError) as info:
            o.activate_system("user")
        assert time.monotonic() - start < 0.45  # the call did not wait for the handler
        assert info.value.chain == ["user", "slow"]
        assert info.value.__cause__ is None  # nothing was raised: it overran
        out = info.value.report.outcome("slow")
        assert out is not None and out.outcome == "timed_out"
        assert "timed out after 100ms" in (out.error or "")
        assert o.status("slow").state == "Failed"
        assert finished.wait(5)
        time.sleep(0.05)  # the worker records the late result right after the handler returns
        assert "result ignored" in (o.status("slow").last_error or "")


def test_orchestrator_transition_timeout_is_the_default() -> None:
    with pso.Orchestrator(workers=1, transition_timeout=0.05) as o:
        o.register("slow", on_activate=lambda _: time.sleep(0.3))
        o.register("patient", timeout=5.0, on_activate=lambda _: time.sleep(0.1))
        with pytest.raises(pso.HandlerError):
            o.activate_system("slow")
        assert o.activate_system("patient").activated == ["patient"]


def test_lifecycle_call_inside_handler_is_busy_not_deadlock(orch: pso.Orchestrator) -> None:
    seen: list[object] = []

    def reentrant(system: str) -> None:
        # Reading status from a handler is allowed...
        seen.append(orch.status(system).state)
        # ...starting another lifecycle call is refused instead of deadlocking.
        calls: list[Callable[[], object]] = [lambda: orch.activate_system("other"), orch.deactivate_all]
        for call in calls:
            try:
                call()
            except pso.BusyError as err:
                seen.append(err)

    orch.register("other")
    orch.register("me", on_activate=reentrant)
    assert orch.activate_system("me").activated == ["me"]
    assert seen[0] == "Activating"
    assert len(seen) == 3 and all(isinstance(e, pso.BusyError) for e in seen[1:])
    assert isinstance(seen[1], pso.BusyError) and seen[1].code == 18
    assert "inside a lifecycle handler" in str(seen[1])
    assert orch.status("other").state == "Registered"


def test_async_handler_is_refused(orch: pso.Orchestrator) -> None:
    async def start(system: str) -> None:
        pass

    orch.register("a", on_activate=start)
    with pytest.raises(pso.HandlerError) as info:
        orch.activate_system("a")
    assert isinstance(info.value.__cause__, TypeError)
    assert "awaitable" in str(info.value.__cause__)


def test_status_fields_and_times(orch: pso.Orchestrator) -> None:
    before = datetime.datetime.now(datetime.timezone.utc)
    orch.register("db")
    orch.register(
        "api",
        tier="edge",
        tags=["http", "public"],
        priority="high",
        resources={"cpu": 500, "memory": 256},
        requires=["db"],
        wants=[],
        interacts=["db"],
        on_deactivate=print,
    )
    orch.activate_system("api")
    st = orch.status("api")
    assert (st.name, st.state, st.tier, st.priority) == ("api", "Active", "edge", "high")
    assert st.tags == ["http", "public"] and st.resources == {"cpu": 500, "memory": 256}
    assert st.requires == ["db"] and st.interacts == ["db"] and st.required_by == []
    assert orch.status("db").required_by == ["api"] and orch.status("db").interacts == ["api"]
    assert not st.has_activate_handler and st.has_deactivate_handler
    assert st.last_error is None and st.reason == "activate handler succeeded"
    assert st.since.tzinfo is not None and st.since.utcoffset() == datetime.timedelta(0)
    assert before - datetime.timedelta(seconds=1) <= st.since <= datetime.datetime.now(datetime.timezone.utc)
    assert [t.to for t in st.history] == ["Activating", "Active"]
    assert st.history[-1].at == st.since
    assert [s.name for s in orch.system_status()] == ["db", "api"]
    assert repr(st).startswith("SystemStatus(name='api', state='Active', since='20")
    assert repr(st.history[0]).startswith("Transition(from_='Registered', to='Activating', reason=")


def test_plan(orch: pso.Orchestrator) -> None:
    orch.register("db")
    orch.register("cache", requires=["db"])
    orch.register("api", requires=["db"], wants=["cache"])
    plan = orch.plan("api")
    assert plan.target == "api"
    assert plan.levels == [["db"], ["cache"], ["api"]]
    assert plan.already_active == []
    orch.activate_system("cache")
    assert orch.plan("api").levels == [["api"]]
    assert sorted(orch.plan("api").already_active) == ["cache", "db"]
    assert '"levels"' in plan.to_json()
    assert orch.status("api").state == "Registered"  # planning runs nothing
