//! Prometheus text exposition format (version 0.0.4) of a
//! [`PerformanceMetrics`] snapshot.
//!
//! Every family is written once, contiguously, after its `# HELP` and
//! `# TYPE` lines; families without samples are left out. Counters end in
//! `_total`. A latency is a `summary` (`quantile` 0.5 / 0.9 / 0.99 samples,
//! then `_sum` and `_count`; no quantile samples when nothing was recorded)
//! plus a `gauge` family `<name>_max` with the exact maximum. Label values
//! escape `\`, `"` and line feeds; help text escapes `\` and line feeds.
//! Values are decimal (`NaN`, `+Inf`, `-Inf` where they apply).
//!
//! | family | type | labels |
//! |---|---|---|
//! | `pso_metrics_enabled` | gauge | |
//! | `pso_operation_steps_total` | counter | `operation`, `state` |
//! | `pso_operation_retries_total` | counter | `operation` |
//! | `pso_operation_run_seconds` | summary | `operation` |
//! | `pso_operation_queue_wait_seconds` | summary | `operation` |
//! | `pso_system_transitions_total` | counter | `system`, `to` |
//! | `pso_system_handler_seconds` | summary | `system`, `handler` |
//! | `pso_system_restarts_total` | counter | `system` |
//! | `pso_system_probes_total` | counter | `system`, `result` |
//! | `pso_system_probe_seconds` | summary | `system` |
//! | `pso_system_leases_granted_total` | counter | `system` |
//! | `pso_system_leases_released_total` | counter | `system` |
//! | `pso_system_leases_held` | gauge | `system` |
//! | `pso_system_lease_wait_seconds` | summary | `system` |
//! | `pso_system_lease_hold_seconds` | summary | `system` |
//! | `pso_edge_{published,delivered,dropped}_total` | counter | `from`, `to` |
//! | `pso_edge_delivery_seconds` | summary | `from`, `to` |
//! | `pso_topic_{published,delivered,dropped}_total` | counter | `topic` |
//! | `pso_topic_delivery_seconds` | summary | `topic` |
//! | `pso_topic_handler_seconds` | summary | `topic` |
//! | `pso_hub_handled_sampled_total` | counter | |
//! | `pso_hub_time_seconds_total` | counter | `part` (`hub`, `handler`) |
//! | `pso_hub_latency_share_ratio` | gauge | |
//! | `pso_resource_capacity`, `pso_resource_allocated` | gauge | `dimension` |
//! | `pso_resource_utilization_ratio` | gauge | `dimension` |

#![forbid(unsafe_code)]

use std::fmt::Write;

use super::histogram::LatencySummary;
use super::hub::EdgeMetrics;
use super::series::{PROBE_RESULTS, STEP_STATES, TRANSITION_KINDS};
use super::snapshot::PerformanceMetrics;

/// Labels of one sample: `(name, value)`.
type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes `text` escaped as a label value.
fn escape_label(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn fmt_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

struct Writer {
    out: String,
}

impl Writer {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        );
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        fmt_value(&mut self.out, value);
        self.out.push('\n');
    }

    /// A family of one sample per row (counter or gauge).
    fn family<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return;
        }
        self.header(name, kind, help);
        for (labels, v) in rows {
            self.sample(name, "", &labels, v);
        }
    }

    /// A summary family and its `_max` gauge family.
    fn summaries<'a>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels<'a>, &'a LatencySummary)>,
    ) {
        let rows: Vec<(Labels<'a>, &LatencySummary)> = rows.into_iter().collect();
        if rows.is_empty() {
            return;
        }
        self.header(name, "summary", help);
        for (labels, s) in &rows {
            if s.count > 0 {
                for (q, v) in [("0.5", s.p50), ("0.9", s.p90), ("0.99", s.p99)] {
                    let mut l = labels.clone();
                    l.push(("quantile", q));
                    self.sample(name, "", &l, v);
                }
            }
            self.sample(name, "_sum", labels, s.sum);
            self.sample(name, "_count", labels, s.count as f64);
        }
        let max = format!("{name}_max");
        self.family(
            &max,
            "gauge",
            &format!("Largest value of {name}."),
            rows.iter()
                .filter(|(_, s)| s.count > 0)
                .map(|(l, s)| (l.clone(), s.max)),
        );
    }
}

fn edge_labels(e: &EdgeMetrics) -> Labels<'_> {
    vec![("from", e.from.as_str()), ("to", e.to.as_str())]
}

