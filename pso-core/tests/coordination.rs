//! Coordination through the orchestrator: lifecycle events on the hub,
//! direct channels closed by deactivation, automatic promotion, meshes,
//! minimalist mode (run_minimal, idle deactivation, pinning), the state
//! store, and closing.

use std::thread;
use std::time::{Duration, Instant};

use pso_core::{
    CoordinationMode, ErrorKind, HandlerError, HubConfig, Orchestrator, PsoError, ResourceRequest,
    RunOptions, RunState, StepSpec, SubscribeOptions, SystemSpec, Value, Workflow,
};

fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.as_map().unwrap()[key].as_str().unwrap()
}

#[test]
fn lifecycle_transitions_are_published_on_the_hub() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    o.register(SystemSpec::new("db")).unwrap();
    o.register(SystemSpec::new("api").requires("db")).unwrap();
    o.register(SystemSpec::new("bad").on_activate(|_| Err(HandlerError::failed("no config"))))
        .unwrap();
    let sub = o.hub().subscribe_pull("pso.lifecycle.>").unwrap();
    o.activate_system("api").unwrap();
    let m1 = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    let m2 = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(m1.topic(), "pso.lifecycle.db.activated");
    assert_eq!(m2.topic(), "pso.lifecycle.api.activated");
    assert_eq!(field(m2.payload(), "target"), "api");
    assert_eq!(field(m2.payload(), "action"), "activate");
    o.deactivate_system("db").unwrap();
    let order: Vec<String> = (0..2)
        .map(|_| {
            sub.recv_timeout(Duration::from_secs(5))
                .unwrap()
                .topic()
                .to_owned()
        })
        .collect();
    assert_eq!(
        order,
        [
            "pso.lifecycle.api.deactivated",
            "pso.lifecycle.db.deactivated"
        ]
    );
    assert!(o.activate_system("bad").is_err());
    let m = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(m.topic(), "pso.lifecycle.bad.failed");
    assert!(field(m.payload(), "error").contains("no config"));
    o.activate_system("api").unwrap();
    let order: Vec<String> = (0..2)
        .map(|_| {
            sub.recv_timeout(Duration::from_secs(5))
                .unwrap()
                .topic()
                .to_owned()
        })
        .collect();
    assert_eq!(
        order,
        ["pso.lifecycle.db.activated", "pso.lifecycle.api.activated"]
    );
    // Activating an active system publishes nothing (events are queued
    // before the call returns, so nothing can still be on its way).
    o.activate_system("api").unwrap();
    assert!(sub.try_recv().unwrap().is_none());
}

#[test]
fn lifecycle_events_are_built_only_while_someone_listens_under_pso_lifecycle() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    o.register(SystemSpec::new("db")).unwrap();
    o.register(SystemSpec::new("api").requires("db")).unwrap();
    let lifecycle_topics = |o: &Orchestrator| -> Vec<String> {
        o.performance_metrics()
            .topics
            .into_iter()
            .map(|t| t.topic)
            .filter(|t| t.starts_with("pso.lifecycle."))
            .collect()
    };
    // Nobody listens (an unrelated subscription does not count): nothing is
    // published, so the hub has no series for those topics.
    let other = o.hub().subscribe_pull("pso.alert.>").unwrap();
    o.activate_system("api").unwrap();
    o.deactivate_system("db").unwrap();
    assert_eq!(lifecycle_topics(&o), Vec::<String>::new());
    assert!(other.try_recv().unwrap().is_none());
    // A wildcard that covers them is a listener.
    let sub = o.hub().subscribe_pull("*.lifecycle.*.activated").unwrap();
    o.activate_system("api").unwrap();
    let got: Vec<String> = (0..2)
        .map(|_| {
            sub.recv_timeout(Duration::from_secs(5))
                .unwrap()
                .topic()
                .to_owned()
        })
        .collect();
    assert_eq!(
        got,
        ["pso.lifecycle.db.activated", "pso.lifecycle.api.activated"]
    );
    assert_eq!(
        lifecycle_topics(&o),
        ["pso.lifecycle.api.activated", "pso.lifecycle.db.activated"]
    );
    // Once it is gone, events stop again.
    drop(sub);
    o.deactivate_system("db").unwrap();
    assert!(
        lifecycle_topics(&o)
            .iter()
            .all(|t| t.ends_with(".activated"))
    );
}

