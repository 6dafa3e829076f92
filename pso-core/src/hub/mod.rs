//! The communication hub: topics, subscriptions, request/reply, direct
//! channels and meshes.
//!
//! # Design note: how the coordination modes map to code
//!
//! * **Hierarchical** (the default) is [`Hub::publish`] / [`Hub::request`]:
//!   the topic is checked ([`topic`]), matched through the subscription trie
//!   and its cache ([`tree`]), and one shared [`Message`] is offered to each
//!   matching subscription's bounded queue ([`queue`]), one member per queue
//!   group. Callback subscriptions are drained by a per-subscription mailbox
//!   job on the worker pool ([`deliver`]); pull subscriptions by their owner.
//!   Requests carry a reply slot ([`request`]). A publish that names its
//!   sender counts a message on the edge (sender, subscription owner)
//!   ([`status`]).
//! * **Direct** is a pair with its own SPSC rings ([`direct`]), opened by
//!   [`Hub::open_direct`] (declared) or [`Hub::promote`] (promotion, by hand
//!   or by the orchestrator from [`Hub::promotion_candidates`], which compares
//!   the edge rates with the configured thresholds). Sends skip the router
//!   entirely. The pair closes on [`Hub::demote`], [`DirectEnd::close`],
//!   dropping an end, or [`Hub::close_system`] (deactivation); then sends hand
//!   the value back so the caller can publish it instead.
//! * **Mesh** is [`Hub::mesh`]: a guard that opens a channel for every pair
//!   of its systems that lacks one and closes those on drop.
//! * **Minimalist** is the orchestrator's business (which systems run); the
//!   hub only reports per-edge traffic that helps decide it.
//!
//! # Cost model (what the hot paths do)
//! * `publish` to a topic this thread used recently: one atomic load (the
//!   router generation), a compare against up to four per-thread entries (a
//!   hit skips validation: only valid topics are cached), one allocation for
//!   the message (which keeps the match set, so the topic is shared), and per
//!   subscription one uncontended lock, a push and a reference count (the
//!   last subscription takes the publisher's reference). Wildcards cost
//!   nothing extra on a hit; a miss walks the trie (depth x at most two
//!   children per token) and fills the shared cache.
//!   Measured (same machine as below, release build, pull subscribers): one
//!   subscriber 56-76 ns per publish, each extra one 10-16 ns; with 10,000
//!   subscriptions a `svc.*.evt` match costs the same as an exact one
//!   (56-62 vs 56-60 ns).
//! * Direct channels are `rtrb` SPSC rings. Measured on the 2-core shared
//!   development machine (load 3-5, so absolute figures are noisy), 10M
//!   `Value::Int`s 1 -> 1 across threads: `rtrb` with our wake-up protocol
//!   14 M/s per message and 21-27 M/s with `try_recv_batch`, against 10-17
//!   M/s for `crossbeam-channel` bounded(1024) in the same runs;
//!   `crossbeam-queue::ArrayQueue` (0.3-1.7 M/s) lost under contention.
//!   With `try_send_batch` / `try_recv_batch` on both sides: 52-54 M/s.
//!   `rtrb` was kept for the batch path (one index update per batch) and
//!   because each side owns its end, so no CAS is needed per message.
//! * A request is a publish plus a reply slot; the requester spins briefly
//!   (yielding every 32 probes, which measured best on 2 shared cores)
//!   before blocking. Round trip to a callback on the pool: median 0.85-1.6
//!   µs when the worker is still awake, 6-8 µs when it had parked (a futex
//!   wake-up).
//!
//! # Ownership and threads
//! The hub runs callbacks on a worker [`Pool`]: its own (from
//! [`Hub::new`]) or the orchestrator's ([`Hub::with_pool`]). A publisher
//! never runs a callback on its own thread, with one exception: a publisher
//! (or requester, or pull receiver) that is itself a worker of the pool and
//! has to wait runs other queued jobs meanwhile — possibly mailboxes —
//! because the job it waits for may be queued behind it on that worker.
//! A publisher blocks only under the `block` policy. No hub lock is held
//! while user code runs or while a callback is dropped.
//!
//! # Invariants
//! * Per subscription, messages are queued in publish order (a publish is
//!   one pass over the matches) and delivered in queue order, one at a time.
//! * A message is never deep-copied per subscriber: queues hold clones of
//!   one `Arc`.
//! * After [`Hub::unsubscribe`] (or dropping the [`Subscription`]) returns,
//!   nothing more is queued for it and no new callback invocation starts.
//! * Every message the overflow policy drops or refuses is counted in
//!   `dropped`, and raises an alert on `pso.alert.<owner|hub>.dropped` at most
//!   once per `alert_interval` per subscription (drops of alert messages are
//!   counted but raise no alert).

