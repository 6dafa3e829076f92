//! Generation-checked handles: orchestrators, workflows, runs, leases,
//! subscriptions, direct-channel ends, meshes and state watches.
//!
//! C never holds a pointer into Rust memory. It holds a handle such as
//! [`pso_orchestrator`]: a slot index (low 32 bits) and that slot's generation
//! (high 32 bits) in one `u64`. One table per handle type maps live handles to
//! their Rust value ([`Orchestrator`], [`Workflow`], [`RunHandle`], a
//! [`LeaseCell`] holding a [`Lease`], and the cells of `crate::ffi::hub`,
//! `crate::ffi::direct` and `crate::ffi::state`).
//!
//! # Invariants
//! * A slot's generation is never 0, so the all-zero handle is never valid.
//! * Releasing a handle empties its slot and bumps the generation, so the old
//!   handle — including copies of it, and after the slot is reused — never
//!   matches again: a double release or a use after release is
//!   `PSO_ERR_STALE_HANDLE`, never undefined behaviour. The tables are
//!   separate, so a workflow handle passed where a run is expected is stale
//!   too (unless it happens to equal a live run's handle; the types keep C
//!   from mixing them up without a cast).
//! * Calls do not run under a table lock: [`Handles::get`] clones the value
//!   (an `Arc` increment) and the call runs on that clone. A handle released
//!   by another thread meanwhile only makes the core refuse further work
//!   (`Closed` for an orchestrator); the clone keeps everything the running
//!   call touches alive.
//! * Nothing is dropped under a table lock: [`Handles::remove`] hands the
//!   value back to the caller, because dropping the last clone may join
//!   worker threads and run `free_user_data` callbacks, which may call back
//!   into PSO.

#![forbid(unsafe_code)]

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pso_core::{Lease, Mesh, Orchestrator, RunHandle, Workflow};

use crate::ffi::direct::EndCell;
use crate::ffi::hub::SubCell;
use crate::ffi::state::WatchCtl;

/// An orchestrator handle: an opaque value, copied freely.
///
/// Made by `pso_orchestrator_new`, released by `pso_orchestrator_close`. A
/// closed handle (and every copy of it) gives `PSO_ERR_STALE_HANDLE`, even
/// after a new orchestrator is created. The all-zero value is never a valid
/// handle, so `pso_orchestrator o = {0};` is a safe "no orchestrator" value.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct pso_orchestrator {
    /// Opaque; do not interpret or construct.
    pub id: u64,
}

/// A built workflow handle: an opaque value, copied freely.
///
/// Made by `pso_workflow_load` or `pso_workflow_load_str`, released by
/// `pso_workflow_free`; after that it (and every copy) gives
/// `PSO_ERR_STALE_HANDLE`. The all-zero value is never a valid handle. A
/// workflow belongs to the orchestrator that built it.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct pso_workflow {
    /// Opaque; do not interpret or construct.
    pub id: u64,
}

/// A run handle: an opaque value, copied freely.
///
/// Made by `pso_coordinate_systems`, released by `pso_run_free` (which does
/// not stop the run); after that it (and every copy) gives
/// `PSO_ERR_STALE_HANDLE`. It stays valid after its orchestrator is closed.
/// The all-zero value is never a valid handle.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct pso_run {
    /// Opaque; do not interpret or construct.
    pub id: u64,
}

/// A lease handle: an opaque value, copied freely.
///
/// Made by `pso_allocate_resources` or `pso_allocate_gang`, released by
/// `pso_lease_release` (which also gives the resources back); after that it
/// (and every copy) gives `PSO_ERR_STALE_HANDLE`. It stays valid after its
/// orchestrator is closed, and after the lease expired or was preempted
/// (`pso_lease_held` then says 0): only `pso_lease_release` retires it.
/// `id` is the handle, not the lease id of `pso_resource_status` (that is
/// `pso_lease_id`). The all-zero value is never a valid handle.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct pso_lease {
    /// Opaque; do not interpret or construct.
    pub id: u64,
}

