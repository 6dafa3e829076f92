//! The workflow scheduler (issue 3): building, re-running and running
//! end-to-end workflows of 2^10, 2^16 and 2^20 tasks in four shapes, on 1 and
//! 2 workers, next to two baselines measured in the same run.
//!
//! Groups and cases (ns per task in the summary):
//! * `{shape}/2^k` (shapes: chain, independent, binary_tree, wavefront; see
//!   `pso_benches::Shape`), every task the empty `OpFn` (returns
//!   `Ok(Value::Null)`), shared by all tasks:
//!   * `build`: `WorkflowBuilder::with_capacity`, one `task_shared` per task,
//!     one `precede` per edge, `build`.
//!   * `rerun/workers=K`: `coordinate_systems_with(&wf, timing off)` and
//!     `wait()` on the same, already built and already run workflow.
//!   * `e2e/workers=K`: build, then run and wait once.
//!   * `rerun_timing_on/workers=K` (2^16 only): the re-run with the default
//!     `RunOptions` (timing on).
//!   * `baseline/seq`: the floor, a single-threaded topological loop (Kahn
//!     with dependency counters) over the same DAG calling the same body.
//!   * `baseline/rayon/workers=K`: a `rayon::scope` on a K-thread pool where
//!     every task, when done, decrements its successors' atomic counters
//!     and spawns the ones that became ready.
//! * `spin_1us/{independent,wavefront}/2^16`: the same with about 1 µs of
//!   calibrated busy work per task (`pso/workers=K`, the baselines), for the
//!   2-worker speed-up.
//! * `latency/1-step/workers=K/timing=on|off`: start a 1-step workflow and
//!   wait for it, each call timed on its own (median and p99).
//!
//! Besides timing, the bench measures memory with a counting global
//! allocator: bytes still allocated after a workflow is built (the builder
//! and its id vector already freed), the peak during the build, and what the
//! first run adds (the run buffers and plan the workflow keeps for reuse).
//!
//! Setup and teardown (dropping workflows and results) are outside the timed
//! region (`iter_custom`). After criterion's output a summary prints every
//! figure (the median of the measurement samples, i.e. the last
//! `sample_size` calls of each routine), the 1-minute load average when each
//! case ended, the goals with MET/MISSED, and the baselines.
//!
//! Run (about 7 minutes; see BENCHMARKS.md):
//! `nice -n -10 cargo bench -p pso-benches --bench scheduler -- --warm-up-time 1 --measurement-time 2`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use pso_benches::{
    CountingAlloc, SeqFloor, Shape, Spin, TaskDag, TaskFn, allocated, cpu_time, empty_task,
    load_avg, task_fns, wait_quiet,
};
use pso_core::{OpFn, Orchestrator, RunOptions, Value, Workflow, WorkflowBuilder};

/// The summary printed after criterion's output.
#[path = "scheduler/report.rs"]
mod report;

const SIZES: [u32; 3] = [1 << 10, 1 << 16, 1 << 20];
const WORKERS: [usize; 2] = [1, 2];
/// Size of the graphs with 1 µs tasks.
const SPIN_N: u32 = 1 << 16;
const SPIN_SHAPES: [Shape; 2] = [Shape::Independent, Shape::Wavefront];

/// Goal: re-run of 2^16 empty tasks on 1 worker, ns per task.
fn goal_rerun(shape: Shape) -> f64 {
    match shape {
        Shape::Chain => 30.0,
        Shape::Independent => 40.0,
        Shape::BinaryTree => 40.0,
        Shape::Wavefront => 45.0,
    }
}
/// Taskflow on this machine (from the issue), for reference in the summary.
fn taskflow(shape: Shape) -> &'static str {
    match shape {
        Shape::Chain => "36",
        Shape::Independent => "48-52",
        Shape::BinaryTree => "45-47",
        Shape::Wavefront => "57-59",
    }
}
/// Goal: 2^20 re-run per task at most this times the 2^16 one.
const GOAL_SCALE: f64 = 1.7;
/// Goal: build cost, ns per task and per edge.
const GOAL_BUILD_TASK: f64 = 25.0;
const GOAL_BUILD_EDGE: f64 = 10.0;
/// Goal: bytes retained per task by a built workflow.
const GOAL_BYTES: f64 = 128.0;
/// Goal: 2 workers on empty tasks at most this times the 1-worker cost.
const GOAL_W2_EMPTY: f64 = 1.2;
/// Goal: speed-up of 2 workers over 1 with 1 µs tasks.
const GOAL_SPEEDUP: f64 = 1.8;
/// Goal: median latency of a 1-step run, ns.
const GOAL_LATENCY_NS: f64 = 1_000.0;

