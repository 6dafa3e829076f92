//! Which systems a lifecycle call touches, and in what order.
//!
//! * Activation closure: the targets plus everything reachable through
//!   `requires` and `wants`, not entering systems that are already Active.
//! * Deactivation closure: the target plus every Active system that
//!   (transitively) requires it.
//! * [`order`] turns a member set into levels: a member's level is one more
//!   than the highest level of the members it must follow. For activation, a
//!   system follows what it requires, wants or is `after`; for deactivation the
//!   direction is reversed. Within a level, members are sorted by priority
//!   class, then registration order, so plans are deterministic.
//!
//! The result is a compact successor list (CSR) with per-member predecessor
//! counts, ready for the transaction executor's atomic counters.
//!
//! # Complexity
//! O(V + E) over the members and the edges among them.

use foldhash::{HashMap, HashSet};

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::{EdgeRef, NodeIndexable};

use super::Registry;
use crate::model::{EdgeKind, LifecycleAction};

/// Members of an activation and the targets' already-active neighbours.
#[derive(Debug, Default)]
pub(crate) struct Closure {
    /// Systems that need the transition, in discovery order.
    pub(crate) members: Vec<NodeIndex>,
    /// Systems reached but already Active (not entered).
    pub(crate) already_active: Vec<NodeIndex>,
}

/// Members in level order with their ordering constraints.
#[derive(Debug, Default)]
pub(crate) struct OrderedSet {
    /// Members, level by level.
    pub(crate) members: Vec<NodeIndex>,
    /// `levels[l]` = positions (into `members`) of level `l`.
    pub(crate) levels: Vec<Vec<u32>>,
    /// Level of each member.
    pub(crate) level_of: Vec<u32>,
    /// CSR: successors of member `i` are `succ[succ_start[i]..succ_start[i+1]]`.
    pub(crate) succ_start: Vec<u32>,
    /// Successor positions.
    pub(crate) succ: Vec<u32>,
    /// Whether the matching successor edge is hard (`requires` on activation):
    /// the successor must not run if this member fails.
    pub(crate) succ_hard: Vec<bool>,
    /// Number of predecessors of each member.
    pub(crate) pred_count: Vec<u32>,
}

/// Positions of members, keyed by node index: a dense array when the members
/// are a good share of the graph, a hash map otherwise (so a small activation
/// in a huge registry does not clear a huge array).
enum Positions {
    Dense(Vec<u32>),
    Sparse(HashMap<NodeIndex, u32>),
}

impl Positions {
    const NONE: u32 = u32::MAX;

    fn new(members: &[NodeIndex], bound: usize) -> Positions {
        if members.len() * 16 >= bound {
            let mut v = vec![Self::NONE; bound];
            for (i, m) in members.iter().enumerate() {
                v[m.index()] = i as u32;
            }
            Positions::Dense(v)
        } else {
            Positions::Sparse(
                members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (*m, i as u32))
                    .collect(),
            )
        }
    }

    #[inline]
    fn get(&self, n: NodeIndex) -> Option<u32> {
        match self {
            Positions::Dense(v) => v.get(n.index()).copied().filter(|&p| p != Self::NONE),
            Positions::Sparse(m) => m.get(&n).copied(),
        }
    }
}

/// A visited set over node indices, dense or sparse like [`Positions`].
enum Seen {
    Dense(Vec<bool>),
    Sparse(HashSet<NodeIndex>),
}

impl Seen {
    fn new(dense: bool, bound: usize) -> Seen {
        if dense {
            Seen::Dense(vec![false; bound])
        } else {
            Seen::Sparse(Default::default())
        }
    }

    /// Marks `n`; returns whether it was new.
    #[inline]
    fn insert(&mut self, n: NodeIndex) -> bool {
        match self {
            Seen::Dense(v) => !std::mem::replace(&mut v[n.index()], true),
            Seen::Sparse(s) => s.insert(n),
        }
    }
}

