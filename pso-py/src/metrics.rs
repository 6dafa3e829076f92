//! `pso.PerformanceMetrics` and the metrics verbs of `pso.Orchestrator`
//! (`performance_metrics`, `metrics_enabled`, `set_metrics_enabled`,
//! `reset_metrics`) plus the metrics settings of `Orchestrator(...)`.
//! What is recorded, and when, is pso-core's (`pso_core::metrics`).
//!
//! # The snapshot
//! `PerformanceMetrics` is dict-like, as the contract asks: its data is
//! core's JSON (durations in float seconds, times RFC 3339 text) parsed
//! once, when the snapshot is taken, into a dict that the object owns.
//! Reads hand out the parsed values themselves (a snapshot, never updated);
//! `to_json`/`to_prometheus` render core's value. The lookups
//! (`operation`, `system`, `edge`, `topic`, `resource`) search the parsed
//! lists by their name keys, so they return the same dicts as indexing.
//! The dict is reported to the garbage collector (`__traverse__`): a user
//! may put anything into a list of it.

#![forbid(unsafe_code)]

use pso_core::{MetricsConfig, OrchestratorBuilder, PerformanceMetrics};
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList};
use pyo3::{PyTraverseError, intern};

use crate::orchestrator::PyOrchestrator;
use crate::supervise::count;
use crate::workflow::seconds_arg;

/// Counters and latency distributions of an orchestrator at one moment:
/// a read-only mapping with the keys of the JSON (`enabled`, `since`,
/// `taken`, `latency_sample_every`, `operations`, `systems`, `edges`,
/// `topics`, `topics_tracked`, `max_topics`, `hub_share`, `resources`).
#[pyclass(name = "PerformanceMetrics", module = "pso", frozen, mapping)]
pub(crate) struct PyPerformanceMetrics {
    inner: PerformanceMetrics,
    data: Py<PyDict>,
}

impl PyPerformanceMetrics {
    fn new(py: Python<'_>, inner: PerformanceMetrics) -> PyResult<Self> {
        let json = py.detach(|| inner.to_json());
        let data = py
            .import(intern!(py, "json"))?
            .call_method1(intern!(py, "loads"), (json,))?
            .cast_into::<PyDict>()?
            .unbind();
        Ok(PyPerformanceMetrics { inner, data })
    }

    /// The entry of list `list` whose `key` is `name`, or `None`.
    fn find<'py>(
        &self,
        py: Python<'py>,
        list: &str,
        matches: impl Fn(&Bound<'py, PyDict>) -> PyResult<bool>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(items) = self.data.bind(py).get_item(list)? else {
            return Ok(None);
        };
        let Ok(items) = items.cast_into::<PyList>() else {
            return Ok(None);
        };
        for item in items.iter() {
            if let Ok(d) = item.cast_into::<PyDict>()
                && matches(&d)?
            {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }
}

/// Whether `d[key] == value`.
fn has(d: &Bound<'_, PyDict>, key: &str, value: &str) -> PyResult<bool> {
    Ok(match d.get_item(key)? {
        Some(v) => v.extract::<&str>().is_ok_and(|s| s == value),
        None => false,
    })
}

#[pymethods]
impl PyPerformanceMetrics {
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.data
            .bind(py)
            .get_item(key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.data.bind(py).len()
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.data.bind(py).contains(key)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        self.data.bind(py).keys().try_iter()
    }

    /// The keys, as a list.
    fn keys<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.data.bind(py).keys()
    }

