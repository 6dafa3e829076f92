//! Coordination intelligence: what PSO learned from what it measured, and
//! what it suggests — each output with its evidence and sample counts.
//!
//! * [`Patterns`] (`learn_patterns`): per operation duration mean/variance
//!   (the shared EWMA estimates) and failure rate over recent runs, per edge
//!   message rates, co-activation counts (systems used in the same run or
//!   activated in the same call). Saved in the state store (key
//!   [`PATTERNS_KEY`]) so a snapshot carries them and a restored host does
//!   not start cold.
//! * [`Insights`] (`coordination_insights`): critical paths of recent runs
//!   from measured durations, top latency contributors (waiting vs working),
//!   hot and idle edges, resource contention, unhealthy and flapping systems.
//! * [`Recommendation`]s (`optimization_recommendations`), applied by
//!   `optimize_coordination` when they pass the guardrails, each change
//!   logged and reversible.
//! * [`Trial`]s (`evolve_coordination`): one strategy change measured
//!   against the baseline on the caller's workload, kept only if better by a
//!   margin.
//!
//! Everything here reads what the engine already keeps (estimates, the
//! bounded run history, hub edge rates, allocator and supervision state); it
//! adds nothing to the hot paths.

pub(crate) mod insights;
pub(crate) mod learn;
pub(crate) mod recommend;
pub(crate) mod simulate;

use std::time::Duration;

use serde::Serialize;

use crate::workflow::SchedulingPolicy;

/// The state store key learned patterns are saved under.
pub const PATTERNS_KEY: &str = "pso.patterns";

/// What `learn_patterns` returns.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Patterns {
    /// Per `system.operation`.
    pub operations: Vec<OperationPattern>,
    /// Per interaction edge with traffic.
    pub edges: Vec<EdgePattern>,
    /// Pairs of systems used or activated together, most frequent first.
    pub co_activation: Vec<CoActivation>,
}

/// What was learned about one operation.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct OperationPattern {
    /// `system.operation`.
    pub key: String,
    /// EWMA of its duration.
    #[serde(serialize_with = "secs")]
    pub mean: Duration,
    /// EWMA standard deviation.
    #[serde(serialize_with = "secs")]
    pub stddev: Duration,
    /// Durations folded into the estimate.
    pub samples: u64,
    /// Steps of it in the recent runs kept.
    pub recent_steps: u64,
    /// Of those, how many failed or timed out.
    pub recent_failures: u64,
    /// `recent_failures / recent_steps` (0 without steps).
    pub failure_rate: f64,
}

/// Traffic on one edge.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EdgePattern {
    /// Sender.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// Messages per second (EWMA).
    pub rate: f64,
    /// Messages so far (routed and direct).
    pub messages: u64,
}

/// Two systems used together.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CoActivation {
    /// One system.
    pub a: String,
    /// The other.
    pub b: String,
    /// Runs that used both, plus calls that activated both.
    pub together: u64,
    /// Runs and activations that involved `a`.
    pub a_count: u64,
    /// Runs and activations that involved `b`.
    pub b_count: u64,
}

/// What `coordination_insights` returns.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Insights {
    /// Recent runs the insights are drawn from.
    pub runs: usize,
    /// The critical path of the latest run of each workflow.
    pub critical_paths: Vec<CriticalPath>,
    /// Where recent runs spent their time, largest first.
    pub contributors: Vec<Contributor>,
    /// Edges with the most traffic (messages/s), busiest first.
    pub hot_edges: Vec<EdgePattern>,
    /// Direct pairs with (almost) no traffic.
    pub idle_direct_pairs: Vec<(String, String)>,
    /// Resource dimensions with waiters or high utilization.
    pub contention: Vec<Contention>,
    /// Systems whose health is unhealthy.
    pub unhealthy: Vec<String>,
    /// Systems flapping.
    pub flapping: Vec<String>,
    /// Systems their supervisor gave up on.
    pub gave_up: Vec<String>,
    /// The hub's share of message latency (from the performance metrics,
    /// since their last reset).
    pub hub_latency: HubLatency,
}

