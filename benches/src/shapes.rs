//! The scheduler benchmark's task graphs (issue 3): four regular shapes of
//! empty or fixed-cost tasks, built as a pso-core [`Workflow`], plus the
//! single-threaded floor every scheduler is compared with.
//!
//! # Shapes
//! Tasks are `0..n`; an edge `(a, b)` means "`a` runs before `b`", and
//! always `a < b`, so `0..n` is a topological order.
//! * [`Shape::Chain`]: `i - 1 -> i`. No parallelism; measures the cost of
//!   handing one task to the next.
//! * [`Shape::Independent`]: no edges. Measures starting and finishing many
//!   roots.
//! * [`Shape::BinaryTree`]: `(i - 1) / 2 -> i` (a heap layout: every task
//!   releases two).
//! * [`Shape::Wavefront`]: an `s × s` grid (`n = s²`), cell `(r, c)` after
//!   `(r, c - 1)` and `(r - 1, c)`. Fan-in and fan-out of two.
//!
//! # The "same closure"
//! A pso-core step function takes a `&StepContext`, which only pso-core can
//! make. So [`task_fns`] wraps one body twice: as the [`OpFn`] the workflow
//! runs, and as a [`TaskFn`] (`Fn() -> Result<Value, HandlerError>`) the
//! baselines call. Both are one dynamic call through an `Arc` into the same
//! inlined body.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pso_core::{HandlerError, OpFn, Orchestrator, StepId, Value, Workflow, WorkflowBuilder};

/// What the baselines call per task: the body of the workflow's [`OpFn`].
pub type TaskFn = std::sync::Arc<dyn Fn() -> Result<Value, HandlerError> + Send + Sync>;

/// The same `body` as a workflow function and as a baseline function.
///
/// # Examples
/// ```
/// let (_op, f) = pso_benches::task_fns(|| Ok(pso_core::Value::Null));
/// assert_eq!(f().unwrap(), pso_core::Value::Null);
/// ```
pub fn task_fns<B>(body: B) -> (OpFn, TaskFn)
where
    B: Fn() -> Result<Value, HandlerError> + Clone + Send + Sync + 'static,
{
    let b = body.clone();
    (
        std::sync::Arc::new(move |_ctx: &pso_core::StepContext<'_>| b()),
        std::sync::Arc::new(body),
    )
}

/// The issue's empty task: returns `Ok(Value::Null)`.
pub fn empty_task() -> (OpFn, TaskFn) {
    task_fns(|| Ok(Value::Null))
}

/// One of the four benchmark shapes. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shape {
    /// `i - 1 -> i`.
    Chain,
    /// No edges.
    Independent,
    /// `(i - 1) / 2 -> i`.
    BinaryTree,
    /// A `√n × √n` grid, each cell after its left and upper neighbour.
    Wavefront,
}

impl Shape {
    /// Every shape, in the order the benchmark reports them.
    pub const ALL: [Shape; 4] = [
        Shape::Chain,
        Shape::Independent,
        Shape::BinaryTree,
        Shape::Wavefront,
    ];

