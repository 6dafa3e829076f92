//! Figures recorded inside criterion's routines, for the summaries the
//! allocator and hub benches print after criterion's output: ns per
//! operation of every call of a routine with the 1-minute load average when
//! the call ended, and per-operation latencies for the latency cases. A
//! case's figure is the median over its measurement samples (the last
//! `samples` calls; the earlier ones are criterion's warm-up).

// Shared by several bench binaries, each of which uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use pso_benches::load_avg;

#[derive(Debug, Clone, Copy)]
struct Rec {
    ns: f64,
    cpu: Option<f64>,
    load: f64,
}

/// Per case: the sample size and every call's figure.
static SAMPLES: Mutex<BTreeMap<String, (usize, Vec<Rec>)>> = Mutex::new(BTreeMap::new());
/// Per latency case: the sample size and, per call, the ns of each operation.
type Latencies = BTreeMap<String, (usize, Vec<Vec<u32>>)>;
static LATENCIES: Mutex<Latencies> = Mutex::new(BTreeMap::new());

/// Records one call of `case`: `ops` operations in `ns` nanoseconds.
pub(crate) fn record(case: &str, samples: usize, ops: u64, ns: u128) {
    record_cpu(case, samples, ops, ns, None);
}

/// On-CPU time of the calling thread (Linux `/proc/thread-self/schedstat`),
/// or `None` elsewhere. Unlike wall time it does not grow while other
/// processes hold the CPU. Reading it costs some µs: read it around blocks
/// of operations only.
pub(crate) fn thread_cpu() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

/// On-CPU ns of the calling thread between `start` (from [`thread_cpu`])
/// and now.
pub(crate) fn cpu_since(start: Option<std::time::Duration>) -> Option<u128> {
    Some(thread_cpu()?.checked_sub(start?)?.as_nanos())
}

/// [`record`] with the on-CPU time of the timed thread, if known.
pub(crate) fn record_cpu(case: &str, samples: usize, ops: u64, ns: u128, cpu: Option<u128>) {
    let per = |x: u128| x as f64 / ops.max(1) as f64;
    let rec = Rec {
        ns: per(ns),
        cpu: cpu.map(per),
        load: load_avg(),
    };
    let mut s = SAMPLES.lock().unwrap();
    let e = s
        .entry(case.to_owned())
        .or_insert_with(|| (samples, Vec::new()));
    e.1.push(rec);
}

/// Records the latency of each operation of one call of `case` (ns).
pub(crate) fn record_latencies(case: &str, samples: usize, each: Vec<u32>) {
    LATENCIES
        .lock()
        .unwrap()
        .entry(case.to_owned())
        .or_insert_with(|| (samples, Vec::new()))
        .1
        .push(each);
}

/// Converts a duration in ns to the `u32` latencies are kept in.
pub(crate) fn ns32(ns: u128) -> u32 {
    ns.min(u128::from(u32::MAX)) as u32
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        l if l % 2 == 1 => v[l / 2],
        l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
    }
}

/// A case's figure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fig {
    /// Median ns per operation over the measurement samples.
    pub(crate) ns: f64,
    /// Median on-CPU ns per operation of the timed thread, if recorded.
    pub(crate) cpu: Option<f64>,
    /// Lowest and highest 1-minute load average over those samples.
    pub(crate) load: (f64, f64),
}

/// The figure of `case`, if it ran.
pub(crate) fn fig(case: &str) -> Option<Fig> {
    let s = SAMPLES.lock().unwrap();
    let (samples, v) = s.get(case)?;
    let v = &v[v.len() - v.len().min(*samples)..];
    let mut ns: Vec<f64> = v.iter().map(|r| r.ns).collect();
    let cpu: Option<Vec<f64>> = v.iter().map(|r| r.cpu).collect();
    let load = v.iter().fold((f64::INFINITY, 0.0f64), |(a, b), r| {
        (a.min(r.load), b.max(r.load))
    });
    Some(Fig {
        ns: median(&mut ns),
        cpu: cpu.map(|mut c| median(&mut c)),
        load,
    })
}

/// Median ns per operation of `case`.
pub(crate) fn ns(case: &str) -> Option<f64> {
    fig(case).map(|f| f.ns)
}

/// Median on-CPU ns per operation of `case`, if recorded.
pub(crate) fn cpu(case: &str) -> Option<f64> {
    fig(case).and_then(|f| f.cpu)
}

/// Latency percentiles of a case, over every operation of its measurement
/// samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pct {
    pub(crate) p50: u32,
    pub(crate) p99: u32,
    pub(crate) p999: u32,
    pub(crate) max: u32,
    pub(crate) count: usize,
}

/// The latency percentiles of `case`, if it ran.
pub(crate) fn pct(case: &str) -> Option<Pct> {
    let l = LATENCIES.lock().unwrap();
    let (samples, calls) = l.get(case)?;
    let mut all: Vec<u32> = calls[calls.len() - calls.len().min(*samples)..]
        .iter()
        .flatten()
        .copied()
        .collect();
    if all.is_empty() {
        return None;
    }
    all.sort_unstable();
    let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
    Some(Pct {
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max: all[all.len() - 1],
        count: all.len(),
    })
}

/// `MET` or `MISSED`.
pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

/// A figure for a table cell: `-` if absent.
pub(crate) fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".to_owned(),
    }
}

/// `lo-hi` of a load range.
pub(crate) fn load(f: Option<Fig>) -> String {
    f.map_or("-".to_owned(), |f| {
        format!("{:.2}-{:.2}", f.load.0, f.load.1)
    })
}

/// Median ns per operation of the timing overhead of one `Instant::now()`
/// pair, measured now: what each latency figure includes.
pub(crate) fn clock_overhead() -> f64 {
    let mut v: Vec<f64> = (0..101)
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..1000 {
                std::hint::black_box(std::time::Instant::now().elapsed());
            }
            t.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect();
    median(&mut v)
}