/// Where the time of hub messages goes, from the sampled messages of the
/// performance metrics (see [`crate::HubShare`]).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct HubLatency {
    /// Sampled messages handled by a callback: time in the hub (publish to
    /// callback start) against time in the callbacks, and the hub's share.
    pub share: crate::HubShare,
    /// Topics with sampled deliveries, the largest delivery p99 first (at
    /// most 10).
    pub slowest_topics: Vec<TopicLatency>,
}

/// The delivery latency of one hub topic, from its sampled messages.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TopicLatency {
    /// The topic (`<other>` for topics past the metrics' cap).
    pub topic: String,
    /// Sampled deliveries.
    pub samples: u64,
    /// Median publish to delivery, seconds.
    pub delivery_p50: f64,
    /// 99th percentile publish to delivery, seconds.
    pub delivery_p99: f64,
    /// Median callback run time of its sampled messages (0 if none was
    /// handled by a callback), seconds.
    pub handler_p50: f64,
}

/// The longest chain of a run by measured time.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CriticalPath {
    /// The workflow.
    pub workflow: String,
    /// Its steps, first to last, with the time each contributed (queue wait
    /// plus run time).
    pub steps: Vec<(String, f64)>,
    /// The chain's total, seconds.
    pub length: f64,
    /// The run's makespan, seconds.
    pub makespan: f64,
}

/// Time spent by one operation (or function step) over recent runs.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Contributor {
    /// `system.operation`, or `workflow/step` for a function step.
    pub key: String,
    /// Total queue wait (ready → started), seconds.
    pub waiting: f64,
    /// Total run time, seconds.
    pub working: f64,
    /// Steps counted.
    pub steps: u64,
}

/// Pressure on one resource dimension.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Contention {
    /// The dimension.
    pub dimension: String,
    /// Allocated / capacity now.
    pub utilization: f64,
    /// Requests waiting now.
    pub waiters: usize,
    /// The longest current wait, seconds.
    pub longest_wait: f64,
}

/// A suggested change, with its evidence.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// What it applies to (a pair `a<->b`, a system, `scheduling`).
    pub target: String,
    /// The change.
    pub action: Action,
    /// The numbers behind it.
    pub evidence: String,
    /// What it should gain, in words and numbers.
    pub expected_gain: String,
    /// 0..1: how sure (from sample counts and effect size).
    pub confidence: f64,
    /// Samples the evidence rests on.
    pub samples: u64,
}

/// A change `optimize_coordination` can make (and undo).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Give the pair a direct channel.
    PromoteToDirect {
        /// One system.
        a: String,
        /// The other.
        b: String,
    },
    /// Route the pair through the hub again.
    DemoteDirect {
        /// One system.
        a: String,
        /// The other.
        b: String,
    },
    /// Change a system's concurrency limit for workflow steps.
    SetConcurrencyLimit {
        /// The system.
        system: String,
        /// The limit now.
        from: Option<u32>,
        /// The proposed limit.
        to: Option<u32>,
    },
    /// Deactivate an idle system.
    DeactivateIdle {
        /// The system.
        system: String,
    },
    /// Activate systems usually used with an Active one.
    PreActivate {
        /// The systems.
        systems: Vec<String>,
    },
    /// Order ready steps differently.
    SetSchedulingPolicy {
        /// The policy now.
        from: SchedulingPolicy,
        /// The proposed policy.
        to: SchedulingPolicy,
    },
}

/// The minimums a recommendation must meet to be applied.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Guardrails {
    /// Samples behind it.
    pub min_samples: u64,
    /// Its confidence.
    pub min_confidence: f64,
    /// How long a system must be unused before deactivating it is suggested
    /// (default: minimalist mode's idle timeout if set, else 5 minutes).
    pub idle_after: Option<Duration>,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            min_samples: 20,
            min_confidence: 0.6,
            idle_after: None,
        }
    }
}

