//! Resources: the Node column of docs/API.md, "Resources" (pso-core
//! `allocator/`): capacities, group quotas, fairness weights, leases
//! ([`lease`]), gangs, step leases, status and plans ([`status`]).
//!
//! # Waiting without blocking
//! `allocateResources` and `allocateGang` return Promises. The request is
//! queued with pso-core's `request_resources`, whose [`PendingLease`] is a
//! `Future`: a [`Waiter`] polls it with itself as the waker, so whichever
//! thread grants, rejects or times out the request (a release on the JS
//! thread, PSO's timer thread, `close()`) settles the Promise through its
//! deferred. No thread waits and the event loop is never blocked. The
//! pending deferred keeps the event loop alive while the request waits;
//! `close()` rejects every waiter (`PSO_CLOSED`), so the process can exit.
//!
//! # Withdrawing
//! `options.signal` (an `AbortSignal`) withdraws a waiting request: the
//! Promise rejects with `PSO_CANCELLED`, unless the request was decided
//! before the abort was seen (then it settles with that outcome). A request
//! whose signal is already aborted is not made at all. Nothing leaks: a
//! withdrawn request is gone from the allocator; leases granted to a Promise
//! nobody awaits are released when their `Lease` objects are collected, or
//! when the environment goes away before they reach JS.

pub(crate) mod lease;
pub(crate) mod status;

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use napi::bindgen_prelude::{
    Either, Function, FunctionCallContext, JsObjectValue, JsValue, Object, Unknown,
};
use napi::{Env, JsDeferred};
use napi_derive::napi;
use pso_core::{Lease, PendingLease, Priority, ResourceError, ResourceRequest};

use self::lease::JsLease;
use self::status::JsResourceStatus;
use crate::error;
use crate::model::js::{self, check_keys, get};
use crate::orchestrator::{JsOrchestrator, guard};
use crate::workflow::context::{JsFn, JsSide};

/// How a request is served (`allocateResources(system, amounts, options)`,
/// and the same fields in `setStepResources`).
#[napi(
    object,
    js_name = "ResourceOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsResourceOptions {
    /// Priority class (default `'normal'`): strict between classes, with
    /// aging while it waits.
    #[napi(ts_type = "Priority")]
    pub priority: Option<String>,
    /// The group whose quota the lease counts against.
    pub group: Option<String>,
    /// Whether a higher class may revoke it (after a notice and a grace
    /// period).
    pub preemptible: Option<bool>,
    /// Revokes the lease automatically after this many milliseconds.
    pub ttl_ms: Option<f64>,
    /// Waits at most this many milliseconds for the request to fit (0:
    /// answer at once; absent: wait as long as it takes).
    pub wait_ms: Option<f64>,
}

/// Options of `allocateResources(system, amounts, options)`: those of
/// `ResourceOptions`, plus `signal`.
#[napi(
    object,
    js_name = "AllocateOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsAllocateOptions {
    /// Priority class (default `'normal'`).
    #[napi(ts_type = "Priority")]
    pub priority: Option<String>,
    /// The group whose quota the lease counts against.
    pub group: Option<String>,
    /// Whether a higher class may revoke it.
    pub preemptible: Option<bool>,
    /// Revokes the lease automatically after this many milliseconds.
    pub ttl_ms: Option<f64>,
    /// Waits at most this many milliseconds (0: answer at once).
    pub wait_ms: Option<f64>,
    /// Aborting it withdraws the waiting request (`PSO_CANCELLED`).
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<()>,
}

