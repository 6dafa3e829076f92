//! The shared state store: key → [`Value`] with a revision, the writing
//! system and a timestamp.
//!
//! # Invariants
//! * Revisions are global and strictly increasing: every successful write
//!   (put, delete of a present key, successful compare-and-set) takes the
//!   next one, and no two writes share one. A restore never moves the
//!   counter back.
//! * A compare-and-set succeeds only if the key's current revision is the
//!   expected one (0: absent), checked and applied atomically; otherwise it
//!   returns [`StateError::Conflict`] with the current entry. So concurrent
//!   read-modify-write loops through CAS never lose an update.
//! * A watch from revision `r` delivers every change with revision `> r`
//!   that matches it, each exactly once, in revision order — or fails with
//!   [`StateError::Compacted`] if some of them are no longer retained. It
//!   never skips silently.
//!
//! The store is a thin front over a [`StateBackend`]; the in-memory backend
//! ([`MemoryBackend`]) is the embedded default. A backend over an external
//! engine (Redis first, DESIGN.md "Defaults and scale") implements the same
//! trait.

#![forbid(unsafe_code)]

mod backend;
mod snapshot;
mod watch;

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use thiserror::Error;

use crate::error::{ErrorKind, PsoError};
use crate::sync::Arc;
use crate::value::Value;

pub use backend::{Dump, Expect, MemoryBackend, Selector, StateBackend, StateConfig};
pub use snapshot::SnapshotInfo;
pub use watch::{WatchSource, Watcher};

/// Serializes a `SystemTime` as RFC 3339 text.
fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn ser_arc<T: Serialize + ?Sized, S: serde::Serializer>(
    v: &Arc<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    (**v).serialize(s)
}

fn ser_opt_arc<T: Serialize + ?Sized, S: serde::Serializer>(
    v: &Option<Arc<T>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    v.as_deref().serialize(s)
}

/// The current value of a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Entry {
    /// The key.
    #[serde(serialize_with = "ser_arc")]
    pub key: Arc<str>,
    /// The value (shared, never copied on read).
    #[serde(serialize_with = "ser_arc")]
    pub value: Arc<Value>,
    /// The revision of the write that set it.
    pub revision: u64,
    /// The system that wrote it, if named.
    #[serde(serialize_with = "ser_opt_arc")]
    pub writer: Option<Arc<str>>,
    /// When it was written.
    #[serde(serialize_with = "ser_time")]
    pub timestamp: SystemTime,
}

/// One change, as delivered by a watch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// The change's revision.
    pub revision: u64,
    /// The key.
    #[serde(serialize_with = "ser_arc")]
    pub key: Arc<str>,
    /// The new value, or `None` for a delete.
    #[serde(serialize_with = "ser_opt_arc")]
    pub value: Option<Arc<Value>>,
    /// The system that wrote it, if named.
    #[serde(serialize_with = "ser_opt_arc")]
    pub writer: Option<Arc<str>>,
    /// When.
    #[serde(serialize_with = "ser_time")]
    pub timestamp: SystemTime,
}

impl Event {
    /// Whether it deleted the key.
    pub fn is_delete(&self) -> bool {
        self.value.is_none()
    }
}

/// Why a state operation failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum StateError {
    /// A compare-and-set found another revision; carries the current entry
    /// (`None`: the key is absent).
    #[error("compare-and-set on '{key}' expected revision {expected}, found {}", current.as_ref().map_or(0, |e| e.revision))]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected (0: absent).
        expected: u64,
        /// The current entry, if any.
        current: Option<Entry>,
    },
    /// A watch asked for changes that are no longer retained.
    #[error(
        "changes after revision {requested} are no longer all retained (only those after revision {oldest} are); read the current value and watch from its revision"
    )]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// Changes after this revision are retained.
        oldest: u64,
    },
    /// An empty key (or other malformed argument).
    #[error("{message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// A watch received nothing in time.
    #[error("no change within {}", humantime::format_duration(*after))]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The watch or store is closed, or the store was restored from a
    /// snapshot under a live watch.
    #[error("{message}")]
    Closed {
        /// Why.
        message: String,
    },
    /// Reading or writing a snapshot file failed.
    #[error("snapshot {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A snapshot file is not a valid snapshot (or of an unknown version).
    #[error("snapshot {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl StateError {
    /// For a conflict: the current revision (0 if absent).
    pub fn current_revision(&self) -> Option<u64> {
        match self {
            StateError::Conflict { current, .. } => {
                Some(current.as_ref().map_or(0, |e| e.revision))
            }
            _ => None,
        }
    }
}

