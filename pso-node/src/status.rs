//! Per-system status snapshots as plain JS objects (pso-core `status.rs` and
//! `lifecycle/state.rs`). Times are JS `Date`s, so these objects are built on
//! the JS thread and borrow its environment.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use napi::Env;
use napi::JsDate;
use napi_derive::napi;
use pso_core::{SystemStatus, Transition};

use crate::supervision::{JsHealthInfo, JsSupervisionInfo};

/// One recorded state change.
#[napi(object, js_name = "Transition", object_from_js = false)]
pub struct JsTransition<'env> {
    /// The state before.
    #[napi(
        ts_type = "'Registered' | 'Activating' | 'Active' | 'Deactivating' | 'Inactive' | 'Failed' | 'GaveUp'"
    )]
    pub from: String,
    /// The state after.
    #[napi(
        ts_type = "'Registered' | 'Activating' | 'Active' | 'Deactivating' | 'Inactive' | 'Failed' | 'GaveUp'"
    )]
    pub to: String,
    /// Why it happened.
    pub reason: String,
    /// When it happened.
    pub at: JsDate<'env>,
}

/// A snapshot of one system: state, why, and its relations.
#[napi(
    object,
    js_name = "SystemStatus",
    object_from_js = false,
    use_nullable = true
)]
pub struct JsSystemStatus<'env> {
    /// The system's name.
    pub name: String,
    /// Current lifecycle state.
    #[napi(
        ts_type = "'Registered' | 'Activating' | 'Active' | 'Deactivating' | 'Inactive' | 'Failed' | 'GaveUp'"
    )]
    pub state: String,
    /// When it entered that state.
    pub since: JsDate<'env>,
    /// The reason recorded with the last transition.
    pub reason: String,
    /// The last failure (handler error, timeout, or why it was not activated).
    pub last_error: Option<String>,
    /// Tier, if set.
    pub tier: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Priority class.
    #[napi(ts_type = "'critical' | 'high' | 'normal' | 'low' | 'background'")]
    pub priority: String,
    /// Declared resource request per dimension.
    pub resources: BTreeMap<String, f64>,
    /// Systems it requires.
    pub requires: Vec<String>,
    /// Systems it wants.
    pub wants: Vec<String>,
    /// Systems it starts after.
    pub after: Vec<String>,
    /// Systems it conflicts with (either direction).
    pub conflicts: Vec<String>,
    /// Systems it interacts with (either direction).
    pub interacts: Vec<String>,
    /// Systems that require it.
    pub required_by: Vec<String>,
    /// Whether an activate handler is set.
    pub has_activate_handler: bool,
    /// Whether a deactivate handler is set.
    pub has_deactivate_handler: bool,
    /// Recent transitions, oldest first (bounded).
    pub history: Vec<JsTransition<'env>>,
    /// What its leases hold now, per dimension (see `resourceStatus()`).
    pub resources_held: BTreeMap<String, f64>,
    /// Limit on its concurrently running workflow steps, if any.
    pub concurrency: Option<u32>,
    /// Its health, if it has a health check.
    #[napi(ts_type = "HealthInfo | null")]
    pub health: Option<JsHealthInfo>,
    /// Its supervision, if supervised: restarts, the next attempt, how many
    /// more failures before it gives up.
    #[napi(ts_type = "SupervisionInfo | null")]
    pub supervision: Option<JsSupervisionInfo>,
}

impl std::fmt::Debug for JsTransition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transition")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JsSystemStatus<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemStatus")
            .field("name", &self.name)
            .field("state", &self.state)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

pub(crate) fn date(env: &Env, t: SystemTime) -> napi::Result<JsDate<'_>> {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(before) => -(before.duration().as_secs_f64() * 1000.0),
    };
    env.create_date(ms.trunc())
}

fn transition<'e>(env: &'e Env, t: &Transition) -> napi::Result<JsTransition<'e>> {
    Ok(JsTransition {
        from: t.from.name().to_owned(),
        to: t.to.name().to_owned(),
        reason: t.reason.clone(),
        at: date(env, t.at)?,
    })
}

/// Converts a pso-core status (on the JS thread).
pub(crate) fn status(env: &Env, s: SystemStatus) -> napi::Result<JsSystemStatus<'_>> {
    Ok(JsSystemStatus {
        state: s.state.name().to_owned(),
        since: date(env, s.since)?,
        history: s
            .history
            .iter()
            .map(|t| transition(env, t))
            .collect::<napi::Result<_>>()?,
        name: s.name,
        reason: s.reason,
        last_error: s.last_error,
        tier: s.tier,
        tags: s.tags,
        priority: s.priority.name().to_owned(),
        resources: s
            .resources
            .into_iter()
            .map(|(k, v)| (k, v as f64))
            .collect(),
        requires: s.requires,
        wants: s.wants,
        after: s.after,
        conflicts: s.conflicts,
        interacts: s.interacts,
        required_by: s.required_by,
        has_activate_handler: s.has_activate_handler,
        has_deactivate_handler: s.has_deactivate_handler,
        resources_held: s
            .resources_held
            .into_iter()
            .map(|(k, v)| (k, v as f64))
            .collect(),
        concurrency: s.concurrency,
        health: s.health.as_ref().map(JsHealthInfo::from),
        supervision: s.supervision.as_ref().map(JsSupervisionInfo::from),
    })
}
