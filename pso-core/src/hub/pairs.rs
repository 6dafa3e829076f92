//! The hub's registry of direct pairs: declaring, promoting, demoting and
//! closing them, handing out their ends, mesh scopes, and promotion
//! candidates from the measured edge rates.
//!
//! # Invariants
//! * At most one open channel per unordered pair; the registry key is the
//!   pair of interned ids ordered by name.
//! * The registry (one mutex in the hub) is never held while user code runs;
//!   ends removed from it are dropped after the unlock.
//! * A closed pair leaves the registry at the next registry operation
//!   (`prune`), which records the mode change with the close reason; status
//!   never shows a closed pair.
//! * A mesh owns only the pairs it opened; closing it closes exactly those.

#![forbid(unsafe_code)]

use std::fmt;
use std::time::SystemTime;

use super::direct::{DirectEnd, PairShared};
use super::status::{
    Candidate, CoordinationMode, DirectOrigin, MeshStatus, ModeChange, PairAction, PairStatus,
};
use super::{Hub, HubError, HubInner, Map};
use crate::sync::Arc;

/// A pair's registry key (ids ordered by name) and its names.
type PairKey = ((u32, u32), [Arc<str>; 2]);

/// Mode changes kept for status.
const CHANGES_KEPT: usize = 256;

/// The hub's record of a pair with a channel.
#[derive(Debug)]
struct PairRecord {
    /// Names with `names[0] < names[1]`.
    names: [Arc<str>; 2],
    origin: DirectOrigin,
    mesh: Option<u64>,
    reason: String,
    since: SystemTime,
    shared: Arc<PairShared>,
    /// Ends not yet taken, `[a, b]`.
    ends: [Option<DirectEnd>; 2],
}

impl PairRecord {
    fn mode(&self) -> CoordinationMode {
        match self.origin {
            DirectOrigin::Mesh => CoordinationMode::Mesh,
            _ => CoordinationMode::Direct,
        }
    }
}

#[derive(Debug)]
struct MeshRecord {
    systems: Vec<Arc<str>>,
    since: SystemTime,
}

/// Every pair with a direct channel, the live meshes and the recent mode
/// changes. Guarded by one mutex in the hub; never held while user code runs.
#[derive(Debug, Default)]
pub(crate) struct Pairs {
    map: Map<(u32, u32), PairRecord>,
    meshes: Map<u64, MeshRecord>,
    changes: std::collections::VecDeque<ModeChange>,
    next_mesh: u64,
}

impl Pairs {
    fn record(
        &mut self,
        names: &[Arc<str>; 2],
        from: CoordinationMode,
        to: CoordinationMode,
        reason: &str,
    ) {
        if self.changes.len() == CHANGES_KEPT {
            self.changes.pop_front();
        }
        self.changes.push_back(ModeChange {
            a: names[0].to_string(),
            b: names[1].to_string(),
            from,
            to,
            reason: reason.to_owned(),
            at: SystemTime::now(),
        });
    }

    /// Drops records of closed pairs (recording why); returns their untaken
    /// ends for the caller to drop after the unlock.
    fn prune(&mut self) -> Vec<DirectEnd> {
        let closed: Vec<(u32, u32)> = self
            .map
            .iter()
            .filter(|(_, r)| r.shared.is_closed())
            .map(|(k, _)| *k)
            .collect();
        let mut ends = Vec::new();
        for k in closed {
            let mut r = self.map.remove(&k).expect("key just seen");
            let reason = r.shared.close_reason().unwrap_or_default();
            self.record(&r.names, r.mode(), CoordinationMode::Hierarchical, &reason);
            ends.extend(r.ends.iter_mut().filter_map(Option::take));
        }
        ends
    }

    fn status(&self) -> (Vec<PairStatus>, Vec<MeshStatus>, Vec<ModeChange>) {
        let mut pairs: Vec<PairStatus> = self
            .map
            .values()
            .filter(|r| !r.shared.is_closed())
            .map(|r| PairStatus {
                a: r.names[0].to_string(),
                b: r.names[1].to_string(),
                mode: r.mode(),
                origin: r.origin,
                reason: r.reason.clone(),
                since: r.since,
                sent_ab: r.shared.sent(0),
                sent_ba: r.shared.sent(1),
                queued_ab: r.shared.queued(0),
                queued_ba: r.shared.queued(1),
                endpoints_taken: [r.ends[0].is_none(), r.ends[1].is_none()],
                mesh: r.mesh,
            })
            .collect();
        pairs.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
        let mut meshes: Vec<MeshStatus> = self
            .meshes
            .iter()
            .map(|(id, m)| MeshStatus {
                id: *id,
                systems: m.systems.iter().map(|s| s.to_string()).collect(),
                since: m.since,
            })
            .collect();
        meshes.sort_by_key(|m| m.id);
        (pairs, meshes, self.changes.iter().cloned().collect())
    }

