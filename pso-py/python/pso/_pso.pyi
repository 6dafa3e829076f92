# Type stubs of the native module `pso._pso`, written by hand.
# tests/test_stubs.py checks that they name exactly what the module has, and
# tests/typed_usage.py is checked with `mypy --strict` by scripts/test-python.sh.

import builtins
import datetime
import os
import pathlib
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Literal, TypedDict, final

from typing_extensions import NotRequired, Self, TypeAlias

__version__: str
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

_Handler: TypeAlias = Callable[[str], object]
"""A lifecycle handler: called with the system name; its return value is ignored."""

_Priority: TypeAlias = Literal["critical", "high", "normal", "low", "background"]
_EdgeKind: TypeAlias = Literal["requires", "wants", "after", "conflicts", "interacts"]
_State: TypeAlias = Literal[
    "Registered", "Activating", "Active", "Deactivating", "Inactive", "Failed", "GaveUp"
]
_Outcome: TypeAlias = Literal[
    "activated", "deactivated", "already_active", "not_active", "failed", "timed_out", "blocked"
]
_RunState: TypeAlias = Literal["succeeded", "failed", "cancelled", "timed_out"]
_StepState: TypeAlias = Literal[
    "pending", "running", "waiting_retry", "succeeded", "failed", "cancelled", "timed_out", "skipped"
]

_Value: TypeAlias = Any
"""A value PSO gives back (outputs, inputs, the run input): None, bool, int,
float, str, bytes, list or dict with str keys (sorted), nested. Typed `Any`
(like `json.loads`), so that using one does not need an isinstance check."""

_InValue: TypeAlias = (
    None
    | bool
    | int
    | float
    | str
    | bytes
    | bytearray
    | Sequence[_InValue]
    | Mapping[str, _InValue]
)
"""What PSO accepts as a value: list and tuple (not other sequences), dict
with str keys (not other mappings). Ints must fit in 64 bits."""

_StepFn: TypeAlias = Callable[[StepContext], object]
"""A step function or operation: called with the step's context; returns a value
PSO can carry (see `_InValue`); anything else fails the step."""

_Condition: TypeAlias = Callable[[StepContext], object]
"""A `when` condition: called with the step's context; truthy to run the step."""

_PreemptFn: TypeAlias = Callable[[PreemptNotice], object]
"""A preemption callback: called once with the notice, on a PSO thread."""

_Callback: TypeAlias = Callable[[Message], object]
"""A subscription callback: called with each message on a PSO worker (an
`async def` callback's coroutines run on an event loop instead)."""

_Overflow: TypeAlias = Literal["block", "drop_oldest", "drop_newest", "error"]
_Mode: TypeAlias = Literal["hierarchical", "direct", "mesh"]

class _HubSettings(TypedDict, total=False):
    """`Orchestrator(hub=...)`: hub settings (absent or None: the default)."""

    queue_capacity: int | None
    overflow: _Overflow | None
    block_timeout: float | None
    alert_interval: float | None
    direct_capacity: int | None
    promote_threshold: float | None
    demote_threshold: float | None
    rate_window: float | None
    match_cache: int | None

class _ReclaimExpired(TypedDict):
    """Release a lease whose TTL passed."""

    action: Literal["reclaim_expired"]
    lease: int
    system: str

class _ReclaimIdle(TypedDict):
    """Release a lease nobody touched for longer than `idle_lease_after`."""

    action: Literal["reclaim_idle"]
    lease: int
    system: str
    idle_secs: float

class _Rebalance(TypedDict):
    """Preempt an over-share preemptible lease for an under-share waiter."""

    action: Literal["rebalance"]
    lease: int
    system: str
    share: float
    in_favor_of: str
    their_share: float

_ResizeConcurrency = TypedDict(
    "_ResizeConcurrency",
    {
        "action": Literal["resize_concurrency"],
        "system": str,
        "from": int,
        "to": int,
        "reason": str,
    },
)
"""Change a system's limit on concurrently running workflow steps."""

_ResourceAction: TypeAlias = _ReclaimExpired | _ReclaimIdle | _Rebalance | _ResizeConcurrency
"""One action of a `ResourcePlan`; `action` tells which."""

_HealthStatus: TypeAlias = Literal["healthy", "degraded", "unhealthy"]
_ProbeResult: TypeAlias = _HealthStatus | tuple[_HealthStatus, str | None] | HealthReport
_Probe: TypeAlias = Callable[[str], _ProbeResult]
"""A health probe: called with the system name on a PSO thread (or inside
`VirtualClock.advance`); raising is a failed probe with the exception as detail."""

_Policy: TypeAlias = Literal["never", "on_failure", "always"]
_Strategy: TypeAlias = Literal["one_for_one", "rest_for_one", "one_for_all"]
_SchedulingPolicy: TypeAlias = Literal["critical_path", "fifo"]
_TrialMetric: TypeAlias = Literal["makespan", "p99", "error_rate"]
_StrategyChange: TypeAlias = (
    tuple[Literal["scheduling_policy"], _SchedulingPolicy]
    | tuple[Literal["concurrency_limit"], str, int | None]
)
"""What `evolve_coordination` tries."""

class _PromoteToDirect(TypedDict):
    """Give the pair a direct channel."""

    kind: Literal["promote_to_direct"]
    a: str
    b: str

class _DemoteDirect(TypedDict):
    """Route the pair through the hub again."""

    kind: Literal["demote_direct"]
    a: str
    b: str

