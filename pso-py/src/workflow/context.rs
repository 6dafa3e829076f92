//! Step functions: Python callables as core [`OpFn`]s, the `StepContext` they
//! receive, and fan-out [`PyChild`]ren.
//!
//! # Threads and the GIL
//! Core calls a step function on a worker thread without the GIL. The
//! wrapper copies what the context says into a [`PyStepContext`] first (no
//! GIL needed), attaches to the interpreter only to call the callable and
//! convert its return value, and hands fan-out children to core after
//! detaching again.
//!
//! # What a context is
//! Core's `StepContext` borrows the run and lives only for the call, and this
//! crate has no `unsafe`, so the Python object is a snapshot: names, attempt,
//! copies of the inputs and of the run input. `cancelled` stays live after the
//! call (it asks a `CancelToken`). `fan_out` collects children while the
//! function runs; the wrapper gives them to core when it returns, resolving
//! `child_op` children (system and operation) at that moment — an unknown or
//! inactive one fails the step with core's message.
//!
//! # Conditions
//! A `when` callable is a core `ConditionFn`, which returns a plain `bool`. A
//! condition that raises must still fail its step with the exception, so the
//! wrapper records the error in a thread-local and lets the step run: core
//! calls the step's function next, on the same thread, and that wrapper fails
//! with the recorded error instead of calling the function.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use pso_core::{CancelToken, Child, ConditionFn, HandlerError, OpFn, StepContext, Value};
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::{PyTraverseError, intern};

use super::deferred;
use crate::aio::RunLoops;
use crate::error::invalid_argument;
use crate::model::{Callable, raised};
use crate::value::{extract_value, to_py, to_value};

/// Wraps a Python callable as a core step function (workflow steps, system
/// operations and fan-out children alike). `loops` (`None` for fan-out
/// children, which cannot defer) lets a function that returns an awaitable
/// run it on its run's loop (`deferred.rs`).
pub(crate) fn step_fn(callable: Callable, loops: Option<Arc<RunLoops>>) -> OpFn {
    Arc::new(step_closure(callable, loops))
}

