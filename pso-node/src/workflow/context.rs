//! The JS thread's half of a step (pso-core `workflow/context.rs`:
//! `StepContext`, `Child`, `CancelToken`): building the JS `ctx`, calling
//! step functions and `when` predicates, settling their Promises,
//! `ctx.signal` and `ctx.fanOut()`. Jobs arrive through
//! [`super::bridge`]; outcomes go back through each job's [`Finish`]: the
//! step's pso-core `Completion` (deferred steps, completed here), or the
//! `Reply` a waiting worker parks on.
//!
//! * A step job calls the function through `context.js`'s `invoke`, which
//!   builds the `ctx` (a small JS class). A synchronous result is converted
//!   and the step completed at once; a Promise is settled later through the
//!   native `settle` callback (a deferred step then shares its completion
//!   with a cancellation hook: [`super::bridge::Pending`]). While a step is
//!   in flight it has an [`Entry`] in the table here, which holds the
//!   children `ctx.fanOut()` added and the abort function of `ctx.signal`
//!   (created on first access).
//! * A condition job calls a `when` predicate, which must decide
//!   synchronously (a Promise is an error).
//! * An abort job (a step was told to stop) aborts `ctx.signal` and marks
//!   the entry abandoned: its late result is dropped.
//!
//! Everything here runs on the JS thread. [`JsSide`] is held by the dispatch
//! tsfn's callback and by the orchestrator; the native callbacks that
//! `context.js` calls hold it weakly (no reference cycle through JS). It
//! never holds a `RefCell` borrow while JS runs (a step may call
//! `ctx.fanOut()`, or even close the orchestrator, from inside).

#![forbid(unsafe_code)]

use std::cell::{OnceCell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak as RcWeak};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use napi::bindgen_prelude::{
    FnArgs, FromNapiValue, Function, FunctionCallContext, FunctionRef, JsObjectValue, JsValue,
    Object, ObjectRef, ToNapiValue, Unknown,
};
use napi::{Env, ValueType};
use pso_core::{CancelToken, Completion, HandlerError, StepContext, Value};

use super::bridge::{Abort, Job, Pending, Reply, Shared, closed_error};
use crate::error;
use crate::model::handler;
use crate::model::js;
use crate::value;

/// A JS function kept alive for later calls (dropping it on any thread is
/// fine: napi-rs routes the release to the JS thread).
pub(crate) type JsFn = FunctionRef<(), Unknown<'static>>;

const SCRIPT: &str = include_str!("context.js");

/// A JS step function (or operation), and how it runs.
pub(crate) struct StepFn {
    pub(crate) f: JsFn,
    /// Run it on a worker that waits for the outcome instead of deferring
    /// the result: its source mentions `fanOut` (pso-core cannot fan out a
    /// deferred step), or it is a fan-out child's function.
    pub(crate) waits: bool,
}

/// What a step function produced: its value and the children it fanned out to.
pub(crate) struct Answer {
    pub(super) value: Value,
    pub(super) children: Vec<ChildSpec>,
}

/// What the JS thread hands back for a job.
pub(crate) type Outcome = Result<Answer, HandlerError>;

/// A fan-out child as `ctx.fanOut()` described it.
pub(crate) enum ChildSpec {
    /// `{ fn, input }`.
    Func { f: Arc<StepFn>, input: Value },
    /// `{ system, op, input }`.
    Op {
        system: String,
        op: String,
        input: Value,
    },
}

/// What a step's `ctx` shows, copied out of the worker's `StepContext`.
pub(crate) struct StepData {
    run: u64,
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
    pub(super) fn of(ctx: &StepContext<'_>) -> StepData {
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
            run: ctx.run_id(),
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

/// The helpers `context.js` returns.
struct Helper {
    invoke: JsFn,
    condition: JsFn,
    controller: JsFn,
    watch: JsFn,
    is_abort_signal: JsFn,
    make_result: Arc<JsFn>,
    noop: JsFn,
}

/// A JS function of a helper, typed for a call.
fn typed<'e, Args: napi::bindgen_prelude::JsValuesTupleIntoVec, R: FromNapiValue>(
    f: &JsFn,
    env: &'e Env,
) -> napi::Result<Function<'e, Args, R>> {
    Function::from_unknown(f.borrow_back(env)?.to_unknown())
}

