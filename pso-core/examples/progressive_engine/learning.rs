//! The second half of the Progressive Engine example: a few hundred
//! release workflows on a deliberately naive setup, what PSO learned from
//! them (insights and recommendations, each with its evidence), the
//! recommendations applied under guardrails, and the same workload again
//! with the before/after figures.
//!
//! The naive setup: ready steps run first come, first served (FIFO); PSec
//! scans one step at a time; PAES streams tuning events to PPO through the
//! hub. Nothing here tells PSO what to change: it measures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pso_core::{
    Action, CoordinationPlan, DirectEnd, Guardrails, HandlerError, HubConfig, Orchestrator,
    RunState, SchedulingPolicy, StepContext, StepSpec, SubscribeOptions, Value, Workflow,
};

/// Release workflows per phase.
const RUNS: usize = 300;
/// Tuning events PAES sends to PPO per release.
const EVENTS: usize = 40;

/// Hub settings for the example: a pair counts as hot from 200 messages/s.
pub(crate) fn hub_config() -> HubConfig {
    HubConfig::new()
        .promote_threshold(200.0)
        .rate_window(Duration::from_millis(250))
}

/// How PAES reaches PPO: through the hub, or over a direct channel once
/// the pair is promoted.
enum Link {
    Hub(pso_core::Hub),
    Direct(DirectEnd),
}

/// What one phase measured.
struct Figures {
    makespans: Vec<Duration>,
    scan_wait: Vec<Duration>,
    tune: Vec<Duration>,
    latencies: Vec<Duration>,
}

fn work(ms: f64) -> impl Fn(&StepContext<'_>) -> Result<Value, HandlerError> {
    move |_| {
        thread::sleep(Duration::from_secs_f64(ms / 1e3));
        Ok(Value::Null)
    }
}

/// Nanoseconds since a process-wide origin, for message timestamps.
fn stamp(origin: Instant) -> Value {
    Value::Int(origin.elapsed().as_nanos() as i64)
}

pub(crate) fn run(orch: &Orchestrator) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Learning from {RUNS} release workflows ==");
    orch.set_scheduling_policy(SchedulingPolicy::Fifo);
    orch.set_concurrency_limit("PSec", Some(1))?;
    let origin = Instant::now();

    // The chain that decides a release's length, and short side work that
    // is declared first (so FIFO starts it first).
    let chain = [
        ("PDRS", "requirements", 1.0),
        ("PAT", "design", 2.0),
        ("PCES", "compile", 3.0),
        ("PTT", "test", 3.0),
        ("PBOS", "package", 2.0),
    ];
    for (system, op, ms) in chain {
        orch.set_operation(system, op, work(ms))?;
    }
    orch.set_operation("PFD", "document", work(1.0))?;
    orch.set_operation("PKES", "index", work(0.5))?;
    orch.set_operation("PSec", "scan", work(1.0))?;
    let link = Arc::new(Mutex::new(Link::Hub(orch.hub().clone())));
    {
        let link = link.clone();
        orch.set_operation("PAES", "tune", move |_| {
            let mut link = link.lock().unwrap();
            for _ in 0..EVENTS {
                match &mut *link {
                    Link::Hub(hub) => {
                        hub.publish_from("PAES", "paes.tuning", stamp(origin))
                            .map_err(|e| HandlerError::failed(e.to_string()))?;
                    }
                    Link::Direct(end) => end
                        .send(stamp(origin))
                        .map_err(|e| HandlerError::failed(e.to_string()))?,
                }
            }
            Ok(Value::Null)
        })?;
    }
    let mut b = Workflow::builder("release");
    for i in 0..8 {
        b = b.step(StepSpec::op(format!("doc{i}"), "PFD", "document"));
    }
    for i in 0..4 {
        b = b.step(StepSpec::op(format!("index{i}"), "PKES", "index"));
        b = b.step(StepSpec::op(format!("scan{i}"), "PSec", "scan"));
    }
    b = b.step(StepSpec::op("tune", "PAES", "tune"));
    let mut prev: Option<String> = None;
    for (system, op, _) in chain {
        let mut s = StepSpec::op(op, system, op);
        if let Some(p) = &prev {
            s = s.after(p.clone());
        }
        b = b.step(s);
        prev = Some(op.to_owned());
    }
    let release = b.build(orch)?;

    // PPO receives the tuning events (through the hub, for now).
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sub = orch.hub().subscribe_pull_with(
        "paes.tuning",
        SubscribeOptions::new().owner("PPO").capacity(4096),
    )?;
    let receiver = {
        let (latencies, stop) = (latencies.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = sub.recv_timeout(Duration::from_millis(20))
                    && let Value::Int(sent) = m.payload()
                {
                    record(&latencies, origin, *sent);
                }
            }
        })
    };
    let before = phase(orch, &release, &latencies)?;
    stop.store(true, Ordering::Relaxed);
    receiver.join().expect("receiver");

    print_insights(orch);
    let plan =
        orch.optimize_coordination_with(true, Guardrails::new().idle_after(Duration::from_secs(1)));
    print_plan(&plan);

    // If the pair was promoted, PAES and PPO switch to its channel.
    let promoted = plan
        .changes
        .iter()
        .any(|c| c.error.is_none() && is_pair(&c.action, "PAES", "PPO"));
    stop.store(false, Ordering::Relaxed);
    let receiver: Option<JoinHandle<()>> = if promoted {
        *link.lock().unwrap() = Link::Direct(orch.hub().endpoint("PAES", "PPO")?);
        let mut end = orch.hub().endpoint("PPO", "PAES")?;
        let (latencies, stop) = (latencies.clone(), stop.clone());
        Some(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Value::Int(sent)) = end.recv_timeout(Duration::from_millis(20)) {
                    record(&latencies, origin, sent);
                }
            }
        }))
    } else {
        None
    };
    let after = phase(orch, &release, &latencies)?;
    stop.store(true, Ordering::Relaxed);
    if let Some(r) = receiver {
        r.join().expect("receiver");
    }
    print_comparison(&before, &after);
    println!(
        "  Every change is logged and reversible: orch.revert_change(id) for ids {:?}.",
        plan.changes.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    // Back to the hub for the rest of the example.
    *link.lock().unwrap() = Link::Hub(orch.hub().clone());
    Ok(())
}

