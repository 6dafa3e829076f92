//! The scheduler's worker pool: fixed workers, work stealing, priority
//! classes, parking, and a timer.
//!
//! Each worker owns one crossbeam LIFO deque per priority class; other threads
//! submit through one global injector per class. A worker takes work from its
//! own deques (highest class first), then takes a batch from the injectors,
//! then steals from a sibling (starting at a random one), always highest
//! class first. A job submitted from a worker of the same pool goes to that
//! worker's own deque, which keeps successors hot in its cache.
//!
//! # Invariants
//! * `Local::mask` bit `c` is set whenever `deques[c]` may be non-empty. Only
//!   the owner pushes, so the bit can only be stale in the "set but empty"
//!   direction (after thieves emptied it); the owner clears it when a pop
//!   finds the deque empty.
//! * A job is run exactly once, or dropped unrun at shutdown (see
//!   [`job::Job`]).
//!
//! # Parking
//! An idle worker spins briefly (bounded, with `Backoff`), then parks through
//! [`sleep::Sleep`], whose protocol guarantees no lost wake-up (see there). An
//! idle pool uses no CPU.
//!
//! # Panics
//! Jobs are pso-core's own code; user handlers inside them run behind
//! [`crate::unwind::run_handler`]. A job that still panics is contained by
//! [`crate::unwind::catch`], so it never kills a worker.
//!
//! # Shutdown
//! [`Pool::shutdown`] sets a flag and wakes every worker; workers run what is
//! still queued (callers cancel their work first, so queued jobs only do
//! bookkeeping), then exit and are joined (except the calling thread, if it is
//! one of them).

mod job;
#[cfg(all(test, loom))]
mod loom_sleep;
mod sleep;
mod timer;

use std::cell::Cell;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::Backoff;

use crate::sync::{Arc, AtomicBool, Condvar, Mutex, Ordering, thread};
pub(crate) use job::Job;
use sleep::Sleep;
pub(crate) use timer::{Timer, TimerId};

/// Number of priority classes (`Priority::rank()` is 0..CLASSES, 0 highest).
pub(crate) const CLASSES: usize = 5;

struct Shared {
    injectors: [Injector<Job>; CLASSES],
    stealers: Vec<[Stealer<Job>; CLASSES]>,
    sleep: Sleep,
    shutdown: AtomicBool,
}

/// The worker running on this thread. It lives on the worker's stack while
/// `worker_main` runs, and `CURRENT` points at it only during that time.
struct Local {
    shared: *const Shared,
    index: usize,
    deques: [Worker<Job>; CLASSES],
    mask: Cell<u8>,
}

thread_local! {
    static CURRENT: Cell<*const Local> = const { Cell::new(std::ptr::null()) };
}

/// A fixed-size work-stealing thread pool.
/// Wraps each worker thread's whole loop; see
/// [`crate::OrchestratorBuilder::worker_scope`].
pub type WorkerScope = std::sync::Arc<dyn Fn(&mut (dyn FnMut() + Send)) + Send + Sync>;

pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    size: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("size", &self.size).finish()
    }
}

impl Pool {
    /// Starts `size` workers (at least one) named `{name}-{i}`.
    pub(crate) fn new(size: usize, name: &str) -> std::io::Result<Pool> {
        Self::with_scope(size, name, None)
    }

