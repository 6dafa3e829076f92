//! The step bridge: how pso-core's worker threads run JS step functions,
//! `when` conditions and operations on the JS thread (pso-core
//! `workflow/context.rs`: `StepContext`, `Child`, `CancelToken`).
//!
//! pso-core calls a step's function on a worker and expects the result as the
//! return value, so the worker blocks until the JS thread has an answer. A
//! thread-safe-function call per step costs far more than the step itself,
//! so calls are batched:
//!
//! ```text
//! worker:     push Job onto Shared::queue --(armed was false)--> one tsfn call
//!             wait on its Reply (spin briefly, then park with a timeout)
//! JS thread:  drain(): take the whole queue, run every job, repeat until the
//!             queue is empty, then disarm (re-checking the queue, so no job is
//!             stranded); after BUDGET jobs it re-arms itself and returns, so
//!             Promise callbacks and I/O get their turn
//! ```
//!
//! # Jobs and replies
//! * `Job::Step` calls the function through `context.js`'s `invoke`, which
//!   builds the JS `ctx`. A synchronous result is converted at once; a
//!   Promise is settled later through the native `settle` callback. While a
//!   step is in flight it has an [`Entry`] in the JS thread's table: the
//!   children `ctx.fanOut()` adds and the `AbortController` behind
//!   `ctx.signal` live there.
//! * `Job::Condition` calls a `when` predicate (synchronously).
//! * `Job::Abort` comes from a worker that stopped waiting: it aborts
//!   `ctx.signal`.
//!
//! A [`Reply`] is `WAITING -> DONE` (the JS thread delivered an outcome) or
//! `WAITING -> ABANDONED` (the worker gave up: the step was cancelled, timed
//! out, hit the run deadline, or the orchestrator closed); both by CAS, so an
//! outcome is either taken by the worker or dropped, never both.
//!
//! # Cancellation
//! A waiting worker polls `StepContext::is_cancelled()` (every 1 ms at first,
//! backing off to 20 ms for long waits; pso-core has no cancellation
//! callback). When it turns true the worker abandons the reply at once and
//! queues `Job::Abort`, which aborts the step's `ctx.signal`. A late result
//! of the JS function is ignored. So each step whose Promise is pending holds
//! one worker thread until it settles or is abandoned.
//!
//! # Threads and lifetimes
//! [`Shared`] (queue, flags, the weak tsfn) is shared with workers. [`JsSide`]
//! (the entry table, the helpers of `context.js`) is touched only on the JS
//! thread; the tsfn callback and the orchestrator hold it, the native
//! callbacks hold it weakly (no reference cycle through JS). Nothing here
//! keeps the event loop alive: a run's `result` Promise does that while the
//! run is going.

#![forbid(unsafe_code)]

use std::cell::{OnceCell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak as RcWeak};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{
    FnArgs, FromNapiValue, Function, FunctionCallContext, FunctionRef, JsObjectValue, JsValue,
    Object, ObjectRef, ToNapiValue, Unknown,
};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, ValueType};
use pso_core::{CancelToken, Child, ConditionFn, HandlerError, OpFn, StepContext, Value};

use crate::error;
use crate::model::handler;
use crate::model::js;
use crate::value;

/// A JS function kept alive for later calls (dropping it on any thread is
/// fine: napi-rs routes the release to the JS thread).
pub(crate) type JsFn = FunctionRef<(), Unknown<'static>>;

/// Weak: never keeps the event loop alive by itself.
type DispatchTsfn = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, true>;

/// Jobs run per `drain` call before it yields to the event loop.
const BUDGET: usize = 1024;

/// How long a worker keeps checking for its answer (spinning, then
/// yielding its core) before it parks.
const WORKER_SPIN: Duration = Duration::from_micros(20);

/// How long a step failed by `close()` waits for pso-core to stop its run.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Busy-wait iterations before the waiting worker starts yielding its core.
const WORKER_SPIN_LOOPS: u32 = 64;

const SCRIPT: &str = include_str!("context.js");

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a step function produced: its value and the children it fanned out to.
pub(crate) struct Answer {
    value: Value,
    children: Vec<ChildSpec>,
}

type Outcome = Result<Answer, HandlerError>;

