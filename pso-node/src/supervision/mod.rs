//! Health and supervision (pso-core `supervise` and
//! `orchestrator/supervision`): the `health` and `supervise` options of a
//! system spec, `setHealthCheck`/`setSupervision`/`checkIn`/`reportFailure`,
//! the orchestrator's flap/alert/clock options, `VirtualClock`, and the
//! `health`/`supervision` fields of `SystemStatus`.
//!
//! Probes are in `probe`, `VirtualClock` in `clock`.
//!
//! Durations are milliseconds in JS.

mod clock;
mod probe;

pub use self::clock::JsVirtualClock;
pub(crate) use self::probe::close_probes;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use napi::Env;
use napi::ValueType;
use napi::bindgen_prelude::{
    ClassInstance, FromNapiValue, Function, JavaScriptClassExt, JsObjectValue, Object, Unknown,
};
use napi_derive::napi;
use pso_core::{
    HealthCheck, HealthInfo, OrchestratorBuilder, RestartPolicy, RestartStrategy, Supervision,
    SupervisionInfo, VirtualClock,
};

use self::probe::probe_fn;
use crate::error;
use crate::model::js::{self, check_keys, get};
use crate::orchestrator::{JsOrchestrator, guard};

/// pso-core's defaults (`HealthCheck::probe`, `Supervision::new`), needed
/// here because a builder call sets two of them at once.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
const DEFAULT_MAX_RESTARTS: u32 = 5;
const DEFAULT_WITHIN: Duration = Duration::from_secs(60);
const DEFAULT_FLAP_THRESHOLD: u32 = 5;
const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(60);

/// The keys `new Orchestrator(options)` takes for supervision.
pub(crate) const OPTION_KEYS: [&str; 4] =
    ["flapThreshold", "flapWindowMs", "alertIntervalMs", "clock"];

const HEALTH_KEYS: [&str; 6] = [
    "probe",
    "intervalMs",
    "timeoutMs",
    "failuresBeforeUnhealthy",
    "successesBeforeHealthy",
    "watchdogMs",
];
const SUPERVISE_KEYS: [&str; 8] = [
    "policy",
    "strategy",
    "backoffMs",
    "maxBackoffMs",
    "jitter",
    "resetAfterMs",
    "maxRestarts",
    "withinMs",
];

/// Supervision settings of `new Orchestrator(options)`.
#[derive(Debug, Default)]
pub(crate) struct SupervisionOptions {
    flap_threshold: Option<u32>,
    flap_window: Option<Duration>,
    alert_interval: Option<Duration>,
    clock: Option<(VirtualClock, Arc<AtomicUsize>)>,
}

impl SupervisionOptions {
    /// The builder with these settings.
    pub(crate) fn apply(self, mut b: OrchestratorBuilder) -> OrchestratorBuilder {
        if self.flap_threshold.is_some() || self.flap_window.is_some() {
            b = b.flap_detection(
                self.flap_threshold.unwrap_or(DEFAULT_FLAP_THRESHOLD),
                self.flap_window.unwrap_or(DEFAULT_FLAP_WINDOW),
            );
        }
        if let Some(d) = self.alert_interval {
            b = b.alert_interval(d);
        }
        if let Some((clock, _)) = self.clock {
            b = b.virtual_clock(clock);
        }
        b
    }

    /// The in-flight counter the orchestrator must use: its clock's.
    pub(crate) fn in_flight(&self) -> Option<Arc<AtomicUsize>> {
        self.clock.as_ref().map(|(_, busy)| busy.clone())
    }
}

/// Reads the supervision keys of `new Orchestrator(options)`.
pub(crate) fn options(env: &Env, obj: &Object<'_>) -> napi::Result<SupervisionOptions> {
    let flap_threshold =
        match js::opt_number(env, get(obj, "flapThreshold")?, "options.flapThreshold")? {
            None => None,
            Some(n) => Some(u32_of(env, n, "options.flapThreshold", 1)?),
        };
    let clock = get(obj, "clock")?;
    let clock = if js::is_nullish(&clock) {
        None
    } else if JsVirtualClock::instance_of(env, &clock)? {
        let c = ClassInstance::<JsVirtualClock>::from_unknown(clock)?;
        Some((c.clock.clone(), c.busy.clone()))
    } else {
        return Err(error::invalid(
            env,
            format!(
                "options.clock must be a VirtualClock, got {}",
                js::type_of(&clock)
            ),
        ));
    };
    Ok(SupervisionOptions {
        flap_threshold,
        flap_window: js::duration_ms(env, get(obj, "flapWindowMs")?, "options.flapWindowMs", true)?,
        alert_interval: js::duration_ms(
            env,
            get(obj, "alertIntervalMs")?,
            "options.alertIntervalMs",
            false,
        )?,
        clock,
    })
}

