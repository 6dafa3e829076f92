//! The `Subscription` class: a pso-core pull subscription behind an
//! [`Inbox`], read by `recv()` / `for await`, or drained by the callback
//! loop (see the module docs of [`super`]).
//!
//! # Ending
//! `unsubscribe()` (and `[Symbol.dispose]()`, the iterator's `return()`)
//! stops the inbox first — every pending read settles (`{ done: true }`,
//! or `PSO_CLOSED` for `recv()`) — then unsubscribes in pso-core, which
//! wakes the pump and drops queued messages. The callback loop sees
//! `done` and ends, so nothing holds the event loop any more. The
//! orchestrator's `close()` closes the hub, which ends every subscription
//! the same way (reads end with `done`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{
    FnArgs, Function, FunctionCallContext, JsValue, Object, ObjectFinalize, ObjectRef, This,
    ToNapiValue, Unknown,
};
use napi_derive::napi;
use pso_core::{HubError, Message, Subscription};

use super::message::JsMessage;
use super::status::{self, JsSubscriptionStatus};
use super::{HubShared, hub_error, lock};
use crate::error;
use crate::model::js::{self, check_keys, get};
use crate::orchestrator::guard;
use crate::pump::{Inbox, Shape, Source};

/// A pull subscription as a pump source.
pub(crate) struct SubSource {
    sub: Subscription,
}

impl Source for SubSource {
    type Item = Message;
    type End = HubError;
    // Unsubscribing (or closing the hub) wakes a waiting receive at once.
    const SLICE: Duration = Duration::from_secs(5);
    const THREAD: &'static str = "pso-node-sub";

    fn next(&self, timeout: Duration) -> Result<Option<Message>, HubError> {
        if timeout.is_zero() {
            return self.sub.try_recv();
        }
        match self.sub.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(HubError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn stopped(&self) -> HubError {
        HubError::SubscriptionClosed {
            id: self.sub.id(),
            pattern: self.sub.pattern().to_owned(),
        }
    }

    fn is_normal_end(&self, end: &HubError) -> bool {
        matches!(end, HubError::SubscriptionClosed { .. } | HubError::Closed)
    }

    fn shutdown(&self) {}

    fn item_to_js<'e>(env: &'e Env, item: Message) -> napi::Result<Object<'e>> {
        super::message_js(env, item)?.coerce_to_object()
    }

    fn end_to_js(env: &Env, end: &HubError) -> napi::Error {
        hub_error(env, end)
    }
}

/// Calls the callback for each item (see [`super`]): `next` reads the
/// inbox, `countError` counts a failure.
const CALLBACK_LOOP: &str = r#"(function (next, cb, onError, countError, label) {
  const report = (err, msg) => {
    countError();
    if (onError) {
      try { onError(err, msg); return; } catch (e) { err = e; }
    }
    let text;
    try { text = err instanceof Error ? err.message : String(err); } catch (_) { text = '?'; }
    const w = new Error(`the callback of ${label} failed` +
      (msg ? ` on '${msg.topic}'` : '') + `: ${text}`);
    w.name = 'PsoCallbackError';
    w.code = 'PSO_HANDLER_FAILED';
    w.cause = err;
    process.emitWarning(w);
  };
  (async () => {
    for (;;) {
      let step;
      try { step = await next(); } catch (e) { report(e, null); return; }
      if (step.done) return;
      try {
        const r = cb(step.value);
        if (r !== null && typeof r === 'object' && typeof r.then === 'function') await r;
      } catch (e) { report(e, step.value); }
    }
  })();
})"#;

