//! Python values -> pso-core's model: `SystemSpec`, `EdgeSpec`, `Handlers`.
//!
//! Handlers are Python callables. Core calls them on its worker threads; the
//! wrapper made by [`lifecycle_fn`] attaches to the interpreter (takes the GIL)
//! only for the call itself, and turns a raised exception into
//! `HandlerError::Raised`, keeping the exception object as the payload so
//! that `error.rs` can re-attach it as `__cause__`.
//!
//! Every handler is held as an `Arc<Py<PyAny>>` shared by core's closure and
//! the orchestrator's [`HandlerRefs`] mirror: one Python reference, which the
//! orchestrator reports to the garbage collector (`__traverse__`), so a
//! handler that refers back to its orchestrator does not leak both.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pso_core::{
    EdgeKind, EdgeSpec, HandlerError, Handlers, HostPayload, LifecycleContext, LifecycleFn,
    Priority, SystemSpec,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::aio::RunLoops;
use crate::error::invalid_argument;

/// The exception a Python handler raised, stored in
/// `HandlerError::Raised::payload`.
pub(crate) struct HandlerException(pub(crate) Py<pyo3::exceptions::PyBaseException>);

/// A handler callable, shared between core's closure and the mirror.
pub(crate) type Callable = Arc<Py<PyAny>>;

/// The Python handlers of one system, as the orchestrator mirrors them.
#[derive(Default, Clone)]
pub(crate) struct HandlerRefs {
    pub(crate) activate: Option<Callable>,
    pub(crate) deactivate: Option<Callable>,
    /// The health probe (`supervise.rs`), set by `register` and
    /// `set_health_check`; `set_handlers` leaves it alone.
    pub(crate) probe: Option<Callable>,
}

impl HandlerRefs {
    /// Core handlers calling these callables.
    pub(crate) fn to_core(&self) -> Handlers {
        Handlers::new()
            .with_activate(self.activate.clone().map(lifecycle_fn))
            .with_deactivate(self.deactivate.clone().map(lifecycle_fn))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.activate.is_none() && self.deactivate.is_none() && self.probe.is_none()
    }

    /// The Python objects held, for `__traverse__`.
    pub(crate) fn objects(&self) -> impl Iterator<Item = &Py<PyAny>> {
        self.activate
            .iter()
            .chain(self.deactivate.iter())
            .chain(self.probe.iter())
            .map(|c| &**c)
    }
}

/// Wraps a Python callable as a core lifecycle handler.
fn lifecycle_fn(callable: Callable) -> LifecycleFn {
    Arc::new(move |ctx: &LifecycleContext<'_>| call_handler(&callable, ctx))
}

fn call_handler(callable: &Py<PyAny>, ctx: &LifecycleContext<'_>) -> Result<(), HandlerError> {
    let attached = Python::try_attach(|py| match callable.call1(py, (ctx.system(),)) {
        Ok(ret) => reject_awaitable(py, ret.bind(py), ctx),
        Err(err) => Err(raised(py, err)),
    });
    attached.unwrap_or_else(|| {
        Err(HandlerError::failed(
            "the Python interpreter is shutting down: the handler was not called",
        ))
    })
}

/// An `async def` handler returns a coroutine that nobody would await: fail
/// the system with a TypeError instead of silently doing nothing.
fn reject_awaitable(
    py: Python<'_>,
    ret: &Bound<'_, PyAny>,
    ctx: &LifecycleContext<'_>,
) -> Result<(), HandlerError> {
    if !ret.hasattr("__await__").unwrap_or(false) {
        return Ok(());
    }
    if ret.hasattr("close").unwrap_or(false) {
        let _ = ret.call_method0("close"); // no "coroutine was never awaited" warning
    }
    Err(raised(
        py,
        PyTypeError::new_err(format!(
            "the {} handler of '{}' returned an awaitable; PSO handlers must be plain \
             (synchronous) callables",
            ctx.action(),
            ctx.system()
        )),
    ))
}

/// `HandlerError::Raised` for a Python exception, keeping the exception.
pub(crate) fn raised(py: Python<'_>, err: PyErr) -> HandlerError {
    use pyo3::types::PyTypeMethods;
    let type_name = err
        .get_type(py)
        .fully_qualified_name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "<unknown exception type>".to_owned());
    let message = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "<str() of the exception failed>".to_owned());
    HandlerError::Raised {
        type_name,
        message,
        payload: Some(HostPayload::new(HandlerException(err.into_value(py)))),
    }
}

