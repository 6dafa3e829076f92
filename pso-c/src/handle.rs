//! Generation-checked orchestrator handles.
//!
//! C never holds a pointer into Rust memory. It holds a [`pso_orchestrator`]:
//! a slot index (low 32 bits) and that slot's generation (high 32 bits) in one
//! `u64`. The table maps live handles to an [`Orchestrator`].
//!
//! # Invariants
//! * A slot's generation is never 0, so the all-zero handle is never valid.
//! * Closing a handle empties its slot and bumps the generation, so the old
//!   handle — including copies of it, and after the slot is reused — never
//!   matches again: a double close or a use after close is
//!   `PSO_ERR_STALE_HANDLE`, never undefined behaviour.
//! * Calls do not run under the table lock: [`get`] clones the orchestrator (an
//!   `Arc` increment) and the call runs on that clone. A handle closed by
//!   another thread meanwhile only makes the core refuse further work with
//!   `Closed`; the clone keeps everything the running call touches alive.
//! * Nothing is dropped under the table lock: [`remove`] hands the
//!   orchestrator back to the caller, because dropping the last clone joins
//!   the workers and runs `free_user_data` callbacks, which may call back into
//!   PSO.

#![forbid(unsafe_code)]

use std::sync::{Mutex, MutexGuard, PoisonError};

use pso_core::Orchestrator;

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

impl pso_orchestrator {
    fn new(index: u32, generation: u32) -> Self {
        pso_orchestrator {
            id: (u64::from(generation) << 32) | u64::from(index),
        }
    }

    fn index(self) -> usize {
        (self.id & u64::from(u32::MAX)) as usize
    }

    fn generation(self) -> u32 {
        (self.id >> 32) as u32
    }
}

struct Slot {
    generation: u32,
    orch: Option<Orchestrator>,
}

struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Table {
    const fn new() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    fn insert(&mut self, orch: Orchestrator) -> Result<pso_orchestrator, Orchestrator> {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.orch = Some(orch);
            return Ok(pso_orchestrator::new(index, slot.generation));
        }
        let Ok(index) = u32::try_from(self.slots.len()) else {
            return Err(orch);
        };
        self.slots.push(Slot {
            generation: 1,
            orch: Some(orch),
        });
        Ok(pso_orchestrator::new(index, 1))
    }

    fn live(&self, h: pso_orchestrator) -> Option<&Slot> {
        self.slots
            .get(h.index())
            .filter(|s| s.generation == h.generation() && s.orch.is_some())
    }

    fn get(&self, h: pso_orchestrator) -> Option<Orchestrator> {
        self.live(h)?.orch.clone()
    }

    fn remove(&mut self, h: pso_orchestrator) -> Option<Orchestrator> {
        self.live(h)?;
        let slot = &mut self.slots[h.index()];
        slot.generation = next_generation(slot.generation);
        self.free.push(h.index() as u32);
        slot.orch.take()
    }
}

/// The generation after `g`, skipping 0 when it wraps.
fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        g => g,
    }
}

static TABLE: Mutex<Table> = Mutex::new(Table::new());

/// The table. Nothing panics while holding the lock, and every mutation
/// leaves the table consistent, so poisoning is ignored.
fn table() -> MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stores `orch` and returns its new handle, or gives it back if all 2^32
/// slots are live.
pub(crate) fn insert(orch: Orchestrator) -> Result<pso_orchestrator, Orchestrator> {
    table().insert(orch)
}

/// A clone of the orchestrator behind `h`, if `h` is live.
pub(crate) fn get(h: pso_orchestrator) -> Option<Orchestrator> {
    table().get(h)
}

/// Retires `h` and returns its orchestrator (for the caller to close and drop
/// outside the lock), or `None` if `h` is not live.
pub(crate) fn remove(h: pso_orchestrator) -> Option<Orchestrator> {
    let mut t = table();
    t.remove(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orch() -> Orchestrator {
        Orchestrator::builder().workers(1).build().unwrap()
    }

    #[test]
    fn zero_and_unknown_handles_are_stale() {
        assert!(get(pso_orchestrator::default()).is_none());
        assert!(remove(pso_orchestrator::default()).is_none());
        assert!(get(pso_orchestrator { id: u64::MAX }).is_none());
    }

    #[test]
    fn close_makes_every_copy_stale_even_after_reuse() {
        let a = insert(orch()).unwrap();
        let copy = a;
        assert!(get(a).is_some());
        let o = remove(a).unwrap();
        o.close();
        assert!(get(copy).is_none());
        assert!(remove(copy).is_none(), "double close");
        // Other tests run in parallel on the same table, so reuse of `a`'s
        // exact slot is not guaranteed; whatever slot b gets, a stays stale.
        let b = insert(orch()).unwrap();
        assert_ne!(a, b);
        assert!(get(a).is_none());
        assert!(get(b).is_some());
        remove(b).unwrap().close();
    }

    #[test]
    fn a_reused_slot_gets_a_new_generation() {
        let mut t = Table::new();
        let a = t.insert(orch()).unwrap();
        t.remove(a).unwrap().close();
        let b = t.insert(orch()).unwrap();
        assert_eq!(a.index(), b.index(), "the free slot is reused");
        assert_ne!(a.generation(), b.generation());
        assert!(t.get(a).is_none() && t.remove(a).is_none());
        assert!(t.get(b).is_some());
        t.remove(b).unwrap().close();
        assert!(t.get(b).is_none());
        assert_eq!(next_generation(u32::MAX), 1, "generation skips 0");
        assert_eq!(next_generation(1), 2);
    }

    #[test]
    fn concurrent_get_and_remove_never_hand_out_a_closed_slot_twice() {
        let h = insert(orch()).unwrap();
        let removed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        let _ = get(h);
                        if let Some(o) = remove(h) {
                            removed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            o.close();
                        }
                    }
                });
            }
        });
        assert_eq!(removed.into_inner(), 1);
        assert!(get(h).is_none());
    }
}
