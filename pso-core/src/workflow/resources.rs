//! Resource leases of workflow steps.
//!
//! A system may declare a request that each of its operation steps leases
//! while it runs (`SystemSpec::step_resources`,
//! `Orchestrator::set_step_resources`). A step asks for it only once it is
//! ready to run — its predecessors are done, it holds its concurrency slot,
//! its condition holds — and never while it waits on upstream steps. A step
//! whose request does not fit at once is *parked*: it holds no worker, and
//! the allocator's grant (or rejection, or the request's wait timeout)
//! queues its job again. The lease is released when the attempt ends, in any
//! state; a retry asks again.
//!
//! # Invariants
//! * A step has at most one entry in the run's lease table at a time: a
//!   waiting request, or an outcome its next job consumes (leases held while
//!   it runs, or the error that fails it).
//! * Every path that ends an attempt goes through `give_back`, which drops
//!   the step's entry (releasing what it holds) — so a lease never outlives
//!   its attempt, and a cancelled run withdraws every waiting request.
//! * Nothing is dropped or completed while the table's lock is held (a
//!   release can grant another step of the same run, whose callback takes
//!   that lock).
//! * Fan-out children take no step leases (their parent's attempt holds its
//!   own while it runs).

use super::run::{LEASE_READY, RunInner, SLOT_HELD};
use crate::allocator::{Lease, PendingLease, ResourceError};
use crate::model::HandlerError;
use crate::sync::Ordering;

/// A step's entry in its run's lease table.
pub(crate) enum StepLease {
    /// Asked, not yet decided.
    Waiting(PendingLease),
    /// Decided: held while the step runs, or why it cannot run.
    Ready(Result<Vec<Lease>, ResourceError>),
}

/// What [`RunInner::step_lease`] decided.
pub(super) enum LeaseStep {
    /// The step holds its lease (or needs none): run it.
    Go,
    /// Parked until the allocator decides; the parked request owns the step.
    Parked,
    /// The request was rejected: fail the step with this.
    Failed(HandlerError),
}

fn failure(system: &str, e: &ResourceError) -> HandlerError {
    HandlerError::failed(format!("resources for a step of {system}: {e}"))
}

impl RunInner {
    /// Takes the lease step `i` of system `sys` needs before running. With
    /// `ready`, the decision is already in the table (this is the job the
    /// allocator's decision queued).
    #[cold]
    pub(super) fn step_lease(&self, i: u32, sys: u32, ready: bool, slot_held: bool) -> LeaseStep {
        let system = &self.wf.systems[sys as usize];
        if ready {
            let mut table = self.leases.lock();
            if let Some(StepLease::Ready(Ok(_))) = table.get(&i) {
                return LeaseStep::Go; // it stays in the table while the step runs
            }
            let entry = table.remove(&i);
            drop(table);
            return match entry {
                Some(StepLease::Ready(Err(e))) => LeaseStep::Failed(failure(&system.name, &e)),
                // Withdrawn (the run is stopping; the caller checked that first)
                // or, impossibly, still waiting: never run unleased.
                _ => LeaseStep::Failed(failure(
                    &system.name,
                    &ResourceError::Cancelled {
                        system: system.name.to_string(),
                    },
                )),
            };
        }
        let Some(req) = system.slots.step_request() else {
            return LeaseStep::Go;
        };
        let mut pending = match self.env.alloc.request(&[(&system.name, &*req)]) {
            Ok(p) => p,
            Err(e) => return LeaseStep::Failed(failure(&system.name, &e)),
        };
        self.leased.store(true, Ordering::Relaxed);
        match pending.try_take() {
            Some(Ok(leases)) => {
                self.leases.lock().insert(i, StepLease::Ready(Ok(leases)));
                LeaseStep::Go
            }
            Some(Err(e)) => LeaseStep::Failed(failure(&system.name, &e)),
            None => {
                self.park_on(i, pending, slot_held);
                LeaseStep::Parked
            }
        }
    }

    /// Parks step `i` on its waiting request: the allocator's decision
    /// replaces the entry with the outcome and queues the step's job again.
    fn park_on(&self, i: u32, pending: PendingLease, slot_held: bool) {
        let slot = pending.slot();
        self.leases.lock().insert(i, StepLease::Waiting(pending));
        let run = self.arc();
        let arg = i | LEASE_READY | if slot_held { SLOT_HELD } else { 0 };
        slot.on_done(Box::new(move || {
            let entry = run.leases.lock().remove(&i);
            let outcome = match entry {
                Some(StepLease::Waiting(mut p)) => p.try_take(),
                Some(StepLease::Ready(r)) => Some(r),
                None => None, // withdrawn by a stop: the job resolves it
            };
            if let Some(outcome) = outcome {
                run.leases.lock().insert(i, StepLease::Ready(outcome));
            }
            run.env.resume(&run, arg);
        }));
    }

    /// Releases whatever step `i`'s entry holds (its attempt ended).
    #[inline]
    pub(super) fn drop_lease(&self, i: u32) {
        if self.leased.load(Ordering::Relaxed) {
            let entry = self.leases.lock().remove(&i);
            drop(entry);
        }
    }

    /// Withdraws every waiting request (the run is stopping); each parked
    /// step's job is queued again and resolves it.
    pub(super) fn withdraw_lease_waits(&self) {
        if !self.leased.load(Ordering::Relaxed) {
            return;
        }
        let waiting: Vec<PendingLease> = {
            let mut t = self.leases.lock();
            let steps: Vec<u32> = t
                .iter()
                .filter(|(_, e)| matches!(e, StepLease::Waiting(_)))
                .map(|(&s, _)| s)
                .collect();
            steps
                .into_iter()
                .filter_map(|s| match t.remove(&s) {
                    Some(StepLease::Waiting(p)) => Some(p),
                    _ => None,
                })
                .collect()
        };
        // Cancelling completes each request, whose callback queues its step.
        for p in waiting {
            p.cancel();
        }
    }
}
