//! Health and supervision verbs of the [`Orchestrator`], and the driver of
//! [`crate::supervise`]: it schedules probes and watchdog deadlines on the
//! supervision clock, feeds results to each system's monitor, restarts and
//! gives up as the monitors decide, and publishes alerts.
//!
//! # Threads
//! Clock callbacks only decide and schedule. Probes run on the worker pool
//! (real time) or inline (virtual time). Restarts, stops and give-ups call
//! lifecycle transactions, which wait for handlers: in real time they run on
//! one supervisor thread, started on first use and fed through a channel;
//! in virtual time they are due at once on the virtual clock and run inside
//! the next `VirtualClock::advance`, so tests are deterministic (and never
//! inside the lifecycle call that caused them, whose lock is held).
//!
//! # Locks
//! `Supervisor::monitors` is never held while a probe, a lifecycle call or a
//! hub publish runs. Lifecycle calls made here are marked (a thread-local
//! flag) so the transaction hook can tell them from the user's.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use super::Orchestrator;
use timers::{schedule_flap_settle, schedule_probe, schedule_watchdog};

mod actions;
mod timers;
use crate::lifecycle::{ActivationReport, SystemState};
use crate::model::LifecycleAction;
use crate::registry::RegistryError;
use crate::supervise::clock::Clock;
use crate::supervise::monitor::{Decision, Flap, FlapConfig, Monitor, Verdict};
use crate::supervise::{HealthCheck, HealthReport, RestartPolicy, Supervision};
use crate::sync::{Arc, Mutex};
use crate::value::Value;

thread_local! {
    /// Set while the supervisor runs a lifecycle call.
    static SUPERVISING: Cell<bool> = const { Cell::new(false) };
}

/// What the supervisor thread does.
enum Action {
    Restart(String),
    StopDependents(String),
    GiveUp(String, String),
    Reactivate(Vec<String>),
}

/// Orchestrator-wide supervision state.
pub(crate) struct Supervisor {
    pub(crate) clock: Clock,
    monitors: Mutex<HashMap<String, Monitor>>,
    flap: FlapConfig,
    alert_interval: Duration,
    /// Last alert per (system, kind), and how many were suppressed since.
    alerts: Mutex<HashMap<(String, String), (Instant, u64)>>,
    worker: Mutex<Option<mpsc::Sender<Action>>>,
}

/// Supervision settings of the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SupervisorConfig {
    pub(crate) flap: FlapConfig,
    pub(crate) alert_interval: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            flap: FlapConfig {
                threshold: 5,
                window: Duration::from_secs(60),
            },
            alert_interval: Duration::from_secs(10),
        }
    }
}

impl Supervisor {
    pub(crate) fn new(clock: Clock, config: SupervisorConfig) -> Self {
        Supervisor {
            clock,
            monitors: Mutex::new(HashMap::new()),
            flap: config.flap,
            alert_interval: config.alert_interval,
            alerts: Mutex::new(HashMap::new()),
            worker: Mutex::new(None),
        }
    }

    /// Health and supervision info of `system` for `system_status`.
    pub(crate) fn info(
        &self,
        system: &str,
    ) -> (
        Option<crate::supervise::HealthInfo>,
        Option<crate::supervise::SupervisionInfo>,
    ) {
        let now = self.clock.now();
        self.monitors
            .lock()
            .get(system)
            .map_or((None, None), |m| m.info(now))
    }
}

impl Orchestrator {
    /// Sets (or with `None` removes) how `system`'s health is checked. Takes
    /// effect at once if it is Active.
    ///
    /// # Errors
    /// Unknown system, an invalid check (zero interval, a threshold of 0, no
    /// probe and no watchdog), closed orchestrator.
    pub fn set_health_check(
        &self,
        system: &str,
        check: Option<HealthCheck>,
    ) -> Result<(), RegistryError> {
        self.check_open_registry()?;
        if let Some(c) = &check {
            c.validate().map_err(|m| RegistryError::Invalid {
                message: format!("system '{system}': {m}"),
            })?;
        }
        let active = self.is_system_active(system)?;
        {
            let mut mons = self.inner.sup.monitors.lock();
            let m = mons.entry(system.to_owned()).or_insert_with(Monitor::new);
            m.check = check;
            m.generation += 1;
            if active && !m.active {
                // Active before it had a monitor: it is monitored from now.
                m.activated(self.inner.sup.clock.now());
            }
        }
        if active {
            self.start_monitoring(system);
        }
        Ok(())
    }

