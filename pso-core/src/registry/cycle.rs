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

use std::collections::HashMap;
use std::sync::Arc;

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;

use super::SystemNode;
use crate::model::EdgeKind;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Colour {
    Grey,
    Black,
}

/// Returns the first ordering cycle reachable from `starts`: the names on it
/// (first repeated at the end) and the edge kinds between consecutive names.
pub(super) fn find_from(
    graph: &StableDiGraph<SystemNode, EdgeKind>,
    starts: &[NodeIndex],
) -> Option<(Vec<Arc<str>>, Vec<EdgeKind>)> {
    let mut colour: HashMap<NodeIndex, Colour> = HashMap::new();
    // Stack frames: node, its ordering out-edges, and the next one to follow.
    let mut stack: Vec<(NodeIndex, Vec<(NodeIndex, EdgeKind)>, usize)> = Vec::new();
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
        stack.push((start, succ(start), 0));
        while let Some(frame) = stack.last_mut() {
            let (node, edges, next) = (frame.0, &frame.1, frame.2);
            if next == edges.len() {
                colour.insert(node, Colour::Black);
                stack.pop();
                continue;
            }
            let (target, _) = edges[next];
            frame.2 += 1;
            match colour.get(&target) {
                None => {
                    colour.insert(target, Colour::Grey);
                    stack.push((target, succ(target), 0));
                }
                Some(Colour::Grey) => {
                    let from = stack
                        .iter()
                        .position(|f| f.0 == target)
                        .expect("grey node is on the stack");
                    let mut names = Vec::new();
                    let mut kinds = Vec::new();
                    for f in &stack[from..] {
                        names.push(graph[f.0].name.clone());
                        kinds.push(f.1[f.2 - 1].1);
                    }
                    names.push(graph[target].name.clone());
                    return Some((names, kinds));
                }
                Some(Colour::Black) => {}
            }
        }
    }
    None
}
