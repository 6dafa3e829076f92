//! Performance metrics verbs of the [`Orchestrator`]: the snapshot, the
//! on/off switch and the reset, plus the hooks that feed lifecycle handler
//! durations into the registry. What is recorded where is in
//! [`crate::metrics`].

use std::collections::HashMap;
use std::time::SystemTime;

use super::Orchestrator;
use crate::lifecycle::{ActivationReport, Outcome};
use crate::metrics::{LeaseMetrics, PerformanceMetrics, SystemMetrics, empty_system};
use crate::model::LifecycleAction;

impl Orchestrator {
    /// Counters and latency distributions recorded since the start (or the
    /// last [`reset_metrics`](Orchestrator::reset_metrics)):
    ///
    /// * per operation (`system.op`, and `<function>` for every
    ///   plain-function step): steps by terminal state, retries, run time
    ///   and queue wait (ready to started) — from runs with timing on;
    /// * per system: lifecycle transitions, activate/deactivate handler
    ///   durations (handlers that returned), restarts, health probe results and latency, resource
    ///   leases granted/released/held with their wait and hold times;
    /// * per interaction edge (a system publishing, naming itself, to
    ///   subscriptions another system owns) and per hub topic: messages
    ///   published, delivered and dropped, and the delivery latency of one
    ///   message in [`MetricsConfig::latency_sample_every`](crate::MetricsConfig::latency_sample_every);
    /// * per resource dimension: time-weighted mean utilization per interval.
    ///
    /// Render it with [`PerformanceMetrics::to_json`] or
    /// [`PerformanceMetrics::to_prometheus`].
    ///
    /// # Examples
    /// ```
    /// use pso_core::{Orchestrator, StepSpec, SystemSpec, Value, Workflow};
    /// let orch = Orchestrator::builder().workers(2).build()?;
    /// orch.register(SystemSpec::new("PAT").operation("parse", |_| Ok(Value::Null)))?;
    /// orch.activate_system("PAT")?;
    /// let wf = Workflow::builder("w").step(StepSpec::op("p", "PAT", "parse")).build(&orch)?;
    /// orch.coordinate_systems(&wf)?.wait();
    ///
    /// let m = orch.performance_metrics();
    /// let parse = m.operation("PAT.parse").unwrap();
    /// assert_eq!((parse.succeeded, parse.run_time.count), (1, 1));
    /// assert_eq!(m.system("PAT").unwrap().transitions.active, 1);
    /// assert!(m.to_prometheus().contains("pso_operation_steps_total{operation=\"PAT.parse\",state=\"succeeded\"} 1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn performance_metrics(&self) -> PerformanceMetrics {
        let inner = &self.inner;
        let m = &*inner.metrics;
        let taken = SystemTime::now();
        let (resources, leases) = inner.env.alloc.metrics();
        let leases: HashMap<_, LeaseMetrics> = leases.into_iter().collect();
        let mut systems: Vec<SystemMetrics> = {
            let reg = inner.registry.read();
            reg.indices()
                .map(|i| {
                    let n = reg.node(i);
                    empty_system(&n.name, n.life.transitions.counts())
                })
                .collect()
        };
        for s in &mut systems {
            m.fill_system(s);
            if let Some(l) = leases.get(s.system.as_str()) {
                s.leases = l.clone();
            }
        }
        PerformanceMetrics {
            enabled: m.on(),
            since: m.since(),
            taken,
            latency_sample_every: m.config.sample_every(),
            operations: m.operations(),
            systems,
            edges: inner.hub.edge_metrics(),
            topics: m.hub.topics(),
            topics_tracked: m.hub.tracked_topics(),
            max_topics: m.hub.max_topics(),
            hub_share: m.hub.share(),
            resources,
        }
    }

    /// Turns recording on or off (the builder's
    /// [`metrics`](crate::OrchestratorBuilder::metrics) sets the initial
    /// value). Off, nothing is recorded and the hot paths pay one relaxed
    /// load; what was recorded stays readable.
    pub fn set_metrics_enabled(&self, enabled: bool) {
        // Under the allocator's lock, after bringing utilization up to now.
        self.inner.env.alloc.set_metrics(enabled);
    }

    /// Whether metrics are being recorded.
    pub fn metrics_enabled(&self) -> bool {
        self.inner.metrics.on()
    }

    /// Zeroes every counter and histogram and forgets utilization history;
    /// the figures count from now on. Gauges of the present (leases held,
    /// allocated amounts) are kept. Topics stay tracked (the topic cap is
    /// not freed).
    pub fn reset_metrics(&self) {
        let inner = &self.inner;
        inner.metrics.reset();
        {
            let mut reg = inner.registry.write();
            let ids: Vec<_> = reg.indices().collect();
            for i in ids {
                reg.node_mut(i).life.transitions.reset();
            }
        }
        inner.hub.reset_edge_metrics();
        inner.env.alloc.reset_metrics();
    }

    /// Records the handler durations of a lifecycle transaction.
    pub(super) fn record_transaction(&self, report: &ActivationReport) {
        let m = &self.inner.metrics;
        if !m.on() {
            return;
        }
        let activate = report.action == LifecycleAction::Activate;
        let ran: Vec<(&str, bool, std::time::Duration)> = report
            .outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o.outcome,
                    Outcome::Activated | Outcome::Deactivated | Outcome::Failed { .. }
                )
            })
            .map(|o| (o.system.as_str(), activate, o.ran))
            .collect();
        m.handlers(ran.into_iter());
    }
}
