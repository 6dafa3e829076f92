//! Snapshot files: format and atomic write.
//!
//! A snapshot is JSON:
//!
//! ```text
//! {"format": "pso-state", "version": 1, "revision": 42, "taken_at_ms": ...,
//!  "entries": [{"key": "a", "revision": 7, "writer": "PAES",
//!               "timestamp_ms": ..., "value": {"I": 5}}, ...]}
//! ```
//!
//! Values are written in a tagged form (`{"I": 5}`, `{"S": "x"}`,
//! `{"X": "00ff"}` for bytes, `{"F": "NaN"}` for non-finite floats, `"N"` for
//! null, ...) so every [`Value`] — bytes and NaN included — reads back exactly
//! (the plain JSON form cannot tell bytes from a list).
//!
//! # Atomicity
//! The file is written to a new temporary file in the same directory
//! (`.<name>.tmp-<pid>-<n>`), flushed and `fsync`ed, then renamed over the
//! target, and the directory is synced. Rename within a directory is atomic,
//! so a reader (or a restart after a crash at any point) sees either the
//! previous snapshot or the new one, never a mix. A failed write removes its
//! temporary file; one left by a crash is ignored by [`read`].

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::backend::Dump;
use super::{Entry, StateError};
use crate::sync::{Arc, Ordering, StaticAtomicU64};
use crate::value::Value;

const FORMAT: &str = "pso-state";
const VERSION: u32 = 1;

static TMP_COUNTER: StaticAtomicU64 = StaticAtomicU64::new(0);

/// What a snapshot or restore covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The file.
    pub path: PathBuf,
    /// The store's revision in the snapshot.
    pub revision: u64,
    /// Number of entries.
    pub entries: usize,
    /// File size in bytes.
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct File1 {
    format: String,
    version: u32,
    revision: u64,
    taken_at_ms: u64,
    entries: Vec<EntryRepr>,
}

#[derive(Serialize, Deserialize)]
struct EntryRepr {
    key: String,
    revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer: Option<String>,
    timestamp_ms: u64,
    value: Tagged,
}

