//! `pso.DirectEnd` (one side of a direct channel) and `pso.Mesh` (a mesh
//! scope), mirroring `pso_core::hub`'s `DirectEnd` and `Mesh`.
//!
//! Core's end is used by one thread at a time, so it sits behind a mutex.
//! Blocking sends and receives wait with the GIL released in slices of at
//! most [`WAIT_SLICE`] (holding the end's mutex for one slice at a time),
//! checking for signals in between. A send that does not happen raises with
//! the object as `.value` (the caller can publish it through the hub
//! instead: routing reverts when a channel closes). Dropping an end closes
//! the channel, as in core; so does `close()`, leaving a `with` block, or
//! the end of the mesh that opened it.

#![forbid(unsafe_code)]

use std::sync::Mutex;
use std::time::Instant;

use pso_core::{DirectEnd, DirectSendError, ErrorKind, HubError, Mesh, Value};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::subscription::timeout_arg;
use crate::aio::{WAIT_SLICE, lock};
use crate::error::{IntoPyErr, OrRaise, closed, direct_send_error, of_kind};
use crate::orchestrator::OrchHandle;
use crate::value::{extract_value, to_py};

/// One side of a direct channel between two systems: `send`, `try_send`,
/// `recv`, `try_recv`, `close`. Use it from one thread at a time.
#[pyclass(name = "DirectEnd", module = "pso", frozen)]
pub(crate) struct PyDirectEnd {
    /// `None` once closed through this object.
    end: Mutex<Option<DirectEnd>>,
    system: String,
    peer: String,
    capacity: usize,
    orch: OrchHandle,
}

impl PyDirectEnd {
    pub(crate) fn new(end: DirectEnd, orch: OrchHandle) -> Self {
        PyDirectEnd {
            system: end.system().to_owned(),
            peer: end.peer().to_owned(),
            capacity: end.capacity(),
            end: Mutex::new(Some(end)),
            orch,
        }
    }

    fn closed_here(&self, py: Python<'_>) -> PyErr {
        closed(
            py,
            format!(
                "this end of the direct channel {} -> {} was closed",
                self.system, self.peer
            ),
        )
    }

    /// Runs `f` on the end without the GIL.
    fn with_end<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut DirectEnd) -> R + Send,
    ) -> PyResult<R> {
        self.orch.core(py)?;
        py.detach(|| lock(&self.end).as_mut().map(f))
            .ok_or_else(|| self.closed_here(py))
    }

    /// Receives with a deadline (`None`: none), in slices; `Ok(Ok(None))`
    /// when the deadline passed, `Ok(Err(_))` when the channel ended, `Err`
    /// for a signal.
    fn recv_until(
        &self,
        py: Python<'_>,
        deadline: Option<Instant>,
    ) -> PyResult<Result<Option<Value>, HubError>> {
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            match self.with_end(py, |e| e.recv_timeout(slice))? {
                Ok(v) => return Ok(Ok(Some(v))),
                Err(HubError::Timeout { .. }) => {}
                Err(e) => return Ok(Err(e)),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Ok(None));
            }
            py.check_signals()?;
        }
    }
}

#[pymethods]
impl PyDirectEnd {
    /// This side's system.
    #[getter]
    fn system(&self) -> &str {
        &self.system
    }

    /// The other side's system.
    #[getter]
    fn peer(&self) -> &str {
        &self.peer
    }

