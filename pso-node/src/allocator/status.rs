//! `resourceStatus()` and `optimizeResources()` as plain JS objects
//! (pso-core `allocator/status.rs`, `allocator/optimize.rs`). Durations are
//! milliseconds (`ageMs`, `idleMs`, `ttlRemainingMs`, `waitedMs`, `idleMs`
//! of a `reclaim_idle` action), amounts are numbers (exact up to 2^53).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{Array, JsObjectValue, Object};
use napi_derive::napi;
use pso_core::{
    DimensionStatus, GroupStatus, LeaseStatus, ResourceAction, ResourcePlan, ResourceStatus,
    WaiterStatus,
};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn numbers(m: BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    m.into_iter().map(|(k, v)| (k, v as f64)).collect()
}

/// One dimension of `resourceStatus()`.
#[napi(object, js_name = "DimensionStatus", object_from_js = false)]
#[derive(Debug)]
pub struct JsDimensionStatus {
    /// Its name (`cpu`, `memory`, `gpu`, ...).
    pub name: String,
    /// Total capacity.
    pub capacity: f64,
    /// Held by leases.
    pub allocated: f64,
    /// Capacity minus allocated (0 if the capacity was lowered below it).
    pub free: f64,
}

impl From<DimensionStatus> for JsDimensionStatus {
    fn from(d: DimensionStatus) -> Self {
        JsDimensionStatus {
            name: d.name,
            capacity: d.capacity as f64,
            allocated: d.allocated as f64,
            free: d.free as f64,
        }
    }
}

/// One group of `resourceStatus()`.
#[napi(object, js_name = "GroupStatus", object_from_js = false)]
#[derive(Debug)]
pub struct JsGroupStatus {
    /// Its name.
    pub name: String,
    /// Quota per dimension (only dimensions with a quota).
    #[napi(ts_type = "Record<string, number>")]
    pub quota: BTreeMap<String, f64>,
    /// Held by the group's leases, per dimension.
    #[napi(ts_type = "Record<string, number>")]
    pub allocated: BTreeMap<String, f64>,
}

impl From<GroupStatus> for JsGroupStatus {
    fn from(g: GroupStatus) -> Self {
        JsGroupStatus {
            name: g.name,
            quota: numbers(g.quota),
            allocated: numbers(g.allocated),
        }
    }
}

/// One lease of `resourceStatus()`.
#[napi(
    object,
    js_name = "LeaseStatus",
    object_from_js = false,
    use_nullable = true
)]
#[derive(Debug)]
pub struct JsLeaseStatus {
    /// Its id (as `lease.id`).
    pub id: f64,
    /// The holder.
    pub system: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Amounts held.
    #[napi(ts_type = "Record<string, number>")]
    pub amounts: BTreeMap<String, f64>,
    /// Priority class of the request.
    #[napi(ts_type = "Priority")]
    pub priority: String,
    /// Whether a higher class may preempt it.
    pub preemptible: bool,
    /// Milliseconds since it was granted.
    pub age_ms: f64,
    /// Milliseconds since it was last touched (or granted).
    pub idle_ms: f64,
    /// Milliseconds left before its TTL revokes it (`null`: no TTL).
    pub ttl_remaining_ms: Option<f64>,
    /// Chosen for preemption: revoked when the grace period ends.
    pub revoking: bool,
}

impl From<LeaseStatus> for JsLeaseStatus {
    fn from(l: LeaseStatus) -> Self {
        JsLeaseStatus {
            id: l.id as f64,
            system: l.system,
            group: l.group,
            amounts: numbers(l.amounts),
            priority: l.priority.name().to_owned(),
            preemptible: l.preemptible,
            age_ms: ms(l.age),
            idle_ms: ms(l.idle),
            ttl_remaining_ms: l.ttl_remaining.map(ms),
            revoking: l.revoking,
        }
    }
}

/// One waiting request of `resourceStatus()`.
#[napi(object, js_name = "WaiterStatus", object_from_js = false)]
#[derive(Debug)]
pub struct JsWaiterStatus {
    /// The requesting systems (several for a gang).
    pub systems: Vec<String>,
    /// Amounts asked for, summed over the parts.
    #[napi(ts_type = "Record<string, number>")]
    pub amounts: BTreeMap<String, f64>,
    /// Its priority class.
    #[napi(ts_type = "Priority")]
    pub priority: String,
    /// Its class after aging.
    #[napi(ts_type = "Priority")]
    pub effective_priority: String,
    /// Milliseconds it has waited.
    pub waited_ms: f64,
    /// Requests ahead of it in policy order.
    pub ahead: u32,
    /// Why it waits: "needs 2048 memory, 512 free; 3 requests ahead".
    pub reason: String,
}

