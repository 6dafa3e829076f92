//! The state store: the Node column of docs/API.md, "State store"
//! (pso-core `state/`). `o.state` is a `StateStore` over the
//! orchestrator's store.
//!
//! Every call is quick and never waits for another thread or for JS, so
//! all of them are synchronous, except `watch`, whose events arrive through
//! an async iterator or a callback ([`watch`]).
//!
//! * Revisions are numbers (they stay below 2^53); entries and events carry
//!   `timestamp` as a `Date`.
//! * `compareAndSet` throws `PSO_CAS_CONFLICT` with `current` (the current
//!   `Entry`, or `null` when the key is absent) and `revision` (its
//!   revision, 0 when absent).
//! * `update(key, fn)` is a compare-and-set loop run here, on the JS
//!   thread: `fn` gets the current value (`undefined` when absent) and
//!   returns the new one; on a conflict it is called again with the newer
//!   value. A throw from `fn` ends the update with that error, nothing
//!   written.
//! * Calls after the orchestrator's `close()` throw `PSO_CLOSED`.

pub(crate) mod watch;

use std::time::SystemTime;

use napi::bindgen_prelude::{FromNapiValue, Function, JsObjectValue, ToNapiValue, Unknown};
use napi::{Env, JsDate, ValueType};
use napi_derive::napi;
use pso_core::{Entry, Event, Orchestrator, SnapshotInfo, StateError, StateStore, Value};

use self::watch::JsWatcher;
use crate::error;
use crate::model::js::{self, check_keys, get};
use crate::orchestrator::{JsOrchestrator, guard};
use crate::status::date;
use crate::value;

/// The current value of a key.
#[napi(object, js_name = "Entry", object_from_js = false, use_nullable = true)]
pub struct JsEntry<'env> {
    /// The key.
    pub key: String,
    /// The value.
    #[napi(ts_type = "Value")]
    pub value: Unknown<'env>,
    /// The revision of the write that set it.
    pub revision: f64,
    /// The system that wrote it, if named.
    pub writer: Option<String>,
    /// When it was written.
    pub timestamp: JsDate<'env>,
}

/// One change, as a watch delivers it.
#[napi(
    object,
    js_name = "StateEvent",
    object_from_js = false,
    use_nullable = true
)]
pub struct JsEvent<'env> {
    /// The change's revision.
    pub revision: f64,
    /// The key.
    pub key: String,
    /// The new value, or `null` for a delete.
    #[napi(ts_type = "Value")]
    pub value: Unknown<'env>,
    /// Whether it deleted the key.
    pub deleted: bool,
    /// The system that wrote it, if named.
    pub writer: Option<String>,
    /// When.
    pub timestamp: JsDate<'env>,
}

/// What `snapshot(path)` wrote or `restore(path)` read.
#[napi(object, js_name = "SnapshotInfo", object_from_js = false)]
#[derive(Debug)]
pub struct JsSnapshotInfo {
    /// The file.
    pub path: String,
    /// The store's revision in the snapshot.
    pub revision: f64,
    /// Number of entries.
    pub entries: f64,
    /// File size in bytes.
    pub bytes: f64,
}

impl From<SnapshotInfo> for JsSnapshotInfo {
    fn from(s: SnapshotInfo) -> Self {
        JsSnapshotInfo {
            path: s.path.to_string_lossy().into_owned(),
            revision: s.revision as f64,
            entries: s.entries as f64,
            bytes: s.bytes as f64,
        }
    }
}

fn time(env: &Env, t: SystemTime) -> napi::Result<JsDate<'_>> {
    date(env, t)
}

pub(crate) fn entry<'e>(env: &'e Env, e: &Entry) -> napi::Result<JsEntry<'e>> {
    Ok(JsEntry {
        key: e.key.to_string(),
        value: value::to_js(env, &e.value)?,
        revision: e.revision as f64,
        writer: e.writer.as_deref().map(str::to_owned),
        timestamp: time(env, e.timestamp)?,
    })
}

pub(crate) fn event<'e>(env: &'e Env, e: &Event) -> napi::Result<JsEvent<'e>> {
    Ok(JsEvent {
        revision: e.revision as f64,
        key: e.key.to_string(),
        value: match &e.value {
            Some(v) => value::to_js(env, v)?,
            None => value::to_js(env, &Value::Null)?,
        },
        deleted: e.value.is_none(),
        writer: e.writer.as_deref().map(str::to_owned),
        timestamp: time(env, e.timestamp)?,
    })
}