/// An integer in `min..=u32::MAX`.
fn u32_of(env: &Env, n: f64, what: &str, min: u32) -> napi::Result<u32> {
    let v = js::count(env, n, what)?;
    match u32::try_from(v) {
        Ok(v) if v >= min => Ok(v),
        _ => Err(error::invalid(
            env,
            format!(
                "{what} must be an integer from {min} to {}, got {n}",
                u32::MAX
            ),
        )),
    }
}

/// Adds the `health` and `supervise` keys of a system spec to `spec`.
pub(crate) fn spec_options(
    env: &Env,
    owner: u32,
    obj: &Object<'_>,
    what: &str,
    mut spec: pso_core::SystemSpec,
) -> napi::Result<pso_core::SystemSpec> {
    if let Some(c) = health_check(
        env,
        owner,
        get(obj, "health")?,
        &format!("health of {what}"),
    )? {
        spec = spec.health_check(c);
    }
    if let Some(s) = supervision(env, get(obj, "supervise")?, &format!("supervise of {what}"))? {
        spec = spec.supervise(s);
    }
    Ok(spec)
}

/// Reads a `HealthCheck` object (`None` for `undefined`/`null`).
fn health_check(
    env: &Env,
    owner: u32,
    v: Unknown<'_>,
    what: &str,
) -> napi::Result<Option<HealthCheck>> {
    let Some(obj) = js::opt_object(env, Some(v), what)? else {
        return Ok(None);
    };
    check_keys(env, &obj, &HEALTH_KEYS, what)?;
    let field = |key: &str| format!("{key} of {what}");
    let timeout = js::duration_ms(env, get(&obj, "timeoutMs")?, &field("timeoutMs"), true)?;
    let watchdog = js::duration_ms(env, get(&obj, "watchdogMs")?, &field("watchdogMs"), true)?;
    let probe = get(&obj, "probe")?;
    let mut check = if js::is_nullish(&probe) {
        match watchdog {
            Some(d) => HealthCheck::watchdog_only(d),
            None => {
                return Err(error::invalid(
                    env,
                    format!("{what} needs a probe or a watchdogMs"),
                ));
            }
        }
    } else if probe.get_type()? == ValueType::Function {
        let f: Function<'_, String, Unknown<'static>> = obj.get_named_property("probe")?;
        let f = probe_fn(owner, f, timeout.unwrap_or(DEFAULT_PROBE_TIMEOUT))?;
        let c = HealthCheck::probe_shared(f);
        match watchdog {
            Some(d) => c.watchdog(d),
            None => c,
        }
    } else {
        return Err(error::invalid(
            env,
            format!(
                "{} must be a function, got {}",
                field("probe"),
                js::type_of(&probe)
            ),
        ));
    };
    if let Some(d) = js::duration_ms(env, get(&obj, "intervalMs")?, &field("intervalMs"), true)? {
        check = check.interval(d);
    }
    if let Some(d) = timeout {
        check = check.timeout(d);
    }
    let key = "failuresBeforeUnhealthy";
    if let Some(n) = js::opt_number(env, get(&obj, key)?, &field(key))? {
        check = check.failures_before_unhealthy(u32_of(env, n, &field(key), 1)?);
    }
    let key = "successesBeforeHealthy";
    if let Some(n) = js::opt_number(env, get(&obj, key)?, &field(key))? {
        check = check.successes_before_healthy(u32_of(env, n, &field(key), 1)?);
    }
    Ok(Some(check))
}

