//! Health probes, watchdogs, supervision (policies, strategies, backoff,
//! intensity, giving up), flap detection and alerts — on a virtual clock,
//! deterministically and without sleeping (and one real-time smoke test).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pso_core::{
    HandlerError, HealthCheck, HealthReport, HealthStatus, Orchestrator, RestartPolicy,
    RestartStrategy, Subscription, Supervision, SystemSpec, SystemState, Value, VirtualClock,
};

const S: Duration = Duration::from_secs(1);

fn orch(clock: &VirtualClock) -> Orchestrator {
    Orchestrator::builder()
        .workers(2)
        .virtual_clock(clock.clone())
        .alert_interval(Duration::ZERO)
        .build()
        .unwrap()
}

/// A system that counts its activations.
fn counted(name: &str, n: &Arc<AtomicUsize>) -> SystemSpec {
    let n = n.clone();
    SystemSpec::new(name).on_activate(move |_| {
        n.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

fn sup() -> Supervision {
    Supervision::new(RestartPolicy::OnFailure)
        .backoff(S, Duration::from_secs(8))
        .jitter(false)
        .intensity(3, Duration::from_secs(60))
        .reset_after(Duration::from_secs(30))
}

fn state(o: &Orchestrator, s: &str) -> SystemState {
    o.status(s).unwrap().state
}

/// Alert kinds received so far (`pso.alert.<system>.<kind>`).
fn alerts(sub: &Subscription) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = sub.try_recv().unwrap() {
        out.push(m.topic().trim_start_matches("pso.alert.").to_owned());
    }
    out
}

#[test]
fn an_unhealthy_system_is_restarted_after_its_backoff() {
    let clock = VirtualClock::new();
    let o = orch(&clock);
    let healthy = Arc::new(AtomicBool::new(true));
    let h = healthy.clone();
    let starts = Arc::new(AtomicUsize::new(0));
    o.register(
        counted("db", &starts)
            .health_check(
                HealthCheck::probe(move |_| {
                    Ok(if h.load(Ordering::SeqCst) {
                        HealthReport::healthy()
                    } else {
                        HealthReport::unhealthy("connection refused")
                    })
                })
                .interval(S)
                .failures_before_unhealthy(2),
            )
            .supervise(sup()),
    )
    .unwrap();
    let sub = o.hub().subscribe_pull("pso.alert.>").unwrap();
    o.activate_system("db").unwrap();
    clock.advance(S * 3);
    assert_eq!(o.status("db").unwrap().health.unwrap().probes, 3);
    healthy.store(false, Ordering::SeqCst);
    clock.advance(S); // one failure: not yet unhealthy
    assert_eq!(
        o.status("db").unwrap().health.unwrap().status,
        HealthStatus::Healthy
    );
    clock.advance(S); // two: unhealthy, restart in 1 s
    let st = o.status("db").unwrap();
    assert_eq!(st.health.as_ref().unwrap().status, HealthStatus::Unhealthy);
    assert_eq!(st.supervision.as_ref().unwrap().next_attempt_in, Some(S));
    assert_eq!(alerts(&sub), ["db.unhealthy", "db.restarting"]);
    // The probe due with the restart still fails (the same incident: no
    // second restart is scheduled).
    clock.advance(S);
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(starts.load(Ordering::SeqCst), 2, "restarted once");
    assert_eq!(state(&o, "db"), SystemState::Active);
    let st = o.status("db").unwrap();
    assert_eq!(
        st.health.unwrap().status,
        HealthStatus::Healthy,
        "starts over healthy"
    );
    let sv = st.supervision.unwrap();
    assert_eq!(
        (sv.restarts, sv.recent_failures, sv.failures_left),
        (1, 1, 3)
    );
    assert_eq!(sv.next_attempt_in, None);
    assert_eq!(alerts(&sub), ["db.restarted"]);
}

#[test]
fn too_many_failures_within_the_window_give_up_with_growing_backoff() {
    let clock = VirtualClock::new();
    let o = orch(&clock);
    let starts = Arc::new(AtomicUsize::new(0));
    o.register(counted("flaky", &starts).supervise(sup()))
        .unwrap();
    let sub = o.hub().subscribe_pull("pso.>").unwrap();
    o.activate_system("flaky").unwrap();
    let mut delays = Vec::new();
    for _ in 0..3 {
        o.report_failure("flaky", "segfault").unwrap();
        assert!(state(&o, "flaky").is_failed());
        let wait = o
            .status("flaky")
            .unwrap()
            .supervision
            .unwrap()
            .next_attempt_in
            .unwrap();
        delays.push(wait);
        clock.advance(wait);
        assert_eq!(state(&o, "flaky"), SystemState::Active);
    }
    assert_eq!(delays, [S, S * 2, S * 4], "exponential backoff");
    o.report_failure("flaky", "segfault").unwrap();
    clock.advance(Duration::ZERO);
    let st = o.status("flaky").unwrap();
    assert!(
        matches!(st.state, SystemState::GaveUp { .. }),
        "{:?}",
        st.state
    );
    assert!(st.supervision.unwrap().gave_up);
    assert_eq!(starts.load(Ordering::SeqCst), 4);
    let topics: Vec<String> = std::iter::from_fn(|| sub.try_recv().unwrap())
        .map(|m| m.topic().to_owned())
        .collect();
    assert!(
        topics.contains(&"pso.alert.flaky.gave_up".to_owned()),
        "{topics:?}"
    );
    assert!(topics.contains(&"pso.lifecycle.flaky.gave_up".to_owned()));
    // It stays down; activating by hand works and starts over.
    clock.advance(S * 100);
    assert!(matches!(state(&o, "flaky"), SystemState::GaveUp { .. }));
    assert!(
        o.why_inactive("flaky")
            .unwrap()
            .contains("supervisor stopped restarting it")
    );
    o.activate_system("flaky").unwrap();
    assert_eq!(state(&o, "flaky"), SystemState::Active);
}

#[test]
fn a_crash_stops_its_dependents_and_its_recovery_restarts_them() {
    let clock = VirtualClock::new();
    let o = orch(&clock);
    let (db, api) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    o.register(counted("db", &db).supervise(sup())).unwrap();
    o.register(counted("api", &api).requires("db")).unwrap();
    o.register(SystemSpec::new("web").requires("api")).unwrap();
    o.activate_system("web").unwrap();
    o.report_failure("db", "out of memory").unwrap();
    clock.advance(Duration::ZERO); // the supervisor stops what requires it
    assert!(state(&o, "db").is_failed());
    assert_eq!(state(&o, "api"), SystemState::Inactive);
    assert_eq!(state(&o, "web"), SystemState::Inactive);
    clock.advance(S); // restart
    clock.advance(Duration::ZERO); // and bring the dependents back
    for s in ["db", "api", "web"] {
        assert_eq!(state(&o, s), SystemState::Active, "{s}");
    }
    assert_eq!(
        (db.load(Ordering::SeqCst), api.load(Ordering::SeqCst)),
        (2, 2)
    );
}

#[test]
fn never_only_reports_and_unsupervised_unhealthy_systems_stay_up() {
    let clock = VirtualClock::new();
    let o = orch(&clock);
    o.register(SystemSpec::new("a").supervise(Supervision::new(RestartPolicy::Never)))
        .unwrap();
    o.register(
        SystemSpec::new("b").health_check(
            HealthCheck::probe(|_| Err(HandlerError::failed("disk full")))
                .interval(S)
                .failures_before_unhealthy(1),
        ),
    )
    .unwrap();
    let sub = o.hub().subscribe_pull("pso.alert.>").unwrap();
    o.activate_all().unwrap();
    o.report_failure("a", "boom").unwrap();
    clock.advance(S * 10);
    assert!(state(&o, "a").is_failed(), "never restarted");
    assert_eq!(state(&o, "b"), SystemState::Active, "unhealthy but up");
    let h = o.status("b").unwrap().health.unwrap();
    assert_eq!(
        (h.status, h.detail.as_str()),
        (HealthStatus::Unhealthy, "disk full")
    );
    assert_eq!(alerts(&sub), ["a.failed", "b.unhealthy"]);
    assert!(o.report_failure("a", "again").is_err(), "not Active");
}

#[test]
fn a_missed_watchdog_deadline_is_a_failure_and_check_ins_keep_it_alive() {
    let clock = VirtualClock::new();
    let o = orch(&clock);
    let starts = Arc::new(AtomicUsize::new(0));
    o.register(
        counted("worker", &starts)
            .health_check(HealthCheck::watchdog_only(S * 5))
            .supervise(sup()),
    )
    .unwrap();
    o.activate_system("worker").unwrap();
    for _ in 0..5 {
        clock.advance(S * 4);
        o.check_in("worker").unwrap();
    }
    assert_eq!(starts.load(Ordering::SeqCst), 1, "check-ins kept it alive");
    assert_eq!(
        o.status("worker").unwrap().health.unwrap().since_check_in,
        Some(Duration::ZERO)
    );
    clock.advance(S * 5); // missed
    let h = o.status("worker").unwrap().health.unwrap();
    assert_eq!(h.status, HealthStatus::Unhealthy);
    assert!(
        h.detail.contains("missed its watchdog deadline"),
        "{}",
        h.detail
    );
    clock.advance(S);
    assert_eq!(starts.load(Ordering::SeqCst), 2, "restarted");
}

#[test]
fn flapping_suppresses_alerts_until_a_quiet_window() {
    let clock = VirtualClock::new();
    let o = Orchestrator::builder()
        .workers(2)
        .virtual_clock(clock.clone())
        .flap_detection(4, Duration::from_secs(20))
        .alert_interval(Duration::ZERO)
        .build()
        .unwrap();
    let flip = Arc::new(AtomicUsize::new(0));
    let f = flip.clone();
    o.register(
        SystemSpec::new("link").health_check(
            HealthCheck::probe(move |_| {
                Ok(if f.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    HealthReport::unhealthy("down")
                } else {
                    HealthReport::healthy()
                })
            })
            .interval(S)
            .failures_before_unhealthy(1),
        ),
    )
    .unwrap();
    let sub = o.hub().subscribe_pull("pso.alert.>").unwrap();
    o.activate_system("link").unwrap();
    clock.advance(S * 10);
    let got = alerts(&sub);
    assert_eq!(
        got,
        [
            "link.unhealthy",
            "link.recovered",
            "link.unhealthy",
            "link.flapping"
        ],
        "then suppressed"
    );
    assert!(o.status("link").unwrap().health.unwrap().flapping);
    // Steady from now on: flapping ends after a quiet window.
    o.set_health_check(
        "link",
        Some(HealthCheck::probe(|_| Ok(HealthReport::healthy())).interval(S)),
    )
    .unwrap();
    clock.advance(S * 40);
    assert!(alerts(&sub).contains(&"link.flapping_ended".to_owned()));
    assert!(!o.status("link").unwrap().health.unwrap().flapping);
}

#[test]
fn rest_for_one_restarts_dependents_and_one_for_all_the_component() {
    for (strategy, expect) in [
        (RestartStrategy::OneForOne, [2, 1, 1]),
        (RestartStrategy::RestForOne, [2, 2, 1]),
        (RestartStrategy::OneForAll, [2, 2, 2]),
    ] {
        let clock = VirtualClock::new();
        let o = orch(&clock);
        let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        o.register(counted("base", &counts[2])).unwrap();
        o.register(
            counted("mid", &counts[0])
                .requires("base")
                .health_check(
                    HealthCheck::probe(|_| Ok(HealthReport::unhealthy("stuck")))
                        .interval(S)
                        .failures_before_unhealthy(1),
                )
                .supervise(sup().strategy(strategy)),
        )
        .unwrap();
        o.register(counted("top", &counts[1]).wants("mid")).unwrap();
        o.activate_system("top").unwrap();
        clock.advance(S); // unhealthy
        clock.advance(S); // restart due (the probe fails again: pending)
        let got: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        assert_eq!(got, expect, "{strategy:?}: activations of mid, top, base");
        for s in ["base", "mid", "top"] {
            assert_eq!(state(&o, s), SystemState::Active, "{strategy:?} {s}");
        }
    }
}

#[test]
fn always_brings_a_dependent_back_when_its_requirement_returns() {
    let clock = VirtualClock::new();
    let o = orch(&clock);
    o.register(SystemSpec::new("db")).unwrap();
    o.register(
        SystemSpec::new("cache")
            .requires("db")
            .supervise(Supervision::new(RestartPolicy::Always)),
    )
    .unwrap();
    o.register(
        SystemSpec::new("report")
            .requires("db")
            .supervise(Supervision::new(RestartPolicy::OnFailure)),
    )
    .unwrap();
    o.activate_all().unwrap();
    o.deactivate_system("db").unwrap();
    assert_eq!(state(&o, "cache"), SystemState::Inactive);
    o.activate_system("db").unwrap();
    clock.advance(Duration::ZERO);
    assert_eq!(
        state(&o, "cache"),
        SystemState::Active,
        "Always: back with db"
    );
    assert_eq!(
        state(&o, "report"),
        SystemState::Inactive,
        "OnFailure: a stop is not a failure"
    );
}

#[test]
fn a_failing_activation_is_retried_with_backoff_until_it_succeeds() {
    let clock = VirtualClock::new();
    let o = orch(&clock);
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    o.register(
        SystemSpec::new("net")
            .on_activate(move |_| {
                if t.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(HandlerError::failed("port busy"))
                } else {
                    Ok(())
                }
            })
            .supervise(sup()),
    )
    .unwrap();
    assert!(o.activate_system("net").is_err());
    clock.advance(S); // attempt 2 fails
    assert!(state(&o, "net").is_failed());
    clock.advance(S * 2); // attempt 3 succeeds
    assert_eq!(state(&o, "net"), SystemState::Active);
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    // Stable for reset_after: the next failure starts the backoff over.
    clock.advance(S * 31);
    o.report_failure("net", "reset by peer").unwrap();
    assert_eq!(
        o.status("net")
            .unwrap()
            .supervision
            .unwrap()
            .next_attempt_in,
        Some(S)
    );
}

