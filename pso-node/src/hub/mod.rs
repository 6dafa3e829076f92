//! The hub: the Node column of docs/API.md, "Hub, coordination modes and
//! state" (pso-core `hub/`). `o.hub` is a `Hub` over the orchestrator's
//! pso-core hub.
//!
//! # Never blocking the JS thread
//! * `publish` may wait (a full queue with the `block` policy), so it runs
//!   on the hub's publisher thread (`pso-node-publish`, one per
//!   orchestrator, started on first use): publishes from JS are carried out
//!   one at a time in call order, so per-topic order is the call order. The
//!   returned Promise settles with the number of subscriptions that queued
//!   the message.
//! * `request` and `requestMany` wait for replies on a thread of their own
//!   (`pso-node-request`), one per call; the Promise settles from it.
//! * Every subscription is a pso-core *pull* subscription read through an
//!   [`Inbox`](crate::pump::Inbox): `recv()` and the async iterator settle
//!   Promises from the inbox. A callback subscription is the same inbox
//!   drained by a small JS loop (`CALLBACK_LOOP`) that calls the callback
//!   with each message on the JS thread and awaits a returned Promise before
//!   the next one. So no pso-core worker ever waits for JS, messages reach
//!   the callback one at a time in publish order, and the bounded queue and
//!   its overflow policy apply while the callback is busy.
//!
//! # Callback errors
//! A throw or rejection of a callback is counted in the subscription's
//! `errors` (this binding keeps that count, since pso-core sees a pull
//! receiver) and reported: to `options.onError(err, msg)` if given, else as
//! a process warning (`process.emitWarning`, name `PsoCallbackError`, code
//! `PSO_HANDLER_FAILED`, `cause` the thrown value). It never crashes the
//! process, and delivery goes on.
//!
//! # Lifetimes
//! A callback subscription keeps the event loop alive (its pending read
//! does) until `unsubscribe()`, `[Symbol.dispose]()` or the orchestrator's
//! `close()`; it is not ended by garbage collection (the callback is still
//! wanted). A pull subscription keeps the loop alive only while a read is
//! pending, and ends when collected.

pub(crate) mod message;
pub(crate) mod options;
pub(crate) mod status;
pub(crate) mod subscription;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread;
use std::time::Duration;

use napi::bindgen_prelude::{
    Function, JavaScriptClassExt, JsObjectValue, JsValue, Object, ToNapiValue, Unknown,
};
use napi::{Env, ValueType};
use napi_derive::napi;
use pso_core::{Gather, HubError, Orchestrator, Value};

pub use self::options::{JsHubOptions, JsSubscribeOptions};
pub(crate) use self::options::{hub_config, overflow_name};

use self::message::JsMessage;
use self::options::sub_options;
use self::status::JsSubscriptionStatus;
use self::subscription::JsSubscription;
use crate::error;
use crate::model::js::{self, check_keys, get};
use crate::orchestrator::{JsOrchestrator, guard};
use crate::settle::{self, Ticket};

/// `publish(topic, payload, options)`.
#[napi(
    object,
    js_name = "PublishOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsPublishOptions {
    /// The sending system (receivers see it; counts on edge rates).
    pub sender: Option<String>,
}

/// `request(topic, payload, options)`.
#[napi(
    object,
    js_name = "RequestOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsRequestOptions {
    /// How long to wait for the reply (default 1000).
    pub timeout_ms: Option<f64>,
    /// The requesting system.
    pub sender: Option<String>,
}

/// `requestMany(topic, payload, options)`.
#[napi(
    object,
    js_name = "RequestManyOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsRequestManyOptions {
    /// Gather replies for at most this long (required).
    pub timeout_ms: f64,
    /// Stop after this many replies.
    pub max: Option<u32>,
    /// Stop when no reply came for this long after the last one.
    pub quiet_ms: Option<f64>,
}

/// The default of `request`'s `timeoutMs` (as Python's `timeout=1.0`).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce() + Send>;

