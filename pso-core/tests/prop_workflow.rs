//! Property test of workflow runs: random DAGs with random failing,
//! panicking, slow, retried and conditional steps, random cancellation and
//! deadlines. After every run:
//! * accepted = succeeded + failed + cancelled + timed_out + skipped;
//! * no step started before each of its predecessors ended (or was skipped);
//! * a step whose predecessor did not succeed never ran;
//! * with no fault, no cancellation and no deadline, the run succeeded;
//! * no step ran more attempts than its retries allow.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use pso_core::{
    HandlerError, Orchestrator, RetryPolicy, RunOptions, RunState, StepSpec, StepState, Value,
    Workflow,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Ok,
    Fail,
    Panic,
    /// Fails on the first attempt only.
    Flaky,
    /// Sleeps a few ms (with a shorter timeout: times out).
    Slow {
        timeout: bool,
    },
    /// Conditional step whose condition is false.
    Skip,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        8 => Just(Behaviour::Ok),
        1 => Just(Behaviour::Fail),
        1 => Just(Behaviour::Panic),
        1 => Just(Behaviour::Flaky),
        1 => any::<bool>().prop_map(|timeout| Behaviour::Slow { timeout }),
        1 => Just(Behaviour::Skip),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    steps: Vec<(Behaviour, u32)>,
    /// (from, to) with from < to: acyclic by construction.
    edges: Vec<(usize, usize)>,
    /// Cancel once this many steps have started.
    cancel_after: Option<usize>,
    deadline_ms: Option<u64>,
    workers: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..30)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec((behaviour(), 0u32..3), n),
                proptest::collection::vec((0..n, 0..n), 0..(2 * n)),
                proptest::option::weighted(0.2, 0..n),
                proptest::option::weighted(0.15, 1u64..20),
                1usize..3,
            )
        })
        .prop_map(|(steps, raw, cancel_after, deadline_ms, workers)| {
            let mut edges: Vec<(usize, usize)> = raw
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect();
            edges.sort();
            edges.dedup();
            Case {
                steps,
                edges,
                cancel_after,
                deadline_ms,
                workers,
            }
        })
}

struct Trace {
    clock: AtomicU64,
    start: Vec<AtomicU64>,
    end: Vec<AtomicU64>,
    attempts: Vec<AtomicUsize>,
    started: AtomicUsize,
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let o = Orchestrator::builder().workers(c.workers).build().unwrap();
    let n = c.steps.len();
    let trace = Arc::new(Trace {
        clock: AtomicU64::new(1),
        start: (0..n).map(|_| AtomicU64::new(0)).collect(),
        end: (0..n).map(|_| AtomicU64::new(0)).collect(),
        attempts: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        started: AtomicUsize::new(0),
    });
    let handle_slot: Arc<Mutex<Option<pso_core::RunHandle>>> = Arc::new(Mutex::new(None));
    let mut b = Workflow::builder("prop");
    for (i, &(beh, retries)) in c.steps.iter().enumerate() {
        let (t, hs, cancel_after) = (trace.clone(), handle_slot.clone(), c.cancel_after);
        let f = move |ctx: &pso_core::StepContext<'_>| -> Result<Value, HandlerError> {
            let seq = t.clock.fetch_add(1, Ordering::SeqCst);
            t.start[i].store(seq, Ordering::SeqCst);
            t.attempts[i].fetch_add(1, Ordering::SeqCst);
            let k = t.started.fetch_add(1, Ordering::SeqCst) + 1;
            if cancel_after == Some(k) {
                // Cancel from inside a running step (the handle is set
                // before any step can start: see below).
                if let Some(h) = hs.lock().unwrap().as_ref() {
                    h.cancel();
                }
            }
            let out = match beh {
                Behaviour::Ok | Behaviour::Skip => Ok(Value::from(i as i64)),
                Behaviour::Fail => Err(HandlerError::failed("planned failure")),
                Behaviour::Panic => panic!("planned panic"),
                Behaviour::Flaky if ctx.attempt() == 1 => Err(HandlerError::failed("flaky")),
                Behaviour::Flaky => Ok(Value::Null),
                Behaviour::Slow { .. } => {
                    std::thread::sleep(Duration::from_millis(3));
                    Ok(Value::Null)
                }
            };
            t.end[i].store(t.clock.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
            out
        };
        let mut s = StepSpec::func(format!("s{i}"), f).retry_policy(RetryPolicy {
            max_retries: retries,
            base: Duration::from_micros(100),
            max: Duration::from_millis(1),
            jitter: true,
        });
        if let Behaviour::Slow { timeout: true } = beh {
            s = s.timeout(Duration::from_millis(1));
        }
        if beh == Behaviour::Skip {
            s = s.when(|_| false);
        }
        for &(a, bb) in &c.edges {
            if bb == i {
                s = s.input(format!("from{a}"), format!("s{a}"));
            }
        }
        b.add(s);
    }
    let wf = b.build(&o).unwrap();
    // Hold the lock while starting so a step that cancels sees the handle.
    let mut slot = handle_slot.lock().unwrap();
    let mut opts = RunOptions::default();
    if let Some(ms) = c.deadline_ms {
        opts = opts.deadline(Duration::from_millis(ms));
    }
    let run = o.coordinate_systems_with(&wf, opts).unwrap();
    *slot = Some(run.clone());
    drop(slot);
    let r = run
        .wait_timeout(Duration::from_secs(30))
        .ok_or_else(|| TestCaseError::fail("run never finished"))?;

