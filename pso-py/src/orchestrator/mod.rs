//! `pso.Orchestrator`: pso-core's `Orchestrator` behind the GIL rules.
//!
//! This file has construction, registration, lifecycle, workflows and the
//! garbage-collection support; the verbs of other concepts are in
//! `#[pymethods]` blocks beside it (`resources.rs`, `coordination.rs`) or in
//! the concept's own file (`supervise/`, `intelligence/`).
//!
//! # Threads and the GIL
//! Every call into core runs inside `py.detach` (the GIL released): lifecycle
//! calls wait for handlers that need the GIL on worker threads, and even a
//! status read may wait for a registry lock. Nothing here holds a lock of its
//! own while waiting for the GIL: the two mutexes below are only taken while
//! detached (or with `try_lock`, in `__traverse__`).
//!
//! # Fork
//! The orchestrator remembers the process that created it. In a forked child
//! its worker threads do not exist, so every method raises `ClosedError`
//! (except `close`, a no-op there) and dropping it leaks it on purpose rather
//! than joining threads that are not there.
//!
//! # Garbage collection
//! Handlers often refer back to their orchestrator (a closure over it). The
//! `handlers` and `operations` mirrors hold the single Python reference to
//! each handler, health probe and operation function that core's closures
//! share, so
//! `__traverse__` can report it and `__clear__` can break such cycles by
//! dropping the core orchestrator (which joins its workers first, so no
//! operation runs after that).

#![forbid(unsafe_code)]

mod coordination;
mod resources;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use pso_core::{ExportFormat, Orchestrator, RunOptions, TopologyFormat, Value, Workflow};

use crate::aio::RunLoops;
use crate::scheduler::{self, OrchCell};
use pyo3::PyTraverseError;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::error::{OrRaise, closed, invalid_argument};
use crate::lifecycle::{PyActivationReport, PyPlan};
use crate::model::{self, Callable, HandlerRefs, OperationRefs, SpecArgs};
use crate::status::PySystemStatus;
use crate::value::extract_value;
use crate::workflow::result::{PyEstimate, PyRun};
use crate::workflow::{self, PyWorkflow, seconds_arg};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; never let poisoning escalate.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers systems and their relations, activates them in dependency order
/// on a pool of worker threads, and tells what state each is in and why.
#[pyclass(name = "Orchestrator", module = "pso", frozen)]
pub(crate) struct PyOrchestrator {
    /// `None` once `__clear__` dropped it. Shared (weakly) with the exit
    /// hook, which closes orchestrators still open (`scheduler.rs`).
    inner: Arc<OrchCell>,
    /// The Python handlers core holds, by system (see the module docs).
    handlers: Mutex<HashMap<String, HandlerRefs>>,
    /// The Python operations core holds, by system and operation.
    operations: Mutex<HashMap<String, HashMap<String, Callable>>>,
    /// The process that created the orchestrator.
    owner_pid: u32,
    /// Loops of runs started from coroutines (`async def` steps run there).
    loops: Arc<RunLoops>,
}

/// What `Hub`, `StateStore` and friends keep of their orchestrator: its cell
/// and owning process (no Python reference, so nothing for the collector).
#[derive(Clone)]
pub(crate) struct OrchHandle {
    cell: Arc<OrchCell>,
    owner_pid: u32,
}

impl OrchHandle {
    /// The core orchestrator, or `ClosedError` if it is closed or belongs to
    /// the parent of this forked process.
    pub(crate) fn core(&self, py: Python<'_>) -> PyResult<Orchestrator> {
        let pid = std::process::id();
        if pid != self.owner_pid {
            return Err(closed(
                py,
                format!(
                    "this Orchestrator belongs to process {} and cannot be used in process {pid} \
                     (a fork of it): its worker threads exist only in the parent; create a new \
                     Orchestrator in the child",
                    self.owner_pid
                ),
            ));
        }
        match &*lock(&self.cell) {
            // pso-core still answers reads after close(); the Python contract
            // is that every call on a closed orchestrator raises ClosedError.
            Some(o) if !o.is_closed() => Ok(o.clone()),
            _ => Err(closed(py, "the orchestrator is closed")),
        }
    }

    /// Whether the orchestrator is open and of this process (no GIL needed).
    pub(crate) fn is_open(&self) -> bool {
        self.in_owner() && lock(&self.cell).as_ref().is_some_and(|o| !o.is_closed())
    }

