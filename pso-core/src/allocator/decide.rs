//! The allocator's decision core: pure bookkeeping, no locks, no threads,
//! time passed in. [`super::Allocator`] wraps it in a mutex and carries out
//! the side effects it returns (waking waiters, arming timers, calling
//! preemption callbacks) after unlocking.
//!
//! # Policy
//! * **Classes.** Strict priority between priority classes: a waiter of a
//!   higher class is served first, and while it cannot fit, no waiter of its
//!   class or a lower one is granted (no backfilling, so a large request is
//!   never starved by a stream of small ones).
//! * **Aging.** A waiter's effective class improves by one for every
//!   `aging_step` it has waited ([`Core::age`]), so a low class cannot starve:
//!   its wait is bounded by `aging_step × classes` plus the time the classes
//!   ahead need.
//! * **Fairness.** Within a class, weighted dominant-resource fairness by
//!   progressive filling: the consumer (system) with the smallest dominant
//!   share — its largest allocated fraction of any dimension, divided by its
//!   weight — gets its oldest request served next. Consumers with waiters are
//!   kept per class in a `BTreeSet` ordered by share, so each decision is
//!   O(log consumers).
//! * **Quotas.** A group quota is a hard limit per dimension on what the
//!   group's leases hold together.
//! * **Preemption.** When the head waiter cannot fit, preemptible leases of
//!   strictly lower classes (lowest class, then youngest, first) are marked
//!   revoking until the deficit is covered; their holders are notified and
//!   the leases are released after a grace period.
//! * **Gangs.** A gang request is one waiter with several parts (possibly for
//!   several systems and groups); it is granted whole or not at all.
//!
//! # Invariants (checked by the property tests)
//! * For every dimension, `allocated ≤ capacity`; for every group and
//!   dimension with a quota, `allocated ≤ quota`.
//! * `allocated` equals the sum of the amounts of live leases; a lease is
//!   released at most once.
//! * A waiter is in exactly one queue: `queues[(consumer, class)]` for its
//!   primary consumer and effective class; a consumer is in `ready[class]` iff
//!   that queue is non-empty, keyed by its current share and then the arrival
//!   sequence of its head waiter (equal shares are served oldest first).

use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use smallvec::SmallVec;

use super::{ResourceError, Waited};
use crate::metrics::usage::{LeaseSeries, Usage, UsageConfig};
use crate::scheduler::CLASSES;

/// `(dimension index, amount)`, sorted by dimension, without zero amounts.
pub(crate) type Amounts = Box<[(u32, u64)]>;

/// Normalizes `(dimension, amount)` pairs into [`Amounts`]: sorted, summed
/// per dimension, zeros dropped.
pub(crate) fn amounts(mut v: Vec<(u32, u64)>) -> Amounts {
    v.sort_unstable_by_key(|e| e.0);
    v.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1 = a.1.saturating_add(b.1);
            true
        } else {
            false
        }
    });
    v.retain(|e| e.1 > 0);
    v.into_boxed_slice()
}

/// A slab index plus the entry's serial number. Serials come from one
/// counter per slab and are never reused, so a stale id never matches, and
/// the serial alone is a public, unique, JS-safe id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Id {
    index: u32,
    serial: u64,
}

impl Id {
    fn index(self) -> usize {
        self.index as usize
    }
    fn generation(self) -> u64 {
        self.serial
    }
    /// The public id.
    pub(crate) fn serial(self) -> u64 {
        self.serial
    }
}

/// A slab whose entries carry serial numbers.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<(u64, Option<T>)>,
    free: Vec<usize>,
    live: usize,
    next_serial: u64,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_serial: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, v: T) -> Id {
        self.live += 1;
        self.next_serial += 1;
        let serial = self.next_serial;
        let index = match self.free.pop() {
            Some(i) => {
                self.entries[i] = (serial, Some(v));
                i
            }
            None => {
                self.entries.push((serial, Some(v)));
                self.entries.len() - 1
            }
        };
        Id {
            index: index as u32,
            serial,
        }
    }
    pub(crate) fn get(&self, id: Id) -> Option<&T> {
        self.entries
            .get(id.index())
            .filter(|e| e.0 == id.generation())
            .and_then(|e| e.1.as_ref())
    }
    pub(crate) fn get_mut(&mut self, id: Id) -> Option<&mut T> {
        self.entries
            .get_mut(id.index())
            .filter(|e| e.0 == id.generation())
            .and_then(|e| e.1.as_mut())
    }
    pub(crate) fn remove(&mut self, id: Id) -> Option<T> {
        let e = self
            .entries
            .get_mut(id.index())
            .filter(|e| e.0 == id.generation())?;
        let v = e.1.take()?;
        self.free.push(id.index());
        self.live -= 1;
        Some(v)
    }
    pub(crate) fn len(&self) -> usize {
        self.live
    }
    /// Removes every entry (serials keep counting).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.free.clear();
        self.live = 0;
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Id, &T)> {
        self.entries.iter().enumerate().filter_map(|(i, (g, v))| {
            v.as_ref().map(|v| {
                (
                    Id {
                        index: i as u32,
                        serial: *g,
                    },
                    v,
                )
            })
        })
    }
}

