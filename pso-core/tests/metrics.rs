//! Performance metrics through the orchestrator: per-operation counts by
//! terminal state and retries, queue wait apart from run time, per-system
//! transitions, handler durations, restarts and probes, per-edge and
//! per-topic traffic with sampled latency and the topic cap, resource
//! utilization and leases, Prometheus text that parses, JSON that parses,
//! the switch and the reset.
//!
//! Timing assertions are one-sided lower bounds that follow from what the
//! test itself waited for (a sleep, a latch), never upper bounds on speed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pso_core::{
    ErrorKind, HealthCheck, HealthReport, MetricsConfig, Orchestrator, Overflow,
    PerformanceMetrics, PsoError, ResourceRequest, RestartPolicy, StepSpec, StepState,
    SubscribeOptions, Supervision, SystemSpec, Value, VirtualClock, Workflow,
};

#[path = "metrics/prometheus_text.rs"]
mod prometheus_text;

use prometheus_text::{find, parse_prometheus};

const LONG: Duration = Duration::from_secs(10);

fn orch(workers: usize) -> Orchestrator {
    Orchestrator::builder()
        .workers(workers)
        .metrics_config(MetricsConfig::new().latency_sample_every(1))
        .build()
        .unwrap()
}

/// Polls `f` until it holds (bounded): for effects of other threads.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + LONG;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// A latch the test opens.
#[derive(Default)]
struct Latch(Mutex<bool>, Condvar);

impl Latch {
    fn open(&self) {
        *self.0.lock().unwrap() = true;
        self.1.notify_all();
    }

    fn wait(&self) {
        let mut g = self.0.lock().unwrap();
        while !*g {
            g = self.1.wait_timeout(g, LONG).unwrap().0;
        }
    }
}

#[test]
fn operations_count_steps_by_terminal_state_and_retries() {
    let o = orch(2);
    o.register(
        SystemSpec::new("S")
            .operation("ok", |_| Ok(Value::from(1)))
            .operation("bad", |_| Err("no".into()))
            .operation("skip", |_| Ok(Value::Null))
            .operation("slow", |ctx| {
                let t = Instant::now();
                while !ctx.is_cancelled() && t.elapsed() < LONG {
                    thread::sleep(Duration::from_millis(1));
                }
                Ok(Value::Null)
            }),
    )
    .unwrap();
    o.activate_system("S").unwrap();
    let wf = Workflow::builder("states")
        .step(StepSpec::op("ok", "S", "ok"))
        .step(StepSpec::op("bad", "S", "bad").retries(2))
        .step(StepSpec::func("dep", |_| Ok(Value::Null)).after("bad"))
        .step(StepSpec::op("skip", "S", "skip").when(|_| false))
        .step(StepSpec::op("slow", "S", "slow").timeout(Duration::from_millis(20)))
        .step(StepSpec::func("f", |_| Ok(Value::Null)))
        .build(&o)
        .unwrap();
    for _ in 0..3 {
        let r = o.coordinate_systems(&wf).unwrap().wait();
        assert_eq!(r.step_state("dep"), Some(StepState::Cancelled));
        assert_eq!(r.step_state("skip"), Some(StepState::Skipped));
        assert_eq!(r.step_state("slow"), Some(StepState::TimedOut));
    }
    let m = o.performance_metrics();
    let op = |n: &str| m.operation(n).unwrap_or_else(|| panic!("no {n}: {m:?}"));
    let ok = op("S.ok");
    assert_eq!((ok.succeeded, ok.total(), ok.retries), (3, 3, 0));
    assert_eq!((ok.run_time.count, ok.queue_wait.count), (3, 3));
    assert_eq!(ok.system.as_deref(), Some("S"));
    let bad = op("S.bad");
    assert_eq!((bad.failed, bad.total(), bad.retries), (3, 3, 6));
    assert_eq!(bad.run_time.count, 3, "the last attempt of each step");
    let skip = op("S.skip");
    assert_eq!((skip.skipped, skip.total()), (3, 3));
    assert_eq!(skip.run_time.count, 0, "a skipped step never ran");
    let slow = op("S.slow");
    assert_eq!((slow.timed_out, slow.total()), (3, 3));
    assert!(slow.run_time.count <= 3);
    // Plain functions share one series: `f` succeeded, `dep` was cancelled.
    let f = op("<function>");
    assert_eq!((f.succeeded, f.cancelled, f.total()), (3, 3, 6));
    assert_eq!(f.system, None);
    assert_eq!(m.operations.last().unwrap().operation, "<function>");
    for s in [ok, bad, f] {
        let r = &s.run_time;
        assert!(r.p50 <= r.p90 && r.p90 <= r.p99 && r.p99 <= r.max, "{r:?}");
        assert!(r.max > 0.0 && r.sum >= r.max, "{r:?}");
    }
}

