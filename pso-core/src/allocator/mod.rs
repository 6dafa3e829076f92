//! Resources: capacity in named dimensions, leases granted by priority and
//! fairness, group quotas, preemption, gang requests, TTLs, and a plan to
//! reclaim and rebalance ([`optimize`]).
//!
//! The policy and its invariants are in `decide` (pure bookkeeping, unit- and
//! property-tested with simulated time). This module wraps it: one mutex, and
//! every side effect the core returns — waking a waiter, arming a timer for a
//! TTL, a grace period or aging, calling a preemption callback — carried out
//! after unlocking. Every release drains the waiters that now fit, in policy
//! order, at once: nothing polls.
//!
//! # Handles
//! A [`Lease`] releases its resources when dropped (or with
//! [`Lease::release`]); a lease revoked by its TTL or by preemption is already
//! gone, and releasing it again does nothing (ids carry a generation). A
//! [`PendingLease`] is a queued request: wait for it (blocking, with a
//! timeout, or as a `Future`), or cancel it; dropping it cancels it, and
//! releases anything granted but never taken.

pub(crate) mod bench;
mod decide;
mod lease;
mod optimize;
mod status;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use smallvec::SmallVec;
use thiserror::Error;

use crate::error::{ErrorKind, PsoError};
use crate::metrics::LeaseMetrics;
use crate::metrics::usage::{ResourceUtilization, UsageConfig};
use crate::model::Priority;
use crate::registry::Registry;
use crate::scheduler::{Job, Pool, Timer};
use crate::sync::{Arc, Mutex, RwLock};
use decide::{Core, Effects, Id, Part, Policy};

pub use lease::{Lease, PendingLease};
pub use optimize::{ResourceAction, ResourcePlan};
pub(crate) use status::Held;
pub use status::{DimensionStatus, GroupStatus, LeaseStatus, ResourceStatus, WaiterStatus};

pub(crate) use lease::WaitSlot;

/// Called once when a lease is chosen for preemption, with the grace period
/// left before it is revoked.
pub(crate) type PreemptFn = Box<dyn FnOnce(PreemptNotice) + Send>;

/// What a preempted lease's holder is told.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PreemptNotice {
    /// The lease.
    pub lease: u64,
    /// Its holder.
    pub system: String,
    /// Time left before the lease is revoked.
    pub grace: Duration,
}

/// What a system asks for.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use pso_core::{Priority, ResourceRequest};
/// let req = ResourceRequest::new()
///     .amount("cpu", 500)
///     .amount("memory", 2048)
///     .priority(Priority::High)
///     .group("batch")
///     .ttl(Duration::from_secs(60))
///     .wait(Duration::from_secs(5));
/// # let _ = req;
/// ```
#[derive(Debug, Clone, Default)]
pub struct ResourceRequest {
    pub(crate) amounts: BTreeMap<String, u64>,
    pub(crate) priority: Priority,
    pub(crate) group: Option<String>,
    pub(crate) preemptible: bool,
    pub(crate) ttl: Option<Duration>,
    pub(crate) wait: Option<Duration>,
}

impl ResourceRequest {
    /// An empty request: normal priority, no group, not preemptible, no TTL,
    /// waits as long as it takes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for `amount` of `dimension` (adds to what is already asked).
    pub fn amount(mut self, dimension: impl Into<String>, amount: u64) -> Self {
        *self.amounts.entry(dimension.into()).or_default() += amount;
        self
    }

    /// The priority class.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The group whose quota it counts against.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Whether a higher class may revoke it (after a grace period).
    pub fn preemptible(mut self, preemptible: bool) -> Self {
        self.preemptible = preemptible;
        self
    }

    /// Revokes the lease automatically after this long.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Waits at most this long for the request to fit (`Duration::ZERO`: do
    /// not wait). Without it, waits as long as it takes.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// The amounts asked for.
    pub fn amounts(&self) -> &BTreeMap<String, u64> {
        &self.amounts
    }
}

