//! Waiting for things from Python threads and from asyncio: pull
//! subscriptions and state watches ([`Inbox`]), the event loop an `async
//! def` step runs on ([`RunLoops`], the binding's background loop), and the
//! Python side of it all (`pso/_aio.py`).
//!
//! # Inbox: one receiver, two ways to wait
//! Core's pull subscriptions and watches block a thread (`recv_timeout`);
//! they have no waker. An [`Inbox`] wraps one such [`Source`]:
//! * `recv(timeout)` waits with the GIL released in slices of at most
//!   [`WAIT_SLICE`], checking for signals (Ctrl-C) in between;
//! * `__anext__` registers a *demand* (an asyncio future of the running
//!   loop) and wakes the inbox's **pump**: a binding thread (one per inbox,
//!   started on demand, gone [`LINGER`] after the last demand) that blocks
//!   in core's `recv_timeout` without the GIL while demands are pending.
//!   Each item it gets goes to the inbox's *stash*, and a `dispatch` is
//!   scheduled on the loop with `call_soon_threadsafe`; `dispatch` (on the
//!   loop thread) hands stashed items to pending demands in order, skipping
//!   demands whose task was cancelled. Nothing polls: the pump sleeps in
//!   core's condition variable, the loop sleeps in its selector.
//!
//! Every way of reading takes from the stash first, so items reach readers in
//! the source's order, also when a cancelled `__anext__` left an item behind.
//! (A thread calling `recv` while a pump is waiting for the same source may
//! take a later item before the pump's: read one inbox from one place at a
//! time.) Once the source ends (unsubscribed, closed, compacted), that end
//! is kept and every read after the stash is empty returns it.
//!
//! # Locks
//! The inbox's mutex is taken with or without the GIL, but never held
//! while waiting for the GIL or calling Python code, and the pump never
//! holds it while it waits in core.
//!
//! # Loops of `async def` steps
//! A step whose function returns an awaitable runs it on the loop that was
//! running in the thread that started the run (`coordinate_systems` or
//! `run_minimal` called from a coroutine), else on the binding's background
//! loop (a daemon thread, `pso-asyncio`). [`RunLoops`] maps run ids to loops
//! for the first case; starting such a run holds its lock until the run's id
//! is recorded, so a step that looks its run up never misses it.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pso_core::RunHandle;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyDict, PyModule, PyTuple};

/// Longest uninterrupted wait of a blocking read, between signal checks.
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(100);

/// How long a pump waits for a new demand before its thread ends.
const LINGER: Duration = Duration::from_secs(1);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `pso._aio` (see its docstring).
pub(crate) fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || Ok(py.import("pso._aio")?.unbind()))
        .map(|m| m.bind(py))
}

/// The loop running in this thread, if any.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let l = helpers(py)?.call_method0(intern!(py, "running_loop"))?;
    Ok((!l.is_none()).then_some(l))
}

/// The binding's background loop (started on first use).
pub(crate) fn background_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    helpers(py)?.call_method0(intern!(py, "background_loop"))
}

