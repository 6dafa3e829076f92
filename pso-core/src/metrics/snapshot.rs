//! What [`Orchestrator::performance_metrics`](crate::Orchestrator::performance_metrics)
//! returns: plain data, serializable as JSON (durations in seconds, times
//! as RFC 3339 text) and renderable as Prometheus text.

#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::histogram::LatencySummary;
use super::hub::{EdgeMetrics, HubShare, TopicMetrics};
use super::usage::ResourceUtilization;

pub(crate) fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

pub(crate) fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Counters and latency distributions of an orchestrator, per operation,
/// system, interaction edge, hub topic and resource dimension.
///
/// Series with nothing recorded since the last reset are left out, except
/// systems (every registered system has a line) and resource dimensions.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PerformanceMetrics {
    /// Whether recording is on now.
    pub enabled: bool,
    /// Since when the figures count: the orchestrator's start or the last
    /// [`reset_metrics`](crate::Orchestrator::reset_metrics).
    #[serde(serialize_with = "ser_time")]
    pub since: SystemTime,
    /// When this snapshot was taken.
    #[serde(serialize_with = "ser_time")]
    pub taken: SystemTime,
    /// One hub message in this many has its delivery latency measured (0:
    /// none).
    pub latency_sample_every: u64,
    /// Per system operation (`system.op`), then `<function>`: every step
    /// that runs a plain function, together. Sorted by name.
    pub operations: Vec<OperationMetrics>,
    /// Per registered system, in registration order.
    pub systems: Vec<SystemMetrics>,
    /// Per interaction edge (sender → receiving system), sorted.
    pub edges: Vec<EdgeMetrics>,
    /// Per hub topic, sorted, then `<other>` (topics past the cap).
    pub topics: Vec<TopicMetrics>,
    /// Topics with a series of their own.
    pub topics_tracked: usize,
    /// The most topics tracked one by one.
    pub max_topics: usize,
    /// Time of sampled messages handled by callbacks: in the hub vs in the
    /// callbacks.
    pub hub_share: HubShare,
    /// Per resource dimension with a capacity, by name.
    pub resources: Vec<ResourceUtilization>,
}

impl PerformanceMetrics {
    /// The metrics as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("metrics serialize")
    }

    /// The metrics in the Prometheus text exposition format (version
    /// 0.0.4): counters, gauges, and summaries with `quantile` labels,
    /// `_sum` and `_count` (plus a `_max` gauge). See
    /// [`metrics::prometheus`](crate::metrics::prometheus) for the metric
    /// names.
    pub fn to_prometheus(&self) -> String {
        super::prometheus::render(self)
    }

    /// The series of operation `name` (`system.op`, or `<function>`).
    pub fn operation(&self, name: &str) -> Option<&OperationMetrics> {
        self.operations.iter().find(|o| o.operation == name)
    }

    /// The line of system `name`.
    pub fn system(&self, name: &str) -> Option<&SystemMetrics> {
        self.systems.iter().find(|s| s.system == name)
    }

    /// The series of edge `from → to`.
    pub fn edge(&self, from: &str, to: &str) -> Option<&EdgeMetrics> {
        self.edges.iter().find(|e| e.from == from && e.to == to)
    }

    /// The series of hub topic `topic`.
    pub fn topic(&self, topic: &str) -> Option<&TopicMetrics> {
        self.topics.iter().find(|t| t.topic == topic)
    }

    /// The utilization of resource dimension `dimension`.
    pub fn resource(&self, dimension: &str) -> Option<&ResourceUtilization> {
        self.resources.iter().find(|r| r.dimension == dimension)
    }
}

/// Steps of one operation, from runs with timing on.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct OperationMetrics {
    /// `system.op`, or `<function>` for plain-function steps.
    pub operation: String,
    /// The system (none for `<function>`).
    pub system: Option<String>,
    /// Steps that succeeded.
    pub succeeded: u64,
    /// Steps that failed.
    pub failed: u64,
    /// Steps that were cancelled.
    pub cancelled: u64,
    /// Steps that timed out (their own timeout or the run's deadline).
    pub timed_out: u64,
    /// Steps that were skipped.
    pub skipped: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Run time of the last attempt of each step that ran. A run of more
    /// than 1,024 steps contributes the steps whose index is a multiple of
    /// the power of two that keeps at most 1,024 of them (the counts by
    /// state are exact).
    pub run_time: LatencySummary,
    /// Time from ready (every predecessor done, or a retry due) to the
    /// start of the last attempt, of the same steps as `run_time`: waiting
    /// for a worker, a concurrency slot or a resource lease.
    pub queue_wait: LatencySummary,
}

impl OperationMetrics {
    /// Steps in a terminal state.
    pub fn total(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled + self.timed_out + self.skipped
    }
}

/// Lifecycle transitions of one system, by the state entered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TransitionCounts {
    /// To Activating.
    pub activating: u64,
    /// To Active.
    pub active: u64,
    /// To Deactivating.
    pub deactivating: u64,
    /// To Inactive.
    pub inactive: u64,
    /// To Failed.
    pub failed: u64,
    /// To GaveUp.
    pub gave_up: u64,
}

/// Health probe results of one system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProbeCounts {
    /// Probes that reported healthy.
    pub healthy: u64,
    /// Probes that reported degraded.
    pub degraded: u64,
    /// Probes that reported unhealthy.
    pub unhealthy: u64,
    /// Probes that returned an error or panicked.
    pub failed: u64,
    /// Probes that did not answer within their timeout.
    pub timed_out: u64,
}

/// Resource leases of one system.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct LeaseMetrics {
    /// Leases granted.
    pub granted: u64,
    /// Leases released (by the holder, a TTL or preemption).
    pub released: u64,
    /// Leases held now.
    pub held: u64,
    /// Request to grant (0 for requests granted at once; a gang's parts
    /// each count).
    pub wait: LatencySummary,
    /// Grant to release.
    pub hold: LatencySummary,
}

/// Lifecycle, supervision, health and resource figures of one system.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SystemMetrics {
    /// The system.
    pub system: String,
    /// Transitions by the state entered.
    pub transitions: TransitionCounts,
    /// Run time of its `activate` handler (every attempt that ran).
    pub activate_handler: LatencySummary,
    /// Run time of its `deactivate` handler.
    pub deactivate_handler: LatencySummary,
    /// Restarts by its supervisor.
    pub restarts: u64,
    /// Health probe results.
    pub probes: ProbeCounts,
    /// Health probe latency (a timed-out probe counts its timeout).
    pub probe_latency: LatencySummary,
    /// Its resource leases.
    pub leases: LeaseMetrics,
}
