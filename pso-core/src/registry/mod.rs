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

use std::collections::BTreeMap;

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use thiserror::Error;

use crate::error::{ErrorKind, PsoError};
use crate::lifecycle::Lifecycle;
use crate::metrics::Switch;
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
    /// Registration order (for deterministic plans).
    pub(crate) seq: u32,
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
    /// The relations. A node's weight is its system's position in `systems`
    /// (its registration sequence number), so graph walks touch only small
    /// nodes and edges.
    pub(crate) graph: StableDiGraph<u32, EdgeKind>,
    /// Systems in registration order.
    systems: Vec<SystemNode>,
    names: HashMap<Arc<str>, NodeIndex>,
    /// Nodes in registration order. `StableGraph` reuses the slots a
    /// rolled-back batch freed, so its own index order is not registration order.
    order: Vec<NodeIndex>,
    /// Number of `conflicts` edges.
    conflict_edges: usize,
    /// The metrics switch handed to each system's transition counters.
    pub(crate) metrics: Switch,
}

impl Registry {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose systems count transitions while `metrics` is on.
    pub(crate) fn with_metrics(metrics: Switch) -> Self {
        Registry {
            metrics,
            ..Self::default()
        }
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
        &self.systems[self.graph[idx] as usize]
    }

    pub(crate) fn node_mut(&mut self, idx: NodeIndex) -> &mut SystemNode {
        &mut self.systems[self.graph[idx] as usize]
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
        /// An edge endpoint: an existing system, or one of this batch.
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum End {
            Old(NodeIndex),
            New(u32),
        }

        // 1. Validate everything before touching the graph, resolving every
        //    endpoint once.
        let mut new_names: HashMap<&str, u32> =
            HashMap::with_capacity_and_hasher(systems.len(), Default::default());
        for (pos, spec) in systems.iter().enumerate() {
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
            if self.names.contains_key(spec.name.as_str())
                || new_names.insert(spec.name.as_str(), pos as u32).is_some()
            {
                return Err(RegistryError::DuplicateSystem {
                    name: spec.name.clone(),
                });
            }
        }
        let resolve = |name: &str| -> Option<End> {
            new_names
                .get(name)
                .map(|&p| End::New(p))
                .or_else(|| self.names.get(name).map(|&i| End::Old(i)))
        };
        let self_edge = |name: &str, kind: EdgeKind| {
            if kind.is_ordering() {
                RegistryError::Cycle {
                    path: vec![name.to_owned(), name.to_owned()],
                    kinds: vec![kind],
                }
            } else {
                RegistryError::Invalid {
                    message: format!("system '{name}' cannot {kind} itself"),
                }
            }
        };
        let declared: usize = systems.iter().map(|s| s.edges.len()).sum();
        let mut resolved: Vec<(End, EdgeKind, End)> = Vec::with_capacity(declared + edges.len());
        for (pos, spec) in systems.iter().enumerate() {
            for (kind, to) in &spec.edges {
                let b = resolve(to).ok_or_else(|| RegistryError::UnknownSystem {
                    name: to.clone(),
                    referenced_by: Some((spec.name.clone(), *kind)),
                })?;
                if b == End::New(pos as u32) {
                    return Err(self_edge(&spec.name, *kind));
                }
                resolved.push((End::New(pos as u32), *kind, b));
            }
        }
        for e in &edges {
            let a = resolve(&e.from).ok_or_else(|| RegistryError::unknown(&e.from))?;
            let b = resolve(&e.to).ok_or_else(|| RegistryError::UnknownSystem {
                name: e.to.clone(),
                referenced_by: Some((e.from.clone(), e.kind)),
            })?;
            if a == b {
                return Err(self_edge(&e.from, e.kind));
            }
            resolved.push((a, e.kind, b));
        }
        drop(new_names);

        // 2. Insert.
        self.graph.reserve_nodes(systems.len());
        self.graph.reserve_edges(resolved.len());
        let now = std::time::SystemTime::now();
        let mut added_nodes = Vec::with_capacity(systems.len());
        self.systems.reserve(systems.len());
        for spec in systems {
            let name: Arc<str> = Arc::from(spec.name.as_str());
            let seq = self.systems.len() as u32;
            let idx = self.graph.add_node(seq);
            self.systems.push(SystemNode {
                name: name.clone(),
                seq,
                info: SystemInfo {
                    tier: spec.tier,
                    tags: spec.tags,
                    priority: spec.priority,
                    resources: spec.resources,
                    timeout: spec.timeout,
                },
                handlers: spec.handlers,
                life: Lifecycle::new_at(now, self.metrics.clone()),
                operations: spec
                    .operations
                    .into_iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), v))
                    .collect(),
                slots: {
                    let slots = SystemSlots::new(spec.concurrency);
                    slots.set_step_request(spec.step_resources);
                    slots.set_pinned(spec.pinned);
                    Arc::new(slots)
                },
            });
            self.names.insert(name, idx);
            self.order.push(idx);
            added_nodes.push(idx);
        }
        let node_of = |e: End| match e {
            End::Old(i) => i,
            End::New(p) => added_nodes[p as usize],
        };
        let mut added_edges = Vec::with_capacity(resolved.len());
        let mut ordering_sources = Vec::new();
        let mut added_conflicts = 0;
        for (a, kind, b) in resolved {
            let (a, b) = (node_of(a), node_of(b));
            if self.has_edge(a, kind, b) {
                continue;
            }
            added_edges.push(self.graph.add_edge(a, b, kind));
            if kind.is_ordering() {
                ordering_sources.push(a);
            }
            if kind == EdgeKind::Conflicts {
                added_conflicts += 1;
            }
        }
        self.conflict_edges += added_conflicts;

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
        if let Some((path, kinds)) = cycle::find_from(self, &ordering_sources) {
            for e in added_edges {
                self.graph.remove_edge(e);
            }
            self.conflict_edges -= added_conflicts;
            let keep = self.order.len() - added_nodes.len();
            for node in self.systems.drain(keep..) {
                self.names.remove(&node.name);
            }
            self.order.truncate(keep);
            for n in added_nodes {
                self.graph.remove_node(n).expect("node added by this batch");
            }
            return Err(RegistryError::Cycle {
                path: path.into_iter().map(|n| n.to_string()).collect(),
                kinds,
            });
        }
        Ok(added_nodes.len())
    }

    /// Whether any `conflicts` relation exists (lets activation skip the check).
    pub(crate) fn has_conflicts(&self) -> bool {
        self.conflict_edges > 0
    }

    /// Replaces the handlers of `name`, returning the old ones (for the
    /// caller to drop after releasing the lock).
    pub(crate) fn set_handlers(
        &mut self,
        name: &str,
        handlers: Handlers,
    ) -> Result<Handlers, RegistryError> {
        let idx = self.index(name)?;
        Ok(std::mem::replace(
            &mut self.node_mut(idx).handlers,
            handlers,
        ))
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
        Ok(self.node_mut(idx).operations.insert(Arc::from(op), f))
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
                    .map(|(b, k)| EdgeSpec::new(&*self.node(a).name, k, &*self.node(b).name)),
            );
        }
        v
    }
}
