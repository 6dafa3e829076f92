//! Python objects <-> pso-core's [`Value`], the data that flows between
//! workflow steps.
//!
//! | Python | `Value` |
//! |---|---|
//! | `None` | `Null` |
//! | `bool` | `Bool` (checked before `int`: `bool` is an `int` subclass) |
//! | `int` | `Int` (a 64-bit signed integer; anything larger is an error) |
//! | `float` | `Float` |
//! | `str` | `String` |
//! | `bytes`, `bytearray` | `Bytes` (back as `bytes`) |
//! | `list`, `tuple` | `List` (back as `list`) |
//! | `dict` with `str` keys | `Map` (back as a `dict`, keys in sorted order) |
//!
//! Anything else is a [`Unsupported`] error naming the type and where it was
//! found (`['rows'][3]`), never a panic. Nesting deeper than [`MAX_DEPTH`]
//! (including a list that contains itself) is an error too: converting
//! recurses, and worker threads must not overflow their stacks.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use pso_core::Value;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};

/// How deeply values may nest.
pub(crate) const MAX_DEPTH: usize = 200;

/// Why a Python object cannot become a [`Value`].
#[derive(Debug)]
pub(crate) struct Unsupported {
    /// The Python exception type that fits: `TypeError`, `OverflowError` or
    /// `ValueError`.
    pub(crate) kind: &'static str,
    /// Where in the object (`["rows"][3]`), or empty for the object itself.
    path: String,
    /// What is wrong.
    detail: String,
}

impl Unsupported {
    /// The message about `what` (`"the output of step 'x'"`, `"input"`).
    pub(crate) fn message(&self, what: &str) -> String {
        if self.path.is_empty() {
            format!("{what}: {}", self.detail)
        } else {
            format!("{what} at {}: {}", self.path, self.detail)
        }
    }

    /// The Python exception (for values converted on the caller's thread).
    pub(crate) fn into_pyerr(self, what: &str) -> PyErr {
        let message = self.message(what);
        match self.kind {
            "OverflowError" => PyOverflowError::new_err(message),
            "ValueError" => PyValueError::new_err(message),
            _ => PyTypeError::new_err(message),
        }
    }
}

/// Converts `obj` to a [`Value`].
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> Result<Value, Unsupported> {
    let mut path = String::new();
    convert(obj, 0, &mut path).map_err(|(kind, detail)| Unsupported { kind, path, detail })
}

/// [`to_value`] raising the Python exception; `what` names the value.
pub(crate) fn extract_value(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    to_value(obj).map_err(|u| u.into_pyerr(what))
}

type Failure = (&'static str, String);

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

const SUPPORTED: &str =
    "PSO values are None, bool, int, float, str, bytes, list, tuple and dict with str keys";

fn convert(obj: &Bound<'_, PyAny>, depth: usize, path: &mut String) -> Result<Value, Failure> {
    if depth > MAX_DEPTH {
        return Err((
            "ValueError",
            format!("nested more than {MAX_DEPTH} levels deep (or it contains itself)"),
        ));
    }
    // Exact types first (the common case), then subclasses.
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| Value::String(s.to_owned()))
            .map_err(|e| ("ValueError", format!("a str that is not valid UTF-8 ({e})")));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().map(Value::Int).map_err(|_| {
            let repr = obj
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".to_owned());
            (
                "OverflowError",
                format!("int {repr} does not fit in a 64-bit signed integer"),
            )
        });
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Bytes(b.to_vec()));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return seq(list.iter(), list.len(), depth, path);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return seq(t.iter(), t.len(), depth, path);
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = BTreeMap::new();
        for (k, v) in d.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err((
                    "TypeError",
                    format!(
                        "dict keys must be str, got a key of type '{}' ({})",
                        type_name(&k),
                        k.repr().map(|r| r.to_string()).unwrap_or_default()
                    ),
                ));
            };
            let key = key
                .to_str()
                .map_err(|e| {
                    (
                        "ValueError",
                        format!("a dict key that is not valid UTF-8 ({e})"),
                    )
                })?
                .to_owned();
            let len = path.len();
            path.push_str(&format!("[{key:?}]"));
            let v = convert(&v, depth + 1, path)?;
            path.truncate(len);
            map.insert(key, v);
        }
        return Ok(Value::Map(map));
    }
    Err((
        "TypeError",
        format!(
            "cannot convert an object of type '{}' ({SUPPORTED})",
            type_name(obj)
        ),
    ))
}

fn seq<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    len: usize,
    depth: usize,
    path: &mut String,
) -> Result<Value, Failure> {
    let mut out = Vec::with_capacity(len);
    for (i, item) in items.enumerate() {
        let at = path.len();
        path.push_str(&format!("[{i}]"));
        out.push(convert(&item, depth + 1, path)?);
        path.truncate(at);
    }
    Ok(Value::List(out))
}

/// Converts a [`Value`] to a new Python object.
pub(crate) fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}