/// Everything `register` accepts, before conversion.
#[derive(Default)]
pub(crate) struct SpecArgs<'py> {
    pub(crate) tier: Option<String>,
    pub(crate) tags: Option<Bound<'py, PyAny>>,
    pub(crate) priority: Option<String>,
    pub(crate) resources: Option<Bound<'py, PyAny>>,
    pub(crate) requires: Option<Bound<'py, PyAny>>,
    pub(crate) wants: Option<Bound<'py, PyAny>>,
    pub(crate) after: Option<Bound<'py, PyAny>>,
    pub(crate) conflicts: Option<Bound<'py, PyAny>>,
    pub(crate) interacts: Option<Bound<'py, PyAny>>,
    pub(crate) timeout: Option<Bound<'py, PyAny>>,
    pub(crate) on_activate: Option<Bound<'py, PyAny>>,
    pub(crate) on_deactivate: Option<Bound<'py, PyAny>>,
    pub(crate) operations: Option<Bound<'py, PyAny>>,
    pub(crate) concurrency: Option<Bound<'py, PyAny>>,
    pub(crate) pinned: bool,
    pub(crate) health: Option<Bound<'py, PyAny>>,
    pub(crate) supervise: Option<Bound<'py, PyAny>>,
}

/// The Python operations of one system, by name, as the orchestrator
/// mirrors them (for the garbage collector).
pub(crate) type OperationRefs = Vec<(String, Callable)>;

/// The keyword names of `register` (and the keys of a `register_many` dict).
pub(crate) const SPEC_KEYS: [&str; 18] = [
    "name",
    "tier",
    "tags",
    "priority",
    "resources",
    "requires",
    "wants",
    "after",
    "conflicts",
    "interacts",
    "timeout",
    "on_activate",
    "on_deactivate",
    "operations",
    "concurrency",
    "pinned",
    "health",
    "supervise",
];

