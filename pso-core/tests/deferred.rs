//! Deferred step results: steps whose function returns before the result is
//! known hold no worker, keep their slot, and end exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pso_core::{
    Completion, HandlerError, Orchestrator, RunState, StepSpec, StepState, SystemSpec, Value,
    Workflow,
};

fn orch(workers: usize) -> Orchestrator {
    Orchestrator::builder().workers(workers).build().unwrap()
}

/// A step function that defers and sends its completion (and input) away.
fn deferring(
    tx: mpsc::Sender<(Completion, Value)>,
) -> impl Fn(&pso_core::StepContext<'_>) -> Result<Value, HandlerError> + Send + Sync + 'static {
    let tx = Mutex::new(tx);
    move |ctx| {
        let c = ctx.defer()?;
        tx.lock().unwrap().send((c, ctx.input_value())).unwrap();
        Ok(Value::Null)
    }
}

#[test]
fn deferred_steps_hold_no_worker_and_their_results_flow_on() {
    // One worker, ten deferred steps: all ten start before any completes,
    // so none of them holds the worker while it waits.
    let o = orch(1);
    let (tx, rx) = mpsc::channel();
    let mut b = Workflow::builder("w");
    for i in 0..10 {
        b = b.step(StepSpec::func(format!("d{i}"), deferring(tx.clone())));
    }
    let mut sum = StepSpec::func("sum", |ctx| {
        Ok(Value::Int(
            ctx.inputs().iter().map(|(_, v)| v.as_int().unwrap()).sum(),
        ))
    });
    for i in 0..10 {
        sum = sum.input(format!("x{i}"), format!("d{i}"));
    }
    let wf = b.step(sum).build(&o).unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    let mut pending: Vec<Completion> = (0..10).map(|_| rx.recv().unwrap().0).collect();
    assert!(run.try_result().is_none());
    // Complete from another thread, in reverse order.
    thread::spawn(move || {
        while let Some(c) = pending.pop() {
            let n = c.step_name()[1..].parse::<i64>().unwrap();
            assert!(!c.is_cancelled());
            assert!(c.complete(Ok(Value::Int(n))));
        }
    })
    .join()
    .unwrap();
    let r = run.wait();
    assert_eq!(r.state(), RunState::Succeeded, "{r:?}");
    assert_eq!(r.output("sum"), Some(&Value::Int(45)));
    assert_eq!(r.output("d3"), Some(&Value::Int(3)));
}

#[test]
fn a_completion_used_before_the_function_returns_is_kept() {
    let o = orch(2);
    let wf = Workflow::builder("w")
        .step(StepSpec::func("early", |ctx| {
            let c = ctx.defer()?;
            let t = thread::spawn(move || c.complete(Ok(Value::from("early"))));
            assert!(t.join().unwrap(), "stored for the function's return");
            Ok(Value::from("ignored"))
        }))
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.output("early"), Some(&Value::from("early")));
}

#[test]
fn the_function_failing_after_deferring_wins_and_a_dropped_completion_fails_the_step() {
    let o = orch(2);
    let kept = Arc::new(Mutex::new(None));
    let k = kept.clone();
    let wf = Workflow::builder("w")
        .step(StepSpec::func("fails", move |ctx| {
            *k.lock().unwrap() = Some(ctx.defer()?);
            Err(HandlerError::failed("boom"))
        }))
        .step(StepSpec::func("dropped", |ctx| {
            drop(ctx.defer()?);
            Ok(Value::Null)
        }))
        .step(StepSpec::func("twice", |ctx| {
            let c = ctx.defer()?;
            let e = ctx.defer().unwrap_err();
            c.complete(Ok(Value::from(e.to_string())));
            Ok(Value::Null)
        }))
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.error("fails").as_deref(), Some("boom"));
    let c = kept.lock().unwrap().take().unwrap();
    assert!(
        !c.complete(Ok(Value::Null)),
        "ignored: the attempt already failed"
    );
    assert_eq!(
        r.error("dropped").as_deref(),
        Some("the step's completion was dropped without a result")
    );
    assert_eq!(
        r.output("twice"),
        Some(&Value::from("the step already deferred its result"))
    );
}

