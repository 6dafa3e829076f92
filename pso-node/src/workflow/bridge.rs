//! The transport between pso-core's worker threads and the JS thread, and
//! the worker side of a JS step (pso-core calls step functions, `when`
//! conditions and operations on a worker and expects the result as the
//! return value).
//!
//! A worker blocks until the JS thread has an answer. A thread-safe-function
//! call per step would cost far more than most steps, so calls are batched:
//!
//! ```text
//! worker:     push Job onto Shared::queue --(armed was false)--> one tsfn call
//!             wait on its Reply (spin briefly, then park with a timeout)
//! JS thread:  drain(): take the whole queue, run every job, repeat until the
//!             queue is empty, then disarm (re-checking the queue, so no job is
//!             stranded); after BUDGET jobs it re-arms itself and returns, so
//!             Promise callbacks and I/O get their turn. Workers whose answers
//!             it delivered are woken after each batch, not one by one.
//! ```
//!
//! The JS side of each job (the `ctx`, calling the function, its Promise) is
//! in [`super::context`].
//!
//! # Replies
//! A [`Reply`] goes `WAITING -> DONE` (the JS thread delivered an outcome;
//! the first delivery wins) or `WAITING -> ABANDONED` (the worker gave up);
//! both by CAS under the outcome's lock, so an outcome is either taken by the
//! worker or dropped, never both.
//!
//! # Cancellation
//! pso-core has no cancellation callback, so a waiting worker polls
//! `StepContext::is_cancelled()` (every 1 ms for the first 50 ms, then every
//! 5 ms, then every 20 ms after 2 s). When it turns true (run cancelled,
//! deadline, step timeout) the worker abandons the reply at once and queues
//! `Job::Abort`, which aborts the step's `ctx.signal`; the function's late
//! result is ignored. So each step whose Promise is pending holds one worker
//! thread until it settles or is abandoned.
//!
//! # Closing
//! `Bridge::close` (from `Orchestrator.close()`, on the JS thread, before
//! pso-core's close) fails every queued and in-flight step and aborts their
//! signals, which frees the workers so pso-core can join them. A step failed
//! this way returns to pso-core only once its run is stopped (`CLOSE_GRACE`
//! at most), so its failure cannot finish the run before pso-core marks it
//! cancelled. (A `when` predicate in flight at that moment cannot wait like
//! that: a condition runs before its step is claimed, when `is_cancelled()`
//! is already true.)
//!
//! # Lifetimes
//! [`Shared`] (queue, flags, the weak tsfn) is shared with workers; the tsfn
//! callback holds it weakly. Nothing here keeps the event loop alive: a
//! run's `result` Promise does that while the run is going.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::Unknown;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use pso_core::{CancelToken, Child, ConditionFn, HandlerError, OpFn, StepContext, Value};

use super::context::{Answer, ChildSpec, JsFn, JsSide, Outcome, StepData};

/// Weak: never keeps the event loop alive by itself.
type DispatchTsfn = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, true>;

/// Jobs run per `drain` call before it yields to the event loop.
const BUDGET: usize = 1024;

/// How long a step failed by `close()` waits for pso-core to stop its run.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Busy-wait iterations before a waiting worker parks. Longer spinning (or
/// yielding) measured no better on a loaded 2-core machine.
const WORKER_SPIN_LOOPS: u32 = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const WAITING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// Where the JS thread leaves the outcome of one job for its worker.
pub(super) struct Reply {
    state: AtomicU8,
    outcome: Mutex<Option<Outcome>>,
    worker: Thread,
    /// The job's entry on the JS side (written and read on the JS thread).
    pub(super) js_id: AtomicU32,
}

impl Reply {
    fn new() -> Arc<Reply> {
        Arc::new(Reply {
            state: AtomicU8::new(WAITING),
            outcome: Mutex::new(None),
            worker: thread::current(),
            js_id: AtomicU32::new(u32::MAX),
        })
    }

