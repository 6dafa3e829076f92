//! Coordination verbs of the [`Orchestrator`]: the hub and the state store
//! it owns, lifecycle events on the hub, the four coordination modes, and
//! `coordination_status`.
//!
//! * **Hierarchical** and **direct** traffic and **meshes** are the hub's
//!   ([`crate::hub`]); the orchestrator closes a system's direct channels
//!   when it is deactivated or fails, and, with `auto_promote`, checks the
//!   measured pair rates on the timer and promotes or demotes pairs (each
//!   change recorded with its reason).
//! * **Minimalist** is the orchestrator's: [`Orchestrator::run_minimal`]
//!   activates only the closure of the systems a workflow uses, and with an
//!   idle timeout set, a sweep on the timer deactivates active systems that
//!   are not pinned, that no live run uses, that hold no lease, and that
//!   have been unused longer than the timeout — together with their
//!   dependents, only if those are idle too.
//!
//! # Lifecycle events
//! Every transition a lifecycle call makes is published on
//! `pso.lifecycle.<system>.<event>` (`activated`, `deactivated`, `failed`,
//! `timed_out`, `blocked`) with a map payload `{system, event, action,
//! target, error?}`, after the transaction, like any other message — if
//! some subscription listens under `pso.lifecycle` when the transaction
//! ends (otherwise the events are not built, and the hub's per-topic
//! metrics do not count them).
//!
//! # Threads
//! Timer callbacks hold only a weak reference to the orchestrator and do no
//! more than sample rates or decide; an idle sweep that has something to
//! deactivate runs on a short-lived thread of its own (deactivation waits
//! for handlers), one sweep at a time.

use std::collections::VecDeque;
use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime};

use super::{Inner, Orchestrator};
use crate::hub::{CoordinationStatus, Hub, IdleDeactivation, MinimalistStatus, PairAction};
use crate::lifecycle::{ActivationReport, Outcome};
use crate::model::{EdgeKind, LifecycleAction};
use crate::registry::RegistryError;
use crate::state::StateStore;
use crate::sync::{Arc, Ordering};
use crate::value::Value;
use crate::workflow::history::CO_USAGE_SYSTEMS;
use crate::workflow::{RunHandle, RunOptions, Workflow, WorkflowError};

/// Idle deactivations kept for `coordination_status`.
const IDLE_LOG: usize = 64;

/// Coordination settings and bookkeeping (under `Inner::coord`).
#[derive(Default)]
pub(crate) struct Coord {
    idle_timeout: Option<Duration>,
    auto_promote: Option<Duration>,
    /// Bumped on every change of a setting: a timer chain of an older
    /// generation stops.
    idle_gen: u64,
    promote_gen: u64,
    sweeping: bool,
    idle_log: VecDeque<IdleDeactivation>,
}

impl Orchestrator {
    /// The communication hub: publish/subscribe on dot-separated topics with
    /// `*` and `>` wildcards, queue groups, request/reply, bounded queues
    /// with explicit overflow policies, direct channels and meshes. It runs
    /// callbacks on this orchestrator's workers and closes with it.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The shared state store: versioned keys with compare-and-set, watches,
    /// and snapshots to a file.
    pub fn state(&self) -> &StateStore {
        &self.inner.state
    }

    /// The current coordination mode, direct pairs, meshes, per-edge message
    /// rates, recent mode changes, and minimalist mode's settings and
    /// deactivations.
    pub fn coordination_status(&self) -> CoordinationStatus {
        let mut st = self.inner.hub.coordination_status();
        let coord = self.inner.coord.lock();
        st.auto_promote_every = coord.auto_promote;
        if let Some(timeout) = coord.idle_timeout {
            let deactivated = coord.idle_log.iter().cloned().collect();
            drop(coord);
            let reg = self.inner.registry.read();
            let mut pinned = Vec::new();
            let mut idle = Vec::new();
            for i in reg.indices() {
                let n = reg.node(i);
                if n.slots.pinned() {
                    pinned.push(n.name.to_string());
                }
                if n.life.state.is_active() {
                    let (for_, in_use) = n.slots.idle();
                    let secs = if in_use { 0.0 } else { for_.as_secs_f64() };
                    idle.push((n.name.to_string(), secs));
                }
            }
            st.mode = "minimalist";
            st.minimalist = Some(MinimalistStatus {
                idle_timeout: timeout,
                pinned,
                idle,
                deactivated,
            });
        }
        st
    }

    /// Pins a system (or unpins it): a pinned system is never deactivated
    /// for being idle.
    ///
    /// # Errors
    /// Unknown system, closed orchestrator.
    pub fn pin_system(&self, system: &str, pinned: bool) -> Result<(), RegistryError> {
        self.check_open_registry()?;
        let reg = self.inner.registry.read();
        reg.node(reg.index(system)?).slots.set_pinned(pinned);
        Ok(())
    }

