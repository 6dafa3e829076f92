//! Python views of pso-core's lifecycle results: `ActivationReport`,
//! `SystemOutcome`, `Plan` and `Transition`.
//!
//! Each class is frozen and wraps the core value; attributes are converted on
//! access (durations to float seconds, times to UTC `datetime`, states and
//! outcomes to their names), so a report is never shared mutable state.

#![forbid(unsafe_code)]

use std::time::SystemTime;

use pso_core::{ActivationReport, Plan, SystemOutcome, Transition};
use pyo3::BoundObject;
use pyo3::prelude::*;

/// Python's `repr()` of a converted value, for `__repr__`.
pub(crate) fn py_repr<'py, T>(py: Python<'py>, value: T) -> PyResult<String>
where
    T: IntoPyObject<'py>,
    PyErr: From<T::Error>,
{
    Ok(value
        .into_pyobject(py)?
        .into_any()
        .into_bound()
        .repr()?
        .to_string())
}

/// The result of a lifecycle call: one outcome per system touched.
#[pyclass(name = "ActivationReport", module = "pso", frozen)]
pub(crate) struct PyActivationReport {
    inner: ActivationReport,
}

impl From<ActivationReport> for PyActivationReport {
    fn from(inner: ActivationReport) -> Self {
        PyActivationReport { inner }
    }
}

#[pymethods]
impl PyActivationReport {
    /// The system asked for, or `"*"` for `activate_all`/`deactivate_all`.
    #[getter]
    fn target(&self) -> &str {
        &self.inner.target
    }

    /// `"activate"` or `"deactivate"`.
    #[getter]
    fn action(&self) -> &'static str {
        self.inner.action.name()
    }

    /// One outcome per system touched, level by level.
    #[getter]
    fn outcomes(&self) -> Vec<PySystemOutcome> {
        self.inner
            .outcomes
            .iter()
            .cloned()
            .map(PySystemOutcome::from)
            .collect()
    }

    /// Wall time of the whole call, in seconds.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.inner.elapsed.as_secs_f64()
    }

    /// The outcome of `system`, or `None` if the call did not touch it.
    fn outcome(&self, system: &str) -> Option<PySystemOutcome> {
        self.inner
            .outcome(system)
            .cloned()
            .map(PySystemOutcome::from)
    }

    /// Systems activated by this call, in plan order.
    #[getter]
    fn activated(&self) -> Vec<&str> {
        self.inner.activated()
    }

    /// Systems deactivated by this call, in plan order.
    #[getter]
    fn deactivated(&self) -> Vec<&str> {
        self.inner.deactivated()
    }

    /// Outcomes that failed, timed out or were blocked.
    #[getter]
    fn failures(&self) -> Vec<PySystemOutcome> {
        self.inner
            .failures()
            .into_iter()
            .cloned()
            .map(PySystemOutcome::from)
            .collect()
    }

    /// The report as JSON text (durations in seconds).
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let r = &self.inner;
        let (done_name, done) = match r.action {
            pso_core::LifecycleAction::Activate => ("activated", r.activated()),
            pso_core::LifecycleAction::Deactivate => ("deactivated", r.deactivated()),
        };
        let failures: Vec<&str> = r.failures().iter().map(|o| o.system.as_str()).collect();
        Ok(format!(
            "ActivationReport(target={}, action={}, {done_name}={}, failures={}, elapsed={:.6})",
            py_repr(py, &r.target)?,
            py_repr(py, r.action.name())?,
            py_repr(py, done)?,
            py_repr(py, failures)?,
            r.elapsed.as_secs_f64()
        ))
    }
}

/// What happened to one system in a lifecycle call.
#[pyclass(name = "SystemOutcome", module = "pso", frozen)]
pub(crate) struct PySystemOutcome {
    inner: SystemOutcome,
}