    pub(super) fn is_abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABANDONED
    }

    /// Hands `outcome` to the worker, or drops it if the worker gave up or
    /// an outcome was delivered already (the first one wins).
    pub(super) fn deliver(&self, outcome: Outcome) {
        let late = {
            let mut slot = lock(&self.outcome);
            if self.state.load(Ordering::Acquire) != WAITING {
                Some(outcome)
            } else {
                *slot = Some(outcome);
                if self
                    .state
                    .compare_exchange(WAITING, DONE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    None
                } else {
                    // Abandoned meanwhile.
                    slot.take()
                }
            }
        };
        match late {
            None => wake(&self.worker),
            // Dropped outside the lock (it may hold JS references).
            Some(late) => drop(late),
        }
    }

    /// The worker stops waiting; false if an outcome arrived first.
    fn abandon(&self) -> bool {
        self.state
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn take(&self) -> Option<Outcome> {
        lock(&self.outcome).take()
    }
}

thread_local! {
    /// Workers to wake once the JS thread has finished its current batch of
    /// jobs (`Some` while `drain` runs): waking one at once would let it
    /// preempt the JS thread halfway through the batch.
    static WAKE_LATER: RefCell<Option<Vec<Thread>>> = const { RefCell::new(None) };
}

fn wake(worker: &Thread) {
    // `try_with`: a reply may be delivered while this thread's locals are
    // being destroyed (an environment torn down at thread exit).
    let deferred = WAKE_LATER
        .try_with(|w| match &mut *w.borrow_mut() {
            Some(later) => {
                later.push(worker.clone());
                true
            }
            None => false,
        })
        .unwrap_or(false);
    if !deferred {
        worker.unpark();
    }
}

/// Wakes the workers `wake` put off.
fn wake_deferred() {
    let later = WAKE_LATER
        .try_with(|w| w.borrow_mut().as_mut().map(std::mem::take))
        .ok()
        .flatten();
    for t in later.into_iter().flatten() {
        t.unpark();
    }
}

/// Work for the JS thread.
pub(super) enum Job {
    Step {
        f: Arc<JsFn>,
        data: StepData,
        token: CancelToken,
        reply: Arc<Reply>,
    },
    Condition {
        f: Arc<JsFn>,
        data: StepData,
        reply: Arc<Reply>,
    },
    Abort(Arc<Reply>),
}

impl Job {
    pub(super) fn reply(&self) -> &Arc<Reply> {
        match self {
            Job::Step { reply, .. } | Job::Condition { reply, .. } | Job::Abort(reply) => reply,
        }
    }
}

