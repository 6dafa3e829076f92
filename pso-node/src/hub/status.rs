//! Hub and coordination status as plain JS objects (pso-core
//! `hub/status.rs`, `Orchestrator::coordination_status`). Times are JS
//! `Date`s and durations milliseconds, so these objects are built on the JS
//! thread.

use std::sync::atomic::{AtomicU64, Ordering};

use napi::{Env, JsDate};
use napi_derive::napi;
use pso_core::{
    CoordinationMode, CoordinationStatus, DirectOrigin, EdgeRate, IdleDeactivation, MeshStatus,
    ModeChange, PairStatus, SubscriptionStatus,
};

use crate::status::date;

/// One subscription's queue and counters (`hub.subscriptions()`,
/// `sub.status()`).
#[napi(object, js_name = "SubscriptionStatus", object_from_js = false)]
#[derive(Debug)]
pub struct JsSubscriptionStatus {
    /// Its id.
    pub id: f64,
    /// The pattern it listens to.
    pub pattern: String,
    /// Its queue group, if any.
    pub group: Option<String>,
    /// Its owning system, if any.
    pub owner: Option<String>,
    /// `'callback'` or `'pull'`.
    #[napi(ts_type = "'callback' | 'pull'")]
    pub kind: String,
    /// Messages queued now.
    pub queue_len: f64,
    /// Queue capacity.
    pub capacity: f64,
    /// Overflow policy.
    #[napi(ts_type = "Overflow")]
    pub overflow: String,
    /// With `'block'`: how long a publisher waits for room.
    pub block_timeout_ms: Option<f64>,
    /// Messages handed to the callback or to a reader.
    pub delivered: f64,
    /// Messages dropped or refused by the overflow policy.
    pub dropped: f64,
    /// Callback calls that threw or rejected.
    pub errors: f64,
    /// Whether it was unsubscribed.
    pub closed: bool,
}

/// Converts a core status; `errors` is the binding's count for a callback
/// subscription (pso-core sees its pull receiver).
pub(crate) fn subscription(
    s: SubscriptionStatus,
    errors: Option<&AtomicU64>,
) -> JsSubscriptionStatus {
    let block_timeout_ms = match s.policy {
        pso_core::Overflow::Block(d) => Some(d.as_secs_f64() * 1000.0),
        _ => None,
    };
    JsSubscriptionStatus {
        id: s.id.0 as f64,
        pattern: s.pattern,
        group: s.group,
        owner: s.owner,
        kind: if errors.is_some() { "callback" } else { s.kind }.to_owned(),
        queue_len: s.queue_len as f64,
        capacity: s.capacity as f64,
        overflow: super::overflow_name(&s.policy).to_owned(),
        block_timeout_ms,
        delivered: s.delivered as f64,
        dropped: s.dropped as f64,
        errors: (s.errors + s.panics + errors.map_or(0, |e| e.load(Ordering::Relaxed))) as f64,
        closed: s.closed,
    }
}

fn mode(m: CoordinationMode) -> String {
    match m {
        CoordinationMode::Direct => "direct",
        CoordinationMode::Mesh => "mesh",
        _ => "hierarchical",
    }
    .to_owned()
}

/// A pair with a direct channel.
#[napi(object, js_name = "PairStatus", object_from_js = false)]
pub struct JsPairStatus<'env> {
    /// One system (`a` < `b` by name).
    pub a: String,
    /// The other system.
    pub b: String,
    /// `'direct'` or `'mesh'`.
    #[napi(ts_type = "CoordinationMode")]
    pub mode: String,
    /// How the channel came to be.
    #[napi(ts_type = "'declared' | 'promoted' | 'mesh'")]
    pub origin: String,
    /// The reason recorded when it was opened.
    pub reason: String,
    /// When it was opened.
    pub since: JsDate<'env>,
    /// Messages sent `a -> b` on the channel.
    pub sent_ab: f64,
    /// Messages sent `b -> a`.
    pub sent_ba: f64,
    /// Messages waiting `a -> b`.
    pub queued_ab: f64,
    /// Messages waiting `b -> a`.
    pub queued_ba: f64,
    /// Whether each side's endpoint was taken (`[a, b]`).
    pub endpoints_taken: Vec<bool>,
    /// The mesh it belongs to, if any.
    pub mesh: Option<f64>,
}