mod config;
mod deliver;
mod direct;
mod error;
mod message;
mod pairs;
mod queue;
mod request;
mod status;
mod topic;
mod tree;

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, Instant};

use crate::metrics::EdgeMetrics;
use crate::metrics::hub::{HubMetrics, TopicSeries};
use crate::model::HandlerError;
use crate::scheduler::Pool;
use crate::sync::{
    Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, RwLock, StaticAtomicU64,
};
use crate::value::Value;

pub use config::HubConfig;
pub use deliver::{SubscribeOptions, Subscription, SubscriptionId};
pub use direct::{DirectEnd, DirectSendError};
pub use error::HubError;
pub use message::Message;
pub use pairs::Mesh;
pub use queue::Overflow;
pub use request::Gather;
pub use status::{
    Candidate, CoordinationMode, CoordinationStatus, DirectOrigin, EdgeRate, IdleDeactivation,
    MeshStatus, MinimalistStatus, ModeChange, PairAction, PairStatus, SubscriptionStatus,
};

use deliver::{Callback, Sub, spawn_mailbox};
use message::NO_SENDER;
use queue::{Give, Mode, Offer};
use request::{End, ReplySlot};
use status::Edges;
use tree::{Matches, Router};

pub(crate) type Map<K, V> = foldhash::HashMap<K, V>;

/// What a topic matches in this hub.
pub(crate) type SubMatches = Matches<Arc<Sub>>;

/// Source of hub ids, for the thread-local match cache (0 is never used).
static NEXT_HUB_ID: StaticAtomicU64 = StaticAtomicU64::new(1);

/// Interned system names (ids are dense, never reused).
#[derive(Debug, Default)]
struct Systems {
    ids: Map<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

/// Everything a hub shares with its subscriptions, meshes and jobs.
pub(crate) struct HubInner {
    id: u64,
    pub(crate) pool: Arc<Pool>,
    owns_pool: bool,
    pub(crate) config: HubConfig,
    router: Router<Arc<Sub>>,
    subs: Mutex<Map<u64, Arc<Sub>>>,
    next_sub: AtomicU64,
    systems: RwLock<Systems>,
    pub(crate) edges: Edges,
    pub(crate) pairs: Mutex<pairs::Pairs>,
    closed: AtomicBool,
    /// Live `Hub` handles; the last one dropped closes the hub.
    handles: AtomicUsize,
    epoch: Instant,
    /// Topic and edge metrics (off for a hub outside an orchestrator).
    pub(crate) metrics: Arc<HubMetrics>,
}

impl fmt::Debug for HubInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubInner")
            .field("id", &self.id)
            .field("subscriptions", &self.router.len())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// Entries of the per-thread match cache.
const RECENT: usize = 4;

/// A topic this thread published to recently: lets a thread that publishes
/// to a few topics again and again skip the shared cache's lock and hash.
struct Recent {
    hub: u64,
    generation: u64,
    matches: Arc<SubMatches>,
}

/// The per-thread cache: `RECENT` entries, replaced round robin.
struct RecentCache {
    entries: [Option<Recent>; RECENT],
    next: usize,
}

thread_local! {
    static LAST: RefCell<RecentCache> = const {
        RefCell::new(RecentCache { entries: [None, None, None, None], next: 0 })
    };
}

/// What one publish did.
struct Fanout {
    receivers: usize,
    accepted: usize,
    refused: Option<(Arc<Sub>, bool)>,
}

impl HubInner {
    fn check_open(&self) -> Result<(), HubError> {
        if self.closed.load(Ordering::Acquire) {
            Err(HubError::Closed)
        } else {
            Ok(())
        }
    }

