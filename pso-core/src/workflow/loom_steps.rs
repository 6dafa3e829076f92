//! loom model of step claim / complete vs cancel, the run deadline and a
//! retry (see [`super::run`], "Step states", and [`super::control`]).
//!
//! The stopper is the real [`stop_word`]. The worker mirrors the CAS
//! sequence of `RunInner::step` (claim `PENDING -> RUNNING`, or resolve the
//! `_Q` state it finds, which its job still owns), `resolve` (the terminal
//! word records `att - 1`) and `run_claimed`'s finish (a CAS when the step is
//! guarded — every step of a run with a deadline — a plain store otherwise);
//! the retry timer mirrors `RunInner::retry`.
//!
//! Invariants, in every interleaving: the step is accounted exactly once; it
//! ends terminal, never `_Q`; its handler ran at most once per attempt; under
//! a cancel, a handler that ran makes it Succeeded and one that did not makes
//! it Cancelled; under a deadline it is Succeeded only if its handler ran and
//! finished first, else TimedOut.

use super::control::{Stopped, stop_word};
use super::run::{
    CANCELLED, CANCELLED_Q, PENDING, RETRY_WAIT, RUNNING, SUCCEEDED, TIMED_OUT, TIMED_OUT_Q, split,
    word,
};
use crate::sync::{Arc, AtomicU32, AtomicUsize, Ordering, thread};

#[derive(Default)]
struct Step {
    state: AtomicU32,
    accounted: AtomicUsize,
    ran: AtomicUsize,
}

impl Step {
    fn new(w: u32) -> Arc<Step> {
        let s = Step::default();
        s.state.store(w, Ordering::Relaxed);
        Arc::new(s)
    }

    fn account(&self) {
        self.accounted.fetch_add(1, Ordering::Relaxed);
    }

    fn cas(&self, from: u32, to: u32) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The step's queued job for attempt `att`.
    fn job(&self, att: u32, guarded: bool) {
        if self.cas(word(att, PENDING), word(att, RUNNING)) {
            self.ran.fetch_add(1, Ordering::Relaxed);
            let finished = if guarded {
                self.cas(word(att, RUNNING), word(att, SUCCEEDED))
            } else {
                self.state.store(word(att, SUCCEEDED), Ordering::Release);
                true
            };
            if finished {
                self.account();
            } // else: abandoned by the deadline, which accounted it
            return;
        }
        // Stopped while queued: this job still owns the bookkeeping.
        let (a, st) = split(self.state.load(Ordering::Acquire));
        let to = match st {
            CANCELLED_Q => CANCELLED,
            TIMED_OUT_Q => TIMED_OUT,
            other => panic!("a job for attempt {att} found state {other}"),
        };
        assert!(
            self.cas(word(a, st), word(a - 1, to)),
            "only the holder resolves a _Q state"
        );
        self.account();
    }

    fn stop(&self, deadline: bool) {
        match stop_word(&self.state, deadline) {
            Stopped::Terminal => self.account(),
            Stopped::Untouched | Stopped::Queued => {}
        }
    }

    fn final_state(&self) -> u32 {
        split(self.state.load(Ordering::Acquire)).1
    }
}

fn claim_vs_stop(deadline: bool) {
    loom::model(move || {
        let s = Step::new(word(1, PENDING));
        let s2 = s.clone();
        let stopper = thread::spawn(move || s2.stop(deadline));
        s.job(1, deadline);
        stopper.join().unwrap();
        assert_eq!(s.accounted.load(Ordering::Relaxed), 1, "accounted once");
        let ran = s.ran.load(Ordering::Relaxed);
        assert!(ran <= 1);
        let st = s.final_state();
        match (deadline, ran) {
            (false, 1) => assert_eq!(st, SUCCEEDED),
            (false, _) => assert_eq!(st, CANCELLED),
            (true, 1) => assert!(st == SUCCEEDED || st == TIMED_OUT, "state {st}"),
            (true, _) => assert_eq!(st, TIMED_OUT),
        }
    });
}

#[test]
fn loom_claim_and_complete_vs_cancel() {
    claim_vs_stop(false);
}

#[test]
fn loom_claim_and_complete_vs_deadline() {
    claim_vs_stop(true);
}

#[test]
fn loom_retry_vs_cancel() {
    loom::model(|| {
        // Attempt 1 failed with retries left; the timer fires while the run
        // is cancelled.
        let s = Step::new(word(1, RETRY_WAIT));
        let s2 = s.clone();
        let stopper = thread::spawn(move || s2.stop(false));
        if s.cas(word(1, RETRY_WAIT), word(2, PENDING)) {
            s.job(2, false);
        }
        stopper.join().unwrap();
        assert_eq!(s.accounted.load(Ordering::Relaxed), 1, "accounted once");
        let st = s.final_state();
        match s.ran.load(Ordering::Relaxed) {
            0 => assert_eq!(st, CANCELLED),
            1 => assert_eq!(st, SUCCEEDED),
            n => panic!("attempt 2 ran {n} times"),
        }
    });
}