fn sample_size(n: u32) -> usize {
    match n {
        n if n >= 1 << 20 => 10,
        n if n >= 1 << 16 => 20,
        _ => 50,
    }
}
const SPIN_SAMPLES: usize = 10;
const LATENCY_SAMPLES: usize = 50;

fn size_label(n: u32) -> String {
    format!("2^{}", n.trailing_zeros())
}

// ---------------------------------------------------------------------------
// Memory per task node.

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Debug, Clone, Copy)]
struct Memory {
    edges: usize,
    /// Bytes retained by the built workflow.
    built: isize,
    /// Peak bytes during the build (builder, ids and compiled form).
    peak: isize,
    /// Bytes the first run leaves in the workflow (pooled run buffers, plan).
    first_run: isize,
}

static MEMORY: Mutex<BTreeMap<(Shape, u32), Memory>> = Mutex::new(BTreeMap::new());

fn measure_memory(orch: &Orchestrator, dag: &TaskDag, op: &OpFn) {
    // Give the workers time to park so they allocate nothing meanwhile.
    std::thread::sleep(Duration::from_millis(20));
    let (built, wf) = allocated(|| dag.workflow(orch, op));
    let (first_run, ()) = allocated(|| {
        let r = orch.coordinate_systems_with(&wf, off()).unwrap().wait();
        assert!(r.is_success());
        drop(r);
        // The worker that finished the run may drop the last reference and
        // hand the buffers back just after `wait` returns.
        std::thread::sleep(Duration::from_millis(5));
    });
    MEMORY.lock().unwrap().insert(
        (dag.shape, dag.n),
        Memory {
            edges: dag.edges.len(),
            built: built.retained,
            peak: built.peak,
            first_run: first_run.retained,
        },
    );
}

// ---------------------------------------------------------------------------
// Recording.

#[derive(Debug, Clone, Copy)]
struct Rec {
    /// Wall ns per task.
    wall: f64,
    /// On-CPU ns per task, all threads of the process (large graphs only).
    cpu: Option<f64>,
    /// 1-minute load average when the call ended.
    load: f64,
}

/// Per call of each routine, keyed by (group, case).
type Samples = BTreeMap<(String, String), (usize, Vec<Rec>)>;
static SAMPLES: Mutex<Samples> = Mutex::new(BTreeMap::new());
/// Latency cases: ns of every iteration, per call.
type Latencies = BTreeMap<String, Vec<Vec<u32>>>;
static LATENCIES: Mutex<Latencies> = Mutex::new(BTreeMap::new());

#[allow(clippy::too_many_arguments)]
fn record(
    group: &str,
    case: &str,
    samples: usize,
    tasks: u32,
    iters: u64,
    wall: Duration,
    cpu: Option<Duration>,
) {
    let per = |d: Duration| d.as_nanos() as f64 / iters.max(1) as f64 / f64::from(tasks);
    let mut s = SAMPLES.lock().unwrap();
    let e = s
        .entry((group.to_owned(), case.to_owned()))
        .or_insert_with(|| (samples, Vec::new()));
    e.1.push(Rec {
        wall: per(wall),
        cpu: cpu.map(per),
        load: load_avg(),
    });
}

