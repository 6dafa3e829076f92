//! Workflows: data flow, parallelism, failures, retries, timeouts, deadlines,
//! cancellation, conditions, fan-out, concurrency limits, priorities and
//! definitions from files.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use pso_core::{
    Child, ErrorKind, HandlerError, Orchestrator, Priority, PsoError, RetryPolicy, RunOptions,
    RunResult, RunState, StepSpec, StepState, SystemSpec, TopologyFormat, Value, Workflow,
    WorkflowError,
};

fn orch(workers: usize) -> Orchestrator {
    Orchestrator::builder().workers(workers).build().unwrap()
}

/// Every accepted step ended in exactly one terminal state.
fn assert_accounted(r: &RunResult) {
    let c = r.counts();
    assert_eq!(c.unfinished, 0, "{c:?}");
    assert_eq!(c.accepted, c.terminal(), "{c:?}");
    assert_eq!(r.steps().len(), c.accepted);
}

fn int(v: &Value) -> i64 {
    v.as_int().unwrap()
}

#[test]
fn data_flows_along_named_edges() {
    let o = orch(2);
    o.register(
        SystemSpec::new("PDT")
            .operation("collect", |ctx| Ok(Value::from(int(ctx.run_input()) + 1)))
            .operation("sum", |ctx| {
                Ok(Value::from(
                    int(ctx.input("a").unwrap()) + int(ctx.input("b").unwrap()),
                ))
            }),
    )
    .unwrap();
    o.activate_system("PDT").unwrap();
    let wf = Workflow::builder("flow")
        .step(StepSpec::op("x", "PDT", "collect"))
        .step(
            StepSpec::func("double", |ctx| {
                Ok(Value::from(int(ctx.input("n").unwrap()) * 2))
            })
            .input("n", "x"),
        )
        .step(
            StepSpec::func("square", |ctx| {
                Ok(Value::from(int(ctx.input("n").unwrap()).pow(2)))
            })
            .input("n", "x"),
        )
        .step(
            StepSpec::op("total", "PDT", "sum")
                .input("a", "double")
                .input("b", "square"),
        )
        .build(&o)
        .unwrap();
    assert_eq!(wf.step_names(), ["x", "double", "square", "total"]);
    for input in [1, 5, 10] {
        let r = o
            .coordinate_systems_with(&wf, RunOptions::with_input(input))
            .unwrap()
            .wait();
        assert!(r.is_success(), "{r:?}");
        let x = input + 1;
        assert_eq!(r.output("total"), Some(&Value::from(2 * x + x * x)));
        assert_accounted(&r);
    }
    let r = o
        .coordinate_systems_with(&wf, RunOptions::with_input(3))
        .unwrap()
        .wait();
    let rec = r.step("total").unwrap();
    assert_eq!(
        (
            rec.system.as_deref(),
            rec.operation.as_deref(),
            rec.attempts
        ),
        (Some("PDT"), Some("sum"), 1)
    );
    assert_eq!(rec.state, StepState::Succeeded);
    assert!(rec.worker.is_some());
    assert_eq!(r.outputs().get("x"), Some(&Value::from(4)));
    let json = Value::from_json(&r.to_json()).unwrap();
    assert_eq!(json.get("state"), Some(&Value::from("succeeded")));
}

#[test]
fn independent_steps_run_in_parallel() {
    let o = orch(2);
    let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
    let mut b = Workflow::builder("pair");
    for name in ["left", "right"] {
        let gate = gate.clone();
        b.add(StepSpec::func(name, move |_| {
            let (lock, cv) = &*gate;
            let mut n = lock.lock().unwrap();
            *n += 1;
            cv.notify_all();
            let deadline = Instant::now() + Duration::from_secs(10);
            while *n < 2 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("the other step never started".into());
                }
                n = cv.wait_timeout(n, left).unwrap().0;
            }
            Ok(Value::Null)
        }));
    }
    let wf = b.build(&o).unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert!(r.is_success(), "{:?}", r.steps());
    let workers: HashSet<_> = r.steps().iter().map(|s| s.worker).collect();
    assert_eq!(workers.len(), 2);
}

