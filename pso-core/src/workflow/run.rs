//! One run of a workflow: starting it, running steps, and the bookkeeping
//! that releases successors. Stopping (cancel, deadline, step timeouts,
//! retries) is in [`super::control`]; dynamic fan-out in [`super::fanout`].
//!
//! # Step states
//! Each step has a state word `attempt << 8 | state`:
//!
//! ```text
//! PENDING --claim--> RUNNING --ok--> SUCCEEDED
//!                            --err, retries left--> RETRY_WAIT --timer--> PENDING (attempt + 1)
//!                            --err--> FAILED
//!                            --fan_out--> FANNED --children done--> SUCCEEDED | FAILED
//!                            --step timeout / run deadline--> TIMED_OUT
//! PENDING --upstream failed, cancel--> CANCELLED
//! PENDING --all predecessors skipped, condition false--> SKIPPED
//! PENDING --cancel() / deadline while queued or waiting--> CANCELLED_Q | TIMED_OUT_Q
//! ```
//!
//! States from `SUCCEEDED` up are terminal: they never change. `CANCELLED_Q`
//! and `TIMED_OUT_Q` read as Cancelled / TimedOut, but the *bookkeeping* of
//! the step is still owed by whoever holds it (its queued job, or the slot
//! queue it waits in); that holder moves it to the plain terminal state and
//! does the bookkeeping. The attempt number in the word makes a late result of
//! an abandoned attempt fail its CAS instead of overwriting a newer attempt.
//!
//! # Bookkeeping
//! "Accounting" a terminal step releases its successors; it happens exactly
//! once, by the thread whose CAS moved the step to its terminal state (or
//! resolved a `_Q` state). `deps[s]` packs the number of unfinished
//! predecessors (low 32 bits), the number of skipped ones (bits 32–62) and a
//! "a predecessor did not succeed" flag (bit 63), so releasing an edge is one
//! atomic RMW. The thread whose decrement brings the count to zero owns
//! starting the successor: it runs the best one inline and queues the rest,
//! ordered by priority class and critical path.
//!
//! `outstanding` counts steps that are ready, running, waiting for a retry or
//! a slot, or fanned out — each holds one unit. Accounting a step hands its
//! unit to its first released successor and adds one per extra successor
//! (before queueing them); a step that releases nothing gives its unit back.
//! So a chain never touches the shared counter, and the run is finished when
//! it reaches zero: at that point every step is terminal, because a step can
//! only become ready when a predecessor is accounted.
//!
//! # Lifetime
//! A run lives in an `Arc`. `start` leaks one strong reference, the
//! *execution reference*, reclaimed by whoever brings `outstanding` to zero.
//! Queued raw jobs hold only a pointer: a job exists only for a step that
//! holds a unit, so the execution reference keeps the run alive. Paths that
//! can account a step *another* thread is still running (step timeouts, the
//! run deadline) require the running thread to hold a strong reference
//! (`guard`), taken for every step of a run with a deadline and every step
//! with a timeout. Timer callbacks, slot queues, root ranges and fan-out
//! children hold strong references too.
//!
//! # Memory ordering
//! A step's slot (output, error, timing) is written by its accounting thread
//! before the `AcqRel` RMWs on its successors' `deps` (and on `outstanding`);
//! readers are successors (after their own `deps` reached zero) and result
//! readers (after `done`, stored with `Release` once `outstanding` is zero).

use std::mem::ManuallyDrop;