/// [`step_fn`] as a plain closure (for `SystemSpec::operation`).
pub(crate) fn step_closure(
    callable: Callable,
    loops: Option<Arc<RunLoops>>,
) -> impl Fn(&StepContext<'_>) -> Result<Value, HandlerError> + Send + Sync + 'static {
    move |ctx: &StepContext<'_>| call_step(&callable, ctx, loops.as_deref())
}

/// Wraps a Python callable as a core condition.
pub(crate) fn condition_fn(callable: Callable) -> ConditionFn {
    Arc::new(move |ctx: &StepContext<'_>| check_condition(&callable, ctx))
}

thread_local! {
    /// The error of a `when` callable that raised, for the step function core
    /// calls next on this thread: `(run id, step, attempt, error)`.
    static CONDITION_ERROR: RefCell<Option<(u64, String, u32, HandlerError)>> =
        const { RefCell::new(None) };
}

fn take_condition_error(ctx: &StepContext<'_>) -> Option<HandlerError> {
    CONDITION_ERROR.with(|c| {
        let mut c = c.borrow_mut();
        let (run, step, attempt, _) = c.as_ref()?;
        let mine = *run == ctx.run_id() && *attempt == ctx.attempt() && *step == ctx.step_name();
        // A stale entry (its step was cancelled before it ran) is dropped too.
        let (.., e) = c.take()?;
        mine.then_some(e)
    })
}

fn shutting_down() -> HandlerError {
    HandlerError::failed("the Python interpreter is shutting down: the step was not run")
}

fn check_condition(callable: &Py<PyAny>, ctx: &StepContext<'_>) -> bool {
    let snapshot = PyStepContext::snapshot(ctx, Mode::Condition);
    let outcome = Python::try_attach(|py| {
        let result = Bound::new(py, snapshot).and_then(|pyctx| {
            let ret = callable.bind(py).call1((&pyctx,));
            pyctx.get().close();
            ret?.is_truthy()
        });
        result.map_err(|e| raised(py, e))
    })
    .unwrap_or_else(|| Err(shutting_down()));
    match outcome {
        Ok(holds) => holds,
        Err(e) => {
            let key = (ctx.run_id(), ctx.step_name(), ctx.attempt(), e);
            CONDITION_ERROR.with(|c| *c.borrow_mut() = Some(key));
            true // the step's function fails with `e` (see the module docs)
        }
    }
}

fn call_step(
    callable: &Py<PyAny>,
    ctx: &StepContext<'_>,
    loops: Option<&RunLoops>,
) -> Result<Value, HandlerError> {
    if let Some(e) = take_condition_error(ctx) {
        return Err(e);
    }
    let snapshot = PyStepContext::snapshot(ctx, Mode::Step);
    let (output, children) = Python::try_attach(|py| -> Result<_, HandlerError> {
        let pyctx = Bound::new(py, snapshot).map_err(|e| raised(py, e))?;
        let ret = callable.bind(py).call1((&pyctx,));
        let children = pyctx.get().close();
        let ret = ret.map_err(|e| raised(py, e))?;
        let output = match to_value(&ret) {
            Ok(v) => v,
            // Checked only now, off the common path: `hasattr` on most
            // objects raises and catches an AttributeError.
            Err(u) if ret.hasattr(intern!(py, "__await__")).unwrap_or(false) => {
                let why = match loops {
                    _ if !children.is_empty() => "a step that fans out cannot also be async",
                    None => "a fan-out child cannot be async (only a step's own function can)",
                    Some(loops) => {
                        return deferred::run_awaitable(py, ctx, &ret, loops)
                            .map(|v| (v, Vec::new()));
                    }
                };
                drop(u);
                deferred::discard(&ret);
                return Err(type_error(format!(
                    "step '{}' returned an awaitable: {why}",
                    ctx.step_name()
                )));
            }
            Err(u) => {
                return Err(HandlerError::Raised {
                    type_name: u.kind.to_owned(),
                    message: u.message(&format!("the output of step '{}'", ctx.step_name())),
                    payload: None,
                });
            }
        };
        Ok((output, children))
    })
    .unwrap_or_else(|| Err(shutting_down()))?;
    if !children.is_empty() {
        let mut core = Vec::with_capacity(children.len());
        for child in children {
            core.push(match child.kind {
                ChildKind::Func(f) => Child::shared(child.input, step_fn(f, None)),
                ChildKind::Op { system, op } => ctx.child_op(&system, &op, child.input)?,
            });
        }
        ctx.fan_out(core)?;
    }
    Ok(output)
}

fn type_error(message: String) -> HandlerError {
    HandlerError::Raised {
        type_name: "TypeError".to_owned(),
        message,
        payload: None,
    }
}

/// Where a context is used: a step's function (which may fan out), a fan-out
/// child's (which may not), or a `when` condition (which may not either).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Step,
    Condition,
}

/// The step's input value: its named inputs as a dict, the run's input, or
/// (for a fan-out child) the value it was emitted with.
enum Input {
    Named,
    Run,
    Own(Value),
}

/// What a step function receives: the step, its inputs, the run's input,
/// whether it should stop, and `fan_out`.
#[pyclass(name = "StepContext", module = "pso", frozen, freelist = 16)]
pub(crate) struct PyStepContext {
    step: String,
    system: Option<String>,
    op: Option<String>,
    attempt: u32,
    inputs: Vec<(String, Value)>,
    input: Input,
    run_input: Value,
    run_id: u64,
    token: CancelToken,
    /// Why `fan_out` is refused here, if it is.
    no_fan_out: Option<&'static str>,
    /// Children emitted so far; `None` once the function returned.
    children: Mutex<Option<Vec<PyChildSpec>>>,
}

impl PyStepContext {
    /// Copies what `ctx` says (no GIL needed).
    pub(crate) fn snapshot(ctx: &StepContext<'_>, mode: Mode) -> Self {
        // A fan-out child's context refuses to fan out: asking costs nothing
        // (an empty fan-out) and tells which kind this is.
        let is_child = ctx.fan_out(std::iter::empty()).is_err();
        let inputs: Vec<(String, Value)> = ctx
            .inputs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        let run_input = ctx.run_input().clone();
        let input = if is_child {
            Input::Own(ctx.input_value())
        } else if !inputs.is_empty() {
            Input::Named
        } else {
            // No named input has a value: the step has none (its input is the
            // run's) or they were all skipped (its input is an empty map).
            let empty_map = |v: &Value| matches!(v, Value::Map(m) if m.is_empty());
            if empty_map(&ctx.input_value()) && !empty_map(&run_input) {
                Input::Named
            } else {
                Input::Run
            }
        };
        PyStepContext {
            step: ctx.step_name(),
            system: ctx.system().map(str::to_owned),
            op: ctx.operation().map(str::to_owned),
            attempt: ctx.attempt(),
            inputs,
            input,
            run_input,
            run_id: ctx.run_id(),
            token: ctx.cancel_token(),
            no_fan_out: match (mode, is_child) {
                (Mode::Condition, _) => Some("a `when` condition cannot fan out"),
                (Mode::Step, true) => Some("a fan-out child cannot fan out"),
                (Mode::Step, false) => None,
            },
            children: Mutex::new(Some(Vec::new())),
        }
    }

    /// Ends the call: returns the children emitted, and makes `fan_out`
    /// refuse from now on.
    fn close(&self) -> Vec<PyChildSpec> {
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_default()
    }

    fn inputs_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (k, v) in &self.inputs {
            dict.set_item(k, to_py(py, v)?)?;
        }
        Ok(dict)
    }
}

