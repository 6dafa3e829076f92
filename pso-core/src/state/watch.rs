//! Watches: a bounded queue per watcher, filled by writers in revision
//! order, with catch-up from history when the watcher falls behind.
//!
//! # Protocol (in-memory backend)
//! * Registration happens under the store's write lock: the backlog (retained
//!   changes after the requested revision) is queued first, and the watcher
//!   is added to the store's list before the lock is released, so the first
//!   live event follows the backlog with no gap and no repeat.
//! * Writers, still under the store's write lock, push each selected event.
//!   A queue that holds `watch_capacity` events marks itself *lagged* and
//!   takes no more (taking some would break the order).
//! * The consumer drains the queue; when it is empty and lagged, it takes
//!   the store's read lock (no writer runs), then the queue lock, and queues
//!   the retained changes after the last revision it queued. If they are no
//!   longer retained, the watch ends with [`StateError::Compacted`] instead.
//! * `last` (the revision of the last queued event) only grows; a writer
//!   never queues an event at or below it.
//! * A restore fails every live watch with [`StateError::Closed`] after the
//!   events already queued.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::backend::{Mem, Selector};
use super::{Event, StateError, deadline};
use crate::sync::{Arc, AtomicBool, Condvar, Mutex, Ordering, RwLock};

/// The consumer side of one watch, as a backend provides it.
pub trait WatchSource: Send + fmt::Debug {
    /// The next event, waiting until `deadline` (`None`: no limit). `Ok(None)`
    /// means the deadline passed.
    ///
    /// # Errors
    /// A terminal error: [`StateError::Compacted`] (fell too far behind) or
    /// [`StateError::Closed`].
    fn next(&mut self, deadline: Option<Instant>) -> Result<Option<Event>, StateError>;

    /// Stops the watch; the backend forgets it.
    fn close(&mut self);
}

/// A live watch: yields each selected change after the starting revision
/// exactly once, in revision order. Dropping it ends the watch.
///
/// # Examples
/// ```
/// use pso_core::{StateStore, Value};
/// use std::time::Duration;
/// let store = StateStore::new();
/// let from = store.revision();
/// let mut w = store.watch_prefix("jobs.", from)?;
/// let r = store.put("jobs.1", "queued")?;
/// let e = w.recv_timeout(Duration::from_secs(5))?;
/// assert_eq!((e.revision, &*e.key), (r, "jobs.1"));
/// assert_eq!(e.value.as_deref(), Some(&Value::from("queued")));
/// # Ok::<(), pso_core::StateError>(())
/// ```
pub struct Watcher {
    source: Box<dyn WatchSource>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("source", &self.source)
            .finish()
    }
}

impl Watcher {
    /// Wraps a backend's watch source.
    pub fn from_source(source: Box<dyn WatchSource>) -> Self {
        Watcher { source }
    }

    /// Waits for the next change.
    ///
    /// # Errors
    /// [`StateError::Compacted`] or [`StateError::Closed`] (terminal).
    pub fn recv(&mut self) -> Result<Event, StateError> {
        loop {
            if let Some(e) = self.source.next(None)? {
                return Ok(e);
            }
        }
    }

    /// Waits up to `timeout` for the next change.
    ///
    /// # Errors
    /// [`StateError::Timeout`]; otherwise as [`Watcher::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, StateError> {
        self.source
            .next(Some(deadline(timeout)))?
            .ok_or(StateError::Timeout { after: timeout })
    }

    /// The next change if one is ready.
    ///
    /// # Errors
    /// As [`Watcher::recv`].
    pub fn try_recv(&mut self) -> Result<Option<Event>, StateError> {
        self.source.next(Some(Instant::now()))
    }

    /// Ends the watch.
    pub fn close(&mut self) {
        self.source.close();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.source.close();
    }
}

#[derive(Debug)]
struct Queue {
    events: VecDeque<Event>,
    lagged: bool,
    error: Option<StateError>,
    /// Revision of the last event queued (or the starting revision).
    last: u64,
}

/// The part of a watch shared with the store's writers.
#[derive(Debug)]
pub(crate) struct WatchShared {
    pub(crate) selector: Selector,
    closed: AtomicBool,
    q: Mutex<Queue>,
    cv: Condvar,
}

impl WatchShared {
    pub(crate) fn new(selector: Selector, after: u64, backlog: Vec<Event>) -> Self {
        let last = backlog.last().map_or(after, |e| e.revision);
        WatchShared {
            selector,
            closed: AtomicBool::new(false),
            q: Mutex::new(Queue {
                events: backlog.into(),
                lagged: false,
                error: None,
                last,
            }),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A writer's event (under the store's write lock). Returns `false` if
    /// the watch is closed (the store then forgets it).
    pub(crate) fn push(&self, event: &Event, capacity: usize) -> bool {
        if self.is_closed() {
            return false;
        }
        let mut q = self.q.lock();
        if q.lagged || q.error.is_some() || event.revision <= q.last {
            return true;
        }
        if q.events.len() >= capacity {
            q.lagged = true;
            return true;
        }
        q.events.push_back(event.clone());
        q.last = event.revision;
        drop(q);
        self.cv.notify_one();
        true
    }

    /// Ends the watch with `error` after what is already queued.
    pub(crate) fn fail(&self, error: StateError) {
        let mut q = self.q.lock();
        if q.error.is_none() {
            q.error = Some(error);
        }
        drop(q);
        self.cv.notify_all();
    }
}

/// The in-memory backend's watch source.
#[derive(Debug)]
pub(crate) struct MemWatch {
    mem: Arc<RwLock<Mem>>,
    shared: Arc<WatchShared>,
}

impl MemWatch {
    pub(crate) fn new(mem: Arc<RwLock<Mem>>, shared: Arc<WatchShared>) -> Self {
        MemWatch { mem, shared }
    }

    /// Refills an empty, lagged queue from history (see the module docs).
    fn catch_up(&self) {
        let mem = self.mem.read();
        let mut q = self.shared.q.lock();
        if !q.lagged || !q.events.is_empty() {
            return;
        }
        match mem.changes_after(&self.shared.selector, q.last) {
            Ok(events) => {
                if let Some(e) = events.last() {
                    q.last = e.revision;
                }
                q.events.extend(events);
                q.lagged = false;
            }
            Err(e) => {
                q.error.get_or_insert(e);
            }
        }
    }
}

impl WatchSource for MemWatch {
    fn next(&mut self, deadline: Option<Instant>) -> Result<Option<Event>, StateError> {
        loop {
            let mut q = self.shared.q.lock();
            if let Some(e) = q.events.pop_front() {
                return Ok(Some(e));
            }
            if let Some(err) = &q.error {
                return Err(err.clone());
            }
            if self.shared.is_closed() {
                return Err(StateError::Closed {
                    message: "the watch is closed".into(),
                });
            }
            if q.lagged {
                drop(q);
                self.catch_up();
                continue;
            }
            match deadline {
                Some(d) if Instant::now() >= d => return Ok(None),
                Some(d) => {
                    let _ = self.shared.cv.wait_until(&mut q, d);
                }
                None => self.shared.cv.wait(&mut q),
            }
        }
    }

    fn close(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.cv.notify_all();
    }
}
