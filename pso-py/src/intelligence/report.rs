//! The typed results of the intelligence verbs: `Patterns` (with
//! `OperationPattern`, `EdgePattern`, `CoActivation`), `Insights` (with
//! `CriticalPath`, `Contributor`, `Contention`), `Recommendation`,
//! `CoordinationPlan`, `Change`, `Evolution` and `ArmStats`. Each is a
//! frozen snapshot of core's value: durations are float seconds, a
//! recommendation's or change's `action` is a dict shaped as in the JSON
//! (`{"kind": "promote_to_direct", "a": .., "b": ..}`; `from`/`to` keys),
//! and the top-level results have core's `to_json()`.

#![forbid(unsafe_code)]

use pso_core::{
    Action, ArmStats, Change, CoActivation, Contention, Contributor, CoordinationPlan,
    CriticalPath, EdgePattern, Evolution, Insights, OperationPattern, Patterns, Recommendation,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::lifecycle::py_repr;

/// `Name(field=repr, ...)`.
macro_rules! repr {
    ($py:expr, $name:literal, $($field:literal => $val:expr),* $(,)?) => {{
        let parts: Vec<String> = vec![$(format!("{}={}", $field, py_repr($py, $val)?)),*];
        Ok(format!("{}({})", $name, parts.join(", ")))
    }};
}

/// `action` as a dict: `kind` plus the action's fields, as in the JSON.
pub(crate) fn action_dict<'py>(py: Python<'py>, action: &Action) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match action {
        Action::PromoteToDirect { a, b } | Action::DemoteDirect { a, b } => {
            let kind = if matches!(action, Action::PromoteToDirect { .. }) {
                "promote_to_direct"
            } else {
                "demote_direct"
            };
            d.set_item("kind", kind)?;
            d.set_item("a", a)?;
            d.set_item("b", b)?;
        }
        Action::SetConcurrencyLimit { system, from, to } => {
            d.set_item("kind", "set_concurrency_limit")?;
            d.set_item("system", system)?;
            d.set_item("from", from)?;
            d.set_item("to", to)?;
        }
        Action::DeactivateIdle { system } => {
            d.set_item("kind", "deactivate_idle")?;
            d.set_item("system", system)?;
        }
        Action::PreActivate { systems } => {
            d.set_item("kind", "pre_activate")?;
            d.set_item("systems", systems)?;
        }
        Action::SetSchedulingPolicy { from, to } => {
            d.set_item("kind", "set_scheduling_policy")?;
            d.set_item("from", from.name())?;
            d.set_item("to", to.name())?;
        }
        _ => d.set_item("kind", "unknown")?,
    }
    Ok(d)
}

/// What was learned about one operation (`system.operation`): its duration
/// (exponentially weighted mean and deviation, seconds) with the samples
/// behind it, and its failure rate over the recent runs kept.
#[pyclass(name = "OperationPattern", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyOperationPattern {
    #[pyo3(get)]
    key: String,
    #[pyo3(get)]
    mean: f64,
    #[pyo3(get)]
    stddev: f64,
    #[pyo3(get)]
    samples: u64,
    #[pyo3(get)]
    recent_steps: u64,
    #[pyo3(get)]
    recent_failures: u64,
    #[pyo3(get)]
    failure_rate: f64,
}

impl From<&OperationPattern> for PyOperationPattern {
    fn from(p: &OperationPattern) -> Self {
        PyOperationPattern {
            key: p.key.clone(),
            mean: p.mean.as_secs_f64(),
            stddev: p.stddev.as_secs_f64(),
            samples: p.samples,
            recent_steps: p.recent_steps,
            recent_failures: p.recent_failures,
            failure_rate: p.failure_rate,
        }
    }
}

#[pymethods]
impl PyOperationPattern {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr!(py, "OperationPattern", "key" => &self.key, "mean" => self.mean,
            "stddev" => self.stddev, "samples" => self.samples,
            "recent_steps" => self.recent_steps, "recent_failures" => self.recent_failures,
            "failure_rate" => self.failure_rate)
    }
}

/// Traffic on one edge: `from_` -> `to`, messages per second (EWMA) and
/// messages so far.
#[pyclass(name = "EdgePattern", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyEdgePattern {
    #[pyo3(get, name = "from_")]
    from: String,
    #[pyo3(get)]
    to: String,
    #[pyo3(get)]
    rate: f64,
    #[pyo3(get)]
    messages: u64,
}

impl From<&EdgePattern> for PyEdgePattern {
    fn from(e: &EdgePattern) -> Self {
        PyEdgePattern {
            from: e.from.clone(),
            to: e.to.clone(),
            rate: e.rate,
            messages: e.messages,
        }
    }
}

#[pymethods]
impl PyEdgePattern {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr!(py, "EdgePattern", "from_" => &self.from, "to" => &self.to,
            "rate" => self.rate, "messages" => self.messages)
    }
}