/// One part of `allocateGang(parts)`.
#[napi(
    object,
    js_name = "GangPart",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsGangPart {
    /// The system the part's lease is for.
    pub system: String,
    /// Dimension -> amount (positive integers; zeros are ignored).
    #[napi(ts_type = "Record<string, number>")]
    pub amounts: (),
    /// Priority class (the gang is served at the highest among its parts).
    #[napi(ts_type = "Priority")]
    pub priority: Option<String>,
    /// The group whose quota this part counts against.
    pub group: Option<String>,
    /// Whether a higher class may revoke this part's lease.
    pub preemptible: Option<bool>,
    /// Revokes this part's lease after this many milliseconds.
    pub ttl_ms: Option<f64>,
    /// Waits at most this many milliseconds (the gang waits at most the
    /// shortest `waitMs` among its parts).
    pub wait_ms: Option<f64>,
    /// Aborting it withdraws the whole gang request.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<()>,
}

const OPTION_KEYS: [&str; 5] = ["priority", "group", "preemptible", "ttlMs", "waitMs"];
const ALLOCATE_KEYS: [&str; 6] = [
    "priority",
    "group",
    "preemptible",
    "ttlMs",
    "waitMs",
    "signal",
];
const PART_KEYS: [&str; 8] = [
    "system",
    "amounts",
    "priority",
    "group",
    "preemptible",
    "ttlMs",
    "waitMs",
    "signal",
];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads `amounts` (dimension -> non-negative integer; zeros are ignored).
fn amounts(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<ResourceRequest> {
    let obj = js::object(env, v, what)?;
    let mut req = ResourceRequest::new();
    for dim in Object::keys(&obj)? {
        let field = format!("{what}.{dim}");
        let n = js::opt_number(env, get(&obj, &dim)?, &field)?
            .ok_or_else(|| error::invalid(env, format!("{field} must be a number")))?;
        let n = js::count(env, n, &field)?;
        if n > 0 {
            req = req.amount(dim, n);
        }
    }
    Ok(req)
}

/// Applies `priority`, `group`, `preemptible`, `ttlMs` and `waitMs` of `obj`.
fn options(
    env: &Env,
    mut req: ResourceRequest,
    obj: &Object<'_>,
    what: &str,
) -> napi::Result<ResourceRequest> {
    let field = |key: &str| format!("{key} of {what}");
    if let Some(p) = js::opt_string(env, get(obj, "priority")?, &field("priority"))? {
        let p: Priority = p.parse().map_err(|m| error::invalid(env, m))?;
        req = req.priority(p);
    }
    if let Some(g) = js::opt_string(env, get(obj, "group")?, &field("group"))? {
        req = req.group(g);
    }
    if let Some(p) = js::opt_bool(env, get(obj, "preemptible")?, &field("preemptible"))? {
        req = req.preemptible(p);
    }
    if let Some(t) = js::duration_ms(env, get(obj, "ttlMs")?, &field("ttlMs"), true)? {
        req = req.ttl(t);
    }
    if let Some(w) = js::duration_ms(env, get(obj, "waitMs")?, &field("waitMs"), false)? {
        req = req.wait(w);
    }
    Ok(req)
}

/// Reads `options.signal`: an `AbortSignal`, or nothing.
fn signal<'e>(
    env: &Env,
    js_side: &JsSide,
    obj: &Object<'e>,
    what: &str,
) -> napi::Result<Option<Object<'e>>> {
    let v: Unknown<'e> = get(obj, "signal")?;
    if js::is_nullish(&v) {
        return Ok(None);
    }
    if !js_side.is_abort_signal(env, v)? {
        return Err(error::invalid(
            env,
            format!(
                "signal of {what} must be an AbortSignal, got {}",
                js::type_of(&v)
            ),
        ));
    }
    v.coerce_to_object().map(Some)
}

type Resolved = Either<JsLease, Vec<JsLease>>;
type Resolver = Box<dyn FnOnce(Env) -> napi::Result<Resolved> + Send>;
type LeaseDeferred = JsDeferred<Resolved, Resolver>;

/// A request on its way to a Promise.
struct Waiting {
    pending: PendingLease,
    deferred: LeaseDeferred,
    /// Stop listening to the signals (on the JS thread).
    unwatch: Vec<JsFn>,
}

