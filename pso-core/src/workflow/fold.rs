//! How a settling run folds its steps into the operation series of the
//! metrics (see `RunInner::learn`, which calls these with the operation
//! table's lock held, once per run with timing on and metrics on).
//!
//! Every step in a terminal state is counted by state, with its retries;
//! its run time and queue wait go into the histograms if it ran and it is
//! one of the sampled steps ([`timed_sample_mask`]). Fan-out children are
//! looked up by name (they are dynamic); other steps use the indices the
//! workflow cached on its first recorded run.

use super::run::{
    CANCELLED, CANCELLED_Q, FAILED, RunInner, SKIPPED, SUCCEEDED, TIMED_OUT, TIMED_OUT_Q, split,
};
use crate::metrics::series::OpTable;
use crate::sync::Ordering;

impl RunInner {
    /// Folds fan-out children into their operations' series (looked up by
    /// name: children are dynamic).
    #[cold]
    pub(super) fn fold_children(&self, table: &mut OpTable) {
        let groups = self.groups.lock();
        let clock = &self.env.clock;
        let mut key = String::new();
        for g in groups.iter() {
            for (k, def) in g.defs.iter().enumerate() {
                let (att, st) = split(g.state[k].load(Ordering::Acquire));
                let Some(state) = metric_state(st) else {
                    continue;
                };
                let series = match (&def.system, &def.op) {
                    (Some(s), Some(op)) => {
                        key.clear();
                        key.push_str(s);
                        key.push('.');
                        key.push_str(op);
                        table.index_of(&key, s)
                    }
                    _ => 0,
                };
                let t = &g.times[k];
                let ran = t.ran.load(Ordering::Relaxed);
                let timed = (ran != 0).then(|| {
                    (
                        clock.delta_as_nanos(0, ran),
                        clock.delta_as_nanos(0, t.queued.load(Ordering::Relaxed)),
                    )
                });
                table.record(series, state, att, timed);
            }
        }
    }
}

/// Most steps of one run whose run time and queue wait go into the
/// operation histograms (counts by state are exact).
pub(crate) const TIMED_STEPS_PER_RUN: usize = 1024;

/// Of a run of `n` steps, the steps `i` with `i & mask == 0` have their
/// times recorded: all of them up to [`TIMED_STEPS_PER_RUN`] steps, else
/// one in the power of two that keeps at most that many (recording a
/// histogram value costs about as much as scheduling an empty step).
#[inline]
pub(super) fn timed_sample_mask(n: usize) -> usize {
    n.div_ceil(TIMED_STEPS_PER_RUN).next_power_of_two() - 1
}

/// The metrics index ([`crate::metrics::series::STEP_STATES`]) of a
/// terminal state.
#[inline]
pub(super) fn metric_state(st: u32) -> Option<usize> {
    use crate::metrics::series as m;
    match st {
        SUCCEEDED => Some(m::SUCCEEDED),
        FAILED => Some(m::FAILED),
        CANCELLED | CANCELLED_Q => Some(m::CANCELLED),
        TIMED_OUT | TIMED_OUT_Q => Some(m::TIMED_OUT),
        SKIPPED => Some(m::SKIPPED),
        _ => None,
    }
}
