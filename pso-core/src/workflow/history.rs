//! Recent runs, kept for `coordination_insights` and
//! `optimization_recommendations`: per run its workflow, makespan, policy,
//! and per step its state, queue wait and run time (runs with timing on
//! only). Bounded twice: at most [`RUNS`] runs and [`STEPS`] step samples in
//! all (the oldest runs go first), so a huge run cannot pin much memory.
//! Workflows are held weakly (see [`RunSummary`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Weak;
use std::time::Duration;

use super::WorkflowInner;
use super::run::RunInner;
use crate::sync::{Arc, Mutex, Ordering};

/// Runs kept.
pub(crate) const RUNS: usize = 256;
/// Step samples kept across all kept runs.
pub(crate) const STEPS: usize = 1 << 20;

/// One step of a recorded run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepSample {
    pub(crate) state: u32,
    pub(crate) queued_ns: u64,
    pub(crate) ran_ns: u64,
}

/// One recorded run. It holds its workflow weakly: a dropped workflow
/// releases its functions (host callbacks) at once, and its runs drop out
/// of the insights.
#[derive(Clone)]
pub(crate) struct RunSummary {
    pub(crate) wf: Weak<WorkflowInner>,
    pub(crate) workflow: std::sync::Arc<str>,
    pub(crate) makespan: Duration,
    pub(crate) workers: usize,
    pub(crate) steps: Arc<[StepSample]>,
}

impl std::fmt::Debug for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSummary")
            .field("workflow", &self.workflow)
            .field("makespan", &self.makespan)
            .field("steps", &self.steps.len())
            .finish()
    }
}

/// Systems used together: per pair (names in order) and per system, how
/// many runs or activation calls involved them.
#[derive(Debug, Default, Clone)]
pub(crate) struct CoUsage {
    pub(crate) pairs: HashMap<(Arc<str>, Arc<str>), u64>,
    pub(crate) single: HashMap<Arc<str>, u64>,
}

/// At most this many systems of one run or call are paired (k² pairs).
pub(crate) const CO_USAGE_SYSTEMS: usize = 64;

impl CoUsage {
    /// Counts one occasion that involved `systems`.
    pub(crate) fn add<'a>(&mut self, systems: impl IntoIterator<Item = &'a Arc<str>>) {
        let mut v: Vec<&Arc<str>> = systems.into_iter().take(CO_USAGE_SYSTEMS).collect();
        v.sort();
        v.dedup();
        for (k, a) in v.iter().enumerate() {
            *self.single.entry((*a).clone()).or_default() += 1;
            for b in &v[k + 1..] {
                *self.pairs.entry(((*a).clone(), (*b).clone())).or_default() += 1;
            }
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct History {
    runs: Mutex<(VecDeque<RunSummary>, usize)>,
    pub(crate) co_usage: Mutex<CoUsage>,
}

impl History {
    /// Records a finished run (called from `settle`, timing on).
    pub(crate) fn record(&self, run: &RunInner) {
        let n = run.wf.steps.len();
        if n > STEPS {
            return;
        }
        let steps: Arc<[StepSample]> = (0..n as u32)
            .map(|i| {
                let t = &run.bufs.times[i as usize];
                StepSample {
                    state: run.step_state(i),
                    queued_ns: run
                        .env
                        .clock
                        .delta_as_nanos(0, t.queued.load(Ordering::Relaxed)),
                    ran_ns: run
                        .env
                        .clock
                        .delta_as_nanos(0, t.ran.load(Ordering::Relaxed)),
                }
            })
            .collect();
        let summary = RunSummary {
            wf: Arc::downgrade(&run.wf),
            workflow: run.wf.name.clone(),
            makespan: Duration::from_nanos(run.elapsed_ns.load(Ordering::Relaxed)),
            workers: run.env.pool.size(),
            steps,
        };
        if run.wf.systems.len() > 1 {
            self.co_usage
                .lock()
                .add(run.wf.systems.iter().map(|s| &s.name));
        }
        let mut g = self.runs.lock();
        let (runs, total) = &mut *g;
        *total += n;
        runs.push_back(summary);
        while runs.len() > RUNS || *total > STEPS {
            let old = runs.pop_front().expect("over a bound, so not empty");
            *total -= old.steps.len();
        }
    }

    /// The recorded runs, oldest first.
    pub(crate) fn runs(&self) -> Vec<RunSummary> {
        self.runs.lock().0.iter().cloned().collect()
    }
}