/// A blocking source of items: a pull subscription or a watch.
pub(crate) trait Source: Send + Sync + 'static {
    /// What it yields.
    type Item: Send + 'static;
    /// How it ends (kept, and returned to every later read).
    type End: Clone + Send + 'static;
    /// Longest wait of the pump between checks for demand. A source whose
    /// close wakes waiters can use a long one.
    const PUMP_SLICE: Duration;

    /// The next item, waiting up to `timeout` (called without the GIL).
    /// `Ok(None)`: nothing in time.
    fn next(&self, timeout: Duration) -> Result<Option<Self::Item>, Self::End>;

    /// The Python object for an item.
    fn item_to_py(py: Python<'_>, item: Self::Item) -> PyResult<Py<PyAny>>;

    /// Whether the end is the normal one (closed: iteration stops), rather
    /// than an error to raise from iteration too.
    fn is_normal_end(&self, end: &Self::End) -> bool;

    /// The exception for the end (what `recv` raises).
    fn end_to_py(&self, py: Python<'_>, end: &Self::End) -> PyErr;

    /// The exception for `recv(timeout)` finding nothing in time.
    fn timeout_error(&self, py: Python<'_>, waited: Duration) -> PyErr;
}

/// What a read found.
pub(crate) enum Got<I, E> {
    /// An item.
    Item(I),
    /// Nothing in time.
    Empty,
    /// The source ended.
    End(E),
}

struct State<I, E> {
    stash: VecDeque<I>,
    end: Option<E>,
    /// Futures of pending `__anext__` calls, oldest first.
    demands: VecDeque<Py<PyAny>>,
    /// The loop of the latest demand.
    event_loop: Option<Py<PyAny>>,
    /// A pump thread is running.
    pump: bool,
}

/// See the module docs.
pub(crate) struct Inbox<S: Source> {
    source: S,
    state: Mutex<State<S::Item, S::End>>,
    demand: Condvar,
}

impl<S: Source> Inbox<S> {
    pub(crate) fn new(source: S) -> Arc<Self> {
        Arc::new(Inbox {
            source,
            state: Mutex::new(State {
                stash: VecDeque::new(),
                end: None,
                demands: VecDeque::new(),
                event_loop: None,
                pump: false,
            }),
            demand: Condvar::new(),
        })
    }

    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// A stashed item, else the kept end.
    fn ready(&self) -> Option<Got<S::Item, S::End>> {
        let mut st = lock(&self.state);
        if let Some(item) = st.stash.pop_front() {
            return Some(Got::Item(item));
        }
        st.end.clone().map(Got::End)
    }

    fn keep_end(&self, end: &S::End) {
        let mut st = lock(&self.state);
        if st.end.is_none() {
            st.end = Some(end.clone());
        }
    }

    /// Waits up to `timeout` (`None`: no limit) with the GIL released, in
    /// slices; `Err` only for an exception from a signal handler.
    pub(crate) fn recv(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
    ) -> PyResult<Got<S::Item, S::End>> {
        if let Some(r) = self.ready() {
            return Ok(r);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            // No deadline: no limit (or one too far away to represent).
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            match py.detach(|| self.source.next(slice)) {
                Ok(Some(item)) => return Ok(Got::Item(item)),
                Ok(None) => {}
                Err(end) => {
                    self.keep_end(&end);
                    return Ok(Got::End(end));
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Got::Empty);
            }
            py.check_signals()?;
            if let Some(r) = self.ready() {
                return Ok(r);
            }
        }
    }

    /// An item if one is ready, without waiting.
    pub(crate) fn try_recv(&self, py: Python<'_>) -> Got<S::Item, S::End> {
        if let Some(r) = self.ready() {
            return r;
        }
        match py.detach(|| self.source.next(Duration::ZERO)) {
            Ok(Some(item)) => Got::Item(item),
            Ok(None) => Got::Empty,
            Err(end) => {
                self.keep_end(&end);
                Got::End(end)
            }
        }
    }

    /// `__anext__`: a future of the running loop for the next item (raises
    /// `StopAsyncIteration` at once if the source ended and nothing is left).
    pub(crate) fn anext<'py>(self: &Arc<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let asyncio = py.import(intern!(py, "asyncio"))?;
        let event_loop = asyncio.call_method0(intern!(py, "get_running_loop"))?;
        {
            let st = lock(&self.state);
            if st.stash.is_empty()
                && let Some(end) = &st.end
            {
                let end = end.clone();
                drop(st);
                return Err(self.end_exception(py, &end));
            }
        }
        let fut = event_loop.call_method0(intern!(py, "create_future"))?;
        {
            let mut st = lock(&self.state);
            st.demands.push_back(fut.clone().unbind());
            st.event_loop = Some(event_loop.unbind());
        }
        self.dispatch(py);
        let start = {
            let mut st = lock(&self.state);
            let start = !st.pump && st.end.is_none() && !st.demands.is_empty();
            if start {
                st.pump = true;
            } else {
                self.demand.notify_all();
            }
            start
        };
        if start {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("pso-py-inbox".into())
                .spawn(move || me.pump());
            if let Err(e) = spawned {
                lock(&self.state).pump = false;
                fut.call_method1(
                    intern!(py, "set_exception"),
                    (PyRuntimeError::new_err(format!(
                        "cannot start the thread that waits for this receiver: {e}"
                    ))
                    .into_value(py),),
                )?;
            }
        }
        Ok(fut)
    }

    /// What asynchronous iteration raises at the end.
    fn end_exception(&self, py: Python<'_>, end: &S::End) -> PyErr {
        if self.source.is_normal_end(end) {
            PyStopAsyncIteration::new_err(())
        } else {
            self.source.end_to_py(py, end)
        }
    }

    /// Hands stashed items (or the end) to pending demands, in order. Runs
    /// on the demands' loop thread.
    fn dispatch(&self, py: Python<'_>) {
        let mut demands = std::mem::take(&mut lock(&self.state).demands);
        demands.retain(|f| {
            !f.bind(py)
                .call_method0(intern!(py, "done"))
                .and_then(|d| d.is_truthy())
                .unwrap_or(true)
        });
        let mut deliveries = Vec::new();
        {
            let mut st = lock(&self.state);
            while !demands.is_empty() {
                let outcome = if let Some(item) = st.stash.pop_front() {
                    Ok(item)
                } else if let Some(end) = &st.end {
                    Err(end.clone())
                } else {
                    break;
                };
                if let Some(f) = demands.pop_front() {
                    deliveries.push((f, outcome));
                }
            }
            // Demands added meanwhile (by another thread's loop) go after.
            while let Some(f) = demands.pop_back() {
                st.demands.push_front(f);
            }
        }
        for (fut, outcome) in deliveries {
            let fut = fut.bind(py);
            let set = match outcome {
                Ok(item) => match S::item_to_py(py, item) {
                    Ok(obj) => fut.call_method1(intern!(py, "set_result"), (obj,)),
                    Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),)),
                },
                Err(end) => fut.call_method1(
                    intern!(py, "set_exception"),
                    (self.end_exception(py, &end).into_value(py),),
                ),
            };
            drop(set); // the future is ours and not done: this cannot fail
        }
    }

    /// The pump thread (see the module docs).
    fn pump(self: Arc<Self>) {
        loop {
            {
                let mut st = lock(&self.state);
                while st.demands.is_empty() && st.end.is_none() {
                    let (guard, waited) = self
                        .demand
                        .wait_timeout(st, LINGER)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    st = guard;
                    if waited.timed_out() && st.demands.is_empty() {
                        st.pump = false;
                        return;
                    }
                }
                if st.end.is_some() {
                    st.pump = false;
                    return;
                }
            }
            match self.source.next(S::PUMP_SLICE) {
                Ok(Some(item)) => {
                    lock(&self.state).stash.push_back(item);
                    self.schedule_dispatch();
                }
                Ok(None) => {}
                Err(end) => {
                    {
                        let mut st = lock(&self.state);
                        if st.end.is_none() {
                            st.end = Some(end);
                        }
                        st.pump = false;
                    }
                    self.schedule_dispatch();
                    return;
                }
            }
        }
    }

    /// Schedules `dispatch` on the loop of the latest demand.
    fn schedule_dispatch(self: &Arc<Self>) {
        let me = self.clone();
        let _ = Python::try_attach(move |py| {
            let Some(event_loop) = lock(&me.state).event_loop.as_ref().map(|l| l.clone_ref(py))
            else {
                return;
            };
            let inbox = me.clone();
            let scheduled = PyCFunction::new_closure(
                py,
                Some(c"_pso_dispatch"),
                None,
                move |args: &Bound<'_, PyTuple>, _kw: Option<&Bound<'_, PyDict>>| {
                    inbox.dispatch(args.py());
                },
            )
            .and_then(|f| {
                event_loop
                    .bind(py)
                    .call_method1(intern!(py, "call_soon_threadsafe"), (f,))
            });
            // A closed loop: nobody waits there any more.
            drop(scheduled);
        });
    }
}

/// A run's loop, and the run (to forget the loop once it is finished).
type RunLoop = (Arc<Py<PyAny>>, RunHandle);

/// Event loops of runs started from a coroutine, by run id (module docs).
#[derive(Default)]
pub(crate) struct RunLoops {
    runs: Mutex<HashMap<u64, RunLoop>>,
}

impl RunLoops {
    /// Starts a run with `start` (called without the GIL) and, if it was
    /// started from a running loop, records that loop for its steps.
    pub(crate) fn start<E>(
        &self,
        event_loop: Option<Arc<Py<PyAny>>>,
        start: impl FnOnce() -> Result<RunHandle, E>,
    ) -> Result<RunHandle, E> {
        let Some(event_loop) = event_loop else {
            return start();
        };
        let mut runs = lock(&self.runs);
        runs.retain(|_, (_, h)| !h.is_finished());
        let handle = start()?;
        runs.insert(handle.id(), (event_loop, handle.clone()));
        Ok(handle)
    }

    /// The loop of run `run`, if it was started from one.
    pub(crate) fn of(&self, run: u64) -> Option<Arc<Py<PyAny>>> {
        lock(&self.runs).get(&run).map(|(l, _)| l.clone())
    }
}
