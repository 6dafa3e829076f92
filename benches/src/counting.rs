//! A counting global allocator, for memory-per-node figures.
//!
//! A bench binary installs it with `#[global_allocator]`. It forwards every
//! call to [`System`] and, only while [`allocated`] runs, also keeps the live
//! byte count and its peak; outside that window the cost is one relaxed load
//! per call. The counters are process-wide, so a measurement is only
//! meaningful while no other thread allocates (idle, parked workers).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

#[inline]
fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        let now = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counting touches only atomics
// and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with
        // this layout (the caller's contract).
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System`; the caller upholds the rest.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// What [`allocated`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    /// Bytes allocated and not freed (negative if more was freed than allocated).
    pub retained: isize,
    /// The highest live total above the start.
    pub peak: isize,
}

/// Runs `f` while counting. Only allocations made through [`CountingAlloc`]
/// (installed as the global allocator) are seen; without it both figures are 0.
///
/// # Examples
/// ```
/// // In a doctest the counting allocator is not installed: nothing is seen.
/// let (m, v) = pso_benches::allocated(|| vec![0u8; 1000]);
/// assert_eq!((m.retained, v.len()), (0, 1000));
/// ```
pub fn allocated<O>(f: impl FnOnce() -> O) -> (Allocated, O) {
    LIVE.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f();
    COUNTING.store(false, Ordering::SeqCst);
    let m = Allocated {
        retained: LIVE.load(Ordering::Relaxed),
        peak: PEAK.load(Ordering::Relaxed),
    };
    (m, out)
}
