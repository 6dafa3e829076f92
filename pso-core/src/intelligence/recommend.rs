//! `optimization_recommendations`: turns the measurements into typed
//! suggestions, each with its evidence, expected gain and confidence.
//!
//! Confidence grows with the samples behind a suggestion (`n / (n + 10)`)
//! and with the size of the effect; a suggestion whose predicted effect is
//! small is not made at all.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::simulate::{Dag, makespan};
use super::{Action, Recommendation};
use crate::hub::{Candidate, PairAction};
use crate::workflow::SchedulingPolicy;
use crate::workflow::history::{CoUsage, RunSummary};
use crate::workflow::limits::Window;

/// A system's concurrency facts.
#[derive(Debug)]
pub(crate) struct SlotFacts {
    pub(crate) system: String,
    pub(crate) limit: Option<u32>,
    pub(crate) window: Window,
}

/// An Active system's usage facts.
#[derive(Debug)]
pub(crate) struct IdleFacts {
    pub(crate) system: String,
    pub(crate) idle: Duration,
    pub(crate) in_use: bool,
    pub(crate) pinned: bool,
    /// It sends or receives messages (a measured edge rate or a direct
    /// channel).
    pub(crate) messaging: bool,
    pub(crate) holds_leases: bool,
    pub(crate) required_by_active: bool,
}

/// Everything the recommendations are made from.
#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    pub(crate) runs: &'a [RunSummary],
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) slots: Vec<SlotFacts>,
    pub(crate) idle: Vec<IdleFacts>,
    pub(crate) idle_after: Duration,
    pub(crate) co: &'a CoUsage,
    pub(crate) active: HashSet<String>,
    pub(crate) registered: HashSet<String>,
    pub(crate) policy: SchedulingPolicy,
    pub(crate) workers: usize,
}

/// How sure a suggestion backed by `n` samples can be (0..1): 10 samples
/// give 0.5, 90 give 0.9.
fn saturate(n: u64) -> f64 {
    n as f64 / (n as f64 + 10.0)
}

pub(crate) fn recommendations(inp: &Inputs<'_>) -> Vec<Recommendation> {
    let mut out = Vec::new();
    pairs(inp, &mut out);
    concurrency(inp, &mut out);
    idle(inp, &mut out);
    pre_activate(inp, &mut out);
    policy(inp, &mut out);
    out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    out
}

fn pairs(inp: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    for c in &inp.candidates {
        let ratio = if c.threshold > 0.0 {
            c.rate / c.threshold
        } else {
            1.0
        };
        let (action, gain, effect) = match c.action {
            PairAction::Promote => (
                Action::PromoteToDirect {
                    a: c.a.clone(),
                    b: c.b.clone(),
                },
                format!(
                    "~{:.0} msg/s stop being routed (topic matching and queueing skipped)",
                    c.rate
                ),
                (ratio - 1.0).clamp(0.0, 1.0),
            ),
            PairAction::Demote => (
                Action::DemoteDirect {
                    a: c.a.clone(),
                    b: c.b.clone(),
                },
                "frees an idle channel's buffers; traffic goes through the hub with full metrics"
                    .into(),
                (1.0 - ratio).clamp(0.0, 1.0),
            ),
        };
        // The rate is an EWMA over the hub's window; treat each message/s
        // over the window as samples.
        let samples = (c.rate.max(0.0) * 10.0) as u64;
        out.push(Recommendation {
            target: format!("{}<->{}", c.a, c.b),
            action,
            evidence: c.reason.clone(),
            expected_gain: gain,
            confidence: saturate(samples) * (0.5 + 0.5 * effect),
            samples,
        });
    }
}

fn concurrency(inp: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    for s in &inp.slots {
        let Some(limit) = s.limit else { continue };
        let w = &s.window;
        if w.waits == 0 && w.max_running == 0 {
            continue;
        }
        let mean_wait = if w.waits > 0 {
            w.wait / w.waits
        } else {
            Duration::ZERO
        };
        if w.waits > 0 && mean_wait >= Duration::from_millis(1) && w.max_running >= limit {
            let to = limit.saturating_add(limit.div_ceil(2));
            out.push(Recommendation {
                target: s.system.clone(),
                action: Action::SetConcurrencyLimit {
                    system: s.system.clone(),
                    from: Some(limit),
                    to: Some(to),
                },
                evidence: format!(
                    "{} steps waited a mean of {} for one of {limit} slots (all in use; peak {} waiting)",
                    w.waits,
                    humantime::format_duration(Duration::from_micros(mean_wait.as_micros() as u64)),
                    w.max_waiting
                ),
                expected_gain: format!(
                    "up to {} less queue wait per step",
                    humantime::format_duration(Duration::from_micros(mean_wait.as_micros() as u64))
                ),
                confidence: saturate(w.waits as u64),
                samples: w.waits as u64,
            });
        } else if w.waits == 0 && w.max_running.saturating_mul(2) < limit && w.max_running > 0 {
            let to = w.max_running.saturating_mul(2).max(1);
            out.push(Recommendation {
                target: s.system.clone(),
                action: Action::SetConcurrencyLimit {
                    system: s.system.clone(),
                    from: Some(limit),
                    to: Some(to),
                },
                evidence: format!(
                    "at most {} of {limit} slots used, no step waited",
                    w.max_running
                ),
                expected_gain: "caps bursts at twice the observed peak without adding waits".into(),
                confidence: 0.5 * saturate(u64::from(w.max_running) * 10),
                samples: u64::from(w.max_running),
            });
        }
    }
}

