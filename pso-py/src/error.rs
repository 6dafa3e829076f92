//! Error mapping: every pso-core error becomes an instance of the one Python
//! exception class of its [`ErrorKind`].
//!
//! The classes are built at import time from [`ErrorKind::ALL`], so a kind added
//! to pso-core gets a class (named after [`ErrorKind::name`]) without a change
//! here. Each class derives from `pso.PsoError` and carries `kind` (the name)
//! and `code` (the number) as class attributes; some also derive from a builtin
//! (`NotFoundError` is a `LookupError`). Errors that carry data get it as
//! instance attributes: `report`/`chain`/`target` (handler failures, with the
//! handler's original exception as `__cause__`), `system`/`other` (conflicts),
//! `path` (cycles, also of workflow steps), `line`/`column`/`source` (parse
//! errors of topologies and workflow definitions), `system`/`dimension`/
//! `requested`/`capacity` (a resource request larger than a capacity) and
//! `group`/`dimension`/`requested`/`quota` (larger than a group's quota);
//! hub errors: `token`/`index`/`input`/`syntax`/`reason` (a bad topic or
//! pattern), `topic` (no responders, timeouts, overflow), `receivers`
//! (a request every receiver dropped), `subscription`/`pattern`/`capacity`/
//! `timed_out`/`delivered` (overflow), `system`/`peer`/`reason` (a closed
//! direct channel), `value` (a direct send that did not happen: the object
//! handed back); state errors: `key`/`expected`/`current`/`revision` (a
//! compare-and-set conflict), `requested`/`oldest` (compacted history),
//! `path` (snapshot files).
//!
//! This is the only file that builds Python exceptions from core errors.

#![forbid(unsafe_code)]

use pso_core::{
    BuildError, DirectSendError, ErrorKind, HubError, LifecycleError, PsoError, RegistryError,
    ResourceError, StateError, TopologyError, WorkflowError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::lifecycle::PyActivationReport;
use crate::model::HandlerException;
use crate::state::PyEntry;

/// The Python name of the class for `kind`: `NOT_FOUND` -> `NotFoundError`.
/// Two exceptions, as the contract names them: `HANDLER_FAILED` is
/// `HandlerError` and `OVERFLOW` is `QueueOverflowError`.
pub(crate) fn class_name(kind: ErrorKind) -> String {
    match kind {
        ErrorKind::HandlerFailed => return "HandlerError".to_owned(),
        // `OverflowError` would shadow the builtin of that name.
        ErrorKind::Overflow => return "QueueOverflowError".to_owned(),
        _ => {}
    }
    let mut name = String::new();
    for word in kind.name().split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    name.push_str("Error");
    name
}

/// The builtin exception a kind's class also derives from, if any.
pub(crate) fn builtin_base(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::NullPointer
        | ErrorKind::InvalidUtf8
        | ErrorKind::InvalidArgument
        | ErrorKind::Parse => Some("ValueError"),
        ErrorKind::NotFound => Some("LookupError"),
        ErrorKind::Timeout => Some("TimeoutError"),
        ErrorKind::Io => Some("OSError"),
        _ => None,
    }
}

