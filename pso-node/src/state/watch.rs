//! The `Watcher` class: a state watch read through an [`Inbox`] (`recv()`,
//! `for await`), or drained by the callback loop of
//! [`crate::hub::subscription::run_loop`] when `watch` got a callback.
//!
//! pso-core's `Watcher` is used by one thread at a time, so it sits behind
//! a mutex; a wait holds it at most [`Source::SLICE`]. `close()` only sets
//! a flag and stops the inbox (pending reads end at once); whoever holds
//! the watcher next closes it, so the JS thread never waits for the pump.
//! A callback watch keeps the event loop alive until `close()`; a pull
//! watch only while a read is pending, and ends when collected.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{Object, ObjectFinalize, This, Unknown};
use napi::{Env, ValueType};
use napi_derive::napi;
use pso_core::{Event, StateError, StateStore, Watcher};

use super::{event, state_error};
use crate::error;
use crate::hub::lock;
use crate::hub::subscription::{rejected, run_loop};
use crate::model::js::{self, check_keys, get};
use crate::orchestrator::guard;
use crate::pump::{Inbox, Shape, Source};

/// `watch(key, options)`.
#[napi(
    object,
    js_name = "WatchOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsWatchOptions {
    /// Watch every key starting with `key`.
    pub prefix: Option<bool>,
    /// Deliver the changes after this revision (default 0: everything
    /// retained; `store.revision` for "from now on").
    pub from_revision: Option<f64>,
    /// Callback watches: called with what the callback threw.
    #[napi(ts_type = "(error: unknown, event: StateEvent | null) => void")]
    pub on_error: Option<()>,
}

/// A core watcher as a pump source.
pub(crate) struct WatchSource {
    watcher: Mutex<Option<Watcher>>,
    closed: AtomicBool,
    what: String,
}

impl Source for WatchSource {
    type Item = Event;
    type End = StateError;
    const SLICE: Duration = Duration::from_millis(200);
    const THREAD: &'static str = "pso-node-watch";

    fn next(&self, timeout: Duration) -> Result<Option<Event>, StateError> {
        let mut guard = if timeout.is_zero() {
            // The JS thread never waits for the pump's slice.
            match self.watcher.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
            }
        } else {
            lock(&self.watcher)
        };
        if self.closed.load(Ordering::Acquire) {
            if let Some(mut w) = guard.take() {
                w.close();
            }
            return Err(self.stopped());
        }
        let Some(w) = guard.as_mut() else {
            return Err(self.stopped());
        };
        if timeout.is_zero() {
            return w.try_recv();
        }
        match w.recv_timeout(timeout) {
            Ok(e) => Ok(Some(e)),
            Err(StateError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn stopped(&self) -> StateError {
        StateError::Closed {
            message: format!("the watch on {} is closed", self.what),
        }
    }

    fn is_normal_end(&self, end: &StateError) -> bool {
        matches!(end, StateError::Closed { .. }) && self.closed.load(Ordering::Acquire)
    }

    fn shutdown(&self) {
        if let Some(mut w) = lock(&self.watcher).take() {
            w.close();
        }
    }

    fn item_to_js<'e>(env: &'e Env, item: Event) -> napi::Result<Object<'e>> {
        use napi::bindgen_prelude::{JsValue, ToNapiValue};
        let e = event(env, &item)?;
        e.into_unknown(env)?.coerce_to_object()
    }

    fn end_to_js(env: &Env, end: &StateError) -> napi::Error {
        state_error(env, end)
    }
}

/// A live state watch: each change after its starting revision, exactly
/// once, in revision order. Read it with `recv()` or `for await`, or give
/// `watch` a callback; end it with `close()` or `using`.
#[napi(js_name = "Watcher", custom_finalize)]
pub struct JsWatcher {
    inbox: Arc<Inbox<WatchSource>>,
    callback: bool,
    errors: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for JsWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("what", &self.inbox.source().what)
            .finish_non_exhaustive()
    }
}

impl ObjectFinalize for JsWatcher {
    fn finalize(self, _env: Env) -> napi::Result<()> {
        if !self.callback {
            self.stop();
        }
        Ok(())
    }
}

impl JsWatcher {
    fn stop(&self) {
        crate::hub::Stop::stop(&*self.inbox);
    }
}

impl crate::hub::Stop for Inbox<WatchSource> {
    fn stop(&self) {
        self.source().closed.store(true, Ordering::Release);
        Inbox::stop(self);
    }
}

