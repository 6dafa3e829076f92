//! Performance metrics: counters and latency histograms per operation,
//! system, interaction edge and hub topic, and resource utilization over
//! time ([`PerformanceMetrics`], as data, JSON or Prometheus text).
//!
//! # Who owns what
//! The orchestrator owns one [`Registry`]: the on/off [`Switch`] every
//! recorder checks, the operation table and the system table. Series that
//! are counted where another component already holds its own lock or data
//! live with that component and are collected into the snapshot:
//!
//! | series | kept in | recorded |
//! |---|---|---|
//! | per operation ([`series::OpTable`]) | registry, one lock | in batch when a run with timing on settles, from the step timings the run already keeps: the per-step path does nothing more; counts are exact, times of at most 1,024 steps per run go into the histograms |
//! | lifecycle transitions ([`series::Transitions`]) | each system's lifecycle record | when a transition is applied (registry write lock) |
//! | handler durations, restarts, probes ([`series::SystemSeries`]) | registry, one lock | after each lifecycle transaction, restart and probe |
//! | per topic, per edge ([`hub`]) | the hub (topic match sets, edge stats) | on publish, drop and delivery; latency sampled |
//! | utilization, leases ([`usage`]) | the allocator's decision core | when an allocation or capacity changes (under the allocator lock) |
//!
//! # Invariants
//! * With the switch off nothing is recorded (utilization: the time while
//!   off is not covered; the count of leases held, a gauge of the present,
//!   is kept). Flipping the switch brings utilization integrals up to date
//!   first, so time lands on the right side of the flip.
//! * Memory is bounded: operations by the operations systems declare (plus
//!   one `<function>` aggregate), systems and edges by the systems, topics
//!   by [`MetricsConfig::max_topics`] (the rest share one overflow series),
//!   utilization by the ring size per dimension. Histograms grow with the
//!   log of the largest value only.
//! * Resetting zeroes series in place; nothing is removed (workflows cache
//!   operation indices and topic match sets cache their series).
//! * Counters are Relaxed atomics or plain fields under a lock: a snapshot
//!   taken while work is running may be a few events behind, never torn
//!   within one histogram.

#![forbid(unsafe_code)]

mod histogram;
pub(crate) mod hub;
pub mod prometheus;
pub(crate) mod series;
mod snapshot;
pub(crate) mod usage;

use std::time::{Duration, SystemTime};

use foldhash::HashMap;

use crate::sync::{Arc, AtomicBool, Mutex, Ordering};

pub use histogram::LatencySummary;
pub use hub::{EdgeMetrics, HubShare, OVERFLOW_TOPIC, TopicMetrics};
pub use snapshot::{
    LeaseMetrics, OperationMetrics, PerformanceMetrics, ProbeCounts, SystemMetrics,
    TransitionCounts,
};
pub use usage::{ResourceUtilization, UtilizationInterval};

use hub::HubMetrics;
use series::{OpTable, PROBE_RESULTS, SystemSeries};
use usage::UsageConfig;

/// The shared on/off switch of an orchestrator's metrics (Relaxed: a
/// recorder that sees a stale value records one event more or less).
#[derive(Debug, Clone)]
pub(crate) struct Switch(Arc<AtomicBool>);

impl Default for Switch {
    fn default() -> Self {
        Switch::new(true)
    }
}

impl Switch {
    pub(crate) fn new(on: bool) -> Self {
        Switch(Arc::new(AtomicBool::new(on)))
    }

    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
}

/// Settings of the metrics registry.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use pso_core::{MetricsConfig, Orchestrator};
/// let orch = Orchestrator::builder()
///     .metrics_config(
///         MetricsConfig::new()
///             .latency_sample_every(16)
///             .max_topics(256)
///             .utilization_interval(Duration::from_secs(5), 120),
///     )
///     .build()?;
/// assert_eq!(orch.performance_metrics().latency_sample_every, 16);
/// # Ok::<(), pso_core::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub(crate) latency_sample_every: u32,
    pub(crate) max_topics: usize,
    pub(crate) utilization_interval: Duration,
    pub(crate) utilization_intervals: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            latency_sample_every: 256,
            max_topics: 1024,
            utilization_interval: Duration::from_secs(1),
            utilization_intervals: 300,
        }
    }
}

impl MetricsConfig {
    /// The defaults: one hub message in 256 timed, 1024 topics tracked one
    /// by one, utilization in 300 intervals of 1 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Measures the delivery latency of one hub message in `n` per topic
    /// (rounded up to a power of two; 1 = every message, 0 = none).
    pub fn latency_sample_every(mut self, n: u32) -> Self {
        self.latency_sample_every = n;
        self
    }

    /// Tracks at most `n` hub topics one by one; publishes to further
    /// topics are counted together under [`OVERFLOW_TOPIC`].
    pub fn max_topics(mut self, n: usize) -> Self {
        self.max_topics = n;
        self
    }

    /// Keeps resource utilization as `count` means of `interval` each (at
    /// least 1 ms and 1).
    pub fn utilization_interval(mut self, interval: Duration, count: usize) -> Self {
        self.utilization_interval = interval;
        self.utilization_intervals = count;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.utilization_interval < Duration::from_millis(1) || self.utilization_intervals == 0 {
            return Err(format!(
                "utilization intervals must be at least 1 ms and at least 1 of them, got {:?} x {}",
                self.utilization_interval, self.utilization_intervals
            ));
        }
        Ok(())
    }

    /// The effective sampling period (a power of two, or 0).
    pub(crate) fn sample_every(&self) -> u64 {
        match self.latency_sample_every {
            0 => 0,
            n => u64::from(n).next_power_of_two(),
        }
    }
}

