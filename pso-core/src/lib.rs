//! # pso-core — the Progressive System Orchestrator
//!
//! An embeddable, in-process orchestrator. A host program registers its
//! *systems* — components with a lifecycle, handlers and resource needs — and
//! the relations between them (`requires`, `wants`, `after`, `conflicts`,
//! `interacts`). PSO activates them in dependency order on a work-stealing
//! worker pool, records every lifecycle transition with its reason, and
//! explains why any system is not active.
//!
//! ```
//! use pso_core::{Orchestrator, SystemSpec};
//!
//! let orch = Orchestrator::new();
//! orch.register(SystemSpec::new("PDT").tier("foundation"))?;
//! orch.register(SystemSpec::new("PSec").tier("enterprise").requires("PDT"))?;
//! orch.register(
//!     SystemSpec::new("PBOS")
//!         .tier("enterprise")
//!         .requires("PSec")
//!         .on_activate(|_ctx| Ok(())),
//! )?;
//! let report = orch.activate_system("PBOS")?;
//! assert_eq!(report.activated(), ["PDT", "PSec", "PBOS"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same API is available from Python (`pso`), Node (`pso-node`) and C
//! (`include/pso.h`); every error maps to one [`ErrorKind`] in all four.

#![deny(missing_docs)]

mod allocator;
mod error;
mod hub;
mod intelligence;
mod lifecycle;
pub mod metrics;
mod model;
mod orchestrator;
mod registry;
mod scheduler;
mod state;
mod status;
mod supervise;
mod sync;
mod topology;
mod unwind;
mod value;
mod workflow;

/// The repository README's Rust example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Internals for the benchmarks; not part of the API.
#[doc(hidden)]
pub mod __bench {
    pub use crate::allocator::bench::{DecisionCore, Handle};
}
pub use crate::allocator::{
    DimensionStatus, GroupStatus, Lease, LeaseStatus, PendingLease, PreemptNotice, ResourceAction,
    ResourceError, ResourcePlan, ResourceRequest, ResourceStatus, WaiterStatus,
};
pub use crate::error::{ErrorKind, PsoError};
pub use crate::hub::{
    Candidate, CoordinationMode, CoordinationStatus, DirectEnd, DirectOrigin, DirectSendError,
    EdgeRate, Gather, Hub, HubConfig, HubError, IdleDeactivation, Mesh, MeshStatus, Message,
    MinimalistStatus, ModeChange, Overflow, PairAction, PairStatus, SubscribeOptions, Subscription,
    SubscriptionId, SubscriptionStatus,
};
pub use crate::intelligence::{
    Action, ArmStats, Change, CoActivation, Contention, Contributor, CoordinationPlan,
    CriticalPath, EdgePattern, Evolution, Guardrails, HubLatency, Insights, OperationPattern,
    PATTERNS_KEY, Patterns, Recommendation, StrategyChange, TopicLatency, Trial, TrialMetric,
};
pub use crate::lifecycle::{
    ActivationReport, LifecycleError, Outcome, Plan, SystemOutcome, SystemState, Transition,
};
pub use crate::metrics::{
    EdgeMetrics, HubShare, LatencySummary, LeaseMetrics, MetricsConfig, OperationMetrics,
    PerformanceMetrics, ProbeCounts, ResourceUtilization, SystemMetrics, TopicMetrics,
    TransitionCounts, UtilizationInterval,
};
pub use crate::model::{
    EdgeKind, EdgeSpec, HandlerError, Handlers, HostPayload, LifecycleAction, LifecycleContext,
    LifecycleFn, OpFn, Priority, Resources, SystemSpec,
};
pub use crate::orchestrator::{
    BuildError, DEFAULT_TRANSITION_TIMEOUT, MAX_WORKERS, Orchestrator, OrchestratorBuilder,
};
pub use crate::registry::RegistryError;
pub use crate::scheduler::WorkerScope;
pub use crate::state::{
    Dump, Entry, Event, Expect, MemoryBackend, Selector, SnapshotInfo, StateBackend, StateConfig,
    StateError, StateStore, WatchSource, Watcher,
};
pub use crate::status::SystemStatus;
pub use crate::supervise::{
    HealthCheck, HealthInfo, HealthReport, HealthStatus, ProbeFn, RestartPolicy, RestartStrategy,
    Supervision, SupervisionInfo, VirtualClock,
};
pub use crate::topology::{ExportFormat, SystemDecl, Topology, TopologyError, TopologyFormat};
pub use crate::value::Value;
pub use crate::workflow::{
    CancelToken, Child, Completion, ConditionFn, Estimate, MAX_RETRIES, RetryPolicy, RunHandle,
    RunOptions, RunProgress, RunResult, RunState, SchedulingPolicy, StepContext, StepCounts,
    StepDecl, StepId, StepRecord, StepSpec, StepState, TryConditionFn, Workflow, WorkflowBuilder,
    WorkflowDecl, WorkflowError,
};
