//! Performance metrics (pso-core `metrics`): `performanceMetrics()`,
//! `setMetricsEnabled`, `metricsEnabled`, `resetMetrics`, and the metrics
//! options of `new Orchestrator(options)`.
//!
//! `performanceMetrics()` returns a plain object: pso-core's snapshot as its
//! JSON has it (so every latency summary is in seconds and times are what
//! the JSON says), with keys in camelCase, plus two functions, `toJson()`
//! (pso-core's JSON text, snake_case) and `toPrometheus()` (the Prometheus
//! text exposition), both computed when the snapshot is taken. The object
//! is built on the JS thread; taking the snapshot never runs JS.

use napi::Env;
use napi::bindgen_prelude::{JsObjectValue, JsValue, Null, Object, ToNapiValue, Unknown};
use napi_derive::napi;
use pso_core::{MetricsConfig, OrchestratorBuilder};
use serde_json::Value as Json;

use crate::error;
use crate::model::js::{self, get};
use crate::orchestrator::{JsOrchestrator, guard};

/// The keys `new Orchestrator(options)` takes for metrics.
pub(crate) const OPTION_KEYS: [&str; 5] = [
    "metrics",
    "latencySampleEvery",
    "maxTopics",
    "utilizationIntervalMs",
    "utilizationIntervals",
];

/// pso-core's defaults (`MetricsConfig::new`), needed because one builder
/// call sets the interval and the count together.
const DEFAULT_INTERVAL_MS: f64 = 1000.0;
const DEFAULT_INTERVALS: usize = 300;

/// Metrics settings of `new Orchestrator(options)`.
#[derive(Debug, Default)]
pub(crate) struct MetricsOptions {
    enabled: Option<bool>,
    config: Option<MetricsConfig>,
}

impl MetricsOptions {
    /// The builder with these settings.
    pub(crate) fn apply(self, mut b: OrchestratorBuilder) -> OrchestratorBuilder {
        if let Some(on) = self.enabled {
            b = b.metrics(on);
        }
        if let Some(c) = self.config {
            b = b.metrics_config(c);
        }
        b
    }
}

/// Reads the metrics keys of `new Orchestrator(options)` (pso-core checks
/// the values when building).
pub(crate) fn options(env: &Env, obj: &Object<'_>) -> napi::Result<MetricsOptions> {
    let enabled = js::opt_bool(env, get(obj, "metrics")?, "options.metrics")?;
    let int = |key: &str| -> napi::Result<Option<u64>> {
        let what = format!("options.{key}");
        match js::opt_number(env, get(obj, key)?, &what)? {
            None => Ok(None),
            Some(n) => js::count(env, n, &what).map(Some),
        }
    };
    let every = int("latencySampleEvery")?;
    let topics = int("maxTopics")?;
    let interval = js::opt_number(
        env,
        get(obj, "utilizationIntervalMs")?,
        "options.utilizationIntervalMs",
    )?;
    let intervals = int("utilizationIntervals")?;
    if every.is_none() && topics.is_none() && interval.is_none() && intervals.is_none() {
        return Ok(MetricsOptions {
            enabled,
            config: None,
        });
    }
    let mut c = MetricsConfig::new();
    if let Some(n) = every {
        let n = u32::try_from(n).map_err(|_| {
            error::invalid(env, format!("options.latencySampleEvery is too large: {n}"))
        })?;
        c = c.latency_sample_every(n);
    }
    if let Some(n) = topics {
        c = c.max_topics(usize::try_from(n).unwrap_or(usize::MAX));
    }
    if interval.is_some() || intervals.is_some() {
        let ms = interval.unwrap_or(DEFAULT_INTERVAL_MS);
        if ms < 0.0 {
            return Err(error::invalid(
                env,
                format!("options.utilizationIntervalMs must not be negative, got {ms}"),
            ));
        }
        let d = std::time::Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
            error::invalid(
                env,
                format!("options.utilizationIntervalMs is too large: {ms}"),
            )
        })?;
        let n = intervals.map_or(DEFAULT_INTERVALS, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        });
        c = c.utilization_interval(d, n);
    }
    Ok(MetricsOptions {
        enabled,
        config: Some(c),
    })
}

/// `snake_case` to `camelCase` (`run_time` → `runTime`, `p50` stays).
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for ch in key.chars() {
        if ch == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// A JSON value as a JS value, object keys in camelCase.
fn to_js<'e>(env: &'e Env, v: &Json) -> napi::Result<Unknown<'e>> {
    Ok(match v {
        Json::Null => Null.into_unknown(env)?,
        Json::Bool(b) => (*b).into_unknown(env)?,
        Json::Number(n) => n.as_f64().unwrap_or(f64::NAN).into_unknown(env)?,
        Json::String(s) => s.as_str().into_unknown(env)?,
        Json::Array(items) => {
            let mut arr = env.create_array(u32::try_from(items.len()).unwrap_or(u32::MAX))?;
            for (i, item) in items.iter().enumerate() {
                arr.set(u32::try_from(i).unwrap_or(u32::MAX), to_js(env, item)?)?;
            }
            arr.to_unknown()
        }
        Json::Object(map) => {
            let mut obj = Object::new(env)?;
            for (k, item) in map {
                obj.set_named_property(&camel(k), to_js(env, item)?)?;
            }
            obj.to_unknown()
        }
    })
}

#[napi]
impl JsOrchestrator {
    /// Counters and latency summaries per operation, system, interaction
    /// edge and hub topic, the hub's share of message latency and resource
    /// utilization over time, since the start or the last `resetMetrics()`.
    /// A plain object (camelCase keys, latencies in seconds) with `toJson()`
    /// and `toPrometheus()`.
    #[napi(ts_return_type = "PerformanceMetrics")]
    pub fn performance_metrics<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        guard(env, || {
            let m = self.open(env)?.performance_metrics();
            let value = serde_json::to_value(&m)
                .map_err(|e| error::invalid(env, format!("cannot convert the metrics: {e}")))?;
            let mut obj = to_js(env, &value)?.coerce_to_object()?;
            let json = m.to_json();
            let prometheus = m.to_prometheus();
            let to_json = env
                .create_function_from_closure::<(), String, _>("toJson", move |_| {
                    Ok(json.clone())
                })?;
            let to_prometheus = env
                .create_function_from_closure::<(), String, _>("toPrometheus", move |_| {
                    Ok(prometheus.clone())
                })?;
            obj.set_named_property("toJson", to_json)?;
            obj.set_named_property("toPrometheus", to_prometheus)?;
            Ok(obj)
        })
    }

    /// Turns recording on or off (what was recorded stays readable).
    #[napi(ts_args_type = "on: boolean")]
    pub fn set_metrics_enabled(&self, env: &Env, on: Unknown<'_>) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let on = js::opt_bool(env, on, "on")?
                .ok_or_else(|| error::invalid(env, "on must be a boolean"))?;
            core.set_metrics_enabled(on);
            Ok(())
        })
    }

    /// Whether metrics are being recorded.
    #[napi(getter)]
    pub fn metrics_enabled(&self, env: &Env) -> napi::Result<bool> {
        guard(env, || Ok(self.open(env)?.metrics_enabled()))
    }

    /// Zeroes counters and histograms and forgets utilization history.
    #[napi]
    pub fn reset_metrics(&self, env: &Env) -> napi::Result<()> {
        guard(env, || {
            self.open(env)?.reset_metrics();
            Ok(())
        })
    }
}