#[test]
fn runs_without_timing_record_no_operations() {
    let o = orch(1);
    let wf = Workflow::builder("w")
        .step(StepSpec::func("a", |_| Ok(Value::Null)))
        .build(&o)
        .unwrap();
    let r = o
        .coordinate_systems_with(&wf, pso_core::RunOptions::default().timing(false))
        .unwrap()
        .wait();
    assert!(r.is_success());
    assert!(o.performance_metrics().operations.is_empty());
}

#[test]
fn queue_wait_is_kept_apart_from_run_time() {
    let o = orch(2);
    let latch = Arc::new(Latch::default());
    let started = Arc::new(Latch::default());
    let (l2, s2) = (latch.clone(), started.clone());
    o.register(SystemSpec::new("S").operation("work", move |_| {
        s2.open();
        l2.wait();
        Ok(Value::Null)
    }))
    .unwrap();
    o.activate_system("S").unwrap();
    o.set_concurrency_limit("S", Some(1)).unwrap();
    let wf = Workflow::builder("two")
        .step(StepSpec::op("a", "S", "work"))
        .step(StepSpec::op("b", "S", "work"))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    // One step holds the only slot until the latch opens; the other waits
    // for the slot (a free worker is there all along).
    started.wait();
    let held = Duration::from_millis(200);
    thread::sleep(held);
    latch.open();
    let r = run.wait();
    assert!(r.is_success(), "{r:?}");
    let w = o.performance_metrics();
    let w = w.operation("S.work").unwrap();
    assert_eq!(
        (w.succeeded, w.run_time.count, w.queue_wait.count),
        (2, 2, 2)
    );
    let held = held.as_secs_f64();
    // The second step waited for the slot at least as long as the first
    // held it...
    assert!(w.queue_wait.max >= held * 0.99, "{:?}", w.queue_wait);
    // ...and that wait is not in its run time: of two runs one took the
    // latch's time, the other found the latch open (p50 is the smaller).
    assert!(w.run_time.max >= held * 0.99, "{:?}", w.run_time);
    assert!(w.run_time.p50 < held * 0.5, "{:?}", w.run_time);
}

#[test]
fn systems_count_transitions_and_handler_runs() {
    let o = orch(2);
    o.register(SystemSpec::new("base").on_activate(|_| {
        thread::sleep(Duration::from_millis(5));
        Ok(())
    }))
    .unwrap();
    o.register(
        SystemSpec::new("app")
            .requires("base")
            .on_activate(|_| Err("cannot start".into())),
    )
    .unwrap();
    o.register(SystemSpec::new("idle")).unwrap();
    assert!(o.activate_system("app").is_err());
    o.deactivate_system("base").unwrap();
    let m = o.performance_metrics();
    assert_eq!(
        m.systems
            .iter()
            .map(|s| s.system.as_str())
            .collect::<Vec<_>>(),
        ["base", "app", "idle"],
        "every system has a line, in registration order"
    );
    let base = m.system("base").unwrap();
    let t = base.transitions;
    assert_eq!(
        (t.activating, t.active, t.deactivating, t.inactive),
        (1, 1, 1, 1)
    );
    assert_eq!(base.activate_handler.count, 1);
    assert!(
        base.activate_handler.max >= 0.005,
        "{:?}",
        base.activate_handler
    );
    assert_eq!(base.deactivate_handler.count, 1);
    let app = m.system("app").unwrap();
    assert_eq!((app.transitions.activating, app.transitions.failed), (1, 1));
    assert_eq!(app.transitions.active, 0);
    assert_eq!(app.activate_handler.count, 1, "a failed handler ran too");
    let idle = m.system("idle").unwrap();
    assert_eq!(idle.transitions, Default::default());
    assert_eq!(idle.activate_handler.count, 0);
}