#[pymethods]
impl PyStepContext {
    /// The step's name (`parent[i]` for a fan-out child).
    #[getter]
    fn step(&self) -> &str {
        &self.step
    }

    /// The system whose operation runs, or `None` for a plain function.
    #[getter]
    fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// The operation's name, or `None` for a plain function.
    #[getter]
    fn op(&self) -> Option<&str> {
        self.op.as_deref()
    }

    /// Which attempt this is: 1, then 2, ... on retries.
    #[getter]
    fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's id.
    #[getter]
    fn run_id(&self) -> u64 {
        self.run_id
    }

    /// The named inputs that have a value (a new dict each time).
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.inputs_dict(py)
    }

    /// The step's input: a dict of its named inputs if it has any, else the
    /// run's input; for a fan-out child, the value it was emitted with.
    #[getter]
    fn input<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.input {
            Input::Named => Ok(self.inputs_dict(py)?.into_any()),
            Input::Run => to_py(py, &self.run_input),
            Input::Own(v) => to_py(py, v),
        }
    }

    /// The input the run was started with.
    #[getter]
    fn run_input<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.run_input)
    }

    /// Whether the step should stop: the run was cancelled or passed its
    /// deadline, or this attempt passed its timeout. Live: read it again to
    /// see a change.
    #[getter]
    fn cancelled(&self) -> bool {
        // A few atomic loads (and, for a fan-out child, a short lock that is
        // never held while waiting for the GIL): no need to detach.
        self.token.is_cancelled()
    }

    /// A child step that runs operation `op` of `system` with `input`, for
    /// `fan_out`. The system and operation are resolved when the step's
    /// function returns (an unknown one fails the step).
    #[pyo3(signature = (system, op, input = None))]
    fn child_op(
        &self,
        system: String,
        op: String,
        input: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyChild> {
        let input = match input {
            Some(i) => extract_value(i, "the input of a child_op")?,
            None => Value::Null,
        };
        Ok(PyChild {
            spec: Mutex::new(Some(PyChildSpec {
                kind: ChildKind::Op { system, op },
                input,
            })),
        })
    }

    /// Emits child steps that run in parallel once this function returns.
    /// The step then succeeds when they all do; its output is the list of
    /// their outputs, in order (the function's own return value is dropped).
    fn fan_out(&self, py: Python<'_>, children: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Some(why) = self.no_fan_out {
            return Err(invalid_argument(py, why));
        }
        if children.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "fan_out() takes a list of pso.Child, not a str",
            ));
        }
        let mut specs = Vec::new();
        for (i, item) in children.try_iter()?.enumerate() {
            let item = item?;
            let child = item.cast::<PyChild>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "fan_out(): item {i} must be a pso.Child (from pso.Child(fn, input) or \
                     ctx.child_op(system, op, input)), got '{}'",
                    item.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?;
            specs.push(child.get().to_spec(py)?);
        }
        let mut slot = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot.as_mut() {
            Some(list) => {
                list.extend(specs);
                Ok(())
            }
            None => Err(invalid_argument(
                py,
                format!(
                    "step '{}' has returned: fan_out only works while its function runs",
                    self.step
                ),
            )),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.StepContext step={:?} attempt={} run={}>",
            self.step, self.attempt, self.run_id
        )
    }
}

