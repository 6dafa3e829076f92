//! `pso.Subscription`: a callback subscription (core runs the callback on
//! PSO's workers) or a pull subscription (read with `recv`, `for`, `async
//! for` through an [`Inbox`]).
//!
//! # Callbacks
//! A plain callback is called on a worker with the GIL held, one message at
//! a time per subscription, in publish order. An exception is written to
//! `sys.unraisablehook` and counted in the subscription's `errors`; delivery
//! goes on. An `async def` callback (`inspect.iscoroutinefunction`) is run
//! by a `SerialRunner` (`pso/_aio.py`) on the loop that was running where
//! `subscribe` was called, else on the binding's background loop: the worker
//! only hands the message over; the coroutines run one at a time, in order;
//! their exceptions go to `sys.unraisablehook` (not counted in `errors`,
//! which core counts when the worker's call returns).
//!
//! # Releasing the callback
//! The callable (or, for `async def`, the runner that holds it) is a
//! [`GilPy`] owned by core's closure; a weak mirror here lets the garbage
//! collector see it (`__traverse__`) without keeping it alive. A `GilPy`
//! drops its reference with the GIL taken right there, so the callable is
//! freed as soon as core drops the closure: when `unsubscribe()` returns if
//! no call is running, else when that call returns; also when the
//! orchestrator closes. Core drops closures outside its locks.
//! Unsubscribing an async callback also closes its runner (queued
//! coroutines are dropped).
//!
//! # Fork
//! In a forked child a subscription is inert: dropping it does nothing (the
//! hub's locks may have been held at the fork) and calls raise `ClosedError`.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pso_core::{ErrorKind, HandlerError, Hub, HubError, Message, Subscription, SubscriptionId};
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

use super::message::PyMessage;
use super::status::PySubscriptionStatus;
use crate::aio::{Got, Inbox, Source, lock};
use crate::error::{IntoPyErr, invalid_argument, of_kind};
use crate::model::raised;
use crate::orchestrator::OrchHandle;
use crate::workflow::seconds_arg;

/// A Python reference whose last drop takes the GIL to release it at once
/// (see the module docs). Without an interpreter (shutdown) the release is
/// left to pyo3's deferred pool.
pub(crate) struct GilPy(Option<Py<PyAny>>);

impl GilPy {
    pub(crate) fn new(obj: Py<PyAny>) -> Arc<Self> {
        Arc::new(GilPy(Some(obj)))
    }

    pub(crate) fn get(&self) -> Option<&Py<PyAny>> {
        self.0.as_ref()
    }
}

impl Drop for GilPy {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            let _ = Python::try_attach(move |_py| drop(obj));
        }
    }
}

/// The closure core calls for a plain callback.
pub(crate) fn plain_callback(
    f: Arc<GilPy>,
) -> impl FnMut(&Message) -> Result<(), HandlerError> + Send + 'static {
    move |m: &Message| {
        Python::try_attach(|py| {
            let Some(cb) = f.get() else {
                return Ok(());
            };
            let cb = cb.bind(py);
            let outcome = Bound::new(py, PyMessage::new(m.clone()))
                .and_then(|msg| cb.call1((msg,)))
                .and_then(|ret| {
                    if ret.is_none() || !ret.hasattr(intern!(py, "__await__")).unwrap_or(false) {
                        return Ok(());
                    }
                    if ret.hasattr(intern!(py, "close")).unwrap_or(false) {
                        let _ = ret.call_method0(intern!(py, "close"));
                    }
                    Err(PyTypeError::new_err(
                        "the subscription callback returned an awaitable: subscribe an \
                         `async def` function itself to have its coroutines run on a loop",
                    ))
                });
            outcome.map_err(|e| {
                let err = raised(py, e.clone_ref(py));
                e.write_unraisable(py, Some(cb));
                err
            })
        })
        .unwrap_or_else(|| {
            Err(HandlerError::failed(
                "the Python interpreter is shutting down: the callback was not called",
            ))
        })
    }
}

/// The runner of an `async def` callback, closed when core drops it.
struct Runner(Arc<GilPy>);

impl Drop for Runner {
    fn drop(&mut self) {
        let runner = self.0.clone();
        let _ = Python::try_attach(move |py| {
            if let Some(r) = runner.get() {
                let _ = r.bind(py).call_method0(intern!(py, "close"));
            }
        });
    }
}

