//! The transport between pso-core's worker threads and the JS thread, and
//! the worker side of a JS step (pso-core calls step functions, `when`
//! conditions and operations on a worker).
//!
//! # Deferred steps (the common case)
//! A step's function does not make its worker wait for JS: the worker calls
//! `StepContext::defer()`, queues a [`Job::Deferred`] carrying the
//! [`Completion`] and returns at once. The JS thread calls the function and
//! completes the step with its value, its throw, or — for a returned Promise
//! — whatever the Promise settles with. So a pending Promise holds no worker,
//! and any number of JS steps can be in flight with any number of workers.
//!
//! Two kinds of call still make a worker wait for the JS thread (parking on
//! a [`Reply`]): `when` predicates (a condition must decide before its step
//! runs) and steps that may fan out. pso-core cannot fan out a deferred step
//! ("a step cannot both defer its result and fan out"), and children emitted
//! by `ctx.fanOut()` after an `await` still have to reach the worker, so a
//! step function whose source text mentions `fanOut` runs on a waiting
//! worker, as do fan-out children (which cannot defer).
//!
//! # Batching
//! A thread-safe-function call per job would cost far more than most steps:
//!
//! ```text
//! worker:     push Job onto Shared::queue --(armed was false)--> one tsfn call
//!             (a waiting call parks on its Reply: spin briefly, then park)
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
//! A deferred step whose Promise is pending registers a cancellation hook
//! (`Completion::on_cancel`, see [`Shared::stop_pending`]); steps that
//! answer synchronously need none. When the run is cancelled, or the step
//! times out, the hook ends the step at once (its late result is ignored)
//! and queues [`Job::Abort`], which aborts the step's `ctx.signal`. One
//! exception: at a run *deadline* pso-core fires the hooks before it marks
//! the running steps `timed_out`, so ending a step from the hook would make
//! it `failed`; there the completion is parked and used when the run has
//! ended (it then only gives back the step's slot and lease). The binding
//! tells the cases apart by the run's deadline (known from the run options)
//! and by whether it cancelled the run itself ([`RunEntry::stopping`]).
//!
//! A waiting worker (conditions, fan-out steps, children) polls
//! `StepContext::is_cancelled()` (every 1 ms for the first 50 ms, then every
//! 5 ms, then every 20 ms after 2 s); when it turns true the worker abandons
//! the reply and queues an abort. Hooks are not used there: a fan-out
//! child's hook would stay registered until its run stops.
//!
//! # Closing
//! `Orchestrator.close()` first cancels every run it knows ([`Shared::runs`]),
//! so that steps it then fails end `cancelled`; then `Bridge::close` fails
//! every queued and in-flight step and aborts their signals, which frees the
//! waiting workers so pso-core can join them. A waiting step failed this way
//! returns to pso-core only once its run is stopped (`CLOSE_GRACE` at
//! most).
//!
//! # Lifetimes
//! [`Shared`] (queue, flags, the weak tsfn, live runs) is shared with
//! workers; the tsfn callback holds it weakly. Nothing here keeps the event
//! loop alive: a run's `result` Promise does that while the run is going.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::Unknown;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use pso_core::{
    CancelToken, Child, Completion, HandlerError, OpFn, RunHandle, StepContext, TryConditionFn,
    Value,
};

use super::context::{Answer, ChildSpec, JsFn, JsSide, Outcome, StepData, StepFn};

/// Weak: never keeps the event loop alive by itself.
type DispatchTsfn = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, true>;

/// Jobs run per `drain` call before it yields to the event loop.
const BUDGET: usize = 1024;

/// How long a waiting step failed by `close()` waits for pso-core to stop
/// its run.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Busy-wait iterations before a waiting worker parks. Longer spinning (or
/// yielding) measured no better on a loaded 2-core machine.
const WORKER_SPIN_LOOPS: u32 = 64;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const WAITING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// Where the JS thread leaves the outcome of one job for its waiting worker.
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

