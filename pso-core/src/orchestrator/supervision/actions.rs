//! Supervisor actions: restarts (by strategy), stopping the dependents of a
//! failed system, giving up, re-activating dependents — the lifecycle calls
//! supervision makes, run on the supervisor thread (real time) or on the
//! virtual clock.

use std::sync::Weak;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use super::{Action, SUPERVISING};
use crate::lifecycle::SystemState;
use crate::model::EdgeKind;
use crate::orchestrator::{Inner, Orchestrator};
use crate::supervise::RestartStrategy;
use crate::supervise::monitor::Monitor;
use crate::sync::Arc;
use crate::unwind;

impl Orchestrator {
    /// Runs a supervisor action: inline in virtual time, else on the
    /// supervisor thread.
    pub(super) fn dispatch(&self, action: Action) {
        if self.inner.sup.clock.is_virtual() {
            // Due at once: runs at the next `advance`, never inside the
            // lifecycle call that may have caused it (its lock is held).
            let weak = Arc::downgrade(&self.inner);
            self.inner.sup.clock.after(Duration::ZERO, move || {
                if let Some(inner) = weak.upgrade() {
                    Orchestrator { inner }.run_action(action);
                }
            });
            return;
        }
        let mut worker = self.inner.sup.worker.lock();
        if worker.is_none() {
            let (tx, rx) = mpsc::channel::<Action>();
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("pso-supervisor".into())
                .spawn(move || {
                    while let Ok(a) = rx.recv() {
                        let Some(inner) = weak.upgrade() else { return };
                        let orch = Orchestrator { inner };
                        if orch.is_closed() {
                            return;
                        }
                        orch.run_action(a);
                    }
                });
            if spawned.is_err() {
                return; // no thread: supervision stops, the host goes on
            }
            *worker = Some(tx);
        }
        if let Some(tx) = worker.as_ref() {
            let _ = tx.send(action);
        }
    }

    pub(super) fn run_action(&self, action: Action) {
        SUPERVISING.with(|s| s.set(true));
        let _ = unwind::catch(|| match action {
            Action::Restart(system) => self.restart(&system),
            Action::StopDependents(system) => self.stop_dependents(&system),
            Action::GiveUp(system, why) => self.give_up(&system, &why),
            Action::Reactivate(systems) => {
                for s in systems {
                    let _ = self.activate_system(&s);
                }
            }
        });
        SUPERVISING.with(|s| s.set(false));
    }

    /// Stops the Active systems that require `system` (it failed); they are
    /// activated again once it is Active again.
    pub(super) fn stop_dependents(&self, system: &str) {
        let deps: Vec<String> = {
            let reg = self.inner.registry.read();
            let Ok(i) = reg.index(system) else { return };
            reg.incoming(i, EdgeKind::Requires)
                .into_iter()
                .filter(|&d| reg.node(d).life.state.is_active())
                .map(|d| reg.node(d).name.to_string())
                .collect()
        };
        let mut stopped = Vec::new();
        for d in deps {
            if let Ok(report) = self.deactivate_system(&d) {
                stopped.extend(report.deactivated().into_iter().map(str::to_owned));
            }
        }
        if !stopped.is_empty() {
            self.inner
                .sup
                .monitors
                .lock()
                .entry(system.to_owned())
                .or_insert_with(Monitor::new)
                .stopped_dependents
                .extend(stopped);
        }
    }