    /// Sets (or with `None` removes) how `system` is supervised.
    ///
    /// # Errors
    /// Unknown system, an invalid supervision (backoff base above its
    /// maximum, a zero window), closed orchestrator.
    pub fn set_supervision(
        &self,
        system: &str,
        supervision: Option<Supervision>,
    ) -> Result<(), RegistryError> {
        self.check_open_registry()?;
        if let Some(s) = &supervision {
            s.validate().map_err(|m| RegistryError::Invalid {
                message: format!("system '{system}': {m}"),
            })?;
        }
        let active = self.is_system_active(system)?;
        let started = {
            let mut mons = self.inner.sup.monitors.lock();
            let m = mons.entry(system.to_owned()).or_insert_with(Monitor::new);
            m.sup = supervision;
            m.gave_up = false;
            let start = active && !m.active;
            if start {
                // Active before it had a monitor: supervised from now.
                m.activated(self.inner.sup.clock.now());
            }
            start
        };
        if started {
            self.start_monitoring(system);
        }
        Ok(())
    }

    /// Tells the watchdog `system` is alive (resets its deadline).
    ///
    /// # Errors
    /// Unknown system.
    pub fn check_in(&self, system: &str) -> Result<(), RegistryError> {
        self.is_system_active(system)?;
        let now = self.inner.sup.clock.now();
        let arm = {
            let mut mons = self.inner.sup.monitors.lock();
            match mons.get_mut(system) {
                Some(m) if m.active => {
                    m.last_check_in = Some(now);
                    m.check
                        .as_ref()
                        .and_then(|c| c.watchdog)
                        .map(|d| (d, m.generation))
                }
                _ => None,
            }
        };
        if let Some((deadline, generation)) = arm {
            schedule_watchdog(&self.inner, system, generation, now, deadline);
        }
        Ok(())
    }

    /// Reports that `system` failed while Active (a crash the host saw): it
    /// becomes Failed (its deactivate handler does not run), the systems that
    /// require it are stopped, and its supervisor decides what comes next.
    ///
    /// # Errors
    /// Unknown system; it is not Active; closed orchestrator.
    pub fn report_failure(&self, system: &str, message: &str) -> Result<(), RegistryError> {
        self.check_open_registry()?;
        if !self.is_system_active(system)? {
            return Err(RegistryError::Invalid {
                message: format!("system '{system}' is not Active, so it cannot fail"),
            });
        }
        self.fail_active(system, &format!("reported failure: {message}"));
        Ok(())
    }

    fn is_system_active(&self, system: &str) -> Result<bool, RegistryError> {
        let reg = self.inner.registry.read();
        Ok(reg.node(reg.index(system)?).life.state.is_active())
    }

    /// Registers the monitors of new systems (their specs' health and
    /// supervision, already validated).
    pub(super) fn add_monitors(
        &self,
        specs: Vec<(String, Option<HealthCheck>, Option<Supervision>)>,
    ) {
        let mut mons = self.inner.sup.monitors.lock();
        for (name, check, sup) in specs {
            if check.is_some() || sup.is_some() {
                let m = mons.entry(name).or_insert_with(Monitor::new);
                m.check = check;
                m.sup = sup;
            }
        }
    }

    /// The lifecycle hook: a transaction ended with `report`.
    pub(super) fn supervise_transaction(&self, report: &ActivationReport) {
        let by_supervisor = SUPERVISING.with(Cell::get);
        let now = self.inner.sup.clock.now();
        for o in &report.outcomes {
            use crate::lifecycle::Outcome;
            match &o.outcome {
                Outcome::Activated => {
                    let stopped = {
                        let mut mons = self.inner.sup.monitors.lock();
                        match mons.get_mut(&o.system) {
                            Some(m) => {
                                m.activated(now);
                                std::mem::take(&mut m.stopped_dependents)
                            }
                            None => Vec::new(),
                        }
                    };
                    self.start_monitoring(&o.system);
                    if !stopped.is_empty() {
                        self.dispatch(Action::Reactivate(stopped));
                    }
                }
                Outcome::Deactivated => {
                    let mut mons = self.inner.sup.monitors.lock();
                    let always = mons.get(&o.system).is_some_and(|m| {
                        m.sup
                            .as_ref()
                            .is_some_and(|s| s.policy == RestartPolicy::Always)
                    });
                    if let Some(m) = mons.get_mut(&o.system) {
                        m.stopped();
                    }
                    // Stopped only because the target (something it requires)
                    // was stopped by a user: `Always` brings it back later.
                    if always
                        && !by_supervisor
                        && report.action == LifecycleAction::Deactivate
                        && o.system != report.target
                    {
                        mons.entry(report.target.clone())
                            .or_insert_with(Monitor::new)
                            .stopped_dependents
                            .push(o.system.clone());
                    }
                }
                Outcome::Failed { .. } | Outcome::TimedOut { .. } => {
                    let why = o.error.clone().unwrap_or_else(|| "handler failed".into());
                    if let Some(m) = self.inner.sup.monitors.lock().get_mut(&o.system) {
                        m.stopped();
                    }
                    self.note_change(&o.system);
                    self.alert(&o.system, "failed", &why);
                    self.on_failure(&o.system, &why);
                }
                _ => {}
            }
        }
    }

