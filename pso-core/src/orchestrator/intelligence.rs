//! Intelligence verbs of the [`Orchestrator`]: `learn_patterns`,
//! `coordination_insights`, `optimization_recommendations`,
//! `optimize_coordination` (with a reversible change log) and
//! `evolve_coordination`, plus snapshots that carry what was learned. The
//! analysis is in [`crate::intelligence`]; this module gathers its inputs
//! and carries out the changes.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::Orchestrator;
use crate::intelligence::insights::HealthFacts;
use crate::intelligence::recommend::{IdleFacts, Inputs, SlotFacts};
use crate::intelligence::{
    Action, ArmStats, Change, CoordinationPlan, Evolution, Guardrails, Insights, PATTERNS_KEY,
    Patterns, Recommendation, StrategyChange, Trial, TrialMetric, insights, learn, recommend,
};
use crate::model::EdgeKind;
use crate::state::{SnapshotInfo, StateError};
use crate::supervise::HealthStatus;

/// Without minimalist mode, a system unused this long is suggested for
/// deactivation.
const IDLE_SUGGESTION: Duration = Duration::from_secs(300);

/// Changes and trials kept in the logs.
const LOG_LEN: usize = 256;

/// Where a change or a trial left things, to undo it.
#[derive(Debug, Default)]
pub(crate) struct IntelLog {
    changes: Vec<Change>,
    evolutions: Vec<Evolution>,
    next_id: u64,
}

impl IntelLog {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Orchestrator {
    /// Folds history into estimates and returns them with their sample
    /// counts: per operation duration mean/variance and recent failure rate,
    /// per edge message rates, and co-activation counts. They are also saved
    /// in the state store (key [`PATTERNS_KEY`]), so [`Orchestrator::snapshot`]
    /// carries them.
    pub fn learn_patterns(&self) -> Patterns {
        let env = &self.inner.env;
        let runs = env.history.runs();
        let co = env.history.co_usage.lock().clone();
        let hub = self.inner.hub.coordination_status();
        let patterns = learn::patterns(&env.estimates, &runs, &hub, &co);
        let _ = self
            .inner
            .state
            .put(PATTERNS_KEY, learn::to_value(&env.estimates, &co));
        patterns
    }

    /// Writes the state store (with the learned patterns in it) to `path`
    /// atomically.
    ///
    /// # Errors
    /// [`StateError::Io`] and the other snapshot errors.
    pub fn snapshot(&self, path: impl AsRef<Path>) -> Result<SnapshotInfo, StateError> {
        self.learn_patterns();
        self.inner.state.snapshot(path)
    }

    /// Restores the state store from `path` and loads the learned patterns
    /// in it, so duration estimates start warm. Returns the snapshot's info.
    ///
    /// # Errors
    /// As [`crate::StateStore::restore`].
    pub fn restore(&self, path: impl AsRef<Path>) -> Result<SnapshotInfo, StateError> {
        let info = self.inner.state.restore(path)?;
        if let Some(e) = self.inner.state.get(PATTERNS_KEY)? {
            let env = &self.inner.env;
            let mut co = env.history.co_usage.lock();
            learn::from_value(&e.value, &env.estimates, &mut co);
        }
        Ok(info)
    }

    /// Where coordination time goes: critical paths of recent runs, the top
    /// contributors to latency (waiting vs working), hot edges and idle
    /// direct pairs, resource contention, unhealthy, flapping or given-up
    /// systems, and the hub's share of message latency (from the
    /// [performance metrics](Orchestrator::performance_metrics): nothing
    /// while they are off).
    pub fn coordination_insights(&self) -> Insights {
        let runs = self.inner.env.history.runs();
        let hub = self.inner.hub.coordination_status();
        let resources = self.resource_status();
        let mut health = HealthFacts::default();
        for s in self.system_status() {
            if let Some(h) = &s.health {
                if h.status == HealthStatus::Unhealthy {
                    health.unhealthy.push(s.name.clone());
                }
                if h.flapping {
                    health.flapping.push(s.name.clone());
                }
            }
            if s.supervision.as_ref().is_some_and(|v| v.gave_up) {
                health.gave_up.push(s.name.clone());
            }
        }
        let m = &self.inner.metrics.hub;
        let topics = m.topics();
        insights::insights(&runs, &hub, &resources, health, 1.0, (m.share(), &topics))
    }