/// Reads a `Supervision` object (`None` for `undefined`/`null`).
fn supervision(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Option<Supervision>> {
    let Some(obj) = js::opt_object(env, Some(v), what)? else {
        return Ok(None);
    };
    check_keys(env, &obj, &SUPERVISE_KEYS, what)?;
    let field = |key: &str| format!("{key} of {what}");
    let policy = match js::opt_string(env, get(&obj, "policy")?, &field("policy"))?.as_deref() {
        None | Some("on_failure") => RestartPolicy::OnFailure,
        Some("never") => RestartPolicy::Never,
        Some("always") => RestartPolicy::Always,
        Some(other) => {
            return Err(error::invalid(
                env,
                format!(
                    "{} must be 'never', 'on_failure' or 'always', got '{other}'",
                    field("policy")
                ),
            ));
        }
    };
    let mut s = Supervision::new(policy);
    match js::opt_string(env, get(&obj, "strategy")?, &field("strategy"))?.as_deref() {
        None | Some("one_for_one") => {}
        Some("one_for_all") => s = s.strategy(RestartStrategy::OneForAll),
        Some("rest_for_one") => s = s.strategy(RestartStrategy::RestForOne),
        Some(other) => {
            return Err(error::invalid(
                env,
                format!(
                    "{} must be 'one_for_one', 'one_for_all' or 'rest_for_one', got '{other}'",
                    field("strategy")
                ),
            ));
        }
    }
    let base = js::duration_ms(env, get(&obj, "backoffMs")?, &field("backoffMs"), false)?;
    let max = js::duration_ms(
        env,
        get(&obj, "maxBackoffMs")?,
        &field("maxBackoffMs"),
        false,
    )?;
    if base.is_some() || max.is_some() {
        s = s.backoff(
            base.unwrap_or(DEFAULT_BACKOFF),
            max.unwrap_or(DEFAULT_MAX_BACKOFF),
        );
    }
    if let Some(j) = js::opt_bool(env, get(&obj, "jitter")?, &field("jitter"))? {
        s = s.jitter(j);
    }
    if let Some(d) = js::duration_ms(
        env,
        get(&obj, "resetAfterMs")?,
        &field("resetAfterMs"),
        false,
    )? {
        s = s.reset_after(d);
    }
    let n = match js::opt_number(env, get(&obj, "maxRestarts")?, &field("maxRestarts"))? {
        None => None,
        Some(n) => Some(u32_of(env, n, &field("maxRestarts"), 0)?),
    };
    let within = js::duration_ms(env, get(&obj, "withinMs")?, &field("withinMs"), true)?;
    if n.is_some() || within.is_some() {
        s = s.intensity(
            n.unwrap_or(DEFAULT_MAX_RESTARTS),
            within.unwrap_or(DEFAULT_WITHIN),
        );
    }
    Ok(Some(s))
}

/// A system's health, in `SystemStatus.health`.
#[napi(
    object,
    js_name = "HealthInfo",
    object_from_js = false,
    use_nullable = true
)]
#[derive(Debug)]
pub struct JsHealthInfo {
    /// The last verdict.
    #[napi(ts_type = "HealthStatus")]
    pub status: String,
    /// The last probe's detail (or why it failed).
    pub detail: String,
    /// Failed probes in a row.
    pub consecutive_failures: u32,
    /// Probes run so far.
    pub probes: f64,
    /// Milliseconds since the last check-in, if it has a watchdog (and
    /// checked in since it was activated).
    pub since_check_in_ms: Option<f64>,
    /// Whether it is flapping (its alerts are suppressed).
    pub flapping: bool,
}

/// A system's supervision, in `SystemStatus.supervision`.
#[napi(
    object,
    js_name = "SupervisionInfo",
    object_from_js = false,
    use_nullable = true
)]
#[derive(Debug)]
pub struct JsSupervisionInfo {
    /// The restart policy.
    #[napi(ts_type = "RestartPolicy")]
    pub policy: String,
    /// The restart strategy.
    #[napi(ts_type = "RestartStrategy")]
    pub strategy: String,
    /// Restarts so far.
    pub restarts: u32,
    /// Failures counted in the current restart-intensity window.
    pub recent_failures: u32,
    /// Failures the window still allows before it gives up.
    pub failures_left: u32,
    /// Milliseconds until the pending restart, if one is pending.
    pub next_attempt_in_ms: Option<f64>,
    /// The attempt the next restart will be (the backoff grows with it).
    pub attempt: u32,
    /// Whether supervision gave up on it (state `GaveUp`).
    pub gave_up: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl From<&HealthInfo> for JsHealthInfo {
    fn from(h: &HealthInfo) -> Self {
        JsHealthInfo {
            status: h.status.name().to_owned(),
            detail: h.detail.clone(),
            consecutive_failures: h.consecutive_failures,
            probes: h.probes as f64,
            since_check_in_ms: h.since_check_in.map(ms),
            flapping: h.flapping,
        }
    }
}

fn policy_name(p: RestartPolicy) -> &'static str {
    match p {
        RestartPolicy::Never => "never",
        RestartPolicy::OnFailure => "on_failure",
        RestartPolicy::Always => "always",
    }
}

fn strategy_name(s: RestartStrategy) -> &'static str {
    match s {
        RestartStrategy::OneForOne => "one_for_one",
        RestartStrategy::OneForAll => "one_for_all",
        RestartStrategy::RestForOne => "rest_for_one",
    }
}

