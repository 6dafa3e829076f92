//! Coordination intelligence: learned patterns (and their snapshot),
//! insights, recommendations of every kind, optimize_coordination with its
//! reversible log, and evolve_coordination keeping what helps and reverting
//! what hurts.

use std::thread;
use std::time::Duration;

use pso_core::{
    Action, Guardrails, HandlerError, HubConfig, Orchestrator, RunState, SchedulingPolicy,
    StepSpec, StrategyChange, SubscribeOptions, SystemSpec, Trial, Value, Workflow,
    WorkflowBuilder,
};

fn sleep_op(ms: u64) -> impl Fn(&pso_core::StepContext<'_>) -> Result<Value, HandlerError> {
    move |_| {
        thread::sleep(Duration::from_millis(ms));
        Ok(Value::Null)
    }
}

/// A long chain beside many short independent steps; the short ones are
/// declared first, so FIFO runs them first and the chain last.
fn skewed(o: &Orchestrator, chain: usize, chain_ms: u64, short: usize, short_ms: u64) -> Workflow {
    let mut b: WorkflowBuilder = Workflow::builder("skewed");
    for i in 0..short {
        b = b.step(StepSpec::op(format!("s{i}"), "fast", "short"));
    }
    for i in 0..chain {
        let mut s = StepSpec::op(format!("c{i}"), "slow", "long");
        if i > 0 {
            s = s.after(format!("c{}", i - 1));
        }
        b = b.step(s);
    }
    let _ = (chain_ms, short_ms);
    b.build(o).unwrap()
}

fn skewed_orch(policy: SchedulingPolicy, chain_ms: u64, short_ms: u64) -> Orchestrator {
    let o = Orchestrator::builder()
        .workers(2)
        .scheduling_policy(policy)
        .build()
        .unwrap();
    o.register(SystemSpec::new("fast")).unwrap();
    o.register(SystemSpec::new("slow")).unwrap();
    o.set_operation("fast", "short", sleep_op(short_ms))
        .unwrap();
    o.set_operation("slow", "long", sleep_op(chain_ms)).unwrap();
    o.activate_all().unwrap();
    o
}

