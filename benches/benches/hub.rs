//! The hub and the state store (issue 5): publish with 0 to 16 subscribers,
//! wildcard matching among 10,000 subscriptions, direct channels, request /
//! reply, and state store get and compare-and-set, each next to a baseline
//! measured in the same run.
//!
//! # Cases
//! * `publish/{exact,wildcard}/subs=K` (K = 0, 1, 4, 16): `Hub::publish` of
//!   a `Value::Int` to `bench.pub.evt` with K pull subscriptions on
//!   `bench.pub.evt` (exact) or `bench.*.evt` (wildcard), default options
//!   (queue of 1024, `block` policy). A consumer thread drains every
//!   subscription with `try_recv` in a loop. Timed: the publishes, on the
//!   bench thread, back to back; ns per publish.
//! * `publish/baseline/crossbeam/subs=K` (K = 1, 4, 16): the same fan-out by
//!   hand: one `Arc<Value>` per message, cloned into K
//!   `crossbeam_channel::bounded(1024)` channels, drained the same way.
//! * `publish_batched/{exact,wildcard}/subs=K`: the same publishes, but no
//!   consumer thread: the bench thread times batches of [`PUB_BATCH`] (512)
//!   publishes one by one and drains the subscriptions itself between
//!   batches, untimed. A queue holds 1024, so no publish ever waits. This is
//!   the publisher's own cost; the summary gives the mean and the median
//!   batch (robust to the bench being descheduled).
//! * `match10k/{exact,wildcard}/{hot,rotating}` (batched like the above):
//!   10,000 pull subscriptions on `svc.{i}.evt`. *exact*: publish to
//!   `svc.{i}.evt` (each matches one of them); *wildcard*: the 10,000
//!   subscriptions use `i` in 10,000..20,000 (never matched) plus one on
//!   `svc.*.evt`, and publish to the same topics as *exact*, so every
//!   publish has exactly one receiver in both. *hot*: always `svc.7.evt`
//!   (the per-thread topic cache hits); *rotating*: cycles through the
//!   10,000 topics, more than the shared match cache holds (4,096), so every
//!   publish walks the subscription tree.
//! * `direct/{single,batch}` and `direct/baseline/crossbeam`: 5,000,000
//!   `Value::Int`s from a producer thread to the bench thread through a hub
//!   direct channel (`DirectEnd::send` / `recv`; or `try_send_batch` /
//!   `try_recv_batch` of up to 256) and through `crossbeam_channel::bounded(1024)`
//!   (`send` / `recv`; the direct ring also holds 1024). Timed: from before
//!   the producer starts until the last message is received.
//! * `request/hub` and `request/baseline/crossbeam`: a round trip: `Hub::request`
//!   to a callback subscription (on the hub's 1 worker) that replies with
//!   the payload; against a responder thread echoing through two
//!   `crossbeam_channel::bounded(1)`. Each round trip timed on its own.
//! * `state/{get,cas}` and `state/baseline/mutex_hashmap/{get,cas}`:
//!   `StateStore::get` of one of 1,024 keys (rotating) and
//!   `compare_and_set` with the known current revision (always succeeds);
//!   against a `parking_lot::Mutex<std::collections::HashMap<String,
//!   (u64, Arc<Value>)>>` doing the same (get: lock, look up, clone the
//!   `Arc`; CAS: lock, compare the revision, store a new `Arc`). One thread.
//!
//! After criterion's output a summary prints every figure (the median of
//! the measurement samples), the load average, delivery checks, and the
//! issue's goals with MET/MISSED.
//!
//! Run (about 4 minutes; see BENCHMARKS.md):
//! `nice cargo bench -p pso-benches --bench hub -- --warm-up-time 1 --measurement-time 2`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use crossbeam_channel::{Receiver, Sender, bounded};
use pso_core::{Hub, HubConfig, StateStore, Subscription, Value};

#[path = "common/record.rs"]
mod record;

use record::{
    cell, clock_overhead, cpu, cpu_since, fig, load, ns, ns32, pct, record, record_cpu,
    record_latencies, thread_cpu, verdict,
};