    let counts = r.counts();
    prop_assert_eq!(counts.unfinished, 0);
    prop_assert_eq!(counts.accepted, n);
    prop_assert_eq!(counts.terminal(), n);
    let states: Vec<StepState> = (0..n)
        .map(|i| r.step_state(&format!("s{i}")).unwrap())
        .collect();
    for (i, &(beh, retries)) in c.steps.iter().enumerate() {
        let attempts = trace.attempts[i].load(Ordering::SeqCst);
        prop_assert!(
            attempts <= retries as usize + 1,
            "s{} ran {} attempts with {} retries",
            i,
            attempts,
            retries
        );
        let s_start = trace.start[i].load(Ordering::SeqCst);
        for &(a, bb) in &c.edges {
            if bb != i || s_start == 0 {
                continue;
            }
            // s ran: every predecessor was skipped or ended before it started.
            prop_assert!(
                states[a] == StepState::Skipped
                    || (trace.end[a].load(Ordering::SeqCst) != 0
                        && trace.end[a].load(Ordering::SeqCst) < s_start),
                "s{} started before its input s{} existed ({:?})",
                i,
                a,
                states[a]
            );
            prop_assert!(
                matches!(states[a], StepState::Succeeded | StepState::Skipped),
                "s{} ran although its predecessor s{} is {:?}",
                i,
                a,
                states[a]
            );
        }
        if beh == Behaviour::Skip && states[i] == StepState::Succeeded {
            return Err(TestCaseError::fail(format!(
                "s{i} ran although its condition is false"
            )));
        }
    }
    let faulty = c.steps.iter().any(|&(b, r)| match b {
        Behaviour::Fail | Behaviour::Panic | Behaviour::Slow { timeout: true } => true,
        Behaviour::Flaky => r == 0,
        _ => false,
    });
    if !faulty && c.cancel_after.is_none() && c.deadline_ms.is_none() {
        prop_assert_eq!(r.state(), RunState::Succeeded, "{:?}", r.steps());
    }
    if r.state() == RunState::Succeeded {
        prop_assert!(
            states
                .iter()
                .all(|s| matches!(s, StepState::Succeeded | StepState::Skipped))
        );
    }
    o.close();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_keep_the_invariants(c in case()) {
        run_case(&c)?;
    }
}
