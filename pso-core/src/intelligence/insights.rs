//! `coordination_insights`: critical paths and time contributors of recent
//! runs (from the run history), hot edges and idle direct pairs (from the
//! hub), resource contention (from the allocator), health, and the hub's
//! share of message latency (from the performance metrics).

use std::collections::HashMap;

use super::simulate::Dag;
use super::{
    Contention, Contributor, CriticalPath, EdgePattern, HubLatency, Insights, TopicLatency,
};
use crate::allocator::ResourceStatus;
use crate::hub::{CoordinationMode, CoordinationStatus};
use crate::metrics::{HubShare, TopicMetrics};
use crate::workflow::WorkflowInner;
use crate::workflow::history::RunSummary;

/// How many contributors and edges are listed.
const TOP: usize = 10;

/// Health facts gathered by the orchestrator.
#[derive(Debug, Default)]
pub(crate) struct HealthFacts {
    pub(crate) unhealthy: Vec<String>,
    pub(crate) flapping: Vec<String>,
    pub(crate) gave_up: Vec<String>,
}

pub(crate) fn insights(
    runs: &[RunSummary],
    hub: &CoordinationStatus,
    resources: &ResourceStatus,
    health: HealthFacts,
    idle_rate: f64,
    messages: (HubShare, &[TopicMetrics]),
) -> Insights {
    let mut latest: HashMap<&str, &RunSummary> = HashMap::new();
    let mut contrib: HashMap<String, Contributor> = HashMap::new();
    let mut counted = 0;
    for r in runs {
        let Some(wf) = r.wf.upgrade() else { continue };
        counted += 1;
        latest.insert(&r.workflow, r);
        for (i, s) in r.steps.iter().enumerate() {
            if s.ran_ns == 0 && s.queued_ns == 0 {
                continue; // never ran (skipped, cancelled upstream)
            }
            let key = match wf.step_op(i as u32) {
                Some(op) => op.key.to_string(),
                None => format!("{}/{}", wf.name, wf.name_of(i as u32)),
            };
            let c = contrib.entry(key.clone()).or_insert_with(|| Contributor {
                key,
                waiting: 0.0,
                working: 0.0,
                steps: 0,
            });
            c.waiting += s.queued_ns as f64 / 1e9;
            c.working += s.ran_ns as f64 / 1e9;
            c.steps += 1;
        }
    }
    let mut critical_paths: Vec<CriticalPath> = latest
        .values()
        .filter_map(|r| Some(critical_path(&*r.wf.upgrade()?, r)))
        .collect();
    critical_paths.sort_by(|a, b| b.length.total_cmp(&a.length));
    let mut contributors: Vec<Contributor> = contrib.into_values().collect();
    contributors.sort_by(|a, b| (b.waiting + b.working).total_cmp(&(a.waiting + a.working)));
    contributors.truncate(TOP);
    let mut hot_edges: Vec<EdgePattern> = hub
        .edges
        .iter()
        .filter(|e| e.rate > 0.0)
        .map(|e| EdgePattern {
            from: e.from.clone(),
            to: e.to.clone(),
            rate: e.rate,
            messages: e.routed + e.direct,
        })
        .collect();
    hot_edges.sort_by(|a, b| b.rate.total_cmp(&a.rate));
    hot_edges.truncate(TOP);
    let idle_direct_pairs = hub
        .direct_pairs
        .iter()
        .filter(|p| p.mode == CoordinationMode::Direct)
        .filter(|p| {
            let rate: f64 = hub
                .edges
                .iter()
                .filter(|e| (e.from == p.a && e.to == p.b) || (e.from == p.b && e.to == p.a))
                .map(|e| e.rate)
                .sum();
            rate < idle_rate
        })
        .map(|p| (p.a.clone(), p.b.clone()))
        .collect();
    let contention = resources
        .dimensions
        .iter()
        .filter_map(|d| {
            let waiting: Vec<_> = resources
                .waiters
                .iter()
                .filter(|w| w.amounts.contains_key(&d.name))
                .collect();
            let utilization = if d.capacity == 0 {
                0.0
            } else {
                d.allocated as f64 / d.capacity as f64
            };
            (!waiting.is_empty() || utilization >= 0.9).then(|| Contention {
                dimension: d.name.clone(),
                utilization,
                waiters: waiting.len(),
                longest_wait: waiting
                    .iter()
                    .map(|w| w.waited.as_secs_f64())
                    .fold(0.0, f64::max),
            })
        })
        .collect();
    Insights {
        runs: counted,
        critical_paths,
        contributors,
        hot_edges,
        idle_direct_pairs,
        contention,
        unhealthy: health.unhealthy,
        flapping: health.flapping,
        gave_up: health.gave_up,
        hub_latency: hub_latency(messages.0, messages.1),
    }
}

/// The hub's share and the topics with the slowest sampled deliveries.
fn hub_latency(share: HubShare, topics: &[TopicMetrics]) -> HubLatency {
    let mut slowest: Vec<TopicLatency> = topics
        .iter()
        .filter(|t| t.delivery_latency.count > 0)
        .map(|t| TopicLatency {
            topic: t.topic.clone(),
            samples: t.delivery_latency.count,
            delivery_p50: t.delivery_latency.p50,
            delivery_p99: t.delivery_latency.p99,
            handler_p50: t.handler_time.p50,
        })
        .collect();
    slowest.sort_by(|a, b| b.delivery_p99.total_cmp(&a.delivery_p99));
    slowest.truncate(TOP);
    HubLatency {
        share,
        slowest_topics: slowest,
    }
}

/// The chain of a run with the largest measured time (queue wait plus run
/// time of each step).
fn critical_path(wf: &WorkflowInner, r: &RunSummary) -> CriticalPath {
    let d: Vec<u64> = r
        .steps
        .iter()
        .map(|s| s.queued_ns.saturating_add(s.ran_ns))
        .collect();
    let dag = Dag {
        succ_start: &wf.succ_start,
        succ: &wf.succ,
        pred_count: &wf.pred_count,
    };
    let cp = dag.critical_path(&d);
    let mut steps = Vec::new();
    // Start at the root with the longest path; follow the heaviest successor.
    let start = (0..d.len())
        .filter(|&i| wf.pred_count[i] == 0)
        .max_by_key(|&i| cp[i]);
    let mut cur = start;
    while let Some(i) = cur {
        steps.push((wf.name_of(i as u32).into_owned(), d[i] as f64 / 1e9));
        cur = wf
            .succ_of(i as u32)
            .iter()
            .map(|&s| s as usize)
            .max_by_key(|&s| cp[s]);
    }
    CriticalPath {
        workflow: r.workflow.to_string(),
        length: start.map_or(0.0, |s| cp[s] as f64 / 1e9),
        steps,
        makespan: r.makespan.as_secs_f64(),
    }
}
