//! What callers hold: `pso.Run` while a run goes (wait, await, cancel,
//! progress) and `pso.RunResult` once it is done, with `StepRecord`,
//! `StepCounts`, `RunProgress` and the orchestrator's `Estimate`s.
//!
//! # Waiting
//! `Run.result()` waits in Rust with the GIL released, in slices of at most
//! [`WAIT_SLICE`] so that Ctrl-C (`KeyboardInterrupt`) is seen while a long
//! run goes. `await run` never blocks the event loop: it polls core's
//! `RunHandle` (a runtime-agnostic `Future`) with a waker that, when the
//! worker finishing the run wakes it, attaches to the interpreter and hands
//! the result to an asyncio future with `loop.call_soon_threadsafe`.
//! Cancelling the awaiting task does not cancel the run (as dropping a core
//! `RunHandle` does not); `Run.cancel()` does.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use pso_core::{Estimate, RunHandle, RunProgress, RunResult, StepCounts, StepRecord};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyCFunction, PyDict, PyTuple};

use crate::error::{closed, invalid_argument, not_found};
use crate::value::to_py;

/// Longest uninterrupted wait in `Run.result()`, between signal checks.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// A workflow run in progress (or finished). Wait for it with `result()`,
/// `await` it, or `cancel()` it.
#[pyclass(name = "Run", module = "pso", frozen)]
pub(crate) struct PyRun {
    handle: RunHandle,
    /// The process that started it (its workers do not exist in a fork).
    owner_pid: u32,
}

impl PyRun {
    pub(crate) fn new(handle: RunHandle) -> Self {
        PyRun {
            handle,
            owner_pid: std::process::id(),
        }
    }