    /// Typed suggestions, each with its target, evidence, expected gain and
    /// confidence: promote a hot pair to a direct channel, demote an idle
    /// one, raise or lower a concurrency limit, deactivate an idle system,
    /// pre-activate systems usually used together, change the scheduling
    /// policy. Most confident first.
    pub fn optimization_recommendations(&self) -> Vec<Recommendation> {
        self.recommendations_with(&Guardrails::default())
    }

    fn recommendations_with(&self, guardrails: &Guardrails) -> Vec<Recommendation> {
        let env = &self.inner.env;
        let runs = env.history.runs();
        let co = env.history.co_usage.lock().clone();
        let held = env.alloc.held();
        let idle_after = guardrails.idle_after.unwrap_or_else(|| {
            self.coordination_status()
                .minimalist
                .map_or(IDLE_SUGGESTION, |m| m.idle_timeout)
        });
        // Systems exchanging messages (a measured edge rate, or a direct
        // channel) are in use even when no workflow step runs on them.
        let talking: HashSet<String> = {
            let hub = self.inner.hub.coordination_status();
            let edges = hub
                .edges
                .into_iter()
                .filter(|e| e.rate > 0.0)
                .flat_map(|e| [e.from, e.to]);
            let pairs = hub.direct_pairs.into_iter().flat_map(|p| [p.a, p.b]);
            edges.chain(pairs).collect()
        };
        let (slots, idle, active, registered) = {
            let reg = self.inner.registry.read();
            let mut slots = Vec::new();
            let mut idle = Vec::new();
            let mut active = HashSet::new();
            let mut registered = HashSet::new();
            for i in reg.indices() {
                let n = reg.node(i);
                registered.insert(n.name.to_string());
                if n.slots.limit().is_some() {
                    slots.push(SlotFacts {
                        system: n.name.to_string(),
                        limit: n.slots.limit(),
                        window: n.slots.window(),
                    });
                }
                if n.life.state.is_active() {
                    active.insert(n.name.to_string());
                    let (for_, in_use) = n.slots.idle();
                    idle.push(IdleFacts {
                        system: n.name.to_string(),
                        idle: for_,
                        in_use,
                        pinned: n.slots.pinned(),
                        messaging: talking.contains(&*n.name),
                        holds_leases: held.contains_key(&*n.name),
                        required_by_active: reg
                            .incoming(i, EdgeKind::Requires)
                            .iter()
                            .any(|&d| reg.node(d).life.state.is_active()),
                    });
                }
            }
            (slots, idle, active, registered)
        };
        recommend::recommendations(&Inputs {
            runs: &runs,
            candidates: self.inner.hub.promotion_candidates(),
            slots,
            idle,
            idle_after,
            co: &co,
            active,
            registered,
            policy: env.policy(),
            workers: self.workers(),
        })
    }

    /// The recommendations that pass the default guardrails (20 samples,
    /// confidence 0.6); with `apply`, carries them out and logs each change
    /// (see [`Orchestrator::coordination_log`], [`Orchestrator::revert_change`]).
    pub fn optimize_coordination(&self, apply: bool) -> CoordinationPlan {
        self.optimize_coordination_with(apply, Guardrails::default())
    }

    /// [`Orchestrator::optimize_coordination`] with other guardrails.
    pub fn optimize_coordination_with(
        &self,
        apply: bool,
        guardrails: Guardrails,
    ) -> CoordinationPlan {
        let mut plan = CoordinationPlan {
            applied: apply,
            ..CoordinationPlan::default()
        };
        for r in self.recommendations_with(&guardrails) {
            if r.samples < guardrails.min_samples {
                let why = format!(
                    "{} samples, fewer than {}",
                    r.samples, guardrails.min_samples
                );
                plan.skipped.push((r, why));
            } else if r.confidence < guardrails.min_confidence {
                let why = format!(
                    "confidence {:.2}, below {:.2}",
                    r.confidence, guardrails.min_confidence
                );
                plan.skipped.push((r, why));
            } else {
                plan.actions.push(r);
            }
        }
        if apply {
            for r in &plan.actions {
                let error = self.carry_out(&r.action, &r.evidence).err();
                plan.changes
                    .push(self.log_change(r.action.clone(), r.evidence.clone(), error));
            }
        }
        plan
    }

    /// Every change `optimize_coordination` and `evolve_coordination` made,
    /// oldest first (bounded).
    pub fn coordination_log(&self) -> Vec<Change> {
        self.inner.intel.lock().changes.clone()
    }

