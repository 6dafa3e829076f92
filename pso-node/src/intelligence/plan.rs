//! What `optimizationRecommendations()`, `optimizeCoordination()`,
//! `coordinationLog()` and `revertChange()` return (the `CoordinationAction`
//! union, told apart by `kind`), and `optimizeCoordination`'s options.

use napi::Env;
use napi::bindgen_prelude::{Either7, Unknown};
use napi_derive::napi;
use pso_core::{Action, Change, CoordinationPlan, Guardrails, Recommendation};

use crate::error;
use crate::model::js::{self, check_keys, get};

/// Give the pair a direct channel.
#[napi(object, js_name = "PromoteToDirectAction", object_from_js = false)]
#[derive(Debug)]
pub struct JsPromoteToDirect {
    /// `'promote_to_direct'`.
    #[napi(ts_type = "'promote_to_direct'")]
    pub kind: String,
    /// One system.
    pub a: String,
    /// The other.
    pub b: String,
}

/// Route the pair through the hub again.
#[napi(object, js_name = "DemoteDirectAction", object_from_js = false)]
#[derive(Debug)]
pub struct JsDemoteDirect {
    /// `'demote_direct'`.
    #[napi(ts_type = "'demote_direct'")]
    pub kind: String,
    /// One system.
    pub a: String,
    /// The other.
    pub b: String,
}

/// Change a system's limit on concurrently running workflow steps.
#[napi(
    object,
    js_name = "SetConcurrencyLimitAction",
    object_from_js = false,
    use_nullable = true
)]
#[derive(Debug)]
pub struct JsSetConcurrencyLimit {
    /// `'set_concurrency_limit'`.
    #[napi(ts_type = "'set_concurrency_limit'")]
    pub kind: String,
    /// The system.
    pub system: String,
    /// The limit before (`null`: none).
    pub from: Option<u32>,
    /// The limit after (`null`: none).
    pub to: Option<u32>,
}

/// Deactivate an idle system.
#[napi(object, js_name = "DeactivateIdleAction", object_from_js = false)]
#[derive(Debug)]
pub struct JsDeactivateIdle {
    /// `'deactivate_idle'`.
    #[napi(ts_type = "'deactivate_idle'")]
    pub kind: String,
    /// The system.
    pub system: String,
}

/// Activate systems usually used with an Active one.
#[napi(object, js_name = "PreActivateAction", object_from_js = false)]
#[derive(Debug)]
pub struct JsPreActivate {
    /// `'pre_activate'`.
    #[napi(ts_type = "'pre_activate'")]
    pub kind: String,
    /// The systems.
    pub systems: Vec<String>,
}

/// Order ready workflow steps differently.
#[napi(object, js_name = "SetSchedulingPolicyAction", object_from_js = false)]
#[derive(Debug)]
pub struct JsSetSchedulingPolicy {
    /// `'set_scheduling_policy'`.
    #[napi(ts_type = "'set_scheduling_policy'")]
    pub kind: String,
    /// The policy before.
    #[napi(ts_type = "SchedulingPolicy")]
    pub from: String,
    /// The policy after.
    #[napi(ts_type = "SchedulingPolicy")]
    pub to: String,
}

/// A kind of action this version of pso-node does not know yet.
#[napi(object, js_name = "OtherAction", object_from_js = false)]
#[derive(Debug)]
pub struct JsOtherAction {
    /// `'other'`.
    #[napi(ts_type = "'other'")]
    pub kind: String,
    /// What it is, in words.
    pub description: String,
}

pub(super) type JsAction = Either7<
    JsPromoteToDirect,
    JsDemoteDirect,
    JsSetConcurrencyLimit,
    JsDeactivateIdle,
    JsPreActivate,
    JsSetSchedulingPolicy,
    JsOtherAction,
>;

pub(super) fn action(a: &Action) -> JsAction {
    match a {
        Action::PromoteToDirect { a, b } => Either7::A(JsPromoteToDirect {
            kind: "promote_to_direct".into(),
            a: a.clone(),
            b: b.clone(),
        }),
        Action::DemoteDirect { a, b } => Either7::B(JsDemoteDirect {
            kind: "demote_direct".into(),
            a: a.clone(),
            b: b.clone(),
        }),
        Action::SetConcurrencyLimit { system, from, to } => Either7::C(JsSetConcurrencyLimit {
            kind: "set_concurrency_limit".into(),
            system: system.clone(),
            from: *from,
            to: *to,
        }),
        Action::DeactivateIdle { system } => Either7::D(JsDeactivateIdle {
            kind: "deactivate_idle".into(),
            system: system.clone(),
        }),
        Action::PreActivate { systems } => Either7::E(JsPreActivate {
            kind: "pre_activate".into(),
            systems: systems.clone(),
        }),
        Action::SetSchedulingPolicy { from, to } => Either7::F(JsSetSchedulingPolicy {
            kind: "set_scheduling_policy".into(),
            from: from.name().to_owned(),
            to: to.name().to_owned(),
        }),
        // pso-core may add kinds of action: show them rather than drop them.
        #[allow(unreachable_patterns)]
        other => Either7::G(JsOtherAction {
            kind: "other".into(),
            description: format!("{other:?}"),
        }),
    }
}

