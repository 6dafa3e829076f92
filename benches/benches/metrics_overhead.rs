//! The cost of recording metrics (issue 6): the same work with metrics on
//! and off, in the same run, on the same orchestrator (the switch is
//! flipped between cases, so workflows, caches and threads are shared).
//!
//! Groups and cases:
//! * `rerun/{independent,chain}/2^16`, `metrics=on|off`: re-run of 2^16
//!   empty steps (the scheduler bench's `OpFn`) on 1 worker with the
//!   default `RunOptions` (timing on: operation metrics are folded in from
//!   the step timings when the run settles). ns per step.
//! * `hub/publish/subs=K`, `metrics=on|off` (K = 1, 4): 16,384 publishes to
//!   one topic with K callback subscriptions (capacity 2^16, so nothing
//!   blocks or drops), timed until every callback ran, on 1 worker; default
//!   [`MetricsConfig`](pso_core::MetricsConfig) (one message in 256 has its
//!   latency sampled). ns per publish.
//!
//! Criterion runs the cases one after the other, so a change of load on a
//! shared machine lands on one side. The summary therefore also measures
//! each pair interleaved: `PAIRS` rounds of (on, off) or (off, on),
//! alternating which goes first, and reports the median of each side and
//! the median of the per-round ratios on/off, for wall time and for the
//! process's on-CPU time over the call (all threads; steadier on a shared
//! machine, since it does not grow while other processes hold the CPU).
//! Those ratios are the verdict (goal: at most 1.10).
//!
//! Run (about 2 minutes; see BENCHMARKS.md):
//! `nice cargo bench -p pso-benches --bench metrics_overhead -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use pso_benches::{Shape, TaskDag, cpu_time, empty_task, load_avg};
use pso_core::{Orchestrator, RunOptions, SubscribeOptions, Subscription, Workflow};

const N: u32 = 1 << 16;
const SHAPES: [Shape; 2] = [Shape::Independent, Shape::Chain];
const PUBLISHES: u64 = 16_384;
const SUBS: [usize; 2] = [1, 4];
/// Interleaved rounds per pair in the summary.
const PAIRS: usize = 30;
/// Goal: metrics on at most this times metrics off.
const GOAL: f64 = 1.10;

/// One re-run with the default options (timing on); ns per step.
fn rerun(orch: &Orchestrator, wf: &Workflow) -> Duration {
    let t = Instant::now();
    let r = orch
        .coordinate_systems_with(wf, RunOptions::default())
        .expect("the run starts")
        .wait();
    let d = t.elapsed();
    assert!(r.is_success());
    drop(r);
    d
}

/// A topic with `k` callback subscriptions counting into `seen`.
struct Fanout {
    topic: String,
    seen: Arc<AtomicU64>,
    k: u64,
    _subs: Vec<Subscription>,
}

impl Fanout {
    fn new(orch: &Orchestrator, k: usize) -> Fanout {
        let topic = format!("bench.fanout{k}");
        let seen = Arc::new(AtomicU64::new(0));
        let subs = (0..k)
            .map(|_| {
                let seen = seen.clone();
                orch.hub()
                    .subscribe_with(
                        &topic,
                        SubscribeOptions::new().capacity(1 << 16),
                        move |m| {
                            black_box(m);
                            seen.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        },
                    )
                    .expect("subscribe")
            })
            .collect();
        Fanout {
            topic,
            seen,
            k: k as u64,
            _subs: subs,
        }
    }

