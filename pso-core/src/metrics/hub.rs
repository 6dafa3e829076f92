//! Hub series: per topic and per interaction edge, counted where the hub
//! routes and delivers.
//!
//! # Cost on the publish path
//! With metrics on, a publish does one Relaxed load (the switch), one
//! `OnceLock` read (the topic's series, cached in the topic's match set, so
//! only a match-cache miss looks the topic up in the table) and one
//! `fetch_add` on the topic's `published` counter. The value that
//! `fetch_add` returns picks the sampled messages: one in `sample_every`
//! (a power of two) gets a timestamp, and its delivery latency (publish to
//! callback start, or to a pull receiver's `recv`) is recorded when it is
//! delivered. Counters a publisher and a delivering worker both write sit on
//! separate cache lines. A callback mailbox counts the deliveries of a run
//! of messages on one topic with one `fetch_add` ([`TopicRun`], flushed
//! when the topic changes and at the end of each batch), so a topic's
//! `delivered` may trail the callbacks by up to one batch.
//!
//! # The hub's share of message latency
//! For a sampled message handed to a callback, the worker also times the
//! callback, so the message's life from publish to handled splits into the
//! hub's part (routing, queueing, waiting for a worker: publish to callback
//! start) and the receiver's part (the callback). Both are summed over all
//! topics ([`HubShare`]) and the callback time is kept per topic. Pull
//! receivers have no handler time: their messages count in the delivery
//! latency only.
//!
//! # Bounds
//! At most `max_topics` topics get a series of their own; publishes to
//! further topics are counted under one overflow series (reported as the
//! topic [`OVERFLOW_TOPIC`]). A topic's latency histogram is allocated on
//! its first sample. Edges are bounded by the number of systems squared
//! (the hub's interned names). Resetting zeroes every series in place (the
//! topics stay tracked, so the cap is not freed by a reset).

#![forbid(unsafe_code)]

use std::time::Instant;

use crossbeam_utils::CachePadded;
use foldhash::HashMap;
use serde::Serialize;

use super::histogram::{Histo, LatencySummary};
use super::{MetricsConfig, Switch};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// The topic name the overflow series is reported under.
pub const OVERFLOW_TOPIC: &str = "<other>";

/// Counters of one topic (or of the overflow).
#[derive(Debug, Default)]
pub(crate) struct TopicSeries {
    /// Publishes (one per publish, whatever the number of receivers).
    published: CachePadded<AtomicU64>,
    /// Messages handed to a receiver (one per receiving subscription).
    delivered: CachePadded<AtomicU64>,
    /// Messages a subscription's overflow policy dropped or refused.
    dropped: AtomicU64,
    /// Sampled delivery latency.
    latency: Mutex<Option<Box<Histo>>>,
    /// Callback run time of sampled messages.
    handler: Mutex<Option<Box<Histo>>>,
}

impl TopicSeries {
    fn is_empty(&self) -> bool {
        self.published.load(Ordering::Relaxed) == 0
            && self.delivered.load(Ordering::Relaxed) == 0
            && self.dropped.load(Ordering::Relaxed) == 0
    }

    fn reset(&self) {
        self.published.store(0, Ordering::Relaxed);
        self.delivered.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        for h in [&self.latency, &self.handler] {
            if let Some(h) = h.lock().as_mut() {
                h.reset();
            }
        }
    }

    fn snapshot(&self, topic: &str) -> TopicMetrics {
        TopicMetrics {
            topic: topic.to_owned(),
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            delivery_latency: self
                .latency
                .lock()
                .as_ref()
                .map_or_else(LatencySummary::default, |h| h.summary()),
            handler_time: self
                .handler
                .lock()
                .as_ref()
                .map_or_else(LatencySummary::default, |h| h.summary()),
        }
    }
}

/// The metrics part of one edge's stats (see `hub::status::EdgeStats`).
#[derive(Debug, Default)]
pub(crate) struct EdgeSeries {
    /// Messages offered to a subscription the receiver owns (queued or
    /// refused).
    published: CachePadded<AtomicU64>,
    delivered: CachePadded<AtomicU64>,
    dropped: AtomicU64,
    latency: Mutex<Option<Box<Histo>>>,
}