/// A live subscription. A pull subscription (no callback) is read with
/// `recv()` or `for await (const m of sub)`; end either kind with
/// `unsubscribe()` or `using`.
#[napi(js_name = "Subscription", custom_finalize)]
pub struct JsSubscription {
    id: u64,
    pattern: String,
    callback: bool,
    inbox: Arc<Inbox<SubSource>>,
    shared: Arc<HubShared>,
    errors: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for JsSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

impl ObjectFinalize for JsSubscription {
    fn finalize(self, _env: Env) -> napi::Result<()> {
        // A callback subscription lives on (its loop holds the inbox) until
        // unsubscribed or closed; a pull one nobody can read any more ends.
        if !self.callback {
            self.stop();
        }
        Ok(())
    }
}

impl JsSubscription {
    /// Wraps `sub`; with a callback, starts the loop that feeds it.
    pub(crate) fn start(
        env: &Env,
        shared: Arc<HubShared>,
        sub: Subscription,
        callback: Option<Unknown<'_>>,
        on_error: Option<Unknown<'_>>,
    ) -> napi::Result<JsSubscription> {
        let id = sub.id().0;
        let pattern = sub.pattern().to_owned();
        let inbox = Inbox::new(
            SubSource { sub },
            format!("subscription #{id} ('{pattern}')"),
        );
        let mut me = JsSubscription {
            id,
            pattern: pattern.clone(),
            callback: callback.is_some(),
            inbox: inbox.clone(),
            shared: shared.clone(),
            errors: None,
        };
        let Some(cb) = callback else {
            return Ok(me);
        };
        let errors = Arc::new(AtomicU64::new(0));
        lock(&shared.callbacks).insert(id, errors.clone());
        me.errors = Some(errors.clone());
        let started = run_loop(
            env,
            &inbox,
            cb,
            on_error,
            errors,
            &format!("subscription '{pattern}'"),
        );
        if let Err(e) = started {
            me.stop();
            return Err(e);
        }
        Ok(me)
    }

    /// Ends it; returns whether it was live.
    fn stop(&self) -> bool {
        let was = !self.inbox.is_done();
        self.inbox.stop();
        lock(&self.shared.callbacks).remove(&self.id);
        let live = self
            .shared
            .core
            .hub()
            .unsubscribe(pso_core::SubscriptionId(self.id));
        was && live
    }

    fn reads(&self, env: &Env) -> napi::Result<()> {
        if self.callback {
            return Err(error::invalid(
                env,
                format!(
                    "subscription #{} ('{}') delivers to a callback; it has nothing to receive",
                    self.id, self.pattern
                ),
            ));
        }
        Ok(())
    }
}

#[napi]
impl JsSubscription {
    /// Its id (as in `hub.subscriptions()`).
    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.id as f64
    }

    /// The pattern it listens to.
    #[napi(getter)]
    pub fn pattern(&self) -> String {
        self.pattern.clone()
    }

