//! The system model as JS passes it (pso-core `model.rs`): system specs,
//! relations, handlers and orchestrator options.
//!
//! The `#[napi(object)]` structs below only declare the TypeScript interfaces
//! (`SystemSpec`, `EdgeSpec`, `Handlers`, `OrchestratorOptions` in
//! `index.d.ts`); napi-rs does not convert them. The values are read by hand
//! ([`js`]) so that every mistake — a wrong type, a typo'd key, an unknown
//! priority — is a `PSO_INVALID_ARGUMENT` error that names the bad value.

pub(crate) mod handler;
pub(crate) mod js;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use napi::Env;
use napi::ValueType;
use napi::bindgen_prelude::{Function, JsObjectValue, Object, Unknown};
use napi_derive::napi;
use pso_core::{EdgeKind, EdgeSpec, Handlers, LifecycleFn, Priority, SystemSpec};

use self::handler::JsHandler;
use self::js::{check_keys, get};
use crate::error;
use crate::workflow::bridge::Shared;
use crate::workflow::context;

/// A system to register: `register(spec)`, `registerMany([spec, ...])`.
#[napi(
    object,
    js_name = "SystemSpec",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsSystemSpec {
    /// Unique name: 1 to 128 ASCII letters, digits, `_` or `-`.
    pub name: String,
    /// Tier, for grouping in status and diagrams.
    pub tier: Option<String>,
    /// Free-form tags.
    pub tags: Option<Vec<String>>,
    /// Priority class (default `'normal'`).
    #[napi(ts_type = "'critical' | 'high' | 'normal' | 'low' | 'background'")]
    pub priority: Option<String>,
    /// Resource request per dimension (`cpu` millicores, `memory` MiB, ...):
    /// non-negative integers.
    pub resources: Option<HashMap<String, f64>>,
    /// Systems that must be Active before this one activates.
    pub requires: Option<Vec<String>>,
    /// Systems activated before this one, whose failure does not block it.
    pub wants: Option<Vec<String>>,
    /// Systems this one starts after when both are activated.
    pub after: Option<Vec<String>>,
    /// Systems never active together with this one.
    pub conflicts: Option<Vec<String>>,
    /// Systems this one talks to.
    pub interacts: Option<Vec<String>>,
    /// Timeout of each lifecycle transition of this system, in milliseconds
    /// (default: the orchestrator's `transitionTimeoutMs`).
    pub timeout_ms: Option<f64>,
    /// Called with the system name to activate it; a throw or a rejected
    /// Promise marks the system Failed.
    #[napi(ts_type = "(system: string) => void | Promise<void>")]
    pub on_activate: Option<()>,
    /// Called with the system name to deactivate it.
    #[napi(ts_type = "(system: string) => void | Promise<void>")]
    pub on_deactivate: Option<()>,
    /// Workflow operations of this system, by name: step functions called
    /// with the step's `ctx`.
    #[napi(ts_type = "Record<string, StepFn>")]
    pub operations: Option<()>,
    /// How many workflow steps of this system may run at once (at least 1;
    /// default: no limit).
    pub concurrency: Option<u32>,
    /// Never deactivated for being idle in minimalist mode (default false).
    pub pinned: Option<bool>,
    /// How its health is checked while Active (a probe, a watchdog, or both).
    #[napi(ts_type = "HealthCheck")]
    pub health: Option<()>,
    /// How it is supervised (restart policy, strategy, backoff, intensity).
    #[napi(ts_type = "SupervisionOptions")]
    pub supervise: Option<()>,
}

/// A relation `from <kind> to`: `registerMany(systems, edges)`.
#[napi(
    object,
    js_name = "EdgeSpec",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsEdgeSpec {
    /// The system the relation starts from (`A` in `A requires B`).
    pub from: String,
    /// The relation.
    #[napi(ts_type = "'requires' | 'wants' | 'after' | 'conflicts' | 'interacts'")]
    pub kind: String,
    /// The system it points to.
    pub to: String,
}