    /// Starts probes, the watchdog and the stability timer of an Active system.
    fn start_monitoring(&self, system: &str) {
        let sup = &self.inner.sup;
        let now = sup.clock.now();
        let (check, generation, reset_after) = {
            let mons = sup.monitors.lock();
            let Some(m) = mons.get(system) else { return };
            (
                m.check.clone(),
                m.generation,
                m.sup.as_ref().map(|s| s.reset_after),
            )
        };
        if let Some(c) = check {
            if c.probe.is_some() {
                schedule_probe(&self.inner, system, generation, c.interval);
            }
            if let Some(d) = c.watchdog {
                schedule_watchdog(&self.inner, system, generation, now, d);
            }
        }
        if let Some(stable) = reset_after {
            let weak = Arc::downgrade(&self.inner);
            let name = system.to_owned();
            sup.clock.after(stable, move || {
                let Some(inner) = weak.upgrade() else { return };
                if let Some(m) = inner.sup.monitors.lock().get_mut(&name)
                    && m.generation == generation
                    && m.active
                    && m.status() != crate::supervise::HealthStatus::Unhealthy
                {
                    m.stable();
                }
            });
        }
    }

    /// A probe result for generation `generation` of `system`.
    fn probe_done(&self, system: &str, generation: u64, result: Result<HealthReport, String>) {
        let verdict = {
            let mut mons = self.inner.sup.monitors.lock();
            let Some(m) = mons.get_mut(system) else {
                return;
            };
            if m.generation != generation || !m.active {
                return; // stale: stopped or reconfigured meanwhile
            }
            m.probe_result(result)
        };
        match verdict {
            Verdict::Same => {}
            Verdict::Degraded(d) => {
                self.note_change(system);
                self.alert(system, "degraded", &d);
            }
            Verdict::Recovered => {
                self.note_change(system);
                self.alert(system, "recovered", "health probes pass again");
            }
            Verdict::Unhealthy(why) => {
                self.note_change(system);
                self.alert(system, "unhealthy", &why);
                self.unhealthy(system, &why);
            }
        }
    }

    /// An Active system is unhealthy (probes or the watchdog): a failure.
    fn unhealthy(&self, system: &str, why: &str) {
        let policy = self
            .inner
            .sup
            .monitors
            .lock()
            .get(system)
            .and_then(|m| m.sup.as_ref().map(|s| s.policy));
        match policy {
            // Not supervised: it stays Active and Unhealthy; alerted above.
            None | Some(RestartPolicy::Never) => {}
            Some(_) => self.on_failure(system, why),
        }
    }

    /// Marks an Active system Failed (no handler runs), stops what requires
    /// it, and asks its supervisor.
    fn fail_active(&self, system: &str, why: &str) {
        let failed = {
            let mut reg = self.inner.registry.write();
            let Ok(i) = reg.index(system) else { return };
            let reason: crate::lifecycle::Reason = Arc::from(why);
            reg.node_mut(i).life.transition(
                SystemState::Failed {
                    reason: why.to_owned(),
                },
                &reason,
                SystemTime::now(),
            ) == crate::lifecycle::Transitioned::Applied
        };
        if !failed {
            return;
        }
        if let Some(m) = self.inner.sup.monitors.lock().get_mut(system) {
            m.stopped();
        }
        self.inner
            .hub
            .close_system(system, &format!("{system} failed"));
        self.publish_lifecycle(system, "failed", why);
        self.note_change(system);
        self.alert(system, "failed", why);
        self.dispatch(Action::StopDependents(system.to_owned()));
        self.on_failure(system, why);
    }

