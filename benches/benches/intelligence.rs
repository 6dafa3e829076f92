//! Proof that coordination intelligence helps (issue 6), measured in one run:
//!
//! 1. **Critical-path ordering vs FIFO.** A workflow with skewed step
//!    durations — a chain of 4 slow steps beside 16 short independent ones,
//!    the short ones declared first — on 2 workers. Both orchestrators learn
//!    the step durations from warm-up runs; one orders ready steps FIFO, the
//!    other by learned remaining critical path. Figure: makespan per run.
//!    Goal: critical path ≥ 15 % shorter.
//! 2. **A hot pair promoted to direct.** System `PAES` sends to `PPO` through
//!    the hub (a pull subscription owned by `PPO`, received by a consumer
//!    thread) fast enough to cross the promotion threshold;
//!    `optimize_coordination(apply)` promotes the pair; then the same
//!    messages go over the pair's direct channel. Figure: one-way latency per
//!    message (send to receipt, one message in flight). Goal: lower median
//!    after promotion.
//!
//! Steps sleep instead of spinning, so that the makespan reflects ordering
//! and not how much CPU other processes leave the two workers.
//!
//! Run: `cargo bench -p pso-benches --bench intelligence`; a summary with the
//! medians, the ratio and MET/MISSED follows criterion's output.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use pso_core::{
    Action, Guardrails, HandlerError, HubConfig, Orchestrator, RunState, SchedulingPolicy,
    StepContext, StepSpec, SubscribeOptions, SystemSpec, Value, Workflow,
};

const CHAIN: usize = 4;
const CHAIN_MS: u64 = 8;
const SHORT: usize = 16;
const SHORT_MS: u64 = 4;
const WARM_UP_RUNS: usize = 5;

/// Per-iteration figures, in ns, by case name (for the summary).
static SAMPLES: Mutex<Vec<(&'static str, Vec<u64>)>> = Mutex::new(Vec::new());

fn record(case: &'static str, ns: u64) {
    let mut s = SAMPLES.lock().unwrap();
    match s.iter_mut().find(|(c, _)| *c == case) {
        Some((_, v)) => v.push(ns),
        None => s.push((case, vec![ns])),
    }
}

fn sleep_op(ms: u64) -> impl Fn(&StepContext<'_>) -> Result<Value, HandlerError> {
    move |_| {
        thread::sleep(Duration::from_millis(ms));
        Ok(Value::Null)
    }
}

/// An orchestrator on 2 workers with the skewed workflow, its estimates
/// warmed up by a few runs.
fn skewed(policy: SchedulingPolicy) -> (Orchestrator, Workflow) {
    let o = Orchestrator::builder()
        .workers(2)
        .scheduling_policy(policy)
        .build()
        .unwrap();
    o.register(SystemSpec::new("fast")).unwrap();
    o.register(SystemSpec::new("slow")).unwrap();
    o.set_operation("fast", "short", sleep_op(SHORT_MS))
        .unwrap();
    o.set_operation("slow", "long", sleep_op(CHAIN_MS)).unwrap();
    o.activate_all().unwrap();
    let mut b = Workflow::builder("skewed");
    for i in 0..SHORT {
        b = b.step(StepSpec::op(format!("s{i}"), "fast", "short"));
    }
    for i in 0..CHAIN {
        let mut s = StepSpec::op(format!("c{i}"), "slow", "long");
        if i > 0 {
            s = s.after(format!("c{}", i - 1));
        }
        b = b.step(s);
    }
    let wf = b.build(&o).unwrap();
    for _ in 0..WARM_UP_RUNS {
        assert_eq!(
            o.coordinate_systems(&wf).unwrap().wait().state(),
            RunState::Succeeded
        );
    }
    (o, wf)
}

fn makespan(c: &mut Criterion) {
    let mut g = c.benchmark_group("skewed_makespan");
    g.sample_size(10);
    for (policy, case) in [
        (SchedulingPolicy::Fifo, "fifo"),
        (SchedulingPolicy::CriticalPath, "critical_path"),
    ] {
        let (o, wf) = skewed(policy);
        g.bench_function(case, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let r = o.coordinate_systems(&wf).unwrap().wait();
                    let d = t.elapsed();
                    assert_eq!(r.state(), RunState::Succeeded);
                    record(case, d.as_nanos() as u64);
                    total += d;
                }
                total
            })
        });
        o.close();
    }
    g.finish();
}

/// Nanoseconds since a process-wide origin (payload timestamps).
fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Sends one timestamped message at a time and waits until the consumer
/// has it; returns the summed one-way latency of `iters` messages.
fn ping(
    iters: u64,
    received: &AtomicU64,
    latency: &AtomicU64,
    case: &'static str,
    mut send: impl FnMut(Value),
) -> Duration {
    let mut total = 0;
    for _ in 0..iters {
        let before = received.load(Ordering::Acquire);
        send(Value::Int(now_ns() as i64));
        // Yield rather than spin: on a loaded 2-core machine a spinning
        // sender can keep the consumer off the CPU for a whole time slice.
        while received.load(Ordering::Acquire) == before {
            thread::yield_now();
        }
        let ns = latency.load(Ordering::Acquire);
        record(case, ns);
        total += ns;
    }
    Duration::from_nanos(total)
}

