"""Typed use of the public API, checked by `mypy --strict` (scripts/test-python.sh).

Not a pytest module (no test_ prefix): it only has to type-check. Each
`# type: ignore[code]` marks a call the stubs must reject; with --strict
(warn_unused_ignores) an ignore that is not needed fails the check, so the
stubs cannot silently become too loose.
"""

from __future__ import annotations

import datetime
import pathlib

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