/// How a step's outcome gets back to pso-core.
pub(super) enum Finish {
    /// A waiting worker's reply, and the step's cancel token.
    Reply(Arc<Reply>, CancelToken),
    /// A deferred step whose function has not returned a pending Promise
    /// (yet): only this thread can complete it.
    Owned(Completion),
    /// A deferred step whose Promise is pending: the completion is shared
    /// with the step's cancellation hook.
    Pending(Arc<Pending>),
    /// Moved out (transiently, while an `Owned` becomes `Pending`).
    Gone,
}

impl Finish {
    /// Hands the outcome to pso-core (or to the waiting worker).
    fn finish(self, outcome: Outcome) {
        match self {
            Finish::Reply(reply, _) => reply.deliver(outcome),
            Finish::Owned(c) => {
                let _ = c.complete(outcome.map(|a| a.value));
            }
            Finish::Pending(p) => {
                if let Some(c) = p.take() {
                    let _ = c.complete(outcome.map(|a| a.value));
                }
            }
            Finish::Gone => {}
        }
    }

    /// Whether the step was told to stop.
    fn is_cancelled(&self) -> bool {
        match self {
            Finish::Reply(_, token) => token.is_cancelled(),
            Finish::Owned(c) => c.is_cancelled(),
            Finish::Pending(p) => p.is_cancelled(),
            Finish::Gone => true,
        }
    }

    fn is_deferred(&self) -> bool {
        !matches!(self, Finish::Reply(..))
    }
}

/// A step in flight on the JS side.
struct Entry {
    finish: Finish,
    run: u64,
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

/// Runs `f` in a native callback, turning a panic into a `PSO_INTERNAL` error
/// (a panic must never unwind into Node).
fn guarded<T>(env: &Env, f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(error::internal(env, panic)))
}

fn id_arg(ctx: &FunctionCallContext<'_>) -> napi::Result<i64> {
    let v: Unknown<'_> = ctx.get(0)?;
    Ok(v.coerce_to_number()?.get_double()? as i64)
}

impl JsSide {
    /// Evaluates `context.js` with the native callbacks it needs. Returns the
    /// JS half and the no-op function the dispatch tsfn is built on.
    pub(super) fn new(env: &Env) -> napi::Result<(Rc<JsSide>, JsFn)> {
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
            noop: get("noop")?,
        };
        let _ = js.helper.set(helper);
        let noop = get("noop")?;
        Ok((js, noop))
    }

    /// Clears an exception a failed N-API call left pending (calling any
    /// function reports and clears it) and describes it.
    pub(crate) fn take_exception(&self, env: &Env) -> Option<String> {
        let noop: Function<'_, (), Unknown<'_>> = typed(&self.helper().ok()?.noop, env).ok()?;
        match noop.call(()) {
            Ok(_) => None,
            Err(e) => Some(thrown(env, e).to_string()),
        }
    }

    /// [`value::from_js`], clearing what a throwing getter left pending.
    pub(crate) fn value_from_js(
        &self,
        env: &Env,
        v: Unknown<'_>,
    ) -> Result<Value, value::Unsupported> {
        value::from_js(env, v, &|| self.take_exception(env))
    }

    /// `context.js`'s `makeResult(base, load)`, for settling runs.
    pub(crate) fn make_result(&self) -> napi::Result<Arc<JsFn>> {
        Ok(self.helper()?.make_result.clone())
    }

    /// `signal instanceof AbortSignal`.
    pub(crate) fn is_abort_signal(&self, env: &Env, v: Unknown<'_>) -> napi::Result<bool> {
        let f: Function<'_, Unknown<'_>, bool> = typed(&self.helper()?.is_abort_signal, env)?;
        f.call(v)
    }

    /// Makes `signal` call `cancel` (now, if it is aborted already). Returns
    /// the function that stops listening, to call when the run is done.
    pub(crate) fn watch(
        &self,
        env: &Env,
        signal: Unknown<'_>,
        cancel: Function<'_, (), bool>,
    ) -> napi::Result<Option<JsFn>> {
        type Watch<'e> = FnArgs<(Unknown<'e>, Function<'e, (), bool>)>;
        let f: Function<'_, Watch<'_>, Unknown<'_>> = typed(&self.helper()?.watch, env)?;
        let unwatch = f.call(FnArgs::from((signal, cancel)))?;
        if unwatch.get_type()? != ValueType::Function {
            return Ok(None);
        }
        Function::<(), Unknown<'static>>::from_unknown(unwatch)?
            .create_ref()
            .map(Some)
    }
}

impl JsSide {
    fn helper(&self) -> napi::Result<&Helper> {
        self.helper
            .get()
            .ok_or_else(|| napi::Error::from_reason("the step bridge is not set up"))
    }

