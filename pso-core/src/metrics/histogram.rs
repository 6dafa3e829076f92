//! Latency histograms: an HDR histogram of nanoseconds plus the exact sum
//! and maximum, summarized as count / mean / p50 / p90 / p99 / max in
//! seconds.
//!
//! The first [`SMALL`] values are kept exactly, inline (a series that sees a
//! few values — a system's activations, most probes — allocates nothing:
//! with 10,000 systems the HDR arrays cost 500 MB and doubled activation
//! time). From the next value on they move into an HDR histogram: two
//! significant digits (relative error under 1 %) and auto-resizing, starting
//! at 2 KiB and growing with the largest value it has seen (about 18 KiB for
//! values up to 10 ms, 30 KiB up to a minute). Values are capped at
//! [`MAX_NS`]. Quantiles are exact while inline; from the HDR histogram they
//! are the highest value equivalent to the bucket they fall in, clamped to
//! the exact maximum. Either way `p50 <= p90 <= p99 <= max` always holds.

#![forbid(unsafe_code)]

use hdrhistogram::Histogram;
use serde::Serialize;

/// Significant decimal digits kept.
const SIGFIG: u8 = 2;

/// The largest value recorded (about 13 days); larger ones are clamped.
pub(crate) const MAX_NS: u64 = 1 << 50;

/// A histogram of nanosecond values. Not synchronized: the owner locks.
/// Values kept exactly before an HDR histogram is allocated.
const SMALL: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct Histo {
    /// The first values, exactly (`small_len` of them), while `h` is `None`.
    small: [u64; SMALL],
    small_len: u8,
    h: Option<Box<Histogram<u64>>>,
    sum_ns: u64,
    max_ns: u64,
}

impl Default for Histo {
    fn default() -> Self {
        Self::new()
    }
}

impl Histo {
    /// An empty histogram (allocates nothing).
    pub(crate) fn new() -> Histo {
        Histo {
            small: [0; SMALL],
            small_len: 0,
            h: None,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    /// Records one value.
    #[inline]
    pub(crate) fn record(&mut self, ns: u64) {
        let v = ns.min(MAX_NS);
        match &mut self.h {
            Some(h) => record_hdr(h, v),
            None if usize::from(self.small_len) < SMALL => {
                self.small[usize::from(self.small_len)] = v;
                self.small_len += 1;
            }
            None => {
                let mut h =
                    Box::new(Histogram::new(SIGFIG).expect("2 significant digits are valid"));
                for &x in &self.small[..usize::from(self.small_len)] {
                    record_hdr(&mut h, x);
                }
                record_hdr(&mut h, v);
                self.small_len = 0;
                self.h = Some(h);
            }
        }
        self.sum_ns = self.sum_ns.saturating_add(v);
        if v > self.max_ns {
            self.max_ns = v;
        }
    }

    pub(crate) fn count(&self) -> u64 {
        match &self.h {
            Some(h) => h.len(),
            None => u64::from(self.small_len),
        }
    }

    /// Zeroes it (an HDR array already allocated is kept).
    pub(crate) fn reset(&mut self) {
        if let Some(h) = &mut self.h {
            h.reset();
        }
        self.small_len = 0;
        self.sum_ns = 0;
        self.max_ns = 0;
    }

    /// The value at quantile `q` (0 to 1).
    fn quantile(&self, q: f64) -> u64 {
        match &self.h {
            Some(h) => h.value_at_quantile(q),
            None => {
                let mut v = self.small;
                let v = &mut v[..usize::from(self.small_len)];
                v.sort_unstable();
                // The smallest value with at least a fraction q at or below it.
                let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
                v[rank - 1]
            }
        }
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let count = self.count();
        if count == 0 {
            return LatencySummary::default();
        }
        let secs = |ns: u64| ns as f64 / 1e9;
        let q = |q: f64| secs(self.quantile(q).min(self.max_ns));
        LatencySummary {
            count,
            sum: secs(self.sum_ns),
            mean: self.sum_ns as f64 / count as f64 / 1e9,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: secs(self.max_ns),
        }
    }
}

/// A latency distribution: how many values, their sum and mean, three
/// quantiles and the maximum, all in seconds. Everything is 0 when `count`
/// is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Number of values.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
    /// Their mean, in seconds.
    pub mean: f64,
    /// Median, in seconds (within 1 %).
    pub p50: f64,
    /// 90th percentile, in seconds (within 1 %).
    pub p90: f64,
    /// 99th percentile, in seconds (within 1 %).
    pub p99: f64,
    /// The largest value, in seconds (exact).
    pub max: f64,
}

fn record_hdr(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        // Only if the counts array cannot grow: keep the count right.
        h.saturating_record(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let mut h = Histo::new();
        assert_eq!(h.summary(), LatencySummary::default());
        for v in 1..=1000u64 {
            h.record(v * 1000); // 1 µs .. 1 ms
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.sum - 0.5005).abs() < 1e-9, "{s:?}");
        assert!((s.mean - 500.5e-6).abs() < 1e-12, "{s:?}");
        let near = |x: f64, want: f64| (x - want).abs() <= want * 0.01;
        assert!(near(s.p50, 500e-6), "{s:?}");
        assert!(near(s.p90, 900e-6), "{s:?}");
        assert!(near(s.p99, 990e-6), "{s:?}");
        assert_eq!(s.max, 1e-3);
        assert!(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max);
    }

    #[test]
    fn a_few_values_are_exact_and_allocate_nothing() {
        let mut h = Histo::new();
        for v in [30, 10, 20] {
            h.record(v * 1000);
        }
        assert!(h.h.is_none());
        let s = h.summary();
        assert_eq!(s.count, 3);
        assert_eq!((s.p50, s.p90, s.max), (20e-6, 30e-6, 30e-6));
        for v in 0..SMALL as u64 {
            h.record(v);
        }
        assert!(h.h.is_some(), "moved to HDR past {SMALL} values");
        assert_eq!(h.count(), 3 + SMALL as u64);
        assert_eq!(h.summary().max, 30e-6);
        h.reset();
        assert_eq!(h.summary(), LatencySummary::default());
    }

    #[test]
    fn quantiles_never_exceed_the_exact_max() {
        let mut h = Histo::new();
        h.record(123_457);
        let s = h.summary();
        assert_eq!(s.max, 123_457e-9);
        assert!(s.p99 <= s.max && s.p50 <= s.max, "{s:?}");
        h.record(u64::MAX);
        assert_eq!(h.summary().max, MAX_NS as f64 / 1e9);
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!(h.summary(), LatencySummary::default());
    }
}
