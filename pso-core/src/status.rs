//! Per-system status snapshots, taken under the registry read lock.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::SystemTime;

use petgraph::stable_graph::NodeIndex;
use serde::Serialize;

use crate::allocator::Held;
use crate::lifecycle::{SystemState, Transition, ser_time};
use crate::model::{EdgeKind, Priority, Resources};
use crate::registry::Registry;
use crate::supervise::{HealthInfo, SupervisionInfo};

/// A snapshot of one system: state, why, and its relations.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SystemStatus {
    /// The system's name.
    pub name: String,
    /// Current lifecycle state.
    pub state: SystemState,
    /// When it entered that state.
    #[serde(serialize_with = "ser_time")]
    pub since: SystemTime,
    /// The reason recorded with the last transition.
    pub reason: String,
    /// The last failure (handler error, timeout, or why it was not activated).
    pub last_error: Option<String>,
    /// Tier.
    pub tier: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Priority class.
    pub priority: Priority,
    /// Declared resource request.
    pub resources: Resources,
    /// Systems it requires.
    pub requires: Vec<String>,
    /// Systems it wants.
    pub wants: Vec<String>,
    /// Systems it starts after.
    pub after: Vec<String>,
    /// Systems it conflicts with (either direction).
    pub conflicts: Vec<String>,
    /// Systems it interacts with (either direction).
    pub interacts: Vec<String>,
    /// Systems that require it.
    pub required_by: Vec<String>,
    /// Whether an `activate` handler is set.
    pub has_activate_handler: bool,
    /// Whether a `deactivate` handler is set.
    pub has_deactivate_handler: bool,
    /// Recent transitions, oldest first (bounded).
    pub history: Vec<Transition>,
    /// Operations workflow steps can run on it.
    pub operations: Vec<String>,
    /// Limit on its concurrently running workflow steps, if any.
    pub concurrency: Option<u32>,
    /// Its workflow steps running now (counted only under a limit).
    pub running_steps: u32,
    /// Its workflow steps waiting for a slot now.
    pub waiting_steps: usize,
    /// Resources its leases hold now, per dimension (see
    /// `Orchestrator::allocate_resources`).
    pub resources_held: BTreeMap<String, u64>,
    /// Its health, if it has a health check.
    pub health: Option<HealthInfo>,
    /// Its supervision, if supervised: restarts, the next attempt, how many
    /// more failures before it gives up.
    pub supervision: Option<SupervisionInfo>,
}

impl SystemStatus {
    pub(crate) fn of(reg: &Registry, idx: NodeIndex, held: &Held) -> SystemStatus {
        let n = reg.node(idx);
        let names = |v: Vec<NodeIndex>| {
            v.into_iter()
                .map(|o| reg.node(o).name.to_string())
                .collect::<Vec<_>>()
        };
        let mut interacts = reg.out(idx, EdgeKind::Interacts);
        interacts.extend(reg.incoming(idx, EdgeKind::Interacts));
        SystemStatus {
            name: n.name.to_string(),
            state: n.life.state.clone(),
            since: n.life.since,
            reason: n.life.reason.to_string(),
            last_error: n.life.last_error.clone(),
            tier: n.info.tier.clone(),
            tags: n.info.tags.clone(),
            priority: n.info.priority,
            resources: n.info.resources.clone(),
            requires: names(reg.out(idx, EdgeKind::Requires)),
            wants: names(reg.out(idx, EdgeKind::Wants)),
            after: names(reg.out(idx, EdgeKind::After)),
            conflicts: names(reg.conflicting(idx)),
            interacts: names(interacts),
            required_by: names(reg.incoming(idx, EdgeKind::Requires)),
            has_activate_handler: n.handlers.has_activate(),
            has_deactivate_handler: n.handlers.has_deactivate(),
            history: n.life.history.iter().map(|r| r.public()).collect(),
            operations: n.operations.keys().map(|k| k.to_string()).collect(),
            concurrency: n.slots.limit(),
            running_steps: n.slots.load().0,
            waiting_steps: n.slots.load().1,
            resources_held: held.get(&*n.name).cloned().unwrap_or_default(),
            health: None,
            supervision: None,
        }
    }
}
