//! Model-based test of the public API: random sequences of operations on one
//! [`Orchestrator`] — register, connect, activate, deactivate, run a workflow,
//! cancel it, allocate, release, subscribe, unsubscribe, publish, receive, put,
//! delete, compare-and-set, snapshot and restore of the state store — each
//! applied both to the orchestrator and to a small sequential reference model
//! ([`Model`]).
//!
//! Invariants checked after **every** operation:
//!
//! * every registered system's state agrees with the model (the model derives
//!   activation/deactivation closures, blocking by failed `requires`, and
//!   idempotence from the relations it saw accepted; cycles are predicted);
//! * resource totals balance: allocated = the sum of the held leases (those
//!   the model holds and those the status lists), never above capacity, and
//!   free = capacity − allocated; a zero-wait request is granted exactly when
//!   the model says it fits;
//! * under the `block` policy no message is lost or duplicated: per
//!   subscription, received + queued = published-and-matching, with no drop
//!   counted; pull subscriptions receive exactly the expected payloads in
//!   publish order;
//! * every accepted workflow step ends in exactly one terminal state: while a
//!   run is live, terminal + unfinished = accepted; once it ended,
//!   accepted = succeeded + failed + cancelled + timed_out + skipped, each
//!   step's handler ran at most once, and without a cancel every step's state
//!   is the one the model predicts;
//! * the state store agrees with the model key by key (value and revision) and
//!   in its revision counter, across snapshot/restore.
//!
//! Case count: `PSO_MODEL_CASES` (default 512), each 128 operations.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

#[path = "model/reference.rs"]
mod reference;
use pso_core::{
    EdgeKind, HandlerError, Orchestrator, Overflow, ResourceRequest, RunHandle, StepSpec,
    StepState, SubscribeOptions, Subscription, SubscriptionId, SystemSpec, Value, Workflow,
};
use reference::{Beh, MSys, Model, expected_states, matches};

/// Operations per case.
const OPS: usize = 128;
/// Systems are named `s0..s{SYSTEMS}`.
const SYSTEMS: u8 = 6;
/// Capacity of the one resource dimension.
const CPU: u64 = 10;
/// Bounded waits: generous, never timing-tight.
const LONG: Duration = Duration::from_secs(30);
/// Topics and patterns live under `m.`: the orchestrator publishes its own
/// events (`pso.*`) on the same hub.
const TOPICS: [&str; 4] = ["m.a", "m.b", "m.a.c", "m.b.c"];
const PATTERNS: [&str; 6] = ["m.a", "m.*", "m.>", "m.*.c", "m.a.>", "m.b"];
const KEYS: [&str; 3] = ["k.0", "k.1", "k.2"];

fn cases() -> u32 {
    std::env::var("PSO_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn sys(i: u8) -> String {
    format!("s{i}")
}

#[derive(Debug, Clone)]
enum Op {
    Register {
        sys: u8,
        requires: Option<u8>,
        fails: bool,
    },
    Connect {
        from: u8,
        to: u8,
        wants: bool,
    },
    Activate(u8),
    Deactivate(u8),
    /// Steps and edges `(from, to)` with `from < to`.
    Run {
        steps: Vec<Beh>,
        edges: Vec<(usize, usize)>,
    },
    Cancel(usize),
    Allocate {
        sys: u8,
        amount: u64,
    },
    Release(usize),
    Subscribe {
        pattern: usize,
        callback: bool,
        capacity: usize,
    },
    Unsubscribe(usize),
    Publish(usize),
    Recv(usize),
    Put(usize, i64),
    Delete(usize),
    Cas {
        key: usize,
        right: bool,
        value: i64,
    },
    Snapshot,
    Restore,
}

fn beh() -> impl Strategy<Value = Beh> {
    prop_oneof![
        6 => Just(Beh::Ok),
        1 => Just(Beh::Fail),
        1 => Just(Beh::Panic),
        1 => Just(Beh::Slow),
        1 => Just(Beh::Skip),
    ]
}

fn run_op() -> impl Strategy<Value = Op> {
    (1usize..6)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(beh(), n),
                prop::collection::vec((0..n, 0..n), 0..2 * n),
            )
        })
        .prop_map(|(steps, raw)| {
            let mut edges: Vec<(usize, usize)> = raw
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect();
            edges.sort_unstable();
            edges.dedup();
            Op::Run { steps, edges }
        })
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SYSTEMS;
    prop_oneof![
        4 => (s.clone(), prop::option::weighted(0.5, s.clone()), prop::bool::weighted(0.2))
            .prop_map(|(sys, requires, fails)| Op::Register { sys, requires, fails }),
        3 => (s.clone(), s.clone(), any::<bool>()).prop_map(|(from, to, wants)| Op::Connect { from, to, wants }),
        4 => s.clone().prop_map(Op::Activate),
        3 => s.clone().prop_map(Op::Deactivate),
        3 => run_op(),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => (s.clone(), 1u64..12).prop_map(|(sys, amount)| Op::Allocate { sys, amount }),
        2 => any::<usize>().prop_map(Op::Release),
        2 => (0..PATTERNS.len(), any::<bool>(), 1usize..4)
            .prop_map(|(pattern, callback, capacity)| Op::Subscribe { pattern, callback, capacity }),
        1 => any::<usize>().prop_map(Op::Unsubscribe),
        5 => (0..TOPICS.len()).prop_map(Op::Publish),
        2 => any::<usize>().prop_map(Op::Recv),
        3 => (0..KEYS.len(), any::<i64>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0..KEYS.len()).prop_map(Op::Delete),
        3 => (0..KEYS.len(), any::<bool>(), any::<i64>())
            .prop_map(|(key, right, value)| Op::Cas { key, right, value }),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Restore),
    ]
}

