//! Activation and deactivation semantics: ordering, parallelism, failure
//! propagation, timeouts, conflicts, re-entrancy and closing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pso_core::{
    ErrorKind, HandlerError, Handlers, LifecycleError, Orchestrator, Outcome, PsoError, SystemSpec,
    SystemState,
};

/// One handler call: system, which handler, start and end sequence numbers.
type Event = (String, &'static str, usize, usize);

/// Records the start and end sequence numbers of every handler call.
#[derive(Clone, Default)]
struct Journal {
    seq: Arc<AtomicUsize>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Journal {
    fn handlers(&self, name: &str) -> Handlers {
        let (a, d) = (self.clone(), self.clone());
        let (na, nd) = (name.to_owned(), name.to_owned());
        Handlers::new()
            .on_activate(move |_| {
                a.record(&na, "activate");
                Ok(())
            })
            .on_deactivate(move |_| {
                d.record(&nd, "deactivate");
                Ok(())
            })
    }

    fn record(&self, name: &str, what: &'static str) {
        let start = self.seq.fetch_add(1, Ordering::SeqCst);
        std::thread::yield_now();
        let end = self.seq.fetch_add(1, Ordering::SeqCst);
        self.events
            .lock()
            .unwrap()
            .push((name.to_owned(), what, start, end));
    }

    fn span(&self, name: &str, what: &str) -> (usize, usize) {
        let ev = self.events.lock().unwrap();
        let e = ev
            .iter()
            .rev()
            .find(|e| e.0 == name && e.1 == what)
            .unwrap_or_else(|| panic!("{name} never ran {what}"));
        (e.2, e.3)
    }

    fn ran(&self, name: &str, what: &str) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.0 == name && e.1 == what)
    }

    /// `first` finished its `what` handler before `then` started its own.
    fn before(&self, first: &str, then: &str, what: &str) -> bool {
        self.span(first, what).1 < self.span(then, what).0
    }
}

fn orch(workers: usize) -> Orchestrator {
    Orchestrator::builder().workers(workers).build().unwrap()
}

/// db <- cache, db <- api (requires), api wants cache, web requires api.
fn web_stack(o: &Orchestrator, j: &Journal) {
    for name in ["db", "cache", "api", "web"] {
        let spec = match name {
            "db" => SystemSpec::new("db"),
            "cache" => SystemSpec::new("cache").requires("db"),
            "api" => SystemSpec::new("api").requires("db").wants("cache"),
            _ => SystemSpec::new("web").requires("api"),
        };
        o.register(spec.handlers(j.handlers(name))).unwrap();
    }
}

#[test]
fn activation_follows_dependencies_and_reports_levels() {
    let (o, j) = (orch(2), Journal::default());
    web_stack(&o, &j);
    let plan = o.plan("web").unwrap();
    assert_eq!(
        plan.levels,
        vec![vec!["db"], vec!["cache"], vec!["api"], vec!["web"]]
    );
    let report = o.activate_system("web").unwrap();
    assert_eq!(report.activated(), ["db", "cache", "api", "web"]);
    assert!(j.before("db", "cache", "activate"));
    assert!(j.before("cache", "api", "activate"));
    assert!(j.before("api", "web", "activate"));
    let levels: Vec<usize> = report.outcomes.iter().map(|o| o.level).collect();
    assert_eq!(levels, [0, 1, 2, 3]);
    for s in o.system_status() {
        assert_eq!(s.state, SystemState::Active, "{}", s.name);
        let last = s.history.last().unwrap();
        assert_eq!((last.from.name(), last.to.name()), ("Activating", "Active"));
        assert_eq!(last.reason, "activate handler succeeded");
        assert!(
            s.history[0].reason.contains("activate_system(web)"),
            "{:?}",
            s.history[0]
        );
    }
}