#[test]
fn restarts_and_probes_are_counted_on_a_virtual_clock() {
    let clock = VirtualClock::new();
    let o = Orchestrator::builder()
        .workers(2)
        .virtual_clock(clock.clone())
        .alert_interval(Duration::ZERO)
        .build()
        .unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let h = healthy.clone();
    let s = Duration::from_secs(1);
    o.register(
        SystemSpec::new("db")
            .health_check(
                HealthCheck::probe(move |_| {
                    Ok(if h.load(Ordering::SeqCst) {
                        HealthReport::healthy()
                    } else {
                        HealthReport::unhealthy("down")
                    })
                })
                .interval(s)
                .failures_before_unhealthy(1),
            )
            .supervise(
                Supervision::new(RestartPolicy::OnFailure)
                    .backoff(s, Duration::from_secs(8))
                    .jitter(false),
            ),
    )
    .unwrap();
    o.activate_system("db").unwrap();
    clock.advance(s * 2);
    healthy.store(false, Ordering::SeqCst);
    clock.advance(s);
    healthy.store(true, Ordering::SeqCst);
    clock.advance(s * 2);
    let sup = o.status("db").unwrap().supervision.unwrap();
    let probes = o.status("db").unwrap().health.unwrap().probes;
    let m = o.performance_metrics();
    let db = m.system("db").unwrap();
    assert_eq!(db.restarts, u64::from(sup.restarts));
    assert!(db.restarts >= 1, "{db:?}");
    assert!(db.probes.unhealthy >= 1, "{:?}", db.probes);
    assert!(db.probes.healthy >= 2, "{:?}", db.probes);
    let counted = db.probes.healthy + db.probes.degraded + db.probes.unhealthy;
    assert!(counted >= probes, "{counted} counted, {probes} in status");
    assert_eq!(db.probe_latency.count, counted + db.probes.failed);
    assert!(db.transitions.active >= 2, "{:?}", db.transitions);
}

#[test]
fn edges_and_topics_count_published_delivered_and_dropped() {
    let o = orch(2);
    let hub = o.hub();
    let pull = hub
        .subscribe_pull_with("t.pull", SubscribeOptions::new().owner("B"))
        .unwrap();
    let got = Arc::new((Mutex::new(0usize), Condvar::new()));
    let g2 = got.clone();
    let _cb = hub
        .subscribe_with("t.cb", SubscribeOptions::new().owner("C"), move |_| {
            *g2.0.lock().unwrap() += 1;
            g2.1.notify_all();
            Ok(())
        })
        .unwrap();
    let full = hub
        .subscribe_pull_with(
            "t.full",
            SubscribeOptions::new()
                .owner("B")
                .capacity(2)
                .overflow(Overflow::DropNewest),
        )
        .unwrap();
    for i in 0..10 {
        hub.publish_from("A", "t.pull", i).unwrap();
        hub.publish_from("A", "t.cb", i).unwrap();
    }
    for i in 0..5 {
        hub.publish_from("A", "t.full", i).unwrap();
    }
    hub.publish("t.pull", 99).unwrap(); // no sender: no edge
    for _ in 0..11 {
        pull.recv_timeout(LONG).unwrap();
    }
    full.recv_timeout(LONG).unwrap();
    {
        let (l, cv) = &*got;
        let mut n = l.lock().unwrap();
        while *n < 10 {
            n = cv.wait_timeout(n, LONG).unwrap().0;
        }
    }
    // A callback mailbox adds its topic deliveries at the end of a batch.
    eventually("the callback deliveries counted", || {
        o.performance_metrics()
            .topic("t.cb")
            .is_some_and(|t| t.delivered == 10)
    });
    let m = o.performance_metrics();
    let t = m.topic("t.pull").unwrap();
    assert_eq!((t.published, t.delivered, t.dropped), (11, 11, 0));
    assert_eq!(t.delivery_latency.count, 11, "every message sampled");
    let t = m.topic("t.full").unwrap();
    assert_eq!((t.published, t.delivered, t.dropped), (5, 1, 3));
    let ab = m.edge("A", "B").unwrap();
    // B owns both pull subscriptions: 10 + 5 offered, 11 handed over.
    assert_eq!((ab.published, ab.delivered, ab.dropped), (15, 11, 3));
    assert_eq!(ab.delivery_latency.count, 11);
    // The edge is counted before each callback runs.
    let ac = m.edge("A", "C").unwrap();
    assert_eq!((ac.published, ac.delivered, ac.dropped), (10, 10, 0));
    assert_eq!(m.topic("t.cb").unwrap().delivered, 10);
    let l = ac.delivery_latency;
    assert!(l.count == 10 && l.p50 <= l.max && l.max > 0.0, "{l:?}");
    assert!(m.edge("B", "A").is_none());
    assert_eq!(m.edges.len(), 2);
}

