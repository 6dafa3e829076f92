//! Dynamic fan-out: a step emits children that run in parallel; it finishes
//! (and releases its successors) when the last child is done.
//!
//! The parent sits in `FANNED` holding its unit of `outstanding`; each child
//! holds one more. Child jobs are boxed closures holding a strong reference
//! to the run. The last child to finish builds the parent's output (the list
//! of child outputs) or error, moves the parent to its terminal state and
//! accounts it, then gives back its own unit.

use super::buffers::{Slot, SlotCell, StepTimes};
use super::context::{Child, StepContext};
use super::run::{
    CANCELLED, CANCELLED_Q, FAILED, FANNED, NO_WORKER, PENDING, RUNNING, RunInner, STOP_DEADLINE,
    STOP_NONE, SUCCEEDED, TIMED_OUT, TIMED_OUT_Q, release_of, split, word,
};
use crate::model::HandlerError;
use crate::scheduler::Job;
use crate::sync::{Arc, AtomicU32, AtomicUsize, Ordering};
use crate::unwind;
use crate::value::Value;

/// Children of one fan-out step.
pub(crate) struct ChildGroup {
    pub(crate) parent: u32,
    pub(crate) attempt: u32,
    pub(crate) defs: Vec<Child>,
    pub(crate) state: Box<[AtomicU32]>,
    pub(crate) slots: Box<[SlotCell]>,
    pub(crate) times: Box<[StepTimes]>,
    left: AtomicUsize,
}