impl From<WaiterStatus> for JsWaiterStatus {
    fn from(w: WaiterStatus) -> Self {
        JsWaiterStatus {
            systems: w.systems,
            amounts: numbers(w.amounts),
            priority: w.priority.name().to_owned(),
            effective_priority: w.effective_priority.name().to_owned(),
            waited_ms: ms(w.waited),
            ahead: u32::try_from(w.ahead).unwrap_or(u32::MAX),
            reason: w.reason,
        }
    }
}

/// `resourceStatus()`: capacity, allocated and free per dimension; group
/// quotas; every lease; every waiting request in policy order.
#[napi(object, js_name = "ResourceStatus", object_from_js = false)]
#[derive(Debug)]
pub struct JsResourceStatus {
    /// Every dimension with a capacity.
    pub dimensions: Vec<JsDimensionStatus>,
    /// Every group.
    pub groups: Vec<JsGroupStatus>,
    /// Every lease, oldest first.
    pub leases: Vec<JsLeaseStatus>,
    /// Every waiting request, in policy order (the next to be served first).
    pub waiters: Vec<JsWaiterStatus>,
}

impl From<ResourceStatus> for JsResourceStatus {
    fn from(s: ResourceStatus) -> Self {
        JsResourceStatus {
            dimensions: s.dimensions.into_iter().map(Into::into).collect(),
            groups: s.groups.into_iter().map(Into::into).collect(),
            leases: s.leases.into_iter().map(Into::into).collect(),
            waiters: s.waiters.into_iter().map(Into::into).collect(),
        }
    }
}

/// `optimizeResources()`'s plan: `{ applied, actions }`, each action an
/// object whose `action` field says which (the `ResourceAction` union of
/// `index.d.ts`).
pub(crate) fn plan<'e>(env: &'e Env, p: &ResourcePlan) -> napi::Result<Object<'e>> {
    let mut obj = Object::new(env)?;
    obj.set_named_property("applied", p.applied)?;
    let mut actions = env.create_array(u32::try_from(p.actions.len()).unwrap_or(u32::MAX))?;
    for (i, a) in p.actions.iter().enumerate() {
        actions.set(i as u32, action(env, a)?)?;
    }
    obj.set_named_property::<Array<'_>>("actions", actions)?;
    Ok(obj)
}

fn action<'e>(env: &'e Env, a: &ResourceAction) -> napi::Result<Object<'e>> {
    let mut obj = Object::new(env)?;
    match a {
        ResourceAction::ReclaimExpired { lease, system } => {
            obj.set_named_property("action", "reclaim_expired")?;
            obj.set_named_property("lease", *lease as f64)?;
            obj.set_named_property("system", system.as_str())?;
        }
        ResourceAction::ReclaimIdle {
            lease,
            system,
            idle_secs,
        } => {
            obj.set_named_property("action", "reclaim_idle")?;
            obj.set_named_property("lease", *lease as f64)?;
            obj.set_named_property("system", system.as_str())?;
            obj.set_named_property("idleMs", idle_secs * 1000.0)?;
        }
        ResourceAction::Rebalance {
            lease,
            system,
            share,
            in_favor_of,
            their_share,
        } => {
            obj.set_named_property("action", "rebalance")?;
            obj.set_named_property("lease", *lease as f64)?;
            obj.set_named_property("system", system.as_str())?;
            obj.set_named_property("share", *share)?;
            obj.set_named_property("inFavorOf", in_favor_of.as_str())?;
            obj.set_named_property("theirShare", *their_share)?;
        }
        ResourceAction::ResizeConcurrency {
            system,
            from,
            to,
            reason,
        } => {
            obj.set_named_property("action", "resize_concurrency")?;
            obj.set_named_property("system", system.as_str())?;
            obj.set_named_property("from", *from)?;
            obj.set_named_property("to", *to)?;
            obj.set_named_property("reason", reason.as_str())?;
        }
        // pso-core may add kinds of action: show them rather than drop them.
        other => {
            obj.set_named_property("action", "other")?;
            obj.set_named_property("description", format!("{other:?}"))?;
        }
    }
    Ok(obj)
}
