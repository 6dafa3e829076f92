//! Lease handles: [`Lease`] (released on drop) and [`PendingLease`] (a queued
//! request, to wait for, poll as a `Future`, or cancel).
//!
//! # Hand-off to a waiter
//! A queued request's outcome lands in its [`WaitSlot`], which moves
//! `Waiting -> Done -> Taken` (never back). Whoever removes a slot from the
//! allocator's table (a grant, a rejection, a cancel, a timeout, close) does so
//! under the allocator lock and then calls `complete` on it outside the lock.
//! So a [`PendingLease`] whose withdrawal finds its slot already removed knows
//! an outcome is on its way: it waits for `Done` (a short window) and takes it,
//! returning or releasing a grant. Every grant is therefore either returned as
//! a [`Lease`] or released: none is left in a slot nobody reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::decide::Id;
use super::{Allocator, PreemptFn, ResourceError};
use crate::sync::{Condvar, Mutex};

enum SlotState {
    Waiting {
        wakers: Vec<Waker>,
        on_done: Option<Box<dyn FnOnce() + Send>>,
    },
    Done(Result<Vec<Id>, ResourceError>),
    Taken,
}

/// Where a queued request's outcome lands.
pub(crate) struct WaitSlot {
    state: Mutex<SlotState>,
    cv: Condvar,
}

impl WaitSlot {
    pub(crate) fn new() -> Self {
        WaitSlot {
            state: Mutex::new(SlotState::Waiting {
                wakers: Vec::new(),
                on_done: None,
            }),
            cv: Condvar::new(),
        }
    }

    /// Records the outcome (once) and wakes every waiter.
    pub(crate) fn complete(&self, outcome: Result<Vec<Id>, ResourceError>) {
        let (wakers, on_done) = {
            let mut st = self.state.lock();
            match std::mem::replace(&mut *st, SlotState::Done(outcome)) {
                SlotState::Waiting { wakers, on_done } => (wakers, on_done),
                other => {
                    *st = other; // already completed: keep the first outcome
                    return;
                }
            }
        };
        self.cv.notify_all();
        for w in wakers {
            w.wake();
        }
        if let Some(f) = on_done {
            let _ = crate::unwind::catch(f);
        }
    }

    /// Runs `f` once the outcome is known (at once if it already is).
    pub(crate) fn on_done(&self, f: Box<dyn FnOnce() + Send>) {
        let mut st = self.state.lock();
        if let SlotState::Waiting { on_done, .. } = &mut *st {
            *on_done = Some(f);
            return;
        }
        drop(st);
        let _ = crate::unwind::catch(f);
    }

    fn take(&self) -> Option<Result<Vec<Id>, ResourceError>> {
        let mut st = self.state.lock();
        match std::mem::replace(&mut *st, SlotState::Taken) {
            SlotState::Done(r) => Some(r),
            other => {
                *st = other;
                None
            }
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) {
        let mut st = self.state.lock();
        while let SlotState::Waiting { .. } = &*st {
            match deadline {
                Some(d) => {
                    if self.cv.wait_until(&mut st, d).timed_out() {
                        return;
                    }
                }
                None => self.cv.wait(&mut st),
            }
        }
    }

    fn register(&self, waker: &Waker) -> bool {
        let mut st = self.state.lock();
        match &mut *st {
            SlotState::Waiting { wakers, .. } => {
                if !wakers.iter().any(|w| w.will_wake(waker)) {
                    wakers.push(waker.clone());
                }
                false
            }
            _ => true,
        }
    }
}

/// Resources held by a system. Released when dropped.
pub struct Lease {
    alloc: Allocator,
    id: Id,
    system: StdArc<str>,
    released: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id.serial())
            .field("system", &self.system)
            .finish()
    }
}

impl Lease {
    pub(crate) fn new(alloc: Allocator, id: Id, system: StdArc<str>) -> Lease {
        Lease {
            alloc,
            id,
            system,
            released: false,
        }
    }

    /// The lease's id (as in `resource_status()`).
    pub fn id(&self) -> u64 {
        self.id.serial()
    }

    /// The holding system.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// The amounts held, by dimension (empty once released or revoked).
    pub fn amounts(&self) -> Vec<(String, u64)> {
        let st = self.alloc.inner.state.lock();
        st.core
            .leases
            .get(self.id)
            .map(|l| {
                l.part
                    .amounts
                    .iter()
                    .map(|&(d, a)| (st.core.dims[d as usize].name.to_string(), a))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether it is still held (not released, expired or revoked).
    pub fn is_held(&self) -> bool {
        !self.released
            && self
                .alloc
                .inner
                .state
                .lock()
                .core
                .leases
                .get(self.id)
                .is_some()
    }

    /// Marks the lease as in use now (idle leases can be reclaimed by
    /// `optimize_resources`).
    pub fn touch(&self) {
        if let Some(l) = self.alloc.inner.state.lock().core.leases.get_mut(self.id) {
            l.last_touch = Instant::now();
        }
    }

    /// Calls `f` if the lease is chosen for preemption (once, on a worker
    /// thread, with the grace period left). Replaces an earlier callback; on
    /// a lease already gone, `f` is dropped unused.
    pub fn on_preempt(&self, f: impl FnOnce(super::PreemptNotice) + Send + 'static) {
        let f: PreemptFn = Box::new(f);
        // Whatever is replaced (or `f` itself, if the lease is gone) is dropped
        // after unlocking: it may own a lease whose drop takes the lock.
        let unused = {
            let mut st = self.alloc.inner.state.lock();
            match st.core.leases.get_mut(self.id) {
                Some(l) => l.on_preempt.replace(f),
                None => Some(f),
            }
        };
        drop(unused);
    }

    /// Time left before the TTL revokes it.
    pub fn expires_in(&self) -> Option<Duration> {
        let st = self.alloc.inner.state.lock();
        st.core
            .leases
            .get(self.id)
            .and_then(|l| l.expires)
            .map(|e| e.saturating_duration_since(Instant::now()))
    }

    /// Releases the resources now. Returns false if the lease was already
    /// gone (expired or revoked).
    pub fn release(mut self) -> bool {
        self.released = true;
        self.alloc.release(self.id)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.released {
            self.released = true;
            self.alloc.release(self.id);
        }
    }
}

/// A request that may still be waiting.
pub struct PendingLease {
    alloc: Allocator,
    token: u64,
    waiter: Option<Id>,
    slot: StdArc<WaitSlot>,
    systems: Vec<StdArc<str>>,
    since: Instant,
    deadline: Option<Instant>,
    done: bool,
}

impl std::fmt::Debug for PendingLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLease")
            .field("systems", &self.systems)
            .field("done", &self.done)
            .finish()
    }
}

impl PendingLease {
    pub(crate) fn new(
        alloc: Allocator,
        token: u64,
        waiter: Option<Id>,
        slot: StdArc<WaitSlot>,
        systems: Vec<StdArc<str>>,
        since: Instant,
        deadline: Option<Instant>,
    ) -> Self {
        PendingLease {
            alloc,
            token,
            waiter,
            slot,
            systems,
            since,
            deadline,
            done: false,
        }
    }