impl ChildGroup {
    pub(super) fn cas(&self, k: u32, att: u32, from: u32, to: u32) -> bool {
        self.state[k as usize]
            .compare_exchange(
                word(att, from),
                word(att, to),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The slot of a terminal child, once the run is done.
    pub(crate) fn slot(&self, k: usize) -> &Slot {
        // SAFETY: results are only built for finished runs, and every child
        // slot is written before its accounting, which happens before `done`.
        unsafe { self.slots[k].get() }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        for (k, s) in self.slots.iter().enumerate() {
            if split(self.state[k].load(Ordering::Acquire)).1 >= SUCCEEDED {
                // SAFETY: a terminal child's slot was written, and `&mut self`
                // means nothing else references it.
                unsafe { s.drop_value() };
            }
        }
    }
}

impl RunInner {
    /// Emits the children of step `i` (now `FANNED`).
    pub(super) fn fan_out(&self, i: u32, att: u32, children: Vec<Child>, now: u64) {
        let n = children.len();
        self.accepted.fetch_add(n, Ordering::Relaxed);
        self.outstanding.fetch_add(n, Ordering::AcqRel);
        let group = Arc::new(ChildGroup {
            parent: i,
            attempt: att,
            state: (0..n).map(|_| AtomicU32::new(word(1, PENDING))).collect(),
            slots: (0..n).map(|_| SlotCell::uninit()).collect(),
            times: (0..n)
                .map(|_| StepTimes {
                    ready: now.into(),
                    ..StepTimes::default()
                })
                .collect(),
            defs: children,
            left: AtomicUsize::new(n),
        });
        self.groups.lock().push(group.clone());
        let class = self.wf.steps[i as usize].class as usize;
        let run = self.arc();
        self.env.pool.spawn_batch((0..n as u32).map(|k| {
            let (run, group) = (run.clone(), group.clone());
            (Job::boxed(move || run.run_child(&group, k)), class)
        }));
    }

    fn run_child(self: &Arc<Self>, g: &Arc<ChildGroup>, k: u32) {
        let ku = k as usize;
        let (att, st) = split(g.state[ku].load(Ordering::Acquire));
        let stop = self.stop.load(Ordering::Acquire);
        let early = match st {
            CANCELLED_Q => Some((CANCELLED_Q, CANCELLED)),
            TIMED_OUT_Q => Some((TIMED_OUT_Q, TIMED_OUT)),
            PENDING if stop == STOP_DEADLINE => Some((PENDING, TIMED_OUT)),
            PENDING if stop != STOP_NONE => Some((PENDING, CANCELLED)),
            PENDING => None,
            _ => return,
        };
        if let Some((from, to)) = early {
            // Never started: the terminal word records 0 attempts.
            let moved = g.state[ku]
                .compare_exchange(
                    word(att, from),
                    word(att - 1, to),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
            if moved {
                // SAFETY: we won the child's terminal transition.
                unsafe { g.slots[ku].write(Slot::unrun(None)) };
                self.child_done(g);
            } else {
                self.run_child(g, k);
            }
            return;
        }
        if !g.cas(k, att, PENDING, RUNNING) {
            self.run_child(g, k);
            return;
        }
        let def = &g.defs[ku];
        let start = self.raw_now();
        let ctx = StepContext::new(self, g.parent, att, Some((g, k)));
        let result = unwind::run_handler(|| (def.f)(&ctx));
        drop(ctx);
        let end = self.raw_now();
        let (to, output, error) = match result {
            Ok(v) => (SUCCEEDED, v, None),
            Err(e) => (FAILED, Value::Null, Some(Box::new(e))),
        };
        if !g.cas(k, att, RUNNING, to) {
            return; // abandoned by the deadline
        }
        if self.timing {
            let t = &g.times[ku];
            t.queued.store(
                start.saturating_sub(t.ready.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            t.ran
                .store(end.saturating_sub(start).max(1), Ordering::Relaxed);
            let worker = self
                .env
                .pool
                .current_worker()
                .map_or(NO_WORKER, |w| w as u32);
            t.worker.store(worker.wrapping_add(1), Ordering::Relaxed);
        }
        let slot = Slot { output, error };
        // SAFETY: we won the child's terminal transition.
        unsafe { g.slots[ku].write(slot) };
        self.child_done(g);
    }

    /// Counts a child done; the last one completes the parent. Returns true if
    /// that finished the run.
    pub(super) fn child_done(self: &Arc<Self>, g: &Arc<ChildGroup>) -> bool {
        if g.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish_group(g);
        }
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish_arc();
            return true;
        }
        false
    }

    fn finish_group(self: &Arc<Self>, g: &Arc<ChildGroup>) {
        let i = g.parent;
        let name = self.wf.name_of(i);
        let mut outputs = Vec::with_capacity(g.defs.len());
        let mut failed = 0usize;
        let mut first_error: Option<String> = None;
        for k in 0..g.defs.len() {
            let st = split(g.state[k].load(Ordering::Acquire)).1;
            // SAFETY: every child is terminal and accounted (`left` reached 0
            // with AcqRel), so nobody else touches these slots now.
            let slot = unsafe { g.slots[k].get_mut() };
            if st == SUCCEEDED {
                outputs.push(std::mem::take(&mut slot.output));
            } else {
                failed += 1;
                outputs.push(Value::Null);
                if first_error.is_none() {
                    first_error = Some(match &slot.error {
                        Some(e) => format!("{name}[{k}]: {e}"),
                        None => format!("{name}[{k}] was {}", super::result::state_name(st)),
                    });
                }
            }
        }
        let to = if failed == 0 { SUCCEEDED } else { FAILED };
        if !self.cas(i, g.attempt, FANNED, to) {
            return; // abandoned by the deadline and accounted there
        }
        let slot = if failed == 0 {
            Slot {
                output: Value::List(outputs),
                error: None,
            }
        } else {
            let e = HandlerError::failed(format!(
                "{failed} of {} children failed; first: {}",
                g.defs.len(),
                first_error.unwrap_or_default()
            ));
            Slot::unrun(Some(e))
        };
        // SAFETY: we won the parent's terminal transition.
        unsafe { self.write_slot(i, slot) };
        // The calling child still holds its unit, so this is never the last.
        let finished = self.account_held(i, release_of(to));
        debug_assert!(!finished);
    }

    /// The most recent child group of `step`.
    pub(crate) fn group_of(&self, step: u32) -> Option<Arc<ChildGroup>> {
        self.groups
            .lock()
            .iter()
            .rev()
            .find(|g| g.parent == step)
            .cloned()
    }

    /// Child groups, for results.
    pub(crate) fn child_groups(&self) -> Vec<Arc<ChildGroup>> {
        self.groups.lock().clone()
    }
}