const FANOUT: [usize; 4] = [0, 1, 4, 16];
/// Publishes per timed batch when the subscriptions are drained between
/// batches on the publishing thread (a queue holds 1024).
const PUB_BATCH: usize = 512;
const MATCH_SUBS: usize = 10_000;
const DIRECT_N: u64 = 5_000_000;
const BATCH: usize = 256;
const KEYS: usize = 1024;
const SAMPLES: usize = 20;
const DIRECT_SAMPLES: usize = 10;

const GOAL_DIRECT_NS: f64 = 25.0;
const GOAL_PUBLISH_NS: f64 = 60.0;
const GOAL_PER_SUB_NS: f64 = 15.0;
const GOAL_WILDCARD_X: f64 = 2.0;
const GOAL_RTT_NS: u32 = 2_000;
const GOAL_GETS: f64 = 5e6;
const GOAL_CAS: f64 = 2e6;

fn group<'a>(c: &'a mut Criterion, name: &str, samples: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(samples);
    g.sampling_mode(SamplingMode::Flat);
    g
}

fn hub() -> Hub {
    Hub::new(HubConfig::new().workers(1)).unwrap()
}

/// Waits a little, yielding now and then (both CPUs are shared).
#[inline]
fn backoff(idle: &mut u32) {
    *idle += 1;
    if idle.is_multiple_of(64) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// Consumer threads.

/// Something a consumer thread drains.
trait Source: Send + 'static {
    /// Takes what is queued; returns how many.
    fn drain(&self) -> u64;
}

impl Source for Subscription {
    fn drain(&self) -> u64 {
        let mut k = 0;
        while let Ok(Some(m)) = self.try_recv() {
            black_box(&m);
            k += 1;
        }
        k
    }
}

impl Source for Receiver<Arc<Value>> {
    fn drain(&self) -> u64 {
        let mut k = 0;
        while let Ok(m) = self.try_recv() {
            black_box(&m);
            k += 1;
        }
        k
    }
}

/// A thread draining `sources` until dropped; keeps them (and anything in
/// `keep`) alive until then.
struct Drainer<S: Source> {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<S>>>,
}

impl<S: Source> Drainer<S> {
    fn new(sources: Vec<S>) -> Drainer<S> {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (st, rc) = (stop.clone(), received.clone());
        let thread = std::thread::Builder::new()
            .name("bench-drain".into())
            .spawn(move || {
                let mut idle = 0;
                while !st.load(Ordering::Relaxed) {
                    let k: u64 = sources.iter().map(Source::drain).sum();
                    if k == 0 {
                        backoff(&mut idle);
                    } else {
                        rc.fetch_add(k, Ordering::Relaxed);
                    }
                }
                let k: u64 = sources.iter().map(Source::drain).sum();
                rc.fetch_add(k, Ordering::Relaxed);
                sources
            })
            .unwrap();
        Drainer {
            stop,
            received,
            thread: Some(thread),
        }
    }

    /// Stops the thread; returns the sources and what it received.
    fn finish(mut self) -> (Vec<S>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let s = self.thread.take().unwrap().join().unwrap();
        (s, self.received.load(Ordering::Relaxed))
    }
}

/// Per case: messages published and received, and drops counted by the
/// subscriptions. Printed in the summary.
static DELIVERY: std::sync::Mutex<Vec<(String, u64, u64, u64)>> = std::sync::Mutex::new(Vec::new());

/// A hub with subscriptions drained by a consumer thread, plus
/// subscriptions nobody publishes to.
struct HubFanout {
    hub: Hub,
    drainer: Drainer<Subscription>,
    idle: Vec<Subscription>,
    published: u64,
}

impl HubFanout {
    fn new(hub: Hub, drained: &[String], idle: &[String]) -> HubFanout {
        let sub = |p: &String| hub.subscribe_pull(p).unwrap();
        let idle = idle.iter().map(sub).collect();
        let drained = drained.iter().map(sub).collect();
        HubFanout {
            drainer: Drainer::new(drained),
            hub,
            idle,
            published: 0,
        }
    }