/// What every `Hub` object of one orchestrator shares.
pub(crate) struct HubShared {
    pub(crate) core: Orchestrator,
    publisher: Mutex<Option<Sender<Job>>>,
    /// Errors of callback subscriptions, by subscription id.
    pub(crate) callbacks: Mutex<HashMap<u64, Arc<AtomicU64>>>,
    /// What `close()` must end that pso-core does not: state watches (the
    /// store outlives the orchestrator).
    pub(crate) on_close: Mutex<Vec<Weak<dyn Stop>>>,
}

/// Something `close()` ends.
pub(crate) trait Stop: Send + Sync {
    fn stop(&self);
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Shared hub state by orchestrator id; removed on `close()`.
fn registry() -> &'static Mutex<HashMap<u32, Arc<HubShared>>> {
    static HUBS: OnceLock<Mutex<HashMap<u32, Arc<HubShared>>>> = OnceLock::new();
    HUBS.get_or_init(Default::default)
}

/// The shared hub state of orchestrator `id`.
pub(crate) fn shared(id: u32, core: &Orchestrator) -> Arc<HubShared> {
    lock(registry())
        .entry(id)
        .or_insert_with(|| {
            Arc::new(HubShared {
                core: core.clone(),
                publisher: Mutex::new(None),
                callbacks: Mutex::new(HashMap::new()),
                on_close: Mutex::new(Vec::new()),
            })
        })
        .clone()
}

/// Forgets orchestrator `id` (its `close()`): the publisher thread ends
/// once its queued publishes are done.
pub(crate) fn forget(id: u32) {
    let gone = lock(registry()).remove(&id);
    if let Some(s) = gone {
        lock(&s.publisher).take();
        let stops = std::mem::take(&mut *lock(&s.on_close));
        for s in stops.iter().filter_map(Weak::upgrade) {
            s.stop();
        }
    }
}

impl HubShared {
    /// Queues `job` on the publisher thread (started on first use).
    fn publish_job(&self, job: Job) -> Result<(), String> {
        let mut p = lock(&self.publisher);
        if let Some(tx) = p.as_ref() {
            return tx
                .send(job)
                .map_err(|_| "the publisher thread is gone".to_owned());
        }
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("pso-node-publish".to_owned())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .map_err(|e| format!("cannot start the publisher thread: {e}"))?;
        tx.send(job)
            .map_err(|_| "the publisher thread is gone".to_owned())?;
        *p = Some(tx);
        Ok(())
    }
}

/// A hub error as a JS error: `topic` where it names one; `token`, `index`
/// and `input` for a bad topic or pattern; `subscription`, `pattern`,
/// `capacity`, `timedOut`, `delivered` for an overflow.
pub(crate) fn hub_error(env: &Env, e: &HubError) -> napi::Error {
    error::make(
        env,
        pso_core::PsoError::kind(e),
        &e.to_string(),
        |_, obj| {
            match e {
                HubError::InvalidTopic {
                    input,
                    token,
                    index,
                    ..
                } => {
                    obj.set_named_property("input", input.as_str())?;
                    obj.set_named_property("token", token.as_str())?;
                    obj.set_named_property("index", *index as u32)?;
                }
                HubError::NoResponders { topic }
                | HubError::Timeout { topic, .. }
                | HubError::NotARequest { topic } => {
                    obj.set_named_property("topic", topic.as_str())?;
                }
                HubError::Unanswered { topic, receivers } => {
                    obj.set_named_property("topic", topic.as_str())?;
                    obj.set_named_property("receivers", *receivers as u32)?;
                }
                HubError::Overflow {
                    topic,
                    subscription,
                    pattern,
                    capacity,
                    timed_out,
                    delivered,
                } => {
                    obj.set_named_property("topic", topic.as_str())?;
                    obj.set_named_property("subscription", subscription.0 as f64)?;
                    obj.set_named_property("pattern", pattern.as_str())?;
                    obj.set_named_property("capacity", *capacity as f64)?;
                    obj.set_named_property("timedOut", *timed_out)?;
                    obj.set_named_property("delivered", *delivered as f64)?;
                }
                _ => {}
            }
            Ok(())
        },
    )
}