/// A fan-out child as `ctx.fanOut()` described it.
pub(crate) enum ChildSpec {
    /// `{ fn, input }`.
    Func { f: Arc<JsFn>, input: Value },
    /// `{ system, op, input }`.
    Op {
        system: String,
        op: String,
        input: Value,
    },
}

const WAITING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// Where the JS thread leaves the outcome of one job for its worker.
pub(crate) struct Reply {
    state: AtomicU8,
    outcome: Mutex<Option<Outcome>>,
    worker: Thread,
    /// The job's entry on the JS side (written and read on the JS thread).
    js_id: AtomicU32,
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

    fn is_abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABANDONED
    }

    /// Hands `outcome` to the worker, or drops it if the worker gave up.
    fn deliver(&self, outcome: Outcome) {
        *lock(&self.outcome) = Some(outcome);
        if self
            .state
            .compare_exchange(WAITING, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            wake(&self.worker);
        } else {
            let late = lock(&self.outcome).take();
            drop(late);
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
    let deferred = WAKE_LATER.with(|w| match &mut *w.borrow_mut() {
        Some(later) => {
            later.push(worker.clone());
            true
        }
        None => false,
    });
    if !deferred {
        worker.unpark();
    }
}

/// Wakes the workers `wake` put off.
fn wake_deferred() {
    let later = WAKE_LATER.with(|w| w.borrow_mut().as_mut().map(std::mem::take));
    for t in later.into_iter().flatten() {
        t.unpark();
    }
}

/// What a step's `ctx` shows, copied out of the worker's `StepContext`.
struct StepData {
    step: String,
    system: Option<String>,
    op: Option<String>,
    attempt: u32,
    /// Named inputs that have a value.
    inputs: Vec<(String, Value)>,
    /// `ctx.input`; `None` when it is the map of `inputs`.
    input: Option<Value>,
    /// `ctx.runInput`; `None` when it equals `input`.
    run_input: Option<Value>,
}

impl StepData {
    fn of(ctx: &StepContext<'_>) -> StepData {
        let inputs: Vec<(String, Value)> = ctx
            .inputs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        let (input, run_input) = if inputs.is_empty() {
            let input = ctx.input_value();
            let run = ctx.run_input();
            let run_input = (&input != run).then(|| run.clone());
            (Some(input), run_input)
        } else {
            (None, Some(ctx.run_input().clone()))
        };
        StepData {
            step: ctx.step_name(),
            system: ctx.system().map(str::to_owned),
            op: ctx.operation().map(str::to_owned),
            attempt: ctx.attempt(),
            inputs,
            input,
            run_input,
        }
    }
}

enum Job {
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
    fn reply(&self) -> &Arc<Reply> {
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

fn closed_error() -> HandlerError {
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
        let started = Instant::now();
        let mut spins = 0u32;
        while started.elapsed() < WORKER_SPIN {
            if reply.state.load(Ordering::Acquire) == DONE {
                return reply.take();
            }
            spins += 1;
            if spins < WORKER_SPIN_LOOPS {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
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

/// The helpers `context.js` returns.
struct Helper {
    invoke: JsFn,
    condition: JsFn,
    controller: JsFn,
    watch: JsFn,
    is_abort_signal: JsFn,
    make_result: Arc<JsFn>,
}

/// A JS function of a helper, typed for a call.
fn typed<'e, Args: napi::bindgen_prelude::JsValuesTupleIntoVec, R: FromNapiValue>(
    f: &JsFn,
    env: &'e Env,
) -> napi::Result<Function<'e, Args, R>> {
    Function::from_unknown(f.borrow_back(env)?.to_unknown())
}

/// A step in flight on the JS side.
struct Entry {
    reply: Arc<Reply>,
    token: CancelToken,
    step: String,
    /// Calls `controller.abort()`, once `ctx.signal` was asked for.
    abort: Option<JsFn>,
    children: Vec<ChildSpec>,
    abandoned: bool,
}

#[derive(Default)]
struct Entries {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
}

impl Entries {
    fn insert(&mut self, e: Entry) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(e);
                i
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn get_mut(&mut self, id: i64) -> Option<&mut Entry> {
        let i = usize::try_from(id).ok()?;
        self.slots.get_mut(i)?.as_mut()
    }

    fn remove(&mut self, id: i64) -> Option<Entry> {
        let i = u32::try_from(id).ok()?;
        let e = self.slots.get_mut(i as usize)?.take()?;
        self.free.push(i);
        Some(e)
    }
}

/// The part of the bridge that lives on the JS thread.
pub(crate) struct JsSide {
    helper: OnceCell<Helper>,
    entries: RefCell<Entries>,
}

impl Drop for JsSide {
    fn drop(&mut self) {
        // The environment is going away (or the orchestrator was collected):
        // no step in flight will ever settle.
        drop(self.fail_all());
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

/// Runs `f` in a native callback, turning a panic into a `PSO_INTERNAL` error
/// (a panic must never unwind into Node).
fn guarded<T>(env: &Env, f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(error::internal(env, panic)))
}

fn id_arg(ctx: &FunctionCallContext<'_>) -> napi::Result<i64> {
    let v: Unknown<'_> = ctx.get(0)?;
    Ok(v.coerce_to_number()?.get_double()? as i64)
}

impl Bridge {
    /// Sets up the bridge: evaluates `context.js` and creates the dispatch tsfn.
    pub(crate) fn new(env: &Env) -> napi::Result<Bridge> {
        let js = Rc::new(JsSide {
            helper: OnceCell::new(),
            entries: RefCell::default(),
        });
        let weak = Rc::downgrade(&js);
        let settle: Function<'_, Unknown<'_>, ()> =
            env.create_function_from_closure("settle", {
                let weak: RcWeak<JsSide> = weak.clone();
                move |ctx: FunctionCallContext<'_>| {
                    let env = *ctx.env;
                    guarded(&env, || {
                        let (id, ok) =
                            (id_arg(&ctx)?, ctx.get::<Unknown<'_>>(1)?.coerce_to_bool()?);
                        let value: Unknown<'_> = ctx.get(2)?;
                        if let Some(js) = weak.upgrade() {
                            js.settle(&env, id, if ok { Ok(value) } else { Err(value) });
                        }
                        Ok(())
                    })
                }
            })?;
        let fan_out: Function<'_, Unknown<'_>, ()> =
            env.create_function_from_closure("fanOut", {
                let weak: RcWeak<JsSide> = weak.clone();
                move |ctx: FunctionCallContext<'_>| {
                    let env = *ctx.env;
                    guarded(&env, || {
                        let id = id_arg(&ctx)?;
                        let children: Unknown<'_> = ctx.get(1)?;
                        match weak.upgrade() {
                            Some(js) => js.fan_out(&env, id, children),
                            None => Err(error::closed(&env)),
                        }
                    })
                }
            })?;
        let signal: Function<'_, Unknown<'_>, ObjectRef<false>> = env
            .create_function_from_closure("signal", {
                let weak: RcWeak<JsSide> = weak.clone();
                move |ctx: FunctionCallContext<'_>| {
                    let env = *ctx.env;
                    guarded(&env, || {
                        let id = id_arg(&ctx)?;
                        let js = weak.upgrade().ok_or_else(|| error::closed(&env))?;
                        let signal = js.signal(&env, id)?;
                        signal.create_ref::<false>()
                    })
                }
            })?;
        let factory: Function<'_, FnArgs<(Unknown<'_>, Unknown<'_>, Unknown<'_>)>, Object<'_>> =
            env.run_script(SCRIPT)?;
        let helpers = factory.call(FnArgs::from((
            settle.to_unknown(),
            fan_out.to_unknown(),
            signal.to_unknown(),
        )))?;
        let get = |name: &str| -> napi::Result<JsFn> {
            helpers
                .get_named_property::<Function<'_, (), Unknown<'static>>>(name)?
                .create_ref()
        };
        let helper = Helper {
            invoke: get("invoke")?,
            condition: get("condition")?,
            controller: get("controller")?,
            watch: get("watch")?,
            is_abort_signal: get("isAbortSignal")?,
            make_result: Arc::new(get("makeResult")?),
        };
        let _ = js.helper.set(helper);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            armed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            tsfn: OnceLock::new(),
        });
        let noop: Function<'_, (), Unknown<'static>> = helpers.get_named_property("noop")?;
        let drain_shared: Weak<Shared> = Arc::downgrade(&shared);
        let drain_js = js.clone();
        let mut spare: Vec<Job> = Vec::new();
        let tsfn: DispatchTsfn = noop
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
        for abort in aborts {
            let _ = abort.borrow_back(env).and_then(|f| f.call(()));
        }
    }

    /// `context.js`'s `makeResult(base, load)`, for settling runs.
    pub(crate) fn make_result(&self) -> napi::Result<Arc<JsFn>> {
        Ok(self.js.helper()?.make_result.clone())
    }

    /// `signal instanceof AbortSignal`.
    pub(crate) fn is_abort_signal(&self, env: &Env, v: Unknown<'_>) -> napi::Result<bool> {
        let f: Function<'_, Unknown<'_>, bool> = typed(&self.js.helper()?.is_abort_signal, env)?;
        f.call(v)
    }

    /// Makes `signal` cancel the run (now, if it is aborted already). Returns
    /// the function that stops listening, to call when the run is done.
    pub(crate) fn watch(
        &self,
        env: &Env,
        signal: Unknown<'_>,
        cancel: Function<'_, (), bool>,
    ) -> napi::Result<Option<JsFn>> {
        type Watch<'e> = FnArgs<(Unknown<'e>, Function<'e, (), bool>)>;
        let f: Function<'_, Watch<'_>, Unknown<'_>> = typed(&self.js.helper()?.watch, env)?;
        let unwatch = f.call(FnArgs::from((signal, cancel)))?;
        if unwatch.get_type()? != ValueType::Function {
            return Ok(None);
        }
        Function::<(), Unknown<'static>>::from_unknown(unwatch)?
            .create_ref()
            .map(Some)
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
            let _ = env.run_in_scope(|| {
                js.run(env, job, closed);
                Ok(())
            });
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

impl JsSide {
    fn helper(&self) -> napi::Result<&Helper> {
        self.helper
            .get()
            .ok_or_else(|| napi::Error::from_reason("the step bridge is not set up"))
    }

    /// Fails every step in flight; returns the aborts of their signals.
    fn fail_all(&self) -> Vec<JsFn> {
        let entries = std::mem::take(&mut *self.entries.borrow_mut());
        let mut aborts = Vec::new();
        for e in entries.slots.into_iter().flatten() {
            e.reply.deliver(Err(closed_error()));
            aborts.extend(e.abort);
        }
        aborts
    }

    fn run(&self, env: &Env, job: Job, closed: bool) {
        if closed {
            job.reply().deliver(Err(closed_error()));
            return;
        }
        match job {
            Job::Step {
                f,
                data,
                token,
                reply,
            } => self.start_step(env, f, data, token, reply),
            Job::Condition { f, data, reply } => {
                let outcome = self.call_condition(env, &f, &data);
                reply.deliver(outcome.map(|b| Answer {
                    value: Value::Bool(b),
                    children: Vec::new(),
                }));
            }
            Job::Abort(reply) => self.abort(env, &reply),
        }
    }

    fn start_step(
        &self,
        env: &Env,
        f: Arc<JsFn>,
        data: StepData,
        token: CancelToken,
        reply: Arc<Reply>,
    ) {
        if reply.is_abandoned() {
            return;
        }
        if token.is_cancelled() {
            // Stopped before it started (a pre-aborted signal, say): do not
            // call the function at all.
            reply.deliver(Err(HandlerError::failed(
                "the run was stopped before this step's JS function started",
            )));
            return;
        }
        let args = match CtxArgs::new(env, &data) {
            Ok(a) => a,
            Err(e) => {
                reply.deliver(Err(HandlerError::failed(format!(
                    "cannot pass the inputs of step '{}' to JS: {}",
                    data.step, e.reason
                ))));
                return;
            }
        };
        let id = self.entries.borrow_mut().insert(Entry {
            reply: reply.clone(),
            token,
            step: data.step,
            abort: None,
            children: Vec::new(),
            abandoned: false,
        });
        reply.js_id.store(id, Ordering::Relaxed);
        let id = i64::from(id);
        let called = (|| -> napi::Result<Unknown<'_>> {
            let invoke = typed::<
                FnArgs<(
                    Function<'_, (), Unknown<'static>>,
                    f64,
                    Unknown<'_>,
                    Unknown<'_>,
                    Unknown<'_>,
                    u32,
                    Unknown<'_>,
                    Unknown<'_>,
                    Unknown<'_>,
                )>,
                Unknown<'_>,
            >(&self.helper()?.invoke, env)?;
            invoke.call(FnArgs::from((
                f.borrow_back(env)?,
                id as f64,
                args.step,
                args.system,
                args.op,
                data.attempt,
                args.inputs,
                args.input,
                args.run_input,
            )))
        })();
        match called {
            // A Symbol is `invoke`'s "pending": `settle` reports the outcome.
            Ok(v) if v.get_type().ok() == Some(ValueType::Symbol) => {}
            Ok(v) => self.settle(env, id, Ok(v)),
            Err(e) => {
                let error = thrown(env, e);
                if let Some(entry) = self.entries.borrow_mut().remove(id) {
                    entry.reply.deliver(Err(error));
                }
            }
        }
    }

    fn call_condition(&self, env: &Env, f: &JsFn, data: &StepData) -> Result<bool, HandlerError> {
        let args = CtxArgs::new(env, data).map_err(|e| {
            HandlerError::failed(format!(
                "cannot pass the inputs of step '{}' to JS: {}",
                data.step, e.reason
            ))
        })?;
        let helper = self
            .helper()
            .map_err(|e| HandlerError::failed(e.reason.clone()))?;
        let called = (|| -> napi::Result<bool> {
            let condition = typed::<
                FnArgs<(
                    Function<'_, (), Unknown<'static>>,
                    Unknown<'_>,
                    Unknown<'_>,
                    Unknown<'_>,
                    u32,
                    Unknown<'_>,
                    Unknown<'_>,
                    Unknown<'_>,
                )>,
                bool,
            >(&helper.condition, env)?;
            condition.call(FnArgs::from((
                f.borrow_back(env)?,
                args.step,
                args.system,
                args.op,
                data.attempt,
                args.inputs,
                args.input,
                args.run_input,
            )))
        })();
        called.map_err(|e| thrown(env, e))
    }

    /// The outcome of step `id`: what its function returned (`Ok`) or threw
    /// or rejected with (`Err`).
    fn settle(&self, env: &Env, id: i64, outcome: Result<Unknown<'_>, Unknown<'_>>) {
        let Some(entry) = self.entries.borrow_mut().remove(id) else {
            return;
        };
        if entry.abandoned {
            return;
        }
        let outcome = match outcome {
            Ok(v) => match value::from_js(env, v) {
                Ok(value) => Ok(Answer {
                    value,
                    children: entry.children,
                }),
                Err(bad) => Err(HandlerError::Raised {
                    type_name: "TypeError".to_owned(),
                    message: bad.message(&format!("the value step '{}' returned", entry.step)),
                    payload: None,
                }),
            },
            Err(thrown) => Err(handler::raised(thrown, None)),
        };
        entry.reply.deliver(outcome);
    }

    /// A worker gave up on a step: abort its `ctx.signal`.
    fn abort(&self, env: &Env, reply: &Arc<Reply>) {
        let id = i64::from(reply.js_id.load(Ordering::Relaxed));
        let abort = {
            let mut entries = self.entries.borrow_mut();
            match entries.get_mut(id) {
                Some(e) if Arc::ptr_eq(&e.reply, reply) => {
                    e.abandoned = true;
                    e.abort.take()
                }
                _ => None,
            }
        };
        if let Some(abort) = abort {
            let _ = abort.borrow_back(env).and_then(|f| f.call(()));
        }
    }

    /// `ctx.signal` of step `id` (created on first use).
    fn signal<'e>(&self, env: &'e Env, id: i64) -> napi::Result<Object<'e>> {
        let controller: Function<'_, (), Object<'_>> = typed(&self.helper()?.controller, env)?;
        // [signal, abort]
        let pair = controller.call(())?;
        let signal: Object<'e> = pair.get_element(0)?;
        let abort: Function<'_, (), Unknown<'static>> = pair.get_element(1)?;
        let stop_now = {
            let mut entries = self.entries.borrow_mut();
            match entries.get_mut(id) {
                Some(e) => {
                    if e.abandoned || e.token.is_cancelled() {
                        true
                    } else {
                        e.abort = Some(abort.create_ref()?);
                        false
                    }
                }
                // A condition's ctx, or a step that already settled: a
                // signal that never aborts.
                None => false,
            }
        };
        if stop_now {
            abort.call(())?;
        }
        Ok(signal)
    }

    /// `ctx.fanOut(children)` of step `id`.
    fn fan_out(&self, env: &Env, id: i64, children: Unknown<'_>) -> napi::Result<()> {
        if id < 0 {
            return Err(error::invalid(
                env,
                "ctx.fanOut() cannot be called from a when() condition",
            ));
        }
        let specs = js::array(env, children, "the argument of ctx.fanOut()")?
            .into_iter()
            .enumerate()
            .map(|(i, c)| child_spec(env, c, &format!("ctx.fanOut() child [{i}]")))
            .collect::<napi::Result<Vec<_>>>()?;
        let mut entries = self.entries.borrow_mut();
        let entry = entries.get_mut(id).ok_or_else(|| {
            error::invalid(env, "ctx.fanOut() was called after its step had finished")
        })?;
        entry.children.extend(specs);
        Ok(())
    }
}

