//! `pso.StateStore` (`Orchestrator.state`), mirroring `pso_core::state`:
//! versioned keys, compare-and-set, `update`, watches (`watch.rs`) and
//! snapshots, with `Entry`, `Event` and `SnapshotInfo`.
//!
//! Every call into the store runs with the GIL released. `update(key, fn)`
//! is the read-modify-write loop of core's `StateStore::update`, written
//! here because `fn` is Python: it is called with the GIL held, may be
//! called again after a conflict (with the newer value), and an exception
//! from it (or a return value PSO cannot store) ends the update with
//! nothing written.
//!
//! The store answers only while its orchestrator is open (`ClosedError`
//! after `close()`, like every other call).

#![forbid(unsafe_code)]

pub(crate) mod watch;

use std::path::PathBuf;
use std::time::SystemTime;

use pso_core::{Entry, Event, SnapshotInfo, StateError, StateStore};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::error::{OrRaise, invalid_argument};
use crate::lifecycle::{isoformat, py_repr};
use crate::orchestrator::OrchHandle;
use crate::value::{extract_value, to_py};
use watch::PyWatcher;

/// The current value of a key: `key`, `value`, `revision`, `writer`,
/// `timestamp`.
#[pyclass(name = "Entry", module = "pso", frozen)]
pub(crate) struct PyEntry {
    inner: Entry,
}

impl From<Entry> for PyEntry {
    fn from(inner: Entry) -> Self {
        PyEntry { inner }
    }
}

#[pymethods]
impl PyEntry {
    /// The key.
    #[getter]
    fn key(&self) -> &str {
        &self.inner.key
    }

    /// The value (a new object each time).
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.value)
    }

    /// The revision of the write that set it.
    #[getter]
    fn revision(&self) -> u64 {
        self.inner.revision
    }

    /// The system that wrote it, if the write named one.
    #[getter]
    fn writer(&self) -> Option<&str> {
        self.inner.writer.as_deref()
    }

    /// When it was written (timezone-aware, UTC).
    #[getter]
    fn timestamp(&self) -> SystemTime {
        self.inner.timestamp
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Entry(key={}, value={}, revision={}, writer={}, timestamp={})",
            py_repr(py, &*self.inner.key)?,
            to_py(py, &self.inner.value)?.repr()?,
            self.inner.revision,
            py_repr(py, self.inner.writer.as_deref())?,
            py_repr(py, isoformat(py, self.inner.timestamp)?)?
        ))
    }
}

/// One change delivered by a watch: `revision`, `key`, `value` (`None` for a
/// delete), `writer`, `timestamp`.
#[pyclass(name = "Event", module = "pso", frozen)]
pub(crate) struct PyEvent {
    inner: Event,
}

impl From<Event> for PyEvent {
    fn from(inner: Event) -> Self {
        PyEvent { inner }
    }
}

#[pymethods]
impl PyEvent {
    /// The change's revision.
    #[getter]
    fn revision(&self) -> u64 {
        self.inner.revision
    }

    /// The key.
    #[getter]
    fn key(&self) -> &str {
        &self.inner.key
    }

    /// The new value, or `None` for a delete (a new object each time).
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.inner.value {
            Some(v) => to_py(py, v),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// Whether the change deleted the key.
    #[getter]
    fn is_delete(&self) -> bool {
        self.inner.is_delete()
    }

    /// The system that wrote it, if the write named one.
    #[getter]
    fn writer(&self) -> Option<&str> {
        self.inner.writer.as_deref()
    }

    /// When (timezone-aware, UTC).
    #[getter]
    fn timestamp(&self) -> SystemTime {
        self.inner.timestamp
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let value = match &self.inner.value {
            Some(v) => to_py(py, v)?.repr()?.to_string(),
            None => "None".to_owned(),
        };
        Ok(format!(
            "Event(revision={}, key={}, value={value}, writer={})",
            self.inner.revision,
            py_repr(py, &*self.inner.key)?,
            py_repr(py, self.inner.writer.as_deref())?,
        ))
    }
}

/// What a snapshot wrote or a restore read: `path`, `revision`, `entries`,
/// `bytes`.
#[pyclass(name = "SnapshotInfo", module = "pso", frozen)]
pub(crate) struct PySnapshotInfo {
    inner: SnapshotInfo,
}

impl From<SnapshotInfo> for PySnapshotInfo {
    fn from(inner: SnapshotInfo) -> Self {
        PySnapshotInfo { inner }
    }
}

#[pymethods]
impl PySnapshotInfo {
    /// The file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path.clone()
    }