impl Guardrails {
    /// The default guardrails (20 samples, confidence 0.6).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the minimum samples.
    pub fn min_samples(mut self, n: u64) -> Self {
        self.min_samples = n;
        self
    }

    /// Sets the minimum confidence.
    pub fn min_confidence(mut self, c: f64) -> Self {
        self.min_confidence = c;
        self
    }

    /// Sets how long a system must be unused before deactivating it is
    /// suggested.
    pub fn idle_after(mut self, d: Duration) -> Self {
        self.idle_after = Some(d);
        self
    }
}

/// What `optimize_coordination` planned (and, with `apply`, did).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct CoordinationPlan {
    /// Recommendations that pass the guardrails (applied if `applied`).
    pub actions: Vec<Recommendation>,
    /// Recommendations held back, with why.
    pub skipped: Vec<(Recommendation, String)>,
    /// Whether the actions were carried out.
    pub applied: bool,
    /// The changes made (ids for `revert_change`), in order.
    pub changes: Vec<Change>,
}

/// A change PSO made to its coordination, and how to undo it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Change {
    /// Its id in the log.
    pub id: u64,
    /// What was done.
    pub action: Action,
    /// Why (the recommendation's evidence, or the trial's result).
    pub reason: String,
    /// Whether it has been reverted.
    pub reverted: bool,
    /// Whether it failed to apply (then `error` says why).
    pub error: Option<String>,
}

/// The strategy change an evolution trial tries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StrategyChange {
    /// Another scheduling policy.
    SchedulingPolicy(SchedulingPolicy),
    /// Another concurrency limit for one system.
    ConcurrencyLimit {
        /// The system.
        system: String,
        /// The limit to try (`None`: unlimited).
        limit: Option<u32>,
    },
}

/// What a trial compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialMetric {
    /// Median wall time of one workload call.
    Makespan,
    /// 99th percentile wall time of one workload call.
    P99,
    /// Share of workload calls that failed.
    ErrorRate,
}

/// An evolution trial: try `change` for `rounds` workload calls, alternating
/// with as many baseline calls, and keep it only if `metric` improves by at
/// least `margin` (a fraction: 0.05 = 5%).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Trial {
    /// The change to try.
    pub change: StrategyChange,
    /// Workload calls per arm.
    pub rounds: usize,
    /// What is compared.
    pub metric: TrialMetric,
    /// The improvement needed to keep it.
    pub margin: f64,
}

impl Trial {
    /// `change` for 5 rounds per arm, by makespan, keeping it if 5% better.
    pub fn new(change: StrategyChange) -> Self {
        Trial {
            change,
            rounds: 5,
            metric: TrialMetric::Makespan,
            margin: 0.05,
        }
    }

    /// Workload calls per arm (≥ 1).
    pub fn rounds(mut self, n: usize) -> Self {
        self.rounds = n;
        self
    }

    /// What is compared.
    pub fn metric(mut self, metric: TrialMetric) -> Self {
        self.metric = metric;
        self
    }

    /// The improvement needed to keep the change (fraction).
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }
}

/// One arm's measurements.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct ArmStats {
    /// Workload calls.
    pub rounds: usize,
    /// Median wall time, seconds.
    pub median: f64,
    /// 99th percentile wall time, seconds.
    pub p99: f64,
    /// Share of calls that failed.
    pub error_rate: f64,
}

/// A finished trial.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Evolution {
    /// Its id in the log.
    pub id: u64,
    /// What was tried.
    pub change: String,
    /// Measured without the change.
    pub baseline: ArmStats,
    /// Measured with it.
    pub trial: ArmStats,
    /// The relative improvement of the metric (positive: better).
    pub improvement: f64,
    /// Whether the change was kept.
    pub kept: bool,
    /// Why, in words.
    pub reason: String,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Patterns {
    /// As JSON (durations in seconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("patterns serialize")
    }
}

impl Insights {
    /// As JSON (durations in seconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("insights serialize")
    }
}

impl CoordinationPlan {
    /// As JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plan serializes")
    }
}

impl serde::Serialize for SchedulingPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
