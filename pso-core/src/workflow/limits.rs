//! Per-system concurrency limits for workflow steps.
//!
//! A system with a limit lets at most `limit` of its steps run at once, across
//! every run. A step that finds no free slot is parked in the system's FIFO
//! queue — it holds no worker — and the step that frees a slot hands it over
//! directly to the first waiter (the running count does not drop and rise
//! again, so nobody can jump the queue). Systems without a limit take no lock.
//!
//! # Invariants
//! * `running <= limit` whenever a limit is set (raising the limit releases
//!   waiters at once; lowering it lets running steps finish).
//! * A parked step is in exactly one queue and its bookkeeping is owned by
//!   that queue entry (the entry holds a strong reference to its run).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::sync::Arc as StdArc;

use crate::allocator::ResourceRequest;
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, Mutex, Ordering};
use crate::workflow::run::RunInner;

/// A parked step.
pub(crate) struct Waiter {
    pub(crate) run: Arc<RunInner>,
    pub(crate) step: u32,
}

/// Measurements since the last change of the limit, for `optimize_resources`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    /// When the window started (the last resize, or the first measurement).
    pub(crate) since: Option<Instant>,
    pub(crate) max_running: u32,
    pub(crate) max_waiting: u32,
    /// Total queue wait of steps that got a slot after parking.
    pub(crate) wait: Duration,
    pub(crate) waits: u32,
}

#[derive(Default)]
struct Queue {
    running: u32,
    waiting: VecDeque<(Waiter, Instant)>,
    window: Window,
}

impl Queue {
    fn observe(&mut self) {
        let w = &mut self.window;
        w.since.get_or_insert_with(Instant::now);
        w.max_running = w.max_running.max(self.running);
        w.max_waiting = w.max_waiting.max(self.waiting.len() as u32);
    }

    fn handed_over(&mut self, parked: Instant) {
        self.window.wait += parked.elapsed();
        self.window.waits += 1;
    }
}

/// The slots of one system.
#[derive(Default)]
pub(crate) struct SystemSlots {
    limit: AtomicU32,
    queue: Mutex<Queue>,
    /// What each of the system's steps leases while it runs (see
    /// `workflow::resources`); `has_request` lets steps skip the lock.
    request: Mutex<Option<StdArc<ResourceRequest>>>,
    has_request: AtomicBool,
    /// Usage, for minimalist mode: live runs that use the system, when it
    /// was last used (ns since [`epoch`]), whether it is pinned.
    runs: AtomicU32,
    last_used: AtomicU64,
    pinned: AtomicBool,
}

/// The origin of `last_used` timestamps.
pub(crate) fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

impl std::fmt::Debug for SystemSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = self.queue.lock();
        f.debug_struct("SystemSlots")
            .field("limit", &self.limit())
            .field("running", &q.running)
            .field("waiting", &q.waiting.len())
            .finish()
    }
}

/// What [`SystemSlots::acquire`] did.
#[must_use]
pub(crate) enum Acquire {
    /// The step holds a slot (or the system has no limit) and may run.
    Granted,
    /// The step was parked; the queue owns it now.
    Parked,
}

impl SystemSlots {
    pub(crate) fn new(limit: Option<u32>) -> Self {
        SystemSlots {
            limit: AtomicU32::new(limit.unwrap_or(0)),
            queue: Mutex::new(Queue::default()),
            request: Mutex::new(None),
            has_request: AtomicBool::new(false),
            runs: AtomicU32::new(0),
            last_used: AtomicU64::new(now_ns()),
            pinned: AtomicBool::new(false),
        }
    }

    /// A run that uses the system started.
    pub(crate) fn run_started(&self) {
        self.runs.fetch_add(1, Ordering::AcqRel);
        self.touch();
    }

    /// A run that used the system ended.
    pub(crate) fn run_ended(&self) {
        self.touch();
        self.runs.fetch_sub(1, Ordering::AcqRel);
    }