_SetConcurrencyLimit = TypedDict(
    "_SetConcurrencyLimit",
    {"kind": Literal["set_concurrency_limit"], "system": str, "from": int | None, "to": int | None},
)
"""Change a system's concurrency limit for workflow steps (None: unlimited)."""

class _DeactivateIdle(TypedDict):
    """Deactivate an idle system."""

    kind: Literal["deactivate_idle"]
    system: str

class _PreActivate(TypedDict):
    """Activate systems usually used with an Active one."""

    kind: Literal["pre_activate"]
    systems: list[str]

_SetSchedulingPolicy = TypedDict(
    "_SetSchedulingPolicy",
    {"kind": Literal["set_scheduling_policy"], "from": _SchedulingPolicy, "to": _SchedulingPolicy},
)
"""Order ready steps differently."""

_Action: TypeAlias = (
    _PromoteToDirect
    | _DemoteDirect
    | _SetConcurrencyLimit
    | _DeactivateIdle
    | _PreActivate
    | _SetSchedulingPolicy
)
"""A coordination change (`Recommendation.action`, `Change.action`); `kind` tells which."""

class _SystemDict(TypedDict):
    """One entry of `Orchestrator.register_many`: `register`'s keywords plus `name`."""

    name: str
    tier: NotRequired[str | None]
    tags: NotRequired[Iterable[str]]
    priority: NotRequired[_Priority]
    resources: NotRequired[Mapping[str, int] | None]
    requires: NotRequired[Iterable[str]]
    wants: NotRequired[Iterable[str]]
    after: NotRequired[Iterable[str]]
    conflicts: NotRequired[Iterable[str]]
    interacts: NotRequired[Iterable[str]]
    timeout: NotRequired[float | None]
    on_activate: NotRequired[_Handler | None]
    on_deactivate: NotRequired[_Handler | None]
    operations: NotRequired[Mapping[str, _StepFn] | None]
    concurrency: NotRequired[int | None]
    pinned: NotRequired[bool]
    health: NotRequired[HealthCheck | None]
    supervise: NotRequired[Supervision | None]

@final
class Orchestrator:
    """Registers systems and their relations, activates them in dependency
    order on a pool of worker threads, and tells what state each is in and why."""

    def __new__(
        cls,
        *,
        workers: int | None = None,
        transition_timeout: float | None = 30.0,
        resource_aging_step: float | None = 1.0,
        preemption_grace: float | None = 1.0,
        idle_lease_after: float | None = 60.0,
        hub: _HubSettings | None = None,
        auto_promote: float | None = None,
        idle_timeout: float | None = None,
        flap_threshold: int | None = 5,
        flap_window: float | None = 60.0,
        alert_interval: float | None = 10.0,
        clock: VirtualClock | None = None,
        metrics: bool | None = True,
        latency_sample_every: int | None = 256,
        max_topics: int | None = 1024,
        utilization_interval: float | None = 1.0,
        utilization_intervals: int | None = 300,
    ) -> Self: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...
    @property
    def workers(self) -> int: ...
    def __len__(self) -> int: ...
    def register(
        self,
        name: str,
        *,
        tier: str | None = None,
        tags: Iterable[str] = (),
        priority: _Priority = "normal",
        resources: Mapping[str, int] | None = None,
        requires: Iterable[str] = (),
        wants: Iterable[str] = (),
        after: Iterable[str] = (),
        conflicts: Iterable[str] = (),
        interacts: Iterable[str] = (),
        timeout: float | None = None,
        on_activate: _Handler | None = None,
        on_deactivate: _Handler | None = None,
        operations: Mapping[str, _StepFn] | None = None,
        concurrency: int | None = None,
        pinned: bool = False,
        health: HealthCheck | None = None,
        supervise: Supervision | None = None,
    ) -> None: ...
    def register_many(
        self,
        systems: Iterable[_SystemDict],
        edges: Iterable[tuple[str, _EdgeKind, str]] = (),
    ) -> int: ...
    def connect(self, source: str, kind: _EdgeKind, target: str) -> None: ...
    def set_handlers(
        self,
        name: str,
        *,
        on_activate: _Handler | None = None,
        on_deactivate: _Handler | None = None,
    ) -> None: ...
    def load_topology(self, path: str | os.PathLike[str]) -> int: ...
    def load_topology_str(self, text: str, format: Literal["toml", "json"] = "toml") -> int: ...
    def activate_system(self, name: str) -> ActivationReport: ...
    def activate_all(self) -> ActivationReport: ...
    def deactivate_system(self, name: str) -> ActivationReport: ...
    def deactivate_all(self) -> ActivationReport: ...
    def system_status(self) -> list[SystemStatus]: ...
    def status(self, name: str) -> SystemStatus: ...
    def why_inactive(self, name: str) -> str: ...
    def plan(self, name: str) -> Plan: ...
    def export(self, format: Literal["json", "toml", "dot", "mermaid"] = "json") -> str: ...
    def set_operation(self, system: str, op: str, fn: _StepFn) -> None: ...
    def set_concurrency_limit(self, system: str, limit: int | None) -> None: ...
    def estimates(self) -> list[Estimate]: ...
    def set_health_check(self, system: str, check: HealthCheck | None) -> None: ...
    def set_supervision(self, system: str, supervision: Supervision | None) -> None: ...
    def check_in(self, system: str) -> None: ...
    def report_failure(self, system: str, message: str) -> None: ...
    def learn_patterns(self) -> Patterns: ...
    def snapshot(self, path: str | os.PathLike[str]) -> SnapshotInfo: ...
    def restore(self, path: str | os.PathLike[str]) -> SnapshotInfo: ...
    def coordination_insights(self) -> Insights: ...
    def optimization_recommendations(self) -> list[Recommendation]: ...
    def optimize_coordination(
        self,
        apply: bool = False,
        *,
        min_samples: int | None = 20,
        min_confidence: float | None = 0.6,
        idle_after: float | None = None,
    ) -> CoordinationPlan: ...
    def coordination_log(self) -> list[Change]: ...
    def revert_change(self, id: int) -> Change: ...
    def evolve_coordination(
        self,
        change: _StrategyChange,
        workload: Callable[[Orchestrator], object],
        *,
        rounds: int | None = 5,
        metric: _TrialMetric = "makespan",
        margin: float | None = 0.05,
    ) -> Evolution: ...
    def evolution_log(self) -> list[Evolution]: ...
    def performance_metrics(self) -> PerformanceMetrics: ...
    @property
    def metrics_enabled(self) -> bool: ...
    @metrics_enabled.setter
    def metrics_enabled(self, on: bool) -> None: ...
    def set_metrics_enabled(self, on: bool) -> None: ...
    def reset_metrics(self) -> None: ...
    def workflow(self, name: str, steps: Iterable[Step]) -> Workflow: ...
    def load_workflow(self, path: str | os.PathLike[str]) -> Workflow: ...
    def load_workflow_str(self, text: str, format: Literal["toml", "json"] = "toml") -> Workflow: ...
    def coordinate_systems(
        self,
        workflow: Workflow,
        input: _InValue = None,
        *,
        deadline: float | None = None,
        timing: bool = True,
    ) -> Run: ...
    def set_capacity(self, dimension: str, capacity: int) -> None: ...
    def set_group_quota(self, group: str, dimension: str, quota: int | None) -> None: ...
    def set_resource_weight(self, system: str, weight: float) -> None: ...
    def allocate_resources(
        self,
        system: str,
        amounts: Mapping[str, int],
        *,
        priority: _Priority | None = None,
        group: str | None = None,
        preemptible: bool = False,
        ttl: float | None = None,
        wait: float | None = None,
    ) -> Lease: ...
    def allocate_resources_async(
        self,
        system: str,
        amounts: Mapping[str, int],
        *,
        priority: _Priority | None = None,
        group: str | None = None,
        preemptible: bool = False,
        ttl: float | None = None,
        wait: float | None = None,
    ) -> Coroutine[Any, Any, Lease]: ...
    def allocate_gang(self, requests: Iterable[ResourceRequest]) -> list[Lease]: ...
    def set_step_resources(
        self,
        system: str,
        amounts: Mapping[str, int] | None,
        *,
        priority: _Priority | None = None,
        group: str | None = None,
        preemptible: bool = False,
        ttl: float | None = None,
        wait: float | None = None,
    ) -> None: ...
    def resource_status(self) -> ResourceStatus: ...
    def optimize_resources(self, apply: bool = False) -> ResourcePlan: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def state(self) -> StateStore: ...
    def coordination_status(self) -> CoordinationStatus: ...
    def set_auto_promote(self, seconds: float | None) -> None: ...
    def promote_pairs(self) -> int: ...
    def set_idle_timeout(self, seconds: float | None) -> None: ...
    def run_minimal(
        self,
        workflow: Workflow,
        input: _InValue = None,
        *,
        deadline: float | None = None,
        timing: bool = True,
    ) -> Run: ...
    def deactivate_idle(self) -> list[str]: ...
    def pin_system(self, name: str, pinned: bool = True) -> None: ...