/// Why a request was rejected.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceError {
    /// More than the whole capacity of a dimension: it could never fit.
    #[error(
        "{system} asks for {requested} {dimension}, more than the whole capacity of {capacity}"
    )]
    ExceedsCapacity {
        /// The requesting system.
        system: String,
        /// The dimension.
        dimension: String,
        /// The amount asked for.
        requested: u64,
        /// The capacity.
        capacity: u64,
    },
    /// More than a group's whole quota of a dimension: it could never fit.
    #[error("the request for {requested} {dimension} exceeds group {group}'s quota of {quota}")]
    ExceedsQuota {
        /// The group.
        group: String,
        /// The dimension.
        dimension: String,
        /// The amount asked for.
        requested: u64,
        /// The quota.
        quota: u64,
    },
    /// The wait timeout passed.
    #[error("{system} waited {} for resources: {reason}", humantime::format_duration(round_ms(*waited)))]
    TimedOut {
        /// The requesting system.
        system: String,
        /// How long it waited.
        waited: Duration,
        /// Why it was still waiting.
        reason: String,
    },
    /// A dimension without declared capacity.
    #[error("unknown resource dimension '{dimension}' (declared: {})", if declared.is_empty() { "none".to_owned() } else { declared.join(", ") })]
    UnknownDimension {
        /// The dimension.
        dimension: String,
        /// The dimensions that have a capacity.
        declared: Vec<String>,
    },
    /// An unregistered system.
    #[error("unknown system '{system}'")]
    UnknownSystem {
        /// The name.
        system: String,
    },
    /// The request was cancelled before it was granted.
    #[error("the request of {system} was cancelled")]
    Cancelled {
        /// The requesting system.
        system: String,
    },
    /// A malformed request or setting.
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The orchestrator is closed.
    #[error("the orchestrator is closed")]
    Closed,
}

impl PsoError for ResourceError {
    fn kind(&self) -> ErrorKind {
        match self {
            ResourceError::ExceedsCapacity { .. } => ErrorKind::ExceedsCapacity,
            ResourceError::ExceedsQuota { .. } => ErrorKind::ExceedsQuota,
            ResourceError::TimedOut { .. } => ErrorKind::Timeout,
            ResourceError::UnknownDimension { .. } | ResourceError::UnknownSystem { .. } => {
                ErrorKind::NotFound
            }
            ResourceError::Cancelled { .. } => ErrorKind::Cancelled,
            ResourceError::Invalid { .. } => ErrorKind::InvalidArgument,
            ResourceError::Closed => ErrorKind::Closed,
        }
    }
}

/// Rejects a request that asks for nothing or has an empty group or a zero
/// TTL.
fn check_request(system: &str, req: &ResourceRequest) -> Result<(), ResourceError> {
    let invalid = |message: String| Err(ResourceError::Invalid { message });
    if req.amounts.values().all(|&a| a == 0) {
        return invalid(format!(
            "the request of {system} asks for nothing (every amount is 0)"
        ));
    }
    if req.group.as_deref() == Some("") {
        return invalid(format!("the request of {system} names an empty group"));
    }
    if req.ttl == Some(Duration::ZERO) {
        return invalid(format!("the request of {system} has a zero TTL"));
    }
    Ok(())
}

/// Rounds a wait to whole milliseconds for messages (sub-millisecond waits
/// to microseconds).
fn round_ms(d: Duration) -> Duration {
    if d >= Duration::from_millis(1) {
        Duration::from_millis((d.as_micros() as u64 + 500) / 1000)
    } else {
        Duration::from_micros(d.as_micros() as u64)
    }
}

/// Why a waiter waits.
#[derive(Debug, Clone)]
pub(crate) struct Waited {
    pub(crate) reason: String,
    pub(crate) ahead: usize,
}

/// Tunables of the allocator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AllocConfig {
    pub(crate) aging_step: Duration,
    pub(crate) grace: Duration,
    pub(crate) idle_after: Duration,
}

impl Default for AllocConfig {
    fn default() -> Self {
        AllocConfig {
            aging_step: Duration::from_secs(1),
            grace: Duration::from_secs(1),
            idle_after: Duration::from_secs(60),
        }
    }
}

/// Everything under the allocator's lock.
pub(crate) struct Locked {
    pub(crate) core: Core,
    /// Waiting requests by token.
    pub(crate) slots: HashMap<u64, StdArc<WaitSlot>>,
    next_token: u64,
    aging_armed: bool,
    closed: bool,
}

/// The allocator. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Allocator {
    pub(crate) inner: Arc<AllocInner>,
}

pub(crate) struct AllocInner {
    pub(crate) state: Mutex<Locked>,
    pub(crate) timer: Arc<Timer>,
    pool: Arc<Pool>,
    registry: Arc<RwLock<Registry>>,
    pub(crate) config: AllocConfig,
}

impl std::fmt::Debug for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("Allocator")
            .field("dimensions", &st.core.dims.len())
            .field("leases", &st.core.leases.len())
            .field("waiters", &st.core.waiters.len())
            .finish()
    }
}