#[test]
fn a_failure_cancels_dependents_but_not_independent_branches() {
    let o = orch(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let wf = Workflow::builder("partial")
        .step(StepSpec::func("bad", |_| Err("disk full".into())))
        .step(StepSpec::func("after_bad", |_| Ok(Value::Null)).after("bad"))
        .step(StepSpec::func("after_after", |_| Ok(Value::Null)).after("after_bad"))
        .step(StepSpec::func("boom", |_| panic!("index out of range")))
        .step(StepSpec::func("fine", move |_| {
            r2.fetch_add(1, Ordering::SeqCst);
            Ok(Value::from("ok"))
        }))
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.state(), RunState::Failed);
    assert_eq!(r.step_state("bad"), Some(StepState::Failed));
    assert_eq!(r.error("bad").as_deref(), Some("disk full"));
    assert_eq!(r.step_state("after_bad"), Some(StepState::Cancelled));
    assert_eq!(
        r.error("after_bad").as_deref(),
        Some("upstream step 'bad' did not succeed")
    );
    assert_eq!(r.step("after_bad").unwrap().attempts, 0);
    assert_eq!(r.step_state("after_after"), Some(StepState::Cancelled));
    assert_eq!(
        r.error("boom").as_deref(),
        Some("handler panicked: index out of range")
    );
    assert_eq!(r.output("fine"), Some(&Value::from("ok")));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let c = r.counts();
    assert_eq!((c.succeeded, c.failed, c.cancelled), (1, 2, 2));
    assert_accounted(&r);
    // The workers survived the panic.
    assert!(
        o.coordinate_systems(
            &Workflow::builder("next")
                .step(StepSpec::func("s", |_| Ok(Value::Null)))
                .build(&o)
                .unwrap()
        )
        .unwrap()
        .wait()
        .is_success()
    );
}

#[test]
fn retries_back_off_and_count_attempts() {
    let o = orch(2);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c2 = calls.clone();
    let policy = RetryPolicy {
        max_retries: 3,
        base: Duration::from_millis(20),
        max: Duration::from_secs(1),
        jitter: false,
    };
    let wf = Workflow::builder("flaky")
        .step(
            StepSpec::func("flaky", move |ctx| {
                c2.lock().unwrap().push(Instant::now());
                if ctx.attempt() < 3 {
                    Err(format!("attempt {} failed", ctx.attempt()).into())
                } else {
                    Ok(Value::from(ctx.attempt()))
                }
            })
            .retry_policy(policy),
        )
        .step(
            StepSpec::func("never", |_| Err("always".into()))
                .retries(2)
                .retry_policy(RetryPolicy {
                    max_retries: 2,
                    base: Duration::ZERO,
                    ..policy
                }),
        )
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.output("flaky"), Some(&Value::from(3)));
    assert_eq!(r.step("flaky").unwrap().attempts, 3);
    let t = calls.lock().unwrap().clone();
    assert!(
        t[1] - t[0] >= Duration::from_millis(20),
        "first retry waited {:?}",
        t[1] - t[0]
    );
    assert!(
        t[2] - t[1] >= Duration::from_millis(40),
        "second retry waited {:?}",
        t[2] - t[1]
    );
    let never = r.step("never").unwrap();
    assert_eq!(
        (never.state, never.attempts, never.error.as_deref()),
        (StepState::Failed, 3, Some("always"))
    );
    assert_accounted(&r);
    // Jittered delays stay within [d/2, d].
    let p = RetryPolicy {
        max_retries: 5,
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
        jitter: true,
    };
    for _ in 0..100 {
        let d = p.delay(3);
        assert!(
            d >= Duration::from_millis(100) && d <= Duration::from_millis(200),
            "{d:?}"
        );
    }
    // Capped at `max` (then jittered within [max/2, max]).
    let d = p.delay(20);
    assert!(
        d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
        "{d:?}"
    );
}