    fn leases(
        &mut self,
        outcome: Result<Vec<Id>, ResourceError>,
    ) -> Result<Vec<Lease>, ResourceError> {
        self.done = true;
        let ids = outcome?;
        Ok(ids
            .into_iter()
            .zip(self.systems.iter())
            .map(|(id, s)| Lease::new(self.alloc.clone(), id, s.clone()))
            .collect())
    }

    /// Whether the outcome is known.
    pub fn is_ready(&self) -> bool {
        !matches!(&*self.slot.state.lock(), SlotState::Waiting { .. })
    }

    /// Waits for the outcome: the leases (one per part), or why not.
    pub fn wait(mut self) -> Result<Vec<Lease>, ResourceError> {
        self.slot.wait_until(None);
        let outcome = self.slot.take().unwrap_or_else(|| Err(self.cancelled()));
        self.leases(outcome)
    }

    /// Waits at most `timeout`; on expiry the request is withdrawn and the
    /// error explains what it was waiting for.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Vec<Lease>, ResourceError> {
        let deadline = Instant::now().checked_add(timeout);
        self.slot.wait_until(deadline);
        if let Some(outcome) = self.slot.take() {
            return self.leases(outcome);
        }
        self.withdraw_timed_out()
    }

    fn withdraw_timed_out(&mut self) -> Result<Vec<Lease>, ResourceError> {
        let reason = match self.waiter {
            Some(w) => {
                let st = self.alloc.inner.state.lock();
                st.core
                    .waiters
                    .get(w)
                    .map(|_| st.core.reason(w).reason)
                    .unwrap_or_default()
            }
            None => String::new(),
        };
        if let Some(w) = self.waiter
            && !self.alloc.cancel(self.token, w, &self.systems[0])
        {
            // Granted (or rejected) just now: take it. Whoever removed the
            // slot completes it right after unlocking; wait for that.
            self.slot.wait_until(None);
            if let Some(outcome) = self.slot.take() {
                return self.leases(outcome);
            }
        }
        let _ = self.slot.take();
        self.done = true;
        Err(ResourceError::TimedOut {
            system: self.systems[0].to_string(),
            waited: self.since.elapsed(),
            reason,
        })
    }

    /// The outcome if known, without waiting.
    pub fn try_take(&mut self) -> Option<Result<Vec<Lease>, ResourceError>> {
        let outcome = self.slot.take()?;
        Some(self.leases(outcome))
    }

    /// Withdraws the request. Returns false if it was already decided.
    pub fn cancel(mut self) -> bool {
        self.withdraw()
    }

    fn withdraw(&mut self) -> bool {
        if self.done {
            return false;
        }
        self.done = true;
        match self.waiter {
            Some(w) if self.alloc.cancel(self.token, w, &self.systems[0]) => {
                let _ = self.slot.take();
                true
            }
            _ => {
                // Decided meanwhile: release anything granted. The thread
                // that removed the slot from the allocator completes it just
                // after unlocking; without this wait a grant landing in that
                // window would be left in a slot nobody reads (a leak).
                self.slot.wait_until(None);
                if let Some(Ok(ids)) = self.slot.take() {
                    for id in ids {
                        self.alloc.release(id);
                    }
                }
                false
            }
        }
    }

    fn cancelled(&self) -> ResourceError {
        ResourceError::Cancelled {
            system: self.systems[0].to_string(),
        }
    }

    /// Where the outcome lands (for callers that park on it).
    pub(crate) fn slot(&self) -> StdArc<WaitSlot> {
        self.slot.clone()
    }

    /// The wait deadline of the request, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl Future for PendingLease {
    type Output = Result<Vec<Lease>, ResourceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.done {
            return Poll::Ready(Err(self.cancelled()));
        }
        if self.slot.register(cx.waker())
            && let Some(outcome) = self.slot.take()
        {
            return Poll::Ready(self.leases(outcome));
        }
        Poll::Pending
    }
}

impl Drop for PendingLease {
    fn drop(&mut self) {
        let _ = self.withdraw();
    }
}

#[cfg(all(test, loom))]
#[path = "loom_lease.rs"]
mod loom_lease;