/// Runs `setup`, then times `routine`, `iters` times; `check(k, &out)` and
/// dropping the output are outside the timed region. With `with_cpu`, also
/// sums the process's on-CPU time over the timed regions (reading it costs
/// tens of µs, so only for large graphs).
fn timed<I, O>(
    iters: u64,
    with_cpu: bool,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
    mut check: impl FnMut(u64, &O),
) -> (Duration, Option<Duration>) {
    let mut wall = Duration::ZERO;
    let mut cpu = with_cpu.then_some(Duration::ZERO);
    for k in 0..iters {
        let input = setup();
        let c0 = if with_cpu { cpu_time() } else { None };
        let t = Instant::now();
        let out = routine(input);
        wall += t.elapsed();
        if with_cpu {
            cpu = match (cpu, c0, cpu_time()) {
                (Some(sum), Some(a), Some(b)) => Some(sum + b.saturating_sub(a)),
                _ => None,
            };
        }
        check(k, &out);
        drop(out);
    }
    (wall, cpu)
}

// ---------------------------------------------------------------------------
// Baseline: rayon.

/// Runs `dag` on `pool`: roots are spawned into a `rayon::scope`; each task
/// calls `f`, then decrements its successors' counters and spawns the ones
/// that reach zero. `pending` is reset from the DAG first (part of the run).
fn rayon_run(pool: &rayon::ThreadPool, dag: &TaskDag, pending: &[AtomicU32], f: &TaskFn) {
    for (p, &c) in pending.iter().zip(&dag.pred_count) {
        p.store(c, Ordering::Relaxed);
    }
    pool.install(|| {
        rayon::scope(|s| {
            for &r in &dag.roots {
                s.spawn(move |s| rayon_task(s, dag, pending, f, r));
            }
        })
    });
}

fn rayon_task<'s>(
    s: &rayon::Scope<'s>,
    dag: &'s TaskDag,
    pending: &'s [AtomicU32],
    f: &'s TaskFn,
    i: u32,
) {
    let _ = black_box(f());
    for &n in dag.succ_of(i) {
        if pending[n as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
            s.spawn(move |s| rayon_task(s, dag, pending, f, n));
        }
    }
}

// ---------------------------------------------------------------------------
// Benchmarks.

struct Env {
    orchs: Vec<(usize, Orchestrator)>,
    pools: Vec<(usize, rayon::ThreadPool)>,
}

impl Env {
    fn new() -> Env {
        Env {
            orchs: WORKERS
                .iter()
                .map(|&w| (w, Orchestrator::builder().workers(w).build().unwrap()))
                .collect(),
            pools: WORKERS
                .iter()
                .map(|&w| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(w)
                        .thread_name(move |i| format!("rayon-{w}-{i}"))
                        .build()
                        .unwrap();
                    (w, pool)
                })
                .collect(),
        }
    }
}

fn off() -> RunOptions {
    RunOptions::default().timing(false)
}

fn run_wait(orch: &Orchestrator, wf: &Workflow, opts: RunOptions) -> pso_core::RunResult {
    orch.coordinate_systems_with(wf, opts)
        .expect("the run starts")
        .wait()
}

fn check_result(n: u32) -> impl Fn(u64, &pso_core::RunResult) {
    move |k, r| {
        if k == 0 {
            assert!(r.is_success());
            assert_eq!(r.counts().succeeded, n as usize);
        }
    }
}

/// How long to wait at most for a quiet machine before each case
/// (`PSO_BENCH_QUIET=<seconds>`; 0, the default, does not wait).
fn quiet_max() -> Duration {
    std::env::var("PSO_BENCH_QUIET")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs_f64)
}

/// Busy share of both CPUs (this process included) below which the machine
/// counts as quiet.
const QUIET_BUSY: f64 = 0.15;

/// Total time spent waiting for a quiet machine.
static WAITED: Mutex<Duration> = Mutex::new(Duration::ZERO);

