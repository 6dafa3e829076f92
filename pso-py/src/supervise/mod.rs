//! Health and supervision from Python: `pso.HealthCheck` (a Python probe
//! and/or a watchdog), `pso.HealthReport`, `pso.Supervision`,
//! `pso.VirtualClock` (`clock.rs`), the `HealthInfo`/`SupervisionInfo` of
//! `SystemStatus` (`info.rs`), and the orchestrator's `set_health_check`,
//! `set_supervision`, `check_in` and `report_failure`. Semantics are
//! pso-core's (`pso_core::supervise`); this file converts and validates.
//!
//! # Probes and the GIL
//! A probe is a Python callable `probe(system)`. Core calls it on a worker
//! thread (real time) or inside `VirtualClock.advance` on the thread that
//! advances (virtual time); either way the wrapper made by [`probe_fn`]
//! attaches to the interpreter only for the call. Whatever the callable
//! does wrong becomes a failed probe, never a panic: an exception (its type
//! and message are the detail), an awaitable, a value that is not a status.
//! `VirtualClock.advance` releases the GIL for the whole advance, since
//! probes and supervisor restarts (which wait for handlers on workers) run
//! inside it.
//!
//! # Invariants
//! * `HealthCheck`, `Supervision` and `HealthReport` are immutable and
//!   validated when built, so passing one to `register`/`set_*` fails only
//!   on the system (unknown, closed orchestrator).
//! * The probe callable is shared (one `Arc<Py<PyAny>>`) by the
//!   `HealthCheck`, core's closure and the orchestrator's handler mirror,
//!   which reports it to the garbage collector.

#![forbid(unsafe_code)]

pub(crate) mod clock;
pub(crate) mod info;

use std::sync::Arc;
use std::time::Duration;

use pso_core::{
    HandlerError, HealthCheck, HealthReport, HealthStatus, ProbeFn, RestartPolicy, RestartStrategy,
    Supervision,
};
use pyo3::PyTraverseError;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString, PyTuple};

use crate::error::{OrRaise, invalid_argument};
use crate::lifecycle::py_repr;
use crate::model::Callable;
use crate::orchestrator::PyOrchestrator;
use crate::workflow::seconds_arg;

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

fn parse_status(s: &str) -> Option<HealthStatus> {
    match s {
        "healthy" => Some(HealthStatus::Healthy),
        "degraded" => Some(HealthStatus::Degraded),
        "unhealthy" => Some(HealthStatus::Unhealthy),
        _ => None,
    }
}

fn report(status: HealthStatus, detail: String) -> HealthReport {
    match status {
        HealthStatus::Healthy => {
            let mut r = HealthReport::healthy();
            r.detail = detail;
            r
        }
        HealthStatus::Degraded => HealthReport::degraded(detail),
        HealthStatus::Unhealthy => HealthReport::unhealthy(detail),
    }
}

/// A non-negative integer count (`bool` refused).
pub(crate) fn count(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str, min: u64) -> PyResult<u64> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, got 'bool'"
        )));
    }
    let n: i128 = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!("{what} must be an int, got '{}'", type_name(obj)))
    })?;
    u64::try_from(n)
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| invalid_argument(py, format!("{what} must be at least {min}, got {n}")))
}

pub(super) fn count_u32(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    what: &str,
    min: u64,
) -> PyResult<u32> {
    let n = count(py, obj, what, min)?;
    u32::try_from(n).map_err(|_| invalid_argument(py, format!("{what} is too large: {n}")))
}

/// What a health probe found: `status` (`"healthy"`, `"degraded"` or
/// `"unhealthy"`) and a `detail`. A probe may return one instead of a
/// string or a `(status, detail)` tuple.
#[pyclass(name = "HealthReport", module = "pso", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyHealthReport {
    status: HealthStatus,
    detail: String,
}

#[pymethods]
impl PyHealthReport {
    #[new]
    #[pyo3(signature = (status, detail = String::new()))]
    #[pyo3(text_signature = "(status, detail='')")]
    fn new(py: Python<'_>, status: &str, detail: String) -> PyResult<Self> {
        let status = parse_status(status).ok_or_else(|| {
            invalid_argument(
                py,
                format!(
                    "unknown health status '{status}' (expected 'healthy', 'degraded' or \
                     'unhealthy')"
                ),
            )
        })?;
        Ok(PyHealthReport { status, detail })
    }

