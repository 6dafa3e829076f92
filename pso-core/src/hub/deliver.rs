//! Subscriptions and their delivery: pull receivers, and callback mailboxes
//! scheduled on the worker pool.
//!
//! A callback subscription never runs on the publisher's thread. A publish
//! queues the message; the offer that finds the mailbox idle marks it
//! scheduled and spawns one mailbox job (see [`super::queue`] for the flag
//! protocol). The job takes the callback out of its slot, runs up to
//! [`BATCH`] messages in queue order, puts the callback back and either
//! reschedules itself (more queued; re-spawning instead of looping keeps the
//! pool fair) or clears the flag. So callbacks of one subscription run one at
//! a time, in publish order, and different subscriptions run in parallel.
//!
//! # Callback ownership
//! The callback lives in `slot` while idle and on the mailbox's stack while
//! running. Unsubscribe sets `closed` (atomic, then closes the queue) before
//! it takes the slot; the mailbox checks `closed` between messages and, when
//! returning the callback, under the slot lock. Whoever finds the
//! subscription closed drops the callback, always after releasing every
//! lock (a host finalizer may call back into the hub). After unsubscribe
//! returns no new invocation starts; one already running finishes.
//!
//! # Panics and errors
//! Each invocation runs behind [`crate::unwind::run_handler`]: a panic is
//! counted in `panics`, a returned error in `errors`, and delivery goes on.

#![forbid(unsafe_code)]

use std::fmt;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::message::Message;
use super::queue::{Overflow, SubQueue, TakeEnd, Wait};
use super::status::{EdgeStats, SubscriptionStatus};
use super::tree::Grouped;
use super::{HubError, HubInner};
use crate::metrics::hub::{HubMetrics, TopicRun};
use crate::model::{HandlerError, Priority};
use crate::scheduler::{Job, Pool};
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering, RwLock};

/// Messages a mailbox job delivers before it yields the worker.
pub(crate) const BATCH: usize = 64;

/// A subscription callback. It runs on the hub's worker pool, one message at
/// a time per subscription.
pub(crate) type Callback = Box<dyn FnMut(&Message) -> Result<(), HandlerError> + Send + 'static>;

/// Identifies a subscription within its hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a subscription receives and queues messages.
///
/// # Examples
/// ```
/// use pso_core::{Overflow, SubscribeOptions};
/// let opts = SubscribeOptions::new()
///     .capacity(256)
///     .overflow(Overflow::DropOldest)
///     .queue_group("builders")
///     .owner("PAES");
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    pub(crate) capacity: Option<usize>,
    pub(crate) overflow: Option<Overflow>,
    pub(crate) group: Option<String>,
    pub(crate) owner: Option<String>,
    pub(crate) priority: Priority,
}

impl SubscribeOptions {
    /// The hub's defaults: its queue capacity and overflow policy, no group,
    /// no owner, normal priority.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue capacity (at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// What happens when the queue is full.
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.overflow = Some(policy);
        self
    }

    /// Joins a queue group: each message matching any member goes to one
    /// member only.
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The owning system: names the alert topic
    /// (`pso.alert.<owner>.dropped`) and the receiving end of edge rates.
    pub fn owner(mut self, system: impl Into<String>) -> Self {
        self.owner = Some(system.into());
        self
    }

    /// Priority class of the callback's jobs on the worker pool.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

/// The rate-limited drop alert state of one subscription.
#[derive(Debug, Default)]
struct AlertState {
    /// When the last alert was raised, in ns since the hub's epoch (0: never).
    last_ns: AtomicU64,
    /// `dropped` at that time.
    dropped_then: AtomicU64,
}

/// Counters of one subscription (Relaxed: they are statistics).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// Edge counters of a subscription, by sender id.
type SenderEdges = SmallVec<[(u32, Arc<EdgeStats>); 2]>;

/// The hub's record of one subscription. See the module docs.
pub(crate) struct Sub {
    pub(crate) id: u64,
    pub(crate) pattern: Arc<str>,
    pub(crate) group: Option<Arc<str>>,
    /// Owning system: interned id and name.
    pub(crate) owner: Option<(u32, Arc<str>)>,
    pub(crate) queue: SubQueue,
    pub(crate) class: usize,
    /// `Some` for callback subscriptions; the callback is in the slot while
    /// the mailbox is idle.
    slot: Option<Mutex<Option<Callback>>>,
    closed: AtomicBool,
    pub(crate) counters: Counters,
    alert: AlertState,
    /// Edge counters by sender id, cached so a publish with a sender does
    /// one read lock and a short scan.
    senders: RwLock<SenderEdges>,
    /// The hub's topic and edge metrics.
    metrics: Arc<HubMetrics>,
}

impl fmt::Debug for Sub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sub")
            .field("id", &self.id)
            .field("pattern", &self.pattern)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Grouped for Arc<Sub> {
    fn group(&self) -> Option<&Arc<str>> {
        self.group.as_ref()
    }
}