impl EdgeSeries {
    #[inline]
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.published.load(Ordering::Relaxed) == 0
            && self.delivered.load(Ordering::Relaxed) == 0
            && self.dropped.load(Ordering::Relaxed) == 0
    }

    pub(crate) fn reset(&self) {
        self.published.store(0, Ordering::Relaxed);
        self.delivered.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        if let Some(h) = self.latency.lock().as_mut() {
            h.reset();
        }
    }

    pub(crate) fn snapshot(&self, from: &str, to: &str) -> EdgeMetrics {
        EdgeMetrics {
            from: from.to_owned(),
            to: to.to_owned(),
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            delivery_latency: self
                .latency
                .lock()
                .as_ref()
                .map_or_else(LatencySummary::default, |h| h.summary()),
        }
    }
}

fn record_latency(h: &Mutex<Option<Box<Histo>>>, ns: u64) {
    h.lock().get_or_insert_with(Default::default).record(ns);
}

/// Deliveries counted for a run of consecutive messages on one topic, added
/// to the topic's `delivered` in one step (on a change of topic, and when
/// dropped).
#[derive(Debug, Default)]
pub(crate) struct TopicRun {
    series: Option<Arc<TopicSeries>>,
    n: u64,
}

impl TopicRun {
    /// Counts one delivery on `s`.
    #[inline]
    pub(crate) fn add(&mut self, s: &Arc<TopicSeries>) {
        match &self.series {
            Some(cur) if Arc::ptr_eq(cur, s) => self.n += 1,
            _ => {
                self.flush();
                self.series = Some(s.clone());
                self.n = 1;
            }
        }
    }

    /// Adds what was counted to the topic.
    pub(crate) fn flush(&mut self) {
        if let Some(s) = &self.series
            && self.n > 0
        {
            s.delivered.fetch_add(self.n, Ordering::Relaxed);
        }
        self.n = 0;
    }
}

impl Drop for TopicRun {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The hub's share of the registry. See the module docs.
#[derive(Debug)]
pub(crate) struct HubMetrics {
    pub(crate) switch: Switch,
    /// `sample_every - 1` (a power of two minus one).
    sample_mask: u64,
    sampling: bool,
    max_topics: usize,
    topics: Mutex<HashMap<Arc<str>, Arc<TopicSeries>>>,
    overflow: Arc<TopicSeries>,
    epoch: Instant,
    /// Sampled messages handled by a callback, and their time in the hub
    /// and in the callback (ns), for [`HubShare`].
    handled: AtomicU64,
    in_hub_ns: AtomicU64,
    in_handler_ns: AtomicU64,
}

impl HubMetrics {
    pub(crate) fn new(switch: Switch, config: &MetricsConfig) -> Self {
        let every = config.latency_sample_every;
        HubMetrics {
            switch,
            sample_mask: u64::from(every.max(1)).next_power_of_two() - 1,
            sampling: every > 0,
            max_topics: config.max_topics,
            topics: Mutex::new(HashMap::default()),
            overflow: Arc::new(TopicSeries::default()),
            epoch: Instant::now(),
            handled: AtomicU64::new(0),
            in_hub_ns: AtomicU64::new(0),
            in_handler_ns: AtomicU64::new(0),
        }
    }

    /// Metrics for a hub outside an orchestrator: off (nothing reads them).
    pub(crate) fn off() -> Self {
        Self::new(Switch::new(false), &MetricsConfig::default())
    }

    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.switch.on()
    }

    /// The series of `topic`: its own while fewer than `max_topics` are
    /// tracked, else the overflow series.
    pub(crate) fn series_for(&self, topic: &str) -> Arc<TopicSeries> {
        let mut topics = self.topics.lock();
        if let Some(s) = topics.get(topic) {
            return s.clone();
        }
        if topics.len() >= self.max_topics {
            return self.overflow.clone();
        }
        let s = Arc::new(TopicSeries::default());
        topics.insert(Arc::from(topic), s.clone());
        s
    }