/// Two systems used together: `together` counts runs that used both plus
/// calls that activated both; `a_count`/`b_count` those involving each.
#[pyclass(name = "CoActivation", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyCoActivation {
    #[pyo3(get)]
    a: String,
    #[pyo3(get)]
    b: String,
    #[pyo3(get)]
    together: u64,
    #[pyo3(get)]
    a_count: u64,
    #[pyo3(get)]
    b_count: u64,
}

impl From<&CoActivation> for PyCoActivation {
    fn from(c: &CoActivation) -> Self {
        PyCoActivation {
            a: c.a.clone(),
            b: c.b.clone(),
            together: c.together,
            a_count: c.a_count,
            b_count: c.b_count,
        }
    }
}

#[pymethods]
impl PyCoActivation {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr!(py, "CoActivation", "a" => &self.a, "b" => &self.b,
            "together" => self.together, "a_count" => self.a_count, "b_count" => self.b_count)
    }
}

/// What `learn_patterns` returns: per operation, per edge and per pair of
/// systems, each with its sample count.
#[pyclass(name = "Patterns", module = "pso", frozen)]
pub(crate) struct PyPatterns {
    inner: Patterns,
}

impl From<Patterns> for PyPatterns {
    fn from(inner: Patterns) -> Self {
        PyPatterns { inner }
    }
}

#[pymethods]
impl PyPatterns {
    /// Per `system.operation`.
    #[getter]
    fn operations(&self) -> Vec<PyOperationPattern> {
        self.inner.operations.iter().map(Into::into).collect()
    }

    /// Per interaction edge with traffic.
    #[getter]
    fn edges(&self) -> Vec<PyEdgePattern> {
        self.inner.edges.iter().map(Into::into).collect()
    }

    /// Pairs of systems used or activated together, most frequent first.
    #[getter]
    fn co_activation(&self) -> Vec<PyCoActivation> {
        self.inner.co_activation.iter().map(Into::into).collect()
    }

    /// As JSON (durations in seconds), as in C.
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_json())
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.Patterns operations={} edges={} co_activation={}>",
            self.inner.operations.len(),
            self.inner.edges.len(),
            self.inner.co_activation.len()
        )
    }
}

/// The longest chain of a workflow's latest run by measured time: `steps`
/// as `(name, seconds)` (queue wait plus run time), its `length` and the
/// run's `makespan`, seconds.
#[pyclass(name = "CriticalPath", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyCriticalPath {
    #[pyo3(get)]
    workflow: String,
    #[pyo3(get)]
    steps: Vec<(String, f64)>,
    #[pyo3(get)]
    length: f64,
    #[pyo3(get)]
    makespan: f64,
}

impl From<&CriticalPath> for PyCriticalPath {
    fn from(c: &CriticalPath) -> Self {
        PyCriticalPath {
            workflow: c.workflow.clone(),
            steps: c.steps.clone(),
            length: c.length,
            makespan: c.makespan,
        }
    }
}

#[pymethods]
impl PyCriticalPath {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr!(py, "CriticalPath", "workflow" => &self.workflow, "steps" => self.steps.clone(),
            "length" => self.length, "makespan" => self.makespan)
    }
}

/// Time spent by one operation (or `workflow/step` function step) over
/// recent runs: `waiting` (queue wait) and `working` (run time), seconds.
#[pyclass(name = "Contributor", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyContributor {
    #[pyo3(get)]
    key: String,
    #[pyo3(get)]
    waiting: f64,
    #[pyo3(get)]
    working: f64,
    #[pyo3(get)]
    steps: u64,
}

impl From<&Contributor> for PyContributor {
    fn from(c: &Contributor) -> Self {
        PyContributor {
            key: c.key.clone(),
            waiting: c.waiting,
            working: c.working,
            steps: c.steps,
        }
    }
}

#[pymethods]
impl PyContributor {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr!(py, "Contributor", "key" => &self.key, "waiting" => self.waiting,
            "working" => self.working, "steps" => self.steps)
    }
}

/// Pressure on one resource dimension: `utilization` (allocated/capacity),
/// `waiters` now and the `longest_wait` (seconds).
#[pyclass(name = "Contention", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyContention {
    #[pyo3(get)]
    dimension: String,
    #[pyo3(get)]
    utilization: f64,
    #[pyo3(get)]
    waiters: usize,
    #[pyo3(get)]
    longest_wait: f64,
}

impl From<&Contention> for PyContention {
    fn from(c: &Contention) -> Self {
        PyContention {
            dimension: c.dimension.clone(),
            utilization: c.utilization,
            waiters: c.waiters,
            longest_wait: c.longest_wait,
        }
    }
}

