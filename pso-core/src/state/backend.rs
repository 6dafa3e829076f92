//! The backend trait and the in-memory backend.
//!
//! # In-memory layout
//! One `RwLock<Mem>`: a hash map from key to its current entry (or a
//! tombstone) and its bounded history of events, the revision counter, the
//! tombstone queue, and the registered watchers. Reads take the read lock;
//! every write takes the write lock, assigns the next revision, appends the
//! event to the key's history and hands it to each matching watcher before
//! unlocking — so watchers see events in revision order, and registering a
//! watch (under the same lock) splits cleanly between "from history" and
//! "live".
//!
//! # Retention
//! * Each key keeps its last `history_per_key` events; dropping older ones
//!   raises the key's `compacted_through`.
//! * A deleted key stays as a tombstone (so its delete event stays
//!   watchable) until more than `max_tombstones` exist; the oldest are then
//!   forgotten and the store-wide `purged_through` rises to their revision.
//! * A restore sets `purged_through` to the restored revision.
//!
//! A watch from `r` fails with `Compacted` if `purged_through > r` or a
//! matching key has `compacted_through > r`.
//!
//! Lock order: the store lock, then a watcher's queue lock.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::time::SystemTime;

use super::watch::{MemWatch, WatchShared, Watcher};
use super::{Entry, Event, StateError};
use crate::sync::{Arc, RwLock};
use crate::value::Value;

type Map<K, V> = foldhash::HashMap<K, V>;

/// What a write requires of the key's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expect {
    /// Nothing.
    Any,
    /// The key is absent (or deleted).
    Absent,
    /// The key is present, at any revision.
    Present,
    /// The key is present at exactly this revision.
    Revision(u64),
}

/// Which keys a watch follows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selector {
    /// One key.
    Key(String),
    /// Every key starting with this prefix (`""`: all).
    Prefix(String),
}

impl Selector {
    /// Whether `key` is selected.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Selector::Key(k) => k == key,
            Selector::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

/// A consistent copy of a store's present entries, for snapshots.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Dump {
    /// The latest revision when it was taken.
    pub revision: u64,
    /// Every present entry, sorted by key.
    pub entries: Vec<Entry>,
}

impl Dump {
    /// A dump of these entries at this revision.
    pub fn new(revision: u64, entries: Vec<Entry>) -> Self {
        Dump { revision, entries }
    }
}

/// Where a [`StateStore`](super::StateStore) keeps its data. Implementations
/// must uphold the store's invariants: revisions global and strictly
/// increasing, compare-and-set atomic, watches gap-free and in order (or a
/// [`StateError::Compacted`] error), as [`MemoryBackend`] does.
pub trait StateBackend: Send + Sync + fmt::Debug + 'static {
    /// The current entry of `key`.
    ///
    /// # Errors
    /// Backend failures.
    fn get(&self, key: &str) -> Result<Option<Entry>, StateError>;

    /// Present entries whose key starts with `prefix`, sorted by key.
    ///
    /// # Errors
    /// Backend failures.
    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StateError>;

    /// The latest revision.
    fn revision(&self) -> u64;

    /// Sets (`Some`) or deletes (`None`) `key` if `expect` holds; returns the
    /// new revision.
    ///
    /// # Errors
    /// [`StateError::Conflict`] with the current entry when `expect` fails.
    fn write(
        &self,
        key: &str,
        value: Option<Value>,
        expect: Expect,
        writer: Option<Arc<str>>,
    ) -> Result<u64, StateError>;

    /// Every change after `after` that `selector` selects, then live ones.
    ///
    /// # Errors
    /// [`StateError::Compacted`] if some are no longer retained.
    fn watch(&self, selector: Selector, after: u64) -> Result<Watcher, StateError>;

    /// A consistent copy of the present entries.
    ///
    /// # Errors
    /// Backend failures.
    fn export(&self) -> Result<Dump, StateError>;

    /// Replaces the contents with `dump` (see
    /// [`StateStore::restore`](super::StateStore::restore)).
    ///
    /// # Errors
    /// Backend failures.
    fn import(&self, dump: Dump) -> Result<(), StateError>;
}

/// In-memory backend settings.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub(crate) history_per_key: usize,
    pub(crate) max_tombstones: usize,
    pub(crate) watch_capacity: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            history_per_key: 64,
            max_tombstones: 10_000,
            watch_capacity: 1024,
        }
    }
}

impl StateConfig {
    /// Defaults: 64 events of history per key, 10,000 tombstones, watch
    /// queues of 1024 events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events of history kept per key (at least 1).
    pub fn history_per_key(mut self, n: usize) -> Self {
        self.history_per_key = n.max(1);
        self
    }

    /// Deleted keys remembered (for watches) before the oldest are forgotten.
    pub fn max_tombstones(mut self, n: usize) -> Self {
        self.max_tombstones = n;
        self
    }