/// The handlers of a system: `setHandlers(name, handlers)` replaces both.
#[napi(
    object,
    js_name = "Handlers",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsHandlers {
    /// Called with the system name to activate it.
    #[napi(ts_type = "(system: string) => void | Promise<void>")]
    pub on_activate: Option<()>,
    /// Called with the system name to deactivate it.
    #[napi(ts_type = "(system: string) => void | Promise<void>")]
    pub on_deactivate: Option<()>,
}

/// Settings of `new Orchestrator(options)`.
#[napi(
    object,
    js_name = "OrchestratorOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsOrchestratorOptions {
    /// Number of worker threads (default: available cores).
    pub workers: Option<u32>,
    /// Default timeout of each lifecycle transition, in milliseconds
    /// (default 30000).
    pub transition_timeout_ms: Option<f64>,
    /// A waiting resource request's priority class improves by one per
    /// this many milliseconds of waiting (default 1000).
    pub resource_aging_step_ms: Option<f64>,
    /// Time a preempted lease's holder has between the notice and the
    /// revocation, in milliseconds (default 1000).
    pub preemption_grace_ms: Option<f64>,
    /// A lease untouched this long (milliseconds) is idle:
    /// `optimizeResources` proposes reclaiming it (default 60000).
    pub idle_lease_after_ms: Option<f64>,
    /// Hub settings (queues, overflow, promotion thresholds).
    #[napi(ts_type = "HubOptions")]
    pub hub: Option<()>,
    /// Check pair rates for automatic promotion every this many ms.
    pub auto_promote_ms: Option<f64>,
    /// Minimalist mode: deactivate idle, unpinned systems after this many ms.
    pub idle_timeout_ms: Option<f64>,
    /// This many health or state changes of a system within
    /// `flapWindowMs` mark it flapping (default 5).
    pub flap_threshold: Option<u32>,
    /// The flap-detection window, milliseconds (default 60000).
    pub flap_window_ms: Option<f64>,
    /// At most one alert per (system, kind) per this many milliseconds
    /// (default 10000; 0 sends every alert).
    pub alert_interval_ms: Option<f64>,
    /// A virtual clock: supervision time then moves only on `clock.advance`.
    #[napi(ts_type = "VirtualClock")]
    pub clock: Option<()>,
    /// Record performance metrics (default true; see `setMetricsEnabled`).
    pub metrics: Option<bool>,
    /// Time one hub message in this many (default 256; 1 = all, 0 = none).
    pub latency_sample_every: Option<u32>,
    /// Hub topics tracked one by one (default 1024); the rest share `<other>`.
    pub max_topics: Option<u32>,
    /// Length of one resource-utilization interval, ms (default 1000).
    pub utilization_interval_ms: Option<f64>,
    /// Utilization intervals kept (default 300).
    pub utilization_intervals: Option<u32>,
}

const SPEC_KEYS: [&str; 18] = [
    "pinned",
    "name",
    "tier",
    "tags",
    "priority",
    "resources",
    "requires",
    "wants",
    "after",
    "conflicts",
    "interacts",
    "timeoutMs",
    "onActivate",
    "onDeactivate",
    "operations",
    "concurrency",
    "health",
    "supervise",
];
const EDGE_KEYS: [&str; 3] = ["from", "kind", "to"];
const HANDLER_KEYS: [&str; 2] = ["onActivate", "onDeactivate"];
const OPTION_KEYS: [&str; 8] = [
    "hub",
    "autoPromoteMs",
    "idleTimeoutMs",
    "workers",
    "transitionTimeoutMs",
    "resourceAgingStepMs",
    "preemptionGraceMs",
    "idleLeaseAfterMs",
];