impl<'py> SpecArgs<'py> {
    /// Reads one `register_many` entry; `at` names it in errors (`systems[2]`).
    pub(crate) fn from_dict(dict: &Bound<'py, PyAny>, at: &str) -> PyResult<(String, Self)> {
        let py = dict.py();
        let dict = dict.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{at} must be a dict of register() keywords, got {}",
                type_name(dict)
            ))
        })?;
        let mut name = None;
        let mut args = SpecArgs::default();
        for (key, value) in dict.iter() {
            let key: String = key.extract().map_err(|_| {
                PyTypeError::new_err(format!("{at}: keys must be str, got {}", type_name(&key)))
            })?;
            let none = value.is_none();
            let opt = || (!none).then(|| value.clone());
            let string = |what: &str| -> PyResult<Option<String>> {
                if none {
                    return Ok(None);
                }
                value.extract().map(Some).map_err(|_| {
                    PyTypeError::new_err(format!(
                        "{at}.{what} must be a str, got {}",
                        type_name(&value)
                    ))
                })
            };
            match key.as_str() {
                "name" => name = string("name")?,
                "tier" => args.tier = string("tier")?,
                "priority" => args.priority = string("priority")?,
                "tags" => args.tags = opt(),
                "resources" => args.resources = opt(),
                "requires" => args.requires = opt(),
                "wants" => args.wants = opt(),
                "after" => args.after = opt(),
                "conflicts" => args.conflicts = opt(),
                "interacts" => args.interacts = opt(),
                "timeout" => args.timeout = opt(),
                "on_activate" => args.on_activate = opt(),
                "on_deactivate" => args.on_deactivate = opt(),
                "operations" => args.operations = opt(),
                "concurrency" => args.concurrency = opt(),
                "health" => args.health = opt(),
                "supervise" => args.supervise = opt(),
                "pinned" => {
                    args.pinned = !none
                        && value.extract::<bool>().map_err(|_| {
                            PyTypeError::new_err(format!(
                                "{at}.pinned must be a bool, got {}",
                                type_name(&value)
                            ))
                        })?
                }
                other => {
                    return Err(invalid_argument(
                        py,
                        format!(
                            "{at}: unknown key '{other}' (expected one of: {})",
                            SPEC_KEYS.join(", ")
                        ),
                    ));
                }
            }
        }
        let name = name.ok_or_else(|| invalid_argument(py, format!("{at} has no 'name'")))?;
        Ok((name, args))
    }

    /// The core spec and the Python handlers and operations it calls. `at`
    /// names the entry in error messages (`""` for `register`, `"systems[2]"`
    /// for `register_many`).
    pub(crate) fn into_spec(
        self,
        py: Python<'py>,
        name: String,
        at: &str,
        loops: &Arc<RunLoops>,
    ) -> PyResult<(SystemSpec, HandlerRefs, OperationRefs)> {
        let mut spec = SystemSpec::new(name).pinned(self.pinned);
        if let Some(tier) = self.tier {
            spec = spec.tier(tier);
        }
        spec = spec.tags(names(self.tags.as_ref(), &field(at, "tags"))?);
        if let Some(p) = self.priority {
            let p: Priority = p
                .parse()
                .map_err(|e: String| invalid_argument(py, prefixed(at, &e)))?;
            spec = spec.priority(p);
        }
        for (dimension, amount) in resources(py, self.resources.as_ref(), at)? {
            spec = spec.resource(dimension, amount);
        }
        for (kind, list) in [
            (EdgeKind::Requires, &self.requires),
            (EdgeKind::Wants, &self.wants),
            (EdgeKind::After, &self.after),
            (EdgeKind::Conflicts, &self.conflicts),
            (EdgeKind::Interacts, &self.interacts),
        ] {
            for other in names(list.as_ref(), &field(at, kind.name()))? {
                spec = spec.edge(kind, other);
            }
        }
        if let Some(t) = &self.timeout {
            spec = spec.timeout(seconds(py, t, &field(at, "timeout"))?);
        }
        if let Some(limit) = self.concurrency.as_ref().filter(|c| !c.is_none()) {
            spec = spec.concurrency(concurrency_limit(py, limit, &field(at, "concurrency"))?);
        }
        let operations = operations(self.operations.as_ref(), &field(at, "operations"))?;
        for (op, f) in &operations {
            spec = spec.operation(
                op,
                crate::workflow::context::step_closure(f.clone(), Some(loops.clone())),
            );
        }
        let mut probe = None;
        if let Some(h) = self.health.as_ref().filter(|h| !h.is_none()) {
            let (check, p) = crate::supervise::health_check(h, &field(at, "health"))?;
            spec = spec.health_check(check);
            probe = p;
        }
        if let Some(s) = self.supervise.as_ref().filter(|s| !s.is_none()) {
            spec = spec.supervise(crate::supervise::supervision(s, &field(at, "supervise"))?);
        }
        let handlers = HandlerRefs {
            activate: callable(self.on_activate, &field(at, "on_activate"))?,
            deactivate: callable(self.on_deactivate, &field(at, "on_deactivate"))?,
            probe,
        };
        Ok((spec.handlers(handlers.to_core()), handlers, operations))
    }
}

/// `what` as a field of entry `at`: `systems[2].tags`, or `tags` alone.
pub(crate) fn field(at: &str, what: &str) -> String {
    if at.is_empty() {
        what.to_owned()
    } else {
        format!("{at}.{what}")
    }
}

/// `message` about entry `at`: `systems[2]: ...`, or the message alone.
pub(crate) fn prefixed(at: &str, message: &str) -> String {
    if at.is_empty() {
        message.to_owned()
    } else {
        format!("{at}: {message}")
    }
}

/// A handler argument: `None` or a callable.
pub(crate) fn callable(obj: Option<Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Callable>> {
    match obj {
        Some(o) if !o.is_none() => {
            if !o.is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "{what} must be callable (it is called with the system name), got {}",
                    type_name(&o)
                )));
            }
            Ok(Some(Arc::new(o.unbind())))
        }
        _ => Ok(None),
    }
}

