//! Shared helpers for the pso-core benchmarks: a seeded random DAG of systems,
//! its PSO registration input, and the two baselines the benchmarks compare
//! PSO against.
//!
//! # The random DAG
//! Systems are `0..n`, named `s{i}`. System `i` gets 2 or 3 ordering edges
//! (fewer for the first systems) to *distinct earlier* systems, so the graph
//! is acyclic by construction and `0..n` is one topological order. Half of the
//! targets are drawn from the previous [`LOCAL_WINDOW`] systems (which makes
//! long dependency chains), half uniformly from all earlier systems (which
//! makes wide fan-in). Kinds: 80 % `requires`, 10 % `wants`, 10 % `after`.
//! The same `(n, seed)` always gives the same graph.
//!
//! # Baselines
//! * [`Floor`]: the same no-op handler closures called on one thread in a
//!   precomputed topological order. No scheduler can activate faster.
//! * [`kahn_order`]: Kahn's algorithm over the same edges (build in-degrees and
//!   a CSR successor list, then drain a queue): the minimum bookkeeping any
//!   dependency-ordered executor needs.
//!
//! # Scheduler shapes
//! The workflow-scheduler benchmark (`benches/scheduler.rs`) uses the regular
//! shapes of [`Shape`] instead: chain, independent tasks, binary tree and
//! wavefront, built by [`TaskDag`], with [`SeqFloor`] as its floor and
//! [`Spin`] for tasks with a fixed amount of work. [`CountingAlloc`] measures
//! memory per node; [`cpu_time`] and [`load_avg`] record the conditions of
//! each figure.

mod counting;
mod proc_stats;
mod shapes;

use std::hint::black_box;

use pso_core::{EdgeKind, HandlerError, SystemSpec};

pub use crate::counting::{Allocated, CountingAlloc, allocated};
pub use crate::proc_stats::{busy_fraction, cpu_time, load_avg, wait_quiet};
pub use crate::shapes::{SeqFloor, Shape, Spin, TaskDag, TaskFn, empty_task, task_fns};

/// How far back the "local" half of the edges may point.
pub const LOCAL_WINDOW: u32 = 32;

/// One ordering edge `from <kind> to`, with `to < from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The dependent system (it activates after `to`).
    pub from: u32,
    /// `Requires`, `Wants` or `After`.
    pub kind: EdgeKind,
    /// The earlier system.
    pub to: u32,
}

/// A seeded random DAG of `n` systems. See the crate docs for its shape.
#[derive(Debug, Clone)]
pub struct Dag {
    /// Number of systems.
    pub n: u32,
    /// Every ordering edge, grouped by `from` in increasing order.
    pub edges: Vec<Edge>,
}

impl Dag {
    /// The DAG for `n` systems and `seed`.
    ///
    /// # Examples
    /// ```
    /// let dag = pso_benches::Dag::random(1000, 7);
    /// assert!(dag.edges.iter().all(|e| e.to < e.from));
    /// assert_eq!(dag.edges, pso_benches::Dag::random(1000, 7).edges);
    /// ```
    pub fn random(n: u32, seed: u64) -> Dag {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut edges = Vec::with_capacity(n as usize * 5 / 2);
        let mut targets: Vec<u32> = Vec::with_capacity(3);
        for from in 1..n {
            let want = rng.usize(2..=3).min(from as usize);
            targets.clear();
            while targets.len() < want {
                let to = if rng.bool() {
                    rng.u32(from.saturating_sub(LOCAL_WINDOW)..from)
                } else {
                    rng.u32(0..from)
                };
                if !targets.contains(&to) {
                    targets.push(to);
                }
            }
            for &to in &targets {
                let kind = match rng.u8(0..10) {
                    0 => EdgeKind::Wants,
                    1 => EdgeKind::After,
                    _ => EdgeKind::Requires,
                };
                edges.push(Edge { from, kind, to });
            }
        }
        Dag { n, edges }
    }

    /// Number of levels: the longest dependency chain, counted in systems.
    pub fn depth(&self) -> u32 {
        let mut level = vec![0u32; self.n as usize];
        // Edges are grouped by increasing `from` and point backwards, so one
        // pass in order sees every `to` finished before its `from`.
        for e in &self.edges {
            let l = level[e.to as usize] + 1;
            let slot = &mut level[e.from as usize];
            *slot = (*slot).max(l);
        }
        level.iter().max().map_or(0, |m| m + 1)
    }