#[test]
fn activating_a_leaf_does_not_touch_unrelated_systems() {
    let (o, j) = (orch(2), Journal::default());
    web_stack(&o, &j);
    o.register(SystemSpec::new("batch").handlers(j.handlers("batch")))
        .unwrap();
    let report = o.activate_system("cache").unwrap();
    assert_eq!(report.activated(), ["db", "cache"]);
    assert!(!j.ran("batch", "activate") && !j.ran("api", "activate"));
    assert_eq!(o.status("api").unwrap().state, SystemState::Registered);
}

#[test]
fn activation_is_idempotent() {
    let (o, j) = (orch(2), Journal::default());
    web_stack(&o, &j);
    o.activate_system("web").unwrap();
    let runs = j.events.lock().unwrap().len();
    let again = o.activate_system("web").unwrap();
    assert!(again.was_noop());
    assert!(matches!(
        again.outcome("web").unwrap().outcome,
        Outcome::AlreadyActive
    ));
    assert_eq!(j.events.lock().unwrap().len(), runs, "no handler ran again");
    // A partly active closure only activates what is missing.
    let o2 = orch(2);
    let j2 = Journal::default();
    web_stack(&o2, &j2);
    o2.activate_system("cache").unwrap();
    let r = o2.activate_system("web").unwrap();
    assert_eq!(r.activated(), ["api", "web"]);
    assert_eq!(o2.plan("web").unwrap().levels.len(), 0);
}

/// Two systems of one level must run at the same time: each handler waits
/// (bounded) until both have started. With sequential execution the first
/// would time out waiting for the second.
#[test]
fn systems_of_one_level_run_in_parallel_on_pool_threads() {
    let o = orch(2);
    let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
    let threads = Arc::new(Mutex::new(Vec::new()));
    for name in ["left", "right"] {
        let (gate, threads) = (gate.clone(), threads.clone());
        o.register(SystemSpec::new(name).on_activate(move |_| {
            threads
                .lock()
                .unwrap()
                .push(std::thread::current().name().unwrap_or("").to_owned());
            let (lock, cv) = &*gate;
            let mut started = lock.lock().unwrap();
            *started += 1;
            cv.notify_all();
            let deadline = Instant::now() + Duration::from_secs(10);
            while *started < 2 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("the other system of my level never started".into());
                }
                started = cv.wait_timeout(started, left).unwrap().0;
            }
            Ok(())
        }))
        .unwrap();
    }
    o.register(SystemSpec::new("top").requires("left").requires("right"))
        .unwrap();
    let report = o.activate_system("top").unwrap();
    assert_eq!(report.activated().len(), 3);
    let threads = threads.lock().unwrap();
    assert!(
        threads.iter().all(|t| t.starts_with("pso-worker-")),
        "{threads:?}"
    );
}

