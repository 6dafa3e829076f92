//! The registry: systems and their relations in a petgraph `StableDiGraph`.
//!
//! # Invariants
//! * `names` maps every system name to its live node, and nothing else.
//! * The subgraph of ordering edges (requires, wants, after) is acyclic.
//! * At most one edge exists per `(from, kind, to)`; an `interacts` or
//!   `conflicts` edge is also unique up to direction.
//! * [`Registry::apply_batch`] is all-or-nothing: on any error the graph, the
//!   name map and every lifecycle record are exactly as before the call.
//!   Names, duplicates and unknown endpoints are checked before anything is
//!   touched; the cycle check runs after the insert and rolls it back.
//!
//! Node indices stay valid while their node lives (`StableGraph`), so a
//! lifecycle transaction can hold indices across lock releases: systems are
//! never removed while a transaction runs (removal is not part of the API).

#![forbid(unsafe_code)]

mod cycle;
mod plan;
#[cfg(test)]
mod test;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use thiserror::Error;

use crate::error::{ErrorKind, PsoError};
use crate::lifecycle::Lifecycle;
use crate::model::{
    EdgeKind, EdgeSpec, Handlers, OpFn, Priority, Resources, SystemSpec, validate_name,
};
use crate::workflow::SystemSlots;

pub(crate) use plan::OrderedSet;

/// An error from registering systems or relations. The registry is unchanged.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// No system has this name.
    #[error("unknown system '{name}'{}", referenced_by.as_ref().map(|(from, kind)| format!(" (in '{from} {kind} {name}')")).unwrap_or_default())]
    UnknownSystem {
        /// The unknown name.
        name: String,
        /// The relation that mentioned it, as `(from, kind)`, if any.
        referenced_by: Option<(String, EdgeKind)>,
    },
    /// The name is already registered (or appears twice in one batch).
    #[error("system '{name}' is already registered")]
    DuplicateSystem {
        /// The duplicated name.
        name: String,
    },
    /// The relations would form an ordering cycle.
    #[error("ordering cycle: {}", describe_cycle(path, kinds))]
    Cycle {
        /// The systems on the cycle in order; the first is repeated at the end.
        path: Vec<String>,
        /// `kinds[i]` is the relation from `path[i]` to `path[i + 1]`.
        kinds: Vec<EdgeKind>,
    },
    /// A name or relation is malformed.
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The orchestrator is closed.
    #[error("the orchestrator is closed")]
    Closed,
}

impl RegistryError {
    pub(crate) fn unknown(name: &str) -> Self {
        RegistryError::UnknownSystem {
            name: name.to_owned(),
            referenced_by: None,
        }
    }
}

fn describe_cycle(path: &[String], kinds: &[EdgeKind]) -> String {
    let steps: Vec<String> = path
        .windows(2)
        .zip(kinds)
        .map(|(w, k)| format!("{} {} {}", w[0], k, w[1]))
        .collect();
    format!("{} (path: {})", steps.join(", "), path.join(" -> "))
}

impl PsoError for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::UnknownSystem { .. } => ErrorKind::NotFound,
            RegistryError::DuplicateSystem { .. } => ErrorKind::AlreadyExists,
            RegistryError::Cycle { .. } => ErrorKind::Cycle,
            RegistryError::Invalid { .. } => ErrorKind::InvalidArgument,
            RegistryError::Closed => ErrorKind::Closed,
        }
    }
}

/// Static facts about a system, fixed at registration.
#[derive(Debug, Clone)]
pub(crate) struct SystemInfo {
    pub(crate) tier: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) priority: Priority,
    pub(crate) resources: Resources,
    pub(crate) timeout: Option<Duration>,
}

/// A node of the registry graph.
pub(crate) struct SystemNode {
    pub(crate) name: Arc<str>,
    pub(crate) info: SystemInfo,
    pub(crate) handlers: Handlers,
    pub(crate) life: Lifecycle,
    /// Named operations for workflow steps.
    pub(crate) operations: BTreeMap<Arc<str>, OpFn>,
    /// Concurrency slots shared by every run that uses this system.
    pub(crate) slots: Arc<SystemSlots>,
}