    /// Whether this process created the orchestrator.
    pub(crate) fn in_owner(&self) -> bool {
        std::process::id() == self.owner_pid
    }
}

impl PyOrchestrator {
    pub(super) fn handle(&self) -> OrchHandle {
        OrchHandle {
            cell: self.inner.clone(),
            owner_pid: self.owner_pid,
        }
    }

    /// The core orchestrator, or `ClosedError` (see [`OrchHandle::core`]).
    pub(crate) fn core(&self, py: Python<'_>) -> PyResult<Orchestrator> {
        self.handle().core(py)
    }

    /// `coordinate_systems` and `run_minimal`: converts the arguments and
    /// starts the run with the GIL released, recording the loop running
    /// here (if any) for its `async def` steps (`aio::RunLoops`).
    fn start_run(
        &self,
        py: Python<'_>,
        workflow: &Bound<'_, PyAny>,
        input: Option<&Bound<'_, PyAny>>,
        deadline: Option<&Bound<'_, PyAny>>,
        timing: bool,
        minimal: bool,
    ) -> PyResult<PyRun> {
        let orch = self.core(py)?;
        let wf = workflow.cast::<PyWorkflow>().map_err(|_| {
            PyTypeError::new_err(format!(
                "workflow must be a pso.Workflow (from Orchestrator.workflow or load_workflow), \
                 got '{}'",
                workflow
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let input = match input {
            Some(i) => extract_value(i, "input")?,
            None => Value::Null,
        };
        let deadline = match deadline.filter(|d| !d.is_none()) {
            Some(d) => Some(model::seconds(py, d, "deadline")?),
            None => None,
        };
        let options = RunOptions {
            input,
            deadline,
            timing,
        };
        let event_loop = crate::aio::running_loop(py)?.map(|l| Arc::new(l.unbind()));
        let wf = wf.get().core();
        let loops = &self.loops;
        py.detach(|| {
            loops.start(event_loop, || {
                if minimal {
                    orch.run_minimal(wf, options)
                } else {
                    orch.coordinate_systems_with(wf, options)
                }
            })
        })
        .map(PyRun::new)
        .or_raise(py)
    }

    /// Mirrors new handlers; a system's probe is kept unless `refs` has one.
    fn record_handlers(&self, batch: Vec<(String, HandlerRefs)>) {
        let mut mirror = lock(&self.handlers);
        for (name, mut refs) in batch {
            if refs.probe.is_none() {
                refs.probe = mirror.get(&name).and_then(|old| old.probe.clone());
            }
            if refs.is_empty() {
                mirror.remove(&name);
            } else {
                mirror.insert(name, refs);
            }
        }
    }

    /// Mirrors `system`'s new probe (`None`: it has none now).
    pub(crate) fn record_probe(&self, system: String, probe: Option<Callable>) {
        let mut mirror = lock(&self.handlers);
        let refs = mirror.entry(system.clone()).or_default();
        refs.probe = probe;
        if refs.is_empty() {
            mirror.remove(&system);
        }
    }

    fn record_operations(&self, batch: Vec<(String, OperationRefs)>) {
        let mut mirror = lock(&self.operations);
        for (system, ops) in batch {
            if !ops.is_empty() {
                mirror.entry(system).or_default().extend(ops);
            }
        }
    }

    /// Drops the core orchestrator with the GIL released: its worker threads
    /// may be finishing a Python handler, and joining them while holding the
    /// GIL would deadlock.
    fn release(&self) {
        let orch = lock(&self.inner).take();
        let Some(orch) = orch else { return };
        if std::process::id() != self.owner_pid {
            std::mem::forget(orch); // its threads are the parent's (see module docs)
            return;
        }
        // Closing (not just dropping): a call in progress on another thread
        // may hold a clone, whose drop must not be the one that joins the
        // workers, since it happens with the GIL held and pinned workers
        // take the GIL to stop (`scheduler.rs`).
        // If the interpreter cannot be attached to (it is shutting down), the
        // closure is dropped uncalled, which drops `orch` right here: handlers
        // then fail instead of waiting for the GIL, so the join cannot hang.
        let _ = Python::try_attach(move |py| {
            py.detach(move || {
                orch.close();
                drop(orch);
            })
        });
    }
}

impl Drop for PyOrchestrator {
    fn drop(&mut self) {
        self.release();
        let handlers = std::mem::take(&mut *lock(&self.handlers));
        let operations = std::mem::take(&mut *lock(&self.operations));
        drop((handlers, operations));
    }
}

#[pymethods]
impl PyOrchestrator {
    /// Starts `workers` worker threads (default: one per core). Each lifecycle
    /// transition times out after `transition_timeout` seconds unless the
    /// system sets its own `timeout`.
    ///
    /// Resources: a waiting request's class improves by one every
    /// `resource_aging_step` seconds; a preempted lease is revoked
    /// `preemption_grace` seconds after its notice; `optimize_resources`
    /// reclaims leases untouched for `idle_lease_after` seconds.
    ///
    /// Coordination: `hub` is a dict of hub settings (`queue_capacity`,
    /// `overflow`, `block_timeout`, `promote_threshold`, `demote_threshold`,
    /// `rate_window`, `direct_capacity`, `alert_interval`, `match_cache`);
    /// `auto_promote` checks pair rates every that many seconds; an
    /// `idle_timeout` turns minimalist mode on.
    ///
    /// Supervision: `flap_threshold` health or state changes within
    /// `flap_window` seconds mark a system flapping; an alert goes out at
    /// most once per (system, kind) every `alert_interval` seconds; a
    /// `pso.VirtualClock` as `clock` makes supervision time virtual.
    ///
    /// Metrics: recorded unless `metrics=False`; one hub message in
    /// `latency_sample_every` has its latency measured; at most `max_topics`
    /// topics are tracked one by one; resource utilization is kept as
    /// `utilization_intervals` means of `utilization_interval` seconds.
    #[new]
    #[pyo3(signature = (
        *, workers = None, transition_timeout = None, resource_aging_step = None,
        preemption_grace = None, idle_lease_after = None, hub = None, auto_promote = None,
        idle_timeout = None, flap_threshold = None, flap_window = None, alert_interval = None,
        clock = None, metrics = None, latency_sample_every = None, max_topics = None,
        utilization_interval = None, utilization_intervals = None
    ))]
    #[pyo3(
        text_signature = "(*, workers=None, transition_timeout=30.0, resource_aging_step=1.0, \
        preemption_grace=1.0, idle_lease_after=60.0, hub=None, auto_promote=None, \
        idle_timeout=None, flap_threshold=5, flap_window=60.0, alert_interval=10.0, clock=None, \
        metrics=True, latency_sample_every=256, max_topics=1024, utilization_interval=1.0, \
        utilization_intervals=300)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        workers: Option<&Bound<'_, PyAny>>,
        transition_timeout: Option<&Bound<'_, PyAny>>,
        resource_aging_step: Option<&Bound<'_, PyAny>>,
        preemption_grace: Option<&Bound<'_, PyAny>>,
        idle_lease_after: Option<&Bound<'_, PyAny>>,
        hub: Option<&Bound<'_, PyAny>>,
        auto_promote: Option<&Bound<'_, PyAny>>,
        idle_timeout: Option<&Bound<'_, PyAny>>,
        flap_threshold: Option<&Bound<'_, PyAny>>,
        flap_window: Option<&Bound<'_, PyAny>>,
        alert_interval: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        metrics: Option<&Bound<'_, PyAny>>,
        latency_sample_every: Option<&Bound<'_, PyAny>>,
        max_topics: Option<&Bound<'_, PyAny>>,
        utilization_interval: Option<&Bound<'_, PyAny>>,
        utilization_intervals: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut builder = Orchestrator::builder().worker_scope(scheduler::worker_scope());
        builder = crate::supervise::clock::configure(
            py,
            builder,
            flap_threshold,
            flap_window,
            alert_interval,
            clock,
        )?;
        builder = crate::metrics::configure(
            py,
            builder,
            metrics,
            latency_sample_every,
            max_topics,
            utilization_interval,
            utilization_intervals,
        )?;
        if let Some(h) = hub.filter(|h| !h.is_none()) {
            builder = builder.hub_config(crate::hub::config::hub_config(py, h)?);
        }
        if let Some(d) = auto_promote.filter(|d| !d.is_none()) {
            builder = builder.auto_promote(seconds_arg(py, d, "auto_promote", true)?);
        }
        if let Some(d) = idle_timeout.filter(|d| !d.is_none()) {
            builder = builder.idle_timeout(seconds_arg(py, d, "idle_timeout", true)?);
        }
        if let Some(d) = resource_aging_step.filter(|d| !d.is_none()) {
            builder = builder.resource_aging_step(seconds_arg(py, d, "resource_aging_step", true)?);
        }
        if let Some(d) = preemption_grace.filter(|d| !d.is_none()) {
            builder = builder.preemption_grace(seconds_arg(py, d, "preemption_grace", false)?);
        }
        if let Some(d) = idle_lease_after.filter(|d| !d.is_none()) {
            builder = builder.idle_lease_after(seconds_arg(py, d, "idle_lease_after", false)?);
        }
        if let Some(w) = workers.filter(|w| !w.is_none()) {
            if w.is_instance_of::<pyo3::types::PyBool>() {
                return Err(PyTypeError::new_err("workers must be an int, got 'bool'"));
            }
            let n: i128 = w.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "workers must be an int, got '{}'",
                    w.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?;
            // 0 goes through: pso-core rejects it with its own message.
            let n = usize::try_from(n).map_err(|_| {
                invalid_argument(py, format!("workers must be at least 1, got {n}"))
            })?;
            builder = builder.workers(n);
        }
        if let Some(t) = transition_timeout.filter(|t| !t.is_none()) {
            builder = builder.transition_timeout(model::seconds(py, t, "transition_timeout")?);
        }
        let orch = py.detach(|| builder.build()).or_raise(py)?;
        let inner = Arc::new(Mutex::new(Some(orch)));
        scheduler::track(&inner);
        Ok(PyOrchestrator {
            inner,
            handlers: Mutex::new(HashMap::new()),
            operations: Mutex::new(HashMap::new()),
            owner_pid: std::process::id(),
            loops: Arc::new(RunLoops::default()),
        })
    }