    /// [`Pool::new`], each worker running its loop inside `scope`.
    pub(crate) fn with_scope(
        size: usize,
        name: &str,
        scope: Option<WorkerScope>,
    ) -> std::io::Result<Pool> {
        let size = size.max(1);
        let deques: Vec<[Worker<Job>; CLASSES]> = (0..size)
            .map(|_| std::array::from_fn(|_| Worker::new_lifo()))
            .collect();
        let shared = Arc::new(Shared {
            injectors: std::array::from_fn(|_| Injector::new()),
            stealers: deques
                .iter()
                .map(|d| std::array::from_fn(|c| d[c].stealer()))
                .collect(),
            sleep: Sleep::new(),
            shutdown: AtomicBool::new(false),
        });
        let mut threads = Vec::with_capacity(size);
        for (index, deques) in deques.into_iter().enumerate() {
            let worker_shared = shared.clone();
            let scope = scope.clone();
            let spawned = thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || match scope {
                    None => worker_main(worker_shared, index, deques),
                    Some(scope) => {
                        let mut run = Some(move || worker_main(worker_shared, index, deques));
                        let mut call = || {
                            if let Some(f) = run.take() {
                                f();
                            }
                        };
                        // A scope that panics or never calls the loop still
                        // leaves a working worker.
                        let _ = crate::unwind::catch(|| scope(&mut call));
                        call();
                    }
                });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    // Stop the workers already started, then report.
                    let partial = Pool {
                        shared,
                        threads: Mutex::new(threads),
                        size,
                    };
                    partial.shutdown();
                    return Err(e);
                }
            }
        }
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
            size,
        })
    }

    /// Number of workers.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Submits a job in priority class `class` (0 highest): to the current
    /// worker's deque when called from a worker of this pool, else to the
    /// injector. Wakes a parked worker if any.
    pub(crate) fn spawn(&self, job: Job, class: usize) {
        let class = class.min(CLASSES - 1);
        match self.current_local() {
            Some(local) => local.push(job, class),
            None => self.shared.injectors[class].push(job),
        }
        self.shared.sleep.notify_one();
    }

    /// Submits jobs, each with its class, in order (to the current worker's
    /// deques when called from a worker, else to the injectors), then wakes
    /// as many parked workers as useful — one wake-up check for the batch.
    pub(crate) fn spawn_batch(&self, jobs: impl IntoIterator<Item = (Job, usize)>) {
        let mut n = 0usize;
        match self.current_local() {
            Some(local) => jobs.into_iter().for_each(|(j, c)| {
                local.push(j, c.min(CLASSES - 1));
                n += 1;
            }),
            None => jobs.into_iter().for_each(|(j, c)| {
                self.shared.injectors[c.min(CLASSES - 1)].push(j);
                n += 1;
            }),
        }
        for _ in 0..n.min(self.size) {
            self.shared.sleep.notify_one();
        }
    }

    /// The calling worker, if it belongs to this pool: a handle for repeated
    /// local pushes without re-reading the thread-local each time.
    pub(crate) fn worker(&self) -> Option<WorkerRef<'_>> {
        self.current_local()
            .map(|local| WorkerRef { pool: self, local })
    }

    /// The index of the calling worker, if it is a worker of this pool.
    pub(crate) fn current_worker(&self) -> Option<usize> {
        self.current_local().map(|l| l.index)
    }

    /// Whether the calling thread is a worker of this pool.
    pub(crate) fn on_worker(&self) -> bool {
        self.current_local().is_some()
    }

    /// Runs one queued job on the calling worker thread, if there is one. Lets
    /// a worker that must wait for other jobs help instead of blocking the pool.
    pub(crate) fn help_once(&self) -> bool {
        let Some(local) = self.current_local() else {
            return false;
        };
        match find_work(&self.shared, local) {
            Some(job) => {
                let _ = crate::unwind::catch(|| job.run());
                true
            }
            None => false,
        }
    }

    /// Stops and joins the workers. Idempotent.
    pub(crate) fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.sleep.notify_all();
        let me = thread::current().id();
        let handles: Vec<_> = std::mem::take(&mut *self.threads.lock());
        for h in handles {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }

    /// The worker running on this thread, if it belongs to this pool.
    fn current_local(&self) -> Option<&Local> {
        let ptr = CURRENT.with(|c| c.get());
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a non-null CURRENT points at the `Local` owned by the
        // `worker_main` frame running further down this thread's stack; it is
        // reset to null before that frame returns, and the reference cannot
        // leave this thread (`Local` is neither `Send` nor `Sync`).
        let local = unsafe { &*ptr };
        std::ptr::eq(local.shared, Arc::as_ptr(&self.shared)).then_some(local)
    }
}

/// The worker running on this thread; see [`Pool::worker`].
pub(crate) struct WorkerRef<'a> {
    pool: &'a Pool,
    local: &'a Local,
}

