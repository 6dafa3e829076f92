//! Workflows from Python: `pso.Step` and `pso.Workflow`, mirroring
//! `pso_core::workflow` (`context.rs`: step functions and their context;
//! `deferred.rs`: `async def` steps; `result.rs`: runs and results).
//!
//! A `Step` only holds what the user gave; `Orchestrator.workflow()` turns
//! the steps into core `StepSpec`s and builds them (validation and errors are
//! core's). Each Python function a workflow calls is its own reference,
//! shared by core's closures only, so a `Step` can be collected or cleared
//! independently of the workflows built from it.
//!
//! # Garbage collection
//! `Workflow` does not report the functions of its steps to the collector:
//! runs in flight hold them too, and a collector that cleared them (finding
//! a cycle through the `Workflow` object) would break a running step. A
//! step function that refers back to its own `Workflow` or `Run` therefore
//! keeps both alive until the process ends (a leak, never a crash).

#![forbid(unsafe_code)]

pub(crate) mod context;
pub(crate) mod deferred;
pub(crate) mod result;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pso_core::{Priority, RetryPolicy, StepSpec, Workflow};
use pyo3::PyTraverseError;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::aio::RunLoops;
use crate::error::invalid_argument;
use crate::model::Callable;

/// Most retries a step may ask for (core counts attempts in 24 bits).
pub(crate) const MAX_RETRIES: u32 = (1 << 24) - 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// A step's `when`: a callable `when(ctx) -> bool`, or the name of a step
/// whose output must be truthy.
enum When {
    Callable(Callable),
    Step(String),
}

/// One step of a workflow: a system operation (`system` and `op`) or a
/// function (`fn`), with its inputs, ordering, retries, timeout, priority and
/// condition. Built into a workflow by `Orchestrator.workflow`.
#[pyclass(name = "Step", module = "pso", frozen)]
pub(crate) struct PyStep {
    name: String,
    system: Option<String>,
    op: Option<String>,
    inputs: Vec<(String, String)>,
    after: Vec<String>,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    timeout: Option<Duration>,
    priority: Option<Priority>,
    /// The function; `None` for an operation step or once cleared.
    func: Mutex<Option<Callable>>,
    when: Mutex<Option<When>>,
}

/// A number of seconds, at least 0 (`positive`: more than 0).
pub(crate) fn seconds_arg(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    what: &str,
    positive: bool,
) -> PyResult<Duration> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number of seconds, got 'bool'"
        )));
    }
    let secs: f64 = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a number of seconds, got '{}'",
            type_name(obj)
        ))
    })?;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !(positive && d.is_zero()) => Ok(d),
        _ => Err(invalid_argument(
            py,
            format!(
                "{what} must be a finite number of seconds, {}, got {secs}",
                if positive {
                    "more than 0"
                } else {
                    "at least 0"
                }
            ),
        )),
    }
}

fn string_list(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Vec<String>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a list of step names, not a str (write {what}=[{}])",
            obj.repr().map(|r| r.to_string()).unwrap_or_default()
        )));
    }
    let iter = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a list of step names, got '{}'",
            type_name(obj)
        ))
    })?;
    iter.enumerate()
        .map(|(i, item)| {
            let item = item?;
            item.extract::<String>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{what}[{i}] must be a str, got '{}'",
                    type_name(&item)
                ))
            })
        })
        .collect()
}

