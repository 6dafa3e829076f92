//! The sequential reference model of `tests/model.rs`: what the registry,
//! lifecycle, allocator, hub matcher, workflow runs and state store must do,
//! computed without threads. Each function states the rule it models.

use std::collections::{BTreeMap, BTreeSet};

use pso_core::{Lease, StepState};

/// A workflow step's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beh {
    Ok,
    Fail,
    Panic,
    /// Sleeps 1 ms: gives a cancel something to hit.
    Slow,
    /// Its condition is false.
    Skip,
}

/// The reference topic matcher: token by token.
pub(crate) fn matches(pattern: &str, topic: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let t: Vec<&str> = topic.split('.').collect();
    for (i, tok) in p.iter().enumerate() {
        if *tok == ">" {
            return t.len() > i;
        }
        match t.get(i) {
            Some(x) if *tok == "*" || tok == x => {}
            _ => return false,
        }
    }
    p.len() == t.len()
}

/// A system in the model.
#[derive(Debug, Clone)]
pub(crate) struct MSys {
    pub(crate) fails: bool,
    pub(crate) state: &'static str,
}

/// The state store's model: key -> (revision, value).
pub(crate) type Kv = BTreeMap<&'static str, (u64, i64)>;

/// The sequential reference model.
#[derive(Default)]
pub(crate) struct Model {
    pub(crate) systems: BTreeMap<u8, MSys>,
    /// `(from, to) -> wants?` for the ordering relations accepted so far.
    pub(crate) edges: BTreeMap<(u8, u8), bool>,
    pub(crate) leases: Vec<(u64, u64, Lease)>,
    pub(crate) kv: Kv,
    pub(crate) revision: u64,
    pub(crate) snapshot: Option<(Kv, u64)>,
}

impl Model {
    pub(crate) fn reaches(&self, from: u8, to: u8) -> bool {
        let mut stack = vec![from];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n) {
                stack.extend(self.edges.keys().filter(|e| e.0 == n).map(|e| e.1));
            }
        }
        false
    }

    pub(crate) fn active(&self, s: u8) -> bool {
        self.systems[&s].state == "Active"
    }

    /// Activation: the closure over requires/wants, stopping at Active
    /// systems; each member in dependency order becomes Active, Failed (its
    /// handler fails), or stays as it was (a `requires` target not Active).
    pub(crate) fn activate(&mut self, target: u8) {
        if self.active(target) {
            return;
        }
        let mut members = BTreeSet::new();
        let mut stack = vec![target];
        while let Some(n) = stack.pop() {
            if self.active(n) || !members.insert(n) {
                continue;
            }
            stack.extend(self.edges.keys().filter(|e| e.0 == n).map(|e| e.1));
        }
        let mut done = BTreeSet::new();
        while done.len() < members.len() {
            let next = *members
                .iter()
                .find(|&&m| {
                    !done.contains(&m)
                        && self
                            .edges
                            .keys()
                            .all(|e| e.0 != m || !members.contains(&e.1) || done.contains(&e.1))
                })
                .expect("acyclic");
            done.insert(next);
            let blocked = self
                .edges
                .iter()
                .any(|(e, wants)| e.0 == next && !wants && !self.active(e.1));
            if blocked {
                continue;
            }
            let s = self.systems.get_mut(&next).unwrap();
            s.state = if s.fails { "Failed" } else { "Active" };
        }
    }

    /// Deactivation: it plus every Active system that transitively requires
    /// it (through Active systems) becomes Inactive.
    pub(crate) fn deactivate(&mut self, target: u8) {
        let mut stack = vec![target];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if !self.active(n) || !seen.insert(n) {
                continue;
            }
            stack.extend(
                self.edges
                    .iter()
                    .filter(|(e, wants)| e.1 == n && !**wants)
                    .map(|(e, _)| e.0),
            );
        }
        for n in seen {
            self.systems.get_mut(&n).unwrap().state = "Inactive";
        }
    }

    pub(crate) fn allocated(&self) -> u64 {
        self.leases.iter().map(|l| l.1).sum()
    }
}

/// Expected terminal state of every step of a run that was not cancelled.
pub(crate) fn expected_states(steps: &[Beh], edges: &[(usize, usize)]) -> Vec<StepState> {
    let mut out: Vec<StepState> = Vec::with_capacity(steps.len());
    for (i, &b) in steps.iter().enumerate() {
        let preds: Vec<StepState> = edges
            .iter()
            .filter(|e| e.1 == i)
            .map(|e| out[e.0])
            .collect();
        let s = if preds
            .iter()
            .any(|p| !matches!(p, StepState::Succeeded | StepState::Skipped))
        {
            StepState::Cancelled
        } else if !preds.is_empty() && preds.iter().all(|p| *p == StepState::Skipped) {
            StepState::Skipped
        } else {
            match b {
                Beh::Ok | Beh::Slow => StepState::Succeeded,
                Beh::Fail | Beh::Panic => StepState::Failed,
                Beh::Skip => StepState::Skipped,
            }
        };
        out.push(s);
    }
    out
}
