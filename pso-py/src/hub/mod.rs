//! `pso.Hub` (`Orchestrator.hub`), mirroring `pso_core::hub`: publish,
//! subscribe (`subscription.rs`), request/reply, direct channels and meshes
//! (`direct.rs`), settings (`config.rs`), messages (`message.rs`) and the
//! coordination snapshots (`status.rs`).
//!
//! # Threads and the GIL
//! Every call into the hub runs with the GIL released: a publish may wait
//! for room under the `block` policy while the subscriber's callback (which
//! needs the GIL) drains the queue; a request waits for a reply that a
//! Python callback produces. Callbacks run on PSO's workers with the GIL
//! held only for the call. A request waits in one piece (its `timeout`
//! bounds it), so Ctrl-C is seen when it returns; `request_async` waits in
//! the loop's default executor (a thread), so the event loop never blocks —
//! cancelling its task stops the wait for the caller, not the request.
//!
//! The hub answers only while its orchestrator is open: every call raises
//! `ClosedError` after `close()`, which also ends every subscription and
//! direct channel.

#![forbid(unsafe_code)]

pub(crate) mod config;
pub(crate) mod direct;
pub(crate) mod message;
pub(crate) mod status;
pub(crate) mod subscription;

use std::sync::Arc;
use std::time::Duration;

use pso_core::{Gather, Hub, HubError, Message, SubscriptionId, Value};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyCFunction, PyDict, PyString, PyTuple};

use crate::error::{OrRaise, invalid_argument};
use crate::orchestrator::OrchHandle;
use crate::value::extract_value;
use config::SubscribeArgs;
use direct::{PyDirectEnd, PyMesh};
use message::PyMessage;
use status::PySubscriptionStatus;
use subscription::{GilPy, PySubscription, async_callback, async_runner, plain_callback};

/// Default `timeout` of `request`, seconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// `inspect.iscoroutinefunction(f)`.
fn is_coroutine_function(f: &Bound<'_, PyAny>) -> PyResult<bool> {
    static CHECK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = f.py();
    CHECK
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import(intern!(py, "inspect"))?
                .getattr(intern!(py, "iscoroutinefunction"))?
                .unbind())
        })?
        .bind(py)
        .call1((f,))?
        .is_truthy()
}

/// A request timeout: seconds, more than 0 (`None`: the default).
fn request_timeout(py: Python<'_>, t: Option<&Bound<'_, PyAny>>) -> PyResult<Duration> {
    match t.filter(|t| !t.is_none()) {
        Some(t) => crate::workflow::seconds_arg(py, t, "timeout", true),
        None => Ok(REQUEST_TIMEOUT),
    }
}

/// The publish/subscribe hub of an orchestrator: topics with `*` and `>`
/// wildcards, queue groups, bounded queues with overflow policies,
/// request/reply, direct channels between pairs of systems and meshes.
#[pyclass(name = "Hub", module = "pso", frozen)]
pub(crate) struct PyHub {
    orch: OrchHandle,
}

impl PyHub {
    pub(crate) fn new(orch: OrchHandle) -> Self {
        PyHub { orch }
    }

    fn hub(&self, py: Python<'_>) -> PyResult<Hub> {
        Ok(self.orch.core(py)?.hub().clone())
    }
}

/// The core request, with the GIL released.
fn request_now(
    py: Python<'_>,
    hub: &Hub,
    sender: Option<&str>,
    topic: &str,
    payload: Value,
    timeout: Duration,
) -> Result<Message, HubError> {
    py.detach(|| match sender {
        Some(s) => hub.request_from(s, topic, payload, timeout),
        None => hub.request(topic, payload, timeout),
    })
}

#[pymethods]
impl PyHub {
    /// Publishes `payload` to `topic`; returns how many subscriptions queued
    /// it (0 if nobody listens). `sender` names the publishing system (seen
    /// as `Message.sender`, counted on edges). Raises
    /// `QueueOverflowError` when a subscription with the `error` policy (or
    /// `block`, after its timeout) refused it (the others still got it),
    /// `InvalidArgumentError` naming a bad token of `topic`.
    #[pyo3(signature = (topic, payload, *, sender = None))]
    fn publish(
        &self,
        py: Python<'_>,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        sender: Option<&str>,
    ) -> PyResult<usize> {
        let value = extract_value(payload, "payload")?;
        let orch = self.orch.core(py)?;
        let hub = orch.hub();
        py.detach(|| match sender {
            Some(s) => hub.publish_from(s, topic, value),
            None => hub.publish(topic, value),
        })
        .or_raise(py)
    }