    /// The store's revision in the snapshot.
    #[getter]
    fn revision(&self) -> u64 {
        self.inner.revision
    }

    /// Number of entries.
    #[getter]
    fn entries(&self) -> usize {
        self.inner.entries
    }

    /// Size of the file.
    #[getter]
    fn bytes(&self) -> u64 {
        self.inner.bytes
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "SnapshotInfo(path={}, revision={}, entries={}, bytes={})",
            py_repr(py, self.inner.path.clone())?,
            self.inner.revision,
            self.inner.entries,
            self.inner.bytes
        ))
    }
}

/// A revision argument: an int (not a bool), at least 0.
fn revision_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    let n = if obj.is_instance_of::<PyBool>() {
        None
    } else {
        obj.extract::<i128>().ok()
    };
    let n = n.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{what} must be an int (a revision), got '{}'",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    u64::try_from(n)
        .map_err(|_| invalid_argument(py, format!("{what} must be at least 0, got {n}")))
}

/// The shared state store of an orchestrator: key -> value with a revision,
/// the writing system and a time; compare-and-set; watches from a revision;
/// snapshots to a file.
#[pyclass(name = "StateStore", module = "pso", frozen)]
pub(crate) struct PyStateStore {
    orch: OrchHandle,
}

impl PyStateStore {
    pub(crate) fn new(orch: OrchHandle) -> Self {
        PyStateStore { orch }
    }

    fn store(&self, py: Python<'_>, writer: Option<&str>) -> PyResult<StateStore> {
        let orch = self.orch.core(py)?;
        Ok(match writer {
            Some(w) => orch.state().as_writer(w),
            None => orch.state().clone(),
        })
    }
}

#[pymethods]
impl PyStateStore {
    /// The latest revision (0 before the first write).
    #[getter]
    fn revision(&self, py: Python<'_>) -> PyResult<u64> {
        let store = self.store(py, None)?;
        Ok(py.detach(|| store.revision()))
    }

    /// The current entry of `key`, or `None` if it is absent.
    fn get(&self, py: Python<'_>, key: &str) -> PyResult<Option<PyEntry>> {
        let store = self.store(py, None)?;
        py.detach(|| store.get(key))
            .map(|e| e.map(PyEntry::from))
            .or_raise(py)
    }

    /// Every entry whose key starts with `prefix`, sorted by key.
    #[pyo3(signature = (prefix = ""))]
    fn list(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<PyEntry>> {
        let store = self.store(py, None)?;
        py.detach(|| store.list(prefix))
            .map(|v| v.into_iter().map(PyEntry::from).collect())
            .or_raise(py)
    }

    /// Sets `key` to `value`; returns the new revision. `writer` names the
    /// writing system.
    #[pyo3(signature = (key, value, *, writer = None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        writer: Option<&str>,
    ) -> PyResult<u64> {
        let value = extract_value(value, "value")?;
        let store = self.store(py, writer)?;
        py.detach(|| store.put(key, value)).or_raise(py)
    }

    /// Deletes `key`; returns the delete's revision, or `None` if it was
    /// absent (nothing changed).
    #[pyo3(signature = (key, *, writer = None))]
    fn delete(&self, py: Python<'_>, key: &str, writer: Option<&str>) -> PyResult<Option<u64>> {
        let store = self.store(py, writer)?;
        py.detach(|| store.delete(key)).or_raise(py)
    }

    /// Sets `key` only if its revision is `expected` (0: only if absent);
    /// returns the new revision. Raises `CasConflictError` (`.current`: the
    /// current `Entry` or `None`, `.revision`: its revision, 0 if absent).
    #[pyo3(signature = (key, expected, value, *, writer = None))]
    fn compare_and_set(
        &self,
        py: Python<'_>,
        key: &str,
        expected: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        writer: Option<&str>,
    ) -> PyResult<u64> {
        let expected = revision_arg(py, expected, "expected")?;
        let value = extract_value(value, "value")?;
        let store = self.store(py, writer)?;
        py.detach(|| store.compare_and_set(key, expected, value))
            .or_raise(py)
    }