    pub(crate) fn mode_of(&self, key: (u32, u32)) -> CoordinationMode {
        self.map
            .get(&key)
            .filter(|r| !r.shared.is_closed())
            .map_or(CoordinationMode::Hierarchical, PairRecord::mode)
    }

    /// Closes every pair; returns the untaken ends.
    pub(crate) fn close_all(&mut self, reason: &str) -> Vec<DirectEnd> {
        for r in self.map.values() {
            r.shared.close(reason);
        }
        self.meshes.clear();
        self.prune()
    }
}

/// A mesh scope: while it lives, every pair of its systems has a direct
/// channel. Dropping (or [`Mesh::close`]) closes the channels it opened and
/// routing between those pairs reverts to the hub; pairs that already had a
/// channel before the mesh keep it.
#[must_use = "dropping a Mesh closes its channels"]
pub struct Mesh {
    hub: Arc<HubInner>,
    id: u64,
    systems: Vec<String>,
    owned: Vec<(u32, u32)>,
    open: bool,
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("id", &self.id)
            .field("systems", &self.systems)
            .finish()
    }
}

impl Mesh {
    /// Its id (as in [`MeshStatus::id`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its systems.
    pub fn systems(&self) -> &[String] {
        &self.systems
    }

    /// Takes `me`'s end of the channel to `peer` (see [`Hub::endpoint`]).
    ///
    /// # Errors
    /// As [`Hub::endpoint`].
    pub fn endpoint(&self, me: &str, peer: &str) -> Result<DirectEnd, HubError> {
        self.hub.endpoint(me, peer)
    }

    /// Closes the scope now.
    pub fn close(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if !std::mem::replace(&mut self.open, false) {
            return;
        }
        let reason = format!("mesh {} closed", self.id);
        let ends = {
            let mut pairs = self.hub.pairs.lock();
            for k in &self.owned {
                if let Some(r) = pairs.map.get(k) {
                    r.shared.close(&reason);
                }
            }
            pairs.meshes.remove(&self.id);
            pairs.prune()
        };
        drop(ends);
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.end();
    }
}

impl HubInner {
    /// The ordered key and names of `{x, y}`.
    fn pair_key(&self, x: &str, y: &str) -> Result<PairKey, HubError> {
        if x.is_empty() || y.is_empty() || x == y {
            return Err(HubError::InvalidArgument {
                message: format!(
                    "a direct pair needs two different system names, got '{x}' and '{y}'"
                ),
            });
        }
        let (a, b) = if x < y { (x, y) } else { (y, x) };
        let (ia, na) = self.intern(a);
        let (ib, nb) = self.intern(b);
        Ok(((ia, ib), [na, nb]))
    }

    fn open_pair(
        &self,
        pairs: &mut Pairs,
        key: (u32, u32),
        names: [Arc<str>; 2],
        origin: DirectOrigin,
        mesh: Option<u64>,
        reason: &str,
    ) {
        let (shared, end_a, end_b) = super::direct::channel(
            &names,
            [self.edges.edge(key.0, key.1), self.edges.edge(key.1, key.0)],
            self.config.direct_capacity,
        );
        let to = if origin == DirectOrigin::Mesh {
            CoordinationMode::Mesh
        } else {
            CoordinationMode::Direct
        };
        pairs.record(&names, CoordinationMode::Hierarchical, to, reason);
        pairs.map.insert(
            key,
            PairRecord {
                names,
                origin,
                mesh,
                reason: reason.to_owned(),
                since: SystemTime::now(),
                shared,
                ends: [Some(end_a), Some(end_b)],
            },
        );
    }

    fn open_direct(
        &self,
        x: &str,
        y: &str,
        origin: DirectOrigin,
        reason: &str,
    ) -> Result<(), HubError> {
        self.check_open()?;
        let (key, names) = self.pair_key(x, y)?;
        let mut pairs = self.pairs.lock();
        let stale = pairs.prune();
        if let Some(r) = pairs.map.get(&key) {
            let e = HubError::AlreadyExists {
                what: format!(
                    "direct channel {}<->{} ({:?}: {})",
                    r.names[0], r.names[1], r.origin, r.reason
                ),
            };
            drop(pairs);
            drop(stale);
            return Err(e);
        }
        self.open_pair(&mut pairs, key, names, origin, None, reason);
        drop(pairs);
        drop(stale);
        Ok(())
    }