    fn intern(&self, name: &str) -> (u32, Arc<str>) {
        if let Some((k, id)) = self.systems.read().ids.get_key_value(name) {
            return (*id, k.clone());
        }
        let mut s = self.systems.write();
        if let Some((k, id)) = s.ids.get_key_value(name) {
            return (*id, k.clone());
        }
        let id = s.names.len() as u32;
        let arc: Arc<str> = name.into();
        s.names.push(arc.clone());
        s.ids.insert(arc.clone(), id);
        (id, arc)
    }

    fn lookup_system(&self, name: &str) -> Option<u32> {
        self.systems.read().ids.get(name).copied()
    }

    fn system_name(&self, id: u32) -> Arc<str> {
        self.systems.read().names[id as usize].clone()
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The matches of `topic`, through the thread-local entries, then the
    /// shared cache, then the tree. Only valid topics are ever cached, so a
    /// thread-local hit needs no validation.
    ///
    /// # Errors
    /// [`HubError::InvalidTopic`].
    #[inline]
    fn matches(&self, topic: &str) -> Result<Arc<SubMatches>, HubError> {
        let generation = self.router.generation();
        let hit = LAST.with(|c| {
            let c = c.try_borrow().ok()?;
            c.entries.iter().flatten().find_map(|l| {
                (l.hub == self.id && l.generation == generation && &*l.matches.topic == topic)
                    .then(|| l.matches.clone())
            })
        });
        if let Some(m) = hit {
            return Ok(m);
        }
        topic::check_topic(topic)?;
        let (m, generation) = self.router.lookup(topic);
        // The replaced entry is dropped after the borrow ends: dropping its
        // matches may drop subscriptions.
        let old = LAST.with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            let i = c.next;
            c.next = (i + 1) % RECENT;
            c.entries[i].replace(Recent {
                hub: self.id,
                generation,
                matches: m.clone(),
            })
        });
        drop(old);
        Ok(m)
    }

    /// Queues `msg` for every match of its route; see [`HubInner::offer`].
    /// The last plain subscription (when there are no groups) takes `msg`
    /// itself rather than a clone.
    fn fanout(&self, msg: Message, sender: Option<u32>, mode: Mode) -> Fanout {
        let route = msg.route().clone();
        let m = &*route;
        let mut f = Fanout {
            receivers: m.receivers(),
            accepted: 0,
            refused: None,
        };
        let topic = m.topic.as_ref();
        let series = m.series.get().map(|s| &**s);
        let mut owned = Some(msg);
        let n = m.plain.len();
        for (i, sub) in m.plain.iter().enumerate() {
            let give = if i + 1 == n && m.groups.is_empty() {
                Give::Own(owned.take().expect("taken only once, at the end"))
            } else {
                Give::Ref(owned.as_ref().expect("still owned"))
            };
            self.offer(sub, give, topic, series, sender, mode, &mut f);
        }
        let Some(msg) = owned else { return f };
        let msg = &msg;
        for g in &m.groups {
            let n = g.members.len();
            let start = g.next.fetch_add(1, Ordering::Relaxed) % n;
            let mut placed = false;
            for k in 0..n {
                let sub = &g.members[(start + k) % n];
                if let Offer::Queued { schedule } =
                    sub.queue
                        .offer(Give::Ref(msg), sub.is_callback(), Mode::IfRoom, &self.pool)
                {
                    self.queued(sub, sender, schedule, &mut f);
                    placed = true;
                    break;
                }
            }
            if !placed {
                self.offer(
                    &g.members[start],
                    Give::Ref(msg),
                    topic,
                    series,
                    sender,
                    mode,
                    &mut f,
                );
            }
        }
        f
    }