impl Sub {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        pattern: Arc<str>,
        opts: &SubscribeOptions,
        owner: Option<(u32, Arc<str>)>,
        default_capacity: usize,
        default_policy: Overflow,
        callback: Option<Callback>,
        metrics: Arc<HubMetrics>,
    ) -> Sub {
        Sub {
            id,
            pattern,
            group: opts.group.as_deref().map(Arc::from),
            owner,
            queue: SubQueue::new(
                opts.capacity.unwrap_or(default_capacity),
                opts.overflow.unwrap_or(default_policy),
            ),
            class: opts.priority.rank() as usize,
            slot: callback.map(|c| Mutex::new(Some(c))),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            alert: AlertState::default(),
            senders: RwLock::new(SmallVec::new()),
            metrics,
        }
    }

    /// Counts `msg` handed to this subscription's receiver (metrics on):
    /// on its topic (in `run` if given), on its edge if it has a sender and
    /// this an owner, and its latency if it was sampled. Returns the
    /// delivery time of a sampled message (for [`HubMetrics::handled`]),
    /// else 0.
    #[inline]
    pub(crate) fn note_delivered(&self, msg: &Message, run: Option<&mut TopicRun>) -> u64 {
        if !self.metrics.on() {
            return 0;
        }
        let series = msg.route().series.get();
        let counted = match (run, series) {
            (Some(run), Some(s)) => {
                run.add(s);
                true
            }
            _ => false,
        };
        let series = series.map(|s| &**s);
        match (msg.sender_id(), &self.owner) {
            (Some(s), Some(_)) => {
                let senders = self.senders.read();
                let edge = senders
                    .iter()
                    .find(|(id, _)| *id == s)
                    .map(|(_, e)| &e.series);
                self.metrics.delivered(series, counted, edge, msg.sent())
            }
            _ => self.metrics.delivered(series, counted, None, msg.sent()),
        }
    }

    pub(crate) fn is_callback(&self) -> bool {
        self.slot.is_some()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops delivery: marks it closed, closes the queue and takes the
    /// callback if it is idle. Returns what the caller must drop after
    /// releasing its locks.
    pub(crate) fn close(&self) -> (std::collections::VecDeque<Message>, Option<Callback>) {
        self.closed.store(true, Ordering::Release);
        let left = self.queue.close();
        let cb = self.slot.as_ref().and_then(|s| s.lock().take());
        (left, cb)
    }

    /// Counts a message queued for this subscription from `sender`.
    pub(crate) fn count_edge(&self, sender: u32, hub: &HubInner) {
        let Some((owner, _)) = self.owner else {
            return;
        };
        {
            let senders = self.senders.read();
            if let Some((_, e)) = senders.iter().find(|(s, _)| *s == sender) {
                e.count_routed();
                if hub.metrics.on() {
                    e.series.published();
                }
                return;
            }
        }
        let edge = hub.edges.edge(sender, owner);
        edge.count_routed();
        if hub.metrics.on() {
            edge.series.published();
        }
        let mut senders = self.senders.write();
        if !senders.iter().any(|(s, _)| *s == sender) {
            senders.push((sender, edge));
        }
    }

    /// Counts `n` dropped messages; returns the number dropped since the last
    /// alert if an alert is due now (at most one per `interval`).
    pub(crate) fn count_drop(&self, n: u64, now_ns: u64, interval: Duration) -> Option<(u64, u64)> {
        let total = self.counters.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let last = self.alert.last_ns.load(Ordering::Relaxed);
        let due = last == 0 || now_ns.saturating_sub(last) >= interval.as_nanos() as u64;
        if due
            && self
                .alert
                .last_ns
                .compare_exchange(last, now_ns.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let then = self.alert.dropped_then.swap(total, Ordering::Relaxed);
            return Some((total, total.saturating_sub(then)));
        }
        None
    }

    pub(crate) fn status(&self) -> SubscriptionStatus {
        SubscriptionStatus {
            id: SubscriptionId(self.id),
            pattern: self.pattern.to_string(),
            group: self.group.as_deref().map(str::to_owned),
            owner: self.owner.as_ref().map(|(_, n)| n.to_string()),
            kind: if self.is_callback() {
                "callback"
            } else {
                "pull"
            },
            queue_len: self.queue.len(),
            capacity: self.queue.capacity(),
            policy: self.queue.policy(),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            panics: self.counters.panics.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            closed: self.is_closed(),
        }
    }
}

/// Spawns the mailbox job of `sub` on `pool`.
pub(crate) fn spawn_mailbox(sub: &Arc<Sub>, pool: &Arc<Pool>) {
    let (s, p) = (sub.clone(), pool.clone());
    pool.spawn(Job::boxed(move || run_mailbox(s, p)), sub.class);
}

