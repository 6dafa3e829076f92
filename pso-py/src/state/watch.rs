//! `pso.Watcher`: a state watch, read with `recv`/`try_recv`, `for`, or
//! `async for` (through an [`Inbox`], see `aio.rs`).
//!
//! Core's `Watcher` is used by one thread at a time, so it sits behind a
//! mutex; a wait holds that mutex at most [`PUMP_SLICE`](Source::PUMP_SLICE)
//! (or [`WAIT_SLICE`](crate::aio::WAIT_SLICE)), so `close()` waits at most
//! that long. Iteration ends (StopIteration / StopAsyncIteration) after
//! `close()`; other ends raise: `CompactedError` when the watcher fell
//! behind what the store keeps, `ClosedError` when the store was restored
//! from a snapshot or the orchestrator closed.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pso_core::{ErrorKind, Event, StateError, Watcher};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::PyEvent;
use crate::aio::{Got, Inbox, Source, lock};
use crate::error::{IntoPyErr, of_kind};
use crate::orchestrator::OrchHandle;
use crate::workflow::seconds_arg;

/// The core watcher as an inbox source.
pub(crate) struct WatchSource {
    watcher: Mutex<Option<Watcher>>,
    orch: OrchHandle,
    /// Set by `close()`: the end that follows is the normal one.
    closed: AtomicBool,
    what: String,
}

impl Source for WatchSource {
    type Item = Event;
    type End = StateError;
    const PUMP_SLICE: Duration = Duration::from_millis(200);

    fn next(&self, timeout: Duration) -> Result<Option<Event>, StateError> {
        let mut guard = lock(&self.watcher);
        if self.closed.load(Ordering::Acquire)
            && let Some(mut w) = guard.take()
        {
            w.close(); // closed while a wait held the lock (see `Drop`)
        }
        if !self.orch.is_open() {
            return Err(StateError::Closed {
                message: "the orchestrator is closed".into(),
            });
        }
        let Some(w) = guard.as_mut() else {
            return Err(StateError::Closed {
                message: format!("the watch on {} is closed", self.what),
            });
        };
        match w.recv_timeout(timeout) {
            Ok(e) => Ok(Some(e)),
            Err(StateError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn item_to_py(py: Python<'_>, item: Event) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, PyEvent::from(item))?.into_any())
    }

    fn is_normal_end(&self, end: &StateError) -> bool {
        matches!(end, StateError::Closed { .. }) && self.closed.load(Ordering::Acquire)
    }

    fn end_to_py(&self, py: Python<'_>, end: &StateError) -> PyErr {
        end.clone().into_pyerr(py)
    }

    fn timeout_error(&self, py: Python<'_>, waited: Duration) -> PyErr {
        of_kind(
            py,
            ErrorKind::Timeout,
            format!(
                "no change of {} within {:?} seconds",
                self.what,
                waited.as_secs_f64()
            ),
        )
    }
}

/// The changes of a key or prefix after a revision, each once, in order.
/// `recv(timeout=None)`, `try_recv()`, `for event in watcher`, `async for
/// event in watcher`; `close()` (also on leaving a `with` block, or when
/// garbage-collected) ends it.
#[pyclass(name = "Watcher", module = "pso", frozen)]
pub(crate) struct PyWatcher {
    inbox: Arc<Inbox<WatchSource>>,
    orch: OrchHandle,
}

impl PyWatcher {
    pub(crate) fn new(watcher: Watcher, what: String, orch: OrchHandle) -> Self {
        PyWatcher {
            inbox: Inbox::new(WatchSource {
                watcher: Mutex::new(Some(watcher)),
                orch: orch.clone(),
                closed: AtomicBool::new(false),
                what,
            }),
            orch,
        }
    }

    /// `ClosedError` if the orchestrator is closed (or of another process).
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        self.orch.core(py).map(drop)
    }

    /// Ends the watch, waiting for a wait in progress (at most a slice).
    fn close_now(&self) {
        let source = self.inbox.source();
        source.closed.store(true, Ordering::Release);
        let w = lock(&source.watcher).take();
        if let Some(mut w) = w {
            w.close();
        }
    }
}

impl Drop for PyWatcher {
    fn drop(&mut self) {
        if !self.orch.in_owner() {
            return; // the store's locks may have been held at the fork
        }
        // Never wait here (the GIL may be held): if a wait holds the watcher,
        // it closes the watch itself when its slice ends.
        let source = self.inbox.source();
        source.closed.store(true, Ordering::Release);
        let w = source.watcher.try_lock().ok().and_then(|mut g| g.take());
        if let Some(mut w) = w {
            w.close();
        }
    }
}

#[pymethods]
impl PyWatcher {
    /// Waits for the next change (at most `timeout` seconds, if given; the
    /// GIL is released and Ctrl-C works). Raises `pso.TimeoutError` when
    /// none came in time, `ClosedError` once closed, `CompactedError` if it
    /// fell behind what the store keeps.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<PyEvent> {
        self.check(py)?;
        let limit = match timeout.filter(|t| !t.is_none()) {
            Some(t) => Some(seconds_arg(py, t, "timeout", false)?),
            None => None,
        };
        match self.inbox.recv(py, limit)? {
            Got::Item(e) => Ok(e.into()),
            Got::Empty => Err(self
                .inbox
                .source()
                .timeout_error(py, limit.unwrap_or_default())),
            Got::End(end) => Err(self.inbox.source().end_to_py(py, &end)),
        }
    }

    /// The next change if one is ready, else `None`.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<PyEvent>> {
        self.check(py)?;
        match self.inbox.try_recv(py) {
            Got::Item(e) => Ok(Some(e.into())),
            Got::Empty => Ok(None),
            Got::End(end) => Err(self.inbox.source().end_to_py(py, &end)),
        }
    }

    /// Ends the watch (idempotent); waiting readers see it end.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.close_now());
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inbox.source().closed.load(Ordering::Acquire)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<PyEvent> {
        self.check(py)?;
        match self.inbox.recv(py, None)? {
            Got::Item(e) => Ok(e.into()),
            Got::Empty => Err(PyStopIteration::new_err(())), // never without a timeout
            Got::End(end) if self.inbox.source().is_normal_end(&end) => {
                Err(PyStopIteration::new_err(()))
            }
            Got::End(end) => Err(self.inbox.source().end_to_py(py, &end)),
        }
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check(py)?;
        self.inbox.anext(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.Watcher {}{}>",
            self.inbox.source().what,
            if self.closed() { " closed" } else { "" }
        )
    }
}