#[derive(Debug)]
pub(crate) struct Dim {
    pub(crate) name: Arc<str>,
    pub(crate) capacity: u64,
    pub(crate) allocated: u64,
    /// Held by leases being revoked (freed when their grace period ends).
    pub(crate) revoking: u64,
    /// `1 / capacity` (0 for no capacity): shares without divisions.
    pub(crate) inv_capacity: f64,
    /// Utilization over time (metrics).
    pub(crate) usage: Usage,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: Arc<str>,
    /// Per dimension; `None` = no limit.
    pub(crate) quota: Vec<Option<u64>>,
    pub(crate) allocated: Vec<u64>,
}

#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) name: Arc<str>,
    pub(crate) weight: f64,
    pub(crate) allocated: Vec<u64>,
    /// Weighted dominant share, scaled to an integer key (see `share_key`).
    pub(crate) share: u64,
    pub(crate) queues: [VecDeque<Id>; CLASSES],
    /// Lease counts, waits and hold times (metrics).
    pub(crate) leases: LeaseSeries,
}

/// One system's part of a request (a gang has several).
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) consumer: u32,
    pub(crate) group: Option<u32>,
    pub(crate) amounts: Amounts,
    pub(crate) preemptible: bool,
    pub(crate) ttl: Option<Duration>,
}

/// A granted lease.
pub(crate) struct LeaseRec {
    pub(crate) part: Part,
    pub(crate) class: u8,
    pub(crate) created: Instant,
    pub(crate) last_touch: Instant,
    pub(crate) expires: Option<Instant>,
    /// When the grace period of a preemption ends.
    pub(crate) revoking: Option<Instant>,
    pub(crate) on_preempt: Option<super::PreemptFn>,
}

/// A queued request.
pub(crate) struct WaiterRec {
    pub(crate) parts: SmallVec<[Part; 1]>,
    pub(crate) class: u8,
    pub(crate) eff_class: u8,
    pub(crate) enqueued: Instant,
    pub(crate) token: u64,
    /// Arrival order (ties of equal shares go to the oldest).
    pub(crate) seq: u64,
}

/// What a decision produced, for the caller to carry out after unlocking.
#[derive(Default)]
pub(crate) struct Effects {
    /// `(waiter token, its new leases)`.
    pub(crate) granted: Vec<(u64, Vec<Id>)>,
    /// Leases that started revoking: `(lease, grace deadline)`.
    pub(crate) revoking: Vec<(Id, Instant)>,
    /// Leases granted with a TTL: `(lease, expiry)`.
    pub(crate) expiring: Vec<(Id, Instant)>,
    /// Waiters that can never fit any more (a capacity or quota was lowered).
    pub(crate) rejected: Vec<(u64, ResourceError)>,
}

/// Why a request cannot be granted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Not enough free capacity: it holds back its class and lower ones.
    Capacity,
    /// Only its group's quota: the group waits, nobody else does.
    Quota,
}

type DimTotals = SmallVec<[(u32, u64); 8]>;
type GroupTotals = SmallVec<[(u32, u32, u64); 8]>;

/// A request's totals per dimension and per (group, dimension).
fn totals(parts: &[Part]) -> (DimTotals, GroupTotals) {
    let mut by_dim = DimTotals::new();
    let mut by_group = GroupTotals::new();
    for p in parts {
        for &(d, a) in &p.amounts {
            match by_dim.iter_mut().find(|e| e.0 == d) {
                Some(e) => e.1 = e.1.saturating_add(a),
                None => by_dim.push((d, a)),
            }
            if let Some(g) = p.group {
                match by_group.iter_mut().find(|e| e.0 == g && e.1 == d) {
                    Some(e) => e.2 = e.2.saturating_add(a),
                    None => by_group.push((g, d, a)),
                }
            }
        }
    }
    (by_dim, by_group)
}

