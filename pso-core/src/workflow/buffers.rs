//! Per-run step storage, reused across runs of one workflow.
//!
//! A run needs, per step, a state word, a dependency word, a ready time and a
//! result slot. Allocating and initializing those for every run of a large
//! workflow would cost more than running empty steps, so a workflow keeps a
//! few finished runs' buffers and a new run resets only the two words per
//! step that need it. Slots are never initialized up front: each is written
//! exactly once, in full, by the thread that moves its step to a terminal
//! state, and read only after that (see `run`'s memory-ordering notes). When a
//! finished run is dropped its slots are dropped and the buffers go back to
//! the workflow.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;

use crate::model::HandlerError;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::value::Value;

/// How many idle buffer sets a workflow keeps.
const KEEP: usize = 4;

/// A terminal step's output or error. (Attempts live in the state word;
/// timing in [`StepTimes`].)
pub(crate) struct Slot {
    pub(crate) output: Value,
    pub(crate) error: Option<Box<HandlerError>>,
}

impl Slot {
    /// A slot with no output.
    pub(crate) fn unrun(error: Option<HandlerError>) -> Slot {
        Slot {
            output: Value::Null,
            error: error.map(Box::new),
        }
    }

    /// Whether dropping this slot frees anything.
    pub(crate) fn needs_drop(&self) -> bool {
        self.error.is_some()
            || !matches!(
                self.output,
                Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_)
            )
    }
}

/// A step's timing, recorded only when the run has timing on (raw clock
/// ticks; relaxed atomics: written by the step's owner, read after `done`).
#[derive(Default)]
pub(crate) struct StepTimes {
    /// When it became ready.
    pub(crate) ready: AtomicU64,
    /// From ready to the start of its last attempt.
    pub(crate) queued: AtomicU64,
    /// Run time of its last attempt (at least 1 once an attempt finished;
    /// 0: none did).
    pub(crate) ran: AtomicU64,
    /// The worker that ran it, plus one (0: none).
    pub(crate) worker: AtomicU32,
}

/// A slot written once by the thread that accounts its step.
pub(crate) struct SlotCell(UnsafeCell<MaybeUninit<Slot>>);

// SAFETY: a slot is written once, by the thread that won its step's terminal
// transition and before that step's accounting (Release); it is read only by
// threads that observed the accounting (Acquire), and dropped only when the
// run is finished and unreachable. No two threads access it concurrently
// with a write.
unsafe impl Sync for SlotCell {}

impl SlotCell {
    pub(crate) fn uninit() -> SlotCell {
        SlotCell(UnsafeCell::new(MaybeUninit::uninit()))
    }

    /// Writes the slot.
    ///
    /// # Safety
    /// The caller won the terminal transition of this slot's step (so it is the
    /// only accessor) and the slot was not written since the buffers were
    /// handed to this run.
    pub(crate) unsafe fn write(&self, slot: Slot) {
        // SAFETY: exclusive access per the contract; writing over uninit
        // memory does not drop anything.
        unsafe { (*self.0.get()).write(slot) };
    }

    /// Reads the slot.
    ///
    /// # Safety
    /// The slot was written and the caller observed that write's accounting.
    pub(crate) unsafe fn get(&self) -> &Slot {
        // SAFETY: initialized and not concurrently written, per the contract.
        unsafe { (*self.0.get()).assume_init_ref() }
    }

    /// Mutable access to a written slot.
    ///
    /// # Safety
    /// The slot was written, and the caller is its only accessor (for fan-out:
    /// every child is terminal and accounted).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_mut(&self) -> &mut Slot {
        // SAFETY: per the contract.
        unsafe { (*self.0.get()).assume_init_mut() }
    }

    /// Drops the written value, leaving the slot uninitialized.
    ///
    /// # Safety
    /// The slot was written and nothing else references it.
    pub(crate) unsafe fn drop_value(&self) {
        // SAFETY: per the contract.
        unsafe { (*self.0.get()).assume_init_drop() };
    }
}

/// The per-step arrays of one run.
pub(crate) struct RunBuffers {
    pub(crate) state: Box<[AtomicU32]>,
    pub(crate) deps: Box<[AtomicU64]>,
    pub(crate) slots: Box<[SlotCell]>,
    pub(crate) times: Box<[StepTimes]>,
}

impl RunBuffers {
    fn new(n: usize) -> RunBuffers {
        RunBuffers {
            state: (0..n).map(|_| AtomicU32::new(0)).collect(),
            deps: (0..n).map(|_| AtomicU64::new(0)).collect(),
            slots: (0..n).map(|_| SlotCell::uninit()).collect(),
            times: (0..n).map(|_| StepTimes::default()).collect(),
        }
    }

    /// Prepares the arrays for a new run.
    fn reset(&self, initial_state: u32, pred_count: &[u32], timing: bool, start_raw: u64) {
        for s in self.state.iter() {
            s.store(initial_state, Ordering::Relaxed);
        }
        for (d, &c) in self.deps.iter().zip(pred_count) {
            d.store(c as u64, Ordering::Relaxed);
        }
        if timing {
            for t in self.times.iter() {
                t.ready.store(start_raw, Ordering::Relaxed);
                t.queued.store(0, Ordering::Relaxed);
                t.ran.store(0, Ordering::Relaxed);
                t.worker.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Drops every slot value.
    ///
    /// # Safety
    /// Every slot was written (the run is finished) and nothing references them.
    pub(crate) unsafe fn drop_slots(&self) {
        for s in self.slots.iter() {
            // SAFETY: per the contract.
            unsafe { s.drop_value() };
        }
    }
}

/// Idle buffer sets of one workflow.
#[derive(Default)]
pub(crate) struct BufferPool {
    idle: crate::sync::Mutex<Vec<RunBuffers>>,
}

impl BufferPool {
    /// Buffers for a run of `pred_count.len()` steps, ready to use.
    pub(crate) fn take(
        &self,
        pred_count: &[u32],
        initial_state: u32,
        timing: bool,
        start_raw: u64,
    ) -> RunBuffers {
        let bufs = self
            .idle
            .lock()
            .pop()
            .unwrap_or_else(|| RunBuffers::new(pred_count.len()));
        bufs.reset(initial_state, pred_count, timing, start_raw);
        bufs
    }

    /// Takes back a finished run's buffers (slots already dropped).
    pub(crate) fn give(&self, bufs: RunBuffers) {
        let mut idle = self.idle.lock();
        if idle.len() < KEEP {
            idle.push(bufs);
        }
    }
}