    /// Subscribes to `pattern` (`*`: one token, `>`: the rest). With a
    /// `callback`, it is called with each `Message` on a worker (an `async
    /// def` callback runs on an event loop instead); without one, read the
    /// subscription (`recv`, `for`, `async for`). `capacity` (default 1024)
    /// bounds its queue; `overflow` is `"block"` (waiting up to
    /// `block_timeout` seconds, default 1), `"drop_oldest"`,
    /// `"drop_newest"` or `"error"`; `group` makes a queue group (each
    /// message to one member); `owner` names the receiving system.
    #[pyo3(signature = (
        pattern, callback = None, *, capacity = None, overflow = None, block_timeout = None,
        group = None, owner = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &self,
        py: Python<'_>,
        pattern: &str,
        callback: Option<&Bound<'_, PyAny>>,
        capacity: Option<&Bound<'_, PyAny>>,
        overflow: Option<&str>,
        block_timeout: Option<&Bound<'_, PyAny>>,
        group: Option<String>,
        owner: Option<String>,
    ) -> PyResult<PySubscription> {
        let opts = SubscribeArgs {
            capacity,
            overflow,
            block_timeout,
            group,
            owner,
        }
        .to_core(py)?;
        let hub = self.hub(py)?;
        let Some(cb) = callback.filter(|c| !c.is_none()) else {
            let sub = py
                .detach(|| hub.subscribe_pull_with(pattern, opts))
                .or_raise(py)?;
            return Ok(PySubscription::new(
                sub,
                hub,
                Vec::new(),
                true,
                self.orch.clone(),
            ));
        };
        if !cb.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "callback must be callable (it is called with a pso.Message), got '{}'",
                type_name(cb)
            )));
        }
        let (sub, held) = if is_coroutine_function(cb)? {
            let event_loop = match crate::aio::running_loop(py)? {
                Some(l) => l,
                None => crate::aio::background_loop(py)?,
            };
            let runner = async_runner(py, &event_loop, cb)?;
            let held = Arc::downgrade(&runner);
            let closure = async_callback(runner);
            (
                py.detach(|| hub.subscribe_with(pattern, opts, closure)),
                held,
            )
        } else {
            let f = GilPy::new(cb.clone().unbind());
            let held = Arc::downgrade(&f);
            let closure = plain_callback(f);
            (
                py.detach(|| hub.subscribe_with(pattern, opts, closure)),
                held,
            )
        };
        let sub = sub.or_raise(py)?;
        Ok(PySubscription::new(
            sub,
            hub,
            vec![held],
            false,
            self.orch.clone(),
        ))
    }

    /// Ends subscription `id` (from `subscriptions()`); returns whether it
    /// was live.
    fn unsubscribe(&self, py: Python<'_>, id: u64) -> PyResult<bool> {
        let hub = self.hub(py)?;
        Ok(py.detach(|| hub.unsubscribe(SubscriptionId(id))))
    }

    /// The status of every live subscription, by id.
    fn subscriptions(&self, py: Python<'_>) -> PyResult<Vec<PySubscriptionStatus>> {
        let hub = self.hub(py)?;
        Ok(py
            .detach(|| hub.subscriptions())
            .into_iter()
            .map(PySubscriptionStatus::from)
            .collect())
    }

    /// Sends a request and waits up to `timeout` seconds for the first
    /// reply (a `Message`). Raises `NoRespondersError` at once if nobody
    /// subscribes to `topic` (also when every receiver dropped it without
    /// replying), `pso.TimeoutError` if nobody replied in time.
    #[pyo3(signature = (topic, payload, timeout = None, *, sender = None))]
    #[pyo3(text_signature = "(self, topic, payload, timeout=1.0, *, sender=None)")]
    fn request(
        &self,
        py: Python<'_>,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
        sender: Option<&str>,
    ) -> PyResult<PyMessage> {
        let value = extract_value(payload, "payload")?;
        let timeout = request_timeout(py, timeout)?;
        let hub = self.hub(py)?;
        request_now(py, &hub, sender, topic, value, timeout)
            .map(PyMessage::new)
            .or_raise(py)
    }

    /// `request` for asyncio: a coroutine; the wait happens in the running
    /// loop's default executor, so the loop never blocks. Bad arguments
    /// raise at once; errors of the request when awaited.
    #[pyo3(signature = (topic, payload, timeout = None, *, sender = None))]
    #[pyo3(text_signature = "(self, topic, payload, timeout=1.0, *, sender=None)")]
    fn request_async<'py>(
        &self,
        py: Python<'py>,
        topic: String,
        payload: &Bound<'py, PyAny>,
        timeout: Option<&Bound<'py, PyAny>>,
        sender: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let value = extract_value(payload, "payload")?;
        let timeout = request_timeout(py, timeout)?;
        let hub = self.hub(py)?;
        let args = std::sync::Mutex::new(Some(value));
        let blocking = PyCFunction::new_closure(
            py,
            Some(c"_pso_request"),
            None,
            move |a: &Bound<'_, PyTuple>, _kw: Option<&Bound<'_, PyDict>>| -> PyResult<PyMessage> {
                let py = a.py();
                let value = crate::aio::lock(&args).take().ok_or_else(|| {
                    pyo3::exceptions::PyRuntimeError::new_err("this request was already sent")
                })?;
                request_now(py, &hub, sender.as_deref(), &topic, value, timeout)
                    .map(PyMessage::new)
                    .or_raise(py)
            },
        )?;
        crate::aio::helpers(py)?.call_method1(intern!(py, "in_thread"), (blocking,))
    }

    /// Sends a request and gathers replies: until `max` replies, `timeout`
    /// seconds, a `quiet` gap of that many seconds after the latest reply,
    /// or every receiver having dropped it. Reaching the timeout is not an
    /// error (the replies so far, maybe none). Raises `NoRespondersError`
    /// at once if nobody subscribes, or if every receiver dropped it
    /// without replying.
    #[pyo3(signature = (topic, payload, *, timeout, max = None, quiet = None))]
    fn request_many(
        &self,
        py: Python<'_>,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        timeout: &Bound<'_, PyAny>,
        max: Option<&Bound<'_, PyAny>>,
        quiet: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<PyMessage>> {
        let value = extract_value(payload, "payload")?;
        let mut gather = Gather::new(request_timeout(py, Some(timeout))?);
        if let Some(m) = max.filter(|m| !m.is_none()) {
            let n = if m.is_instance_of::<PyBool>() {
                None
            } else {
                m.extract::<i128>().ok()
            };
            let n = n.ok_or_else(|| {
                PyTypeError::new_err(format!("max must be an int, got '{}'", type_name(m)))
            })?;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| invalid_argument(py, format!("max must be at least 1, got {n}")))?;
            gather = gather.max(n);
        }
        if let Some(q) = quiet.filter(|q| !q.is_none()) {
            gather = gather.quiet(crate::workflow::seconds_arg(py, q, "quiet", true)?);
        }
        let hub = self.hub(py)?;
        py.detach(|| hub.request_many(topic, value, gather))
            .map(|v| v.into_iter().map(PyMessage::new).collect())
            .or_raise(py)
    }

    /// Declares a direct channel between systems `a` and `b` (each side then
    /// takes its end with `endpoint`). Raises `AlreadyExistsError` if the
    /// pair has one.
    #[pyo3(signature = (a, b, reason = None))]
    fn open_direct(&self, py: Python<'_>, a: &str, b: &str, reason: Option<&str>) -> PyResult<()> {
        let hub = self.hub(py)?;
        py.detach(|| hub.open_direct(a, b, reason.unwrap_or("declared")))
            .or_raise(py)
    }

    /// Promotes the pair `{a, b}` to a direct channel, recording `reason`.
    #[pyo3(signature = (a, b, reason = None))]
    fn promote(&self, py: Python<'_>, a: &str, b: &str, reason: Option<&str>) -> PyResult<()> {
        let hub = self.hub(py)?;
        py.detach(|| hub.promote(a, b, reason.unwrap_or("promoted by hand")))
            .or_raise(py)
    }

    /// Demotes a promoted or declared pair back to routing through the hub
    /// (its channel closes). Raises `NotFoundError` if it has no channel.
    #[pyo3(signature = (a, b, reason = None))]
    fn demote(&self, py: Python<'_>, a: &str, b: &str, reason: Option<&str>) -> PyResult<()> {
        let hub = self.hub(py)?;
        py.detach(|| hub.demote(a, b, reason.unwrap_or("demoted by hand")))
            .or_raise(py)
    }

    /// Closes the pair's channel whatever opened it (a mesh included).
    #[pyo3(signature = (a, b, reason = None))]
    fn close_direct(&self, py: Python<'_>, a: &str, b: &str, reason: Option<&str>) -> PyResult<()> {
        let hub = self.hub(py)?;
        py.detach(|| hub.close_direct(a, b, reason.unwrap_or("closed by hand")))
            .or_raise(py)
    }

    /// Takes `me`'s end of the direct channel to `peer` (each end once per
    /// channel). Raises `NotFoundError` if the pair has no channel,
    /// `AlreadyExistsError` if the end was taken.
    fn endpoint(&self, py: Python<'_>, me: &str, peer: &str) -> PyResult<PyDirectEnd> {
        let hub = self.hub(py)?;
        py.detach(|| hub.endpoint(me, peer))
            .map(|e| PyDirectEnd::new(e, self.orch.clone()))
            .or_raise(py)
    }

    /// Opens a mesh scope over `systems`: every pair gets a direct channel
    /// until the scope closes (`with hub.mesh([...]) as m:`).
    fn mesh(&self, py: Python<'_>, systems: &Bound<'_, PyAny>) -> PyResult<PyMesh> {
        if systems.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "mesh() takes a list of system names, not a str",
            ));
        }
        let names: Vec<String> = systems.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "mesh() takes a list of system names (str), got '{}'",
                type_name(systems)
            ))
        })?;
        let hub = self.hub(py)?;
        py.detach(|| hub.mesh(&names))
            .map(|m| PyMesh::new(m, self.orch.clone()))
            .or_raise(py)
    }

    /// Whether the hub is closed (its orchestrator was closed).
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.hub(py).map_or(true, |h| h.is_closed())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.hub(py) {
            Ok(h) => format!(
                "<pso.Hub subscriptions={}>",
                py.detach(|| h.subscriptions().len())
            ),
            Err(_) => "<pso.Hub closed>".to_owned(),
        }
    }
}