/// A live mesh scope.
#[napi(object, js_name = "MeshStatus", object_from_js = false)]
pub struct JsMeshStatus<'env> {
    /// Its id.
    pub id: f64,
    /// Its systems.
    pub systems: Vec<String>,
    /// When it was opened.
    pub since: JsDate<'env>,
}

/// The measured message rate of one edge.
#[napi(object, js_name = "EdgeRate", object_from_js = false)]
#[derive(Debug)]
pub struct JsEdgeRate {
    /// The sending system.
    pub from: String,
    /// The receiving system.
    pub to: String,
    /// Messages per second (EWMA).
    pub rate: f64,
    /// Messages routed through the hub so far.
    pub routed: f64,
    /// Messages sent on direct channels so far.
    pub direct: f64,
    /// The pair's mode now.
    #[napi(ts_type = "CoordinationMode")]
    pub mode: String,
}

/// A recorded mode change of a pair.
#[napi(object, js_name = "ModeChange", object_from_js = false)]
pub struct JsModeChange<'env> {
    /// One system.
    pub a: String,
    /// The other.
    pub b: String,
    /// The mode before.
    #[napi(ts_type = "CoordinationMode")]
    pub from: String,
    /// The mode after.
    #[napi(ts_type = "CoordinationMode")]
    pub to: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: JsDate<'env>,
}

/// A system minimalist mode deactivated.
#[napi(object, js_name = "IdleDeactivation", object_from_js = false)]
pub struct JsIdleDeactivation<'env> {
    /// The system.
    pub system: String,
    /// How long it had been idle, in milliseconds.
    pub idle_ms: f64,
    /// When.
    pub at: JsDate<'env>,
}

/// An active system and how long it has been idle.
#[napi(object, js_name = "IdleSystem", object_from_js = false)]
#[derive(Debug)]
pub struct JsIdleSystem {
    /// The system.
    pub system: String,
    /// Milliseconds since it was last used (0 while a run uses it).
    pub idle_ms: f64,
}

/// Minimalist mode's settings and what it did.
#[napi(object, js_name = "MinimalistStatus", object_from_js = false)]
pub struct JsMinimalistStatus<'env> {
    /// The idle timeout, in milliseconds.
    pub idle_timeout_ms: f64,
    /// Pinned systems (never deactivated for being idle).
    pub pinned: Vec<String>,
    /// Active systems with how long each has been idle.
    pub idle: Vec<JsIdleSystem>,
    /// Recent deactivations for idleness, oldest first.
    pub deactivated: Vec<JsIdleDeactivation<'env>>,
}

/// `coordinationStatus()`.
#[napi(
    object,
    js_name = "CoordinationStatus",
    object_from_js = false,
    use_nullable = true
)]
pub struct JsCoordinationStatus<'env> {
    /// `'minimalist'` if an idle timeout is set, else `'mesh'` if a mesh is
    /// live, else `'direct'` if a pair has a channel, else `'hierarchical'`.
    #[napi(ts_type = "'hierarchical' | 'direct' | 'mesh' | 'minimalist'")]
    pub mode: String,
    /// Minimalist mode's settings, or `null` when it is off.
    pub minimalist: Option<JsMinimalistStatus<'env>>,
    /// How often pairs are checked for automatic promotion (ms), or `null`.
    pub auto_promote_every_ms: Option<f64>,
    /// Pairs with a direct channel.
    pub direct_pairs: Vec<JsPairStatus<'env>>,
    /// Live meshes.
    pub meshes: Vec<JsMeshStatus<'env>>,
    /// Measured rates per edge.
    pub edges: Vec<JsEdgeRate>,
    /// Recent mode changes, oldest first.
    pub changes: Vec<JsModeChange<'env>>,
    /// Number of subscriptions.
    pub subscriptions: f64,
}

