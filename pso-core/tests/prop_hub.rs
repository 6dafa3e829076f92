//! Property tests of the hub and the state store against simple models:
//!
//! * random subscribe / unsubscribe / publish sequences deliver to a
//!   subscription exactly the messages whose topic its pattern matches
//!   (checked against a direct token matcher), in publish order;
//! * under the `block` policy nothing is lost, whatever the capacity, for
//!   pull and callback subscriptions with a concurrent publisher;
//! * a watch delivers each selected revision after its start exactly once,
//!   in order, even when its queue overflows and it catches up from history.
//!
//! All waits are bounded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use pso_core::{
    Hub, HubConfig, Overflow, StateConfig, StateStore, SubscribeOptions, Subscription, Value,
};

const LONG: Duration = Duration::from_secs(20);

/// The reference: token-by-token comparison.
fn reference_match(pattern: &str, topic: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let t: Vec<&str> = topic.split('.').collect();
    for (i, tok) in p.iter().enumerate() {
        if *tok == ">" {
            return t.len() > i;
        }
        match t.get(i) {
            Some(x) if *tok == "*" || tok == x => {}
            _ => return false,
        }
    }
    p.len() == t.len()
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_owned)
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..4).prop_map(|t| t.join("."))
}

fn pattern() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => token(), 1 => Just("*".to_owned())], 1..4),
        any::<bool>(),
    )
        .prop_map(|(mut toks, gt)| {
            if gt {
                *toks.last_mut().unwrap() = ">".to_owned();
            }
            toks.join(".")
        })
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe(String),
    Unsubscribe(usize),
    Publish(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => pattern().prop_map(Op::Subscribe),
        1 => any::<usize>().prop_map(Op::Unsubscribe),
        5 => topic().prop_map(Op::Publish),
    ]
}

struct Live {
    pattern: String,
    sub: Subscription,
    expected: Vec<i64>,
}

fn drain_and_check(l: &Live) -> Result<(), TestCaseError> {
    let mut got = Vec::new();
    while let Some(m) = l.sub.try_recv().unwrap() {
        prop_assert!(
            reference_match(&l.pattern, m.topic()),
            "'{}' received non-matching '{}'",
            l.pattern,
            m.topic()
        );
        got.push(m.payload().as_int().unwrap());
    }
    prop_assert_eq!(&got, &l.expected, "pattern {}", l.pattern);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn delivers_exactly_the_matching_messages_in_order(ops in prop::collection::vec(op(), 1..80)) {
        let hub = Hub::new(HubConfig::new().workers(1).queue_capacity(1024).overflow(Overflow::Block(LONG))).unwrap();
        let mut live: Vec<Live> = Vec::new();
        for (seq, op) in ops.into_iter().enumerate() {
            match op {
                Op::Subscribe(p) => {
                    let sub = hub.subscribe_pull(&p).unwrap();
                    live.push(Live { pattern: p, sub, expected: Vec::new() });
                }
                Op::Unsubscribe(i) if !live.is_empty() => {
                    let l = live.remove(i % live.len());
                    drain_and_check(&l)?;
                    l.sub.unsubscribe();
                }
                Op::Unsubscribe(_) => {}
                Op::Publish(t) => {
                    let n = hub.publish(&t, seq as i64).unwrap();
                    let mut want = 0;
                    for l in &mut live {
                        if reference_match(&l.pattern, &t) {
                            l.expected.push(seq as i64);
                            want += 1;
                        }
                    }
                    prop_assert_eq!(n, want, "receivers of '{}'", t);
                }
            }
        }
        for l in &live {
            drain_and_check(l)?;
            prop_assert_eq!(l.sub.status().dropped, 0);
        }
    }

    #[test]
    fn block_policy_never_loses_a_message(capacity in 1usize..5, n in 1i64..400, callback in any::<bool>()) {
        let hub = Hub::new(HubConfig::new().workers(2)).unwrap();
        let opts = SubscribeOptions::new().capacity(capacity).overflow(Overflow::Block(LONG));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let pull;
        let _cb;
        if callback {
            let s = seen.clone();
            _cb = Some(hub.subscribe_with("x.y", opts, move |m| {
                s.lock().unwrap().push(m.payload().as_int().unwrap());
                Ok(())
            }).unwrap());
            pull = None;
        } else {
            _cb = None;
            pull = Some(hub.subscribe_pull_with("x.*", opts).unwrap());
        }
        let h = hub.clone();
        let publisher = std::thread::spawn(move || {
            for i in 0..n {
                h.publish("x.y", i).unwrap();
            }
        });
        if let Some(p) = &pull {
            for i in 0..n {
                let m = p.recv_timeout(LONG).unwrap();
                prop_assert_eq!(m.payload(), &Value::Int(i));
            }
        }
        publisher.join().unwrap();
        let deadline = Instant::now() + LONG;
        if callback {
            while seen.lock().unwrap().len() < n as usize {
                prop_assert!(Instant::now() < deadline, "callback deliveries timed out");
                std::thread::sleep(Duration::from_millis(1));
            }
            prop_assert_eq!(&*seen.lock().unwrap(), &(0..n).collect::<Vec<_>>());
        }
        let dropped: u64 = hub.subscriptions().iter().map(|s| s.dropped).sum();
        prop_assert_eq!(dropped, 0);
    }
}

