//! The allocator (issue 4): the decision cycle of pso-core's decision core
//! with 1,000, 10,000 and 100,000 consumers over 8 dimensions, next to two
//! baselines doing the same grant and release work in the same run, and the
//! end-to-end `Orchestrator::allocate_resources` + release path.
//!
//! # The workload (the same for every engine and size)
//! * 8 dimensions of capacity 1,000,000 each.
//! * `n` consumers. Consumer `c` always asks for the same amounts: on each
//!   dimension a seeded random amount in `1..=2,000,000 / n` (mean about
//!   `1,000,000 / n`, so about `n` leases fit at once, and a consumer's
//!   dominant dimension is random). Its priority class is seeded random:
//!   5 % class 0 (highest), 15 % class 1, 60 % class 2, 15 % class 3, 5 %
//!   class 4. Its DRF weight is 2 for one consumer in four, else 1.
//! * Closed loop: every consumer has [`SLOTS`] requests in flight, each held
//!   (a lease) or waiting. Demand is about twice the capacity, so the
//!   allocator is saturated and about `n` requests wait at all times.
//! * **One cycle** = release a seeded random held lease, then its consumer
//!   asks again at once (it may be granted at once, or queued), and every
//!   waiter the release or the request lets in is granted (strict priority,
//!   DRF within the class). Over a run, grants equal releases, so one cycle
//!   is one allocate + release decision pair.
//!
//! # Engines
//! * `pso`: `pso_core::__bench::DecisionCore` — the allocator's own decision
//!   core (`pso-core/src/allocator/decide.rs`: ready sets per class in
//!   `BTreeSet`s keyed by weighted dominant share, FIFO per consumer), with
//!   no lock, thread or clock around it.
//! * `baseline/scan`: the same policy (strict priority, then the smallest
//!   weighted dominant share, then the oldest request; head-of-line
//!   blocking) found by a linear scan over a `Vec` of all waiters at every
//!   decision. O(waiters) per decision.
//! * `baseline/heap`: a `BinaryHeap` priority queue by (class, arrival),
//!   granting its top while it fits: the same accounting over 8 dimensions
//!   and the same head-of-line blocking, but **no fairness** (no share
//!   tracking). O(log waiters), the cheapest structure that gives priority
//!   order.
//!
//! # Cases
//! * `decide/{n}/{engine}`: cycles back to back, timed as a block: ns per
//!   decision pair, wall and on-CPU time of the bench thread
//!   (`/proc/thread-self/schedstat`, steadier on a shared machine).
//! * `decide_latency/{n}/{engine}`: every cycle timed on its own with
//!   `Instant` (median, p99, p99.9; the summary prints the clock's own cost,
//!   which each figure includes).
//! * `e2e/allocate+release`: `Orchestrator::allocate_resources` of 1 unit on
//!   each of the 8 dimensions (capacity never binds) and dropping the lease,
//!   on one thread: the public path with its mutex, request validation,
//!   lease object and release. Timed as a block and per operation.
//!
//! After criterion's output a summary prints every figure (the median of
//! the measurement samples), the load average, the curve over `n`, and the
//! issue's goals with MET/MISSED.
//!
//! Run (about 2 minutes; see BENCHMARKS.md):
//! `nice cargo bench -p pso-benches --bench allocator -- --warm-up-time 1 --measurement-time 2`

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkGroup, Criterion, SamplingMode, measurement::WallTime};
use pso_core::__bench::{DecisionCore, Handle};
use pso_core::{Orchestrator, ResourceRequest, SystemSpec};

#[path = "common/record.rs"]
mod record;

use record::{
    cell, clock_overhead, cpu, cpu_since, fig, load, ns, pct, record, record_cpu, record_latencies,
    thread_cpu, verdict,
};

const DIMS: usize = 8;
const CAPACITY: u64 = 1_000_000;
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Requests each consumer keeps in flight (held or waiting).
const SLOTS: usize = 2;
/// Priority classes (pso-core has 5; 0 is the highest).
const CLASSES: usize = 5;
const SEED: u64 = 0x5eed_a110c;
const SAMPLES: usize = 20;