/// Settles one `allocateResources`/`allocateGang` Promise (see the module
/// docs). It is the waker of its own `PendingLease`.
struct Waiter {
    state: Mutex<Option<Waiting>>,
    /// Resolve with an array (a gang) rather than one lease.
    gang: bool,
    /// The (first) requesting system, for `PSO_CANCELLED`.
    system: String,
}

impl Wake for Waiter {
    fn wake(self: Arc<Self>) {
        self.poll();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll();
    }
}

impl Waiter {
    /// Polls the request; settles the Promise once it is decided.
    fn poll(self: &Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut st = lock(&self.state);
        let Some(w) = st.as_mut() else { return };
        let Poll::Ready(outcome) = Pin::new(&mut w.pending).poll(&mut Context::from_waker(&waker))
        else {
            return;
        };
        let w = st.take();
        drop(st);
        if let Some(w) = w {
            self.settle(w, outcome);
        }
    }

    /// The signal aborted (JS thread): withdraws the request.
    fn abort(&self) {
        let Some(mut w) = lock(&self.state).take() else {
            return;
        };
        // Decided before the abort was seen: that outcome stands.
        let outcome = w.pending.try_take().unwrap_or_else(|| {
            Err(ResourceError::Cancelled {
                system: self.system.clone(),
            })
        });
        self.settle(w, outcome);
    }

    fn settle(&self, w: Waiting, outcome: Result<Vec<Lease>, ResourceError>) {
        let Waiting {
            pending,
            deferred,
            unwatch,
        } = w;
        // Withdraws it if it is still waiting (an abort); outside our lock,
        // since that wakes this waiter.
        drop(pending);
        let gang = self.gang;
        deferred.resolve(Box::new(move |env: Env| {
            for u in unwatch {
                let _ = u.borrow_back(&env).and_then(|f| f.call(()));
            }
            match outcome {
                Ok(leases) => {
                    let mut leases: Vec<JsLease> = leases.into_iter().map(JsLease::new).collect();
                    if gang {
                        Ok(Either::B(leases))
                    } else {
                        leases
                            .pop()
                            .map(Either::A)
                            .ok_or_else(|| napi::Error::from_reason("no lease was granted"))
                    }
                }
                Err(e) => Err(error::resource(&env, &e)),
            }
        }));
    }
}

/// A parsed `allocateResources`/`allocateGang` call.
struct Call<'e> {
    parts: Vec<(String, ResourceRequest)>,
    signals: Vec<Object<'e>>,
}

impl JsOrchestrator {
    /// Queues a request and returns the Promise of its lease(s).
    fn allocate<'e>(
        &self,
        env: &'e Env,
        gang: bool,
        read: impl FnOnce(&JsSide) -> napi::Result<Call<'e>>,
    ) -> napi::Result<Object<'e>> {
        let (deferred, promise) = env.create_deferred::<Resolved, Resolver>()?;
        let started = guard(env, || {
            let core = self.open(env)?;
            let bridge = self.bridge(env)?;
            let call = read(bridge.js())?;
            let system = call.parts.first().map(|p| p.0.clone()).unwrap_or_default();
            for s in &call.signals {
                if s.get_named_property::<bool>("aborted")? {
                    return Err(error::resource(env, &ResourceError::Cancelled { system }));
                }
            }
            let parts: Vec<(&str, &ResourceRequest)> =
                call.parts.iter().map(|(s, r)| (s.as_str(), r)).collect();
            let pending = core
                .request_resources(&parts)
                .map_err(|e| error::resource(env, &e))?;
            Ok((pending, bridge, call.signals, system))
        });
        let (pending, bridge, signals, system) = match started {
            Ok(s) => s,
            Err(e) => {
                deferred.reject(e);
                return Ok(promise);
            }
        };
        let waiter = Arc::new(Waiter {
            state: Mutex::new(Some(Waiting {
                pending,
                deferred,
                unwatch: Vec::new(),
            })),
            gang,
            system,
        });
        // Listen before the first poll: no wake-up can come before it.
        for s in signals {
            let w = waiter.clone();
            let cancel: Function<'_, (), bool> =
                env.create_function_from_closure("withdraw", move |_: FunctionCallContext<'_>| {
                    w.abort();
                    Ok(true)
                })?;
            let unwatch = bridge.js().watch(env, s.to_unknown(), cancel)?;
            let left = match lock(&waiter.state).as_mut() {
                Some(w) => {
                    w.unwatch.extend(unwatch);
                    None
                }
                None => unwatch,
            };
            if let Some(u) = left {
                let _ = u.borrow_back(env).and_then(|f| f.call(()));
            }
        }
        waiter.poll();
        Ok(promise)
    }
}