#[test]
fn failed_requirement_blocks_dependents_and_names_the_chain() {
    let o = orch(2);
    o.register(SystemSpec::new("PDT")).unwrap();
    o.register(
        SystemSpec::new("PSec")
            .requires("PDT")
            .on_activate(|_| panic!("scan handler exploded")),
    )
    .unwrap();
    o.register(SystemSpec::new("PBOS").requires("PSec"))
        .unwrap();
    o.register(SystemSpec::new("PTMS").requires("PBOS"))
        .unwrap();
    let err = o.activate_system("PTMS").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HandlerFailed);
    let msg = err.to_string();
    assert_eq!(
        msg,
        "cannot activate PTMS: PTMS requires PBOS, PBOS requires PSec, which failed: handler panicked: scan handler exploded"
    );
    match &err {
        LifecycleError::ActivationFailed {
            chain,
            cause,
            report,
            ..
        } => {
            assert_eq!(chain, &["PTMS", "PBOS", "PSec"]);
            assert!(
                matches!(cause, HandlerError::Panicked { message } if message == "scan handler exploded")
            );
            assert!(matches!(
                report.outcome("PDT").unwrap().outcome,
                Outcome::Activated
            ));
            assert!(matches!(
                report.outcome("PSec").unwrap().outcome,
                Outcome::Failed { .. }
            ));
            match &report.outcome("PBOS").unwrap().outcome {
                Outcome::Blocked { chain } => assert_eq!(chain, &["PBOS", "PSec"]),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(o.status("PDT").unwrap().state, SystemState::Active);
    assert!(o.status("PSec").unwrap().state.is_failed());
    assert_eq!(o.status("PBOS").unwrap().state, SystemState::Registered);
    let why = o.why_inactive("PBOS").unwrap();
    assert!(
        why.starts_with("PBOS is Registered: it requires PSec, which Failed at "),
        "{why}"
    );
    assert!(
        why.ends_with("with 'activate handler failed: handler panicked: scan handler exploded'"),
        "{why}"
    );
    let why = o.why_inactive("PTMS").unwrap();
    assert!(
        why.starts_with(
            "PTMS is Registered: it requires PBOS, which requires PSec, which Failed at "
        ),
        "{why}"
    );
    assert!(
        o.status("PBOS")
            .unwrap()
            .last_error
            .unwrap()
            .contains("PBOS requires PSec, which failed")
    );
}

#[test]
fn failed_want_does_not_block() {
    let o = orch(2);
    o.register(SystemSpec::new("metrics").on_activate(|_| Err("exporter port in use".into())))
        .unwrap();
    o.register(SystemSpec::new("db")).unwrap();
    o.register(SystemSpec::new("api").requires("db").wants("metrics"))
        .unwrap();
    let report = o.activate_system("api").unwrap();
    assert_eq!(report.activated(), ["db", "api"]);
    let failures = report.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].system, "metrics");
    assert_eq!(failures[0].error.as_deref(), Some("exporter port in use"));
    assert!(o.status("metrics").unwrap().state.is_failed());
    assert_eq!(o.status("api").unwrap().state, SystemState::Active);
}

#[test]
fn a_failed_system_can_be_activated_again() {
    let o = orch(1);
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    o.register(SystemSpec::new("flaky").on_activate(move |_| {
        if a.fetch_add(1, Ordering::SeqCst) == 0 {
            Err("first try fails".into())
        } else {
            Ok(())
        }
    }))
    .unwrap();
    assert!(o.activate_system("flaky").is_err());
    assert!(o.status("flaky").unwrap().state.is_failed());
    o.activate_system("flaky").unwrap();
    let s = o.status("flaky").unwrap();
    assert_eq!(s.state, SystemState::Active);
    assert_eq!(
        s.last_error.as_deref(),
        Some("activate handler failed: first try fails")
    );
    let moves: Vec<_> = s.history.iter().map(|t| t.to.name()).collect();
    assert_eq!(moves, ["Activating", "Failed", "Activating", "Active"]);
}

#[test]
fn handler_overrunning_its_timeout_fails_and_late_result_is_ignored() {
    let o = orch(2);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = Mutex::new(tx);
    o.register(
        SystemSpec::new("slow")
            .timeout(Duration::from_millis(50))
            .on_activate(move |ctx| {
                let start = Instant::now();
                while !ctx.abandoned() && start.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = tx.lock().unwrap().send(());
                Ok(())
            }),
    )
    .unwrap();
    o.register(SystemSpec::new("user").requires("slow"))
        .unwrap();
    let t = Instant::now();
    let err = o.activate_system("user").unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the call waited for the handler"
    );
    assert_eq!(
        err.to_string(),
        "cannot activate user: user requires slow, which failed: handler timed out after 50ms"
    );
    let report = err.report().unwrap();
    assert!(
        matches!(report.outcome("slow").unwrap().outcome, Outcome::TimedOut { after } if after == Duration::from_millis(50))
    );
    assert!(matches!(
        report.outcome("user").unwrap().outcome,
        Outcome::Blocked { .. }
    ));
    // The handler saw `abandoned()` and returned; its success is ignored.
    rx.recv_timeout(Duration::from_secs(10))
        .expect("handler noticed it was abandoned");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = o.status("slow").unwrap();
        assert!(
            s.state.is_failed(),
            "a late success must not revive it: {:?}",
            s.state
        );
        if s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("result ignored"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "late completion never noted");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn conflicts_are_enforced_before_anything_runs() {
    let (o, j) = (orch(2), Journal::default());
    o.register(SystemSpec::new("blue").handlers(j.handlers("blue")))
        .unwrap();
    o.register(
        SystemSpec::new("green")
            .conflicts("blue")
            .handlers(j.handlers("green")),
    )
    .unwrap();
    o.register(
        SystemSpec::new("router")
            .requires("green")
            .handlers(j.handlers("router")),
    )
    .unwrap();
    o.activate_system("blue").unwrap();
    let err = o.activate_system("router").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "cannot activate green: it conflicts with blue, which is Active"
    );
    assert!(!j.ran("router", "activate") && !j.ran("green", "activate"));
    let why = o.why_inactive("green").unwrap();
    assert_eq!(
        why,
        "green is Registered: it conflicts with blue, which is Active"
    );
    assert!(o.plan("router").is_err());
    o.deactivate_system("blue").unwrap();
    o.activate_system("router").unwrap();
    // Both sides of a conflict in one call.
    let o2 = orch(1);
    o2.register(SystemSpec::new("a")).unwrap();
    o2.register(SystemSpec::new("b").conflicts("a")).unwrap();
    o2.register(SystemSpec::new("both").wants("a").wants("b"))
        .unwrap();
    let err = o2.activate_system("both").unwrap_err();
    assert!(
        err.to_string()
            .contains("would be activated by the same call"),
        "{err}"
    );
    assert!(
        o2.system_status()
            .iter()
            .all(|s| s.state == SystemState::Registered)
    );
}