    /// Undoes change `id` (restores what it replaced).
    ///
    /// # Errors
    /// A message if there is no such change, it was already reverted, it
    /// failed to apply, or undoing it failed.
    pub fn revert_change(&self, id: u64) -> Result<Change, String> {
        let action = {
            let log = self.inner.intel.lock();
            let c = log
                .changes
                .iter()
                .find(|c| c.id == id)
                .ok_or_else(|| format!("no coordination change {id}"))?;
            if c.reverted {
                return Err(format!("change {id} was already reverted"));
            }
            if let Some(e) = &c.error {
                return Err(format!("change {id} was never applied: {e}"));
            }
            c.action.clone()
        };
        self.carry_out(&undo(&action), &format!("revert change {id}"))?;
        let mut log = self.inner.intel.lock();
        let c = log
            .changes
            .iter_mut()
            .find(|c| c.id == id)
            .expect("found above");
        c.reverted = true;
        Ok(c.clone())
    }

    /// Tries `trial.change` against the current setting on `workload`,
    /// alternating baseline and trial calls (`trial.rounds` each), and keeps
    /// the change only if `trial.metric` improved by `trial.margin`;
    /// otherwise the setting is restored. The workload is any function that
    /// does representative work and returns `Err` (or panics) for a failed
    /// round. Every trial is logged ([`Orchestrator::evolution_log`]); a kept
    /// change is also in the coordination log and can be reverted.
    ///
    /// # Errors
    /// The change cannot be made (unknown system, a limit of 0, closed).
    pub fn evolve_coordination<E>(
        &self,
        trial: &Trial,
        mut workload: impl FnMut(&Orchestrator) -> Result<(), E>,
    ) -> Result<Evolution, String> {
        let before = self.current_setting(&trial.change)?;
        let after = trial.change.clone();
        let rounds = trial.rounds.max(1);
        let mut base = Vec::with_capacity(rounds);
        let mut tried = Vec::with_capacity(rounds);
        let mut run = |this: &Orchestrator| -> (f64, bool) {
            let t = Instant::now();
            let ok = matches!(crate::unwind::catch(|| workload(this)), Some(Ok(())));
            (t.elapsed().as_secs_f64(), ok)
        };
        for k in 0..rounds {
            // Alternate which arm goes first, so drift hits both alike.
            for arm in if k % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            } {
                self.apply_setting(if arm { &after } else { &before })?;
                let m = run(self);
                if arm { tried.push(m) } else { base.push(m) }
            }
        }
        let (b, t) = (stats(&base), stats(&tried));
        let (bv, tv) = match trial.metric {
            TrialMetric::Makespan => (b.median, t.median),
            TrialMetric::P99 => (b.p99, t.p99),
            TrialMetric::ErrorRate => (b.error_rate, t.error_rate),
        };
        let improvement = if bv > 0.0 {
            (bv - tv) / bv
        } else if tv > 0.0 {
            -1.0
        } else {
            0.0
        };
        let kept = improvement >= trial.margin;
        self.apply_setting(if kept { &after } else { &before })?;
        let change = describe(&trial.change);
        let reason = format!(
            "{change}: {:?} {:.4} -> {:.4} ({:+.1}%), needed {:.1}%: {}",
            trial.metric,
            bv,
            tv,
            improvement * 100.0,
            trial.margin * 100.0,
            if kept { "kept" } else { "reverted" }
        );
        let mut log = self.inner.intel.lock();
        let id = log.next();
        let ev = Evolution {
            id,
            change,
            baseline: b,
            trial: t,
            improvement,
            kept,
            reason: reason.clone(),
        };
        push_bounded(&mut log.evolutions, ev.clone());
        if kept && let Some(action) = as_action(&before, &after) {
            let id = log.next();
            push_bounded(
                &mut log.changes,
                Change {
                    id,
                    action,
                    reason,
                    reverted: false,
                    error: None,
                },
            );
        }
        Ok(ev)
    }

    /// Every evolution trial, oldest first (bounded).
    pub fn evolution_log(&self) -> Vec<Evolution> {
        self.inner.intel.lock().evolutions.clone()
    }

    fn log_change(&self, action: Action, reason: String, error: Option<String>) -> Change {
        let mut log = self.inner.intel.lock();
        let id = log.next();
        let c = Change {
            id,
            action,
            reason,
            reverted: false,
            error,
        };
        push_bounded(&mut log.changes, c.clone());
        c
    }