#[test]
fn deferred_errors_are_retried_and_timeouts_still_apply() {
    let o = orch(2);
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let (tx, rx) = mpsc::channel::<Completion>();
    let tx = Mutex::new(tx);
    let wf = Workflow::builder("w")
        .step(
            StepSpec::func("flaky", move |ctx| {
                let c = ctx.defer()?;
                let n = a.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    c.complete(if n < 2 {
                        Err(HandlerError::failed("not yet"))
                    } else {
                        Ok(Value::Int(n as i64))
                    })
                });
                Ok(Value::Null)
            })
            .retries(3),
        )
        .step(
            StepSpec::func("slow", move |ctx| {
                tx.lock().unwrap().send(ctx.defer()?).unwrap();
                Ok(Value::Null)
            })
            .timeout(Duration::from_millis(30)),
        )
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.output("flaky"), Some(&Value::Int(2)));
    assert_eq!(r.step("flaky").unwrap().attempts, 3);
    assert_eq!(r.step("slow").unwrap().state, StepState::TimedOut);
    let c = rx.recv().unwrap();
    assert!(c.is_cancelled());
    assert!(!c.complete(Ok(Value::Null)));
}

#[test]
fn a_deferred_step_keeps_its_concurrency_slot_until_completed() {
    let o = orch(2);
    o.register(SystemSpec::new("svc")).unwrap();
    let (tx, rx) = mpsc::channel::<Completion>();
    let tx = Mutex::new(tx);
    o.set_operation("svc", "op", move |ctx| {
        tx.lock().unwrap().send(ctx.defer()?).unwrap();
        Ok(Value::Null)
    })
    .unwrap();
    o.set_concurrency_limit("svc", Some(1)).unwrap();
    o.activate_system("svc").unwrap();
    let wf = Workflow::builder("w")
        .step(StepSpec::op("a", "svc", "op"))
        .step(StepSpec::op("b", "svc", "op"))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    let first = rx.recv().unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "the second step waits for the slot"
    );
    first.complete(Ok(Value::Null));
    let second = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    second.complete(Ok(Value::Null));
    assert_eq!(run.wait().state(), RunState::Succeeded);
}

#[test]
fn cancelling_a_run_ends_its_running_steps_cancelled_and_conditions_see_no_cancellation() {
    let o = orch(2);
    let (tx, rx) = mpsc::channel::<Completion>();
    let tx = Mutex::new(tx);
    let (started_tx, started) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let wf = Workflow::builder("w")
        .step(
            StepSpec::func("deferred", move |ctx| {
                tx.lock().unwrap().send(ctx.defer()?).unwrap();
                Ok(Value::Null)
            })
            .when(|ctx| !ctx.is_cancelled()),
        )
        .step(StepSpec::func("polling", move |ctx| {
            started_tx.lock().unwrap().send(()).unwrap();
            let t = Instant::now();
            while !ctx.is_cancelled() && t.elapsed() < Duration::from_secs(10) {
                thread::sleep(Duration::from_millis(1));
            }
            Err(HandlerError::failed("stopped"))
        }))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    let c = rx.recv().unwrap();
    started.recv().unwrap();
    assert!(!c.is_cancelled());
    assert!(run.cancel());
    assert!(c.is_cancelled());
    c.complete(Err(HandlerError::failed("gave up")));
    let r = run.wait();
    assert_eq!(r.state(), RunState::Cancelled);
    assert_eq!(r.step("deferred").unwrap().state, StepState::Cancelled);
    assert_eq!(r.step("polling").unwrap().state, StepState::Cancelled);
    assert_eq!(r.error("polling").as_deref(), Some("stopped"));
}

#[test]
fn conditions_and_children_cannot_defer() {
    let o = orch(1);
    let wf = Workflow::builder("w")
        .step(StepSpec::func("s", |_| Ok(Value::Null)).when(|ctx| ctx.defer().is_err()))
        .step(StepSpec::func("fan", |ctx| {
            ctx.fan_out([pso_core::Child::func(Value::Null, |c| {
                c.defer().map(|_| Value::Null)
            })])
            .map(|_| Value::Null)
        }))
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(
        r.step("s").unwrap().state,
        StepState::Succeeded,
        "the condition held"
    );
    let e = r.step("fan[0]").unwrap().error.unwrap();
    assert!(e.contains("only a step's own function can defer"), "{e}");
}

