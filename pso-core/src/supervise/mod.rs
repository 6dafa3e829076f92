//! Health and supervision: what a system declares (a [`HealthCheck`] with a
//! probe and/or a watchdog, a [`Supervision`] restart policy) and the
//! per-system bookkeeping that decides, from probe results, check-ins,
//! failures and time, when a system is unhealthy, flapping, to be restarted,
//! or given up on. The orchestrator drives it (`orchestrator::supervision`):
//! it schedules probes on the [`clock`], runs restarts, publishes alerts.
//!
//! # Health
//! A probe runs every `interval` while the system is Active. A failed probe
//! (an `Unhealthy` report, an error, a panic, or no answer within
//! `timeout`) counts toward `failures_before_unhealthy` consecutive
//! failures, after which the system is Unhealthy — a failure for the
//! supervisor. `successes_before_healthy` consecutive good reports make it
//! Healthy again. `Degraded` is reported but is not a failure. A watchdog
//! deadline requires `check_in` at least that often.
//!
//! # Supervision
//! * `Never`: failures are recorded and alerted, nothing is restarted.
//! * `OnFailure`: a failure (a failed activation, a reported crash, an
//!   Unhealthy verdict, a missed watchdog deadline) restarts it.
//! * `Always`: as `OnFailure`, and a system stopped only because a system it
//!   requires was stopped is activated again once that one is Active.
//!
//! Restarts wait `backoff_base · 2^(attempt-1)` (capped at `backoff_max`,
//! with equal jitter), and the attempt count resets once the system has been
//! Active and not unhealthy for `reset_after`. Failures (crashes and failed
//! probes alike) are counted in a sliding window: the `max_restarts`+1-th
//! within `within` gives up — the system is `GaveUp` and an alert is raised;
//! the host process is never aborted. Strategies choose what is restarted:
//! `OneForOne` the system alone (with the dependents that had to stop with
//! it); `RestForOne` it and every system that requires or wants it, in
//! dependency order; `OneForAll` every Active system connected to it through
//! requires/wants edges.
//!
//! # Flapping
//! `k` health or state changes within a window mark the system Flapping:
//! its repeated alerts are suppressed (one `flapping` alert instead) until a
//! whole window passes without a change.
//!
//! # Invariants
//! * A monitor's timers carry its generation; a timer of an older generation
//!   (the system was deactivated, reconfigured) does nothing.
//! * At most one restart of a system is pending at a time.

pub(crate) mod clock;
pub(crate) mod monitor;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::model::HandlerError;

pub use clock::VirtualClock;

/// What a health probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working.
    Healthy,
    /// Working, with a problem worth reporting (not a failure).
    Degraded,
    /// Not working: counts as a failed probe.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn name(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A probe's answer: a status and a detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The status.
    pub status: HealthStatus,
    /// What the probe saw ("queue depth 1200", "connection refused").
    pub detail: String,
}

impl HealthReport {
    /// Healthy, with no detail.
    pub fn healthy() -> Self {
        HealthReport {
            status: HealthStatus::Healthy,
            detail: String::new(),
        }
    }

    /// Degraded, with a detail.
    pub fn degraded(detail: impl Into<String>) -> Self {
        HealthReport {
            status: HealthStatus::Degraded,
            detail: detail.into(),
        }
    }

    /// Unhealthy, with a detail.
    pub fn unhealthy(detail: impl Into<String>) -> Self {
        HealthReport {
            status: HealthStatus::Unhealthy,
            detail: detail.into(),
        }
    }
}

/// A health probe: called with the system's name.
pub type ProbeFn = Arc<dyn Fn(&str) -> Result<HealthReport, HandlerError> + Send + Sync>;

/// How a system's health is checked. See the module docs.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use pso_core::{HealthCheck, HealthReport};
/// let check = HealthCheck::probe(|_system| Ok(HealthReport::healthy()))
///     .interval(Duration::from_secs(5))
///     .failures_before_unhealthy(3)
///     .watchdog(Duration::from_secs(30));
/// # let _ = check;
/// ```
#[derive(Clone)]
pub struct HealthCheck {
    pub(crate) probe: Option<ProbeFn>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) failures_before_unhealthy: u32,
    pub(crate) successes_before_healthy: u32,
    pub(crate) watchdog: Option<Duration>,
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("probe", &self.probe.is_some())
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("failures_before_unhealthy", &self.failures_before_unhealthy)
            .field("successes_before_healthy", &self.successes_before_healthy)
            .field("watchdog", &self.watchdog)
            .finish()
    }
}

impl HealthCheck {
    /// A probe `f`, run every 10 s with a 5 s timeout; 3 failures in a row
    /// make the system Unhealthy, 1 success Healthy again.
    pub fn probe<F>(f: F) -> Self
    where
        F: Fn(&str) -> Result<HealthReport, HandlerError> + Send + Sync + 'static,
    {
        Self::probe_shared(Arc::new(f))
    }

    /// [`HealthCheck::probe`] with a shared function (bindings use this).
    pub fn probe_shared(f: ProbeFn) -> Self {
        HealthCheck {
            probe: Some(f),
            ..Self::none()
        }
    }

    /// No probe, only a watchdog: the system must `check_in` at least every
    /// `deadline`.
    pub fn watchdog_only(deadline: Duration) -> Self {
        Self::none().watchdog(deadline)
    }