#[test]
fn repeated_alerts_are_deduplicated_within_the_interval() {
    let clock = VirtualClock::new();
    let o = Orchestrator::builder()
        .workers(2)
        .virtual_clock(clock.clone())
        .alert_interval(S * 10)
        .build()
        .unwrap();
    o.register(SystemSpec::new("x").supervise(Supervision::new(RestartPolicy::Never)))
        .unwrap();
    let sub = o.hub().subscribe_pull("pso.alert.x.failed").unwrap();
    for _ in 0..3 {
        o.activate_system("x").unwrap();
        o.report_failure("x", "crash").unwrap();
        clock.advance(S);
    }
    clock.advance(S * 10);
    o.activate_system("x").unwrap();
    o.report_failure("x", "crash").unwrap();
    let msgs: Vec<Value> = std::iter::from_fn(|| sub.try_recv().unwrap())
        .map(|m| m.payload().clone())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[1].as_map().unwrap()["suppressed"], Value::Int(2));
}

#[test]
fn real_time_probes_run_on_workers_and_time_out() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    let hang = Arc::new(Mutex::new(()));
    let guard = hang.lock().unwrap();
    let h = hang.clone();
    o.register(
        SystemSpec::new("slow").health_check(
            HealthCheck::probe(move |_| {
                let _wait = h.lock().unwrap();
                Ok(HealthReport::healthy())
            })
            .interval(Duration::from_millis(10))
            .timeout(Duration::from_millis(20))
            .failures_before_unhealthy(1),
        ),
    )
    .unwrap();
    o.activate_system("slow").unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = o.status("slow").unwrap().health.unwrap();
        if h.status == HealthStatus::Unhealthy {
            assert!(
                h.detail.starts_with("no answer within 20ms"),
                "{}",
                h.detail
            );
            break;
        }
        assert!(std::time::Instant::now() < end, "never timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(guard);
    o.close();
}