#[pymethods]
impl PyContention {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr!(py, "Contention", "dimension" => &self.dimension,
            "utilization" => self.utilization, "waiters" => self.waiters,
            "longest_wait" => self.longest_wait)
    }
}

/// What `coordination_insights` returns: where coordination time goes.
#[pyclass(name = "Insights", module = "pso", frozen)]
pub(crate) struct PyInsights {
    inner: Insights,
}

impl From<Insights> for PyInsights {
    fn from(inner: Insights) -> Self {
        PyInsights { inner }
    }
}

#[pymethods]
impl PyInsights {
    /// Recent runs the insights are drawn from.
    #[getter]
    fn runs(&self) -> usize {
        self.inner.runs
    }

    /// The critical path of the latest run of each workflow.
    #[getter]
    fn critical_paths(&self) -> Vec<PyCriticalPath> {
        self.inner.critical_paths.iter().map(Into::into).collect()
    }

    /// Where recent runs spent their time, largest first.
    #[getter]
    fn contributors(&self) -> Vec<PyContributor> {
        self.inner.contributors.iter().map(Into::into).collect()
    }

    /// Edges with the most traffic, busiest first.
    #[getter]
    fn hot_edges(&self) -> Vec<PyEdgePattern> {
        self.inner.hot_edges.iter().map(Into::into).collect()
    }

    /// Direct pairs with (almost) no traffic.
    #[getter]
    fn idle_direct_pairs(&self) -> Vec<(String, String)> {
        self.inner.idle_direct_pairs.clone()
    }

    /// Resource dimensions with waiters or high utilization.
    #[getter]
    fn contention(&self) -> Vec<PyContention> {
        self.inner.contention.iter().map(Into::into).collect()
    }

    /// Systems whose health is unhealthy.
    #[getter]
    fn unhealthy(&self) -> Vec<String> {
        self.inner.unhealthy.clone()
    }

    /// Systems flapping.
    #[getter]
    fn flapping(&self) -> Vec<String> {
        self.inner.flapping.clone()
    }

    /// Systems their supervisor gave up on.
    #[getter]
    fn gave_up(&self) -> Vec<String> {
        self.inner.gave_up.clone()
    }

    /// As JSON (durations in seconds), as in C.
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_json())
    }

    fn __repr__(&self) -> String {
        let i = &self.inner;
        format!(
            "<pso.Insights runs={} critical_paths={} contributors={} hot_edges={} \
             contention={} unhealthy={:?} flapping={:?} gave_up={:?}>",
            i.runs,
            i.critical_paths.len(),
            i.contributors.len(),
            i.hot_edges.len(),
            i.contention.len(),
            i.unhealthy,
            i.flapping,
            i.gave_up
        )
    }
}

/// A suggested change with its evidence: `target`, `action` (a dict with
/// `kind`), `evidence` (the numbers), `expected_gain`, `confidence` (0..1)
/// and the `samples` it rests on.
#[pyclass(name = "Recommendation", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyRecommendation {
    inner: Recommendation,
}

impl From<Recommendation> for PyRecommendation {
    fn from(inner: Recommendation) -> Self {
        PyRecommendation { inner }
    }
}

#[pymethods]
impl PyRecommendation {
    /// What it applies to (a pair `a<->b`, a system, `scheduling`).
    #[getter]
    fn target(&self) -> &str {
        &self.inner.target
    }

    /// The change: `kind` (`promote_to_direct`, `demote_direct`,
    /// `set_concurrency_limit`, `deactivate_idle`, `pre_activate`,
    /// `set_scheduling_policy`) and its fields (a new dict each time).
    #[getter]
    fn action<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        action_dict(py, &self.inner.action)
    }

    /// The numbers behind it.
    #[getter]
    fn evidence(&self) -> &str {
        &self.inner.evidence
    }

    /// What it should gain.
    #[getter]
    fn expected_gain(&self) -> &str {
        &self.inner.expected_gain
    }

    /// 0..1: how sure.
    #[getter]
    fn confidence(&self) -> f64 {
        self.inner.confidence
    }

    /// Samples the evidence rests on.
    #[getter]
    fn samples(&self) -> u64 {
        self.inner.samples
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let r = &self.inner;
        repr!(py, "Recommendation", "target" => &r.target,
            "action" => action_dict(py, &r.action)?, "evidence" => &r.evidence,
            "expected_gain" => &r.expected_gain, "confidence" => r.confidence,
            "samples" => r.samples)
    }
}

/// A change PSO made to its coordination: `id` (for `revert_change`),
/// `action`, `reason`, whether it was `reverted`, and the `error` if it
/// failed to apply.
#[pyclass(name = "Change", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyChange {
    inner: Change,
}

impl From<Change> for PyChange {
    fn from(inner: Change) -> Self {
        PyChange { inner }
    }
}

