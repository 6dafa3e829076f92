//! `optimize_resources()`: a plan — reclaim expired and idle leases, rebalance
//! toward fair shares by preempting over-share preemptible leases, and resize
//! per-system concurrency limits from measured queue wait and utilization —
//! and, with `apply`, carrying it out.
//!
//! The concurrency part reads the measurements kept by each system's slots
//! (`workflow::SystemSlots`): queue wait of parked steps and the peak number
//! running, since the last resize. A limit grows when steps waited long for a
//! slot (queue wait dominates), and shrinks only after a stabilization window
//! with low utilization, never below a floor.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Allocator;
use super::decide::Id;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourceAction {
    /// Release a lease whose TTL passed.
    ReclaimExpired {
        /// The lease.
        lease: u64,
        /// Its holder.
        system: String,
    },
    /// Release a lease nobody touched for a while.
    ReclaimIdle {
        /// The lease.
        lease: u64,
        /// Its holder.
        system: String,
        /// How long it was idle, seconds.
        idle_secs: f64,
    },
    /// Preempt an over-share preemptible lease so an under-share system of
    /// the same class can be served.
    Rebalance {
        /// The lease to preempt.
        lease: u64,
        /// Its holder.
        system: String,
        /// The holder's dominant share.
        share: f64,
        /// The waiting system that would be served.
        in_favor_of: String,
        /// The waiting system's dominant share.
        their_share: f64,
    },
    /// Change a system's limit on concurrently running workflow steps.
    ResizeConcurrency {
        /// The system.
        system: String,
        /// The current limit.
        from: u32,
        /// The proposed limit.
        to: u32,
        /// The measurements behind it.
        reason: String,
    },
}

/// A plan, and whether it was carried out.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct ResourcePlan {
    /// The actions, in the order they are (or would be) applied.
    pub actions: Vec<ResourceAction>,
    /// Whether `apply` was requested (and the actions carried out).
    pub applied: bool,
}

impl ResourcePlan {
    /// The plan as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plan serializes")
    }
}

impl Allocator {
    /// The reclaim and rebalance part of the plan, with the lease ids to act on.
    pub(crate) fn plan(&self, now: Instant) -> Vec<(ResourceAction, Id)> {
        let st = self.inner.state.lock();
        let core = &st.core;
        let idle_after = self.inner.config.idle_after;
        let mut out = Vec::new();
        for (id, l) in core.leases.iter() {
            let system = core.consumers[l.part.consumer as usize].name.to_string();
            if l.expires.is_some_and(|e| e <= now) {
                out.push((
                    ResourceAction::ReclaimExpired {
                        lease: id.serial(),
                        system,
                    },
                    id,
                ));
            } else if l.revoking.is_none()
                && now.saturating_duration_since(l.last_touch) >= idle_after
            {
                let idle_secs = now.saturating_duration_since(l.last_touch).as_secs_f64();
                out.push((
                    ResourceAction::ReclaimIdle {
                        lease: id.serial(),
                        system,
                        idle_secs,
                    },
                    id,
                ));
            }
        }
        // Rebalance: for each waiting system, the preemptible lease of the
        // same class held by the system with the largest share above it.
        let share = |c: u32| core.consumers[c as usize].share as f64 / 1e12;
        let mut taken: Vec<Id> = out.iter().map(|(_, id)| *id).collect();
        for (_, w) in core.waiters.iter() {
            let waiting = w.parts[0].consumer;
            let victim = core
                .leases
                .iter()
                .filter(|(id, l)| {
                    l.part.preemptible
                        && l.revoking.is_none()
                        && l.class == w.class
                        && l.part.consumer != waiting
                        && share(l.part.consumer) > share(waiting)
                        && !taken.contains(id)
                })
                .max_by(|a, b| share(a.1.part.consumer).total_cmp(&share(b.1.part.consumer)));
            if let Some((id, l)) = victim {
                taken.push(id);
                out.push((
                    ResourceAction::Rebalance {
                        lease: id.serial(),
                        system: core.consumers[l.part.consumer as usize].name.to_string(),
                        share: share(l.part.consumer),
                        in_favor_of: core.consumers[waiting as usize].name.to_string(),
                        their_share: share(waiting),
                    },
                    id,
                ));
            }
        }
        out
    }

    /// Carries out reclaim and rebalance actions: releases the leases (a
    /// rebalanced lease's holder gets its preemption callback first).
    pub(crate) fn carry_out(&self, actions: &[(ResourceAction, Id)]) -> usize {
        let mut done = 0;
        for (action, id) in actions {
            if let ResourceAction::Rebalance { system, .. } = action {
                let f = self
                    .inner
                    .state
                    .lock()
                    .core
                    .leases
                    .get_mut(*id)
                    .and_then(|l| l.on_preempt.take());
                if let Some(f) = f {
                    let notice = super::PreemptNotice {
                        lease: id.serial(),
                        system: system.clone(),
                        grace: Duration::ZERO,
                    };
                    self.inner.notify(f, notice);
                }
            }
            if self.release(*id) {
                done += 1;
            }
        }
        done
    }
}