    pub(crate) fn now_ns(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }

    /// Counts a publish on `s`; returns the message's timestamp if it is
    /// sampled, else 0.
    #[inline]
    pub(crate) fn published(&self, s: &TopicSeries) -> u64 {
        let n = s.published.fetch_add(1, Ordering::Relaxed);
        if self.sampling && n & self.sample_mask == 0 {
            self.now_ns()
        } else {
            0
        }
    }

    /// Counts a message handed to a receiver: on its topic's series (if it
    /// was counted when published; unless `topic_counted`, when the caller
    /// counts it in a [`TopicRun`]) and its edge (if any); records its
    /// latency if it was sampled (`sent != 0`). Returns the time of
    /// delivery for a sampled message (see [`HubMetrics::handled`]), else 0.
    #[inline]
    pub(crate) fn delivered(
        &self,
        s: Option<&TopicSeries>,
        topic_counted: bool,
        edge: Option<&EdgeSeries>,
        sent: u64,
    ) -> u64 {
        if let Some(s) = s
            && !topic_counted
        {
            s.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(e) = edge {
            e.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if sent == 0 {
            return 0;
        }
        let now = self.now_ns();
        let ns = now.saturating_sub(sent);
        if let Some(s) = s {
            record_latency(&s.latency, ns);
        }
        if let Some(e) = edge {
            record_latency(&e.latency, ns);
        }
        now
    }

    /// A sampled message, published at `sent` and delivered at
    /// `delivered` (both from [`HubMetrics::now_ns`]), was handled by a
    /// callback that returned now.
    #[cold]
    pub(crate) fn handled(&self, s: Option<&TopicSeries>, sent: u64, delivered: u64) {
        let ran = self.now_ns().saturating_sub(delivered);
        if let Some(s) = s {
            record_latency(&s.handler, ran);
        }
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.in_hub_ns
            .fetch_add(delivered.saturating_sub(sent), Ordering::Relaxed);
        self.in_handler_ns.fetch_add(ran, Ordering::Relaxed);
    }

    /// The hub's share of the latency of sampled messages handled by
    /// callbacks.
    pub(crate) fn share(&self) -> HubShare {
        let hub = self.in_hub_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let handlers = self.in_handler_ns.load(Ordering::Relaxed) as f64 / 1e9;
        HubShare {
            messages: self.handled.load(Ordering::Relaxed),
            in_hub: hub,
            in_handlers: handlers,
            share: if hub + handlers > 0.0 {
                hub / (hub + handlers)
            } else {
                0.0
            },
        }
    }

    /// Counts a message dropped or refused for one subscription.
    pub(crate) fn dropped(&self, s: Option<&TopicSeries>, edge: Option<&EdgeSeries>) {
        if let Some(s) = s {
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(e) = edge {
            e.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every topic with anything counted, by name, then the overflow.
    pub(crate) fn topics(&self) -> Vec<TopicMetrics> {
        let series: Vec<(Arc<str>, Arc<TopicSeries>)> = self
            .topics
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out: Vec<TopicMetrics> = series
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| s.snapshot(k))
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        if !self.overflow.is_empty() {
            out.push(self.overflow.snapshot(OVERFLOW_TOPIC));
        }
        out
    }

    /// Number of topics with a series of their own.
    pub(crate) fn tracked_topics(&self) -> usize {
        self.topics.lock().len()
    }

    pub(crate) fn max_topics(&self) -> usize {
        self.max_topics
    }

    pub(crate) fn reset_topics(&self) {
        let series: Vec<Arc<TopicSeries>> = self.topics.lock().values().cloned().collect();
        for s in series {
            s.reset();
        }
        self.overflow.reset();
        for c in [&self.handled, &self.in_hub_ns, &self.in_handler_ns] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Traffic of one hub topic.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TopicMetrics {
    /// The topic; [`OVERFLOW_TOPIC`] for topics past the cap, together.
    pub topic: String,
    /// Publishes to it (one per publish, whatever the number of receivers).
    pub published: u64,
    /// Messages handed to a receiver (one per receiving subscription:
    /// a callback invoked, or a pull `recv` that returned it).
    pub delivered: u64,
    /// Messages an overflow policy dropped or refused (per subscription).
    pub dropped: u64,
    /// Publish to delivery of sampled messages.
    pub delivery_latency: LatencySummary,
    /// Callback run time of sampled messages handed to a callback.
    pub handler_time: LatencySummary,
}

/// Where the time of hub messages goes, from the sampled messages that a
/// callback handled: in the hub (publish to callback start: routing,
/// queueing, waiting for a worker) or in the callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HubShare {
    /// Sampled messages handled by a callback.
    pub messages: u64,
    /// Their total time in the hub, seconds.
    pub in_hub: f64,
    /// Their total time in callbacks, seconds.
    pub in_handlers: f64,
    /// `in_hub / (in_hub + in_handlers)`, in [0, 1] (0 without samples).
    pub share: f64,
}

/// Traffic of one interaction edge: messages a system published (naming
/// itself as sender) to subscriptions another system owns.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EdgeMetrics {
    /// The sending system.
    pub from: String,
    /// The receiving system (the owner of the subscriptions).
    pub to: String,
    /// Messages offered to the receiver's subscriptions (one per
    /// subscription), queued or refused.
    pub published: u64,
    /// Messages handed to the receiver.
    pub delivered: u64,
    /// Messages its overflow policies dropped or refused.
    pub dropped: u64,
    /// Publish to delivery of sampled messages.
    pub delivery_latency: LatencySummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_cap_and_sampling() {
        let cfg = MetricsConfig::new().max_topics(2).latency_sample_every(3);
        let m = HubMetrics::new(Switch::default(), &cfg);
        let a = m.series_for("a");
        assert!(Arc::ptr_eq(&a, &m.series_for("a")));
        let _b = m.series_for("b");
        let c = m.series_for("c");
        let d = m.series_for("d");
        assert!(Arc::ptr_eq(&c, &d), "past the cap: the overflow series");
        assert_eq!(m.tracked_topics(), 2);
        // 3 rounds up to 4: messages 0 and 4 of 8 are sampled.
        let sampled = (0..8).filter(|_| m.published(&a) != 0).count();
        assert_eq!(sampled, 2);
        m.published(&c);
        m.delivered(Some(&a), false, None, m.now_ns());
        {
            let mut run = TopicRun::default();
            run.add(&a);
            run.add(&a);
            run.add(&c);
            assert_eq!(
                a.delivered.load(Ordering::Relaxed),
                3,
                "flushed on a change"
            );
        }
        assert_eq!(
            c.delivered.load(Ordering::Relaxed),
            1,
            "flushed when dropped"
        );
        a.delivered.fetch_sub(2, Ordering::Relaxed);
        c.delivered.fetch_sub(1, Ordering::Relaxed);
        m.dropped(Some(&a), None);
        let t = m.topics();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].topic.as_str(), t[0].published), ("a", 8));
        assert_eq!((t[0].delivered, t[0].dropped), (1, 1));
        assert_eq!(t[0].delivery_latency.count, 1);
        assert_eq!((t[1].topic.as_str(), t[1].published), (OVERFLOW_TOPIC, 1));
        m.reset_topics();
        assert!(m.topics().is_empty());
    }

    #[test]
    fn sampling_off() {
        let m = HubMetrics::new(
            Switch::default(),
            &MetricsConfig::new().latency_sample_every(0),
        );
        let a = m.series_for("a");
        assert!((0..100).all(|_| m.published(&a) == 0));
        let every = HubMetrics::new(
            Switch::default(),
            &MetricsConfig::new().latency_sample_every(1),
        );
        assert!((0..10).all(|_| every.published(&a) != 0));
    }
}