fn pair<'e>(env: &'e Env, p: PairStatus) -> napi::Result<JsPairStatus<'e>> {
    Ok(JsPairStatus {
        since: date(env, p.since)?,
        a: p.a,
        b: p.b,
        mode: mode(p.mode),
        origin: match p.origin {
            DirectOrigin::Declared => "declared",
            DirectOrigin::Promoted => "promoted",
            _ => "mesh",
        }
        .to_owned(),
        reason: p.reason,
        sent_ab: p.sent_ab as f64,
        sent_ba: p.sent_ba as f64,
        queued_ab: p.queued_ab as f64,
        queued_ba: p.queued_ba as f64,
        endpoints_taken: p.endpoints_taken.to_vec(),
        mesh: p.mesh.map(|m| m as f64),
    })
}

fn mesh(env: &Env, m: MeshStatus) -> napi::Result<JsMeshStatus<'_>> {
    Ok(JsMeshStatus {
        id: m.id as f64,
        systems: m.systems,
        since: date(env, m.since)?,
    })
}

fn edge(e: EdgeRate) -> JsEdgeRate {
    JsEdgeRate {
        from: e.from,
        to: e.to,
        rate: e.rate,
        routed: e.routed as f64,
        direct: e.direct as f64,
        mode: mode(e.mode),
    }
}

fn change(env: &Env, c: ModeChange) -> napi::Result<JsModeChange<'_>> {
    Ok(JsModeChange {
        at: date(env, c.at)?,
        a: c.a,
        b: c.b,
        from: mode(c.from),
        to: mode(c.to),
        reason: c.reason,
    })
}

fn idle(env: &Env, d: IdleDeactivation) -> napi::Result<JsIdleDeactivation<'_>> {
    Ok(JsIdleDeactivation {
        at: date(env, d.at)?,
        system: d.system,
        idle_ms: d.idle_secs * 1000.0,
    })
}

/// Converts `coordination_status()`.
pub(crate) fn coordination(
    env: &Env,
    s: CoordinationStatus,
) -> napi::Result<JsCoordinationStatus<'_>> {
    let minimalist = match s.minimalist {
        Some(m) => Some(JsMinimalistStatus {
            idle_timeout_ms: m.idle_timeout.as_secs_f64() * 1000.0,
            pinned: m.pinned,
            idle: m
                .idle
                .into_iter()
                .map(|(system, secs)| JsIdleSystem {
                    system,
                    idle_ms: secs * 1000.0,
                })
                .collect(),
            deactivated: m
                .deactivated
                .into_iter()
                .map(|d| idle(env, d))
                .collect::<napi::Result<_>>()?,
        }),
        None => None,
    };
    Ok(JsCoordinationStatus {
        mode: s.mode.to_owned(),
        minimalist,
        auto_promote_every_ms: s.auto_promote_every.map(|d| d.as_secs_f64() * 1000.0),
        direct_pairs: s
            .direct_pairs
            .into_iter()
            .map(|p| pair(env, p))
            .collect::<napi::Result<_>>()?,
        meshes: s
            .meshes
            .into_iter()
            .map(|m| mesh(env, m))
            .collect::<napi::Result<_>>()?,
        edges: s.edges.into_iter().map(edge).collect(),
        changes: s
            .changes
            .into_iter()
            .map(|c| change(env, c))
            .collect::<napi::Result<_>>()?,
        subscriptions: s.subscriptions as f64,
    })
}

/// `Debug` for the structs that hold JS values (`Date`s), which do not
/// implement it: their plain fields only.
macro_rules! debug_plain {
    ($($ty:ident { $($field:ident),* }),* $(,)?) => {$(
        impl std::fmt::Debug for $ty<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    )*};
}

debug_plain!(
    JsPairStatus { a, b, mode, reason },
    JsMeshStatus { id, systems },
    JsModeChange {
        a,
        b,
        from,
        to,
        reason
    },
    JsIdleDeactivation { system, idle_ms },
    JsMinimalistStatus {
        idle_timeout_ms,
        pinned,
        idle,
        deactivated
    },
    JsCoordinationStatus {
        mode,
        minimalist,
        direct_pairs,
        meshes,
        edges,
        changes
    },
);
