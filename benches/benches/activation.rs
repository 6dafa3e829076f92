//! Registration and activation of random DAGs of 10,000 and 100,000 systems
//! with no-op handlers, next to two baselines measured in the same run.
//!
//! Cases, per size (`n=10000`, `n=100000`):
//! * `register`: `register_batch` of the whole DAG into a fresh orchestrator.
//! * `activate_all/workers=K`: `activate_all()` on a freshly registered
//!   orchestrator with K workers (the default count, then 1).
//! * `register+activate/workers=K`: both.
//! * `baseline/floor`: the same handler closures called on one thread in a
//!   precomputed topological order.
//! * `baseline/kahn`: Kahn's toposort over the same edges.
//!
//! Setup (building the specs, starting workers, registering for the
//! activation case) and teardown (dropping the orchestrator and the report) are
//! outside the timed region (`iter_custom`). After criterion's own output, a
//! summary prints ns per system for every case (wall time, and on-CPU time of
//! all the process's threads, which other load on a shared machine disturbs
//! less), the ratio to the floor, the 100k/10k ratio per system, and the
//! issue's goals with met/missed. The summary uses the median of the
//! measurement samples (the last `sample_size` calls of each routine; earlier
//! calls are criterion's warm-up).
//!
//! Run: `cargo bench -p pso-benches -- --warm-up-time 1 --measurement-time 3`
//! (see BENCHMARKS.md).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use pso_benches::{Dag, Floor, kahn_order, noop_handler};
use pso_core::Orchestrator;

const SIZES: [u32; 2] = [10_000, 100_000];
const SEED: u64 = 0x5eed_2024;
/// Goal: activation overhead per system at 10k, in ns.
const GOAL_NS_PER_SYSTEM: f64 = 2_000.0;
/// Goal: total cost at 100k at most this many times the 10k total.
const GOAL_SCALE: f64 = 12.0;

fn sample_size(n: u32) -> usize {
    if n >= 100_000 { 10 } else { 20 }
}

/// Per timed call: (wall ns per system, CPU ns per system if known), keyed
/// by (case, n).
type Samples = BTreeMap<(String, u32), Vec<(f64, Option<f64>)>>;
static SAMPLES: Mutex<Samples> = Mutex::new(BTreeMap::new());

fn record(case: &str, n: u32, iters: u64, wall: Duration, cpu: Option<Duration>) {
    let per = |d: Duration| d.as_nanos() as f64 / iters.max(1) as f64 / f64::from(n);
    SAMPLES
        .lock()
        .unwrap()
        .entry((case.to_owned(), n))
        .or_default()
        .push((per(wall), cpu.map(per)));
}

/// On-CPU time of every live thread of this process (Linux
/// `/proc/self/task/*/schedstat`), or `None` elsewhere. Unlike wall time, it
/// does not grow while other processes hold the CPU, so it is the steadier
/// figure on a shared machine; it does include workers spinning before they
/// park.
fn cpu_time() -> Option<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

/// Runs `setup` then times `routine` `iters` times; `check` and dropping the
/// output happen outside the timed region. Returns wall and CPU time.
fn timed<I, O>(
    iters: u64,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
    check: impl Fn(&O),
) -> (Duration, Option<Duration>) {
    let mut wall = Duration::ZERO;
    let mut cpu = Some(Duration::ZERO);
    for _ in 0..iters {
        let input = setup();
        let c0 = cpu_time();
        let t = Instant::now();
        let out = routine(input);
        wall += t.elapsed();
        let c1 = cpu_time();
        cpu = match (cpu, c0, c1) {
            (Some(sum), Some(a), Some(b)) => Some(sum + b.saturating_sub(a)),
            _ => None,
        };
        check(&out);
        drop(out);
    }
    (wall, cpu)
}

fn orchestrator(workers: Option<usize>) -> Orchestrator {
    match workers {
        None => Orchestrator::new(),
        Some(w) => Orchestrator::builder().workers(w).build().unwrap(),
    }
}

fn registered(dag: &Dag, workers: Option<usize>) -> Orchestrator {
    let o = orchestrator(workers);
    o.register_batch(dag.specs(noop_handler), []).unwrap();
    o
}