#[test]
fn deactivation_stops_dependents_first_and_leaves_wanters_running() {
    let (o, j) = (orch(2), Journal::default());
    web_stack(&o, &j);
    o.activate_system("web").unwrap();
    let report = o.deactivate_system("cache").unwrap();
    // api only *wants* cache: it keeps running.
    assert_eq!(report.deactivated(), ["cache"]);
    assert_eq!(o.status("api").unwrap().state, SystemState::Active);
    let report = o.deactivate_system("db").unwrap();
    assert_eq!(report.deactivated(), ["web", "api", "db"]);
    assert!(j.before("web", "api", "deactivate"));
    assert!(j.before("api", "db", "deactivate"));
    assert!(
        o.system_status()
            .iter()
            .all(|s| s.state == SystemState::Inactive)
    );
    let again = o.deactivate_system("db").unwrap();
    assert!(matches!(
        again.outcome("db").unwrap().outcome,
        Outcome::NotActive
    ));
    let why = o.why_inactive("api").unwrap();
    assert!(
        why.starts_with("api is Inactive since ") && why.contains("deactivate_system(db)"),
        "{why}"
    );
}

#[test]
fn failing_deactivate_handler_fails_the_system_but_dependents_still_stop() {
    let o = orch(2);
    o.register(SystemSpec::new("base").on_deactivate(|_| Err("flush failed".into())))
        .unwrap();
    o.register(SystemSpec::new("app").requires("base")).unwrap();
    o.activate_system("app").unwrap();
    let err = o.deactivate_system("base").unwrap_err();
    assert_eq!(err.to_string(), "deactivating base failed: flush failed");
    assert_eq!(err.report().unwrap().deactivated(), ["app"]);
    assert_eq!(o.status("app").unwrap().state, SystemState::Inactive);
    let base = o.status("base").unwrap();
    assert_eq!(
        base.state,
        SystemState::Failed {
            reason: "deactivate handler failed: flush failed".into()
        }
    );
}

#[test]
fn activate_all_and_deactivate_all() {
    let (o, j) = (orch(2), Journal::default());
    web_stack(&o, &j);
    o.register(SystemSpec::new("batch").handlers(j.handlers("batch")))
        .unwrap();
    let report = o.activate_all().unwrap();
    assert_eq!(report.target, "*");
    assert_eq!(report.activated().len(), 5);
    assert!(o.system_status().iter().all(|s| s.state.is_active()));
    let report = o.deactivate_all().unwrap();
    assert_eq!(report.deactivated().len(), 5);
    assert!(j.before("web", "api", "deactivate") && j.before("cache", "db", "deactivate"));
    // A failure anywhere fails activate_all, with every outcome in the report.
    o.register(SystemSpec::new("broken").on_activate(|_| Err("nope".into())))
        .unwrap();
    let err = o.activate_all().unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot activate all systems: broken failed: nope"
    );
    assert_eq!(err.report().unwrap().activated().len(), 5);
}