/// Tunables of the policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) aging_step: Duration,
    pub(crate) grace: Duration,
}

/// See the module docs.
pub(crate) struct Core {
    pub(crate) dims: Vec<Dim>,
    dim_ix: HashMap<Arc<str>, u32>,
    pub(crate) groups: Vec<Group>,
    group_ix: HashMap<Arc<str>, u32>,
    pub(crate) consumers: Vec<Consumer>,
    consumer_ix: HashMap<Arc<str>, u32>,
    pub(crate) leases: Slab<LeaseRec>,
    pub(crate) waiters: Slab<WaiterRec>,
    /// Consumers with a non-empty queue in each class, by share.
    ready: [BTreeSet<(u64, u64, u32)>; CLASSES],
    next_seq: u64,
    /// Preemptible leases not yet revoking, per class (skips the search for
    /// victims when there are none).
    preemptible: [usize; CLASSES],
    pub(crate) policy: Policy,
    /// Where the metrics series get their switch, epoch and ring size.
    pub(crate) metrics: UsageConfig,
}

/// Scales a share in [0, ∞) to an ordered integer key.
fn share_key(share: f64) -> u64 {
    (share.max(0.0) * 1e12).min(u64::MAX as f64 / 2.0) as u64
}

impl Core {
    pub(crate) fn new(policy: Policy) -> Core {
        Core {
            dims: Vec::new(),
            dim_ix: HashMap::default(),
            groups: Vec::new(),
            group_ix: HashMap::default(),
            consumers: Vec::new(),
            consumer_ix: HashMap::default(),
            leases: Slab::default(),
            waiters: Slab::default(),
            ready: std::array::from_fn(|_| BTreeSet::new()),
            preemptible: [0; CLASSES],
            next_seq: 0,
            policy,
            metrics: UsageConfig::default(),
        }
    }

    /// Sets the capacity of `dim` (created if new). Lowering it below what is
    /// allocated is allowed: nothing new fits until enough is released.
    pub(crate) fn set_capacity(
        &mut self,
        dim: &str,
        capacity: u64,
        effects: &mut Effects,
        now: Instant,
    ) {
        let d = match self.dim_ix.get(dim) {
            Some(&d) => {
                let dm = &mut self.dims[d as usize];
                dm.capacity = capacity;
                dm.usage.set(&self.metrics, dm.allocated, capacity, now);
                d
            }
            None => {
                let name: Arc<str> = Arc::from(dim);
                self.dim_ix.insert(name.clone(), self.dims.len() as u32);
                self.dims.push(Dim {
                    name,
                    capacity,
                    allocated: 0,
                    revoking: 0,
                    inv_capacity: 0.0,
                    usage: Usage::new(&self.metrics, capacity, now),
                });
                for g in &mut self.groups {
                    g.quota.push(None);
                    g.allocated.push(0);
                }
                for c in &mut self.consumers {
                    c.allocated.push(0);
                }
                (self.dims.len() - 1) as u32
            }
        };
        let dim = &mut self.dims[d as usize];
        dim.inv_capacity = if capacity == 0 {
            0.0
        } else {
            1.0 / capacity as f64
        };
        self.recompute_shares();
        self.reject_impossible(effects);
        self.drain(now, effects);
    }

    pub(crate) fn dim(&self, name: &str) -> Option<u32> {
        self.dim_ix.get(name).copied()
    }

    /// Sets (or clears) a group quota on `dim`.
    pub(crate) fn set_quota(
        &mut self,
        group: &str,
        dim: u32,
        quota: Option<u64>,
        effects: &mut Effects,
        now: Instant,
    ) {
        let g = self.group(group);
        self.groups[g as usize].quota[dim as usize] = quota;
        self.reject_impossible(effects);
        self.drain(now, effects);
    }

    /// The index of group `name`, created if new.
    pub(crate) fn group(&mut self, name: &str) -> u32 {
        if let Some(&g) = self.group_ix.get(name) {
            return g;
        }
        let name: Arc<str> = Arc::from(name);
        let n = self.dims.len();
        self.group_ix.insert(name.clone(), self.groups.len() as u32);
        self.groups.push(Group {
            name,
            quota: vec![None; n],
            allocated: vec![0; n],
        });
        (self.groups.len() - 1) as u32
    }