    /// Publishes `iters` messages to `topics` in turn and records the time
    /// under `case`; returns it.
    fn publish(&mut self, case: &str, topics: &[String], iters: u64) -> Duration {
        let mut t = 0;
        let c0 = thread_cpu();
        let start = Instant::now();
        for i in 0..iters {
            black_box(self.hub.publish(&topics[t], Value::Int(i as i64)).unwrap());
            t += 1;
            if t == topics.len() {
                t = 0;
            }
        }
        let d = start.elapsed();
        record_cpu(case, SAMPLES, iters, d.as_nanos(), cpu_since(c0));
        self.published += iters;
        d
    }

    fn finish(self, case: &str, per_publish: u64) {
        let (subs, received) = self.drainer.finish();
        let dropped: u64 = subs
            .iter()
            .chain(&self.idle)
            .map(|s| s.status().dropped)
            .sum();
        DELIVERY.lock().unwrap().push((
            case.to_owned(),
            self.published * per_publish,
            received,
            dropped,
        ));
        drop(subs);
        drop(self.idle);
        self.hub.close();
    }
}

/// The crossbeam fan-out: senders, their consumer thread, messages sent.
type CrossbeamFanout = (Vec<Sender<Arc<Value>>>, Drainer<Receiver<Arc<Value>>>, u64);

fn bench_publish(c: &mut Criterion) {
    let topic = vec!["bench.pub.evt".to_owned()];
    for (kind, pattern) in [("exact", "bench.pub.evt"), ("wildcard", "bench.*.evt")] {
        let mut g = group(c, &format!("publish/{kind}"), SAMPLES);
        g.throughput(Throughput::Elements(1));
        for k in FANOUT {
            let case = format!("publish/{kind}/subs={k}");
            let mut f: Option<HubFanout> = None;
            g.bench_function(format!("subs={k}"), |b| {
                let f = f.get_or_insert_with(|| {
                    HubFanout::new(hub(), &vec![pattern.to_owned(); k], &[])
                });
                b.iter_custom(|iters| f.publish(&case, &topic, iters))
            });
            if let Some(f) = f {
                f.finish(&case, k as u64);
            }
        }
        g.finish();
    }

    let mut g = group(c, "publish/baseline/crossbeam", SAMPLES);
    for k in FANOUT.into_iter().filter(|&k| k > 0) {
        let case = format!("publish/baseline/crossbeam/subs={k}");
        let mut f: Option<CrossbeamFanout> = None;
        g.bench_function(format!("subs={k}"), |b| {
            let (txs, _, sent) = f.get_or_insert_with(|| {
                let (txs, rxs) = (0..k).map(|_| bounded(1024)).unzip();
                (txs, Drainer::new(rxs), 0)
            });
            b.iter_custom(|iters| {
                let c0 = thread_cpu();
                let start = Instant::now();
                for i in 0..iters {
                    let m = Arc::new(Value::Int(i as i64));
                    for tx in txs.iter() {
                        tx.send(m.clone()).unwrap();
                    }
                }
                let d = start.elapsed();
                *sent += iters;
                record_cpu(&case, SAMPLES, iters, d.as_nanos(), cpu_since(c0));
                d
            })
        });
        if let Some((txs, drainer, sent)) = f {
            drop(txs);
            let (_, received) = drainer.finish();
            DELIVERY
                .lock()
                .unwrap()
                .push((case, sent * k as u64, received, 0));
        }
    }
    g.finish();
}

/// A hub whose subscriptions are drained on the publishing thread between
/// batches of [`PUB_BATCH`] publishes (fewer than a queue holds, so a
/// publish never waits), outside the timed region: the publisher's own cost,
/// without a consumer thread competing for the CPU or the queues' cache
/// lines.
struct Batched {
    hub: Hub,
    subs: Vec<Subscription>,
    _idle: Vec<Subscription>,
    /// Per topic: the subscriptions a publish to it reaches.
    targets: Vec<Vec<usize>>,
    published: u64,
    received: u64,
}

impl Batched {
    fn new(patterns: &[String], idle: &[String], targets: Vec<Vec<usize>>) -> Batched {
        let hub = hub();
        let sub = |p: &String| hub.subscribe_pull(p).unwrap();
        Batched {
            _idle: idle.iter().map(sub).collect(),
            subs: patterns.iter().map(sub).collect(),
            hub,
            targets,
            published: 0,
            received: 0,
        }
    }