/// A deferred step whose function returned a pending Promise: its
/// completion, shared between the JS thread (which uses it when the Promise
/// settles) and the step's cancellation hook (which uses it, or parks it,
/// when the step is told to stop). Whoever takes it first finishes the step.
pub(super) struct Pending {
    completion: Mutex<Option<Completion>>,
    /// Set (under the lock) by the hook: a completion put in later must be
    /// stopped by whoever puts it.
    stopped: AtomicBool,
    /// The run the step belongs to.
    run: u64,
    /// The step's entry on the JS side (written and read on the JS thread).
    pub(super) js_id: AtomicU32,
}

impl Pending {
    pub(super) fn new(run: u64, js_id: u32) -> Arc<Pending> {
        Arc::new(Pending {
            completion: Mutex::new(None),
            stopped: AtomicBool::new(false),
            run,
            js_id: AtomicU32::new(js_id),
        })
    }

    /// Takes the completion (`None` once the hook or the JS thread did).
    pub(super) fn take(&self) -> Option<Completion> {
        lock(&self.completion).take()
    }

    /// Whether the step was told to stop (or has ended).
    pub(super) fn is_cancelled(&self) -> bool {
        match &*lock(&self.completion) {
            Some(c) => c.is_cancelled(),
            None => true,
        }
    }

    /// Stores `c`, unless the hook already fired: then it is handed back.
    fn put(&self, c: Completion) -> Option<Completion> {
        let mut slot = lock(&self.completion);
        if self.stopped.load(Ordering::Acquire) {
            return Some(c);
        }
        *slot = Some(c);
        None
    }

    /// Marks it stopped and takes the completion, if it was put in.
    fn stop(&self) -> Option<Completion> {
        let mut slot = lock(&self.completion);
        self.stopped.store(true, Ordering::Release);
        slot.take()
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
    /// A step the JS thread runs and completes; no worker waits for it.
    Deferred {
        f: Arc<StepFn>,
        data: StepData,
        completion: Completion,
    },
    /// A step whose worker waits for the outcome (a function that may fan
    /// out, or a fan-out child).
    Step {
        f: Arc<StepFn>,
        data: StepData,
        token: CancelToken,
        reply: Arc<Reply>,
    },
    /// A `when` predicate; its worker waits for the answer.
    Condition {
        f: Arc<JsFn>,
        data: StepData,
        reply: Arc<Reply>,
    },
    /// Abort the `ctx.signal` of a step that was told to stop.
    Abort(Abort),
}

/// Which step [`Job::Abort`] is about.
pub(super) enum Abort {
    Reply(Arc<Reply>),
    Pending(Arc<Pending>),
}

impl Job {
    /// The reply a worker waits on, if one does.
    fn reply(&self) -> Option<&Arc<Reply>> {
        match self {
            Job::Step { reply, .. } | Job::Condition { reply, .. } => Some(reply),
            Job::Deferred { .. } | Job::Abort(_) => None,
        }
    }