    /// The index of consumer `name`, created if new.
    pub(crate) fn consumer(&mut self, name: &str) -> u32 {
        if let Some(&c) = self.consumer_ix.get(name) {
            return c;
        }
        let name: Arc<str> = Arc::from(name);
        self.consumer_ix
            .insert(name.clone(), self.consumers.len() as u32);
        self.consumers.push(Consumer {
            name,
            weight: 1.0,
            allocated: vec![0; self.dims.len()],
            share: 0,
            queues: std::array::from_fn(|_| VecDeque::new()),
            leases: LeaseSeries::default(),
        });
        (self.consumers.len() - 1) as u32
    }

    /// The index of consumer `name`, if it ever asked.
    #[cfg(test)]
    pub(crate) fn consumer_index(&self, name: &str) -> Option<u32> {
        self.consumer_ix.get(name).copied()
    }

    /// Sets a consumer's DRF weight (> 0).
    pub(crate) fn set_weight(
        &mut self,
        consumer: u32,
        weight: f64,
        effects: &mut Effects,
        now: Instant,
    ) {
        self.consumers[consumer as usize].weight = weight;
        self.reshare(consumer);
        self.drain(now, effects);
    }

    fn compute_share(&self, c: u32) -> u64 {
        let con = &self.consumers[c as usize];
        let mut best = 0.0f64;
        for (dim, &a) in self.dims.iter().zip(&con.allocated) {
            best = best.max(a as f64 * dim.inv_capacity);
        }
        share_key(best / con.weight)
    }

    /// Recomputes consumer `c`'s share and repositions it in the ready sets.
    fn reshare(&mut self, c: u32) {
        let new = self.compute_share(c);
        let old = self.consumers[c as usize].share;
        if new == old {
            return;
        }
        for class in 0..CLASSES {
            if let Some(head) = self.head_seq(c, class) {
                self.ready[class].remove(&(old, head, c));
                self.ready[class].insert((new, head, c));
            }
        }
        self.consumers[c as usize].share = new;
    }

    /// The arrival sequence of consumer `c`'s first waiter in `class`.
    fn head_seq(&self, c: u32, class: usize) -> Option<u64> {
        let id = *self.consumers[c as usize].queues[class].front()?;
        Some(self.waiters.get(id).expect("queued waiter exists").seq)
    }

    fn recompute_shares(&mut self) {
        for c in 0..self.consumers.len() as u32 {
            self.reshare(c);
        }
    }

    /// [`Core::blocked`] for a single part (the common case), without totals.
    #[inline]
    fn blocked_one(&self, p: &Part) -> Option<Block> {
        let over_capacity = p.amounts.iter().any(|&(d, a)| {
            let dim = &self.dims[d as usize];
            dim.allocated
                .checked_add(a)
                .is_none_or(|t| t > dim.capacity)
        });
        if over_capacity {
            return Some(Block::Capacity);
        }
        let g = p.group?;
        let group = &self.groups[g as usize];
        let over_quota = p.amounts.iter().any(|&(d, a)| {
            group.quota[d as usize]
                .is_some_and(|q| group.allocated[d as usize].saturating_add(a) > q)
        });
        over_quota.then_some(Block::Quota)
    }

    /// Rejects a request that could never fit: its total on a dimension
    /// above the capacity, or a group's total above the group's quota.
    pub(crate) fn check_parts(&self, parts: &[Part]) -> Result<(), ResourceError> {
        if let [p] = parts
            && p.group.is_none()
            && p.amounts
                .iter()
                .all(|&(d, a)| a <= self.dims[d as usize].capacity)
        {
            return Ok(()); // the common case, without totals
        }
        let (by_dim, by_group) = totals(parts);
        for &(d, a) in &by_dim {
            let dim = &self.dims[d as usize];
            if a > dim.capacity {
                let who = parts
                    .iter()
                    .find(|p| p.amounts.iter().any(|e| e.0 == d))
                    .map_or(parts[0].consumer, |p| p.consumer);
                return Err(ResourceError::ExceedsCapacity {
                    system: self.consumers[who as usize].name.to_string(),
                    dimension: dim.name.to_string(),
                    requested: a,
                    capacity: dim.capacity,
                });
            }
        }
        for &(g, d, a) in &by_group {
            let group = &self.groups[g as usize];
            if let Some(q) = group.quota[d as usize]
                && a > q
            {
                return Err(ResourceError::ExceedsQuota {
                    group: group.name.to_string(),
                    dimension: self.dims[d as usize].name.to_string(),
                    requested: a,
                    quota: q,
                });
            }
        }
        Ok(())
    }

