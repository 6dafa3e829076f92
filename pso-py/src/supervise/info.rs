//! `pso.HealthInfo` and `pso.SupervisionInfo`: a system's health and
//! supervision as `SystemStatus.health`/`.supervision` show them, converted
//! on access (durations in float seconds).

#![forbid(unsafe_code)]

use pso_core::{HealthInfo, SupervisionInfo};
use pyo3::prelude::*;

use super::{policy_name, strategy_name};
use crate::lifecycle::py_repr;

/// A system's health, as `SystemStatus.health` shows it.
#[pyclass(name = "HealthInfo", module = "pso", frozen)]
pub(crate) struct PyHealthInfo {
    inner: HealthInfo,
}

impl From<HealthInfo> for PyHealthInfo {
    fn from(inner: HealthInfo) -> Self {
        PyHealthInfo { inner }
    }
}

#[pymethods]
impl PyHealthInfo {
    /// The last verdict: `"healthy"`, `"degraded"` or `"unhealthy"`.
    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status.name()
    }

    /// The last probe's detail (or why it failed).
    #[getter]
    fn detail(&self) -> &str {
        &self.inner.detail
    }

    /// Failed probes in a row.
    #[getter]
    fn consecutive_failures(&self) -> u32 {
        self.inner.consecutive_failures
    }

    /// Probes run so far.
    #[getter]
    fn probes(&self) -> u64 {
        self.inner.probes
    }

    /// Seconds since the last check-in (watchdog only), else `None`.
    #[getter]
    fn since_check_in(&self) -> Option<f64> {
        self.inner.since_check_in.map(|d| d.as_secs_f64())
    }

    /// Whether it is flapping (its alerts are suppressed).
    #[getter]
    fn flapping(&self) -> bool {
        self.inner.flapping
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "HealthInfo(status={}, detail={}, consecutive_failures={}, probes={}, \
             since_check_in={}, flapping={})",
            py_repr(py, self.status())?,
            py_repr(py, self.detail())?,
            self.inner.consecutive_failures,
            self.inner.probes,
            py_repr(py, self.since_check_in())?,
            if self.inner.flapping { "True" } else { "False" }
        ))
    }
}

/// A system's supervision, as `SystemStatus.supervision` shows it.
#[pyclass(name = "SupervisionInfo", module = "pso", frozen)]
pub(crate) struct PySupervisionInfo {
    inner: SupervisionInfo,
}

impl From<SupervisionInfo> for PySupervisionInfo {
    fn from(inner: SupervisionInfo) -> Self {
        PySupervisionInfo { inner }
    }
}

#[pymethods]
impl PySupervisionInfo {
    /// `"never"`, `"on_failure"` or `"always"`.
    #[getter]
    fn policy(&self) -> &'static str {
        policy_name(self.inner.policy)
    }

    /// `"one_for_one"`, `"rest_for_one"` or `"one_for_all"`.
    #[getter]
    fn strategy(&self) -> &'static str {
        strategy_name(self.inner.strategy)
    }

    /// Restarts so far.
    #[getter]
    fn restarts(&self) -> u32 {
        self.inner.restarts
    }

    /// Failures counted in the current restart-intensity window.
    #[getter]
    fn recent_failures(&self) -> u32 {
        self.inner.recent_failures
    }

    /// Failures the window still allows before giving up.
    #[getter]
    fn failures_left(&self) -> u32 {
        self.inner.failures_left
    }

    /// Seconds until the pending restart, or `None` if none is pending.
    #[getter]
    fn next_attempt_in(&self) -> Option<f64> {
        self.inner.next_attempt_in.map(|d| d.as_secs_f64())
    }

    /// The attempt the next restart will be (the backoff grows with it).
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Whether supervision gave up on it (state `GaveUp`).
    #[getter]
    fn gave_up(&self) -> bool {
        self.inner.gave_up
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let s = &self.inner;
        Ok(format!(
            "SupervisionInfo(policy={}, strategy={}, restarts={}, recent_failures={}, \
             failures_left={}, next_attempt_in={}, attempt={}, gave_up={})",
            py_repr(py, self.policy())?,
            py_repr(py, self.strategy())?,
            s.restarts,
            s.recent_failures,
            s.failures_left,
            py_repr(py, self.next_attempt_in())?,
            s.attempt,
            if s.gave_up { "True" } else { "False" }
        ))
    }
}
