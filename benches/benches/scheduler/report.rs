//! The scheduler bench's summary: every figure (the median of the measurement
//! samples of each case), the load it was measured under, the baselines, and
//! the goals with MET/MISSED.

use std::collections::BTreeMap;

use pso_benches::{Shape, Spin};

use super::{
    GOAL_BUILD_EDGE, GOAL_BUILD_TASK, GOAL_BYTES, GOAL_LATENCY_NS, GOAL_SCALE, GOAL_SPEEDUP,
    GOAL_W2_EMPTY, LATENCIES, LATENCY_SAMPLES, MEMORY, SAMPLES, SIZES, SPIN_N, SPIN_SHAPES, WAITED,
    WORKERS, goal_rerun, size_label, taskflow,
};

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        l if l % 2 == 1 => v[l / 2],
        l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
    }
}

#[derive(Debug, Clone, Copy)]
struct Fig {
    wall: f64,
    cpu: Option<f64>,
    load: f64,
}

/// Median wall and CPU ns/task of the measurement samples of each case, and
/// the load when the case ended.
fn figures() -> BTreeMap<(String, String), Fig> {
    SAMPLES
        .lock()
        .unwrap()
        .iter()
        .map(|(k, (samples, v))| {
            let v = &v[v.len() - v.len().min(*samples)..];
            let wall: Vec<f64> = v.iter().map(|s| s.wall).collect();
            let cpu: Option<Vec<f64>> = v.iter().map(|s| s.cpu).collect();
            let fig = Fig {
                wall: median(&wall),
                cpu: cpu.map(|c| median(&c)),
                load: v.last().map_or(f64::NAN, |s| s.load),
            };
            (k.clone(), fig)
        })
        .collect()
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".to_owned(),
    }
}