/// A hub subscription handle: an opaque value, copied freely.
///
/// Made by `pso_subscribe` or `pso_subscribe_pull`, released by
/// `pso_unsubscribe`; after that it (and every copy) gives
/// `PSO_ERR_STALE_HANDLE`. It stays valid after its orchestrator is closed
/// (the subscription itself has ended then). The all-zero value is never a
/// valid handle.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct pso_subscription {
    /// Opaque; do not interpret or construct.
    pub id: u64,
}

/// One side of a direct channel: an opaque value, copied freely.
///
/// Made by `pso_direct_endpoint`, released by `pso_direct_end_free` (which
/// also closes the channel for both sides); after that it (and every copy)
/// gives `PSO_ERR_STALE_HANDLE`. It stays valid after the channel closed
/// (sends and receives then give `PSO_ERR_CLOSED`) and after its
/// orchestrator is closed. The all-zero value is never a valid handle.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct pso_direct_end {
    /// Opaque; do not interpret or construct.
    pub id: u64,
}

/// A mesh scope: an opaque value, copied freely.
///
/// Made by `pso_mesh_begin`, ended by `pso_mesh_end`; after that it (and
/// every copy) gives `PSO_ERR_STALE_HANDLE`. The all-zero value is never a
/// valid handle.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct pso_mesh {
    /// Opaque; do not interpret or construct.
    pub id: u64,
}

/// A state-store watch: an opaque value, copied freely.
///
/// Made by `pso_state_watch`, released by `pso_watch_close`; after that it
/// (and every copy) gives `PSO_ERR_STALE_HANDLE`. It stays valid after its
/// orchestrator is closed (the watch itself has ended then). The all-zero
/// value is never a valid handle.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct pso_watch {
    /// Opaque; do not interpret or construct.
    pub id: u64,
}

/// A handle type: a `u64` id naming a slot of its own table.
pub(crate) trait Handle: Copy {
    /// What it is called in messages ("orchestrator").
    const KIND: &'static str;
    /// The function that issues it (for messages).
    const ISSUER: &'static str;
    /// The function that releases it (for messages).
    const RELEASER: &'static str;
    /// The handle with this id.
    fn from_id(id: u64) -> Self;
    /// Its id.
    fn id(self) -> u64;
}

macro_rules! handle_type {
    ($t:ident, $kind:literal, $issuer:literal, $releaser:literal) => {
        impl Handle for $t {
            const KIND: &'static str = $kind;
            const ISSUER: &'static str = $issuer;
            const RELEASER: &'static str = $releaser;
            fn from_id(id: u64) -> Self {
                $t { id }
            }
            fn id(self) -> u64 {
                self.id
            }
        }
    };
}

handle_type!(
    pso_orchestrator,
    "orchestrator",
    "pso_orchestrator_new",
    "closed"
);
handle_type!(
    pso_workflow,
    "workflow",
    "pso_workflow_load or pso_workflow_load_str",
    "freed"
);
handle_type!(pso_run, "run", "pso_coordinate_systems", "freed");
handle_type!(
    pso_lease,
    "lease",
    "pso_allocate_resources or pso_allocate_gang",
    "released"
);

handle_type!(
    pso_subscription,
    "subscription",
    "pso_subscribe or pso_subscribe_pull",
    "unsubscribed"
);
handle_type!(
    pso_direct_end,
    "direct channel end",
    "pso_direct_endpoint",
    "freed"
);
handle_type!(pso_mesh, "mesh", "pso_mesh_begin", "ended");
handle_type!(pso_watch, "watch", "pso_state_watch", "closed");

