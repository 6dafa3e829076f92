//! Blocking pso-core calls as JS Promises: the call runs on a helper thread
//! (`pso-node-<name>`), never on the JS thread, because it may wait for JS
//! (lifecycle handlers, health probes, a workload function), which needs the
//! JS thread free.
//!
//! # Invariants
//! * The Promise always settles: with the call's result, with `PSO_INTERNAL`
//!   if it panicked (caught on the helper thread), or with `PSO_IO` if the
//!   thread could not start. An unsettled deferred would keep the event loop
//!   alive forever.
//! * While the call runs, `in_flight` (the orchestrator's, see
//!   `orchestrator.rs`) is raised, so `close()` does not wait for it on the
//!   JS thread.
//! * The JS value is built on the JS thread, from the call's `Send` result,
//!   when the Promise settles.

#![forbid(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use napi::Env;
use napi::bindgen_prelude::{Object, ToNapiValue};

use crate::error;

type Resolver<T> = Box<dyn FnOnce(Env) -> napi::Result<T> + Send>;

/// Runs `work` on a helper thread named `pso-node-<name>` and returns a
/// Promise of `finish(env, result)`, built on the JS thread.
pub(crate) fn spawn<'e, T, R>(
    env: &'e Env,
    in_flight: Option<Arc<AtomicUsize>>,
    name: &str,
    work: impl FnOnce() -> R + Send + 'static,
    finish: impl FnOnce(&Env, R) -> napi::Result<T> + Send + 'static,
) -> napi::Result<Object<'e>>
where
    T: ToNapiValue + 'static,
    R: Send + 'static,
{
    let (deferred, promise) = env.create_deferred::<T, Resolver<T>>()?;
    // Shared so the Promise is settled even if the thread cannot start.
    let slot = Arc::new(Mutex::new(Some(deferred)));
    if let Some(n) = &in_flight {
        n.fetch_add(1, Ordering::AcqRel);
    }
    let (thread_slot, thread_in_flight) = (slot.clone(), in_flight.clone());
    let spawned = thread::Builder::new()
        .name(format!("pso-node-{name}"))
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(work));
            if let Some(n) = &thread_in_flight {
                n.fetch_sub(1, Ordering::AcqRel);
            }
            let deferred = thread_slot.lock().ok().and_then(|mut d| d.take());
            if let Some(deferred) = deferred {
                deferred.resolve(Box::new(move |env| match result {
                    Ok(r) => finish(&env, r),
                    Err(panic) => Err(error::internal(&env, panic)),
                }));
            }
        });
    if let Err(e) = spawned {
        if let Some(n) = &in_flight {
            n.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(deferred) = slot.lock().ok().and_then(|mut d| d.take()) {
            deferred.reject(error::io(
                env,
                format!("cannot start a thread for {name}: {e}"),
            ));
        }
    }
    Ok(promise)
}

/// A Promise already rejected with `e` (an argument error of a verb that
/// returns a Promise: it rejects rather than throws, like the lifecycle
/// verbs).
pub(crate) fn rejected<'e>(env: &'e Env, e: napi::Error) -> napi::Result<Object<'e>> {
    let (deferred, promise) = env.create_deferred::<(), Resolver<()>>()?;
    deferred.reject(e);
    Ok(promise)
}
