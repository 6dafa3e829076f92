//! A unit of work for the pool: a function pointer, a data pointer and an
//! index — 32 bytes, no allocation for workflow steps.
//!
//! Two kinds exist:
//! * [`Job::boxed`]: an owned closure (one allocation), freed when run or
//!   dropped.
//! * [`Job::raw`]: a borrowed pointer plus an index, for workflow steps. The
//!   creator guarantees the pointee outlives the job (a run is kept alive by
//!   its execution reference until every step is accounted for, and a queued
//!   step is never accounted for before its job runs).

#![allow(unsafe_code)]

use std::mem::ManuallyDrop;

/// See the module docs.
pub(crate) struct Job {
    exec: unsafe fn(*const (), u32),
    drop_fn: Option<unsafe fn(*const ())>,
    data: *const (),
    arg: u32,
}

// SAFETY: a boxed job owns a `Send` closure; a raw job's creator promises (see
// `Job::raw`) that its data may be used from any worker thread.
unsafe impl Send for Job {}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("data", &self.data)
            .field("arg", &self.arg)
            .finish()
    }
}

impl Job {
    /// A job that runs (and owns) a closure.
    pub(crate) fn boxed<F: FnOnce() + Send + 'static>(f: F) -> Job {
        unsafe fn exec<F: FnOnce()>(data: *const (), _: u32) {
            // SAFETY: `data` came from `Box::into_raw` in `Job::boxed` with this
            // very `F`, and `exec` runs at most once (`run` consumes the job and
            // skips `drop_fn`).
            let f = unsafe { Box::from_raw(data as *mut F) };
            f();
        }
        unsafe fn drop_it<F>(data: *const ()) {
            // SAFETY: as in `exec`; `drop_fn` only runs when `exec` did not.
            drop(unsafe { Box::from_raw(data as *mut F) });
        }
        Job {
            exec: exec::<F>,
            drop_fn: Some(drop_it::<F>),
            data: Box::into_raw(Box::new(f)) as *const (),
            arg: 0,
        }
    }

    /// A job that calls `exec(data, arg)`.
    ///
    /// # Safety
    /// `data` must remain valid, and `exec(data, arg)` sound to call from any
    /// worker thread, until the job has run. Dropping the job without running
    /// it does nothing with `data`.
    pub(crate) unsafe fn raw(exec: unsafe fn(*const (), u32), data: *const (), arg: u32) -> Job {
        Job {
            exec,
            drop_fn: None,
            data,
            arg,
        }
    }

    /// Runs the job, consuming it.
    pub(crate) fn run(self) {
        let job = ManuallyDrop::new(self);
        // SAFETY: the constructors' contracts: boxed jobs own their closure,
        // raw jobs' data is valid until run. `ManuallyDrop` keeps `drop_fn`
        // from running after `exec` consumed a boxed closure.
        unsafe { (job.exec)(job.data, job.arg) }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(d) = self.drop_fn {
            // SAFETY: the job was never run (run() wraps it in ManuallyDrop), so
            // the boxed closure is still owned here and is freed exactly once.
            unsafe { d(self.data) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn boxed_jobs_run_once_or_drop_once() {
        let ran = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        struct D(Arc<AtomicUsize>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (r, d) = (ran.clone(), D(dropped.clone()));
        Job::boxed(move || {
            let _keep = &d;
            r.fetch_add(1, Ordering::SeqCst);
        })
        .run();
        assert_eq!(
            (ran.load(Ordering::SeqCst), dropped.load(Ordering::SeqCst)),
            (1, 1)
        );
        let (r, d) = (ran.clone(), D(dropped.clone()));
        drop(Job::boxed(move || {
            let _keep = &d;
            r.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(
            (ran.load(Ordering::SeqCst), dropped.load(Ordering::SeqCst)),
            (1, 2)
        );
    }

    #[test]
    fn raw_jobs_pass_data_and_index() {
        unsafe fn exec(data: *const (), arg: u32) {
            // SAFETY: the test passes a pointer to a live AtomicUsize.
            let c = unsafe { &*(data as *const AtomicUsize) };
            c.fetch_add(arg as usize, Ordering::SeqCst);
        }
        let c = AtomicUsize::new(0);
        // SAFETY: `c` outlives the job, which runs right here.
        unsafe { Job::raw(exec, &c as *const AtomicUsize as *const (), 7) }.run();
        assert_eq!(c.load(Ordering::SeqCst), 7);
    }
}