#[test]
fn latency_is_sampled_one_message_in_n() {
    let o = Orchestrator::builder()
        .workers(1)
        .metrics_config(MetricsConfig::new().latency_sample_every(4))
        .build()
        .unwrap();
    let sub = o.hub().subscribe_pull("s").unwrap();
    for i in 0..16 {
        o.hub().publish("s", i).unwrap();
    }
    for _ in 0..16 {
        sub.recv_timeout(LONG).unwrap();
    }
    let m = o.performance_metrics();
    assert_eq!(m.latency_sample_every, 4);
    let t = m.topic("s").unwrap();
    assert_eq!((t.published, t.delivered), (16, 16));
    assert_eq!(t.delivery_latency.count, 4);
}

#[test]
fn topics_past_the_cap_share_the_overflow_series() {
    let o = Orchestrator::builder()
        .workers(1)
        .metrics_config(MetricsConfig::new().max_topics(2))
        .build()
        .unwrap();
    for t in ["a", "b", "c", "d", "a"] {
        o.hub().publish(t, 1).unwrap();
    }
    let m = o.performance_metrics();
    let names: Vec<&str> = m.topics.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(names, ["a", "b", pso_core::metrics::OVERFLOW_TOPIC]);
    assert_eq!(m.topic("a").unwrap().published, 2);
    assert_eq!(m.topic("<other>").unwrap().published, 2);
    assert_eq!((m.topics_tracked, m.max_topics), (2, 2));
    // A reset zeroes the series but keeps the topics tracked.
    o.reset_metrics();
    o.hub().publish("e", 1).unwrap();
    let m = o.performance_metrics();
    assert_eq!(m.topics.len(), 1);
    assert_eq!(m.topics[0].topic, "<other>");
}

#[test]
fn resources_record_utilization_intervals_and_leases() {
    let o = Orchestrator::builder()
        .workers(1)
        .metrics_config(MetricsConfig::new().utilization_interval(Duration::from_millis(10), 1000))
        .build()
        .unwrap();
    o.register(SystemSpec::new("a")).unwrap();
    o.set_capacity("cpu", 10).unwrap();
    let held = Duration::from_millis(50);
    let lease = o
        .allocate_resources("a", &ResourceRequest::new().amount("cpu", 5))
        .unwrap();
    thread::sleep(held);
    lease.release();
    thread::sleep(Duration::from_millis(20));
    let m = o.performance_metrics();
    let cpu = m.resource("cpu").unwrap();
    assert_eq!((cpu.capacity, cpu.allocated), (10, 0));
    assert_eq!(cpu.interval, Duration::from_millis(10));
    assert!(cpu.intervals.len() >= 6, "{cpu:?}");
    let mut busy = 0.0;
    for i in &cpu.intervals {
        assert!((0.0..=1.0).contains(&i.utilization), "{i:?}");
        assert!(i.covered > 0.0 && i.covered <= 0.010 + 1e-9, "{i:?}");
        assert!((i.mean_capacity - 10.0).abs() < 1e-9, "{i:?}");
        busy += i.mean_allocated * i.covered;
    }
    // ∫allocated dt over the intervals: 5 units for the time held.
    assert!(busy >= 5.0 * held.as_secs_f64() * 0.99, "{busy}");
    assert!(cpu.intervals.iter().any(|i| i.utilization > 0.49));
    let starts: Vec<_> = cpu.intervals.iter().map(|i| i.start).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "oldest first");
    let a = &m.system("a").unwrap().leases;
    assert_eq!((a.granted, a.released, a.held), (1, 1, 0));
    assert_eq!((a.wait.count, a.hold.count), (1, 1));
    assert!(a.hold.max >= held.as_secs_f64() * 0.99, "{:?}", a.hold);
    let text = m.to_prometheus();
    assert!(text.contains("pso_resource_capacity{dimension=\"cpu\"} 10\n"));
    assert!(text.contains("pso_system_leases_granted_total{system=\"a\"} 1\n"));
}