    fn queued(&self, sub: &Arc<Sub>, sender: Option<u32>, schedule: bool, f: &mut Fanout) {
        f.accepted += 1;
        if let Some(s) = sender {
            sub.count_edge(s, self);
        }
        if schedule {
            spawn_mailbox(sub, &self.pool);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn offer(
        &self,
        sub: &Arc<Sub>,
        msg: Give<'_>,
        topic: &str,
        series: Option<&TopicSeries>,
        sender: Option<u32>,
        mode: Mode,
        f: &mut Fanout,
    ) {
        match sub.queue.offer(msg, sub.is_callback(), mode, &self.pool) {
            Offer::Queued { schedule } => self.queued(sub, sender, schedule, f),
            Offer::Evicted { evicted, schedule } => {
                self.queued(sub, sender, schedule, f);
                self.count_dropped(
                    sub,
                    evicted.route().series.get().map(|s| &**s),
                    evicted.sender_id(),
                    false,
                );
                self.dropped(sub, evicted.topic());
                drop(evicted);
            }
            Offer::DroppedNewest => {
                self.count_dropped(sub, series, sender, true);
                self.dropped(sub, topic);
            }
            Offer::Refused { timed_out } => {
                self.count_dropped(sub, series, sender, true);
                self.dropped(sub, topic);
                if f.refused.is_none() {
                    f.refused = Some((sub.clone(), timed_out));
                }
            }
            Offer::NoRoom | Offer::Closed => {}
        }
    }

    /// Counts a drop in the metrics: on the message's topic and, if it has
    /// a sender and `sub` an owner, its edge (`offered`: it was refused at
    /// the offer, so the edge never counted it as published).
    #[cold]
    fn count_dropped(
        &self,
        sub: &Sub,
        series: Option<&TopicSeries>,
        sender: Option<u32>,
        offered: bool,
    ) {
        if !self.metrics.on() {
            return;
        }
        let edge = match (sender, &sub.owner) {
            (Some(s), Some((owner, _))) => Some(self.edges.edge(s, *owner)),
            _ => None,
        };
        if offered && let Some(e) = &edge {
            e.series.published();
        }
        self.metrics
            .dropped(series, edge.as_ref().map(|e| &e.series));
    }

    /// Every edge with anything counted since the last reset.
    pub(crate) fn edge_metrics(&self) -> Vec<EdgeMetrics> {
        let mut out: Vec<EdgeMetrics> = self
            .edges
            .all()
            .into_iter()
            .filter(|(_, _, e)| !e.series.is_empty())
            .map(|(f, t, e)| {
                e.series
                    .snapshot(&self.system_name(f), &self.system_name(t))
            })
            .collect();
        out.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        out
    }

    /// Zeroes every edge's metrics.
    pub(crate) fn reset_edge_metrics(&self) {
        for (_, _, e) in self.edges.all() {
            e.series.reset();
        }
    }

    /// Counts a drop and raises the rate-limited alert.
    fn dropped(&self, sub: &Arc<Sub>, dropped_topic: &str) {
        let Some((total, since_last)) =
            sub.count_drop(1, self.now_ns(), self.config.alert_interval)
        else {
            return;
        };
        if dropped_topic.starts_with("pso.alert.") || self.closed.load(Ordering::Relaxed) {
            return;
        }
        let system = sub.owner.as_ref().map_or("hub", |(_, n)| n);
        let topic = format!("pso.alert.{}.dropped", topic::token_safe(system));
        let payload: Value = [
            ("subscription", Value::Int(sub.id as i64)),
            ("pattern", Value::from(&*sub.pattern)),
            ("owner", Value::from(system)),
            ("topic", Value::from(dropped_topic)),
            ("policy", Value::from(sub.queue.policy().to_string())),
            ("dropped", Value::Int(total as i64)),
            ("dropped_since_last_alert", Value::Int(since_last as i64)),
        ]
        .into_iter()
        .collect();
        let _ = self.publish(None, &topic, payload, None, Mode::NoBlock);
    }

    /// The publish path shared by publish and request.
    fn publish(
        &self,
        sender: Option<(u32, Arc<str>)>,
        topic: &str,
        payload: Value,
        reply: Option<Arc<ReplySlot>>,
        mode: Mode,
    ) -> Result<Fanout, HubError> {
        self.check_open()?;
        let m = self.matches(topic)?;
        let sent = if self.metrics.on() {
            let s = m.series.get_or_init(|| self.metrics.series_for(&m.topic));
            self.metrics.published(s)
        } else {
            0
        };
        if m.is_empty() {
            return Ok(Fanout {
                receivers: 0,
                accepted: 0,
                refused: None,
            });
        }
        let (sid, sname) = match sender {
            Some((id, name)) => (Some(id), Some(name)),
            None => (None, None),
        };
        let msg = Message::stamped(m, payload, sname, reply, sid.unwrap_or(NO_SENDER), sent);
        Ok(self.fanout(msg, sid, mode))
    }

    fn overflow_error(topic: &str, f: &Fanout) -> Option<HubError> {
        f.refused
            .as_ref()
            .map(|(sub, timed_out)| HubError::Overflow {
                topic: topic.to_owned(),
                subscription: SubscriptionId(sub.id),
                pattern: sub.pattern.to_string(),
                capacity: sub.queue.capacity(),
                timed_out: *timed_out,
                delivered: f.accepted,
            })
    }

    fn request(
        &self,
        sender: Option<&str>,
        topic: &str,
        payload: Value,
        want: usize,
        timeout: Duration,
        quiet: Option<Duration>,
    ) -> Result<Vec<Message>, HubError> {
        let deadline = Instant::now() + timeout;
        let slot = Arc::new(ReplySlot::new(want));
        let sender = sender.map(|s| self.intern(s));
        let f = self.publish(sender, topic, payload, Some(slot.clone()), Mode::Policy)?;
        if f.receivers == 0 {
            return Err(HubError::NoResponders {
                topic: topic.to_owned(),
            });
        }
        if f.accepted == 0
            && let Some(e) = Self::overflow_error(topic, &f)
        {
            return Err(e);
        }
        let (replies, end) = slot.wait(deadline, quiet, &self.pool);
        match end {
            End::Abandoned if replies.is_empty() => Err(HubError::Unanswered {
                topic: topic.to_owned(),
                receivers: f.receivers,
            }),
            End::Deadline if replies.is_empty() && want == 1 => Err(HubError::Timeout {
                topic: topic.to_owned(),
                after: timeout,
            }),
            _ => Ok(replies),
        }
    }

    /// Unsubscribes `id`; returns whether it was live.
    pub(crate) fn remove_sub(&self, id: u64) -> bool {
        let Some(sub) = self.subs.lock().remove(&id) else {
            return false;
        };
        let removed = self.router.remove(&sub.pattern, |s| s.id == id);
        let (left, cb) = sub.close();
        // Outside every lock: a request's last handle wakes its requester,
        // and a host callback's finalizer may call back into the hub.
        drop(removed);
        drop(left);
        drop(cb);
        true
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let ids: Vec<u64> = self.subs.lock().keys().copied().collect();
        for id in ids {
            self.remove_sub(id);
        }
        let ends = self.pairs.lock().close_all("hub closed");
        drop(ends);
        let old: Vec<Recent> = LAST.with(|c| match c.try_borrow_mut() {
            Ok(mut c) => c
                .entries
                .iter_mut()
                .filter_map(|e| e.take_if(|l| l.hub == self.id))
                .collect(),
            Err(_) => Vec::new(),
        });
        drop(old);
        if self.owns_pool {
            self.pool.shutdown();
        }
    }
}

impl Drop for HubInner {
    fn drop(&mut self) {
        self.close();
    }
}

/// The communication hub. Cheap to clone (all clones are one hub); the hub
/// closes when the last clone is dropped or on [`Hub::close`]. A callback
/// that captures a clone keeps the hub open until [`Hub::close`] (or until
/// that subscription ends).
///
/// # Examples
/// ```
/// use pso_core::{Hub, HubConfig, Value};
/// use std::time::Duration;
/// let hub = Hub::new(HubConfig::new().workers(1))?;
/// let sub = hub.subscribe_pull("engine.*.done")?;
/// hub.publish("engine.build.done", "ok")?;
/// let msg = sub.recv_timeout(Duration::from_secs(5))?;
/// assert_eq!((msg.topic(), msg.payload()), ("engine.build.done", &Value::from("ok")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Hub {
    inner: Arc<HubInner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Clone for Hub {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Hub {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.close();
        }
    }
}

impl Hub {
    /// A hub with its own worker pool of `config`'s size.
    ///
    /// # Errors
    /// [`HubError::Io`] if the worker threads cannot be started.
    pub fn new(config: HubConfig) -> Result<Hub, HubError> {
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = Pool::new(workers, &config.thread_name).map_err(|e| HubError::Io {
            message: e.to_string(),
        })?;
        Ok(Self::build(
            Arc::new(pool),
            true,
            config,
            Arc::new(HubMetrics::off()),
        ))
    }