/// Goal: decision pairs per second at 1,000 consumers.
const GOAL_RATE: f64 = 2_000_000.0;
/// Goal: p99 of one decision at 1,000 consumers, ns.
const GOAL_P99_NS: u32 = 2_000;

// ---------------------------------------------------------------------------
// The workload.

/// What each consumer asks for.
struct Workload {
    /// Per consumer: amount per dimension.
    amounts: Vec<[u64; DIMS]>,
    class: Vec<u8>,
    weight: Vec<f64>,
}

impl Workload {
    fn new(n: usize) -> Workload {
        let mut rng = fastrand::Rng::with_seed(SEED ^ n as u64);
        let top = (2 * CAPACITY / n as u64).max(1);
        let amounts = (0..n)
            .map(|_| std::array::from_fn(|_| rng.u64(1..=top)))
            .collect();
        let class = (0..n)
            .map(|_| match rng.u32(0..100) {
                0..5 => 0,
                5..20 => 1,
                20..80 => 2,
                80..95 => 3,
                _ => 4,
            })
            .collect();
        let weight = (0..n)
            .map(|_| if rng.u32(0..4) == 0 { 2.0 } else { 1.0 })
            .collect();
        Workload {
            amounts,
            class,
            weight,
        }
    }

    fn n(&self) -> usize {
        self.amounts.len()
    }
}

/// An allocator under test. Grants to waiters go to `granted` as
/// `(consumer, lease)`.
trait Engine {
    type Lease: Copy;
    fn new(w: &Workload) -> Self;
    /// Consumer `c` asks for its amounts: `Some` if granted at once.
    fn request(&mut self, c: u32, granted: &mut Vec<(u32, Self::Lease)>) -> Option<Self::Lease>;
    fn release(&mut self, lease: Self::Lease, granted: &mut Vec<(u32, Self::Lease)>);
    /// Leases held and requests waiting.
    fn counts(&self) -> (usize, usize);
}

/// The closed loop around an engine (see the module docs).
struct Sim<E: Engine> {
    engine: E,
    held: Vec<(E::Lease, u32)>,
    granted: Vec<(u32, E::Lease)>,
    rng: fastrand::Rng,
    cycles: u64,
    grants: u64,
}

impl<E: Engine> Sim<E> {
    fn new(w: &Workload, warm: u64) -> Sim<E> {
        let mut s = Sim {
            engine: E::new(w),
            held: Vec::new(),
            granted: Vec::new(),
            rng: fastrand::Rng::with_seed(SEED),
            cycles: 0,
            grants: 0,
        };
        for _ in 0..SLOTS {
            for c in 0..w.n() as u32 {
                s.ask(c);
            }
        }
        for _ in 0..warm {
            s.cycle();
        }
        // Count the steady state only.
        (s.cycles, s.grants) = (0, 0);
        s
    }

    #[inline]
    fn ask(&mut self, c: u32) {
        if let Some(l) = self.engine.request(c, &mut self.granted) {
            self.held.push((l, c));
            self.grants += 1;
        }
        for (c, l) in self.granted.drain(..) {
            self.held.push((l, c));
            self.grants += 1;
        }
    }

    /// One release and the request and grants it causes.
    #[inline]
    fn cycle(&mut self) {
        let i = self.rng.usize(..self.held.len());
        let (lease, c) = self.held.swap_remove(i);
        self.engine.release(lease, &mut self.granted);
        self.ask(c);
        self.cycles += 1;
    }
}

// ---------------------------------------------------------------------------
// Engine: pso-core's decision core.

struct Pso {
    core: DecisionCore,
    ids: Vec<u32>,
    amounts: Vec<[(u32, u64); DIMS]>,
    class: Vec<u8>,
    out: Vec<(u64, Handle)>,
}

impl Pso {
    fn take(&mut self, granted: &mut Vec<(u32, Handle)>) {
        self.core.take_granted(&mut self.out);
        granted.extend(self.out.drain(..).map(|(t, h)| (t as u32, h)));
    }
}

impl Engine for Pso {
    type Lease = Handle;

