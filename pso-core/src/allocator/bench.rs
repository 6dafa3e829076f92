//! The decision core, exposed (hidden from the docs) for the allocator
//! benchmark: it measures decisions without locks, threads or clocks in the
//! way. Not part of the API; it may change at any time.

use std::time::Instant;

use smallvec::SmallVec;

use super::ResourceError;
use super::decide::{self, Core, Effects, Id, Part, Policy};

/// A lease or waiter of a [`DecisionCore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(Id);

/// A bare decision core with simulated time frozen at creation.
pub struct DecisionCore {
    core: Core,
    now: Instant,
    fx: Effects,
}

impl std::fmt::Debug for DecisionCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCore")
            .field("leases", &self.core.leases.len())
            .finish()
    }
}

impl DecisionCore {
    /// A core with these dimensions and capacities (indices in this order).
    pub fn new(dims: &[(&str, u64)]) -> Self {
        let policy = Policy {
            aging_step: std::time::Duration::from_secs(1),
            grace: std::time::Duration::from_secs(1),
        };
        let mut c = DecisionCore {
            core: Core::new(policy),
            now: Instant::now(),
            fx: Effects::default(),
        };
        for (d, cap) in dims {
            c.core.set_capacity(d, *cap, &mut c.fx, c.now);
        }
        c
    }

    /// The index of consumer `name` (created if new).
    pub fn consumer(&mut self, name: &str) -> u32 {
        self.core.consumer(name)
    }

    /// Sets a consumer's weight.
    pub fn set_weight(&mut self, consumer: u32, weight: f64) {
        self.core
            .set_weight(consumer, weight, &mut self.fx, self.now);
    }

    /// One request of one part: `Ok(lease)` if granted now, `Err(waiter)` if
    /// queued. `amounts` are `(dimension index, amount)`.
    ///
    /// # Panics
    /// If the request could never fit.
    pub fn request(
        &mut self,
        consumer: u32,
        amounts: &[(u32, u64)],
        class: u8,
        token: u64,
    ) -> Result<Handle, Handle> {
        let a = decide::amounts(amounts.to_vec());
        let part = Part {
            consumer,
            group: None,
            amounts: a,
            preemptible: false,
            ttl: None,
        };
        let parts: SmallVec<[Part; 1]> = smallvec::smallvec![part];
        match self
            .core
            .request(parts, class.min(4), token, self.now, &mut self.fx)
        {
            Ok(Ok(ids)) => Ok(Handle(ids[0])),
            Ok(Err(w)) => Err(Handle(w)),
            Err(e) => panic!("{}", ResourceError::to_string(&e)),
        }
    }

    /// Releases a lease; returns whether it was held.
    pub fn release(&mut self, lease: Handle) -> bool {
        self.core.release(lease.0, self.now, &mut self.fx).is_some()
    }

    /// Grants made since the last call: `(token, lease)` of one-part requests.
    pub fn take_granted(&mut self, out: &mut Vec<(u64, Handle)>) {
        out.extend(
            self.fx
                .granted
                .drain(..)
                .map(|(t, ids)| (t, Handle(ids[0]))),
        );
        self.fx.expiring.clear();
        self.fx.revoking.clear();
        self.fx.rejected.clear();
    }

    /// Number of live leases and of waiting requests.
    pub fn counts(&self) -> (usize, usize) {
        (self.core.leases.len(), self.core.waiters.len())
    }
}