    /// What keeps a request from being granted now, if anything.
    fn blocked(&self, parts: &[Part]) -> Option<Block> {
        if let [p] = parts {
            return self.blocked_one(p);
        }
        let (by_dim, by_group) = totals(parts);
        let over_capacity = by_dim.iter().any(|&(d, a)| {
            let dim = &self.dims[d as usize];
            dim.allocated
                .checked_add(a)
                .is_none_or(|t| t > dim.capacity)
        });
        if over_capacity {
            return Some(Block::Capacity);
        }
        let over_quota = by_group.iter().any(|&(g, d, a)| {
            let group = &self.groups[g as usize];
            group.quota[d as usize]
                .is_some_and(|q| group.allocated[d as usize].saturating_add(a) > q)
        });
        over_quota.then_some(Block::Quota)
    }

    fn add(&mut self, part: &Part, sign_add: bool, now: Instant) {
        for &(d, a) in &part.amounts {
            let dim = &mut self.dims[d as usize];
            let con = &mut self.consumers[part.consumer as usize];
            if sign_add {
                dim.allocated += a;
                con.allocated[d as usize] += a;
            } else {
                dim.allocated -= a;
                con.allocated[d as usize] -= a;
            }
            dim.usage
                .set(&self.metrics, dim.allocated, dim.capacity, now);
            if let Some(g) = part.group {
                let ga = &mut self.groups[g as usize].allocated[d as usize];
                if sign_add {
                    *ga += a;
                } else {
                    *ga -= a;
                }
            }
        }
        self.reshare(part.consumer);
    }

    /// Grants `parts`, requested at `asked`.
    fn grant_parts(
        &mut self,
        parts: SmallVec<[Part; 1]>,
        class: u8,
        asked: Instant,
        now: Instant,
        effects: &mut Effects,
    ) -> Vec<Id> {
        let mut ids = Vec::with_capacity(parts.len());
        let on = self.metrics.switch.on();
        for part in parts {
            self.add(&part, true, now);
            self.consumers[part.consumer as usize]
                .leases
                .granted(on, now.saturating_duration_since(asked));
            let expires = part.ttl.and_then(|t| now.checked_add(t));
            if part.preemptible {
                self.preemptible[class as usize] += 1;
            }
            let id = self.leases.insert(LeaseRec {
                part,
                class,
                created: now,
                last_touch: now,
                expires,
                revoking: None,
                on_preempt: None,
            });
            if let Some(e) = expires {
                effects.expiring.push((id, e));
            }
            ids.push(id);
        }
        ids
    }

    /// Whether a waiter of effective class `class` or higher is queued.
    fn waiters_at_or_above(&self, class: u8) -> bool {
        self.ready[..=class as usize].iter().any(|s| !s.is_empty())
    }

    /// Requests `parts` at `class`: granted at once if it fits and nobody of
    /// the same or a higher class waits; else queued under `token`.
    /// Returns the leases if granted, or the waiter id.
    pub(crate) fn request(
        &mut self,
        parts: SmallVec<[Part; 1]>,
        class: u8,
        token: u64,
        now: Instant,
        effects: &mut Effects,
    ) -> Result<Result<Vec<Id>, Id>, ResourceError> {
        self.check_parts(&parts)?;
        if !self.waiters_at_or_above(class) && self.blocked(&parts).is_none() {
            return Ok(Ok(self.grant_parts(parts, class, now, now, effects)));
        }
        let primary = parts[0].consumer;
        self.next_seq += 1;
        let id = self.waiters.insert(WaiterRec {
            parts,
            class,
            eff_class: class,
            enqueued: now,
            token,
            seq: self.next_seq,
        });
        self.enqueue(primary, class, id);
        // It may be the new head: try (preemption, or a grant).
        self.drain(now, effects);
        if self.waiters.get(id).is_none() {
            // Granted by that drain (it passed waiters held back by quotas).
            let pos = effects
                .granted
                .iter()
                .position(|g| g.0 == token)
                .expect("a drained waiter was granted");
            return Ok(Ok(effects.granted.remove(pos).1));
        }
        Ok(Err(id))
    }

    fn enqueue(&mut self, consumer: u32, class: u8, id: Id) {
        let seq = self.waiters.get(id).expect("enqueued waiter exists").seq;
        let con = &mut self.consumers[consumer as usize];
        let q = &mut con.queues[class as usize];
        if q.is_empty() {
            self.ready[class as usize].insert((con.share, seq, consumer));
        }
        q.push_back(id);
    }

