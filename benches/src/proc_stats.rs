//! What the machine was doing while a benchmark ran (Linux `/proc`), so every
//! figure can be reported with its conditions.

use std::time::Duration;

/// On-CPU time of every live thread of this process (Linux
/// `/proc/self/task/*/schedstat`), or `None` elsewhere. Unlike wall time it
/// does not grow while other processes hold the CPU, so it is the steadier
/// figure on a shared machine; it does include workers spinning before they
/// park. Reading it costs tens of µs.
pub fn cpu_time() -> Option<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

/// The 1-minute load average (`/proc/loadavg`), or NaN if unknown.
pub fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Busy share of all CPUs over `window` (Linux `/proc/stat`: everything but
/// idle and iowait), from 0 to 1, or `None` elsewhere. Includes this process.
pub fn busy_fraction(window: Duration) -> Option<f64> {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        let total: u64 = v.iter().take(8).sum();
        Some((idle, total))
    }
    let (i0, t0) = sample()?;
    std::thread::sleep(window);
    let (i1, t1) = sample()?;
    let total = t1.saturating_sub(t0);
    (total > 0).then(|| 1.0 - i1.saturating_sub(i0) as f64 / total as f64)
}

/// Waits until the machine is quiet: the busy share of all CPUs over a
/// quarter of a second is at most `threshold`, or `max` has passed. Returns
/// how long it waited. For benchmarks on a shared machine, called between
/// cases, when this process itself is idle.
pub fn wait_quiet(max: Duration, threshold: f64) -> Duration {
    let start = std::time::Instant::now();
    while start.elapsed() < max {
        match busy_fraction(Duration::from_millis(250)) {
            Some(b) if b > threshold => continue,
            _ => break,
        }
    }
    start.elapsed()
}