    /// Healthy, with an optional detail.
    #[staticmethod]
    #[pyo3(signature = (detail = String::new()))]
    #[pyo3(text_signature = "(detail='')")]
    fn healthy(detail: String) -> Self {
        PyHealthReport {
            status: HealthStatus::Healthy,
            detail,
        }
    }

    /// Degraded (reported, not a failure), with a detail.
    #[staticmethod]
    fn degraded(detail: String) -> Self {
        PyHealthReport {
            status: HealthStatus::Degraded,
            detail,
        }
    }

    /// Unhealthy (a failed probe), with a detail.
    #[staticmethod]
    fn unhealthy(detail: String) -> Self {
        PyHealthReport {
            status: HealthStatus::Unhealthy,
            detail,
        }
    }

    /// `"healthy"`, `"degraded"` or `"unhealthy"`.
    #[getter]
    fn status(&self) -> &'static str {
        self.status.name()
    }

    /// What the probe saw.
    #[getter]
    fn detail(&self) -> &str {
        &self.detail
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "HealthReport(status={}, detail={})",
            py_repr(py, self.status.name())?,
            py_repr(py, &self.detail)?
        ))
    }
}

/// The core report for what a probe returned, or why it is not one.
fn to_report(ret: &Bound<'_, PyAny>, system: &str) -> Result<HealthReport, HandlerError> {
    const EXPECTED: &str = "expected 'healthy', 'degraded', 'unhealthy', a (status, detail) \
                            tuple or a pso.HealthReport";
    if let Ok(r) = ret.cast::<PyHealthReport>() {
        let r = r.get();
        return Ok(report(r.status, r.detail.clone()));
    }
    let status_of = |obj: &Bound<'_, PyAny>| -> Result<HealthStatus, HandlerError> {
        let s: String = obj.extract().map_err(|_| {
            HandlerError::failed(format!(
                "the health probe of '{system}' returned a status of type '{}'; {EXPECTED}",
                type_name(obj)
            ))
        })?;
        parse_status(&s).ok_or_else(|| {
            HandlerError::failed(format!(
                "the health probe of '{system}' returned unknown status '{s}'; {EXPECTED}"
            ))
        })
    };
    if ret.is_instance_of::<PyString>() {
        return Ok(report(status_of(ret)?, String::new()));
    }
    if let Ok(t) = ret.cast::<PyTuple>()
        && t.len() == 2
    {
        let status = status_of(
            &t.get_item(0)
                .map_err(|e| HandlerError::failed(e.to_string()))?,
        )?;
        let detail = t
            .get_item(1)
            .map_err(|e| HandlerError::failed(e.to_string()))?;
        let detail = if detail.is_none() {
            String::new()
        } else {
            detail.str().map(|s| s.to_string()).unwrap_or_default()
        };
        return Ok(report(status, detail));
    }
    if ret.hasattr("__await__").unwrap_or(false) {
        if ret.hasattr("close").unwrap_or(false) {
            let _ = ret.call_method0("close"); // no "never awaited" warning
        }
        return Err(HandlerError::failed(format!(
            "the health probe of '{system}' returned an awaitable; probes must be plain \
             (synchronous) callables"
        )));
    }
    Err(HandlerError::failed(format!(
        "the health probe of '{system}' returned a '{}'; {EXPECTED}",
        type_name(ret)
    )))
}

/// Wraps a Python callable as a core probe (see the module docs).
fn probe_fn(callable: Callable) -> ProbeFn {
    Arc::new(move |system: &str| {
        Python::try_attach(|py| match callable.call1(py, (system,)) {
            Ok(ret) => to_report(ret.bind(py), system),
            Err(err) => Err(crate::model::raised(py, err)),
        })
        .unwrap_or_else(|| {
            Err(HandlerError::failed(
                "the Python interpreter is shutting down: the probe was not called",
            ))
        })
    })
}

/// How a system's health is checked: a `probe(system)` run every
/// `interval` seconds while it is Active (answering within `timeout`), and/or
/// a `watchdog`: the system must `check_in` at least that often.
/// `failures_before_unhealthy` failed probes in a row make it unhealthy,
/// `successes_before_healthy` good ones healthy again.
#[pyclass(name = "HealthCheck", module = "pso", frozen)]
pub(crate) struct PyHealthCheck {
    probe: Option<Callable>,
    interval: Duration,
    timeout: Duration,
    failures_before_unhealthy: u32,
    successes_before_healthy: u32,
    watchdog: Option<Duration>,
}