    /// Publishes `iters` messages to `topics` in turn (batches timed one by
    /// one), records them under `case`, and returns the total time.
    fn publish(&mut self, case: &str, topics: &[String], iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut batches = Vec::with_capacity(iters as usize / PUB_BATCH + 1);
        let (mut done, mut t) = (0u64, 0usize);
        while done < iters {
            let n = (iters - done).min(PUB_BATCH as u64);
            let first = t;
            let start = Instant::now();
            for i in 0..n {
                black_box(self.hub.publish(&topics[t], Value::Int(i as i64)).unwrap());
                t += 1;
                if t == topics.len() {
                    t = 0;
                }
            }
            let d = start.elapsed();
            total += d;
            if n == PUB_BATCH as u64 {
                batches.push(ns32(d.as_nanos()));
            }
            done += n;
            // Drain what this batch reached (each topic once).
            for k in 0..(n as usize).min(topics.len()) {
                for &s in &self.targets[(first + k) % topics.len()] {
                    self.received += self.subs[s].drain();
                }
            }
        }
        self.published += iters;
        record(case, SAMPLES, iters, total.as_nanos());
        record_latencies(case, SAMPLES, batches);
        total
    }

    fn finish(self, case: &str, per_publish: u64) {
        let dropped: u64 = self.subs.iter().map(|s| s.status().dropped).sum();
        DELIVERY.lock().unwrap().push((
            case.to_owned(),
            self.published * per_publish,
            self.received,
            dropped,
        ));
        drop(self.subs);
        drop(self._idle);
        self.hub.close();
    }
}

/// Publishes timed in batches, drained on the same thread between batches.
fn bench_publish_batched(c: &mut Criterion) {
    let topic = vec!["bench.pub.evt".to_owned()];
    for (kind, pattern) in [("exact", "bench.pub.evt"), ("wildcard", "bench.*.evt")] {
        let mut g = group(c, &format!("publish_batched/{kind}"), SAMPLES);
        g.throughput(Throughput::Elements(1));
        for k in FANOUT {
            let case = format!("publish_batched/{kind}/subs={k}");
            let mut f: Option<Batched> = None;
            g.bench_function(format!("subs={k}"), |b| {
                let f = f.get_or_insert_with(|| {
                    Batched::new(&vec![pattern.to_owned(); k], &[], vec![(0..k).collect()])
                });
                b.iter_custom(|iters| f.publish(&case, &topic, iters))
            });
            if let Some(f) = f {
                f.finish(&case, k as u64);
            }
        }
        g.finish();
    }
}