/// Probe outcomes, indices into [`series::PROBE_RESULTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Healthy = 0,
    Degraded = 1,
    Unhealthy = 2,
    Failed = 3,
    TimedOut = 4,
}

const _: () = assert!(PROBE_RESULTS.len() == Probe::TimedOut as usize + 1);

/// An orchestrator's metrics registry. See the module docs.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) switch: Switch,
    pub(crate) config: MetricsConfig,
    pub(crate) ops: Mutex<OpTable>,
    systems: Mutex<HashMap<Arc<str>, SystemSeries>>,
    pub(crate) hub: Arc<HubMetrics>,
    pub(crate) usage: UsageConfig,
    since: Mutex<SystemTime>,
}

impl Registry {
    pub(crate) fn new(enabled: bool, config: MetricsConfig) -> Registry {
        let switch = Switch::new(enabled);
        let usage = UsageConfig {
            switch: switch.clone(),
            interval: config.utilization_interval,
            buckets: config.utilization_intervals,
            ..UsageConfig::default()
        };
        Registry {
            hub: Arc::new(HubMetrics::new(switch.clone(), &config)),
            since: Mutex::new(usage.epoch_wall),
            switch,
            config,
            ops: Mutex::new(OpTable::default()),
            systems: Mutex::new(HashMap::default()),
            usage,
        }
    }

    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.switch.on()
    }

    fn with_system(&self, system: &str, f: impl FnOnce(&mut SystemSeries)) {
        if !self.on() {
            return;
        }
        let mut systems = self.systems.lock();
        match systems.get_mut(system) {
            Some(s) => f(s),
            None => f(systems.entry(Arc::from(system)).or_default()),
        }
    }

    /// Lifecycle handlers ran: `(system, activate?, run time)` each, under
    /// one lock (a transaction may cover thousands of systems).
    pub(crate) fn handlers<'a>(
        &self,
        ran: impl ExactSizeIterator<Item = (&'a str, bool, Duration)>,
    ) {
        if !self.on() {
            return;
        }
        let mut systems = self.systems.lock();
        systems.reserve(ran.len());
        for (system, activate, d) in ran {
            let s = match systems.get_mut(system) {
                Some(s) => s,
                None => systems.entry(Arc::from(system)).or_default(),
            };
            let h = if activate {
                &mut s.activate
            } else {
                &mut s.deactivate
            };
            h.record(d.as_nanos() as u64);
        }
    }

    /// `system`'s supervisor restarts it.
    pub(crate) fn restart(&self, system: &str) {
        self.with_system(system, |s| s.restarts += 1);
    }

    /// A health probe of `system` ended with `result` after `latency`.
    pub(crate) fn probe(&self, system: &str, result: Probe, latency: Duration) {
        self.with_system(system, |s| {
            s.probes[result as usize] += 1;
            s.probe_latency.record(latency.as_nanos() as u64);
        });
    }

    /// The operation series with anything recorded, by name (`<function>`
    /// last).
    pub(crate) fn operations(&self) -> Vec<OperationMetrics> {
        let ops = self.ops.lock();
        let mut out: Vec<OperationMetrics> = ops
            .series
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| OperationMetrics {
                operation: s.key.to_string(),
                system: s.system.as_deref().map(str::to_owned),
                succeeded: s.counts[series::SUCCEEDED],
                failed: s.counts[series::FAILED],
                cancelled: s.counts[series::CANCELLED],
                timed_out: s.counts[series::TIMED_OUT],
                skipped: s.counts[series::SKIPPED],
                retries: s.retries,
                run_time: s.run.summary(),
                queue_wait: s.queue.summary(),
            })
            .collect();
        drop(ops);
        out.sort_by(|a, b| {
            (a.system.is_none(), &a.operation).cmp(&(b.system.is_none(), &b.operation))
        });
        out
    }

    /// The registry's own series of `system` written into `m`.
    pub(crate) fn fill_system(&self, m: &mut SystemMetrics) {
        let systems = self.systems.lock();
        let Some(s) = systems.get(m.system.as_str()) else {
            return;
        };
        m.activate_handler = s.activate.summary();
        m.deactivate_handler = s.deactivate.summary();
        m.restarts = s.restarts;
        let p = s.probes;
        m.probes = ProbeCounts {
            healthy: p[0],
            degraded: p[1],
            unhealthy: p[2],
            failed: p[3],
            timed_out: p[4],
        };
        m.probe_latency = s.probe_latency.summary();
    }

    /// Zeroes the registry's own series and the hub's topics; returns the
    /// new `since`.
    pub(crate) fn reset(&self) -> SystemTime {
        self.ops.lock().reset();
        for s in self.systems.lock().values_mut() {
            s.reset();
        }
        self.hub.reset_topics();
        let now = SystemTime::now();
        *self.since.lock() = now;
        now
    }

    pub(crate) fn since(&self) -> SystemTime {
        *self.since.lock()
    }
}

/// A system's line with nothing recorded.
pub(crate) fn empty_system(name: &str, transitions: [u64; 6]) -> SystemMetrics {
    SystemMetrics {
        system: name.to_owned(),
        transitions: TransitionCounts {
            activating: transitions[0],
            active: transitions[1],
            deactivating: transitions[2],
            inactive: transitions[3],
            failed: transitions[4],
            gave_up: transitions[5],
        },
        activate_handler: LatencySummary::default(),
        deactivate_handler: LatencySummary::default(),
        restarts: 0,
        probes: ProbeCounts::default(),
        probe_latency: LatencySummary::default(),
        leases: LeaseMetrics::default(),
    }
}