    /// `chain`, `independent`, `binary_tree`, `wavefront`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Independent => "independent",
            Shape::BinaryTree => "binary_tree",
            Shape::Wavefront => "wavefront",
        }
    }

    /// The edges of this shape with `n` tasks, `(before, after)`, grouped
    /// by `after` in increasing order.
    ///
    /// # Panics
    /// For [`Shape::Wavefront`] if `n` is not a perfect square.
    pub fn edges(self, n: u32) -> Vec<(u32, u32)> {
        match self {
            Shape::Chain => (1..n).map(|i| (i - 1, i)).collect(),
            Shape::Independent => Vec::new(),
            Shape::BinaryTree => (1..n).map(|i| ((i - 1) / 2, i)).collect(),
            Shape::Wavefront => {
                let s = n.isqrt();
                assert_eq!(s * s, n, "a wavefront needs a square number of tasks");
                let mut e = Vec::with_capacity(2 * (s as usize) * (s as usize).saturating_sub(1));
                for r in 0..s {
                    for c in 0..s {
                        let i = r * s + c;
                        if c > 0 {
                            e.push((i - 1, i));
                        }
                        if r > 0 {
                            e.push((i - s, i));
                        }
                    }
                }
                e
            }
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// A shape with `n` tasks: its edge list and the compressed successor lists
/// the baselines run on.
#[derive(Debug, Clone)]
pub struct TaskDag {
    /// The shape.
    pub shape: Shape,
    /// Number of tasks.
    pub n: u32,
    /// `(before, after)` edges, as [`Shape::edges`] gives them.
    pub edges: Vec<(u32, u32)>,
    /// `succ[succ_start[i]..succ_start[i + 1]]` are the successors of `i`.
    pub succ_start: Vec<u32>,
    /// See `succ_start`.
    pub succ: Vec<u32>,
    /// Number of predecessors of each task.
    pub pred_count: Vec<u32>,
    /// Tasks without predecessors, in increasing order.
    pub roots: Vec<u32>,
}

impl TaskDag {
    /// The graph of `shape` with `n` tasks.
    ///
    /// # Examples
    /// ```
    /// use pso_benches::{Shape, TaskDag};
    /// let d = TaskDag::new(Shape::Wavefront, 16);
    /// assert_eq!(d.edges.len(), 2 * 4 * 3);
    /// assert_eq!(d.roots, [0]);
    /// assert_eq!(d.succ_of(0), [1, 4]);
    /// assert_eq!(d.depth(), 7);
    /// ```
    pub fn new(shape: Shape, n: u32) -> TaskDag {
        let edges = shape.edges(n);
        let nu = n as usize;
        let mut succ_start = vec![0u32; nu + 1];
        let mut pred_count = vec![0u32; nu];
        for &(a, b) in &edges {
            succ_start[a as usize + 1] += 1;
            pred_count[b as usize] += 1;
        }
        for i in 0..nu {
            succ_start[i + 1] += succ_start[i];
        }
        let mut fill = succ_start[..nu].to_vec();
        let mut succ = vec![0u32; edges.len()];
        for &(a, b) in &edges {
            succ[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
        }
        let roots = (0..n).filter(|&i| pred_count[i as usize] == 0).collect();
        TaskDag {
            shape,
            n,
            edges,
            succ_start,
            succ,
            pred_count,
            roots,
        }
    }

    /// The successors of task `i`.
    #[inline]
    pub fn succ_of(&self, i: u32) -> &[u32] {
        &self.succ[self.succ_start[i as usize] as usize..self.succ_start[i as usize + 1] as usize]
    }

    /// The longest chain, counted in tasks.
    pub fn depth(&self) -> u32 {
        let mut level = vec![1u32; self.n as usize];
        // Edges point forwards, so increasing `after` sees every `before` done.
        for &(a, b) in &self.edges {
            level[b as usize] = level[b as usize].max(level[a as usize] + 1);
        }
        level.into_iter().max().unwrap_or(0)
    }

    /// Builds the workflow of this graph in `orch`: one [`WorkflowBuilder::task_shared`]
    /// per task (all sharing `f`), then one [`WorkflowBuilder::precede`] per
    /// edge. This is the whole "build" the benchmark times.
    ///
    /// # Panics
    /// If pso-core rejects the workflow (it cannot for these shapes).
    pub fn workflow(&self, orch: &Orchestrator, f: &OpFn) -> Workflow {
        let mut b =
            WorkflowBuilder::with_capacity(self.shape.name(), self.n as usize, self.edges.len());
        let ids: Vec<StepId> = (0..self.n).map(|_| b.task_shared(f.clone())).collect();
        for &(a, c) in &self.edges {
            b.precede(ids[a as usize], ids[c as usize]);
        }
        b.build(orch)
            .expect("the benchmark shapes are valid workflows")
    }
}

/// The floor: a single-threaded topological loop (Kahn's algorithm, with
/// per-task dependency counters reset on every run) calling the task function.
/// Buffers are kept between runs, like pso-core's run buffers.
#[derive(Debug, Clone)]
pub struct SeqFloor {
    pending: Vec<u32>,
    queue: Vec<u32>,
}

impl SeqFloor {
    /// Buffers for `dag`.
    pub fn new(dag: &TaskDag) -> SeqFloor {
        SeqFloor {
            pending: vec![0; dag.n as usize],
            queue: Vec::with_capacity(dag.n as usize),
        }
    }

    /// Runs every task of `dag` once, each after its predecessors; returns how
    /// many returned `Ok`.
    ///
    /// # Examples
    /// ```
    /// use pso_benches::{SeqFloor, Shape, TaskDag, empty_task};
    /// let dag = TaskDag::new(Shape::BinaryTree, 1000);
    /// let (_, f) = empty_task();
    /// assert_eq!(SeqFloor::new(&dag).run(&dag, &f), 1000);
    /// ```
    pub fn run(&mut self, dag: &TaskDag, f: &TaskFn) -> usize {
        self.pending.copy_from_slice(&dag.pred_count);
        self.queue.clear();
        self.queue.extend_from_slice(&dag.roots);
        let mut ok = 0;
        let mut head = 0;
        while let Some(&i) = self.queue.get(head) {
            head += 1;
            if black_box(f()).is_ok() {
                ok += 1;
            }
            for &s in dag.succ_of(i) {
                let p = &mut self.pending[s as usize];
                *p -= 1;
                if *p == 0 {
                    self.queue.push(s);
                }
            }
        }
        ok
    }
}

/// A calibrated busy loop standing in for a task's work (not a sleep, so it
/// occupies a core like real work).
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    iters: u64,
}

impl Spin {
    /// Calibrates a spin of about `target` on this machine: the fastest of
    /// several timed trial runs sets the rate (slower trials were disturbed).
    pub fn calibrate(target: Duration) -> Spin {
        const TRIAL: u64 = 2_000_000;
        let best = (0..7)
            .map(|_| {
                let t = Instant::now();
                spin(TRIAL);
                t.elapsed()
            })
            .min()
            .unwrap_or(Duration::from_millis(1))
            .max(Duration::from_nanos(1));
        let iters = (TRIAL as u128 * target.as_nanos() / best.as_nanos()).max(1) as u64;
        Spin { iters }
    }

    /// Loop iterations per spin.
    pub fn iters(self) -> u64 {
        self.iters
    }

    /// Spins once.
    #[inline]
    pub fn run(self) {
        spin(self.iters);
    }
}

#[inline(never)]
fn spin(iters: u64) {
    let mut x = 0u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    black_box(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_issue_edges() {
        let n = 1 << 10;
        let chain = TaskDag::new(Shape::Chain, n);
        assert_eq!((chain.edges.len(), chain.depth()), (1023, 1024));
        let ind = TaskDag::new(Shape::Independent, n);
        assert_eq!(
            (ind.edges.len(), ind.roots.len(), ind.depth()),
            (0, 1024, 1)
        );
        let tree = TaskDag::new(Shape::BinaryTree, n);
        assert_eq!((tree.edges.len(), tree.depth()), (1023, 11));
        assert!(tree.edges.iter().all(|&(a, b)| a == (b - 1) / 2));
        let wave = TaskDag::new(Shape::Wavefront, n);
        assert_eq!((wave.edges.len(), wave.depth()), (2 * 32 * 31, 63));
        assert_eq!(wave.pred_count[33], 2);
        for d in [&chain, &ind, &tree, &wave] {
            assert!(d.edges.iter().all(|&(a, b)| a < b));
            assert_eq!(d.succ.len(), d.edges.len());
        }
    }

    #[test]
    fn workflows_and_floor_run_every_task() {
        let orch = Orchestrator::builder().workers(2).build().unwrap();
        let (op, f) = empty_task();
        for shape in Shape::ALL {
            let dag = TaskDag::new(shape, 256);
            let wf = dag.workflow(&orch, &op);
            assert_eq!(wf.len(), 256);
            for _ in 0..3 {
                let r = orch
                    .coordinate_systems_with(&wf, pso_core::RunOptions::default().timing(false))
                    .unwrap()
                    .wait();
                assert!(r.is_success(), "{shape}");
                assert_eq!(r.counts().succeeded, 256);
            }
            assert_eq!(SeqFloor::new(&dag).run(&dag, &f), 256);
        }
    }

    #[test]
    fn spin_is_calibrated_to_roughly_the_target() {
        let s = Spin::calibrate(Duration::from_micros(1));
        // Only what load cannot break: how long the spin then takes depends
        // on how much CPU the calibration trials got (the bench reports it).
        assert!(s.iters() > 10, "{} iterations per µs", s.iters());
        let longer = Spin::calibrate(Duration::from_millis(1));
        assert!(longer.iters() > s.iters(), "1 ms spins more than 1 µs");
        s.run();
    }
}