#[test]
fn checks_and_supervision_set_on_an_already_active_system_take_effect_at_once() {
    let clock = VirtualClock::new();
    let o = orch(&clock);
    let starts = Arc::new(AtomicUsize::new(0));
    o.register(counted("db", &starts)).unwrap();
    o.register(SystemSpec::new("worker")).unwrap();
    o.activate_all().unwrap();
    // Set after activation, on systems that had no monitor.
    o.set_supervision("db", Some(sup())).unwrap();
    o.set_health_check(
        "db",
        Some(
            HealthCheck::probe(|_| Ok(HealthReport::unhealthy("disk full")))
                .interval(S)
                .failures_before_unhealthy(2),
        ),
    )
    .unwrap();
    o.set_health_check("worker", Some(HealthCheck::watchdog_only(S * 5)))
        .unwrap();
    clock.advance(S);
    assert_eq!(o.status("db").unwrap().health.unwrap().probes, 1);
    clock.advance(S);
    assert_eq!(
        o.status("db").unwrap().health.unwrap().status,
        HealthStatus::Unhealthy
    );
    clock.advance(S);
    assert_eq!(starts.load(Ordering::SeqCst), 2, "supervised: restarted");
    o.check_in("worker").unwrap();
    clock.advance(S * 6);
    let h = o.status("worker").unwrap().health.unwrap();
    assert_eq!(h.status, HealthStatus::Unhealthy, "the watchdog is armed");
}
