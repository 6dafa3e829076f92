//! `pso.Lease` (core's `Lease` behind a mutex) and `pso.PreemptNotice`.
//!
//! A lease is released by `release()`, by `__exit__`, or when the object is
//! freed (reference count or garbage collector). Releasing happens with the
//! GIL released where there is a `py` token; when the object is freed the GIL
//! is held, which is safe: the allocator never waits for the GIL while it
//! holds its lock (callbacks and wakers run after unlocking).
//!
//! # Preemption callbacks
//! Core calls a lease's preemption callback on the thread that decided the
//! preemption: one asking for or releasing resources (possibly inside a
//! Python call, or while a lease is being freed by the garbage collector),
//! PSO's timer thread, or `optimize_resources`. So the closure `on_preempt`
//! hands core only queues the notice for one binding thread,
//! `pso-py-notify` (started on first use, per process), which attaches to
//! the interpreter and calls `fn(notice)`; an exception goes to
//! `sys.unraisablehook`. Once interpreter exit has begun, queued notices are
//! dropped. The callable is shared with a mirror here, which the garbage
//! collector sees (`__traverse__`), so a callback that refers back to its
//! lease does not keep the lease held forever.
//!
//! # Fork
//! A lease belongs to the process that was granted it: in a forked child,
//! dropping it does nothing (the allocator's lock may have been held by a
//! parent thread at the fork), and `release()` returns False.

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use pso_core::{Lease, PreemptNotice};
use pyo3::PyTraverseError;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::lock;
use crate::model::Callable;

/// Resources held by a system until released (`release()`, `with`, or when
/// garbage-collected), expired (TTL) or preempted.
#[pyclass(name = "Lease", module = "pso", frozen)]
pub(crate) struct PyLease {
    /// `None` once released through this object.
    inner: Mutex<Option<Lease>>,
    id: u64,
    system: String,
    /// The preemption callback, shared with core's closure (for the GC).
    on_preempt: Mutex<Option<Callable>>,
    owner_pid: u32,
}

impl PyLease {
    pub(crate) fn new(lease: Lease) -> Self {
        PyLease {
            id: lease.id(),
            system: lease.system().to_owned(),
            inner: Mutex::new(Some(lease)),
            on_preempt: Mutex::new(None),
            owner_pid: std::process::id(),
        }
    }

    fn in_owner(&self) -> bool {
        std::process::id() == self.owner_pid
    }

    /// Releases with the GIL released. Returns whether it was still held.
    pub(crate) fn release_now(&self, py: Python<'_>) -> bool {
        if !self.in_owner() {
            return false;
        }
        let lease = lock(&self.inner).take();
        match lease {
            Some(l) => py.detach(move || l.release()),
            None => false,
        }
    }
}

impl Drop for PyLease {
    fn drop(&mut self) {
        let lease = lock(&self.inner).take();
        if self.in_owner() {
            drop(lease);
        } else {
            std::mem::forget(lease); // see the module docs
        }
    }
}

#[pymethods]
impl PyLease {
    /// The lease's id: unique, never reused (as in `resource_status()`).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// The holding system.
    #[getter]
    fn system(&self) -> &str {
        &self.system
    }

    /// Amounts held, by dimension (empty once released, expired or revoked).
    #[getter]
    fn amounts(&self) -> std::collections::BTreeMap<String, u64> {
        match &*lock(&self.inner) {
            Some(l) if self.in_owner() => l.amounts().into_iter().collect(),
            _ => Default::default(),
        }
    }

    /// Whether it is still held (not released, expired or revoked).
    #[getter]
    fn held(&self) -> bool {
        match &*lock(&self.inner) {
            Some(l) => self.in_owner() && l.is_held(),
            None => false,
        }
    }

    /// Seconds left before the TTL revokes it, or `None` (no TTL, or gone).
    #[getter]
    fn expires_in(&self) -> Option<f64> {
        match &*lock(&self.inner) {
            Some(l) if self.in_owner() => l.expires_in().map(|d| d.as_secs_f64()),
            _ => None,
        }
    }

    /// Marks the lease as in use now (`optimize_resources` reclaims leases
    /// left untouched longer than `idle_lease_after`).
    fn touch(&self) {
        if let Some(l) = &*lock(&self.inner)
            && self.in_owner()
        {
            l.touch();
        }
    }