/// A state error as a JS error: `key`, `expected`, `current` (Entry or
/// null) and `revision` for a CAS conflict; `requested` and `oldest` when
/// compacted; `path` for snapshot files.
pub(crate) fn state_error(env: &Env, e: &StateError) -> napi::Error {
    error::make(
        env,
        pso_core::PsoError::kind(e),
        &e.to_string(),
        |env, obj| {
            match e {
                StateError::Conflict {
                    key,
                    expected,
                    current,
                } => {
                    obj.set_named_property("key", key.as_str())?;
                    obj.set_named_property("expected", *expected as f64)?;
                    obj.set_named_property("revision", e.current_revision().unwrap_or(0) as f64)?;
                    match current {
                        Some(c) => obj.set_named_property("current", entry(env, c)?)?,
                        None => obj.set_named_property("current", napi::bindgen_prelude::Null)?,
                    }
                }
                StateError::Compacted { requested, oldest } => {
                    obj.set_named_property("requested", *requested as f64)?;
                    obj.set_named_property("oldest", *oldest as f64)?;
                }
                StateError::Io { path, .. } | StateError::Parse { path, .. } => {
                    obj.set_named_property("path", path.as_str())?;
                }
                _ => {}
            }
            Ok(())
        },
    )
}

/// The orchestrator's shared state store: versioned keys with
/// compare-and-set, watches and snapshots. Get it as `o.state`.
#[napi(js_name = "StateStore")]
pub struct JsStateStore {
    pub(crate) core: Orchestrator,
    shared: std::sync::Arc<crate::hub::HubShared>,
}

impl std::fmt::Debug for JsStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

impl JsStateStore {
    fn store(&self, env: &Env) -> napi::Result<&StateStore> {
        if self.core.is_closed() {
            Err(error::closed(env))
        } else {
            Ok(self.core.state())
        }
    }

    /// The store, as `options.writer` if given.
    fn writer(&self, env: &Env, options: Option<Unknown<'_>>) -> napi::Result<StateStore> {
        let store = self.store(env)?;
        let Some(obj) = js::opt_object(env, options, "options")? else {
            return Ok(store.clone());
        };
        check_keys(env, &obj, &["writer"], "write options")?;
        Ok(
            match js::opt_string(env, get(&obj, "writer")?, "options.writer")? {
                Some(w) => store.as_writer(&w),
                None => store.clone(),
            },
        )
    }
}