#[napi]
impl JsOrchestrator {
    /// Declares (or changes) the capacity of a resource dimension (`cpu`,
    /// `memory`, or any counter such as `gpu`). Lowering it revokes nothing;
    /// raising it grants waiters at once.
    #[napi(ts_args_type = "dimension: string, capacity: number")]
    pub fn set_capacity(
        &self,
        env: &Env,
        dimension: Unknown<'_>,
        capacity: Unknown<'_>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let dim = js::string(env, dimension, "dimension")?;
            let n = js::opt_number(env, capacity, "capacity")?
                .ok_or_else(|| error::invalid(env, "capacity must be a number"))?;
            let n = js::count(env, n, "capacity")?;
            core.set_capacity(&dim, n)
                .map_err(|e| error::resource(env, &e))
        })
    }

    /// Sets (or with `null` removes) the hard quota of `group` on a
    /// dimension: the group's leases never hold more together.
    #[napi(ts_args_type = "group: string, dimension: string, quota: number | null")]
    pub fn set_group_quota(
        &self,
        env: &Env,
        group: Unknown<'_>,
        dimension: Unknown<'_>,
        quota: Unknown<'_>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let group = js::string(env, group, "group")?;
            let dim = js::string(env, dimension, "dimension")?;
            let quota = match js::opt_number(env, quota, "quota")? {
                Some(n) => Some(js::count(env, n, "quota")?),
                None => None,
            };
            core.set_group_quota(&group, &dim, quota)
                .map_err(|e| error::resource(env, &e))
        })
    }

    /// Sets a system's weight in dominant-resource fairness (default 1; a
    /// system of weight 2 is served as if its share were half).
    #[napi(ts_args_type = "system: string, weight: number")]
    pub fn set_resource_weight(
        &self,
        env: &Env,
        system: Unknown<'_>,
        weight: Unknown<'_>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let system = js::string(env, system, "system")?;
            let w = js::opt_number(env, weight, "weight")?
                .ok_or_else(|| error::invalid(env, "weight must be a number"))?;
            core.set_resource_weight(&system, w)
                .map_err(|e| error::resource(env, &e))
        })
    }

    /// Leases `amounts` for `system`. Resolves with the `Lease` once the
    /// request fits in policy order (priority with aging, then fairness);
    /// rejects at once when it could never fit (`PSO_EXCEEDS_CAPACITY`,
    /// `PSO_EXCEEDS_QUOTA`, with the numbers), for unknown names
    /// (`PSO_NOT_FOUND`), after `waitMs` (`PSO_TIMEOUT`, saying why it
    /// waited), when `signal` aborts (`PSO_CANCELLED`) or the orchestrator
    /// closes (`PSO_CLOSED`). Never blocks the event loop.
    #[napi(
        ts_args_type = "system: string, amounts: Record<string, number>, options?: AllocateOptions",
        ts_return_type = "Promise<Lease>"
    )]
    pub fn allocate_resources<'e>(
        &self,
        env: &'e Env,
        system: Unknown<'e>,
        amounts_arg: Unknown<'e>,
        options: Option<Unknown<'e>>,
    ) -> napi::Result<Object<'e>> {
        self.allocate(env, false, |js_side| {
            let system = js::string(env, system, "system")?;
            let mut req = amounts(env, amounts_arg, "amounts")?;
            let mut signals = Vec::new();
            if let Some(obj) = js::opt_object(env, options, "options")? {
                check_keys(env, &obj, &ALLOCATE_KEYS, "allocate options")?;
                req = self::options(env, req, &obj, "allocate options")?;
                signals.extend(signal(env, js_side, &obj, "allocate options")?);
            }
            Ok(Call {
                parts: vec![(system, req)],
                signals,
            })
        })
    }

    /// Leases resources for several systems at once, all or nothing: while
    /// the gang waits none of its parts is held. Served at the highest
    /// priority among the parts, waiting at most the shortest `waitMs`.
    /// Resolves with one lease per part, in order; rejects as
    /// `allocateResources` does. A `signal` of any part withdraws the gang.
    #[napi(
        ts_args_type = "parts: Array<GangPart>",
        ts_return_type = "Promise<Array<Lease>>"
    )]
    pub fn allocate_gang<'e>(&self, env: &'e Env, parts: Unknown<'e>) -> napi::Result<Object<'e>> {
        self.allocate(env, true, |js_side| {
            let mut call = Call {
                parts: Vec::new(),
                signals: Vec::new(),
            };
            for (i, p) in js::array(env, parts, "parts")?.into_iter().enumerate() {
                let what = format!("parts[{i}]");
                let obj = js::object(env, p, &what)?;
                check_keys(env, &obj, &PART_KEYS, &what)?;
                let system = js::string(env, get(&obj, "system")?, &format!("{what}.system"))?;
                let req = amounts(env, get(&obj, "amounts")?, &format!("{what}.amounts"))?;
                let req = options(env, req, &obj, &what)?;
                call.signals.extend(signal(env, js_side, &obj, &what)?);
                call.parts.push((system, req));
            }
            Ok(call)
        })
    }

    /// Sets (or with `null` removes) what each workflow step of `system`
    /// leases while it runs: asked for when the step is ready to run,
    /// released when its attempt ends; a rejected request fails the step.
    #[napi(
        ts_args_type = "system: string, amounts: Record<string, number> | null, options?: ResourceOptions"
    )]
    pub fn set_step_resources(
        &self,
        env: &Env,
        system: Unknown<'_>,
        amounts_arg: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let system = js::string(env, system, "system")?;
            let req = if js::is_nullish(&amounts_arg) {
                None
            } else {
                let mut req = amounts(env, amounts_arg, "amounts")?;
                if let Some(obj) = js::opt_object(env, options, "options")? {
                    check_keys(env, &obj, &OPTION_KEYS, "step resource options")?;
                    req = self::options(env, req, &obj, "step resource options")?;
                }
                Some(req)
            };
            core.set_step_resources(&system, req)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// Capacity, allocated and free per dimension; group quotas; every lease
    /// with its holder, amounts, age and TTL; every waiting request in policy
    /// order with why it waits.
    #[napi]
    pub fn resource_status(&self, env: &Env) -> napi::Result<JsResourceStatus> {
        guard(env, || {
            let core = self.open(env)?;
            Ok(core.resource_status().into())
        })
    }

    /// Plans (and with `apply`, carries out): reclaiming expired and idle
    /// leases, rebalancing toward fair shares, resizing concurrency limits.
    #[napi(ts_args_type = "apply?: boolean", ts_return_type = "ResourcePlan")]
    pub fn optimize_resources<'e>(
        &self,
        env: &'e Env,
        apply: Option<Unknown<'_>>,
    ) -> napi::Result<Object<'e>> {
        guard(env, || {
            let core = self.open(env)?;
            let apply = match apply {
                Some(v) => js::opt_bool(env, v, "apply")?.unwrap_or(false),
                None => false,
            };
            let plan = core
                .optimize_resources(apply)
                .map_err(|e| error::resource(env, &e))?;
            status::plan(env, &plan)
        })
    }
}