/// Exact and wildcard matching among 10,000 subscriptions, drained on the
/// publishing thread between batches.
fn bench_match10k(c: &mut Criterion) {
    let topics: Vec<String> = (0..MATCH_SUBS).map(|i| format!("svc.{i}.evt")).collect();
    let hot = vec!["svc.7.evt".to_owned()];
    let mut g = group(c, "match10k", SAMPLES);
    g.throughput(Throughput::Elements(1));
    for kind in ["exact", "wildcard"] {
        let mut f: Option<Batched> = None;
        for (name, ts) in [("hot", &hot), ("rotating", &topics)] {
            let case = format!("match10k/{kind}/{name}");
            g.bench_function(format!("{kind}/{name}"), |b| {
                let f = f.get_or_insert_with(|| {
                    if kind == "exact" {
                        Batched::new(&topics, &[], (0..MATCH_SUBS).map(|i| vec![i]).collect())
                    } else {
                        let idle: Vec<String> = (MATCH_SUBS..2 * MATCH_SUBS)
                            .map(|i| format!("svc.{i}.evt"))
                            .collect();
                        Batched::new(&["svc.*.evt".to_owned()], &idle, vec![vec![0]; MATCH_SUBS])
                    }
                });
                // The hot topic is index 7 of the rotating ones.
                let ts: &[String] = if name == "hot" && kind == "exact" {
                    &topics[7..8]
                } else {
                    ts
                };
                if name == "hot" && kind == "exact" {
                    f.targets = vec![vec![7]];
                } else if kind == "exact" {
                    f.targets = (0..MATCH_SUBS).map(|i| vec![i]).collect();
                }
                b.iter_custom(|iters| f.publish(&case, ts, iters))
            });
        }
        if let Some(f) = f {
            f.finish(&format!("match10k/{kind}"), 1);
        }
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// Direct channels.

fn bench_direct(c: &mut Criterion) {
    let mut g = group(c, "direct", DIRECT_SAMPLES);
    g.throughput(Throughput::Elements(DIRECT_N));
    let hub = hub();
    hub.open_direct("producer", "consumer", "bench").unwrap();
    let mut tx = hub.endpoint("producer", "consumer").unwrap();
    let mut rx = hub.endpoint("consumer", "producer").unwrap();

    g.bench_function("single", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                std::thread::scope(|s| {
                    let tx = &mut tx;
                    s.spawn(move || {
                        for i in 0..DIRECT_N {
                            tx.send(Value::Int(i as i64)).unwrap();
                        }
                    });
                    for _ in 0..DIRECT_N {
                        black_box(rx.recv().unwrap());
                    }
                });
                total += start.elapsed();
            }
            record(
                "direct/single",
                DIRECT_SAMPLES,
                iters * DIRECT_N,
                total.as_nanos(),
            );
            total
        })
    });

    g.bench_function("batch", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                std::thread::scope(|s| {
                    let tx = &mut tx;
                    s.spawn(move || {
                        let mut buf = Vec::with_capacity(BATCH);
                        let (mut next, mut idle) = (0u64, 0u32);
                        while next < DIRECT_N || !buf.is_empty() {
                            while buf.len() < BATCH && next < DIRECT_N {
                                buf.push(Value::Int(next as i64));
                                next += 1;
                            }
                            if tx.try_send_batch(&mut buf).unwrap() == 0 {
                                backoff(&mut idle);
                            }
                        }
                    });
                    let mut out = Vec::with_capacity(BATCH);
                    let (mut got, mut idle) = (0u64, 0u32);
                    while got < DIRECT_N {
                        let k = rx.try_recv_batch(&mut out, BATCH).unwrap();
                        if k == 0 {
                            backoff(&mut idle);
                        }
                        got += k as u64;
                        black_box(&out);
                        out.clear();
                    }
                });
                total += start.elapsed();
            }
            record(
                "direct/batch",
                DIRECT_SAMPLES,
                iters * DIRECT_N,
                total.as_nanos(),
            );
            total
        })
    });

    let (ctx, crx) = bounded::<Value>(1024);
    g.bench_function("baseline/crossbeam", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                std::thread::scope(|s| {
                    let ctx = &ctx;
                    s.spawn(move || {
                        for i in 0..DIRECT_N {
                            ctx.send(Value::Int(i as i64)).unwrap();
                        }
                    });
                    for _ in 0..DIRECT_N {
                        black_box(crx.recv().unwrap());
                    }
                });
                total += start.elapsed();
            }
            record(
                "direct/baseline/crossbeam",
                DIRECT_SAMPLES,
                iters * DIRECT_N,
                total.as_nanos(),
            );
            total
        })
    });
    g.finish();
    drop((tx, rx));
    hub.close();
}

// ---------------------------------------------------------------------------
// Request / reply.

