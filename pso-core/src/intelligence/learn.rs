//! `learn_patterns`: folds what the engine measured into [`Patterns`], and
//! saves/restores them through the state store (so a snapshot carries them).
//!
//! The saved form (a `Value` map under [`super::PATTERNS_KEY`]):
//! `{"version": 1, "estimates": {key: [mean_ns, var_ns2, samples]},
//! "co_usage": [[a, b, together]], "usage": {system: count}}`.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

use super::{CoActivation, EdgePattern, OperationPattern, Patterns};
use crate::hub::CoordinationStatus;
use crate::value::Value;
use crate::workflow::history::{CoUsage, RunSummary};
use crate::workflow::plan::{Estimates, Ewma};
use crate::workflow::run::{FAILED, TIMED_OUT};

/// Builds the patterns from the estimates, the recent runs, the hub's edge
/// rates and the co-usage counts.
pub(crate) fn patterns(
    estimates: &Estimates,
    runs: &[RunSummary],
    hub: &CoordinationStatus,
    co: &CoUsage,
) -> Patterns {
    // Recent step counts and failures per operation key.
    let mut recent: HashMap<Arc<str>, (u64, u64)> = HashMap::new();
    for r in runs {
        let Some(wf) = r.wf.upgrade() else { continue };
        for (i, s) in r.steps.iter().enumerate() {
            if let Some(op) = wf.step_op(i as u32) {
                let e = recent.entry(op.key.clone()).or_default();
                e.0 += 1;
                if s.state == FAILED || s.state == TIMED_OUT {
                    e.1 += 1;
                }
            }
        }
    }
    let operations = estimates
        .snapshot()
        .into_iter()
        .map(|e| {
            let (steps, failures) = recent.get(e.key.as_str()).copied().unwrap_or((0, 0));
            OperationPattern {
                failure_rate: if steps == 0 {
                    0.0
                } else {
                    failures as f64 / steps as f64
                },
                key: e.key,
                mean: e.mean,
                stddev: e.stddev,
                samples: e.samples,
                recent_steps: steps,
                recent_failures: failures,
            }
        })
        .collect();
    let mut edges: Vec<EdgePattern> = hub
        .edges
        .iter()
        .map(|e| EdgePattern {
            from: e.from.clone(),
            to: e.to.clone(),
            rate: e.rate,
            messages: e.routed + e.direct,
        })
        .collect();
    edges.sort_by(|a, b| b.rate.total_cmp(&a.rate));
    let mut co_activation: Vec<CoActivation> = co
        .pairs
        .iter()
        .map(|((a, b), &n)| CoActivation {
            a: a.to_string(),
            b: b.to_string(),
            together: n,
            a_count: co.single.get(a).copied().unwrap_or(0),
            b_count: co.single.get(b).copied().unwrap_or(0),
        })
        .collect();
    co_activation.sort_by(|x, y| {
        y.together
            .cmp(&x.together)
            .then(x.a.cmp(&y.a))
            .then(x.b.cmp(&y.b))
    });
    Patterns {
        operations,
        edges,
        co_activation,
    }
}

/// The saved form of what can be restored (estimates and co-usage).
pub(crate) fn to_value(estimates: &Estimates, co: &CoUsage) -> Value {
    let est: BTreeMap<String, Value> = estimates
        .raw()
        .into_iter()
        .map(|(k, e)| {
            (
                k.to_string(),
                Value::List(vec![
                    Value::Float(e.mean),
                    Value::Float(e.var),
                    Value::Int(e.n.min(i64::MAX as u64) as i64),
                ]),
            )
        })
        .collect();
    let pairs: Vec<Value> = co
        .pairs
        .iter()
        .map(|((a, b), &n)| {
            Value::List(vec![
                Value::from(&**a),
                Value::from(&**b),
                Value::Int(n.min(i64::MAX as u64) as i64),
            ])
        })
        .collect();
    let usage: BTreeMap<String, Value> = co
        .single
        .iter()
        .map(|(k, &n)| (k.to_string(), Value::Int(n.min(i64::MAX as u64) as i64)))
        .collect();
    let mut m = BTreeMap::new();
    m.insert("version".to_owned(), Value::Int(1));
    m.insert("estimates".to_owned(), Value::Map(est));
    m.insert("co_usage".to_owned(), Value::List(pairs));
    m.insert("usage".to_owned(), Value::Map(usage));
    Value::Map(m)
}

/// Reads the saved form back. Malformed parts are skipped (a snapshot from
/// another version must not stop a host from starting); returns how many
/// estimates were loaded.
pub(crate) fn from_value(v: &Value, estimates: &Estimates, co: &mut CoUsage) -> usize {
    let Some(m) = v.as_map() else { return 0 };
    let mut loaded = 0;
    if let Some(est) = m.get("estimates").and_then(Value::as_map) {
        let mut items = Vec::new();
        for (k, e) in est {
            if let Some([mean, var, n]) = e.as_list()
                && let (Some(mean), Some(var), Some(n)) = (mean.as_f64(), var.as_f64(), n.as_int())
                && mean.is_finite()
                && var.is_finite()
                && mean >= 0.0
                && var >= 0.0
                && n >= 0
            {
                items.push((
                    Arc::<str>::from(k.as_str()),
                    Ewma::from_parts(mean, var, n as u64),
                ));
            }
        }
        loaded = items.len();
        estimates.load(items);
    }
    if let Some(pairs) = m.get("co_usage").and_then(Value::as_list) {
        for p in pairs {
            if let Some([a, b, n]) = p.as_list()
                && let (Some(a), Some(b), Some(n)) = (a.as_str(), b.as_str(), n.as_int())
                && n > 0
            {
                *co.pairs.entry((Arc::from(a), Arc::from(b))).or_default() += n as u64;
            }
        }
    }
    if let Some(usage) = m.get("usage").and_then(Value::as_map) {
        for (k, n) in usage {
            if let Some(n) = n.as_int().filter(|&n| n > 0) {
                *co.single.entry(Arc::from(k.as_str())).or_default() += n as u64;
            }
        }
    }
    loaded
}