impl Registry {
    /// The activation closure of `targets`.
    pub(crate) fn activation_closure(&self, targets: &[NodeIndex]) -> Closure {
        let bound = self.graph.node_bound();
        let mut seen = Seen::new(targets.len() * 16 >= bound, bound);
        let mut out = Closure::default();
        let mut stack: Vec<NodeIndex> = targets.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            if self.node(n).life.state.is_active() {
                out.already_active.push(n);
                continue;
            }
            out.members.push(n);
            for e in self.graph.edges_directed(n, Direction::Outgoing) {
                if matches!(e.weight(), EdgeKind::Requires | EdgeKind::Wants) {
                    stack.push(e.target());
                }
            }
        }
        out
    }

    /// The deactivation closure of `target`: it plus every Active system that
    /// transitively requires it.
    pub(crate) fn deactivation_closure(&self, target: NodeIndex) -> Vec<NodeIndex> {
        let mut seen = Seen::new(false, 0);
        let mut out = Vec::new();
        let mut stack = vec![target];
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            if !self.node(n).life.state.is_active() {
                continue;
            }
            out.push(n);
            for e in self.graph.edges_directed(n, Direction::Incoming) {
                if *e.weight() == EdgeKind::Requires {
                    stack.push(e.source());
                }
            }
        }
        out
    }

    /// Orders `members` for `action`. The ordering subgraph is acyclic (a
    /// registry invariant), so every member gets a level. Within a level,
    /// members are sorted by priority class, then registration order.
    pub(crate) fn order(&self, members: &[NodeIndex], action: LifecycleAction) -> OrderedSet {
        let n = members.len();
        let pos = Positions::new(members, self.graph.node_bound());
        // Edges pred -> succ in member positions, one walk per member.
        let mut edges: Vec<(u32, u32, bool)> = Vec::new();
        for (i, &m) in members.iter().enumerate() {
            for e in self.graph.edges_directed(m, Direction::Outgoing) {
                let kind = *e.weight();
                if !kind.is_ordering() {
                    continue;
                }
                if let Some(j) = pos.get(e.target()) {
                    match action {
                        LifecycleAction::Activate => {
                            edges.push((j, i as u32, kind == EdgeKind::Requires))
                        }
                        LifecycleAction::Deactivate => edges.push((i as u32, j, false)),
                    }
                }
            }
        }
        let mut pred_count = vec![0u32; n];
        let mut start = vec![0u32; n + 1];
        for &(a, b, _) in &edges {
            pred_count[b as usize] += 1;
            start[a as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut succ = vec![0u32; edges.len()];
        let mut hard = vec![false; edges.len()];
        for &(a, b, h) in &edges {
            let at = fill[a as usize] as usize;
            succ[at] = b;
            hard[at] = h;
            fill[a as usize] += 1;
        }
        drop(edges);

        // Kahn's algorithm, one level at a time.
        let sort_key = |p: u32| {
            let node = self.node(members[p as usize]);
            (node.info.priority.rank(), node.seq)
        };
        let mut remaining = pred_count.clone();
        let mut level_of = vec![0u32; n];
        let mut levels: Vec<Vec<u32>> = Vec::new();
        let mut current: Vec<u32> = (0..n as u32)
            .filter(|&i| remaining[i as usize] == 0)
            .collect();
        while !current.is_empty() {
            let l = levels.len() as u32;
            let mut next = Vec::new();
            for &i in &current {
                level_of[i as usize] = l;
                for k in start[i as usize]..start[i as usize + 1] {
                    let s = succ[k as usize] as usize;
                    remaining[s] -= 1;
                    if remaining[s] == 0 {
                        next.push(s as u32);
                    }
                }
            }
            current.sort_unstable_by_key(|&p| sort_key(p));
            levels.push(std::mem::replace(&mut current, next));
        }
        debug_assert_eq!(
            levels.iter().map(Vec::len).sum::<usize>(),
            n,
            "ordering subgraph has a cycle"
        );

        // Renumber members so they are stored level by level.
        let order: Vec<u32> = levels.iter().flatten().copied().collect();
        let mut new_pos = vec![0u32; n];
        for (new, &old) in order.iter().enumerate() {
            new_pos[old as usize] = new as u32;
        }
        let mut out = OrderedSet {
            members: order.iter().map(|&o| members[o as usize]).collect(),
            levels: levels
                .iter()
                .map(|l| l.iter().map(|&o| new_pos[o as usize]).collect())
                .collect(),
            level_of: order.iter().map(|&o| level_of[o as usize]).collect(),
            succ_start: vec![0; n + 1],
            succ: Vec::with_capacity(succ.len()),
            succ_hard: Vec::with_capacity(succ.len()),
            pred_count: order.iter().map(|&o| pred_count[o as usize]).collect(),
        };
        for (new, &old) in order.iter().enumerate() {
            for k in start[old as usize]..start[old as usize + 1] {
                out.succ.push(new_pos[succ[k as usize] as usize]);
                out.succ_hard.push(hard[k as usize]);
            }
            out.succ_start[new + 1] = out.succ.len() as u32;
        }
        out
    }
}
