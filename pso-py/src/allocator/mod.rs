//! Resources from Python, mirroring `pso_core::allocator`: requests
//! (`ResourceRequest` and the keyword arguments of `allocate_resources`),
//! waiting for a lease (blocking or from asyncio), leases (`lease.rs`) and
//! the status and plan snapshots (`status.rs`). The policy is core's.
//!
//! # Waiting
//! A request is queued with the GIL released (`request_resources`), which
//! answers at once when it fits or can never fit. Otherwise:
//! * `allocate_resources` polls core's `PendingLease` (a `Future`) with a
//!   waker that signals a condition variable, and waits on it with the GIL
//!   released in slices of at most [`WAIT_SLICE`], checking for signals in
//!   between. A `KeyboardInterrupt` (or any exception from a signal
//!   handler) drops the `PendingLease`, which withdraws the request and
//!   releases anything granted meanwhile: nothing is leaked.
//! * `allocate_resources_async` returns a coroutine. When it first runs it
//!   queues the request and awaits an asyncio future. The waker, called on
//!   whichever thread decided the request, attaches to the interpreter and
//!   completes the future through `loop.call_soon_threadsafe`; a future that
//!   is already done (its task was cancelled) gets nothing, and the leases
//!   are released. Cancelling the task cancels the future, whose done
//!   callback withdraws the request.
//!
//! # Locks
//! [`AsyncWait::pending`] is never held while dropping a `PendingLease`
//! (withdrawing completes the request, which calls the waker, which takes
//! that lock) nor while attaching to the interpreter.

#![forbid(unsafe_code)]

pub(crate) mod lease;
pub(crate) mod status;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use pso_core::{Lease, Orchestrator, PendingLease, Priority, ResourceError, ResourceRequest};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyCFunction, PyDict, PyMapping, PyString, PyTuple};
use pyo3::{IntoPyObjectExt, intern};

use crate::error::{IntoPyErr, invalid_argument};
use crate::workflow::seconds_arg;
use lease::PyLease;

/// Longest uninterrupted wait in `allocate_resources`, between signal checks.
const WAIT_SLICE: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// A non-negative amount or capacity: an int (not a bool) that fits in 64
/// bits unsigned.
pub(crate) fn amount(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    let n = if obj.is_instance_of::<PyBool>() {
        None
    } else {
        obj.extract::<i128>().ok()
    };
    let n = n.ok_or_else(|| {
        PyTypeError::new_err(format!("{what} must be an int, got '{}'", type_name(obj)))
    })?;
    u64::try_from(n)
        .map_err(|_| invalid_argument(py, format!("{what} must be between 0 and 2**64-1, got {n}")))
}

