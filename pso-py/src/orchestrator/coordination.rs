//! The hub, state store and coordination-mode verbs of `pso.Orchestrator`
//! (core's `orchestrator/coordination.rs`): the `hub` and `state` views,
//! coordination status, automatic promotion, minimalist mode and pinning.

#![forbid(unsafe_code)]

use pyo3::prelude::*;

use super::PyOrchestrator;
use crate::error::OrRaise;
use crate::hub::PyHub;
use crate::hub::status::PyCoordinationStatus;
use crate::state::PyStateStore;
use crate::workflow::seconds_arg;

#[pymethods]
impl PyOrchestrator {
    /// The publish/subscribe hub (`pso.Hub`).
    #[getter]
    fn hub(&self, py: Python<'_>) -> PyResult<PyHub> {
        self.core(py)?;
        Ok(PyHub::new(self.handle()))
    }

    /// The shared state store (`pso.StateStore`).
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<PyStateStore> {
        self.core(py)?;
        Ok(PyStateStore::new(self.handle()))
    }

    /// The coordination mode, direct pairs, meshes, per-edge message rates,
    /// recent mode changes, and minimalist mode's state.
    fn coordination_status(&self, py: Python<'_>) -> PyResult<PyCoordinationStatus> {
        let orch = self.core(py)?;
        Ok(py.detach(|| orch.coordination_status()).into())
    }

    /// Checks pair message rates every `seconds` (`None`: off): pairs at or
    /// above the hub's `promote_threshold` get a direct channel, promoted
    /// pairs below `demote_threshold` go back through the router.
    fn set_auto_promote(&self, py: Python<'_>, seconds: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let orch = self.core(py)?;
        let every = match seconds.filter(|s| !s.is_none()) {
            Some(s) => Some(seconds_arg(py, s, "seconds", true)?),
            None => None,
        };
        py.detach(|| orch.set_auto_promote(every));
        Ok(())
    }

    /// Applies the promotion and demotion candidates now; returns how many
    /// pairs changed.
    fn promote_pairs(&self, py: Python<'_>) -> PyResult<usize> {
        let orch = self.core(py)?;
        Ok(py.detach(|| orch.promote_pairs()))
    }

    /// Minimalist mode: with `seconds`, active systems that are not pinned,
    /// that no live run uses and that hold no lease are deactivated once
    /// idle that long (with their dependents, if those are idle too);
    /// `None` turns it off.
    fn set_idle_timeout(&self, py: Python<'_>, seconds: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let orch = self.core(py)?;
        let timeout = match seconds.filter(|s| !s.is_none()) {
            Some(s) => Some(seconds_arg(py, s, "seconds", true)?),
            None => None,
        };
        py.detach(|| orch.set_idle_timeout(timeout));
        Ok(())
    }

    /// Runs one idle sweep now (minimalist mode must be on); returns the
    /// systems it deactivated.
    fn deactivate_idle(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let orch = self.core(py)?;
        Ok(py.detach(|| orch.deactivate_idle()))
    }

    /// Pins `name` (or unpins it): a pinned system is never deactivated for
    /// being idle.
    #[pyo3(signature = (name, pinned = true))]
    fn pin_system(&self, py: Python<'_>, name: &str, pinned: bool) -> PyResult<()> {
        let orch = self.core(py)?;
        py.detach(|| orch.pin_system(name, pinned)).or_raise(py)
    }
}