use foldhash::HashMap;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::buffers::{RunBuffers, Slot};
use super::context::StepContext;
use super::deferred::{AfterReturn, Claim, Deferral};
use super::env::{RunEnv, RunOptions};
use super::fanout::ChildGroup;
use super::fold::{metric_state, timed_sample_mask};
use super::limits::{Acquire, Waiter};
use super::plan::{self, RunPlan};
use super::resources::{LeaseStep, StepLease};
use super::{CondDef, HAS_CONDITION, HAS_RETRY, HAS_TIMEOUT, WorkflowInner};
use crate::model::HandlerError;
use crate::scheduler::{Job, TimerId};
use crate::sync::{Arc, AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use crate::unwind;
use crate::value::Value;

pub(crate) const PENDING: u32 = 0;
pub(crate) const RUNNING: u32 = 1;
pub(crate) const RETRY_WAIT: u32 = 2;
pub(crate) const FANNED: u32 = 3;
pub(crate) const SUCCEEDED: u32 = 8;
pub(crate) const FAILED: u32 = 9;
pub(crate) const CANCELLED: u32 = 10;
pub(crate) const TIMED_OUT: u32 = 11;
pub(crate) const SKIPPED: u32 = 12;
pub(crate) const CANCELLED_Q: u32 = 13;
pub(crate) const TIMED_OUT_Q: u32 = 14;

pub(crate) const STOP_NONE: u8 = 0;
pub(crate) const STOP_CANCEL: u8 = 1;
pub(crate) const STOP_CLOSE: u8 = 2;
pub(crate) const STOP_DEADLINE: u8 = 3;

pub(super) const FAILED_BIT: u64 = 1 << 63;
pub(super) const SKIP_ONE: u64 = 1 << 32;
/// Set in a job's argument when the step already holds its system's slot.
pub(super) const SLOT_HELD: u32 = 1 << 31;
/// Set in a job's argument when the allocator decided the step's lease (see
/// [`super::resources`]).
pub(super) const LEASE_READY: u32 = 1 << 30;
/// The step index in a job's argument; also the largest step count + 1.
pub(crate) const STEP_MASK: u32 = LEASE_READY - 1;
pub(super) const NO_WORKER: u32 = u32::MAX;

#[inline]
pub(crate) fn word(attempt: u32, state: u32) -> u32 {
    (attempt << 8) | state
}

#[inline]
pub(crate) fn split(w: u32) -> (u32, u32) {
    (w >> 8, w & 0xff)
}

/// What to do after a step.
#[must_use]
pub(crate) enum Next {
    /// Run this step inline.
    Run(u32),
    /// Nothing more here.
    Idle,
    /// `outstanding` reached zero: finish the run.
    Last,
}

/// How an accounted step affects its successors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    Ok,
    Skipped,
    Failed,
}

pub(super) fn release_of(state: u32) -> Release {
    match state {
        SUCCEEDED => Release::Ok,
        SKIPPED => Release::Skipped,
        _ => Release::Failed,
    }
}

/// A run. See the module docs.
pub(crate) struct RunInner {
    pub(crate) id: u64,
    pub(crate) wf: Arc<WorkflowInner>,
    pub(crate) env: Arc<RunEnv>,
    pub(crate) plan: Arc<RunPlan>,
    pub(crate) input: Value,
    pub(crate) timing: bool,
    pub(crate) deadline: Option<Instant>,
    pub(super) bufs: ManuallyDrop<RunBuffers>,
    pub(crate) groups: Mutex<Vec<Arc<ChildGroup>>>,
    pub(super) outstanding: AtomicUsize,
    pub(crate) accepted: AtomicUsize,
    pub(crate) stop: AtomicU8,
    pub(crate) done: AtomicBool,
    /// Whether any slot holds something to free (else dropping skips them).
    needs_drop: AtomicBool,
    pub(super) waiters: Mutex<Vec<Waker>>,
    pub(super) cv: Condvar,
    pub(crate) started: Instant,
    pub(crate) elapsed_ns: AtomicU64,
    pub(super) deadline_timer: Mutex<Option<TimerId>>,
    /// Next unclaimed root of each root group (see `claim_roots`).
    root_cursors: Box<[AtomicUsize]>,
    /// Step leases (see [`super::resources`]); `leased` once any was asked.
    pub(super) leases: Mutex<HashMap<u32, StepLease>>,
    pub(super) leased: AtomicBool,
    /// Cancellation callbacks `(step, attempt or CHILD_HOOK, f)`; `hooked`
    /// once any was registered (see `control::on_cancel`).
    pub(super) hooks: Mutex<Vec<(u32, u32, CancelHook)>>,
    pub(super) hooked: AtomicBool,
}

/// The attempt of a cancellation hook that waits for the run to stop (a
/// fan-out child's).
pub(crate) const CHILD_HOOK: u32 = u32::MAX;

/// A callback run once when a step is told to stop.
pub(crate) type CancelHook = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for RunInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunInner")
            .field("id", &self.id)
            .field("workflow", &self.wf.name)
            .finish_non_exhaustive()
    }
}