/// The exception classes, created once per process.
struct Classes {
    base: Py<PyType>,
    by_kind: Vec<(ErrorKind, Py<PyType>)>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn new_class<'py>(
    py: Python<'py>,
    name: &str,
    bases: Bound<'py, PyTuple>,
    doc: &str,
    attrs: &[(&str, Bound<'py, PyAny>)],
) -> PyResult<Bound<'py, PyType>> {
    let dict = PyDict::new(py);
    dict.set_item("__module__", "pso")?;
    dict.set_item("__doc__", doc)?;
    for (k, v) in attrs {
        dict.set_item(k, v)?;
    }
    let builtins = py.import("builtins")?;
    Ok(builtins
        .getattr("type")?
        .call1((name, bases, dict))?
        .cast_into::<PyType>()?)
}

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let exception = builtins.getattr("Exception")?;
        let base = new_class(
            py,
            "PsoError",
            PyTuple::new(py, [exception])?,
            "Base class of every PSO error. `kind` is the error kind's name \
             (\"NOT_FOUND\") and `code` its number, the same in every language.",
            &[],
        )?;
        let mut by_kind = Vec::with_capacity(ErrorKind::ALL.len());
        for kind in ErrorKind::ALL {
            let mut bases = vec![base.clone().into_any()];
            if let Some(b) = builtin_base(kind) {
                bases.push(builtins.getattr(b)?);
            }
            let name = class_name(kind);
            let class = new_class(
                py,
                &name,
                PyTuple::new(py, bases)?,
                &format!("PSO error of kind {} (code {}).", kind.name(), kind.code()),
                &[
                    ("kind", kind.name().into_pyobject(py)?.into_any()),
                    ("code", kind.code().into_pyobject(py)?.into_any()),
                ],
            )?;
            by_kind.push((kind, class.unbind()));
        }
        Ok(Classes {
            base: base.unbind(),
            by_kind,
        })
    })
}

/// Adds `PsoError` and one class per error kind to the module.
pub(crate) fn add_to_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let classes = classes(py)?;
    m.add("PsoError", classes.base.bind(py))?;
    for (kind, class) in &classes.by_kind {
        m.add(class_name(*kind), class.bind(py))?;
    }
    Ok(())
}

/// A Python exception of `kind` with `message` and extra attributes.
fn raise(
    py: Python<'_>,
    kind: ErrorKind,
    message: String,
    attrs: Vec<(&'static str, Bound<'_, PyAny>)>,
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let classes = classes(py)?;
        let class = classes
            .by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, c)| c.bind(py))
            .unwrap_or_else(|| classes.base.bind(py));
        let exc = class.call1((message,))?;
        for (name, value) in attrs {
            exc.setattr(name, value)?;
        }
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| e)
}

/// The exception of `kind` with `message` (no extra attributes).
pub(crate) fn of_kind(py: Python<'_>, kind: ErrorKind, message: impl Into<String>) -> PyErr {
    raise(py, kind, message.into(), Vec::new())
}

/// `InvalidArgumentError(message)`.
pub(crate) fn invalid_argument(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, ErrorKind::InvalidArgument, message.into(), Vec::new())
}

/// `NotFoundError(message)`.
pub(crate) fn not_found(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, ErrorKind::NotFound, message.into(), Vec::new())
}

/// `TimeoutError(message)`.
pub(crate) fn timeout(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, ErrorKind::Timeout, message.into(), Vec::new())
}

/// `ClosedError(message)`.
pub(crate) fn closed(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, ErrorKind::Closed, message.into(), Vec::new())
}

/// A pso-core error that can become a Python exception.
pub(crate) trait IntoPyErr {
    /// The Python exception for this error.
    fn into_pyerr(self, py: Python<'_>) -> PyErr;
}

/// `result.or_raise(py)?` turns a core error into its Python exception.
pub(crate) trait OrRaise<T> {
    /// Maps the error with [`IntoPyErr`].
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T, E: IntoPyErr> OrRaise<T> for Result<T, E> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| e.into_pyerr(py))
    }
}

fn registry_attrs<'py>(
    py: Python<'py>,
    e: &RegistryError,
) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
    Ok(match e {
        RegistryError::Cycle { path, .. } => vec![("path", path.into_pyobject(py)?.into_any())],
        _ => Vec::new(),
    })
}

impl IntoPyErr for RegistryError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match registry_attrs(py, &self) {
            Ok(attrs) => raise(py, self.kind(), self.to_string(), attrs),
            Err(e) => e,
        }
    }
}

