//! The `Lease` class (pso-core `allocator/lease.rs`): resources held by a
//! system until released, expired or preempted.
//!
//! A `Lease` owns pso-core's `Lease`. It is released by `release()`, by
//! `[Symbol.dispose]()` (`using lease = await o.allocateResources(...)`),
//! or when the object is garbage-collected (its finalizer drops the core
//! lease on the JS thread; the allocator never waits for JS while it holds
//! its lock, so that is safe).
//!
//! # Preemption notices
//! pso-core calls a lease's preemption callback on the thread that decided
//! the preemption — one asking for or releasing resources (the JS thread
//! itself, inside `allocateResources` or `release()`), PSO's timer thread,
//! or `optimizeResources(true)`. `onPreempt(cb)` hands pso-core a closure
//! that only queues the notice on a *weak* thread-safe function, so `cb`
//! always runs later, on the event loop, and never keeps the process alive;
//! pso-core drops the closure (and the thread-safe function with it) when
//! the lease is released, expires or is revoked. A throw from `cb` is an
//! uncaught exception, as from any event callback.

use std::collections::BTreeMap;

use napi::bindgen_prelude::{FromNapiValue, Function, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, ValueType};
use napi_derive::napi;
use pso_core::{Lease, PreemptNotice};

use crate::error;
use crate::model::js;

/// Weak (never keeps the event loop alive), errors not passed as a first
/// argument.
type NoticeTsfn =
    ThreadsafeFunction<JsPreemptNotice, Unknown<'static>, JsPreemptNotice, Status, false, true>;

/// What `lease.onPreempt(cb)` calls `cb` with.
#[napi(object, js_name = "PreemptNotice", object_from_js = false)]
#[derive(Debug, Clone)]
pub struct JsPreemptNotice {
    /// The lease's id.
    pub lease: f64,
    /// Its holder.
    pub system: String,
    /// Time left before the lease is revoked, in milliseconds.
    pub grace_ms: f64,
}

impl From<PreemptNotice> for JsPreemptNotice {
    fn from(n: PreemptNotice) -> Self {
        JsPreemptNotice {
            lease: n.lease as f64,
            system: n.system,
            grace_ms: n.grace.as_secs_f64() * 1000.0,
        }
    }
}

/// Resources held by a system (from `allocateResources` or `allocateGang`)
/// until released — `release()`, `[Symbol.dispose]()` (`using`), or when
/// garbage-collected — or expired (`ttlMs`) or preempted.
#[napi(js_name = "Lease")]
pub struct JsLease {
    /// `None` once released through this object.
    lease: Option<Lease>,
    id: u64,
    system: String,
}

impl std::fmt::Debug for JsLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl JsLease {
    pub(crate) fn new(lease: Lease) -> JsLease {
        JsLease {
            id: lease.id(),
            system: lease.system().to_owned(),
            lease: Some(lease),
        }
    }
}

#[napi]
impl JsLease {
    /// The lease's id, as in `resourceStatus().leases` (unique, never
    /// reused, below 2^53).
    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.id as f64
    }

    /// The holding system.
    #[napi(getter)]
    pub fn system(&self) -> String {
        self.system.clone()
    }

    /// The amounts held, by dimension (empty once the lease is gone).
    #[napi(getter, ts_return_type = "Record<string, number>")]
    pub fn amounts(&self) -> BTreeMap<String, f64> {
        self.lease
            .as_ref()
            .map(|l| {
                l.amounts()
                    .into_iter()
                    .map(|(d, a)| (d, a as f64))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether it is still held (not released, expired or preempted).
    #[napi(getter)]
    pub fn held(&self) -> bool {
        self.lease.as_ref().is_some_and(Lease::is_held)
    }

    /// Milliseconds left before its TTL revokes it (`null` without a TTL, or
    /// once it is gone).
    #[napi(getter)]
    pub fn expires_in_ms(&self) -> Option<f64> {
        self.lease
            .as_ref()
            .and_then(Lease::expires_in)
            .map(|d| d.as_secs_f64() * 1000.0)
    }

    /// Marks the lease as in use now (`optimizeResources` reclaims leases
    /// that stay untouched longer than `idleLeaseAfterMs`).
    #[napi]
    pub fn touch(&self) {
        if let Some(l) = &self.lease {
            l.touch();
        }
    }

    /// Releases the resources now. Returns false if the lease was already
    /// gone (released, expired or preempted).
    #[napi]
    pub fn release(&mut self) -> bool {
        self.lease.take().is_some_and(Lease::release)
    }

    /// Calls `callback` on the event loop if the lease is chosen for
    /// preemption, with `{ lease, system, graceMs }`: release it within
    /// `graceMs`, after which it is revoked. Replaces an earlier callback;
    /// does nothing once the lease is gone. Never keeps the process alive.
    #[napi(ts_args_type = "callback: (notice: PreemptNotice) => void")]
    pub fn on_preempt(&self, env: &Env, callback: Unknown<'_>) -> napi::Result<()> {
        if callback.get_type()? != ValueType::Function {
            return Err(error::invalid(
                env,
                format!(
                    "the onPreempt callback must be a function, got {}",
                    js::type_of(&callback)
                ),
            ));
        }
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        let f: Function<'_, JsPreemptNotice, Unknown<'static>> = Function::from_unknown(callback)?;
        let tsfn: NoticeTsfn = f
            .build_threadsafe_function::<JsPreemptNotice>()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?;
        lease.on_preempt(move |notice| {
            // Fails only while the environment shuts down: nobody to tell.
            let _ = tsfn.call(notice.into(), ThreadsafeFunctionCallMode::NonBlocking);
        });
        Ok(())
    }

    /// Same as `release()`, for `using lease = await o.allocateResources(...)`.
    #[napi(well_known_symbol = "dispose")]
    pub fn dispose(&mut self) {
        self.release();
    }
}
