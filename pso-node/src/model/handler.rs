//! JS lifecycle handlers, run by pso-core's worker threads.
//!
//! A handler is a JS function `(system) => void | Promise<void>`. pso-core
//! calls it on a worker thread and expects a blocking answer, so the worker:
//!
//! 1. queues a call on a *weak* thread-safe function (it never keeps the
//!    event loop alive by itself: while a lifecycle call is pending, its
//!    Promise does that; after `close()` nothing does);
//! 2. on the JS thread, the function runs; a throw is captured at once; a
//!    returned Promise gets `then`/`catch` callbacks; anything else is success;
//! 3. the outcome comes back over a channel. The worker waits until the
//!    system's deadline (`LifecycleContext::deadline`), then keeps polling
//!    until pso-core has marked the handler abandoned, so an overrun is always
//!    reported as `timed_out` (never as a failure that races the timeout) and
//!    a handler whose Promise never settles cannot hold a worker forever.
//!
//! A throw or rejection becomes `HandlerError::Raised` with the error's
//! `name` and `message` and, as payload, the thrown value itself
//! ([`JsCause`]), which becomes `err.cause` of the `PSO_HANDLER_FAILED` error.
//!
//! # Re-entrancy
//! pso-core refuses a lifecycle call made from inside a lifecycle handler of
//! the same orchestrator (`PSO_BUSY`), detected with a thread-local on the
//! worker thread. JS handlers run on the JS thread, and lifecycle calls are
//! started from a helper thread, so that cannot see them. Instead every
//! handler runs inside an `AsyncLocalStorage` context (Node's
//! `node:async_hooks`, one per environment) whose store is a per-handler
//! token: an array holding one entry per invocation that has not settled
//! yet, tagged with its orchestrator's id. The context follows the handler
//! through `await`s, timers and callbacks; a lifecycle call on that
//! orchestrator made where the token is non-empty fails with `PSO_BUSY`
//! instead of waiting for itself. Once the handler has settled, work it
//! scheduled (a `setInterval` health check, say) may make lifecycle calls
//! again; other orchestrators may be driven from a handler at any time.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{
    CallbackContext, FnArgs, Function, FunctionRef, JsObjectValue, JsValue, Null, Object,
    PromiseRaw, ToNapiValue, Unknown,
};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, ValueType};
use pso_core::{HandlerError, HostPayload, LifecycleContext, LifecycleFn};

use crate::error::JsCause;
use crate::model::js::type_of;

/// A JS handler as napi-rs sees it: called with the system name.
pub(crate) type JsHandler<'e> = Function<'e, String, Unknown<'static>>;

/// Weak (does not keep the loop alive), errors not passed as a first argument.
type HandlerTsfn = ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true>;

type Outcome = Result<(), HandlerError>;

/// How often a worker looks again once its handler's deadline has passed.
const ABANDON_POLL: Duration = Duration::from_millis(2);

/// `als.run` and `als.getStore` of the environment's `AsyncLocalStorage`,
/// bound to it. Kept as the environment's instance data (freed with it).
struct Storage {
    run: FunctionRef<(), Unknown<'static>>,
    get_store: FunctionRef<(), Unknown<'static>>,
}

impl Storage {
    fn new(env: &Env) -> napi::Result<Storage> {
        let global = env.get_global()?;
        let process: Object<'_> = global.get_named_property("process")?;
        let get_builtin: Function<'_, String, Object<'_>> =
            process.get_named_property("getBuiltinModule")?;
        let hooks = get_builtin.apply(process, "node:async_hooks".to_owned())?;
        let ctor: Function<'_, (), Unknown<'_>> = hooks.get_named_property("AsyncLocalStorage")?;
        let als = ctor.new_instance(())?.coerce_to_object()?;
        let run: Function<'_, (), Unknown<'static>> = als.get_named_property("run")?;
        let get_store: Function<'_, (), Unknown<'static>> = als.get_named_property("getStore")?;
        Ok(Storage {
            run: run.bind(als)?.create_ref()?,
            get_store: get_store.bind(als)?.create_ref()?,
        })
    }

    /// The environment's storage, created on first use. `None` without
    /// `process.getBuiltinModule` (Node < 20.16): handlers then run unscoped,
    /// and a lifecycle call from inside a handler waits for the handler's
    /// timeout instead of failing fast.
    fn of(env: &Env) -> Option<&'static Storage> {
        if let Ok(Some(storage)) = env.get_instance_data::<Option<Storage>>() {
            return storage.as_ref();
        }
        env.set_instance_data(Storage::new(env).ok(), (), |_| {})
            .ok()?;
        env.get_instance_data::<Option<Storage>>()
            .ok()
            .flatten()
            .and_then(|s| s.as_ref())
    }
}

/// The token property naming the orchestrator a handler belongs to.
const OWNER: &str = "orchestrator";

