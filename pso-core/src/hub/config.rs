//! Hub settings.

#![forbid(unsafe_code)]

use std::time::Duration;

use super::Overflow;

/// Hub settings, built with chained setters.
///
/// # Examples
/// ```
/// use pso_core::{HubConfig, Overflow};
/// use std::time::Duration;
/// let cfg = HubConfig::new()
///     .workers(2)
///     .queue_capacity(512)
///     .overflow(Overflow::Block(Duration::from_millis(100)))
///     .promote_threshold(20_000.0);
/// # let _ = cfg;
/// ```
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) queue_capacity: usize,
    pub(crate) overflow: Overflow,
    pub(crate) alert_interval: Duration,
    pub(crate) direct_capacity: usize,
    pub(crate) promote_threshold: f64,
    pub(crate) demote_threshold: f64,
    pub(crate) rate_window: Duration,
    pub(crate) match_cache: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            workers: 0,
            thread_name: "pso-hub".into(),
            queue_capacity: 1024,
            overflow: Overflow::Block(Duration::from_secs(1)),
            alert_interval: Duration::from_secs(1),
            direct_capacity: 1024,
            promote_threshold: 10_000.0,
            demote_threshold: 1_000.0,
            rate_window: Duration::from_secs(10),
            match_cache: 4096,
        }
    }
}

impl HubConfig {
    /// The defaults: workers = available cores, queues of 1024 with
    /// `block(1s)`, alerts at most once a second per subscription, direct
    /// rings of 1024, promotion at 10,000 msg/s, demotion below 1,000 msg/s,
    /// a 10 s rate window, 4096 cached topics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Worker threads of a hub that owns its pool ([`Hub::new`](super::Hub::new)); 0 means
    /// the available cores.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Name prefix of the hub's own worker threads.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Default subscription queue capacity (at least 1).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Default overflow policy.
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.overflow = policy;
        self
    }

    /// Least time between two drop alerts of one subscription.
    pub fn alert_interval(mut self, d: Duration) -> Self {
        self.alert_interval = d;
        self
    }

    /// Capacity of each direction of a direct channel (at least 1).
    pub fn direct_capacity(mut self, n: usize) -> Self {
        self.direct_capacity = n.max(1);
        self
    }

    /// Rate (messages/s, both directions) at which a pair becomes a
    /// promotion candidate.
    pub fn promote_threshold(mut self, rate: f64) -> Self {
        self.promote_threshold = rate;
        self
    }

    /// Rate below which a promoted pair becomes a demotion candidate.
    pub fn demote_threshold(mut self, rate: f64) -> Self {
        self.demote_threshold = rate;
        self
    }

    /// Time constant of the rate EWMA.
    pub fn rate_window(mut self, d: Duration) -> Self {
        self.rate_window = d;
        self
    }

    /// Number of topics whose matches are cached.
    pub fn match_cache(mut self, n: usize) -> Self {
        self.match_cache = n.max(1);
        self
    }
}
