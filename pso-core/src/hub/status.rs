//! Hub status data, and the message-rate measurement per edge.
//!
//! An *edge* is (sender system, receiving system). A publish that names its
//! sender counts one message on the edge to the owner of each subscription
//! it is queued for (`routed`, a shared atomic); a direct channel counts its
//! sends on the edge of its direction (`direct`, written only by that
//! direction's single producer, so a plain load + store). Rates are an EWMA
//! of messages per second, updated when sampled ([`Edges::sample`]) with a
//! weight that depends on the time since the previous sample
//! (`alpha = 1 - exp(-dt / window)`), so irregular sampling is fine. The hub
//! samples whenever status or promotion candidates are asked for; the
//! orchestrator may also sample periodically.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant, SystemTime};

use crossbeam_utils::CachePadded;
use serde::Serialize;

use super::deliver::SubscriptionId;
use super::queue::Overflow;
use crate::metrics::hub::EdgeSeries;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, RwLock};

type Map<K, V> = foldhash::HashMap<K, V>;

/// Serializes a `SystemTime` as RFC 3339 text.
fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

/// Counters and rate estimate of one edge.
#[derive(Debug)]
pub(crate) struct EdgeStats {
    routed: CachePadded<AtomicU64>,
    direct: CachePadded<AtomicU64>,
    sample: Mutex<Sample>,
    /// Metrics (counted only while they are on; resettable).
    pub(crate) series: EdgeSeries,
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    total: u64,
    rate: f64,
}

impl EdgeStats {
    fn new(now: Instant) -> Self {
        EdgeStats {
            routed: CachePadded::new(AtomicU64::new(0)),
            direct: CachePadded::new(AtomicU64::new(0)),
            sample: Mutex::new(Sample {
                at: now,
                total: 0,
                rate: 0.0,
            }),
            series: EdgeSeries::default(),
        }
    }

