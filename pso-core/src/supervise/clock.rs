//! The clock supervision runs on: real time (the orchestrator's timer
//! thread), or a [`VirtualClock`] that moves only when a test advances it, so
//! health probes, backoff, restart intensity, flapping and alerts are tested
//! deterministically and without sleeping.
//!
//! # Virtual time
//! `advance(d)` moves time forward in steps: it runs every callback due up to
//! the target, in due order, on the calling thread, *including* callbacks
//! that those callbacks schedule within the window. Callbacks run with no
//! clock lock held. Time never moves backwards.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::scheduler::{Timer, TimerId};
use crate::sync::{Arc, Mutex};

type Callback = Box<dyn FnOnce() + Send>;

/// A clock that moves only when told to. Cheap to clone (all clones are one
/// clock). Give it to [`crate::OrchestratorBuilder::virtual_clock`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let clock = pso_core::VirtualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// ```
#[derive(Clone)]
pub struct VirtualClock {
    inner: Arc<VirtualInner>,
}

struct VirtualInner {
    base: Instant,
    state: Mutex<VirtualState>,
    /// Serializes `advance` calls (a callback may not advance the clock).
    advancing: Mutex<()>,
}

#[derive(Default)]
struct VirtualState {
    offset: Duration,
    next_id: u64,
    pending: BTreeMap<(Instant, u64), Callback>,
}

impl fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("VirtualClock")
            .field("elapsed", &st.offset)
            .field("pending", &st.pending.len())
            .finish()
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualClock {
    /// A clock standing at the moment it was made.
    pub fn new() -> Self {
        VirtualClock {
            inner: Arc::new(VirtualInner {
                base: Instant::now(),
                state: Mutex::new(VirtualState::default()),
                advancing: Mutex::new(()),
            }),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.inner.base + self.inner.state.lock().offset
    }

    /// Virtual time elapsed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.inner.state.lock().offset
    }

    /// Number of callbacks waiting for their time.
    pub fn pending(&self) -> usize {
        self.inner.state.lock().pending.len()
    }

    /// Moves time forward by `by`, running everything that falls due on the
    /// way, in order, on this thread.
    pub fn advance(&self, by: Duration) {
        let _one = self.inner.advancing.lock();
        let target = {
            let st = self.inner.state.lock();
            self.inner.base + st.offset + by
        };
        loop {
            let due = {
                let mut st = self.inner.state.lock();
                match st.pending.keys().next().copied() {
                    Some(key) if key.0 <= target => {
                        st.offset = st.offset.max(key.0 - self.inner.base);
                        st.pending.remove(&key)
                    }
                    _ => {
                        st.offset = target - self.inner.base;
                        None
                    }
                }
            };
            match due {
                Some(f) => {
                    let _ = crate::unwind::catch(f);
                }
                None => return,
            }
        }
    }

    fn schedule(&self, at: Instant, f: Callback) -> u64 {
        let mut st = self.inner.state.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.pending.insert((at, id), f);
        id
    }

    fn cancel(&self, at: Instant, id: u64) -> bool {
        self.inner.state.lock().pending.remove(&(at, id)).is_some()
    }
}

/// A scheduled callback of a [`Clock`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scheduled {
    Real(TimerId),
    Virtual(Instant, u64),
}

/// Real time through the orchestrator's timer, or a virtual clock.
#[derive(Clone)]
pub(crate) enum Clock {
    Real(Arc<Timer>),
    Virtual(VirtualClock),
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real(_) => Instant::now(),
            Clock::Virtual(v) => v.now(),
        }
    }

    /// Runs `f` at `at` (on the timer thread, or inside `advance`). `None`
    /// if the timer is shut down.
    pub(crate) fn schedule(
        &self,
        at: Instant,
        f: impl FnOnce() + Send + 'static,
    ) -> Option<Scheduled> {
        match self {
            Clock::Real(t) => t.schedule(at, f).map(Scheduled::Real),
            Clock::Virtual(v) => Some(Scheduled::Virtual(at, v.schedule(at, Box::new(f)))),
        }
    }

    /// Runs `f` after `after`.
    pub(crate) fn after(
        &self,
        after: Duration,
        f: impl FnOnce() + Send + 'static,
    ) -> Option<Scheduled> {
        let at = self.now() + after;
        self.schedule(at, f)
    }

    pub(crate) fn cancel(&self, s: Scheduled) -> bool {
        match (self, s) {
            (Clock::Real(t), Scheduled::Real(id)) => t.cancel(id),
            (Clock::Virtual(v), Scheduled::Virtual(at, id)) => v.cancel(at, id),
            _ => false,
        }
    }

    /// Whether time is virtual (work then runs inline, deterministically).
    pub(crate) fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn advance_runs_due_callbacks_in_order_including_rescheduled_ones() {
        let v = VirtualClock::new();
        let c = Clock::Virtual(v.clone());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for (ms, tag) in [(30u64, "c"), (10, "a"), (20, "b"), (500, "late")] {
            let log = log.clone();
            c.after(Duration::from_millis(ms), move || {
                log.lock().unwrap().push(tag)
            });
        }
        // A callback that reschedules itself every 25 ms.
        let ticks = std::sync::Arc::new(AtomicUsize::new(0));
        fn tick(c: Clock, ticks: std::sync::Arc<AtomicUsize>) {
            ticks.fetch_add(1, Ordering::SeqCst);
            let c2 = c.clone();
            c.after(Duration::from_millis(25), move || tick(c2, ticks));
        }
        let (c2, t2) = (c.clone(), ticks.clone());
        c.after(Duration::from_millis(25), move || tick(c2, t2));
        let t0 = v.now();
        v.advance(Duration::from_millis(100));
        assert_eq!(*log.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(ticks.load(Ordering::SeqCst), 4, "at 25, 50, 75 and 100 ms");
        assert_eq!(v.now() - t0, Duration::from_millis(100));
        let s = c
            .after(Duration::from_millis(1), || panic!("cancelled"))
            .unwrap();
        assert!(c.cancel(s));
        v.advance(Duration::from_secs(1));
        assert_eq!(log.lock().unwrap().last(), Some(&"late"));
    }
}
