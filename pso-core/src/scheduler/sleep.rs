//! Parking for idle workers without lost wake-ups.
//!
//! # Protocol
//! * Submitter: push the job, `fence(SeqCst)`, load `sleepers`; if non-zero,
//!   take the lock and `notify_one`.
//! * Parker: take the lock, `sleepers += 1` (SeqCst), `fence(SeqCst)`, check the
//!   queues; if work appeared, undo and return; else wait on the condvar (which
//!   releases the lock atomically), then `sleepers -= 1`.
//!
//! If the submitter reads `sleepers == 0`, the parker's increment comes later in
//! the SeqCst order, so the parker's check sees the job. If it reads non-zero,
//! it must take the lock to notify, which it cannot do between the parker's
//! check and its wait. Either way the job is not stranded.

use crate::sync::{AtomicUsize, Condvar, Mutex, Ordering, fence};

#[derive(Debug, Default)]
pub(super) struct Sleep {
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Sleep {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock();
            self.cv.notify_one();
        }
    }

    /// Like `notify_one`, without the fence; returns false if nobody sleeps.
    /// Only for pushes to a worker's own deque (see `WorkerRef::wake`).
    pub(super) fn notify_one_relaxed(&self) -> bool {
        if self.sleepers.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let _g = self.lock.lock();
        self.cv.notify_one();
        true
    }

    pub(super) fn notify_all(&self) {
        let _g = self.lock.lock();
        self.cv.notify_all();
    }

    /// Parks until notified, unless `has_work` already returns true.
    pub(super) fn park(&self, has_work: impl Fn() -> bool) {
        let mut g = self.lock.lock();
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !has_work() {
            self.cv.wait(&mut g);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}