    fn none() -> Self {
        HealthCheck {
            probe: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            failures_before_unhealthy: 3,
            successes_before_healthy: 1,
            watchdog: None,
        }
    }

    /// How often the probe runs.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long a probe may take before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Consecutive failed probes before the system is Unhealthy (≥ 1).
    pub fn failures_before_unhealthy(mut self, n: u32) -> Self {
        self.failures_before_unhealthy = n;
        self
    }

    /// Consecutive good probes before an Unhealthy system is Healthy (≥ 1).
    pub fn successes_before_healthy(mut self, n: u32) -> Self {
        self.successes_before_healthy = n;
        self
    }

    /// Requires a check-in at least every `deadline` while Active.
    pub fn watchdog(mut self, deadline: Duration) -> Self {
        self.watchdog = Some(deadline);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.probe.is_some() && (self.interval.is_zero() || self.timeout.is_zero()) {
            return Err("health check interval and timeout must be positive".into());
        }
        if self.failures_before_unhealthy == 0 || self.successes_before_healthy == 0 {
            return Err("health check thresholds must be at least 1".into());
        }
        if self.watchdog.is_some_and(|d| d.is_zero()) {
            return Err("watchdog deadline must be positive".into());
        }
        if self.probe.is_none() && self.watchdog.is_none() {
            return Err("a health check needs a probe or a watchdog".into());
        }
        Ok(())
    }
}

/// When a system is restarted. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart after a failure.
    OnFailure,
    /// Restart after a failure, and after being stopped because a system it
    /// requires was stopped (once that one is Active again).
    Always,
}

/// What is restarted with a failed system. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartStrategy {
    /// The system alone (and the dependents that had to stop with it).
    OneForOne,
    /// Every Active system connected to it by requires/wants edges.
    OneForAll,
    /// It and every system that requires or wants it, in dependency order.
    RestForOne,
}

/// How a system is supervised. See the module docs.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use pso_core::{RestartPolicy, RestartStrategy, Supervision};
/// let sup = Supervision::new(RestartPolicy::OnFailure)
///     .strategy(RestartStrategy::RestForOne)
///     .backoff(Duration::from_millis(100), Duration::from_secs(30))
///     .intensity(5, Duration::from_secs(60));
/// # let _ = sup;
/// ```
#[derive(Debug, Clone)]
pub struct Supervision {
    pub(crate) policy: RestartPolicy,
    pub(crate) strategy: RestartStrategy,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) jitter: bool,
    pub(crate) reset_after: Duration,
    pub(crate) max_restarts: u32,
    pub(crate) within: Duration,
}

impl Supervision {
    /// `policy`, one-for-one, backoff 100 ms doubling to 30 s with jitter,
    /// reset after 60 s stable, give up after 5 restarts within 60 s.
    pub fn new(policy: RestartPolicy) -> Self {
        Supervision {
            policy,
            strategy: RestartStrategy::OneForOne,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            jitter: true,
            reset_after: Duration::from_secs(60),
            max_restarts: 5,
            within: Duration::from_secs(60),
        }
    }

    /// What is restarted with the failed system.
    pub fn strategy(mut self, strategy: RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The first delay and the longest.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// Whether delays are randomized ("equal jitter": half fixed, half
    /// random). On by default.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// How long the system must stay up for the backoff to start over.
    pub fn reset_after(mut self, stable: Duration) -> Self {
        self.reset_after = stable;
        self
    }

    /// Gives up when more than `max_restarts` failures happen within
    /// `within`.
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.backoff_base > self.backoff_max {
            return Err("backoff base must not exceed its maximum".into());
        }
        if self.within.is_zero() {
            return Err("the restart-intensity window must be positive".into());
        }
        Ok(())
    }

    /// The delay before restart attempt `attempt` (1-based).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let d = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        if self.jitter && !d.is_zero() {
            let half = d / 2;
            half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos() as u64))
        } else {
            d
        }
    }
}

/// A system's health, as `system_status` shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthInfo {
    /// The last verdict.
    pub status: HealthStatus,
    /// The last probe's detail (or why it failed).
    pub detail: String,
    /// Failed probes in a row.
    pub consecutive_failures: u32,
    /// Probes run so far.
    pub probes: u64,
    /// Time since the last check-in, if it has a watchdog.
    #[serde(serialize_with = "ser_opt_secs")]
    pub since_check_in: Option<Duration>,
    /// Whether it is flapping (alerts suppressed).
    pub flapping: bool,
}

/// A system's supervision, as `system_status` shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SupervisionInfo {
    /// The restart policy.
    pub policy: RestartPolicy,
    /// The restart strategy.
    pub strategy: RestartStrategy,
    /// Restarts so far.
    pub restarts: u32,
    /// Failures counted in the current intensity window.
    pub recent_failures: u32,
    /// Failures the window still allows before giving up.
    pub failures_left: u32,
    /// Time until the pending restart, if one is pending.
    #[serde(serialize_with = "ser_opt_secs")]
    pub next_attempt_in: Option<Duration>,
    /// The attempt the next restart will be (the backoff grows with it).
    pub attempt: u32,
    /// Whether supervision gave up on it.
    pub gave_up: bool,
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