    /// Ends the job's step with `e` without running anything.
    pub(super) fn fail(self, e: HandlerError) {
        match self {
            Job::Deferred { completion, .. } => {
                let _ = completion.complete(Err(e));
            }
            Job::Step { reply, .. } | Job::Condition { reply, .. } => reply.deliver(Err(e)),
            Job::Abort(_) => {}
        }
    }
}

/// A run started through this binding: what cancelling it needs.
struct RunEntry {
    handle: RunHandle,
    /// When its deadline passes (computed before pso-core computed its own,
    /// so never later than it).
    deadline: Option<Instant>,
    /// The binding cancelled it (`run.cancel()`, its signal, `close()`).
    stopping: bool,
    /// Completions of steps stopped by the deadline, used when the run ends.
    parked: Vec<Completion>,
}

/// The part of the bridge that worker threads use.
pub(crate) struct Shared {
    queue: Mutex<Vec<Job>>,
    /// A drain is scheduled (or running): pushing needs no tsfn call.
    armed: AtomicBool,
    closed: AtomicBool,
    tsfn: OnceLock<DispatchTsfn>,
    /// Runs in progress, by id.
    runs: Mutex<HashMap<u64, RunEntry>>,
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

pub(super) fn stopped_error() -> HandlerError {
    HandlerError::failed(
        "the run was stopped while this step was running; its ctx.signal was aborted and its result is ignored",
    )
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A pso-core operation/step function that calls the JS function `f`.
    pub(crate) fn step_fn(self: &Arc<Self>, f: Arc<StepFn>) -> OpFn {
        let shared = self.clone();
        Arc::new(move |ctx: &StepContext<'_>| shared.run_step(&f, ctx))
    }

    /// A pso-core (fallible) condition that calls the JS predicate `f`.
    pub(crate) fn condition_fn(self: &Arc<Self>, f: Arc<JsFn>) -> TryConditionFn {
        let shared = self.clone();
        Arc::new(move |ctx: &StepContext<'_>| shared.run_condition(&f, ctx))
    }

    /// Queues `job` for the JS thread. If the orchestrator is closed the job
    /// is dropped (a deferred step's completion with it: the error returned
    /// here, which the step function returns, wins).
    pub(super) fn submit(&self, job: Job) -> Result<(), HandlerError> {
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
                job.fail(HandlerError::failed(format!(
                    "cannot call into JS: the Node.js environment is shutting down ({status})"
                )));
            }
        }
    }

    /// Remembers a run started through this binding, until it ends.
    pub(crate) fn track_run(&self, handle: &RunHandle, deadline: Option<Instant>) {
        lock(&self.runs).insert(
            handle.id(),
            RunEntry {
                handle: handle.clone(),
                deadline,
                stopping: false,
                parked: Vec::new(),
            },
        );
    }

    /// Forgets run `id` (it ended); returns the completions parked for it.
    pub(crate) fn untrack_run(&self, id: u64) -> Vec<Completion> {
        lock(&self.runs)
            .remove(&id)
            .map(|r| r.parked)
            .unwrap_or_default()
    }

    /// Cancels a run on behalf of JS (`run.cancel()`, its signal). Returns
    /// false if it had already finished or been stopped.
    pub(crate) fn cancel_run(&self, handle: &RunHandle) -> bool {
        if let Some(r) = lock(&self.runs).get_mut(&handle.id()) {
            r.stopping = true;
        }
        // Not under the lock: the hooks this fires (and the run ending) use it.
        handle.cancel()
    }

    /// Cancels every run in progress (`close()`).
    pub(crate) fn cancel_all_runs(&self) {
        let handles: Vec<RunHandle> = lock(&self.runs)
            .values_mut()
            .map(|r| {
                r.stopping = true;
                r.handle.clone()
            })
            .collect();
        for h in handles {
            h.cancel();
        }
    }

    /// The cancellation hook of a deferred step with a pending Promise.
    pub(super) fn stop_hook(self: &Arc<Self>, p: Arc<Pending>) -> impl FnOnce() + Send + 'static {
        let shared = Arc::downgrade(self);
        move || match shared.upgrade() {
            Some(shared) => shared.stop_pending(&p),
            None => {
                if let Some(c) = p.stop() {
                    let _ = c.complete(Err(closed_error()));
                }
            }
        }
    }

    /// Ends a deferred step that was told to stop (see "Cancellation" in the
    /// module docs) and queues the abort of its `ctx.signal`.
    fn stop_pending(&self, p: &Arc<Pending>) {
        if let Some(c) = p.stop() {
            self.stop_completion(p.run, c);
        }
        let _ = self.submit(Job::Abort(Abort::Pending(p.clone())));
    }