impl WorkerRef<'_> {
    /// The highest class (lowest number) that may have work in this worker's
    /// own deques, or `CLASSES` if none.
    pub(crate) fn best_class(&self) -> usize {
        self.local.mask.get().trailing_zeros() as usize
    }

    /// Pushes a job onto this worker's own deque, without waking anyone.
    pub(crate) fn push(&self, job: Job, class: usize) {
        self.local.push(job, class.min(CLASSES - 1));
    }

    /// Wakes up to `n` parked workers to steal from this one. The check is a
    /// relaxed read: a worker that is just going to sleep may be missed, which
    /// only loses parallelism for a moment — this worker runs its own deque
    /// to the end, so no job is stranded.
    pub(crate) fn wake(&self, n: usize) {
        for _ in 0..n.min(self.pool.size) {
            if !self.pool.shared.sleep.notify_one_relaxed() {
                break;
            }
        }
    }
}

impl Local {
    fn push(&self, job: Job, class: usize) {
        self.deques[class].push(job);
        self.mask.set(self.mask.get() | (1 << class));
    }

    fn pop(&self) -> Option<Job> {
        let mut mask = self.mask.get();
        while mask != 0 {
            let c = mask.trailing_zeros() as usize;
            if let Some(job) = self.deques[c].pop() {
                return Some(job);
            }
            mask &= !(1 << c);
            self.mask.set(mask);
        }
        None
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn find_work(shared: &Shared, local: &Local) -> Option<Job> {
    if let Some(job) = local.pop() {
        return Some(job);
    }
    loop {
        let mut retry = false;
        for c in 0..CLASSES {
            match shared.injectors[c].steal_batch_and_pop(&local.deques[c]) {
                Steal::Success(job) => {
                    local.mask.set(local.mask.get() | (1 << c));
                    return Some(job);
                }
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let n = shared.stealers.len();
            if n > 1 {
                let start = fastrand::usize(..n);
                for k in 0..n {
                    let i = (start + k) % n;
                    if i == local.index {
                        continue;
                    }
                    match shared.stealers[i][c].steal_batch_and_pop(&local.deques[c]) {
                        Steal::Success(job) => {
                            local.mask.set(local.mask.get() | (1 << c));
                            return Some(job);
                        }
                        Steal::Retry => retry = true,
                        Steal::Empty => {}
                    }
                }
            }
        }
        if !retry {
            return None;
        }
    }
}

fn has_work(shared: &Shared) -> bool {
    shared.injectors.iter().any(|i| !i.is_empty())
        || shared.stealers.iter().flatten().any(|s| !s.is_empty())
}

fn worker_main(shared: Arc<Shared>, index: usize, deques: [Worker<Job>; CLASSES]) {
    let local = Local {
        shared: Arc::as_ptr(&shared),
        index,
        deques,
        mask: Cell::new(0),
    };
    CURRENT.with(|c| c.set(&local as *const Local));
    let backoff = Backoff::new();
    loop {
        if let Some(job) = find_work(&shared, &local) {
            backoff.reset();
            let _ = crate::unwind::catch(|| job.run());
            continue;
        }
        if shared.shutdown.load(Ordering::Acquire) {
            break;
        }
        if !backoff.is_completed() {
            backoff.snooze();
            continue;
        }
        shared
            .sleep
            .park(|| has_work(&shared) || shared.shutdown.load(Ordering::SeqCst));
        backoff.reset();
    }
    CURRENT.with(|c| c.set(std::ptr::null()));
}

/// A one-shot flag a thread can block on, with a deadline.
#[derive(Debug, Default)]
pub(crate) struct Latch {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(&self) {
        *self.set.lock() = true;
        self.cv.notify_all();
    }

    /// Whether the flag is set.
    pub(crate) fn is_set(&self) -> bool {
        *self.set.lock()
    }

    /// Waits until the flag is set or `deadline` passes; returns whether it is set.
    /// On a worker of `pool`, runs queued jobs while waiting instead of blocking
    /// the worker (the jobs it waits for may be queued behind it).
    pub(crate) fn wait_until(&self, deadline: Option<Instant>, pool: &Pool) -> bool {
        if pool.on_worker() {
            loop {
                if self.is_set() {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                if !pool.help_once() {
                    let mut g = self.set.lock();
                    if !*g {
                        let _ = self.cv.wait_for(&mut g, Duration::from_micros(200));
                    }
                }
            }
        }
        let mut g = self.set.lock();
        while !*g {
            match deadline {
                Some(d) => {
                    if self.cv.wait_until(&mut g, d).timed_out() {
                        return *g;
                    }
                }
                None => self.cv.wait(&mut g),
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::AtomicUsize;

    fn boxed(f: impl FnOnce() + Send + 'static) -> Job {
        Job::boxed(f)
    }

    #[test]
    fn runs_every_job_once() {
        let pool = Pool::new(2, "t").unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let latch = Arc::new(Latch::new());
        const N: usize = 10_000;
        for i in 0..N {
            let (c, l) = (count.clone(), latch.clone());
            pool.spawn(
                boxed(move || {
                    if c.fetch_add(1, Ordering::AcqRel) + 1 == N {
                        l.set();
                    }
                }),
                i % CLASSES,
            );
        }
        assert!(latch.wait_until(Some(Instant::now() + Duration::from_secs(30)), &pool));
        assert_eq!(count.load(Ordering::Acquire), N);
    }

    #[test]
    fn jobs_spawned_from_workers_run_and_panics_are_contained() {
        let pool = Arc::new(Pool::new(2, "t").unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let latch = Arc::new(Latch::new());
        for i in 0..100 {
            let (p, c, l) = (pool.clone(), count.clone(), latch.clone());
            pool.spawn(
                boxed(move || {
                    if i % 10 == 0 {
                        panic!("job {i} panics");
                    }
                    let (c2, l2) = (c.clone(), l.clone());
                    p.spawn(
                        boxed(move || {
                            if c2.fetch_add(1, Ordering::AcqRel) + 1 == 90 {
                                l2.set();
                            }
                        }),
                        2,
                    );
                }),
                2,
            );
        }
        assert!(latch.wait_until(Some(Instant::now() + Duration::from_secs(30)), &pool));
        assert_eq!(count.load(Ordering::Acquire), 90);
        pool.shutdown();
    }

    /// On one worker, queued higher-class jobs run before lower-class ones.
    #[test]
    fn higher_classes_run_first() {
        let pool = Arc::new(Pool::new(1, "t").unwrap());
        let order = Arc::new(Mutex::new(Vec::new()));
        let latch = Arc::new(Latch::new());
        let (p, o, l) = (pool.clone(), order.clone(), latch.clone());
        pool.spawn(
            boxed(move || {
                // Queued from inside the worker, so nothing runs until we return.
                for class in [4, 2, 0, 3, 1] {
                    let o = o.clone();
                    let l = l.clone();
                    p.spawn(
                        boxed(move || {
                            let mut v = o.lock();
                            v.push(class);
                            if v.len() == 5 {
                                l.set();
                            }
                        }),
                        class,
                    );
                }
            }),
            2,
        );
        assert!(latch.wait_until(Some(Instant::now() + Duration::from_secs(30)), &pool));
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn wakes_after_idle_park() {
        let pool = Pool::new(2, "t").unwrap();
        for round in 0..20 {
            // Let workers park, then check a single job still runs promptly.
            std::thread::sleep(Duration::from_millis(if round % 5 == 0 { 20 } else { 1 }));
            let latch = Arc::new(Latch::new());
            let l = latch.clone();
            pool.spawn(boxed(move || l.set()), round % CLASSES);
            assert!(
                latch.wait_until(Some(Instant::now() + Duration::from_secs(10)), &pool),
                "lost wake-up in round {round}"
            );
        }
    }

    #[test]
    fn latch_times_out() {
        let pool = Pool::new(1, "t").unwrap();
        let latch = Latch::new();
        let t = Instant::now();
        assert!(!latch.wait_until(Some(t + Duration::from_millis(20)), &pool));
        assert!(t.elapsed() >= Duration::from_millis(20));
    }
}