impl IntoPyErr for TopologyError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let attrs = || -> PyResult<Vec<(&'static str, Bound<'_, PyAny>)>> {
            Ok(match &self {
                TopologyError::Parse {
                    source_name,
                    line,
                    column,
                    ..
                } => vec![
                    ("line", line.into_pyobject(py)?.into_any()),
                    ("column", column.into_pyobject(py)?.into_any()),
                    ("source", source_name.into_pyobject(py)?.into_any()),
                ],
                TopologyError::Invalid { error, .. } => registry_attrs(py, error)?,
                _ => Vec::new(),
            })
        };
        match attrs() {
            Ok(attrs) => raise(py, self.kind(), self.to_string(), attrs),
            Err(e) => e,
        }
    }
}

impl IntoPyErr for WorkflowError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let attrs = || -> PyResult<Vec<(&'static str, Bound<'_, PyAny>)>> {
            Ok(match &self {
                WorkflowError::Parse {
                    source_name,
                    line,
                    column,
                    ..
                } => vec![
                    ("line", line.into_pyobject(py)?.into_any()),
                    ("column", column.into_pyobject(py)?.into_any()),
                    ("source", source_name.into_pyobject(py)?.into_any()),
                ],
                WorkflowError::Cycle { path, .. } => {
                    vec![("path", path.into_pyobject(py)?.into_any())]
                }
                _ => Vec::new(),
            })
        };
        match attrs() {
            Ok(attrs) => raise(py, self.kind(), self.to_string(), attrs),
            Err(e) => e,
        }
    }
}

impl IntoPyErr for ResourceError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let attrs = || -> PyResult<Vec<(&'static str, Bound<'_, PyAny>)>> {
            Ok(match &self {
                ResourceError::ExceedsCapacity {
                    system,
                    dimension,
                    requested,
                    capacity,
                } => vec![
                    ("system", system.into_pyobject(py)?.into_any()),
                    ("dimension", dimension.into_pyobject(py)?.into_any()),
                    ("requested", requested.into_pyobject(py)?.into_any()),
                    ("capacity", capacity.into_pyobject(py)?.into_any()),
                ],
                ResourceError::ExceedsQuota {
                    group,
                    dimension,
                    requested,
                    quota,
                } => vec![
                    ("group", group.into_pyobject(py)?.into_any()),
                    ("dimension", dimension.into_pyobject(py)?.into_any()),
                    ("requested", requested.into_pyobject(py)?.into_any()),
                    ("quota", quota.into_pyobject(py)?.into_any()),
                ],
                _ => Vec::new(),
            })
        };
        match attrs() {
            Ok(attrs) => raise(py, self.kind(), self.to_string(), attrs),
            Err(e) => e,
        }
    }
}