/// Renders `m`; see the module docs.
pub(crate) fn render(m: &PerformanceMetrics) -> String {
    let mut w = Writer { out: String::new() };
    w.family(
        "pso_metrics_enabled",
        "gauge",
        "Whether metrics are being recorded (1) or not (0).",
        [(Vec::new(), if m.enabled { 1.0 } else { 0.0 })],
    );

    let ops = &m.operations;
    w.family(
        "pso_operation_steps_total",
        "counter",
        "Workflow steps that reached a terminal state, by operation and state (runs with timing on).",
        ops.iter().flat_map(|o| {
            let counts = [o.succeeded, o.failed, o.cancelled, o.timed_out, o.skipped];
            STEP_STATES
                .iter()
                .zip(counts)
                .map(move |(st, n)| (vec![("operation", o.operation.as_str()), ("state", *st)], n as f64))
        }),
    );
    w.family(
        "pso_operation_retries_total",
        "counter",
        "Step attempts after the first, by operation.",
        ops.iter()
            .map(|o| (vec![("operation", o.operation.as_str())], o.retries as f64)),
    );
    w.summaries(
        "pso_operation_run_seconds",
        "Run time of the last attempt of each step, by operation.",
        ops.iter()
            .map(|o| (vec![("operation", o.operation.as_str())], &o.run_time)),
    );
    w.summaries(
        "pso_operation_queue_wait_seconds",
        "Time from ready to the start of the last attempt of each step, by operation.",
        ops.iter()
            .map(|o| (vec![("operation", o.operation.as_str())], &o.queue_wait)),
    );

    let sys = &m.systems;
    w.family(
        "pso_system_transitions_total",
        "counter",
        "Lifecycle transitions, by system and the state entered.",
        sys.iter().flat_map(|s| {
            let t = &s.transitions;
            let counts = [
                t.activating,
                t.active,
                t.deactivating,
                t.inactive,
                t.failed,
                t.gave_up,
            ];
            TRANSITION_KINDS
                .iter()
                .zip(counts)
                .map(move |(k, n)| (vec![("system", s.system.as_str()), ("to", *k)], n as f64))
        }),
    );
    w.summaries(
        "pso_system_handler_seconds",
        "Run time of lifecycle handlers, by system and handler.",
        sys.iter().flat_map(|s| {
            [
                (
                    vec![("system", s.system.as_str()), ("handler", "activate")],
                    &s.activate_handler,
                ),
                (
                    vec![("system", s.system.as_str()), ("handler", "deactivate")],
                    &s.deactivate_handler,
                ),
            ]
        }),
    );
    w.family(
        "pso_system_restarts_total",
        "counter",
        "Restarts by the system's supervisor.",
        sys.iter()
            .map(|s| (vec![("system", s.system.as_str())], s.restarts as f64)),
    );
    w.family(
        "pso_system_probes_total",
        "counter",
        "Health probe results, by system and result.",
        sys.iter().flat_map(|s| {
            let p = &s.probes;
            let counts = [p.healthy, p.degraded, p.unhealthy, p.failed, p.timed_out];
            PROBE_RESULTS.iter().zip(counts).map(move |(r, n)| {
                (
                    vec![("system", s.system.as_str()), ("result", *r)],
                    n as f64,
                )
            })
        }),
    );
    w.summaries(
        "pso_system_probe_seconds",
        "Health probe latency, by system.",
        sys.iter()
            .map(|s| (vec![("system", s.system.as_str())], &s.probe_latency)),
    );
    w.family(
        "pso_system_leases_granted_total",
        "counter",
        "Resource leases granted, by system.",
        sys.iter()
            .map(|s| (vec![("system", s.system.as_str())], s.leases.granted as f64)),
    );
    w.family(
        "pso_system_leases_released_total",
        "counter",
        "Resource leases released (by the holder, a TTL or preemption), by system.",
        sys.iter().map(|s| {
            (
                vec![("system", s.system.as_str())],
                s.leases.released as f64,
            )
        }),
    );
    w.family(
        "pso_system_leases_held",
        "gauge",
        "Resource leases held now, by system.",
        sys.iter()
            .map(|s| (vec![("system", s.system.as_str())], s.leases.held as f64)),
    );
    w.summaries(
        "pso_system_lease_wait_seconds",
        "Time from a resource request to its grant, by system.",
        sys.iter()
            .map(|s| (vec![("system", s.system.as_str())], &s.leases.wait)),
    );
    w.summaries(
        "pso_system_lease_hold_seconds",
        "Time from a lease's grant to its release, by system.",
        sys.iter()
            .map(|s| (vec![("system", s.system.as_str())], &s.leases.hold)),
    );

    let edges = &m.edges;
    w.family(
        "pso_edge_published_total",
        "counter",
        "Messages a system published to subscriptions another system owns.",
        edges.iter().map(|e| (edge_labels(e), e.published as f64)),
    );
    w.family(
        "pso_edge_delivered_total",
        "counter",
        "Messages of an edge handed to the receiving system.",
        edges.iter().map(|e| (edge_labels(e), e.delivered as f64)),
    );
    w.family(
        "pso_edge_dropped_total",
        "counter",
        "Messages of an edge dropped or refused by an overflow policy.",
        edges.iter().map(|e| (edge_labels(e), e.dropped as f64)),
    );
    w.summaries(
        "pso_edge_delivery_seconds",
        "Publish to delivery latency of sampled messages, by edge.",
        edges.iter().map(|e| (edge_labels(e), &e.delivery_latency)),
    );

    let topics = &m.topics;
    w.family(
        "pso_topic_published_total",
        "counter",
        "Publishes, by hub topic (<other>: topics past the cap).",
        topics
            .iter()
            .map(|t| (vec![("topic", t.topic.as_str())], t.published as f64)),
    );
    w.family(
        "pso_topic_delivered_total",
        "counter",
        "Messages handed to a receiver, by hub topic.",
        topics
            .iter()
            .map(|t| (vec![("topic", t.topic.as_str())], t.delivered as f64)),
    );
    w.family(
        "pso_topic_dropped_total",
        "counter",
        "Messages dropped or refused by an overflow policy, by hub topic.",
        topics
            .iter()
            .map(|t| (vec![("topic", t.topic.as_str())], t.dropped as f64)),
    );
    w.summaries(
        "pso_topic_delivery_seconds",
        "Publish to delivery latency of sampled messages, by hub topic.",
        topics
            .iter()
            .map(|t| (vec![("topic", t.topic.as_str())], &t.delivery_latency)),
    );

    w.summaries(
        "pso_topic_handler_seconds",
        "Callback run time of sampled messages, by hub topic.",
        topics
            .iter()
            .map(|t| (vec![("topic", t.topic.as_str())], &t.handler_time)),
    );
    let share = &m.hub_share;
    w.family(
        "pso_hub_handled_sampled_total",
        "counter",
        "Sampled hub messages handled by a callback.",
        [(Vec::new(), share.messages as f64)],
    );
    w.family(
        "pso_hub_time_seconds_total",
        "counter",
        "Time of sampled messages handled by a callback: in the hub (publish to callback start) or in the callback.",
        [
            (vec![("part", "hub")], share.in_hub),
            (vec![("part", "handler")], share.in_handlers),
        ],
    );
    w.family(
        "pso_hub_latency_share_ratio",
        "gauge",
        "The hub's share of the time of sampled messages handled by a callback.",
        [(Vec::new(), share.share)],
    );

    let res = &m.resources;
    w.family(
        "pso_resource_capacity",
        "gauge",
        "Capacity of a resource dimension.",
        res.iter()
            .map(|r| (vec![("dimension", r.dimension.as_str())], r.capacity as f64)),
    );
    w.family(
        "pso_resource_allocated",
        "gauge",
        "Amount of a resource dimension allocated now.",
        res.iter().map(|r| {
            (
                vec![("dimension", r.dimension.as_str())],
                r.allocated as f64,
            )
        }),
    );
    w.family(
        "pso_resource_utilization_ratio",
        "gauge",
        "Time-weighted mean utilization of a resource dimension over the last complete interval.",
        res.iter().filter_map(|r| {
            let n = r.intervals.len();
            let last = match n {
                0 => return None,
                1 => &r.intervals[0],
                _ => &r.intervals[n - 2],
            };
            Some((vec![("dimension", r.dimension.as_str())], last.utilization))
        }),
    );
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values_and_values() {
        let mut s = String::new();
        escape_label(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b\"c\nd"#);
        let mut v = String::new();
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-7, 3.0] {
            fmt_value(&mut v, x);
            v.push(' ');
        }
        assert_eq!(v, "NaN +Inf -Inf 0.0000001 3 ");
    }

    #[test]
    fn summary_without_values_has_no_quantiles() {
        let mut w = Writer { out: String::new() };
        let empty = LatencySummary::default();
        w.summaries("x_seconds", "h", [(vec![("a", "b")], &empty)]);
        assert_eq!(
            w.out,
            "# HELP x_seconds h\n# TYPE x_seconds summary\nx_seconds_sum{a=\"b\"} 0\nx_seconds_count{a=\"b\"} 0\n"
        );
    }
}