impl Allocator {
    pub(crate) fn new(
        registry: Arc<RwLock<Registry>>,
        timer: Arc<Timer>,
        pool: Arc<Pool>,
        config: AllocConfig,
        usage: UsageConfig,
    ) -> Allocator {
        let mut core = Core::new(Policy {
            aging_step: config.aging_step,
            grace: config.grace,
        });
        core.metrics = usage;
        Allocator {
            inner: Arc::new(AllocInner {
                state: Mutex::new(Locked {
                    core,
                    slots: HashMap::default(),
                    next_token: 1,
                    aging_armed: false,
                    closed: false,
                }),
                timer,
                pool,
                registry,
                config,
            }),
        }
    }

    /// Declares (or changes) the capacity of a dimension.
    pub(crate) fn set_capacity(&self, dim: &str, capacity: u64) -> Result<(), ResourceError> {
        if dim.is_empty() || dim.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ResourceError::Invalid {
                message: format!("invalid dimension name {dim:?}"),
            });
        }
        let mut fx = Effects::default();
        self.inner
            .state
            .lock()
            .core
            .set_capacity(dim, capacity, &mut fx, Instant::now());
        self.inner.apply(fx);
        Ok(())
    }

    /// Sets or clears a group's quota on a dimension.
    pub(crate) fn set_quota(
        &self,
        group: &str,
        dim: &str,
        quota: Option<u64>,
    ) -> Result<(), ResourceError> {
        if group.is_empty() {
            return Err(ResourceError::Invalid {
                message: "group name is empty".into(),
            });
        }
        let mut fx = Effects::default();
        {
            let mut st = self.inner.state.lock();
            let d = resolve_dim(&st.core, dim)?;
            st.core.set_quota(group, d, quota, &mut fx, Instant::now());
        }
        self.inner.apply(fx);
        Ok(())
    }

    /// Sets a system's weight in the fairness computation.
    pub(crate) fn set_weight(&self, system: &str, weight: f64) -> Result<(), ResourceError> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(ResourceError::Invalid {
                message: format!("weight must be positive and finite, got {weight}"),
            });
        }
        self.check_system(system)?;
        let mut fx = Effects::default();
        {
            let mut st = self.inner.state.lock();
            let c = st.core.consumer(system);
            st.core.set_weight(c, weight, &mut fx, Instant::now());
        }
        self.inner.apply(fx);
        Ok(())
    }

    fn check_system(&self, system: &str) -> Result<(), ResourceError> {
        match self.inner.registry.read().index(system) {
            Ok(_) => Ok(()),
            Err(_) => Err(ResourceError::UnknownSystem {
                system: system.to_owned(),
            }),
        }
    }

    /// Queues (or grants at once) a request of one or more parts.
    pub(crate) fn request(
        &self,
        parts: &[(&str, &ResourceRequest)],
    ) -> Result<PendingLease, ResourceError> {
        let Some((_, first)) = parts.first() else {
            return Err(ResourceError::Invalid {
                message: "a request needs at least one part".into(),
            });
        };
        for (system, req) in parts {
            self.check_system(system)?;
            check_request(system, req)?;
        }
        let class = parts
            .iter()
            .map(|(_, r)| r.priority.rank())
            .min()
            .unwrap_or(first.priority.rank());
        let wait = parts.iter().filter_map(|(_, r)| r.wait).min();
        let now = Instant::now();
        let mut fx = Effects::default();
        let slot = StdArc::new(WaitSlot::new());
        let (token, outcome) = {
            let mut st = self.inner.state.lock();
            if st.closed {
                return Err(ResourceError::Closed);
            }
            let mut resolved: SmallVec<[Part; 1]> = SmallVec::new();
            for (system, req) in parts {
                let mut v = Vec::with_capacity(req.amounts.len());
                for (dim, &a) in &req.amounts {
                    if a > 0 {
                        v.push((resolve_dim(&st.core, dim)?, a));
                    }
                }
                let amounts = decide::amounts(v);
                let consumer = st.core.consumer(system);
                let group = req.group.as_deref().map(|g| st.core.group(g));
                resolved.push(Part {
                    consumer,
                    group,
                    amounts,
                    preemptible: req.preemptible,
                    ttl: req.ttl,
                });
            }
            let token = st.next_token;
            st.next_token += 1;
            let outcome = match st.core.request(resolved, class, token, now, &mut fx)? {
                Ok(ids) => Ok(ids),
                Err(waiter) if wait == Some(Duration::ZERO) => {
                    // Not waiting: explain and withdraw under the same lock, so
                    // no release can grant it meanwhile.
                    let reason = st.core.reason(waiter).reason;
                    st.core.cancel(waiter, now, &mut fx);
                    drop(st);
                    self.inner.apply(fx);
                    return Err(ResourceError::TimedOut {
                        system: parts[0].0.to_owned(),
                        waited: Duration::ZERO,
                        reason,
                    });
                }
                Err(waiter) => {
                    st.slots.insert(token, slot.clone());
                    Err(waiter)
                }
            };
            (token, outcome)
        };
        let systems: Vec<StdArc<str>> = parts.iter().map(|(s, _)| StdArc::from(*s)).collect();
        match outcome {
            Ok(ids) => {
                slot.complete(Ok(ids));
                self.inner.apply(fx);
                Ok(PendingLease::new(
                    self.clone(),
                    token,
                    None,
                    slot,
                    systems,
                    now,
                    None,
                ))
            }
            Err(waiter) => {
                self.inner.apply(fx);
                self.inner.arm_aging();
                let deadline = wait.and_then(|w| now.checked_add(w));
                if let Some(d) = deadline {
                    let inner = self.clone();
                    let sys = parts[0].0.to_owned();
                    self.inner
                        .timer
                        .schedule(d, move || inner.expire_waiter(token, waiter, sys, now));
                }
                Ok(PendingLease::new(
                    self.clone(),
                    token,
                    Some(waiter),
                    slot,
                    systems,
                    now,
                    deadline,
                ))
            }
        }
    }

    /// Timer callback: a waiter's wait timeout passed.
    fn expire_waiter(&self, token: u64, waiter: Id, system: String, since: Instant) {
        let now = Instant::now();
        let mut fx = Effects::default();
        let slot = {
            let mut st = self.inner.state.lock();
            let Some(slot) = st.slots.remove(&token) else {
                return;
            };
            let reason = st
                .core
                .waiters
                .get(waiter)
                .map(|_| st.core.reason(waiter).reason)
                .unwrap_or_default();
            st.core.cancel(waiter, now, &mut fx);
            (slot, reason)
        };
        slot.0.complete(Err(ResourceError::TimedOut {
            system,
            waited: now - since,
            reason: slot.1,
        }));
        self.inner.apply(fx);
    }

    /// Cancels a waiter; returns false if it was granted meanwhile.
    pub(crate) fn cancel(&self, token: u64, waiter: Id, system: &str) -> bool {
        let mut fx = Effects::default();
        let slot = {
            let mut st = self.inner.state.lock();
            let Some(slot) = st.slots.remove(&token) else {
                return false;
            };
            st.core.cancel(waiter, Instant::now(), &mut fx);
            slot
        };
        slot.complete(Err(ResourceError::Cancelled {
            system: system.to_owned(),
        }));
        self.inner.apply(fx);
        true
    }

    /// Releases a lease; returns whether it was still held.
    pub(crate) fn release(&self, id: Id) -> bool {
        let mut fx = Effects::default();
        let rec = self
            .inner
            .state
            .lock()
            .core
            .release(id, Instant::now(), &mut fx);
        let held = rec.is_some();
        drop(rec); // a preemption callback in it is dropped outside the lock
        self.inner.apply(fx);
        held
    }

    /// Utilization per dimension (by name) and lease figures per system.
    pub(crate) fn metrics(&self) -> (Vec<ResourceUtilization>, Vec<(StdArc<str>, LeaseMetrics)>) {
        let now = Instant::now();
        let st = self.inner.state.lock();
        let core = &st.core;
        let mut dims: Vec<ResourceUtilization> = core
            .dims
            .iter()
            .map(|d| d.usage.snapshot(&core.metrics, &d.name, now))
            .collect();
        let leases = core
            .consumers
            .iter()
            .map(|c| {
                let l = &c.leases;
                (
                    c.name.clone(),
                    LeaseMetrics {
                        granted: l.granted,
                        released: l.released,
                        held: l.held,
                        wait: l.wait.summary(),
                        hold: l.hold.summary(),
                    },
                )
            })
            .collect();
        drop(st);
        dims.sort_by(|a, b| a.dimension.cmp(&b.dimension));
        (dims, leases)
    }

    /// Forgets utilization history and lease figures (not the leases held).
    pub(crate) fn reset_metrics(&self) {
        let now = Instant::now();
        let mut st = self.inner.state.lock();
        for d in &mut st.core.dims {
            d.usage.reset(now);
        }
        for c in &mut st.core.consumers {
            c.leases.reset();
        }
    }

    /// Turns metrics on or off: under the lock, every dimension's
    /// utilization is brought up to now with the old setting first.
    pub(crate) fn set_metrics(&self, on: bool) {
        let now = Instant::now();
        let mut st = self.inner.state.lock();
        let core = &mut st.core;
        for d in &mut core.dims {
            d.usage.advance(&core.metrics, now);
        }
        core.metrics.switch.set(on);
    }

    /// Refuses new requests and rejects every waiter with `Closed`. Leases
    /// already granted stay valid until released.
    pub(crate) fn close(&self) {
        let slots: Vec<(u64, StdArc<WaitSlot>)> = {
            let mut st = self.inner.state.lock();
            st.closed = true;
            st.core.clear_waiters();
            st.slots.drain().collect()
        };
        for (_, s) in slots {
            s.complete(Err(ResourceError::Closed));
        }
    }
}