impl IntoPyErr for HubError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let attrs = || -> PyResult<Vec<(&'static str, Bound<'_, PyAny>)>> {
            Ok(match &self {
                HubError::InvalidTopic {
                    syntax,
                    input,
                    token,
                    index,
                    reason,
                } => vec![
                    ("syntax", syntax.into_pyobject(py)?.into_any()),
                    ("input", input.into_pyobject(py)?.into_any()),
                    ("token", token.into_pyobject(py)?.into_any()),
                    ("index", index.into_pyobject(py)?.into_any()),
                    ("reason", reason.into_pyobject(py)?.into_any()),
                ],
                HubError::NoResponders { topic } | HubError::NotARequest { topic } => {
                    vec![("topic", topic.into_pyobject(py)?.into_any())]
                }
                HubError::Unanswered { topic, receivers } => vec![
                    ("topic", topic.into_pyobject(py)?.into_any()),
                    ("receivers", receivers.into_pyobject(py)?.into_any()),
                ],
                HubError::Timeout { topic, after } => vec![
                    ("topic", topic.into_pyobject(py)?.into_any()),
                    ("timeout", after.as_secs_f64().into_pyobject(py)?.into_any()),
                ],
                HubError::Overflow {
                    topic,
                    subscription,
                    pattern,
                    capacity,
                    timed_out,
                    delivered,
                } => vec![
                    ("topic", topic.into_pyobject(py)?.into_any()),
                    ("subscription", subscription.0.into_pyobject(py)?.into_any()),
                    ("pattern", pattern.into_pyobject(py)?.into_any()),
                    ("capacity", capacity.into_pyobject(py)?.into_any()),
                    (
                        "timed_out",
                        pyo3::types::PyBool::new(py, *timed_out)
                            .to_owned()
                            .into_any(),
                    ),
                    ("delivered", delivered.into_pyobject(py)?.into_any()),
                ],
                HubError::SubscriptionClosed { id, pattern } => vec![
                    ("subscription", id.0.into_pyobject(py)?.into_any()),
                    ("pattern", pattern.into_pyobject(py)?.into_any()),
                ],
                HubError::ChannelClosed { a, b, reason } => vec![
                    ("system", a.into_pyobject(py)?.into_any()),
                    ("peer", b.into_pyobject(py)?.into_any()),
                    ("reason", reason.into_pyobject(py)?.into_any()),
                ],
                _ => Vec::new(),
            })
        };
        match attrs() {
            Ok(attrs) => raise(py, self.kind(), self.to_string(), attrs),
            Err(e) => e,
        }
    }
}

impl IntoPyErr for StateError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let attrs = || -> PyResult<Vec<(&'static str, Bound<'_, PyAny>)>> {
            Ok(match &self {
                StateError::Conflict {
                    key,
                    expected,
                    current,
                } => vec![
                    ("key", key.into_pyobject(py)?.into_any()),
                    ("expected", expected.into_pyobject(py)?.into_any()),
                    (
                        "current",
                        match current {
                            Some(e) => Bound::new(py, PyEntry::from(e.clone()))?.into_any(),
                            None => py.None().into_bound(py),
                        },
                    ),
                    (
                        "revision",
                        current
                            .as_ref()
                            .map_or(0, |e| e.revision)
                            .into_pyobject(py)?
                            .into_any(),
                    ),
                ],
                StateError::Compacted { requested, oldest } => vec![
                    ("requested", requested.into_pyobject(py)?.into_any()),
                    ("oldest", oldest.into_pyobject(py)?.into_any()),
                ],
                StateError::Timeout { after } => {
                    vec![("timeout", after.as_secs_f64().into_pyobject(py)?.into_any())]
                }
                StateError::Io { path, .. } | StateError::Parse { path, .. } => {
                    vec![("path", path.into_pyobject(py)?.into_any())]
                }
                _ => Vec::new(),
            })
        };
        match attrs() {
            Ok(attrs) => raise(py, self.kind(), self.to_string(), attrs),
            Err(e) => e,
        }
    }
}

/// The exception for a direct send that did not happen; `value` is the
/// object that was not sent (so the caller can publish it instead).
pub(crate) fn direct_send_error(
    py: Python<'_>,
    e: &DirectSendError,
    value: &Bound<'_, PyAny>,
    me: &str,
    peer: &str,
) -> PyErr {
    let message = format!("{e} ({me} -> {peer})");
    raise(py, e.kind(), message, vec![("value", value.clone())])
}

impl IntoPyErr for BuildError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        raise(py, self.kind(), self.to_string(), Vec::new())
    }
}