#[test]
fn patterns_learn_durations_failures_edges_and_co_activation_and_survive_a_snapshot() {
    let o = Orchestrator::builder().workers(2).build().unwrap();
    o.register(SystemSpec::new("db")).unwrap();
    o.register(SystemSpec::new("api")).unwrap();
    o.set_operation("db", "read", sleep_op(5)).unwrap();
    o.set_operation("api", "serve", |ctx| {
        if ctx.input_value() == Value::Int(3) {
            Err(HandlerError::failed("bad input"))
        } else {
            Ok(Value::Null)
        }
    })
    .unwrap();
    o.activate_all().unwrap();
    let wf = Workflow::builder("req")
        .step(StepSpec::op("read", "db", "read"))
        .step(StepSpec::op("serve", "api", "serve"))
        .build(&o)
        .unwrap();
    for i in 0..4 {
        let r = o
            .coordinate_systems_with(&wf, pso_core::RunOptions::with_input(Value::Int(i)))
            .unwrap()
            .wait();
        assert_eq!(r.state() == RunState::Succeeded, i != 3);
    }
    let _sub = o
        .hub()
        .subscribe_with(
            "db.events",
            SubscribeOptions::new().owner("api"),
            |_| Ok(()),
        )
        .unwrap();
    for _ in 0..10 {
        o.hub()
            .publish_from("db", "db.events", Value::Null)
            .unwrap();
    }
    let p = o.learn_patterns();
    let read = p.operations.iter().find(|x| x.key == "db.read").unwrap();
    assert_eq!(read.samples, 4);
    assert!(read.mean >= Duration::from_millis(5), "{:?}", read.mean);
    let serve = p.operations.iter().find(|x| x.key == "api.serve").unwrap();
    assert_eq!((serve.recent_steps, serve.recent_failures), (4, 1));
    assert!((serve.failure_rate - 0.25).abs() < 1e-9);
    let co = &p.co_activation[0];
    assert_eq!((co.a.as_str(), co.b.as_str()), ("api", "db"));
    assert!(co.together >= 5, "4 runs and the activation: {co:?}");
    let edge = p
        .edges
        .iter()
        .find(|e| e.from == "db" && e.to == "api")
        .unwrap();
    assert_eq!(edge.messages, 10);
    assert!(p.to_json().contains("\"failure_rate\":0.25"));

    // A snapshot carries them: a new host starts warm.
    let dir = std::env::temp_dir().join(format!("pso-patterns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("snap.json");
    o.snapshot(&file).unwrap();
    let fresh = Orchestrator::builder().workers(1).build().unwrap();
    assert!(fresh.estimates().is_empty());
    fresh.restore(&file).unwrap();
    let est = fresh.estimates();
    let e = est.iter().find(|e| e.key == "db.read").unwrap();
    assert_eq!(e.samples, 4);
    assert_eq!(e.mean, read.mean);
    assert!(
        fresh
            .learn_patterns()
            .co_activation
            .iter()
            .any(|c| c.together >= 5)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn insights_show_the_critical_path_contributors_and_contention() {
    let o = skewed_orch(SchedulingPolicy::Fifo, 15, 5);
    o.set_concurrency_limit("fast", Some(1)).unwrap();
    let wf = skewed(&o, 3, 15, 6, 5);
    assert_eq!(
        o.coordinate_systems(&wf).unwrap().wait().state(),
        RunState::Succeeded
    );
    o.set_capacity("gpu", 1).unwrap();
    let _held = o
        .allocate_resources("slow", &pso_core::ResourceRequest::new().amount("gpu", 1))
        .unwrap();
    let _waiting = o
        .request_resources(&[("fast", &pso_core::ResourceRequest::new().amount("gpu", 1))])
        .unwrap();
    let i = o.coordination_insights();
    assert_eq!(i.runs, 1);
    let cp = &i.critical_paths[0];
    assert_eq!(cp.workflow, "skewed");
    let names: Vec<&str> = cp.steps.iter().map(|s| s.0.as_str()).collect();
    assert!(
        names.ends_with(&["c0", "c1", "c2"]) || names == ["c0", "c1", "c2"],
        "{names:?}"
    );
    assert!(
        cp.length >= 0.045 && cp.length <= cp.makespan + 1e-3,
        "{cp:?}"
    );
    let fast = i
        .contributors
        .iter()
        .find(|c| c.key == "fast.short")
        .unwrap();
    assert_eq!(fast.steps, 6);
    assert!(
        fast.waiting > 0.0,
        "steps waited for the one slot: {fast:?}"
    );
    assert!(fast.working >= 0.03);
    let gpu = &i.contention[0];
    assert_eq!((gpu.dimension.as_str(), gpu.waiters), ("gpu", 1));
    assert!((gpu.utilization - 1.0).abs() < 1e-9);
}

#[test]
fn a_skewed_workload_under_fifo_gets_a_critical_path_recommendation_that_applies_and_reverts() {
    let o = skewed_orch(SchedulingPolicy::Fifo, 20, 10);
    let wf = skewed(&o, 4, 20, 16, 10);
    for _ in 0..3 {
        o.coordinate_systems(&wf).unwrap().wait();
    }
    let recs = o.optimization_recommendations();
    let r = recs
        .iter()
        .find(|r| matches!(r.action, Action::SetSchedulingPolicy { .. }))
        .expect("a policy recommendation");
    assert_eq!(
        r.action,
        Action::SetSchedulingPolicy {
            from: SchedulingPolicy::Fifo,
            to: SchedulingPolicy::CriticalPath
        }
    );
    let gain: f64 = r
        .expected_gain
        .trim_end_matches("% shorter makespan")
        .parse()
        .unwrap();
    assert!(gain >= 15.0, "{r:?}");
    assert!(r.evidence.contains("under fifo"), "{}", r.evidence);
    let plan = o.optimize_coordination(true);
    assert!(plan.applied);
    let change = plan
        .changes
        .iter()
        .find(|c| matches!(c.action, Action::SetSchedulingPolicy { .. }))
        .expect("applied");
    assert_eq!(o.scheduling_policy(), SchedulingPolicy::CriticalPath);
    assert_eq!(o.coordination_log().len(), plan.changes.len());
    let reverted = o.revert_change(change.id).unwrap();
    assert!(reverted.reverted);
    assert_eq!(o.scheduling_policy(), SchedulingPolicy::Fifo);
    assert!(o.revert_change(change.id).is_err(), "only once");
    assert!(o.revert_change(9999).is_err());
}

#[test]
fn every_other_kind_of_recommendation_with_its_evidence() {
    let o = Orchestrator::builder()
        .workers(2)
        .hub_config(
            HubConfig::new()
                .promote_threshold(50.0)
                .rate_window(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    for s in ["a", "b", "limited", "idle", "pinned"] {
        o.register(SystemSpec::new(s)).unwrap();
    }
    o.pin_system("pinned", true).unwrap();
    o.set_operation("a", "op", |_| Ok(Value::Null)).unwrap();
    o.set_operation("b", "op", |_| Ok(Value::Null)).unwrap();
    o.set_operation("limited", "op", sleep_op(3)).unwrap();
    o.set_concurrency_limit("limited", Some(1)).unwrap();
    o.activate_all().unwrap();
    // a and b always used together.
    let pair = Workflow::builder("pair")
        .step(StepSpec::op("x", "a", "op"))
        .step(StepSpec::op("y", "b", "op"))
        .build(&o)
        .unwrap();
    let mut many = Workflow::builder("many");
    for i in 0..6 {
        many = many.step(StepSpec::op(format!("l{i}"), "limited", "op"));
    }
    let many = many.build(&o).unwrap();
    for _ in 0..25 {
        o.coordinate_systems(&pair).unwrap().wait();
    }
    o.coordinate_systems(&many).unwrap().wait();
    // A hot pair.
    let _sub = o
        .hub()
        .subscribe_with(
            "x.>",
            SubscribeOptions::new().owner("b").capacity(100_000),
            |_| Ok(()),
        )
        .unwrap();
    for _ in 0..20 {
        for _ in 0..100 {
            o.hub().publish_from("a", "x.y", Value::Null).unwrap();
        }
        thread::sleep(Duration::from_millis(10));
    }
    o.deactivate_system("b").unwrap();
    thread::sleep(Duration::from_millis(60));
    let plan = o.optimize_coordination_with(
        false,
        Guardrails::new()
            .min_samples(0)
            .min_confidence(0.0)
            .idle_after(Duration::from_millis(50)),
    );
    assert!(!plan.applied && plan.changes.is_empty());
    let find = |f: &dyn Fn(&Action) -> bool| plan.actions.iter().find(|r| f(&r.action)).cloned();
    let promote = find(&|a| matches!(a, Action::PromoteToDirect { .. })).expect("promote");
    assert!(
        promote.evidence.contains("promotion threshold"),
        "{}",
        promote.evidence
    );
    let limit = find(&|a| matches!(a, Action::SetConcurrencyLimit { .. })).expect("limit");
    assert_eq!(
        limit.action,
        Action::SetConcurrencyLimit {
            system: "limited".into(),
            from: Some(1),
            to: Some(2)
        }
    );
    assert!(
        limit.evidence.contains("waited a mean of"),
        "{}",
        limit.evidence
    );
    let pre = find(&|a| matches!(a, Action::PreActivate { .. })).expect("pre-activate");
    assert_eq!(
        pre.action,
        Action::PreActivate {
            systems: vec!["b".into()]
        }
    );
    assert_eq!(pre.target, "a");
    let idle: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|r| match &r.action {
            Action::DeactivateIdle { system } => Some(system.clone()),
            _ => None,
        })
        .collect();
    assert!(idle.contains(&"idle".to_owned()), "{idle:?}");
    assert!(
        !idle.contains(&"pinned".to_owned()),
        "pinned systems are never suggested"
    );
    for r in &plan.actions {
        assert!(!r.evidence.is_empty() && !r.expected_gain.is_empty());
        assert!((0.0..=1.0).contains(&r.confidence), "{r:?}");
    }
    // The default guardrails hold back thin evidence.
    let strict = o.optimize_coordination_with(false, Guardrails::new().min_samples(1_000_000));
    assert!(strict.actions.is_empty() && !strict.skipped.is_empty());
    assert!(strict.skipped[0].1.contains("samples, fewer than"));
}

#[test]
fn evolution_keeps_a_change_that_helps_and_reverts_one_that_hurts() {
    let o = skewed_orch(SchedulingPolicy::Fifo, 20, 10);
    let wf = skewed(&o, 4, 20, 16, 10);
    let workload = |o: &Orchestrator| -> Result<(), String> {
        match o.coordinate_systems(&wf).unwrap().wait().state() {
            RunState::Succeeded => Ok(()),
            s => Err(format!("{s:?}")),
        }
    };
    // Learn the durations first (critical-path ordering needs estimates).
    workload(&o).unwrap();
    let helps = o
        .evolve_coordination(
            &Trial::new(StrategyChange::SchedulingPolicy(
                SchedulingPolicy::CriticalPath,
            ))
            .rounds(3),
            workload,
        )
        .unwrap();
    assert!(helps.kept, "{}", helps.reason);
    assert!(helps.improvement >= 0.05, "{}", helps.reason);
    assert_eq!(o.scheduling_policy(), SchedulingPolicy::CriticalPath);
    let hurts = o
        .evolve_coordination(
            &Trial::new(StrategyChange::SchedulingPolicy(SchedulingPolicy::Fifo)).rounds(3),
            workload,
        )
        .unwrap();
    assert!(!hurts.kept, "{}", hurts.reason);
    assert!(hurts.improvement < 0.0, "{}", hurts.reason);
    assert_eq!(
        o.scheduling_policy(),
        SchedulingPolicy::CriticalPath,
        "reverted"
    );
    let log = o.evolution_log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].baseline.rounds, 3);
    // The kept change is in the coordination log, and reversible.
    let kept = o
        .coordination_log()
        .into_iter()
        .find(|c| matches!(c.action, Action::SetSchedulingPolicy { .. }))
        .unwrap();
    o.revert_change(kept.id).unwrap();
    assert_eq!(o.scheduling_policy(), SchedulingPolicy::Fifo);
    // A failing workload counts as errors, and an unknown system is refused.
    let e = o
        .evolve_coordination(
            &Trial::new(StrategyChange::ConcurrencyLimit {
                system: "ghost".into(),
                limit: Some(1),
            }),
            |_| Ok::<(), String>(()),
        )
        .unwrap_err();
    assert!(e.contains("ghost"), "{e}");
}

#[test]
fn systems_that_exchange_messages_are_not_suggested_as_idle() {
    let o = Orchestrator::builder()
        .workers(2)
        .hub_config(HubConfig::new().rate_window(Duration::from_millis(50)))
        .build()
        .unwrap();
    for s in ["tx", "rx", "quiet"] {
        o.register(SystemSpec::new(s)).unwrap();
    }
    o.activate_all().unwrap();
    let _sub = o
        .hub()
        .subscribe_with("tx.events", SubscribeOptions::new().owner("rx"), |_| Ok(()))
        .unwrap();
    for _ in 0..5 {
        for _ in 0..20 {
            o.hub()
                .publish_from("tx", "tx.events", Value::Null)
                .unwrap();
        }
        thread::sleep(Duration::from_millis(20));
        o.hub().sample_rates();
    }
    thread::sleep(Duration::from_millis(30));
    let plan = o.optimize_coordination_with(
        false,
        Guardrails::new()
            .min_samples(0)
            .min_confidence(0.0)
            .idle_after(Duration::from_millis(10)),
    );
    let idle: Vec<&str> = plan
        .actions
        .iter()
        .filter_map(|r| match &r.action {
            Action::DeactivateIdle { system } => Some(system.as_str()),
            _ => None,
        })
        .collect();
    assert!(idle.contains(&"quiet"), "{idle:?}");
    assert!(
        !idle.contains(&"tx") && !idle.contains(&"rx"),
        "the pair talks: {idle:?}"
    );
}