    /// Takes waiter `id` (still in the slab) out of its queue.
    fn dequeue(&mut self, consumer: u32, class: u8, id: Id) -> bool {
        let cu = class as usize;
        let Some(pos) = self.consumers[consumer as usize].queues[cu]
            .iter()
            .position(|&w| w == id)
        else {
            return false;
        };
        if pos == 0 {
            let share = self.consumers[consumer as usize].share;
            let seq = self.waiters.get(id).expect("queued waiter exists").seq;
            self.ready[cu].remove(&(share, seq, consumer));
            self.consumers[consumer as usize].queues[cu].pop_front();
            if let Some(next) = self.head_seq(consumer, cu) {
                self.ready[cu].insert((share, next, consumer));
            }
        } else {
            self.consumers[consumer as usize].queues[cu].remove(pos);
        }
        true
    }

    /// Removes a waiter (cancelled or timed out); returns its token.
    pub(crate) fn cancel(&mut self, id: Id, now: Instant, effects: &mut Effects) -> Option<u64> {
        let w = self.waiters.get(id)?;
        let (consumer, class) = (w.parts[0].consumer, w.eff_class);
        self.dequeue(consumer, class, id);
        let w = self.waiters.remove(id)?;
        // The head may have changed.
        self.drain(now, effects);
        Some(w.token)
    }

    /// Releases a lease; returns its record.
    pub(crate) fn release(
        &mut self,
        id: Id,
        now: Instant,
        effects: &mut Effects,
    ) -> Option<LeaseRec> {
        let rec = self.leases.remove(id)?;
        self.add(&rec.part, false, now);
        let on = self.metrics.switch.on();
        self.consumers[rec.part.consumer as usize]
            .leases
            .released(on, now.saturating_duration_since(rec.created));
        if rec.revoking.is_some() {
            for &(d, a) in &rec.part.amounts {
                self.dims[d as usize].revoking -= a;
            }
        } else if rec.part.preemptible {
            self.preemptible[rec.class as usize] -= 1;
        }
        self.drain(now, effects);
        Some(rec)
    }

    /// Grants waiters in policy order while the head fits; tries preemption
    /// for a head that does not. A waiter held back only by its group's quota
    /// is passed over (it takes nothing anyone else could use).
    pub(crate) fn drain(&mut self, now: Instant, effects: &mut Effects) {
        for class in 0..CLASSES {
            // Consumers up to `after` (in ready order) wait on quotas only.
            let mut after: Option<(u64, u64, u32)> = None;
            loop {
                let next = match after {
                    None => self.ready[class].first(),
                    Some(k) => self.ready[class].range((Excluded(k), Unbounded)).next(),
                };
                let Some(&key) = next else { break };
                let c = key.2;
                let id = *self.consumers[c as usize].queues[class]
                    .front()
                    .expect("ready consumer has a waiter");
                let w = self.waiters.get(id).expect("queued waiter exists");
                match self.blocked(&w.parts) {
                    None => {
                        self.dequeue(c, class as u8, id);
                        let w = self.waiters.remove(id).expect("queued waiter exists");
                        let leases = self.grant_parts(w.parts, w.class, w.enqueued, now, effects);
                        effects.granted.push((w.token, leases));
                    }
                    Some(Block::Quota) => after = Some(key),
                    Some(Block::Capacity) => {
                        self.preempt_for(id, class as u8, now, effects);
                        return; // strict: nothing of this class or below jumps ahead
                    }
                }
            }
        }
    }

    /// Rejects waiters that can never fit after a capacity or quota change.
    fn reject_impossible(&mut self, effects: &mut Effects) {
        let doomed: Vec<(Id, ResourceError)> = self
            .waiters
            .iter()
            .filter_map(|(id, w)| self.check_parts(&w.parts).err().map(|e| (id, e)))
            .collect();
        for (id, e) in doomed {
            let w = self.waiters.get(id).expect("doomed waiter exists");
            let (consumer, class) = (w.parts[0].consumer, w.eff_class);
            self.dequeue(consumer, class, id);
            let w = self.waiters.remove(id).expect("doomed waiter exists");
            effects.rejected.push((w.token, e));
        }
    }