    /// `PUBLISHES` publishes, until every callback ran.
    fn burst(&self, orch: &Orchestrator) -> Duration {
        let start = self.seen.load(Ordering::Relaxed);
        let want = start + PUBLISHES * self.k;
        let t = Instant::now();
        for i in 0..PUBLISHES {
            orch.hub().publish(&self.topic, i as i64).expect("publish");
        }
        while self.seen.load(Ordering::Acquire) < want {
            std::thread::yield_now();
        }
        t.elapsed()
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Interleaved on/off rounds of `f` (per-unit ns with `units` units).
fn paired(orch: &Orchestrator, units: f64, mut f: impl FnMut() -> Duration) -> Pair {
    let (mut on, mut off, mut ratio, mut cpu_ratio) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..PAIRS {
        // (wall, cpu) ns per unit of one call.
        let mut side = |enabled: bool| {
            orch.set_metrics_enabled(enabled);
            let c0 = cpu_time();
            let wall = f().as_nanos() as f64 / units;
            let cpu = match (c0, cpu_time()) {
                (Some(a), Some(b)) => b.saturating_sub(a).as_nanos() as f64 / units,
                _ => f64::NAN,
            };
            (wall, cpu)
        };
        let (a, b) = if round % 2 == 0 {
            let a = side(true);
            (a, side(false))
        } else {
            let b = side(false);
            (side(true), b)
        };
        on.push(a.0);
        off.push(b.0);
        ratio.push(a.0 / b.0);
        cpu_ratio.push(a.1 / b.1);
    }
    Pair {
        on: median(&mut on),
        off: median(&mut off),
        ratio: median(&mut ratio),
        cpu_ratio: median(&mut cpu_ratio),
        load: load_avg(),
    }
}

struct Pair {
    on: f64,
    off: f64,
    ratio: f64,
    cpu_ratio: f64,
    load: f64,
}

fn bench(c: &mut Criterion) {
    let orch = Orchestrator::builder().workers(1).build().unwrap();
    let (op, _) = empty_task();
    let mut summary: Vec<(String, &str, Pair)> = Vec::new();

    for shape in SHAPES {
        let dag = TaskDag::new(shape, N);
        let wf = dag.workflow(&orch, &op);
        rerun(&orch, &wf); // buffers and plan exist, as for any re-run
        let name = format!("rerun/{}/2^16", shape.name());
        let mut g = c.benchmark_group(&name);
        g.throughput(Throughput::Elements(u64::from(N)));
        g.sample_size(20);
        g.sampling_mode(SamplingMode::Flat);
        for on in [true, false] {
            g.bench_function(if on { "metrics=on" } else { "metrics=off" }, |b| {
                orch.set_metrics_enabled(on);
                b.iter_custom(|iters| (0..iters).map(|_| rerun(&orch, &wf)).sum())
            });
        }
        g.finish();
        summary.push((
            name,
            "ns/step",
            paired(&orch, f64::from(N), || rerun(&orch, &wf)),
        ));
    }

    for k in SUBS {
        let fan = Fanout::new(&orch, k);
        fan.burst(&orch);
        let name = format!("hub/publish/subs={k}");
        let mut g = c.benchmark_group(&name);
        g.throughput(Throughput::Elements(PUBLISHES));
        g.sample_size(30);
        g.sampling_mode(SamplingMode::Flat);
        for on in [true, false] {
            g.bench_function(if on { "metrics=on" } else { "metrics=off" }, |b| {
                orch.set_metrics_enabled(on);
                b.iter_custom(|iters| (0..iters).map(|_| fan.burst(&orch)).sum())
            });
        }
        g.finish();
        summary.push((
            name,
            "ns/publish",
            paired(&orch, PUBLISHES as f64, || fan.burst(&orch)),
        ));
    }
    orch.set_metrics_enabled(true);

    println!("\nmetrics overhead (interleaved, {PAIRS} rounds per pair; medians):");
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>8} {:>8} {:>6}  goal <= {GOAL:.2}",
        "case", "unit", "on", "off", "on/off", "cpu", "load"
    );
    for (name, unit, p) in &summary {
        let verdict = if p.ratio <= GOAL && p.cpu_ratio <= GOAL {
            "MET"
        } else {
            "MISSED"
        };
        println!(
            "{name:<30} {unit:>10} {:>10.1} {:>10.1} {:>8.3} {:>8.3} {:>6.2}  {verdict}",
            p.on, p.off, p.ratio, p.cpu_ratio, p.load
        );
    }
    let m = orch.performance_metrics();
    let f = m.operation("<function>").map_or(0, |o| o.total());
    println!("(steps recorded while on: {f}; topics: {})", m.topics.len());
}

fn main() {
    let mut c = Criterion::default().without_plots().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