    /// A hub whose callbacks run on an existing pool (the orchestrator's),
    /// recording into the orchestrator's metrics. The pool is not shut down
    /// with the hub.
    pub(crate) fn with_pool(pool: Arc<Pool>, config: HubConfig, metrics: Arc<HubMetrics>) -> Hub {
        Self::build(pool, false, config, metrics)
    }

    fn build(pool: Arc<Pool>, owns_pool: bool, config: HubConfig, metrics: Arc<HubMetrics>) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                id: NEXT_HUB_ID.fetch_add(1, Ordering::Relaxed),
                pool,
                owns_pool,
                router: Router::new(config.match_cache),
                config,
                subs: Mutex::new(Map::default()),
                next_sub: AtomicU64::new(1),
                systems: RwLock::new(Systems::default()),
                edges: Edges::default(),
                pairs: Mutex::new(pairs::Pairs::default()),
                closed: AtomicBool::new(false),
                handles: AtomicUsize::new(1),
                epoch: Instant::now(),
                metrics,
            }),
        }
    }

    /// Publishes `payload` to `topic`. Returns the number of subscriptions
    /// that queued it (0 if nobody listens: not an error).
    ///
    /// # Errors
    /// [`HubError::InvalidTopic`]; [`HubError::Overflow`] if a subscription
    /// with the `error` policy (or `block`, after its timeout) refused it —
    /// the others still received it; [`HubError::Closed`].
    pub fn publish(&self, topic: &str, payload: impl Into<Value>) -> Result<usize, HubError> {
        let f = self
            .inner
            .publish(None, topic, payload.into(), None, Mode::Policy)?;
        match HubInner::overflow_error(topic, &f) {
            Some(e) => Err(e),
            None => Ok(f.accepted),
        }
    }

    /// Like [`Hub::publish`], naming the sending system: receivers see it in
    /// [`Message::sender`], and the message counts on the edge from `sender`
    /// to each receiving subscription's owner.
    ///
    /// # Errors
    /// As [`Hub::publish`].
    pub fn publish_from(
        &self,
        sender: &str,
        topic: &str,
        payload: impl Into<Value>,
    ) -> Result<usize, HubError> {
        let sender = Some(self.inner.intern(sender));
        let f = self
            .inner
            .publish(sender, topic, payload.into(), None, Mode::Policy)?;
        match HubInner::overflow_error(topic, &f) {
            Some(e) => Err(e),
            None => Ok(f.accepted),
        }
    }

    /// Sends a request and waits up to `timeout` for the first reply.
    ///
    /// # Errors
    /// [`HubError::NoResponders`] at once if no subscription matches;
    /// [`HubError::Unanswered`] as soon as every receiver dropped it without
    /// replying; [`HubError::Timeout`]; [`HubError::Overflow`] if no
    /// subscription could queue it; [`HubError::InvalidTopic`];
    /// [`HubError::Closed`].
    pub fn request(
        &self,
        topic: &str,
        payload: impl Into<Value>,
        timeout: Duration,
    ) -> Result<Message, HubError> {
        self.request_from_opt(None, topic, payload.into(), timeout)
    }

    /// Like [`Hub::request`], naming the requesting system.
    ///
    /// # Errors
    /// As [`Hub::request`].
    pub fn request_from(
        &self,
        sender: &str,
        topic: &str,
        payload: impl Into<Value>,
        timeout: Duration,
    ) -> Result<Message, HubError> {
        self.request_from_opt(Some(sender), topic, payload.into(), timeout)
    }

    fn request_from_opt(
        &self,
        sender: Option<&str>,
        topic: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Message, HubError> {
        let mut r = self
            .inner
            .request(sender, topic, payload, 1, timeout, None)?;
        Ok(r.pop()
            .expect("a single request returns one reply or an error"))
    }

    /// Sends a request and gathers replies until `gather` says stop (see
    /// [`Gather`]). Reaching the deadline is not an error: the replies so
    /// far (maybe none) are returned.
    ///
    /// # Errors
    /// [`HubError::NoResponders`] at once if no subscription matches;
    /// [`HubError::Unanswered`] if every receiver dropped it without
    /// replying; otherwise as [`Hub::request`].
    pub fn request_many(
        &self,
        topic: &str,
        payload: impl Into<Value>,
        gather: Gather,
    ) -> Result<Vec<Message>, HubError> {
        self.inner.request(
            None,
            topic,
            payload.into(),
            gather.max.unwrap_or(usize::MAX),
            gather.timeout,
            gather.quiet,
        )
    }

    /// Subscribes a callback to `pattern` with the hub's default options.
    /// The callback runs on the worker pool, one message at a time, in
    /// publish order; a panic or error is counted and delivery goes on.
    ///
    /// # Errors
    /// [`HubError::InvalidTopic`] naming the bad token; [`HubError::Closed`].
    pub fn subscribe<F>(&self, pattern: &str, callback: F) -> Result<Subscription, HubError>
    where
        F: FnMut(&Message) -> Result<(), HandlerError> + Send + 'static,
    {
        self.subscribe_with(pattern, SubscribeOptions::new(), callback)
    }

    /// Subscribes a callback with explicit options.
    ///
    /// # Errors
    /// As [`Hub::subscribe`].
    pub fn subscribe_with<F>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        callback: F,
    ) -> Result<Subscription, HubError>
    where
        F: FnMut(&Message) -> Result<(), HandlerError> + Send + 'static,
    {
        self.add(pattern, &options, Some(Box::new(callback)))
    }

    /// Subscribes a pull receiver (read it with [`Subscription::recv`]).
    ///
    /// # Errors
    /// As [`Hub::subscribe`].
    pub fn subscribe_pull(&self, pattern: &str) -> Result<Subscription, HubError> {
        self.add(pattern, &SubscribeOptions::new(), None)
    }

    /// Subscribes a pull receiver with explicit options.
    ///
    /// # Errors
    /// As [`Hub::subscribe`].
    pub fn subscribe_pull_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, HubError> {
        self.add(pattern, &options, None)
    }

    fn add(
        &self,
        pattern: &str,
        opts: &SubscribeOptions,
        cb: Option<Callback>,
    ) -> Result<Subscription, HubError> {
        let inner = &self.inner;
        inner.check_open()?;
        topic::check_pattern(pattern)?;
        if opts.group.as_deref().is_some_and(str::is_empty) {
            return Err(HubError::InvalidArgument {
                message: "a queue group name must not be empty".into(),
            });
        }
        let owner = opts.owner.as_deref().map(|o| inner.intern(o));
        let id = inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Sub::new(
            id,
            pattern.into(),
            opts,
            owner,
            inner.config.queue_capacity,
            inner.config.overflow,
            cb,
            inner.metrics.clone(),
        ));
        {
            let mut subs = inner.subs.lock();
            subs.insert(id, sub.clone());
        }
        inner.router.insert(pattern, sub.clone());
        if inner.closed.load(Ordering::Acquire) {
            // Raced with close(): undo, so nothing outlives the hub.
            inner.remove_sub(id);
            return Err(HubError::Closed);
        }
        Ok(Subscription {
            sub,
            hub: inner.clone(),
            detached: false,
        })
    }

    /// Ends a subscription by id (e.g. a detached one). Returns whether it
    /// was live.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner.remove_sub(id.0)
    }

    /// Whether any subscription could receive a message published under
    /// `prefix` (a valid topic; the message's topic being `prefix` plus at
    /// least one token). Lets a publisher of many distinct topics skip
    /// building messages nobody would receive (which also keeps them out of
    /// the match cache).
    pub(crate) fn listens_under(&self, prefix: &str) -> bool {
        self.inner.router.any_under(prefix)
    }

    /// Status of every live subscription, by id.
    pub fn subscriptions(&self) -> Vec<SubscriptionStatus> {
        let subs: Vec<Arc<Sub>> = self.inner.subs.lock().values().cloned().collect();
        let mut out: Vec<SubscriptionStatus> = subs.iter().map(|s| s.status()).collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// Edge metrics (see [`HubInner::edge_metrics`]).
    pub(crate) fn edge_metrics(&self) -> Vec<EdgeMetrics> {
        self.inner.edge_metrics()
    }

    /// Zeroes the edge metrics.
    pub(crate) fn reset_edge_metrics(&self) {
        self.inner.reset_edge_metrics();
    }

    /// Samples the edge rates now (the orchestrator may call this
    /// periodically; status and candidates sample too).
    pub fn sample_rates(&self) {
        let _ = self.inner.edges.sample(self.inner.config.rate_window);
    }

    /// Modes, direct pairs, meshes, per-edge rates and recent mode changes.
    pub fn coordination_status(&self) -> CoordinationStatus {
        let inner = &self.inner;
        let rates = inner.edges.sample(inner.config.rate_window);
        let (direct_pairs, meshes, changes) = inner.pairs_status();
        let pairs = inner.pairs.lock();
        let modes: Vec<CoordinationMode> = rates
            .iter()
            .map(|&(f, t, ..)| {
                let (nf, nt) = (inner.system_name(f), inner.system_name(t));
                let key = if nf <= nt { (f, t) } else { (t, f) };
                pairs.mode_of(key)
            })
            .collect();
        drop(pairs);
        let edges = rates
            .into_iter()
            .zip(modes)
            .map(|((f, t, rate, routed, direct), mode)| EdgeRate {
                from: inner.system_name(f).to_string(),
                to: inner.system_name(t).to_string(),
                rate,
                routed,
                direct,
                mode,
            })
            .collect();
        let mode = if !meshes.is_empty() {
            "mesh"
        } else if !direct_pairs.is_empty() {
            "direct"
        } else {
            "hierarchical"
        };
        CoordinationStatus {
            mode,
            minimalist: None,
            auto_promote_every: None,
            direct_pairs,
            meshes,
            edges,
            changes,
            subscriptions: inner.router.len(),
        }
    }

    /// Closes the hub: every subscription ends (callbacks dropped), every
    /// direct channel closes, and an owned pool stops. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether the hub is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}