/// A subscription: the real one and what it must have received.
struct Sub {
    pattern: &'static str,
    sub: Subscription,
    id: SubscriptionId,
    /// Expected payloads, in publish order.
    expected: Vec<i64>,
    /// Pull: how many were received so far. Callback: the received payloads.
    received: usize,
    seen: Option<Arc<Mutex<Vec<i64>>>>,
}

/// A live workflow run with its expected outcome.
struct Run {
    handle: RunHandle,
    steps: Vec<Beh>,
    edges: Vec<(usize, usize)>,
    executions: Arc<Vec<AtomicUsize>>,
    cancelled: bool,
}

struct Harness {
    o: Orchestrator,
    m: Model,
    subs: Vec<Sub>,
    runs: Vec<Run>,
    next_payload: i64,
    snap_path: PathBuf,
}

static CASE: AtomicUsize = AtomicUsize::new(0);

impl Harness {
    fn new() -> Harness {
        let o = Orchestrator::builder().workers(2).build().unwrap();
        o.set_capacity("cpu", CPU).unwrap();
        let snap_path = std::env::temp_dir().join(format!(
            "pso-model-{}-{}.json",
            std::process::id(),
            CASE.fetch_add(1, Ordering::Relaxed)
        ));
        Harness {
            o,
            m: Model::default(),
            subs: Vec::new(),
            runs: Vec::new(),
            next_payload: 0,
            snap_path,
        }
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Register {
                sys: i,
                requires,
                fails,
            } => {
                let mut spec = SystemSpec::new(sys(i))
                    .on_activate(move |_| {
                        if fails {
                            Err(HandlerError::failed("planned activation failure"))
                        } else {
                            Ok(())
                        }
                    })
                    .on_deactivate(|_| Ok(()));
                if let Some(r) = requires {
                    spec = spec.requires(sys(r));
                }
                let ok = !self.m.systems.contains_key(&i)
                    && requires.is_none_or(|r| r != i && self.m.systems.contains_key(&r));
                let got = self.o.register(spec);
                prop_assert_eq!(got.is_ok(), ok, "register {:?}: {:?}", i, got);
                if ok {
                    self.m.systems.insert(
                        i,
                        MSys {
                            fails,
                            state: "Registered",
                        },
                    );
                    if let Some(r) = requires {
                        self.m.edges.insert((i, r), false);
                    }
                }
            }
            Op::Connect { from, to, wants } => {
                let kind = if wants {
                    EdgeKind::Wants
                } else {
                    EdgeKind::Requires
                };
                let known = self.m.systems.contains_key(&from) && self.m.systems.contains_key(&to);
                let existing = self.m.edges.get(&(from, to)) == Some(&wants);
                let ok = known && from != to && (existing || !self.m.reaches(to, from));
                let got = self.o.connect(&sys(from), kind, &sys(to));
                prop_assert_eq!(
                    got.is_ok(),
                    ok,
                    "connect s{} {:?} s{}: {:?}",
                    from,
                    kind,
                    to,
                    got
                );
                if ok && !existing {
                    // A second relation of the other kind between the same
                    // pair is allowed; the stronger one (requires) decides.
                    let w = self.m.edges.get(&(from, to)).is_none_or(|&w| w) && wants;
                    self.m.edges.insert((from, to), w);
                }
            }
            Op::Activate(i) => {
                let got = self.o.activate_system(&sys(i));
                match self.m.systems.contains_key(&i) {
                    false => prop_assert!(got.is_err()),
                    true => {
                        self.m.activate(i);
                        prop_assert_eq!(
                            got.is_ok(),
                            self.m.active(i),
                            "activate s{}: {:?}",
                            i,
                            got
                        );
                    }
                }
            }
            Op::Deactivate(i) => {
                let got = self.o.deactivate_system(&sys(i));
                prop_assert_eq!(got.is_ok(), self.m.systems.contains_key(&i), "{:?}", got);
                if self.m.systems.contains_key(&i) {
                    self.m.deactivate(i);
                }
            }
            Op::Run { steps, edges } => self.start_run(steps, edges)?,
            Op::Cancel(i) if !self.runs.is_empty() => {
                let n = self.runs.len();
                let r = &mut self.runs[i % n];
                r.handle.cancel();
                r.cancelled = true;
            }
            Op::Allocate { sys: i, amount } => {
                let req = ResourceRequest::new()
                    .amount("cpu", amount)
                    .wait(Duration::ZERO);
                let got = self.o.allocate_resources(&sys(i), &req);
                let fits = self.m.systems.contains_key(&i) && self.m.allocated() + amount <= CPU;
                prop_assert_eq!(
                    got.is_ok(),
                    fits,
                    "allocate {} for s{}: {:?}",
                    amount,
                    i,
                    got.as_ref().err()
                );
                if let Ok(lease) = got {
                    self.m.leases.push((lease.id(), amount, lease));
                }
            }
            Op::Release(i) if !self.m.leases.is_empty() => {
                let n = self.m.leases.len();
                let (_, _, lease) = self.m.leases.remove(i % n);
                prop_assert!(lease.release(), "a held lease releases once");
            }
            Op::Subscribe {
                pattern,
                callback,
                capacity,
            } => {
                let pattern = PATTERNS[pattern];
                let block = Overflow::Block(LONG);
                let hub = self.o.hub();
                let (sub, seen) = if callback {
                    let seen = Arc::new(Mutex::new(Vec::new()));
                    let s = seen.clone();
                    let opts = SubscribeOptions::new().capacity(capacity).overflow(block);
                    let sub = hub
                        .subscribe_with(pattern, opts, move |m| {
                            s.lock().unwrap().push(m.payload().as_int().unwrap());
                            Ok(())
                        })
                        .unwrap();
                    (sub, Some(seen))
                } else {
                    // A pull subscription is drained by this thread only, so
                    // it is large enough never to block the publisher.
                    let opts = SubscribeOptions::new().capacity(OPS).overflow(block);
                    (hub.subscribe_pull_with(pattern, opts).unwrap(), None)
                };
                let id = sub.id();
                self.subs.push(Sub {
                    pattern,
                    sub,
                    id,
                    expected: Vec::new(),
                    received: 0,
                    seen,
                });
            }
            Op::Unsubscribe(i) if !self.subs.is_empty() => {
                let n = self.subs.len();
                let mut s = self.subs.remove(i % n);
                finish_sub(&mut s)?;
                s.sub.unsubscribe();
            }
            Op::Publish(t) => {
                let topic = TOPICS[t];
                let payload = self.next_payload;
                self.next_payload += 1;
                let got = self.o.hub().publish(topic, payload).unwrap();
                let mut want = 0;
                for s in &mut self.subs {
                    if matches(s.pattern, topic) {
                        s.expected.push(payload);
                        want += 1;
                    }
                }
                prop_assert_eq!(got, want, "receivers of {}", topic);
            }
            Op::Recv(i) if !self.subs.is_empty() => {
                let n = self.subs.len();
                let s = &mut self.subs[i % n];
                if s.seen.is_none() {
                    let got = s
                        .sub
                        .try_recv()
                        .unwrap()
                        .map(|m| m.payload().as_int().unwrap());
                    prop_assert_eq!(got, s.expected.get(s.received).copied(), "{}", s.pattern);
                    s.received += usize::from(got.is_some());
                }
            }
            Op::Put(k, v) => {
                let r = self.o.state().put(KEYS[k], v).unwrap();
                self.m.revision += 1;
                prop_assert_eq!(r, self.m.revision);
                self.m.kv.insert(KEYS[k], (r, v));
            }
            Op::Delete(k) => {
                let r = self.o.state().delete(KEYS[k]).unwrap();
                match self.m.kv.remove(KEYS[k]) {
                    None => prop_assert_eq!(r, None),
                    Some(_) => {
                        self.m.revision += 1;
                        prop_assert_eq!(r, Some(self.m.revision));
                    }
                }
            }
            Op::Cas { key, right, value } => {
                let cur = self.m.kv.get(KEYS[key]).map_or(0, |e| e.0);
                let expected = if right {
                    cur
                } else {
                    cur + 1 + value.unsigned_abs() % 5
                };
                let got = self.o.state().compare_and_set(KEYS[key], expected, value);
                match got {
                    Ok(r) => {
                        prop_assert!(right, "CAS with a wrong revision succeeded");
                        self.m.revision += 1;
                        prop_assert_eq!(r, self.m.revision);
                        self.m.kv.insert(KEYS[key], (r, value));
                    }
                    Err(e) => {
                        prop_assert!(!right, "CAS with the right revision failed: {}", e);
                        prop_assert_eq!(e.current_revision(), Some(cur));
                    }
                }
            }
            Op::Snapshot => {
                self.o.state().snapshot(&self.snap_path).unwrap();
                self.m.snapshot = Some((self.m.kv.clone(), self.m.revision));
            }
            Op::Restore => match &self.m.snapshot {
                None => prop_assert!(self.o.state().restore(&self.snap_path).is_err()),
                Some((kv, rev)) => {
                    self.o.state().restore(&self.snap_path).unwrap();
                    self.m.kv = kv.clone();
                    self.m.revision = self.m.revision.max(*rev);
                }
            },
            Op::Cancel(_) | Op::Release(_) | Op::Unsubscribe(_) | Op::Recv(_) => {}
        }
        Ok(())
    }

    fn start_run(
        &mut self,
        steps: Vec<Beh>,
        edges: Vec<(usize, usize)>,
    ) -> Result<(), TestCaseError> {
        let executions: Arc<Vec<AtomicUsize>> =
            Arc::new(steps.iter().map(|_| AtomicUsize::new(0)).collect());
        let mut b = Workflow::builder("model");
        for (i, &beh) in steps.iter().enumerate() {
            let ex = executions.clone();
            let mut s = StepSpec::func(format!("w{i}"), move |_| {
                ex[i].fetch_add(1, Ordering::SeqCst);
                match beh {
                    Beh::Ok | Beh::Skip => Ok(Value::from(i as i64)),
                    Beh::Fail => Err(HandlerError::failed("planned step failure")),
                    Beh::Panic => panic!("planned step panic"),
                    Beh::Slow => {
                        std::thread::sleep(Duration::from_millis(1));
                        Ok(Value::Null)
                    }
                }
            });
            if beh == Beh::Skip {
                s = s.when(|_| false);
            }
            for &(a, bb) in &edges {
                if bb == i {
                    s = s.after(format!("w{a}"));
                }
            }
            b.add(s);
        }
        let wf = b.build(&self.o).unwrap();
        let handle = self.o.coordinate_systems(&wf).unwrap();
        self.runs.push(Run {
            handle,
            steps,
            edges,
            executions,
            cancelled: false,
        });
        Ok(())
    }

    /// The invariants that hold after every operation.
    fn check(&mut self) -> Result<(), TestCaseError> {
        // Systems agree with the model.
        let status = self.o.system_status();
        prop_assert_eq!(status.len(), self.m.systems.len());
        for s in &status {
            let i: u8 = s.name[1..].parse().unwrap();
            prop_assert_eq!(
                s.state.name(),
                self.m.systems[&i].state,
                "state of {}",
                s.name
            );
        }
        // Resource totals balance.
        let rs = self.o.resource_status();
        let cpu = rs.dimension("cpu").unwrap();
        let held: u64 = rs
            .leases
            .iter()
            .map(|l| l.amounts.get("cpu").copied().unwrap_or(0))
            .sum();
        prop_assert_eq!(cpu.allocated, self.m.allocated());
        prop_assert_eq!(cpu.allocated, held);
        prop_assert!(cpu.allocated <= cpu.capacity);
        prop_assert_eq!(cpu.free, cpu.capacity - cpu.allocated);
        let ids: BTreeSet<u64> = rs.leases.iter().map(|l| l.id).collect();
        let model_ids: BTreeSet<u64> = self.m.leases.iter().map(|l| l.0).collect();
        prop_assert_eq!(ids, model_ids);
        // No message lost or duplicated under the block policy.
        let statuses = self.o.hub().subscriptions();
        for s in &self.subs {
            let st = statuses.iter().find(|x| x.id == s.id).unwrap();
            prop_assert_eq!(st.dropped, 0, "{}", s.pattern);
            match &s.seen {
                None => {
                    prop_assert_eq!(s.received + st.queue_len, s.expected.len(), "{}", s.pattern)
                }
                Some(seen) => {
                    let seen = seen.lock().unwrap();
                    prop_assert!(seen.len() <= s.expected.len(), "{} duplicated", s.pattern);
                    prop_assert_eq!(&seen[..], &s.expected[..seen.len()], "{}", s.pattern);
                }
            }
        }
        // Workflow steps end in exactly one terminal state.
        let mut i = 0;
        while i < self.runs.len() {
            let p = self.runs[i].handle.progress();
            prop_assert_eq!(p.counts.accepted, self.runs[i].steps.len());
            prop_assert_eq!(p.counts.terminal() + p.counts.unfinished, p.counts.accepted);
            if self.runs[i].handle.is_finished() {
                let r = self.runs.swap_remove(i);
                check_run(&r, LONG)?;
            } else {
                i += 1;
            }
        }
        // The state store agrees with the model.
        let st = self.o.state();
        prop_assert_eq!(st.revision(), self.m.revision);
        for k in KEYS {
            let got = st
                .get(k)
                .unwrap()
                .map(|e| (e.revision, e.value.as_int().unwrap()));
            prop_assert_eq!(got, self.m.kv.get(k).copied(), "key {}", k);
        }
        Ok(())
    }

    /// Ends the case: every run and every delivery finishes (bounded waits).
    fn finish(mut self) -> Result<(), TestCaseError> {
        for r in std::mem::take(&mut self.runs) {
            check_run(&r, LONG)?;
        }
        for s in &mut self.subs {
            finish_sub(s)?;
        }
        self.o.close();
        let _ = std::fs::remove_file(&self.snap_path);
        Ok(())
    }
}