    /// Starts revoking preemptible leases of classes below `class` until
    /// waiter `id` would fit once they are gone.
    fn preempt_for(&mut self, id: Id, class: u8, now: Instant, effects: &mut Effects) {
        if self.preemptible[class as usize + 1..]
            .iter()
            .all(|&n| n == 0)
        {
            return; // nothing below this class can be preempted
        }
        let w = self.waiters.get(id).expect("waiter exists");
        // Deficit per dimension, counting leases already being revoked as freed.
        let (mut deficit, _) = totals(&w.parts);
        for e in deficit.iter_mut() {
            let dim = &self.dims[e.0 as usize];
            let free = dim.capacity.saturating_sub(dim.allocated) + dim.revoking;
            e.1 = e.1.saturating_sub(free);
        }
        deficit.retain(|e| e.1 > 0);
        if deficit.is_empty() {
            return; // enough is already on its way (or only a quota blocks)
        }
        let mut candidates: Vec<(u8, Instant, Id)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.part.preemptible && l.revoking.is_none() && l.class > class)
            .filter(|(_, l)| {
                l.part
                    .amounts
                    .iter()
                    .any(|(d, _)| deficit.iter().any(|e| e.0 == *d))
            })
            .map(|(lid, l)| (l.class, l.created, lid))
            .collect();
        // Lowest class first, then youngest.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        let mut chosen = Vec::new();
        for (_, _, lid) in candidates {
            if deficit.is_empty() {
                break;
            }
            let l = self.leases.get(lid).expect("candidate exists");
            let mut helps = false;
            for e in deficit.iter_mut() {
                if let Some(&(_, a)) = l.part.amounts.iter().find(|x| x.0 == e.0) {
                    e.1 = e.1.saturating_sub(a);
                    helps = true;
                }
            }
            if helps {
                chosen.push(lid);
            }
            deficit.retain(|e| e.1 > 0);
        }
        if !deficit.is_empty() {
            return; // preemption cannot make it fit: wait
        }
        let until = now + self.policy.grace;
        for lid in chosen {
            let l = self.leases.get_mut(lid).expect("chosen exists");
            l.revoking = Some(until);
            self.preemptible[l.class as usize] -= 1;
            for &(d, a) in &l.part.amounts {
                self.dims[d as usize].revoking += a;
            }
            effects.revoking.push((lid, until));
        }
    }

    /// Drops every waiter (the allocator is closing; their slots are told).
    pub(crate) fn clear_waiters(&mut self) {
        self.waiters.clear();
        for c in &mut self.consumers {
            c.queues.iter_mut().for_each(VecDeque::clear);
        }
        self.ready.iter_mut().for_each(BTreeSet::clear);
    }

    /// Promotes waiters by one class per `aging_step` waited. Returns the next
    /// time anything would age, if any waiter is left that can.
    pub(crate) fn age(&mut self, now: Instant, effects: &mut Effects) -> Option<Instant> {
        let step = self.policy.aging_step;
        let mut moves = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, w) in self.waiters.iter() {
            let steps = (now.saturating_duration_since(w.enqueued).as_nanos()
                / step.as_nanos().max(1)) as u8;
            let target = w.class.saturating_sub(steps);
            if target < w.eff_class {
                moves.push((id, w.parts[0].consumer, w.eff_class, target));
            }
            if target > 0 {
                let at = w.enqueued + step * (steps as u32 + 1);
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        for (id, consumer, from, to) in moves {
            self.dequeue(consumer, from, id);
            self.waiters
                .get_mut(id)
                .expect("aging waiter exists")
                .eff_class = to;
            self.enqueue(consumer, to, id);
        }
        self.drain(now, effects);
        next
    }

    /// Waiters ahead of waiter `id` in policy order (same or higher class).
    pub(crate) fn ahead_of(&self, id: Id) -> usize {
        let Some(w) = self.waiters.get(id) else {
            return 0;
        };
        let mut n = 0;
        for class in 0..w.eff_class as usize {
            n += self.ready[class]
                .iter()
                .map(|&(_, _, c)| self.consumers[c as usize].queues[class].len())
                .sum::<usize>();
        }
        let class = w.eff_class as usize;
        let c = w.parts[0].consumer;
        let key = (
            self.consumers[c as usize].share,
            self.head_seq(c, class).unwrap_or(0),
            c,
        );
        for &(s, hs, other) in &self.ready[class] {
            if (s, hs, other) >= key {
                break;
            }
            n += self.consumers[other as usize].queues[class].len();
        }
        n + self.consumers[c as usize].queues[class]
            .iter()
            .take_while(|&&x| x != id)
            .count()
    }

    /// Why waiter `id` waits, in words.
    pub(crate) fn reason(&self, id: Id) -> Waited {
        let w = self.waiters.get(id).expect("waiter exists");
        let mut short = Vec::new();
        let (by_dim, by_group) = totals(&w.parts);
        for &(d, a) in &by_dim {
            let dim = &self.dims[d as usize];
            let free = dim.capacity.saturating_sub(dim.allocated);
            if a > free {
                short.push(format!("needs {a} {}, {free} free", dim.name));
            }
        }
        for &(g, d, a) in &by_group {
            let group = &self.groups[g as usize];
            if let Some(q) = group.quota[d as usize] {
                let left = q.saturating_sub(group.allocated[d as usize]);
                if a > left {
                    short.push(format!(
                        "needs {a} {} within group {}'s quota, {left} left",
                        self.dims[d as usize].name, group.name
                    ));
                }
            }
        }
        let ahead = self.ahead_of(id);
        let mut text = if short.is_empty() {
            "fits now, but waits its turn".to_owned()
        } else {
            short.join("; ")
        };
        if ahead > 0 {
            text.push_str(&format!(
                "; {ahead} request{} ahead",
                if ahead == 1 { "" } else { "s" }
            ));
        }
        Waited {
            reason: text,
            ahead,
        }
    }

    /// Consistency check used by tests: allocations equal the sum of leases
    /// and never exceed capacity or quota.
    #[cfg(test)]
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut dims = vec![0u64; self.dims.len()];
        let mut groups = vec![vec![0u64; self.dims.len()]; self.groups.len()];
        let mut cons = vec![vec![0u64; self.dims.len()]; self.consumers.len()];
        for (_, l) in self.leases.iter() {
            for &(d, a) in &l.part.amounts {
                dims[d as usize] += a;
                cons[l.part.consumer as usize][d as usize] += a;
                if let Some(g) = l.part.group {
                    groups[g as usize][d as usize] += a;
                }
            }
        }
        let mut revoking = vec![0u64; self.dims.len()];
        let mut preemptible = [0usize; CLASSES];
        for (_, l) in self.leases.iter() {
            if l.revoking.is_some() {
                for &(d, a) in &l.part.amounts {
                    revoking[d as usize] += a;
                }
            } else if l.part.preemptible {
                preemptible[l.class as usize] += 1;
            }
        }
        if preemptible != self.preemptible {
            return Err(format!(
                "preemptible counts {:?}, expected {preemptible:?}",
                self.preemptible
            ));
        }
        for (d, dim) in self.dims.iter().enumerate() {
            if dim.revoking != revoking[d] {
                return Err(format!(
                    "{}: revoking {} but leases hold {}",
                    dim.name, dim.revoking, revoking[d]
                ));
            }
            if dim.allocated != dims[d] {
                return Err(format!(
                    "{}: allocated {} but leases hold {}",
                    dim.name, dim.allocated, dims[d]
                ));
            }
        }
        for (group, held) in self.groups.iter().zip(&groups) {
            for (d, dim) in self.dims.iter().enumerate() {
                if group.allocated[d] != held[d] {
                    return Err(format!("group {} drifted", group.name));
                }
                if let Some(q) = group.quota[d]
                    && group.allocated[d] > q
                {
                    return Err(format!("group {} over quota on {}", group.name, dim.name));
                }
            }
        }
        for (c, con) in self.consumers.iter().enumerate() {
            if con.allocated != cons[c] {
                return Err(format!("consumer {} drifted", con.name));
            }
        }
        for class in 0..CLASSES {
            let with_waiters = self
                .consumers
                .iter()
                .filter(|c| !c.queues[class].is_empty())
                .count();
            if with_waiters != self.ready[class].len() {
                return Err(format!(
                    "ready set of class {class} has {} entries for {with_waiters} consumers",
                    self.ready[class].len()
                ));
            }
            for &(share, seq, c) in &self.ready[class] {
                if self.head_seq(c, class) != Some(seq) || self.consumers[c as usize].share != share
                {
                    return Err(format!("ready set of class {class} is stale"));
                }
            }
        }
        let queued: usize = self
            .consumers
            .iter()
            .map(|c| c.queues.iter().map(VecDeque::len).sum::<usize>())
            .sum();
        if queued != self.waiters.len() {
            return Err(format!(
                "{queued} queued but {} waiters",
                self.waiters.len()
            ));
        }
        Ok(())
    }
}
