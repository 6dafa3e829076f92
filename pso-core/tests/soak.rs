//! Fault-injection soak: many workflow steps with faulty handlers, and hub
//! traffic into slow subscribers under each overflow policy, at the same time,
//! on one orchestrator. Ends with a printed count report.
//!
//! * Steps: 1% panic, 1% sleep 1–10 ms, 1% return an error, the rest succeed.
//!   Steps run in workflows of [`RUN_STEPS`] independent steps, a few runs in
//!   flight at once. Pass: every step's handler ran exactly once (lost = 0,
//!   duplicated = 0), every step ended in the terminal state its behaviour
//!   implies (succeeded = ok + slow, failed = errors + panics), and the run's
//!   counts balance (accepted = the sum of the terminal counts).
//! * Hub: for each policy (block, drop oldest, drop newest, error) one
//!   publisher thread sends sequence numbers to a callback subscription of
//!   capacity 8 whose callback stalls 1 ms every 64 messages. Pass: no message
//!   received twice or out of order; received + dropped = published (every
//!   drop counted); block drops nothing; under `error` the publisher saw
//!   exactly `dropped` refusals.
//! * Memory: VmRSS (from `/proc/self/status`) after the first tenth of the
//!   steps, then at every later run; growth must stay under 64 MB.
//!
//! `cargo test` runs 20,000 steps (under a second in debug). The full soak:
//! `PSO_SOAK_STEPS=1000000 cargo test -p pso-core --release --test soak -- --nocapture`.
//!
//! Recorded full run (release, 2 shared cores under load, 33.1 s):
//!
//! ```text
//! steps: accepted 1000000 (ok 969803, panicking 10083, slow 10178, erroring 9936)
//!        -> succeeded 979981, failed 20019, other 0; lost 0, duplicated 0,
//!        wrong state 0, unbalanced runs 0
//! hub block(5m): published 250000, received 250000, dropped 0, refused 0
//! hub drop_oldest: published 250000, received 1352, dropped (counted) 248648
//! hub drop_newest: published 250000, received 1224, dropped (counted) 248776
//! hub error: published 250000, received 2312, dropped (counted) 247688,
//!        refused to publisher 247688
//! (every policy: lost 0, duplicated/out of order 0)
//! memory: VmRSS 7 MB after warm-up, peak 8 MB, growth 1.1 MB
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pso_core::{
    HandlerError, Hub, HubError, Orchestrator, Overflow, RunHandle, StepSpec, StepState,
    SubscribeOptions, Value, Workflow,
};

/// Steps per workflow run.
const RUN_STEPS: usize = 500;
/// Runs in flight at once.
const IN_FLIGHT: usize = 4;
/// Allowed VmRSS growth after warm-up.
const MAX_GROWTH_KB: u64 = 64 * 1024;
/// Bounded waits: generous, never timing-tight.
const LONG: Duration = Duration::from_secs(300);

