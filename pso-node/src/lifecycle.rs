//! What lifecycle calls return, as plain JS objects (pso-core
//! `lifecycle/report.rs`): `ActivationReport`, `SystemOutcome` and `Plan`.
//! Durations are milliseconds (`elapsedMs`, `queuedMs`, `ranMs`).

use std::time::Duration;

use napi_derive::napi;
use pso_core::{ActivationReport, Plan, SystemOutcome};

/// What happened to one system in a lifecycle call.
#[napi(object, js_name = "SystemOutcome", use_nullable = true)]
#[derive(Debug)]
pub struct JsSystemOutcome {
    /// The system.
    pub system: String,
    /// What happened to it.
    #[napi(
        ts_type = "'activated' | 'deactivated' | 'already_active' | 'not_active' | 'failed' | 'timed_out' | 'blocked'"
    )]
    pub outcome: String,
    /// The failure message (failed, timed out, blocked), else `null`.
    pub error: Option<String>,
    /// Its level in the plan (0 runs first).
    pub level: u32,
    /// Milliseconds from being ready to its handler starting.
    pub queued_ms: f64,
    /// Milliseconds its handler ran.
    pub ran_ms: f64,
}

/// The result of `activateSystem`, `activateAll`, `deactivateSystem` and
/// `deactivateAll`. Also `err.report` of a `PSO_HANDLER_FAILED` error.
#[napi(object, js_name = "ActivationReport", use_nullable = true)]
#[derive(Debug)]
pub struct JsActivationReport {
    /// The system asked for (`"*"` for the `All` calls).
    pub target: String,
    /// `"activate"` or `"deactivate"`.
    #[napi(ts_type = "'activate' | 'deactivate'")]
    pub action: String,
    /// One entry per system touched, level by level.
    pub outcomes: Vec<JsSystemOutcome>,
    /// Wall time of the whole call, in milliseconds.
    pub elapsed_ms: f64,
    /// Systems activated by this call, in plan order.
    pub activated: Vec<String>,
    /// Systems deactivated by this call, in plan order.
    pub deactivated: Vec<String>,
    /// The outcomes that failed, timed out or were blocked.
    pub failures: Vec<JsSystemOutcome>,
}

/// What `activateSystem(target)` would do, computed without running anything.
#[napi(object, js_name = "Plan")]
#[derive(Debug)]
pub struct JsPlan {
    /// The system asked for.
    pub target: String,
    /// Systems to activate, level by level.
    pub levels: Vec<Vec<String>>,
    /// Systems of the closure that are already Active.
    pub already_active: Vec<String>,
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl From<&SystemOutcome> for JsSystemOutcome {
    fn from(o: &SystemOutcome) -> Self {
        JsSystemOutcome {
            system: o.system.clone(),
            outcome: o.outcome.name().to_owned(),
            error: o.error.clone(),
            level: u32::try_from(o.level).unwrap_or(u32::MAX),
            queued_ms: millis(o.queued),
            ran_ms: millis(o.ran),
        }
    }
}

impl From<&ActivationReport> for JsActivationReport {
    fn from(r: &ActivationReport) -> Self {
        JsActivationReport {
            target: r.target.clone(),
            action: r.action.name().to_owned(),
            outcomes: r.outcomes.iter().map(Into::into).collect(),
            elapsed_ms: millis(r.elapsed),
            activated: r.activated().into_iter().map(str::to_owned).collect(),
            deactivated: r.deactivated().into_iter().map(str::to_owned).collect(),
            failures: r.failures().into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Plan> for JsPlan {
    fn from(p: Plan) -> Self {
        JsPlan {
            target: p.target,
            levels: p.levels,
            already_active: p.already_active,
        }
    }
}