/// `g.bench_function(case, f)`, first waiting for a quiet machine (see
/// [`quiet_max`]) before the case starts.
fn case_fn(
    g: &mut BenchmarkGroup<'_, WallTime>,
    case: &str,
    mut f: impl FnMut(&mut criterion::Bencher<'_, WallTime>),
) {
    let mut first = true;
    g.bench_function(case, |b| {
        if std::mem::take(&mut first) {
            let max = quiet_max();
            if !max.is_zero() {
                *WAITED.lock().unwrap() += wait_quiet(max, QUIET_BUSY);
            }
        }
        f(b)
    });
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    n: u32,
    samples: usize,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(u64::from(n)));
    g.sample_size(samples);
    g.sampling_mode(SamplingMode::Flat);
    g
}

/// The PSO re-run, PSO per-worker and baseline cases shared by the empty and
/// the spin benchmarks.
struct Cases<'a> {
    env: &'a Env,
    dag: &'a TaskDag,
    op: &'a OpFn,
    f: &'a TaskFn,
    group: String,
    samples: usize,
}

impl Cases<'_> {
    fn with_cpu(&self) -> bool {
        self.dag.n >= 1 << 16
    }

    fn rerun(
        &self,
        g: &mut BenchmarkGroup<'_, WallTime>,
        case: &str,
        orch: &Orchestrator,
        opts: RunOptions,
    ) {
        let n = self.dag.n;
        // Built on the first call, so a filtered-out case costs nothing.
        let mut built: Option<Workflow> = None;
        case_fn(g, case, |b| {
            let wf = built.get_or_insert_with(|| {
                let wf = self.dag.workflow(orch, self.op);
                // One run first, so its buffers and plan exist (as for any re-run).
                assert!(run_wait(orch, &wf, opts.clone()).is_success());
                wf
            });
            b.iter_custom(|iters| {
                let (t, cpu) = timed(
                    iters,
                    self.with_cpu(),
                    || (),
                    |()| run_wait(orch, wf, opts.clone()),
                    check_result(n),
                );
                record(&self.group, case, self.samples, n, iters, t, cpu);
                t
            })
        });
    }

    fn baselines(&self, g: &mut BenchmarkGroup<'_, WallTime>) {
        let n = self.dag.n;
        let mut floor = SeqFloor::new(self.dag);
        case_fn(g, "baseline/seq", |b| {
            b.iter_custom(|iters| {
                let (t, cpu) = timed(
                    iters,
                    self.with_cpu(),
                    || (),
                    |()| floor.run(self.dag, self.f),
                    |_, &ok| assert_eq!(ok, n as usize),
                );
                record(&self.group, "baseline/seq", self.samples, n, iters, t, cpu);
                t
            })
        });
        let pending: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
        for (w, pool) in &self.env.pools {
            let case = format!("baseline/rayon/workers={w}");
            case_fn(g, &case, |b| {
                b.iter_custom(|iters| {
                    let (t, cpu) = timed(
                        iters,
                        self.with_cpu(),
                        || (),
                        |()| rayon_run(pool, self.dag, &pending, self.f),
                        |k, ()| {
                            if k == 0 {
                                assert!(pending.iter().all(|p| p.load(Ordering::Relaxed) == 0));
                            }
                        },
                    );
                    record(&self.group, &case, self.samples, n, iters, t, cpu);
                    t
                })
            });
        }
    }
}