fn make_id(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn index_of(id: u64) -> usize {
    (id & u64::from(u32::MAX)) as usize
}

fn generation_of(id: u64) -> u32 {
    (id >> 32) as u32
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

struct Table<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

impl<T: Clone> Table<T> {
    const fn new() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    fn insert(&mut self, value: T) -> Result<u64, T> {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            return Ok(make_id(index, slot.generation));
        }
        let Ok(index) = u32::try_from(self.slots.len()) else {
            return Err(value);
        };
        self.slots.push(Slot {
            generation: 1,
            value: Some(value),
        });
        Ok(make_id(index, 1))
    }

    fn live(&self, id: u64) -> Option<&Slot<T>> {
        self.slots
            .get(index_of(id))
            .filter(|s| s.generation == generation_of(id) && s.value.is_some())
    }

    fn get(&self, id: u64) -> Option<T> {
        self.live(id)?.value.clone()
    }

    fn values_where(&self, f: impl Fn(&T) -> bool) -> Vec<T> {
        self.slots
            .iter()
            .filter_map(|s| s.value.as_ref())
            .filter(|v| f(v))
            .cloned()
            .collect()
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        self.live(id)?;
        let slot = &mut self.slots[index_of(id)];
        slot.generation = next_generation(slot.generation);
        self.free.push(index_of(id) as u32);
        slot.value.take()
    }
}

/// The generation after `g`, skipping 0 when it wraps.
fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        g => g,
    }
}

/// The live handles of one type `H`, each naming a `T`.
pub(crate) struct Handles<H, T> {
    table: Mutex<Table<T>>,
    _handle: PhantomData<fn() -> H>,
}

impl<H: Handle, T: Clone> Handles<H, T> {
    const fn new() -> Self {
        Handles {
            table: Mutex::new(Table::new()),
            _handle: PhantomData,
        }
    }

    /// The table. Nothing panics while holding the lock, and every mutation
    /// leaves the table consistent, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Table<T>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `value` and returns its new handle, or gives it back if all
    /// 2^32 slots are live.
    pub(crate) fn insert(&self, value: T) -> Result<H, T> {
        self.lock().insert(value).map(H::from_id)
    }

    /// A clone of the value behind `h`, if `h` is live.
    pub(crate) fn get(&self, h: H) -> Option<T> {
        self.lock().get(h.id())
    }

    /// Clones of the live values for which `f` is true (`f` runs under the
    /// table lock: it must only look at the value).
    pub(crate) fn values_where(&self, f: impl Fn(&T) -> bool) -> Vec<T> {
        self.lock().values_where(f)
    }

    /// Retires `h` and returns its value (for the caller to drop outside the
    /// lock), or `None` if `h` is not live.
    pub(crate) fn remove(&self, h: H) -> Option<T> {
        let mut t = self.lock();
        t.remove(h.id())
    }
}

/// Open orchestrators.
pub(crate) static ORCHESTRATORS: Handles<pso_orchestrator, Orchestrator> = Handles::new();
/// Built workflows not freed yet.
pub(crate) static WORKFLOWS: Handles<pso_workflow, Workflow> = Handles::new();
/// Runs not freed yet.
pub(crate) static RUNS: Handles<pso_run, RunHandle> = Handles::new();
/// Leases not released yet (through their handle).
pub(crate) static LEASES: Handles<pso_lease, Arc<LeaseCell>> = Handles::new();
/// Subscriptions not unsubscribed yet (through their handle).
pub(crate) static SUBSCRIPTIONS: Handles<pso_subscription, Arc<SubCell>> = Handles::new();
/// Direct-channel ends not freed yet.
pub(crate) static DIRECT_ENDS: Handles<pso_direct_end, Arc<EndCell>> = Handles::new();
/// Mesh scopes not ended yet.
pub(crate) static MESHES: Handles<pso_mesh, Arc<Mesh>> = Handles::new();
/// State watches not closed yet.
pub(crate) static WATCHES: Handles<pso_watch, Arc<WatchCtl>> = Handles::new();