impl PsoError for StateError {
    fn kind(&self) -> ErrorKind {
        match self {
            StateError::Conflict { .. } => ErrorKind::CasConflict,
            StateError::Compacted { .. } => ErrorKind::Compacted,
            StateError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            StateError::Timeout { .. } => ErrorKind::Timeout,
            StateError::Closed { .. } => ErrorKind::Closed,
            StateError::Io { .. } => ErrorKind::Io,
            StateError::Parse { .. } => ErrorKind::Parse,
        }
    }
}

/// Lets a handler use `?` on state calls: the error becomes a handler
/// failure with the state error's message.
impl From<StateError> for crate::model::HandlerError {
    fn from(e: StateError) -> Self {
        crate::model::HandlerError::failed(e.to_string())
    }
}

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() {
        return Err(StateError::InvalidArgument {
            message: "a state key must not be empty".into(),
        });
    }
    Ok(())
}

/// The state store. Cheap to clone; clones share the data.
/// [`StateStore::as_writer`] gives a view that stamps its writes with a
/// system name.
///
/// # Examples
/// ```
/// use pso_core::{StateStore, StateError, Value};
/// let store = StateStore::new();
/// let paes = store.as_writer("PAES");
/// let r1 = paes.put("model.version", 1)?;
/// let r2 = paes.compare_and_set("model.version", r1, 2)?;
/// assert!(r2 > r1);
/// match paes.compare_and_set("model.version", r1, 3) {
///     Err(StateError::Conflict { current: Some(e), .. }) => assert_eq!(*e.value, Value::Int(2)),
///     other => panic!("{other:?}"),
/// }
/// let e = store.get("model.version")?.unwrap();
/// assert_eq!((e.revision, e.writer.as_deref()), (r2, Some("PAES")));
/// # Ok::<(), StateError>(())
/// ```
#[derive(Clone)]
pub struct StateStore {
    backend: Arc<dyn StateBackend>,
    writer: Option<Arc<str>>,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("backend", &self.backend)
            .field("writer", &self.writer)
            .finish()
    }
}

impl Default for StateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl StateStore {
    /// An in-memory store with default settings.
    pub fn new() -> Self {
        Self::with_config(StateConfig::new())
    }

    /// An in-memory store with these settings.
    pub fn with_config(config: StateConfig) -> Self {
        Self::with_backend(Arc::new(MemoryBackend::new(config)))
    }

    /// A store over any backend.
    pub fn with_backend(backend: Arc<dyn StateBackend>) -> Self {
        StateStore {
            backend,
            writer: None,
        }
    }

    /// A view of the same store whose writes name `system` as the writer.
    pub fn as_writer(&self, system: &str) -> StateStore {
        StateStore {
            backend: self.backend.clone(),
            writer: Some(system.into()),
        }
    }

    /// The writer this view stamps, if any.
    pub fn writer(&self) -> Option<&str> {
        self.writer.as_deref()
    }

    /// The latest revision (0 before the first write).
    pub fn revision(&self) -> u64 {
        self.backend.revision()
    }