/// The part of the bridge that worker threads use.
pub(crate) struct Shared {
    queue: Mutex<Vec<Job>>,
    /// A drain is scheduled (or running): pushing needs no tsfn call.
    armed: AtomicBool,
    closed: AtomicBool,
    tsfn: OnceLock<DispatchTsfn>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

pub(super) fn closed_error() -> HandlerError {
    HandlerError::failed("the orchestrator was closed while this step was running")
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A pso-core operation/step function that calls the JS function `f`.
    pub(crate) fn step_fn(self: &Arc<Self>, f: Arc<JsFn>) -> OpFn {
        let shared = self.clone();
        Arc::new(move |ctx: &StepContext<'_>| shared.run_step(&f, ctx))
    }

    /// A pso-core condition that calls the JS predicate `f`.
    pub(crate) fn condition_fn(self: &Arc<Self>, f: Arc<JsFn>) -> ConditionFn {
        let shared = self.clone();
        Arc::new(move |ctx: &StepContext<'_>| shared.run_condition(&f, ctx))
    }

    /// Queues `job` for the JS thread; gives it back if that is impossible.
    fn submit(&self, job: Job) -> Result<(), HandlerError> {
        if self.is_closed() {
            return Err(closed_error());
        }
        lock(&self.queue).push(job);
        if !self.armed.swap(true, Ordering::SeqCst) {
            self.wake_js();
        }
        Ok(())
    }

    /// Schedules a `drain` on the JS thread. If the environment is going away
    /// every queued job fails at once.
    fn wake_js(&self) {
        let status = match self.tsfn.get() {
            Some(tsfn) => tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking),
            None => Status::Closing,
        };
        if status != Status::Ok {
            self.closed.store(true, Ordering::Release);
            let stranded = std::mem::take(&mut *lock(&self.queue));
            for job in stranded {
                job.reply().deliver(Err(HandlerError::failed(format!(
                    "cannot call into JS: the Node.js environment is shutting down ({status})"
                ))));
            }
        }
    }

    /// Waits for the outcome of `reply`; `None` if the worker gave up because
    /// `cancelled()` turned true or the orchestrator closed.
    fn wait(&self, reply: &Reply, cancelled: &dyn Fn() -> bool) -> Option<Outcome> {
        for _ in 0..WORKER_SPIN_LOOPS {
            if reply.state.load(Ordering::Acquire) == DONE {
                return reply.take();
            }
            std::hint::spin_loop();
        }
        let started = Instant::now();
        loop {
            if reply.state.load(Ordering::Acquire) == DONE {
                return reply.take();
            }
            if (self.is_closed() || cancelled()) && reply.abandon() {
                return None;
            }
            let waited = started.elapsed();
            thread::park_timeout(if waited < Duration::from_millis(50) {
                Duration::from_millis(1)
            } else if waited < Duration::from_secs(2) {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(20)
            });
        }
    }

    fn run_step(
        self: &Arc<Self>,
        f: &Arc<JsFn>,
        ctx: &StepContext<'_>,
    ) -> Result<Value, HandlerError> {
        let result = self.call_step(f, ctx);
        if result.is_err() && self.is_closed() {
            // `close()` failed this step just before pso-core stops the run.
            // Return only once the run is stopped, so that this failure
            // cannot finish the run first (as `failed` rather than
            // `cancelled`). Bounded, for an environment that is going away.
            let until = Instant::now() + CLOSE_GRACE;
            while !ctx.is_cancelled() && Instant::now() < until {
                thread::sleep(Duration::from_micros(50));
            }
        }
        result
    }

    fn call_step(
        self: &Arc<Self>,
        f: &Arc<JsFn>,
        ctx: &StepContext<'_>,
    ) -> Result<Value, HandlerError> {
        let reply = Reply::new();
        self.submit(Job::Step {
            f: f.clone(),
            data: StepData::of(ctx),
            token: ctx.cancel_token(),
            reply: reply.clone(),
        })?;
        match self.wait(&reply, &|| ctx.is_cancelled()) {
            Some(Ok(Answer { value, children })) => {
                if !children.is_empty() {
                    let children = children
                        .into_iter()
                        .map(|c| match c {
                            ChildSpec::Func { f, input } => {
                                Ok(Child::shared(input, self.step_fn(f)))
                            }
                            ChildSpec::Op { system, op, input } => {
                                ctx.child_op(&system, &op, input)
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    ctx.fan_out(children)?;
                }
                Ok(value)
            }
            Some(Err(e)) => Err(e),
            None => {
                // Tell the JS side, which aborts `ctx.signal`.
                let closed = self.is_closed();
                let _ = self.submit(Job::Abort(reply));
                Err(if closed {
                    closed_error()
                } else {
                    HandlerError::failed(
                        "the run was stopped while this step was running; its ctx.signal was aborted and its result is ignored",
                    )
                })
            }
        }
    }

    fn run_condition(&self, f: &Arc<JsFn>, ctx: &StepContext<'_>) -> bool {
        let reply = Reply::new();
        let submitted = self.submit(Job::Condition {
            f: f.clone(),
            data: StepData::of(ctx),
            reply: reply.clone(),
        });
        // A condition runs before its step is claimed, when `is_cancelled()`
        // is already true; conditions are synchronous, so wait for the answer
        // (or for the orchestrator to close).
        let outcome = match submitted {
            Ok(()) => self.wait(&reply, &|| false),
            Err(e) => Some(Err(e)),
        };
        match outcome {
            Some(Ok(Answer { value, .. })) => value.is_truthy(),
            // pso-core conditions cannot fail; a panic is how a condition
            // fails its step ("handler panicked: condition: <this>").
            // `resume_unwind` skips the panic hook, so nothing is printed.
            Some(Err(e)) => std::panic::resume_unwind(Box::new(e.to_string())),
            None => std::panic::resume_unwind(Box::new(closed_error().to_string())),
        }
    }
}

/// The bridge of one orchestrator: cheap to clone, JS thread only.
#[derive(Clone)]
pub(crate) struct Bridge {
    pub(crate) shared: Arc<Shared>,
    js: Rc<JsSide>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Sets up the bridge: the JS half (`context.js`) and the dispatch tsfn.
    pub(crate) fn new(env: &Env) -> napi::Result<Bridge> {
        let (js, noop) = JsSide::new(env)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            armed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            tsfn: OnceLock::new(),
        });
        let drain_shared: Weak<Shared> = Arc::downgrade(&shared);
        let drain_js = js.clone();
        let mut spare: Vec<Job> = Vec::new();
        let tsfn: DispatchTsfn = noop
            .borrow_back(env)?
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |ctx| {
                if let Some(shared) = drain_shared.upgrade() {
                    drain(&ctx.env, &shared, &drain_js, &mut spare);
                }
                // Never `Err`: that would be fatal.
                Ok(())
            })?;
        let _ = shared.tsfn.set(tsfn);
        Ok(Bridge { shared, js })
    }

    /// Fails every step in flight (aborting their `ctx.signal`s) and refuses
    /// new ones (`close()`).
    pub(crate) fn close(&self, env: &Env) {
        self.shared.closed.store(true, Ordering::Release);
        let stranded = std::mem::take(&mut *lock(&self.shared.queue));
        for job in stranded {
            job.reply().deliver(Err(closed_error()));
        }
        let aborts = self.js.fail_all();
        // `close()` may be called from a step, inside `drain`: wake the failed
        // steps' workers now, not after the batch (pso-core joins them).
        wake_deferred();
        for abort in aborts {
            let _ = abort.borrow_back(env).and_then(|f| f.call(()));
        }
    }

    /// The JS thread's half, for run bookkeeping (`makeResult`, `watch`).
    pub(crate) fn js(&self) -> &JsSide {
        &self.js
    }
}

/// Runs queued jobs on the JS thread (the tsfn callback); see the module docs.
fn drain(env: &Env, shared: &Shared, js: &JsSide, spare: &mut Vec<Job>) {
    WAKE_LATER.with(|w| *w.borrow_mut() = Some(Vec::new()));
    // Never unwind into Node (and never leave workers unwoken).
    let _ = catch_unwind(AssertUnwindSafe(|| drain_jobs(env, shared, js, spare)));
    wake_deferred();
    WAKE_LATER.with(|w| *w.borrow_mut() = None);
}

fn drain_jobs(env: &Env, shared: &Shared, js: &JsSide, spare: &mut Vec<Job>) {
    let mut done = 0;
    loop {
        std::mem::swap(&mut *lock(&shared.queue), spare);
        if spare.is_empty() {
            shared.armed.store(false, Ordering::SeqCst);
            // A worker that pushed after our swap saw `armed` set and did not
            // call the tsfn: take its job now, unless another drain is coming.
            if lock(&shared.queue).is_empty() || shared.armed.swap(true, Ordering::SeqCst) {
                return;
            }
            continue;
        }
        for job in spare.drain(..) {
            done += 1;
            let closed = shared.is_closed();
            let reply = job.reply().clone();
            let ran = catch_unwind(AssertUnwindSafe(|| {
                env.run_in_scope(|| {
                    js.run(env, job, closed);
                    Ok(())
                })
            }));
            if ran.is_err() {
                // A bug, not a user error: still never leave a worker waiting.
                reply.deliver(Err(HandlerError::failed(
                    "internal error in pso-node while calling this step's JS function",
                )));
            }
        }
        wake_deferred();
        if done >= BUDGET {
            if lock(&shared.queue).is_empty() {
                continue;
            }
            // Still armed: this call stands for the pending jobs.
            shared.wake_js();
            return;
        }
    }
}