/// A suggested change, with its evidence.
#[napi(object, js_name = "Recommendation", object_from_js = false)]
#[derive(Debug)]
pub struct JsRecommendation {
    /// What it applies to (a pair `a<->b`, a system, `scheduling`).
    pub target: String,
    /// The change.
    #[napi(ts_type = "CoordinationAction")]
    pub action: JsAction,
    /// The numbers behind it.
    pub evidence: String,
    /// What it should gain, in words and numbers.
    pub expected_gain: String,
    /// 0..1: how sure (from sample counts and effect size).
    pub confidence: f64,
    /// Samples the evidence rests on.
    pub samples: f64,
}

/// A recommendation held back by the guardrails, and why.
#[napi(object, js_name = "SkippedRecommendation", object_from_js = false)]
#[derive(Debug)]
pub struct JsSkipped {
    /// The recommendation.
    pub recommendation: JsRecommendation,
    /// Why it was not applied ("3 samples, fewer than 20").
    pub why: String,
}

/// A change PSO made to its coordination (undo it with `revertChange(id)`).
#[napi(
    object,
    js_name = "CoordinationChange",
    object_from_js = false,
    use_nullable = true
)]
#[derive(Debug)]
pub struct JsChange {
    /// Its id in the log.
    pub id: f64,
    /// What was done.
    #[napi(ts_type = "CoordinationAction")]
    pub action: JsAction,
    /// Why (the recommendation's evidence, or the trial's result).
    pub reason: String,
    /// Whether it has been reverted.
    pub reverted: bool,
    /// Why it failed to apply, if it did.
    pub error: Option<String>,
}

/// What `optimizeCoordination()` planned and, with `apply`, did.
#[napi(object, js_name = "CoordinationPlan", object_from_js = false)]
#[derive(Debug)]
pub struct JsCoordinationPlan {
    /// Recommendations that pass the guardrails (carried out if `applied`).
    pub actions: Vec<JsRecommendation>,
    /// Recommendations held back, with why.
    pub skipped: Vec<JsSkipped>,
    /// Whether the actions were carried out.
    pub applied: bool,
    /// The changes made, in order (ids for `revertChange`).
    pub changes: Vec<JsChange>,
}

/// Declares `optimizeCoordination`'s options.
#[napi(
    object,
    js_name = "OptimizeOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsOptimizeOptions {
    /// Carry out the actions that pass the guardrails (default false: plan only).
    pub apply: Option<bool>,
    /// Samples a recommendation needs (default 20).
    pub min_samples: Option<f64>,
    /// Confidence a recommendation needs, 0..1 (default 0.6).
    pub min_confidence: Option<f64>,
    /// How long a system must be unused before deactivating it is suggested
    /// (default: minimalist mode's idle timeout, else 300000).
    pub idle_after_ms: Option<f64>,
}

pub(super) fn recommendation(r: &Recommendation) -> JsRecommendation {
    JsRecommendation {
        target: r.target.clone(),
        action: action(&r.action),
        evidence: r.evidence.clone(),
        expected_gain: r.expected_gain.clone(),
        confidence: r.confidence,
        samples: r.samples as f64,
    }
}

pub(super) fn change(c: &Change) -> JsChange {
    JsChange {
        id: c.id as f64,
        action: action(&c.action),
        reason: c.reason.clone(),
        reverted: c.reverted,
        error: c.error.clone(),
    }
}

pub(super) fn plan(p: &CoordinationPlan) -> JsCoordinationPlan {
    JsCoordinationPlan {
        actions: p.actions.iter().map(recommendation).collect(),
        skipped: p
            .skipped
            .iter()
            .map(|(r, why)| JsSkipped {
                recommendation: recommendation(r),
                why: why.clone(),
            })
            .collect(),
        applied: p.applied,
        changes: p.changes.iter().map(change).collect(),
    }
}

pub(super) const OPTIMIZE_KEYS: [&str; 4] = ["apply", "minSamples", "minConfidence", "idleAfterMs"];

/// Reads `optimizeCoordination`'s options.
pub(super) fn optimize_options(
    env: &Env,
    v: Option<Unknown<'_>>,
) -> napi::Result<(bool, Guardrails)> {
    let mut g = Guardrails::new();
    let Some(obj) = js::opt_object(env, v, "options")? else {
        return Ok((false, g));
    };
    check_keys(env, &obj, &OPTIMIZE_KEYS, "optimizeCoordination options")?;
    let apply = js::opt_bool(env, get(&obj, "apply")?, "options.apply")?.unwrap_or(false);
    if let Some(n) = js::opt_number(env, get(&obj, "minSamples")?, "options.minSamples")? {
        g = g.min_samples(js::count(env, n, "options.minSamples")?);
    }
    if let Some(c) = js::opt_number(env, get(&obj, "minConfidence")?, "options.minConfidence")? {
        if !(0.0..=1.0).contains(&c) {
            return Err(error::invalid(
                env,
                format!("options.minConfidence must be from 0 to 1, got {c}"),
            ));
        }
        g = g.min_confidence(c);
    }
    if let Some(d) = js::duration_ms(env, get(&obj, "idleAfterMs")?, "options.idleAfterMs", false)?
    {
        g = g.idle_after(d);
    }
    Ok((apply, g))
}