    fn close_pair(&self, x: &str, y: &str, reason: &str, allow_mesh: bool) -> Result<(), HubError> {
        let (key, names) = self.pair_key(x, y)?;
        let mut pairs = self.pairs.lock();
        let stale = pairs.prune();
        let r = match pairs.map.get(&key) {
            None => {
                drop(pairs);
                drop(stale);
                return Err(HubError::NotFound {
                    what: format!("direct channel {}<->{}", names[0], names[1]),
                });
            }
            Some(r) => r,
        };
        if !allow_mesh && r.origin == DirectOrigin::Mesh {
            let e = HubError::InvalidArgument {
                message: format!(
                    "direct channel {}<->{} belongs to mesh {}; close the mesh instead",
                    names[0],
                    names[1],
                    r.mesh.unwrap_or(0)
                ),
            };
            drop(pairs);
            drop(stale);
            return Err(e);
        }
        r.shared.close(reason);
        let ends = pairs.prune();
        drop(pairs);
        drop(stale);
        drop(ends);
        Ok(())
    }

    pub(crate) fn endpoint(&self, me: &str, peer: &str) -> Result<DirectEnd, HubError> {
        let (key, names) = self.pair_key(me, peer)?;
        let side = usize::from(*names[1] == *me);
        let mut pairs = self.pairs.lock();
        let stale = pairs.prune();
        let r = match pairs.map.get_mut(&key) {
            Some(r) => r,
            None => {
                drop(pairs);
                drop(stale);
                return Err(HubError::NotFound {
                    what: format!("direct channel {me}<->{peer}"),
                });
            }
        };
        let end = r.ends[side].take();
        drop(pairs);
        drop(stale);
        end.ok_or_else(|| HubError::AlreadyExists {
            what: format!("the endpoint of {me} on direct channel {me}<->{peer} (already taken)"),
        })
    }

    pub(crate) fn pairs_status(&self) -> (Vec<PairStatus>, Vec<MeshStatus>, Vec<ModeChange>) {
        let mut pairs = self.pairs.lock();
        let stale = pairs.prune();
        let s = pairs.status();
        drop(pairs);
        drop(stale);
        s
    }
}