fn bench_empty(c: &mut Criterion, env: &Env, shape: Shape, n: u32) {
    let dag = TaskDag::new(shape, n);
    let (op, f) = empty_task();
    let name = format!("{shape}/{}", size_label(n));
    let samples = sample_size(n);
    let cases = Cases {
        env,
        dag: &dag,
        op: &op,
        f: &f,
        group: name.clone(),
        samples,
    };
    let mut g = group(c, &name, n, samples);

    let orch1 = &env.orchs[0].1;
    let mut memory_done = false;
    case_fn(&mut g, "build", |b| {
        if !std::mem::replace(&mut memory_done, true) {
            measure_memory(orch1, &dag, &op);
        }
        b.iter_custom(|iters| {
            let (t, cpu) = timed(
                iters,
                cases.with_cpu(),
                || (),
                |()| dag.workflow(orch1, &op),
                |_, wf| assert_eq!(wf.len(), n as usize),
            );
            record(&name, "build", samples, n, iters, t, cpu);
            t
        })
    });
    for (w, orch) in &env.orchs {
        cases.rerun(&mut g, &format!("rerun/workers={w}"), orch, off());
    }
    for (w, orch) in &env.orchs {
        let case = format!("e2e/workers={w}");
        case_fn(&mut g, &case, |b| {
            b.iter_custom(|iters| {
                let check = check_result(n);
                let (t, cpu) = timed(
                    iters,
                    cases.with_cpu(),
                    || (),
                    |()| {
                        let wf = dag.workflow(orch, &op);
                        let r = run_wait(orch, &wf, off());
                        (wf, r)
                    },
                    |k, (_, r)| check(k, r),
                );
                record(&name, &case, samples, n, iters, t, cpu);
                t
            })
        });
    }
    if n == 1 << 16 {
        for (w, orch) in &env.orchs {
            cases.rerun(
                &mut g,
                &format!("rerun_timing_on/workers={w}"),
                orch,
                RunOptions::default(),
            );
        }
    }
    cases.baselines(&mut g);
    g.finish();
}

fn bench_spin(c: &mut Criterion, env: &Env, spin: Spin, shape: Shape) {
    let n = SPIN_N;
    let dag = TaskDag::new(shape, n);
    let (op, f) = task_fns(move || {
        spin.run();
        Ok(Value::Null)
    });
    let name = format!("spin_1us/{shape}/{}", size_label(n));
    let cases = Cases {
        env,
        dag: &dag,
        op: &op,
        f: &f,
        group: name.clone(),
        samples: SPIN_SAMPLES,
    };
    let mut g = group(c, &name, n, SPIN_SAMPLES);
    for (w, orch) in &env.orchs {
        cases.rerun(&mut g, &format!("pso/workers={w}"), orch, off());
    }
    cases.baselines(&mut g);
    g.finish();
}

fn bench_latency(c: &mut Criterion, env: &Env) {
    let (op, _) = empty_task();
    let mut g = group(c, "latency/1-step", 1, LATENCY_SAMPLES);
    for (w, orch) in &env.orchs {
        let mut b = WorkflowBuilder::new("one");
        b.task_shared(op.clone());
        let wf = b.build(orch).unwrap();
        for timing in [true, false] {
            let case = format!("workers={w}/timing={}", if timing { "on" } else { "off" });
            let opts = RunOptions::default().timing(timing);
            case_fn(&mut g, &case, |b| {
                b.iter_custom(|iters| {
                    let mut each = Vec::with_capacity(iters as usize);
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        let r = run_wait(orch, &wf, opts.clone());
                        let d = t.elapsed();
                        total += d;
                        each.push(d.as_nanos().min(u128::from(u32::MAX)) as u32);
                        drop(r);
                    }
                    LATENCIES
                        .lock()
                        .unwrap()
                        .entry(case.clone())
                        .or_default()
                        .push(each);
                    record(
                        "latency/1-step",
                        &case,
                        LATENCY_SAMPLES,
                        1,
                        iters,
                        total,
                        None,
                    );
                    total
                })
            });
        }
    }
    g.finish();
}

fn main() {
    // Plots and 100k bootstrap resamples would add seconds per case; the
    // summary below uses its own medians.
    let mut c = Criterion::default()
        .without_plots()
        .nresamples(10_000)
        .configure_from_args();
    let env = Env::new();
    for shape in Shape::ALL {
        for n in SIZES {
            bench_empty(&mut c, &env, shape, n);
        }
    }
    if !quiet_max().is_zero() {
        *WAITED.lock().unwrap() += wait_quiet(quiet_max(), QUIET_BUSY);
    }
    let spin = Spin::calibrate(Duration::from_micros(1));
    for shape in SPIN_SHAPES {
        bench_spin(&mut c, &env, spin, shape);
    }
    bench_latency(&mut c, &env);
    c.final_summary();
    report::summary(Some(spin));
}