@final
class Step:
    """One step of a workflow: a system operation (`system` and `op`) or a
    function (`fn`). Build steps into a workflow with `Orchestrator.workflow`."""

    def __new__(
        cls,
        name: str,
        system: str | None = None,
        op: str | None = None,
        fn: _StepFn | None = None,
        inputs: Mapping[str, str] = {},
        after: Iterable[str] = [],
        retries: int = 0,
        backoff: float = 0.01,
        max_backoff: float = 10.0,
        timeout: float | None = None,
        priority: _Priority | None = None,
        when: str | _Condition | None = None,
    ) -> Self: ...
    @property
    def name(self) -> str: ...
    @property
    def system(self) -> str | None: ...
    @property
    def op(self) -> str | None: ...
    @property
    def fn(self) -> _StepFn | None: ...
    @property
    def inputs(self) -> dict[str, str]: ...
    @property
    def after(self) -> list[str]: ...
    @property
    def retries(self) -> int: ...
    @property
    def backoff(self) -> float: ...
    @property
    def max_backoff(self) -> float: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def priority(self) -> _Priority | None: ...
    @property
    def when(self) -> str | _Condition | None: ...

@final
class Workflow:
    """A validated, compiled workflow; run it with `Orchestrator.coordinate_systems`
    as many times as you like, concurrently."""

    @property
    def name(self) -> str: ...
    def __len__(self) -> int: ...
    @property
    def step_names(self) -> list[str]: ...
    @property
    def systems(self) -> list[str]: ...

@final
class StepContext:
    """What a step function receives. A snapshot taken when the call starts,
    except `cancelled`, which is live."""

    @property
    def step(self) -> str: ...
    @property
    def system(self) -> str | None: ...
    @property
    def op(self) -> str | None: ...
    @property
    def attempt(self) -> int: ...
    @property
    def run_id(self) -> int: ...
    @property
    def inputs(self) -> dict[str, _Value]: ...
    @property
    def input(self) -> _Value: ...
    @property
    def run_input(self) -> _Value: ...
    @property
    def cancelled(self) -> bool: ...
    def child_op(self, system: str, op: str, input: _InValue = None) -> Child: ...
    def fan_out(self, children: Iterable[Child]) -> None: ...