#[test]
fn step_timeouts_abandon_the_attempt_and_tell_the_handler() {
    let o = orch(2);
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let s2 = saw_cancel.clone();
    let wf = Workflow::builder("slow")
        .step(
            StepSpec::func("slow", move |ctx| {
                let t = Instant::now();
                while !ctx.is_cancelled() && t.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if ctx.is_cancelled() {
                    s2.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Value::from("too late"))
            })
            .timeout(Duration::from_millis(30)),
        )
        .step(StepSpec::func("next", |_| Ok(Value::Null)).input("x", "slow"))
        .build(&o)
        .unwrap();
    let t = Instant::now();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(r.step_state("slow"), Some(StepState::TimedOut));
    assert_eq!(
        r.error("slow").as_deref(),
        Some("handler timed out after 30ms")
    );
    assert_eq!(r.output("slow"), None, "a late result is ignored");
    assert_eq!(r.step_state("next"), Some(StepState::Cancelled));
    assert_eq!(r.state(), RunState::Failed);
    assert_accounted(&r);
    let deadline = Instant::now() + Duration::from_secs(10);
    while saw_cancel.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the handler never saw is_cancelled()"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_run_deadline_stops_everything() {
    let o = orch(2);
    let wf = Workflow::builder("deadline")
        .step(StepSpec::func("stuck", |ctx| {
            let t = Instant::now();
            while !ctx.is_cancelled() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(Value::Null)
        }))
        .step(StepSpec::func("later", |_| Ok(Value::Null)).after("stuck"))
        .step(StepSpec::func("quick", |_| Ok(Value::from(1))))
        .build(&o)
        .unwrap();
    let t = Instant::now();
    let r = o
        .coordinate_systems_with(
            &wf,
            RunOptions::default().deadline(Duration::from_millis(50)),
        )
        .unwrap()
        .wait();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(r.state(), RunState::TimedOut);
    assert_eq!(r.step_state("stuck"), Some(StepState::TimedOut));
    assert_eq!(r.step_state("later"), Some(StepState::TimedOut));
    assert_eq!(r.output("quick"), Some(&Value::from(1)));
    assert_accounted(&r);
}