/// Traffic between hub systems whose names need escaping, and a step.
fn busy_orchestrator(weird_from: &str, weird_to: &str, weird_topic: &str) -> Orchestrator {
    let o = orch(2);
    o.register(SystemSpec::new("P").operation("op", |_| Ok(Value::Null)))
        .unwrap();
    o.activate_system("P").unwrap();
    let wf = Workflow::builder("w")
        .step(StepSpec::op("s", "P", "op"))
        .build(&o)
        .unwrap();
    assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
    let sub = o
        .hub()
        .subscribe_pull_with(weird_topic, SubscribeOptions::new().owner(weird_to))
        .unwrap();
    o.hub().publish_from(weird_from, weird_topic, 1).unwrap();
    sub.recv_timeout(LONG).unwrap();
    o
}

#[test]
fn prometheus_text_parses_and_escapes_labels() {
    let (from, to, topic) = ("a\"b\\c\nd", "q\\\"", "t.\"x\\y");
    let o = busy_orchestrator(from, to, topic);
    let text = o.performance_metrics().to_prometheus();
    let (samples, types) = parse_prometheus(&text);
    assert_eq!(types["pso_metrics_enabled"], "gauge");
    assert_eq!(types["pso_operation_steps_total"], "counter");
    assert_eq!(types["pso_operation_run_seconds"], "summary");
    assert_eq!(types["pso_edge_delivery_seconds"], "summary");
    assert_eq!(
        find(&samples, "pso_metrics_enabled", &[]).unwrap().value,
        1.0
    );
    let steps = find(
        &samples,
        "pso_operation_steps_total",
        &[("operation", "P.op"), ("state", "succeeded")],
    )
    .unwrap();
    assert_eq!(steps.value, 1.0);
    let q = find(
        &samples,
        "pso_operation_run_seconds",
        &[("operation", "P.op"), ("quantile", "0.99")],
    )
    .unwrap();
    assert!(q.value > 0.0);
    let count = find(
        &samples,
        "pso_operation_run_seconds_count",
        &[("operation", "P.op")],
    );
    assert_eq!(count.unwrap().value, 1.0);
    // Label values round-trip through the escaping.
    let e = find(
        &samples,
        "pso_edge_published_total",
        &[("from", from), ("to", to)],
    );
    assert_eq!(e.unwrap().value, 1.0, "{text}");
    let t = find(&samples, "pso_topic_delivered_total", &[("topic", topic)]);
    assert_eq!(t.unwrap().value, 1.0);
    assert!(
        find(
            &samples,
            "pso_system_transitions_total",
            &[("system", "P"), ("to", "active")]
        )
        .is_some_and(|s| s.value == 1.0)
    );
    // Summaries: the _max gauge sits in a family of its own.
    assert_eq!(types["pso_operation_run_seconds_max"], "gauge");
}