fn bench_request(c: &mut Criterion) {
    let mut g = group(c, "request", SAMPLES);
    let hub = hub();
    let sub = hub
        .subscribe("svc.echo", |m| {
            let _ = m.reply(m.payload().clone());
            Ok(())
        })
        .unwrap();
    g.bench_function("hub", |b| {
        b.iter_custom(|iters| {
            let mut each = Vec::with_capacity(iters as usize);
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let t = Instant::now();
                let r = hub
                    .request("svc.echo", Value::Int(i as i64), Duration::from_secs(5))
                    .unwrap();
                let d = t.elapsed();
                black_box(r);
                total += d;
                each.push(ns32(d.as_nanos()));
            }
            record("request/hub", SAMPLES, iters, total.as_nanos());
            record_latencies("request/hub", SAMPLES, each);
            total
        })
    });
    drop(sub);
    hub.close();

    let (req_tx, req_rx) = bounded::<Value>(1);
    let (rep_tx, rep_rx) = bounded::<Value>(1);
    let responder = std::thread::spawn(move || {
        for v in req_rx {
            if rep_tx.send(v).is_err() {
                break;
            }
        }
    });
    g.bench_function("baseline/crossbeam", |b| {
        b.iter_custom(|iters| {
            let mut each = Vec::with_capacity(iters as usize);
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let t = Instant::now();
                req_tx.send(Value::Int(i as i64)).unwrap();
                let r = rep_rx.recv().unwrap();
                let d = t.elapsed();
                black_box(r);
                total += d;
                each.push(ns32(d.as_nanos()));
            }
            let case = "request/baseline/crossbeam";
            record(case, SAMPLES, iters, total.as_nanos());
            record_latencies(case, SAMPLES, each);
            total
        })
    });
    g.finish();
    drop(req_tx);
    responder.join().unwrap();
}

// ---------------------------------------------------------------------------
// State store.

/// The baseline store: revision counter and key -> (revision, value).
type MutexMap = parking_lot::Mutex<(u64, HashMap<String, (u64, Arc<Value>)>)>;