#[pymethods]
impl PyStep {
    #[new]
    #[pyo3(signature = (
        name, system = None, op = None, r#fn = None, inputs = None, after = None,
        retries = None, backoff = None, max_backoff = None, timeout = None, priority = None,
        when = None
    ))]
    #[pyo3(
        text_signature = "(name, system=None, op=None, fn=None, inputs={}, after=[], retries=0, \
        backoff=0.01, max_backoff=10.0, timeout=None, priority=None, when=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        system: Option<String>,
        op: Option<String>,
        r#fn: Option<&Bound<'_, PyAny>>,
        inputs: Option<&Bound<'_, PyAny>>,
        after: Option<&Bound<'_, PyAny>>,
        retries: Option<&Bound<'_, PyAny>>,
        backoff: Option<&Bound<'_, PyAny>>,
        max_backoff: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        priority: Option<String>,
        when: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let name: String = name.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "Step name must be a str, got '{}'",
                type_name(name)
            ))
        })?;
        let func = r#fn.filter(|f| !f.is_none());
        match (&system, &op, func) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => {}
            (_, _, Some(_)) => {
                return Err(invalid_argument(
                    py,
                    format!("step '{name}': give either fn or system and op, not both"),
                ));
            }
            (Some(_), None, None) | (None, Some(_), None) => {
                return Err(invalid_argument(
                    py,
                    format!("step '{name}': system and op go together (give both)"),
                ));
            }
            (None, None, None) => {
                return Err(invalid_argument(
                    py,
                    format!("step '{name}': give fn, or system and op"),
                ));
            }
        }
        let func = match func {
            Some(f) if !f.is_callable() => {
                return Err(PyTypeError::new_err(format!(
                    "step '{name}': fn must be callable (it is called with a StepContext), got '{}'",
                    type_name(f)
                )));
            }
            Some(f) => Some(Arc::new(f.clone().unbind())),
            None => None,
        };
        let mut input_list = Vec::new();
        if let Some(inputs) = inputs.filter(|i| !i.is_none()) {
            let dict = inputs.cast::<PyDict>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "step '{name}': inputs must be a dict of input name -> step name, got '{}'",
                    type_name(inputs)
                ))
            })?;
            for (k, v) in dict.iter() {
                let (Ok(k), Ok(v)) = (k.extract::<String>(), v.extract::<String>()) else {
                    return Err(PyTypeError::new_err(format!(
                        "step '{name}': inputs must map str to str (input name -> step name), \
                         got {}: {}",
                        k.repr().map(|r| r.to_string()).unwrap_or_default(),
                        v.repr().map(|r| r.to_string()).unwrap_or_default()
                    )));
                };
                input_list.push((k, v));
            }
        }
        let after = string_list(after, &format!("step '{name}': after"))?;
        let retries: i128 = match retries.filter(|r| !r.is_none()) {
            None => 0,
            Some(r) if r.is_instance_of::<PyBool>() => {
                return Err(PyTypeError::new_err(format!(
                    "step '{name}': retries must be an int, got 'bool'"
                )));
            }
            Some(r) => r.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "step '{name}': retries must be an int, got '{}'",
                    type_name(r)
                ))
            })?,
        };
        let retries = u32::try_from(retries)
            .ok()
            .filter(|&r| r <= MAX_RETRIES)
            .ok_or_else(|| {
                invalid_argument(
                    py,
                    format!(
                        "step '{name}': retries must be between 0 and {MAX_RETRIES}, got {retries}"
                    ),
                )
            })?;
        let defaults = RetryPolicy::default();
        let backoff = match backoff.filter(|b| !b.is_none()) {
            Some(b) => seconds_arg(py, b, &format!("step '{name}': backoff"), false)?,
            None => defaults.base,
        };
        let max_backoff = match max_backoff.filter(|b| !b.is_none()) {
            Some(b) => seconds_arg(py, b, &format!("step '{name}': max_backoff"), false)?,
            None => defaults.max,
        };
        let timeout = match timeout.filter(|t| !t.is_none()) {
            Some(t) => Some(seconds_arg(
                py,
                t,
                &format!("step '{name}': timeout"),
                true,
            )?),
            None => None,
        };
        let priority = match priority {
            Some(p) => Some(
                p.parse::<Priority>()
                    .map_err(|e: String| invalid_argument(py, format!("step '{name}': {e}")))?,
            ),
            None => None,
        };
        let when = match when.filter(|w| !w.is_none()) {
            None => None,
            Some(w) if w.is_instance_of::<PyString>() => Some(When::Step(w.extract()?)),
            Some(w) if w.is_callable() => Some(When::Callable(Arc::new(w.clone().unbind()))),
            Some(w) => {
                return Err(PyTypeError::new_err(format!(
                    "step '{name}': when must be a step name or a callable when(ctx) -> bool, \
                     got '{}'",
                    type_name(w)
                )));
            }
        };
        Ok(PyStep {
            name,
            system,
            op,
            inputs: input_list,
            after,
            retries,
            backoff,
            max_backoff,
            timeout,
            priority,
            func: Mutex::new(func),
            when: Mutex::new(when),
        })
    }

    /// The step's name, unique in its workflow.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The system whose operation runs, or `None` for a function step.
    #[getter]
    fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// The operation, or `None` for a function step.
    #[getter]
    fn op(&self) -> Option<&str> {
        self.op.as_deref()
    }

    /// The function, or `None` for an operation step.
    #[getter]
    fn r#fn(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.func).as_ref().map(|f| f.clone_ref(py))
    }

    /// Input name -> the step whose output it is (a new dict).
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (k, v) in &self.inputs {
            dict.set_item(k, v)?;
        }
        Ok(dict)
    }

    /// Steps this one runs after (ordering only).
    #[getter]
    fn after(&self) -> Vec<String> {
        self.after.clone()
    }

    /// Extra attempts after a failure (not after a timeout).
    #[getter]
    fn retries(&self) -> u32 {
        self.retries
    }

    /// Delay before the first retry, seconds (doubling, with jitter).
    #[getter]
    fn backoff(&self) -> f64 {
        self.backoff.as_secs_f64()
    }

    /// Longest delay between retries, seconds.
    #[getter]
    fn max_backoff(&self) -> f64 {
        self.max_backoff.as_secs_f64()
    }

    /// Timeout of one attempt, seconds, or `None`.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout.map(|t| t.as_secs_f64())
    }

    /// The priority class, or `None` for the system's (normal for a function).
    #[getter]
    fn priority(&self) -> Option<&'static str> {
        self.priority.map(Priority::name)
    }

    /// The condition: a step name, a callable, or `None`.
    #[getter]
    fn when(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(match &*lock(&self.when) {
            None => None,
            Some(When::Step(s)) => Some(PyString::new(py, s).into_any().unbind()),
            Some(When::Callable(c)) => Some(c.clone_ref(py)),
        })
    }

    fn __repr__(&self) -> String {
        match (&self.system, &self.op) {
            (Some(s), Some(o)) => format!("Step({:?}, system={s:?}, op={o:?})", self.name),
            _ => format!("Step({:?}, fn=...)", self.name),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: never wait in a GC pass (skipping a visit is conservative).
        if let Ok(f) = self.func.try_lock()
            && let Some(f) = f.as_ref()
        {
            visit.call(&**f)?;
        }
        if let Ok(w) = self.when.try_lock()
            && let Some(When::Callable(c)) = w.as_ref()
        {
            visit.call(&**c)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let f = lock(&self.func).take();
        let w = lock(&self.when).take();
        drop((f, w));
    }
}

impl PyStep {
    /// The core spec, with new references to the Python functions.
    fn to_spec(&self, py: Python<'_>, loops: &Arc<RunLoops>) -> PyResult<StepSpec> {
        let mut spec = match (&self.system, &self.op) {
            (Some(system), Some(op)) => StepSpec::op(&self.name, system, op),
            _ => {
                let f = lock(&self.func)
                    .as_ref()
                    .map(|f| f.clone_ref(py))
                    .ok_or_else(|| {
                        invalid_argument(py, format!("step '{}' was cleared", self.name))
                    })?;
                StepSpec::shared(
                    &self.name,
                    context::step_fn(Arc::new(f), Some(loops.clone())),
                )
            }
        };
        for (input, from) in &self.inputs {
            spec = spec.input(input, from);
        }
        for a in &self.after {
            spec = spec.after(a);
        }
        if self.retries > 0 {
            spec = spec.retry_policy(RetryPolicy {
                max_retries: self.retries,
                base: self.backoff,
                max: self.max_backoff,
                jitter: true,
            });
        }
        if let Some(t) = self.timeout {
            spec = spec.timeout(t);
        }
        if let Some(p) = self.priority {
            spec = spec.priority(p);
        }
        match &*lock(&self.when) {
            None => {}
            Some(When::Step(s)) => spec = spec.when_truthy(s),
            Some(When::Callable(c)) => {
                spec = spec.when_shared(context::condition_fn(Arc::new(c.clone_ref(py))));
            }
        }
        Ok(spec)
    }
}

/// The core specs of `steps` (an iterable of `pso.Step`).
pub(crate) fn specs(
    py: Python<'_>,
    steps: &Bound<'_, PyAny>,
    loops: &Arc<RunLoops>,
) -> PyResult<Vec<StepSpec>> {
    if steps.is_instance_of::<PyString>() || steps.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "steps must be a list of pso.Step, got '{}'",
            type_name(steps)
        )));
    }
    let iter = steps.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "steps must be a list of pso.Step, got '{}'",
            type_name(steps)
        ))
    })?;
    let mut out = Vec::with_capacity(steps.len().unwrap_or(0));
    for (i, item) in iter.enumerate() {
        let item = item?;
        let step = item.cast::<PyStep>().map_err(|_| {
            PyTypeError::new_err(format!(
                "steps[{i}] must be a pso.Step, got '{}'",
                type_name(&item)
            ))
        })?;
        out.push(step.get().to_spec(py, loops)?);
    }
    Ok(out)
}

/// A validated, compiled workflow: run it with
/// `Orchestrator.coordinate_systems`, as many times as you like, concurrently.
#[pyclass(name = "Workflow", module = "pso", frozen)]
pub(crate) struct PyWorkflow {
    inner: Workflow,
}

impl PyWorkflow {
    pub(crate) fn new(inner: Workflow) -> Self {
        PyWorkflow { inner }
    }

    /// The core workflow (a cheap handle).
    pub(crate) fn core(&self) -> &Workflow {
        &self.inner
    }
}

#[pymethods]
impl PyWorkflow {
    /// The workflow's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Number of steps.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Step names in a topological order (dependencies first).
    #[getter]
    fn step_names(&self, py: Python<'_>) -> Vec<String> {
        py.detach(|| self.inner.step_names())
    }

    /// The systems whose operations the steps run.
    #[getter]
    fn systems(&self) -> Vec<String> {
        self.inner
            .systems()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.Workflow {:?} steps={}>",
            self.inner.name(),
            self.inner.len()
        )
    }
}