/// A `SerialRunner` for `f` on `event_loop`; exceptions go to
/// `sys.unraisablehook`.
pub(crate) fn async_runner(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    f: &Bound<'_, PyAny>,
) -> PyResult<Arc<GilPy>> {
    let report = PyCFunction::new_closure(
        py,
        Some(c"_pso_report_callback_error"),
        None,
        |args: &Bound<'_, PyTuple>, _kw: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
            let py = args.py();
            let exc = args.get_item(0)?;
            let obj = args.get_item(1)?;
            PyErr::from_value(exc).write_unraisable(py, Some(&obj));
            Ok(())
        },
    )?;
    let runner = crate::aio::helpers(py)?
        .getattr(intern!(py, "SerialRunner"))?
        .call1((event_loop, f, report))?;
    Ok(GilPy::new(runner.unbind()))
}

/// The closure core calls for an `async def` callback: hands the message to
/// the runner.
pub(crate) fn async_callback(
    runner: Arc<GilPy>,
) -> impl FnMut(&Message) -> Result<(), HandlerError> + Send + 'static {
    let runner = Runner(runner);
    move |m: &Message| {
        Python::try_attach(|py| {
            let Some(r) = runner.0.get() else {
                return Ok(());
            };
            let r = r.bind(py);
            Bound::new(py, PyMessage::new(m.clone()))
                .and_then(|msg| r.call_method1(intern!(py, "submit"), (msg,)))
                .map(drop)
                .map_err(|e| {
                    let err = raised(py, e.clone_ref(py));
                    e.write_unraisable(py, Some(r));
                    err
                })
        })
        .unwrap_or_else(|| {
            Err(HandlerError::failed(
                "the Python interpreter is shutting down: the callback was not called",
            ))
        })
    }
}

/// A pull subscription as an inbox source.
pub(crate) struct SubSource {
    sub: Arc<Subscription>,
}

impl Source for SubSource {
    type Item = Message;
    type End = HubError;
    // Unsubscribing (or closing the hub) wakes a waiting pump at once.
    const PUMP_SLICE: Duration = Duration::from_secs(1);

