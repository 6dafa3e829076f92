//! Stopping and delaying steps: `cancel()`, closing, the run deadline, step
//! timeouts and retry back-off. All of these run on threads that hold a
//! strong reference to the run (a handle, the timer), never through a raw
//! job pointer.
//!
//! * Cancel/close: unstarted steps are marked `CANCELLED_Q` (their holder
//!   finishes the bookkeeping), waiting retries are cancelled and accounted
//!   here, running steps are only told (`StepContext::is_cancelled`).
//! * Deadline: like cancel with `TIMED_OUT_Q`, and running steps are
//!   abandoned — moved to `TimedOut` and accounted here; their workers hold a
//!   guard (every step of a run with a deadline does), and their late result
//!   fails its CAS.
//! * Step timeout: the timer abandons one attempt the same way.
//! * Retry: the timer moves `RETRY_WAIT` to `PENDING` with the next attempt
//!   number and queues the step again.

use std::time::{Duration, Instant};

use super::buffers::Slot;
use super::fanout::ChildGroup;
use super::run::{
    CANCELLED, CANCELLED_Q, CHILD_HOOK, CancelHook, FANNED, Next, PENDING, RETRY_WAIT, RUNNING,
    Release, RunInner, STOP_CLOSE, STOP_DEADLINE, STOP_NONE, TIMED_OUT, TIMED_OUT_Q, exec_step,
    split, word,
};
use crate::model::HandlerError;
use crate::scheduler::{Job, TimerId};
use crate::sync::{Arc, AtomicU32, Ordering};

/// What [`stop_word`] did to a step's state word.
#[must_use]
pub(super) enum Stopped {
    /// Nothing: the step is terminal, already `_Q`, or running under a
    /// cancel (a running step is only told, see `StepContext::is_cancelled`).
    Untouched,
    /// `PENDING -> CANCELLED_Q | TIMED_OUT_Q`: whoever holds the step (its
    /// queued job, or the slot queue it waits in) resolves and accounts it.
    Queued,
    /// `RETRY_WAIT -> CANCELLED | TIMED_OUT`, or on a deadline
    /// `RUNNING | FANNED -> TIMED_OUT`: the caller won the terminal transition
    /// and owns the step's bookkeeping (a late result fails its CAS).
    Terminal,
}

/// The stopper's side of the step-state protocol (see [`super::run`]): one
/// CAS loop on a step's state word, for a cancel or (`deadline`) the run
/// deadline.
pub(super) fn stop_word(state: &AtomicU32, deadline: bool) -> Stopped {
    let (queued, terminal) = if deadline {
        (TIMED_OUT_Q, TIMED_OUT)
    } else {
        (CANCELLED_Q, CANCELLED)
    };
    loop {
        let (att, st) = split(state.load(Ordering::Acquire));
        let (to, account) = match st {
            PENDING => (queued, false),
            RETRY_WAIT => (terminal, true),
            RUNNING | FANNED if deadline => (TIMED_OUT, true),
            _ => return Stopped::Untouched,
        };
        if state
            .compare_exchange(
                word(att, st),
                word(att, to),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            return if account {
                Stopped::Terminal
            } else {
                Stopped::Queued
            };
        }
    }
}