pub(super) fn summary(spin: Option<Spin>) {
    let f = figures();
    if f.is_empty() {
        return;
    }
    let get = |g: &str, c: &str| f.get(&(g.to_owned(), c.to_owned())).copied();
    let wall = |g: &str, c: &str| get(g, c).map(|x| x.wall);
    let empty = |shape: Shape, n: u32| format!("{shape}/{}", size_label(n));
    let w = |w: usize| format!("workers={w}");

    println!();
    println!("== scheduler summary: ns per task, median of the measurement samples ==");
    println!(
        "timing off (Taskflow-comparable) unless noted; load: 1-min load average when the row's cases ended (min-max)"
    );
    println!(
        "{:<24} {:>7} {:>8} {:>8} {:>8} {:>8} | {:>7} {:>8} {:>8} | {:>9}",
        "shape/size",
        "build",
        "rerun w1",
        "rerun w2",
        "e2e w1",
        "e2e w2",
        "seq",
        "rayon w1",
        "rayon w2",
        "load"
    );
    for shape in Shape::ALL {
        for n in SIZES {
            let g = empty(shape, n);
            let cases = [
                "build".to_owned(),
                format!("rerun/{}", w(1)),
                format!("rerun/{}", w(2)),
                format!("e2e/{}", w(1)),
                format!("e2e/{}", w(2)),
                "baseline/seq".to_owned(),
                format!("baseline/rayon/{}", w(1)),
                format!("baseline/rayon/{}", w(2)),
            ];
            let v: Vec<Option<Fig>> = cases.iter().map(|c| get(&g, c)).collect();
            if v.iter().all(Option::is_none) {
                continue;
            }
            let loads: Vec<f64> = v.iter().flatten().map(|x| x.load).collect();
            let (lo, hi) = loads
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(a, b), &l| (a.min(l), b.max(l)));
            let c = |i: usize| cell(v[i].map(|x| x.wall));
            println!(
                "{:<24} {:>7} {:>8} {:>8} {:>8} {:>8} | {:>7} {:>8} {:>8} | {:>4.2}-{:<4.2}",
                g,
                c(0),
                c(1),
                c(2),
                c(3),
                c(4),
                c(5),
                c(6),
                c(7),
                lo,
                hi
            );
        }
    }

    println!();
    println!("on-CPU ns per task (all threads, incl. idle workers spinning; 2^16 and up):");
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "shape/size", "build", "rerun w1", "rerun w2", "e2e w1", "e2e w2", "rayon w2"
    );
    for shape in Shape::ALL {
        for n in SIZES.into_iter().filter(|&n| n >= 1 << 16) {
            let g = empty(shape, n);
            let cpu = |c: String| cell(get(&g, &c).and_then(|x| x.cpu));
            if get(&g, "build").is_none() {
                continue;
            }
            println!(
                "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                g,
                cpu("build".into()),
                cpu(format!("rerun/{}", w(1))),
                cpu(format!("rerun/{}", w(2))),
                cpu(format!("e2e/{}", w(1))),
                cpu(format!("e2e/{}", w(2))),
                cpu(format!("baseline/rayon/{}", w(2))),
            );
        }
    }

    println!();
    println!("re-run at 2^16 with timing on (the default RunOptions) vs off:");
    for shape in Shape::ALL {
        let g = empty(shape, 1 << 16);
        for k in WORKERS {
            let (on, off) = (
                wall(&g, &format!("rerun_timing_on/{}", w(k))),
                wall(&g, &format!("rerun/{}", w(k))),
            );
            if let (Some(on), Some(off)) = (on, off) {
                println!(
                    "  {g:<22} workers={k}: on {on:>6.1}  off {off:>6.1}  (+{:.1})",
                    on - off
                );
            }
        }
    }

    let mem = MEMORY.lock().unwrap().clone();
    if !mem.is_empty() {
        println!();
        println!(
            "memory per task (counting allocator): retained by the built workflow, peak while building, added by the first run (pooled run buffers and plan)"
        );
        for ((shape, n), m) in &mem {
            let per = |b: isize| b as f64 / f64::from(*n);
            println!(
                "  {:<22} edges {:>8}: built {:>6.1} B/task  peak {:>6.1}  first run +{:>6.1}",
                empty(*shape, *n),
                m.edges,
                per(m.built),
                per(m.peak),
                per(m.first_run)
            );
        }
    }

    if let Some(spin) = spin {
        println!();
        println!(
            "1 us tasks (calibrated spin: {} iterations), 2^16 tasks, ns per task:",
            spin.iters()
        );
        for shape in SPIN_SHAPES {
            let g = format!("spin_1us/{shape}/{}", size_label(SPIN_N));
            let v = |c: String| wall(&g, &c);
            let (p1, p2) = (v(format!("pso/{}", w(1))), v(format!("pso/{}", w(2))));
            let (r1, r2) = (
                v(format!("baseline/rayon/{}", w(1))),
                v(format!("baseline/rayon/{}", w(2))),
            );
            let sp = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => format!("{:.2}x", a / b),
                _ => "-".into(),
            };
            println!(
                "  {g:<28} seq {}  pso w1 {} w2 {} (speed-up {})  rayon w1 {} w2 {} (speed-up {})",
                cell(v("baseline/seq".into())),
                cell(p1),
                cell(p2),
                sp(p1, p2),
                cell(r1),
                cell(r2),
                sp(r1, r2)
            );
        }
    }

    let lat = LATENCIES.lock().unwrap().clone();
    if !lat.is_empty() {
        println!();
        println!("latency of a 1-step run (start + wait), per call, over the measurement samples:");
        for (case, calls) in &lat {
            let mut all: Vec<u32> = calls[calls.len() - calls.len().min(LATENCY_SAMPLES)..]
                .iter()
                .flatten()
                .copied()
                .collect();
            all.sort_unstable();
            let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
            println!(
                "  {case:<24} median {:>6} ns  p99 {:>7} ns  p99.9 {:>8} ns  ({} calls)",
                q(0.5),
                q(0.99),
                q(0.999),
                all.len()
            );
        }
    }

    let waited = *WAITED.lock().unwrap();
    if !waited.is_zero() {
        println!();
        println!(
            "waited {:.0} s in all for a quiet machine between cases (PSO_BENCH_QUIET)",
            waited.as_secs_f64()
        );
    }

    println!();
    println!("== goals (issue 3) ==");
    for shape in Shape::ALL {
        let g = empty(shape, 1 << 16);
        if let Some(v) = wall(&g, &format!("rerun/{}", w(1))) {
            let goal = goal_rerun(shape);
            println!(
                "goal re-run {g}, 1 worker: <= {goal:.0} ns/task (Taskflow {}): {v:.1} -> {}",
                taskflow(shape),
                verdict(v <= goal)
            );
        }
    }
    for shape in Shape::ALL {
        let (a, b) = (
            wall(&empty(shape, 1 << 16), &format!("rerun/{}", w(1))),
            wall(&empty(shape, 1 << 20), &format!("rerun/{}", w(1))),
        );
        if let (Some(a), Some(b)) = (a, b) {
            println!(
                "goal re-run {shape}, 1 worker: 2^20 <= {GOAL_SCALE}x 2^16 per task: {:.2}x -> {}",
                b / a,
                verdict(b / a <= GOAL_SCALE)
            );
        }
    }
    for shape in Shape::ALL {
        for n in SIZES {
            let g = empty(shape, n);
            if let (Some(v), Some(m)) = (wall(&g, "build"), mem.get(&(shape, n))) {
                let e = m.edges as f64 / f64::from(n);
                let goal = GOAL_BUILD_TASK + GOAL_BUILD_EDGE * e;
                println!(
                    "goal build {g}: <= {GOAL_BUILD_TASK:.0} ns/task + {GOAL_BUILD_EDGE:.0} ns/edge = {goal:.1} ns/task: {v:.1} -> {}",
                    verdict(v <= goal)
                );
            }
        }
    }
    for ((shape, n), m) in &mem {
        let b = m.built as f64 / f64::from(*n);
        println!(
            "goal memory {}: <= {GOAL_BYTES:.0} B/task node: {b:.1} -> {}",
            empty(*shape, *n),
            verdict(b <= GOAL_BYTES)
        );
    }
    for shape in Shape::ALL {
        for n in SIZES {
            let g = empty(shape, n);
            if let (Some(a), Some(b)) = (
                wall(&g, &format!("rerun/{}", w(1))),
                wall(&g, &format!("rerun/{}", w(2))),
            ) {
                println!(
                    "goal re-run {g}, empty tasks: 2 workers <= {GOAL_W2_EMPTY}x 1 worker: {b:.1} vs {a:.1} = {:.2}x -> {}",
                    b / a,
                    verdict(b / a <= GOAL_W2_EMPTY)
                );
            }
        }
    }
    for shape in SPIN_SHAPES {
        let g = format!("spin_1us/{shape}/{}", size_label(SPIN_N));
        if let (Some(a), Some(b)) = (
            wall(&g, &format!("pso/{}", w(1))),
            wall(&g, &format!("pso/{}", w(2))),
        ) {
            println!(
                "goal {g}: 2 workers >= {GOAL_SPEEDUP}x faster than 1: {:.2}x -> {}",
                a / b,
                verdict(a / b >= GOAL_SPEEDUP)
            );
        }
    }
    for (case, calls) in &lat {
        let mut all: Vec<u32> = calls[calls.len() - calls.len().min(LATENCY_SAMPLES)..]
            .iter()
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        let med = f64::from(all[all.len() / 2]);
        println!(
            "goal latency 1-step {case}: median <= {GOAL_LATENCY_NS:.0} ns: {med:.0} -> {}",
            verdict(med <= GOAL_LATENCY_NS)
        );
    }
}