    /// Deletes `key` only if its revision is `expected`; returns the
    /// delete's revision. Raises `CasConflictError` like `compare_and_set`.
    #[pyo3(signature = (key, expected, *, writer = None))]
    fn compare_and_delete(
        &self,
        py: Python<'_>,
        key: &str,
        expected: &Bound<'_, PyAny>,
        writer: Option<&str>,
    ) -> PyResult<u64> {
        let expected = revision_arg(py, expected, "expected")?;
        let store = self.store(py, writer)?;
        py.detach(|| store.compare_and_delete(key, expected))
            .or_raise(py)
    }

    /// Read-modify-write: `fn(value)` gets the current value (`None` if the
    /// key is absent) and returns the new one, which is written with
    /// compare-and-set; on a conflict `fn` is called again with the newer
    /// value. Returns the new revision. An exception from `fn` propagates
    /// and nothing is written.
    #[pyo3(signature = (key, r#fn, *, writer = None))]
    fn update(
        &self,
        py: Python<'_>,
        key: &str,
        r#fn: &Bound<'_, PyAny>,
        writer: Option<&str>,
    ) -> PyResult<u64> {
        if !r#fn.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "update takes a callable fn(value) -> new value, got '{}'",
                r#fn.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )));
        }
        let store = self.store(py, writer)?;
        let mut current = py.detach(|| store.get(key)).or_raise(py)?;
        loop {
            let old = match &current {
                Some(e) => to_py(py, &e.value)?,
                None => py.None().into_bound(py),
            };
            let new = r#fn.call1((old,))?;
            let new = extract_value(&new, "the value returned by update's fn")?;
            let expected = current.as_ref().map_or(0, |e| e.revision);
            match py.detach(|| store.compare_and_set(key, expected, new)) {
                Ok(r) => return Ok(r),
                Err(StateError::Conflict { current: now, .. }) => current = now,
                Err(e) => return Err(e).or_raise(py),
            }
        }
    }

    /// Watches `key` (or, with `prefix=True`, every key starting with it):
    /// every change with a revision above `from_revision`, exactly once, in
    /// order (`from_revision=state.revision`: from now on; 0: everything
    /// retained). Raises `CompactedError` if some of those changes are no
    /// longer kept. The `Watcher` is iterable and async-iterable.
    #[pyo3(signature = (key, *, prefix = false, from_revision = None))]
    #[pyo3(text_signature = "(self, key, *, prefix=False, from_revision=0)")]
    fn watch(
        &self,
        py: Python<'_>,
        key: &str,
        prefix: bool,
        from_revision: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyWatcher> {
        let from = match from_revision.filter(|r| !r.is_none()) {
            Some(r) => revision_arg(py, r, "from_revision")?,
            None => 0,
        };
        let store = self.store(py, None)?;
        let watcher = py
            .detach(|| {
                if prefix {
                    store.watch_prefix(key, from)
                } else {
                    store.watch(key, from)
                }
            })
            .or_raise(py)?;
        Ok(PyWatcher::new(
            watcher,
            format!("{}{key:?}", if prefix { "prefix " } else { "" }),
            self.orch.clone(),
        ))
    }

    /// Writes the present entries to `path` atomically (a temporary file,
    /// synced, then renamed over `path`: a failure leaves the previous
    /// snapshot intact).
    fn snapshot(&self, py: Python<'_>, path: PathBuf) -> PyResult<PySnapshotInfo> {
        let store = self.store(py, None)?;
        py.detach(|| store.snapshot(&path))
            .map(|inner| PySnapshotInfo { inner })
            .or_raise(py)
    }

    /// Replaces the contents with a snapshot (entries keep their revisions;
    /// the revision never moves back). Live watches end with `ClosedError`.
    /// A file that cannot be read or parsed changes nothing.
    fn restore(&self, py: Python<'_>, path: PathBuf) -> PyResult<PySnapshotInfo> {
        let store = self.store(py, None)?;
        py.detach(|| store.restore(&path))
            .map(|inner| PySnapshotInfo { inner })
            .or_raise(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.store(py, None) {
            Ok(s) => format!("<pso.StateStore revision={}>", py.detach(|| s.revision())),
            Err(_) => "<pso.StateStore closed>".to_owned(),
        }
    }
}
