//! The intelligence verbs of `pso.Orchestrator`: `learn_patterns`,
//! `snapshot`/`restore` (which carry what was learned),
//! `coordination_insights`, `optimization_recommendations`,
//! `optimize_coordination` with its guardrails, `coordination_log`,
//! `revert_change`, `evolve_coordination` and `evolution_log`. The results
//! are the typed classes of `report.rs`.
//!
//! # Errors
//! pso-core reports the failures of `revert_change` and
//! `evolve_coordination` as text, not as an error kind. So that Python gets
//! a typed error, the cases that can be told in advance are checked here
//! first (an unknown change id or system: `NotFoundError`; a change already
//! reverted or never applied, a bad limit: `InvalidArgumentError`); a
//! failure core still reports (a race with another thread, an undo that
//! itself fails) is `InvalidArgumentError` with core's text.
//!
//! # The workload of `evolve_coordination`
//! Core calls it on the calling thread, with the GIL released around the
//! whole trial; each call attaches, calls `workload(orchestrator)`, and
//! counts a raised exception as a failed round. A `KeyboardInterrupt` or
//! `SystemExit` (or a workload that returns an awaitable: `TypeError`)
//! stops calling the workload (the remaining rounds count as failed) and is
//! raised once the trial is over; a change such a cut-short trial kept (by
//! timing two arms of instant failures) is reverted through the
//! coordination log first, so the setting is what it was.

#![forbid(unsafe_code)]

pub(crate) mod report;

use std::path::PathBuf;

use pso_core::{Guardrails, SchedulingPolicy, StrategyChange, Trial, TrialMetric};
use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::error::{OrRaise, invalid_argument, not_found};
use crate::orchestrator::PyOrchestrator;
use crate::state::PySnapshotInfo;
use crate::workflow::seconds_arg;
use report::{PyChange, PyCoordinationPlan, PyEvolution, PyInsights, PyPatterns, PyRecommendation};

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// A finite float argument (`bool` refused).
fn number(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number, got 'bool'"
        )));
    }
    let x: f64 = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!("{what} must be a number, got '{}'", type_name(obj)))
    })?;
    if !x.is_finite() {
        return Err(invalid_argument(
            py,
            format!("{what} must be finite, got {x}"),
        ));
    }
    Ok(x)
}

/// `("scheduling_policy", "fifo" | "critical_path")` or
/// `("concurrency_limit", system, limit_or_None)`.
fn strategy_change(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<StrategyChange> {
    const EXPECTED: &str = "change must be ('scheduling_policy', 'fifo' | 'critical_path') or \
                            ('concurrency_limit', system, limit_or_None)";
    let items: Vec<Bound<'_, PyAny>> =
        if obj.is_instance_of::<PyTuple>() || obj.is_instance_of::<PyList>() {
            obj.try_iter()?.collect::<PyResult<_>>()?
        } else {
            return Err(PyTypeError::new_err(format!(
                "{EXPECTED}, got '{}'",
                type_name(obj)
            )));
        };
    let kind: String = items
        .first()
        .and_then(|k| k.extract().ok())
        .ok_or_else(|| PyTypeError::new_err(EXPECTED))?;
    match (kind.as_str(), items.len()) {
        ("scheduling_policy", 2) => {
            let p: String = items[1].extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "the scheduling policy must be a str, got '{}'",
                    type_name(&items[1])
                ))
            })?;
            let p: SchedulingPolicy = p.parse().map_err(|e: String| invalid_argument(py, e))?;
            Ok(StrategyChange::SchedulingPolicy(p))
        }
        ("concurrency_limit", 3) => {
            let system: String = items[1].extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "the system must be a str, got '{}'",
                    type_name(&items[1])
                ))
            })?;
            let limit = if items[2].is_none() {
                None
            } else {
                Some(crate::model::concurrency_limit(py, &items[2], "limit")?)
            };
            Ok(StrategyChange::ConcurrencyLimit { system, limit })
        }
        _ => Err(invalid_argument(py, format!("{EXPECTED}, got {kind:?}"))),
    }
}

