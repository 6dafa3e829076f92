//! Cheap Promises settled from any thread (the hub's and the state store's
//! Promises: publishes, receives, requests, direct sends).
//!
//! napi-rs's `JsDeferred` creates a thread-safe function (a libuv async
//! handle and a cleanup hook) per Promise, which costs hundreds of
//! microseconds: far more than a publish. Here every JS thread has one
//! [`Settler`]: Promises are made by a small JS helper (`make()` keeps the
//! resolve/reject functions in a map by id), and other threads hand the
//! outcomes to the settler's queue; one thread-safe-function call drains
//! the queue on the JS thread in a batch.
//!
//! # Keeping the event loop alive
//! The thread-safe function is created once per JS thread, weak. While any
//! Promise made here is pending (`pending > 0`) it is referenced (it keeps
//! the event loop alive, as a pending deferred would); when the last one
//! settles it is unreferenced again. Both happen on the JS thread.
//!
//! # Invariants
//! * Every [`Ticket`] settles its Promise exactly once: by
//!   [`Ticket::settle`], or, if dropped unsettled, with a `PSO_INTERNAL`
//!   error (so nothing can keep the loop alive forever).
//! * The drain disarms only after finding the queue empty, and re-checks
//!   after disarming, so no outcome is stranded (the bridge's protocol).
//! * Outcomes queued after the environment went away are dropped with the
//!   queue.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use napi::bindgen_prelude::{
    FnArgs, Function, FunctionRef, JsObjectValue, Object, ToNapiValue, Unknown,
};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};

/// What a Promise settles with, built on the JS thread.
pub(crate) type Outcome = Box<dyn for<'e> FnOnce(&'e Env) -> napi::Result<Unknown<'e>> + Send>;

type DrainTsfn = ThreadsafeFunction<(), (), (), Status, false, true>;
type SettleFn = FunctionRef<FnArgs<(u32, bool, Unknown<'static>)>, ()>;
type MakeFn = FunctionRef<(), Object<'static>>;

const HELPER: &str = r#"(function () {
  const slots = new Map()
  let next = 1
  return {
    make() {
      const id = next++
      if (next > 0x7fffffff) next = 1
      const promise = new Promise((resolve, reject) => { slots.set(id, [resolve, reject]) })
      return [id, promise]
    },
    settle(id, ok, value) {
      const s = slots.get(id)
      if (s === undefined) return
      slots.delete(id)
      s[ok ? 0 : 1](value)
    },
  }
})()"#;

/// The part other threads use.
pub(crate) struct Shared {
    queue: Mutex<Vec<(u32, Outcome)>>,
    armed: AtomicBool,
    tsfn: Mutex<Option<DrainTsfn>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn push(&self, id: u32, outcome: Outcome) {
        lock(&self.queue).push((id, outcome));
        if !self.armed.swap(true, Ordering::SeqCst)
            && let Some(t) = lock(&self.tsfn).as_ref()
        {
            // Fails only while the environment goes away.
            let _ = t.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// The JS thread's half.
struct Local {
    shared: Arc<Shared>,
    make: MakeFn,
    settle: SettleFn,
    pending: Cell<usize>,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<Local>>> = const { RefCell::new(None) };
}

fn local(env: &Env) -> napi::Result<Rc<Local>> {
    if let Some(l) = LOCAL.with(|l| l.borrow().clone()) {
        return Ok(l);
    }
    let helper: Object<'_> = env.run_script(HELPER)?;
    let make: Function<'_, (), Object<'_>> = helper.get_named_property("make")?;
    let settle: Function<'_, FnArgs<(u32, bool, Unknown<'_>)>, ()> =
        helper.get_named_property("settle")?;
    let shared = Arc::new(Shared {
        queue: Mutex::new(Vec::new()),
        armed: AtomicBool::new(false),
        tsfn: Mutex::new(None),
    });
    let weak: Weak<Shared> = Arc::downgrade(&shared);
    let noop: Function<'_, (), ()> = env.create_function_from_closure("pso_settle", |_| Ok(()))?;
    let tsfn: DrainTsfn = noop
        .build_threadsafe_function::<()>()
        .weak::<true>()
        .callee_handled::<false>()
        .build_callback(move |ctx| {
            if let Some(shared) = weak.upgrade() {
                let env = ctx.env;
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drain(&env, &shared)));
            }
            // Never `Err`: that would be fatal.
            Ok(())
        })?;
    *lock(&shared.tsfn) = Some(tsfn);
    let l = Rc::new(Local {
        shared,
        make: make.create_ref()?,
        settle: settle.create_ref()?,
        pending: Cell::new(0),
    });
    LOCAL.with(|slot| *slot.borrow_mut() = Some(l.clone()));
    // Released while the environment still exists (a thread-local's
    // destructor would run after it is gone).
    env.add_env_cleanup_hook((), |()| {
        let gone = LOCAL.with(|slot| slot.borrow_mut().take());
        if let Some(l) = gone {
            lock(&l.shared.queue).clear();
            lock(&l.shared.tsfn).take();
            drop(l);
        }
    })?;
    Ok(l)
}

