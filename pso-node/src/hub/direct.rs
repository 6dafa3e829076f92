//! Direct channels and meshes (pso-core `hub/direct.rs`, `hub/pairs.rs`):
//! `hub.openDirect/promote/demote/closeDirect`, `hub.endpoint(me, peer)`
//! (a `DirectEnd`) and `hub.mesh(systems)` (a `Mesh`, for `using`).
//!
//! # A `DirectEnd` never blocks the JS thread
//! pso-core's end is used by one thread at a time, so it sits behind a
//! mutex. `recv()` reads through an [`Inbox`] (served at once when a value
//! is waiting, else by the end's pump thread, which holds the mutex at most
//! [`DirectSource::SLICE`] per wait). `send(v)` tries at once on the JS
//! thread when the mutex is free and the ring has room; otherwise the send
//! waits on a thread of its own (`pso-node-direct`) until there is room,
//! `timeoutMs` passes (`PSO_TIMEOUT`), or the channel closes (`PSO_CLOSED`).
//! `close()` closes the pair (both ends); pending receives end with
//! `PSO_CLOSED`.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{JsObjectValue, Object, ToNapiValue, Unknown};
use napi_derive::napi;
use pso_core::{DirectEnd, DirectSendError, HubError, Mesh, PsoError, Value};

use super::subscription::rejected;
use super::{JsHub, hub_error, lock, payload};
use crate::error;
use crate::model::js::{self, check_keys, get};
use crate::orchestrator::guard;
use crate::pump::{Inbox, Shape, Source};
use crate::settle::{reject, settle_now};

/// An end as a pump source.
pub(crate) struct DirectSource {
    end: Mutex<DirectEnd>,
    system: String,
    peer: String,
}

impl Source for DirectSource {
    type Item = Value;
    type End = HubError;
    const SLICE: Duration = Duration::from_millis(50);
    const THREAD: &'static str = "pso-node-direct";

    fn next(&self, timeout: Duration) -> Result<Option<Value>, HubError> {
        if timeout.is_zero() {
            // The JS thread never waits for the mutex: a send waiting for
            // room may hold it (then the read is left to the pump).
            return match self.end.try_lock() {
                Ok(mut end) => end.try_recv(),
                Err(_) => Ok(None),
            };
        }
        let mut end = lock(&self.end);
        match end.recv_timeout(timeout) {
            Ok(v) => Ok(Some(v)),
            Err(HubError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn stopped(&self) -> HubError {
        HubError::ChannelClosed {
            a: self.system.clone(),
            b: self.peer.clone(),
            reason: "this end was closed".to_owned(),
        }
    }

    fn is_normal_end(&self, end: &HubError) -> bool {
        matches!(end, HubError::ChannelClosed { .. } | HubError::Closed)
    }

    fn shutdown(&self) {}

    fn item_to_js<'e>(env: &'e Env, item: Value) -> napi::Result<Object<'e>> {
        // Wrapped so that any value (also a primitive) travels as an object.
        let mut obj = Object::new(env)?;
        obj.set_named_property("value", crate::value::to_js(env, &item)?)?;
        Ok(obj)
    }

    fn end_to_js(env: &Env, end: &HubError) -> napi::Error {
        hub_error(env, end)
    }
}

fn send_error(env: &Env, e: &DirectSendError) -> napi::Error {
    error::of_kind(env, e.kind(), &e.to_string())
}

/// One side of a direct channel: `send(v)` and `recv()` return Promises.
#[napi(js_name = "DirectEnd")]
pub struct JsDirectEnd {
    inbox: Arc<Inbox<DirectSource>>,
    capacity: usize,
    hub: pso_core::Hub,
}

impl std::fmt::Debug for JsDirectEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectEnd")
            .field("system", &self.inbox.source().system)
            .field("peer", &self.inbox.source().peer)
            .finish_non_exhaustive()
    }
}

#[napi]
impl JsDirectEnd {
    /// This side's system.
    #[napi(getter)]
    pub fn system(&self) -> String {
        self.inbox.source().system.clone()
    }

    /// The other side's system.
    #[napi(getter)]
    pub fn peer(&self) -> String {
        self.inbox.source().peer.clone()
    }