    /// Marks the system used now.
    pub(crate) fn touch(&self) {
        self.last_used.store(now_ns(), Ordering::Release);
    }

    /// How long since the system was last used, and whether a run uses it now.
    pub(crate) fn idle(&self) -> (Duration, bool) {
        let last = self.last_used.load(Ordering::Acquire);
        (
            Duration::from_nanos(now_ns().saturating_sub(last)),
            self.runs.load(Ordering::Acquire) > 0,
        )
    }

    /// Whether it is pinned (never deactivated for being idle).
    pub(crate) fn pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    pub(crate) fn set_pinned(&self, pinned: bool) {
        self.pinned.store(pinned, Ordering::Release);
    }

    /// Sets (or clears) the request each step of the system leases.
    pub(crate) fn set_step_request(&self, req: Option<ResourceRequest>) {
        let mut r = self.request.lock();
        self.has_request.store(req.is_some(), Ordering::Release);
        *r = req.map(StdArc::new);
    }

    /// The request each step leases, if any.
    pub(crate) fn step_request(&self) -> Option<StdArc<ResourceRequest>> {
        if !self.has_request.load(Ordering::Acquire) {
            return None;
        }
        self.request.lock().clone()
    }

    /// The limit, if any.
    pub(crate) fn limit(&self) -> Option<u32> {
        match self.limit.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Whether a limit is set (the fast path skips the lock when not).
    pub(crate) fn limited(&self) -> bool {
        self.limit.load(Ordering::Acquire) != 0
    }

    /// Steps running and waiting now.
    pub(crate) fn load(&self) -> (u32, usize) {
        let q = self.queue.lock();
        (q.running, q.waiting.len())
    }

    /// The measurements since the last resize.
    pub(crate) fn window(&self) -> Window {
        self.queue.lock().window
    }

    /// Takes a slot for `waiter`, or parks it.
    pub(crate) fn acquire(&self, waiter: impl FnOnce() -> Waiter) -> Acquire {
        let limit = self.limit.load(Ordering::Acquire);
        if limit == 0 {
            return Acquire::Granted;
        }
        let mut q = self.queue.lock();
        let granted = if q.running < limit {
            q.running += 1;
            Acquire::Granted
        } else {
            q.waiting.push_back((waiter(), Instant::now()));
            Acquire::Parked
        };
        q.observe();
        granted
    }

    /// Gives back a slot taken by [`SystemSlots::acquire`]; returns the waiter
    /// that now holds it, if any (the caller must start it).
    pub(crate) fn release(&self) -> Option<Waiter> {
        if self.limit.load(Ordering::Acquire) == 0 {
            // The limit was removed while the step ran: drain the bookkeeping.
            let mut q = self.queue.lock();
            q.running = q.running.saturating_sub(1);
            return q.waiting.pop_front().map(|(w, _)| w);
        }
        let mut q = self.queue.lock();
        let limit = self.limit.load(Ordering::Acquire);
        if q.running <= limit
            && let Some((w, parked)) = q.waiting.pop_front()
        {
            q.handed_over(parked);
            return Some(w); // hand the slot over
        }
        q.running = q.running.saturating_sub(1);
        None
    }

    /// Changes the limit; returns waiters that may now run (each holds a slot).
    pub(crate) fn set_limit(&self, limit: Option<u32>) -> Vec<Waiter> {
        let mut q = self.queue.lock();
        self.limit.store(limit.unwrap_or(0), Ordering::Release);
        q.window = Window {
            since: Some(Instant::now()),
            ..Window::default()
        };
        let mut out = Vec::new();
        match limit {
            None => out.extend(q.waiting.drain(..).map(|(w, _)| w)),
            Some(l) => {
                while q.running < l {
                    match q.waiting.pop_front() {
                        Some((w, parked)) => {
                            q.handed_over(parked);
                            q.running += 1;
                            out.push(w);
                        }
                        None => break,
                    }
                }
            }
        }
        if limit.is_none() {
            q.running = 0;
        }
        out
    }
}