/// Waits for a run (bounded) and checks its steps against the model.
fn check_run(r: &Run, wait: Duration) -> Result<(), TestCaseError> {
    let res = r
        .handle
        .wait_timeout(wait)
        .ok_or_else(|| TestCaseError::fail("run never finished"))?;
    let c = res.counts();
    let n = r.steps.len();
    prop_assert_eq!(c.accepted, n);
    prop_assert_eq!(c.unfinished, 0);
    prop_assert_eq!(c.terminal(), n, "{:?}", c);
    let want = expected_states(&r.steps, &r.edges);
    for (i, w) in want.iter().enumerate() {
        let got = res.step_state(&format!("w{i}")).unwrap();
        prop_assert!(got.is_terminal());
        let ran = r.executions[i].load(Ordering::SeqCst);
        prop_assert!(ran <= 1, "step w{} ran {} times", i, ran);
        if r.cancelled {
            prop_assert!(
                got == *w || got == StepState::Cancelled,
                "w{}: {:?}, expected {:?} or Cancelled",
                i,
                got,
                w
            );
        } else {
            prop_assert_eq!(got, *w, "w{} of {:?} {:?}", i, r.steps, r.edges);
        }
        if got == StepState::Succeeded {
            prop_assert_eq!(ran, 1, "w{} succeeded without running", i);
        }
    }
    Ok(())
}

