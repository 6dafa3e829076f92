"""PSO, the Progressive System Orchestrator, from Python.

Register systems and their relations, then activate them in dependency order
on PSO's worker threads::

    import pso

    with pso.Orchestrator() as o:
        o.register("db")
        o.register("api", requires=["db"], on_activate=lambda name: print("start", name))
        report = o.activate_system("api")
        assert report.activated == ["db", "api"]

The API is the same in Rust, Python, Node and C (see docs/API.md). Handlers are
called with the system name on PSO's worker threads; the GIL is released while
PSO works or waits. Every error is a ``pso.PsoError`` with ``.kind`` and ``.code``.
"""

from ._pso import (
    ActivationReport,
    AlreadyExistsError,
    BusyError,
    ClosedError,
    ConflictError,
    CycleError,
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
    StaleHandleError,
    SystemOutcome,
    SystemStatus,
    TimeoutError,
    Transition,
    __version__,
)

__all__ = [
    "ActivationReport",
    "AlreadyExistsError",
    "BusyError",
    "ClosedError",
    "ConflictError",
    "CycleError",
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
    "StaleHandleError",
    "SystemOutcome",
    "SystemStatus",
    "TimeoutError",
    "Transition",
    "__version__",
]