/// `store.watch(key, options, callback)`.
pub(crate) fn start(
    env: &Env,
    store: &StateStore,
    shared: &crate::hub::HubShared,
    key: String,
    options: Option<Unknown<'_>>,
    callback: Option<Unknown<'_>>,
) -> napi::Result<JsWatcher> {
    let (options, callback) = match options {
        Some(o) if o.get_type()? == ValueType::Function => (None, Some(o)),
        other => (other, callback.filter(|c| !js::is_nullish(c))),
    };
    if let Some(c) = &callback
        && c.get_type()? != ValueType::Function
    {
        return Err(error::invalid(
            env,
            format!("the callback must be a function, got {}", js::type_of(c)),
        ));
    }
    let mut prefix = false;
    let mut from = 0;
    let mut on_error = None;
    if let Some(obj) = js::opt_object(env, options, "options")? {
        check_keys(
            env,
            &obj,
            &["prefix", "fromRevision", "onError"],
            "watch options",
        )?;
        prefix = js::opt_bool(env, get(&obj, "prefix")?, "options.prefix")?.unwrap_or(false);
        if let Some(n) = js::opt_number(env, get(&obj, "fromRevision")?, "options.fromRevision")? {
            from = js::count(env, n, "options.fromRevision")?;
        }
        let f: Unknown<'_> = get(&obj, "onError")?;
        if !js::is_nullish(&f) {
            if f.get_type()? != ValueType::Function || callback.is_none() {
                return Err(error::invalid(
                    env,
                    "options.onError must be a function, and needs a callback",
                ));
            }
            on_error = Some(f);
        }
    }
    let watcher = if prefix {
        store.watch_prefix(&key, from)
    } else {
        store.watch(&key, from)
    }
    .map_err(|e| state_error(env, &e))?;
    let what = if prefix {
        format!("prefix '{key}'")
    } else {
        format!("key '{key}'")
    };
    let inbox = Inbox::new(
        WatchSource {
            watcher: Mutex::new(Some(watcher)),
            closed: AtomicBool::new(false),
            what: what.clone(),
        },
        format!("the watch on {what}"),
    );
    let stop: Arc<dyn crate::hub::Stop> = inbox.clone();
    {
        let mut stops = lock(&shared.on_close);
        stops.retain(|s| s.strong_count() > 0);
        stops.push(Arc::downgrade(&stop));
    }
    let mut me = JsWatcher {
        inbox,
        callback: callback.is_some(),
        errors: None,
    };
    if let Some(cb) = callback {
        let errors = Arc::new(AtomicU64::new(0));
        me.errors = Some(errors.clone());
        if let Err(e) = run_loop(
            env,
            &me.inbox,
            cb,
            on_error,
            errors,
            &format!("the watch on {what}"),
        ) {
            me.stop();
            return Err(e);
        }
    }
    Ok(me)
}

#[napi]
impl JsWatcher {
    /// Whether it ended (closed, or its source ended).
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inbox.is_done()
    }

    /// Callback watches: how many calls threw or rejected.
    #[napi(getter)]
    pub fn errors(&self) -> f64 {
        self.errors
            .as_ref()
            .map_or(0.0, |e| e.load(Ordering::Relaxed) as f64)
    }

    /// Ends the watch: pending reads end (`{ done: true }`; `recv()`
    /// rejects with `PSO_CLOSED`); a callback is not called again.
    #[napi]
    pub fn close(&self) {
        self.stop();
    }

    /// Same as `close()`, for `using w = store.watch(...)`.
    #[napi(well_known_symbol = "dispose")]
    pub fn dispose(&self) {
        self.stop();
    }

    /// Resolves with the next event; `PSO_TIMEOUT` after `timeoutMs`
    /// (default: wait as long as it takes), `PSO_COMPACTED` if the changes
    /// are no longer retained, `PSO_CLOSED` once closed (or the store was
    /// restored from a snapshot).
    #[napi(
        ts_args_type = "options?: { timeoutMs?: number }",
        ts_return_type = "Promise<StateEvent>"
    )]
    pub fn recv<'e>(&self, env: &'e Env, options: Option<Unknown<'_>>) -> napi::Result<Object<'e>> {
        let timeout = guard(env, || {
            if self.callback {
                return Err(error::invalid(
                    env,
                    "this watch delivers to a callback; it has nothing to receive",
                ));
            }
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

    /// The async iterator protocol: `{ value, done }`.
    #[napi(ts_return_type = "Promise<IteratorResult<StateEvent, undefined>>")]
    pub fn next<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        if self.callback {
            return rejected(
                env,
                error::invalid(
                    env,
                    "this watch delivers to a callback; it has nothing to receive",
                ),
            );
        }
        self.inbox.read(env, Shape::Step, None)
    }

    /// Ends the iteration (`break` in `for await`): closes the watch.
    #[napi(
        js_name = "return",
        ts_return_type = "Promise<IteratorResult<StateEvent, undefined>>"
    )]
    pub fn return_<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        self.stop();
        self.inbox.read(env, Shape::Step, None)
    }

    /// `for await (const e of watcher)`.
    #[napi(
        well_known_symbol = "asyncIterator",
        ts_return_type = "AsyncIterator<StateEvent, undefined>"
    )]
    pub fn async_iterator<'e>(&self, this: This<'e>) -> Object<'e> {
        this.object
    }
}