fn hot_pair(c: &mut Criterion) {
    let o = Orchestrator::builder()
        .workers(2)
        .hub_config(
            HubConfig::new()
                .promote_threshold(500.0)
                .rate_window(Duration::from_millis(100)),
        )
        .build()
        .unwrap();
    o.register(SystemSpec::new("PAES")).unwrap();
    o.register(SystemSpec::new("PPO")).unwrap();
    o.activate_all().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // Before: through the hub.
    let sub = o
        .hub()
        .subscribe_pull_with(
            "paes.events",
            SubscribeOptions::new().owner("PPO").capacity(1 << 16),
        )
        .unwrap();
    let consumer = {
        let (received, latency, stop) = (received.clone(), latency.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = sub.recv_timeout(Duration::from_millis(20))
                    && let Value::Int(sent) = m.payload()
                {
                    latency.store(now_ns() - *sent as u64, Ordering::Release);
                    received.fetch_add(1, Ordering::Release);
                }
            }
        })
    };
    let mut g = c.benchmark_group("hot_pair_latency");
    g.bench_function("hub", |b| {
        b.iter_custom(|iters| {
            ping(iters, &received, &latency, "hub", |v| {
                o.hub().publish_from("PAES", "paes.events", v).unwrap();
            })
        })
    });
    // Keep the pair hot for a few rate windows, so the rate is measured.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(400) {
        ping(200, &received, &latency, "warm", |v| {
            o.hub().publish_from("PAES", "paes.events", v).unwrap();
        });
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap();

    let plan = o.optimize_coordination_with(true, Guardrails::new());
    let promoted = plan.changes.iter().any(|c| {
        matches!(&c.action, Action::PromoteToDirect { a, b }
            if (a.as_str(), b.as_str()) == ("PAES", "PPO") || (a.as_str(), b.as_str()) == ("PPO", "PAES"))
    });
    assert!(
        promoted,
        "optimize_coordination did not promote PAES-PPO: {plan:#?}"
    );
    println!(
        "optimize_coordination promoted PAES <-> PPO: {}",
        plan.actions
            .iter()
            .find(|r| matches!(r.action, Action::PromoteToDirect { .. }))
            .map(|r| r.evidence.as_str())
            .unwrap_or("")
    );

    // After: over the pair's direct channel.
    let mut tx = o.hub().endpoint("PAES", "PPO").unwrap();
    let mut rx = o.hub().endpoint("PPO", "PAES").unwrap();
    stop.store(false, Ordering::Relaxed);
    let consumer = {
        let (received, latency, stop) = (received.clone(), latency.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Value::Int(sent)) = rx.recv_timeout(Duration::from_millis(20)) {
                    latency.store(now_ns() - sent as u64, Ordering::Release);
                    received.fetch_add(1, Ordering::Release);
                }
            }
        })
    };
    g.bench_function("direct_after_promotion", |b| {
        b.iter_custom(|iters| {
            ping(iters, &received, &latency, "direct", |v| {
                tx.send(v).unwrap();
            })
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap();
    drop(tx);
    o.close();
}

fn median(case: &str) -> Option<(f64, usize)> {
    let s = SAMPLES.lock().unwrap();
    let (_, v) = s.iter().find(|(c, _)| *c == case)?;
    let mut v = v.clone();
    v.sort_unstable();
    Some((v[v.len() / 2] as f64, v.len()))
}

fn summary() {
    println!("\n=== intelligence proof (issue 6) ===");
    if let (Some((fifo, n1)), Some((cp, n2))) = (median("fifo"), median("critical_path")) {
        let cut = 100.0 * (1.0 - cp / fifo);
        println!(
            "skewed workflow, 2 workers: makespan median FIFO {:.1} ms ({n1} runs), critical path {:.1} ms ({n2} runs): {cut:.1}% shorter (ideal: {:.1}%); goal >= 15%: {}",
            fifo / 1e6,
            cp / 1e6,
            ideal_cut(),
            if cut >= 15.0 { "MET" } else { "MISSED" }
        );
    }
    if let (Some((hub, n1)), Some((direct, n2))) = (median("hub"), median("direct")) {
        println!(
            "hot pair one-way latency median: hub {:.0} ns ({n1} messages), direct after promotion {:.0} ns ({n2}): {:.2}x; goal lower after promotion: {}",
            hub,
            direct,
            hub / direct,
            if direct < hub { "MET" } else { "MISSED" }
        );
    }
}

/// The makespan cut an ideal 2-worker schedule gets on this workflow.
fn ideal_cut() -> f64 {
    let (chain, short) = (
        (CHAIN as u64 * CHAIN_MS) as f64,
        (SHORT as u64 * SHORT_MS) as f64,
    );
    let fifo = short / 2.0 + chain;
    let cp = chain + (short - chain).max(0.0) / 2.0;
    100.0 * (1.0 - cp / fifo)
}

criterion_group!(benches, makespan, hot_pair);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