    fn new(w: &Workload) -> Pso {
        let names: Vec<String> = (0..DIMS).map(|d| format!("d{d}")).collect();
        let dims: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), CAPACITY)).collect();
        let mut core = DecisionCore::new(&dims);
        let ids = (0..w.n())
            .map(|c| {
                let id = core.consumer(&format!("c{c}"));
                if w.weight[c] != 1.0 {
                    core.set_weight(id, w.weight[c]);
                }
                id
            })
            .collect();
        Pso {
            core,
            ids,
            amounts: w
                .amounts
                .iter()
                .map(|a| std::array::from_fn(|d| (d as u32, a[d])))
                .collect(),
            class: w.class.clone(),
            out: Vec::new(),
        }
    }

    #[inline]
    fn request(&mut self, c: u32, granted: &mut Vec<(u32, Handle)>) -> Option<Handle> {
        let i = c as usize;
        let r = self
            .core
            .request(self.ids[i], &self.amounts[i], self.class[i], u64::from(c));
        self.take(granted);
        r.ok()
    }

    #[inline]
    fn release(&mut self, lease: Handle, granted: &mut Vec<(u32, Handle)>) {
        assert!(self.core.release(lease));
        self.take(granted);
    }

    fn counts(&self) -> (usize, usize) {
        self.core.counts()
    }
}

// ---------------------------------------------------------------------------
// Baselines: the accounting they share.

/// Free capacity, each consumer's allocation and weighted dominant share,
/// and a slab of leases (lease = slot index, holding its consumer).
struct Books {
    amounts: Vec<[u64; DIMS]>,
    class: Vec<u8>,
    inv_weight: Vec<f64>,
    free: [u64; DIMS],
    alloc: Vec<[u64; DIMS]>,
    share: Vec<f64>,
    leases: Vec<u32>,
    free_slots: Vec<u32>,
    live: usize,
    seq: u64,
}

impl Books {
    fn new(w: &Workload) -> Books {
        Books {
            amounts: w.amounts.clone(),
            class: w.class.clone(),
            inv_weight: w.weight.iter().map(|x| 1.0 / x).collect(),
            free: [CAPACITY; DIMS],
            alloc: vec![[0; DIMS]; w.n()],
            share: vec![0.0; w.n()],
            leases: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            seq: 0,
        }
    }

    #[inline]
    fn fits(&self, c: u32) -> bool {
        let a = &self.amounts[c as usize];
        (0..DIMS).all(|d| a[d] <= self.free[d])
    }

    #[inline]
    fn reshare(&mut self, c: usize) {
        let m = self.alloc[c].iter().copied().max().unwrap_or(0);
        self.share[c] = m as f64 / CAPACITY as f64 * self.inv_weight[c];
    }

    #[inline]
    fn grant(&mut self, c: u32) -> u32 {
        let ci = c as usize;
        for d in 0..DIMS {
            self.free[d] -= self.amounts[ci][d];
            self.alloc[ci][d] += self.amounts[ci][d];
        }
        self.reshare(ci);
        self.live += 1;
        match self.free_slots.pop() {
            Some(s) => {
                self.leases[s as usize] = c;
                s
            }
            None => {
                self.leases.push(c);
                (self.leases.len() - 1) as u32
            }
        }
    }

    #[inline]
    fn release(&mut self, lease: u32) {
        let c = self.leases[lease as usize] as usize;
        for d in 0..DIMS {
            self.free[d] += self.amounts[c][d];
            self.alloc[c][d] -= self.amounts[c][d];
        }
        self.reshare(c);
        self.live -= 1;
        self.free_slots.push(lease);
    }
}

// ---------------------------------------------------------------------------
// Baseline: the same policy by a linear scan over all waiters.

struct Scan {
    books: Books,
    /// `(consumer, arrival)`.
    waiters: Vec<(u32, u64)>,
    per_class: [usize; CLASSES],
}

impl Scan {
    /// The index of the policy head: highest class, then smallest share,
    /// then oldest.
    #[inline]
    fn head(&self) -> Option<usize> {
        let b = &self.books;
        let mut best: Option<(usize, u8, f64, u64)> = None;
        for (i, &(c, seq)) in self.waiters.iter().enumerate() {
            let (cl, sh) = (b.class[c as usize], b.share[c as usize]);
            let better = match best {
                None => true,
                Some((_, bc, bs, bq)) => (cl, sh, seq) < (bc, bs, bq),
            };
            if better {
                best = Some((i, cl, sh, seq));
            }
        }
        best.map(|b| b.0)
    }
}