#[pymethods]
impl PyOrchestrator {
    /// Folds history into estimates and returns them with their sample
    /// counts (also saved in the state store under `pso.patterns`, so
    /// `snapshot` carries them).
    fn learn_patterns(&self, py: Python<'_>) -> PyResult<PyPatterns> {
        let orch = self.core(py)?;
        Ok(py.detach(|| orch.learn_patterns()).into())
    }

    /// Writes the state store, with what was learned, to `path` atomically.
    fn snapshot(&self, py: Python<'_>, path: PathBuf) -> PyResult<PySnapshotInfo> {
        let orch = self.core(py)?;
        py.detach(|| orch.snapshot(&path))
            .map(PySnapshotInfo::from)
            .or_raise(py)
    }

    /// Restores the state store from `path` and loads the patterns in it, so
    /// duration estimates start warm.
    fn restore(&self, py: Python<'_>, path: PathBuf) -> PyResult<PySnapshotInfo> {
        let orch = self.core(py)?;
        py.detach(|| orch.restore(&path))
            .map(PySnapshotInfo::from)
            .or_raise(py)
    }

    /// Where coordination time goes: critical paths, latency contributors
    /// (waiting vs working), hot edges and idle direct pairs, resource
    /// contention, unhealthy, flapping and given-up systems.
    fn coordination_insights(&self, py: Python<'_>) -> PyResult<PyInsights> {
        let orch = self.core(py)?;
        Ok(py.detach(|| orch.coordination_insights()).into())
    }