#[test]
fn cancel_hooks_fire_once_on_cancel_or_timeout_and_are_dropped_when_the_step_ends() {
    let o = orch(2);
    let fired = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, rx) = mpsc::channel::<Completion>();
    let tx = Mutex::new(tx);
    let f1 = fired.clone();
    let f2 = fired.clone();
    let f3 = fired.clone();
    let wf = Workflow::builder("w")
        .step(StepSpec::func("waits", move |ctx| {
            let c = ctx.defer()?;
            let f = f1.clone();
            c.on_cancel(move || f.lock().unwrap().push("waits".into()));
            tx.lock().unwrap().send(c).unwrap();
            Ok(Value::Null)
        }))
        .step(
            StepSpec::func("times-out", move |ctx| {
                let f = f2.clone();
                let (done_tx, done_rx) = mpsc::channel();
                ctx.cancel_token().on_cancel(move || {
                    f.lock().unwrap().push("times-out".into());
                    let _ = done_tx.send(());
                });
                // Returns once the hook ran (the timeout told it to stop).
                done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
                Ok(Value::Null)
            })
            .timeout(Duration::from_millis(20)),
        )
        .step(StepSpec::func("quick", move |ctx| {
            let f = f3.clone();
            ctx.cancel_token()
                .on_cancel(move || f.lock().unwrap().push("quick".into()));
            Ok(Value::Null)
        }))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    let c = rx.recv().unwrap();
    // Wait for "times-out" to have timed out.
    let t = Instant::now();
    while !fired.lock().unwrap().contains(&"times-out".to_owned()) {
        assert!(t.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(1));
    }
    assert!(run.cancel());
    // Already cancelled: a new hook runs at once.
    let f = fired.clone();
    c.on_cancel(move || f.lock().unwrap().push("late".into()));
    c.complete(Err(HandlerError::failed("stopped")));
    let r = run.wait();
    assert_eq!(r.step("quick").unwrap().state, StepState::Succeeded);
    let mut got = fired.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        ["late", "times-out", "waits"],
        "each once; quick's dropped"
    );
}

#[test]
fn a_fallible_condition_fails_its_step_and_cancels_dependents() {
    let o = orch(1);
    let wf = Workflow::builder("w")
        .step(
            StepSpec::func("checked", |_| Ok(Value::Null))
                .when_try(|_| Err(HandlerError::failed("cannot decide"))),
        )
        .step(StepSpec::func("after", |_| Ok(Value::Null)).after("checked"))
        .step(StepSpec::func("yes", |_| Ok(Value::Int(1))).when_try(|_| Ok(true)))
        .step(StepSpec::func("no", |_| Ok(Value::Int(1))).when_try(|_| Ok(false)))
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.step("checked").unwrap().state, StepState::Failed);
    assert_eq!(r.error("checked").as_deref(), Some("cannot decide"));
    assert!(matches!(
        r.handler_error("checked"),
        Some(HandlerError::Failed { message }) if message == "cannot decide"
    ));
    assert!(r.handler_error("yes").is_none());
    assert_eq!(r.step("after").unwrap().state, StepState::Cancelled);
    assert_eq!(r.step("yes").unwrap().state, StepState::Succeeded);
    assert_eq!(r.step("no").unwrap().state, StepState::Skipped);
}

#[test]
fn a_cancel_token_kept_after_its_run_does_not_keep_the_run_alive() {
    // A host object (a Python traceback, a JS closure) may keep a step's
    // token long after the run: it must not pin the run, its workflow and
    // the workflow's step functions.
    let o = orch(2);
    let marker = Arc::new(());
    let kept: Arc<Mutex<Option<pso_core::CancelToken>>> = Arc::new(Mutex::new(None));
    let wf = {
        let (marker, kept) = (marker.clone(), kept.clone());
        Workflow::builder("keeps")
            .step(StepSpec::func("s", move |ctx| {
                let _pin = &marker;
                *kept.lock().unwrap() = Some(ctx.cancel_token());
                assert!(!ctx.cancel_token().is_cancelled(), "live while it runs");
                Ok(Value::Null)
            }))
            .build(&o)
            .unwrap()
    };
    let run = o.coordinate_systems(&wf).unwrap();
    assert!(run.wait().is_success());
    drop(run);
    drop(wf);
    let token = kept.lock().unwrap().take().unwrap();
    // Workers may still be letting go of the run's last references.
    let end = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&marker) > 1 && Instant::now() < end {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        Arc::strong_count(&marker),
        1,
        "the token kept the run (and its workflow) alive"
    );
    assert!(
        token.is_cancelled(),
        "a token of a run that is gone reads cancelled"
    );
    token.on_cancel(|| panic!("never runs: the run is gone"));
}