/// An operation function: a callable `fn(ctx) -> value`.
pub(crate) fn operation(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Callable> {
    if !obj.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be callable (it is called with a StepContext), got {}",
            type_name(obj)
        )));
    }
    Ok(Arc::new(obj.clone().unbind()))
}

/// `operations`: a dict of operation name -> callable.
fn operations(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<OperationRefs> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    let dict = obj.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a dict of operation name -> callable, got {}",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let k: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!("{what}: keys must be str, got {}", type_name(&k)))
        })?;
        let f = operation(&v, &format!("{what}['{k}']"))?;
        out.push((k, f));
    }
    Ok(out)
}

/// A concurrency limit: an int of at least 1.
pub(crate) fn concurrency_limit(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<u32> {
    let n = if obj.is_instance_of::<PyBool>() {
        None
    } else {
        obj.extract::<i128>().ok()
    };
    let n = n.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{what} must be an int or None, got {}",
            type_name(obj)
        ))
    })?;
    u32::try_from(n).ok().filter(|&n| n >= 1).ok_or_else(|| {
        invalid_argument(
            py,
            format!("{what} must be between 1 and 2**32-1 (or None for no limit), got {n}"),
        )
    })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| format!("'{n}'"))
        .unwrap_or_else(|_| "an object of unknown type".to_owned())
}

/// A list of names: any iterable of str, but not a str itself (which would be
/// read as its characters).
fn names(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Vec<String>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a list of names, not a str (write {what}=[{}])",
            obj.repr().map(|r| r.to_string()).unwrap_or_default()
        )));
    }
    let iter = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a list of names, got {}",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        out.push(item.extract::<String>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what}[{i}] must be a str, got {}",
                type_name(&item)
            ))
        })?);
    }
    Ok(out)
}

fn resources(
    py: Python<'_>,
    obj: Option<&Bound<'_, PyAny>>,
    at: &str,
) -> PyResult<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(out);
    };
    let what = field(at, "resources");
    let dict = obj.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a dict of dimension name -> amount, got {}",
            type_name(obj)
        ))
    })?;
    for (k, v) in dict.iter() {
        let k: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!("{what}: keys must be str, got {}", type_name(&k)))
        })?;
        let amount = if v.is_instance_of::<PyBool>() {
            None
        } else {
            v.extract::<i128>().ok()
        };
        let amount = amount.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{what}['{k}'] must be an int, got {}",
                type_name(&v)
            ))
        })?;
        let amount = u64::try_from(amount).map_err(|_| {
            invalid_argument(
                py,
                format!("{what}['{k}'] must be between 0 and 2**64-1, got {amount}"),
            )
        })?;
        out.insert(k, amount);
    }
    Ok(out)
}

/// A positive, finite number of seconds.
pub(crate) fn seconds(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number of seconds, got 'bool'"
        )));
    }
    let secs: f64 = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a number of seconds, got {}",
            type_name(obj)
        ))
    })?;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(invalid_argument(
            py,
            format!("{what} must be a positive, finite number of seconds, got {secs}"),
        )),
    }
}

/// One `(source, kind, target)` edge of `register_many`.
pub(crate) fn edge(py: Python<'_>, obj: &Bound<'_, PyAny>, at: &str) -> PyResult<EdgeSpec> {
    let triple: Option<(String, String, String)> = if obj.is_instance_of::<PyString>() {
        None
    } else {
        obj.extract()
            .ok()
            .or_else(|| match obj.extract::<Vec<String>>() {
                Ok(v) if v.len() == 3 => {
                    let mut v = v.into_iter();
                    Some((v.next()?, v.next()?, v.next()?))
                }
                _ => None,
            })
    };
    let (from, kind, to) = triple.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{at} must be a (source, kind, target) tuple of str, got {}",
            obj.repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| type_name(obj))
        ))
    })?;
    Ok(EdgeSpec::new(from, edge_kind(py, &kind, at)?, to))
}

/// An edge kind name (`"requires"`).
pub(crate) fn edge_kind(py: Python<'_>, kind: &str, at: &str) -> PyResult<EdgeKind> {
    kind.parse()
        .map_err(|e: String| invalid_argument(py, prefixed(at, &e)))
}
