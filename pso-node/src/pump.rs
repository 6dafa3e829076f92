//! Reading blocking pso-core sources (pull subscriptions, state watches)
//! from JS without blocking the JS thread: an [`Inbox`] turns each
//! `recv()` / iterator `next()` into a Promise.
//!
//! # How a read is served
//! * **At once, on the JS thread**, when nothing is waiting before it: the
//!   source is asked without waiting (`try`); an item settles the Promise
//!   right away.
//! * **Otherwise by the pump**: the read is queued as a [`Waiter`] and the
//!   inbox's pump thread (one per inbox, started on the first queued read)
//!   waits in the source for the first waiter, settling it when an item
//!   comes, its deadline passes (`PSO_TIMEOUT`), or the source ends. The
//!   pump parks on a condition variable while no read is queued: nothing
//!   polls. A wait in the source lasts at most [`Source::SLICE`] (or up to
//!   the first waiter's deadline), so a stop is seen within one slice even
//!   by sources whose stop cannot wake a waiting reader (watches); a pull
//!   subscription's unsubscribe wakes it at once.
//!
//! # Invariants
//! * Waiters are removed only by the pump, or by [`Inbox::stop`] and the
//!   end of the source (which settle every waiter). So when the JS thread
//!   finds no waiter queued, the pump is not reading from the source, and a
//!   direct `try` cannot overtake a queued read.
//! * `unsettled` counts reads whose Promise was handed to napi-rs but whose
//!   settling closure has not run on the JS thread yet; a direct `try` is
//!   made only when it is 0, so reads settle in the order they were made.
//! * Once the source ended (or the inbox was stopped) every later read
//!   settles with that end: `{ done: true }` for a normal end, a rejection
//!   otherwise.
//!
//! A pending Promise keeps the event loop alive (napi-rs's deferred); an
//! idle pump does not. The pump holds the inbox (and so the source) only
//! while it runs; it exits once stopped or ended.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use napi::Env;
use napi::bindgen_prelude::{JsObjectValue, JsValue, Object, Undefined};

use crate::settle::{self, Outcome, Ticket};

/// A blocking source of items.
pub(crate) trait Source: Send + Sync + 'static {
    /// What a read yields.
    type Item: Send + 'static;
    /// Why the source ended (terminal; every later read gets it too).
    type End: Clone + Send + 'static;
    /// The longest single wait in [`Source::next`].
    const SLICE: Duration;
    /// The pump thread's name.
    const THREAD: &'static str;

    /// Waits up to `timeout` (zero: do not wait) for the next item;
    /// `Ok(None)` if none came in time.
    fn next(&self, timeout: Duration) -> Result<Option<Self::Item>, Self::End>;
    /// The end after [`Inbox::stop`].
    fn stopped(&self) -> Self::End;
    /// Whether `end` ends an iteration normally (`{ done: true }`) rather
    /// than with an error.
    fn is_normal_end(&self, end: &Self::End) -> bool;
    /// Releases what the source holds (called once the pump is gone, or by
    /// `stop` when no pump runs).
    fn shutdown(&self);
    /// The JS value of an item (JS thread).
    fn item_to_js<'e>(env: &'e Env, item: Self::Item) -> napi::Result<Object<'e>>;
    /// The JS error of an end (JS thread).
    fn end_to_js(env: &Env, end: &Self::End) -> napi::Error;
}

/// How a read's Promise resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `recv()`: the item itself; any end rejects.
    Value,
    /// Iterator `next()`: `{ value, done }`; a normal end is `{ done: true }`.
    Step,
}

/// What a read got.
enum Got<S: Source> {
    Item(S::Item),
    Timeout(Duration),
    End(S::End, bool),
}

struct Waiter {
    deferred: Ticket,
    shape: Shape,
    deadline: Option<Instant>,
    asked: Instant,
}

struct State<S: Source> {
    waiters: VecDeque<Waiter>,
    ended: Option<S::End>,
    pumping: bool,
    stopped: bool,
}

