//! `pso.Orchestrator`: pso-core's `Orchestrator` behind the GIL rules.
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
//! `handlers` mirror holds the single Python reference to each handler that
//! core's closures share, so `__traverse__` can report it and `__clear__` can
//! break such cycles by dropping the core orchestrator.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pso_core::{ExportFormat, Orchestrator, TopologyFormat};
use pyo3::PyTraverseError;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::error::{OrRaise, closed, invalid_argument};
use crate::lifecycle::{PyActivationReport, PyPlan};
use crate::model::{self, HandlerRefs, SpecArgs};
use crate::status::PySystemStatus;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; never let poisoning escalate.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers systems and their relations, activates them in dependency order
/// on a pool of worker threads, and tells what state each is in and why.
#[pyclass(name = "Orchestrator", module = "pso", frozen)]
pub(crate) struct PyOrchestrator {
    /// `None` once `__clear__` dropped it.
    inner: Mutex<Option<Orchestrator>>,
    /// The Python handlers core holds, by system (see the module docs).
    handlers: Mutex<HashMap<String, HandlerRefs>>,
    /// The process that created the orchestrator.
    owner_pid: u32,
}

impl PyOrchestrator {
    /// The core orchestrator, or `ClosedError` if it is closed or belongs to
    /// the parent of this forked process.
    fn core(&self, py: Python<'_>) -> PyResult<Orchestrator> {
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
        match &*lock(&self.inner) {
            // pso-core still answers reads after close(); the Python contract
            // is that every call on a closed orchestrator raises ClosedError.
            Some(o) if !o.is_closed() => Ok(o.clone()),
            _ => Err(closed(py, "the orchestrator is closed")),
        }
    }

    fn record_handlers(&self, batch: Vec<(String, HandlerRefs)>) {
        let mut mirror = lock(&self.handlers);
        for (name, refs) in batch {
            if refs.is_empty() {
                mirror.remove(&name);
            } else {
                mirror.insert(name, refs);
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
        // If the interpreter cannot be attached to (it is shutting down), the
        // closure is dropped uncalled, which drops `orch` right here: handlers
        // then fail instead of waiting for the GIL, so the join cannot hang.
        let _ = Python::try_attach(move |py| py.detach(move || drop(orch)));
    }
}

impl Drop for PyOrchestrator {
    fn drop(&mut self) {
        self.release();
        let handlers = std::mem::take(&mut *lock(&self.handlers));
        drop(handlers);
    }
}

#[pymethods]
impl PyOrchestrator {
    /// Starts `workers` worker threads (default: one per core). Each lifecycle
    /// transition times out after `transition_timeout` seconds unless the
    /// system sets its own `timeout`.
    #[new]
    #[pyo3(signature = (*, workers = None, transition_timeout = None))]
    #[pyo3(text_signature = "(*, workers=None, transition_timeout=30.0)")]
    fn new(
        py: Python<'_>,
        workers: Option<&Bound<'_, PyAny>>,
        transition_timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut builder = Orchestrator::builder();
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
        Ok(PyOrchestrator {
            inner: Mutex::new(Some(orch)),
            handlers: Mutex::new(HashMap::new()),
            owner_pid: std::process::id(),
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
        timeout = None, on_activate = None, on_deactivate = None
    ))]
    #[pyo3(
        text_signature = "(self, name, *, tier=None, tags=(), priority='normal', \
        resources=None, requires=(), wants=(), after=(), conflicts=(), interacts=(), \
        timeout=None, on_activate=None, on_deactivate=None)"
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
        };
        let (spec, refs) = args.into_spec(py, name.clone(), "")?;
        py.detach(|| {
            let result = orch.register(spec);
            if result.is_ok() {
                self.record_handlers(vec![(name, refs)]);
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
        for (i, item) in iter_list(systems, "systems")?.into_iter().enumerate() {
            let at = format!("systems[{i}]");
            let (name, args) = SpecArgs::from_dict(&item, &at)?;
            let (spec, handlers) = args.into_spec(py, name.clone(), &at)?;
            specs.push(spec);
            refs.push((name, handlers));
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
        Ok(())
    }

    fn __clear__(&self) {
        self.release();
        let handlers = std::mem::take(&mut *lock(&self.handlers));
        drop(handlers);
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