/// The pool's entry point for a raw workflow job.
///
/// # Safety
/// `data` is a `*const RunInner` and `arg & STEP_MASK` a step of that run
/// holding a unit (see the module docs), so the run is alive.
pub(super) unsafe fn exec_step(data: *const (), arg: u32) {
    let ptr = data as *const RunInner;
    let mut next = arg & STEP_MASK;
    let mut resumed = arg & !STEP_MASK;
    loop {
        // SAFETY: step `next` holds a unit, so the execution reference keeps
        // the run alive for this borrow, which ends before `finish`.
        let (what, guard) = unsafe { &*ptr }.step(next, resumed);
        resumed = 0;
        match what {
            Next::Run(n) => {
                drop(guard);
                next = n;
            }
            Next::Idle => {
                drop(guard);
                return;
            }
            Next::Last => {
                // SAFETY: we brought `outstanding` to zero, so we own the
                // execution reference; no borrow of the run is alive here.
                unsafe { RunInner::finish(ptr) };
                drop(guard);
                return;
            }
        }
    }
}

impl RunInner {
    /// Starts a run of `wf`.
    pub(crate) fn start(
        env: &Arc<RunEnv>,
        wf: &Arc<WorkflowInner>,
        opts: RunOptions,
    ) -> Arc<RunInner> {
        let n = wf.steps.len();
        let plan = plan::current(wf, env.policy());
        let started = Instant::now();
        let start_raw = if opts.timing { env.clock.raw() } else { 0 };
        let bufs = wf
            .buffers
            .take(&wf.pred_count, word(1, PENDING), opts.timing, start_raw);
        let run = Arc::new(RunInner {
            id: env.next_run.fetch_add(1, Ordering::Relaxed),
            wf: wf.clone(),
            env: env.clone(),
            input: opts.input,
            timing: opts.timing,
            deadline: opts.deadline.and_then(|d| started.checked_add(d)),
            bufs: ManuallyDrop::new(bufs),
            groups: Mutex::new(Vec::new()),
            outstanding: AtomicUsize::new(plan.roots.len()),
            accepted: AtomicUsize::new(n),
            stop: AtomicU8::new(STOP_NONE),
            done: AtomicBool::new(false),
            needs_drop: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            cv: Condvar::new(),
            started,
            elapsed_ns: AtomicU64::new(0),
            deadline_timer: Mutex::new(None),
            root_cursors: plan
                .root_groups
                .iter()
                .map(|_| AtomicUsize::new(0))
                .collect(),
            leases: Mutex::new(HashMap::default()),
            leased: AtomicBool::new(false),
            hooks: Mutex::new(Vec::new()),
            hooked: AtomicBool::new(false),
            plan,
        });
        env.runs.lock().insert(run.id, Arc::downgrade(&run));
        for s in wf.systems.iter() {
            s.slots.run_started();
        }
        if n == 0 {
            run.settle();
            return run;
        }
        let exec = Arc::into_raw(run.clone()) as *const ();
        if let Some(d) = run.deadline {
            let r = run.clone();
            *run.deadline_timer.lock() = env.timer.schedule(d, move || {
                r.stop_all(STOP_DEADLINE);
            });
        }
        let roots = &run.plan.roots;
        if let [only] = **roots {
            // SAFETY: the root holds a unit, so the execution reference keeps
            // the run alive until its job accounts it.
            let job = unsafe { Job::raw(exec_step, exec, only) };
            env.pool.spawn(job, wf.steps[only as usize].class as usize);
        } else {
            // Roots are claimed from a shared cursor per priority class, in
            // shrinking chunks, by a few claimer jobs (at most one per worker):
            // one atomic claim per chunk instead of one queued job per root,
            // and every worker can take part.
            for (g, &(lo, hi)) in run.plan.root_groups.iter().enumerate() {
                let class = wf.steps[roots[lo] as usize].class as usize;
                let claimers = (hi - lo).min(env.pool.size());
                env.pool.spawn_batch((0..claimers).map(|_| {
                    let r = run.clone();
                    (Job::boxed(move || r.claim_roots(g)), class)
                }));
            }
        }
        run
    }