fn bench_state(c: &mut Criterion) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("cfg/key/{i}")).collect();
    let store = StateStore::new();
    let mut revs: Vec<u64> = keys
        .iter()
        .map(|k| store.put(k, Value::Int(0)).unwrap())
        .collect();
    let map: MutexMap = parking_lot::Mutex::new((0, HashMap::new()));
    let mut map_revs: Vec<u64> = Vec::with_capacity(KEYS);
    {
        let mut m = map.lock();
        for k in &keys {
            m.0 += 1;
            let r = m.0;
            m.1.insert(k.clone(), (r, Arc::new(Value::Int(0))));
            map_revs.push(r);
        }
    }
    let mut g = group(c, "state", SAMPLES);
    g.throughput(Throughput::Elements(1));
    g.bench_function("get", |b| {
        b.iter_custom(|iters| {
            let c0 = thread_cpu();
            let start = Instant::now();
            for i in 0..iters {
                black_box(store.get(&keys[i as usize % KEYS]).unwrap());
            }
            let d = start.elapsed();
            record_cpu("state/get", SAMPLES, iters, d.as_nanos(), cpu_since(c0));
            d
        })
    });
    g.bench_function("cas", |b| {
        b.iter_custom(|iters| {
            let c0 = thread_cpu();
            let start = Instant::now();
            for i in 0..iters {
                let k = i as usize % KEYS;
                revs[k] = store
                    .compare_and_set(&keys[k], revs[k], Value::Int(i as i64))
                    .unwrap();
            }
            let d = start.elapsed();
            record_cpu("state/cas", SAMPLES, iters, d.as_nanos(), cpu_since(c0));
            d
        })
    });
    g.bench_function("baseline/mutex_hashmap/get", |b| {
        b.iter_custom(|iters| {
            let c0 = thread_cpu();
            let start = Instant::now();
            for i in 0..iters {
                let m = map.lock();
                black_box(m.1.get(&keys[i as usize % KEYS]).cloned());
            }
            let d = start.elapsed();
            let case = "state/baseline/mutex_hashmap/get";
            record_cpu(case, SAMPLES, iters, d.as_nanos(), cpu_since(c0));
            d
        })
    });
    g.bench_function("baseline/mutex_hashmap/cas", |b| {
        b.iter_custom(|iters| {
            let c0 = thread_cpu();
            let start = Instant::now();
            for i in 0..iters {
                let k = i as usize % KEYS;
                let mut m = map.lock();
                m.0 += 1;
                let next = m.0;
                let e = m.1.get_mut(&keys[k]).unwrap();
                assert_eq!(e.0, map_revs[k], "no conflict in this bench");
                *e = (next, Arc::new(Value::Int(i as i64)));
                map_revs[k] = next;
            }
            let d = start.elapsed();
            let case = "state/baseline/mutex_hashmap/cas";
            record_cpu(case, SAMPLES, iters, d.as_nanos(), cpu_since(c0));
            d
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .without_plots()
        .nresamples(10_000)
        .configure_from_args();
    let load_start = pso_benches::load_avg();
    bench_publish(&mut c);
    bench_publish_batched(&mut c);
    bench_match10k(&mut c);
    bench_direct(&mut c);
    bench_request(&mut c);
    bench_state(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--test") {
        println!("smoke run (--test): one call per case, no figures");
    } else {
        summary(load_start);
    }
}

// ---------------------------------------------------------------------------
// Summary.

/// Median over the timed batches of a batched publish case, ns per publish.
fn batch_med(case: &str) -> Option<f64> {
    pct(case).map(|p| f64::from(p.p50) / PUB_BATCH as f64)
}

fn summary(load_start: f64) {
    println!();
    println!("== hub and state store summary (issue 5) ==");
    println!(
        "1-min load average: {load_start:.2} at start, {:.2} now; figures: median of the measurement samples",
        pso_benches::load_avg()
    );
    let line = |label: &str, case: &str| {
        let f = fig(case);
        if let Some(x) = f {
            println!(
                "  {label:<44} {:>8} ns/op  {:>8} M/s   on-CPU {:>8} ns/op   load {}",
                cell(Some(x.ns)),
                cell(Some(1e3 / x.ns)),
                cell(x.cpu),
                load(f)
            );
        }
    };
    println!("(on-CPU: of the timed thread only; publish cases: the publisher)");
    println!();
    println!("publish, ns per publish (consumer thread draining):");
    for k in FANOUT {
        line(
            &format!("exact, {k} subscribers"),
            &format!("publish/exact/subs={k}"),
        );
        line(
            &format!("wildcard, {k} subscribers"),
            &format!("publish/wildcard/subs={k}"),
        );
        line(
            &format!("crossbeam fan-out, {k} channels"),
            &format!("publish/baseline/crossbeam/subs={k}"),
        );
    }
    let bline = |label: &str, case: &str| {
        let f = fig(case);
        if let Some(x) = f {
            println!(
                "  {label:<44} {:>8} ns/op  {:>8} M/s   median batch {:>8} ns/op   load {}",
                cell(Some(x.ns)),
                cell(Some(1e3 / x.ns)),
                cell(batch_med(case)),
                load(f)
            );
        }
    };
    println!(
        "publish, drained on the publishing thread between batches of {PUB_BATCH} (publishes only timed):"
    );
    for k in FANOUT {
        for kind in ["exact", "wildcard"] {
            bline(
                &format!("{kind}, {k} subscribers"),
                &format!("publish_batched/{kind}/subs={k}"),
            );
        }
    }
    println!("10,000 subscriptions, one receiver per publish (drained between batches):");
    for kind in ["exact", "wildcard"] {
        for name in ["hot", "rotating"] {
            bline(
                &format!("{kind}, {name} topic"),
                &format!("match10k/{kind}/{name}"),
            );
        }
    }
    println!("direct, {DIRECT_N} messages 1 -> 1 across threads, ns per message:");
    line("hub direct channel, send/recv", "direct/single");
    line("hub direct channel, batches of 256", "direct/batch");
    line(
        "crossbeam bounded(1024), send/recv",
        "direct/baseline/crossbeam",
    );
    println!("state store, one thread:");
    line("StateStore::get", "state/get");
    line("StateStore::compare_and_set", "state/cas");
    line("Mutex<HashMap> get", "state/baseline/mutex_hashmap/get");
    line(
        "Mutex<HashMap> compare-and-set",
        "state/baseline/mutex_hashmap/cas",
    );
    let clock = clock_overhead();
    println!("request/reply round trip, each timed alone (incl. ~{clock:.0} ns of clock):");
    for case in ["request/hub", "request/baseline/crossbeam"] {
        if let Some(p) = pct(case) {
            println!(
                "  {case:<30} median {:>6} ns  p99 {:>7}  p99.9 {:>8}  max {:>9}  ({} round trips)  load {}",
                p.p50,
                p.p99,
                p.p999,
                p.max,
                p.count,
                load(fig(case))
            );
        }
    }
    let del = DELIVERY.lock().unwrap();
    if !del.is_empty() {
        println!("delivery check (messages to queue, received by the consumer thread, dropped):");
        for (case, sent, received, dropped) in del.iter() {
            println!("  {case:<40} {sent:>11} {received:>11} {dropped:>6}");
        }
    }

    println!();
    println!("== goals (issue 5) ==");
    if let (Some(v), b) = (ns("direct/single"), ns("direct/baseline/crossbeam")) {
        println!(
            "goal direct 1 -> 1 >= 40 M msg/s (<= {GOAL_DIRECT_NS} ns/msg): {v:.1} ns = {:.1} M/s -> {}",
            1e3 / v,
            verdict(v <= GOAL_DIRECT_NS)
        );
        if let Some(b) = b {
            println!(
                "goal direct at least as fast as crossbeam-channel: {v:.1} vs {b:.1} ns/msg -> {}",
                verdict(v <= b)
            );
        }
        if let Some(bt) = ns("direct/batch") {
            println!(
                "  (batch API: {bt:.1} ns = {:.1} M/s -> {} for the 40 M/s figure)",
                1e3 / bt,
                verdict(bt <= GOAL_DIRECT_NS)
            );
        }
    }
    type Get = fn(&str) -> Option<f64>;
    let sources: [(&str, &str, Get); 4] = [
        ("consumer thread, wall", "publish", ns),
        ("consumer thread, on-CPU", "publish", cpu),
        ("drained between batches, mean", "publish_batched", ns),
        (
            "drained between batches, median batch",
            "publish_batched",
            batch_med,
        ),
    ];
    for (what, grp, get) in sources {
        let p = |k: usize| get(&format!("{grp}/exact/subs={k}"));
        if let Some(v) = p(1) {
            println!(
                "goal publish exact, 1 subscriber <= {GOAL_PUBLISH_NS} ns ({what}): {v:.1} -> {}",
                verdict(v <= GOAL_PUBLISH_NS)
            );
        }
        for k in [4, 16] {
            if let (Some(a), Some(b)) = (p(1), p(k)) {
                let per = (b - a) / (k - 1) as f64;
                println!(
                    "goal each extra subscriber <= {GOAL_PER_SUB_NS} ns (1 -> {k}, {what}): {per:.1} -> {}",
                    verdict(per <= GOAL_PER_SUB_NS)
                );
            }
        }
    }
    let figures: [(&str, Get); 2] = [("mean", ns), ("median batch", batch_med)];
    for (what, get) in figures {
        for name in ["hot", "rotating"] {
            if let (Some(e), Some(w)) = (
                get(&format!("match10k/exact/{name}")),
                get(&format!("match10k/wildcard/{name}")),
            ) {
                println!(
                    "goal wildcard among 10,000 subscriptions <= {GOAL_WILDCARD_X}x exact ({name} topic, {what}): {w:.1} vs {e:.1} = {:.2}x -> {}",
                    w / e,
                    verdict(w <= GOAL_WILDCARD_X * e)
                );
            }
        }
    }
    if let Some(p) = pct("request/hub") {
        println!(
            "goal request/reply round trip median <= {GOAL_RTT_NS} ns: {} -> {}",
            p.p50,
            verdict(p.p50 <= GOAL_RTT_NS)
        );
    }
    let figures: [(&str, Get); 2] = [("wall", ns), ("on-CPU", cpu)];
    for (what, get) in figures {
        if let Some(v) = get("state/get") {
            println!(
                "goal state get >= 5 M/s ({what}): {:.1} M/s -> {}",
                1e3 / v,
                verdict(1e9 / v >= GOAL_GETS)
            );
        }
        if let Some(v) = get("state/cas") {
            println!(
                "goal state CAS >= 2 M/s ({what}): {:.1} M/s -> {}",
                1e3 / v,
                verdict(1e9 / v >= GOAL_CAS)
            );
        }
    }
    println!("goal Python/Node publish -> host callback: not measured here (binding benches)");
}
