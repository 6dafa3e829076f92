//! PSO's worker threads as the interpreter sees them, and closing at exit.
//!
//! # One thread state per worker
//! Each step (or handler) call attaches its worker thread to the interpreter.
//! A thread without a Python thread state gets a new one from
//! `PyGILState_Ensure` and loses it again at the matching release, and
//! creating and destroying one (with its frame stack) cost most of a step's
//! time. So every worker runs its whole loop inside [`worker_scope`], which
//! *pins* a thread state for the worker's lifetime: one extra
//! `PyGILState_Ensure` when the worker starts, balanced when it stops. In
//! between, the GIL is released and each call's attach only takes the GIL
//! back for the existing state.
//!
//! The natural way, `Python::attach(|py| py.detach(run))`, does not compile:
//! core hands the scope the loop as `&mut dyn FnMut()`, which is not `Send`,
//! and `detach` requires `Send`; this crate has no `unsafe` to assert it. So
//! the extra ensure/release go through `ctypes.pythonapi` (a `PyDLL`, called
//! with the GIL held), on a private handle so that nobody's `argtypes` are
//! touched. Without ctypes, workers run unpinned (one state per call).
//!
//! # Exit
//! A pinned worker needs the GIL to stop (the release deletes its thread
//! state), and a thread that takes the GIL while the interpreter finalizes is
//! terminated by CPython in the middle of Rust frames. Therefore:
//! * every close of an orchestrator releases the GIL while it joins workers;
//! * an `atexit` hook (run before finalization starts) closes every
//!   orchestrator still open; after it ran, new workers are not pinned, so
//!   an orchestrator made later can still be closed (or dropped) during
//!   finalization without any worker taking the GIL to stop.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use pso_core::{Orchestrator, WorkerScope};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

/// Set once the `atexit` hook started closing orchestrators.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Whether interpreter exit has begun (the `atexit` hook ran).
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// The cell a `pso.Orchestrator` keeps its core orchestrator in.
pub(crate) type OrchCell = Mutex<Option<Orchestrator>>;

/// Orchestrators of this process that may still be open.
static OPEN: Mutex<Vec<(Weak<OrchCell>, u32)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers `cell` for the exit hook (and forgets cells already dropped).
pub(crate) fn track(cell: &Arc<OrchCell>) {
    let mut open = lock(&OPEN);
    open.retain(|(w, _)| w.strong_count() > 0);
    open.push((Arc::downgrade(cell), std::process::id()));
}

/// The scope every worker loop runs in (see the module docs).
pub(crate) fn worker_scope() -> WorkerScope {
    Arc::new(|run: &mut (dyn FnMut() + Send)| {
        let pinned = !exiting() && Python::try_attach(pin).unwrap_or(false);
        run();
        if pinned {
            // The worker is stopping: the GIL is free unless the interpreter
            // is finalizing, which the exit hook prevents (module docs).
            let _ = Python::try_attach(unpin);
        }
    })
}

/// `(PyGILState_Ensure, PyGILState_Release)` on a private ctypes handle.
fn gil_state_api(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    static API: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    API.get_or_try_init(py, || {
        let ctypes = py.import("ctypes")?;
        let handle = ctypes.getattr("pythonapi")?.getattr("_handle")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("handle", handle)?;
        let dll = ctypes
            .getattr("PyDLL")?
            .call(("pso-pythonapi",), Some(&kwargs))?;
        let c_int = ctypes.getattr("c_int")?;
        let ensure = dll.getattr("PyGILState_Ensure")?;
        ensure.setattr("argtypes", pyo3::types::PyList::empty(py))?;
        ensure.setattr("restype", &c_int)?;
        let release = dll.getattr("PyGILState_Release")?;
        release.setattr("argtypes", pyo3::types::PyList::new(py, [&c_int])?)?;
        release.setattr("restype", py.None())?;
        Ok((ensure.unbind(), release.unbind()))
    })
}

/// Takes one extra `PyGILState_Ensure` on this thread (attached by pyo3).
/// When pyo3's attach ends, the state survives with the GIL released.
fn pin(py: Python<'_>) -> bool {
    match gil_state_api(py).and_then(|(ensure, _)| ensure.call0(py)) {
        Ok(_) => true,
        Err(e) => {
            // No ctypes (or no pythonapi): run unpinned, as before.
            drop(e);
            false
        }
    }
}

/// Balances [`pin`]: releases the extra count without releasing the GIL
/// (`PyGILState_LOCKED`, 0); pyo3's own release then deletes the state.
fn unpin(py: Python<'_>) {
    if let Ok((_, release)) = gil_state_api(py) {
        let _ = release.call1(py, (0,));
    }
}

/// Closes every orchestrator of this process that is still open, with the
/// GIL released. Registered with `atexit` when the module is imported.
fn close_all(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    let me = std::process::id();
    let cells: Vec<Arc<OrchCell>> = lock(&OPEN)
        .drain(..)
        .filter(|(_, pid)| *pid == me)
        .filter_map(|(w, _)| w.upgrade())
        .collect();
    for cell in cells {
        let orch = lock(&cell).clone();
        if let Some(orch) = orch {
            py.detach(move || orch.close());
        }
    }
}

/// Registers [`close_all`] with `atexit`.
pub(crate) fn register_exit_hook(py: Python<'_>) -> PyResult<()> {
    let hook = PyCFunction::new_closure(
        py,
        Some(c"_pso_close_all"),
        Some(c"Closes every pso.Orchestrator still open (registered with atexit)."),
        |args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| {
            close_all(args.py());
        },
    )?;
    py.import(intern!(py, "atexit"))?
        .call_method1(intern!(py, "register"), (hook,))?;
    Ok(())
}