impl From<SystemOutcome> for PySystemOutcome {
    fn from(inner: SystemOutcome) -> Self {
        PySystemOutcome { inner }
    }
}

#[pymethods]
impl PySystemOutcome {
    /// The system.
    #[getter]
    fn system(&self) -> &str {
        &self.inner.system
    }

    /// `activated`, `deactivated`, `already_active`, `not_active`, `failed`,
    /// `timed_out` or `blocked`.
    #[getter]
    fn outcome(&self) -> &'static str {
        self.inner.outcome.name()
    }

    /// The failure message (failed, timed out, blocked), else `None`.
    #[getter]
    fn error(&self) -> Option<&str> {
        self.inner.error.as_deref()
    }

    /// Its level in the plan (0 runs first).
    #[getter]
    fn level(&self) -> usize {
        self.inner.level
    }

    /// Seconds from ready (all predecessors done) to its handler starting.
    #[getter]
    fn queued(&self) -> f64 {
        self.inner.queued.as_secs_f64()
    }

    /// Seconds its handler ran.
    #[getter]
    fn ran(&self) -> f64 {
        self.inner.ran.as_secs_f64()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let o = &self.inner;
        Ok(format!(
            "SystemOutcome(system={}, outcome={}, error={}, level={}, queued={:.6}, ran={:.6})",
            py_repr(py, &o.system)?,
            py_repr(py, o.outcome.name())?,
            py_repr(py, &o.error)?,
            o.level,
            o.queued.as_secs_f64(),
            o.ran.as_secs_f64()
        ))
    }
}

/// What `activate_system` would do, computed without running anything.
#[pyclass(name = "Plan", module = "pso", frozen)]
pub(crate) struct PyPlan {
    inner: Plan,
}

impl From<Plan> for PyPlan {
    fn from(inner: Plan) -> Self {
        PyPlan { inner }
    }
}

#[pymethods]
impl PyPlan {
    /// The system asked for.
    #[getter]
    fn target(&self) -> &str {
        &self.inner.target
    }

    /// Systems to activate, level by level; a level runs in parallel once the
    /// levels before it are done.
    #[getter]
    fn levels(&self) -> Vec<Vec<String>> {
        self.inner.levels.clone()
    }

    /// Systems in the closure that are already Active.
    #[getter]
    fn already_active(&self) -> Vec<String> {
        self.inner.already_active.clone()
    }

    /// The plan as JSON text.
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Plan(target={}, levels={}, already_active={})",
            py_repr(py, &self.inner.target)?,
            py_repr(py, &self.inner.levels)?,
            py_repr(py, &self.inner.already_active)?
        ))
    }
}

/// One recorded state change of a system.
#[pyclass(name = "Transition", module = "pso", frozen)]
pub(crate) struct PyTransition {
    inner: Transition,
}

impl From<Transition> for PyTransition {
    fn from(inner: Transition) -> Self {
        PyTransition { inner }
    }
}

#[pymethods]
impl PyTransition {
    /// The state before (`from` is a Python keyword, hence `from_`).
    #[getter]
    fn from_(&self) -> &'static str {
        self.inner.from.name()
    }

    /// The state after.
    #[getter]
    fn to(&self) -> &'static str {
        self.inner.to.name()
    }

    /// Why it happened.
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// When it happened (timezone-aware, UTC).
    #[getter]
    fn at(&self) -> SystemTime {
        self.inner.at
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Transition(from_={}, to={}, reason={}, at={})",
            py_repr(py, self.inner.from.name())?,
            py_repr(py, self.inner.to.name())?,
            py_repr(py, &self.inner.reason)?,
            py_repr(py, isoformat(py, self.inner.at)?)?
        ))
    }
}

/// `datetime.isoformat()` of a time, for `__repr__`.
pub(crate) fn isoformat(py: Python<'_>, t: SystemTime) -> PyResult<String> {
    t.into_pyobject(py)?.call_method0("isoformat")?.extract()
}
