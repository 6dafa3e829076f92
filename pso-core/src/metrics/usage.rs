//! Resource series kept by the allocator's decision core (under its lock,
//! with the time it is given): utilization over time per dimension, and
//! lease counts, waits and hold times per system.
//!
//! # Utilization
//! Each dimension integrates its allocated amount and its capacity over
//! time into fixed intervals (default 1 s) of a ring (default 300). The
//! integral is brought up to date whenever the allocation or the capacity
//! changes ([`Usage::set`]) and when a snapshot is taken (on a copy), so no
//! thread samples anything: between two changes the level is constant. An
//! interval's mean utilization is `∫allocated / ∫capacity` over the part
//! of it that was covered while metrics were on.
//!
//! Interval `k` spans `[epoch + k·interval, epoch + (k+1)·interval)`; the
//! epoch is the registry's, so all dimensions share boundaries.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::Switch;
use super::histogram::Histo;
use super::snapshot::ser_time;

/// What the allocator needs to keep its series.
#[derive(Debug, Clone)]
pub(crate) struct UsageConfig {
    pub(crate) switch: Switch,
    pub(crate) epoch: Instant,
    pub(crate) epoch_wall: SystemTime,
    pub(crate) interval: Duration,
    pub(crate) buckets: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            switch: Switch::default(),
            epoch: Instant::now(),
            epoch_wall: SystemTime::now(),
            interval: Duration::from_secs(1),
            buckets: 300,
        }
    }
}

impl UsageConfig {
    fn interval_ns(&self) -> u64 {
        (self.interval.as_nanos() as u64).max(1)
    }

    fn ns_since_epoch(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// One interval of the ring.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Interval number + 1 (0: unused slot).
    k: u64,
    /// ∫ allocated dt, unit-seconds.
    allocated: f64,
    /// ∫ capacity dt, unit-seconds.
    capacity: f64,
    /// Seconds covered.
    covered: f64,
}

/// Utilization over time of one dimension. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Usage {
    allocated: u64,
    capacity: u64,
    /// Integrated up to here.
    last: Instant,
    ring: Box<[Bucket]>,
}

impl Usage {
    pub(crate) fn new(cfg: &UsageConfig, capacity: u64, now: Instant) -> Usage {
        Usage {
            allocated: 0,
            capacity,
            last: now,
            ring: vec![Bucket::default(); cfg.buckets.max(1)].into_boxed_slice(),
        }
    }

    /// The level changes at `now` to `allocated` of `capacity`.
    pub(crate) fn set(&mut self, cfg: &UsageConfig, allocated: u64, capacity: u64, now: Instant) {
        self.advance(cfg, now);
        self.allocated = allocated;
        self.capacity = capacity;
    }

    /// Integrates the current level from `last` to `now` (only the
    /// intervals the ring still keeps), if metrics are on. Called before
    /// the switch flips, so time is attributed to the right side of it.
    pub(crate) fn advance(&mut self, cfg: &UsageConfig, now: Instant) {
        if now <= self.last {
            return;
        }
        if !cfg.switch.on() {
            self.last = now;
            return;
        }
        let iv = cfg.interval_ns();
        let n = self.ring.len() as u64;
        let end = cfg.ns_since_epoch(now);
        // The ring keeps the `n` intervals up to the one holding the last
        // covered nanosecond (`end - 1`), so integrating up to a boundary
        // keeps `n` complete intervals.
        let oldest_kept = (end.saturating_sub(1) / iv + 1).saturating_sub(n) * iv;
        let mut t = cfg.ns_since_epoch(self.last).max(oldest_kept);
        let (a, c) = (self.allocated as f64, self.capacity as f64);
        while t < end {
            let k = t / iv;
            let stop = end.min((k + 1) * iv);
            let dt = (stop - t) as f64 / 1e9;
            let b = &mut self.ring[(k % n) as usize];
            if b.k != k + 1 {
                *b = Bucket {
                    k: k + 1,
                    ..Bucket::default()
                };
            }
            b.allocated += a * dt;
            b.capacity += c * dt;
            b.covered += dt;
            t = stop;
        }
        self.last = now;
    }

    /// Forgets the past; the current level stays.
    pub(crate) fn reset(&mut self, now: Instant) {
        self.ring.fill(Bucket::default());
        self.last = now;
    }

    /// The intervals with any coverage, oldest first, brought up to `now`.
    pub(crate) fn snapshot(
        &self,
        cfg: &UsageConfig,
        dimension: &str,
        now: Instant,
    ) -> ResourceUtilization {
        let mut u = self.clone();
        u.advance(cfg, now);
        let mut used: Vec<Bucket> = u.ring.iter().copied().filter(|b| b.k != 0).collect();
        used.sort_by_key(|b| b.k);
        let iv = cfg.interval;
        ResourceUtilization {
            dimension: dimension.to_owned(),
            capacity: self.capacity,
            allocated: self.allocated,
            interval: iv,
            intervals: used
                .into_iter()
                .filter(|b| b.covered > 0.0)
                .map(|b| UtilizationInterval {
                    start: cfg.epoch_wall
                        + Duration::from_nanos(cfg.interval_ns().saturating_mul(b.k - 1)),
                    covered: b.covered,
                    mean_allocated: b.allocated / b.covered,
                    mean_capacity: b.capacity / b.covered,
                    utilization: if b.capacity > 0.0 {
                        b.allocated / b.capacity
                    } else {
                        0.0
                    },
                })
                .collect(),
        }
    }
}

