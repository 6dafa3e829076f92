//! Accounting a terminal step: releasing its successors (one atomic RMW per
//! edge on their `deps` words) and handing its unit of `outstanding` on — to
//! the one successor it runs inline, or split among several it queues, best
//! first by priority class and critical path. See [`super::run`] for the
//! protocol and its invariants.

use smallvec::SmallVec;

use super::run::{FAILED_BIT, Next, Release, RunInner, SKIP_ONE, exec_step};
use crate::scheduler::Job;
use crate::sync::{AtomicU64, Ordering};

/// Sets "a predecessor did not succeed" on a successor's `deps` word. Done for
/// every successor *before* any of them is released, so it is ordered before
/// the releasing RMW (same atomic, program order) and the thread that sees the
/// count reach zero sees the bit.
#[inline]
pub(super) fn mark_failed(deps: &AtomicU64) {
    deps.fetch_or(FAILED_BIT, Ordering::Relaxed);
}

/// Releases one edge into a successor's `deps` word: one unfinished
/// predecessor less (and, for `Skipped`, one skipped more), in one `AcqRel`
/// RMW. Returns whether this release brought the unfinished count to zero:
/// then the caller, and only it, owns starting the successor, and it has
/// acquired every predecessor's slot write (each was made before that
/// predecessor's own release).
#[inline]
pub(super) fn release_edge(deps: &AtomicU64, kind: Release) -> bool {
    let old = match kind {
        Release::Skipped => deps.fetch_add(SKIP_ONE - 1, Ordering::AcqRel),
        _ => deps.fetch_sub(1, Ordering::AcqRel),
    };
    old as u32 == 1
}

impl RunInner {
    /// Releases the successors of terminal step `i` and hands on its unit.
    pub(super) fn account(&self, i: u32, kind: Release, end: u64, inline: bool) -> Next {
        let wf = &*self.wf;
        let succ = wf.succ_of(i);
        if kind == Release::Failed {
            for &s in succ {
                mark_failed(&self.bufs.deps[s as usize]);
            }
        }
        // Released successors: the first two in locals (the common cases),
        // any further ones in `more`.
        let (mut first, mut second) = (u32::MAX, u32::MAX);
        let mut more: SmallVec<[u32; 8]> = SmallVec::new();
        for &s in succ {
            if release_edge(&self.bufs.deps[s as usize], kind) {
                if first == u32::MAX {
                    first = s;
                } else if second == u32::MAX {
                    second = s;
                } else {
                    more.push(s);
                }
            }
        }
        if first == u32::MAX {
            return if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
                Next::Last
            } else {
                Next::Idle
            };
        }
        if self.timing {
            for s in [first, second]
                .into_iter()
                .filter(|&s| s != u32::MAX)
                .chain(more.iter().copied())
            {
                self.bufs.times[s as usize]
                    .ready
                    .store(end, Ordering::Relaxed);
            }
        }
        if second == u32::MAX {
            // One successor takes over this step's unit.
            return self.dispatch_one(first, inline);
        }
        // Before queueing, so no successor can bring the count to zero early.
        self.outstanding.fetch_add(1 + more.len(), Ordering::AcqRel);
        if more.is_empty() {
            return self.dispatch_two(first, second, inline);
        }
        more.push(first);
        more.push(second);
        match self.dispatch(&mut more, inline) {
            Some(n) => Next::Run(n),
            None => Next::Idle,
        }
    }

    #[inline]
    fn job(&self, s: u32) -> Job {
        // SAFETY: callers pass a step that holds a unit, so the run outlives
        // the job.
        unsafe { Job::raw(exec_step, self as *const RunInner as *const (), s) }
    }

    /// Runs the single released successor `s` inline if allowed (and nothing
    /// of a higher class waits here), else queues it.
    #[inline]
    fn dispatch_one(&self, s: u32, inline: bool) -> Next {
        let class = self.wf.steps[s as usize].class as usize;
        match self.env.pool.worker() {
            Some(w) if inline && class <= w.best_class() => Next::Run(s),
            Some(w) => {
                w.push(self.job(s), class);
                w.wake(1);
                Next::Idle
            }
            None => {
                self.env.pool.spawn(self.job(s), class);
                Next::Idle
            }
        }
    }

    /// Two released successors: the better one inline (if allowed), the
    /// other queued.
    fn dispatch_two(&self, a: u32, b: u32, inline: bool) -> Next {
        let wf = &*self.wf;
        let (best, other) = if self.plan.key(wf, b) < self.plan.key(wf, a) {
            (b, a)
        } else {
            (a, b)
        };
        let class = |s: u32| wf.steps[s as usize].class as usize;
        match self.env.pool.worker() {
            Some(w) if inline && class(best) <= w.best_class() => {
                w.push(self.job(other), class(other));
                w.wake(1);
                Next::Run(best)
            }
            Some(w) => {
                w.push(self.job(other), class(other));
                w.push(self.job(best), class(best));
                w.wake(2);
                Next::Idle
            }
            None => {
                self.env.pool.spawn_batch([
                    (self.job(best), class(best)),
                    (self.job(other), class(other)),
                ]);
                Next::Idle
            }
        }
    }

    /// Queues ready steps best first; returns one to run inline if allowed.
    fn dispatch(&self, ready: &mut SmallVec<[u32; 8]>, inline: bool) -> Option<u32> {
        let wf = &*self.wf;
        ready.sort_unstable_by_key(|&s| self.plan.key(wf, s));
        let class = |s: u32| wf.steps[s as usize].class as usize;
        match self.env.pool.worker() {
            Some(w) => {
                let keep = (inline && class(ready[0]) <= w.best_class()).then(|| ready[0]);
                let rest = if keep.is_some() {
                    &ready[1..]
                } else {
                    &ready[..]
                };
                // Local LIFO deques: push the best last.
                for &s in rest.iter().rev() {
                    w.push(self.job(s), class(s));
                }
                if !rest.is_empty() {
                    w.wake(rest.len());
                }
                keep
            }
            None => {
                self.env
                    .pool
                    .spawn_batch(ready.iter().map(|&s| (self.job(s), class(s))));
                None
            }
        }
    }
}
