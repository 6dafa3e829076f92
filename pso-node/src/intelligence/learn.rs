//! What `learnPatterns()` and `coordinationInsights()` return: plain
//! objects converted from pso-core's `Patterns` and `Insights` (durations
//! in ms, counts as numbers).

use std::time::Duration;

use napi_derive::napi;
use pso_core::{CoActivation, EdgePattern, Insights, Patterns};

pub(super) fn ms(secs: f64) -> f64 {
    secs * 1000.0
}

pub(super) fn dur_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What was learned about one operation (`system.operation`).
#[napi(object, js_name = "OperationPattern", object_from_js = false)]
#[derive(Debug)]
pub struct JsOperationPattern {
    /// `system.operation`.
    pub key: String,
    /// Mean duration (EWMA), ms.
    pub mean_ms: f64,
    /// Standard deviation (EWMA), ms.
    pub stddev_ms: f64,
    /// Durations folded into the estimate.
    pub samples: f64,
    /// Steps of it in the recent runs kept.
    pub recent_steps: f64,
    /// Of those, how many failed or timed out.
    pub recent_failures: f64,
    /// `recentFailures / recentSteps` (0 without steps).
    pub failure_rate: f64,
}

/// Traffic on one interaction edge.
#[napi(object, js_name = "EdgePattern", object_from_js = false)]
#[derive(Debug)]
pub struct JsEdgePattern {
    /// Sender.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// Messages per second (EWMA).
    pub rate: f64,
    /// Messages so far (routed and direct).
    pub messages: f64,
}

/// Two systems used together.
#[napi(object, js_name = "CoActivation", object_from_js = false)]
#[derive(Debug)]
pub struct JsCoActivation {
    /// One system.
    pub a: String,
    /// The other.
    pub b: String,
    /// Runs that used both, plus calls that activated both.
    pub together: f64,
    /// Runs and activations that involved `a`.
    pub a_count: f64,
    /// Runs and activations that involved `b`.
    pub b_count: f64,
}

/// What `learnPatterns()` returns.
#[napi(object, js_name = "Patterns", object_from_js = false)]
#[derive(Debug)]
pub struct JsPatterns {
    /// Per `system.operation`.
    pub operations: Vec<JsOperationPattern>,
    /// Per interaction edge with traffic.
    pub edges: Vec<JsEdgePattern>,
    /// Pairs of systems used or activated together, most frequent first.
    pub co_activation: Vec<JsCoActivation>,
}

/// One step of a critical path.
#[napi(object, js_name = "PathStep", object_from_js = false)]
#[derive(Debug)]
pub struct JsPathStep {
    /// The step.
    pub step: String,
    /// What it contributed (queue wait plus run time), ms.
    pub ms: f64,
}

/// The longest chain of a run by measured time.
#[napi(object, js_name = "CriticalPath", object_from_js = false)]
#[derive(Debug)]
pub struct JsCriticalPath {
    /// The workflow.
    pub workflow: String,
    /// Its steps, first to last.
    pub steps: Vec<JsPathStep>,
    /// The chain's total, ms.
    pub length_ms: f64,
    /// The run's makespan, ms.
    pub makespan_ms: f64,
}

/// Time spent by one operation (or function step) over recent runs.
#[napi(object, js_name = "Contributor", object_from_js = false)]
#[derive(Debug)]
pub struct JsContributor {
    /// `system.operation`, or `workflow/step` for a function step.
    pub key: String,
    /// Total queue wait (ready → started), ms.
    pub waiting_ms: f64,
    /// Total run time, ms.
    pub working_ms: f64,
    /// Steps counted.
    pub steps: f64,
}

/// Pressure on one resource dimension.
#[napi(object, js_name = "Contention", object_from_js = false)]
#[derive(Debug)]
pub struct JsContention {
    /// The dimension.
    pub dimension: String,
    /// Allocated / capacity now.
    pub utilization: f64,
    /// Requests waiting now.
    pub waiters: u32,
    /// The longest current wait, ms.
    pub longest_wait_ms: f64,
}

/// What `coordinationInsights()` returns.
#[napi(object, js_name = "Insights", object_from_js = false)]
#[derive(Debug)]
pub struct JsInsights {
    /// Recent runs the insights are drawn from.
    pub runs: u32,
    /// The critical path of the latest run of each workflow.
    pub critical_paths: Vec<JsCriticalPath>,
    /// Where recent runs spent their time, largest first.
    pub contributors: Vec<JsContributor>,
    /// Edges with the most traffic (messages/s), busiest first.
    pub hot_edges: Vec<JsEdgePattern>,
    /// Direct pairs with (almost) no traffic.
    #[napi(ts_type = "Array<[string, string]>")]
    pub idle_direct_pairs: Vec<Vec<String>>,
    /// Resource dimensions with waiters or high utilization.
    pub contention: Vec<JsContention>,
    /// Systems whose health is unhealthy.
    pub unhealthy: Vec<String>,
    /// Systems flapping.
    pub flapping: Vec<String>,
    /// Systems their supervisor gave up on.
    pub gave_up: Vec<String>,
    /// The hub's share of message latency (from the performance metrics,
    /// since their last reset).
    #[napi(ts_type = "HubLatency")]
    pub hub_latency: JsHubLatency,
}