#[test]
fn cancel_stops_unstarted_steps_at_once_and_signals_running_ones() {
    let o = orch(2);
    let started = Arc::new((Mutex::new(false), Condvar::new()));
    let s2 = started.clone();
    let wf = Workflow::builder("cancel")
        .step(StepSpec::func("running", move |ctx| {
            {
                let (l, cv) = &*s2;
                *l.lock().unwrap() = true;
                cv.notify_all();
            }
            let t = Instant::now();
            while !ctx.is_cancelled() {
                if t.elapsed() > Duration::from_secs(10) {
                    return Err("never cancelled".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err("stopped on request".into())
        }))
        .step(StepSpec::func("child", |_| Ok(Value::Null)).after("running"))
        .step(StepSpec::func("grandchild", |_| Ok(Value::Null)).after("child"))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    {
        let (l, cv) = &*started;
        let mut g = l.lock().unwrap();
        while !*g {
            g = cv.wait_timeout(g, Duration::from_secs(10)).unwrap().0;
        }
    }
    assert!(run.cancel());
    assert!(!run.cancel(), "second cancel is a no-op");
    // Unstarted steps read as cancelled at once, before the running one ends.
    let p = run.progress();
    assert!(p.counts.cancelled >= 2, "{p:?}");
    let r = run.wait();
    assert_eq!(r.state(), RunState::Cancelled);
    assert_eq!(r.error("running").as_deref(), Some("stopped on request"));
    assert_eq!(
        r.error("child").as_deref(),
        Some("upstream step 'running' did not succeed")
    );
    assert_eq!(r.step_state("grandchild"), Some(StepState::Cancelled));
    assert_accounted(&r);
    assert!(!run.cancel(), "cancelling a finished run does nothing");
}

#[test]
fn conditions_skip_steps_and_what_depends_only_on_them() {
    let o = orch(2);
    let wf = Workflow::builder("cond")
        .step(StepSpec::func("flag", |ctx| Ok(ctx.run_input().clone())))
        .step(StepSpec::func("gated", |_| Ok(Value::from("ran"))).when_truthy("flag"))
        .step(StepSpec::func("only_gated", |_| Ok(Value::Null)).after("gated"))
        .step(
            StepSpec::func("both", |ctx| Ok(Value::from(ctx.input("g").is_some())))
                .input("g", "gated")
                .after("flag"),
        )
        .step(
            StepSpec::func("pred", |_| Ok(Value::Null))
                .input("v", "flag")
                .when(|ctx| ctx.input("v").and_then(Value::as_int) == Some(7)),
        )
        .build(&o)
        .unwrap();
    let r = o
        .coordinate_systems_with(&wf, RunOptions::with_input(false))
        .unwrap()
        .wait();
    assert!(r.is_success(), "skipped steps do not fail a run");
    assert_eq!(r.step_state("gated"), Some(StepState::Skipped));
    assert_eq!(r.step_state("only_gated"), Some(StepState::Skipped));
    assert_eq!(
        r.output("both"),
        Some(&Value::from(false)),
        "a step with a live predecessor still runs"
    );
    assert_eq!(r.step_state("pred"), Some(StepState::Skipped));
    assert_eq!(r.counts().skipped, 3);
    assert_accounted(&r);
    let r = o
        .coordinate_systems_with(&wf, RunOptions::with_input(7))
        .unwrap()
        .wait();
    assert_eq!(r.output("gated"), Some(&Value::from("ran")));
    assert_eq!(r.output("both"), Some(&Value::from(true)));
    assert_eq!(r.step_state("pred"), Some(StepState::Succeeded));
    // A panicking condition fails the step.
    let wf = Workflow::builder("badcond")
        .step(StepSpec::func("s", |_| Ok(Value::Null)).when(|_| panic!("no")))
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(
        r.error("s").as_deref(),
        Some("handler panicked: condition: no")
    );
}

#[test]
fn fan_out_children_run_and_join() {
    let o = orch(2);
    o.register(
        SystemSpec::new("PKM")
            .operation("index", |ctx| Ok(Value::from(int(&ctx.input_value()) * 10))),
    )
    .unwrap();
    o.activate_system("PKM").unwrap();
    let wf = Workflow::builder("fan")
        .step(StepSpec::func("split", |ctx| {
            let n = int(ctx.run_input());
            let mut kids: Vec<Child> = (0..n)
                .map(|i| Child::func(i, |c| Ok(Value::from(int(&c.input_value()) + 1))))
                .collect();
            kids.push(ctx.child_op("PKM", "index", 5)?);
            ctx.fan_out(kids)?;
            Ok(Value::from("ignored"))
        }))
        .step(
            StepSpec::func("sum", |ctx| {
                Ok(Value::from(
                    ctx.input("parts")
                        .unwrap()
                        .as_list()
                        .unwrap()
                        .iter()
                        .map(int)
                        .sum::<i64>(),
                ))
            })
            .input("parts", "split"),
        )
        .build(&o)
        .unwrap();
    let r = o
        .coordinate_systems_with(&wf, RunOptions::with_input(4))
        .unwrap()
        .wait();
    assert!(r.is_success(), "{:?}", r.steps());
    assert_eq!(r.output("split"), Some(&Value::from(vec![1, 2, 3, 4, 50])));
    assert_eq!(r.output("sum"), Some(&Value::from(60)));
    assert_eq!(r.counts().accepted, 2 + 5);
    let child = r.step("split[4]").unwrap();
    assert_eq!(
        (child.system.as_deref(), child.parent.as_deref()),
        (Some("PKM"), Some("split"))
    );
    assert_accounted(&r);
    // A failing child fails the parent, which cancels its dependents.
    let wf = Workflow::builder("fan2")
        .step(StepSpec::func("split", |ctx| {
            ctx.fan_out([
                Child::func(1, |_| Ok(Value::Null)),
                Child::func(2, |_| Err("child broke".into())),
            ])?;
            Ok(Value::Null)
        }))
        .step(StepSpec::func("after", |_| Ok(Value::Null)).after("split"))
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(
        r.error("split").as_deref(),
        Some("1 of 2 children failed; first: split[1]: child broke")
    );
    assert_eq!(r.step_state("after"), Some(StepState::Cancelled));
    assert_accounted(&r);
}

#[test]
fn concurrency_limits_queue_steps_without_holding_workers() {
    let o = orch(2);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let (r2, p2, c2) = (running.clone(), peak.clone(), completed.clone());
    o.register(
        SystemSpec::new("db")
            .concurrency(1)
            .operation("query", move |_| {
                let now = r2.fetch_add(1, Ordering::SeqCst) + 1;
                p2.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(60));
                r2.fetch_sub(1, Ordering::SeqCst);
                c2.fetch_add(1, Ordering::SeqCst);
                Ok(Value::Null)
            }),
    )
    .unwrap();
    o.activate_all().unwrap();
    // With 2 workers, one runs a query; the other two queries wait for the
    // slot. If waiting held a worker, the low-priority probe could only run
    // after a query completed.
    let (r3, c3) = (running.clone(), completed.clone());
    let wf = Workflow::builder("limited")
        .step(StepSpec::op("q0", "db", "query"))
        .step(StepSpec::op("q1", "db", "query"))
        .step(StepSpec::op("q2", "db", "query"))
        .step(
            StepSpec::func("probe", move |_| {
                let t = Instant::now();
                while r3.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(5) {
                    std::thread::yield_now();
                }
                Ok(Value::from(c3.load(Ordering::SeqCst) as i64))
            })
            .priority(Priority::Low),
        )
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert!(r.is_success());
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "the limit of 1 was exceeded"
    );
    assert_eq!(
        r.output("probe"),
        Some(&Value::from(0)),
        "the probe waited for a query: parked steps held workers"
    );
    let db = o.status("db").unwrap();
    assert_eq!(
        (db.concurrency, db.running_steps, db.waiting_steps),
        (Some(1), 0, 0)
    );
    // Raising the limit lets two run at once.
    o.set_concurrency_limit("db", Some(2)).unwrap();
    peak.store(0, Ordering::SeqCst);
    assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(
        o.set_concurrency_limit("db", Some(0)).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    o.set_concurrency_limit("db", None).unwrap();
    assert_eq!(o.status("db").unwrap().concurrency, None);
}

#[test]
fn one_worker_runs_higher_classes_then_longer_critical_paths_first() {
    let o = orch(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let rec = |name: &'static str| {
        let order = order.clone();
        move |_: &pso_core::StepContext<'_>| {
            order.lock().unwrap().push(name);
            Ok(Value::Null)
        }
    };
    let wf = Workflow::builder("prio")
        .step(StepSpec::func("low", rec("low")).priority(Priority::Low))
        .step(StepSpec::func("leaf", rec("leaf")))
        .step(StepSpec::func("chain0", rec("chain0")))
        .step(StepSpec::func("chain1", rec("chain1")).after("chain0"))
        .step(StepSpec::func("chain2", rec("chain2")).after("chain1"))
        .step(StepSpec::func("urgent", rec("urgent")).priority(Priority::Critical))
        .build(&o)
        .unwrap();
    // Timing off: the order comes from the default estimates only.
    let r = o
        .coordinate_systems_with(&wf, RunOptions::default().timing(false))
        .unwrap()
        .wait();
    assert!(r.is_success());
    assert_eq!(
        *order.lock().unwrap(),
        ["urgent", "chain0", "chain1", "chain2", "leaf", "low"]
    );
    o.set_scheduling_policy(pso_core::SchedulingPolicy::Fifo);
    order.lock().unwrap().clear();
    let _ = o
        .coordinate_systems_with(&wf, RunOptions::default().timing(false))
        .unwrap()
        .wait();
    assert_eq!(order.lock().unwrap()[..3], ["urgent", "leaf", "chain0"]);
}

#[test]
fn estimates_are_learned_from_runs() {
    let o = orch(2);
    o.register(SystemSpec::new("PPO").operation("tune", |_| {
        std::thread::sleep(Duration::from_millis(3));
        Ok(Value::Null)
    }))
    .unwrap();
    o.activate_system("PPO").unwrap();
    let wf = Workflow::builder("learn")
        .step(StepSpec::op("t", "PPO", "tune"))
        .build(&o)
        .unwrap();
    for _ in 0..5 {
        assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
    }
    let est = o.estimates();
    assert_eq!(est.len(), 1);
    assert_eq!((est[0].key.as_str(), est[0].samples), ("PPO.tune", 5));
    assert!(
        est[0].mean >= Duration::from_millis(3) && est[0].mean < Duration::from_secs(1),
        "{:?}",
        est[0]
    );
    let per_step = wf.estimates();
    assert!(per_step[0].1 >= Duration::from_millis(2), "{per_step:?}");
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert!(r.step("t").unwrap().ran >= Duration::from_millis(3));
}

#[test]
fn invalid_workflows_are_rejected_naming_the_step() {
    let o = orch(1);
    o.register(SystemSpec::new("PSec").operation("scan", |_| Ok(Value::Null)))
        .unwrap();
    let err = |b: pso_core::WorkflowBuilder| b.build(&o).unwrap_err();
    let e = err(Workflow::builder("w").step(StepSpec::op("s", "Nope", "scan")));
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            ErrorKind::NotFound,
            "workflow 'w': step 's' uses unknown system 'Nope'".into()
        )
    );
    let e = err(Workflow::builder("w").step(StepSpec::op("s", "PSec", "sacn")));
    assert_eq!(
        e.to_string(),
        "workflow 'w': step 's' uses unknown operation 'sacn' of system 'PSec' (it has: scan)"
    );
    let e =
        err(Workflow::builder("w")
            .step(StepSpec::func("a", |_| Ok(Value::Null)).input("x", "ghost")));
    assert_eq!(
        e.to_string(),
        "workflow 'w': step 'a' refers to unknown step 'ghost'"
    );
    let e = err(Workflow::builder("w")
        .step(StepSpec::func("a", |_| Ok(Value::Null)))
        .step(StepSpec::func("a", |_| Ok(Value::Null))));
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let e = err(Workflow::builder("w")
        .step(StepSpec::func("a", |_| Ok(Value::Null)).after("c"))
        .step(StepSpec::func("b", |_| Ok(Value::Null)).after("a"))
        .step(StepSpec::func("c", |_| Ok(Value::Null)).input("x", "b"))
        .step(StepSpec::func("d", |_| Ok(Value::Null)).after("c")));
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            ErrorKind::Cycle,
            "workflow 'w': dependency cycle a -> b -> c -> a".into()
        )
    );
    // Systems must be Active to run.
    let wf = Workflow::builder("w")
        .step(StepSpec::op("s", "PSec", "scan"))
        .build(&o)
        .unwrap();
    let e = o.coordinate_systems(&wf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotActive);
    assert_eq!(
        e.to_string(),
        "cannot run workflow 'w': step 's' uses system 'PSec', which is Registered (activate it first)"
    );
    // A workflow of another orchestrator.
    let other = orch(1);
    assert!(matches!(
        other.coordinate_systems(&wf).unwrap_err(),
        WorkflowError::ForeignWorkflow { .. }
    ));
    // An empty workflow succeeds at once.
    let empty = Workflow::builder("empty").build(&o).unwrap();
    let r = o.coordinate_systems(&empty).unwrap().wait();
    assert!(r.is_success() && r.counts().accepted == 0);
}

