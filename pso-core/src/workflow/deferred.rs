//! Deferred step results: a step function that cannot answer before it
//! returns — its work continues on another thread, an event loop, or a host
//! runtime's future — calls [`StepContext::defer`], returns, and later hands
//! the result to the [`Completion`] from any thread. Meanwhile the step is
//! Running but holds no worker; it keeps its concurrency slot and lease, its
//! timeout and the run's deadline still apply, and cancellation is visible
//! through [`Completion::is_cancelled`].
//!
//! # Protocol
//! The function and the completion race: the completion may be used before
//! the function has returned. One atomic word decides who finishes the
//! attempt:
//!
//! ```text
//! PENDING --function returned Ok--> OWNED     (the completion finishes it)
//! PENDING --complete() first------> EARLY     (the function's return finishes
//!                                              it, with the stored result)
//! PENDING --function failed/fanned out--> VOID (the function's return wins;
//!                                              the completion does nothing)
//! OWNED   --complete() or drop----> DONE
//! ```
//!
//! Exactly one party finishes the attempt (gives back slot and lease,
//! cancels the timer, moves the step, accounts it). A completion dropped
//! without a result fails the attempt, so a step can never be left Running.

use std::fmt;

use super::context::StepContext;
use super::run::{Next, RUNNING, RunInner, split, word};
use crate::model::HandlerError;
use crate::scheduler::TimerId;
use crate::sync::{Arc, AtomicU8, Mutex, Ordering};
use crate::value::Value;

const PENDING: u8 = 0;
const OWNED: u8 = 1;
const EARLY: u8 = 2;
const VOID: u8 = 3;
const DONE: u8 = 4;

/// What the claiming thread holds for a running attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    /// The system's concurrency slot.
    pub(crate) held: bool,
    /// Raw clock at start.
    pub(crate) start: u64,
    /// The step timeout's timer.
    pub(crate) timeout: Option<TimerId>,
}

/// Shared between a [`Completion`] and the attempt's claiming thread.
pub(crate) struct Deferral {
    state: AtomicU8,
    early: Mutex<Option<Result<Value, HandlerError>>>,
}

/// What the claiming thread does once the function returned.
pub(crate) enum AfterReturn {
    /// The completion finishes the attempt.
    Owned,
    /// Finish it now with this result.
    Finish(Result<Value, HandlerError>),
}

impl Deferral {
    /// Decides, when the function returns, who finishes the attempt.
    pub(crate) fn after_return(
        &self,
        result: Result<Value, HandlerError>,
        children: &mut Vec<super::Child>,
    ) -> AfterReturn {
        let result = match result {
            Ok(_) if !children.is_empty() => {
                children.clear();
                Err(HandlerError::failed(
                    "a step cannot both defer its result and fan out",
                ))
            }
            r => r,
        };
        if result.is_ok()
            && self
                .state
                .compare_exchange(PENDING, OWNED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return AfterReturn::Owned;
        }
        let was = self.state.swap(VOID, Ordering::AcqRel);
        match (was, result) {
            // Completed before the function returned Ok: use that result.
            (EARLY, Ok(_)) => AfterReturn::Finish(
                self.early
                    .lock()
                    .take()
                    .expect("an early completion stores its result"),
            ),
            // The function failed after deferring: its error wins.
            (_, r) => AfterReturn::Finish(r),
        }
    }
}

/// Finishes a step whose function deferred its result. See the module docs.
///
/// Dropping it without calling [`Completion::complete`] fails the step.
pub struct Completion {
    run: Arc<RunInner>,
    step: u32,
    attempt: u32,
    claim: Claim,
    deferral: Arc<Deferral>,
    used: bool,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("step", &self.run.wf.name_of(self.step))
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Completion {
    /// Ends the step's attempt with `result` (an error may be retried, as if
    /// the function had returned it). Returns false if the result was
    /// ignored: the step had already ended (timed out, the run's deadline
    /// passed) or its function failed after deferring.
    pub fn complete(mut self, result: Result<Value, HandlerError>) -> bool {
        self.used = true;
        self.finish(result)
    }

    /// Whether the step should stop (the run was cancelled or timed out, or
    /// the step's timeout passed); its result may then be ignored.
    pub fn is_cancelled(&self) -> bool {
        self.run.step_abandoned(self.step, self.attempt, None)
    }

    /// Runs `f` once when the step is told to stop (see
    /// [`crate::CancelToken::on_cancel`]); dropped unrun if the step ends first.
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) {
        self.run.on_cancel(self.step, self.attempt, Box::new(f));
    }

    /// The step's name.
    pub fn step_name(&self) -> String {
        self.run.wf.name_of(self.step).into_owned()
    }

    /// The attempt (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn finish(&mut self, result: Result<Value, HandlerError>) -> bool {
        let d = &self.deferral;
        let mut early = d.early.lock();
        if d.state.load(Ordering::Acquire) == PENDING {
            // The function has not returned yet: leave the result for it.
            *early = Some(result);
            if d.state
                .compare_exchange(PENDING, EARLY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
            // It returned meanwhile (OWNED or VOID).
            let result = early.take().expect("just stored");
            drop(early);
            return self.finish_owned(result);
        }
        drop(early);
        self.finish_owned(result)
    }

    fn finish_owned(&self, result: Result<Value, HandlerError>) -> bool {
        if self
            .deferral
            .state
            .compare_exchange(OWNED, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false; // VOID: the function's own failure ended the attempt
        }
        let still_running =
            split(self.run.state_word(self.step)) == split(word(self.attempt, RUNNING));
        // Guarded: a timeout or the deadline may have ended the step already.
        let next = self.run.finish_attempt(
            self.step,
            self.attempt,
            self.claim,
            result,
            Vec::new(),
            true,
            false,
        );
        if let Next::Last = next {
            self.run.finish_arc();
        }
        still_running
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.used {
            self.used = true;
            let _ = self.finish(Err(HandlerError::failed(
                "the step's completion was dropped without a result",
            )));
        }
    }
}

impl StepContext<'_> {
    /// Defers the step's result: return from the function (its `Ok` value is
    /// ignored) and end the step later, from any thread, with
    /// [`Completion::complete`]. Until then the step is Running but holds no
    /// worker.
    ///
    /// # Errors
    /// In a condition, a fan-out child, or a second time in one attempt.
    pub fn defer(&self) -> Result<Completion, HandlerError> {
        let Some(claim) = self.claim else {
            return Err(HandlerError::failed(
                "only a step's own function can defer its result (not a condition or a fan-out child)",
            ));
        };
        let mut slot = self.deferral.borrow_mut();
        if slot.is_some() {
            return Err(HandlerError::failed("the step already deferred its result"));
        }
        let deferral = Arc::new(Deferral {
            state: AtomicU8::new(PENDING),
            early: Mutex::new(None),
        });
        *slot = Some(deferral.clone());
        Ok(Completion {
            run: self.run.arc(),
            step: self.step,
            attempt: self.attempt,
            claim: *claim,
            deferral,
            used: false,
        })
    }
}