impl From<&SupervisionInfo> for JsSupervisionInfo {
    fn from(s: &SupervisionInfo) -> Self {
        JsSupervisionInfo {
            policy: policy_name(s.policy).to_owned(),
            strategy: strategy_name(s.strategy).to_owned(),
            restarts: s.restarts,
            recent_failures: s.recent_failures,
            failures_left: s.failures_left,
            next_attempt_in_ms: s.next_attempt_in.map(ms),
            attempt: s.attempt,
            gave_up: s.gave_up,
        }
    }
}

#[napi]
impl JsOrchestrator {
    /// Sets how `system`'s health is checked (`null` removes it); takes
    /// effect at once if it is Active. `PSO_NOT_FOUND`, `PSO_INVALID_ARGUMENT`.
    #[napi(ts_args_type = "system: string, check: HealthCheck | null")]
    pub fn set_health_check(
        &self,
        env: &Env,
        system: Unknown<'_>,
        check: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let system = js::string(env, system, "system")?;
            let check = match check {
                Some(c) => health_check(env, self.owner(), c, "check")?,
                None => None,
            };
            core.set_health_check(&system, check)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// Sets how `system` is supervised (`null` removes it; a system that had
    /// been given up on is supervised afresh). `PSO_NOT_FOUND`,
    /// `PSO_INVALID_ARGUMENT`.
    #[napi(ts_args_type = "system: string, supervision: SupervisionOptions | null")]
    pub fn set_supervision(
        &self,
        env: &Env,
        system: Unknown<'_>,
        supervision_: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let system = js::string(env, system, "system")?;
            let sup = match supervision_ {
                Some(s) => supervision(env, s, "supervision")?,
                None => None,
            };
            core.set_supervision(&system, sup)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// Tells `system`'s watchdog it is alive (restarts its deadline).
    /// `PSO_NOT_FOUND`.
    #[napi(ts_args_type = "system: string")]
    pub fn check_in(&self, env: &Env, system: Unknown<'_>) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let system = js::string(env, system, "system")?;
            core.check_in(&system).map_err(|e| error::registry(env, &e))
        })
    }

    /// Reports that the Active `system` crashed: it becomes Failed (its
    /// deactivate handler does not run), what requires it is stopped, and its
    /// supervision decides what comes next. `PSO_NOT_FOUND`;
    /// `PSO_INVALID_ARGUMENT` if it is not Active.
    #[napi(ts_args_type = "system: string, message: string")]
    pub fn report_failure(
        &self,
        env: &Env,
        system: Unknown<'_>,
        message: Unknown<'_>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let system = js::string(env, system, "system")?;
            let message = js::string(env, message, "message")?;
            core.report_failure(&system, &message)
                .map_err(|e| error::registry(env, &e))
        })
    }
}

/// Declares the TypeScript shapes of the `health` and `supervise` options.
#[napi(
    object,
    js_name = "HealthCheck",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsHealthCheck {
    /// Called with the system name every `intervalMs` while it is Active;
    /// returns (or resolves to) a report or a status. A throw, a rejection
    /// or no answer within `timeoutMs` is a failed probe.
    #[napi(
        ts_type = "(system: string) => HealthReport | HealthStatus | Promise<HealthReport | HealthStatus>"
    )]
    pub probe: Option<()>,
    /// How often the probe runs (default 10000).
    pub interval_ms: Option<f64>,
    /// How long a probe may take (default 5000).
    pub timeout_ms: Option<f64>,
    /// Failed probes in a row before it is Unhealthy (default 3).
    pub failures_before_unhealthy: Option<u32>,
    /// Good probes in a row before an Unhealthy system is Healthy (default 1).
    pub successes_before_healthy: Option<u32>,
    /// It must `checkIn` at least this often while Active.
    pub watchdog_ms: Option<f64>,
}

/// How a system is supervised: `supervise` of a system spec,
/// `setSupervision`.
#[napi(
    object,
    js_name = "SupervisionOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsSupervisionOptions {
    /// When it is restarted (default `'on_failure'`).
    #[napi(ts_type = "RestartPolicy")]
    pub policy: Option<String>,
    /// What is restarted with it (default `'one_for_one'`).
    #[napi(ts_type = "RestartStrategy")]
    pub strategy: Option<String>,
    /// First restart delay (default 100); doubles per attempt.
    pub backoff_ms: Option<f64>,
    /// Longest restart delay (default 30000).
    pub max_backoff_ms: Option<f64>,
    /// Randomize delays (equal jitter; default true).
    pub jitter: Option<bool>,
    /// Up this long, the backoff starts over (default 60000).
    pub reset_after_ms: Option<f64>,
    /// More failures than this within `withinMs` give up (default 5).
    pub max_restarts: Option<u32>,
    /// The restart-intensity window (default 60000).
    pub within_ms: Option<f64>,
}