fn resolve_dim(core: &Core, dim: &str) -> Result<u32, ResourceError> {
    core.dim(dim)
        .ok_or_else(|| ResourceError::UnknownDimension {
            dimension: dim.to_owned(),
            declared: core.dims.iter().map(|d| d.name.to_string()).collect(),
        })
}

impl AllocInner {
    /// Carries out a decision's side effects (after the lock is released).
    pub(crate) fn apply(self: &Arc<Self>, fx: Effects) {
        if !fx.granted.is_empty() {
            let mut orphans = Vec::new();
            let slots: Vec<(StdArc<WaitSlot>, Vec<Id>)> = {
                let mut st = self.state.lock();
                fx.granted
                    .into_iter()
                    .filter_map(|(token, ids)| match st.slots.remove(&token) {
                        Some(s) => Some((s, ids)),
                        None => {
                            // Nobody can take it (cannot happen while waiters and
                            // slots are removed together): give it back.
                            orphans.extend(ids);
                            None
                        }
                    })
                    .collect()
            };
            for (slot, ids) in slots {
                slot.complete(Ok(ids));
            }
            for id in orphans {
                Allocator {
                    inner: self.clone(),
                }
                .release(id);
            }
        }
        if !fx.rejected.is_empty() {
            let slots: Vec<(StdArc<WaitSlot>, ResourceError)> = {
                let mut st = self.state.lock();
                fx.rejected
                    .into_iter()
                    .filter_map(|(token, e)| st.slots.remove(&token).map(|s| (s, e)))
                    .collect()
            };
            for (slot, e) in slots {
                slot.complete(Err(e));
            }
        }
        for (id, at) in fx.expiring {
            let inner = self.clone();
            self.timer.schedule(at, move || {
                let _ = Allocator { inner }.release(id);
            });
        }
        if !fx.revoking.is_empty() {
            let notices: Vec<(Option<PreemptFn>, PreemptNotice)> = {
                let mut st = self.state.lock();
                fx.revoking
                    .iter()
                    .filter_map(|&(id, until)| {
                        let system = st.core.leases.get(id).map(|l| {
                            st.core.consumers[l.part.consumer as usize].name.to_string()
                        })?;
                        let f = st.core.leases.get_mut(id).and_then(|l| l.on_preempt.take());
                        Some((
                            f,
                            PreemptNotice {
                                lease: id.serial(),
                                system,
                                grace: until.saturating_duration_since(Instant::now()),
                            },
                        ))
                    })
                    .collect()
            };
            for (f, notice) in notices {
                if let Some(f) = f {
                    self.notify(f, notice);
                }
            }
            for (id, until) in fx.revoking {
                let inner = self.clone();
                self.timer.schedule(until, move || {
                    let _ = Allocator { inner }.release(id);
                });
            }
        }
    }