    /// The PSO registration input: one [`SystemSpec`] per system with its
    /// edges inline and `handler(i)` wrapped as its `activate` handler.
    pub fn specs<H>(&self, handler: impl Fn(u32) -> H) -> Vec<SystemSpec>
    where
        H: Fn() -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        let mut edges = self.edges.iter().peekable();
        (0..self.n)
            .map(|i| {
                let h = handler(i);
                let mut spec = SystemSpec::new(name(i)).on_activate(move |_ctx| h());
                while let Some(e) = edges.next_if(|e| e.from == i) {
                    spec = spec.edge(e.kind, name(e.to));
                }
                spec
            })
            .collect()
    }
}

/// The name of system `i`.
pub fn name(i: u32) -> String {
    format!("s{i}")
}

/// The benchmarks' no-op activate handler for system `i`: a real closure that
/// captures its index and returns `Ok(())`.
pub fn noop_handler(i: u32) -> impl Fn() -> Result<(), HandlerError> + Send + Sync + 'static {
    move || {
        black_box(i);
        Ok(())
    }
}

/// A topological order by Kahn's algorithm over `dag`'s edges.
///
/// # Complexity
/// O(V + E) time and space.
///
/// # Examples
/// ```
/// let dag = pso_benches::Dag::random(500, 1);
/// let order = pso_benches::kahn_order(&dag);
/// let mut pos = vec![0; 500];
/// for (p, &i) in order.iter().enumerate() {
///     pos[i as usize] = p;
/// }
/// assert!(dag.edges.iter().all(|e| pos[e.to as usize] < pos[e.from as usize]));
/// ```
pub fn kahn_order(dag: &Dag) -> Vec<u32> {
    let n = dag.n as usize;
    // CSR of successors: `to` must run before `from`.
    let mut pred_count = vec![0u32; n];
    let mut start = vec![0u32; n + 1];
    for e in &dag.edges {
        pred_count[e.from as usize] += 1;
        start[e.to as usize + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut succ = vec![0u32; dag.edges.len()];
    for e in &dag.edges {
        succ[fill[e.to as usize] as usize] = e.from;
        fill[e.to as usize] += 1;
    }
    let mut order: Vec<u32> = (0..dag.n)
        .filter(|&i| pred_count[i as usize] == 0)
        .collect();
    order.reserve(n - order.len());
    let mut head = 0;
    while head < order.len() {
        let i = order[head] as usize;
        head += 1;
        for &s in &succ[start[i] as usize..start[i + 1] as usize] {
            pred_count[s as usize] -= 1;
            if pred_count[s as usize] == 0 {
                order.push(s);
            }
        }
    }
    assert_eq!(order.len(), n, "the random DAG is acyclic by construction");
    order
}

/// The floor baseline: the handler closures, boxed like PSO's, called in a
/// precomputed topological order on the current thread.
pub struct Floor {
    handlers: Vec<Box<dyn Fn() -> Result<(), HandlerError> + Send + Sync>>,
    order: Vec<u32>,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor")
            .field("systems", &self.order.len())
            .finish()
    }
}

impl Floor {
    /// Prepares the floor for `dag` with `handler(i)` per system.
    pub fn new<H>(dag: &Dag, handler: impl Fn(u32) -> H) -> Floor
    where
        H: Fn() -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        Floor {
            handlers: (0..dag.n)
                .map(|i| Box::new(handler(i)) as Box<dyn Fn() -> _ + Send + Sync>)
                .collect(),
            order: kahn_order(dag),
        }
    }

    /// Calls every handler once in order; returns how many succeeded.
    pub fn run(&self) -> usize {
        self.order
            .iter()
            .filter(|&&i| self.handlers[i as usize]().is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let dag = Dag::random(10_000, 42);
        let per = dag.edges.len() as f64 / 10_000.0;
        assert!((2.3..2.7).contains(&per), "{per} edges per system");
        let requires = dag
            .edges
            .iter()
            .filter(|e| e.kind == EdgeKind::Requires)
            .count();
        assert!(requires * 10 > dag.edges.len() * 7);
        assert!(dag.depth() > 10);
        // No duplicate (from, to) pairs.
        let mut pairs: Vec<(u32, u32)> = dag.edges.iter().map(|e| (e.from, e.to)).collect();
        let len = pairs.len();
        pairs.sort();
        pairs.dedup();
        assert_eq!(pairs.len(), len);
    }

    #[test]
    fn specs_register_and_floor_runs_all() {
        let dag = Dag::random(300, 3);
        let o = pso_core::Orchestrator::builder()
            .workers(1)
            .build()
            .unwrap();
        assert_eq!(o.register_batch(dag.specs(noop_handler), []).unwrap(), 300);
        let report = o.activate_all().unwrap();
        assert_eq!(report.activated().len(), 300);
        assert_eq!(Floor::new(&dag, noop_handler).run(), 300);
    }
}
