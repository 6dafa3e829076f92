//! Integration tests of the hub: topics, subscriptions, overflow, request/
//! reply, direct channels, meshes and status. Every wait is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use pso_core::{
    CoordinationMode, DirectSendError, ErrorKind, Gather, Hub, HubConfig, HubError, Message,
    Overflow, PairAction, PsoError, SubscribeOptions, Value,
};

const LONG: Duration = Duration::from_secs(20);

fn hub(workers: usize) -> Hub {
    Hub::new(HubConfig::new().workers(workers).thread_name("hubtest")).unwrap()
}

/// Polls `cond` until it holds or 20 s pass.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ints(msgs: &[Message]) -> Vec<i64> {
    msgs.iter().map(|m| m.payload().as_int().unwrap()).collect()
}

#[test]
fn invalid_topics_and_patterns_name_the_bad_token() {
    let hub = hub(1);
    let e = hub.publish("engine..done", 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("empty token"), "{e}");
    let e = hub.publish("engine.*", 1).unwrap_err();
    assert!(e.to_string().contains("'*'"), "{e}");
    let e = hub.subscribe_pull("a.>.b").unwrap_err();
    assert!(
        matches!(&e, HubError::InvalidTopic { token, index: 1, .. } if token == ">"),
        "{e}"
    );
    let e = hub.subscribe_pull("a.b*").unwrap_err();
    assert!(e.to_string().contains("'b*'"), "{e}");
}

#[test]
fn callbacks_run_on_workers_in_publish_order() {
    let hub = hub(2);
    let (tx, rx) = mpsc::channel();
    let _sub = hub
        .subscribe("engine.*.done", move |m| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            tx.send((m.payload().as_int().unwrap(), name)).unwrap();
            Ok(())
        })
        .unwrap();
    const N: i64 = 2_000;
    for i in 0..N {
        assert_eq!(hub.publish("engine.build.done", i).unwrap(), 1);
        assert_eq!(hub.publish("engine.build.started", i).unwrap(), 0);
    }
    let got: Vec<(i64, String)> = (0..N).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        (0..N).collect::<Vec<_>>()
    );
    assert!(
        got.iter().all(|g| g.1.starts_with("hubtest")),
        "ran off the pool"
    );
}