/// Settles what other threads queued (JS thread, the tsfn callback).
fn drain(env: &Env, shared: &Arc<Shared>) {
    let Some(l) = LOCAL.with(|l| l.borrow().clone()) else {
        return;
    };
    loop {
        let batch = std::mem::take(&mut *lock(&shared.queue));
        if batch.is_empty() {
            shared.armed.store(false, Ordering::SeqCst);
            if lock(&shared.queue).is_empty() || shared.armed.swap(true, Ordering::SeqCst) {
                break;
            }
            continue;
        }
        for (id, outcome) in batch {
            let _ = env.run_in_scope(|| {
                l.finish(env, id, outcome);
                Ok(())
            });
        }
    }
}

impl Local {
    fn finish(&self, env: &Env, id: u32, outcome: Outcome) {
        let (ok, value) = match outcome(env) {
            Ok(v) => (true, Ok(v)),
            Err(e) => (false, e.into_unknown(env)),
        };
        if let (Ok(settle), Ok(value)) = (self.settle.borrow_back(env), value) {
            let _ = settle.call(FnArgs::from((id, ok, value)));
        }
        let left = self.pending.get().saturating_sub(1);
        self.pending.set(left);
        if left == 0
            && let Some(t) = lock(&self.shared.tsfn).as_mut()
        {
            // `unref` (napi_unref_threadsafe_function) is what lets the loop
            // exit; napi-rs deprecates it in favour of clones, which count
            // references of the function itself, not of the loop.
            #[allow(deprecated)]
            let _ = t.unref(env);
        }
    }
}

/// Settles one Promise made by [`promise`], from any thread.
pub(crate) struct Ticket {
    id: u32,
    shared: Arc<Shared>,
    done: bool,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).finish()
    }
}

impl Ticket {
    /// Queues the outcome; the JS thread settles the Promise with it.
    pub(crate) fn settle(mut self, outcome: Outcome) {
        self.done = true;
        self.shared.push(self.id, outcome);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.shared.push(
                self.id,
                Box::new(|env: &Env| {
                    Err(crate::error::of_kind(
                        env,
                        pso_core::ErrorKind::Internal,
                        "internal error in pso-node: a Promise was abandoned",
                    ))
                }),
            );
        }
    }
}

/// A new pending Promise and the ticket that settles it (JS thread).
pub(crate) fn promise(env: &Env) -> napi::Result<(Ticket, Object<'_>)> {
    let l = local(env)?;
    let pair = l.make.borrow_back(env)?.call(())?;
    let id: u32 = pair.get_element(0)?;
    let promise: Object<'_> = pair.get_element(1)?;
    if l.pending.get() == 0
        && let Some(t) = lock(&l.shared.tsfn).as_mut()
    {
        #[allow(deprecated)]
        t.refer(env)?;
    }
    l.pending.set(l.pending.get() + 1);
    Ok((
        Ticket {
            id,
            shared: l.shared.clone(),
            done: false,
        },
        promise,
    ))
}

/// Settles `ticket`'s Promise now (JS thread): no queueing.
pub(crate) fn settle_now(env: &Env, mut ticket: Ticket, outcome: Outcome) {
    ticket.done = true;
    if let Ok(l) = local(env) {
        l.finish(env, ticket.id, outcome);
    }
}

/// A Promise already settled with `outcome` (JS thread).
pub(crate) fn settled<'e>(env: &'e Env, outcome: Outcome) -> napi::Result<Object<'e>> {
    let (ticket, promise) = promise(env)?;
    settle_now(env, ticket, outcome);
    Ok(promise)
}

/// An outcome that rejects with `e`.
pub(crate) fn reject(e: napi::Error) -> Outcome {
    Box::new(move |_env: &Env| Err(e))
}