impl IntoPyErr for LifecycleError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let kind = self.kind();
        let message = self.to_string();
        // The original Python exception of the failing handler, if it raised one.
        let cause = self
            .cause()
            .and_then(|c| c.host_payload())
            .and_then(|p| p.downcast_ref::<HandlerException>())
            .map(|h| PyErr::from_value(h.0.bind(py).clone().into_any()));
        let attrs = || -> PyResult<Vec<(&'static str, Bound<'_, PyAny>)>> {
            Ok(match self {
                LifecycleError::Registry(e) => registry_attrs(py, &e)?,
                LifecycleError::Conflict { system, other, .. } => vec![
                    ("system", system.into_pyobject(py)?.into_any()),
                    ("other", other.into_pyobject(py)?.into_any()),
                ],
                LifecycleError::ActivationFailed {
                    target,
                    chain,
                    report,
                    ..
                } => handler_failed_attrs(py, target, chain, *report)?,
                LifecycleError::DeactivationFailed { target, report, .. } => {
                    // Core names no chain for deactivation: it is the target
                    // itself, or for deactivate_all the first system that failed.
                    let failed = if target == "*" {
                        report.failures().first().map(|o| o.system.clone())
                    } else {
                        Some(target.clone())
                    };
                    let chain = failed.into_iter().collect();
                    handler_failed_attrs(py, target, chain, *report)?
                }
                _ => Vec::new(),
            })
        };
        let err = match attrs() {
            Ok(attrs) => raise(py, kind, message, attrs),
            Err(e) => return e,
        };
        if cause.is_some() {
            err.set_cause(py, cause);
        }
        err
    }
}

fn handler_failed_attrs(
    py: Python<'_>,
    target: String,
    chain: Vec<String>,
    report: pso_core::ActivationReport,
) -> PyResult<Vec<(&'static str, Bound<'_, PyAny>)>> {
    Ok(vec![
        (
            "report",
            Bound::new(py, PyActivationReport::from(report))?.into_any(),
        ),
        ("chain", chain.into_pyobject(py)?.into_any()),
        ("target", target.into_pyobject(py)?.into_any()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in docs/API.md: every kind has its own class, with these
    /// names and builtin bases.
    #[test]
    fn every_kind_has_a_distinct_class_matching_the_contract() {
        let expected = [
            (
                ErrorKind::NullPointer,
                "NullPointerError",
                Some("ValueError"),
            ),
            (
                ErrorKind::InvalidUtf8,
                "InvalidUtf8Error",
                Some("ValueError"),
            ),
            (ErrorKind::StaleHandle, "StaleHandleError", None),
            (ErrorKind::Internal, "InternalError", None),
            (ErrorKind::NotFound, "NotFoundError", Some("LookupError")),
            (ErrorKind::AlreadyExists, "AlreadyExistsError", None),
            (ErrorKind::Cycle, "CycleError", None),
            (
                ErrorKind::InvalidArgument,
                "InvalidArgumentError",
                Some("ValueError"),
            ),
            (ErrorKind::Parse, "ParseError", Some("ValueError")),
            (ErrorKind::Conflict, "ConflictError", None),
            (ErrorKind::HandlerFailed, "HandlerError", None),
            (ErrorKind::Timeout, "TimeoutError", Some("TimeoutError")),
            (ErrorKind::Busy, "BusyError", None),
            (ErrorKind::Closed, "ClosedError", None),
            (ErrorKind::Io, "IoError", Some("OSError")),
            (ErrorKind::NotActive, "NotActiveError", None),
            (ErrorKind::NoResponders, "NoRespondersError", None),
            (ErrorKind::Overflow, "QueueOverflowError", None),
            (ErrorKind::CasConflict, "CasConflictError", None),
            (ErrorKind::Compacted, "CompactedError", None),
            (ErrorKind::ExceedsCapacity, "ExceedsCapacityError", None),
            (ErrorKind::ExceedsQuota, "ExceedsQuotaError", None),
            (ErrorKind::Cancelled, "CancelledError", None),
        ];
        assert_eq!(
            expected.len(),
            ErrorKind::ALL.len(),
            "docs/API.md table is stale"
        );
        for (kind, name, base) in expected {
            assert_eq!(class_name(kind), name);
            assert_eq!(builtin_base(kind), base, "{name}");
        }
        let mut names: Vec<String> = ErrorKind::ALL.iter().map(|&k| class_name(k)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