impl Hub {
    /// Declares a direct channel between systems `a` and `b` (unordered).
    /// Each side then takes its end with [`Hub::endpoint`].
    ///
    /// # Errors
    /// [`HubError::AlreadyExists`] if the pair has a channel;
    /// [`HubError::InvalidArgument`] for an empty name or `a == b`;
    /// [`HubError::Closed`].
    ///
    /// # Examples
    /// ```
    /// use pso_core::{Hub, HubConfig, Value};
    /// let hub = Hub::new(HubConfig::new().workers(1))?;
    /// hub.open_direct("PAES", "PPO", "declared in topology")?;
    /// let mut paes = hub.endpoint("PAES", "PPO")?;
    /// let mut ppo = hub.endpoint("PPO", "PAES")?;
    /// paes.try_send(Value::Int(7))?;
    /// assert_eq!(ppo.try_recv()?, Some(Value::Int(7)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_direct(&self, a: &str, b: &str, reason: &str) -> Result<(), HubError> {
        self.inner.open_direct(a, b, DirectOrigin::Declared, reason)
    }

    /// Promotes the pair to a direct channel, recording `reason` (e.g. the
    /// measured rate that triggered it).
    ///
    /// # Errors
    /// As [`Hub::open_direct`].
    pub fn promote(&self, a: &str, b: &str, reason: &str) -> Result<(), HubError> {
        self.inner.open_direct(a, b, DirectOrigin::Promoted, reason)
    }

    /// Demotes the pair back to routing through the hub, recording `reason`.
    /// Its channel closes; ends already taken see it closed.
    ///
    /// # Errors
    /// [`HubError::NotFound`] if the pair has no channel;
    /// [`HubError::InvalidArgument`] if it belongs to a mesh.
    pub fn demote(&self, a: &str, b: &str, reason: &str) -> Result<(), HubError> {
        self.inner.close_pair(a, b, reason, false)
    }

    /// Closes the pair's channel whatever opened it (a mesh included).
    ///
    /// # Errors
    /// [`HubError::NotFound`] if the pair has no channel.
    pub fn close_direct(&self, a: &str, b: &str, reason: &str) -> Result<(), HubError> {
        self.inner.close_pair(a, b, reason, true)
    }

    /// Closes every direct channel of `system` (for its deactivation);
    /// returns how many.
    pub fn close_system(&self, system: &str, reason: &str) -> usize {
        let Some(id) = self.inner.lookup_system(system) else {
            return 0;
        };
        let mut pairs = self.inner.pairs.lock();
        let mut n = 0;
        for (k, r) in &pairs.map {
            if (k.0 == id || k.1 == id) && !r.shared.is_closed() {
                r.shared.close(reason);
                n += 1;
            }
        }
        let ends = pairs.prune();
        drop(pairs);
        drop(ends);
        n
    }

    /// Takes `me`'s end of the direct channel between `me` and `peer`. Each
    /// end can be taken once per channel.
    ///
    /// # Errors
    /// [`HubError::NotFound`] if the pair has no channel;
    /// [`HubError::AlreadyExists`] if the end was taken.
    pub fn endpoint(&self, me: &str, peer: &str) -> Result<DirectEnd, HubError> {
        self.inner.endpoint(me, peer)
    }

    /// Opens a mesh scope over `systems`: every pair gets a direct channel
    /// (pairs that have one keep it). See [`Mesh`].
    ///
    /// # Errors
    /// [`HubError::InvalidArgument`] for fewer than two distinct systems or an
    /// empty name; [`HubError::Closed`].
    ///
    /// # Examples
    /// ```
    /// use pso_core::{CoordinationMode, Hub, HubConfig};
    /// let hub = Hub::new(HubConfig::new().workers(1))?;
    /// {
    ///     let mesh = hub.mesh(&["A", "B", "C"])?;
    ///     assert_eq!(hub.coordination_status().mode("A", "C"), CoordinationMode::Mesh);
    ///     let _ab = mesh.endpoint("A", "B")?;
    /// }
    /// assert_eq!(hub.coordination_status().mode("A", "C"), CoordinationMode::Hierarchical);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mesh<S: AsRef<str>>(&self, systems: &[S]) -> Result<Mesh, HubError> {
        self.inner.check_open()?;
        let mut names: Vec<&str> = systems.iter().map(AsRef::as_ref).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() < 2 || names.iter().any(|n| n.is_empty()) {
            return Err(HubError::InvalidArgument {
                message: format!(
                    "a mesh needs at least two distinct, non-empty system names, got {names:?}"
                ),
            });
        }
        let mut keys = Vec::new();
        for (i, x) in names.iter().enumerate() {
            for y in &names[i + 1..] {
                keys.push(self.inner.pair_key(x, y)?);
            }
        }
        let mut pairs = self.inner.pairs.lock();
        let stale = pairs.prune();
        pairs.next_mesh += 1;
        let id = pairs.next_mesh;
        let reason = format!("mesh {id}");
        let mut owned = Vec::new();
        for (key, pair_names) in keys {
            if pairs.map.contains_key(&key) {
                continue;
            }
            self.inner.open_pair(
                &mut pairs,
                key,
                pair_names,
                DirectOrigin::Mesh,
                Some(id),
                &reason,
            );
            owned.push(key);
        }
        pairs.meshes.insert(
            id,
            MeshRecord {
                systems: names.iter().map(|n| Arc::from(*n)).collect(),
                since: SystemTime::now(),
            },
        );
        drop(pairs);
        drop(stale);
        Ok(Mesh {
            hub: self.inner.clone(),
            id,
            systems: names.iter().map(|n| n.to_string()).collect(),
            owned,
            open: true,
        })
    }

    /// Pairs whose measured rate (both directions, EWMA) crossed a threshold:
    /// hierarchical pairs at or above the promotion threshold, and promoted
    /// pairs below the demotion threshold. Declared and mesh pairs are never
    /// suggested for demotion. Sorted by rate, highest first.
    pub fn promotion_candidates(&self) -> Vec<Candidate> {
        let cfg = &self.inner.config;
        let rates = self.inner.edges.sample(cfg.rate_window);
        let mut by_pair: Map<(u32, u32), f64> = Map::default();
        for (f, t, rate, _, _) in rates {
            let key = if f < t { (f, t) } else { (t, f) };
            *by_pair.entry(key).or_default() += rate;
        }
        let pairs = self.inner.pairs.lock();
        let mut out = Vec::new();
        for (ids, rate) in by_pair {
            let (a, b) = (self.inner.system_name(ids.0), self.inner.system_name(ids.1));
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            let key = match (self.inner.lookup_system(&a), self.inner.lookup_system(&b)) {
                (Some(x), Some(y)) => (x, y),
                _ => continue,
            };
            match pairs.map.get(&key).filter(|r| !r.shared.is_closed()) {
                None if rate >= cfg.promote_threshold => out.push(Candidate {
                    reason: format!(
                        "{a}<->{b}: {rate:.0} msg/s >= promotion threshold {:.0} msg/s",
                        cfg.promote_threshold
                    ),
                    a: a.to_string(),
                    b: b.to_string(),
                    action: PairAction::Promote,
                    rate,
                    threshold: cfg.promote_threshold,
                }),
                Some(r) if r.origin == DirectOrigin::Promoted && rate < cfg.demote_threshold => out
                    .push(Candidate {
                        reason: format!(
                            "{a}<->{b}: {rate:.0} msg/s < demotion threshold {:.0} msg/s",
                            cfg.demote_threshold
                        ),
                        a: a.to_string(),
                        b: b.to_string(),
                        action: PairAction::Demote,
                        rate,
                        threshold: cfg.demote_threshold,
                    }),
                _ => {}
            }
        }
        drop(pairs);
        out.sort_by(|x, y| y.rate.total_cmp(&x.rate));
        out
    }
}