fn idle(inp: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    for s in &inp.idle {
        if s.in_use || s.pinned || s.messaging || s.holds_leases || s.required_by_active {
            continue;
        }
        if s.idle < inp.idle_after {
            continue;
        }
        let minutes = s.idle.as_secs_f64() / 60.0;
        out.push(Recommendation {
            target: s.system.clone(),
            action: Action::DeactivateIdle {
                system: s.system.clone(),
            },
            evidence: format!(
                "Active but unused for {} (no run used it, no messages, no lease held, nothing Active requires it)",
                humantime::format_duration(Duration::from_secs(s.idle.as_secs()))
            ),
            expected_gain: "releases what it holds while Active".into(),
            confidence: (minutes / (minutes + 5.0)).clamp(0.0, 0.95),
            samples: s.idle.as_secs(),
        });
    }
}

fn pre_activate(inp: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    // For each Active system, the inactive systems used with it in at least
    // 80% of its occasions.
    let mut wanted: HashMap<String, (Vec<String>, u64, f64)> = HashMap::new();
    for ((a, b), &together) in &inp.co.pairs {
        for (x, y) in [(a, b), (b, a)] {
            let (x, y) = (x.to_string(), y.to_string());
            if !inp.active.contains(&x) || inp.active.contains(&y) || !inp.registered.contains(&y) {
                continue;
            }
            let n = inp.co.single.get(x.as_str()).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let share = together as f64 / n as f64;
            if share >= 0.8 {
                let e = wanted.entry(x).or_default();
                e.0.push(y);
                e.1 = e.1.max(n);
                e.2 = e.2.max(share);
            }
        }
    }
    let mut keys: Vec<&String> = wanted.keys().collect();
    keys.sort();
    for x in keys {
        let (mut systems, n, share) = wanted[x].clone();
        systems.sort();
        out.push(Recommendation {
            target: x.clone(),
            action: Action::PreActivate {
                systems: systems.clone(),
            },
            evidence: format!(
                "{} used together with {x} in {:.0}% of its {n} runs/activations, and inactive now",
                systems.join(", "),
                share * 100.0
            ),
            expected_gain: "their activation leaves the critical path of the next run".into(),
            confidence: saturate(n) * share,
            samples: n,
        });
    }
}

fn policy(inp: &Inputs<'_>, out: &mut Vec<Recommendation>) {
    // Replay the latest run of each workflow with its measured durations
    // under both policies.
    let mut latest: HashMap<&str, &RunSummary> = HashMap::new();
    for r in inp.runs {
        latest.insert(&r.workflow, r);
    }
    let other = match inp.policy {
        SchedulingPolicy::CriticalPath => SchedulingPolicy::Fifo,
        SchedulingPolicy::Fifo => SchedulingPolicy::CriticalPath,
    };
    let (mut now_total, mut other_total, mut steps) = (0u128, 0u128, 0u64);
    // Samples: every measured step of those workflows in the history.
    let samples: u64 = inp
        .runs
        .iter()
        .filter(|r| latest.contains_key(&*r.workflow))
        .map(|r| r.steps.len() as u64)
        .sum();
    for r in latest.values() {
        let Some(wf) = r.wf.upgrade() else { continue };
        let d: Vec<u64> = r.steps.iter().map(|s| s.ran_ns).collect();
        let dag = Dag {
            succ_start: &wf.succ_start,
            succ: &wf.succ,
            pred_count: &wf.pred_count,
        };
        now_total += u128::from(makespan(&dag, &d, r.workers, inp.policy));
        other_total += u128::from(makespan(&dag, &d, r.workers, other));
        steps += d.len() as u64;
    }
    if now_total == 0 || other_total >= now_total {
        return;
    }
    let gain = 1.0 - other_total as f64 / now_total as f64;
    if gain < 0.05 {
        return;
    }
    out.push(Recommendation {
        target: "scheduling".into(),
        action: Action::SetSchedulingPolicy {
            from: inp.policy,
            to: other,
        },
        evidence: format!(
            "replaying the latest run of {} workflow{} ({steps} steps) with measured durations on {} workers: {} under {} vs {} under {}",
            latest.len(),
            if latest.len() == 1 { "" } else { "s" },
            inp.workers,
            humantime::format_duration(Duration::from_micros((now_total / 1000) as u64)),
            inp.policy.name(),
            humantime::format_duration(Duration::from_micros((other_total / 1000) as u64)),
            other.name()
        ),
        expected_gain: format!("{:.0}% shorter makespan", gain * 100.0),
        // A replay of measured durations: the steps measured are the samples.
        confidence: (saturate(samples) * gain / (gain + 0.05)).clamp(0.0, 1.0),
        samples,
    });
}