    /// Ends a stopped step's attempt now, or after its run has ended when
    /// the stop is the run's deadline.
    fn stop_completion(&self, run: u64, c: Completion) {
        let now = Instant::now();
        let c = {
            let mut runs = lock(&self.runs);
            match runs.get_mut(&run) {
                Some(r) if !r.stopping && r.deadline.is_some_and(|d| now >= d) => {
                    r.parked.push(c);
                    None
                }
                _ => Some(c),
            }
        };
        // Outside the lock: this may end the run, which untracks it.
        if let Some(c) = c {
            let _ = c.complete(Err(stopped_error()));
        }
    }

    /// Shares the completion of a step whose Promise is pending with its
    /// cancellation hook (JS thread, right after the function returned it).
    pub(super) fn pending(self: &Arc<Self>, p: &Arc<Pending>, c: Completion) {
        c.on_cancel(self.stop_hook(p.clone()));
        if let Some(c) = p.put(c) {
            // The hook fired already (at once, or on another thread).
            self.stop_completion(p.run, c);
        }
    }

    fn run_step(
        self: &Arc<Self>,
        f: &Arc<StepFn>,
        ctx: &StepContext<'_>,
    ) -> Result<Value, HandlerError> {
        if !f.waits {
            // Fails only for a fan-out child: that waits below.
            if let Ok(completion) = ctx.defer() {
                self.submit(Job::Deferred {
                    f: f.clone(),
                    data: StepData::of(ctx),
                    completion,
                })?;
                return Ok(Value::Null);
            }
        }
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

    /// A step whose worker waits for the JS thread's answer.
    fn call_step(
        self: &Arc<Self>,
        f: &Arc<StepFn>,
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
                let _ = self.submit(Job::Abort(Abort::Reply(reply)));
                Err(if closed {
                    closed_error()
                } else {
                    stopped_error()
                })
            }
        }
    }

    fn run_condition(&self, f: &Arc<JsFn>, ctx: &StepContext<'_>) -> Result<bool, HandlerError> {
        let reply = Reply::new();
        self.submit(Job::Condition {
            f: f.clone(),
            data: StepData::of(ctx),
            reply: reply.clone(),
        })?;
        match self.wait(&reply, &|| ctx.is_cancelled()) {
            Some(Ok(Answer { value, .. })) => Ok(value.is_truthy()),
            Some(Err(e)) => Err(e),
            None => Err(if self.is_closed() {
                closed_error()
            } else {
                stopped_error()
            }),
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
            runs: Mutex::new(HashMap::new()),
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
    /// new ones (`close()`, after the runs were cancelled).
    pub(crate) fn close(&self, env: &Env) {
        self.shared.closed.store(true, Ordering::Release);
        let stranded = std::mem::take(&mut *lock(&self.shared.queue));
        let mut aborts = Vec::new();
        for job in stranded {
            match job {
                Job::Abort(a) => aborts.extend(self.js.abandon(a)),
                job => job.fail(closed_error()),
            }
        }
        aborts.extend(self.js.fail_all());
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
fn drain(env: &Env, shared: &Arc<Shared>, js: &JsSide, spare: &mut Vec<Job>) {
    WAKE_LATER.with(|w| *w.borrow_mut() = Some(Vec::new()));
    // Never unwind into Node (and never leave workers unwoken).
    let _ = catch_unwind(AssertUnwindSafe(|| drain_jobs(env, shared, js, spare)));
    wake_deferred();
    WAKE_LATER.with(|w| *w.borrow_mut() = None);
}

fn drain_jobs(env: &Env, shared: &Arc<Shared>, js: &JsSide, spare: &mut Vec<Job>) {
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
            let reply = job.reply().cloned();
            let ran = catch_unwind(AssertUnwindSafe(|| {
                env.run_in_scope(|| {
                    js.run(env, shared, job, closed);
                    Ok(())
                })
            }));
            if ran.is_err()
                && let Some(reply) = reply
            {
                // A bug, not a user error: still never leave a worker waiting.
                // (A deferred step's completion, dropped by the unwinding,
                // fails its step by itself.)
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