impl std::fmt::Debug for SystemNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemNode")
            .field("name", &self.name)
            .field("state", &self.life.state)
            .field("operations", &self.operations.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Systems and relations. See the module docs for its invariants.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) graph: StableDiGraph<SystemNode, EdgeKind>,
    names: HashMap<Arc<str>, NodeIndex>,
    /// Nodes in registration order. `StableGraph` reuses the slots a
    /// rolled-back batch freed, so its own index order is not registration order.
    order: Vec<NodeIndex>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn index(&self, name: &str) -> Result<NodeIndex, RegistryError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| RegistryError::unknown(name))
    }

    pub(crate) fn node(&self, idx: NodeIndex) -> &SystemNode {
        &self.graph[idx]
    }

    pub(crate) fn node_mut(&mut self, idx: NodeIndex) -> &mut SystemNode {
        &mut self.graph[idx]
    }

    /// All node indices in registration order.
    pub(crate) fn indices(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.order.iter().copied()
    }

    /// Targets of outgoing edges of `kind` from `idx`, in insertion order.
    pub(crate) fn out(&self, idx: NodeIndex, kind: EdgeKind) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self
            .graph
            .edges_directed(idx, Direction::Outgoing)
            .filter(|e| *e.weight() == kind)
            .map(|e| e.target())
            .collect();
        // petgraph iterates newest-first; report oldest-first.
        v.reverse();
        v
    }

    /// Sources of incoming edges of `kind` into `idx`, in insertion order.
    pub(crate) fn incoming(&self, idx: NodeIndex, kind: EdgeKind) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self
            .graph
            .edges_directed(idx, Direction::Incoming)
            .filter(|e| *e.weight() == kind)
            .map(|e| e.source())
            .collect();
        v.reverse();
        v
    }

    /// Every system that conflicts with `idx`, in either direction.
    pub(crate) fn conflicting(&self, idx: NodeIndex) -> Vec<NodeIndex> {
        let mut v = self.out(idx, EdgeKind::Conflicts);
        v.extend(self.incoming(idx, EdgeKind::Conflicts));
        v
    }

    fn has_edge(&self, a: NodeIndex, kind: EdgeKind, b: NodeIndex) -> bool {
        let directed = |x: NodeIndex, y: NodeIndex| {
            self.graph
                .edges_connecting(x, y)
                .any(|e| *e.weight() == kind)
        };
        directed(a, b)
            || (matches!(kind, EdgeKind::Conflicts | EdgeKind::Interacts) && directed(b, a))
    }

    /// Registers `systems` and `edges` (plus the relations declared on each
    /// spec) as one transaction.
    pub(crate) fn apply_batch(
        &mut self,
        systems: Vec<SystemSpec>,
        edges: Vec<EdgeSpec>,
    ) -> Result<usize, RegistryError> {
        // 1. Validate everything before touching the graph.
        let mut new_names: HashSet<&str> = HashSet::with_capacity(systems.len());
        for spec in &systems {
            validate_name(&spec.name).map_err(|message| RegistryError::Invalid { message })?;
            if spec.concurrency == Some(0) {
                return Err(RegistryError::Invalid {
                    message: format!(
                        "system '{}': concurrency limit must be at least 1",
                        spec.name
                    ),
                });
            }
            if let Some(op) = spec.operations.keys().find(|op| op.is_empty()) {
                return Err(RegistryError::Invalid {
                    message: format!("system '{}': operation name '{op}' is empty", spec.name),
                });
            }
            if self.names.contains_key(spec.name.as_str()) || !new_names.insert(spec.name.as_str())
            {
                return Err(RegistryError::DuplicateSystem {
                    name: spec.name.clone(),
                });
            }
        }
        let all_edges: Vec<EdgeSpec> = systems
            .iter()
            .flat_map(|s| {
                s.edges
                    .iter()
                    .map(move |(k, to)| EdgeSpec::new(s.name.clone(), *k, to.clone()))
            })
            .chain(edges)
            .collect();
        for e in &all_edges {
            for (end, other) in [(&e.from, None), (&e.to, Some(&e.from))] {
                if !self.names.contains_key(end.as_str()) && !new_names.contains(end.as_str()) {
                    return Err(RegistryError::UnknownSystem {
                        name: end.clone(),
                        referenced_by: other.map(|from| (from.clone(), e.kind)),
                    });
                }
            }
            if e.from == e.to {
                return Err(if e.kind.is_ordering() {
                    RegistryError::Cycle {
                        path: vec![e.from.clone(), e.to.clone()],
                        kinds: vec![e.kind],
                    }
                } else {
                    RegistryError::Invalid {
                        message: format!("system '{}' cannot {} itself", e.from, e.kind),
                    }
                });
            }
        }

        // 2. Insert.
        let mut added_nodes = Vec::with_capacity(systems.len());
        for spec in systems {
            let name: Arc<str> = Arc::from(spec.name.as_str());
            let idx = self.graph.add_node(SystemNode {
                name: name.clone(),
                info: SystemInfo {
                    tier: spec.tier,
                    tags: spec.tags,
                    priority: spec.priority,
                    resources: spec.resources,
                    timeout: spec.timeout,
                },
                handlers: spec.handlers,
                life: Lifecycle::new(),
                operations: spec
                    .operations
                    .into_iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), v))
                    .collect(),
                slots: Arc::new(SystemSlots::new(spec.concurrency)),
            });
            self.names.insert(name, idx);
            self.order.push(idx);
            added_nodes.push(idx);
        }
        let mut added_edges = Vec::new();
        let mut ordering_sources = Vec::new();
        for e in &all_edges {
            let (a, b) = (self.names[e.from.as_str()], self.names[e.to.as_str()]);
            if self.has_edge(a, e.kind, b) {
                continue;
            }
            added_edges.push(self.graph.add_edge(a, b, e.kind));
            if e.kind.is_ordering() {
                ordering_sources.push(a);
            }
        }

        // 3. Any new cycle passes through a new ordering edge a -> b, so it is
        //    found by a search from `a`; and it also enters `a` through an
        //    ordering edge, so sources without one are skipped (registering a
        //    DAG in dependency order then costs O(1) per edge). Roll back on
        //    failure.
        ordering_sources.retain(|&a| {
            self.graph
                .edges_directed(a, Direction::Incoming)
                .any(|e| e.weight().is_ordering())
        });
        if let Some((path, kinds)) = cycle::find_from(&self.graph, &ordering_sources) {
            for e in added_edges {
                self.graph.remove_edge(e);
            }
            self.order.truncate(self.order.len() - added_nodes.len());
            for n in added_nodes {
                let node = self.graph.remove_node(n).expect("node added by this batch");
                self.names.remove(&node.name);
            }
            return Err(RegistryError::Cycle {
                path: path.into_iter().map(|n| n.to_string()).collect(),
                kinds,
            });
        }
        Ok(added_nodes.len())
    }

    /// Replaces the handlers of `name`, returning the old ones (for the
    /// caller to drop after releasing the lock).
    pub(crate) fn set_handlers(
        &mut self,
        name: &str,
        handlers: Handlers,
    ) -> Result<Handlers, RegistryError> {
        let idx = self.index(name)?;
        Ok(std::mem::replace(&mut self.graph[idx].handlers, handlers))
    }

    /// Adds or replaces operation `op` of `name`.
    pub(crate) fn set_operation(
        &mut self,
        name: &str,
        op: &str,
        f: OpFn,
    ) -> Result<Option<OpFn>, RegistryError> {
        let idx = self.index(name)?;
        if op.is_empty() {
            return Err(RegistryError::Invalid {
                message: format!("system '{name}': operation name is empty"),
            });
        }
        Ok(self.graph[idx].operations.insert(Arc::from(op), f))
    }

    /// Every relation as `EdgeSpec`: by source system in registration order,
    /// then in the order the relations were added.
    pub(crate) fn edge_specs(&self) -> Vec<EdgeSpec> {
        let mut v = Vec::new();
        for &a in &self.order {
            let mut out: Vec<(NodeIndex, EdgeKind)> = self
                .graph
                .edges_directed(a, Direction::Outgoing)
                .map(|e| (e.target(), *e.weight()))
                .collect();
            out.reverse(); // petgraph lists a node's edges newest first
            v.extend(
                out.into_iter()
                    .map(|(b, k)| EdgeSpec::new(&*self.graph[a].name, k, &*self.graph[b].name)),
            );
        }
        v
    }
}