    /// Whether the channel is closed.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        if self.inbox.is_done() {
            return true;
        }
        match self.inbox.source().end.try_lock() {
            Ok(end) => end.is_closed(),
            Err(_) => false,
        }
    }

    /// Sends `value` to the peer. Resolves once it is in the ring; rejects
    /// with `PSO_TIMEOUT` if the ring stayed full for `timeoutMs` (default:
    /// wait as long as it takes), `PSO_CLOSED` if the channel is closed
    /// (publish through the hub instead).
    #[napi(
        ts_args_type = "value: ValueInput, options?: { timeoutMs?: number }",
        ts_return_type = "Promise<void>"
    )]
    pub fn send<'e>(
        &self,
        env: &'e Env,
        value: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Object<'e>> {
        let (ticket, promise) = crate::settle::promise(env)?;
        let prepared = guard(env, || {
            let v = payload(env, value, "the value")?;
            let timeout = match js::opt_object(env, options, "options")? {
                Some(obj) => {
                    check_keys(env, &obj, &["timeoutMs"], "send options")?;
                    js::duration_ms(env, get(&obj, "timeoutMs")?, "options.timeoutMs", false)?
                }
                None => None,
            };
            Ok((v, timeout))
        });
        let (v, timeout) = match prepared {
            Ok(p) => p,
            Err(e) => {
                settle_now(env, ticket, reject(e));
                return Ok(promise);
            }
        };
        let v = match self.inbox.source().end.try_lock() {
            Ok(mut end) => match end.try_send(v) {
                Ok(()) => {
                    settle_now(env, ticket, Box::new(|env: &Env| ().into_unknown(env)));
                    return Ok(promise);
                }
                Err(DirectSendError::Full(v)) if timeout != Some(Duration::ZERO) => v,
                Err(e) => {
                    settle_now(env, ticket, reject(send_error(env, &e)));
                    return Ok(promise);
                }
            },
            Err(_) => v,
        };
        let inbox = self.inbox.clone();
        let slot = Arc::new(Mutex::new(Some(ticket)));
        let thread_slot = slot.clone();
        let spawned = thread::Builder::new()
            .name("pso-node-direct".to_owned())
            .spawn(move || {
                let r = {
                    let mut end = lock(&inbox.source().end);
                    match timeout {
                        Some(t) => end.send_timeout(v, t),
                        None => end.send(v),
                    }
                };
                if let Some(t) = lock(&thread_slot).take() {
                    t.settle(Box::new(move |env: &Env| match r {
                        Ok(()) => ().into_unknown(env),
                        Err(e) => Err(send_error(env, &e)),
                    }));
                }
            });
        if let Err(e) = spawned
            && let Some(t) = lock(&slot).take()
        {
            let e = error::io(env, format!("cannot start a send thread: {e}"));
            settle_now(env, t, reject(e));
        }
        Ok(promise)
    }

    /// Resolves with the next value from the peer. Rejects with
    /// `PSO_TIMEOUT` after `timeoutMs` (default: wait as long as it takes),
    /// `PSO_CLOSED` once the channel is closed and drained.
    #[napi(
        ts_args_type = "options?: { timeoutMs?: number }",
        ts_return_type = "Promise<Value>"
    )]
    pub fn recv<'e>(&self, env: &'e Env, options: Option<Unknown<'_>>) -> napi::Result<Object<'e>> {
        let timeout = guard(env, || match js::opt_object(env, options, "options")? {
            Some(obj) => {
                check_keys(env, &obj, &["timeoutMs"], "recv options")?;
                js::duration_ms(env, get(&obj, "timeoutMs")?, "options.timeoutMs", false)
            }
            None => Ok(None),
        });
        let timeout = match timeout {
            Ok(t) => t,
            Err(e) => return rejected(env, e),
        };
        // The inbox resolves with `{ value }`; unwrap it in JS.
        let boxed = self.inbox.read(env, Shape::Value, timeout)?;
        unwrap_value(env, boxed)
    }

    /// Ring capacity per direction.
    #[napi(getter)]
    pub fn capacity(&self) -> u32 {
        u32::try_from(self.capacity).unwrap_or(u32::MAX)
    }

    /// Sends without waiting: false if the ring is full (or a send of this
    /// end is waiting). Throws `PSO_CLOSED` if the channel is closed.
    #[napi(ts_args_type = "value: ValueInput")]
    pub fn try_send(&self, env: &Env, value: Unknown<'_>) -> napi::Result<bool> {
        guard(env, || {
            let v = payload(env, value, "the value")?;
            let Ok(mut end) = self.inbox.source().end.try_lock() else {
                return Ok(false);
            };
            match end.try_send(v) {
                Ok(()) => Ok(true),
                Err(DirectSendError::Full(_)) => Ok(false),
                Err(e) => Err(send_error(env, &e)),
            }
        })
    }

    /// The next value if one is waiting (and no `recv()` waits before it),
    /// else `otherwise` (default `undefined`; `null` is a value a peer may
    /// send). Throws `PSO_CLOSED` once the channel is closed and drained.
    #[napi(
        ts_args_type = "otherwise?: unknown",
        ts_return_type = "Value | undefined"
    )]
    pub fn try_recv<'e>(
        &self,
        env: &'e Env,
        otherwise: Option<Unknown<'e>>,
    ) -> napi::Result<Unknown<'e>> {
        guard(env, || match self.inbox.try_take() {
            Ok(Some(v)) => crate::value::to_js(env, &v),
            Ok(None) => match otherwise {
                Some(o) => Ok(o),
                None => ().into_unknown(env),
            },
            Err(end) => Err(hub_error(env, &end)),
        })
    }

    /// Closes the channel (both ends). Idempotent.
    #[napi]
    pub fn close(&self) {
        self.inbox.stop();
        let src = self.inbox.source();
        match src.end.try_lock() {
            Ok(end) => end.close(),
            Err(_) => {
                let _ = self
                    .hub
                    .close_direct(&src.system, &src.peer, "closed by its end");
            }
        }
    }

    /// Same as `close()`, for `using end = hub.endpoint(...)`.
    #[napi(well_known_symbol = "dispose")]
    pub fn dispose(&self) {
        self.close();
    }
}