#[pymethods]
impl PyChange {
    /// Its id in the coordination log.
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id
    }

    /// What was done (a dict with `kind`, as `Recommendation.action`).
    #[getter]
    fn action<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        action_dict(py, &self.inner.action)
    }

    /// Why (the recommendation's evidence, or the trial's result).
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// Whether it has been reverted.
    #[getter]
    fn reverted(&self) -> bool {
        self.inner.reverted
    }

    /// Why it failed to apply, or `None`.
    #[getter]
    fn error(&self) -> Option<&str> {
        self.inner.error.as_deref()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let c = &self.inner;
        repr!(py, "Change", "id" => c.id, "action" => action_dict(py, &c.action)?,
            "reason" => &c.reason, "reverted" => c.reverted, "error" => c.error.as_deref())
    }
}

/// What `optimize_coordination` planned and, with `apply=True`, did.
#[pyclass(name = "CoordinationPlan", module = "pso", frozen)]
pub(crate) struct PyCoordinationPlan {
    inner: CoordinationPlan,
}

impl From<CoordinationPlan> for PyCoordinationPlan {
    fn from(inner: CoordinationPlan) -> Self {
        PyCoordinationPlan { inner }
    }
}

#[pymethods]
impl PyCoordinationPlan {
    /// Recommendations that pass the guardrails (applied if `applied`).
    #[getter]
    fn actions(&self) -> Vec<PyRecommendation> {
        self.inner.actions.iter().cloned().map(Into::into).collect()
    }

    /// Recommendations held back, each with why.
    #[getter]
    fn skipped(&self) -> Vec<(PyRecommendation, String)> {
        self.inner
            .skipped
            .iter()
            .map(|(r, why)| (r.clone().into(), why.clone()))
            .collect()
    }

    /// Whether the actions were carried out.
    #[getter]
    fn applied(&self) -> bool {
        self.inner.applied
    }

    /// The changes made, in order (ids for `revert_change`).
    #[getter]
    fn changes(&self) -> Vec<PyChange> {
        self.inner.changes.iter().cloned().map(Into::into).collect()
    }

    /// As JSON, as in C.
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_json())
    }

    fn __repr__(&self) -> String {
        let p = &self.inner;
        format!(
            "<pso.CoordinationPlan applied={} actions={} skipped={} changes={}>",
            if p.applied { "True" } else { "False" },
            p.actions.len(),
            p.skipped.len(),
            p.changes.len()
        )
    }
}

/// One arm of an evolution trial: workload calls (`rounds`), `median` and
/// `p99` wall time (seconds) and the share of calls that failed.
#[pyclass(name = "ArmStats", module = "pso", frozen)]
#[derive(Clone)]
pub(crate) struct PyArmStats {
    #[pyo3(get)]
    rounds: usize,
    #[pyo3(get)]
    median: f64,
    #[pyo3(get)]
    p99: f64,
    #[pyo3(get)]
    error_rate: f64,
}

impl From<&ArmStats> for PyArmStats {
    fn from(a: &ArmStats) -> Self {
        PyArmStats {
            rounds: a.rounds,
            median: a.median,
            p99: a.p99,
            error_rate: a.error_rate,
        }
    }
}

#[pymethods]
impl PyArmStats {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr!(py, "ArmStats", "rounds" => self.rounds, "median" => self.median,
            "p99" => self.p99, "error_rate" => self.error_rate)
    }
}

/// A finished evolution trial: what was tried (`change`), the `baseline`
/// and `trial` measurements, the relative `improvement` of the metric
/// (positive: better), whether it was `kept`, and why.
#[pyclass(name = "Evolution", module = "pso", frozen)]
pub(crate) struct PyEvolution {
    inner: Evolution,
}

impl From<Evolution> for PyEvolution {
    fn from(inner: Evolution) -> Self {
        PyEvolution { inner }
    }
}

#[pymethods]
impl PyEvolution {
    /// Its id in the evolution log.
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id
    }

    /// What was tried, in words.
    #[getter]
    fn change(&self) -> &str {
        &self.inner.change
    }

    /// Measured without the change.
    #[getter]
    fn baseline(&self) -> PyArmStats {
        (&self.inner.baseline).into()
    }

    /// Measured with it.
    #[getter]
    fn trial(&self) -> PyArmStats {
        (&self.inner.trial).into()
    }

    /// The relative improvement of the metric (positive: better).
    #[getter]
    fn improvement(&self) -> f64 {
        self.inner.improvement
    }

    /// Whether the change was kept.
    #[getter]
    fn kept(&self) -> bool {
        self.inner.kept
    }

    /// Why, in words (the numbers compared and the margin needed).
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let e = &self.inner;
        repr!(py, "Evolution", "id" => e.id, "change" => &e.change,
            "baseline" => self.baseline(), "trial" => self.trial(),
            "improvement" => e.improvement, "kept" => e.kept, "reason" => &e.reason)
    }
}