#[derive(Debug, Clone)]
enum StateOp {
    Put(u8, i64),
    Delete(u8),
    Cas(u8, bool, i64),
    Watch(bool, u8, u8),
}

fn state_op() -> impl Strategy<Value = StateOp> {
    prop_oneof![
        4 => (0u8..4, any::<i64>()).prop_map(|(k, v)| StateOp::Put(k, v)),
        1 => (0u8..4).prop_map(StateOp::Delete),
        2 => (0u8..4, any::<bool>(), any::<i64>()).prop_map(|(k, ok, v)| StateOp::Cas(k, ok, v)),
        1 => (any::<bool>(), 0u8..4, any::<u8>()).prop_map(|(p, k, back)| StateOp::Watch(p, k, back)),
    ]
}

fn key(k: u8) -> String {
    format!("{}.{k}", if k < 2 { "left" } else { "right" })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn watch_delivers_each_revision_exactly_once(ops in prop::collection::vec(state_op(), 1..120), cap in 1usize..6) {
        let store = StateStore::with_config(StateConfig::new().watch_capacity(cap).history_per_key(10_000));
        // The model: every change as (revision, key).
        let mut log: Vec<(u64, String)> = Vec::new();
        let mut watches = Vec::new();
        for op in ops {
            match op {
                StateOp::Put(k, v) => {
                    let r = store.put(&key(k), v).unwrap();
                    log.push((r, key(k)));
                }
                StateOp::Delete(k) => {
                    if let Some(r) = store.delete(&key(k)).unwrap() {
                        log.push((r, key(k)));
                    }
                }
                StateOp::Cas(k, right, v) => {
                    let cur = store.get(&key(k)).unwrap().map_or(0, |e| e.revision);
                    let expected = if right { cur } else { cur + 1_000_000 };
                    match store.compare_and_set(&key(k), expected, v) {
                        Ok(r) => {
                            prop_assert!(right);
                            log.push((r, key(k)));
                        }
                        Err(e) => {
                            prop_assert!(!right);
                            prop_assert_eq!(e.current_revision(), Some(cur));
                        }
                    }
                }
                StateOp::Watch(prefix, k, back) => {
                    let from = store.revision().saturating_sub(back as u64 % 8);
                    let sel = if prefix { "left.".to_owned() } else { key(k) };
                    let w = if prefix { store.watch_prefix(&sel, from) } else { store.watch(&sel, from) };
                    watches.push((prefix, sel, from, w.unwrap()));
                }
            }
        }
        for (prefix, sel, from, mut w) in watches {
            let want: Vec<u64> = log
                .iter()
                .filter(|(r, k)| *r > from && if prefix { k.starts_with(&sel) } else { *k == sel })
                .map(|(r, _)| *r)
                .collect();
            let got: Vec<u64> = (0..want.len()).map(|_| w.recv_timeout(LONG).unwrap().revision).collect();
            prop_assert_eq!(&got, &want, "watch {} from {}", sel, from);
            prop_assert!(w.try_recv().unwrap().is_none(), "nothing extra");
        }
        let revs: Vec<u64> = log.iter().map(|(r, _)| *r).collect();
        prop_assert!(revs.windows(2).all(|w| w[0] < w[1]), "revisions strictly increase");
    }
}