#[test]
fn definitions_load_from_toml_and_json() {
    let o = orch(2);
    o.register(
        SystemSpec::new("PBOS")
            .operation("build", |_| Ok(Value::from("artifact.tar")))
            .operation("publish", |ctx| {
                Ok(Value::from(format!(
                    "published {}",
                    ctx.input("artifact").unwrap().as_str().unwrap()
                )))
            }),
    )
    .unwrap();
    o.activate_system("PBOS").unwrap();
    let toml = r#"
name = "release"
[[steps]]
name = "build"
system = "PBOS"
op = "build"
retries = 2
[[steps]]
name = "publish"
system = "PBOS"
op = "publish"
inputs = { artifact = "build" }
when = "build"
timeout_ms = 5000
"#;
    let wf = o.load_workflow_str(toml, TopologyFormat::Toml).unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(
        r.output("publish"),
        Some(&Value::from("published artifact.tar"))
    );
    let json = r#"{"name": "j", "steps": [{"name": "b", "system": "PBOS", "op": "build"}]}"#;
    assert!(
        o.coordinate_systems(&o.load_workflow_str(json, TopologyFormat::Json).unwrap())
            .unwrap()
            .wait()
            .is_success()
    );
    let e = o
        .load_workflow_str(
            "name = \"x\"\n[[steps]]\nname = \"a\"\nsystem = \"PBOS\"\nopp = \"build\"\n",
            TopologyFormat::Toml,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Parse);
    assert!(e.to_string().starts_with("<string>:5:1: "), "{e}");
    let e = o.load_workflow_str("{\"name\": \"x\", \"steps\": [{\"name\": \"a\", \"system\": \"PBOS\", \"op\": \"nope\"}]}", TopologyFormat::Json).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// A minimal executor: the handle is a runtime-agnostic `Future`.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn run_handles_are_futures_and_can_be_polled_or_waited_with_a_timeout() {
    let o = orch(2);
    let wf = Workflow::builder("sleepy")
        .step(StepSpec::func("nap", |_| {
            std::thread::sleep(Duration::from_millis(40));
            Ok(Value::from("rested"))
        }))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    assert!(run.try_result().is_none());
    assert!(run.wait_timeout(Duration::from_millis(1)).is_none());
    let r = block_on(run.clone());
    assert_eq!(r.output("nap"), Some(&Value::from("rested")));
    assert!(run.try_result().is_some());
    assert!(run.wait_timeout(Duration::ZERO).is_some());
    assert!(r.elapsed() >= Duration::from_millis(40));
}