impl Engine for Scan {
    type Lease = u32;

    fn new(w: &Workload) -> Scan {
        Scan {
            books: Books::new(w),
            waiters: Vec::new(),
            per_class: [0; CLASSES],
        }
    }

    #[inline]
    fn request(&mut self, c: u32, _: &mut Vec<(u32, u32)>) -> Option<u32> {
        let class = self.books.class[c as usize] as usize;
        if self.per_class[..=class].iter().all(|&k| k == 0) && self.books.fits(c) {
            return Some(self.books.grant(c));
        }
        self.books.seq += 1;
        self.waiters.push((c, self.books.seq));
        self.per_class[class] += 1;
        None
    }

    #[inline]
    fn release(&mut self, lease: u32, granted: &mut Vec<(u32, u32)>) {
        self.books.release(lease);
        while let Some(i) = self.head() {
            let c = self.waiters[i].0;
            if !self.books.fits(c) {
                break;
            }
            self.waiters.swap_remove(i);
            self.per_class[self.books.class[c as usize] as usize] -= 1;
            granted.push((c, self.books.grant(c)));
        }
    }

    fn counts(&self) -> (usize, usize) {
        (self.books.live, self.waiters.len())
    }
}

// ---------------------------------------------------------------------------
// Baseline: a binary heap by (class, arrival), no fairness.

struct Heap {
    books: Books,
    waiters: BinaryHeap<Reverse<(u8, u64, u32)>>,
}

impl Engine for Heap {
    type Lease = u32;

    fn new(w: &Workload) -> Heap {
        Heap {
            books: Books::new(w),
            waiters: BinaryHeap::new(),
        }
    }

    #[inline]
    fn request(&mut self, c: u32, _: &mut Vec<(u32, u32)>) -> Option<u32> {
        let class = self.books.class[c as usize];
        let ahead = self
            .waiters
            .peek()
            .is_some_and(|Reverse(top)| top.0 <= class);
        if !ahead && self.books.fits(c) {
            return Some(self.books.grant(c));
        }
        self.books.seq += 1;
        self.waiters.push(Reverse((class, self.books.seq, c)));
        None
    }

    #[inline]
    fn release(&mut self, lease: u32, granted: &mut Vec<(u32, u32)>) {
        self.books.release(lease);
        while let Some(&Reverse((_, _, c))) = self.waiters.peek() {
            if !self.books.fits(c) {
                break;
            }
            self.waiters.pop();
            granted.push((c, self.books.grant(c)));
        }
    }

    fn counts(&self) -> (usize, usize) {
        (self.books.live, self.waiters.len())
    }
}

// ---------------------------------------------------------------------------
// Benchmarks.

/// State of each engine after its cases, for the summary: (case prefix,
/// cycles, grants, leases held, requests waiting).
type Census = (String, u64, u64, usize, usize);
static CENSUS: std::sync::Mutex<Vec<Census>> = std::sync::Mutex::new(Vec::new());

const ENGINES: [&str; 3] = ["pso", "baseline/scan", "baseline/heap"];

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(SAMPLES);
    g.sampling_mode(SamplingMode::Flat);
    g
}

/// The throughput and latency cases of engine `E` at size `n`, on one
/// simulation (built on first use, so a filtered-out case costs nothing).
fn bench_engine<E: Engine>(c: &mut Criterion, w: &Workload, engine: &str, warm: u64) {
    let n = w.n();
    let mut sim: Option<Sim<E>> = None;
    let case = format!("decide/{n}/{engine}");
    group(c, &format!("decide/{n}")).bench_function(engine, |b| {
        let s = sim.get_or_insert_with(|| Sim::new(w, warm));
        b.iter_custom(|iters| {
            let c0 = thread_cpu();
            let t = Instant::now();
            for _ in 0..iters {
                s.cycle();
            }
            let d = t.elapsed();
            record_cpu(&case, SAMPLES, iters, d.as_nanos(), cpu_since(c0));
            d
        })
    });
    let case = format!("decide_latency/{n}/{engine}");
    group(c, &format!("decide_latency/{n}")).bench_function(engine, |b| {
        let s = sim.get_or_insert_with(|| Sim::new(w, warm));
        b.iter_custom(|iters| {
            let mut each = Vec::with_capacity(iters as usize);
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                s.cycle();
                let d = t.elapsed();
                total += d;
                each.push(record::ns32(d.as_nanos()));
            }
            record(&case, SAMPLES, iters, total.as_nanos());
            record_latencies(&case, SAMPLES, each);
            total
        })
    });
    if let Some(s) = sim {
        let (held, waiting) = s.engine.counts();
        assert_eq!(held, s.held.len());
        CENSUS
            .lock()
            .unwrap()
            .push((format!("{n}/{engine}"), s.cycles, s.grants, held, waiting));
    }
}