    /// Turns minimalist mode's idle deactivation on (`Some(timeout)`) or off.
    /// While on, active systems that are not pinned, that no live run uses,
    /// that hold no lease, and that have been unused for `timeout` are
    /// deactivated (with their dependents, only if those are idle too). A
    /// system counts as used when it is activated and when a run that uses
    /// it starts or ends.
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) {
        let generation = {
            let mut c = self.inner.coord.lock();
            c.idle_timeout = timeout.filter(|t| !t.is_zero());
            c.idle_gen += 1;
            c.idle_gen
        };
        if let Some(t) = timeout.filter(|t| !t.is_zero()) {
            schedule_idle_tick(&self.inner, generation, sweep_period(t));
        }
    }

    /// Turns automatic promotion on (checking every `every`) or off. See
    /// [`crate::OrchestratorBuilder::auto_promote`].
    pub fn set_auto_promote(&self, every: Option<Duration>) {
        let generation = {
            let mut c = self.inner.coord.lock();
            c.auto_promote = every.filter(|t| !t.is_zero());
            c.promote_gen += 1;
            c.promote_gen
        };
        if let Some(every) = every.filter(|t| !t.is_zero()) {
            schedule_promote_tick(&self.inner, generation, every);
        }
    }

    /// Applies the hub's promotion candidates now: promotes hot pairs and
    /// demotes cooled promoted ones, each with its reason. Returns how many
    /// pairs changed.
    pub fn promote_pairs(&self) -> usize {
        promote_now(&self.inner.hub)
    }

    /// Minimalist mode for one task: activates only the closure of the
    /// systems `workflow` uses (what they require and want), then runs it.
    /// With an idle timeout set, they are deactivated again once idle.
    ///
    /// # Errors
    /// [`WorkflowError::ActivationFailed`] naming the system that could not be
    /// activated (nothing ran), or the errors of
    /// [`Orchestrator::coordinate_systems`].
    pub fn run_minimal(
        &self,
        workflow: &Workflow,
        options: RunOptions,
    ) -> Result<RunHandle, WorkflowError> {
        if self.is_closed() {
            return Err(WorkflowError::Closed);
        }
        for system in workflow.systems() {
            let active = {
                let reg = self.inner.registry.read();
                let idx = reg.index(system)?;
                let n = reg.node(idx);
                n.slots.touch(); // not idle while the run starts
                n.life.state.is_active()
            };
            if !active {
                self.activate_system(system)
                    .map_err(|e| WorkflowError::ActivationFailed {
                        workflow: workflow.name().to_owned(),
                        system: system.to_owned(),
                        message: e.to_string(),
                    })?;
            }
        }
        self.coordinate_systems_with(workflow, options)
    }

    /// Runs one idle sweep now (minimalist mode must be on) and returns the
    /// systems it deactivated.
    pub fn deactivate_idle(&self) -> Vec<String> {
        let Some(timeout) = self.inner.coord.lock().idle_timeout else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (system, idle) in self.idle_roots(timeout) {
            // A dependent deactivated with an earlier root is gone already.
            let Ok(report) = self.deactivate_system(&system) else {
                continue;
            };
            let at = SystemTime::now();
            let mut c = self.inner.coord.lock();
            for name in report.deactivated() {
                if c.idle_log.len() == IDLE_LOG {
                    c.idle_log.pop_front();
                }
                c.idle_log.push_back(IdleDeactivation {
                    system: name.to_string(),
                    idle_secs: idle.as_secs_f64(),
                    at,
                });
                out.push(name.to_string());
            }
        }
        out
    }

    /// Idle systems whose active dependents (through `requires`, at any
    /// depth) are all idle too: deactivating each takes those with it.
    fn idle_roots(&self, timeout: Duration) -> Vec<(String, Duration)> {
        let held = self.inner.env.alloc.held();
        let reg = self.inner.registry.read();
        let idle_for = |i| {
            let n = reg.node(i);
            let (for_, in_use) = n.slots.idle();
            let (running, waiting) = n.slots.load();
            let idle = n.life.state.is_active()
                && !n.slots.pinned()
                && !in_use
                && running == 0
                && waiting == 0
                && for_ >= timeout
                && !held.contains_key(&*n.name);
            idle.then_some(for_)
        };
        let mut out = Vec::new();
        for i in reg.indices() {
            let Some(for_) = idle_for(i) else { continue };
            let mut stack = vec![i];
            let mut seen = vec![i];
            let mut ok = true;
            while let Some(x) = stack.pop() {
                for d in reg.incoming(x, EdgeKind::Requires) {
                    if seen.contains(&d) || !reg.node(d).life.state.is_active() {
                        continue;
                    }
                    if idle_for(d).is_none() {
                        ok = false;
                        break;
                    }
                    seen.push(d);
                    stack.push(d);
                }
                if !ok {
                    break;
                }
            }
            if ok {
                out.push((reg.node(i).name.to_string(), for_));
            }
        }
        out
    }

    /// After a lifecycle transaction (which marked the systems it activated
    /// used, for minimalist mode): counts them as used together, closes the direct
    /// channels of systems that stopped, and publishes its events — only
    /// when some subscription listens under `pso.lifecycle` (an activation
    /// of 100,000 systems would otherwise build 100,000 messages for
    /// nobody, and flood the hub's match cache with their topics).
    pub(super) fn after_transaction(&self, report: &ActivationReport) {
        let hub = &self.inner.hub;
        let activated = || {
            report
                .outcomes
                .iter()
                .filter(|o| matches!(o.outcome, Outcome::Activated))
        };
        if activated().nth(1).is_some() {
            let used: Vec<std::sync::Arc<str>> = activated()
                .take(CO_USAGE_SYSTEMS)
                .map(|o| std::sync::Arc::from(o.system.as_str()))
                .collect();
            self.inner.env.history.co_usage.lock().add(used.iter());
        }
        let publish = hub.listens_under("pso.lifecycle");
        let action = match report.action {
            LifecycleAction::Activate => "activate",
            LifecycleAction::Deactivate => "deactivate",
        };
        for o in &report.outcomes {
            let (event, stopped) = match &o.outcome {
                Outcome::Activated => ("activated", false),
                Outcome::Deactivated => ("deactivated", true),
                Outcome::Failed { .. } => ("failed", true),
                Outcome::TimedOut { .. } => ("timed_out", true),
                Outcome::Blocked { .. } => ("blocked", false),
                _ => continue,
            };
            if stopped {
                hub.close_system(&o.system, &format!("{} {event}", o.system));
            }
            if !publish {
                continue;
            }
            let mut payload = std::collections::BTreeMap::new();
            payload.insert("system".to_owned(), Value::from(o.system.as_str()));
            payload.insert("event".to_owned(), Value::from(event));
            payload.insert("action".to_owned(), Value::from(action));
            payload.insert("target".to_owned(), Value::from(report.target.as_str()));
            if let Some(e) = &o.error {
                payload.insert("error".to_owned(), Value::from(e.as_str()));
            }
            let _ = hub.publish(
                &format!("pso.lifecycle.{}.{event}", o.system),
                Value::Map(payload),
            );
        }
    }
}