#[test]
fn closing_cancels_runs_in_flight() {
    let o = orch(2);
    let wf = Workflow::builder("long")
        .step(StepSpec::func("spin", |ctx| {
            let t = Instant::now();
            while !ctx.is_cancelled() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(Value::Null)
        }))
        .step(StepSpec::func("after", |_| Ok(Value::Null)).after("spin"))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let t = Instant::now();
    o.close();
    assert!(t.elapsed() < Duration::from_secs(5));
    let r = run
        .wait_timeout(Duration::from_secs(5))
        .expect("the run ended");
    assert_eq!(r.state(), RunState::Cancelled);
    assert_eq!(r.step_state("after"), Some(StepState::Cancelled));
    assert_accounted(&r);
    assert_eq!(
        o.coordinate_systems(&wf).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

/// Runs started while another thread closes either fail with `Closed` or
/// end (cancelled or finished): none is left with jobs queued after the
/// workers exited (a waiter hung forever on that once, in the C stress
/// test).
#[test]
fn runs_started_while_closing_all_end() {
    for round in 0..500 {
        let o = orch(2);
        let wf = Workflow::builder("racing")
            .step(StepSpec::func("a", |_| Ok(Value::Int(1))))
            .step(StepSpec::func("b", |_| Ok(Value::Int(2))))
            .step(
                StepSpec::func("c", |_| Ok(Value::Null))
                    .after("a")
                    .after("b"),
            )
            .build(&o)
            .unwrap();
        let started = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    loop {
                        match o.coordinate_systems(&wf) {
                            Ok(run) => {
                                started.fetch_add(1, Ordering::Relaxed);
                                let r = run
                                    .wait_timeout(Duration::from_secs(10))
                                    .unwrap_or_else(|| panic!("round {round}: a run never ended"));
                                assert_accounted(&r);
                            }
                            Err(e) => {
                                assert_eq!(e.kind(), ErrorKind::Closed);
                                return;
                            }
                        }
                    }
                });
            }
            while started.load(Ordering::Relaxed) < 3 {
                std::thread::yield_now();
            }
            o.close();
        });
    }
}