impl PyHealthCheck {
    /// The core check and the probe callable it calls.
    pub(crate) fn to_core(&self) -> (HealthCheck, Option<Callable>) {
        // `HealthCheck()` refuses a check with neither a probe nor a watchdog.
        let mut check = match &self.probe {
            Some(p) => HealthCheck::probe_shared(probe_fn(p.clone())),
            None => HealthCheck::watchdog_only(self.watchdog.unwrap_or(self.interval)),
        };
        check = check
            .interval(self.interval)
            .timeout(self.timeout)
            .failures_before_unhealthy(self.failures_before_unhealthy)
            .successes_before_healthy(self.successes_before_healthy);
        if let Some(d) = self.watchdog {
            check = check.watchdog(d);
        }
        (check, self.probe.clone())
    }
}

/// `obj` as a `pso.HealthCheck` (`what` names the argument in the error).
pub(crate) fn health_check(
    obj: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<(HealthCheck, Option<Callable>)> {
    let c = obj.cast::<PyHealthCheck>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a pso.HealthCheck or None, got '{}'",
            type_name(obj)
        ))
    })?;
    Ok(c.get().to_core())
}

/// `obj` as a `pso.Supervision` (`what` names the argument in the error).
pub(crate) fn supervision(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Supervision> {
    let s = obj.cast::<PySupervision>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a pso.Supervision or None, got '{}'",
            type_name(obj)
        ))
    })?;
    Ok(s.get().to_core())
}

#[pymethods]
impl PyHealthCheck {
    #[new]
    #[pyo3(signature = (
        probe = None, *, interval = None, timeout = None, failures_before_unhealthy = None,
        successes_before_healthy = None, watchdog = None
    ))]
    #[pyo3(text_signature = "(probe=None, *, interval=10.0, timeout=5.0, \
        failures_before_unhealthy=3, successes_before_healthy=1, watchdog=None)")]
    fn new(
        py: Python<'_>,
        probe: Option<Bound<'_, PyAny>>,
        interval: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        failures_before_unhealthy: Option<&Bound<'_, PyAny>>,
        successes_before_healthy: Option<&Bound<'_, PyAny>>,
        watchdog: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let probe = crate::model::callable(probe, "probe")?;
        let secs = |obj: Option<&Bound<'_, PyAny>>, what: &str, default: u64| match obj
            .filter(|o| !o.is_none())
        {
            Some(o) => seconds_arg(py, o, what, true),
            None => Ok(Duration::from_secs(default)),
        };
        let threshold = |obj: Option<&Bound<'_, PyAny>>, what: &str, default: u32| match obj
            .filter(|o| !o.is_none())
        {
            Some(o) => count_u32(py, o, what, 1),
            None => Ok(default),
        };
        let watchdog = match watchdog.filter(|w| !w.is_none()) {
            Some(w) => Some(seconds_arg(py, w, "watchdog", true)?),
            None => None,
        };
        if probe.is_none() && watchdog.is_none() {
            return Err(invalid_argument(
                py,
                "a health check needs a probe or a watchdog",
            ));
        }
        Ok(PyHealthCheck {
            probe,
            interval: secs(interval, "interval", 10)?,
            timeout: secs(timeout, "timeout", 5)?,
            failures_before_unhealthy: threshold(
                failures_before_unhealthy,
                "failures_before_unhealthy",
                3,
            )?,
            successes_before_healthy: threshold(
                successes_before_healthy,
                "successes_before_healthy",
                1,
            )?,
            watchdog,
        })
    }

    /// The probe callable, or `None` (watchdog only).
    #[getter]
    fn probe(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.probe.as_ref().map(|p| p.clone_ref(py))
    }

    /// Seconds between probes.
    #[getter]
    fn interval(&self) -> f64 {
        self.interval.as_secs_f64()
    }

    /// Seconds a probe may take before it counts as failed.
    #[getter]
    fn timeout(&self) -> f64 {
        self.timeout.as_secs_f64()
    }

    /// Failed probes in a row before the system is unhealthy.
    #[getter]
    fn failures_before_unhealthy(&self) -> u32 {
        self.failures_before_unhealthy
    }

    /// Good probes in a row before an unhealthy system is healthy again.
    #[getter]
    fn successes_before_healthy(&self) -> u32 {
        self.successes_before_healthy
    }

    /// The watchdog deadline in seconds, or `None`.
    #[getter]
    fn watchdog(&self) -> Option<f64> {
        self.watchdog.map(|d| d.as_secs_f64())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let probe = match &self.probe {
            Some(p) => p.bind(py).repr()?.to_string(),
            None => "None".to_owned(),
        };
        Ok(format!(
            "HealthCheck(probe={probe}, interval={}, timeout={}, failures_before_unhealthy={}, \
             successes_before_healthy={}, watchdog={})",
            py_repr(py, self.interval())?,
            py_repr(py, self.timeout())?,
            self.failures_before_unhealthy,
            self.successes_before_healthy,
            py_repr(py, self.watchdog())?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(p) = &self.probe {
            visit.call(&**p)?;
        }
        Ok(())
    }
}

pub(super) fn policy_name(p: RestartPolicy) -> &'static str {
    match p {
        RestartPolicy::Never => "never",
        RestartPolicy::OnFailure => "on_failure",
        RestartPolicy::Always => "always",
    }
}