#[test]
fn a_direct_channel_closes_when_either_side_is_deactivated() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    o.register(SystemSpec::new("PAES")).unwrap();
    o.register(SystemSpec::new("PPO")).unwrap();
    o.activate_all().unwrap();
    o.hub()
        .open_direct("PAES", "PPO", "declared for speed")
        .unwrap();
    let mut paes = o.hub().endpoint("PAES", "PPO").unwrap();
    let mut ppo = o.hub().endpoint("PPO", "PAES").unwrap();
    paes.try_send(Value::Int(1)).unwrap();
    assert_eq!(ppo.try_recv().unwrap(), Some(Value::Int(1)));
    assert_eq!(
        o.coordination_status().mode("PAES", "PPO"),
        CoordinationMode::Direct
    );
    assert_eq!(o.coordination_status().mode, "direct");
    o.deactivate_system("PPO").unwrap();
    assert!(paes.is_closed() && ppo.is_closed());
    let back = paes.try_send(Value::Int(2)).unwrap_err();
    assert_eq!(
        back.into_value(),
        Value::Int(2),
        "the value comes back to publish"
    );
    let st = o.coordination_status();
    assert_eq!(st.mode("PAES", "PPO"), CoordinationMode::Hierarchical);
    assert_eq!(st.mode, "hierarchical");
}

#[test]
fn hot_pairs_are_promoted_automatically_with_their_reason() {
    let o = Orchestrator::builder()
        .workers(2)
        .hub_config(
            HubConfig::new()
                .promote_threshold(200.0)
                .demote_threshold(1.0)
                .rate_window(Duration::from_millis(100)),
        )
        .auto_promote(Duration::from_millis(20))
        .build()
        .unwrap();
    let _sub = o
        .hub()
        .subscribe_with(
            "orders.*",
            SubscribeOptions::new().owner("PPO").capacity(100_000),
            |_m| Ok(()),
        )
        .unwrap();
    let st = o.coordination_status();
    assert_eq!(st.auto_promote_every, Some(Duration::from_millis(20)));
    let end = Instant::now() + Duration::from_secs(10);
    while o.coordination_status().mode("PAES", "PPO") != CoordinationMode::Direct {
        assert!(Instant::now() < end, "never promoted");
        for _ in 0..50 {
            o.hub()
                .publish_from("PAES", "orders.new", Value::Int(1))
                .unwrap();
        }
        thread::sleep(Duration::from_millis(1));
    }
    let st = o.coordination_status();
    let change = st
        .changes
        .iter()
        .rev()
        .find(|c| c.to == CoordinationMode::Direct)
        .unwrap();
    assert!(
        change.reason.contains("promotion threshold"),
        "{}",
        change.reason
    );
    assert!(
        st.edges
            .iter()
            .any(|e| e.from == "PAES" && e.to == "PPO" && e.routed > 0)
    );
}

#[test]
fn a_mesh_gives_every_pair_a_channel_until_it_ends() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    let mesh = o.hub().mesh(&["a", "b", "c"]).unwrap();
    let st = o.coordination_status();
    assert_eq!(st.mode, "mesh");
    assert_eq!(st.mode("a", "c"), CoordinationMode::Mesh);
    assert_eq!(st.meshes.len(), 1);
    drop(mesh);
    let st = o.coordination_status();
    assert_eq!(st.mode, "hierarchical");
    assert_eq!(st.mode("a", "c"), CoordinationMode::Hierarchical);
}

fn minimal_orch(idle: Duration) -> Orchestrator {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    o.register(SystemSpec::new("store")).unwrap();
    o.register(SystemSpec::new("index").requires("store"))
        .unwrap();
    o.register(SystemSpec::new("unrelated")).unwrap();
    o.register(SystemSpec::new("cache").pinned(true)).unwrap();
    o.set_operation("index", "search", |ctx| Ok(ctx.input_value()))
        .unwrap();
    o.set_idle_timeout(Some(idle));
    o
}

