//! One system's health, flapping and supervision bookkeeping: pure
//! decisions from events and the time they happened (no threads, no locks;
//! the orchestrator holds it under a mutex and acts on what it returns).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{
    HealthCheck, HealthInfo, HealthReport, HealthStatus, RestartPolicy, Supervision,
    SupervisionInfo,
};

/// Flap detection settings (orchestrator-wide).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlapConfig {
    /// Changes within `window` that make a system Flapping.
    pub(crate) threshold: u32,
    pub(crate) window: Duration,
}

/// What a probe result changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing worth acting on.
    Same,
    /// It just became Unhealthy (a failure), with why.
    Unhealthy(String),
    /// It just became Healthy again.
    Recovered,
    /// It just became Degraded, with why.
    Degraded(String),
}

/// What the supervisor should do about a failure.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing: not supervised, policy Never, a restart is already pending,
    /// or it already gave up.
    Nothing,
    /// Restart at `at` (attempt `attempt`).
    Restart { at: Instant, attempt: u32 },
    /// Too many failures within the window: give up.
    GiveUp { failures: u32, within: Duration },
}

/// Whether a change started or ended flapping.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flap {
    Steady,
    Started(u32),
    Ended,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Monitor {
    pub(crate) check: Option<HealthCheck>,
    pub(crate) sup: Option<Supervision>,
    /// Bumped whenever probes and timers must start over (activation,
    /// deactivation, reconfiguration): older timers do nothing.
    pub(crate) generation: u64,
    pub(crate) active: bool,
    status: HealthStatus,
    detail: String,
    fails: u32,
    oks: u32,
    probes: u64,
    pub(crate) last_check_in: Option<Instant>,
    changes: VecDeque<Instant>,
    pub(crate) flapping: bool,
    failures: VecDeque<Instant>,
    restarts: u32,
    pub(crate) attempt: u32,
    pub(crate) pending_restart: Option<Instant>,
    pub(crate) gave_up: bool,
    /// Dependents that were stopped because this system failed or stopped:
    /// activated again when it is Active again.
    pub(crate) stopped_dependents: Vec<String>,
}

impl Monitor {
    pub(crate) fn new() -> Self {
        Monitor {
            check: None,
            sup: None,
            generation: 0,
            active: false,
            status: HealthStatus::Healthy,
            detail: String::new(),
            fails: 0,
            oks: 0,
            probes: 0,
            last_check_in: None,
            changes: VecDeque::new(),
            flapping: false,
            failures: VecDeque::new(),
            restarts: 0,
            attempt: 0,
            pending_restart: None,
            gave_up: false,
            stopped_dependents: Vec::new(),
        }
    }

    /// The system became Active: health starts over as Healthy.
    pub(crate) fn activated(&mut self, now: Instant) {
        self.generation += 1;
        self.active = true;
        self.status = HealthStatus::Healthy;
        self.detail.clear();
        self.fails = 0;
        self.oks = 0;
        self.last_check_in = Some(now);
        self.gave_up = false;
    }

    /// The system stopped (deactivated or failed): its timers stop.
    pub(crate) fn stopped(&mut self) {
        self.generation += 1;
        self.active = false;
    }

    /// Folds in a probe's result (`Err`: it failed, timed out or panicked).
    pub(crate) fn probe_result(&mut self, result: Result<HealthReport, String>) -> Verdict {
        self.probes += 1;
        let check = self.check.as_ref();
        let need_fails = check.map_or(3, |c| c.failures_before_unhealthy);
        let need_oks = check.map_or(1, |c| c.successes_before_healthy);
        let (ok, status, detail) = match result {
            Ok(r) => (r.status != HealthStatus::Unhealthy, r.status, r.detail),
            Err(e) => (false, HealthStatus::Unhealthy, e),
        };
        if !ok {
            self.oks = 0;
            self.fails += 1;
            self.detail = detail.clone();
            if self.status != HealthStatus::Unhealthy && self.fails >= need_fails {
                self.status = HealthStatus::Unhealthy;
                return Verdict::Unhealthy(format!(
                    "{} failed health probe{} in a row: {detail}",
                    self.fails,
                    if self.fails == 1 { "" } else { "s" }
                ));
            }
            return Verdict::Same;
        }
        self.fails = 0;
        self.oks += 1;
        self.detail = detail.clone();
        match (self.status, status) {
            (HealthStatus::Unhealthy, _) if self.oks >= need_oks => {
                self.status = status;
                Verdict::Recovered
            }
            (HealthStatus::Unhealthy, _) => Verdict::Same,
            (HealthStatus::Healthy, HealthStatus::Degraded) => {
                self.status = status;
                Verdict::Degraded(detail)
            }
            (HealthStatus::Degraded, HealthStatus::Healthy) => {
                self.status = status;
                Verdict::Recovered
            }
            _ => Verdict::Same,
        }
    }

