//! Resource verbs of the [`Orchestrator`]: capacities, quotas and weights,
//! `allocate_resources` (blocking, gang, or as a pending request / future),
//! per-step requests of a system's workflow steps, `resource_status` and
//! `optimize_resources`. The policy is in [`crate::allocator`].

use std::time::{Duration, Instant};

use super::Orchestrator;
use crate::allocator::{
    Lease, PendingLease, ResourceAction, ResourceError, ResourcePlan, ResourceRequest,
    ResourceStatus,
};
use crate::registry::RegistryError;
use crate::workflow::SystemSlots;

/// A concurrency limit grows when the mean queue wait of parked steps since
/// the last change is at least this.
const GROW_AFTER_WAIT: Duration = Duration::from_millis(1);
/// A limit shrinks only after this long without a change…
const STABILIZATION: Duration = Duration::from_secs(30);
/// …and never below this.
const LIMIT_FLOOR: u32 = 1;

impl Orchestrator {
    /// Declares (or changes) the capacity of a resource dimension — `cpu`,
    /// `memory`, or any counter such as `gpu` or `db_connections`. Lowering
    /// it below what is allocated revokes nothing: new requests wait until
    /// enough is released. Raising it grants waiters at once.
    ///
    /// # Errors
    /// An empty name or one with whitespace; closed orchestrator.
    pub fn set_capacity(&self, dimension: &str, capacity: u64) -> Result<(), ResourceError> {
        self.check_open_resources()?;
        self.inner.env.alloc.set_capacity(dimension, capacity)
    }

    /// Sets (or with `None` removes) the hard quota of `group` on
    /// `dimension`: the group's leases never hold more together.
    ///
    /// # Errors
    /// Unknown dimension, empty group name, closed orchestrator.
    pub fn set_group_quota(
        &self,
        group: &str,
        dimension: &str,
        quota: Option<u64>,
    ) -> Result<(), ResourceError> {
        self.check_open_resources()?;
        self.inner.env.alloc.set_quota(group, dimension, quota)
    }

    /// Sets a system's weight in dominant-resource fairness (default 1): a
    /// system of weight 2 is served as if its share were half.
    ///
    /// # Errors
    /// Unknown system, a weight that is not positive and finite, closed
    /// orchestrator.
    pub fn set_resource_weight(&self, system: &str, weight: f64) -> Result<(), ResourceError> {
        self.check_open_resources()?;
        self.inner.env.alloc.set_weight(system, weight)
    }