    /// Events a watcher may have pending before it falls back to catching
    /// up from history (at least 1).
    pub fn watch_capacity(mut self, n: usize) -> Self {
        self.watch_capacity = n.max(1);
        self
    }
}

#[derive(Debug, Default)]
struct KeyState {
    current: Option<Entry>,
    history: VecDeque<Event>,
    /// Events with revision <= this were dropped from `history`.
    compacted_through: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Mem {
    keys: Map<Arc<str>, KeyState>,
    revision: u64,
    purged_through: u64,
    tombstones: VecDeque<(u64, Arc<str>)>,
    watchers: Vec<Arc<WatchShared>>,
}

impl Mem {
    /// Retained events after `after` selected by `selector`, in order; or
    /// `Compacted`.
    pub(crate) fn changes_after(
        &self,
        selector: &Selector,
        after: u64,
    ) -> Result<Vec<Event>, StateError> {
        let compacted = |oldest: u64| StateError::Compacted {
            requested: after,
            oldest,
        };
        if self.purged_through > after {
            return Err(compacted(self.purged_through));
        }
        let mut out = Vec::new();
        let mut check = |ks: &KeyState| -> Result<(), StateError> {
            if ks.compacted_through > after {
                return Err(compacted(ks.compacted_through));
            }
            let start = ks.history.partition_point(|e| e.revision <= after);
            out.extend(ks.history.range(start..).cloned());
            Ok(())
        };
        match selector {
            Selector::Key(k) => {
                if let Some(ks) = self.keys.get(k.as_str()) {
                    check(ks)?;
                }
            }
            Selector::Prefix(p) => {
                for (k, ks) in &self.keys {
                    if k.starts_with(p.as_str()) {
                        check(ks)?;
                    }
                }
                out.sort_by_key(|e| e.revision);
            }
        }
        Ok(out)
    }
}

/// The in-memory backend. See the module docs.
#[derive(Debug)]
pub struct MemoryBackend {
    pub(crate) mem: Arc<RwLock<Mem>>,
    config: StateConfig,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new(config: StateConfig) -> Self {
        MemoryBackend {
            mem: Arc::new(RwLock::new(Mem::default())),
            config,
        }
    }
}

impl StateBackend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<Entry>, StateError> {
        let mem = self.mem.read();
        Ok(mem.keys.get(key).and_then(|k| k.current.clone()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StateError> {
        let mem = self.mem.read();
        let mut v: Vec<Entry> = mem
            .keys
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, ks)| ks.current.clone())
            .collect();
        drop(mem);
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    fn revision(&self) -> u64 {
        self.mem.read().revision
    }

    fn write(
        &self,
        key: &str,
        value: Option<Value>,
        expect: Expect,
        writer: Option<Arc<str>>,
    ) -> Result<u64, StateError> {
        let mut guard = self.mem.write();
        let mem = &mut *guard;
        let current = mem.keys.get(key).and_then(|k| k.current.as_ref());
        let ok = match (expect, current) {
            (Expect::Any, _) => true,
            (Expect::Absent, c) => c.is_none(),
            (Expect::Present, c) => c.is_some(),
            (Expect::Revision(r), Some(c)) => c.revision == r,
            (Expect::Revision(_), None) => false,
        };
        if !ok || (value.is_none() && current.is_none()) {
            let current = current.cloned();
            drop(guard);
            return Err(StateError::Conflict {
                key: key.to_owned(),
                expected: match expect {
                    Expect::Revision(r) => r,
                    _ => 0,
                },
                current,
            });
        }
        mem.revision += 1;
        let revision = mem.revision;
        let timestamp = SystemTime::now();
        let key: Arc<str> = match mem.keys.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => key.into(),
        };
        let value = value.map(Arc::new);
        let event = Event {
            revision,
            key: key.clone(),
            value: value.clone(),
            writer: writer.clone(),
            timestamp,
        };
        let ks = mem.keys.entry(key.clone()).or_default();
        ks.current = value.map(|value| Entry {
            key: key.clone(),
            value,
            revision,
            writer,
            timestamp,
        });
        let deleted = ks.current.is_none();
        if ks.history.len() >= self.config.history_per_key
            && let Some(old) = ks.history.pop_front()
        {
            ks.compacted_through = old.revision;
        }
        ks.history.push_back(event);
        if !mem.watchers.is_empty() {
            let event = ks.history.back().expect("just pushed");
            let mut closed = false;
            for w in &mem.watchers {
                if w.selector.matches(&key) {
                    closed |= !w.push(event, self.config.watch_capacity);
                } else {
                    closed |= w.is_closed();
                }
            }
            if closed {
                mem.watchers.retain(|w| !w.is_closed());
            }
        }
        if deleted {
            mem.tombstones.push_back((revision, key));
            while mem.tombstones.len() > self.config.max_tombstones {
                let (rev, k) = mem.tombstones.pop_front().expect("non-empty");
                let still = mem.keys.get(&k).is_some_and(|ks| {
                    ks.current.is_none() && ks.history.back().is_some_and(|e| e.revision == rev)
                });
                if still {
                    mem.keys.remove(&k);
                    mem.purged_through = mem.purged_through.max(rev);
                }
            }
        }
        drop(guard);
        Ok(revision)
    }