#[test]
fn json_parses_with_the_expected_fields() {
    let o = busy_orchestrator("A", "B", "topic.one");
    let m = o.performance_metrics();
    let j: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    assert_eq!(j["enabled"], true);
    assert_eq!(j["latency_sample_every"], 1);
    for k in ["since", "taken"] {
        let s = j[k].as_str().unwrap();
        assert!(s.ends_with('Z') && s.contains('T'), "{k}: {s}");
    }
    let op = &j["operations"][0];
    assert_eq!(op["operation"], "P.op");
    assert_eq!(op["system"], "P");
    assert_eq!(op["succeeded"], 1);
    for k in ["count", "sum", "mean", "p50", "p90", "p99", "max"] {
        assert!(op["run_time"][k].is_number(), "{k}: {op}");
        assert!(op["queue_wait"][k].is_number(), "{k}: {op}");
    }
    let sys = &j["systems"][0];
    assert_eq!(sys["system"], "P");
    assert_eq!(sys["transitions"]["active"], 1);
    assert!(sys["probes"]["healthy"].is_number());
    assert!(sys["leases"]["held"].is_number());
    let e = &j["edges"][0];
    assert_eq!(
        (e["from"].as_str(), e["to"].as_str()),
        (Some("A"), Some("B"))
    );
    assert_eq!(e["delivered"], 1);
    assert_eq!(e["delivery_latency"]["count"], 1);
    let t = j["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "topic.one")
        .unwrap();
    assert_eq!(t["published"], 1);
    assert!(j["resources"].is_array());
    assert!(j["topics_tracked"].is_number() && j["max_topics"].is_number());
}

fn recorded_anything(m: &PerformanceMetrics) -> bool {
    !m.operations.is_empty()
        || !m.edges.is_empty()
        || !m.topics.is_empty()
        || m.systems.iter().any(|s| {
            s.transitions != Default::default()
                || s.activate_handler.count > 0
                || s.leases.granted > 0
                || s.leases.released > 0
        })
        || m.resources.iter().any(|r| !r.intervals.is_empty())
}

/// Steps, transitions, hub traffic and a lease.
fn exercise(o: &Orchestrator, sys: &str) {
    o.register(SystemSpec::new(sys).operation("op", |_| Ok(Value::Null)))
        .unwrap();
    o.activate_system(sys).unwrap();
    let wf = Workflow::builder("w")
        .step(StepSpec::op("s", sys, "op"))
        .step(StepSpec::func("f", |_| Ok(Value::Null)))
        .build(o)
        .unwrap();
    assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
    let sub = o
        .hub()
        .subscribe_pull_with("x", SubscribeOptions::new().owner("B"))
        .unwrap();
    o.hub().publish_from("A", "x", 1).unwrap();
    sub.recv_timeout(LONG).unwrap();
    o.set_capacity("cpu", 4).unwrap();
    let l = o
        .allocate_resources(sys, &ResourceRequest::new().amount("cpu", 1))
        .unwrap();
    thread::sleep(Duration::from_millis(2));
    l.release();
}

#[test]
fn metrics_off_records_nothing_and_can_be_turned_on() {
    let o = Orchestrator::builder()
        .workers(2)
        .metrics(false)
        .build()
        .unwrap();
    assert!(!o.metrics_enabled());
    exercise(&o, "S");
    let m = o.performance_metrics();
    assert!(!m.enabled);
    assert!(!recorded_anything(&m), "{m:?}");
    assert_eq!(m.system("S").unwrap().leases.held, 0);
    assert!(m.to_prometheus().contains("pso_metrics_enabled 0\n"));
    o.set_metrics_enabled(true);
    assert!(o.metrics_enabled());
    exercise(&o, "T");
    let m = o.performance_metrics();
    assert!(m.enabled);
    assert_eq!(m.operation("T.op").unwrap().succeeded, 1);
    assert!(m.operation("S.op").is_none());
    assert_eq!(m.system("T").unwrap().transitions.active, 1);
    assert_eq!(m.system("S").unwrap().transitions.active, 0);
    assert_eq!(m.edge("A", "B").unwrap().delivered, 1);
    assert_eq!(m.system("T").unwrap().leases.granted, 1);
    assert_eq!(m.system("S").unwrap().leases.granted, 0);
    // Off again: figures stay readable, nothing more is added.
    o.set_metrics_enabled(false);
    let before = o.performance_metrics().to_json();
    let wf = Workflow::builder("w2")
        .step(StepSpec::op("s", "T", "op"))
        .build(&o)
        .unwrap();
    assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
    let after = o.performance_metrics();
    assert_eq!(after.operation("T.op").unwrap().succeeded, 1);
    let strip = |s: &str| {
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        (
            v["operations"].clone(),
            v["edges"].clone(),
            v["topics"].clone(),
        )
    };
    assert_eq!(strip(&before), strip(&after.to_json()));
}

#[test]
fn reset_zeroes_counters_but_keeps_gauges() {
    let o = orch(2);
    exercise(&o, "S");
    let kept = o
        .allocate_resources("S", &ResourceRequest::new().amount("cpu", 2))
        .unwrap();
    let first = o.performance_metrics();
    assert!(recorded_anything(&first));
    eventually("a later clock reading", || {
        std::time::SystemTime::now() > first.since
    });
    o.reset_metrics();
    let m = o.performance_metrics();
    assert!(m.enabled, "a reset does not turn metrics off");
    assert!(m.since > first.since);
    assert!(m.operations.is_empty() && m.edges.is_empty(), "{m:?}");
    assert!(m.topics.is_empty(), "{m:?}");
    let s = m.system("S").unwrap();
    assert_eq!(s.transitions, Default::default());
    assert_eq!((s.activate_handler.count, s.leases.granted), (0, 0));
    assert_eq!(s.leases.held, 1, "a gauge of the present is kept");
    let cpu = m.resource("cpu").unwrap();
    assert_eq!(cpu.allocated, 2);
    // Counting resumes from zero.
    let wf = Workflow::builder("again")
        .step(StepSpec::op("s", "S", "op"))
        .build(&o)
        .unwrap();
    assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
    assert_eq!(
        o.performance_metrics().operation("S.op").unwrap().succeeded,
        1
    );
    drop(kept);
}

#[test]
fn a_bad_utilization_interval_is_rejected() {
    let err = Orchestrator::builder()
        .metrics_config(MetricsConfig::new().utilization_interval(Duration::ZERO, 10))
        .build()
        .unwrap_err();
    assert_eq!(PsoError::kind(&err), ErrorKind::InvalidArgument);
}

#[test]
fn large_runs_count_every_step_and_time_a_sample() {
    let o = orch(1);
    let mut b = pso_core::WorkflowBuilder::new("big");
    for _ in 0..4096 {
        b.task(|_| Ok(Value::Null));
    }
    let wf = b.build(&o).unwrap();
    assert!(o.coordinate_systems(&wf).unwrap().wait().is_success());
    let m = o.performance_metrics();
    let f = m.operation("<function>").unwrap();
    assert_eq!(f.succeeded, 4096, "counts are exact");
    // One step in 4: at most 1,024 per run go into the histograms.
    assert_eq!((f.run_time.count, f.queue_wait.count), (1024, 1024));
}

#[test]
fn insights_report_the_hubs_share_of_message_latency() {
    let o = orch(1);
    let first = Arc::new(Latch::default());
    let gate = Arc::new(Latch::default());
    let handled = Arc::new((Mutex::new(0usize), Condvar::new()));
    let (f2, g2, h2) = (first.clone(), gate.clone(), handled.clone());
    let _sub = o
        .hub()
        .subscribe("work", move |_| {
            // The first message holds the only worker until the gate opens,
            // so the others wait in the hub meanwhile.
            f2.open();
            g2.wait();
            thread::sleep(Duration::from_millis(5));
            *h2.0.lock().unwrap() += 1;
            h2.1.notify_all();
            Ok(())
        })
        .unwrap();
    let empty = o.coordination_insights().hub_latency;
    assert_eq!(empty.share.messages, 0);
    assert_eq!(empty.share.share, 0.0);
    for i in 0..5 {
        o.hub().publish("work", i).unwrap();
    }
    first.wait();
    let held = Duration::from_millis(20);
    thread::sleep(held);
    gate.open();
    {
        let (l, cv) = &*handled;
        let mut n = l.lock().unwrap();
        while *n < 5 {
            n = cv.wait_timeout(n, LONG).unwrap().0;
        }
    }
    // The 5th callback has returned; the hub records it just after.
    eventually("the last callback recorded", || {
        o.performance_metrics().hub_share.messages == 5
    });
    let h = o.coordination_insights().hub_latency;
    let s = h.share;
    let held = held.as_secs_f64();
    // Messages 2..5 were queued before the gate opened: each spent at least
    // `held` in the hub. Callbacks: the first at least `held`, each 5 ms.
    assert!(s.in_hub >= 4.0 * held * 0.99, "{s:?}");
    assert!(s.in_handlers >= held * 0.99 + 5.0 * 0.005 * 0.99, "{s:?}");
    assert!((s.share - s.in_hub / (s.in_hub + s.in_handlers)).abs() < 1e-12);
    assert!(s.share > 0.0 && s.share < 1.0, "{s:?}");
    assert_eq!(h.slowest_topics.len(), 1);
    let t = &h.slowest_topics[0];
    assert_eq!((t.topic.as_str(), t.samples), ("work", 5));
    assert!(t.delivery_p99 >= held * 0.99, "{t:?}");
    assert!(t.handler_p50 >= 0.005 * 0.99, "{t:?}");
    // The same figures are in the metrics, JSON and Prometheus text.
    let m = o.performance_metrics();
    assert_eq!(m.hub_share, s);
    assert_eq!(m.topic("work").unwrap().handler_time.count, 5);
    let j: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    assert_eq!(j["hub_share"]["messages"], 5);
    let (samples, _) = parse_prometheus(&m.to_prometheus());
    let share = find(&samples, "pso_hub_latency_share_ratio", &[]).unwrap();
    assert!((share.value - s.share).abs() < 1e-9);
    let hub = find(&samples, "pso_hub_time_seconds_total", &[("part", "hub")]);
    assert!((hub.unwrap().value - s.in_hub).abs() < 1e-9);
    // A reset forgets it.
    o.reset_metrics();
    assert_eq!(o.coordination_insights().hub_latency.share.messages, 0);
}