const CHILD_KEYS: [&str; 4] = ["fn", "system", "op", "input"];

/// Reads one `{ fn, input }` or `{ system, op, input }`.
fn child_spec(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<ChildSpec> {
    let obj = js::object(env, v, what)?;
    js::check_keys(env, &obj, &CHILD_KEYS, what)?;
    let input = js::get(&obj, "input")?;
    let input = value::from_js(env, input)
        .map_err(|bad| error::invalid(env, bad.message(&format!("input of {what}"))))?;
    let f = js::get(&obj, "fn")?;
    let system = js::opt_string(env, js::get(&obj, "system")?, &format!("system of {what}"))?;
    let op = js::opt_string(env, js::get(&obj, "op")?, &format!("op of {what}"))?;
    match (js::is_nullish(&f), system, op) {
        (false, None, None) => Ok(ChildSpec::Func {
            f: Arc::new(function(env, f, &format!("fn of {what}"))?),
            input,
        }),
        (true, Some(system), Some(op)) => Ok(ChildSpec::Op { system, op, input }),
        _ => Err(error::invalid(
            env,
            format!("{what} must have either fn, or system and op"),
        )),
    }
}

/// `HandlerError::Raised` for what a `Function::call` threw: the thrown value
/// itself is described (its `name` and `message`), as for rejections.
fn thrown(env: &Env, e: napi::Error) -> HandlerError {
    match e.try_clone().and_then(|e| e.into_unknown(env)) {
        Ok(value) => handler::raised(value, None),
        Err(_) => handler::raised_from_error(env, e),
    }
}

/// A JS function argument, kept as a reference.
pub(crate) fn function(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<JsFn> {
    if v.get_type()? != ValueType::Function {
        return Err(error::invalid(
            env,
            format!("{what} must be a function, got {}", js::type_of(&v)),
        ));
    }
    Function::<(), Unknown<'static>>::from_unknown(v)?.create_ref()
}

/// The JS values of a step's `ctx`.
struct CtxArgs<'e> {
    step: Unknown<'e>,
    system: Unknown<'e>,
    op: Unknown<'e>,
    inputs: Unknown<'e>,
    input: Unknown<'e>,
    run_input: Unknown<'e>,
}

impl<'e> CtxArgs<'e> {
    fn new(env: &'e Env, data: &StepData) -> napi::Result<CtxArgs<'e>> {
        let mut inputs = Object::new(env)?;
        for (k, v) in &data.inputs {
            inputs.set_named_property(k, value::to_js(env, v)?)?;
        }
        let inputs = inputs.to_unknown();
        let input = match &data.input {
            Some(v) => value::to_js(env, v)?,
            None => inputs,
        };
        let run_input = match &data.run_input {
            Some(v) => value::to_js(env, v)?,
            None => input,
        };
        Ok(CtxArgs {
            step: data.step.as_str().into_unknown(env)?,
            system: data.system.as_deref().into_unknown(env)?,
            op: data.op.as_deref().into_unknown(env)?,
            inputs,
            input,
            run_input,
        })
    }
}