fn bench_e2e(c: &mut Criterion) {
    let mut setup: Option<(Orchestrator, ResourceRequest)> = None;
    let make = || {
        let orch = Orchestrator::builder().workers(1).build().unwrap();
        orch.register(SystemSpec::new("consumer")).unwrap();
        let mut req = ResourceRequest::new();
        for d in 0..DIMS {
            orch.set_capacity(&format!("d{d}"), 1 << 40).unwrap();
            req = req.amount(format!("d{d}"), 1);
        }
        (orch, req)
    };
    let mut g = group(c, "e2e");
    g.bench_function("allocate+release", |b| {
        let (orch, req) = setup.get_or_insert_with(make);
        b.iter_custom(|iters| {
            let c0 = thread_cpu();
            let t = Instant::now();
            for _ in 0..iters {
                let lease = orch.allocate_resources("consumer", req).unwrap();
                drop(black_box(lease));
            }
            let d = t.elapsed();
            let case = "e2e/allocate+release";
            record_cpu(case, SAMPLES, iters, d.as_nanos(), cpu_since(c0));
            d
        })
    });
    g.bench_function("allocate+release/latency", |b| {
        let (orch, req) = setup.get_or_insert_with(make);
        b.iter_custom(|iters| {
            let mut each = Vec::with_capacity(iters as usize);
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let lease = orch.allocate_resources("consumer", req).unwrap();
                drop(black_box(lease));
                let d = t.elapsed();
                total += d;
                each.push(record::ns32(d.as_nanos()));
            }
            let case = "e2e/allocate+release/latency";
            record(case, SAMPLES, iters, total.as_nanos());
            record_latencies(case, SAMPLES, each);
            total
        })
    });
    g.finish();
    if let Some((orch, _)) = &setup {
        assert_eq!(
            orch.resource_status().dimension("d0").unwrap().free,
            1 << 40
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .without_plots()
        .nresamples(10_000)
        .configure_from_args();
    let load_start = pso_benches::load_avg();
    for n in SIZES {
        let w = Workload::new(n);
        bench_engine::<Pso>(&mut c, &w, ENGINES[0], 20_000);
        bench_engine::<Scan>(&mut c, &w, ENGINES[1], 1_000);
        bench_engine::<Heap>(&mut c, &w, ENGINES[2], 20_000);
    }
    bench_e2e(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--test") {
        println!("smoke run (--test): one call per case, no figures");
    } else {
        summary(load_start);
    }
}

// ---------------------------------------------------------------------------
// Summary.

fn summary(load_start: f64) {
    if ns(&format!("decide/{}/pso", SIZES[0])).is_none() && ns("e2e/allocate+release").is_none() {
        return;
    }
    let clock = clock_overhead();
    println!();
    println!("== allocator summary (issue 4) ==");
    println!(
        "8 dimensions, closed loop with {SLOTS} requests in flight per consumer; one cycle = release + re-request + the grants they cause (one decision pair)"
    );
    println!(
        "1-min load average: {load_start:.2} at start, {:.2} now; figures: median of the measurement samples",
        pso_benches::load_avg()
    );
    println!();
    println!(
        "ns per decision pair (timed as a block): wall, and on-CPU time of the bench thread; load over the measurement samples:"
    );
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>11} {:>11} {:>11}",
        "consumers",
        "pso",
        "pso cpu",
        "scan",
        "scan cpu",
        "heap",
        "heap cpu",
        "load pso",
        "load scan",
        "load heap"
    );
    for n in SIZES {
        let k = |e: &str| format!("decide/{n}/{e}");
        println!(
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>11} {:>11} {:>11}",
            n,
            cell(ns(&k(ENGINES[0]))),
            cell(cpu(&k(ENGINES[0]))),
            cell(ns(&k(ENGINES[1]))),
            cell(cpu(&k(ENGINES[1]))),
            cell(ns(&k(ENGINES[2]))),
            cell(cpu(&k(ENGINES[2]))),
            load(fig(&k(ENGINES[0]))),
            load(fig(&k(ENGINES[1]))),
            load(fig(&k(ENGINES[2]))),
        );
    }
    println!();
    println!(
        "per-cycle latency (each cycle timed alone; includes one clock pair, {clock:.0} ns here):"
    );
    for n in SIZES {
        for e in ENGINES {
            let k = format!("decide_latency/{n}/{e}");
            if let Some(p) = pct(&k) {
                println!(
                    "  {k:<34} median {:>7} ns  p99 {:>7}  p99.9 {:>8}  max {:>9}  ({} cycles)",
                    p.p50, p.p99, p.p999, p.max, p.count
                );
            }
        }
    }
    println!();
    println!(
        "state at the end of each engine's cases (cycles timed, grants per cycle, leases held, requests waiting):"
    );
    for (k, cycles, grants, held, waiting) in CENSUS.lock().unwrap().iter() {
        println!(
            "  {k:<22} {cycles:>9} cycles  {:.3} grants/cycle  {held:>7} held  {waiting:>7} waiting",
            *grants as f64 / (*cycles).max(1) as f64
        );
    }
    if let Some(f) = fig("e2e/allocate+release") {
        println!();
        println!(
            "e2e Orchestrator::allocate_resources + drop(lease), 1 thread, no contention: {:.0} ns per pair ({:.2} M/s), on-CPU {} ns, load {}",
            f.ns,
            1e3 / f.ns,
            cell(f.cpu),
            load(Some(f))
        );
        if let Some(p) = pct("e2e/allocate+release/latency") {
            println!(
                "  per pair: median {} ns  p99 {}  p99.9 {}  max {}  ({} pairs)",
                p.p50, p.p99, p.p999, p.max, p.count
            );
        }
    }

    println!();
    println!("== goals (issue 4) ==");
    let n0 = SIZES[0];
    let k0 = format!("decide/{n0}/pso");
    for (what, v) in [("wall", ns(&k0)), ("on-CPU", cpu(&k0))] {
        if let Some(v) = v {
            let rate = 1e9 / v;
            println!(
                "goal >= {:.1} M decisions/s at {n0} consumers x 8 dims ({what}): {:.2} M/s ({v:.0} ns) -> {}",
                GOAL_RATE / 1e6,
                rate / 1e6,
                verdict(rate >= GOAL_RATE)
            );
        }
    }
    if let Some(p) = pct(&format!("decide_latency/{n0}/pso")) {
        println!(
            "goal p99 decision <= {GOAL_P99_NS} ns at {n0} consumers: {} ns (incl. ~{clock:.0} ns of clock) -> {}",
            p.p99,
            verdict(p.p99 <= GOAL_P99_NS)
        );
    }
    type Get = fn(&str) -> Option<f64>;
    let per_cycle = |k: &str| pct(k).map(|p| f64::from(p.p50));
    let figures: [(&str, &str, Get); 3] = [
        ("wall", "decide", ns),
        ("on-CPU", "decide", cpu),
        ("per-cycle median", "decide_latency", per_cycle),
    ];
    for (what, grp, get) in figures {
        for &n in &SIZES[1..] {
            let (a, b) = (
                get(&format!("{grp}/{n0}/pso")),
                get(&format!("{grp}/{n}/pso")),
            );
            if let (Some(a), Some(b)) = (a, b) {
                let log = (n as f64).ln() / (n0 as f64).ln();
                println!(
                    "goal growth <= logarithmic, {n0} -> {n} ({what}): {a:.0} -> {b:.0} ns = {:.2}x (log n ratio {log:.2}x, n ratio {}x) -> {}",
                    b / a,
                    n / n0,
                    verdict(b / a <= log)
                );
            }
        }
    }
}