    /// Asks the system's monitor what to do about a failure and does it.
    fn on_failure(&self, system: &str, why: &str) {
        let now = self.inner.sup.clock.now();
        let decision = self
            .inner
            .sup
            .monitors
            .lock()
            .get_mut(system)
            .map_or(Decision::Nothing, |m| m.on_failure(now));
        match decision {
            Decision::Nothing => {}
            Decision::Restart { at, attempt } => {
                let weak = Arc::downgrade(&self.inner);
                let name = system.to_owned();
                self.alert(
                    system,
                    "restarting",
                    &format!(
                        "restart attempt {attempt} in {} after: {why}",
                        humantime::format_duration(Duration::from_millis(
                            at.saturating_duration_since(now).as_millis() as u64
                        ))
                    ),
                );
                self.inner.sup.clock.schedule(at, move || {
                    if let Some(inner) = weak.upgrade() {
                        Orchestrator { inner }.dispatch(Action::Restart(name));
                    }
                });
            }
            Decision::GiveUp { failures, within } => {
                let why = format!(
                    "{failures} failures within {}; last: {why}",
                    humantime::format_duration(within)
                );
                self.alert(system, "gave_up", &why);
                self.dispatch(Action::GiveUp(system.to_owned(), why));
            }
        }
    }

    /// Records a health or state change; alerts when flapping starts or ends.
    fn note_change(&self, system: &str) {
        let sup = &self.inner.sup;
        let now = sup.clock.now();
        let flap = sup
            .monitors
            .lock()
            .get_mut(system)
            .map_or(Flap::Steady, |m| m.note_change(now, sup.flap));
        if let Flap::Started(n) = flap {
            self.publish_alert(
                system,
                "flapping",
                &format!(
                    "{n} health or state changes within {}; further alerts suppressed",
                    humantime::format_duration(sup.flap.window)
                ),
                0,
            );
            schedule_flap_settle(&self.inner, system);
        }
    }

    /// Publishes `pso.alert.<system>.<kind>` unless the system is flapping
    /// or the same alert went out less than `alert_interval` ago.
    fn alert(&self, system: &str, kind: &str, detail: &str) {
        let sup = &self.inner.sup;
        let flapping = sup.monitors.lock().get(system).is_some_and(|m| m.flapping);
        let now = sup.clock.now();
        let send = {
            let mut alerts = sup.alerts.lock();
            let key = (system.to_owned(), kind.to_owned());
            match alerts.get_mut(&key) {
                Some((last, count))
                    if flapping || now.saturating_duration_since(*last) < sup.alert_interval =>
                {
                    *count += 1;
                    None
                }
                Some((last, count)) => {
                    let n = *count;
                    *last = now;
                    *count = 0;
                    Some(n)
                }
                None if flapping => {
                    alerts.insert(key, (now, 1));
                    None
                }
                None => {
                    alerts.insert(key, (now, 0));
                    Some(0)
                }
            }
        };
        if let Some(n) = send {
            self.publish_alert(system, kind, detail, n);
        }
    }

    fn publish_alert(&self, system: &str, kind: &str, detail: &str, suppressed: u64) {
        let mut payload = std::collections::BTreeMap::new();
        payload.insert("system".to_owned(), Value::from(system));
        payload.insert("kind".to_owned(), Value::from(kind));
        payload.insert("detail".to_owned(), Value::from(detail));
        payload.insert("suppressed".to_owned(), Value::Int(suppressed as i64));
        let _ = self
            .inner
            .hub
            .publish(&format!("pso.alert.{system}.{kind}"), Value::Map(payload));
    }

    fn publish_lifecycle(&self, system: &str, event: &str, why: &str) {
        let mut payload = std::collections::BTreeMap::new();
        payload.insert("system".to_owned(), Value::from(system));
        payload.insert("event".to_owned(), Value::from(event));
        payload.insert("action".to_owned(), Value::from("supervise"));
        payload.insert("target".to_owned(), Value::from(system));
        payload.insert("error".to_owned(), Value::from(why));
        let _ = self.inner.hub.publish(
            &format!("pso.lifecycle.{system}.{event}"),
            Value::Map(payload),
        );
    }
}