/// Sampled hub messages handled by callbacks: time in the hub against time
/// in the callbacks.
#[napi(object, js_name = "HubShare", object_from_js = false)]
#[derive(Debug)]
pub struct JsHubShare {
    /// Sampled messages handled by a callback.
    pub messages: f64,
    /// Their total time in the hub (publish to callback start), ms.
    pub in_hub_ms: f64,
    /// Their total time in callbacks, ms.
    pub in_handlers_ms: f64,
    /// `inHubMs / (inHubMs + inHandlersMs)`, 0..1 (0 without samples).
    pub share: f64,
}

/// The delivery latency of one hub topic, from its sampled messages.
#[napi(object, js_name = "TopicLatency", object_from_js = false)]
#[derive(Debug)]
pub struct JsTopicLatency {
    /// The topic (`<other>` for topics past the metrics' cap).
    pub topic: String,
    /// Sampled deliveries.
    pub samples: f64,
    /// Median publish to delivery, ms.
    pub delivery_p50_ms: f64,
    /// 99th percentile publish to delivery, ms.
    pub delivery_p99_ms: f64,
    /// Median callback run time of its sampled messages, ms.
    pub handler_p50_ms: f64,
}

/// Where the time of hub messages goes (`Insights.hubLatency`).
#[napi(object, js_name = "HubLatency", object_from_js = false)]
#[derive(Debug)]
pub struct JsHubLatency {
    /// Time in the hub against time in callbacks.
    pub share: JsHubShare,
    /// Topics with sampled deliveries, the largest delivery p99 first (at
    /// most 10).
    pub slowest_topics: Vec<JsTopicLatency>,
}

pub(super) fn patterns(p: Patterns) -> JsPatterns {
    JsPatterns {
        operations: p
            .operations
            .into_iter()
            .map(|o| JsOperationPattern {
                key: o.key,
                mean_ms: dur_ms(o.mean),
                stddev_ms: dur_ms(o.stddev),
                samples: o.samples as f64,
                recent_steps: o.recent_steps as f64,
                recent_failures: o.recent_failures as f64,
                failure_rate: o.failure_rate,
            })
            .collect(),
        edges: p.edges.iter().map(edge).collect(),
        co_activation: p.co_activation.iter().map(co).collect(),
    }
}

pub(super) fn edge(e: &EdgePattern) -> JsEdgePattern {
    JsEdgePattern {
        from: e.from.clone(),
        to: e.to.clone(),
        rate: e.rate,
        messages: e.messages as f64,
    }
}

pub(super) fn co(c: &CoActivation) -> JsCoActivation {
    JsCoActivation {
        a: c.a.clone(),
        b: c.b.clone(),
        together: c.together as f64,
        a_count: c.a_count as f64,
        b_count: c.b_count as f64,
    }
}

pub(super) fn insights(i: Insights) -> JsInsights {
    JsInsights {
        runs: u32::try_from(i.runs).unwrap_or(u32::MAX),
        critical_paths: i
            .critical_paths
            .into_iter()
            .map(|c| JsCriticalPath {
                workflow: c.workflow,
                steps: c
                    .steps
                    .into_iter()
                    .map(|(step, secs)| JsPathStep { step, ms: ms(secs) })
                    .collect(),
                length_ms: ms(c.length),
                makespan_ms: ms(c.makespan),
            })
            .collect(),
        contributors: i
            .contributors
            .into_iter()
            .map(|c| JsContributor {
                key: c.key,
                waiting_ms: ms(c.waiting),
                working_ms: ms(c.working),
                steps: c.steps as f64,
            })
            .collect(),
        hot_edges: i.hot_edges.iter().map(edge).collect(),
        idle_direct_pairs: i
            .idle_direct_pairs
            .into_iter()
            .map(|(a, b)| vec![a, b])
            .collect(),
        contention: i
            .contention
            .into_iter()
            .map(|c| JsContention {
                dimension: c.dimension,
                utilization: c.utilization,
                waiters: u32::try_from(c.waiters).unwrap_or(u32::MAX),
                longest_wait_ms: ms(c.longest_wait),
            })
            .collect(),
        unhealthy: i.unhealthy,
        flapping: i.flapping,
        gave_up: i.gave_up,
        hub_latency: JsHubLatency {
            share: JsHubShare {
                messages: i.hub_latency.share.messages as f64,
                in_hub_ms: ms(i.hub_latency.share.in_hub),
                in_handlers_ms: ms(i.hub_latency.share.in_handlers),
                share: i.hub_latency.share.share,
            },
            slowest_topics: i
                .hub_latency
                .slowest_topics
                .into_iter()
                .map(|t| JsTopicLatency {
                    topic: t.topic,
                    samples: t.samples as f64,
                    delivery_p50_ms: ms(t.delivery_p50),
                    delivery_p99_ms: ms(t.delivery_p99),
                    handler_p50_ms: ms(t.handler_p50),
                })
                .collect(),
        },
    }
}