/// A JS value as a payload (`what` names it in the error).
pub(crate) fn payload(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Value> {
    crate::value::from_js(env, v, &|| take_exception(env))
        .map_err(|bad| error::invalid(env, bad.message(what)))
}

/// Clears an exception a throwing getter left pending, describing it.
pub(crate) fn take_exception(env: &Env) -> Option<String> {
    // Calling any function reports (and clears) a pending exception.
    let f: Function<'_, (), ()> = env
        .create_function_from_closure("pso_noop", |_| Ok(()))
        .ok()?;
    match f.call(()) {
        Ok(()) => None,
        Err(e) => Some(e.reason),
    }
}

/// The orchestrator's hub: publish/subscribe on dot-separated topics
/// (`*` one token, `>` the rest), queue groups, request/reply, direct
/// channels and meshes. Get it as `o.hub`.
#[napi(js_name = "Hub")]
pub struct JsHub {
    pub(crate) shared: Arc<HubShared>,
}

impl std::fmt::Debug for JsHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl JsHub {
    /// The core orchestrator, or `PSO_CLOSED`.
    pub(crate) fn core(&self, env: &Env) -> napi::Result<&Orchestrator> {
        if self.shared.core.is_closed() {
            Err(error::closed(env))
        } else {
            Ok(&self.shared.core)
        }
    }
}

/// Runs `f` on a thread of its own; its result settles the Promise of
/// `ticket` through `settle` (on the JS thread).
fn on_thread<T: Send + 'static>(
    env: &Env,
    ticket: Ticket,
    f: impl FnOnce() -> T + Send + 'static,
    to_js: impl for<'e> FnOnce(&'e Env, T) -> napi::Result<Unknown<'e>> + Send + 'static,
) {
    let slot = Arc::new(Mutex::new(Some(ticket)));
    let thread_slot = slot.clone();
    let spawned = thread::Builder::new()
        .name("pso-node-request".to_owned())
        .spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            if let Some(t) = lock(&thread_slot).take() {
                t.settle(Box::new(move |env: &Env| match out {
                    Ok(v) => to_js(env, v),
                    Err(panic) => Err(error::internal(env, panic)),
                }));
            }
        });
    if let Err(e) = spawned
        && let Some(t) = lock(&slot).take()
    {
        let e = error::io(env, format!("cannot start a request thread: {e}"));
        settle::settle_now(env, t, settle::reject(e));
    }
}

/// A `Message` instance.
pub(crate) fn message_js(env: &Env, m: pso_core::Message) -> napi::Result<Unknown<'_>> {
    Ok(JsMessage::new(m)
        .into_instance(env)?
        .as_object(env)
        .to_unknown())
}

fn sender_opt(
    env: &Env,
    options: Option<Unknown<'_>>,
    keys: &[&str],
) -> napi::Result<Option<String>> {
    let Some(obj) = js::opt_object(env, options, "options")? else {
        return Ok(None);
    };
    check_keys(env, &obj, keys, "options")?;
    js::opt_string(env, get(&obj, "sender")?, "options.sender")
}