    /// `'callback'` or `'pull'`.
    #[napi(getter, ts_return_type = "'callback' | 'pull'")]
    pub fn kind(&self) -> &'static str {
        if self.callback { "callback" } else { "pull" }
    }

    /// Whether it ended (unsubscribed, or the orchestrator closed).
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inbox.is_done() || self.inbox.source().sub.status().closed
    }

    /// Its queue and counters now.
    #[napi]
    pub fn status(&self) -> JsSubscriptionStatus {
        status::subscription(self.inbox.source().sub.status(), self.errors.as_deref())
    }

    /// Stops delivery; returns whether it was still live. Queued messages
    /// are dropped; pending reads end (`{ done: true }`; `recv()` rejects
    /// with `PSO_CLOSED`); a callback is not called again.
    #[napi]
    pub fn unsubscribe(&self) -> bool {
        self.stop()
    }

    /// Same as `unsubscribe()`, for `using sub = hub.subscribe(...)`.
    #[napi(well_known_symbol = "dispose")]
    pub fn dispose(&self) {
        self.stop();
    }

    /// Resolves with the next message. Rejects with `PSO_TIMEOUT` if none
    /// came within `timeoutMs` (0: only one already queued; default: wait
    /// as long as it takes), `PSO_CLOSED` once unsubscribed or closed.
    /// Never blocks the event loop.
    #[napi(
        ts_args_type = "options?: { timeoutMs?: number }",
        ts_return_type = "Promise<Message>"
    )]
    pub fn recv<'e>(&self, env: &'e Env, options: Option<Unknown<'_>>) -> napi::Result<Object<'e>> {
        let timeout = guard(env, || {
            self.reads(env)?;
            match js::opt_object(env, options, "options")? {
                Some(obj) => {
                    check_keys(env, &obj, &["timeoutMs"], "recv options")?;
                    js::duration_ms(env, get(&obj, "timeoutMs")?, "options.timeoutMs", false)
                }
                None => Ok(None),
            }
        });
        match timeout {
            Ok(t) => self.inbox.read(env, Shape::Value, t),
            Err(e) => rejected(env, e),
        }
    }

    /// The next message if one is queued (and no `recv()` waits before
    /// it), else `null`. Throws `PSO_CLOSED` once unsubscribed or closed.
    #[napi]
    pub fn try_recv(&self, env: &Env) -> napi::Result<Option<JsMessage>> {
        guard(env, || {
            self.reads(env)?;
            match self.inbox.try_take() {
                Ok(m) => Ok(m.map(JsMessage::new)),
                Err(end) => Err(hub_error(env, &end)),
            }
        })
    }

    /// The async iterator protocol: the next message as `{ value, done }`;
    /// `done` once unsubscribed or closed.
    #[napi(ts_return_type = "Promise<IteratorResult<Message, undefined>>")]
    pub fn next<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        if let Err(e) = self.reads(env) {
            return rejected(env, e);
        }
        self.inbox.read(env, Shape::Step, None)
    }

    /// Ends the iteration (`break` in `for await`): unsubscribes.
    #[napi(
        js_name = "return",
        ts_return_type = "Promise<IteratorResult<Message, undefined>>"
    )]
    pub fn return_<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        self.stop();
        self.inbox.read(env, Shape::Step, None)
    }

    /// `for await (const m of sub)`.
    #[napi(
        well_known_symbol = "asyncIterator",
        ts_return_type = "AsyncIterator<Message, undefined>"
    )]
    pub fn async_iterator<'e>(&self, this: This<'e>) -> Object<'e> {
        this.object
    }
}

/// Starts the JS loop that reads `inbox` and calls `cb` with each item,
/// one at a time, awaiting a returned Promise; failures are counted in
/// `errors` and reported (see [`super`]). `label` names the source in
/// reports.
pub(crate) fn run_loop<S: Source>(
    env: &Env,
    inbox: &Arc<Inbox<S>>,
    cb: Unknown<'_>,
    on_error: Option<Unknown<'_>>,
    errors: Arc<AtomicU64>,
    label: &str,
) -> napi::Result<()> {
    let next_inbox = inbox.clone();
    let next: Function<'_, (), ObjectRef<false>> =
        env.create_function_from_closure("next", move |ctx: FunctionCallContext<'_>| {
            next_inbox.read(ctx.env, Shape::Step, None)?.create_ref()
        })?;
    let count: Function<'_, (), ()> =
        env.create_function_from_closure("countError", move |_| {
            errors.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })?;
    let on_error = match on_error {
        Some(f) => f,
        None => ().into_unknown(env)?,
    };
    type Args<'e> = FnArgs<(
        Unknown<'e>,
        Unknown<'e>,
        Unknown<'e>,
        Unknown<'e>,
        Unknown<'e>,
    )>;
    let run: Function<'_, Args<'_>, Unknown<'_>> = env.run_script(CALLBACK_LOOP)?;
    run.call(FnArgs::from((
        next.to_unknown(),
        cb,
        on_error,
        count.to_unknown(),
        label.into_unknown(env)?,
    )))?;
    Ok(())
}

/// A Promise already rejected with `e`.
pub(crate) fn rejected<'e>(env: &'e Env, e: napi::Error) -> napi::Result<Object<'e>> {
    crate::settle::settled(env, crate::settle::reject(e))
}
