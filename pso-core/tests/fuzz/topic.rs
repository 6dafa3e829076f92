//! The topic fuzz harness, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/topic.rs`) and the regression replay
//! (`pso-core/tests/fuzz_regressions.rs`), both of which include this file with
//! `#[path]`. It uses only pso-core's public API.
//!
//! The input is read (lossily) as UTF-8 lines, each one operation on one hub
//! that lives across inputs (so its match cache does too):
//!
//! * `S<pattern>` subscribes a pull receiver to `<pattern>`;
//! * `U<any>` drops one live subscription (the `<any>` length picks which);
//! * `P<topic>` and any other line publish to the topic (the whole line).
//!
//! Every result is checked against the reference written here from the
//! documented syntax (`pso-core/src/hub/topic.rs`), independently of the
//! hub's code: a pattern or topic is accepted exactly when the reference says
//! it is valid; a publish reports as many receivers as there are live
//! subscriptions whose pattern the reference matches against the topic; each
//! of those has exactly that message queued, and no other subscription has
//! anything.

use pso_core::{Hub, HubConfig, HubError, Subscription, Value};

/// Most operations per input (a longer input is cut).
const MAX_OPS: usize = 32;
/// Most live subscriptions (further `S` lines only validate).
const MAX_SUBS: usize = 24;

/// What one input did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Valid patterns subscribed.
    pub(crate) subscribed: usize,
    /// Valid topics published.
    pub(crate) published: usize,
    /// Messages received (all checked).
    pub(crate) delivered: usize,
    /// Patterns or topics rejected (in agreement with the reference).
    pub(crate) rejected: usize,
}

/// A hub kept between inputs.
#[derive(Debug)]
pub(crate) struct Harness {
    hub: Hub,
}

impl Harness {
    pub(crate) fn new() -> Self {
        let hub = Hub::new(HubConfig::new().workers(1).queue_capacity(MAX_OPS * 2))
            .expect("start a hub worker");
        Harness { hub }
    }

    /// Runs one input.
    pub(crate) fn one(&mut self, data: &[u8]) -> Stats {
        let text = String::from_utf8_lossy(data);
        let mut stats = Stats::default();
        let mut subs: Vec<(String, Subscription)> = Vec::new();
        assert!(self.hub.subscriptions().is_empty(), "a subscription leaked");
        for (n, line) in text.split('\n').take(MAX_OPS).enumerate() {
            if let Some(pattern) = line.strip_prefix('S') {
                let valid = valid_pattern(pattern);
                match self.hub.subscribe_pull(pattern) {
                    Ok(sub) => {
                        assert!(valid, "pattern {pattern:?} was accepted");
                        stats.subscribed += 1;
                        if subs.len() < MAX_SUBS {
                            subs.push((pattern.to_owned(), sub));
                        }
                    }
                    Err(e) => {
                        assert!(!valid, "valid pattern {pattern:?} was rejected: {e}");
                        assert!(matches!(e, HubError::InvalidTopic { .. }), "{e}");
                        stats.rejected += 1;
                    }
                }
            } else if let Some(rest) = line.strip_prefix('U') {
                if !subs.is_empty() {
                    let (_, sub) = subs.remove(rest.len() % subs.len());
                    sub.unsubscribe();
                }
            } else {
                let topic = line.strip_prefix('P').unwrap_or(line);
                self.publish(topic, n as i64, &subs, &mut stats);
            }
        }
        drop(subs);
        assert!(
            self.hub.subscriptions().is_empty(),
            "dropped subscriptions are still live"
        );
        stats
    }

    fn publish(&self, topic: &str, n: i64, subs: &[(String, Subscription)], stats: &mut Stats) {
        let valid = valid_topic(topic);
        if valid {
            // Every topic is also a pattern (that matches only itself).
            assert!(valid_pattern(topic), "reference: {topic:?}");
        }
        match self.hub.publish(topic, Value::from(n)) {
            Err(e) => {
                assert!(!valid, "valid topic {topic:?} was rejected: {e}");
                assert!(matches!(e, HubError::InvalidTopic { .. }), "{e}");
                stats.rejected += 1;
            }
            Ok(receivers) => {
                assert!(valid, "topic {topic:?} was accepted");
                stats.published += 1;
                let expected = subs.iter().filter(|(p, _)| matches(p, topic)).count();
                assert_eq!(receivers, expected, "receivers of {topic:?}");
                for (pattern, sub) in subs {
                    let got = sub.try_recv().expect("a live pull subscription");
                    if matches(pattern, topic) {
                        let m = got.unwrap_or_else(|| {
                            panic!("{pattern:?} matches {topic:?}, nothing was queued")
                        });
                        assert_eq!(m.topic(), topic);
                        assert_eq!(m.payload(), &Value::from(n));
                        stats.delivered += 1;
                    } else if let Some(m) = got {
                        panic!("{pattern:?} does not match {topic:?}, got {:?}", m.topic());
                    }
                    assert!(
                        sub.try_recv().unwrap().is_none(),
                        "a duplicate for {pattern:?}"
                    );
                }
            }
        }
    }
}

/// A token of a published topic: not empty; no `.` (split already),
/// whitespace or control character (Unicode's), `*` or `>`.
fn plain_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
}

/// The reference topic syntax: one or more plain tokens separated by `.`.
fn valid_topic(topic: &str) -> bool {
    topic.split('.').all(plain_token)
}

/// The reference pattern syntax: tokens that are plain, `*`, or `>` as the
/// last one.
fn valid_pattern(pattern: &str) -> bool {
    let tokens: Vec<&str> = pattern.split('.').collect();
    tokens
        .iter()
        .enumerate()
        .all(|(i, t)| plain_token(t) || *t == "*" || (*t == ">" && i + 1 == tokens.len()))
}

/// The reference matcher, recursive over token slices: `*` takes exactly one
/// token, a final `>` one or more, anything else the same token.
fn matches(pattern: &str, topic: &str) -> bool {
    fn go(p: &[&str], t: &[&str]) -> bool {
        match (p.split_first(), t.split_first()) {
            (None, None) => true,
            (Some((&">", [])), Some(_)) => true,
            (Some((&"*", p_rest)), Some((_, t_rest))) => go(p_rest, t_rest),
            (Some((a, p_rest)), Some((b, t_rest))) => a == b && go(p_rest, t_rest),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let t: Vec<&str> = topic.split('.').collect();
    go(&p, &t)
}