/// `amounts`: a mapping of dimension name -> amount.
fn amounts(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Vec<(String, u64)>> {
    let mapping = obj.cast::<PyMapping>().map_err(|_| {
        PyTypeError::new_err(format!(
            "amounts must be a dict of dimension name -> amount, got '{}'",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::new();
    for item in mapping.items()?.iter() {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        let k: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "amounts: keys must be str (dimension names), got '{}'",
                type_name(&k)
            ))
        })?;
        let a = amount(py, &v, &format!("amounts['{k}']"))?;
        out.push((k, a));
    }
    Ok(out)
}

/// The keyword options shared by every way of asking for resources.
pub(crate) struct RequestOptions<'a, 'py> {
    pub(crate) priority: Option<&'a str>,
    pub(crate) group: Option<String>,
    pub(crate) preemptible: bool,
    pub(crate) ttl: Option<&'a Bound<'py, PyAny>>,
    pub(crate) wait: Option<&'a Bound<'py, PyAny>>,
}

/// Builds a core request from `amounts` and the options; bad input raises
/// (TypeError for a wrong type, InvalidArgumentError for a bad value).
pub(crate) fn request(
    py: Python<'_>,
    amounts_obj: &Bound<'_, PyAny>,
    opts: RequestOptions<'_, '_>,
) -> PyResult<ResourceRequest> {
    let mut req = ResourceRequest::new();
    for (dim, a) in amounts(py, amounts_obj)? {
        req = req.amount(dim, a);
    }
    if let Some(p) = opts.priority {
        let p: Priority = p.parse().map_err(|e: String| invalid_argument(py, e))?;
        req = req.priority(p);
    }
    if let Some(g) = opts.group {
        if g.is_empty() {
            return Err(invalid_argument(py, "group name is empty"));
        }
        req = req.group(g);
    }
    req = req.preemptible(opts.preemptible);
    if let Some(t) = opts.ttl.filter(|t| !t.is_none()) {
        req = req.ttl(seconds_arg(py, t, "ttl", true)?);
    }
    if let Some(w) = opts.wait.filter(|w| !w.is_none()) {
        req = req.wait(seconds_arg(py, w, "wait", false)?);
    }
    Ok(req)
}

/// One part of a gang: `pso.ResourceRequest(system, amounts, *, ...)`.
#[pyclass(name = "ResourceRequest", module = "pso", frozen)]
pub(crate) struct PyResourceRequest {
    system: String,
    inner: ResourceRequest,
    /// The options as given, for the getters (core keeps them private).
    priority: Priority,
    group: Option<String>,
    preemptible: bool,
    ttl: Option<Duration>,
    wait: Option<Duration>,
}

#[pymethods]
impl PyResourceRequest {
    #[new]
    #[pyo3(signature = (
        system, amounts, *, priority = None, group = None, preemptible = false, ttl = None,
        wait = None
    ))]
    #[pyo3(
        text_signature = "(system, amounts, *, priority=None, group=None, preemptible=False, \
        ttl=None, wait=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        system: String,
        amounts: &Bound<'_, PyAny>,
        priority: Option<&str>,
        group: Option<String>,
        preemptible: bool,
        ttl: Option<&Bound<'_, PyAny>>,
        wait: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let inner = request(
            py,
            amounts,
            RequestOptions {
                priority,
                group: group.clone(),
                preemptible,
                ttl,
                wait,
            },
        )?;
        Ok(PyResourceRequest {
            system,
            priority: priority
                .map(|p| p.parse().unwrap_or_default())
                .unwrap_or_default(),
            group,
            preemptible,
            ttl: ttl
                .filter(|t| !t.is_none())
                .map(|t| seconds_arg(py, t, "ttl", true))
                .transpose()?,
            wait: wait
                .filter(|w| !w.is_none())
                .map(|w| seconds_arg(py, w, "wait", false))
                .transpose()?,
            inner,
        })
    }

    /// The requesting system.
    #[getter]
    fn system(&self) -> &str {
        &self.system
    }

    /// Amounts asked for, by dimension (zeros left out).
    #[getter]
    fn amounts(&self) -> BTreeMap<String, u64> {
        self.inner
            .amounts()
            .iter()
            .filter(|(_, a)| **a > 0)
            .map(|(k, a)| (k.clone(), *a))
            .collect()
    }

    /// The priority class.
    #[getter]
    fn priority(&self) -> &'static str {
        self.priority.name()
    }

    /// The group whose quota it counts against, or `None`.
    #[getter]
    fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Whether a higher class may preempt the lease.
    #[getter]
    fn preemptible(&self) -> bool {
        self.preemptible
    }

    /// Seconds after which the lease is revoked, or `None`.
    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.ttl.map(|d| d.as_secs_f64())
    }

    /// Longest wait in seconds, or `None` (as long as it takes).
    #[getter]
    fn wait(&self) -> Option<f64> {
        self.wait.map(|d| d.as_secs_f64())
    }

    fn __repr__(&self) -> String {
        format!(
            "ResourceRequest({:?}, {:?}, priority={:?})",
            self.system,
            self.amounts(),
            self.priority.name()
        )
    }
}

/// The parts of a gang (`pso.ResourceRequest`s), as core wants them.
pub(crate) fn gang_parts(requests: &Bound<'_, PyAny>) -> PyResult<Vec<(String, ResourceRequest)>> {
    if requests.is_instance_of::<PyString>() || requests.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "allocate_gang takes a list of pso.ResourceRequest, got '{}'",
            type_name(requests)
        )));
    }
    let iter = requests.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "allocate_gang takes a list of pso.ResourceRequest, got '{}'",
            type_name(requests)
        ))
    })?;
    let mut parts = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        let r = item.cast::<PyResourceRequest>().map_err(|_| {
            PyTypeError::new_err(format!(
                "requests[{i}] must be a pso.ResourceRequest, got '{}'",
                type_name(&item)
            ))
        })?;
        let r = r.get();
        parts.push((r.system.clone(), r.inner.clone()));
    }
    Ok(parts)
}