    /// Delivers a preemption notice on the worker pool (never in the call
    /// that made the decision).
    pub(crate) fn notify(&self, f: PreemptFn, notice: PreemptNotice) {
        self.pool.spawn(Job::boxed(move || f(notice)), 0);
    }

    /// Arms the aging timer if waiters exist and it is not armed.
    fn arm_aging(self: &Arc<Self>) {
        let at = {
            let mut st = self.state.lock();
            if st.aging_armed || st.core.waiters.len() == 0 {
                return;
            }
            st.aging_armed = true;
            Instant::now() + self.config.aging_step
        };
        let inner = self.clone();
        if self.timer.schedule(at, move || inner.age()).is_none() {
            self.state.lock().aging_armed = false;
        }
    }

    /// Timer callback: promote waiters that waited long enough.
    fn age(self: &Arc<Self>) {
        let mut fx = Effects::default();
        let next = {
            let mut st = self.state.lock();
            st.aging_armed = false;
            st.core.age(Instant::now(), &mut fx)
        };
        self.apply(fx);
        if let Some(at) = next {
            let mut st = self.state.lock();
            if !st.aging_armed {
                st.aging_armed = true;
                drop(st);
                let inner = self.clone();
                if self.timer.schedule(at, move || inner.age()).is_none() {
                    self.state.lock().aging_armed = false;
                }
            }
        }
    }
}