fn bench_size(c: &mut Criterion, n: u32) {
    let dag = Dag::random(n, SEED);
    let floor = Floor::new(&dag, noop_handler);
    let default_workers = Orchestrator::new().workers();
    let worker_cases = [
        (format!("workers={default_workers}(default)"), None),
        ("workers=1".to_owned(), Some(1)),
    ];

    let mut g = c.benchmark_group(format!("n={n}"));
    g.throughput(Throughput::Elements(u64::from(n)));
    g.sample_size(sample_size(n));
    g.sampling_mode(SamplingMode::Flat);

    g.bench_function("register", |b| {
        b.iter_custom(|iters| {
            let (t, cpu) = timed(
                iters,
                || (orchestrator(None), dag.specs(noop_handler)),
                |(o, specs)| {
                    let added = o.register_batch(specs, []);
                    (o, added)
                },
                |(_, added)| assert_eq!(added.as_ref().ok(), Some(&(n as usize))),
            );
            record("register", n, iters, t, cpu);
            t
        })
    });

    for (label, workers) in &worker_cases {
        let case = format!("activate_all/{label}");
        g.bench_function(BenchmarkId::new("activate_all", label), |b| {
            b.iter_custom(|iters| {
                let (t, cpu) = timed(
                    iters,
                    || registered(&dag, *workers),
                    |o| {
                        let report = o.activate_all();
                        (o, report)
                    },
                    |(_, report)| {
                        let report = report.as_ref().expect("activate_all succeeds");
                        assert_eq!(report.outcomes.len(), n as usize);
                    },
                );
                record(&case, n, iters, t, cpu);
                t
            })
        });
    }

    for (label, workers) in &worker_cases {
        let case = format!("register+activate/{label}");
        g.bench_function(BenchmarkId::new("register+activate", label), |b| {
            b.iter_custom(|iters| {
                let (t, cpu) = timed(
                    iters,
                    || (orchestrator(*workers), dag.specs(noop_handler)),
                    |(o, specs)| {
                        o.register_batch(specs, []).expect("registers");
                        let report = o.activate_all();
                        (o, report)
                    },
                    |(_, report)| {
                        let report = report.as_ref().expect("activate_all succeeds");
                        assert_eq!(report.outcomes.len(), n as usize);
                    },
                );
                record(&case, n, iters, t, cpu);
                t
            })
        });
    }

    g.bench_function("baseline/floor", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                assert_eq!(black_box(floor.run()), n as usize);
            }
            let t = t0.elapsed();
            record("baseline/floor", n, iters, t, None);
            t
        })
    });

    g.bench_function("baseline/kahn", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                black_box(kahn_order(black_box(&dag)));
            }
            let t = t0.elapsed();
            record("baseline/kahn", n, iters, t, None);
            t
        })
    });
    g.finish();
    println!(
        "n={n}: {} edges, depth {} levels, {default_workers} default workers",
        dag.edges.len(),
        dag.depth()
    );
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Median wall and CPU ns/system of the measurement samples of each case.
fn figures() -> BTreeMap<(String, u32), (f64, Option<f64>)> {
    SAMPLES
        .lock()
        .unwrap()
        .iter()
        .map(|((case, n), v)| {
            let v = &v[v.len() - v.len().min(sample_size(*n))..];
            let wall: Vec<f64> = v.iter().map(|s| s.0).collect();
            let cpu: Option<Vec<f64>> = v.iter().map(|s| s.1).collect();
            ((case.clone(), *n), (median(&wall), cpu.map(|c| median(&c))))
        })
        .collect()
}

fn summary() {
    let f = figures();
    if f.is_empty() {
        return;
    }
    let (small, large) = (SIZES[0], SIZES[1]);
    let mut cases: Vec<&str> = f.keys().map(|(c, _)| c.as_str()).collect();
    cases.dedup();
    let wall = |case: &str, n| f.get(&(case.to_owned(), n)).map(|v| v.0);
    let cpu = |case: &str, n| f.get(&(case.to_owned(), n)).and_then(|v| v.1);
    let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
        _ => "-".to_owned(),
    };
    println!();
    println!("== pso-benches summary: ns per system, median of the samples ==");
    println!("wall: elapsed time; cpu: on-CPU time of all the process's threads;");
    println!("x floor: over baseline/floor; 100k/10k: the 100k figure over the 10k one");
    println!(
        "{:<38} {:>9} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "case",
        "10k wall",
        "x floor",
        "10k cpu",
        "100k wall",
        "x floor",
        "100k cpu",
        "wall 100k/10k",
        "cpu 100k/10k"
    );
    for case in &cases {
        let x = |n| match (wall("baseline/floor", n), wall(case, n)) {
            (Some(fl), Some(v)) if fl > 0.0 => format!("{:.0}x", v / fl),
            _ => "-".to_owned(),
        };
        println!(
            "{:<38} {:>9} {:>7} {:>9} {:>9} {:>7} {:>9} {:>13} {:>12}",
            case,
            cell(wall(case, small)),
            x(small),
            cell(cpu(case, small)),
            cell(wall(case, large)),
            x(large),
            cell(cpu(case, large)),
            ratio(wall(case, small), wall(case, large)),
            ratio(cpu(case, small), cpu(case, large)),
        );
    }
    println!();
    let scale = f64::from(large) / f64::from(small);
    for case in cases.iter().filter(|c| c.starts_with("activate_all/")) {
        let floor = wall("baseline/floor", small).unwrap_or(0.0);
        if let Some(a) = wall(case, small) {
            let overhead = a - floor;
            println!(
                "goal {case}: overhead <= {GOAL_NS_PER_SYSTEM:.0} ns/system at 10k: {overhead:.0} ns wall -> {}",
                if overhead <= GOAL_NS_PER_SYSTEM {
                    "MET"
                } else {
                    "MISSED"
                }
            );
        }
        if let (Some(a), Some(b)) = (wall(case, small), wall(case, large)) {
            let total = b * scale / a;
            println!(
                "goal {case}: 100k total <= {GOAL_SCALE:.0}x the 10k total: {total:.1}x wall -> {}",
                if total <= GOAL_SCALE { "MET" } else { "MISSED" }
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for n in SIZES {
        bench_size(&mut c, n);
    }
    c.final_summary();
    summary();
}
