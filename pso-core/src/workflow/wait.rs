//! Waiting for a run: blocking (with a short spin first, and helping on a
//! worker thread instead of blocking it) or through a waker.

use std::task::Waker;
use std::time::{Duration, Instant};

use super::run::RunInner;
use crate::sync::Ordering;

impl RunInner {
    /// Waits until the run is done or `deadline` passes.
    pub(crate) fn wait_done(&self, deadline: Option<Instant>) -> bool {
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        // A short spin catches short runs without a sleep/wake round trip.
        let spin_until = Instant::now() + Duration::from_micros(30);
        let mut k = 0u32;
        while !self.done.load(Ordering::Acquire) {
            k += 1;
            if k.is_multiple_of(64) {
                let now = Instant::now();
                if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                    break;
                }
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        let pool = &self.env.pool;
        if pool.on_worker() {
            // Help instead of blocking a worker the run may need.
            loop {
                if self.done.load(Ordering::Acquire) {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                if !pool.help_once() {
                    let mut g = self.waiters.lock();
                    if !self.done.load(Ordering::Acquire) {
                        let _ = self.cv.wait_for(&mut g, Duration::from_micros(200));
                    }
                }
            }
        }
        let mut g = self.waiters.lock();
        while !self.done.load(Ordering::Acquire) {
            match deadline {
                Some(d) => {
                    if self.cv.wait_until(&mut g, d).timed_out() {
                        return self.done.load(Ordering::Acquire);
                    }
                }
                None => self.cv.wait(&mut g),
            }
        }
        true
    }

    /// Registers a waker; returns true if the run is already done.
    pub(crate) fn register_waker(&self, waker: &Waker) -> bool {
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        let mut w = self.waiters.lock();
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        if !w.iter().any(|x| x.will_wake(waker)) {
            w.push(waker.clone());
        }
        false
    }
}