    /// Restarts `system` (and, by its strategy, the systems around it).
    pub(super) fn restart(&self, system: &str) {
        let strategy = {
            let mut mons = self.inner.sup.monitors.lock();
            let Some(m) = mons.get_mut(system) else {
                return;
            };
            if m.gave_up {
                return;
            }
            m.restarted();
            self.inner.metrics.restart(system);
            m.sup
                .as_ref()
                .map_or(RestartStrategy::OneForOne, |s| s.strategy)
        };
        let (targets, order) = self.restart_set(system, strategy);
        // Stop what is running, dependents first (deactivation cascades).
        let mut stopped = Vec::new();
        for t in order.iter().rev() {
            if targets.contains(t)
                && self.is_system_active(t).unwrap_or(false)
                && let Ok(report) = self.deactivate_system(t)
            {
                stopped.extend(report.deactivated().into_iter().map(str::to_owned));
            }
        }
        if !stopped.is_empty() {
            self.inner
                .sup
                .monitors
                .lock()
                .entry(system.to_owned())
                .or_insert_with(Monitor::new)
                .stopped_dependents
                .extend(stopped.into_iter().filter(|s| s != system));
        }
        self.alert(system, "restarted", "restarting now");
        // Start it (its activation re-activates the stopped dependents), then
        // the rest of the set, in dependency order.
        if self.activate_system(system).is_ok() {
            for t in order
                .iter()
                .filter(|t| *t != system && targets.contains(*t))
            {
                let _ = self.activate_system(t);
            }
        }
    }

    /// The systems a restart of `system` covers, and every system in
    /// registration-compatible dependency order (requirements first).
    pub(super) fn restart_set(
        &self,
        system: &str,
        strategy: RestartStrategy,
    ) -> (Vec<String>, Vec<String>) {
        let reg = self.inner.registry.read();
        let Ok(start) = reg.index(system) else {
            return (vec![system.to_owned()], vec![system.to_owned()]);
        };
        let mut set = vec![start];
        match strategy {
            RestartStrategy::OneForOne => {}
            RestartStrategy::RestForOne => {
                let mut k = 0;
                while k < set.len() {
                    let x = set[k];
                    for kind in [EdgeKind::Requires, EdgeKind::Wants] {
                        for d in reg.incoming(x, kind) {
                            if !set.contains(&d) {
                                set.push(d);
                            }
                        }
                    }
                    k += 1;
                }
            }
            RestartStrategy::OneForAll => {
                let mut k = 0;
                while k < set.len() {
                    let x = set[k];
                    for kind in [EdgeKind::Requires, EdgeKind::Wants] {
                        for d in reg.incoming(x, kind).into_iter().chain(reg.out(x, kind)) {
                            if !set.contains(&d) {
                                set.push(d);
                            }
                        }
                    }
                    k += 1;
                }
                set.retain(|&i| {
                    i == start || !matches!(reg.node(i).life.state, SystemState::Registered)
                });
            }
        }
        // Dependency order: a system after everything it requires or wants
        // within the set (the set is small; a simple repeated pass).
        let mut order = Vec::new();
        let mut left = set.clone();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|&x| {
                let ready = [EdgeKind::Requires, EdgeKind::Wants].iter().all(|&k| {
                    reg.out(x, k)
                        .iter()
                        .all(|o| !set.contains(o) || order.contains(o))
                });
                if ready {
                    order.push(x);
                }
                !ready
            });
            if left.len() == before {
                order.append(&mut left); // cannot happen: ordering edges are acyclic
            }
        }
        let names = |v: &[_]| v.iter().map(|&i| reg.node(i).name.to_string()).collect();
        (names(&set), names(&order))
    }

    /// Gives up on `system`: it goes down (Failed, then GaveUp) and stays down.
    pub(super) fn give_up(&self, system: &str, why: &str) {
        if self.is_system_active(system).unwrap_or(false) {
            let _ = self.deactivate_system(system);
        }
        let mut reg = self.inner.registry.write();
        let Ok(i) = reg.index(system) else { return };
        let life = &mut reg.node_mut(i).life;
        let reason: crate::lifecycle::Reason = Arc::from(why);
        if !life.state.is_failed() {
            let _ = life.transition(
                SystemState::Failed {
                    reason: why.to_owned(),
                },
                &reason,
                SystemTime::now(),
            );
        }
        let _ = life.transition(
            SystemState::GaveUp {
                reason: why.to_owned(),
            },
            &reason,
            SystemTime::now(),
        );
        drop(reg);
        self.publish_lifecycle(system, "gave_up", why);
    }
}
