//! Series kept by the registry itself: per operation (folded in at run
//! settle) and per system (handler durations, restarts, health probes),
//! plus the per-system transition counters that live in each lifecycle.
//!
//! Everything here is plain data behind the registry's locks: one lock for
//! the operation table, one for the system table. The table of operations
//! only grows (its indices are cached by workflows); resetting zeroes each
//! series in place.

#![forbid(unsafe_code)]

use std::sync::Arc as StdArc;

use foldhash::HashMap;

use super::Switch;
use super::histogram::Histo;

/// The operation name of the aggregate series of plain-function steps.
pub(crate) const FUNCTIONS: &str = "<function>";

/// Terminal step states, in the order of [`OpSeries::counts`].
pub(crate) const STEP_STATES: [&str; 5] =
    ["succeeded", "failed", "cancelled", "timed_out", "skipped"];
pub(crate) const SUCCEEDED: usize = 0;
pub(crate) const FAILED: usize = 1;
pub(crate) const CANCELLED: usize = 2;
pub(crate) const TIMED_OUT: usize = 3;
pub(crate) const SKIPPED: usize = 4;

/// One operation (`system.op`), or the aggregate of function steps.
#[derive(Debug)]
pub(crate) struct OpSeries {
    pub(crate) key: StdArc<str>,
    pub(crate) system: Option<StdArc<str>>,
    /// Steps by terminal state ([`STEP_STATES`]).
    pub(crate) counts: [u64; 5],
    /// Attempts after the first, over all steps.
    pub(crate) retries: u64,
    /// Run time of the last attempt of each step that ran.
    pub(crate) run: Histo,
    /// Ready to the start of the last attempt, of each step that ran.
    pub(crate) queue: Histo,
}

impl OpSeries {
    fn new(key: StdArc<str>, system: Option<StdArc<str>>) -> Self {
        OpSeries {
            key,
            system,
            counts: [0; 5],
            retries: 0,
            run: Histo::new(),
            queue: Histo::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    fn reset(&mut self) {
        self.counts = [0; 5];
        self.retries = 0;
        self.run.reset();
        self.queue.reset();
    }
}

/// Every operation series; index 0 is [`FUNCTIONS`]. Indices are stable.
#[derive(Debug)]
pub(crate) struct OpTable {
    index: HashMap<StdArc<str>, u32>,
    pub(crate) series: Vec<OpSeries>,
}

impl Default for OpTable {
    fn default() -> Self {
        OpTable {
            index: HashMap::default(),
            series: vec![OpSeries::new(StdArc::from(FUNCTIONS), None)],
        }
    }
}

impl OpTable {
    /// The index of the series of `key` (`system.op`), created on first use.
    pub(crate) fn index_of(&mut self, key: &str, system: &str) -> u32 {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = self.series.len() as u32;
        let key: StdArc<str> = StdArc::from(key);
        self.index.insert(key.clone(), i);
        self.series
            .push(OpSeries::new(key, Some(StdArc::from(system))));
        i
    }

    /// Records one terminal step of series `s`: its state ([`STEP_STATES`]
    /// index), its attempt number, and, if it ran, its run time and queue
    /// wait in ns.
    #[inline]
    pub(crate) fn record(&mut self, s: u32, state: usize, attempt: u32, ran: Option<(u64, u64)>) {
        let o = &mut self.series[s as usize];
        o.counts[state] += 1;
        o.retries += u64::from(attempt.saturating_sub(1));
        if let Some((run, queue)) = ran {
            o.run.record(run);
            o.queue.record(queue);
        }
    }

    pub(crate) fn reset(&mut self) {
        for s in &mut self.series {
            s.reset();
        }
    }
}

/// Health probe results, in the order of [`SystemSeries::probes`].
pub(crate) const PROBE_RESULTS: [&str; 5] =
    ["healthy", "degraded", "unhealthy", "failed", "timed_out"];

/// One system's series kept by the registry.
#[derive(Debug, Default)]
pub(crate) struct SystemSeries {
    /// `activate` handler run times.
    pub(crate) activate: Histo,
    /// `deactivate` handler run times.
    pub(crate) deactivate: Histo,
    /// Restarts by its supervisor.
    pub(crate) restarts: u64,
    /// Probe results ([`PROBE_RESULTS`]).
    pub(crate) probes: [u64; 5],
    /// Probe latency (a timed-out probe counts its timeout).
    pub(crate) probe_latency: Histo,
}

impl SystemSeries {
    pub(crate) fn reset(&mut self) {
        self.activate.reset();
        self.deactivate.reset();
        self.restarts = 0;
        self.probes = [0; 5];
        self.probe_latency.reset();
    }
}

/// Lifecycle transitions by destination, in the order of
/// [`Transitions::counts`].
pub(crate) const TRANSITION_KINDS: [&str; 6] = [
    "activating",
    "active",
    "deactivating",
    "inactive",
    "failed",
    "gave_up",
];

/// The transition counters of one system, kept in its lifecycle record
/// (so every transition is counted where it is applied, under the registry
/// write lock).
#[derive(Debug, Clone, Default)]
pub(crate) struct Transitions {
    switch: Switch,
    counts: [u64; 6],
}

impl Transitions {
    pub(crate) fn new(switch: Switch) -> Self {
        Transitions {
            switch,
            counts: [0; 6],
        }
    }

    /// Counts a transition to kind `k` ([`TRANSITION_KINDS`]) if metrics are on.
    #[inline]
    pub(crate) fn count(&mut self, k: usize) {
        if self.switch.on() {
            self.counts[k] += 1;
        }
    }

    pub(crate) fn counts(&self) -> [u64; 6] {
        self.counts
    }

    pub(crate) fn reset(&mut self) {
        self.counts = [0; 6];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_table_indices_are_stable_and_reset_in_place() {
        let mut t = OpTable::default();
        let a = t.index_of("A.x", "A");
        assert_eq!(a, 1);
        assert_eq!(t.index_of("A.x", "A"), a);
        t.record(a, SUCCEEDED, 3, Some((1_000, 50)));
        t.record(a, SKIPPED, 0, None);
        t.record(0, FAILED, 1, Some((10, 5)));
        let s = &t.series[a as usize];
        assert_eq!(s.counts, [1, 0, 0, 0, 1]);
        assert_eq!(s.retries, 2);
        assert_eq!((s.run.count(), s.queue.count()), (1, 1));
        t.reset();
        assert!(t.series.iter().all(OpSeries::is_empty));
        assert_eq!(t.index_of("A.x", "A"), a);
    }

    #[test]
    fn transitions_count_only_when_on() {
        let sw = Switch::new(false);
        let mut t = Transitions::new(sw.clone());
        t.count(1);
        assert_eq!(t.counts(), [0; 6]);
        sw.set(true);
        t.count(1);
        t.count(4);
        assert_eq!(t.counts(), [0, 1, 0, 0, 1, 0]);
        t.reset();
        assert_eq!(t.counts(), [0; 6]);
    }
}