pub(super) fn strategy_name(s: RestartStrategy) -> &'static str {
    match s {
        RestartStrategy::OneForOne => "one_for_one",
        RestartStrategy::OneForAll => "one_for_all",
        RestartStrategy::RestForOne => "rest_for_one",
    }
}

/// How a system is supervised: restart `policy` (`"never"`, `"on_failure"`,
/// `"always"`), `strategy` (`"one_for_one"`, `"rest_for_one"`,
/// `"one_for_all"`), backoff from `backoff` doubling up to `max_backoff`
/// seconds (with equal `jitter`), reset after `reset_after` seconds up; more
/// than `max_restarts` failures within `within` seconds gives up.
#[pyclass(name = "Supervision", module = "pso", frozen)]
pub(crate) struct PySupervision {
    policy: RestartPolicy,
    strategy: RestartStrategy,
    backoff: Duration,
    max_backoff: Duration,
    jitter: bool,
    reset_after: Duration,
    max_restarts: u32,
    within: Duration,
}

impl PySupervision {
    fn to_core(&self) -> Supervision {
        Supervision::new(self.policy)
            .strategy(self.strategy)
            .backoff(self.backoff, self.max_backoff)
            .jitter(self.jitter)
            .reset_after(self.reset_after)
            .intensity(self.max_restarts, self.within)
    }
}