/// Drains a subscription and checks it got exactly what was published to it.
fn finish_sub(s: &mut Sub) -> Result<(), TestCaseError> {
    match &s.seen {
        None => {
            while s.received < s.expected.len() {
                let m = s.sub.recv_timeout(LONG).unwrap();
                prop_assert_eq!(m.payload().as_int(), Some(s.expected[s.received]));
                s.received += 1;
            }
            prop_assert!(
                s.sub.try_recv().unwrap().is_none(),
                "{} duplicated",
                s.pattern
            );
        }
        Some(seen) => {
            let deadline = std::time::Instant::now() + LONG;
            while seen.lock().unwrap().len() < s.expected.len() {
                prop_assert!(std::time::Instant::now() < deadline, "deliveries timed out");
                std::thread::sleep(Duration::from_millis(1));
            }
            prop_assert_eq!(&*seen.lock().unwrap(), &s.expected);
        }
    }
    prop_assert_eq!(s.sub.status().dropped, 0);
    Ok(())
}

fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.starts_with("planned"));
            if !planned {
                default(info);
            }
        }));
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn api_agrees_with_the_model(ops in prop::collection::vec(op(), OPS)) {
        quiet_planned_panics();
        let mut h = Harness::new();
        for op in ops {
            h.apply(op)?;
            h.check()?;
        }
        h.finish()?;
    }
}