#[test]
fn lifecycle_calls_from_a_lifecycle_handler_are_refused_not_deadlocked() {
    let o = orch(2);
    let seen = Arc::new(Mutex::new(None));
    let (inner, s) = (o.clone(), seen.clone());
    o.register(SystemSpec::new("other")).unwrap();
    o.register(SystemSpec::new("nested").on_activate(move |_| {
        // Reading status is fine; starting a lifecycle call is not.
        assert_eq!(
            inner.status("nested").unwrap().state,
            SystemState::Activating
        );
        *s.lock().unwrap() = Some(
            inner
                .activate_system("other")
                .map(|_| ())
                .map_err(|e| (e.kind(), e.to_string())),
        );
        Ok(())
    }))
    .unwrap();
    o.activate_system("nested").unwrap();
    let got = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        got,
        Err((
            ErrorKind::Busy,
            "activate_system called from inside a lifecycle handler; it would wait for itself"
                .into()
        ))
    );
    o.close(); // breaks the handler -> orchestrator reference cycle
}

#[test]
fn systems_without_handlers_activate_and_panics_never_kill_workers() {
    let o = orch(1);
    for i in 0..50 {
        let spec = SystemSpec::new(format!("s{i}"));
        let spec = if i % 2 == 0 {
            spec.on_activate(move |_| panic!("boom {i}"))
        } else {
            spec
        };
        o.register(spec).unwrap();
    }
    let err = o.activate_all().unwrap_err();
    let report = err.report().unwrap();
    assert_eq!(report.activated().len(), 25);
    assert_eq!(report.failures().len(), 25);
    // The single worker survived every panic.
    o.register(SystemSpec::new("after")).unwrap();
    o.activate_system("after").unwrap();
}

