//! `pso-node`: the Node.js binding of pso-core, built with napi-rs.
//!
//! The JS API is the Node column of `docs/API.md`: an `Orchestrator` class
//! whose lifecycle calls return Promises, plain-object results with camelCase
//! fields, and errors with `code = "PSO_" + kind`. This crate only converts
//! values (`model`, `lifecycle`, `status`, `topology`, `allocator`, `hub`,
//! `state`, `coordination`), maps errors (`error`) and manages the Node event
//! loop and JS thread (`orchestrator`, `model::handler`, `workflow::bridge`,
//! `pump`, `settle`); all logic lives in pso-core.
//!
//! `unsafe_code` is denied, not forbidden: every `#[napi]` item expands to
//! registration code carrying `#[allow(unsafe_code)]`, which `forbid` rejects
//! (E0453). No module of this crate contains `unsafe` itself, and each says
//! `#![forbid(unsafe_code)]` where the macros allow it.

#![deny(unsafe_code)]

mod error;
mod lifecycle;
mod model;
mod orchestrator;
mod status;
mod topology;
mod value;
mod workflow;

// After `orchestrator`: napi-rs names the class that an `#[napi] impl
// JsOrchestrator` block extends after the struct, as far as it has expanded.
mod allocator;
mod coordination;
mod hub;
mod intelligence;
mod metrics;
mod promise;
mod pump;
mod settle;
mod state;
mod supervision;

pub use crate::allocator::lease::{JsLease, JsPreemptNotice};
pub use crate::allocator::status::{
    JsDimensionStatus, JsGroupStatus, JsLeaseStatus, JsResourceStatus, JsWaiterStatus,
};
pub use crate::allocator::{JsAllocateOptions, JsGangPart, JsResourceOptions};
pub use crate::error::{JsErrorCode, error_codes};
pub use crate::hub::direct::{JsDirectEnd, JsMesh};
pub use crate::hub::message::JsMessage;
pub use crate::hub::status::{
    JsCoordinationStatus, JsEdgeRate, JsIdleDeactivation, JsIdleSystem, JsMeshStatus,
    JsMinimalistStatus, JsModeChange, JsPairStatus, JsSubscriptionStatus,
};
pub use crate::hub::subscription::JsSubscription;
pub use crate::hub::{
    JsHub, JsHubOptions, JsPublishOptions, JsRequestManyOptions, JsRequestOptions,
    JsSubscribeOptions,
};
pub use crate::intelligence::{
    JsArmStats, JsChange, JsCoActivation, JsContention, JsContributor, JsCoordinationPlan,
    JsCriticalPath, JsDeactivateIdle, JsDemoteDirect, JsEdgePattern, JsEvolution, JsEvolveOptions,
    JsHubLatency, JsHubShare, JsInsights, JsOperationPattern, JsOptimizeOptions, JsOtherAction,
    JsPathStep, JsPatterns, JsPreActivate, JsPromoteToDirect, JsRecommendation,
    JsSetConcurrencyLimit, JsSetSchedulingPolicy, JsSkipped, JsTopicLatency,
};
pub use crate::lifecycle::{JsActivationReport, JsPlan, JsSystemOutcome};
pub use crate::model::{JsEdgeSpec, JsHandlers, JsOrchestratorOptions, JsSystemSpec};
pub use crate::orchestrator::JsOrchestrator;
pub use crate::state::watch::{JsWatchOptions, JsWatcher};
pub use crate::state::{JsEntry, JsEvent, JsSnapshotInfo, JsStateStore};
pub use crate::status::{JsSystemStatus, JsTransition};
pub use crate::supervision::{
    JsHealthCheck, JsHealthInfo, JsSupervisionInfo, JsSupervisionOptions, JsVirtualClock,
};
pub use crate::workflow::result::{
    JsEstimate, JsRunProgress, JsRunResult, JsStepCounts, JsStepRecord,
};
pub use crate::workflow::{JsRun, JsRunOptions, JsStepSpec, JsWorkflow};