enum ChildKind {
    Func(Callable),
    Op { system: String, op: String },
}

/// A child as collected by `fan_out`.
struct PyChildSpec {
    kind: ChildKind,
    input: Value,
}

/// A fan-out child: `pso.Child(fn, input)` runs `fn(ctx)` with `ctx.input ==
/// input`; `ctx.child_op(system, op, input)` runs a system operation.
#[pyclass(name = "Child", module = "pso", frozen)]
pub(crate) struct PyChild {
    /// The child's definition; `None` once the garbage collector cleared it.
    spec: Mutex<Option<PyChildSpec>>,
}

impl PyChild {
    fn spec(&self) -> std::sync::MutexGuard<'_, Option<PyChildSpec>> {
        self.spec
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn to_spec(&self, py: Python<'_>) -> PyResult<PyChildSpec> {
        let guard = self.spec();
        let spec = guard
            .as_ref()
            .ok_or_else(|| invalid_argument(py, "this pso.Child was cleared"))?;
        Ok(PyChildSpec {
            kind: match &spec.kind {
                ChildKind::Func(f) => ChildKind::Func(Arc::new(f.clone_ref(py))),
                ChildKind::Op { system, op } => ChildKind::Op {
                    system: system.clone(),
                    op: op.clone(),
                },
            },
            input: spec.input.clone(),
        })
    }
}

#[pymethods]
impl PyChild {
    /// A child that runs `fn(ctx)`, where `ctx.input` is `input`.
    #[new]
    #[pyo3(signature = (r#fn, input = None))]
    fn new(r#fn: &Bound<'_, PyAny>, input: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        if !r#fn.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "Child(fn, input): fn must be callable (it is called with a StepContext), got '{}'",
                r#fn.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )));
        }
        let input = match input {
            Some(i) => extract_value(i, "the input of a pso.Child")?,
            None => Value::Null,
        };
        Ok(PyChild {
            spec: Mutex::new(Some(PyChildSpec {
                kind: ChildKind::Func(Arc::new(r#fn.clone().unbind())),
                input,
            })),
        })
    }

    /// The function, or `None` for a `child_op` child.
    #[getter]
    fn r#fn(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match &self.spec().as_ref()?.kind {
            ChildKind::Func(f) => Some(f.clone_ref(py)),
            ChildKind::Op { .. } => None,
        }
    }

    /// The input the child runs with (a new object each time).
    #[getter]
    fn input<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.spec().as_ref() {
            Some(s) => to_py(py, &s.input),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// The system, for a `child_op` child.
    #[getter]
    fn system(&self) -> Option<String> {
        match &self.spec().as_ref()?.kind {
            ChildKind::Op { system, .. } => Some(system.clone()),
            ChildKind::Func(_) => None,
        }
    }

    /// The operation, for a `child_op` child.
    #[getter]
    fn op(&self) -> Option<String> {
        match &self.spec().as_ref()?.kind {
            ChildKind::Op { op, .. } => Some(op.clone()),
            ChildKind::Func(_) => None,
        }
    }

    fn __repr__(&self) -> String {
        match (self.system(), self.op()) {
            (Some(s), Some(o)) => format!("<pso.Child op={s}.{o}>"),
            _ => "<pso.Child fn>".to_owned(),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: never wait in a GC pass (skipping a visit is conservative).
        if let Ok(spec) = self.spec.try_lock()
            && let Some(PyChildSpec {
                kind: ChildKind::Func(f),
                ..
            }) = spec.as_ref()
        {
            visit.call(&**f)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let spec = self.spec().take();
        drop(spec);
    }
}
