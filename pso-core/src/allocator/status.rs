//! `resource_status()`: capacity, allocated and free per dimension; group
//! quotas; every lease with its holder, amounts, age and TTL; every waiter
//! with its request and the reason it waits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Allocator;
use super::decide::{Amounts, Core};
use crate::model::Priority;
use crate::scheduler::CLASSES;

/// One dimension.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DimensionStatus {
    /// Its name.
    pub name: String,
    /// Total capacity.
    pub capacity: u64,
    /// Held by leases.
    pub allocated: u64,
    /// Capacity minus allocated (0 if the capacity was lowered below it).
    pub free: u64,
}

/// One group.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GroupStatus {
    /// Its name.
    pub name: String,
    /// Quota per dimension (only dimensions with a quota).
    pub quota: BTreeMap<String, u64>,
    /// Held by the group's leases, per dimension.
    pub allocated: BTreeMap<String, u64>,
}

/// One lease.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LeaseStatus {
    /// Its id.
    pub id: u64,
    /// The holder.
    pub system: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Amounts held.
    pub amounts: BTreeMap<String, u64>,
    /// Priority class of the request.
    pub priority: Priority,
    /// Whether it may be preempted.
    pub preemptible: bool,
    /// Time since it was granted.
    #[serde(serialize_with = "secs")]
    pub age: Duration,
    /// Time since it was last touched (or granted).
    #[serde(serialize_with = "secs")]
    pub idle: Duration,
    /// Time left before its TTL revokes it.
    #[serde(serialize_with = "opt_secs")]
    pub ttl_remaining: Option<Duration>,
    /// Whether it was chosen for preemption (revoked after the grace period).
    pub revoking: bool,
}

/// One waiting request.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WaiterStatus {
    /// The requesting systems (several for a gang).
    pub systems: Vec<String>,
    /// Amounts asked for, summed over the parts.
    pub amounts: BTreeMap<String, u64>,
    /// Its priority class.
    pub priority: Priority,
    /// Its class after aging.
    pub effective_priority: Priority,
    /// Time it has waited.
    #[serde(serialize_with = "secs")]
    pub waited: Duration,
    /// Requests ahead of it in policy order.
    pub ahead: usize,
    /// Why it waits: "needs 2048 memory, 512 free; 3 requests ahead".
    pub reason: String,
}

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ResourceStatus {
    /// Every dimension with a capacity.
    pub dimensions: Vec<DimensionStatus>,
    /// Every group.
    pub groups: Vec<GroupStatus>,
    /// Every lease.
    pub leases: Vec<LeaseStatus>,
    /// Every waiting request, in policy order.
    pub waiters: Vec<WaiterStatus>,
}

impl ResourceStatus {
    /// The status as JSON (durations in seconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("status serializes")
    }

    /// The dimension called `name`.
    pub fn dimension(&self, name: &str) -> Option<&DimensionStatus> {
        self.dimensions.iter().find(|d| d.name == name)
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

pub(crate) fn named(core: &Core, amounts: &Amounts) -> BTreeMap<String, u64> {
    amounts
        .iter()
        .map(|&(d, a)| (core.dims[d as usize].name.to_string(), a))
        .collect()
}

fn class_priority(class: u8) -> Priority {
    Priority::ALL[(class as usize).min(CLASSES - 1)]
}

/// What each system's leases hold, per dimension (systems holding nothing
/// are absent).
pub(crate) type Held = foldhash::HashMap<String, BTreeMap<String, u64>>;

impl Allocator {
    /// What each system holds now.
    pub(crate) fn held(&self) -> Held {
        let st = self.inner.state.lock();
        let core = &st.core;
        let mut out = Held::default();
        for c in &core.consumers {
            if c.allocated.iter().any(|&a| a > 0) {
                out.insert(
                    c.name.to_string(),
                    c.allocated
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| **a > 0)
                        .map(|(d, a)| (core.dims[d].name.to_string(), *a))
                        .collect(),
                );
            }
        }
        out
    }

    /// A snapshot of everything.
    pub(crate) fn status(&self) -> ResourceStatus {
        let st = self.inner.state.lock();
        let core = &st.core;
        let now = Instant::now();
        let dimensions = core
            .dims
            .iter()
            .map(|d| DimensionStatus {
                name: d.name.to_string(),
                capacity: d.capacity,
                allocated: d.allocated,
                free: d.capacity.saturating_sub(d.allocated),
            })
            .collect();
        let groups = core
            .groups
            .iter()
            .map(|g| GroupStatus {
                name: g.name.to_string(),
                quota: g
                    .quota
                    .iter()
                    .enumerate()
                    .filter_map(|(d, q)| q.map(|q| (core.dims[d].name.to_string(), q)))
                    .collect(),
                allocated: g
                    .allocated
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| **a > 0)
                    .map(|(d, a)| (core.dims[d].name.to_string(), *a))
                    .collect(),
            })
            .collect();
        let mut leases: Vec<LeaseStatus> = core
            .leases
            .iter()
            .map(|(id, l)| LeaseStatus {
                id: id.serial(),
                system: core.consumers[l.part.consumer as usize].name.to_string(),
                group: l
                    .part
                    .group
                    .map(|g| core.groups[g as usize].name.to_string()),
                amounts: named(core, &l.part.amounts),
                priority: class_priority(l.class),
                preemptible: l.part.preemptible,
                age: now.saturating_duration_since(l.created),
                idle: now.saturating_duration_since(l.last_touch),
                ttl_remaining: l.expires.map(|e| e.saturating_duration_since(now)),
                revoking: l.revoking.is_some(),
            })
            .collect();
        leases.sort_by_key(|l| std::cmp::Reverse(l.age));
        let mut waiters: Vec<WaiterStatus> = core
            .waiters
            .iter()
            .map(|(id, w)| {
                let why = core.reason(id);
                let mut amounts = BTreeMap::new();
                for p in &w.parts {
                    for (k, v) in named(core, &p.amounts) {
                        *amounts.entry(k).or_default() += v;
                    }
                }
                WaiterStatus {
                    systems: w
                        .parts
                        .iter()
                        .map(|p| core.consumers[p.consumer as usize].name.to_string())
                        .collect(),
                    amounts,
                    priority: class_priority(w.class),
                    effective_priority: class_priority(w.eff_class),
                    waited: now.saturating_duration_since(w.enqueued),
                    ahead: why.ahead,
                    reason: why.reason,
                }
            })
            .collect();
        waiters.sort_by_key(|w| w.ahead);
        ResourceStatus {
            dimensions,
            groups,
            leases,
            waiters,
        }
    }
}