    /// Ring capacity per direction.
    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the channel is closed (receives still drain what was sent).
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.end).as_ref().is_none_or(|e| e.is_closed())
    }

    /// Sends `value`, waiting for room (at most `timeout` seconds, if
    /// given; Ctrl-C works). Raises `pso.TimeoutError` if the ring stayed
    /// full, `ClosedError` if the channel is closed; both carry the object
    /// as `.value`.
    #[pyo3(signature = (value, timeout = None))]
    fn send(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut v = extract_value(value, "value")?;
        let limit = match timeout.filter(|t| !t.is_none()) {
            Some(t) => Some(timeout_arg(py, t)?),
            None => None,
        };
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            match self.with_end(py, move |e| e.send_timeout(v, slice))? {
                Ok(()) => return Ok(()),
                Err(DirectSendError::Timeout(back)) => v = back,
                Err(e) => return Err(direct_send_error(py, &e, value, &self.system, &self.peer)),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let e = DirectSendError::Timeout(Value::Null);
                return Err(direct_send_error(py, &e, value, &self.system, &self.peer));
            }
            py.check_signals()?;
        }
    }

    /// Sends without waiting: False if the ring is full. Raises
    /// `ClosedError` (with `.value`) if the channel is closed.
    fn try_send(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        let v = extract_value(value, "value")?;
        match self.with_end(py, move |e| e.try_send(v))? {
            Ok(()) => Ok(true),
            Err(DirectSendError::Full(_)) => Ok(false),
            Err(e) => Err(direct_send_error(py, &e, value, &self.system, &self.peer)),
        }
    }

    /// Waits for the next value from the peer (at most `timeout` seconds, if
    /// given; Ctrl-C works). Raises `pso.TimeoutError` if none came,
    /// `ClosedError` once the channel is closed and drained.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limit = match timeout.filter(|t| !t.is_none()) {
            Some(t) => Some(timeout_arg(py, t)?),
            None => None,
        };
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        match self.recv_until(py, deadline)?.or_raise(py)? {
            Some(v) => to_py(py, &v),
            None => Err(of_kind(
                py,
                ErrorKind::Timeout,
                format!(
                    "nothing from {} to {} within {:?} seconds",
                    self.peer,
                    self.system,
                    limit.unwrap_or_default().as_secs_f64()
                ),
            )),
        }
    }

    /// The next value if one is waiting, else `default` (pass a sentinel if
    /// `None` is a value you send). Raises `ClosedError` once the channel is
    /// closed and drained.
    #[pyo3(signature = (default = None))]
    fn try_recv<'py>(
        &self,
        py: Python<'py>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.with_end(py, |e| e.try_recv())?.or_raise(py)? {
            Some(v) => to_py(py, &v),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// Closes the channel for both sides (idempotent).
    fn close(&self, py: Python<'_>) {
        let end = lock(&self.end).take();
        if let Some(end) = end {
            py.detach(move || {
                end.close();
                drop(end);
            });
        }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Values until the channel is closed and drained.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.recv_until(py, None)? {
            Ok(Some(v)) => to_py(py, &v),
            Ok(None) | Err(HubError::ChannelClosed { .. }) => Err(PyStopIteration::new_err(())),
            Err(e) => Err(e.into_pyerr(py)),
        }
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
            "<pso.DirectEnd {} -> {}{}>",
            self.system,
            self.peer,
            if self.closed() { " closed" } else { "" }
        )
    }
}

impl Drop for PyDirectEnd {
    fn drop(&mut self) {
        let end = lock(&self.end).take();
        if self.orch.in_owner() {
            drop(end); // closes the channel
        } else {
            std::mem::forget(end);
        }
    }
}

/// A mesh scope: while it is open every pair of its systems has a direct
/// channel; `close()` (or leaving the `with` block, or garbage) closes the
/// channels it opened and routing reverts to the hub.
#[pyclass(name = "Mesh", module = "pso", frozen)]
pub(crate) struct PyMesh {
    mesh: Mutex<Option<Mesh>>,
    id: u64,
    systems: Vec<String>,
    orch: OrchHandle,
}

impl PyMesh {
    pub(crate) fn new(mesh: Mesh, orch: OrchHandle) -> Self {
        PyMesh {
            id: mesh.id(),
            systems: mesh.systems().to_vec(),
            mesh: Mutex::new(Some(mesh)),
            orch,
        }
    }
}

impl Drop for PyMesh {
    fn drop(&mut self) {
        let mesh = lock(&self.mesh).take();
        if self.orch.in_owner() {
            drop(mesh);
        } else {
            std::mem::forget(mesh);
        }
    }
}

#[pymethods]
impl PyMesh {
    /// Its id (as in `CoordinationStatus.meshes`).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Its systems, sorted.
    #[getter]
    fn systems(&self) -> Vec<String> {
        self.systems.clone()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.mesh).is_none()
    }

    /// Takes `me`'s end of the channel to `peer` (each end once).
    fn endpoint(&self, py: Python<'_>, me: &str, peer: &str) -> PyResult<PyDirectEnd> {
        self.orch.core(py)?;
        let end = py.detach(|| lock(&self.mesh).as_ref().map(|m| m.endpoint(me, peer)));
        match end {
            Some(r) => r
                .map(|e| PyDirectEnd::new(e, self.orch.clone()))
                .or_raise(py),
            None => Err(closed(py, format!("mesh {} is closed", self.id))),
        }
    }

    /// Closes the scope: the channels it opened close (idempotent).
    fn close(&self, py: Python<'_>) {
        let mesh = lock(&self.mesh).take();
        if let Some(mesh) = mesh {
            py.detach(move || mesh.close());
        }
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
            "<pso.Mesh {} {:?}{}>",
            self.id,
            self.systems,
            if self.closed() { " closed" } else { "" }
        )
    }
}