#[derive(Serialize, Deserialize)]
enum Tagged {
    N,
    B(bool),
    I(i64),
    F(FloatRepr),
    S(String),
    X(String),
    L(Vec<Tagged>),
    M(BTreeMap<String, Tagged>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FloatRepr {
    Finite(f64),
    Special(String),
}

fn to_tagged(v: &Value) -> Tagged {
    match v {
        Value::Null => Tagged::N,
        Value::Bool(b) => Tagged::B(*b),
        Value::Int(i) => Tagged::I(*i),
        Value::Float(f) if f.is_finite() => Tagged::F(FloatRepr::Finite(*f)),
        Value::Float(f) => Tagged::F(FloatRepr::Special(if f.is_nan() {
            "NaN".into()
        } else if *f > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        })),
        Value::String(s) => Tagged::S(s.clone()),
        Value::Bytes(b) => Tagged::X(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::List(l) => Tagged::L(l.iter().map(to_tagged).collect()),
        Value::Map(m) => Tagged::M(m.iter().map(|(k, v)| (k.clone(), to_tagged(v))).collect()),
    }
}

fn from_tagged(t: Tagged) -> Result<Value, String> {
    Ok(match t {
        Tagged::N => Value::Null,
        Tagged::B(b) => Value::Bool(b),
        Tagged::I(i) => Value::Int(i),
        Tagged::F(FloatRepr::Finite(f)) => Value::Float(f),
        Tagged::F(FloatRepr::Special(s)) => Value::Float(match s.as_str() {
            "NaN" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => return Err(format!("bad float '{other}'")),
        }),
        Tagged::S(s) => Value::String(s),
        Tagged::X(hex) => {
            if hex.len() % 2 != 0 {
                return Err("odd-length hex bytes".into());
            }
            let mut out = Vec::with_capacity(hex.len() / 2);
            for i in (0..hex.len()).step_by(2) {
                let byte = hex
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad hex bytes at {i}"))?;
                out.push(byte);
            }
            Value::Bytes(out)
        }
        Tagged::L(l) => Value::List(l.into_iter().map(from_tagged).collect::<Result<_, _>>()?),
        Tagged::M(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| from_tagged(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
thread_local! {
    /// Test hook: fail a write after this many bytes of the temporary file.
    static FAIL_AFTER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Serializes `dump` and writes it to `path` atomically (module docs).
pub(crate) fn write(path: &Path, dump: &Dump) -> Result<SnapshotInfo, StateError> {
    let file = File1 {
        format: FORMAT.into(),
        version: VERSION,
        revision: dump.revision,
        taken_at_ms: ms(SystemTime::now()),
        entries: dump
            .entries
            .iter()
            .map(|e| EntryRepr {
                key: e.key.to_string(),
                revision: e.revision,
                writer: e.writer.as_deref().map(str::to_owned),
                timestamp_ms: ms(e.timestamp),
                value: to_tagged(&e.value),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&file).map_err(|e| io_err(path, e))?;
    write_atomic(path, &bytes)?;
    Ok(SnapshotInfo {
        path: path.to_path_buf(),
        revision: dump.revision,
        entries: dump.entries.len(),
        bytes: bytes.len() as u64,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let name = path
        .file_name()
        .ok_or_else(|| io_err(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        #[cfg(test)]
        if let Some(limit) = FAIL_AFTER.with(|c| c.get()) {
            f.write_all(&bytes[..limit.min(bytes.len())])?;
            return Err(std::io::Error::other("injected failure mid-snapshot"));
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable (directories can be opened and
        // synced on Unix; elsewhere this is best effort).
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path, e)
    })
}

/// Reads and checks a snapshot file.
pub(crate) fn read(path: &Path) -> Result<(Dump, SnapshotInfo), StateError> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let parse = |message: String| StateError::Parse {
        path: path.display().to_string(),
        message,
    };
    let file: File1 = serde_json::from_slice(&bytes).map_err(|e| parse(e.to_string()))?;
    if file.format != FORMAT {
        return Err(parse(format!(
            "format is '{}', expected '{FORMAT}'",
            file.format
        )));
    }
    if file.version != VERSION {
        return Err(parse(format!(
            "version {} is not supported (this build reads version {VERSION})",
            file.version
        )));
    }
    let mut entries = Vec::with_capacity(file.entries.len());
    for e in file.entries {
        let value = from_tagged(e.value).map_err(|m| parse(format!("key '{}': {m}", e.key)))?;
        entries.push(Entry {
            key: e.key.into(),
            value: Arc::new(value),
            revision: e.revision,
            writer: e.writer.map(Into::into),
            timestamp: UNIX_EPOCH + Duration::from_millis(e.timestamp_ms),
        });
    }
    let info = SnapshotInfo {
        path: path.to_path_buf(),
        revision: file.revision,
        entries: entries.len(),
        bytes: bytes.len() as u64,
    };
    Ok((Dump::new(file.revision, entries), info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateStore;

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pso-snap-{tag}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn every_value_round_trips() {
        let v = Value::List(vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-3),
            Value::Float(1.5),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::String("s".into()),
            Value::Bytes(vec![0, 255, 16]),
            [("k", Value::Bytes(vec![]))].into_iter().collect(),
        ]);
        assert_eq!(from_tagged(to_tagged(&v)).unwrap(), v);
        match from_tagged(to_tagged(&Value::Float(f64::NAN))).unwrap() {
            Value::Float(f) => assert!(f.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_write_leaves_the_previous_snapshot_intact() {
        let dir = tmp_dir("fail");
        let path = dir.join("state.json");
        let store = StateStore::new();
        store.put("a", 1).unwrap();
        store.snapshot(&path).unwrap();
        let before = fs::read(&path).unwrap();
        store.put("a", 2).unwrap();
        store.put("b", "x".repeat(1000)).unwrap();
        FAIL_AFTER.with(|c| c.set(Some(100)));
        let err = store.snapshot(&path).unwrap_err();
        FAIL_AFTER.with(|c| c.set(None));
        assert!(matches!(err, StateError::Io { .. }), "{err:?}");
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "previous snapshot untouched"
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temporary file removed: {leftovers:?}");
        let restored = StateStore::new();
        restored.restore(&path).unwrap();
        assert_eq!(*restored.get("a").unwrap().unwrap().value, Value::Int(1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_are_rejected_clearly() {
        let dir = tmp_dir("bad");
        let path = dir.join("s.json");
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(read(&path), Err(StateError::Parse { .. })));
        fs::write(
            &path,
            r#"{"format":"pso-state","version":99,"revision":0,"taken_at_ms":0,"entries":[]}"#,
        )
        .unwrap();
        let msg = read(&path).unwrap_err().to_string();
        assert!(msg.contains("version 99"), "{msg}");
        assert!(matches!(
            read(&dir.join("missing")),
            Err(StateError::Io { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