fn steps() -> usize {
    std::env::var("PSO_SOAK_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ok,
    Panic,
    Slow(u64),
    Error,
}

/// Totals over every step.
#[derive(Debug, Default)]
struct StepReport {
    accepted: usize,
    ok: usize,
    panics: usize,
    slow: usize,
    errors: usize,
    succeeded: usize,
    failed: usize,
    other: usize,
    lost: usize,
    duplicated: usize,
    wrong_state: usize,
    unbalanced_runs: usize,
}

struct Live {
    handle: RunHandle,
    kinds: Vec<Kind>,
    ran: Arc<Vec<AtomicU8>>,
}

/// VmRSS in kB, if the platform has `/proc/self/status`.
fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn start_run(o: &Orchestrator, rng: &mut fastrand::Rng, r: &mut StepReport) -> Live {
    let kinds: Vec<Kind> = (0..RUN_STEPS)
        .map(|_| match rng.u32(0..100) {
            0 => Kind::Panic,
            1 => Kind::Slow(rng.u64(1..=10)),
            2 => Kind::Error,
            _ => Kind::Ok,
        })
        .collect();
    let ran: Arc<Vec<AtomicU8>> = Arc::new((0..RUN_STEPS).map(|_| AtomicU8::new(0)).collect());
    let mut b = Workflow::builder("soak");
    for (i, &k) in kinds.iter().enumerate() {
        match k {
            Kind::Ok => r.ok += 1,
            Kind::Panic => r.panics += 1,
            Kind::Slow(_) => r.slow += 1,
            Kind::Error => r.errors += 1,
        }
        let ran = ran.clone();
        b.add(StepSpec::func(format!("s{i}"), move |_| {
            ran[i].fetch_add(1, Ordering::SeqCst);
            match k {
                Kind::Ok => Ok(Value::Int(i as i64)),
                Kind::Panic => panic!("soak: planned panic"),
                Kind::Slow(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    Ok(Value::Null)
                }
                Kind::Error => Err(HandlerError::failed("soak: planned error")),
            }
        }));
    }
    let wf = b.build(o).unwrap();
    Live {
        handle: o.coordinate_systems(&wf).unwrap(),
        kinds,
        ran,
    }
}

fn finish_run(l: Live, r: &mut StepReport) {
    let res = l
        .handle
        .wait_timeout(LONG)
        .expect("a soak run never finished");
    let c = res.counts();
    r.accepted += c.accepted;
    r.succeeded += c.succeeded;
    r.failed += c.failed;
    r.other += c.cancelled + c.timed_out + c.skipped + c.unfinished;
    if c.accepted != RUN_STEPS || c.terminal() != c.accepted || c.unfinished != 0 {
        r.unbalanced_runs += 1;
    }
    for (i, k) in l.kinds.iter().enumerate() {
        match l.ran[i].load(Ordering::SeqCst) {
            0 => r.lost += 1,
            1 => {}
            _ => r.duplicated += 1,
        }
        let want = match k {
            Kind::Ok | Kind::Slow(_) => StepState::Succeeded,
            Kind::Panic | Kind::Error => StepState::Failed,
        };
        if res.step_state(&format!("s{i}")) != Some(want) {
            r.wrong_state += 1;
        }
    }
}

/// One overflow policy's hub traffic.
#[derive(Debug, Default)]
struct HubReport {
    policy: String,
    published: u64,
    received: u64,
    dropped: u64,
    refused: u64,
    out_of_order: u64,
}

fn hub_traffic(hub: &Hub, policy: Overflow, messages: u64) -> HubReport {
    let topic = format!("soak.{}", policy.name());
    let received = Arc::new(AtomicU64::new(0));
    let out_of_order = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let (rc, ooo, la) = (received.clone(), out_of_order.clone(), last.clone());
    let opts = SubscribeOptions::new().capacity(8).overflow(policy);
    let sub = hub
        .subscribe_with(&topic, opts, move |m| {
            // Sequence numbers start at 1 and must strictly increase: a
            // duplicate or a reordering shows up here.
            let seq = m.payload().as_int().unwrap() as u64;
            if seq <= la.swap(seq, Ordering::SeqCst) {
                ooo.fetch_add(1, Ordering::SeqCst);
            }
            if rc.fetch_add(1, Ordering::SeqCst) % 64 == 63 {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        })
        .unwrap();
    let mut refused = 0;
    for seq in 1..=messages {
        match hub.publish(&topic, seq as i64) {
            Ok(_) => {}
            Err(HubError::Overflow { .. }) => refused += 1,
            Err(e) => panic!("publish to {topic}: {e}"),
        }
    }
    let deadline = Instant::now() + LONG;
    let dropped = loop {
        let dropped = sub.status().dropped;
        if received.load(Ordering::SeqCst) + dropped >= messages || Instant::now() > deadline {
            break dropped;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    sub.unsubscribe();
    HubReport {
        policy: policy.to_string(),
        published: messages,
        received: received.load(Ordering::SeqCst),
        dropped,
        refused,
        out_of_order: out_of_order.load(Ordering::SeqCst),
    }
}

fn quiet_planned_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let planned = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| m.starts_with("soak: planned"));
        if !planned {
            default(info);
        }
    }));
}