impl RunInner {
    /// Stops the run: `cancel()`, close, or the deadline. Returns whether this
    /// call stopped it.
    pub(crate) fn stop_all(self: &Arc<Self>, kind: u8) -> bool {
        if self.done.load(Ordering::Acquire)
            || self
                .stop
                .compare_exchange(STOP_NONE, kind, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        // Parked steps waiting for a lease are queued again to resolve.
        self.withdraw_lease_waits();
        self.fire_hooks(None);
        for i in 0..self.wf.steps.len() as u32 {
            if self.stop_step(i, kind) {
                return true;
            }
        }
        for g in self.child_groups() {
            for k in 0..g.defs.len() as u32 {
                if self.stop_child(&g, k, kind) {
                    return true;
                }
            }
        }
        true
    }

    /// Stops one step; returns true if that finished the run.
    pub(super) fn stop_step(self: &Arc<Self>, i: u32, kind: u8) -> bool {
        let deadline = kind == STOP_DEADLINE;
        match stop_word(&self.bufs.state[i as usize], deadline) {
            Stopped::Untouched | Stopped::Queued => false,
            Stopped::Terminal => {
                let error = deadline.then(|| HandlerError::failed("run deadline passed"));
                // SAFETY: we won the terminal transition just now.
                unsafe { self.write_slot(i, Slot::unrun(error)) };
                self.account_held(i, Release::Failed)
            }
        }
    }

    fn stop_child(self: &Arc<Self>, g: &Arc<ChildGroup>, k: u32, kind: u8) -> bool {
        let deadline = kind == STOP_DEADLINE;
        loop {
            let (att, st) = split(g.state[k as usize].load(Ordering::Acquire));
            let to = match st {
                PENDING if deadline => TIMED_OUT_Q,
                PENDING => CANCELLED_Q,
                RUNNING if deadline => TIMED_OUT,
                _ => return false,
            };
            if !g.cas(k, att, st, to) {
                continue;
            }
            if to != TIMED_OUT {
                return false; // the child's job resolves it
            }
            // SAFETY: we won the child's terminal transition.
            unsafe {
                g.slots[k as usize].write(Slot::unrun(Some(HandlerError::failed(
                    "run deadline passed",
                ))))
            };
            return self.child_done(g);
        }
    }

    /// Accounts step `i` from a thread holding a strong reference (no inline
    /// continuation); returns true if that finished the run.
    pub(super) fn account_held(self: &Arc<Self>, i: u32, kind: Release) -> bool {
        match self.account(i, kind, self.raw_now(), false) {
            Next::Last => {
                self.finish_arc();
                true
            }
            Next::Idle | Next::Run(_) => false,
        }
    }

    /// Arms the timeout of attempt `att` of step `i`.
    pub(super) fn schedule_timeout(&self, i: u32, att: u32, ns: u64) -> Option<TimerId> {
        let r = self.arc();
        let at = Instant::now() + Duration::from_nanos(ns);
        self.env
            .timer
            .schedule(at, move || r.on_step_timeout(i, att))
    }

    /// Timer callback: attempt `att` of step `i` overran its timeout.
    fn on_step_timeout(self: &Arc<Self>, i: u32, att: u32) {
        if !self.cas(i, att, RUNNING, TIMED_OUT) {
            return;
        }
        let after = Duration::from_nanos(self.wf.meta_of(i).map_or(0, |m| m.timeout_ns));
        // SAFETY: we won the terminal transition just now.
        unsafe { self.write_slot(i, Slot::unrun(Some(HandlerError::TimedOut { after }))) };
        self.fire_hooks(Some(i));
        self.account_held(i, Release::Failed);
    }

    /// Runs `f` once when attempt `attempt` of step `i` is told to stop (or
    /// now, if it already was); `attempt` [`CHILD_HOOK`] waits for the run to
    /// stop. Dropped unrun when the attempt ends first.
    pub(crate) fn on_cancel(&self, i: u32, attempt: u32, f: CancelHook) {
        let mut hooks = self.hooks.lock();
        // Checked under the lock: a stop either happened before (run it now)
        // or drains after this push.
        let abandoned = if attempt == CHILD_HOOK {
            self.stop.load(Ordering::Acquire) != STOP_NONE
        } else {
            self.step_abandoned(i, attempt, None)
        };
        if abandoned {
            drop(hooks);
            let _ = crate::unwind::catch(f);
            return;
        }
        self.hooked.store(true, Ordering::Release);
        hooks.push((i, attempt, f));
    }

    /// Runs the hooks of step `i` (or of every step), outside the lock.
    fn fire_hooks(&self, step: Option<u32>) {
        if !self.hooked.load(Ordering::Acquire) {
            return;
        }
        let fired: Vec<CancelHook> = {
            let mut hooks = self.hooks.lock();
            let (fire, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *hooks)
                .into_iter()
                .partition(|h| step.is_none_or(|s| h.0 == s && h.1 != CHILD_HOOK));
            *hooks = keep;
            fire.into_iter().map(|h| h.2).collect()
        };
        for f in fired {
            let _ = crate::unwind::catch(f);
        }
    }

    /// Drops the hooks of step `i`'s ended attempt.
    pub(super) fn drop_hooks(&self, i: u32) {
        if !self.hooked.load(Ordering::Acquire) {
            return;
        }
        let dropped: Vec<_> = {
            let mut hooks = self.hooks.lock();
            let (drop, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *hooks)
                .into_iter()
                .partition(|h| h.0 == i && h.1 != CHILD_HOOK);
            *hooks = keep;
            drop
        };
        drop(dropped);
    }

    /// Queues the retry of step `i` (now `RETRY_WAIT` after attempt `att`).
    pub(super) fn schedule_retry(&self, i: u32, att: u32, delay: Duration) {
        let run = self.arc();
        if self
            .env
            .timer
            .schedule(Instant::now() + delay, move || run.retry(i, att))
            .is_none()
        {
            // The timer is shut down: the orchestrator is closing.
            let _ = self.arc().stop_step(i, STOP_CLOSE);
        }
    }

    /// Timer callback: retry step `i` after failed attempt `att`.
    fn retry(self: &Arc<Self>, i: u32, att: u32) {
        let moved = self.bufs.state[i as usize]
            .compare_exchange(
                word(att, RETRY_WAIT),
                word(att + 1, PENDING),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if !moved {
            return; // cancelled or timed out meanwhile (and accounted)
        }
        if self.timing {
            self.bufs.times[i as usize]
                .ready
                .store(self.env.clock.raw(), Ordering::Relaxed);
        }
        // SAFETY: step `i` still holds its unit.
        let job = unsafe { Job::raw(exec_step, Arc::as_ptr(self) as *const (), i) };
        self.env
            .pool
            .spawn(job, self.wf.steps[i as usize].class as usize);
    }

    /// Whether a step's handler should stop (see `StepContext::is_cancelled`).
    pub(crate) fn step_abandoned(
        &self,
        step: u32,
        attempt: u32,
        child: Option<(&ChildGroup, u32)>,
    ) -> bool {
        if self.stop.load(Ordering::Acquire) != STOP_NONE {
            return true;
        }
        match child {
            // Pending: a condition being evaluated before the step runs.
            None => {
                let w = self.state_word(step);
                w != word(attempt, RUNNING) && w != word(attempt, PENDING)
            }
            Some((g, k)) => split(g.state[k as usize].load(Ordering::Acquire)).1 != RUNNING,
        }
    }
}