/// Whether the JS code running now is (asynchronously) inside a lifecycle
/// handler of orchestrator `owner` that has not settled yet.
pub(crate) fn inside_handler(env: &Env, owner: u32) -> bool {
    let Some(storage) = Storage::of(env) else {
        return false;
    };
    let store = storage.get_store.borrow_back(env).and_then(|f| f.call(()));
    let Ok(token) = store else {
        return false;
    };
    if !token.is_array().unwrap_or(false) {
        return false;
    }
    let Ok(token) = token.coerce_to_object() else {
        return false;
    };
    let pending = token.get_array_length().is_ok_and(|n| n > 0);
    let ours = token
        .get_named_property::<Unknown<'_>>(OWNER)
        .ok()
        .filter(|v| v.get_type().ok() == Some(ValueType::Number))
        .and_then(|v| v.coerce_to_number().and_then(|n| n.get_uint32()).ok())
        == Some(owner);
    pending && ours
}

/// The token of one handler: `enter` pushes an entry before each call,
/// `leave` pops one when that call has settled.
struct Token {
    enter: FunctionRef<u32, Unknown<'static>>,
    leave: FunctionRef<(), Unknown<'static>>,
}

impl Token {
    // `Function::call` clears a pending exception, so neither can leave one
    // behind on the JS thread (there is none to expect from push/pop).
    fn enter(&self, env: &Env) {
        let _ = self.enter.borrow_back(env).and_then(|f| f.call(1));
    }

    fn leave(&self, env: &Env) {
        let _ = self.leave.borrow_back(env).and_then(|f| f.call(()));
    }
}

/// Wraps the JS function `f` as a lifecycle handler of orchestrator `owner`.
pub(crate) fn lifecycle_fn(env: &Env, owner: u32, f: JsHandler<'_>) -> napi::Result<LifecycleFn> {
    let Some(storage) = Storage::of(env) else {
        let tsfn: HandlerTsfn = f
            .build_threadsafe_function::<String>()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?;
        let tsfn = Arc::new(tsfn);
        return Ok(Arc::new(move |ctx: &LifecycleContext<'_>| {
            call(&tsfn, None, ctx)
        }));
    };
    let mut token = Vec::<u32>::new().into_unknown(env)?.coerce_to_object()?;
    token.set_named_property(OWNER, owner)?;
    let push: Function<'_, u32, Unknown<'static>> = token.get_named_property("push")?;
    let pop: Function<'_, (), Unknown<'static>> = token.get_named_property("pop")?;
    let scope = Arc::new(Token {
        enter: push.bind(token)?.create_ref()?,
        leave: pop.bind(token)?.create_ref()?,
    });
    // `als.run.bind(als).bind(null, token, f)`: called with `system`, it runs
    // `f(system)` with `token` as the store.
    let run = storage.run.borrow_back(env)?;
    let bind: Function<'_, FnArgs<(Null, Object<'_>, JsHandler<'_>)>, JsHandler<'_>> =
        run.get_named_property("bind")?;
    let scoped = bind.apply(run, FnArgs::from((Null, token, f)))?;
    let entering = scope.clone();
    let tsfn: HandlerTsfn = scoped
        .build_threadsafe_function::<String>()
        .weak::<true>()
        .callee_handled::<false>()
        .build_callback(move |ctx| {
            // On the JS thread, right before the handler runs.
            entering.enter(&ctx.env);
            Ok(ctx.value)
        })?;
    let tsfn = Arc::new(tsfn);
    Ok(Arc::new(move |ctx: &LifecycleContext<'_>| {
        call(&tsfn, Some(scope.clone()), ctx)
    }))
}

/// Runs on a pso-core worker: calls the JS handler and waits for its outcome.
fn call(tsfn: &HandlerTsfn, token: Option<Arc<Token>>, ctx: &LifecycleContext<'_>) -> Outcome {
    let (tx, rx) = mpsc::channel::<Outcome>();
    let status = tsfn.call_with_return_value(
        ctx.system().to_owned(),
        ThreadsafeFunctionCallMode::NonBlocking,
        move |ret, env| {
            settle(&env, ret, tx, token);
            // An `Err` here would go to `napi_fatal_exception`: never return one.
            Ok(())
        },
    );
    if status != Status::Ok {
        return Err(HandlerError::failed(format!(
            "cannot call the JS {} handler of {}: the Node.js environment is shutting down ({status})",
            ctx.action(),
            ctx.system()
        )));
    }
    wait(&rx, ctx)
}