    /// Fails every step in flight; returns the aborts of their signals.
    pub(super) fn fail_all(&self) -> Vec<JsFn> {
        let entries = std::mem::take(&mut *self.entries.borrow_mut());
        let mut aborts = Vec::new();
        for e in entries.slots.into_iter().flatten() {
            e.finish.finish(Err(closed_error()));
            aborts.extend(e.abort);
        }
        aborts
    }

    pub(super) fn run(&self, env: &Env, shared: &Arc<Shared>, job: Job, closed: bool) {
        if closed {
            match job {
                Job::Abort(a) => self.abort(env, a),
                job => job.fail(closed_error()),
            }
            return;
        }
        match job {
            Job::Deferred {
                f,
                data,
                completion,
            } => self.start_step(env, shared, &f.f, data, Finish::Owned(completion)),
            Job::Step {
                f,
                data,
                token,
                reply,
            } => {
                if !reply.is_abandoned() {
                    self.start_step(env, shared, &f.f, data, Finish::Reply(reply, token));
                }
            }
            Job::Condition { f, data, reply } => {
                let outcome = self.call_condition(env, &f, &data);
                reply.deliver(outcome.map(|b| Answer {
                    value: Value::Bool(b),
                    children: Vec::new(),
                }));
            }
            Job::Abort(a) => self.abort(env, a),
        }
    }