    fn next(&self, timeout: Duration) -> Result<Option<Message>, HubError> {
        match self.sub.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(HubError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn item_to_py(py: Python<'_>, item: Message) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, PyMessage::new(item))?.into_any())
    }

    fn is_normal_end(&self, end: &HubError) -> bool {
        matches!(end, HubError::SubscriptionClosed { .. } | HubError::Closed)
    }

    fn end_to_py(&self, py: Python<'_>, end: &HubError) -> PyErr {
        end.clone().into_pyerr(py)
    }

    fn timeout_error(&self, py: Python<'_>, waited: Duration) -> PyErr {
        of_kind(
            py,
            ErrorKind::Timeout,
            format!(
                "nothing on '{}' within {:?} seconds",
                self.sub.pattern(),
                waited.as_secs_f64()
            ),
        )
    }
}

/// A live subscription. Unsubscribe with `unsubscribe()`, by leaving a
/// `with` block, or by dropping it (garbage). A pull subscription is read
/// with `recv(timeout=None)`, `try_recv()`, `for msg in sub` or `async for
/// msg in sub`.
#[pyclass(name = "Subscription", module = "pso", frozen)]
pub(crate) struct PySubscription {
    id: u64,
    pattern: String,
    pull: bool,
    /// `None` only while being dropped.
    sub: Option<Arc<Subscription>>,
    hub: Hub,
    /// Pull subscriptions only (and `None` while being dropped).
    inbox: Option<Arc<Inbox<SubSource>>>,
    /// What core's closure holds (the callable or the runner), for the
    /// collector; weak, so that core's drop releases it.
    refs: Mutex<Vec<Weak<GilPy>>>,
    orch: OrchHandle,
    unsubscribed: AtomicBool,
}

impl PySubscription {
    pub(crate) fn new(
        sub: Subscription,
        hub: Hub,
        refs: Vec<Weak<GilPy>>,
        pull: bool,
        orch: OrchHandle,
    ) -> Self {
        let sub = Arc::new(sub);
        PySubscription {
            id: sub.id().0,
            pattern: sub.pattern().to_owned(),
            pull,
            inbox: pull.then(|| Inbox::new(SubSource { sub: sub.clone() })),
            sub: Some(sub),
            hub,
            refs: Mutex::new(refs),
            orch,
            unsubscribed: AtomicBool::new(false),
        }
    }

    fn check(&self, py: Python<'_>) -> PyResult<()> {
        if self.orch.in_owner() {
            Ok(())
        } else {
            self.orch.core(py).map(drop)
        }
    }

    fn inbox(&self, py: Python<'_>) -> PyResult<&Arc<Inbox<SubSource>>> {
        self.check(py)?;
        self.inbox.as_ref().ok_or_else(|| {
            invalid_argument(
                py,
                format!(
                    "subscription #{} ('{}') delivers to a callback; it has nothing to receive",
                    self.id, self.pattern
                ),
            )
        })
    }

    /// Ends it (without the GIL if `py` is given); returns whether it was live.
    fn stop(&self, py: Option<Python<'_>>) -> bool {
        self.unsubscribed.store(true, Ordering::Release);
        let id = SubscriptionId(self.id);
        let was = match py {
            Some(py) => py.detach(|| self.hub.unsubscribe(id)),
            None => self.hub.unsubscribe(id),
        };
        let refs = std::mem::take(&mut *lock(&self.refs));
        drop(refs);
        was
    }
}

impl Drop for PySubscription {
    fn drop(&mut self) {
        if self.orch.in_owner() {
            self.stop(None);
        } else {
            // See the module docs.
            std::mem::forget(self.sub.take());
            std::mem::forget(self.inbox.take());
        }
    }
}

#[pymethods]
impl PySubscription {
    /// Its id (as in `Hub.subscriptions()`).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// The pattern it listens to.
    #[getter]
    fn pattern(&self) -> &str {
        &self.pattern
    }

    /// `"callback"` or `"pull"`.
    #[getter]
    fn kind(&self) -> &'static str {
        if self.pull { "pull" } else { "callback" }
    }

    /// Whether it was unsubscribed (here, or its hub closed).
    #[getter]
    fn closed(&self) -> bool {
        self.unsubscribed.load(Ordering::Acquire)
            || self.sub.as_ref().is_none_or(|s| s.status().closed)
    }

    /// Its queue and counters now.
    fn status(&self, py: Python<'_>) -> PyResult<PySubscriptionStatus> {
        self.check(py)?;
        let sub = self
            .sub
            .as_ref()
            .ok_or_else(|| crate::error::closed(py, "the subscription is gone"))?;
        Ok(py.detach(|| sub.status()).into())
    }

    /// Stops delivery; returns whether it was still live. The callback is
    /// released now (or when a call in progress returns); queued messages
    /// are dropped.
    fn unsubscribe(&self, py: Python<'_>) -> bool {
        if !self.orch.in_owner() {
            return false;
        }
        self.stop(Some(py))
    }

    /// Waits for the next message (at most `timeout` seconds, if given) with
    /// the GIL released; Ctrl-C works. Raises `pso.TimeoutError` if none
    /// came in time, `ClosedError` once unsubscribed and drained.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<PyMessage> {
        let inbox = self.inbox(py)?;
        let limit = match timeout.filter(|t| !t.is_none()) {
            Some(t) => Some(seconds_arg(py, t, "timeout", false)?),
            None => None,
        };
        match inbox.recv(py, limit)? {
            Got::Item(m) => Ok(PyMessage::new(m)),
            Got::Empty => Err(inbox.source().timeout_error(py, limit.unwrap_or_default())),
            Got::End(end) => Err(inbox.source().end_to_py(py, &end)),
        }
    }

    /// The next message if one is queued, else `None`.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<PyMessage>> {
        let inbox = self.inbox(py)?;
        match inbox.try_recv(py) {
            Got::Item(m) => Ok(Some(PyMessage::new(m))),
            Got::Empty => Ok(None),
            Got::End(end) => Err(inbox.source().end_to_py(py, &end)),
        }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<PyMessage> {
        let inbox = self.inbox(py)?;
        match inbox.recv(py, None)? {
            Got::Item(m) => Ok(PyMessage::new(m)),
            Got::End(end) if !inbox.source().is_normal_end(&end) => {
                Err(inbox.source().end_to_py(py, &end))
            }
            _ => Err(PyStopIteration::new_err(())),
        }
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inbox(py)?.anext(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.unsubscribe(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.Subscription #{} {:?} {}{}>",
            self.id,
            self.pattern,
            self.kind(),
            if self.closed() { " closed" } else { "" }
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: never wait in a GC pass (skipping a visit is conservative).
        // A temporary strong reference that turns out to be the last one is
        // released through pyo3's deferred pool (no GIL during a GC pass).
        if let Ok(refs) = self.refs.try_lock() {
            for r in refs.iter().filter_map(Weak::upgrade) {
                if let Some(obj) = r.get() {
                    visit.call(obj)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if self.orch.in_owner() {
            self.stop(None);
        }
    }
}

/// `timeout` of a blocking hub call: seconds, at least 0.
pub(crate) fn timeout_arg(py: Python<'_>, t: &Bound<'_, PyAny>) -> PyResult<Duration> {
    seconds_arg(py, t, "timeout", false)
}