    /// Calls `fn(notice)` (a `pso.PreemptNotice`) once if the lease is chosen
    /// for preemption, on PSO's notifier thread with the GIL held; it is
    /// revoked `notice.grace` seconds after the decision. Replaces an earlier
    /// callback. An exception in `fn` is reported to `sys.unraisablehook`.
    #[pyo3(signature = (r#fn))]
    fn on_preempt(&self, r#fn: &Bound<'_, PyAny>) -> PyResult<()> {
        if !r#fn.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "on_preempt takes a callable fn(notice), got '{}'",
                r#fn.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )));
        }
        let callable: Callable = Arc::new(r#fn.clone().unbind());
        let guard = lock(&self.inner);
        let Some(l) = guard.as_ref().filter(|_| self.in_owner()) else {
            return Ok(()); // released: it will never be preempted
        };
        let f = callable.clone();
        l.on_preempt(move |notice| notify(f, notice));
        drop(guard);
        let old = lock(&self.on_preempt).replace(callable);
        drop(old);
        Ok(())
    }

    /// Releases the resources now. Returns False if the lease was already
    /// gone (released, expired or preempted).
    fn release(&self, py: Python<'_>) -> bool {
        self.release_now(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.release_now(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.Lease id={} system={:?} {}>",
            self.id,
            self.system,
            if self.held() { "held" } else { "released" }
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: never wait in a GC pass (skipping a visit is conservative).
        if let Ok(f) = self.on_preempt.try_lock()
            && let Some(f) = f.as_ref()
        {
            visit.call(&**f)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Releasing drops core's closure; then the mirror holds the last
        // reference to the callback.
        let lease = lock(&self.inner).take();
        if self.in_owner() {
            drop(lease);
        } else {
            std::mem::forget(lease);
        }
        let f = lock(&self.on_preempt).take();
        drop(f);
    }
}

/// A preemption notice for the notifier thread.
type Notice = (Callable, PreemptNotice);

/// Queues `fn(notice)` for the notifier thread (see the module docs).
fn notify(f: Callable, notice: PreemptNotice) {
    static QUEUE: Mutex<Option<(u32, mpsc::Sender<Notice>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut queue = lock(&QUEUE);
    if queue.as_ref().is_none_or(|(owner, _)| *owner != pid) {
        let (tx, rx) = mpsc::channel::<Notice>();
        let started = std::thread::Builder::new()
            .name("pso-py-notify".into())
            .spawn(move || {
                for (f, notice) in rx {
                    if !crate::scheduler::exiting() {
                        call_preempt(&f, notice);
                    }
                }
            });
        if started.is_err() {
            drop(queue);
            call_preempt(&f, notice); // no thread: call it here rather than never
            return;
        }
        *queue = Some((pid, tx));
    }
    if let Some((_, tx)) = queue.as_ref()
        && let Err(mpsc::SendError((f, notice))) = tx.send((f, notice))
    {
        drop(queue);
        call_preempt(&f, notice);
    }
}

fn call_preempt(f: &Callable, notice: PreemptNotice) {
    let _ = Python::try_attach(|py| {
        let called = Bound::new(py, PyPreemptNotice::from(notice))
            .and_then(|n| f.bind(py).call1((n,)).map(drop));
        if let Err(e) = called {
            e.write_unraisable(py, Some(f.bind(py)));
        }
    });
}

/// What the holder of a preempted lease is told.
#[pyclass(name = "PreemptNotice", module = "pso", frozen)]
pub(crate) struct PyPreemptNotice {
    lease: u64,
    system: String,
    grace: Duration,
}

impl From<PreemptNotice> for PyPreemptNotice {
    fn from(n: PreemptNotice) -> Self {
        PyPreemptNotice {
            lease: n.lease,
            system: n.system,
            grace: n.grace,
        }
    }
}

#[pymethods]
impl PyPreemptNotice {
    /// The lease's id.
    #[getter]
    fn lease(&self) -> u64 {
        self.lease
    }

    /// Its holder.
    #[getter]
    fn system(&self) -> &str {
        &self.system
    }

    /// Seconds left before the lease is revoked.
    #[getter]
    fn grace(&self) -> f64 {
        self.grace.as_secs_f64()
    }

    fn __repr__(&self) -> String {
        format!(
            "PreemptNotice(lease={}, system={:?}, grace={})",
            self.lease,
            self.system,
            self.grace.as_secs_f64()
        )
    }
}