#[test]
fn run_minimal_activates_only_what_the_task_needs_and_idle_systems_stop_again() {
    let o = minimal_orch(Duration::from_millis(80));
    o.activate_system("cache").unwrap();
    let wf = Workflow::builder("q")
        .step(StepSpec::op("s", "index", "search"))
        .build(&o)
        .unwrap();
    // Not active: a plain run refuses, run_minimal activates the closure.
    assert_eq!(
        o.coordinate_systems(&wf).unwrap_err().kind(),
        ErrorKind::NotActive
    );
    let r = o
        .run_minimal(&wf, RunOptions::with_input(Value::Int(7)))
        .unwrap()
        .wait();
    assert_eq!(r.state(), RunState::Succeeded);
    assert_eq!(r.output("s"), Some(&Value::Int(7)));
    let active = |n: &str| o.status(n).unwrap().state.is_active();
    assert!(active("index") && active("store"));
    assert!(
        !active("unrelated"),
        "only the closure of what the task uses"
    );
    let st = o.coordination_status();
    assert_eq!(st.mode, "minimalist");
    let m = st.minimalist.unwrap();
    assert_eq!(m.pinned, ["cache"]);
    // Idle longer than the timeout: deactivated, dependents first; the
    // pinned system stays.
    eventually("idle systems stop", || !active("index") && !active("store"));
    assert!(active("cache"));
    let m = o.coordination_status().minimalist.unwrap();
    let names: Vec<&str> = m.deactivated.iter().map(|d| d.system.as_str()).collect();
    assert_eq!(names, ["index", "store"]);
    assert!(m.deactivated.iter().all(|d| d.idle_secs >= 0.08));
}

#[test]
fn systems_in_use_or_holding_leases_or_required_by_busy_ones_are_not_idle() {
    let o = minimal_orch(Duration::from_millis(40));
    o.set_capacity("cpu", 4).unwrap();
    o.activate_system("index").unwrap();
    o.activate_system("unrelated").unwrap();
    let lease = o
        .allocate_resources("unrelated", &ResourceRequest::new().amount("cpu", 1))
        .unwrap();
    // A long run keeps index (and so store) in use.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    o.set_operation("index", "slow", move |_| {
        let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
        Ok(Value::Null)
    })
    .unwrap();
    let wf = Workflow::builder("long")
        .step(StepSpec::op("s", "index", "slow"))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    thread::sleep(Duration::from_millis(150));
    assert!(o.deactivate_idle().is_empty());
    for n in ["index", "store", "unrelated"] {
        assert!(o.status(n).unwrap().state.is_active(), "{n} stayed");
    }
    tx.send(()).unwrap();
    assert_eq!(run.wait().state(), RunState::Succeeded);
    drop(lease);
    eventually("all idle systems stop", || {
        ["index", "store", "unrelated"]
            .iter()
            .all(|n| !o.status(n).unwrap().state.is_active())
    });
    // Pinning and unpinning.
    o.pin_system("store", true).unwrap();
    o.activate_system("store").unwrap();
    thread::sleep(Duration::from_millis(120));
    assert!(o.status("store").unwrap().state.is_active());
    assert!(o.pin_system("ghost", true).is_err());
    o.set_idle_timeout(None);
    assert!(o.coordination_status().minimalist.is_none());
}

#[test]
fn run_minimal_reports_the_system_that_failed_to_activate() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    o.register(SystemSpec::new("db").on_activate(|_| Err(HandlerError::failed("disk full"))))
        .unwrap();
    o.register(SystemSpec::new("api").requires("db")).unwrap();
    o.set_operation("api", "get", |_| Ok(Value::Null)).unwrap();
    let wf = Workflow::builder("w")
        .step(StepSpec::op("g", "api", "get"))
        .build(&o)
        .unwrap();
    let e = o.run_minimal(&wf, RunOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HandlerFailed);
    let msg = e.to_string();
    assert!(
        msg.contains("activating 'api' failed") && msg.contains("disk full"),
        "{msg}"
    );
}

#[test]
fn the_state_store_is_shared_and_cas_loses_no_update() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let o = o.clone();
            thread::spawn(move || {
                for _ in 0..250 {
                    o.state()
                        .update("counter", |v| {
                            Value::Int(v.and_then(Value::as_int).unwrap_or(0) + 1)
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let e = o.state().get("counter").unwrap().unwrap();
    assert_eq!(*e.value, Value::Int(1000));
    assert_eq!(e.revision, o.state().revision());
}

#[test]
fn closing_the_orchestrator_closes_the_hub() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    let sub = o.hub().subscribe_pull("x.>").unwrap();
    o.hub().publish("x.y", Value::Null).unwrap();
    o.close();
    assert!(o.hub().is_closed());
    assert_eq!(
        o.hub().publish("x.y", Value::Null).unwrap_err().kind(),
        ErrorKind::Closed
    );
    drop(sub);
}