    fn check_process(&self, py: Python<'_>) -> PyResult<()> {
        if std::process::id() != self.owner_pid {
            return Err(closed(
                py,
                format!(
                    "this run belongs to process {} (a fork of it cannot wait for it: its \
                     worker threads exist only in the parent)",
                    self.owner_pid
                ),
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl PyRun {
    /// The run's id (unique per orchestrator).
    #[getter]
    fn id(&self) -> u64 {
        self.handle.id()
    }

    /// The workflow's name.
    #[getter]
    fn workflow(&self) -> &str {
        self.handle.workflow()
    }

    /// Whether every step has ended.
    #[getter]
    fn done(&self) -> bool {
        self.handle.is_finished()
    }

    /// The run's state and step counts right now.
    fn progress(&self, py: Python<'_>) -> PyRunProgress {
        let handle = &self.handle;
        PyRunProgress {
            inner: py.detach(|| handle.progress()),
        }
    }

    /// Cancels the run: steps not started are cancelled at once, running
    /// ones see `ctx.cancelled`. Returns False if it had already ended or
    /// been stopped.
    fn cancel(&self, py: Python<'_>) -> bool {
        let handle = &self.handle;
        py.detach(|| handle.cancel())
    }

    /// Waits for the run to end (at most `timeout` seconds, if given) and
    /// returns its result; raises `pso.TimeoutError` if it is still going.
    /// A failed run does not raise: look at `state`.
    #[pyo3(signature = (timeout = None))]
    fn result(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<PyRunResult> {
        self.check_process(py)?;
        let limit = match timeout.filter(|t| !t.is_none()) {
            None => None,
            Some(t) => Some(wait_limit(py, t)?),
        };
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        let handle = &self.handle;
        loop {
            if let Some(r) = handle.try_result() {
                return Ok(r.into());
            }
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            if slice.is_zero() {
                return Err(crate::error::timeout(
                    py,
                    format!(
                        "run {} of workflow '{}' did not finish within {:?} seconds",
                        handle.id(),
                        handle.workflow(),
                        limit.unwrap_or_default().as_secs_f64()
                    ),
                ));
            }
            if let Some(r) = py.detach(|| handle.wait_timeout(slice)) {
                return Ok(r.into());
            }
            py.check_signals()?;
        }
    }

    /// `await run` gives the `RunResult` without blocking the event loop.
    fn __await__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check_process(py)?;
        let asyncio = py.import(intern!(py, "asyncio"))?;
        let event_loop = asyncio.call_method0(intern!(py, "get_running_loop"))?;
        let fut = event_loop.call_method0(intern!(py, "create_future"))?;
        match self.handle.try_result() {
            Some(r) => {
                fut.call_method1(intern!(py, "set_result"), (PyRunResult::from(r),))?;
            }
            None => {
                let waker = Arc::new(LoopWaker {
                    event_loop: event_loop.unbind(),
                    fut: fut.clone().unbind(),
                    handle: self.handle.clone(),
                });
                // Registers the waker; if the run ended meanwhile, wake now.
                if waker.poll() {
                    waker.deliver(py);
                }
            }
        }
        fut.call_method0(intern!(py, "__await__"))
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.Run id={} workflow={:?} done={}>",
            self.handle.id(),
            self.handle.workflow(),
            if self.handle.is_finished() {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// `timeout` of `result()`: a finite number of seconds, at least 0.
fn wait_limit(py: Python<'_>, t: &Bound<'_, PyAny>) -> PyResult<Duration> {
    if t.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "timeout must be a number of seconds, got 'bool'",
        ));
    }
    let secs: f64 = t.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "timeout must be a number of seconds, got '{}'",
            t.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    Duration::try_from_secs_f64(secs).map_err(|_| {
        invalid_argument(
            py,
            format!("timeout must be a finite number of seconds, at least 0, got {secs}"),
        )
    })
}

/// Wakes an asyncio future when the run ends (see the module docs).
struct LoopWaker {
    event_loop: Py<PyAny>,
    fut: Py<PyAny>,
    handle: RunHandle,
}

impl LoopWaker {
    /// Polls the run with this waker; true if it is done.
    fn poll(self: &Arc<Self>) -> bool {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut handle = self.handle.clone();
        matches!(Pin::new(&mut handle).poll(&mut cx), Poll::Ready(_))
    }

    /// Schedules `fut.set_result(result)` on the loop (unless the future was
    /// cancelled meanwhile). A closed loop means nobody waits: nothing to do.
    fn deliver(&self, py: Python<'_>) {
        let Some(result) = self.handle.try_result() else {
            return;
        };
        let sent = (|| -> PyResult<()> {
            let setter = result_setter(py)?;
            let result = Bound::new(py, PyRunResult::from(result))?;
            self.event_loop.bind(py).call_method1(
                intern!(py, "call_soon_threadsafe"),
                (setter, self.fut.bind(py), result),
            )?;
            Ok(())
        })();
        drop(sent); // RuntimeError("Event loop is closed"): the awaiter is gone
    }
}

impl Wake for LoopWaker {
    fn wake(self: Arc<Self>) {
        // Core wakes only once the run is done; a spurious wake polls again.
        if !self.handle.is_finished() && !self.poll() {
            return;
        }
        let _ = Python::try_attach(|py| self.deliver(py));
    }
}

/// `lambda fut, result: fut.done() or fut.set_result(result)`, made once.
fn result_setter(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static SETTER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    SETTER
        .get_or_try_init(py, || {
            let f = PyCFunction::new_closure(
                py,
                Some(c"_pso_set_run_result"),
                None,
                |args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
                    let py = args.py();
                    let fut = args.get_item(0)?;
                    let done: bool = fut.call_method0(intern!(py, "done"))?.extract()?;
                    if !done {
                        fut.call_method1(intern!(py, "set_result"), (args.get_item(1)?,))?;
                    }
                    Ok(())
                },
            )?;
            Ok(f.into_any().unbind())
        })
        .map(|f| f.bind(py))
}

/// The result of a finished run: its state, outputs and one record per step.
#[pyclass(name = "RunResult", module = "pso", frozen)]
pub(crate) struct PyRunResult {
    inner: RunResult,
}

impl From<RunResult> for PyRunResult {
    fn from(inner: RunResult) -> Self {
        PyRunResult { inner }
    }
}

impl PyRunResult {
    fn known(&self, py: Python<'_>, step: &str) -> PyResult<()> {
        if self.inner.step_state(step).is_none() {
            return Err(not_found(
                py,
                format!("workflow '{}' has no step '{step}'", self.inner.workflow()),
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl PyRunResult {
    /// The run's id.
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id()
    }

    /// The workflow's name.
    #[getter]
    fn workflow(&self) -> &str {
        self.inner.workflow()
    }

    /// `"succeeded"`, `"failed"`, `"cancelled"` or `"timed_out"`.
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state().name()
    }

    /// Whether the run succeeded (every step succeeded or was skipped).
    #[getter]
    fn ok(&self) -> bool {
        self.inner.is_success()
    }

    /// How many steps (and fan-out children) ended in each state.
    #[getter]
    fn counts(&self) -> PyStepCounts {
        self.inner.counts().into()
    }

    /// Wall time from the start to the end of the last step, in seconds.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.inner.elapsed().as_secs_f64()
    }

    /// The outputs of the steps that succeeded, by step name (a new dict).
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let outputs = py.detach(|| self.inner.outputs());
        to_py(py, &outputs)
    }

    /// The output of `step`, or `None` if it did not succeed. Raises
    /// `pso.NotFoundError` if the workflow has no such step.
    fn output<'py>(&self, py: Python<'py>, step: &str) -> PyResult<Bound<'py, PyAny>> {
        self.known(py, step)?;
        match self.inner.output(step) {
            Some(v) => to_py(py, v),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// Why `step` did not succeed, or `None` if it did (or was skipped).
    /// Raises `pso.NotFoundError` if the workflow has no such step.
    fn error(&self, py: Python<'_>, step: &str) -> PyResult<Option<String>> {
        self.known(py, step)?;
        Ok(self.inner.error(step))
    }

    /// One record per step, in workflow order, then per fan-out child.
    #[getter]
    fn steps(&self, py: Python<'_>) -> Vec<PyStepRecord> {
        py.detach(|| self.inner.steps())
            .into_iter()
            .map(PyStepRecord::from)
            .collect()
    }

    /// The record of `step` (or of a fan-out child, `parent[i]`). Raises
    /// `pso.NotFoundError` if there is none.
    fn step(&self, py: Python<'_>, name: &str) -> PyResult<PyStepRecord> {
        py.detach(|| self.inner.step(name))
            .map(PyStepRecord::from)
            .ok_or_else(|| {
                not_found(
                    py,
                    format!(
                        "workflow '{}' has no step '{name}' in this run",
                        self.inner.workflow()
                    ),
                )
            })
    }

    /// The result as JSON: state, counts, elapsed seconds, outputs and steps.
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_json())
    }

    fn __repr__(&self) -> String {
        let c = self.inner.counts();
        format!(
            "<pso.RunResult workflow={:?} state={} steps={} succeeded={}>",
            self.inner.workflow(),
            self.inner.state().name(),
            c.accepted,
            c.succeeded
        )
    }
}

/// How many steps ended in each state. `accepted` (the workflow's steps
/// plus fan-out children) equals the sum of the terminal counts once the run
/// is done; `unfinished` counts the others while it goes.
#[pyclass(name = "StepCounts", module = "pso", frozen, eq)]
#[derive(PartialEq, Eq)]
pub(crate) struct PyStepCounts {
    #[pyo3(get)]
    accepted: usize,
    #[pyo3(get)]
    succeeded: usize,
    #[pyo3(get)]
    failed: usize,
    #[pyo3(get)]
    cancelled: usize,
    #[pyo3(get)]
    timed_out: usize,
    #[pyo3(get)]
    skipped: usize,
    #[pyo3(get)]
    unfinished: usize,
}

impl From<StepCounts> for PyStepCounts {
    fn from(c: StepCounts) -> Self {
        PyStepCounts {
            accepted: c.accepted,
            succeeded: c.succeeded,
            failed: c.failed,
            cancelled: c.cancelled,
            timed_out: c.timed_out,
            skipped: c.skipped,
            unfinished: c.unfinished,
        }
    }
}

#[pymethods]
impl PyStepCounts {
    /// The sum of the terminal counts.
    #[getter]
    fn terminal(&self) -> usize {
        self.succeeded + self.failed + self.cancelled + self.timed_out + self.skipped
    }

    fn __repr__(&self) -> String {
        format!(
            "StepCounts(accepted={}, succeeded={}, failed={}, cancelled={}, timed_out={}, \
             skipped={}, unfinished={})",
            self.accepted,
            self.succeeded,
            self.failed,
            self.cancelled,
            self.timed_out,
            self.skipped,
            self.unfinished
        )
    }
}

/// A snapshot of a run: its state so far and its step counts.
#[pyclass(name = "RunProgress", module = "pso", frozen)]
pub(crate) struct PyRunProgress {
    inner: RunProgress,
}

#[pymethods]
impl PyRunProgress {
    /// `"running"` while the run goes, then how it ended.
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state.name()
    }

    /// Step counts right now.
    #[getter]
    fn counts(&self) -> PyStepCounts {
        self.inner.counts.into()
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.RunProgress state={} {}>",
            self.inner.state.name(),
            PyStepCounts::from(self.inner.counts).__repr__()
        )
    }
}

/// What happened to one step (or fan-out child) in a run.
#[pyclass(name = "StepRecord", module = "pso", frozen)]
pub(crate) struct PyStepRecord {
    inner: StepRecord,
}

impl From<StepRecord> for PyStepRecord {
    fn from(inner: StepRecord) -> Self {
        PyStepRecord { inner }
    }
}

#[pymethods]
impl PyStepRecord {
    /// The step's name (`parent[i]` for a fan-out child).
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// The system, for a system operation.
    #[getter]
    fn system(&self) -> Option<&str> {
        self.inner.system.as_deref()
    }