    /// Leases resources for `system`, waiting (up to the request's wait
    /// timeout, if any) until they fit in policy order. The lease is released
    /// when dropped, at its TTL, or when preempted.
    ///
    /// # Errors
    /// [`ResourceError`]: exceeds the capacity or a group quota (it could
    /// never fit), timed out waiting (with why it still waited), unknown
    /// dimension or system, closed orchestrator. Nothing is held after an
    /// error.
    ///
    /// # Examples
    /// ```
    /// use pso_core::{Orchestrator, ResourceRequest, SystemSpec};
    /// let orch = Orchestrator::new();
    /// orch.register(SystemSpec::new("indexer"))?;
    /// orch.set_capacity("cpu", 4)?;
    /// let lease = orch.allocate_resources("indexer", &ResourceRequest::new().amount("cpu", 3))?;
    /// assert_eq!(orch.resource_status().dimension("cpu").unwrap().free, 1);
    /// drop(lease);
    /// assert_eq!(orch.resource_status().dimension("cpu").unwrap().free, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allocate_resources(
        &self,
        system: &str,
        request: &ResourceRequest,
    ) -> Result<Lease, ResourceError> {
        let mut leases = self.request_resources(&[(system, request)])?.wait()?;
        Ok(leases.pop().expect("one part, one lease"))
    }

    /// Leases resources for several systems at once, all or nothing: while
    /// it waits, none of the parts is held. The gang is served at the
    /// highest priority among its parts and waits at most the shortest wait
    /// timeout among them. Returns one lease per part, in order.
    ///
    /// # Errors
    /// As [`Orchestrator::allocate_resources`], for any part.
    pub fn allocate_gang(
        &self,
        parts: &[(&str, &ResourceRequest)],
    ) -> Result<Vec<Lease>, ResourceError> {
        self.request_resources(parts)?.wait()
    }

    /// Queues a request (one part, or several as a gang) without waiting: the
    /// returned [`PendingLease`] can be waited for, polled as a `Future`, or
    /// cancelled (dropping it cancels it too).
    ///
    /// # Errors
    /// The rejections that need no waiting: exceeds capacity or quota,
    /// unknown dimension or system, no parts, closed orchestrator — and a
    /// request with a zero wait timeout that does not fit now.
    pub fn request_resources(
        &self,
        parts: &[(&str, &ResourceRequest)],
    ) -> Result<PendingLease, ResourceError> {
        self.check_open_resources()?;
        self.inner.env.alloc.request(parts)
    }

    /// Sets (or with `None` removes) what each workflow step of `system`
    /// leases while it runs. A step asks only when it is ready to run, waits
    /// parked (holding no worker), and releases the lease when its attempt
    /// ends in any state; a step whose request is rejected fails with the
    /// reason.
    ///
    /// # Errors
    /// Unknown system, closed orchestrator.
    pub fn set_step_resources(
        &self,
        system: &str,
        request: Option<ResourceRequest>,
    ) -> Result<(), RegistryError> {
        self.check_open_registry()?;
        let slots = {
            let reg = self.inner.registry.read();
            reg.node(reg.index(system)?).slots.clone()
        };
        slots.set_step_request(request);
        Ok(())
    }

    /// Capacity, allocated and free per dimension; group quotas; every lease
    /// with its holder, amounts, age and TTL; every waiter with its request
    /// and why it waits, in policy order.
    pub fn resource_status(&self) -> ResourceStatus {
        self.inner.env.alloc.status()
    }

    /// Plans (and with `apply`, carries out): reclaiming leases past their TTL
    /// and leases idle (not touched) for longer than the orchestrator's idle
    /// period; rebalancing toward fair shares by preempting a preemptible
    /// lease of an over-share system of the same class for each waiter of an
    /// under-share one; and resizing per-system concurrency limits of
    /// workflow steps — up by half when parked steps waited a mean of 1 ms or
    /// more for a slot since the last change, down to twice the peak running
    /// count after 30 s without a change when the peak stayed below half the
    /// limit, never below 1.
    ///
    /// # Errors
    /// Closed orchestrator (only with `apply`; a dry run always answers).
    pub fn optimize_resources(&self, apply: bool) -> Result<ResourcePlan, ResourceError> {
        if apply {
            self.check_open_resources()?;
        }
        let now = Instant::now();
        let leases = self.inner.env.alloc.plan(now);
        let resizes = self.concurrency_resizes(now);
        let mut plan = ResourcePlan {
            actions: leases.iter().map(|(a, _)| a.clone()).collect(),
            applied: apply,
        };
        plan.actions.extend(resizes.iter().map(|(a, _)| a.clone()));
        if apply {
            self.inner.env.alloc.carry_out(&leases);
            for (action, slots) in &resizes {
                if let ResourceAction::ResizeConcurrency { to, .. } = action {
                    for w in slots.set_limit(Some(*to)) {
                        self.inner.env.start_waiter(w);
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Proposed concurrency limit changes, with the slots to change.
    fn concurrency_resizes(
        &self,
        now: Instant,
    ) -> Vec<(ResourceAction, std::sync::Arc<SystemSlots>)> {
        let reg = self.inner.registry.read();
        let mut out = Vec::new();
        for idx in reg.indices() {
            let node = reg.node(idx);
            let Some(limit) = node.slots.limit() else {
                continue;
            };
            let w = node.slots.window();
            let Some(since) = w.since else { continue };
            let mean_wait = if w.waits > 0 {
                w.wait / w.waits
            } else {
                Duration::ZERO
            };
            let (to, reason) = if w.waits > 0 && mean_wait >= GROW_AFTER_WAIT {
                let to = limit.saturating_add(limit.div_ceil(2));
                (
                    to,
                    format!(
                        "{} steps waited a mean of {} for a slot (peak {} waiting, {} running)",
                        w.waits,
                        humantime::format_duration(round_us(mean_wait)),
                        w.max_waiting,
                        w.max_running
                    ),
                )
            } else if now.saturating_duration_since(since) >= STABILIZATION
                && w.max_running.saturating_mul(2) < limit
            {
                let to = w.max_running.saturating_mul(2).max(LIMIT_FLOOR);
                (
                    to,
                    format!(
                        "at most {} of {limit} slots used in the last {}",
                        w.max_running,
                        humantime::format_duration(Duration::from_secs(
                            now.saturating_duration_since(since).as_secs()
                        ))
                    ),
                )
            } else {
                continue;
            };
            if to != limit {
                out.push((
                    ResourceAction::ResizeConcurrency {
                        system: node.name.to_string(),
                        from: limit,
                        to,
                        reason,
                    },
                    node.slots.clone(),
                ));
            }
        }
        out
    }

    fn check_open_resources(&self) -> Result<(), ResourceError> {
        if self.is_closed() {
            Err(ResourceError::Closed)
        } else {
            Ok(())
        }
    }
}

fn round_us(d: Duration) -> Duration {
    Duration::from_micros(d.as_micros() as u64)
}
