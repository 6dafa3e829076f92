//! The one place pso-core gets its synchronization primitives from.
//!
//! Every other module imports atomics, locks, `Arc` and threads from here, so a
//! `--cfg loom` build can swap in loom's model-checked versions and check *our*
//! protocols (dependency hand-off, claim vs. cancel, park/unpark) without touching
//! the code that uses them. The non-loom build re-exports `parking_lot` locks
//! (no poisoning) and `std` atomics.

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
/// loom has no `OnceLock`; the std one is used in both builds (only for
/// lazily created, never reset caches).
pub(crate) use std::sync::OnceLock;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(not(loom))]
pub(crate) use std::thread;

/// For process-wide id counters in `static`s: always `std`'s (loom's atomics
/// cannot be built in a `const` context). Never part of a protocol.
pub(crate) use std::sync::atomic::AtomicU64 as StaticAtomicU64;

// Reference counts are not one of our protocols, and loom's `Arc` has no
// `Weak`, no unsized coercion (`Arc<str>`, `Arc<dyn Fn>`) and no `Arc<Self>`
// receivers: loom builds keep `std`'s.
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(loom)]
pub(crate) use loom::thread;
#[cfg(loom)]
pub(crate) use loom_shim::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
#[cfg(loom)]
pub(crate) use std::sync::Arc;

/// loom's locks wrapped to look like parking_lot's (no `Result`, no poisoning).
#[cfg(loom)]
mod loom_shim {
    use std::time::{Duration, Instant};

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
        #[allow(dead_code)]
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);
    pub(crate) type RwLockReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
    impl<T> RwLock<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::sync::RwLock::new(v))
        }
        pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap()
        }
        pub(crate) fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap()
        }
    }

    /// parking_lot-shaped condition variable; timeouts are modelled as spurious
    /// wake-ups, which is what loom can explore.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);
    #[derive(Debug)]
    pub(crate) struct WaitTimeoutResult(bool);
    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }
    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            replace_guard(guard, |g| self.0.wait(g).unwrap());
        }
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            replace_guard(guard, |g| self.0.wait(g).unwrap());
            WaitTimeoutResult(false)
        }
        pub(crate) fn wait_for<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _timeout: Duration,
        ) -> WaitTimeoutResult {
            replace_guard(guard, |g| self.0.wait(g).unwrap());
            WaitTimeoutResult(false)
        }
        pub(crate) fn notify_one(&self) -> bool {
            self.0.notify_one();
            true
        }
        pub(crate) fn notify_all(&self) -> usize {
            self.0.notify_all();
            0
        }
    }

    fn replace_guard<'a, T>(
        slot: &mut MutexGuard<'a, T>,
        f: impl FnOnce(MutexGuard<'a, T>) -> MutexGuard<'a, T>,
    ) {
        // SAFETY: `slot` is a valid, initialized guard; we move it out, hand it to
        // `f` (which returns a guard for the same mutex) and write that back before
        // anyone can observe the slot. If `f` panics the process is a loom model
        // run, which aborts the whole execution anyway.
        unsafe {
            let g = std::ptr::read(slot);
            std::ptr::write(slot, f(g));
        }
    }
}