    fn start_step(
        &self,
        env: &Env,
        shared: &Arc<Shared>,
        f: &JsFn,
        data: StepData,
        finish: Finish,
    ) {
        if finish.is_cancelled() {
            // Stopped before it started (a pre-aborted signal, say): do not
            // call the function at all.
            finish.finish(Err(HandlerError::failed(
                "the run was stopped before this step's JS function started",
            )));
            return;
        }
        let args = match CtxArgs::new(env, &data) {
            Ok(a) => a,
            Err(e) => {
                finish.finish(Err(HandlerError::failed(format!(
                    "cannot pass the inputs of step '{}' to JS: {}",
                    data.step, e.reason
                ))));
                return;
            }
        };
        let reply = match &finish {
            Finish::Reply(reply, _) => Some(reply.clone()),
            _ => None,
        };
        let id = self.entries.borrow_mut().insert(Entry {
            finish,
            run: data.run,
            step: data.step,
            abort: None,
            children: Vec::new(),
            abandoned: false,
        });
        if let Some(reply) = reply {
            reply.js_id.store(id, Ordering::Relaxed);
        }
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
            Ok(v) if v.get_type().ok() == Some(ValueType::Symbol) => self.pending(shared, id),
            Ok(v) => self.settle(env, id, Ok(v)),
            Err(e) => {
                let error = thrown(env, e);
                let _ = self.take_exception(env);
                let entry = self.entries.borrow_mut().remove(id);
                if let Some(entry) = entry {
                    entry.finish.finish(Err(error));
                }
            }
        }
    }

    /// Step `id` returned a Promise that is still pending: if it is deferred,
    /// its completion is shared with a cancellation hook from now on.
    fn pending(&self, shared: &Arc<Shared>, id: i64) {
        let (c, run) = {
            let mut entries = self.entries.borrow_mut();
            // Gone if it settled already (a throw reported through `settle`).
            let Some(e) = entries.get_mut(id) else { return };
            match std::mem::replace(&mut e.finish, Finish::Gone) {
                Finish::Owned(c) => (c, e.run),
                other => {
                    e.finish = other;
                    return;
                }
            }
        };
        let p = Pending::new(run, id as u32);
        if let Some(e) = self.entries.borrow_mut().get_mut(id) {
            e.finish = Finish::Pending(p.clone());
        }
        // Registering may run the hook at once (on this thread), which
        // touches no entry: it ends the step and queues the abort.
        shared.pending(&p, c);
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
        // A deferred step cannot fan out (`fan_out` refuses), so children
        // only come back to a waiting worker.
        let outcome = match outcome {
            Ok(v) => match self.value_from_js(env, v) {
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
            Err(thrown) => {
                let e = handler::raised(thrown, None);
                // Describing it may have run a throwing `name` getter.
                let _ = self.take_exception(env);
                Err(e)
            }
        };
        entry.finish.finish(outcome);
    }

    /// A step was told to stop: abort its `ctx.signal`.
    fn abort(&self, env: &Env, which: Abort) {
        if let Some(abort) = self.abandon(which) {
            let _ = abort.borrow_back(env).and_then(|f| f.call(()));
        }
    }

    /// Marks the entry of a step that was told to stop as abandoned (its
    /// late result is ignored); returns the abort of its `ctx.signal`.
    pub(super) fn abandon(&self, which: Abort) -> Option<JsFn> {
        let id = i64::from(match &which {
            Abort::Reply(r) => r.js_id.load(Ordering::Relaxed),
            Abort::Pending(p) => p.js_id.load(Ordering::Relaxed),
        });
        let mut entries = self.entries.borrow_mut();
        let e = entries.get_mut(id)?;
        let same = match (&which, &e.finish) {
            (Abort::Reply(a), Finish::Reply(b, _)) => Arc::ptr_eq(a, b),
            (Abort::Pending(a), Finish::Pending(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same {
            return None;
        }
        e.abandoned = true;
        e.abort.take()
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
                    if e.abandoned || e.finish.is_cancelled() {
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
            .map(|(i, c)| self.child_spec(env, c, &format!("ctx.fanOut() child [{i}]")))
            .collect::<napi::Result<Vec<_>>>()?;
        let mut entries = self.entries.borrow_mut();
        let entry = entries.get_mut(id).ok_or_else(|| {
            error::invalid(env, "ctx.fanOut() was called after its step had finished")
        })?;
        if entry.finish.is_deferred() {
            return Err(error::invalid(
                env,
                format!(
                    "ctx.fanOut() in step '{}': this step's function was run deferred (no worker waits for it), \
                     and pso-core cannot fan out a deferred step. A step function runs on a waiting worker, \
                     and may fan out, when its own source text mentions fanOut (call ctx.fanOut there, \
                     not only in a helper it calls)",
                    entry.step
                ),
            ));
        }
        entry.children.extend(specs);
        Ok(())
    }
}

const CHILD_KEYS: [&str; 4] = ["fn", "system", "op", "input"];

impl JsSide {
    /// Reads one `{ fn, input }` or `{ system, op, input }`.
    fn child_spec(&self, env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<ChildSpec> {
        let obj = js::object(env, v, what)?;
        js::check_keys(env, &obj, &CHILD_KEYS, what)?;
        let input = js::get(&obj, "input")?;
        let input = self
            .value_from_js(env, input)
            .map_err(|bad| error::invalid(env, bad.message(&format!("input of {what}"))))?;
        let f = js::get(&obj, "fn")?;
        let system = js::opt_string(env, js::get(&obj, "system")?, &format!("system of {what}"))?;
        let op = js::opt_string(env, js::get(&obj, "op")?, &format!("op of {what}"))?;
        match (js::is_nullish(&f), system, op) {
            (false, None, None) => Ok(ChildSpec::Func {
                // A child cannot defer its result: its worker waits.
                f: Arc::new(StepFn {
                    f: function(env, f, &format!("fn of {what}"))?,
                    waits: true,
                }),
                input,
            }),
            (true, Some(system), Some(op)) => Ok(ChildSpec::Op { system, op, input }),
            _ => Err(error::invalid(
                env,
                format!("{what} must have either fn, or system and op"),
            )),
        }
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

/// A step function or operation argument (see [`StepFn`]).
pub(crate) fn step_function(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<StepFn> {
    if v.get_type()? != ValueType::Function {
        return Err(error::invalid(
            env,
            format!("{what} must be a function, got {}", js::type_of(&v)),
        ));
    }
    let waits = mentions_fan_out(env, &v);
    Ok(StepFn {
        f: function(env, v, what)?,
        waits,
    })
}

/// Whether the source text of function `f` mentions `fanOut`
/// (`Function.prototype.toString`, which cannot be overridden by `f`). When
/// that cannot be told, it is assumed to, so fan-out keeps working.
fn mentions_fan_out(env: &Env, f: &Unknown<'_>) -> bool {
    let source = (|| -> napi::Result<String> {
        // `Function` and `Function.prototype` are both functions.
        let function: Unknown<'_> = env.get_global()?.get_named_property("Function")?;
        let proto: Unknown<'_> = function
            .coerce_to_object()?
            .get_named_property("prototype")?;
        let to_string: Function<'_, (), String> =
            proto.coerce_to_object()?.get_named_property("toString")?;
        to_string.apply(*f, ())
    })();
    source.map_or(true, |s| s.contains("fanOut"))
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
            value::set_key(&mut inputs, k, value::to_js(env, v)?)?;
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