/// How often the idle sweep looks: a quarter of the timeout, within
/// [10 ms, 1 s].
fn sweep_period(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

fn schedule_idle_tick(inner: &Arc<Inner>, generation: u64, period: Duration) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let _ = inner.env.timer.schedule(Instant::now() + period, move || {
        idle_tick(weak, generation, period)
    });
}

/// Timer callback: if anything is idle, sweep on a thread of its own.
fn idle_tick(weak: Weak<Inner>, generation: u64, period: Duration) {
    let Some(inner) = weak.upgrade() else { return };
    if inner.closed.load(Ordering::Acquire) {
        return;
    }
    let timeout = {
        let mut c = inner.coord.lock();
        if c.idle_gen != generation {
            return; // the setting changed: a newer chain runs
        }
        match c.idle_timeout {
            Some(t) if !c.sweeping => {
                c.sweeping = true;
                Some(t)
            }
            _ => None,
        }
    };
    if let Some(t) = timeout {
        let orch = Orchestrator {
            inner: inner.clone(),
        };
        if orch.idle_roots(t).is_empty() {
            inner.coord.lock().sweeping = false;
        } else {
            let spawned = std::thread::Builder::new()
                .name("pso-idle-sweep".into())
                .spawn(move || {
                    orch.deactivate_idle();
                    orch.inner.coord.lock().sweeping = false;
                });
            if spawned.is_err() {
                inner.coord.lock().sweeping = false;
            }
        }
    }
    schedule_idle_tick(&inner, generation, period);
}

fn schedule_promote_tick(inner: &Arc<Inner>, generation: u64, every: Duration) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let _ = inner.env.timer.schedule(Instant::now() + every, move || {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) || inner.coord.lock().promote_gen != generation {
            return;
        }
        promote_now(&inner.hub);
        schedule_promote_tick(&inner, generation, every);
    });
}

fn promote_now(hub: &Hub) -> usize {
    let mut changed = 0;
    for c in hub.promotion_candidates() {
        let done = match c.action {
            PairAction::Promote => hub.promote(&c.a, &c.b, &c.reason),
            PairAction::Demote => hub.demote(&c.a, &c.b, &c.reason),
        };
        if done.is_ok() {
            changed += 1;
        }
    }
    changed
}
