//! Ordering-cycle detection that reports the whole cycle path.
//!
//! An iterative three-colour depth-first search over ordering edges (requires,
//! wants, after) from a set of start nodes. When it meets an edge into a node
//! still on the stack (grey), the stack from that node to the top is the cycle,
//! in order. Only nodes reachable from the starts are visited, so checking a
//! small batch against a large registry costs what the batch touches, not the
//! whole graph.
//!
//! # Complexity
//! O(V' + E') time and space, where V', E' are the reachable nodes and edges.

use std::sync::Arc;

use foldhash::HashMap;

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::{EdgeRef, NodeIndexable};

use super::Registry;
use crate::model::EdgeKind;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Colour {
    Grey,
    Black,
}

enum Colours {
    Dense(Vec<Option<Colour>>),
    Sparse(HashMap<NodeIndex, Colour>),
}

impl Colours {
    fn new(dense: bool, bound: usize) -> Colours {
        if dense {
            Colours::Dense(vec![None; bound])
        } else {
            Colours::Sparse(HashMap::default())
        }
    }

    fn get(&self, n: &NodeIndex) -> Option<&Colour> {
        match self {
            Colours::Dense(v) => v[n.index()].as_ref(),
            Colours::Sparse(m) => m.get(n),
        }
    }

    fn contains_key(&self, n: &NodeIndex) -> bool {
        self.get(n).is_some()
    }

    fn insert(&mut self, n: NodeIndex, c: Colour) {
        match self {
            Colours::Dense(v) => v[n.index()] = Some(c),
            Colours::Sparse(m) => {
                m.insert(n, c);
            }
        }
    }
}

/// A search frame: a node, its ordering out-edges, and the next one to follow.
struct Frame {
    node: NodeIndex,
    edges: Vec<(NodeIndex, EdgeKind)>,
    next: usize,
}

/// Returns the first ordering cycle reachable from `starts`: the names on it
/// (first repeated at the end) and the edge kinds between consecutive names.
pub(super) fn find_from(
    reg: &Registry,
    starts: &[NodeIndex],
) -> Option<(Vec<Arc<str>>, Vec<EdgeKind>)> {
    let graph = &reg.graph;
    // Dense colours when the search may cover a good share of the graph,
    // a hash map for a small batch checked against a large registry.
    let mut colour = Colours::new(starts.len() * 16 >= graph.node_bound(), graph.node_bound());
    let mut stack: Vec<Frame> = Vec::new();
    let succ = |n: NodeIndex| -> Vec<(NodeIndex, EdgeKind)> {
        let mut v: Vec<(NodeIndex, EdgeKind)> = graph
            .edges_directed(n, Direction::Outgoing)
            .filter(|e| e.weight().is_ordering())
            .map(|e| (e.target(), *e.weight()))
            .collect();
        v.reverse();
        v
    };
    for &start in starts {
        if colour.contains_key(&start) {
            continue;
        }
        colour.insert(start, Colour::Grey);
        stack.push(Frame {
            node: start,
            edges: succ(start),
            next: 0,
        });
        while let Some(frame) = stack.last_mut() {
            if frame.next == frame.edges.len() {
                colour.insert(frame.node, Colour::Black);
                stack.pop();
                continue;
            }
            let (target, _) = frame.edges[frame.next];
            frame.next += 1;
            match colour.get(&target) {
                None => {
                    colour.insert(target, Colour::Grey);
                    stack.push(Frame {
                        node: target,
                        edges: succ(target),
                        next: 0,
                    });
                }
                Some(Colour::Grey) => {
                    let from = stack
                        .iter()
                        .position(|f| f.node == target)
                        .expect("grey node is on the stack");
                    let mut names = Vec::new();
                    let mut kinds = Vec::new();
                    for f in &stack[from..] {
                        names.push(reg.node(f.node).name.clone());
                        kinds.push(f.edges[f.next - 1].1);
                    }
                    names.push(reg.node(target).name.clone());
                    return Some((names, kinds));
                }
                Some(Colour::Black) => {}
            }
        }
    }
    None
}
