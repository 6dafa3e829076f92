"""PSO, the Progressive System Orchestrator, from Python.

Register systems and their relations, then activate them in dependency order
on PSO's worker threads::

    import pso

    with pso.Orchestrator() as o:
        o.register("db")
        o.register("api", requires=["db"], on_activate=lambda name: print("start", name))
        report = o.activate_system("api")
        assert report.activated == ["db", "api"]

Systems can also offer operations, which workflows run as a DAG of steps::

    o.register("PDT", operations={"collect": lambda ctx: ctx.run_input + 1})
    o.activate_system("PDT")
    wf = o.workflow("double", [
        pso.Step("collect", "PDT", "collect"),
        pso.Step("double", fn=lambda ctx: ctx.inputs["n"] * 2, inputs={"n": "collect"}),
    ])
    assert o.coordinate_systems(wf, input=20).result().output("double") == 42

The API is the same in Rust, Python, Node and C (see docs/API.md). Handlers and
step functions are called on PSO's worker threads; the GIL is released while
PSO works or waits. Every error is a ``pso.PsoError`` with ``.kind`` and ``.code``.
"""

from ._pso import (
    ActivationReport,
    AlreadyExistsError,
    BusyError,
    Child,
    ClosedError,
    ConflictError,
    CycleError,
    Estimate,
    HandlerError,
    InternalError,
    InvalidArgumentError,
    InvalidUtf8Error,
    IoError,
    NotActiveError,
    NotFoundError,
    NullPointerError,
    Orchestrator,
    ParseError,
    Plan,
    PsoError,
    Run,
    RunProgress,
    RunResult,
    StaleHandleError,
    Step,
    StepContext,
    StepCounts,
    StepRecord,
    SystemOutcome,
    SystemStatus,
    TimeoutError,
    Transition,
    Workflow,
    __version__,
)

__all__ = [
    "ActivationReport",
    "AlreadyExistsError",
    "BusyError",
    "Child",
    "ClosedError",
    "ConflictError",
    "CycleError",
    "Estimate",
    "HandlerError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "IoError",
    "NotActiveError",
    "NotFoundError",
    "NullPointerError",
    "Orchestrator",
    "ParseError",
    "Plan",
    "PsoError",
    "Run",
    "RunProgress",
    "RunResult",
    "StaleHandleError",
    "Step",
    "StepContext",
    "StepCounts",
    "StepRecord",
    "SystemOutcome",
    "SystemStatus",
    "TimeoutError",
    "Transition",
    "Workflow",
    "__version__",
]