    /// Marks the health as Unhealthy for `why` (a missed watchdog deadline).
    pub(crate) fn force_unhealthy(&mut self, why: &str) {
        self.status = HealthStatus::Unhealthy;
        self.detail = why.to_owned();
        self.oks = 0;
    }

    /// Records a health or state change; says whether flapping started or
    /// ended.
    pub(crate) fn note_change(&mut self, now: Instant, cfg: FlapConfig) -> Flap {
        self.changes.push_back(now);
        self.prune_changes(now, cfg);
        if !self.flapping && self.changes.len() as u32 >= cfg.threshold {
            self.flapping = true;
            return Flap::Started(self.changes.len() as u32);
        }
        Flap::Steady
    }

    /// Ends flapping once a whole window passed without a change.
    pub(crate) fn settle_flapping(&mut self, now: Instant, cfg: FlapConfig) -> Flap {
        self.prune_changes(now, cfg);
        if self.flapping && self.changes.is_empty() {
            self.flapping = false;
            return Flap::Ended;
        }
        Flap::Steady
    }

    fn prune_changes(&mut self, now: Instant, cfg: FlapConfig) {
        while self
            .changes
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= cfg.window)
        {
            self.changes.pop_front();
        }
    }

    /// A failure happened: decide what to do.
    pub(crate) fn on_failure(&mut self, now: Instant) -> Decision {
        let Some(sup) = self.sup.as_ref() else {
            return Decision::Nothing;
        };
        if self.gave_up || self.pending_restart.is_some() {
            // Given up, or the same incident (a restart is already pending).
            return Decision::Nothing;
        }
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= sup.within)
        {
            self.failures.pop_front();
        }
        if sup.policy == RestartPolicy::Never {
            return Decision::Nothing;
        }
        if self.failures.len() as u32 > sup.max_restarts {
            self.gave_up = true;
            self.pending_restart = None;
            return Decision::GiveUp {
                failures: self.failures.len() as u32,
                within: sup.within,
            };
        }
        self.attempt += 1;
        let at = now + sup.delay(self.attempt);
        self.pending_restart = Some(at);
        Decision::Restart {
            at,
            attempt: self.attempt,
        }
    }

    /// A restart ran (successfully or not: a failure is reported apart).
    pub(crate) fn restarted(&mut self) {
        self.pending_restart = None;
        self.restarts += 1;
    }

    /// The system has been up for the stable period: backoff starts over.
    pub(crate) fn stable(&mut self) {
        self.attempt = 0;
    }

    /// What `system_status` shows.
    pub(crate) fn info(&self, now: Instant) -> (Option<HealthInfo>, Option<SupervisionInfo>) {
        let health = self.check.as_ref().map(|c| HealthInfo {
            status: self.status,
            detail: self.detail.clone(),
            consecutive_failures: self.fails,
            probes: self.probes,
            since_check_in: c
                .watchdog
                .and(self.last_check_in)
                .map(|t| now.saturating_duration_since(t)),
            flapping: self.flapping,
        });
        let sup = self.sup.as_ref().map(|s| {
            let recent = self
                .failures
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) < s.within)
                .count() as u32;
            SupervisionInfo {
                policy: s.policy,
                strategy: s.strategy,
                restarts: self.restarts,
                recent_failures: recent,
                failures_left: (s.max_restarts + 1).saturating_sub(recent),
                next_attempt_in: self
                    .pending_restart
                    .map(|t| t.saturating_duration_since(now)),
                attempt: self.attempt + 1,
                gave_up: self.gave_up,
            }
        });
        (health, sup)
    }

    /// The current health status.
    pub(crate) fn status(&self) -> HealthStatus {
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sup(max: u32) -> Supervision {
        Supervision::new(RestartPolicy::OnFailure)
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .jitter(false)
            .intensity(max, Duration::from_secs(10))
    }

    #[test]
    fn probes_need_the_thresholds_to_change_the_verdict() {
        let mut m = Monitor::new();
        m.check = Some(
            HealthCheck::probe(|_| Ok(HealthReport::healthy()))
                .failures_before_unhealthy(2)
                .successes_before_healthy(2),
        );
        assert_eq!(m.probe_result(Err("refused".into())), Verdict::Same);
        assert!(
            matches!(m.probe_result(Err("refused".into())), Verdict::Unhealthy(w) if w == "2 failed health probes in a row: refused")
        );
        assert_eq!(
            m.probe_result(Err("refused".into())),
            Verdict::Same,
            "reported once"
        );
        assert_eq!(m.probe_result(Ok(HealthReport::healthy())), Verdict::Same);
        assert_eq!(
            m.probe_result(Ok(HealthReport::healthy())),
            Verdict::Recovered
        );
        assert!(
            matches!(m.probe_result(Ok(HealthReport::degraded("slow"))), Verdict::Degraded(d) if d == "slow")
        );
        assert_eq!(m.status(), HealthStatus::Degraded);
        assert_eq!(
            m.probe_result(Ok(HealthReport::healthy())),
            Verdict::Recovered
        );
    }

    #[test]
    fn backoff_doubles_and_the_window_gives_up() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        m.sup = Some(sup(3));
        let mut delays = Vec::new();
        for i in 0..3 {
            let now = t0 + Duration::from_secs(i);
            match m.on_failure(now) {
                Decision::Restart { at, attempt } => {
                    assert_eq!(attempt, i as u32 + 1);
                    delays.push(at - now);
                    assert_eq!(
                        m.on_failure(now + Duration::from_millis(1)),
                        Decision::Nothing,
                        "one pending"
                    );
                    m.restarted();
                }
                d => panic!("{d:?}"),
            }
        }
        assert_eq!(delays, [100, 200, 400].map(Duration::from_millis));
        // A fourth failure within 10 s exceeds 3.
        assert!(matches!(
            m.on_failure(t0 + Duration::from_secs(4)),
            Decision::GiveUp { .. }
        ));
        assert_eq!(m.on_failure(t0 + Duration::from_secs(5)), Decision::Nothing);
        let (_, info) = m.info(t0 + Duration::from_secs(5));
        assert!(info.unwrap().gave_up);
    }

    #[test]
    fn failures_leave_the_window_and_stability_resets_the_backoff() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        m.sup = Some(sup(1));
        assert!(matches!(
            m.on_failure(t0),
            Decision::Restart { attempt: 1, .. }
        ));
        m.restarted();
        m.stable();
        // 20 s later the first failure is out of the 10 s window.
        let later = t0 + Duration::from_secs(20);
        match m.on_failure(later) {
            Decision::Restart { at, attempt } => {
                assert_eq!(attempt, 1, "backoff reset after a stable period");
                assert_eq!(at - later, Duration::from_millis(100));
            }
            d => panic!("{d:?}"),
        }
        let (_, info) = m.info(later);
        let info = info.unwrap();
        assert_eq!((info.recent_failures, info.failures_left), (1, 1));
        assert_eq!(info.next_attempt_in, Some(Duration::from_millis(100)));
    }

    #[test]
    fn flapping_starts_at_the_threshold_and_ends_after_a_quiet_window() {
        let cfg = FlapConfig {
            threshold: 3,
            window: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut m = Monitor::new();
        assert_eq!(m.note_change(t0, cfg), Flap::Steady);
        assert_eq!(
            m.note_change(t0 + Duration::from_secs(1), cfg),
            Flap::Steady
        );
        assert_eq!(
            m.note_change(t0 + Duration::from_secs(2), cfg),
            Flap::Started(3)
        );
        assert_eq!(
            m.note_change(t0 + Duration::from_secs(3), cfg),
            Flap::Steady
        );
        assert_eq!(
            m.settle_flapping(t0 + Duration::from_secs(9), cfg),
            Flap::Steady
        );
        assert_eq!(
            m.settle_flapping(t0 + Duration::from_secs(13), cfg),
            Flap::Ended
        );
        assert!(!m.flapping);
    }
}