/// The value behind a lease handle: the core [`Lease`] until
/// `pso_lease_release` takes it.
///
/// A call on a lease clones the `Arc` out of the table and then locks the
/// cell, so a release by another thread in between leaves it empty: that
/// call fails with `PSO_ERR_STALE_HANDLE`, like a call made after the
/// release. The lock is held only around one core `Lease` getter (which takes
/// the allocator's lock briefly and never calls back into C); a release takes
/// the lease out and gives it back to the allocator *after* unlocking, because
/// a release can grant waiters and fire preemption callbacks, which may call
/// back into PSO with this very handle.
#[derive(Debug)]
pub(crate) struct LeaseCell(Mutex<Option<Lease>>);

impl LeaseCell {
    pub(crate) fn new(lease: Lease) -> Arc<LeaseCell> {
        Arc::new(LeaseCell(Mutex::new(Some(lease))))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Lease>> {
        // Nothing panics under this lock but the core getters, which leave
        // the lease as it was; poisoning is ignored.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the lease, or returns `None` if it was taken (released).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Lease) -> R) -> Option<R> {
        self.lock().as_ref().map(f)
    }

    /// Takes the lease out (once); the caller releases it, unlocked.
    pub(crate) fn take(&self) -> Option<Lease> {
        self.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orch() -> Orchestrator {
        Orchestrator::builder().workers(1).build().unwrap()
    }

    #[test]
    fn zero_and_unknown_handles_are_stale() {
        let zero = pso_orchestrator::default();
        assert!(ORCHESTRATORS.get(zero).is_none());
        assert!(ORCHESTRATORS.remove(zero).is_none());
        assert!(
            ORCHESTRATORS
                .get(pso_orchestrator { id: u64::MAX })
                .is_none()
        );
        assert!(WORKFLOWS.get(pso_workflow::default()).is_none());
        assert!(RUNS.remove(pso_run::default()).is_none());
    }

    #[test]
    fn close_makes_every_copy_stale_even_after_reuse() {
        let a = ORCHESTRATORS.insert(orch()).unwrap();
        let copy = a;
        assert!(ORCHESTRATORS.get(a).is_some());
        let o = ORCHESTRATORS.remove(a).unwrap();
        o.close();
        assert!(ORCHESTRATORS.get(copy).is_none());
        assert!(ORCHESTRATORS.remove(copy).is_none(), "double close");
        // Other tests run in parallel on the same table, so reuse of `a`'s
        // exact slot is not guaranteed; whatever slot b gets, a stays stale.
        let b = ORCHESTRATORS.insert(orch()).unwrap();
        assert_ne!(a, b);
        assert!(ORCHESTRATORS.get(a).is_none());
        assert!(ORCHESTRATORS.get(b).is_some());
        ORCHESTRATORS.remove(b).unwrap().close();
    }

    #[test]
    fn a_reused_slot_gets_a_new_generation() {
        let mut t = Table::new();
        let a = t.insert(orch()).unwrap();
        t.remove(a).unwrap().close();
        let b = t.insert(orch()).unwrap();
        assert_eq!(index_of(a), index_of(b), "the free slot is reused");
        assert_ne!(generation_of(a), generation_of(b));
        assert!(t.get(a).is_none() && t.remove(a).is_none());
        assert!(t.get(b).is_some());
        t.remove(b).unwrap().close();
        assert!(t.get(b).is_none());
        assert_eq!(next_generation(u32::MAX), 1, "generation skips 0");
        assert_eq!(next_generation(1), 2);
    }

    #[test]
    fn concurrent_get_and_remove_never_hand_out_a_closed_slot_twice() {
        let h = ORCHESTRATORS.insert(orch()).unwrap();
        let removed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        let _ = ORCHESTRATORS.get(h);
                        if let Some(o) = ORCHESTRATORS.remove(h) {
                            removed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            o.close();
                        }
                    }
                });
            }
        });
        assert_eq!(removed.into_inner(), 1);
        assert!(ORCHESTRATORS.get(h).is_none());
    }

    #[test]
    fn handle_types_know_their_names() {
        assert_eq!(pso_workflow::from_id(7).id(), 7);
        assert_eq!(<pso_run as Handle>::KIND, "run");
        assert_eq!(<pso_orchestrator as Handle>::RELEASER, "closed");
    }
}