#[test]
fn wildcards_and_pull_receivers() {
    let hub = hub(1);
    let star = hub.subscribe_pull("a.*").unwrap();
    let rest = hub.subscribe_pull("a.>").unwrap();
    let exact = hub.subscribe_pull("a.b.c").unwrap();
    assert_eq!(hub.publish("a.b", 1).unwrap(), 2);
    assert_eq!(hub.publish("a.b.c", 2).unwrap(), 2);
    assert_eq!(hub.publish("a", 3).unwrap(), 0);
    assert_eq!(star.recv_timeout(LONG).unwrap().payload(), &Value::Int(1));
    assert!(star.try_recv().unwrap().is_none());
    let r: Vec<_> = (0..2).map(|_| rest.recv_timeout(LONG).unwrap()).collect();
    assert_eq!(ints(&r), [1, 2]);
    assert_eq!(exact.recv_timeout(LONG).unwrap().topic(), "a.b.c");
    let e = star.recv_timeout(Duration::from_millis(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
}

#[test]
fn unsubscribe_stops_delivery_and_drops_the_callback_outside_locks() {
    let hub = hub(1);
    let calls = Arc::new(AtomicUsize::new(0));
    // The callback's captured state calls back into the hub when dropped,
    // as a host finalizer might.
    struct Finalizer(Hub, Arc<AtomicUsize>);
    impl Drop for Finalizer {
        fn drop(&mut self) {
            let _ = self.0.publish("finalized", 1);
            let _ = self.0.subscriptions();
            self.1.fetch_add(1000, Ordering::SeqCst);
        }
    }
    let fin = Finalizer(hub.clone(), calls.clone());
    let c = calls.clone();
    let sub = hub
        .subscribe("t", move |_| {
            let _keep = &fin;
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    hub.publish("t", 0).unwrap();
    eventually("first delivery", || calls.load(Ordering::SeqCst) == 1);
    let id = sub.id();
    sub.unsubscribe();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1001,
        "callback dropped at unsubscribe"
    );
    assert_eq!(hub.publish("t", 1).unwrap(), 0);
    assert!(!hub.unsubscribe(id), "already gone");
    assert!(hub.subscriptions().is_empty());
}

#[test]
fn detached_subscriptions_live_until_unsubscribed_by_id() {
    let hub = hub(1);
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let id = hub
        .subscribe("d", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap()
        .detach();
    hub.publish("d", 1).unwrap();
    eventually("delivery", || n.load(Ordering::SeqCst) == 1);
    assert!(hub.unsubscribe(id));
    assert_eq!(hub.publish("d", 1).unwrap(), 0);
}

#[test]
fn queue_groups_deliver_each_message_to_one_member() {
    let hub = hub(2);
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let plain = Arc::new(AtomicUsize::new(0));
    let mut subs = Vec::new();
    for c in &counts {
        let c = c.clone();
        subs.push(
            hub.subscribe_with(
                "jobs.*",
                SubscribeOptions::new().queue_group("workers"),
                move |_| {
                    c.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                },
            )
            .unwrap(),
        );
    }
    let p = plain.clone();
    subs.push(
        hub.subscribe("jobs.>", move |_| {
            p.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap(),
    );
    const N: usize = 300;
    for i in 0..N {
        assert_eq!(
            hub.publish("jobs.build", i as i64).unwrap(),
            2,
            "one group member + the plain one"
        );
    }
    let total = || {
        counts
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    eventually("all delivered", || {
        total() == N && plain.load(Ordering::SeqCst) == N
    });
    assert!(
        counts.iter().all(|c| c.load(Ordering::SeqCst) > 0),
        "round robin reaches every member"
    );
}

#[test]
fn request_reply_no_responders_timeout_and_unanswered() {
    let hub = hub(2);
    let e = hub.request("nobody.home", 1, LONG).unwrap_err();
    assert!(matches!(e, HubError::NoResponders { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::NoResponders);

    let _svc = hub
        .subscribe("math.double", |m| {
            let n = m.payload().as_int().unwrap();
            assert!(m.reply_from("math", n * 2)?);
            assert!(!m.reply(0)?, "a single request takes only the first reply");
            Ok(())
        })
        .unwrap();
    for i in 0..200 {
        let r = hub.request_from("client", "math.double", i, LONG).unwrap();
        assert_eq!(r.payload(), &Value::Int(i * 2));
        assert_eq!(r.sender(), Some("math"));
    }

    // A pull subscriber that never reads: the request waits out its timeout.
    let _silent = hub.subscribe_pull("silent").unwrap();
    let t = Instant::now();
    let e = hub
        .request("silent", 1, Duration::from_millis(30))
        .unwrap_err();
    assert!(matches!(e, HubError::Timeout { .. }), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(30));

    // A callback that ignores requests: the requester learns it at once.
    let _ignore = hub.subscribe("ignored", |_| Ok(())).unwrap();
    let e = hub.request("ignored", 1, LONG).unwrap_err();
    assert!(
        matches!(e, HubError::Unanswered { receivers: 1, .. }),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::NoResponders);

    let plain = hub.subscribe_pull("plain").unwrap();
    hub.publish("plain", 1).unwrap();
    let m = plain.recv_timeout(LONG).unwrap();
    assert!(!m.is_request());
    assert_eq!(m.reply(1).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn request_many_stops_at_count_quiet_gap_or_deadline() {
    let hub = hub(2);
    let mut subs = Vec::new();
    for k in 0..4i64 {
        subs.push(
            hub.subscribe("census", move |m| {
                let _ = m.reply(k)?;
                Ok(())
            })
            .unwrap(),
        );
    }
    let all = hub
        .request_many("census", Value::Null, Gather::new(LONG).max(4))
        .unwrap();
    let mut got = ints(&all);
    got.sort();
    assert_eq!(got, [0, 1, 2, 3]);
    let two = hub
        .request_many("census", Value::Null, Gather::new(LONG).max(2))
        .unwrap();
    assert_eq!(two.len(), 2);
    // Without a count: every receiver answers and drops it, which ends the
    // gathering before the deadline.
    let t = Instant::now();
    let rest = hub
        .request_many("census", Value::Null, Gather::new(LONG))
        .unwrap();
    assert_eq!(rest.len(), 4);
    assert!(t.elapsed() < LONG);
    // A quiet gap ends it while a silent receiver still holds the request.
    let _silent = hub.subscribe_pull("census").unwrap();
    let q = hub
        .request_many(
            "census",
            Value::Null,
            Gather::new(LONG).quiet(Duration::from_millis(50)),
        )
        .unwrap();
    assert_eq!(q.len(), 4);
    let e = hub
        .request_many("nobody", 1, Gather::new(LONG))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoResponders);
}

#[test]
fn request_from_inside_a_callback_on_a_single_worker() {
    let hub = hub(1);
    let _svc = hub
        .subscribe("inner", |m| {
            let _ = m.reply(1)?;
            Ok(())
        })
        .unwrap();
    let h = hub.clone();
    let (tx, rx) = mpsc::channel();
    let _outer = hub
        .subscribe("outer", move |_| {
            // The responder's mailbox is queued behind this one on the only
            // worker: the wait runs it instead of blocking.
            tx.send(h.request("inner", 0, LONG).map(|m| m.payload().clone()))
                .unwrap();
            Ok(())
        })
        .unwrap();
    hub.publish("outer", 0).unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().unwrap(), Value::Int(1));
    hub.close(); // the callback holds a clone
}

#[test]
fn overflow_policies_count_drops_and_raise_rate_limited_alerts() {
    let hub = Hub::new(
        HubConfig::new()
            .workers(1)
            .alert_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    let alerts = hub.subscribe_pull("pso.alert.>").unwrap();
    let oldest = hub
        .subscribe_pull_with(
            "o",
            SubscribeOptions::new()
                .capacity(2)
                .overflow(Overflow::DropOldest)
                .owner("PAES"),
        )
        .unwrap();
    let newest = hub
        .subscribe_pull_with(
            "n",
            SubscribeOptions::new()
                .capacity(2)
                .overflow(Overflow::DropNewest),
        )
        .unwrap();
    let error = hub
        .subscribe_pull_with(
            "e",
            SubscribeOptions::new()
                .capacity(1)
                .overflow(Overflow::Error),
        )
        .unwrap();
    let block = hub
        .subscribe_pull_with(
            "b",
            SubscribeOptions::new()
                .capacity(1)
                .overflow(Overflow::Block(Duration::from_millis(10))),
        )
        .unwrap();
    for i in 0..5 {
        hub.publish("o", i).unwrap();
        hub.publish("n", i).unwrap();
    }
    let take = |s: &pso_core::Subscription| {
        let mut v = Vec::new();
        while let Some(m) = s.try_recv().unwrap() {
            v.push(m);
        }
        ints(&v)
    };
    assert_eq!(take(&oldest), [3, 4]);
    assert_eq!(take(&newest), [0, 1]);
    assert_eq!(oldest.status().dropped, 3);
    assert_eq!(newest.status().dropped, 3);

    hub.publish("e", 0).unwrap();
    let e = hub.publish("e", 1).unwrap_err();
    assert!(
        matches!(
            e,
            HubError::Overflow {
                timed_out: false,
                delivered: 0,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Overflow);
    hub.publish("b", 0).unwrap();
    let e = hub.publish("b", 1).unwrap_err();
    assert!(
        matches!(
            e,
            HubError::Overflow {
                timed_out: true,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(error.status().dropped, 1);
    assert_eq!(block.status().dropped, 1);

    // One alert per subscription (rate limit: one per hour here).
    let mut topics: Vec<String> = Vec::new();
    while let Some(a) = alerts.try_recv().unwrap() {
        topics.push(a.topic().to_owned());
        assert!(a.payload().get("dropped").and_then(Value::as_int).unwrap() >= 1);
    }
    topics.sort();
    assert_eq!(
        topics,
        [
            "pso.alert.PAES.dropped",
            "pso.alert.hub.dropped",
            "pso.alert.hub.dropped",
            "pso.alert.hub.dropped"
        ]
    );
    let st = hub.subscriptions();
    let o = st.iter().find(|s| s.pattern == "o").unwrap();
    assert_eq!(
        (o.capacity, o.policy, o.owner.as_deref(), o.kind),
        (2, Overflow::DropOldest, Some("PAES"), "pull")
    );
    assert_eq!(o.delivered, 2);
}

#[test]
fn block_policy_loses_nothing_and_keeps_order() {
    let hub = hub(1);
    let sub = hub
        .subscribe_pull_with(
            "s",
            SubscribeOptions::new()
                .capacity(2)
                .overflow(Overflow::Block(LONG)),
        )
        .unwrap();
    const N: i64 = 5_000;
    let h = hub.clone();
    let publisher = std::thread::spawn(move || {
        for i in 0..N {
            h.publish("s", i).unwrap();
        }
    });
    for i in 0..N {
        assert_eq!(sub.recv_timeout(LONG).unwrap().payload(), &Value::Int(i));
    }
    publisher.join().unwrap();
    assert_eq!(sub.status().dropped, 0);
}

#[test]
fn blocked_publisher_on_the_only_worker_helps_instead_of_deadlocking() {
    let hub = hub(1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _slow = hub
        .subscribe_with(
            "slow",
            SubscribeOptions::new()
                .capacity(1)
                .overflow(Overflow::Block(LONG)),
            move |m| {
                s.lock().unwrap().push(m.payload().as_int().unwrap());
                Ok(())
            },
        )
        .unwrap();
    let h = hub.clone();
    let _fan = hub
        .subscribe("fan", move |_| {
            for i in 0..50 {
                h.publish("slow", i)?;
            }
            Ok(())
        })
        .unwrap();
    hub.publish("fan", 0).unwrap();
    eventually("all 50 delivered", || seen.lock().unwrap().len() == 50);
    assert_eq!(*seen.lock().unwrap(), (0..50).collect::<Vec<_>>());
    hub.close(); // the callback holds a clone
}

#[test]
fn a_panicking_callback_is_counted_and_delivery_goes_on() {
    let hub = hub(1);
    let ok = Arc::new(AtomicUsize::new(0));
    let o = ok.clone();
    let sub = hub
        .subscribe("p", move |m| {
            match m.payload().as_int().unwrap() % 3 {
                0 => panic!("callback panics on purpose"),
                1 => return Err("callback fails on purpose".into()),
                _ => {}
            }
            o.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    for i in 0..30 {
        hub.publish("p", i).unwrap();
    }
    eventually("all handled", || {
        let s = sub.status();
        s.delivered + s.panics + s.errors == 30
    });
    let s = sub.status();
    assert_eq!((s.delivered, s.panics, s.errors), (10, 10, 10));
    assert_eq!(ok.load(Ordering::SeqCst), 10);
}

#[test]
fn direct_channels_carry_messages_in_order_and_close_cleanly() {
    let hub = Hub::new(HubConfig::new().workers(1).direct_capacity(8)).unwrap();
    hub.open_direct("PAES", "PPO", "declared").unwrap();
    assert_eq!(
        hub.open_direct("PPO", "PAES", "again").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        hub.open_direct("A", "A", "self").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let mut paes = hub.endpoint("PAES", "PPO").unwrap();
    let mut ppo = hub.endpoint("PPO", "PAES").unwrap();
    assert_eq!(
        hub.endpoint("PAES", "PPO").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        (paes.system(), paes.peer(), paes.capacity()),
        ("PAES", "PPO", 8)
    );

    const N: i64 = 20_000;
    let consumer = std::thread::spawn(move || {
        let mut next = 0;
        let mut batch = Vec::new();
        while next < N {
            if next % 2 == 0 {
                let v = ppo.recv_timeout(LONG).unwrap();
                assert_eq!(v, Value::Int(next));
                next += 1;
            } else {
                batch.clear();
                ppo.try_recv_batch(&mut batch, 16).unwrap();
                for v in &batch {
                    assert_eq!(v, &Value::Int(next));
                    next += 1;
                }
            }
        }
        ppo.send(Value::from("done")).unwrap();
        ppo
    });
    for i in 0..N {
        paes.send_timeout(Value::Int(i), LONG).unwrap();
    }
    let ppo = consumer.join().unwrap();
    assert_eq!(paes.recv_timeout(LONG).unwrap(), Value::from("done"));
    let st = hub.coordination_status();
    assert_eq!(st.mode("PPO", "PAES"), CoordinationMode::Direct);
    let pair = &st.direct_pairs[0];
    assert_eq!(
        (pair.sent_ab, pair.sent_ba, pair.endpoints_taken),
        (N as u64, 1, [true, true])
    );

    // Batches both ways.
    let mut ppo = ppo;
    let mut out: Vec<Value> = (0..20).map(Value::Int).collect();
    assert_eq!(paes.try_send_batch(&mut out).unwrap(), 8, "capacity 8");
    assert_eq!(out.first(), Some(&Value::Int(8)), "the rest stays");
    let mut got = Vec::new();
    assert_eq!(ppo.try_recv_batch(&mut got, 100).unwrap(), 8);
    assert_eq!(got, (0..8).map(Value::Int).collect::<Vec<_>>());

    // Full, then closed: the value comes back for publishing instead.
    let mut full = 0;
    while paes.try_send(Value::Int(0)).is_ok() {
        full += 1;
    }
    assert_eq!(full, 8);
    assert!(matches!(
        paes.try_send(Value::Int(9)),
        Err(DirectSendError::Full(Value::Int(9)))
    ));
    ppo.close();
    let e = paes.try_send(Value::Int(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert_eq!(e.into_value(), Value::Int(1));
    assert_eq!(
        hub.coordination_status().mode("PAES", "PPO"),
        CoordinationMode::Hierarchical
    );
    let changes = hub.coordination_status().changes;
    assert_eq!(changes.last().unwrap().reason, "closed by PPO");
}

#[test]
fn receivers_drain_then_see_closed_and_deactivation_closes_channels() {
    let hub = hub(1);
    hub.open_direct("A", "B", "t").unwrap();
    hub.open_direct("A", "C", "t").unwrap();
    hub.open_direct("B", "C", "t").unwrap();
    let mut a = hub.endpoint("A", "B").unwrap();
    let mut b = hub.endpoint("B", "A").unwrap();
    a.try_send(Value::Int(1)).unwrap();
    let waiter = std::thread::spawn(move || {
        let first = b.recv_timeout(LONG).unwrap();
        let end = b.recv_timeout(LONG).unwrap_err();
        (first, end)
    });
    assert_eq!(hub.close_system("A", "A deactivated"), 2);
    let (first, end) = waiter.join().unwrap();
    assert_eq!(first, Value::Int(1));
    assert!(
        matches!(&end, HubError::ChannelClosed { reason, .. } if reason == "A deactivated"),
        "{end}"
    );
    assert!(a.is_closed());
    let st = hub.coordination_status();
    assert_eq!(st.direct_pairs.len(), 1, "B<->C stays");
    assert_eq!(hub.close_system("nobody", "x"), 0);
    // Dropping an end closes the channel too.
    let c = hub.endpoint("C", "B").unwrap();
    drop(c);
    assert!(hub.coordination_status().direct_pairs.is_empty());
}

#[test]
fn promotion_candidates_promote_and_demote_with_reasons() {
    let hub = Hub::new(
        HubConfig::new()
            .workers(1)
            .promote_threshold(1.0)
            .demote_threshold(1e12)
            .rate_window(Duration::from_millis(1)),
    )
    .unwrap();
    let sub = hub
        .subscribe_pull_with(
            "ppo.in",
            SubscribeOptions::new().owner("PPO").capacity(10_000),
        )
        .unwrap();
    for i in 0..1000 {
        hub.publish_from("PAES", "ppo.in", i).unwrap();
    }
    // Rates are sampled over elapsed time; let some pass (any amount works:
    // 1000 messages over less than 1000 s is above the 1 msg/s threshold).
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(sub.recv_timeout(LONG).unwrap().sender(), Some("PAES"));
    let c = hub.promotion_candidates();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (c[0].a.as_str(), c[0].b.as_str(), c[0].action),
        ("PAES", "PPO", PairAction::Promote)
    );
    assert!(c[0].rate > 1.0);
    let st = hub.coordination_status();
    let edge = st
        .edges
        .iter()
        .find(|e| e.from == "PAES" && e.to == "PPO")
        .unwrap();
    assert_eq!(
        (edge.routed, edge.mode),
        (1000, CoordinationMode::Hierarchical)
    );

    hub.promote(&c[0].a, &c[0].b, &c[0].reason).unwrap();
    assert_eq!(
        hub.coordination_status().mode("PAES", "PPO"),
        CoordinationMode::Direct
    );
    // With the demotion threshold above any rate, the promoted pair is now a
    // demotion candidate.
    let c = hub.promotion_candidates();
    assert_eq!(c[0].action, PairAction::Demote);
    hub.demote("PAES", "PPO", &c[0].reason).unwrap();
    assert_eq!(
        hub.demote("PAES", "PPO", "again").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let changes = hub.coordination_status().changes;
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (changes[0].from, changes[0].to),
        (CoordinationMode::Hierarchical, CoordinationMode::Direct)
    );
    assert!(
        changes[0].reason.contains("promotion threshold"),
        "{}",
        changes[0].reason
    );
    assert_eq!(
        (changes[1].from, changes[1].to),
        (CoordinationMode::Direct, CoordinationMode::Hierarchical)
    );
    assert!(
        changes[1].reason.contains("demotion threshold"),
        "{}",
        changes[1].reason
    );
}

#[test]
fn mesh_scopes_open_and_close_their_channels() {
    let hub = hub(1);
    hub.open_direct("A", "B", "declared before").unwrap();
    let mesh = hub.mesh(&["A", "B", "C", "C"]).unwrap();
    assert_eq!(mesh.systems(), ["A", "B", "C"]);
    let st = hub.coordination_status();
    assert_eq!(
        st.mode("A", "B"),
        CoordinationMode::Direct,
        "kept, not taken over"
    );
    assert_eq!(st.mode("A", "C"), CoordinationMode::Mesh);
    assert_eq!(st.mode("B", "C"), CoordinationMode::Mesh);
    assert_eq!(st.meshes.len(), 1);
    assert_eq!(
        hub.demote("A", "C", "x").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let mut ac = mesh.endpoint("A", "C").unwrap();
    let mut ca = mesh.endpoint("C", "A").unwrap();
    ac.try_send(Value::Int(5)).unwrap();
    assert_eq!(ca.try_recv().unwrap(), Some(Value::Int(5)));
    mesh.close();
    assert!(ac.is_closed());
    let st = hub.coordination_status();
    assert_eq!(st.mode("A", "C"), CoordinationMode::Hierarchical);
    assert_eq!(st.mode("A", "B"), CoordinationMode::Direct);
    assert!(st.meshes.is_empty());
    assert_eq!(
        hub.mesh(&["A"]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    {
        let _m = hub.mesh(&["X", "Y"]).unwrap();
        assert_eq!(
            hub.coordination_status().mode("X", "Y"),
            CoordinationMode::Mesh
        );
    }
    assert_eq!(
        hub.coordination_status().mode("X", "Y"),
        CoordinationMode::Hierarchical
    );
}

#[test]
fn closing_the_hub_ends_everything() {
    let hub = hub(1);
    let sub = hub.subscribe_pull("x").unwrap();
    hub.open_direct("A", "B", "t").unwrap();
    let a = hub.endpoint("A", "B").unwrap();
    hub.close();
    assert!(hub.is_closed());
    assert_eq!(hub.publish("x", 1).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(
        sub.recv_timeout(LONG).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert!(a.is_closed());
    assert_eq!(
        hub.subscribe_pull("y").unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(hub.mesh(&["A", "B"]).unwrap_err().kind(), ErrorKind::Closed);
    let json = serde_json::to_string(&hub.coordination_status()).unwrap();
    assert!(json.contains("\"direct_pairs\":[]"), "{json}");
}

#[test]
fn payloads_are_shared_not_copied() {
    let hub = hub(1);
    let a = hub.subscribe_pull("big").unwrap();
    let b = hub.subscribe_pull("big").unwrap();
    hub.publish("big", Value::Bytes(vec![7; 1 << 16])).unwrap();
    let (ma, mb) = (a.recv_timeout(LONG).unwrap(), b.recv_timeout(LONG).unwrap());
    assert!(std::ptr::eq(ma.payload(), mb.payload()));
}

#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Hub>();
    send_sync::<Message>();
    send_sync::<pso_core::Subscription>();
    send_sync::<pso_core::Mesh>();
    send_sync::<HubError>();
    send::<pso_core::DirectEnd>();
}

#[test]
fn a_publish_after_subscribe_returns_reaches_the_new_subscription_from_any_thread() {
    // The publisher thread has the topic in its per-thread cache from before
    // the subscription; a publish that happens after subscribe returned must
    // still reach it.
    let hub = hub(1);
    let phase = Arc::new(AtomicUsize::new(0));
    for round in 0..50 {
        phase.store(0, Ordering::SeqCst);
        let (h, p) = (hub.clone(), phase.clone());
        let topic = format!("warm.{round}");
        let t = topic.clone();
        let publisher = std::thread::spawn(move || {
            let deadline = Instant::now() + LONG;
            while p.load(Ordering::Acquire) == 0 {
                // 0 before the subscription, 1 once it is visible here.
                assert!(h.publish(&t, -1).unwrap() <= 1);
                assert!(Instant::now() < deadline);
            }
            h.publish(&t, round).unwrap()
        });
        while hub.publish(&topic, -1).unwrap() != 0 {}
        std::thread::sleep(Duration::from_micros(50));
        let sub = hub.subscribe_pull(&topic).unwrap();
        phase.store(1, Ordering::Release);
        assert_eq!(publisher.join().unwrap(), 1, "round {round}");
        let mut last = None;
        while let Some(m) = sub.try_recv().unwrap() {
            last = m.payload().as_int();
        }
        assert_eq!(last, Some(round as i64));
    }
}

#[test]
fn subscribing_and_unsubscribing_while_publishers_run_is_safe() {
    let hub = hub(2);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishers: Vec<_> = (0..3)
        .map(|t| {
            let (h, s) = (hub.clone(), stop.clone());
            std::thread::spawn(move || {
                let topics = ["s.a.x", "s.b.x", "s.a.y", "q.r"];
                let mut i = 0u64;
                while !s.load(Ordering::Relaxed) && i < 200_000 {
                    let _ = h.publish(topics[(i as usize + t) % topics.len()], i as i64);
                    if i.is_multiple_of(97) {
                        let _ = h.request("s.a.x", 0, Duration::from_millis(1));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let delivered = Arc::new(AtomicUsize::new(0));
    for round in 0..150 {
        let pattern = ["s.>", "s.*.x", "s.a.*", "q.r", ">"][round % 5];
        let opts = SubscribeOptions::new()
            .capacity(4)
            .overflow(if round % 2 == 0 {
                Overflow::DropOldest
            } else {
                Overflow::DropNewest
            });
        if round % 3 == 0 {
            let s = hub.subscribe_pull_with(pattern, opts).unwrap();
            let _ = s.try_recv().unwrap();
            drop(s);
        } else {
            let d = delivered.clone();
            let s = hub
                .subscribe_with(
                    pattern,
                    opts.queue_group(format!("g{}", round % 2)),
                    move |m| {
                        if m.is_request() {
                            let _ = m.reply(1);
                        }
                        d.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    },
                )
                .unwrap();
            std::thread::yield_now();
            s.unsubscribe();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.join().unwrap();
    }
    assert!(hub.subscriptions().is_empty());
    hub.close();
}