    /// Typed suggestions, most confident first, each with its target,
    /// action, evidence, expected gain, confidence and samples.
    fn optimization_recommendations(&self, py: Python<'_>) -> PyResult<Vec<PyRecommendation>> {
        let orch = self.core(py)?;
        Ok(py
            .detach(|| orch.optimization_recommendations())
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The recommendations that pass the guardrails (at least `min_samples`
    /// samples and `min_confidence` confidence); with `apply=True`, carries
    /// them out and logs each change. `idle_after` (seconds) is how long a
    /// system must be unused before deactivating it is suggested.
    #[pyo3(signature = (apply = false, *, min_samples = None, min_confidence = None, idle_after = None))]
    #[pyo3(
        text_signature = "(self, apply=False, *, min_samples=20, min_confidence=0.6, \
        idle_after=None)"
    )]
    fn optimize_coordination(
        &self,
        py: Python<'_>,
        apply: bool,
        min_samples: Option<&Bound<'_, PyAny>>,
        min_confidence: Option<&Bound<'_, PyAny>>,
        idle_after: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyCoordinationPlan> {
        let orch = self.core(py)?;
        let mut g = Guardrails::new();
        if let Some(n) = min_samples.filter(|n| !n.is_none()) {
            g = g.min_samples(crate::supervise::count(py, n, "min_samples", 0)?);
        }
        if let Some(c) = min_confidence.filter(|c| !c.is_none()) {
            g = g.min_confidence(number(py, c, "min_confidence")?);
        }
        if let Some(d) = idle_after.filter(|d| !d.is_none()) {
            g = g.idle_after(seconds_arg(py, d, "idle_after", true)?);
        }
        Ok(py
            .detach(|| orch.optimize_coordination_with(apply, g))
            .into())
    }

    /// Every change `optimize_coordination` and `evolve_coordination` made,
    /// oldest first (bounded).
    fn coordination_log(&self, py: Python<'_>) -> PyResult<Vec<PyChange>> {
        let orch = self.core(py)?;
        Ok(py
            .detach(|| orch.coordination_log())
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Undoes change `id` and returns it (now `reverted`). Raises
    /// `NotFoundError` for an unknown id, `InvalidArgumentError` if it was
    /// already reverted or never applied, or undoing it failed.
    fn revert_change(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyChange> {
        let orch = self.core(py)?;
        let id = crate::supervise::count(py, id, "id", 0)?;
        let known = py.detach(|| orch.coordination_log().into_iter().find(|c| c.id == id));
        match known {
            None => {
                return Err(not_found(py, format!("no coordination change {id}")));
            }
            Some(c) if c.reverted => {
                return Err(invalid_argument(
                    py,
                    format!("change {id} was already reverted"),
                ));
            }
            Some(_) => {}
        }
        py.detach(|| orch.revert_change(id))
            .map(PyChange::from)
            .map_err(|e| invalid_argument(py, e))
    }

    /// Tries `change` on `workload(orchestrator)` against the current
    /// setting: `rounds` calls each, alternating, compared by `metric`
    /// (`"makespan"`, `"p99"` or `"error_rate"`); the change is kept only
    /// if better by `margin` (a fraction), else the setting is restored. A
    /// workload call that raises is a failed round. Every trial is logged.
    #[pyo3(signature = (change, workload, *, rounds = None, metric = "makespan", margin = None))]
    #[pyo3(
        text_signature = "(self, change, workload, *, rounds=5, metric='makespan', margin=0.05)"
    )]
    fn evolve_coordination(
        slf: &Bound<'_, Self>,
        change: &Bound<'_, PyAny>,
        workload: &Bound<'_, PyAny>,
        rounds: Option<&Bound<'_, PyAny>>,
        metric: &str,
        margin: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyEvolution> {
        let py = slf.py();
        let orch = slf.get().core(py)?;
        let change = strategy_change(py, change)?;
        if !workload.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "workload must be callable, got '{}'",
                type_name(workload)
            )));
        }
        let metric = match metric {
            "makespan" => TrialMetric::Makespan,
            "p99" => TrialMetric::P99,
            "error_rate" => TrialMetric::ErrorRate,
            other => {
                return Err(invalid_argument(
                    py,
                    format!(
                        "unknown metric '{other}' (expected 'makespan', 'p99' or 'error_rate')"
                    ),
                ));
            }
        };
        let mut trial = Trial::new(change.clone()).metric(metric);
        if let Some(r) = rounds.filter(|r| !r.is_none()) {
            let n = crate::supervise::count(py, r, "rounds", 1)?;
            trial = trial.rounds(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(m) = margin.filter(|m| !m.is_none()) {
            trial = trial.margin(number(py, m, "margin")?);
        }
        if let StrategyChange::ConcurrencyLimit { system, .. } = &change {
            py.detach(|| orch.status(system)).or_raise(py)?;
        }
        let this = slf.clone().unbind();
        let workload = workload.clone().unbind();
        let mut interrupt: Option<PyErr> = None;
        let result = py.detach(|| {
            orch.evolve_coordination(&trial, |_| -> Result<(), ()> {
                if interrupt.is_some() {
                    return Err(());
                }
                Python::try_attach(|py| match workload.call1(py, (this.clone_ref(py),)) {
                    Ok(ret) => {
                        let ret = ret.bind(py);
                        if ret.hasattr("__await__").unwrap_or(false) {
                            let _ = ret.call_method0("close");
                            interrupt = Some(PyTypeError::new_err(
                                "the workload returned an awaitable; evolve_coordination calls \
                                 it as a plain (synchronous) function",
                            ));
                            return Err(());
                        }
                        Ok(())
                    }
                    Err(e) => {
                        if e.is_instance_of::<PyKeyboardInterrupt>(py)
                            || e.is_instance_of::<PySystemExit>(py)
                        {
                            interrupt = Some(e);
                        }
                        Err(())
                    }
                })
                .unwrap_or(Err(()))
            })
        });
        if let Some(e) = interrupt {
            // The arms were cut short, so whatever they measured is not a
            // reason to keep the change: undo it if it was kept.
            if let Ok(ev) = &result
                && ev.kept
            {
                py.detach(|| {
                    let log = orch.coordination_log();
                    if let Some(c) = log
                        .iter()
                        .rev()
                        .find(|c| !c.reverted && c.reason == ev.reason)
                    {
                        let _ = orch.revert_change(c.id);
                    }
                });
            }
            return Err(e);
        }
        result
            .map(PyEvolution::from)
            .map_err(|e| invalid_argument(py, e))
    }

    /// Every evolution trial, oldest first (bounded).
    fn evolution_log(&self, py: Python<'_>) -> PyResult<Vec<PyEvolution>> {
        let orch = self.core(py)?;
        Ok(py
            .detach(|| orch.evolution_log())
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