@final
class Child:
    """A fan-out child: `Child(fn, input)` runs `fn(ctx)` with `ctx.input == input`;
    `ctx.child_op(system, op, input)` makes one that runs a system operation."""

    def __new__(cls, fn: _StepFn, input: _InValue = None) -> Self: ...
    @property
    def fn(self) -> _StepFn | None: ...
    @property
    def input(self) -> _Value: ...
    @property
    def system(self) -> str | None: ...
    @property
    def op(self) -> str | None: ...

@final
class Run:
    """A workflow run: wait with `result()`, `await` it, or `cancel()` it."""

    @property
    def id(self) -> int: ...
    @property
    def workflow(self) -> str: ...
    @property
    def done(self) -> bool: ...
    def progress(self) -> RunProgress: ...
    def cancel(self) -> bool: ...
    def result(self, timeout: float | None = None) -> RunResult: ...
    def __await__(self) -> Generator[Any, None, RunResult]: ...

@final
class RunProgress:
    """A run's state so far and its step counts."""

    @property
    def state(self) -> Literal["running"] | _RunState: ...
    @property
    def counts(self) -> StepCounts: ...

@final
class StepCounts:
    """How many steps (and fan-out children) ended in each state. Once a run is
    done, `accepted` equals `terminal`, the sum of the terminal counts."""

    @property
    def accepted(self) -> int: ...
    @property
    def succeeded(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def cancelled(self) -> int: ...
    @property
    def timed_out(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def unfinished(self) -> int: ...
    @property
    def terminal(self) -> int: ...

@final
class RunResult:
    """The result of a finished run. A failed run is not an exception: look at `state`."""

    @property
    def id(self) -> int: ...
    @property
    def workflow(self) -> str: ...
    @property
    def state(self) -> _RunState: ...
    @property
    def ok(self) -> bool: ...
    @property
    def counts(self) -> StepCounts: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def outputs(self) -> dict[str, _Value]: ...
    def output(self, step: str) -> _Value: ...
    def error(self, step: str) -> str | None: ...
    @property
    def steps(self) -> list[StepRecord]: ...
    def step(self, name: str) -> StepRecord: ...
    def to_json(self) -> str: ...

@final
class StepRecord:
    """What happened to one step (or fan-out child `parent[i]`) in a run."""

    @property
    def name(self) -> str: ...
    @property
    def system(self) -> str | None: ...
    @property
    def operation(self) -> str | None: ...
    @property
    def state(self) -> _StepState: ...
    @property
    def error(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def queued(self) -> float: ...
    @property
    def ran(self) -> float: ...
    @property
    def worker(self) -> int | None: ...
    @property
    def parent(self) -> str | None: ...

@final
class Estimate:
    """A learned duration estimate of one system operation."""

    @property
    def key(self) -> str: ...
    @property
    def mean(self) -> float: ...
    @property
    def stddev(self) -> float: ...
    @property
    def samples(self) -> int: ...

@final
class ActivationReport:
    """The result of a lifecycle call: one outcome per system touched."""

    @property
    def target(self) -> str: ...
    @property
    def action(self) -> Literal["activate", "deactivate"]: ...
    @property
    def outcomes(self) -> list[SystemOutcome]: ...
    @property
    def elapsed(self) -> float: ...
    def outcome(self, system: str) -> SystemOutcome | None: ...
    @property
    def activated(self) -> list[str]: ...
    @property
    def deactivated(self) -> list[str]: ...
    @property
    def failures(self) -> list[SystemOutcome]: ...
    def to_json(self) -> str: ...

@final
class SystemOutcome:
    """What happened to one system in a lifecycle call."""

    @property
    def system(self) -> str: ...
    @property
    def outcome(self) -> _Outcome: ...
    @property
    def error(self) -> str | None: ...
    @property
    def level(self) -> int: ...
    @property
    def queued(self) -> float: ...
    @property
    def ran(self) -> float: ...

@final
class Plan:
    """What `activate_system` would do, computed without running anything."""

    @property
    def target(self) -> str: ...
    @property
    def levels(self) -> list[list[str]]: ...
    @property
    def already_active(self) -> list[str]: ...
    def to_json(self) -> str: ...

@final
class Transition:
    """One recorded state change of a system."""

    @property
    def from_(self) -> _State: ...
    @property
    def to(self) -> _State: ...
    @property
    def reason(self) -> str: ...
    @property
    def at(self) -> datetime.datetime: ...

@final
class SystemStatus:
    """A snapshot of one system: its state, why, and its relations."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> _State: ...
    @property
    def since(self) -> datetime.datetime: ...
    @property
    def reason(self) -> str: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def priority(self) -> _Priority: ...
    @property
    def resources(self) -> dict[str, int]: ...
    @property
    def resources_held(self) -> dict[str, int]: ...
    @property
    def requires(self) -> list[str]: ...
    @property
    def wants(self) -> list[str]: ...
    @property
    def after(self) -> list[str]: ...
    @property
    def conflicts(self) -> list[str]: ...
    @property
    def interacts(self) -> list[str]: ...
    @property
    def required_by(self) -> list[str]: ...
    @property
    def has_activate_handler(self) -> bool: ...
    @property
    def has_deactivate_handler(self) -> bool: ...
    @property
    def history(self) -> list[Transition]: ...
    @property
    def concurrency(self) -> int | None: ...
    @property
    def health(self) -> HealthInfo | None: ...
    @property
    def supervision(self) -> SupervisionInfo | None: ...

@final
class ResourceRequest:
    """One part of a gang for `Orchestrator.allocate_gang`."""

    def __new__(
        cls,
        system: str,
        amounts: Mapping[str, int],
        *,
        priority: _Priority | None = None,
        group: str | None = None,
        preemptible: bool = False,
        ttl: float | None = None,
        wait: float | None = None,
    ) -> Self: ...
    @property
    def system(self) -> str: ...
    @property
    def amounts(self) -> dict[str, int]: ...
    @property
    def priority(self) -> _Priority: ...
    @property
    def group(self) -> str | None: ...
    @property
    def preemptible(self) -> bool: ...
    @property
    def ttl(self) -> float | None: ...
    @property
    def wait(self) -> float | None: ...

@final
class Lease:
    """Resources held by a system until released (`release()`, `with`, or
    garbage collection), expired (TTL) or preempted."""

    @property
    def id(self) -> int: ...
    @property
    def system(self) -> str: ...
    @property
    def amounts(self) -> dict[str, int]: ...
    @property
    def held(self) -> bool: ...
    @property
    def expires_in(self) -> float | None: ...
    def touch(self) -> None: ...
    def on_preempt(self, fn: _PreemptFn) -> None: ...
    def release(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

@final
class PreemptNotice:
    """What the holder of a preempted lease is told."""

    @property
    def lease(self) -> int: ...
    @property
    def system(self) -> str: ...
    @property
    def grace(self) -> float: ...

@final
class ResourceStatus:
    """Capacity, allocation, leases and waiters at one moment."""

    @property
    def dimensions(self) -> list[DimensionStatus]: ...
    @property
    def groups(self) -> list[GroupStatus]: ...
    @property
    def leases(self) -> list[LeaseStatus]: ...
    @property
    def waiters(self) -> list[WaiterStatus]: ...
    def dimension(self, name: str) -> DimensionStatus | None: ...
    def to_json(self) -> str: ...

@final
class DimensionStatus:
    """One resource dimension."""

    @property
    def name(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def allocated(self) -> int: ...
    @property
    def free(self) -> int: ...

@final
class GroupStatus:
    """One group: its quotas and what its leases hold."""

    @property
    def name(self) -> str: ...
    @property
    def quota(self) -> dict[str, int]: ...
    @property
    def allocated(self) -> dict[str, int]: ...

@final
class LeaseStatus:
    """One lease as the allocator sees it (durations in seconds)."""

    @property
    def id(self) -> int: ...
    @property
    def system(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def amounts(self) -> dict[str, int]: ...
    @property
    def priority(self) -> _Priority: ...
    @property
    def preemptible(self) -> bool: ...
    @property
    def age(self) -> float: ...
    @property
    def idle(self) -> float: ...
    @property
    def ttl_remaining(self) -> float | None: ...
    @property
    def revoking(self) -> bool: ...

@final
class WaiterStatus:
    """One waiting request and why it waits."""

    @property
    def systems(self) -> list[str]: ...
    @property
    def amounts(self) -> dict[str, int]: ...
    @property
    def priority(self) -> _Priority: ...
    @property
    def effective_priority(self) -> _Priority: ...
    @property
    def waited(self) -> float: ...
    @property
    def ahead(self) -> int: ...
    @property
    def reason(self) -> str: ...

@final
class ResourcePlan:
    """What `optimize_resources` found (and with `apply=True`, did)."""

    @property
    def applied(self) -> bool: ...
    @property
    def actions(self) -> list[_ResourceAction]: ...
    def to_json(self) -> str: ...

@final
class Hub:
    """The publish/subscribe hub of an orchestrator (`Orchestrator.hub`)."""

    def publish(self, topic: str, payload: _InValue, *, sender: str | None = None) -> int: ...
    def subscribe(
        self,
        pattern: str,
        callback: _Callback | None = None,
        *,
        capacity: int | None = None,
        overflow: _Overflow | None = None,
        block_timeout: float | None = None,
        group: str | None = None,
        owner: str | None = None,
    ) -> Subscription: ...
    def unsubscribe(self, id: int) -> bool: ...
    def subscriptions(self) -> list[SubscriptionStatus]: ...
    def request(
        self, topic: str, payload: _InValue, timeout: float | None = 1.0, *, sender: str | None = None
    ) -> Message: ...
    def request_async(
        self, topic: str, payload: _InValue, timeout: float | None = 1.0, *, sender: str | None = None
    ) -> Coroutine[Any, Any, Message]: ...
    def request_many(
        self,
        topic: str,
        payload: _InValue,
        *,
        timeout: float,
        max: int | None = None,
        quiet: float | None = None,
    ) -> list[Message]: ...
    def open_direct(self, a: str, b: str, reason: str | None = None) -> None: ...
    def promote(self, a: str, b: str, reason: str | None = None) -> None: ...
    def demote(self, a: str, b: str, reason: str | None = None) -> None: ...
    def close_direct(self, a: str, b: str, reason: str | None = None) -> None: ...
    def endpoint(self, me: str, peer: str) -> DirectEnd: ...
    def mesh(self, systems: Iterable[str]) -> Mesh: ...
    @property
    def closed(self) -> bool: ...

@final
class Message:
    """A message from the hub."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> _Value: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def is_request(self) -> bool: ...
    def reply(self, payload: _InValue) -> bool: ...

@final
class Subscription:
    """A live subscription; a pull one is read with `recv`, `for` or `async for`."""

    @property
    def id(self) -> int: ...
    @property
    def pattern(self) -> str: ...
    @property
    def kind(self) -> Literal["callback", "pull"]: ...
    @property
    def closed(self) -> bool: ...
    def status(self) -> SubscriptionStatus: ...
    def unsubscribe(self) -> bool: ...
    def recv(self, timeout: float | None = None) -> Message: ...
    def try_recv(self) -> Message | None: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Message: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Awaitable[Message]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

@final
class SubscriptionStatus:
    """One subscription's queue and counters."""

    @property
    def id(self) -> int: ...
    @property
    def pattern(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def kind(self) -> Literal["callback", "pull"]: ...
    @property
    def queue_len(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def overflow(self) -> _Overflow: ...
    @property
    def block_timeout(self) -> float | None: ...
    @property
    def delivered(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def closed(self) -> bool: ...

@final
class DirectEnd:
    """One side of a direct channel; use it from one thread at a time."""

    @property
    def system(self) -> str: ...
    @property
    def peer(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def send(self, value: _InValue, timeout: float | None = None) -> None: ...
    def try_send(self, value: _InValue) -> bool: ...
    def recv(self, timeout: float | None = None) -> _Value: ...
    def try_recv(self, default: object = None) -> _Value: ...
    def close(self) -> None: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> _Value: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

@final
class Mesh:
    """A mesh scope: every pair of its systems has a direct channel while it is open."""

    @property
    def id(self) -> int: ...
    @property
    def systems(self) -> list[str]: ...
    @property
    def closed(self) -> bool: ...
    def endpoint(self, me: str, peer: str) -> DirectEnd: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

@final
class CoordinationStatus:
    """Modes, direct pairs, meshes, edge rates, mode changes, minimalist mode."""

    @property
    def mode(self) -> Literal["hierarchical", "direct", "mesh", "minimalist"]: ...
    @property
    def minimalist(self) -> MinimalistStatus | None: ...
    @property
    def auto_promote_every(self) -> float | None: ...
    @property
    def direct_pairs(self) -> list[PairStatus]: ...
    @property
    def meshes(self) -> list[MeshStatus]: ...
    @property
    def edges(self) -> list[EdgeRate]: ...
    @property
    def changes(self) -> list[ModeChange]: ...
    @property
    def subscriptions(self) -> int: ...
    def pair_mode(self, a: str, b: str) -> _Mode: ...
    def to_json(self) -> str: ...

@final
class PairStatus:
    """One pair with a direct channel."""

    @property
    def a(self) -> str: ...
    @property
    def b(self) -> str: ...
    @property
    def mode(self) -> Literal["direct", "mesh"]: ...
    @property
    def origin(self) -> Literal["declared", "promoted", "mesh"]: ...
    @property
    def reason(self) -> str: ...
    @property
    def since(self) -> datetime.datetime: ...
    @property
    def sent_ab(self) -> int: ...
    @property
    def sent_ba(self) -> int: ...
    @property
    def queued_ab(self) -> int: ...
    @property
    def queued_ba(self) -> int: ...
    @property
    def endpoints_taken(self) -> tuple[bool, bool]: ...
    @property
    def mesh(self) -> int | None: ...

@final
class MeshStatus:
    """A live mesh scope."""

    @property
    def id(self) -> int: ...
    @property
    def systems(self) -> list[str]: ...
    @property
    def since(self) -> datetime.datetime: ...

@final
class EdgeRate:
    """The measured message rate of one edge (`from_` is the API's `from`)."""

    @property
    def from_(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def rate(self) -> float: ...
    @property
    def routed(self) -> int: ...
    @property
    def direct(self) -> int: ...
    @property
    def mode(self) -> _Mode: ...

@final
class ModeChange:
    """A recorded mode change of a pair (`from_` is the API's `from`)."""

    @property
    def a(self) -> str: ...
    @property
    def b(self) -> str: ...
    @property
    def from_(self) -> _Mode: ...
    @property
    def to(self) -> _Mode: ...
    @property
    def reason(self) -> str: ...
    @property
    def at(self) -> datetime.datetime: ...

@final
class MinimalistStatus:
    """Minimalist mode's settings and what it deactivated."""

    @property
    def idle_timeout(self) -> float: ...
    @property
    def pinned(self) -> list[str]: ...
    @property
    def idle(self) -> list[tuple[str, float]]: ...
    @property
    def deactivated(self) -> list[IdleDeactivation]: ...

@final
class IdleDeactivation:
    """A system minimalist mode deactivated for being idle."""

    @property
    def system(self) -> str: ...
    @property
    def idle_secs(self) -> float: ...
    @property
    def at(self) -> datetime.datetime: ...

@final
class StateStore:
    """The shared state store of an orchestrator (`Orchestrator.state`)."""

    @property
    def revision(self) -> int: ...
    def get(self, key: str) -> Entry | None: ...
    def list(self, prefix: str = "") -> builtins.list[Entry]: ...
    def put(self, key: str, value: _InValue, *, writer: str | None = None) -> int: ...
    def delete(self, key: str, *, writer: str | None = None) -> int | None: ...
    def compare_and_set(
        self, key: str, expected: int, value: _InValue, *, writer: str | None = None
    ) -> int: ...
    def compare_and_delete(self, key: str, expected: int, *, writer: str | None = None) -> int: ...
    def update(
        self, key: str, fn: Callable[[_Value], _InValue], *, writer: str | None = None
    ) -> int: ...
    def watch(
        self, key: str, *, prefix: bool = False, from_revision: int = 0
    ) -> Watcher: ...
    def snapshot(self, path: str | os.PathLike[str]) -> SnapshotInfo: ...
    def restore(self, path: str | os.PathLike[str]) -> SnapshotInfo: ...

@final
class Entry:
    """The current value of a key."""

    @property
    def key(self) -> str: ...
    @property
    def value(self) -> _Value: ...
    @property
    def revision(self) -> int: ...
    @property
    def writer(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime.datetime: ...

@final
class Event:
    """One change delivered by a watch (`value` is None for a delete)."""

    @property
    def revision(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> _Value: ...
    @property
    def is_delete(self) -> bool: ...
    @property
    def writer(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime.datetime: ...

@final
class Watcher:
    """The changes of a key or prefix after a revision, each once, in order."""

    @property
    def closed(self) -> bool: ...
    def recv(self, timeout: float | None = None) -> Event: ...
    def try_recv(self) -> Event | None: ...
    def close(self) -> None: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Event: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Awaitable[Event]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

@final
class SnapshotInfo:
    """What a snapshot wrote or a restore read."""

    @property
    def path(self) -> pathlib.Path: ...
    @property
    def revision(self) -> int: ...
    @property
    def entries(self) -> int: ...
    @property
    def bytes(self) -> int: ...

class PsoError(Exception):
    """Base class of every PSO error."""

    kind: str
    code: int

class NullPointerError(PsoError, ValueError): ...
class InvalidUtf8Error(PsoError, ValueError): ...
class StaleHandleError(PsoError): ...
class InternalError(PsoError): ...
class NotFoundError(PsoError, LookupError): ...
class AlreadyExistsError(PsoError): ...

class CycleError(PsoError):
    path: list[str]

class InvalidArgumentError(PsoError, ValueError): ...

class ParseError(PsoError, ValueError):
    line: int
    column: int
    source: str

class ConflictError(PsoError):
    system: str
    other: str

class HandlerError(PsoError):
    report: ActivationReport
    chain: list[str]
    target: str

class TimeoutError(PsoError, builtins.TimeoutError): ...
class BusyError(PsoError): ...
class ClosedError(PsoError): ...
class IoError(PsoError, OSError): ...
class NotActiveError(PsoError): ...
class NoRespondersError(PsoError):
    topic: str

class QueueOverflowError(PsoError):
    topic: str
    subscription: int
    pattern: str
    capacity: int
    timed_out: bool
    delivered: int

class CasConflictError(PsoError):
    key: str
    expected: int
    current: Entry | None
    revision: int

class CompactedError(PsoError):
    requested: int
    oldest: int

class ExceedsCapacityError(PsoError):
    system: str
    dimension: str
    requested: int
    capacity: int

class ExceedsQuotaError(PsoError):
    group: str
    dimension: str
    requested: int
    quota: int

class CancelledError(PsoError):
    """The pending request was cancelled (not `asyncio.CancelledError`)."""

@final
class HealthReport:
    """What a health probe found: a status and a detail."""

    def __new__(cls, status: _HealthStatus, detail: str = "") -> Self: ...
    @staticmethod
    def healthy(detail: str = "") -> HealthReport: ...
    @staticmethod
    def degraded(detail: str) -> HealthReport: ...
    @staticmethod
    def unhealthy(detail: str) -> HealthReport: ...
    @property
    def status(self) -> _HealthStatus: ...
    @property
    def detail(self) -> str: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class HealthCheck:
    """How a system's health is checked: a probe every `interval` seconds, and/or a watchdog."""

    def __new__(
        cls,
        probe: _Probe | None = None,
        *,
        interval: float | None = 10.0,
        timeout: float | None = 5.0,
        failures_before_unhealthy: int | None = 3,
        successes_before_healthy: int | None = 1,
        watchdog: float | None = None,
    ) -> Self: ...
    @property
    def probe(self) -> _Probe | None: ...
    @property
    def interval(self) -> float: ...
    @property
    def timeout(self) -> float: ...
    @property
    def failures_before_unhealthy(self) -> int: ...
    @property
    def successes_before_healthy(self) -> int: ...
    @property
    def watchdog(self) -> float | None: ...

@final
class Supervision:
    """How a system is supervised: restart policy, strategy, backoff, intensity."""

    def __new__(
        cls,
        policy: _Policy = "on_failure",
        *,
        strategy: _Strategy = "one_for_one",
        backoff: float | None = 0.1,
        max_backoff: float | None = 30.0,
        jitter: bool = True,
        reset_after: float | None = 60.0,
        max_restarts: int | None = 5,
        within: float | None = 60.0,
    ) -> Self: ...
    @property
    def policy(self) -> _Policy: ...
    @property
    def strategy(self) -> _Strategy: ...
    @property
    def backoff(self) -> float: ...
    @property
    def max_backoff(self) -> float: ...
    @property
    def jitter(self) -> bool: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def max_restarts(self) -> int: ...
    @property
    def within(self) -> float: ...

@final
class VirtualClock:
    """A clock that moves only on `advance`: deterministic supervision tests."""

    def __new__(cls) -> Self: ...
    def advance(self, seconds: float) -> None: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def pending(self) -> int: ...

@final
class HealthInfo:
    """A system's health (`SystemStatus.health`)."""

    @property
    def status(self) -> _HealthStatus: ...
    @property
    def detail(self) -> str: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def probes(self) -> int: ...
    @property
    def since_check_in(self) -> float | None: ...
    @property
    def flapping(self) -> bool: ...

@final
class SupervisionInfo:
    """A system's supervision (`SystemStatus.supervision`)."""

    @property
    def policy(self) -> _Policy: ...
    @property
    def strategy(self) -> _Strategy: ...
    @property
    def restarts(self) -> int: ...
    @property
    def recent_failures(self) -> int: ...
    @property
    def failures_left(self) -> int: ...
    @property
    def next_attempt_in(self) -> float | None: ...
    @property
    def attempt(self) -> int: ...
    @property
    def gave_up(self) -> bool: ...

@final
class OperationPattern:
    """What was learned about one operation (`system.operation`)."""

    @property
    def key(self) -> str: ...
    @property
    def mean(self) -> float: ...
    @property
    def stddev(self) -> float: ...
    @property
    def samples(self) -> int: ...
    @property
    def recent_steps(self) -> int: ...
    @property
    def recent_failures(self) -> int: ...
    @property
    def failure_rate(self) -> float: ...

@final
class EdgePattern:
    """Traffic on one edge (`from_` -> `to`)."""

    @property
    def from_(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def rate(self) -> float: ...
    @property
    def messages(self) -> int: ...

@final
class CoActivation:
    """Two systems used together."""

    @property
    def a(self) -> str: ...
    @property
    def b(self) -> str: ...
    @property
    def together(self) -> int: ...
    @property
    def a_count(self) -> int: ...
    @property
    def b_count(self) -> int: ...

@final
class Patterns:
    """What `learn_patterns` returns."""

    @property
    def operations(self) -> list[OperationPattern]: ...
    @property
    def edges(self) -> list[EdgePattern]: ...
    @property
    def co_activation(self) -> list[CoActivation]: ...
    def to_json(self) -> str: ...

@final
class CriticalPath:
    """The longest chain of a workflow's latest run by measured time."""

    @property
    def workflow(self) -> str: ...
    @property
    def steps(self) -> list[tuple[str, float]]: ...
    @property
    def length(self) -> float: ...
    @property
    def makespan(self) -> float: ...

@final
class Contributor:
    """Time spent by one operation over recent runs (seconds)."""

    @property
    def key(self) -> str: ...
    @property
    def waiting(self) -> float: ...
    @property
    def working(self) -> float: ...
    @property
    def steps(self) -> int: ...

@final
class Contention:
    """Pressure on one resource dimension."""

    @property
    def dimension(self) -> str: ...
    @property
    def utilization(self) -> float: ...
    @property
    def waiters(self) -> int: ...
    @property
    def longest_wait(self) -> float: ...

@final
class Insights:
    """What `coordination_insights` returns."""

    @property
    def runs(self) -> int: ...
    @property
    def critical_paths(self) -> list[CriticalPath]: ...
    @property
    def contributors(self) -> list[Contributor]: ...
    @property
    def hot_edges(self) -> list[EdgePattern]: ...
    @property
    def idle_direct_pairs(self) -> list[tuple[str, str]]: ...
    @property
    def contention(self) -> list[Contention]: ...
    @property
    def unhealthy(self) -> list[str]: ...
    @property
    def flapping(self) -> list[str]: ...
    @property
    def gave_up(self) -> list[str]: ...
    def to_json(self) -> str: ...

@final
class Recommendation:
    """A suggested change with its evidence."""

    @property
    def target(self) -> str: ...
    @property
    def action(self) -> _Action: ...
    @property
    def evidence(self) -> str: ...
    @property
    def expected_gain(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def samples(self) -> int: ...

@final
class Change:
    """A change PSO made to its coordination (`coordination_log`)."""

    @property
    def id(self) -> int: ...
    @property
    def action(self) -> _Action: ...
    @property
    def reason(self) -> str: ...
    @property
    def reverted(self) -> bool: ...
    @property
    def error(self) -> str | None: ...

@final
class CoordinationPlan:
    """What `optimize_coordination` planned and, with `apply=True`, did."""

    @property
    def actions(self) -> list[Recommendation]: ...
    @property
    def skipped(self) -> list[tuple[Recommendation, str]]: ...
    @property
    def applied(self) -> bool: ...
    @property
    def changes(self) -> list[Change]: ...
    def to_json(self) -> str: ...

@final
class ArmStats:
    """One arm of an evolution trial."""

    @property
    def rounds(self) -> int: ...
    @property
    def median(self) -> float: ...
    @property
    def p99(self) -> float: ...
    @property
    def error_rate(self) -> float: ...

@final
class Evolution:
    """A finished evolution trial."""

    @property
    def id(self) -> int: ...
    @property
    def change(self) -> str: ...
    @property
    def baseline(self) -> ArmStats: ...
    @property
    def trial(self) -> ArmStats: ...
    @property
    def improvement(self) -> float: ...
    @property
    def kept(self) -> bool: ...
    @property
    def reason(self) -> str: ...

@final
class PerformanceMetrics:
    """Counters and latency distributions at one moment: a read-only mapping
    with the keys of the JSON (durations in seconds, times RFC 3339 text)."""

    def __getitem__(self, key: str, /) -> Any: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> list[str]: ...
    def values(self) -> list[Any]: ...
    def items(self) -> list[tuple[str, Any]]: ...
    def get(self, key: str, default: Any = None) -> Any: ...
    def operation(self, name: str) -> dict[str, Any] | None: ...
    def system(self, name: str) -> dict[str, Any] | None: ...
    def edge(self, a: str, b: str) -> dict[str, Any] | None: ...
    def topic(self, topic: str) -> dict[str, Any] | None: ...
    def resource(self, dimension: str) -> dict[str, Any] | None: ...
    def to_json(self) -> str: ...
    def to_prometheus(self) -> str: ...
