//! A timer thread for delayed work: retry back-off, step timeouts, run
//! deadlines.
//!
//! Entries live in a `BTreeMap` keyed by `(due, id)`; the thread sleeps on a
//! condition variable until the earliest is due, removes it and runs its
//! callback outside the lock. Callbacks must be short (they enqueue work or
//! flip a state); they run behind [`crate::unwind::catch`]. The thread starts
//! on first use, so an orchestrator that never schedules anything has none.
//! At shutdown pending callbacks are dropped without running.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::sync::{Arc, Condvar, Mutex, thread};

/// Identifies a scheduled callback, for [`Timer::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TimerId(Instant, u64);

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    entries: BTreeMap<TimerId, Callback>,
    next_id: u64,
    shutdown: bool,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    cv: Condvar,
}

/// See the module docs.
pub(crate) struct Timer {
    inner: Arc<Inner>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    name: String,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("pending", &self.inner.state.lock().entries.len())
            .finish()
    }
}

impl Timer {
    pub(crate) fn new(name: &str) -> Timer {
        Timer {
            inner: Arc::new(Inner::default()),
            thread: Mutex::new(None),
            name: format!("{name}-timer"),
        }
    }

    /// Runs `f` on the timer thread at (or soon after) `at`. Returns `None`
    /// after shutdown (and drops `f`).
    pub(crate) fn schedule(
        &self,
        at: Instant,
        f: impl FnOnce() + Send + 'static,
    ) -> Option<TimerId> {
        let id = {
            let mut st = self.inner.state.lock();
            if st.shutdown {
                return None;
            }
            st.next_id += 1;
            let id = TimerId(at, st.next_id);
            let first = st.entries.keys().next().is_none_or(|k| id < *k);
            st.entries.insert(id, Box::new(f));
            if first {
                self.inner.cv.notify_one();
            }
            id
        };
        self.ensure_thread();
        Some(id)
    }

    /// Removes a pending callback without running it. Returns whether it was
    /// still pending.
    pub(crate) fn cancel(&self, id: TimerId) -> bool {
        let removed = self.inner.state.lock().entries.remove(&id);
        removed.is_some()
    }

    /// Number of pending callbacks.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.inner.state.lock().entries.len()
    }

    fn ensure_thread(&self) {
        let mut t = self.thread.lock();
        if t.is_some() {
            return;
        }
        let inner = self.inner.clone();
        // If the thread cannot start, callbacks stay pending until shutdown;
        // callers see their timeouts as never firing, which is the best we
        // can do without threads.
        *t = thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || timer_main(inner))
            .ok();
    }

    /// Stops the thread; pending callbacks are dropped unrun. Idempotent.
    pub(crate) fn shutdown(&self) {
        let pending = {
            let mut st = self.inner.state.lock();
            st.shutdown = true;
            self.inner.cv.notify_all();
            std::mem::take(&mut st.entries)
        };
        drop(pending);
        if let Some(h) = self.thread.lock().take()
            && h.thread().id() != thread::current().id()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn timer_main(inner: Arc<Inner>) {
    let mut st = inner.state.lock();
    loop {
        if st.shutdown {
            return;
        }
        let now = Instant::now();
        match st.entries.keys().next().copied() {
            Some(id) if id.0 <= now => {
                let f = st.entries.remove(&id).expect("key just seen");
                drop(st);
                let _ = crate::unwind::catch(f);
                st = inner.state.lock();
            }
            Some(id) => {
                let _ = inner.cv.wait_until(&mut st, id.0);
            }
            None => inner.cv.wait(&mut st),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn fires_in_due_order_and_cancels() {
        let t = Timer::new("t");
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        for (ms, tag) in [(30u64, 3), (10, 1), (20, 2)] {
            let tx = tx.clone();
            t.schedule(now + Duration::from_millis(ms), move || {
                tx.send(tag).unwrap()
            })
            .unwrap();
        }
        let tx2 = tx.clone();
        let id = t
            .schedule(now + Duration::from_millis(15), move || {
                tx2.send(99).unwrap()
            })
            .unwrap();
        assert!(t.cancel(id));
        assert!(!t.cancel(id));
        let got: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, [1, 2, 3]);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn shutdown_drops_pending_and_refuses_new() {
        let t = Timer::new("t");
        let flag = Arc::new(());
        let f2 = flag.clone();
        t.schedule(Instant::now() + Duration::from_secs(3600), move || drop(f2))
            .unwrap();
        assert_eq!(Arc::strong_count(&flag), 2);
        t.shutdown();
        assert_eq!(Arc::strong_count(&flag), 1, "pending callback dropped");
        assert!(t.schedule(Instant::now(), || {}).is_none());
    }

    #[test]
    fn a_panicking_callback_does_not_stop_the_timer() {
        let t = Timer::new("t");
        let (tx, rx) = mpsc::channel();
        t.schedule(Instant::now(), || panic!("callback panics"))
            .unwrap();
        t.schedule(Instant::now() + Duration::from_millis(5), move || {
            tx.send(()).unwrap()
        })
        .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