    /// The values, as a list.
    fn values<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.data.bind(py).values()
    }

    /// The `(key, value)` pairs, as a list.
    fn items<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.data.bind(py).items()
    }

    /// `self[key]`, or `default` if there is no such key.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.data.bind(py).get_item(key)?.or(default))
    }

    /// The series of operation `name` (`system.op`, or `<function>`), or `None`.
    fn operation<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.find(py, "operations", |d| has(d, "operation", name))
    }

    /// The line of system `name`, or `None`.
    fn system<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.find(py, "systems", |d| has(d, "system", name))
    }

    /// The series of the edge `a` (sender) -> `b` (receiving system), or `None`.
    fn edge<'py>(&self, py: Python<'py>, a: &str, b: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.find(py, "edges", |d| Ok(has(d, "from", a)? && has(d, "to", b)?))
    }

    /// The series of hub topic `topic` (`<other>`: topics past the cap), or `None`.
    fn topic<'py>(&self, py: Python<'py>, topic: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.find(py, "topics", |d| has(d, "topic", topic))
    }

    /// The utilization of resource dimension `dimension`, or `None`.
    fn resource<'py>(
        &self,
        py: Python<'py>,
        dimension: &str,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.find(py, "resources", |d| has(d, "dimension", dimension))
    }

    /// As JSON (durations in seconds), as in C.
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_json())
    }

    /// In the Prometheus text exposition format (0.0.4).
    fn to_prometheus(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_prometheus())
    }

    fn __repr__(&self) -> String {
        let m = &self.inner;
        format!(
            "<pso.PerformanceMetrics enabled={} operations={} systems={} edges={} topics={} \
             resources={}>",
            if m.enabled { "True" } else { "False" },
            m.operations.len(),
            m.systems.len(),
            m.edges.len(),
            m.topics.len(),
            m.resources.len()
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.data)
    }
}

/// Applies the metrics settings of `Orchestrator(...)` to `builder`.
pub(crate) fn configure(
    py: Python<'_>,
    mut builder: OrchestratorBuilder,
    metrics: Option<&Bound<'_, PyAny>>,
    latency_sample_every: Option<&Bound<'_, PyAny>>,
    max_topics: Option<&Bound<'_, PyAny>>,
    utilization_interval: Option<&Bound<'_, PyAny>>,
    utilization_intervals: Option<&Bound<'_, PyAny>>,
) -> PyResult<OrchestratorBuilder> {
    if let Some(m) = metrics.filter(|m| !m.is_none()) {
        let on: bool = m.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "metrics must be a bool, got '{}'",
                crate::supervise::type_name(m)
            ))
        })?;
        builder = builder.metrics(on);
    }
    let mut config = MetricsConfig::new();
    let mut custom = false;
    if let Some(n) = latency_sample_every.filter(|n| !n.is_none()) {
        let n = count(py, n, "latency_sample_every", 0)?;
        let n = u32::try_from(n).map_err(|_| {
            crate::error::invalid_argument(py, format!("latency_sample_every is too large: {n}"))
        })?;
        config = config.latency_sample_every(n);
        custom = true;
    }
    if let Some(n) = max_topics.filter(|n| !n.is_none()) {
        let n = count(py, n, "max_topics", 0)?;
        config = config.max_topics(usize::try_from(n).unwrap_or(usize::MAX));
        custom = true;
    }
    let interval = utilization_interval.filter(|i| !i.is_none());
    let intervals = utilization_intervals.filter(|i| !i.is_none());
    if interval.is_some() || intervals.is_some() {
        let d = match interval {
            Some(i) => seconds_arg(py, i, "utilization_interval", false)?,
            None => std::time::Duration::from_secs(1),
        };
        let n = match intervals {
            Some(n) => count(py, n, "utilization_intervals", 0)?,
            None => 300,
        };
        config = config.utilization_interval(d, usize::try_from(n).unwrap_or(usize::MAX));
        custom = true;
    }
    if custom {
        builder = builder.metrics_config(config);
    }
    Ok(builder)
}

#[pymethods]
impl PyOrchestrator {
    /// Counters and latency distributions per operation, system,
    /// interaction edge, hub topic and resource dimension, since the start
    /// or the last `reset_metrics` (`pso.PerformanceMetrics`).
    fn performance_metrics(&self, py: Python<'_>) -> PyResult<PyPerformanceMetrics> {
        let orch = self.core(py)?;
        let m = py.detach(|| orch.performance_metrics());
        PyPerformanceMetrics::new(py, m)
    }

    /// Whether metrics are being recorded (settable).
    #[getter]
    fn metrics_enabled(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.core(py)?.metrics_enabled())
    }

    #[setter(metrics_enabled)]
    fn metrics_enabled_setter(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        self.set_metrics_enabled(py, on)
    }

    /// Turns recording on or off; what was recorded stays readable.
    fn set_metrics_enabled(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        let orch = self.core(py)?;
        py.detach(|| orch.set_metrics_enabled(on));
        Ok(())
    }

    /// Zeroes every counter and histogram; the figures count from now on.
    fn reset_metrics(&self, py: Python<'_>) -> PyResult<()> {
        let orch = self.core(py)?;
        py.detach(|| orch.reset_metrics());
        Ok(())
    }
}