/// A built workflow runs many times; runs on one orchestrator may overlap.
#[test]
fn many_runs_of_one_workflow_in_parallel() {
    let o = orch(2);
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let mut b = Workflow::builder("diamond");
    b.add(StepSpec::func("top", |ctx| Ok(ctx.run_input().clone())));
    for i in 0..8 {
        b.add(
            StepSpec::func(format!("mid{i}"), |ctx| {
                Ok(Value::from(int(ctx.input("v").unwrap()) + 1))
            })
            .input("v", "top"),
        );
    }
    let mut bottom = StepSpec::func("bottom", move |ctx| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(Value::from(
            ctx.inputs().iter().map(|(_, v)| int(v)).sum::<i64>(),
        ))
    });
    for i in 0..8 {
        bottom = bottom.input(format!("m{i}"), format!("mid{i}"));
    }
    let wf = b.step(bottom).build(&o).unwrap();
    let runs: Vec<_> = (0..200)
        .map(|i| {
            (
                i,
                o.coordinate_systems_with(&wf, RunOptions::with_input(i))
                    .unwrap(),
            )
        })
        .collect();
    for (i, run) in runs {
        let r = run.wait();
        assert_eq!(r.output("bottom"), Some(&Value::from(8 * (i + 1))));
        assert_accounted(&r);
    }
    assert_eq!(count.load(Ordering::SeqCst), 200);
}

