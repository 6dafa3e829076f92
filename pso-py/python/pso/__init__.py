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

Systems lease resources (capacity per named dimension) by priority and
fairness::

    o.set_capacity("gpu", 2)
    with o.allocate_resources("PDT", {"gpu": 1}, priority="high", wait=5.0) as lease:
        ...                        # released on exit (or release(), or GC)

Systems talk through the hub and share state::

    with o.hub.subscribe("engine.*.done") as sub:
        o.hub.publish("engine.build.done", {"ok": True}, sender="PDT")
        print(sub.recv(timeout=1.0).payload)
    rev = o.state.put("model.version", 1, writer="PDT")
    o.state.compare_and_set("model.version", rev, 2)

The API is the same in Rust, Python, Node and C (see docs/API.md). Handlers and
step functions are called on PSO's worker threads; the GIL is released while
PSO works or waits. Every error is a ``pso.PsoError`` with ``.kind`` and ``.code``.
"""

from ._pso import (
    ActivationReport,
    AlreadyExistsError,
    ArmStats,
    BusyError,
    CancelledError,
    CasConflictError,
    Change,
    Child,
    ClosedError,
    CoActivation,
    CompactedError,
    ConflictError,
    Contention,
    Contributor,
    CoordinationPlan,
    CoordinationStatus,
    CriticalPath,
    CycleError,
    DimensionStatus,
    DirectEnd,
    EdgePattern,
    EdgeRate,
    Entry,
    Estimate,
    Event,
    Evolution,
    ExceedsCapacityError,
    ExceedsQuotaError,
    GroupStatus,
    HandlerError,
    HealthCheck,
    HealthInfo,
    HealthReport,
    Hub,
    IdleDeactivation,
    Insights,
    InternalError,
    InvalidArgumentError,
    InvalidUtf8Error,
    IoError,
    Lease,
    LeaseStatus,
    Mesh,
    MeshStatus,
    Message,
    MinimalistStatus,
    ModeChange,
    NoRespondersError,
    NotActiveError,
    NotFoundError,
    NullPointerError,
    OperationPattern,
    Orchestrator,
    PairStatus,
    ParseError,
    Patterns,
    PerformanceMetrics,
    Plan,
    PreemptNotice,
    PsoError,
    QueueOverflowError,
    Recommendation,
    ResourcePlan,
    ResourceRequest,
    ResourceStatus,
    Run,
    RunProgress,
    RunResult,
    SnapshotInfo,
    StaleHandleError,
    StateStore,
    Step,
    StepContext,
    StepCounts,
    StepRecord,
    Subscription,
    SubscriptionStatus,
    Supervision,
    SupervisionInfo,
    SystemOutcome,
    SystemStatus,
    TimeoutError,
    Transition,
    VirtualClock,
    WaiterStatus,
    Watcher,
    Workflow,
    __version__,
)

__all__ = [
    "ActivationReport",
    "AlreadyExistsError",
    "ArmStats",
    "BusyError",
    "CancelledError",
    "CasConflictError",
    "Change",
    "Child",
    "ClosedError",
    "CoActivation",
    "CompactedError",
    "ConflictError",
    "Contention",
    "Contributor",
    "CoordinationPlan",
    "CoordinationStatus",
    "CriticalPath",
    "CycleError",
    "DimensionStatus",
    "DirectEnd",
    "EdgePattern",
    "EdgeRate",
    "Entry",
    "Estimate",
    "Event",
    "Evolution",
    "ExceedsCapacityError",
    "ExceedsQuotaError",
    "GroupStatus",
    "HandlerError",
    "HealthCheck",
    "HealthInfo",
    "HealthReport",
    "Hub",
    "IdleDeactivation",
    "Insights",
    "InternalError",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "IoError",
    "Lease",
    "LeaseStatus",
    "Mesh",
    "MeshStatus",
    "Message",
    "MinimalistStatus",
    "ModeChange",
    "NoRespondersError",
    "NotActiveError",
    "NotFoundError",
    "NullPointerError",
    "OperationPattern",
    "Orchestrator",
    "PairStatus",
    "ParseError",
    "Patterns",
    "PerformanceMetrics",
    "Plan",
    "PreemptNotice",
    "PsoError",
    "QueueOverflowError",
    "Recommendation",
    "ResourcePlan",
    "ResourceRequest",
    "ResourceStatus",
    "Run",
    "RunProgress",
    "RunResult",
    "SnapshotInfo",
    "StaleHandleError",
    "StateStore",
    "Step",
    "StepContext",
    "StepCounts",
    "StepRecord",
    "Subscription",
    "SubscriptionStatus",
    "Supervision",
    "SupervisionInfo",
    "SystemOutcome",
    "SystemStatus",
    "TimeoutError",
    "Transition",
    "VirtualClock",
    "WaiterStatus",
    "Watcher",
    "Workflow",
    "__version__",
]
