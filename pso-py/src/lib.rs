//! `pso._pso`: the Python binding of pso-core, imported as `pso`.
//!
//! A thin layer: it converts Python values to pso-core's model and back, maps
//! every core error to the Python exception of its kind (`error.rs`), and
//! manages the GIL: it is released around every call into core and taken back
//! on worker threads only to call a Python handler or step function. Files
//! mirror the core modules they wrap: `orchestrator/` (its verbs by
//! concept), `model.rs` (specs and handlers), `lifecycle.rs` (reports, plans, transitions), `status.rs`,
//! `value.rs` (Python objects <-> `Value`), `workflow/` (steps, workflows,
//! step contexts, runs and results), `allocator/` (resource requests,
//! leases, status and plans), `hub/` (publish/subscribe, requests, direct
//! channels, meshes, coordination status), `state/` (the state store and
//! its watches), `supervise.rs` (health checks, supervision, the virtual
//! clock), `intelligence/` (learned patterns, insights, recommendations,
//! optimization and evolution), `metrics.rs` (performance metrics),
//! `aio.rs` (waiting from threads and asyncio, event loops of
//! `async def` steps) and `scheduler.rs` (worker threads' Python thread
//! states, and closing orchestrators at interpreter exit).
//!
//! `Orchestrator`'s methods are spread over several `#[pymethods]` blocks
//! (pyo3's `multiple-pymethods`): the ones of a concept live in the file of
//! that concept (`supervise.rs`, `intelligence/mod.rs`).

#![forbid(unsafe_code)]

mod aio;
mod allocator;
mod error;
mod hub;
mod intelligence;
mod lifecycle;
mod metrics;
mod model;
mod orchestrator;
mod scheduler;
mod state;
mod status;
mod supervise;
mod value;
mod workflow;

use pyo3::prelude::*;

/// The native module behind the `pso` package.
#[pymodule]
mod _pso {
    #[pymodule_export]
    use super::allocator::PyResourceRequest;
    #[pymodule_export]
    use super::allocator::lease::{PyLease, PyPreemptNotice};
    #[pymodule_export]
    use super::allocator::status::{
        PyDimensionStatus, PyGroupStatus, PyLeaseStatus, PyResourcePlan, PyResourceStatus,
        PyWaiterStatus,
    };
    #[pymodule_export]
    use super::hub::PyHub;
    #[pymodule_export]
    use super::hub::direct::{PyDirectEnd, PyMesh};
    #[pymodule_export]
    use super::hub::message::PyMessage;
    #[pymodule_export]
    use super::hub::status::{
        PyCoordinationStatus, PyEdgeRate, PyIdleDeactivation, PyMeshStatus, PyMinimalistStatus,
        PyModeChange, PyPairStatus, PySubscriptionStatus,
    };
    #[pymodule_export]
    use super::hub::subscription::PySubscription;
    #[pymodule_export]
    use super::intelligence::report::{
        PyArmStats, PyChange, PyCoActivation, PyContention, PyContributor, PyCoordinationPlan,
        PyCriticalPath, PyEdgePattern, PyEvolution, PyInsights, PyOperationPattern, PyPatterns,
        PyRecommendation,
    };
    #[pymodule_export]
    use super::lifecycle::{PyActivationReport, PyPlan, PySystemOutcome, PyTransition};
    #[pymodule_export]
    use super::metrics::PyPerformanceMetrics;
    #[pymodule_export]
    use super::orchestrator::PyOrchestrator;
    #[pymodule_export]
    use super::state::watch::PyWatcher;
    #[pymodule_export]
    use super::state::{PyEntry, PyEvent, PySnapshotInfo, PyStateStore};
    #[pymodule_export]
    use super::status::PySystemStatus;
    #[pymodule_export]
    use super::supervise::clock::PyVirtualClock;
    #[pymodule_export]
    use super::supervise::info::{PyHealthInfo, PySupervisionInfo};
    #[pymodule_export]
    use super::supervise::{PyHealthCheck, PyHealthReport, PySupervision};
    #[pymodule_export]
    use super::workflow::context::{PyChild, PyStepContext};
    #[pymodule_export]
    use super::workflow::result::{
        PyEstimate, PyRun, PyRunProgress, PyRunResult, PyStepCounts, PyStepRecord,
    };
    #[pymodule_export]
    use super::workflow::{PyStep, PyWorkflow};
    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        super::scheduler::register_exit_hook(m.py())?;
        super::error::add_to_module(m)
    }
}