/// `promise.then(o => o.value)`.
fn unwrap_value<'e>(env: &'e Env, promise: Object<'e>) -> napi::Result<Object<'e>> {
    use napi::bindgen_prelude::{Function, JsObjectValue};
    let then: Function<'_, Function<'_, Object<'_>, Unknown<'_>>, Object<'_>> =
        promise.get_named_property("then")?;
    let pick: Function<'_, Object<'_>, Unknown<'_>> =
        env.create_function_from_closure("pick", |ctx| {
            let o: Object<'_> = ctx.get(0)?;
            o.get_named_property::<Unknown<'_>>("value")
        })?;
    then.apply(promise, pick)
}

/// A mesh scope: every pair of its systems has a direct channel until
/// `close()` (or the end of a `using` block); then routing reverts to the
/// hub for the pairs it opened.
#[napi(js_name = "Mesh")]
pub struct JsMesh {
    mesh: Mutex<Option<Mesh>>,
    id: u64,
    systems: Vec<String>,
    hub: pso_core::Hub,
}

impl std::fmt::Debug for JsMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("id", &self.id)
            .field("systems", &self.systems)
            .finish()
    }
}

#[napi]
impl JsMesh {
    /// Its id (as in `coordinationStatus().meshes`).
    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.id as f64
    }

    /// Its systems.
    #[napi(getter)]
    pub fn systems(&self) -> Vec<String> {
        self.systems.clone()
    }

    /// Whether it was closed.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        lock(&self.mesh).is_none()
    }

    /// Takes `me`'s end of the channel to `peer`.
    #[napi(ts_args_type = "me: string, peer: string")]
    pub fn endpoint(
        &self,
        env: &Env,
        me: Unknown<'_>,
        peer: Unknown<'_>,
    ) -> napi::Result<JsDirectEnd> {
        guard(env, || {
            let me = js::string(env, me, "me")?;
            let peer = js::string(env, peer, "peer")?;
            let end = {
                let m = lock(&self.mesh);
                let m = m.as_ref().ok_or_else(|| {
                    error::of_kind(
                        env,
                        pso_core::ErrorKind::Closed,
                        &format!("mesh {} is closed", self.id),
                    )
                })?;
                m.endpoint(&me, &peer).map_err(|e| hub_error(env, &e))?
            };
            Ok(direct_end(self.hub.clone(), end))
        })
    }

    /// Closes the scope: the channels it opened close. Idempotent.
    #[napi]
    pub fn close(&self) {
        let m = lock(&self.mesh).take();
        if let Some(m) = m {
            m.close();
        }
    }

    /// Same as `close()`, for `using m = hub.mesh([...])`.
    #[napi(well_known_symbol = "dispose")]
    pub fn dispose(&self) {
        self.close();
    }
}