/// See the module docs.
pub(crate) struct Inbox<S: Source> {
    source: S,
    state: Mutex<State<S>>,
    ready: Condvar,
    unsettled: Arc<AtomicUsize>,
    what: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<S: Source> Inbox<S> {
    pub(crate) fn new(source: S, what: impl Into<String>) -> Arc<Self> {
        Arc::new(Inbox {
            source,
            state: Mutex::new(State {
                waiters: VecDeque::new(),
                ended: None,
                pumping: false,
                stopped: false,
            }),
            ready: Condvar::new(),
            unsettled: Arc::new(AtomicUsize::new(0)),
            what: what.into(),
        })
    }

    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// Whether it was stopped or its source ended.
    pub(crate) fn is_done(&self) -> bool {
        let st = lock(&self.state);
        st.stopped || st.ended.is_some()
    }

    /// Reads the next item (JS thread): returns the Promise.
    pub(crate) fn read<'e>(
        self: &Arc<Self>,
        env: &'e Env,
        shape: Shape,
        timeout: Option<Duration>,
    ) -> napi::Result<Object<'e>> {
        let (deferred, promise) = settle::promise(env)?;
        let asked = Instant::now();
        let mut st = lock(&self.state);
        if let Some(end) = st.ended.clone() {
            drop(st);
            let normal = self.source.is_normal_end(&end);
            self.settle(Some(env), deferred, shape, Got::End(end, normal));
            return Ok(promise);
        }
        if st.waiters.is_empty() && self.unsettled.load(Ordering::Acquire) == 0 {
            match self.source.next(Duration::ZERO) {
                Ok(Some(item)) => {
                    drop(st);
                    self.settle(Some(env), deferred, shape, Got::Item(item));
                    return Ok(promise);
                }
                Ok(None) if timeout == Some(Duration::ZERO) => {
                    drop(st);
                    self.settle(Some(env), deferred, shape, Got::Timeout(Duration::ZERO));
                    return Ok(promise);
                }
                Ok(None) => {}
                Err(end) => {
                    st.ended = Some(end.clone());
                    drop(st);
                    let normal = self.source.is_normal_end(&end);
                    self.settle(Some(env), deferred, shape, Got::End(end, normal));
                    return Ok(promise);
                }
            }
        }
        st.waiters.push_back(Waiter {
            deferred,
            shape,
            deadline: timeout.and_then(|t| asked.checked_add(t)),
            asked,
        });
        if st.pumping {
            self.ready.notify_one();
            return Ok(promise);
        }
        st.pumping = true;
        drop(st);
        let me = self.clone();
        let spawned = thread::Builder::new()
            .name(S::THREAD.to_owned())
            .spawn(move || me.pump());
        if let Err(e) = spawned {
            let mut st = lock(&self.state);
            st.pumping = false;
            let waiters: Vec<Waiter> = st.waiters.drain(..).collect();
            drop(st);
            let message = format!("cannot start a thread to read {}: {e}", self.what);
            for w in waiters {
                let e = crate::error::io(env, message.clone());
                settle::settle_now(env, w.deferred, settle::reject(e));
            }
        }
        Ok(promise)
    }

    /// The next item if one is ready and no read is queued before it (JS
    /// thread); never waits.
    ///
    /// # Errors
    /// The source's end, once it ended or the inbox was stopped.
    pub(crate) fn try_take(&self) -> Result<Option<S::Item>, S::End> {
        let mut st = lock(&self.state);
        if let Some(end) = st.ended.clone() {
            return Err(end);
        }
        if !st.waiters.is_empty() || self.unsettled.load(Ordering::Acquire) != 0 {
            return Ok(None);
        }
        match self.source.next(Duration::ZERO) {
            Ok(item) => Ok(item),
            Err(end) => {
                st.ended = Some(end.clone());
                Err(end)
            }
        }
    }

    /// Stops reading: every queued and later read settles with the
    /// source's `stopped()` end. Idempotent.
    pub(crate) fn stop(&self) {
        let mut st = lock(&self.state);
        if st.stopped {
            return;
        }
        st.stopped = true;
        let end = self.source.stopped();
        if st.ended.is_none() {
            st.ended = Some(end.clone());
        }
        let waiters: Vec<Waiter> = st.waiters.drain(..).collect();
        let pumping = st.pumping;
        self.ready.notify_all();
        drop(st);
        let normal = self.source.is_normal_end(&end);
        for w in waiters {
            self.settle(None, w.deferred, w.shape, Got::End(end.clone(), normal));
        }
        if !pumping {
            self.source.shutdown();
        }
    }

    /// The pump thread (see the module docs).
    fn pump(self: Arc<Self>) {
        loop {
            let mut st = lock(&self.state);
            while st.waiters.is_empty() && !st.stopped && st.ended.is_none() {
                st = self
                    .ready
                    .wait(st)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if st.stopped || st.ended.is_some() {
                st.pumping = false;
                break;
            }
            let now = Instant::now();
            let wait = st
                .waiters
                .iter()
                .filter_map(|w| w.deadline)
                .min()
                .map_or(S::SLICE, |d| d.saturating_duration_since(now).min(S::SLICE));
            drop(st);
            let got =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.source.next(wait)));
            let got = match got {
                Ok(g) => g,
                Err(_) => Err(self.source.stopped()),
            };
            let mut st = lock(&self.state);
            match got {
                Ok(Some(item)) => {
                    if let Some(w) = st.waiters.pop_front() {
                        drop(st);
                        self.settle(None, w.deferred, w.shape, Got::Item(item));
                    }
                }
                Ok(None) => {
                    let now = Instant::now();
                    let mut expired = Vec::new();
                    let mut kept = VecDeque::new();
                    for w in st.waiters.drain(..) {
                        if w.deadline.is_some_and(|d| d <= now) {
                            expired.push(w);
                        } else {
                            kept.push_back(w);
                        }
                    }
                    st.waiters = kept;
                    drop(st);
                    for w in expired {
                        let waited = now.saturating_duration_since(w.asked);
                        self.settle(None, w.deferred, w.shape, Got::Timeout(waited));
                    }
                }
                Err(end) => {
                    if st.ended.is_none() {
                        st.ended = Some(end.clone());
                    }
                    let waiters: Vec<Waiter> = st.waiters.drain(..).collect();
                    st.pumping = false;
                    drop(st);
                    let normal = self.source.is_normal_end(&end);
                    for w in waiters {
                        self.settle(None, w.deferred, w.shape, Got::End(end.clone(), normal));
                    }
                    break;
                }
            }
        }
        self.source.shutdown();
    }

    /// Settles a read: now when on the JS thread (`env`), else through the
    /// settler's queue.
    fn settle(&self, env: Option<&Env>, deferred: Ticket, shape: Shape, got: Got<S>) {
        let unsettled = self.unsettled.clone();
        unsettled.fetch_add(1, Ordering::AcqRel);
        // Built from what the source says now; an error on the JS thread.
        let timeout_message = match &got {
            Got::Timeout(waited) => self.timeout_message(*waited),
            _ => String::new(),
        };
        let outcome: Outcome = Box::new(move |env: &Env| {
            unsettled.fetch_sub(1, Ordering::AcqRel);
            match got {
                Got::Item(item) => {
                    let v = S::item_to_js(env, item)?;
                    match shape {
                        Shape::Value => Ok(v.to_unknown()),
                        Shape::Step => Ok(step(env, Some(v))?.to_unknown()),
                    }
                }
                Got::End(_, true) if shape == Shape::Step => Ok(step(env, None)?.to_unknown()),
                Got::End(end, _) => Err(S::end_to_js(env, &end)),
                Got::Timeout(_) => Err(crate::error::of_kind(
                    env,
                    pso_core::ErrorKind::Timeout,
                    &timeout_message,
                )),
            }
        });
        match env {
            Some(env) => settle::settle_now(env, deferred, outcome),
            None => deferred.settle(outcome),
        }
    }

    fn timeout_message(&self, waited: Duration) -> String {
        format!(
            "nothing from {} within {} ms",
            self.what,
            (waited.as_secs_f64() * 1000.0).round()
        )
    }
}

/// `{ value, done }` of an async iterator.
fn step<'e>(env: &'e Env, value: Option<Object<'e>>) -> napi::Result<Object<'e>> {
    let mut obj = Object::new(env)?;
    match value {
        Some(v) => {
            obj.set_named_property("value", v)?;
            obj.set_named_property("done", false)?;
        }
        None => {
            obj.set_named_property("value", Undefined::default())?;
            obj.set_named_property("done", true)?;
        }
    }
    Ok(obj)
}