#[test]
fn unknown_names_and_closed_orchestrators() {
    let o = orch(1);
    for err in [
        o.activate_system("ghost").unwrap_err(),
        o.deactivate_system("ghost").unwrap_err(),
        o.plan("ghost").unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.to_string(), "unknown system 'ghost'");
    }
    assert_eq!(
        o.why_inactive("ghost").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(o.status("ghost").unwrap_err().kind(), ErrorKind::NotFound);
    o.register(SystemSpec::new("a")).unwrap();
    o.close();
    o.close();
    assert!(o.is_closed());
    assert_eq!(
        o.activate_system("a").unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(o.activate_all().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(
        o.register(SystemSpec::new("b")).unwrap_err().kind(),
        ErrorKind::Closed
    );
    // Reads still work after close.
    assert_eq!(o.system_status().len(), 1);
}

#[test]
fn builder_rejects_bad_settings() {
    assert_eq!(
        Orchestrator::builder()
            .workers(0)
            .build()
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        Orchestrator::builder()
            .transition_timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let o = Orchestrator::builder().workers(3).build().unwrap();
    assert_eq!(o.workers(), 3);
    let e = Orchestrator::builder()
        .workers(pso_core::MAX_WORKERS + 1)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn many_threads_using_one_orchestrator() {
    let o = orch(2);
    for i in 0..40 {
        o.register(SystemSpec::new(format!("n{i}")).on_activate(|_| Ok(())))
            .unwrap();
        if i > 0 {
            o.connect(
                &format!("n{i}"),
                pso_core::EdgeKind::Requires,
                &format!("n{}", i - 1),
            )
            .unwrap();
        }
    }
    std::thread::scope(|s| {
        for t in 0..4 {
            let o = &o;
            s.spawn(move || {
                for k in 0..20 {
                    let name = format!("n{}", (t * 7 + k * 3) % 40);
                    if k % 3 == 0 {
                        let _ = o.deactivate_system(&name).unwrap();
                    } else {
                        let _ = o.activate_system(&name).unwrap();
                    }
                    let status = o.system_status();
                    // Invariant: an Active system's requirements are Active.
                    for st in &status {
                        if st.state.is_active() {
                            for r in &st.requires {
                                let dep = status.iter().find(|x| &x.name == r).unwrap();
                                assert!(
                                    matches!(
                                        dep.state,
                                        SystemState::Active | SystemState::Deactivating
                                    ),
                                    "{} active but {} is {:?}",
                                    st.name,
                                    r,
                                    dep.state
                                );
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Counts drops of the closures that capture it.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Regression: `set_handlers` dropped the old closures while holding the
/// registry lock, so a closure whose drop calls back into the orchestrator
/// (a C `free_user_data`, a Python finalizer) deadlocked.
#[test]
fn replaced_handlers_are_dropped_outside_the_registry_lock() {
    struct CallsBack(Orchestrator);
    impl Drop for CallsBack {
        fn drop(&mut self) {
            let _ = self.0.system_status();
        }
    }
    let o = orch(1);
    o.register(SystemSpec::new("a")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let o2 = o.clone();
    std::thread::spawn(move || {
        let cb = CallsBack(o2.clone());
        o2.set_handlers(
            "a",
            Handlers::new().on_activate(move |_| {
                let _keep = &cb;
                Ok(())
            }),
        )
        .unwrap();
        o2.set_handlers("a", Handlers::new()).unwrap();
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("set_handlers deadlocked dropping the old closure");
}

/// Regression: a finished transaction could keep handler closures alive for a
/// moment after the lifecycle call returned.
#[test]
fn lifecycle_calls_release_handler_closures_before_returning() {
    let o = orch(2);
    o.register(SystemSpec::new("dep")).unwrap();
    o.register(SystemSpec::new("s").requires("dep")).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    for round in 1..=300 {
        let (a, d) = (DropCounter(drops.clone()), DropCounter(drops.clone()));
        o.set_handlers(
            "s",
            Handlers::new()
                .on_activate(move |_| {
                    let _keep = &a;
                    Ok(())
                })
                .on_deactivate(move |_| {
                    let _keep = &d;
                    Ok(())
                }),
        )
        .unwrap();
        o.activate_system("s").unwrap();
        o.deactivate_system("dep").unwrap();
        o.set_handlers("s", Handlers::new()).unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2 * round,
            "round {round}: a closure outlived the calls"
        );
    }
}

/// Regression: the re-entrancy guard was per thread, so a handler of one
/// orchestrator could not drive another one.
#[test]
fn a_handler_may_drive_another_orchestrator() {
    let inner = orch(1);
    inner
        .register(SystemSpec::new("leaf").on_activate(|_| Ok(())))
        .unwrap();
    let outer = orch(1);
    let i2 = inner.clone();
    outer
        .register(SystemSpec::new("root").on_activate(move |_| {
            i2.activate_system("leaf")
                .map(|_| ())
                .map_err(|e| HandlerError::failed(e.to_string()))
        }))
        .unwrap();
    outer.activate_system("root").unwrap();
    assert_eq!(inner.status("leaf").unwrap().state, SystemState::Active);
    outer.close();
}

/// A handler that gives up because it was abandoned does not bury the
/// timeout message under a note about its own late result.
#[test]
fn a_handler_giving_up_after_abandonment_keeps_the_timeout_message() {
    let o = orch(1);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = Mutex::new(tx);
    o.register(
        SystemSpec::new("stuck")
            .timeout(Duration::from_millis(30))
            .on_activate(move |ctx| {
                while !ctx.abandoned() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = tx.lock().unwrap().send(());
                Err(HandlerError::TimedOut {
                    after: Duration::from_millis(30),
                })
            }),
    )
    .unwrap();
    o.activate_system("stuck").unwrap_err();
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(20)); // let the worker record its late result
    assert_eq!(
        o.status("stuck").unwrap().last_error.as_deref(),
        Some("activate handler timed out after 30ms")
    );
}