    /// Claims and runs roots of group `g` until none are left.
    fn claim_roots(self: &Arc<Self>, g: usize) {
        let (lo, hi) = self.plan.root_groups[g];
        let cursor = &self.root_cursors[g];
        let share = 2 * self.env.pool.size();
        loop {
            let cur = cursor.load(Ordering::Relaxed);
            if cur >= hi - lo {
                return;
            }
            let chunk = ((hi - lo - cur) / share).max(1);
            if cursor
                .compare_exchange_weak(cur, cur + chunk, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            for k in lo + cur..lo + cur + chunk {
                let mut next = self.plan.roots[k];
                loop {
                    let (what, _guard) = self.step(next, 0);
                    match what {
                        Next::Run(n) => next = n,
                        Next::Idle => break,
                        Next::Last => {
                            self.finish_arc();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// A new strong reference to this run.
    pub(crate) fn arc(&self) -> Arc<RunInner> {
        // SAFETY: every RunInner is created inside an `Arc` by `start`, and the
        // caller holds either a strong reference or a step with a unit (so the
        // execution reference is alive); the count is therefore > 0.
        unsafe {
            Arc::increment_strong_count(self as *const RunInner);
            Arc::from_raw(self as *const RunInner)
        }
    }

    #[inline]
    pub(super) fn raw_now(&self) -> u64 {
        if self.timing { self.env.clock.raw() } else { 0 }
    }

    /// Writes the slot of step `i`.
    ///
    /// # Safety
    /// The caller moved step `i` to a terminal state and has not accounted it.
    #[inline]
    pub(super) unsafe fn write_slot(&self, i: u32, slot: Slot) {
        if slot.needs_drop() && !self.needs_drop.load(Ordering::Relaxed) {
            self.needs_drop.store(true, Ordering::Relaxed);
        }
        // SAFETY: per the contract (see `SlotCell::write`).
        unsafe { self.bufs.slots[i as usize].write(slot) }
    }

    /// Records the timing of step `i` (timing on only).
    #[inline]
    pub(super) fn record_times(&self, i: u32, start: u64, end: u64, worker: u32) {
        let t = &self.bufs.times[i as usize];
        t.queued.store(
            start.saturating_sub(t.ready.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        // At least one tick: `ran != 0` tells a step that ran (metrics).
        t.ran
            .store(end.saturating_sub(start).max(1), Ordering::Relaxed);
        t.worker.store(worker.wrapping_add(1), Ordering::Relaxed);
    }

    /// The slot of a terminal, accounted step.
    pub(crate) fn slot(&self, i: u32) -> &Slot {
        // SAFETY: callers only read slots of steps whose accounting they have
        // observed (successors after `deps` reached zero, results after
        // `done`); the slot is never written again.
        unsafe { self.bufs.slots[i as usize].get() }
    }

    #[inline]
    pub(crate) fn state_word(&self, i: u32) -> u32 {
        self.bufs.state[i as usize].load(Ordering::Acquire)
    }

    pub(crate) fn step_state(&self, i: u32) -> u32 {
        split(self.state_word(i)).1
    }

    fn output_if_succeeded(&self, i: u32) -> Option<&Value> {
        (self.step_state(i) == SUCCEEDED).then(|| &self.slot(i).output)
    }

    pub(crate) fn input_of(&self, step: u32, name: &str) -> Option<&Value> {
        let r = self.wf.inputs_of(step).iter().find(|r| &*r.name == name)?;
        self.output_if_succeeded(r.from)
    }

    pub(crate) fn inputs_of(&self, step: u32) -> Vec<(&str, &Value)> {
        self.wf
            .inputs_of(step)
            .iter()
            .filter_map(|r| self.output_if_succeeded(r.from).map(|v| (&*r.name, v)))
            .collect()
    }

    pub(super) fn cas(&self, i: u32, att: u32, from: u32, to: u32) -> bool {
        self.cas_word(i, word(att, from), word(att, to))
    }

    pub(super) fn cas_word(&self, i: u32, from: u32, to: u32) -> bool {
        self.bufs.state[i as usize]
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Runs (or resolves) step `i`, whose job this thread holds. `resumed`
    /// holds the `SLOT_HELD` / `LEASE_READY` bits of a parked step's job.
    pub(super) fn step(&self, i: u32, resumed: u32) -> (Next, Option<Arc<RunInner>>) {
        let iu = i as usize;
        let wf = &*self.wf;
        let def = &wf.steps[iu];
        let slot_held = resumed & SLOT_HELD != 0;
        let (att, st) = split(self.state_word(i));
        if st != PENDING {
            return (self.step_queued(i, att, st, slot_held), None);
        }
        let deps = self.bufs.deps[iu].load(Ordering::Acquire);
        let stop = self.stop.load(Ordering::Acquire);
        // One test keeps the common case (no stop, every predecessor
        // succeeded, no condition/timeout/retry, no system) on the fast path.
        let held = if stop != STOP_NONE
            || deps >> 32 != 0
            || def.flags != 0
            || def.system_ix != super::NO_INDEX
            || resumed != 0
        {
            match self.step_prelude(i, att, deps, stop, resumed) {
                Ok(held) => held,
                Err(next) => return (next, None),
            }
        } else {
            false
        };
        if !self.cas(i, att, PENDING, RUNNING) {
            // Cancelled or timed out while we looked: it is `_Q` now, and this
            // job still owns its bookkeeping.
            self.give_back(i, held);
            return self.step(i, 0);
        }
        self.run_claimed(i, att, held)
    }

    /// Step `i` has a job but is not pending: a `_Q` state to resolve.
    #[cold]
    fn step_queued(&self, i: u32, att: u32, st: u32, slot_held: bool) -> Next {
        self.give_back(i, slot_held);
        match st {
            CANCELLED_Q => self.resolve(i, att, st, CANCELLED, None),
            TIMED_OUT_Q => self.resolve(i, att, st, TIMED_OUT, None),
            _ => {
                debug_assert!(false, "a job for step {i} in state {st}");
                Next::Idle
            }
        }
    }

    /// Gives back the system slot step `i` holds, starting the next waiter,
    /// and releases its lease: its attempt ended (or did not start).
    fn give_back(&self, i: u32, held: bool) {
        self.drop_lease(i);
        self.drop_hooks(i);
        if held
            && let Some(s) = self.wf.steps[i as usize].system()
            && let Some(w) = self.wf.systems[s as usize].slots.release()
        {
            self.env.start_waiter(w);
        }
    }

    /// The uncommon checks before claiming step `i`: a stopped run, failed or
    /// skipped predecessors, the concurrency slot, the condition, the step's
    /// lease. `Ok(held)` to go on (holding a slot or not); `Err` if the step
    /// was resolved or parked.
    #[cold]
    fn step_prelude(
        &self,
        i: u32,
        att: u32,
        deps: u64,
        stop: u8,
        resumed: u32,
    ) -> Result<bool, Next> {
        let slot_held = resumed & SLOT_HELD != 0;
        let lease_ready = resumed & LEASE_READY != 0;
        let iu = i as usize;
        let wf = &*self.wf;
        let def = &wf.steps[iu];
        // A stopped run wins over everything else: once the deadline passed,
        // every unfinished step is TimedOut, whatever released it.
        if stop != STOP_NONE {
            self.give_back(i, slot_held);
            let to = if stop == STOP_DEADLINE {
                TIMED_OUT
            } else {
                CANCELLED
            };
            return Err(self.resolve(i, att, PENDING, to, None));
        }
        if deps & FAILED_BIT != 0 {
            self.give_back(i, slot_held);
            return Err(self.resolve(i, att, PENDING, CANCELLED, None));
        }
        let skipped = ((deps >> 32) & 0x7fff_ffff) as u32;
        if skipped > 0 && skipped == wf.pred_count[iu] {
            self.give_back(i, slot_held);
            return Err(self.resolve(i, att, PENDING, SKIPPED, None));
        }
        let mut held = slot_held;
        if !held
            && let Some(s) = def
                .system()
                .map(|s| &*wf.systems[s as usize].slots)
                .filter(|s| s.limited())
        {
            match s.acquire(|| Waiter {
                run: self.arc(),
                step: i,
            }) {
                Acquire::Parked => return Err(Next::Idle),
                Acquire::Granted => held = true,
            }
        }
        // A step resumed with its lease decided already passed its condition.
        if def.flags & HAS_CONDITION != 0 && !lease_ready {
            let cond = wf
                .meta_of(i)
                .and_then(|m| m.condition.as_deref())
                .expect("HAS_CONDITION");
            let holds = match cond {
                CondDef::Truthy(p) => {
                    Ok(self.output_if_succeeded(*p).is_some_and(Value::is_truthy))
                }
                CondDef::Predicate(f) => {
                    let ctx = StepContext::new(self, i, att, None);
                    unwind::run_handler(|| Ok(f(&ctx))).map_err(|e| match e {
                        HandlerError::Panicked { message } => HandlerError::Panicked {
                            message: format!("condition: {message}"),
                        },
                        other => other,
                    })
                }
                CondDef::TryPredicate(f) => {
                    let ctx = StepContext::new(self, i, att, None);
                    unwind::run_handler(|| f(&ctx)).map_err(|e| match e {
                        HandlerError::Panicked { message } => HandlerError::Panicked {
                            message: format!("condition: {message}"),
                        },
                        other => other,
                    })
                }
            };
            match holds {
                Ok(true) => {}
                Ok(false) => {
                    self.give_back(i, held);
                    return Err(self.resolve(i, att, PENDING, SKIPPED, None));
                }
                Err(e) => {
                    self.give_back(i, held);
                    return Err(self.resolve(i, att, PENDING, FAILED, Some(e)));
                }
            }
        }
        if let Some(s) = def.system() {
            match self.step_lease(i, s, lease_ready, held) {
                LeaseStep::Go => {}
                LeaseStep::Parked => return Err(Next::Idle),
                LeaseStep::Failed(e) => {
                    self.give_back(i, held);
                    return Err(self.resolve(i, att, PENDING, FAILED, Some(e)));
                }
            }
        }
        Ok(held)
    }

    /// Runs claimed (RUNNING) attempt `att` of step `i` and finishes it
    /// (unless its function deferred the result: see [`super::deferred`]).
    fn run_claimed(&self, i: u32, att: u32, held: bool) -> (Next, Option<Arc<RunInner>>) {
        let iu = i as usize;
        let wf = &*self.wf;
        let def = &wf.steps[iu];
        // Nobody but this thread can move a RUNNING step unless a timeout or
        // the deadline may abandon it; only then is a CAS (and a strong
        // reference keeping the run alive) needed to finish it.
        let has_timeout = def.flags & HAS_TIMEOUT != 0;
        let guarded = has_timeout || self.deadline.is_some();
        let guard = guarded.then(|| self.arc());
        let timeout = has_timeout
            .then(|| self.schedule_timeout(i, att, wf.meta_of(i).map_or(0, |m| m.timeout_ns)))
            .flatten();
        let start = self.raw_now();
        let claim = Claim {
            held,
            start,
            timeout,
        };
        let ctx = StepContext::claimed(self, i, att, &claim);
        let result = unwind::run_handler(|| (def.f)(&ctx));
        let (children, deferral) = ctx.into_parts();
        let next = match deferral {
            None => self.finish_attempt(i, att, claim, result, children, guarded, true),
            Some(d) => self.after_deferred(i, att, claim, &d, result, children, guarded),
        };
        (next, guard)
    }

    /// [`RunInner::run_claimed`] for a function that deferred its result:
    /// finishes the attempt now, or leaves it to the completion. Kept out of
    /// line: moving the function's result through it made the common path's
    /// copies slower.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn after_deferred(
        &self,
        i: u32,
        att: u32,
        claim: Claim,
        d: &Deferral,
        result: Result<Value, HandlerError>,
        mut children: Vec<super::Child>,
        guarded: bool,
    ) -> Next {
        match d.after_return(result, &mut children) {
            AfterReturn::Owned => Next::Idle,
            AfterReturn::Finish(result) => {
                self.finish_attempt(i, att, claim, result, children, guarded, true)
            }
        }
    }

    /// Ends attempt `att` of step `i` with the function's result: gives back
    /// its slot and lease, then moves it to its terminal state (or a retry,
    /// or fan-out) — by CAS when `guarded` (someone else may have moved it) —
    /// and accounts it. `inline`: the caller can run a released successor.
    // Inlined: moving the function's result into an out-of-line call cost
    // about a third of an empty step (the copies stall on store forwarding).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn finish_attempt(
        &self,
        i: u32,
        att: u32,
        claim: Claim,
        result: Result<Value, HandlerError>,
        children: Vec<super::Child>,
        guarded: bool,
        inline: bool,
    ) -> Next {
        let iu = i as usize;
        let wf = &*self.wf;
        let def = &wf.steps[iu];
        let start = claim.start;
        if let Some(id) = claim.timeout {
            self.env.timer.cancel(id);
        }
        self.give_back(i, claim.held);
        let end = self.raw_now();
        let record = || {
            if self.timing {
                let worker = self
                    .env
                    .pool
                    .current_worker()
                    .map_or(NO_WORKER, |w| w as u32);
                self.record_times(i, start, end, worker);
            }
        };
        let finish = |to: u32| -> bool {
            if guarded {
                self.cas(i, att, RUNNING, to)
            } else {
                self.bufs.state[iu].store(word(att, to), Ordering::Release);
                true
            }
        };

        match result {
            Ok(v) => match children.is_empty() {
                false => {
                    if finish(FANNED) {
                        record();
                        self.fan_out(i, att, children, end);
                    }
                    Next::Idle
                }
                true => {
                    if finish(SUCCEEDED) {
                        record();
                        // SAFETY: we moved the step to SUCCEEDED just now.
                        unsafe {
                            self.write_slot(
                                i,
                                Slot {
                                    output: v,
                                    error: None,
                                },
                            )
                        };
                        self.account(i, Release::Ok, end, inline)
                    } else {
                        Next::Idle
                    }
                }
            },
            Err(e) => {
                let retry = if def.flags & HAS_RETRY != 0 {
                    wf.meta_of(i).and_then(|m| m.retry.as_deref())
                } else {
                    None
                }
                .filter(|r| att <= r.max_retries);
                match retry {
                    Some(r) if self.stop.load(Ordering::Acquire) == STOP_NONE => {
                        if finish(RETRY_WAIT) {
                            self.schedule_retry(i, att, r.delay(att + 1));
                        }
                        Next::Idle
                    }
                    _ => {
                        // A handler that gives up because its run was cancelled
                        // ends Cancelled, not Failed.
                        let to = match self.stop.load(Ordering::Acquire) {
                            STOP_CANCEL | STOP_CLOSE => CANCELLED,
                            _ => FAILED,
                        };
                        if finish(to) {
                            record();
                            // SAFETY: we moved the step to its terminal state just now.
                            unsafe { self.write_slot(i, Slot::unrun(Some(e))) };
                            self.account(i, Release::Failed, end, inline)
                        } else {
                            Next::Idle
                        }
                    }
                }
            }
        }
    }

    /// Moves unstarted step `i` from `from` to terminal `to` and accounts it.
    /// If the CAS loses (a concurrent `_Q` mark), resolves that state instead.
    pub(super) fn resolve(
        &self,
        i: u32,
        att: u32,
        from: u32,
        to: u32,
        error: Option<HandlerError>,
    ) -> Next {
        // Attempt `att` never started: the terminal word records `att - 1`.
        if !self.cas_word(i, word(att, from), word(att - 1, to)) {
            let (att2, st) = split(self.state_word(i));
            return match st {
                CANCELLED_Q => self.resolve(i, att2, CANCELLED_Q, CANCELLED, None),
                TIMED_OUT_Q => self.resolve(i, att2, TIMED_OUT_Q, TIMED_OUT, None),
                _ => Next::Idle,
            };
        }
        let now = self.raw_now();
        if self.timing {
            let t = &self.bufs.times[i as usize];
            t.queued.store(
                now.saturating_sub(t.ready.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        // SAFETY: we won the terminal transition just now.
        unsafe { self.write_slot(i, Slot::unrun(error)) };
        self.account(i, release_of(to), now, true)
    }

    /// Finishes the run from a thread that holds a strong reference.
    pub(super) fn finish_arc(self: &Arc<Self>) {
        self.settle();
        // SAFETY: the caller brought `outstanding` to zero, so it owns the
        // execution reference created by `Arc::into_raw` in `start`; its own
        // strong reference keeps the allocation alive across this drop.
        unsafe { drop(Arc::from_raw(Arc::as_ptr(self))) };
    }

    /// Finishes the run through the raw pointer of a job.
    ///
    /// # Safety
    /// The caller brought `outstanding` to zero (owns the execution reference)
    /// and holds no borrow of the run.
    unsafe fn finish(ptr: *const RunInner) {
        {
            // SAFETY: the execution reference is still alive here.
            let run = unsafe { &*ptr };
            run.settle();
        }
        // SAFETY: per the contract, this is the execution reference.
        unsafe { drop(Arc::from_raw(ptr)) };
    }

    /// Records the end of the run: estimates, bookkeeping, wake waiters.
    pub(super) fn settle(&self) {
        self.elapsed_ns
            .store(self.started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Some(id) = self.deadline_timer.lock().take() {
            self.env.timer.cancel(id);
        }
        if self.timing {
            self.learn();
            self.env.history.record(self);
        }
        self.env.runs.lock().remove(&self.id);
        for s in self.wf.systems.iter() {
            s.slots.run_ended();
        }
        let wakers = {
            let mut w = self.waiters.lock();
            self.done.store(true, Ordering::Release);
            self.cv.notify_all();
            std::mem::take(&mut *w)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Folds the measured durations of succeeded steps into the estimates
    /// and, with metrics on, every step into its operation's series (one
    /// pass; the operation table's lock is held for it): its terminal state
    /// and retries always, its times if it is one of the sampled steps (see
    /// [`timed_sample_mask`](super::fold::timed_sample_mask)).
    fn learn(&self) {
        let alpha = self.env.estimates.alpha();
        let mut shared: smallvec::SmallVec<[(&std::sync::Arc<str>, u64); 4]> =
            smallvec::SmallVec::new();
        let mut changed = false;
        let metrics = &*self.env.metrics;
        let clock = &self.env.clock;
        let mut fold = metrics
            .on()
            .then(|| (self.wf.metric_ops(metrics), metrics.ops.lock()));
        let timed_mask = timed_sample_mask(self.wf.steps.len());
        for i in 0..self.wf.steps.len() {
            let (att, st) = split(self.state_word(i as u32));
            let t = &self.bufs.times[i];
            let ran = t.ran.load(Ordering::Relaxed);
            let ns = clock.delta_as_nanos(0, ran);
            if let Some((ops, table)) = fold.as_mut()
                && let Some(k) = metric_state(st)
            {
                let timed = (ran != 0 && i & timed_mask == 0).then(|| {
                    (
                        ns,
                        clock.delta_as_nanos(0, t.queued.load(Ordering::Relaxed)),
                    )
                });
                table.record(self.wf.metric_series(i, ops), k, att, timed);
            }
            if st != SUCCEEDED {
                continue;
            }
            let e = &self.wf.est[i];
            let old = e.load(Ordering::Relaxed);
            let new = (old as f64 + alpha * (ns as f64 - old as f64)).max(0.0) as u64;
            e.store(new, Ordering::Relaxed);
            // Re-plan only when the order could see it (a step's estimate
            // moved to another bucket of the coarse order): re-planning a
            // 1-step workflow after every run cost a third of its latency.
            changed |= plan::coarse(old) != plan::coarse(new);
            if let Some(op) = self.wf.step_op(i as u32) {
                shared.push((&op.key, ns));
            }
        }
        if let Some((_, table)) = fold.as_mut() {
            self.fold_children(table);
        }
        drop(fold);
        if changed {
            self.wf.est_version.fetch_add(1, Ordering::Release);
        }
        if !shared.is_empty() {
            self.env.estimates.record(shared);
        }
    }

    /// Converts raw clock ticks to a duration.
    pub(crate) fn ticks(&self, raw: u64) -> Duration {
        if self.timing {
            Duration::from_nanos(self.env.clock.delta_as_nanos(0, raw))
        } else {
            Duration::ZERO
        }
    }
}

impl Drop for RunInner {
    fn drop(&mut self) {
        // SAFETY: the buffers are taken exactly once, here.
        let bufs = unsafe { ManuallyDrop::take(&mut self.bufs) };
        if !self.done.load(Ordering::Acquire) {
            // Unfinished runs are never dropped (their execution reference
            // keeps them); if one ever is, leak its slots rather than read them.
            std::mem::forget(bufs);
            return;
        }
        if self.needs_drop.load(Ordering::Acquire) {
            // SAFETY: the run is done, so every step is terminal and every slot
            // was written; this is the last reference.
            unsafe { bufs.drop_slots() };
        }
        // Otherwise every slot holds only plain data: nothing to free, and the
        // next run overwrites them as uninitialized memory.
        self.wf.buffers.give(bufs);
    }
}