/// Parsed `new Orchestrator(options)` settings.
#[derive(Debug, Default)]
pub(crate) struct Options {
    pub(crate) workers: Option<usize>,
    pub(crate) transition_timeout: Option<Duration>,
    pub(crate) resource_aging_step: Option<Duration>,
    pub(crate) preemption_grace: Option<Duration>,
    pub(crate) idle_lease_after: Option<Duration>,
    pub(crate) hub: Option<pso_core::HubConfig>,
    pub(crate) auto_promote: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) supervision: crate::supervision::SupervisionOptions,
    pub(crate) metrics: crate::metrics::MetricsOptions,
}

/// A positive number of milliseconds.
fn millis(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Option<Duration>> {
    match js::opt_number(env, v, what)? {
        None => Ok(None),
        Some(ms) if ms > 0.0 => Duration::try_from_secs_f64(ms / 1000.0)
            .map(Some)
            .map_err(|_| error::invalid(env, format!("{what} is too large: {ms}"))),
        Some(ms) => Err(error::invalid(
            env,
            format!("{what} must be a positive number of milliseconds, got {ms}"),
        )),
    }
}

/// Reads `new Orchestrator(options)`.
pub(crate) fn options(env: &Env, v: Option<Unknown<'_>>) -> napi::Result<Options> {
    let Some(obj) = js::opt_object(env, v, "options")? else {
        return Ok(Options::default());
    };
    let keys = [
        &OPTION_KEYS[..],
        &crate::supervision::OPTION_KEYS[..],
        &crate::metrics::OPTION_KEYS[..],
    ]
    .concat();
    check_keys(env, &obj, &keys, "orchestrator options")?;
    let workers = match js::opt_number(env, get(&obj, "workers")?, "options.workers")? {
        None => None,
        Some(n) => Some(js::count(env, n, "options.workers")? as usize),
    };
    Ok(Options {
        workers,
        transition_timeout: millis(
            env,
            get(&obj, "transitionTimeoutMs")?,
            "options.transitionTimeoutMs",
        )?,
        resource_aging_step: millis(
            env,
            get(&obj, "resourceAgingStepMs")?,
            "options.resourceAgingStepMs",
        )?,
        preemption_grace: js::duration_ms(
            env,
            get(&obj, "preemptionGraceMs")?,
            "options.preemptionGraceMs",
            false,
        )?,
        idle_lease_after: js::duration_ms(
            env,
            get(&obj, "idleLeaseAfterMs")?,
            "options.idleLeaseAfterMs",
            false,
        )?,
        hub: crate::hub::hub_config(env, get(&obj, "hub")?)?,
        auto_promote: millis(env, get(&obj, "autoPromoteMs")?, "options.autoPromoteMs")?,
        idle_timeout: millis(env, get(&obj, "idleTimeoutMs")?, "options.idleTimeoutMs")?,
        supervision: crate::supervision::options(env, &obj)?,
        metrics: crate::metrics::options(env, &obj)?,
    })
}

/// Reads one `SystemSpec`; `what` names it in errors (`"spec"`, `"systems[2]"`).
/// `ops` gives the bridge that wraps JS `operations`.
pub(crate) fn system_spec(
    env: &Env,
    owner: u32,
    ops: &dyn Fn() -> napi::Result<Arc<Shared>>,
    v: Unknown<'_>,
    what: &str,
) -> napi::Result<SystemSpec> {
    let obj = js::object(env, v, what)?;
    let name = js::string(env, get(&obj, "name")?, &format!("{what}.name"))?;
    let what = format!("system spec '{name}'");
    check_keys(env, &obj, &SPEC_KEYS, &what)?;
    let field = |key: &str| format!("{key} of {what}");

    let mut spec = SystemSpec::new(name.as_str());
    if let Some(tier) = js::opt_string(env, get(&obj, "tier")?, &field("tier"))? {
        spec = spec.tier(tier);
    }
    spec = spec.tags(js::strings(env, get(&obj, "tags")?, &field("tags"))?);
    if let Some(p) = js::opt_string(env, get(&obj, "priority")?, &field("priority"))? {
        let p: Priority = p.parse().map_err(|m| error::invalid(env, m))?;
        spec = spec.priority(p);
    }
    if let Some(res) = js::opt_object(env, Some(get(&obj, "resources")?), &field("resources"))? {
        for dim in Object::keys(&res)? {
            let what = format!("resources.{dim} of {what}");
            let amount = js::opt_number(env, get(&res, &dim)?, &what)?
                .ok_or_else(|| error::invalid(env, format!("{what} must be a number")))?;
            spec = spec.resource(dim, js::count(env, amount, &what)?);
        }
    }
    for kind in EdgeKind::ALL {
        for other in js::strings(env, get(&obj, kind.name())?, &field(kind.name()))? {
            spec = spec.edge(kind, other);
        }
    }
    if let Some(t) = millis(env, get(&obj, "timeoutMs")?, &field("timeoutMs"))? {
        spec = spec.timeout(t);
    }
    if let Some(ops_obj) =
        js::opt_object(env, Some(get(&obj, "operations")?), &field("operations"))?
    {
        for op in Object::keys(&ops_obj)? {
            let f = context::step_function(
                env,
                get(&ops_obj, &op)?,
                &format!("operations.{op} of {what}"),
            )?;
            let f = ops()?.step_fn(Arc::new(f));
            spec = spec.operation(op, move |ctx| f(ctx));
        }
    }
    if let Some(n) = js::opt_number(env, get(&obj, "concurrency")?, &field("concurrency"))? {
        let n = u32::try_from(js::count(env, n, &field("concurrency"))?).map_err(|_| {
            error::invalid(env, format!("{} is too large: {n}", field("concurrency")))
        })?;
        spec = spec.concurrency(n);
    }
    if let Some(p) = js::opt_bool(env, get(&obj, "pinned")?, &field("pinned"))? {
        spec = spec.pinned(p);
    }
    let spec = crate::supervision::spec_options(env, owner, &obj, &what, spec)?;
    Ok(spec.handlers(handlers_of(env, owner, &obj, &what)?))
}

/// Reads one `EdgeSpec`.
pub(crate) fn edge_spec(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<EdgeSpec> {
    let obj = js::object(env, v, what)?;
    check_keys(env, &obj, &EDGE_KEYS, what)?;
    let from = js::string(env, get(&obj, "from")?, &format!("{what}.from"))?;
    let kind = edge_kind(env, get(&obj, "kind")?, &format!("{what}.kind"))?;
    let to = js::string(env, get(&obj, "to")?, &format!("{what}.to"))?;
    Ok(EdgeSpec::new(from, kind, to))
}

/// Reads an edge kind (`"requires"`, ...).
pub(crate) fn edge_kind(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<EdgeKind> {
    js::string(env, v, what)?
        .parse()
        .map_err(|m: String| error::invalid(env, m))
}

/// Reads `setHandlers(name, handlers)`'s object (`undefined` removes both).
pub(crate) fn handlers(
    env: &Env,
    owner: u32,
    v: Option<Unknown<'_>>,
    what: &str,
) -> napi::Result<Handlers> {
    match js::opt_object(env, v, "handlers")? {
        None => Ok(Handlers::new()),
        Some(obj) => {
            check_keys(env, &obj, &HANDLER_KEYS, what)?;
            handlers_of(env, owner, &obj, what)
        }
    }
}

fn handlers_of(env: &Env, owner: u32, obj: &Object<'_>, what: &str) -> napi::Result<Handlers> {
    let one = |key: &str| -> napi::Result<Option<LifecycleFn>> {
        let v = get(obj, key)?;
        if js::is_nullish(&v) {
            return Ok(None);
        }
        if v.get_type()? != ValueType::Function {
            return Err(error::invalid(
                env,
                format!(
                    "{key} of {what} must be a function, got {}",
                    js::type_of(&v)
                ),
            ));
        }
        let f: JsHandler<'_> = obj.get_named_property::<Function<'_, _, _>>(key)?;
        handler::lifecycle_fn(env, owner, f).map(Some)
    };
    Ok(Handlers::new()
        .with_activate(one("onActivate")?)
        .with_deactivate(one("onDeactivate")?))
}