/// Utilization over time of one resource dimension.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ResourceUtilization {
    /// The dimension.
    pub dimension: String,
    /// Its capacity now.
    pub capacity: u64,
    /// Allocated now.
    pub allocated: u64,
    /// Length of each interval.
    #[serde(serialize_with = "super::snapshot::ser_secs")]
    pub interval: Duration,
    /// The intervals kept (the last few minutes), oldest first; the last
    /// one is the current, partial interval.
    pub intervals: Vec<UtilizationInterval>,
}

/// The time-weighted mean use of a dimension over one interval.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct UtilizationInterval {
    /// When the interval starts (RFC 3339 text in JSON).
    #[serde(serialize_with = "ser_time")]
    pub start: SystemTime,
    /// Seconds of it that were measured (less than the interval for the
    /// current one, or while metrics were off).
    pub covered: f64,
    /// Mean amount allocated over the covered time.
    pub mean_allocated: f64,
    /// Mean capacity over the covered time.
    pub mean_capacity: f64,
    /// `∫allocated / ∫capacity` over the covered time, in [0, 1] unless the
    /// capacity was lowered below what was held (0 without capacity).
    pub utilization: f64,
}

/// One system's leases.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseSeries {
    pub(crate) granted: u64,
    pub(crate) released: u64,
    /// Live leases now (kept whether metrics are on or not).
    pub(crate) held: u64,
    /// Request to grant (0 for a request granted at once).
    pub(crate) wait: Histo,
    /// Grant to release (by the holder, its TTL or preemption).
    pub(crate) hold: Histo,
}

impl LeaseSeries {
    pub(crate) fn granted(&mut self, on: bool, waited: Duration) {
        self.held += 1;
        if on {
            self.granted += 1;
            self.wait.record(waited.as_nanos() as u64);
        }
    }

    pub(crate) fn released(&mut self, on: bool, held_for: Duration) {
        self.held = self.held.saturating_sub(1);
        if on {
            self.released += 1;
            self.hold.record(held_for.as_nanos() as u64);
        }
    }

    pub(crate) fn reset(&mut self) {
        self.granted = 0;
        self.released = 0;
        self.wait.reset();
        self.hold.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(interval_ms: u64, buckets: usize) -> UsageConfig {
        UsageConfig {
            interval: Duration::from_millis(interval_ms),
            buckets,
            ..UsageConfig::default()
        }
    }

    #[test]
    fn time_weighted_mean_per_interval() {
        let c = cfg(1000, 10);
        let t0 = c.epoch;
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut u = Usage::new(&c, 100, t0);
        // 50 of 100 held from 0.25 s to 1.75 s.
        u.set(&c, 50, 100, s(250));
        u.set(&c, 0, 100, s(1750));
        let snap = u.snapshot(&c, "cpu", s(2500));
        let iv = &snap.intervals;
        assert_eq!(iv.len(), 3, "{iv:?}");
        let close = |x: f64, want: f64| (x - want).abs() < 1e-6;
        assert!(close(iv[0].utilization, 0.375), "{:?}", iv[0]);
        assert!(close(iv[0].mean_allocated, 37.5), "{:?}", iv[0]);
        assert!(close(iv[1].utilization, 0.375), "{:?}", iv[1]);
        assert!(close(iv[2].utilization, 0.0) && close(iv[2].covered, 0.5));
        assert_eq!(iv[1].start, c.epoch_wall + Duration::from_secs(1));
        // The snapshot did not move the original.
        assert_eq!(u.snapshot(&c, "cpu", s(2500)).intervals.len(), 3);
    }

    #[test]
    fn ring_keeps_the_last_intervals_and_off_records_nothing() {
        let c = cfg(10, 4);
        let t0 = c.epoch;
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut u = Usage::new(&c, 10, t0);
        u.set(&c, 10, 10, s(0));
        let snap = u.snapshot(&c, "gpu", s(1000));
        assert_eq!(snap.intervals.len(), 4);
        assert!(
            snap.intervals
                .iter()
                .all(|i| (i.utilization - 1.0).abs() < 1e-9)
        );
        assert_eq!(
            snap.intervals[3].start,
            c.epoch_wall + Duration::from_millis(990)
        );
        c.switch.set(false);
        u.set(&c, 0, 10, s(2000));
        u.reset(s(2000));
        assert!(u.snapshot(&c, "gpu", s(3000)).intervals.is_empty());
        u.advance(&c, s(3000));
        c.switch.set(true);
        let snap = u.snapshot(&c, "gpu", s(3005));
        assert_eq!(snap.intervals.len(), 1);
        assert!((snap.intervals[0].covered - 0.005).abs() < 1e-9);
        assert_eq!(snap.intervals[0].utilization, 0.0);
    }
}