    fn carry_out(&self, action: &Action, reason: &str) -> Result<(), String> {
        let hub = &self.inner.hub;
        match action {
            Action::PromoteToDirect { a, b } => {
                hub.promote(a, b, reason).map_err(|e| e.to_string())
            }
            Action::DemoteDirect { a, b } => hub.demote(a, b, reason).map_err(|e| e.to_string()),
            Action::SetConcurrencyLimit { system, to, .. } => self
                .set_concurrency_limit(system, *to)
                .map_err(|e| e.to_string()),
            Action::DeactivateIdle { system } => self
                .deactivate_system(system)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Action::PreActivate { systems } => {
                for s in systems {
                    self.activate_system(s).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Action::SetSchedulingPolicy { to, .. } => {
                self.set_scheduling_policy(*to);
                Ok(())
            }
        }
    }

    fn current_setting(&self, change: &StrategyChange) -> Result<StrategyChange, String> {
        Ok(match change {
            StrategyChange::SchedulingPolicy(_) => {
                StrategyChange::SchedulingPolicy(self.scheduling_policy())
            }
            StrategyChange::ConcurrencyLimit { system, .. } => StrategyChange::ConcurrencyLimit {
                system: system.clone(),
                limit: self.status(system).map_err(|e| e.to_string())?.concurrency,
            },
            #[allow(unreachable_patterns)]
            other => return Err(format!("cannot try {other:?}")),
        })
    }

    fn apply_setting(&self, s: &StrategyChange) -> Result<(), String> {
        match s {
            StrategyChange::SchedulingPolicy(p) => {
                self.set_scheduling_policy(*p);
                Ok(())
            }
            StrategyChange::ConcurrencyLimit { system, limit } => self
                .set_concurrency_limit(system, *limit)
                .map_err(|e| e.to_string()),
            #[allow(unreachable_patterns)]
            other => Err(format!("cannot apply {other:?}")),
        }
    }
}

/// The action that undoes `a`.
fn undo(a: &Action) -> Action {
    match a {
        Action::PromoteToDirect { a, b } => Action::DemoteDirect {
            a: a.clone(),
            b: b.clone(),
        },
        Action::DemoteDirect { a, b } => Action::PromoteToDirect {
            a: a.clone(),
            b: b.clone(),
        },
        Action::SetConcurrencyLimit { system, from, to } => Action::SetConcurrencyLimit {
            system: system.clone(),
            from: *to,
            to: *from,
        },
        Action::DeactivateIdle { system } => Action::PreActivate {
            systems: vec![system.clone()],
        },
        Action::PreActivate { systems } => match systems.as_slice() {
            [one] => Action::DeactivateIdle {
                system: one.clone(),
            },
            _ => Action::PreActivate {
                systems: Vec::new(),
            },
        },
        Action::SetSchedulingPolicy { from, to } => Action::SetSchedulingPolicy {
            from: *to,
            to: *from,
        },
    }
}

/// The logged action of a kept trial.
fn as_action(before: &StrategyChange, after: &StrategyChange) -> Option<Action> {
    match (before, after) {
        (StrategyChange::SchedulingPolicy(from), StrategyChange::SchedulingPolicy(to)) => {
            Some(Action::SetSchedulingPolicy {
                from: *from,
                to: *to,
            })
        }
        (
            StrategyChange::ConcurrencyLimit {
                system,
                limit: from,
            },
            StrategyChange::ConcurrencyLimit { limit: to, .. },
        ) => Some(Action::SetConcurrencyLimit {
            system: system.clone(),
            from: *from,
            to: *to,
        }),
        _ => None,
    }
}

fn describe(c: &StrategyChange) -> String {
    match c {
        StrategyChange::SchedulingPolicy(p) => format!("scheduling policy {}", p.name()),
        StrategyChange::ConcurrencyLimit { system, limit } => match limit {
            Some(l) => format!("concurrency limit {l} for {system}"),
            None => format!("no concurrency limit for {system}"),
        },
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

fn stats(m: &[(f64, bool)]) -> ArmStats {
    let mut t: Vec<f64> = m.iter().map(|x| x.0).collect();
    t.sort_by(f64::total_cmp);
    let pick = |q: f64| -> f64 {
        if t.is_empty() {
            return 0.0;
        }
        t[((t.len() - 1) as f64 * q).round() as usize]
    };
    ArmStats {
        rounds: m.len(),
        median: pick(0.5),
        p99: pick(0.99),
        error_rate: if m.is_empty() {
            0.0
        } else {
            m.iter().filter(|x| !x.1).count() as f64 / m.len() as f64
        },
    }
}

fn push_bounded<T>(v: &mut Vec<T>, x: T) {
    if v.len() == LOG_LEN {
        v.remove(0);
    }
    v.push(x);
}