/// Queues `parts` with the GIL released: a `PendingLease`, or the immediate
/// rejection as a Python exception.
pub(crate) fn queue(
    py: Python<'_>,
    orch: &Orchestrator,
    parts: &[(String, ResourceRequest)],
) -> PyResult<PendingLease> {
    py.detach(|| {
        let refs: Vec<(&str, &ResourceRequest)> =
            parts.iter().map(|(s, r)| (s.as_str(), r)).collect();
        orch.request_resources(&refs)
    })
    .map_err(|e| e.into_pyerr(py))
}

/// A waker that sets a flag and signals a condition variable.
#[derive(Default)]
struct Signal {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        *lock(&self.woken) = true;
        self.cv.notify_all();
    }
}

impl Signal {
    /// Waits until woken or `timeout` passed; clears the flag.
    fn wait(&self, timeout: Duration) {
        let mut woken = lock(&self.woken);
        if !*woken {
            woken = self
                .cv
                .wait_timeout_while(woken, timeout, |w| !*w)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        *woken = false;
    }
}

/// Waits for `pending` with the GIL released, in slices, checking for
/// signals in between (see the module docs). The leases, one per part.
pub(crate) fn wait_blocking(py: Python<'_>, mut pending: PendingLease) -> PyResult<Vec<Lease>> {
    let signal = Arc::new(Signal::default());
    let waker = Waker::from(signal.clone());
    loop {
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(outcome) = Pin::new(&mut pending).poll(&mut cx) {
            return outcome.map_err(|e| e.into_pyerr(py));
        }
        py.detach(|| signal.wait(WAIT_SLICE));
        if let Err(e) = py.check_signals() {
            // Withdraws the request; anything granted meanwhile is released.
            py.detach(move || drop(pending));
            return Err(e);
        }
    }
}

/// Python leases for core leases, in order.
pub(crate) fn py_leases(py: Python<'_>, leases: Vec<Lease>) -> PyResult<Vec<Py<PyLease>>> {
    leases
        .into_iter()
        .map(|l| Py::new(py, PyLease::new(l)))
        .collect()
}

/// One `allocate_resources_async` in flight (see the module docs).
struct AsyncWait {
    /// Taken by whoever sees the outcome first, or by the done callback.
    pending: Mutex<Option<PendingLease>>,
    event_loop: Py<PyAny>,
    fut: Py<PyAny>,
}

impl AsyncWait {
    /// Polls the request; if it is decided, takes the outcome. Never holds
    /// the lock while dropping the `PendingLease` (it is decided, so dropping
    /// does nothing, but see the module docs).
    fn poll(self: &Arc<Self>) -> Option<Result<Vec<Lease>, ResourceError>> {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let (done, outcome) = {
            let mut guard = lock(&self.pending);
            let p = guard.as_mut()?;
            match Pin::new(p).poll(&mut cx) {
                Poll::Ready(outcome) => (guard.take(), outcome),
                Poll::Pending => return None,
            }
        };
        drop(done);
        Some(outcome)
    }

    /// Hands the outcome to the future on its loop's thread.
    fn deliver(&self, py: Python<'_>, outcome: Result<Vec<Lease>, ResourceError>) {
        let sent = (|| -> PyResult<()> {
            let (value, is_error) = match outcome {
                Ok(leases) => {
                    // One part, one lease (a gang would give a list).
                    let value = match py_leases(py, leases)?.into_iter().next() {
                        Some(l) => l.into_any(),
                        None => py.None(),
                    };
                    (value, false)
                }
                Err(e) => (e.into_pyerr(py).into_value(py).into_any(), true),
            };
            self.event_loop.bind(py).call_method1(
                intern!(py, "call_soon_threadsafe"),
                (
                    outcome_setter(py)?,
                    self.fut.bind(py),
                    value,
                    is_error.into_py_any(py)?,
                ),
            )?;
            Ok(())
        })();
        // RuntimeError("Event loop is closed"): nobody waits any more. The
        // leases (if any) were dropped with the arguments: released.
        drop(sent);
    }
}

impl Wake for AsyncWait {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(outcome) = self.poll() {
            // If the interpreter is gone, `outcome` is dropped: the leases
            // are released.
            let _ = Python::try_attach(|py| self.deliver(py, outcome));
        }
    }
}