/// One turn of a mailbox: see the module docs.
fn run_mailbox(sub: Arc<Sub>, pool: Arc<Pool>) {
    let Some(slot) = &sub.slot else { return };
    let mut batch = Vec::with_capacity(BATCH);
    if !sub.queue.drain(BATCH, &mut batch) {
        return;
    }
    let taken = slot.lock().take();
    let Some(mut cb) = taken else {
        // Closed while queued: nothing to run.
        drop(batch);
        let _ = sub.queue.more();
        return;
    };
    let mut run = TopicRun::default();
    for msg in batch.drain(..) {
        if sub.is_closed() {
            break;
        }
        let delivered = sub.note_delivered(&msg, Some(&mut run));
        let result = crate::unwind::run_handler(|| cb(&msg));
        if delivered != 0 {
            let series = msg.route().series.get().map(|s| &**s);
            sub.metrics.handled(series, msg.sent(), delivered);
        }
        match result {
            Ok(()) => sub.counters.delivered.fetch_add(1, Ordering::Relaxed),
            Err(HandlerError::Panicked { .. }) => {
                sub.counters.panics.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => sub.counters.errors.fetch_add(1, Ordering::Relaxed),
        };
        drop(msg);
    }
    run.flush();
    drop(batch);
    let put_back = {
        let mut s = slot.lock();
        if sub.is_closed() {
            Some(cb)
        } else {
            *s = Some(cb);
            None
        }
    };
    // Dropped outside the slot lock: a host finalizer may call back.
    drop(put_back);
    if sub.queue.more() {
        spawn_mailbox(&sub, &pool);
    }
}

/// A live subscription. Dropping it unsubscribes (use
/// [`Subscription::detach`] to keep it until [`Hub::unsubscribe`](super::Hub::unsubscribe)).
///
/// Pull subscriptions (from [`Hub::subscribe_pull`](super::Hub::subscribe_pull))
/// are read with [`recv`](Subscription::recv),
/// [`recv_timeout`](Subscription::recv_timeout) and
/// [`try_recv`](Subscription::try_recv); callback ones are driven by the
/// hub's workers.
#[must_use = "dropping a Subscription unsubscribes it"]
pub struct Subscription {
    pub(crate) sub: Arc<Sub>,
    pub(crate) hub: Arc<HubInner>,
    pub(crate) detached: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.sub.id)
            .field("pattern", &self.sub.pattern)
            .field(
                "kind",
                &if self.sub.is_callback() {
                    "callback"
                } else {
                    "pull"
                },
            )
            .finish()
    }
}

impl Subscription {
    /// Its id.
    pub fn id(&self) -> SubscriptionId {
        SubscriptionId(self.sub.id)
    }

    /// The pattern it listens to.
    pub fn pattern(&self) -> &str {
        &self.sub.pattern
    }

    /// Its counters and queue.
    pub fn status(&self) -> SubscriptionStatus {
        self.sub.status()
    }

    /// Waits for the next message.
    ///
    /// # Errors
    /// [`HubError::Closed`] once unsubscribed (or the hub closed) and drained;
    /// [`HubError::InvalidArgument`] on a callback subscription.
    pub fn recv(&self) -> Result<Message, HubError> {
        self.take(Wait::Forever, Duration::ZERO)
    }

    /// Waits up to `timeout` for the next message.
    ///
    /// # Errors
    /// [`HubError::Timeout`] when nothing arrived in time; otherwise as
    /// [`Subscription::recv`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, HubError> {
        self.take(Wait::Until(Instant::now() + timeout), timeout)
    }

    /// The next message if one is queued.
    ///
    /// # Errors
    /// As [`Subscription::recv`].
    pub fn try_recv(&self) -> Result<Option<Message>, HubError> {
        match self.take(Wait::No, Duration::ZERO) {
            Ok(m) => Ok(Some(m)),
            Err(HubError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn take(&self, wait: Wait, timeout: Duration) -> Result<Message, HubError> {
        if self.sub.is_callback() {
            return Err(HubError::InvalidArgument {
                message: format!(
                    "subscription {} delivers to a callback; it has nothing to receive",
                    self.id()
                ),
            });
        }
        match self.sub.queue.take(wait, &self.hub.pool) {
            Ok(m) => {
                self.sub.counters.delivered.fetch_add(1, Ordering::Relaxed);
                let _ = self.sub.note_delivered(&m, None);
                Ok(m)
            }
            Err(TakeEnd::Empty) => Err(HubError::Timeout {
                topic: self.sub.pattern.to_string(),
                after: timeout,
            }),
            Err(TakeEnd::Closed) => Err(HubError::SubscriptionClosed {
                id: self.id(),
                pattern: self.sub.pattern.to_string(),
            }),
        }
    }

    /// Stops delivery and drops the callback (now if idle, else when its
    /// running invocation returns). Messages still queued are dropped.
    pub fn unsubscribe(mut self) {
        self.stop();
    }

    /// Keeps the subscription alive after this handle is dropped; end it with
    /// [`Hub::unsubscribe`](super::Hub::unsubscribe).
    pub fn detach(mut self) -> SubscriptionId {
        self.detached = true;
        self.id()
    }

    fn stop(&mut self) {
        if self.detached {
            return;
        }
        self.detached = true;
        self.hub.remove_sub(self.sub.id);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop();
    }
}