fn record(latencies: &Mutex<Vec<Duration>>, origin: Instant, sent: i64) {
    let now = origin.elapsed().as_nanos() as i64;
    latencies
        .lock()
        .unwrap()
        .push(Duration::from_nanos(now.saturating_sub(sent).max(0) as u64));
}

fn is_pair(action: &Action, x: &str, y: &str) -> bool {
    matches!(action, Action::PromoteToDirect { a, b }
        if (a == x && b == y) || (a == y && b == x))
}

/// Runs the release workflow `RUNS` times, one after the other.
fn phase(
    orch: &Orchestrator,
    release: &Workflow,
    latencies: &Mutex<Vec<Duration>>,
) -> Result<Figures, Box<dyn std::error::Error>> {
    latencies.lock().unwrap().clear();
    let mut makespans = Vec::with_capacity(RUNS);
    let (mut scan_wait, mut tune) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let result = orch.coordinate_systems(release)?.wait();
        if result.state() != RunState::Succeeded {
            return Err(format!("release run ended {}", result.state()).into());
        }
        makespans.push(result.elapsed());
        for s in result.steps() {
            match s.system.as_deref() {
                Some("PSec") => scan_wait.push(s.queued),
                Some("PAES") => tune.push(s.ran),
                _ => {}
            }
        }
    }
    // Let the receiver catch up with the last events.
    let expected = RUNS * EVENTS;
    let t = Instant::now();
    while latencies.lock().unwrap().len() < expected && t.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(5));
    }
    Ok(Figures {
        makespans,
        scan_wait,
        tune,
        latencies: latencies.lock().unwrap().clone(),
    })
}

fn print_insights(orch: &Orchestrator) {
    let i = orch.coordination_insights();
    println!("\nInsights from {} recent runs:", i.runs);
    if let Some(cp) = i.critical_paths.first() {
        let path: Vec<String> = cp
            .steps
            .iter()
            .map(|(s, d)| format!("{s} {:.1} ms", d * 1e3))
            .collect();
        println!(
            "  critical path of {}: {} = {:.1} ms of a {:.1} ms run",
            cp.workflow,
            path.join(" -> "),
            cp.length * 1e3,
            cp.makespan * 1e3
        );
    }
    println!("  top contributors (waiting vs working, summed over the recent runs):");
    for c in i.contributors.iter().take(4) {
        println!(
            "    {:<16} {:>4} steps  waiting {:>7.1} ms  working {:>7.1} ms",
            c.key,
            c.steps,
            c.waiting * 1e3,
            c.working * 1e3
        );
    }
    for e in i.hot_edges.iter().take(3) {
        println!(
            "  hot edge {} -> {}: {:.0} msg/s ({} messages)",
            e.from, e.to, e.rate, e.messages
        );
    }
}

fn print_plan(plan: &CoordinationPlan) {
    println!("\nRecommendations that pass the guardrails (applied):");
    for r in &plan.actions {
        println!(
            "  - {:?}\n      evidence: {}\n      expected: {}; confidence {:.2} from {} samples",
            r.action, r.evidence, r.expected_gain, r.confidence, r.samples
        );
    }
    for (r, why) in &plan.skipped {
        println!("  - held back: {:?} ({why})", r.action);
    }
    for c in plan.changes.iter().filter(|c| c.error.is_some()) {
        println!(
            "  ! change {} failed: {}",
            c.id,
            c.error.as_deref().unwrap_or("")
        );
    }
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn print_comparison(before: &Figures, after: &Figures) {
    println!("\nThe same {RUNS} releases again, before -> after:");
    let row = |what: &str, b: f64, a: f64, unit: &str| {
        println!(
            "  {what:<34} {b:>8.3} {unit} -> {a:>8.3} {unit}  ({:+.0}%)",
            100.0 * (a / b - 1.0)
        );
    };
    row(
        "release makespan, median",
        pct(&before.makespans, 0.5),
        pct(&after.makespans, 0.5),
        "ms",
    );
    row(
        "release makespan, p90",
        pct(&before.makespans, 0.9),
        pct(&after.makespans, 0.9),
        "ms",
    );
    row(
        "PSec scan queue wait, median",
        pct(&before.scan_wait, 0.5),
        pct(&after.scan_wait, 0.5),
        "ms",
    );
    row(
        "PAES tune step (40 sends), median",
        pct(&before.tune, 0.5),
        pct(&after.tune, 0.5),
        "ms",
    );
    row(
        "PAES -> PPO event latency, median",
        pct(&before.latencies, 0.5),
        pct(&after.latencies, 0.5),
        "ms",
    );
    println!(
        "  ({} and {} events received. PAES sends its 40 events in a burst and PPO wakes\n   once per burst, so their latency is mostly that wake-up, on either path; the\n   sender's time is what the direct channel saves here. BENCHMARKS.md measures\n   one message in flight.)",
        before.latencies.len(),
        after.latencies.len()
    );
}