fn revision_arg(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<u64> {
    let n = js::opt_number(env, v, what)?
        .ok_or_else(|| error::invalid(env, format!("{what} must be a number")))?;
    js::count(env, n, what)
}

#[napi]
impl JsStateStore {
    /// The latest revision (0 before the first write).
    #[napi(getter)]
    pub fn revision(&self, env: &Env) -> napi::Result<f64> {
        Ok(self.store(env)?.revision() as f64)
    }

    /// The current entry of `key`, or `null`.
    #[napi(ts_args_type = "key: string", ts_return_type = "Entry | null")]
    pub fn get<'e>(&self, env: &'e Env, key: Unknown<'_>) -> napi::Result<Option<JsEntry<'e>>> {
        guard(env, || {
            let key = js::string(env, key, "key")?;
            match self
                .store(env)?
                .get(&key)
                .map_err(|e| state_error(env, &e))?
            {
                Some(e) => entry(env, &e).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Every present entry whose key starts with `prefix` (default: all),
    /// sorted by key.
    #[napi(ts_args_type = "prefix?: string", ts_return_type = "Array<Entry>")]
    pub fn list<'e>(
        &self,
        env: &'e Env,
        prefix: Option<Unknown<'_>>,
    ) -> napi::Result<Vec<JsEntry<'e>>> {
        guard(env, || {
            let prefix = match prefix {
                Some(p) => js::opt_string(env, p, "prefix")?.unwrap_or_default(),
                None => String::new(),
            };
            self.store(env)?
                .list(&prefix)
                .map_err(|e| state_error(env, &e))?
                .iter()
                .map(|e| entry(env, e))
                .collect()
        })
    }

    /// Sets `key`; returns the new revision.
    #[napi(ts_args_type = "key: string, value: ValueInput, options?: { writer?: string }")]
    pub fn put(
        &self,
        env: &Env,
        key: Unknown<'_>,
        value_arg: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<f64> {
        guard(env, || {
            let key = js::string(env, key, "key")?;
            let v = crate::hub::payload(env, value_arg, "the value")?;
            let store = self.writer(env, options)?;
            store
                .put(&key, v)
                .map(|r| r as f64)
                .map_err(|e| state_error(env, &e))
        })
    }

    /// Deletes `key`; returns the delete's revision, or `null` if it was
    /// absent.
    #[napi(ts_args_type = "key: string, options?: { writer?: string }")]
    pub fn delete(
        &self,
        env: &Env,
        key: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Option<f64>> {
        guard(env, || {
            let key = js::string(env, key, "key")?;
            let store = self.writer(env, options)?;
            store
                .delete(&key)
                .map(|r| r.map(|r| r as f64))
                .map_err(|e| state_error(env, &e))
        })
    }

    /// Sets `key` only if its revision is `expected` (0: only if absent);
    /// returns the new revision. Throws `PSO_CAS_CONFLICT` with `current`
    /// (Entry or null) and `revision` otherwise.
    #[napi(
        ts_args_type = "key: string, expected: number, value: ValueInput, options?: { writer?: string }"
    )]
    pub fn compare_and_set(
        &self,
        env: &Env,
        key: Unknown<'_>,
        expected: Unknown<'_>,
        value_arg: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<f64> {
        guard(env, || {
            let key = js::string(env, key, "key")?;
            let expected = revision_arg(env, expected, "expected")?;
            let v = crate::hub::payload(env, value_arg, "the value")?;
            let store = self.writer(env, options)?;
            store
                .compare_and_set(&key, expected, v)
                .map(|r| r as f64)
                .map_err(|e| state_error(env, &e))
        })
    }

    /// Deletes `key` only if its revision is `expected`; returns the
    /// delete's revision (`PSO_CAS_CONFLICT` otherwise).
    #[napi(ts_args_type = "key: string, expected: number, options?: { writer?: string }")]
    pub fn compare_and_delete(
        &self,
        env: &Env,
        key: Unknown<'_>,
        expected: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<f64> {
        guard(env, || {
            let key = js::string(env, key, "key")?;
            let expected = revision_arg(env, expected, "expected")?;
            let store = self.writer(env, options)?;
            store
                .compare_and_delete(&key, expected)
                .map(|r| r as f64)
                .map_err(|e| state_error(env, &e))
        })
    }

    /// Read-modify-write through compare-and-set, retried on conflict:
    /// `fn(current)` (`undefined` when absent) returns the new value.
    /// Returns the new revision.
    #[napi(
        ts_args_type = "key: string, fn: (current: Value | undefined) => ValueInput, options?: { writer?: string }"
    )]
    pub fn update(
        &self,
        env: &Env,
        key: Unknown<'_>,
        f: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<f64> {
        guard(env, || {
            let key = js::string(env, key, "key")?;
            if f.get_type()? != ValueType::Function {
                return Err(error::invalid(
                    env,
                    format!("fn must be a function, got {}", js::type_of(&f)),
                ));
            }
            let f: Function<'_, Unknown<'_>, Unknown<'_>> = Function::from_unknown(f)?;
            let store = self.writer(env, options)?;
            let mut current = store.get(&key).map_err(|e| state_error(env, &e))?;
            loop {
                let expected = current.as_ref().map_or(0, |e| e.revision);
                let arg = match &current {
                    Some(e) => value::to_js(env, &e.value)?,
                    None => ().into_unknown(env)?,
                };
                let next = f.call(arg)?;
                let next = crate::hub::payload(env, next, "the value returned by fn")?;
                match store.compare_and_set(&key, expected, next) {
                    Ok(r) => return Ok(r as f64),
                    Err(StateError::Conflict { current: now, .. }) => current = now,
                    Err(e) => return Err(state_error(env, &e)),
                }
            }
        })
    }

    /// Watches `key` (or every key starting with it, with `prefix: true`):
    /// each change after `fromRevision` (default 0: everything retained),
    /// exactly once, in order. With a callback, it is called with each
    /// event on the event loop until `close()`; else read the watcher with
    /// `recv()` or `for await`. `PSO_COMPACTED` (on the first read) when
    /// those changes are no longer all retained.
    #[napi(
        ts_args_type = "key: string, options?: WatchOptions, callback?: (event: StateEvent) => void | Promise<void>"
    )]
    pub fn watch(
        &self,
        env: &Env,
        key: Unknown<'_>,
        options: Option<Unknown<'_>>,
        callback: Option<Unknown<'_>>,
    ) -> napi::Result<JsWatcher> {
        guard(env, || {
            let store = self.store(env)?;
            let key = js::string(env, key, "key")?;
            watch::start(env, store, &self.shared, key, options, callback)
        })
    }

    /// Writes the present entries to `path` atomically (a crash mid-write
    /// leaves the previous snapshot intact).
    #[napi(ts_args_type = "path: string")]
    pub fn snapshot(&self, env: &Env, path: Unknown<'_>) -> napi::Result<JsSnapshotInfo> {
        guard(env, || {
            let path = js::string(env, path, "path")?;
            self.store(env)?
                .snapshot(&path)
                .map(JsSnapshotInfo::from)
                .map_err(|e| state_error(env, &e))
        })
    }

    /// Replaces the contents with a snapshot. Live watches end with
    /// `PSO_CLOSED`.
    #[napi(ts_args_type = "path: string")]
    pub fn restore(&self, env: &Env, path: Unknown<'_>) -> napi::Result<JsSnapshotInfo> {
        guard(env, || {
            let path = js::string(env, path, "path")?;
            self.store(env)?
                .restore(&path)
                .map(JsSnapshotInfo::from)
                .map_err(|e| state_error(env, &e))
        })
    }
}

#[napi]
impl JsOrchestrator {
    /// The shared state store (`PSO_CLOSED` once closed).
    #[napi(getter)]
    pub fn state(&self, env: &Env) -> napi::Result<JsStateStore> {
        let core = self.open(env)?;
        Ok(JsStateStore {
            core: core.clone(),
            shared: crate::hub::shared(self.id(), core),
        })
    }
}

impl std::fmt::Debug for JsEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JsEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateEvent")
            .field("key", &self.key)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}