    /// Refuses further calls with `ClosedError`, waits for a running lifecycle
    /// call to end, and stops the worker threads. Idempotent.
    fn close(&self, py: Python<'_>) {
        if std::process::id() != self.owner_pid {
            return; // nothing of it runs in a forked child
        }
        let orch = lock(&self.inner).clone();
        if let Some(orch) = orch {
            py.detach(|| orch.close());
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// Number of worker threads.
    #[getter]
    fn workers(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.core(py)?.workers())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let orch = self.core(py)?;
        Ok(py.detach(|| orch.len()))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        if std::process::id() != self.owner_pid {
            return format!(
                "<pso.Orchestrator of process {} (unusable in this forked process)>",
                self.owner_pid
            );
        }
        match self.core(py) {
            Ok(o) => format!(
                "<pso.Orchestrator systems={} workers={}>",
                py.detach(|| o.len()),
                o.workers()
            ),
            Err(_) => "<pso.Orchestrator closed>".to_owned(),
        }
    }

    /// Registers one system and the relations declared on it.
    #[pyo3(signature = (
        name, *, tier = None, tags = None, priority = None, resources = None,
        requires = None, wants = None, after = None, conflicts = None, interacts = None,
        timeout = None, on_activate = None, on_deactivate = None, operations = None,
        concurrency = None, pinned = false, health = None, supervise = None
    ))]
    #[pyo3(
        text_signature = "(self, name, *, tier=None, tags=(), priority='normal', \
        resources=None, requires=(), wants=(), after=(), conflicts=(), interacts=(), \
        timeout=None, on_activate=None, on_deactivate=None, operations=None, concurrency=None, \
        pinned=False, health=None, supervise=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn register<'py>(
        &self,
        py: Python<'py>,
        name: String,
        tier: Option<String>,
        tags: Option<Bound<'py, PyAny>>,
        priority: Option<String>,
        resources: Option<Bound<'py, PyAny>>,
        requires: Option<Bound<'py, PyAny>>,
        wants: Option<Bound<'py, PyAny>>,
        after: Option<Bound<'py, PyAny>>,
        conflicts: Option<Bound<'py, PyAny>>,
        interacts: Option<Bound<'py, PyAny>>,
        timeout: Option<Bound<'py, PyAny>>,
        on_activate: Option<Bound<'py, PyAny>>,
        on_deactivate: Option<Bound<'py, PyAny>>,
        operations: Option<Bound<'py, PyAny>>,
        concurrency: Option<Bound<'py, PyAny>>,
        pinned: bool,
        health: Option<Bound<'py, PyAny>>,
        supervise: Option<Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let args = SpecArgs {
            tier,
            tags,
            priority,
            resources,
            requires,
            wants,
            after,
            conflicts,
            interacts,
            timeout,
            on_activate,
            on_deactivate,
            operations,
            concurrency,
            pinned,
            health,
            supervise,
        };
        let (spec, refs, ops) = args.into_spec(py, name.clone(), "", &self.loops)?;
        py.detach(|| {
            let result = orch.register(spec);
            if result.is_ok() {
                self.record_handlers(vec![(name.clone(), refs)]);
                self.record_operations(vec![(name, ops)]);
            }
            result
        })
        .or_raise(py)
    }

    /// Registers systems (dicts of `register` keywords plus `name`) and
    /// `(source, kind, target)` edges as one transaction: all or nothing.
    /// Returns how many systems were added.
    #[pyo3(signature = (systems, edges = None))]
    #[pyo3(text_signature = "(self, systems, edges=())")]
    fn register_many<'py>(
        &self,
        py: Python<'py>,
        systems: &Bound<'py, PyAny>,
        edges: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<usize> {
        let orch = self.core(py)?;
        let mut specs = Vec::new();
        let mut refs = Vec::new();
        let mut op_refs = Vec::new();
        for (i, item) in iter_list(systems, "systems")?.into_iter().enumerate() {
            let at = format!("systems[{i}]");
            let (name, args) = SpecArgs::from_dict(&item, &at)?;
            let (spec, handlers, ops) = args.into_spec(py, name.clone(), &at, &self.loops)?;
            specs.push(spec);
            refs.push((name.clone(), handlers));
            op_refs.push((name, ops));
        }
        let mut edge_specs = Vec::new();
        if let Some(edges) = edges.filter(|e| !e.is_none()) {
            for (i, item) in iter_list(edges, "edges")?.into_iter().enumerate() {
                edge_specs.push(model::edge(py, &item, &format!("edges[{i}]"))?);
            }
        }
        py.detach(|| {
            let result = orch.register_batch(specs, edge_specs);
            if result.is_ok() {
                self.record_handlers(refs);
                self.record_operations(op_refs);
            }
            result
        })
        .or_raise(py)
    }

    /// Adds the relation `source <kind> target` (`kind`: requires, wants,
    /// after, conflicts or interacts). Adding an existing relation does nothing.
    fn connect(&self, py: Python<'_>, source: &str, kind: &str, target: &str) -> PyResult<()> {
        let orch = self.core(py)?;
        let kind = model::edge_kind(py, kind, "")?;
        py.detach(|| orch.connect(source, kind, target))
            .or_raise(py)
    }

    /// Replaces both handlers of a registered system (`None`: no handler).
    #[pyo3(signature = (name, *, on_activate = None, on_deactivate = None))]
    fn set_handlers<'py>(
        &self,
        py: Python<'py>,
        name: String,
        on_activate: Option<Bound<'py, PyAny>>,
        on_deactivate: Option<Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let refs = HandlerRefs {
            activate: model::callable(on_activate, "on_activate")?,
            deactivate: model::callable(on_deactivate, "on_deactivate")?,
            probe: None, // kept by record_handlers
        };
        py.detach(|| {
            let result = orch.set_handlers(&name, refs.to_core());
            if result.is_ok() {
                self.record_handlers(vec![(name, refs)]);
            }
            result
        })
        .or_raise(py)
    }

    /// Loads a topology file (`.toml` or `.json`) as one transaction.
    /// Returns how many systems were added.
    fn load_topology(&self, py: Python<'_>, path: PathBuf) -> PyResult<usize> {
        let orch = self.core(py)?;
        py.detach(|| orch.load_topology(&path)).or_raise(py)
    }

    /// Loads a topology from text (`format`: `"toml"` or `"json"`) as one
    /// transaction. Returns how many systems were added.
    #[pyo3(signature = (text, format = "toml"))]
    fn load_topology_str(&self, py: Python<'_>, text: &str, format: &str) -> PyResult<usize> {
        let orch = self.core(py)?;
        let format: TopologyFormat = format
            .parse()
            .map_err(|e: String| invalid_argument(py, e))?;
        py.detach(|| orch.load_topology_str(text, format))
            .or_raise(py)
    }

    /// Activates `name` and everything it requires or wants, level by level.
    /// Raises `HandlerError` (with `.report`) if `name` did not become Active.
    fn activate_system(&self, py: Python<'_>, name: &str) -> PyResult<PyActivationReport> {
        let orch = self.core(py)?;
        py.detach(|| orch.activate_system(name))
            .map(PyActivationReport::from)
            .or_raise(py)
    }

    /// Activates every system that is not Active. Raises `HandlerError` if
    /// any system failed or was blocked.
    fn activate_all(&self, py: Python<'_>) -> PyResult<PyActivationReport> {
        let orch = self.core(py)?;
        py.detach(|| orch.activate_all())
            .map(PyActivationReport::from)
            .or_raise(py)
    }

    /// Deactivates `name`, after every Active system that requires it.
    fn deactivate_system(&self, py: Python<'_>, name: &str) -> PyResult<PyActivationReport> {
        let orch = self.core(py)?;
        py.detach(|| orch.deactivate_system(name))
            .map(PyActivationReport::from)
            .or_raise(py)
    }

    /// Deactivates every Active system, dependents first.
    fn deactivate_all(&self, py: Python<'_>) -> PyResult<PyActivationReport> {
        let orch = self.core(py)?;
        py.detach(|| orch.deactivate_all())
            .map(PyActivationReport::from)
            .or_raise(py)
    }

    /// The status of every system, in registration order.
    fn system_status(&self, py: Python<'_>) -> PyResult<Vec<PySystemStatus>> {
        let orch = self.core(py)?;
        Ok(py
            .detach(|| orch.system_status())
            .into_iter()
            .map(PySystemStatus::from)
            .collect())
    }

    /// The status of one system.
    fn status(&self, py: Python<'_>, name: &str) -> PyResult<PySystemStatus> {
        let orch = self.core(py)?;
        py.detach(|| orch.status(name))
            .map(PySystemStatus::from)
            .or_raise(py)
    }

    /// Explains why `name` is (or is not) active, following failed requirements.
    fn why_inactive(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        let orch = self.core(py)?;
        py.detach(|| orch.why_inactive(name)).or_raise(py)
    }

    /// The activation levels of `name`, without running anything.
    fn plan(&self, py: Python<'_>, name: &str) -> PyResult<PyPlan> {
        let orch = self.core(py)?;
        py.detach(|| orch.plan(name)).map(PyPlan::from).or_raise(py)
    }

    /// The registry as text: `"json"` or `"toml"` (both load back with
    /// `load_topology_str`), `"dot"` or `"mermaid"`.
    #[pyo3(signature = (format = "json"))]
    fn export(&self, py: Python<'_>, format: &str) -> PyResult<String> {
        let orch = self.core(py)?;
        let format: ExportFormat = format
            .parse()
            .map_err(|e: String| invalid_argument(py, e))?;
        Ok(py.detach(|| orch.export(format)))
    }

    /// Adds or replaces operation `op` of `system`: `fn(ctx) -> value`, run by
    /// workflow steps on PSO's worker threads. Workflows built afterwards use it.
    #[pyo3(signature = (system, op, r#fn))]
    fn set_operation(
        &self,
        py: Python<'_>,
        system: String,
        op: String,
        r#fn: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let f = model::operation(r#fn, "fn")?;
        let core_fn = workflow::context::step_fn(f.clone(), Some(self.loops.clone()));
        py.detach(|| {
            let result = orch.set_operation_shared(&system, &op, core_fn);
            if result.is_ok() {
                self.record_operations(vec![(system, vec![(op, f)])]);
            }
            result
        })
        .or_raise(py)
    }

    /// Limits how many workflow steps of `system` run at once (`None`: no
    /// limit). Steps beyond it wait without holding a worker.
    fn set_concurrency_limit(
        &self,
        py: Python<'_>,
        system: &str,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let limit = match limit.filter(|l| !l.is_none()) {
            Some(l) => Some(model::concurrency_limit(py, l, "limit")?),
            None => None,
        };
        py.detach(|| orch.set_concurrency_limit(system, limit))
            .or_raise(py)
    }

    /// Learned duration estimates of system operations (`system.op`).
    fn estimates(&self, py: Python<'_>) -> PyResult<Vec<PyEstimate>> {
        let orch = self.core(py)?;
        Ok(py
            .detach(|| orch.estimates())
            .into_iter()
            .map(PyEstimate::from)
            .collect())
    }

    /// Validates and compiles a workflow of `pso.Step`s. Unknown systems,
    /// operations or steps, duplicate names and cycles raise, naming the step.
    fn workflow(
        &self,
        py: Python<'_>,
        name: String,
        steps: &Bound<'_, PyAny>,
    ) -> PyResult<PyWorkflow> {
        let orch = self.core(py)?;
        let specs = workflow::specs(py, steps, &self.loops)?;
        py.detach(|| {
            let mut b = Workflow::builder(name);
            for s in specs {
                b.add(s);
            }
            b.build(&orch)
        })
        .map(PyWorkflow::new)
        .or_raise(py)
    }

    /// Loads a workflow definition file (`.toml` or `.json`) and builds it.
    fn load_workflow(&self, py: Python<'_>, path: PathBuf) -> PyResult<PyWorkflow> {
        let orch = self.core(py)?;
        py.detach(|| orch.load_workflow(&path))
            .map(PyWorkflow::new)
            .or_raise(py)
    }

    /// Parses a workflow definition (`format`: `"toml"` or `"json"`) and builds it.
    #[pyo3(signature = (text, format = "toml"))]
    fn load_workflow_str(&self, py: Python<'_>, text: &str, format: &str) -> PyResult<PyWorkflow> {
        let orch = self.core(py)?;
        let format: TopologyFormat = format
            .parse()
            .map_err(|e: String| invalid_argument(py, e))?;
        py.detach(|| orch.load_workflow_str(text, format))
            .map(PyWorkflow::new)
            .or_raise(py)
    }

    /// Starts a run of `workflow` and returns at once: steps start as soon as
    /// their predecessors are done, in parallel on the workers. `input` is
    /// what steps without named inputs receive; `deadline` (seconds) times
    /// out everything unfinished; `timing=False` skips per-step timing.
    /// Raises `NotActiveError` if a system it uses is not Active. `async
    /// def` steps run on the loop running here, if any (else on PSO's
    /// background loop).
    #[pyo3(signature = (workflow, input = None, *, deadline = None, timing = true))]
    fn coordinate_systems(
        &self,
        py: Python<'_>,
        workflow: &Bound<'_, PyAny>,
        input: Option<&Bound<'_, PyAny>>,
        deadline: Option<&Bound<'_, PyAny>>,
        timing: bool,
    ) -> PyResult<PyRun> {
        self.start_run(py, workflow, input, deadline, timing, false)
    }

    /// Minimalist mode for one task: activates only the systems `workflow`
    /// uses and what they require and want, then runs it (as
    /// `coordinate_systems`). Raises `HandlerError` naming the system that
    /// could not be activated (nothing runs then).
    #[pyo3(signature = (workflow, input = None, *, deadline = None, timing = true))]
    fn run_minimal(
        &self,
        py: Python<'_>,
        workflow: &Bound<'_, PyAny>,
        input: Option<&Bound<'_, PyAny>>,
        deadline: Option<&Bound<'_, PyAny>>,
        timing: bool,
    ) -> PyResult<PyRun> {
        self.start_run(py, workflow, input, deadline, timing, true)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: never wait in a GC pass. Skipping a visit only makes the
        // collector keep the objects (conservative).
        if let Ok(mirror) = self.handlers.try_lock() {
            for refs in mirror.values() {
                for obj in refs.objects() {
                    visit.call(obj)?;
                }
            }
        }
        if let Ok(mirror) = self.operations.try_lock() {
            for ops in mirror.values() {
                for f in ops.values() {
                    visit.call(&**f)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.release();
        let handlers = std::mem::take(&mut *lock(&self.handlers));
        let operations = std::mem::take(&mut *lock(&self.operations));
        drop((handlers, operations));
    }
}

/// The items of a list-like argument, refusing a str or a dict (whose
/// iteration would be a surprise).
fn iter_list<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<pyo3::types::PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a list, got '{}'",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    }
    obj.try_iter()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} must be a list, got '{}'",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?
        .collect()
}
