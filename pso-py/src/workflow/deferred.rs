//! `async def` steps: a step function (or operation) that returns an
//! awaitable — a coroutine from an `async def` function, or any object with
//! `__await__` — defers its result (core's `StepContext::defer`) and the
//! awaitable runs as an asyncio task; the worker is free as soon as the
//! function has returned the awaitable.
//!
//! # Which loop
//! The loop that was running in the thread that started the run
//! (`coordinate_systems`/`run_minimal` called from a coroutine, see
//! `aio::RunLoops`), else the binding's background loop (`pso-asyncio`).
//! The task is created on that loop with `call_soon_threadsafe`; a closed
//! loop fails the step at once. A loop that is stopped but not closed never
//! runs it: the step then ends only by its timeout or the run's deadline.
//!
//! # Ending
//! When the task ends, its outcome goes to the step's `Completion` (on the
//! loop's thread, with the GIL released for core): the returned value
//! (converted like any step output), the exception (the step fails with it,
//! and may be retried), or cancellation (fails the step; after a run's
//! cancel the step ends `cancelled`). The step's timeout, the run's
//! deadline and `Run.cancel()` cancel the task through `on_cancel` (the
//! cancel is scheduled on the loop after the task's creation, so it is never
//! lost). A `when` condition and a fan-out child cannot be asynchronous
//! (core cannot defer them): an awaitable there fails the step.

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};

use pso_core::{Completion, HandlerError, StepContext, Value};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

use crate::aio::{RunLoops, background_loop, helpers, lock};
use crate::model::raised;
use crate::value::to_value;

/// Outcome kinds `StepTask` reports (see `pso/_aio.py`).
const RESULT: u8 = 0;
const RAISED: u8 = 1;

/// Closes an awaitable that will never run (no "never awaited" warning).
pub(crate) fn discard(aw: &Bound<'_, PyAny>) {
    let py = aw.py();
    if aw.hasattr(intern!(py, "close")).unwrap_or(false) {
        let _ = aw.call_method0(intern!(py, "close"));
    }
}

/// Defers the step and runs `aw` on its loop (see the module docs). The
/// step function's own return value is then ignored by core.
pub(crate) fn run_awaitable(
    py: Python<'_>,
    ctx: &StepContext<'_>,
    aw: &Bound<'_, PyAny>,
    loops: &RunLoops,
) -> Result<Value, HandlerError> {
    let completion = match ctx.defer() {
        Ok(c) => c,
        Err(e) => {
            discard(aw);
            return Err(e);
        }
    };
    let run = ctx.run_id();
    let recorded = py.detach(|| loops.of(run));
    let event_loop = match recorded {
        Some(l) => l.bind(py).clone(),
        None => background_loop(py).map_err(|e| raised(py, e))?,
    };
    let step = ctx.step_name();
    let slot: Arc<Mutex<Option<Completion>>> = Arc::new(Mutex::new(Some(completion)));
    let complete = {
        let slot = slot.clone();
        PyCFunction::new_closure(
            py,
            Some(c"_pso_complete_step"),
            None,
            move |args: &Bound<'_, PyTuple>, _kw: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
                let py = args.py();
                let kind: u8 = args.get_item(0)?.extract()?;
                let value = args.get_item(1)?;
                let result = outcome(py, &step, kind, &value);
                let completion = lock(&slot).take();
                if let Some(c) = completion {
                    py.detach(move || {
                        let _ = c.complete(result);
                    });
                }
                Ok(())
            },
        )
        .map_err(|e| raised(py, e))?
    };
    let scheduled = (|| -> PyResult<()> {
        let task = helpers(py)?
            .getattr(intern!(py, "StepTask"))?
            .call1((aw, complete))?;
        // Cancellation first (a cancel already due is then scheduled before
        // the start, which sees it), then the start.
        let cancel = task.getattr(intern!(py, "cancel"))?.unbind();
        let hook_loop = event_loop.clone().unbind();
        if let Some(c) = lock(&slot).as_ref() {
            c.on_cancel(move || {
                let _ = Python::try_attach(|py| {
                    let _ = hook_loop
                        .bind(py)
                        .call_method1(intern!(py, "call_soon_threadsafe"), (cancel.bind(py),));
                });
            });
        }
        event_loop.call_method1(
            intern!(py, "call_soon_threadsafe"),
            (task.getattr(intern!(py, "start"))?,),
        )?;
        Ok(())
    })();
    match scheduled {
        Ok(()) => Ok(Value::Null), // ignored: the completion ends the step
        Err(e) => {
            discard(aw);
            // The function's error wins over the unused completion.
            Err(raised(py, e))
        }
    }
}

/// The step's result from how its task ended.
fn outcome(
    py: Python<'_>,
    step: &str,
    kind: u8,
    value: &Bound<'_, PyAny>,
) -> Result<Value, HandlerError> {
    match kind {
        RESULT => to_value(value).map_err(|u| HandlerError::Raised {
            type_name: u.kind.to_owned(),
            message: u.message(&format!("the output of step '{step}'")),
            payload: None,
        }),
        RAISED => Err(raised(py, PyErr::from_value(value.clone()))),
        _ => Err(HandlerError::Raised {
            type_name: "asyncio.CancelledError".to_owned(),
            message: format!("the task of step '{step}' was cancelled"),
            payload: None,
        }),
    }
}