/// A million steps with 1% panicking and 1% failing handlers: every step
/// runs exactly once and ends in exactly one terminal state.
#[test]
fn soak_a_million_steps_with_panics_and_failures() {
    const N: usize = if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    };
    let o = orch(2);
    let calls: Arc<Vec<std::sync::atomic::AtomicU8>> = Arc::new(
        (0..N)
            .map(|_| std::sync::atomic::AtomicU8::new(0))
            .collect(),
    );
    let mut b = Workflow::builder("soak");
    for i in 0..N {
        let calls = calls.clone();
        b.add(StepSpec::func(format!("s{i}"), move |_| {
            calls[i].fetch_add(1, Ordering::Relaxed);
            match i % 100 {
                0 => panic!("step {i} panics"),
                1 => Err(HandlerError::failed("fails")),
                _ => Ok(Value::Null),
            }
        }));
    }
    let wf = b.build(&o).unwrap();
    let r = o
        .coordinate_systems_with(&wf, RunOptions::default().timing(false))
        .unwrap()
        .wait();
    let c = r.counts();
    assert_eq!(c.accepted, N);
    assert_eq!(c.succeeded, N - N / 50);
    assert_eq!(c.failed, N / 50);
    assert_eq!(c.terminal(), N);
    let wrong: Vec<usize> = (0..N)
        .filter(|&i| calls[i].load(Ordering::Relaxed) != 1)
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "steps not run exactly once: {wrong:?}");
}

/// Idle workers park: over a second of idleness, the worker threads use
/// (almost) no CPU. Measured per thread from /proc, so other tests running in
/// this process do not count.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_orchestrator_uses_no_cpu() {
    fn worker_ticks(prefix: &str) -> u64 {
        let mut total = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the `(comm)`: state is field 3; utime, stime are 14, 15.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            total += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        }
        total
    }
    let o = Orchestrator::builder()
        .workers(2)
        .thread_name("idleprobe")
        .build()
        .unwrap();
    let wf = Workflow::builder("w")
        .step(StepSpec::func("s", |_| Ok(Value::Null)))
        .build(&o)
        .unwrap();
    assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
    std::thread::sleep(Duration::from_millis(200)); // past the spin phase
    let before = worker_ticks("idleprobe");
    std::thread::sleep(Duration::from_secs(1));
    let used = worker_ticks("idleprobe") - before;
    // Clock ticks are 10 ms: allow one tick of rounding over one second.
    assert!(used <= 1, "idle workers used {used} ticks in 1 s");
    // And they still wake up for new work.
    assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
}

#[test]
fn steps_run_inside_the_worker_scope_and_an_unreadable_file_is_an_io_error() {
    thread_local! { static IN_SCOPE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }
    let entered = Arc::new(AtomicUsize::new(0));
    let e = entered.clone();
    let o = Orchestrator::builder()
        .workers(2)
        .worker_scope(Arc::new(move |run: &mut (dyn FnMut() + Send)| {
            e.fetch_add(1, Ordering::SeqCst);
            IN_SCOPE.with(|s| s.set(true));
            run();
            IN_SCOPE.with(|s| s.set(false));
        }))
        .build()
        .unwrap();
    let mut b = Workflow::builder("scoped");
    for i in 0..64 {
        b = b.step(StepSpec::func(format!("s{i}"), |_| {
            Ok(Value::Bool(IN_SCOPE.with(|s| s.get())))
        }));
    }
    let r = o.coordinate_systems(&b.build(&o).unwrap()).unwrap().wait();
    assert_eq!(r.state(), RunState::Succeeded);
    for i in 0..64 {
        assert_eq!(r.output(&format!("s{i}")), Some(&Value::Bool(true)));
    }
    // Once per worker (the second may still be starting).
    let t = Instant::now();
    while entered.load(Ordering::SeqCst) < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(entered.load(Ordering::SeqCst), 2, "once per worker");
    let e = o.load_workflow("/nonexistent/workflow.toml").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with("cannot read workflow file /nonexistent/workflow.toml")
    );
}

#[test]
fn too_many_retries_are_rejected_when_building() {
    let o = orch(1);
    let e = Workflow::builder("w")
        .step(StepSpec::func("s", |_| Ok(Value::Null)).retries(pso_core::MAX_RETRIES + 1))
        .build(&o)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.to_string().contains("step 's' asks for 16777215 retries"),
        "{e}"
    );
}
