//! `pso.VirtualClock` and the supervision settings of `Orchestrator(...)`
//! (`flap_threshold`, `flap_window`, `alert_interval`, `clock`).
//!
//! `advance` releases the GIL for the whole advance: probes, supervisor
//! restarts and the handlers they wait for run inside it and take the GIL
//! themselves (on this thread or on workers). Core serializes advances with
//! a lock, so an advance from inside one (a probe on this thread, a handler
//! on a worker that the advance waits for) would deadlock: one flag per
//! clock refuses any advance while another runs, with `BusyError`.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pso_core::{ErrorKind, OrchestratorBuilder, VirtualClock};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::{count_u32, type_name};
use crate::error::of_kind;
use crate::workflow::seconds_arg;

/// A clock that moves only when `advance` is called: give it to
/// `Orchestrator(clock=...)` and probes, watchdogs, backoff, restart windows,
/// flapping and alert deduplication follow it, deterministically. Restarts
/// and probes due run inside `advance`, on the calling thread.
#[pyclass(name = "VirtualClock", module = "pso", frozen)]
pub(crate) struct PyVirtualClock {
    inner: VirtualClock,
    /// Set while an `advance` runs (see [`Advancing`]).
    advancing: AtomicBool,
}

/// Clears `PyVirtualClock::advancing` when the advance ends.
struct Advancing<'a>(&'a AtomicBool);

impl Drop for Advancing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[pymethods]
impl PyVirtualClock {
    #[new]
    fn new() -> Self {
        PyVirtualClock {
            inner: VirtualClock::new(),
            advancing: AtomicBool::new(false),
        }
    }

    /// Moves time forward by `seconds` (0 runs what is due now), running
    /// every probe, timer and supervisor action that falls due on the way,
    /// in order. The GIL is released meanwhile (probes and handlers take it).
    /// Raises `BusyError` while another `advance` of this clock runs: a
    /// probe or handler that advanced the clock it runs under would wait
    /// for itself forever.
    fn advance(&self, py: Python<'_>, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
        let by = seconds_arg(py, seconds, "seconds", false)?;
        if self.advancing.swap(true, Ordering::AcqRel) {
            return Err(of_kind(
                py,
                ErrorKind::Busy,
                "the VirtualClock is being advanced already (by another thread, or this call \
                 comes from a probe or handler run inside advance); advance it from one \
                 thread, outside PSO's callbacks",
            ));
        }
        let _done = Advancing(&self.advancing);
        let clock = self.inner.clone();
        py.detach(move || clock.advance(by));
        Ok(())
    }

    /// Virtual seconds elapsed since the clock was made.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.inner.elapsed().as_secs_f64()
    }

    /// Callbacks waiting for their time.
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.VirtualClock elapsed={}s pending={}>",
            self.inner.elapsed().as_secs_f64(),
            self.inner.pending()
        )
    }
}

/// Applies the supervision settings of `Orchestrator(...)` to `builder`.
pub(crate) fn configure(
    py: Python<'_>,
    mut builder: OrchestratorBuilder,
    flap_threshold: Option<&Bound<'_, PyAny>>,
    flap_window: Option<&Bound<'_, PyAny>>,
    alert_interval: Option<&Bound<'_, PyAny>>,
    clock: Option<&Bound<'_, PyAny>>,
) -> PyResult<OrchestratorBuilder> {
    let threshold = flap_threshold.filter(|t| !t.is_none());
    let window = flap_window.filter(|w| !w.is_none());
    if threshold.is_some() || window.is_some() {
        let t = match threshold {
            Some(t) => count_u32(py, t, "flap_threshold", 1)?,
            None => 5,
        };
        let w = match window {
            Some(w) => seconds_arg(py, w, "flap_window", true)?,
            None => Duration::from_secs(60),
        };
        builder = builder.flap_detection(t, w);
    }
    if let Some(a) = alert_interval.filter(|a| !a.is_none()) {
        builder = builder.alert_interval(seconds_arg(py, a, "alert_interval", false)?);
    }
    if let Some(c) = clock.filter(|c| !c.is_none()) {
        let c = c.cast::<PyVirtualClock>().map_err(|_| {
            PyTypeError::new_err(format!(
                "clock must be a pso.VirtualClock or None, got '{}'",
                type_name(c)
            ))
        })?;
        builder = builder.virtual_clock(c.get().inner.clone());
    }
    Ok(builder)
}