#[pymethods]
impl PySupervision {
    #[new]
    #[pyo3(signature = (
        policy = "on_failure", *, strategy = "one_for_one", backoff = None, max_backoff = None,
        jitter = true, reset_after = None, max_restarts = None, within = None
    ))]
    #[pyo3(
        text_signature = "(policy='on_failure', *, strategy='one_for_one', backoff=0.1, \
        max_backoff=30.0, jitter=True, reset_after=60.0, max_restarts=5, within=60.0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        policy: &str,
        strategy: &str,
        backoff: Option<&Bound<'_, PyAny>>,
        max_backoff: Option<&Bound<'_, PyAny>>,
        jitter: bool,
        reset_after: Option<&Bound<'_, PyAny>>,
        max_restarts: Option<&Bound<'_, PyAny>>,
        within: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let policy = match policy {
            "never" => RestartPolicy::Never,
            "on_failure" => RestartPolicy::OnFailure,
            "always" => RestartPolicy::Always,
            other => {
                return Err(invalid_argument(
                    py,
                    format!(
                        "unknown restart policy '{other}' (expected 'never', 'on_failure' or \
                         'always')"
                    ),
                ));
            }
        };
        let strategy = match strategy {
            "one_for_one" => RestartStrategy::OneForOne,
            "rest_for_one" => RestartStrategy::RestForOne,
            "one_for_all" => RestartStrategy::OneForAll,
            other => {
                return Err(invalid_argument(
                    py,
                    format!(
                        "unknown restart strategy '{other}' (expected 'one_for_one', \
                         'rest_for_one' or 'one_for_all')"
                    ),
                ));
            }
        };
        let secs = |obj: Option<&Bound<'_, PyAny>>, what: &str, positive, default| match obj
            .filter(|o| !o.is_none())
        {
            Some(o) => seconds_arg(py, o, what, positive),
            None => Ok(default),
        };
        let backoff = secs(backoff, "backoff", false, Duration::from_millis(100))?;
        let max_backoff = secs(max_backoff, "max_backoff", false, Duration::from_secs(30))?;
        if backoff > max_backoff {
            return Err(invalid_argument(
                py,
                format!(
                    "backoff ({}) must not exceed max_backoff ({})",
                    backoff.as_secs_f64(),
                    max_backoff.as_secs_f64()
                ),
            ));
        }
        Ok(PySupervision {
            policy,
            strategy,
            backoff,
            max_backoff,
            jitter,
            reset_after: secs(reset_after, "reset_after", false, Duration::from_secs(60))?,
            max_restarts: match max_restarts.filter(|m| !m.is_none()) {
                Some(m) => count_u32(py, m, "max_restarts", 0)?,
                None => 5,
            },
            within: secs(within, "within", true, Duration::from_secs(60))?,
        })
    }

    /// `"never"`, `"on_failure"` or `"always"`.
    #[getter]
    fn policy(&self) -> &'static str {
        policy_name(self.policy)
    }

    /// `"one_for_one"`, `"rest_for_one"` or `"one_for_all"`.
    #[getter]
    fn strategy(&self) -> &'static str {
        strategy_name(self.strategy)
    }

    /// The first restart delay, seconds.
    #[getter]
    fn backoff(&self) -> f64 {
        self.backoff.as_secs_f64()
    }

    /// The longest restart delay, seconds.
    #[getter]
    fn max_backoff(&self) -> f64 {
        self.max_backoff.as_secs_f64()
    }

    /// Whether delays are randomized (half fixed, half random).
    #[getter]
    fn jitter(&self) -> bool {
        self.jitter
    }

    /// Seconds up after which the backoff starts over.
    #[getter]
    fn reset_after(&self) -> f64 {
        self.reset_after.as_secs_f64()
    }

    /// Failures allowed within `within` before giving up.
    #[getter]
    fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// The restart-intensity window, seconds.
    #[getter]
    fn within(&self) -> f64 {
        self.within.as_secs_f64()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Supervision(policy={}, strategy={}, backoff={}, max_backoff={}, jitter={}, \
             reset_after={}, max_restarts={}, within={})",
            py_repr(py, self.policy())?,
            py_repr(py, self.strategy())?,
            py_repr(py, self.backoff())?,
            py_repr(py, self.max_backoff())?,
            if self.jitter { "True" } else { "False" },
            py_repr(py, self.reset_after())?,
            self.max_restarts,
            py_repr(py, self.within())?
        ))
    }
}

#[pymethods]
impl PyOrchestrator {
    /// Sets (or with `None` removes) how `system`'s health is checked; takes
    /// effect at once if it is Active.
    #[pyo3(signature = (system, check))]
    fn set_health_check(
        &self,
        py: Python<'_>,
        system: String,
        check: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let (check, probe) = match check.filter(|c| !c.is_none()) {
            Some(c) => {
                let (c, p) = health_check(c, "check")?;
                (Some(c), p)
            }
            None => (None, None),
        };
        py.detach(|| {
            let result = orch.set_health_check(&system, check);
            if result.is_ok() {
                self.record_probe(system, probe);
            }
            result
        })
        .or_raise(py)
    }

    /// Sets (or with `None` removes) how `system` is supervised.
    #[pyo3(signature = (system, supervision))]
    fn set_supervision(
        &self,
        py: Python<'_>,
        system: &str,
        supervision: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let sup = match supervision.filter(|s| !s.is_none()) {
            Some(s) => Some(self::supervision(s, "supervision")?),
            None => None,
        };
        py.detach(|| orch.set_supervision(system, sup)).or_raise(py)
    }

    /// Tells `system`'s watchdog it is alive (resets its deadline).
    fn check_in(&self, py: Python<'_>, system: &str) -> PyResult<()> {
        let orch = self.core(py)?;
        py.detach(|| orch.check_in(system)).or_raise(py)
    }

    /// Reports that the Active `system` crashed: it becomes Failed (its
    /// deactivate handler does not run), what requires it is stopped, and
    /// its supervisor decides what comes next.
    fn report_failure(&self, py: Python<'_>, system: &str, message: &str) -> PyResult<()> {
        let orch = self.core(py)?;
        py.detach(|| orch.report_failure(system, message))
            .or_raise(py)
    }
}