    /// One message routed through the hub on this edge.
    #[inline]
    pub(crate) fn count_routed(&self) {
        self.routed.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` messages sent on a direct channel of this edge. Only the single
    /// producer of that direction calls this, so load + store is enough (a
    /// transient second producer around a close/reopen could lose a count,
    /// which only skews a statistic).
    #[inline]
    pub(crate) fn count_direct(&self, n: u64) {
        let v = self.direct.load(Ordering::Relaxed);
        self.direct.store(v + n, Ordering::Relaxed);
    }

    fn totals(&self) -> (u64, u64) {
        (
            self.routed.load(Ordering::Relaxed),
            self.direct.load(Ordering::Relaxed),
        )
    }

    /// Updates and returns the EWMA rate (messages/s).
    fn sample(&self, now: Instant, window: Duration) -> f64 {
        let (r, d) = self.totals();
        let total = r + d;
        let mut s = self.sample.lock();
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        if dt >= 0.001 {
            let inst = total.saturating_sub(s.total) as f64 / dt;
            let alpha = 1.0 - (-dt / window.as_secs_f64().max(1e-3)).exp();
            s.rate += alpha * (inst - s.rate);
            s.at = now;
            s.total = total;
        }
        s.rate
    }
}

/// Every edge seen so far, by (sender id, receiver id).
#[derive(Debug, Default)]
pub(crate) struct Edges {
    map: RwLock<Map<(u32, u32), Arc<EdgeStats>>>,
}

impl Edges {
    /// The stats of edge `from -> to`, created on first use.
    pub(crate) fn edge(&self, from: u32, to: u32) -> Arc<EdgeStats> {
        if let Some(e) = self.map.read().get(&(from, to)) {
            return e.clone();
        }
        self.map
            .write()
            .entry((from, to))
            .or_insert_with(|| Arc::new(EdgeStats::new(Instant::now())))
            .clone()
    }

    /// Every edge: `(from, to, stats)`.
    pub(crate) fn all(&self) -> Vec<(u32, u32, Arc<EdgeStats>)> {
        self.map
            .read()
            .iter()
            .map(|(k, v)| (k.0, k.1, v.clone()))
            .collect()
    }

    /// Samples every edge: `(from, to, rate, routed, direct)`.
    pub(crate) fn sample(&self, window: Duration) -> Vec<(u32, u32, f64, u64, u64)> {
        let now = Instant::now();
        let edges: Vec<((u32, u32), Arc<EdgeStats>)> = self
            .map
            .read()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut out: Vec<_> = edges
            .into_iter()
            .map(|((f, t), e)| {
                let rate = e.sample(now, window);
                let (r, d) = e.totals();
                (f, t, rate, r, d)
            })
            .collect();
        out.sort_by_key(|x| (x.0, x.1));
        out
    }
}

/// The coordination mode of a pair of systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CoordinationMode {
    /// Messages go through the hub router (the default).
    Hierarchical,
    /// The pair has its own direct channel (declared or promoted).
    Direct,
    /// The pair has a direct channel because both are in a mesh scope.
    Mesh,
}

/// Why a pair has a direct channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DirectOrigin {
    /// Declared with [`Hub::open_direct`](super::Hub::open_direct).
    Declared,
    /// Promoted with [`Hub::promote`](super::Hub::promote) (by hand or by the
    /// orchestrator's automatic promotion).
    Promoted,
    /// Created by a mesh scope.
    Mesh,
}

/// One pair with a direct channel.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PairStatus {
    /// One system (the pair is unordered; `a` < `b` by name).
    pub a: String,
    /// The other system.
    pub b: String,
    /// Its mode: `direct` or `mesh`.
    pub mode: CoordinationMode,
    /// How the channel came to be.
    pub origin: DirectOrigin,
    /// The reason recorded when it was opened.
    pub reason: String,
    /// When it was opened.
    #[serde(serialize_with = "ser_time")]
    pub since: SystemTime,
    /// Messages sent `a -> b` on the channel.
    pub sent_ab: u64,
    /// Messages sent `b -> a` on the channel.
    pub sent_ba: u64,
    /// Messages waiting `a -> b`.
    pub queued_ab: usize,
    /// Messages waiting `b -> a`.
    pub queued_ba: usize,
    /// Whether each side's endpoint was taken (`[a, b]`).
    pub endpoints_taken: [bool; 2],
    /// The mesh it belongs to, if any.
    pub mesh: Option<u64>,
}

/// A live mesh scope.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MeshStatus {
    /// Its id.
    pub id: u64,
    /// Its systems.
    pub systems: Vec<String>,
    /// When it was opened.
    #[serde(serialize_with = "ser_time")]
    pub since: SystemTime,
}

/// The measured message rate of one edge.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EdgeRate {
    /// The sending system.
    pub from: String,
    /// The receiving system (owner of the subscription, or direct peer).
    pub to: String,
    /// EWMA of messages per second.
    pub rate: f64,
    /// Messages routed through the hub so far.
    pub routed: u64,
    /// Messages sent on direct channels so far.
    pub direct: u64,
    /// The pair's current mode.
    pub mode: CoordinationMode,
}

/// A recorded mode change of a pair (promotion, demotion, open, close).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ModeChange {
    /// One system.
    pub a: String,
    /// The other.
    pub b: String,
    /// The mode before.
    pub from: CoordinationMode,
    /// The mode after.
    pub to: CoordinationMode,
    /// Why.
    pub reason: String,
    /// When.
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
}

/// What [`Hub::promotion_candidates`](super::Hub::promotion_candidates)
/// suggests for a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PairAction {
    /// Give the pair a direct channel.
    Promote,
    /// Close the promoted channel; route through the hub again.
    Demote,
}

/// A pair whose measured rate crossed a threshold.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Candidate {
    /// One system.
    pub a: String,
    /// The other.
    pub b: String,
    /// Promote or demote.
    pub action: PairAction,
    /// Combined rate of both directions (messages/s, EWMA).
    pub rate: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// A readable reason, suitable for [`Hub::promote`](super::Hub::promote).
    pub reason: String,
}

/// The hub's coordination state: modes, direct pairs, meshes, edge rates
/// and the recent mode changes.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CoordinationStatus {
    /// The most specific mode in use: `minimalist` (an idle timeout is set),
    /// else `mesh` (a mesh is live), else `direct` (some pair has a direct
    /// channel), else `hierarchical`. Several can be in use at once; the
    /// fields below say which.
    pub mode: &'static str,
    /// Minimalist mode's settings and what it did, if it is on.
    pub minimalist: Option<MinimalistStatus>,
    /// How often pairs are checked for automatic promotion/demotion, if at all.
    #[serde(serialize_with = "ser_opt_secs")]
    pub auto_promote_every: Option<std::time::Duration>,
    /// Pairs with a direct channel (every other pair is hierarchical).
    pub direct_pairs: Vec<PairStatus>,
    /// Live meshes.
    pub meshes: Vec<MeshStatus>,
    /// Measured rates per edge, with each pair's mode.
    pub edges: Vec<EdgeRate>,
    /// Recent mode changes, oldest first (bounded).
    pub changes: Vec<ModeChange>,
    /// Number of subscriptions.
    pub subscriptions: usize,
}

impl CoordinationStatus {
    /// The current mode of the pair `{a, b}`.
    pub fn mode(&self, a: &str, b: &str) -> CoordinationMode {
        self.direct_pairs
            .iter()
            .find(|p| (p.a == a && p.b == b) || (p.a == b && p.b == a))
            .map_or(CoordinationMode::Hierarchical, |p| p.mode)
    }
}

/// Minimalist mode: systems are deactivated when idle longer than
/// `idle_timeout`, unless pinned.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MinimalistStatus {
    /// The idle timeout.
    #[serde(serialize_with = "ser_secs")]
    pub idle_timeout: std::time::Duration,
    /// Pinned systems (never deactivated for being idle).
    pub pinned: Vec<String>,
    /// Active systems with how long each has been idle (zero while a run
    /// uses it), in registration order.
    pub idle: Vec<(String, f64)>,
    /// Recent deactivations for idleness, oldest first (bounded).
    pub deactivated: Vec<IdleDeactivation>,
}

/// A system minimalist mode deactivated.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct IdleDeactivation {
    /// The system.
    pub system: String,
    /// How long it had been idle, seconds.
    pub idle_secs: f64,
    /// When.
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
}

fn ser_secs<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_opt_secs<S: serde::Serializer>(
    d: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl CoordinationStatus {
    /// The status as JSON (durations in seconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("status serializes")
    }
}

/// One subscription's queue and counters.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SubscriptionStatus {
    /// Its id.
    pub id: SubscriptionId,
    /// The pattern it listens to.
    pub pattern: String,
    /// Its queue group, if any.
    pub group: Option<String>,
    /// Its owning system, if any.
    pub owner: Option<String>,
    /// `callback` or `pull`.
    pub kind: &'static str,
    /// Messages queued now.
    pub queue_len: usize,
    /// Queue capacity.
    pub capacity: usize,
    /// Overflow policy.
    pub policy: Overflow,
    /// Messages handed to the callback (that returned) or to a receiver.
    pub delivered: u64,
    /// Messages dropped or refused by the overflow policy.
    pub dropped: u64,
    /// Callback invocations that panicked.
    pub panics: u64,
    /// Callback invocations that returned an error.
    pub errors: u64,
    /// Whether it was unsubscribed.
    pub closed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_follows_the_rate() {
        let e = EdgeStats::new(Instant::now() - Duration::from_secs(1));
        for _ in 0..1000 {
            e.count_routed();
        }
        e.count_direct(1000);
        let now = Instant::now();
        let r = e.sample(now, Duration::from_millis(1));
        // With a tiny window the EWMA is the instantaneous rate, ~2000/s.
        assert!(r > 1000.0 && r < 2100.0, "{r}");
        assert_eq!(e.totals(), (1000, 1000));
        // No messages for a while: the rate decays towards 0.
        let r2 = e.sample(now + Duration::from_secs(1), Duration::from_millis(1));
        assert!(r2 < 1.0, "{r2}");
    }

    #[test]
    fn edges_are_shared() {
        let edges = Edges::default();
        let a = edges.edge(1, 2);
        a.count_routed();
        edges.edge(1, 2).count_routed();
        edges.edge(2, 1);
        let s = edges.sample(Duration::from_secs(1));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].0, s[0].1, s[0].3), (1, 2, 2));
    }
}