    fn watch(&self, selector: Selector, after: u64) -> Result<Watcher, StateError> {
        let mut mem = self.mem.write();
        let backlog = mem.changes_after(&selector, after)?;
        let shared = Arc::new(WatchShared::new(selector, after, backlog));
        mem.watchers.retain(|w| !w.is_closed());
        mem.watchers.push(shared.clone());
        drop(mem);
        Ok(Watcher::from_source(Box::new(MemWatch::new(
            self.mem.clone(),
            shared,
        ))))
    }

    fn export(&self) -> Result<Dump, StateError> {
        let mem = self.mem.read();
        let mut entries: Vec<Entry> = mem
            .keys
            .values()
            .filter_map(|k| k.current.clone())
            .collect();
        let revision = mem.revision;
        drop(mem);
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Dump { revision, entries })
    }

    fn import(&self, dump: Dump) -> Result<(), StateError> {
        let mut mem = self.mem.write();
        let revision = mem
            .revision
            .max(dump.revision)
            .max(dump.entries.iter().map(|e| e.revision).max().unwrap_or(0));
        let old_keys = std::mem::take(&mut mem.keys);
        let watchers = std::mem::take(&mut mem.watchers);
        mem.tombstones.clear();
        for e in dump.entries {
            mem.keys.insert(
                e.key.clone(),
                KeyState {
                    current: Some(e),
                    history: VecDeque::new(),
                    compacted_through: 0,
                },
            );
        }
        mem.revision = revision;
        mem.purged_through = revision;
        for w in &watchers {
            w.fail(StateError::Closed {
                message: format!(
                    "the state was restored from a snapshot (revision {revision}); watch again"
                ),
            });
        }
        drop(mem);
        drop(old_keys);
        drop(watchers);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(b: &MemoryBackend, k: &str, v: i64) -> u64 {
        b.write(k, Some(Value::Int(v)), Expect::Any, None).unwrap()
    }

    #[test]
    fn history_is_bounded_and_compaction_is_reported() {
        let b = MemoryBackend::new(StateConfig::new().history_per_key(2));
        let r1 = put(&b, "a", 1);
        let r2 = put(&b, "a", 2);
        let r3 = put(&b, "a", 3);
        let mem = b.mem.read();
        let sel = Selector::Key("a".into());
        assert_eq!(
            mem.changes_after(&sel, r1)
                .unwrap()
                .iter()
                .map(|e| e.revision)
                .collect::<Vec<_>>(),
            [r2, r3]
        );
        assert!(matches!(
            mem.changes_after(&sel, 0),
            Err(StateError::Compacted { requested: 0, oldest }) if oldest == r1
        ));
        assert!(
            mem.changes_after(&Selector::Key("zz".into()), 0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn tombstones_are_purged_past_the_limit() {
        let b = MemoryBackend::new(StateConfig::new().max_tombstones(1));
        put(&b, "a", 1);
        put(&b, "b", 1);
        let da = b.write("a", None, Expect::Present, None).unwrap();
        let _db = b.write("b", None, Expect::Present, None).unwrap();
        let mem = b.mem.read();
        assert!(!mem.keys.contains_key("a"), "oldest tombstone forgotten");
        assert!(mem.keys.contains_key("b"));
        assert_eq!(mem.purged_through, da);
        assert!(matches!(
            mem.changes_after(&Selector::Prefix(String::new()), da - 1),
            Err(StateError::Compacted { .. })
        ));
        assert_eq!(
            mem.changes_after(&Selector::Prefix(String::new()), da)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn conflicts_carry_the_current_entry() {
        let b = MemoryBackend::new(StateConfig::new());
        let r = put(&b, "k", 1);
        match b.write("k", Some(Value::Int(2)), Expect::Revision(r + 5), None) {
            Err(StateError::Conflict {
                expected,
                current: Some(e),
                ..
            }) => {
                assert_eq!(
                    (expected, e.revision, &*e.value),
                    (r + 5, r, &Value::Int(1))
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            b.write("k", Some(Value::Int(2)), Expect::Absent, None),
            Err(StateError::Conflict { .. })
        ));
        assert!(matches!(
            b.write("nope", None, Expect::Any, None),
            Err(StateError::Conflict { current: None, .. })
        ));
        assert_eq!(b.revision(), r, "failed writes take no revision");
    }
}