    /// The operation, for a system operation.
    #[getter]
    fn operation(&self) -> Option<&str> {
        self.inner.operation.as_deref()
    }

    /// `"pending"`, `"running"`, `"waiting_retry"`, `"succeeded"`, `"failed"`,
    /// `"cancelled"`, `"timed_out"` or `"skipped"`.
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state.name()
    }

    /// Why it failed, was cancelled or timed out.
    #[getter]
    fn error(&self) -> Option<&str> {
        self.inner.error.as_deref()
    }

    /// Attempts made (0 if it never started).
    #[getter]
    fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// Seconds from ready to the start of its last attempt (0 with timing off).
    #[getter]
    fn queued(&self) -> f64 {
        self.inner.queued.as_secs_f64()
    }

    /// Run time of its last attempt, seconds (0 with timing off).
    #[getter]
    fn ran(&self) -> f64 {
        self.inner.ran.as_secs_f64()
    }

    /// The worker that ran it (None if unknown or with timing off).
    #[getter]
    fn worker(&self) -> Option<usize> {
        self.inner.worker
    }

    /// The fan-out parent, for a child.
    #[getter]
    fn parent(&self) -> Option<&str> {
        self.inner.parent.as_deref()
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.StepRecord {:?} {} attempts={}{}>",
            self.inner.name,
            self.inner.state.name(),
            self.inner.attempts,
            self.inner
                .error
                .as_deref()
                .map(|e| format!(" error={e:?}"))
                .unwrap_or_default()
        )
    }
}

/// A learned duration estimate of one system operation (`system.op`).
#[pyclass(name = "Estimate", module = "pso", frozen)]
pub(crate) struct PyEstimate {
    inner: Estimate,
}

impl From<Estimate> for PyEstimate {
    fn from(inner: Estimate) -> Self {
        PyEstimate { inner }
    }
}

#[pymethods]
impl PyEstimate {
    /// `"system.op"`.
    #[getter]
    fn key(&self) -> &str {
        &self.inner.key
    }

    /// Exponentially weighted mean, seconds.
    #[getter]
    fn mean(&self) -> f64 {
        self.inner.mean.as_secs_f64()
    }

    /// Exponentially weighted standard deviation, seconds.
    #[getter]
    fn stddev(&self) -> f64 {
        self.inner.stddev.as_secs_f64()
    }

    /// Number of measurements folded in.
    #[getter]
    fn samples(&self) -> u64 {
        self.inner.samples
    }

    fn __repr__(&self) -> String {
        format!(
            "Estimate(key={:?}, mean={}, stddev={}, samples={})",
            self.inner.key,
            self.inner.mean.as_secs_f64(),
            self.inner.stddev.as_secs_f64(),
            self.inner.samples
        )
    }
}