#[napi]
impl JsHub {
    /// Publishes `payload` on `topic`. Resolves with the number of
    /// subscriptions that queued it (0 when nobody listens). Rejects with
    /// `PSO_INVALID_ARGUMENT` (a bad topic, naming the token), `PSO_OVERFLOW`
    /// (a subscription with the `error` policy, or `block` after its
    /// timeout, refused it; the others still got it), `PSO_CLOSED`.
    #[napi(
        ts_args_type = "topic: string, payload?: ValueInput, options?: PublishOptions",
        ts_return_type = "Promise<number>"
    )]
    pub fn publish<'e>(
        &self,
        env: &'e Env,
        topic: Unknown<'_>,
        payload_arg: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Object<'e>> {
        let (ticket, promise) = settle::promise(env)?;
        let prepared = guard(env, || {
            let core = self.core(env)?.clone();
            let topic = js::string(env, topic, "topic")?;
            let v = match payload_arg {
                Some(p) => payload(env, p, "the payload")?,
                None => Value::Null,
            };
            let sender = sender_opt(env, options, &["sender"])?;
            Ok((core, topic, v, sender))
        });
        let (core, topic, v, sender) = match prepared {
            Ok(p) => p,
            Err(e) => {
                settle::settle_now(env, ticket, settle::reject(e));
                return Ok(promise);
            }
        };
        let slot = Arc::new(Mutex::new(Some(ticket)));
        let job_slot = slot.clone();
        let job: Job = Box::new(move || {
            let hub = core.hub();
            let r = match &sender {
                Some(s) => hub.publish_from(s, &topic, v),
                None => hub.publish(&topic, v),
            };
            if let Some(t) = lock(&job_slot).take() {
                t.settle(Box::new(move |env: &Env| match r {
                    Ok(n) => (n as f64).into_unknown(env),
                    Err(e) => Err(hub_error(env, &e)),
                }));
            }
        });
        if let Err(m) = self.shared.publish_job(job)
            && let Some(t) = lock(&slot).take()
        {
            settle::settle_now(env, t, settle::reject(error::io(env, m)));
        }
        Ok(promise)
    }

    /// Subscribes to `pattern`. With a callback: `callback(message)` runs
    /// on the event loop for each message, one at a time in publish order
    /// (a returned Promise is awaited first). Without one: a pull
    /// subscription, read with `recv()` or `for await (const m of sub)`.
    /// `PSO_INVALID_ARGUMENT` for a bad pattern (naming the token) or bad
    /// options.
    #[napi(
        ts_args_type = "pattern: string, callbackOrOptions?: ((message: Message) => void | Promise<void>) | SubscribeOptions, options?: SubscribeOptions"
    )]
    pub fn subscribe(
        &self,
        env: &Env,
        pattern: Unknown<'_>,
        callback_or_options: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<JsSubscription> {
        guard(env, || {
            let core = self.core(env)?;
            let pattern = js::string(env, pattern, "pattern")?;
            let (callback, opts) = match callback_or_options {
                Some(c) if c.get_type()? == ValueType::Function => (Some(c), options),
                Some(o) if options.is_none() || options.is_some_and(|v| js::is_nullish(&v)) => {
                    (None, Some(o))
                }
                Some(c) if js::is_nullish(&c) => (None, options),
                Some(c) => {
                    return Err(error::invalid(
                        env,
                        format!("the callback must be a function, got {}", js::type_of(&c)),
                    ));
                }
                None => (None, None),
            };
            let opts = sub_options(env, opts)?;
            if callback.is_none() && opts.on_error.is_some() {
                return Err(error::invalid(
                    env,
                    "options.onError applies only to callback subscriptions",
                ));
            }
            let sub = core
                .hub()
                .subscribe_pull_with(&pattern, opts.core)
                .map_err(|e| hub_error(env, &e))?;
            JsSubscription::start(env, self.shared.clone(), sub, callback, opts.on_error)
        })
    }

    /// Sends a request and resolves with the first reply (a `Message`).
    /// Rejects at once with `PSO_NO_RESPONDERS` when no subscription
    /// matches (or every receiver dropped it unanswered), with
    /// `PSO_TIMEOUT` when nobody replied within `timeoutMs` (default 1000).
    #[napi(
        ts_args_type = "topic: string, payload?: ValueInput, options?: RequestOptions",
        ts_return_type = "Promise<Message>"
    )]
    pub fn request<'e>(
        &self,
        env: &'e Env,
        topic: Unknown<'_>,
        payload_arg: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Object<'e>> {
        let (ticket, promise) = settle::promise(env)?;
        let prepared = guard(env, || {
            let core = self.core(env)?.clone();
            let topic = js::string(env, topic, "topic")?;
            let v = match payload_arg {
                Some(p) => payload(env, p, "the payload")?,
                None => Value::Null,
            };
            let mut timeout = DEFAULT_REQUEST_TIMEOUT;
            let mut sender = None;
            if let Some(obj) = js::opt_object(env, options, "options")? {
                check_keys(env, &obj, &["timeoutMs", "sender"], "request options")?;
                if let Some(t) =
                    js::duration_ms(env, get(&obj, "timeoutMs")?, "options.timeoutMs", false)?
                {
                    timeout = t;
                }
                sender = js::opt_string(env, get(&obj, "sender")?, "options.sender")?;
            }
            Ok((core, topic, v, timeout, sender))
        });
        match prepared {
            Ok((core, topic, v, timeout, sender)) => on_thread(
                env,
                ticket,
                move || match &sender {
                    Some(s) => core.hub().request_from(s, &topic, v, timeout),
                    None => core.hub().request(&topic, v, timeout),
                },
                |env, r| match r {
                    Ok(m) => message_js(env, m),
                    Err(e) => Err(hub_error(env, &e)),
                },
            ),
            Err(e) => settle::settle_now(env, ticket, settle::reject(e)),
        }
        Ok(promise)
    }

    /// Sends a request and gathers replies until `max` replies, `timeoutMs`,
    /// or a quiet gap of `quietMs` after a reply. Resolves with the replies
    /// (maybe none, at the deadline). Rejects with `PSO_NO_RESPONDERS` at
    /// once when no subscription matches.
    #[napi(
        ts_args_type = "topic: string, payload: ValueInput, options: RequestManyOptions",
        ts_return_type = "Promise<Array<Message>>"
    )]
    pub fn request_many<'e>(
        &self,
        env: &'e Env,
        topic: Unknown<'_>,
        payload_arg: Unknown<'_>,
        options: Unknown<'_>,
    ) -> napi::Result<Object<'e>> {
        let (ticket, promise) = settle::promise(env)?;
        let prepared = guard(env, || {
            let core = self.core(env)?.clone();
            let topic = js::string(env, topic, "topic")?;
            let v = payload(env, payload_arg, "the payload")?;
            let obj = js::object(env, options, "options")?;
            check_keys(
                env,
                &obj,
                &["timeoutMs", "max", "quietMs"],
                "requestMany options",
            )?;
            let timeout =
                js::duration_ms(env, get(&obj, "timeoutMs")?, "options.timeoutMs", false)?
                    .ok_or_else(|| error::invalid(env, "options.timeoutMs is required"))?;
            let mut gather = Gather::new(timeout);
            if let Some(n) = js::opt_number(env, get(&obj, "max")?, "options.max")? {
                let n = js::count(env, n, "options.max")?;
                if n == 0 {
                    return Err(error::invalid(env, "options.max must be at least 1"));
                }
                gather = gather.max(usize::try_from(n).unwrap_or(usize::MAX));
            }
            if let Some(q) = js::duration_ms(env, get(&obj, "quietMs")?, "options.quietMs", true)? {
                gather = gather.quiet(q);
            }
            Ok((core, topic, v, gather))
        });
        match prepared {
            Ok((core, topic, v, gather)) => on_thread(
                env,
                ticket,
                move || core.hub().request_many(&topic, v, gather),
                |env, r| match r {
                    Ok(ms) => ms
                        .into_iter()
                        .map(JsMessage::new)
                        .collect::<Vec<_>>()
                        .into_unknown(env),
                    Err(e) => Err(hub_error(env, &e)),
                },
            ),
            Err(e) => settle::settle_now(env, ticket, settle::reject(e)),
        }
        Ok(promise)
    }

    /// Status of every live subscription, by id: queue length and capacity,
    /// policy, and the `delivered`, `dropped` and `errors` counts.
    #[napi]
    pub fn subscriptions(&self, env: &Env) -> napi::Result<Vec<JsSubscriptionStatus>> {
        guard(env, || {
            let core = self.core(env)?;
            let callbacks = lock(&self.shared.callbacks);
            Ok(core
                .hub()
                .subscriptions()
                .into_iter()
                .map(|s| {
                    let errors = callbacks.get(&s.id.0).cloned();
                    status::subscription(s, errors.as_deref())
                })
                .collect())
        })
    }
}

#[napi]
impl JsOrchestrator {
    /// The communication hub (`PSO_CLOSED` once closed).
    #[napi(getter)]
    pub fn hub(&self, env: &Env) -> napi::Result<JsHub> {
        let core = self.open(env)?;
        Ok(JsHub {
            shared: shared(self.id(), core),
        })
    }
}

// Last: napi-rs attaches an `#[napi] impl JsHub` block to the class as far
// as it has expanded, so the block in `direct` comes after the struct.
pub(crate) mod direct;