/// `fut.set_result(value)` / `fut.set_exception(value)`, unless the future is
/// already done (cancelled): then a lease (or gang of leases) is released.
fn outcome_setter(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static SETTER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    SETTER
        .get_or_try_init(py, || {
            let f = PyCFunction::new_closure(
                py,
                Some(c"_pso_set_lease_outcome"),
                None,
                |args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
                    let py = args.py();
                    let fut = args.get_item(0)?;
                    let value = args.get_item(1)?;
                    let is_error: bool = args.get_item(2)?.extract()?;
                    let done: bool = fut.call_method0(intern!(py, "done"))?.extract()?;
                    if done {
                        if !is_error {
                            release_all(&value)?;
                        }
                        return Ok(());
                    }
                    let method = if is_error {
                        intern!(py, "set_exception")
                    } else {
                        intern!(py, "set_result")
                    };
                    fut.call_method1(method, (value,))?;
                    Ok(())
                },
            )?;
            Ok(f.into_any().unbind())
        })
        .map(|f| f.bind(py))
}

/// Releases a lease nobody will receive.
fn release_all(value: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(l) = value.cast::<PyLease>() {
        l.get().release_now(value.py());
    }
    Ok(())
}

/// The done callback: a cancelled future withdraws the request.
fn done_callback(py: Python<'_>, wait: Arc<AsyncWait>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"_pso_lease_future_done"),
        None,
        move |args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
            let py = args.py();
            let fut = args.get_item(0)?;
            let cancelled: bool = fut.call_method0(intern!(py, "cancelled"))?.extract()?;
            if cancelled {
                let pending = lock(&wait.pending).take();
                // Withdraws it (granted meanwhile: released).
                py.detach(move || drop(pending));
            }
            Ok(())
        },
    )
}

/// `async def _allocate(start): ...`: the coroutine `allocate_resources_async`
/// returns. It queues the request only when it first runs, and cancels the
/// future if it is abandoned (closed) while waiting.
fn coroutine_helper(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static HELPER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    HELPER
        .get_or_try_init(py, || {
            let code = c"async def allocate(start):
    fut = start()
    try:
        return await fut
    finally:
        if not fut.done():
            fut.cancel()
";
            let m = PyModule::from_code(py, code, c"<pso allocate_resources_async>", c"pso._aio")?;
            Ok(m.getattr("allocate")?.unbind())
        })
        .map(|f| f.bind(py))
}

/// The coroutine for `allocate_resources_async`: validated parts, queued
/// when the coroutine first runs, on its running loop.
pub(crate) fn coroutine<'py>(
    py: Python<'py>,
    orch: Orchestrator,
    parts: Vec<(String, ResourceRequest)>,
) -> PyResult<Bound<'py, PyAny>> {
    let parts = Mutex::new(Some(parts));
    let start = PyCFunction::new_closure(
        py,
        Some(c"_pso_start_allocation"),
        None,
        move |args: &Bound<'_, PyTuple>,
              _kwargs: Option<&Bound<'_, PyDict>>|
              -> PyResult<Py<PyAny>> {
            let py = args.py();
            let parts = lock(&parts).take().ok_or_else(|| {
                pyo3::exceptions::PyRuntimeError::new_err("this allocation was already started")
            })?;
            start_async(py, &orch, &parts)
        },
    )?;
    coroutine_helper(py)?.call1((start,))
}

/// Queues the request and returns an asyncio future for its outcome.
fn start_async(
    py: Python<'_>,
    orch: &Orchestrator,
    parts: &[(String, ResourceRequest)],
) -> PyResult<Py<PyAny>> {
    let asyncio = py.import(intern!(py, "asyncio"))?;
    let event_loop = asyncio.call_method0(intern!(py, "get_running_loop"))?;
    let fut = event_loop.call_method0(intern!(py, "create_future"))?;
    let pending = queue(py, orch, parts)?;
    let wait = Arc::new(AsyncWait {
        pending: Mutex::new(Some(pending)),
        event_loop: event_loop.unbind(),
        fut: fut.clone().unbind(),
    });
    fut.call_method1(
        intern!(py, "add_done_callback"),
        (done_callback(py, wait.clone())?,),
    )?;
    // Registers the waker; if it was decided already, deliver now (through
    // the loop, like any other outcome).
    if let Some(outcome) = wait.poll() {
        wait.deliver(py, outcome);
    }
    Ok(fut.unbind())
}