    /// The current entry of `key`, if present.
    ///
    /// # Errors
    /// [`StateError::InvalidArgument`] for an empty key.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StateError> {
        check_key(key)?;
        self.backend.get(key)
    }

    /// Every present entry whose key starts with `prefix`, sorted by key.
    ///
    /// # Errors
    /// Backend errors only (none in memory).
    pub fn list(&self, prefix: &str) -> Result<Vec<Entry>, StateError> {
        self.backend.list(prefix)
    }

    /// Sets `key`; returns the new revision.
    ///
    /// # Errors
    /// [`StateError::InvalidArgument`] for an empty key.
    pub fn put(&self, key: &str, value: impl Into<Value>) -> Result<u64, StateError> {
        check_key(key)?;
        self.backend
            .write(key, Some(value.into()), Expect::Any, self.writer.clone())
    }

    /// Deletes `key`; returns the delete's revision, or `None` if the key was
    /// absent (nothing changed).
    ///
    /// # Errors
    /// [`StateError::InvalidArgument`] for an empty key.
    pub fn delete(&self, key: &str) -> Result<Option<u64>, StateError> {
        check_key(key)?;
        match self
            .backend
            .write(key, None, Expect::Present, self.writer.clone())
        {
            Ok(r) => Ok(Some(r)),
            Err(StateError::Conflict { current: None, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets `key` only if its current revision is `expected` (0: only if it
    /// is absent). Returns the new revision.
    ///
    /// # Errors
    /// [`StateError::Conflict`] with the current entry and revision;
    /// [`StateError::InvalidArgument`] for an empty key.
    pub fn compare_and_set(
        &self,
        key: &str,
        expected: u64,
        value: impl Into<Value>,
    ) -> Result<u64, StateError> {
        check_key(key)?;
        let expect = if expected == 0 {
            Expect::Absent
        } else {
            Expect::Revision(expected)
        };
        self.backend
            .write(key, Some(value.into()), expect, self.writer.clone())
    }

    /// Deletes `key` only if its current revision is `expected`. Returns the
    /// delete's revision.
    ///
    /// # Errors
    /// As [`StateStore::compare_and_set`].
    pub fn compare_and_delete(&self, key: &str, expected: u64) -> Result<u64, StateError> {
        check_key(key)?;
        self.backend
            .write(key, None, Expect::Revision(expected), self.writer.clone())
    }

    /// Read-modify-write through compare-and-set, retrying on conflict:
    /// `f` gets the current value (`None` if absent) and returns the new one.
    /// Returns the new revision.
    ///
    /// # Errors
    /// [`StateError::InvalidArgument`] for an empty key; backend errors.
    pub fn update(
        &self,
        key: &str,
        mut f: impl FnMut(Option<&Value>) -> Value,
    ) -> Result<u64, StateError> {
        let mut current = self.get(key)?;
        loop {
            let expected = current.as_ref().map_or(0, |e| e.revision);
            let next = f(current.as_ref().map(|e| &*e.value));
            match self.compare_and_set(key, expected, next) {
                Ok(r) => return Ok(r),
                Err(StateError::Conflict { current: now, .. }) => current = now,
                Err(e) => return Err(e),
            }
        }
    }

    /// Watches `key`: every change with a revision greater than
    /// `from_revision`, in order. Use [`StateStore::revision`] for "from
    /// now on", 0 for "everything retained".
    ///
    /// # Errors
    /// [`StateError::Compacted`] if some of those changes are no longer
    /// retained; [`StateError::InvalidArgument`] for an empty key.
    pub fn watch(&self, key: &str, from_revision: u64) -> Result<Watcher, StateError> {
        check_key(key)?;
        self.backend
            .watch(Selector::Key(key.to_owned()), from_revision)
    }

    /// Watches every key starting with `prefix` (`""`: all keys).
    ///
    /// # Errors
    /// As [`StateStore::watch`].
    pub fn watch_prefix(&self, prefix: &str, from_revision: u64) -> Result<Watcher, StateError> {
        self.backend
            .watch(Selector::Prefix(prefix.to_owned()), from_revision)
    }

    /// Writes a snapshot of the present entries to `path`, atomically: a
    /// temporary file in the same directory is written and synced, then
    /// renamed over `path`. A failure (or a crash) at any point leaves the
    /// previous snapshot intact.
    ///
    /// # Errors
    /// [`StateError::Io`].
    pub fn snapshot(&self, path: impl AsRef<Path>) -> Result<SnapshotInfo, StateError> {
        let dump = self.backend.export()?;
        snapshot::write(path.as_ref(), &dump)
    }

    /// Replaces the store's contents with a snapshot. Entries keep their
    /// revisions; the revision counter continues from the larger of the
    /// snapshot's and the current one. History is not in a snapshot: live
    /// watches end with [`StateError::Closed`], and a new watch from before
    /// the restore fails with [`StateError::Compacted`].
    ///
    /// # Errors
    /// [`StateError::Io`]; [`StateError::Parse`] for a malformed file or an
    /// unsupported version.
    pub fn restore(&self, path: impl AsRef<Path>) -> Result<SnapshotInfo, StateError> {
        let (dump, info) = snapshot::read(path.as_ref())?;
        self.backend.import(dump)?;
        Ok(info)
    }
}

/// A deadline `timeout` from now (saturating).
fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}
