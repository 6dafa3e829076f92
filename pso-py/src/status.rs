//! The Python view of pso-core's `SystemStatus`: a frozen snapshot of one
//! system (with its health and supervision), converted on access.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::SystemTime;

use pso_core::SystemStatus;
use pyo3::prelude::*;

use crate::lifecycle::{PyTransition, isoformat, py_repr};
use crate::supervise::info::{PyHealthInfo, PySupervisionInfo};

/// A snapshot of one system: its state, why, and its relations.
#[pyclass(name = "SystemStatus", module = "pso", frozen)]
pub(crate) struct PySystemStatus {
    inner: SystemStatus,
}

impl From<SystemStatus> for PySystemStatus {
    fn from(inner: SystemStatus) -> Self {
        PySystemStatus { inner }
    }
}

#[pymethods]
impl PySystemStatus {
    /// The system's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// `Registered`, `Activating`, `Active`, `Deactivating`, `Inactive`,
    /// `Failed` or `GaveUp` (its supervisor stopped restarting it).
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state.name()
    }

    /// When it entered that state (timezone-aware, UTC).
    #[getter]
    fn since(&self) -> SystemTime {
        self.inner.since
    }

    /// The reason recorded with the last transition.
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// The last failure, or `None`.
    #[getter]
    fn last_error(&self) -> Option<&str> {
        self.inner.last_error.as_deref()
    }

    /// The tier, or `None`.
    #[getter]
    fn tier(&self) -> Option<&str> {
        self.inner.tier.as_deref()
    }

    /// Tags.
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.inner.tags.clone()
    }

    /// Priority class: `critical`, `high`, `normal`, `low` or `background`.
    #[getter]
    fn priority(&self) -> &'static str {
        self.inner.priority.name()
    }

    /// Declared resource request per dimension.
    #[getter]
    fn resources(&self) -> BTreeMap<String, u64> {
        self.inner.resources.clone()
    }

    /// What the system's leases hold now, by dimension (empty if none).
    #[getter]
    fn resources_held(&self) -> BTreeMap<String, u64> {
        self.inner.resources_held.clone()
    }

    /// Systems it requires.
    #[getter]
    fn requires(&self) -> Vec<String> {
        self.inner.requires.clone()
    }

    /// Systems it wants.
    #[getter]
    fn wants(&self) -> Vec<String> {
        self.inner.wants.clone()
    }

    /// Systems it starts after.
    #[getter]
    fn after(&self) -> Vec<String> {
        self.inner.after.clone()
    }

    /// Systems it conflicts with (either direction).
    #[getter]
    fn conflicts(&self) -> Vec<String> {
        self.inner.conflicts.clone()
    }

    /// Systems it interacts with (either direction).
    #[getter]
    fn interacts(&self) -> Vec<String> {
        self.inner.interacts.clone()
    }

    /// Systems that require it.
    #[getter]
    fn required_by(&self) -> Vec<String> {
        self.inner.required_by.clone()
    }

    /// Whether an activate handler is set.
    #[getter]
    fn has_activate_handler(&self) -> bool {
        self.inner.has_activate_handler
    }

    /// Whether a deactivate handler is set.
    #[getter]
    fn has_deactivate_handler(&self) -> bool {
        self.inner.has_deactivate_handler
    }

    /// Its limit on concurrently running workflow steps, or `None`.
    #[getter]
    fn concurrency(&self) -> Option<u32> {
        self.inner.concurrency
    }

    /// Its health (`pso.HealthInfo`), or `None` without a health check.
    #[getter]
    fn health(&self) -> Option<PyHealthInfo> {
        self.inner.health.clone().map(PyHealthInfo::from)
    }

    /// Its supervision (`pso.SupervisionInfo`: restarts, the next attempt,
    /// failures left before giving up), or `None` if it is not supervised.
    #[getter]
    fn supervision(&self) -> Option<PySupervisionInfo> {
        self.inner.supervision.clone().map(PySupervisionInfo::from)
    }

    /// Recent transitions, oldest first (bounded).
    #[getter]
    fn history(&self) -> Vec<PyTransition> {
        self.inner
            .history
            .iter()
            .cloned()
            .map(PyTransition::from)
            .collect()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let s = &self.inner;
        Ok(format!(
            "SystemStatus(name={}, state={}, since={}, reason={}, last_error={})",
            py_repr(py, &s.name)?,
            py_repr(py, s.state.name())?,
            py_repr(py, isoformat(py, s.since)?)?,
            py_repr(py, &s.reason)?,
            py_repr(py, &s.last_error)?
        ))
    }
}