/// Waits for the JS outcome until pso-core gives up on this handler.
fn wait(rx: &Receiver<Outcome>, ctx: &LifecycleContext<'_>) -> Outcome {
    let started = Instant::now();
    // False once every sender is gone without an answer: the handler's Promise
    // was collected without settling, so it never will.
    let mut listening = true;
    loop {
        let now = Instant::now();
        let deadline = ctx.deadline();
        if now >= deadline && ctx.abandoned() {
            // pso-core already recorded the timeout and ignores this result,
            // but notes it in `last_error` ("... returned after ... with
            // error: <this>"), so say the same thing it said.
            let timeout = deadline.saturating_duration_since(started);
            return Err(HandlerError::TimedOut {
                after: Duration::from_millis(timeout.as_secs_f64().mul_add(1000.0, 0.5) as u64),
            });
        }
        let slice = if now < deadline {
            deadline - now
        } else {
            ABANDON_POLL
        };
        if listening {
            match rx.recv_timeout(slice) {
                Ok(outcome) => return outcome,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => listening = false,
            }
        } else {
            std::thread::sleep(slice);
        }
    }
}

/// On the JS thread: turns what the handler did into an outcome, and leaves
/// the handler's token once that outcome is known.
fn settle(
    env: &Env,
    ret: napi::Result<Unknown<'static>>,
    tx: Sender<Outcome>,
    token: Option<Arc<Token>>,
) {
    let leave = |env: &Env, token: &Option<Arc<Token>>| {
        if let Some(t) = token {
            t.leave(env);
        }
    };
    let value = match ret {
        Ok(value) => value,
        Err(thrown) => {
            leave(env, &token);
            let _ = tx.send(Err(raised_from_error(env, thrown)));
            return;
        }
    };
    if !value.is_promise().unwrap_or(false) {
        leave(env, &token);
        let _ = tx.send(Ok(()));
        return;
    }
    let (on_error, token_on_error) = (tx.clone(), token.clone());
    if let Err(e) = await_promise(env, value, tx, token) {
        leave(env, &token_on_error);
        let _ = on_error.send(Err(HandlerError::failed(format!(
            "cannot wait for the Promise the handler returned: {e}"
        ))));
    }
}

fn await_promise(
    env: &Env,
    value: Unknown<'_>,
    tx: Sender<Outcome>,
    token: Option<Arc<Token>>,
) -> napi::Result<()> {
    let promise = PromiseRaw::<Unknown<'_>>::new(env.raw(), value.raw());
    let (resolved, token_resolved) = (tx.clone(), token.clone());
    let then = promise.then(move |ctx: CallbackContext<Unknown<'_>>| {
        if let Some(t) = &token_resolved {
            t.leave(&ctx.env);
        }
        let _ = resolved.send(Ok(()));
        Ok(())
    })?;
    then.catch(move |ctx: CallbackContext<Unknown<'_>>| {
        if let Some(t) = &token {
            t.leave(&ctx.env);
        }
        let error = raised(ctx.value, None);
        let _ = tx.send(Err(error));
        Ok(())
    })?;
    Ok(())
}

/// A synchronous throw, captured by napi-rs as an `Error` that holds the
/// thrown value.
pub(crate) fn raised_from_error(env: &Env, thrown: napi::Error) -> HandlerError {
    let reason = thrown.reason.clone();
    match thrown.try_clone().and_then(|e| e.into_unknown(env)) {
        Ok(value) => raised(value, Some(thrown)),
        Err(_) => HandlerError::Raised {
            type_name: "Error".to_owned(),
            message: reason,
            payload: Some(HostPayload::new(JsCause(thrown))),
        },
    }
}

/// `HandlerError::Raised` for the thrown (or rejected-with) JS `value`.
pub(crate) fn raised(value: Unknown<'_>, holder: Option<napi::Error>) -> HandlerError {
    // Reads `message` as a data property only (no user getters run).
    let holder = holder.unwrap_or_else(|| napi::Error::from_unknown_without_coercion(value));
    let (type_name, message) = describe(&value, &holder.reason);
    HandlerError::Raised {
        type_name,
        message,
        payload: Some(HostPayload::new(JsCause(holder))),
    }
}

/// The type name and message of a thrown value: `name` and `message` for an
/// `Error`, else its `typeof` and its text.
fn describe(value: &Unknown<'_>, message: &str) -> (String, String) {
    let ty = value.get_type().unwrap_or(ValueType::Unknown);
    if ty == ValueType::Object && value.is_error().unwrap_or(false) {
        let name = value
            .coerce_to_object()
            .and_then(|o| o.get_named_property::<Unknown<'_>>("name"))
            .ok()
            .filter(|n| n.get_type().ok() == Some(ValueType::String))
            .and_then(|n| {
                n.coerce_to_string()
                    .and_then(|s| s.into_utf8()?.into_owned())
                    .ok()
            })
            .unwrap_or_else(|| "Error".to_owned());
        return (name, message.to_owned());
    }
    let text = match ty {
        // Coercing these never runs user code.
        ValueType::Undefined
        | ValueType::Null
        | ValueType::Boolean
        | ValueType::Number
        | ValueType::String
        | ValueType::BigInt => value
            .coerce_to_string()
            .and_then(|s| s.into_utf8()?.into_owned())
            .unwrap_or_default(),
        _ => "a non-Error value was thrown".to_owned(),
    };
    (type_of(value).to_owned(), text)
}
