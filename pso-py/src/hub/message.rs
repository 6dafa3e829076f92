//! `pso.Message`: core's shared message handle. The payload is converted to
//! a Python object on first access and kept (so `msg.payload is
//! msg.payload`); every subscriber of a publish gets its own object.

#![forbid(unsafe_code)]

use pso_core::Message;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::error::OrRaise;
use crate::lifecycle::py_repr;
use crate::value::{extract_value, to_py};

/// A message from the hub: `topic`, `payload`, `sender` (or `None`),
/// `is_request`, and `reply(payload)` for a request.
#[pyclass(name = "Message", module = "pso", frozen)]
pub(crate) struct PyMessage {
    inner: Message,
    payload: PyOnceLock<Py<PyAny>>,
}

impl PyMessage {
    pub(crate) fn new(inner: Message) -> Self {
        PyMessage {
            inner,
            payload: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl PyMessage {
    /// The topic it was published to.
    #[getter]
    fn topic(&self) -> &str {
        self.inner.topic()
    }

    /// The payload (converted once, on first access).
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.payload
            .get_or_try_init(py, || Ok(to_py(py, self.inner.payload())?.unbind()))
            .map(|p| p.bind(py).clone())
    }

    /// The system that published it, if the publisher named one.
    #[getter]
    fn sender(&self) -> Option<&str> {
        self.inner.sender()
    }

    /// Whether it is a request (so `reply` can answer it).
    #[getter]
    fn is_request(&self) -> bool {
        self.inner.is_request()
    }

    /// Answers a request: the reply goes straight to the requester. Returns
    /// False if the requester no longer takes it (it has its answer, gave
    /// up, or gathered enough). Raises `InvalidArgumentError` for a message
    /// that is not a request.
    fn reply(&self, py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<bool> {
        let value = extract_value(payload, "the reply")?;
        // Delivering a reply takes one short lock and wakes the requester:
        // nothing here waits.
        self.inner.reply(value).or_raise(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Message(topic={}, payload={}, sender={}{})",
            py_repr(py, self.inner.topic())?,
            self.payload(py)?.repr()?,
            py_repr(py, self.inner.sender())?,
            if self.inner.is_request() {
                ", request"
            } else {
                ""
            }
        ))
    }
}