/// `a`, `b` and `reason` (default `default`) of a pair verb.
fn pair_args(
    env: &Env,
    a: Unknown<'_>,
    b: Unknown<'_>,
    reason: Option<Unknown<'_>>,
    default: &str,
) -> napi::Result<(String, String, String)> {
    let a = js::string(env, a, "a")?;
    let b = js::string(env, b, "b")?;
    let reason = match reason {
        Some(r) => js::opt_string(env, r, "reason")?,
        None => None,
    };
    Ok((a, b, reason.unwrap_or_else(|| default.to_owned())))
}

fn direct_end(hub: pso_core::Hub, end: DirectEnd) -> JsDirectEnd {
    let system = end.system().to_owned();
    let peer = end.peer().to_owned();
    let what = format!("direct channel {system}->{peer}");
    JsDirectEnd {
        capacity: end.capacity(),
        inbox: Inbox::new(
            DirectSource {
                end: Mutex::new(end),
                system,
                peer,
            },
            what,
        ),
        hub,
    }
}

#[napi]
impl JsHub {
    /// Gives the pair `a`–`b` a direct channel (declared), with `reason`.
    #[napi(ts_args_type = "a: string, b: string, reason?: string")]
    pub fn open_direct(
        &self,
        env: &Env,
        a: Unknown<'_>,
        b: Unknown<'_>,
        reason: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let (a, b, reason) = pair_args(env, a, b, reason, "declared")?;
            self.core(env)?
                .hub()
                .open_direct(&a, &b, &reason)
                .map_err(|e| hub_error(env, &e))
        })
    }

    /// Promotes the pair to a direct channel (recorded as a promotion).
    #[napi(ts_args_type = "a: string, b: string, reason?: string")]
    pub fn promote(
        &self,
        env: &Env,
        a: Unknown<'_>,
        b: Unknown<'_>,
        reason: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let (a, b, reason) = pair_args(env, a, b, reason, "promoted")?;
            self.core(env)?
                .hub()
                .promote(&a, &b, &reason)
                .map_err(|e| hub_error(env, &e))
        })
    }

    /// Closes a promoted or declared pair's channel; routing reverts to the
    /// hub (`PSO_NOT_FOUND` without one, `PSO_INVALID_ARGUMENT` for a mesh
    /// pair).
    #[napi(ts_args_type = "a: string, b: string, reason?: string")]
    pub fn demote(
        &self,
        env: &Env,
        a: Unknown<'_>,
        b: Unknown<'_>,
        reason: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let (a, b, reason) = pair_args(env, a, b, reason, "demoted")?;
            self.core(env)?
                .hub()
                .demote(&a, &b, &reason)
                .map_err(|e| hub_error(env, &e))
        })
    }

    /// Closes the pair's channel (`PSO_NOT_FOUND` without one).
    #[napi(ts_args_type = "a: string, b: string, reason?: string")]
    pub fn close_direct(
        &self,
        env: &Env,
        a: Unknown<'_>,
        b: Unknown<'_>,
        reason: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let (a, b, reason) = pair_args(env, a, b, reason, "closed")?;
            self.core(env)?
                .hub()
                .close_direct(&a, &b, &reason)
                .map_err(|e| hub_error(env, &e))
        })
    }

    /// Takes `me`'s end of the channel to `peer` (`PSO_NOT_FOUND` if the
    /// pair has none, `PSO_ALREADY_EXISTS` if that end was taken).
    #[napi(ts_args_type = "me: string, peer: string")]
    pub fn endpoint(
        &self,
        env: &Env,
        me: Unknown<'_>,
        peer: Unknown<'_>,
    ) -> napi::Result<JsDirectEnd> {
        guard(env, || {
            let me = js::string(env, me, "me")?;
            let peer = js::string(env, peer, "peer")?;
            let hub = self.core(env)?.hub();
            let end = hub.endpoint(&me, &peer).map_err(|e| hub_error(env, &e))?;
            Ok(direct_end(hub.clone(), end))
        })
    }

    /// Opens a mesh scope over `systems` (at least two): every pair gets a
    /// direct channel until the mesh is closed.
    #[napi(ts_args_type = "systems: Array<string>")]
    pub fn mesh(&self, env: &Env, systems: Unknown<'_>) -> napi::Result<JsMesh> {
        guard(env, || {
            let systems = js::strings(env, systems, "systems")?;
            let hub = self.core(env)?.hub();
            let mesh = hub.mesh(&systems).map_err(|e| hub_error(env, &e))?;
            Ok(JsMesh {
                id: mesh.id(),
                systems: mesh.systems().to_vec(),
                mesh: Mutex::new(Some(mesh)),
                hub: hub.clone(),
            })
        })
    }
}