#[test]
fn fault_injection_soak() {
    quiet_planned_panics();
    let total = steps().max(RUN_STEPS);
    let runs = total.div_ceil(RUN_STEPS);
    let started = Instant::now();
    let o = Orchestrator::new();

    // Hub traffic runs beside the steps, one policy after the other.
    let hub = o.hub().clone();
    let messages = (total as u64 / 4).max(1_000);
    let hub_thread = std::thread::spawn(move || {
        [
            Overflow::Block(LONG),
            Overflow::DropOldest,
            Overflow::DropNewest,
            Overflow::Error,
        ]
        .into_iter()
        .map(|p| hub_traffic(&hub, p, messages))
        .collect::<Vec<_>>()
    });

    let mut rng = fastrand::Rng::with_seed(0x5EED);
    let mut r = StepReport::default();
    let mut live = VecDeque::new();
    let warm_up = (runs / 10).max(1);
    let (mut rss_base, mut rss_max) = (None, 0u64);
    for done in 0..runs {
        if live.len() == IN_FLIGHT {
            finish_run(live.pop_front().unwrap(), &mut r);
        }
        live.push_back(start_run(&o, &mut rng, &mut r));
        if done == warm_up {
            rss_base = rss_kb();
        } else if done > warm_up {
            rss_max = rss_max.max(rss_kb().unwrap_or(0));
        }
    }
    for l in live {
        finish_run(l, &mut r);
    }
    rss_max = rss_max.max(rss_kb().unwrap_or(0));
    let hubs = hub_thread.join().unwrap();
    let growth_kb = rss_base.map(|b| rss_max.saturating_sub(b));
    o.close();

    println!("soak report ({:.1} s)", started.elapsed().as_secs_f64());
    println!(
        "steps: accepted {} (ok {}, panicking {}, slow {}, erroring {}) -> succeeded {}, failed {}, other {}; lost {}, duplicated {}, wrong state {}, unbalanced runs {}",
        r.accepted,
        r.ok,
        r.panics,
        r.slow,
        r.errors,
        r.succeeded,
        r.failed,
        r.other,
        r.lost,
        r.duplicated,
        r.wrong_state,
        r.unbalanced_runs
    );
    for h in &hubs {
        println!(
            "hub {}: published {}, received {}, dropped (counted) {}, refused to publisher {}, lost {}, duplicated/out of order {}",
            h.policy,
            h.published,
            h.received,
            h.dropped,
            h.refused,
            h.published - h.received.min(h.published) - h.dropped.min(h.published),
            h.out_of_order
        );
    }
    match (rss_base, growth_kb) {
        (Some(b), Some(g)) => println!(
            "memory: VmRSS {} MB after warm-up, peak {} MB, growth {:.1} MB",
            b / 1024,
            rss_max / 1024,
            g as f64 / 1024.0
        ),
        _ => println!("memory: VmRSS not available on this platform; not checked"),
    }

    assert_eq!(r.accepted, runs * RUN_STEPS);
    assert_eq!((r.lost, r.duplicated), (0, 0), "{r:?}");
    assert_eq!(
        (r.wrong_state, r.unbalanced_runs, r.other),
        (0, 0, 0),
        "{r:?}"
    );
    assert_eq!(r.succeeded, r.ok + r.slow, "{r:?}");
    assert_eq!(r.failed, r.panics + r.errors, "{r:?}");
    for h in &hubs {
        assert_eq!(h.out_of_order, 0, "{h:?}");
        assert_eq!(
            h.received + h.dropped,
            h.published,
            "every drop counted: {h:?}"
        );
        if h.policy.starts_with("block") {
            assert_eq!((h.dropped, h.refused), (0, 0), "{h:?}");
        }
        if h.policy == "error" {
            assert_eq!(h.refused, h.dropped, "{h:?}");
        } else {
            assert_eq!(h.refused, 0, "{h:?}");
        }
    }
    if let Some(g) = growth_kb {
        assert!(g < MAX_GROWTH_KB, "VmRSS grew {g} kB after warm-up");
    }
}
