//! One run of a workflow.
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
//! PENDING --cancel() / deadline while released or waiting--> CANCELLED_Q | TIMED_OUT_Q
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
//! "Accounting" a terminal step releases its successors and decrements
//! `remaining`; it happens exactly once, by the thread whose CAS moved the step
//! to its terminal state (or resolved a `_Q` state). `deps[s]` packs the
//! number of unfinished predecessors (low 32 bits), the number of skipped
//! ones (bits 32–62) and an "a predecessor did not succeed" flag (bit 63), so
//! releasing an edge is one atomic RMW. The thread whose decrement brings the
//! count to zero owns starting the successor: it runs the best one inline and
//! queues the rest, ordered by priority class and critical path.
//!
//! # Lifetime
//! A run lives in an `Arc`. `start` leaks one strong reference, the
//! *execution reference*, reclaimed by whoever accounts the last step. Queued
//! jobs hold only a raw pointer: a job exists only for an unaccounted step,
//! so `remaining > 0` and the execution reference keeps the run alive. Paths
//! that can account a step *another* thread is still running (step timeouts,
//! the run deadline) require the running thread to hold a strong reference
//! (`guard`), taken for every step of a run with a deadline and every step
//! with a timeout. Timer callbacks, slot queues and fan-out children hold
//! strong references too.
//!
//! # Memory ordering
//! A step's slot (output, error, timing) is written by its accounting thread
//! before the `AcqRel` RMWs on its successors' `deps` and on `remaining`;
//! readers are successors (after their own `deps` reached zero) and result
//! readers (after `done`, stored with `Release` after the last accounting).

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::sync::Weak;
use std::task::Waker;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::context::{Child, StepContext};
use super::limits::{Acquire, Waiter};
use super::plan::{self, Estimates, RunPlan, SchedulingPolicy};
use super::{CondDef, WorkflowInner};
use crate::model::{HandlerError, OpFn};
use crate::scheduler::{Job, Pool, Timer, TimerId};
use crate::sync::{Arc, AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
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

const FAILED_BIT: u64 = 1 << 63;
const SKIP_ONE: u64 = 1 << 32;
/// Set in a job's argument when the step already holds its system's slot.
const SLOT_HELD: u32 = 1 << 31;
const NO_WORKER: u32 = u32::MAX;

#[inline]
pub(crate) fn word(attempt: u32, state: u32) -> u32 {
    (attempt << 8) | state
}

#[inline]
pub(crate) fn split(w: u32) -> (u32, u32) {
    (w >> 8, w & 0xff)
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's input (what root steps see as their input value).
    pub input: Value,
    /// Stop the whole run (as `TimedOut`) this long after it starts.
    pub deadline: Option<Duration>,
    /// Record per-step queue wait and run time and learn durations (default
    /// true). Off saves two clock reads per step.
    pub timing: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { input: Value::Null, deadline: None, timing: true }
    }
}

impl RunOptions {
    /// Default options with this input.
    pub fn with_input(input: impl Into<Value>) -> Self {
        RunOptions { input: input.into(), ..Self::default() }
    }

    /// Sets the run deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Turns timing on or off.
    pub fn timing(mut self, on: bool) -> Self {
        self.timing = on;
        self
    }
}

/// Services shared by every run of an orchestrator.
pub(crate) struct RunEnv {
    pub(crate) pool: Arc<Pool>,
    pub(crate) timer: Timer,
    pub(crate) clock: quanta::Clock,
    pub(crate) estimates: Estimates,
    pub(crate) runs: Mutex<HashMap<u64, Weak<RunInner>>>,
    pub(crate) next_run: AtomicU64,
    pub(crate) policy: AtomicU8,
}

impl std::fmt::Debug for RunEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEnv").field("live_runs", &self.runs.lock().len()).finish_non_exhaustive()
    }
}

impl RunEnv {
    pub(crate) fn new(pool: Arc<Pool>, name: &str, alpha: f64) -> Self {
        RunEnv {
            pool,
            timer: Timer::new(name),
            clock: quanta::Clock::new(),
            estimates: Estimates::new(alpha),
            runs: Mutex::new(HashMap::new()),
            next_run: AtomicU64::new(1),
            policy: AtomicU8::new(0),
        }
    }

    pub(crate) fn policy(&self) -> SchedulingPolicy {
        match self.policy.load(Ordering::Relaxed) {
            1 => SchedulingPolicy::Fifo,
            _ => SchedulingPolicy::CriticalPath,
        }
    }

    pub(crate) fn set_policy(&self, p: SchedulingPolicy) {
        self.policy.store(if p == SchedulingPolicy::Fifo { 1 } else { 0 }, Ordering::Relaxed);
    }

    /// Live runs (for cancelling them all when closing).
    pub(crate) fn live_runs(&self) -> Vec<Arc<RunInner>> {
        self.runs.lock().values().filter_map(Weak::upgrade).collect()
    }

    /// Starts a step that was handed a concurrency slot.
    pub(crate) fn start_waiter(&self, w: Waiter) {
        let class = w.run.wf.steps[w.step as usize].class as usize;
        // SAFETY: the parked step is unaccounted (its queue entry owned it), so
        // the run's execution reference is alive until that job accounts it.
        let job = unsafe { Job::raw(exec_step, Arc::as_ptr(&w.run) as *const (), w.step | SLOT_HELD) };
        self.pool.spawn(job, class);
    }
}

/// What a step's output, error and timing are once it is terminal.
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) output: Value,
    pub(crate) error: Option<Box<HandlerError>>,
    /// Raw clock ticks from ready to start.
    pub(crate) queued: u64,
    /// Raw clock ticks of the (last) attempt.
    pub(crate) ran: u64,
    pub(crate) worker: u32,
    /// Attempts started.
    pub(crate) attempts: u32,
}

/// A slot written once by the thread that accounts its step.
pub(crate) struct SlotCell(pub(crate) UnsafeCell<Slot>);

// SAFETY: a slot is written only by the thread that won its step's terminal
// transition, before that step's accounting (Release); it is read only after
// the accounting was observed (Acquire) — see the module docs. So no two
// threads ever access it concurrently with a write.
unsafe impl Sync for SlotCell {}

impl Default for SlotCell {
    fn default() -> Self {
        SlotCell(UnsafeCell::new(Slot { worker: NO_WORKER, ..Slot::default() }))
    }
}

/// What to do after a step.
#[must_use]
pub(crate) enum Next {
    /// Run this step inline.
    Run(u32),
    /// Nothing more here.
    Idle,
    /// That was the last step: finish the run.
    Last,
}

/// Children of one fan-out step.
pub(crate) struct ChildGroup {
    pub(crate) parent: u32,
    pub(crate) attempt: u32,
    pub(crate) defs: Vec<Child>,
    pub(crate) state: Box<[AtomicU32]>,
    pub(crate) slots: Box<[SlotCell]>,
    pub(crate) ready_at: u64,
    left: AtomicUsize,
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
    pub(crate) state: Box<[AtomicU32]>,
    deps: Box<[AtomicU64]>,
    ready_at: Box<[AtomicU64]>,
    pub(crate) slots: Box<[SlotCell]>,
    pub(crate) groups: Mutex<Vec<Arc<ChildGroup>>>,
    remaining: AtomicUsize,
    pub(crate) accepted: AtomicUsize,
    pub(crate) stop: AtomicU8,
    pub(crate) done: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
    cv: Condvar,
    pub(crate) started: Instant,
    start_raw: u64,
    pub(crate) elapsed_ns: AtomicU64,
    deadline_timer: Mutex<Option<TimerId>>,
}

impl std::fmt::Debug for RunInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunInner").field("id", &self.id).field("workflow", &self.wf.name).finish_non_exhaustive()
    }
}

/// Runs step jobs: the pool's entry point for a raw workflow job.
///
/// # Safety
/// `data` is a `*const RunInner` and `arg & !SLOT_HELD` an unaccounted step of
/// that run (see the module docs), so the run is alive.
unsafe fn exec_step(data: *const (), arg: u32) {
    let ptr = data as *const RunInner;
    let mut next = arg & !SLOT_HELD;
    let mut slot_held = arg & SLOT_HELD != 0;
    loop {
        // SAFETY: step `next` is unaccounted, so the execution reference keeps
        // the run alive for this borrow, which ends before `finish`.
        let (what, guard) = unsafe { &*ptr }.step(next, slot_held);
        slot_held = false;
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
                // SAFETY: we accounted the last step, so we own the execution
                // reference; no borrow of the run is alive here.
                unsafe { RunInner::finish(ptr) };
                drop(guard);
                return;
            }
        }
    }
}

/// How an accounted step affects its successors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    Ok,
    Skipped,
    Failed,
}

fn release_of(state: u32) -> Release {
    match state {
        SUCCEEDED => Release::Ok,
        SKIPPED => Release::Skipped,
        _ => Release::Failed,
    }
}

impl RunInner {
    /// Starts a run of `wf`.
    pub(crate) fn start(env: &Arc<RunEnv>, wf: &Arc<WorkflowInner>, opts: RunOptions) -> Arc<RunInner> {
        let n = wf.steps.len();
        let plan = plan::current(wf, env.policy());
        let started = Instant::now();
        let start_raw = if opts.timing { env.clock.raw() } else { 0 };
        let run = Arc::new(RunInner {
            id: env.next_run.fetch_add(1, Ordering::Relaxed),
            wf: wf.clone(),
            env: env.clone(),
            plan,
            input: opts.input,
            timing: opts.timing,
            deadline: opts.deadline.and_then(|d| started.checked_add(d)),
            state: (0..n).map(|_| AtomicU32::new(word(1, PENDING))).collect(),
            deps: wf.pred_count.iter().map(|&c| AtomicU64::new(c as u64)).collect(),
            ready_at: if opts.timing { (0..n).map(|_| AtomicU64::new(start_raw)).collect() } else { Box::new([]) },
            slots: (0..n).map(|_| SlotCell::default()).collect(),
            groups: Mutex::new(Vec::new()),
            remaining: AtomicUsize::new(n),
            accepted: AtomicUsize::new(n),
            stop: AtomicU8::new(STOP_NONE),
            done: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            cv: Condvar::new(),
            started,
            start_raw,
            elapsed_ns: AtomicU64::new(0),
            deadline_timer: Mutex::new(None),
        });
        env.runs.lock().insert(run.id, Arc::downgrade(&run));
        if n == 0 {
            run.settle();
            return run;
        }
        let exec = Arc::into_raw(run.clone()) as *const ();
        if let Some(d) = run.deadline {
            let r = run.clone();
            *run.deadline_timer.lock() = env.timer.schedule(d, move || r.stop_all(STOP_DEADLINE));
        }
        let roots = &run.plan.roots;
        let pool = &env.pool;
        let make = |i: u32| {
            // SAFETY: root `i` is unaccounted, so the execution reference
            // (`exec`) keeps the run alive until its job accounts it.
            unsafe { Job::raw(exec_step, exec, i) }
        };
        if pool.on_worker() {
            // Local LIFO deques: push the best last.
            for &i in roots.iter().rev() {
                pool.spawn(make(i), wf.steps[i as usize].class as usize);
            }
        } else if roots.len() == 1 {
            pool.spawn(make(roots[0]), wf.steps[roots[0] as usize].class as usize);
        } else {
            // One seed job fans the roots out into a worker's own deque, which
            // is much cheaper than pushing each into the shared injector.
            let r = run.clone();
            let class = wf.steps[roots[0] as usize].class as usize;
            pool.spawn(
                Job::boxed(move || {
                    let pool = &r.env.pool;
                    let exec = Arc::as_ptr(&r) as *const ();
                    pool.spawn_batch(r.plan.roots.iter().rev().map(|&i| {
                        // SAFETY: as above: roots are unaccounted.
                        (unsafe { Job::raw(exec_step, exec, i) }, r.wf.steps[i as usize].class as usize)
                    }));
                }),
                class,
            );
        }
        run
    }

    /// A new strong reference to this run.
    pub(crate) fn arc(&self) -> Arc<RunInner> {
        // SAFETY: every RunInner is created inside an `Arc` by `start`, and the
        // caller holds either a strong reference or an unaccounted step (so the
        // execution reference is alive); the count is therefore > 0.
        unsafe {
            Arc::increment_strong_count(self as *const RunInner);
            Arc::from_raw(self as *const RunInner)
        }
    }

    fn raw_now(&self) -> u64 {
        if self.timing { self.env.clock.raw() } else { 0 }
    }

    /// # Safety
    /// The caller must be the thread that moved step `i` to a terminal state
    /// and must not have accounted it yet.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slot_mut(&self, i: u32) -> &mut Slot {
        // SAFETY: per the contract, nobody else reads or writes this slot now.
        unsafe { &mut *self.slots[i as usize].0.get() }
    }

    /// The slot of an accounted (terminal) step.
    pub(crate) fn slot(&self, i: u32) -> &Slot {
        // SAFETY: callers only read slots of steps whose accounting they have
        // observed (successors after `deps` reached zero, results after
        // `done`); the slot is never written again.
        unsafe { &*self.slots[i as usize].0.get() }
    }

    pub(crate) fn step_state(&self, i: u32) -> u32 {
        split(self.state[i as usize].load(Ordering::Acquire)).1
    }

    fn output_if_succeeded(&self, i: u32) -> Option<&Value> {
        (self.step_state(i) == SUCCEEDED).then(|| &self.slot(i).output)
    }

    pub(crate) fn input_of(&self, step: u32, name: &str) -> Option<&Value> {
        let r = self.wf.inputs_of(step).iter().find(|r| &*r.name == name)?;
        self.output_if_succeeded(r.from)
    }

    pub(crate) fn inputs_of(&self, step: u32) -> Vec<(&str, &Value)> {
        self.wf.inputs_of(step).iter().filter_map(|r| self.output_if_succeeded(r.from).map(|v| (&*r.name, v))).collect()
    }

    pub(crate) fn group_of(&self, step: u32) -> Option<Arc<ChildGroup>> {
        self.groups.lock().iter().rev().find(|g| g.parent == step).cloned()
    }

    pub(crate) fn step_abandoned(&self, step: u32, attempt: u32, child: Option<(&ChildGroup, u32)>) -> bool {
        if self.stop.load(Ordering::Acquire) != STOP_NONE {
            return true;
        }
        match child {
            None => self.state[step as usize].load(Ordering::Acquire) != word(attempt, RUNNING),
            Some((g, k)) => split(g.state[k as usize].load(Ordering::Acquire)).1 != RUNNING,
        }
    }

    /// Runs (or resolves) step `i`, whose job this thread holds.
    fn step(&self, i: u32, slot_held: bool) -> (Next, Option<Arc<RunInner>>) {
        let iu = i as usize;
        let wf = &*self.wf;
        let def = &wf.steps[iu];
        let (att, st) = split(self.state[iu].load(Ordering::Acquire));
        let slots = def.system.map(|s| &*wf.systems[s as usize].slots);
        let give_back = |held: bool| {
            if held && let Some(w) = slots.and_then(|s| s.release()) {
                self.env.start_waiter(w);
            }
        };
        match st {
            PENDING => {}
            CANCELLED_Q | TIMED_OUT_Q => {
                give_back(slot_held);
                let to = if st == CANCELLED_Q { CANCELLED } else { TIMED_OUT };
                return (self.resolve(i, att, st, to, None, true), None);
            }
            _ => {
                debug_assert!(false, "a job for step {i} in state {st}");
                give_back(slot_held);
                return (Next::Idle, None);
            }
        }
        let deps = self.deps[iu].load(Ordering::Acquire);
        if deps & FAILED_BIT != 0 {
            give_back(slot_held);
            return (self.resolve(i, att, PENDING, CANCELLED, None, true), None);
        }
        let skipped = ((deps >> 32) & 0x7fff_ffff) as u32;
        if skipped > 0 && skipped == wf.pred_count[iu] {
            give_back(slot_held);
            return (self.resolve(i, att, PENDING, SKIPPED, None, true), None);
        }
        let stop = self.stop.load(Ordering::Acquire);
        if stop != STOP_NONE {
            give_back(slot_held);
            let to = if stop == STOP_DEADLINE { TIMED_OUT } else { CANCELLED };
            return (self.resolve(i, att, PENDING, to, None, true), None);
        }
        let mut held = slot_held;
        if !held && let Some(s) = slots.filter(|s| s.limited()) {
            match s.acquire(|| Waiter { run: self.arc(), step: i }) {
                Acquire::Parked => return (Next::Idle, None),
                Acquire::Granted => held = true,
            }
        }
        if let Some(cond) = &def.condition {
            let holds = match &**cond {
                CondDef::Truthy(p) => Ok(self.output_if_succeeded(*p).is_some_and(Value::is_truthy)),
                CondDef::Predicate(f) => {
                    let ctx = StepContext::new(self, i, att, None);
                    unwind::run_handler(|| Ok(f(&ctx))).map_err(|e| match e {
                        HandlerError::Panicked { message } => {
                            HandlerError::Panicked { message: format!("condition: {message}") }
                        }
                        other => other,
                    })
                }
            };
            match holds {
                Ok(true) => {}
                Ok(false) => {
                    give_back(held);
                    return (self.resolve(i, att, PENDING, SKIPPED, None, true), None);
                }
                Err(e) => {
                    give_back(held);
                    return (self.resolve(i, att, PENDING, FAILED, Some(e), true), None);
                }
            }
        }
        if self.state[iu]
            .compare_exchange(word(att, PENDING), word(att, RUNNING), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Cancelled or timed out while we looked: it is `_Q` now, and this
            // job still owns its bookkeeping.
            give_back(held);
            return self.step(i, false);
        }

        let guard = (def.timeout_ns > 0 || self.deadline.is_some()).then(|| self.arc());
        let timeout_id = (def.timeout_ns > 0).then(|| {
            let r = self.arc();
            let at = Instant::now() + Duration::from_nanos(def.timeout_ns);
            self.env.timer.schedule(at, move || r.on_step_timeout(i, att))
        });
        let start = self.raw_now();
        let ctx = StepContext::new(self, i, att, None);
        let result = unwind::run_handler(|| (def.f)(&ctx));
        let children = ctx.children.take();
        drop(ctx);
        if let Some(Some(id)) = timeout_id {
            self.env.timer.cancel(id);
        }
        give_back(held);
        let end = self.raw_now();
        let worker = self.env.pool.current_worker().map_or(NO_WORKER, |w| w as u32);
        let queued = if self.timing { start.saturating_sub(self.ready_at[iu].load(Ordering::Relaxed)) } else { 0 };

        let next = match result {
            Ok(v) => match children.filter(|c| !c.is_empty()) {
                Some(children) => {
                    if self.cas(i, att, RUNNING, FANNED) {
                        self.fan_out(i, att, children, end);
                    }
                    Next::Idle
                }
                None => {
                    if self.cas(i, att, RUNNING, SUCCEEDED) {
                        // SAFETY: we won the terminal transition just now.
                        let slot = unsafe { self.slot_mut(i) };
                        *slot = Slot { output: v, error: None, queued, ran: end.saturating_sub(start), worker, attempts: att };
                        self.account(i, Release::Ok, end, true)
                    } else {
                        Next::Idle
                    }
                }
            },
            Err(e) => {
                let retry = def.retry.as_deref().filter(|r| att <= r.max_retries);
                match retry {
                    Some(r) if self.stop.load(Ordering::Acquire) == STOP_NONE => {
                        if self.cas(i, att, RUNNING, RETRY_WAIT) {
                            let run = self.arc();
                            let at = Instant::now() + r.delay(att + 1);
                            if self.env.timer.schedule(at, move || run.retry(i, att)).is_none() {
                                // The timer is shut down: the orchestrator is closing.
                                let _ = self.arc().stop_step(i, STOP_CLOSE);
                            }
                        }
                        Next::Idle
                    }
                    _ => {
                        if self.cas(i, att, RUNNING, FAILED) {
                            // SAFETY: we won the terminal transition just now.
                            let slot = unsafe { self.slot_mut(i) };
                            *slot = Slot { output: Value::Null, error: Some(Box::new(e)), queued, ran: end.saturating_sub(start), worker, attempts: att };
                            self.account(i, Release::Failed, end, true)
                        } else {
                            Next::Idle
                        }
                    }
                }
            }
        };
        (next, guard)
    }

    fn cas(&self, i: u32, att: u32, from: u32, to: u32) -> bool {
        self.state[i as usize]
            .compare_exchange(word(att, from), word(att, to), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Moves unstarted step `i` from `from` to terminal `to` and accounts it.
    /// If the CAS loses (a concurrent `_Q` mark), re-dispatches through
    /// [`RunInner::step`] semantics by resolving the `_Q` state instead.
    fn resolve(&self, i: u32, att: u32, from: u32, to: u32, error: Option<HandlerError>, inline: bool) -> Next {
        if !self.cas(i, att, from, to) {
            let (att2, st) = split(self.state[i as usize].load(Ordering::Acquire));
            return match st {
                CANCELLED_Q => self.resolve(i, att2, CANCELLED_Q, CANCELLED, None, inline),
                TIMED_OUT_Q => self.resolve(i, att2, TIMED_OUT_Q, TIMED_OUT, None, inline),
                _ => Next::Idle,
            };
        }
        let now = self.raw_now();
        // SAFETY: we won the terminal transition just now.
        let slot = unsafe { self.slot_mut(i) };
        slot.error = error.map(Box::new);
        slot.attempts = att - 1;
        if self.timing {
            slot.queued = now.saturating_sub(self.ready_at[i as usize].load(Ordering::Relaxed));
        }
        self.account(i, release_of(to), now, inline)
    }

    /// Releases the successors of terminal step `i` and counts it done.
    fn account(&self, i: u32, kind: Release, end: u64, inline: bool) -> Next {
        let wf = &*self.wf;
        let succ = wf.succ_of(i);
        let mut ready: SmallVec<[u32; 8]> = SmallVec::new();
        if !succ.is_empty() {
            if kind == Release::Failed {
                for &s in succ {
                    self.deps[s as usize].fetch_or(FAILED_BIT, Ordering::Relaxed);
                }
            }
            for &s in succ {
                let old = match kind {
                    Release::Skipped => self.deps[s as usize].fetch_add(SKIP_ONE - 1, Ordering::AcqRel),
                    _ => self.deps[s as usize].fetch_sub(1, Ordering::AcqRel),
                };
                if old as u32 == 1 {
                    ready.push(s);
                }
            }
            if self.timing {
                for &s in &ready {
                    self.ready_at[s as usize].store(end, Ordering::Relaxed);
                }
            }
        }
        let next = self.dispatch(&mut ready, inline);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            debug_assert!(next.is_none(), "the last step cannot release another");
            return Next::Last;
        }
        match next {
            Some(n) => Next::Run(n),
            None => Next::Idle,
        }
    }

    /// Queues ready steps best first; returns one to run inline if allowed.
    fn dispatch(&self, ready: &mut SmallVec<[u32; 8]>, inline: bool) -> Option<u32> {
        if ready.is_empty() {
            return None;
        }
        let wf = &*self.wf;
        if ready.len() > 1 {
            ready.sort_by_key(|&s| self.plan.key(wf, s));
        }
        let pool = &self.env.pool;
        let exec = self as *const RunInner as *const ();
        // SAFETY (for every job below): the step is unaccounted, so the run
        // outlives the job.
        let job = |s: u32| unsafe { Job::raw(exec_step, exec, s) };
        if pool.on_worker() {
            let keep = (inline && wf.steps[ready[0] as usize].class as usize <= pool.local_best_class()).then(|| ready[0]);
            let rest = if keep.is_some() { &ready[1..] } else { &ready[..] };
            pool.spawn_batch(rest.iter().rev().map(|&s| (job(s), wf.steps[s as usize].class as usize)));
            keep
        } else {
            pool.spawn_batch(ready.iter().map(|&s| (job(s), wf.steps[s as usize].class as usize)));
            None
        }
    }

    /// Timer callback: attempt `att` of step `i` overran its timeout.
    fn on_step_timeout(self: &Arc<Self>, i: u32, att: u32) {
        if !self.cas(i, att, RUNNING, TIMED_OUT) {
            return;
        }
        let def = &self.wf.steps[i as usize];
        let now = self.raw_now();
        // SAFETY: we won the terminal transition just now.
        let slot = unsafe { self.slot_mut(i) };
        slot.error = Some(Box::new(HandlerError::TimedOut { after: Duration::from_nanos(def.timeout_ns) }));
        slot.attempts = att;
        slot.ran = if self.timing { self.env.clock.raw().saturating_sub(now) } else { 0 };
        if let Next::Last = self.account(i, Release::Failed, now, false) {
            self.finish_arc();
        }
    }

    /// Timer callback: retry step `i` after failed attempt `att`.
    fn retry(self: &Arc<Self>, i: u32, att: u32) {
        if !self.cas_word(i, word(att, RETRY_WAIT), word(att + 1, PENDING)) {
            return; // cancelled or timed out meanwhile (and accounted)
        }
        if self.timing {
            self.ready_at[i as usize].store(self.env.clock.raw(), Ordering::Relaxed);
        }
        // SAFETY: step `i` is pending again and unaccounted.
        let job = unsafe { Job::raw(exec_step, Arc::as_ptr(self) as *const (), i) };
        self.env.pool.spawn(job, self.wf.steps[i as usize].class as usize);
    }

    fn cas_word(&self, i: u32, from: u32, to: u32) -> bool {
        self.state[i as usize].compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Stops the run: `cancel()`, close, or the deadline. Unstarted steps
    /// stop at once; running ones are told through `is_cancelled()` (and, for
    /// the deadline, abandoned). Returns whether this call stopped it.
    pub(crate) fn stop_all(self: &Arc<Self>, kind: u8) -> bool {
        if self.done.load(Ordering::Acquire)
            || self.stop.compare_exchange(STOP_NONE, kind, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return false;
        }
        for i in 0..self.wf.steps.len() as u32 {
            if self.stop_step(i, kind) {
                return true;
            }
        }
        let groups: Vec<Arc<ChildGroup>> = self.groups.lock().clone();
        for g in groups {
            for k in 0..g.defs.len() {
                if self.stop_child(&g, k as u32, kind) {
                    return true;
                }
            }
        }
        true
    }

    /// Stops one step; returns true if that finished the run.
    fn stop_step(self: &Arc<Self>, i: u32, kind: u8) -> bool {
        let deadline = kind == STOP_DEADLINE;
        let (queued, terminal) = if deadline { (TIMED_OUT_Q, TIMED_OUT) } else { (CANCELLED_Q, CANCELLED) };
        loop {
            let (att, st) = split(self.state[i as usize].load(Ordering::Acquire));
            let (to, account) = match st {
                PENDING => (queued, false),
                RETRY_WAIT => (terminal, true),
                RUNNING | FANNED if deadline => (TIMED_OUT, true),
                _ => return false,
            };
            if !self.cas(i, att, st, to) {
                continue;
            }
            if !account {
                return false;
            }
            let now = self.raw_now();
            // SAFETY: we won the terminal transition just now.
            let slot = unsafe { self.slot_mut(i) };
            slot.attempts = att;
            if deadline {
                slot.error = Some(Box::new(HandlerError::failed("run deadline passed")));
            }
            return match self.account(i, Release::Failed, now, false) {
                Next::Last => {
                    self.finish_arc();
                    true
                }
                _ => false,
            };
        }
    }

    fn stop_child(self: &Arc<Self>, g: &Arc<ChildGroup>, k: u32, kind: u8) -> bool {
        let deadline = kind == STOP_DEADLINE;
        loop {
            let (att, st) = split(g.state[k as usize].load(Ordering::Acquire));
            let to = match st {
                PENDING if deadline => TIMED_OUT_Q,
                PENDING => CANCELLED_Q,
                RUNNING if deadline => TIMED_OUT,
                _ => return false,
            };
            if g.state[k as usize].compare_exchange(word(att, st), word(att, to), Ordering::AcqRel, Ordering::Acquire).is_err() {
                continue;
            }
            if to != TIMED_OUT {
                return false; // the child's job resolves it
            }
            // SAFETY: we won the child's terminal transition.
            let slot = unsafe { &mut *g.slots[k as usize].0.get() };
            slot.error = Some(Box::new(HandlerError::failed("run deadline passed")));
            slot.attempts = 1;
            return self.child_done(g);
        }
    }

    /// Emits the children of step `i` (now FANNED).
    fn fan_out(&self, i: u32, att: u32, children: Vec<Child>, now: u64) {
        let n = children.len();
        self.accepted.fetch_add(n, Ordering::Relaxed);
        self.remaining.fetch_add(n, Ordering::AcqRel);
        let group = Arc::new(ChildGroup {
            parent: i,
            attempt: att,
            state: (0..n).map(|_| AtomicU32::new(word(1, PENDING))).collect(),
            slots: (0..n).map(|_| SlotCell::default()).collect(),
            defs: children,
            ready_at: now,
            left: AtomicUsize::new(n),
        });
        self.groups.lock().push(group.clone());
        let class = self.wf.steps[i as usize].class as usize;
        let run = self.arc();
        self.env.pool.spawn_batch((0..n as u32).map(|k| {
            let (run, group) = (run.clone(), group.clone());
            (Job::boxed(move || run.run_child(&group, k)), class)
        }));
    }

    fn run_child(self: &Arc<Self>, g: &Arc<ChildGroup>, k: u32) {
        let ku = k as usize;
        let (att, st) = split(g.state[ku].load(Ordering::Acquire));
        let stop = self.stop.load(Ordering::Acquire);
        let early = match st {
            CANCELLED_Q => Some((CANCELLED_Q, CANCELLED)),
            TIMED_OUT_Q => Some((TIMED_OUT_Q, TIMED_OUT)),
            PENDING if stop == STOP_DEADLINE => Some((PENDING, TIMED_OUT)),
            PENDING if stop != STOP_NONE => Some((PENDING, CANCELLED)),
            PENDING => None,
            _ => return,
        };
        let cas = |from: u32, to: u32| {
            g.state[ku].compare_exchange(word(att, from), word(att, to), Ordering::AcqRel, Ordering::Acquire).is_ok()
        };
        if let Some((from, to)) = early {
            if cas(from, to) {
                self.child_done(g);
            } else {
                self.run_child(g, k);
            }
            return;
        }
        if !cas(PENDING, RUNNING) {
            self.run_child(g, k);
            return;
        }
        let def = &g.defs[ku];
        let start = self.raw_now();
        let ctx = StepContext::new(self, g.parent, att, Some((g, k)));
        let result = unwind::run_handler(|| (def.f)(&ctx));
        drop(ctx);
        let end = self.raw_now();
        let (to, output, error) = match result {
            Ok(v) => (SUCCEEDED, v, None),
            Err(e) => (FAILED, Value::Null, Some(Box::new(e))),
        };
        if !cas(RUNNING, to) {
            return; // abandoned by the deadline
        }
        // SAFETY: we won the child's terminal transition.
        let slot = unsafe { &mut *g.slots[ku].0.get() };
        *slot = Slot {
            output,
            error,
            queued: start.saturating_sub(g.ready_at),
            ran: end.saturating_sub(start),
            worker: self.env.pool.current_worker().map_or(NO_WORKER, |w| w as u32),
            attempts: 1,
        };
        self.child_done(g);
    }

    /// Counts a child done; the last one completes the parent. Returns true if
    /// that finished the run.
    fn child_done(self: &Arc<Self>, g: &Arc<ChildGroup>) -> bool {
        if g.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish_group(g);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish_arc();
            return true;
        }
        false
    }

    fn finish_group(self: &Arc<Self>, g: &Arc<ChildGroup>) {
        let i = g.parent;
        let mut outputs = Vec::with_capacity(g.defs.len());
        let mut failed = 0usize;
        let mut first_error: Option<String> = None;
        for k in 0..g.defs.len() {
            let st = split(g.state[k].load(Ordering::Acquire)).1;
            // SAFETY: every child is terminal and accounted (`left` reached 0
            // with AcqRel), so nobody writes these slots any more.
            let slot = unsafe { &mut *g.slots[k].0.get() };
            if st == SUCCEEDED {
                outputs.push(std::mem::take(&mut slot.output));
            } else {
                failed += 1;
                outputs.push(Value::Null);
                if first_error.is_none() {
                    first_error = Some(match &slot.error {
                        Some(e) => format!("{}[{k}]: {e}", self.wf.steps[i as usize].name),
                        None => format!("{}[{k}] was {}", self.wf.steps[i as usize].name, super::result::state_name(st)),
                    });
                }
            }
        }
        let to = if failed == 0 { SUCCEEDED } else { FAILED };
        if !self.cas(i, g.attempt, FANNED, to) {
            return; // abandoned by the deadline and accounted there
        }
        let now = self.raw_now();
        // SAFETY: we won the parent's terminal transition.
        let slot = unsafe { self.slot_mut(i) };
        if failed == 0 {
            slot.output = Value::List(outputs);
        } else {
            slot.error = Some(Box::new(HandlerError::failed(format!(
                "{failed} of {} children failed; first: {}",
                g.defs.len(),
                first_error.unwrap_or_default()
            ))));
        }
        match self.account(i, release_of(to), now, false) {
            Next::Last => unreachable!("the calling child is not counted yet"),
            Next::Run(_) | Next::Idle => {}
        }
    }

    /// Finishes the run from a thread that holds a strong reference.
    fn finish_arc(self: &Arc<Self>) {
        self.settle();
        // SAFETY: the caller accounted the last step, so it owns the execution
        // reference created by `Arc::into_raw` in `start`; its own strong
        // reference keeps the allocation alive across this drop.
        unsafe { drop(Arc::from_raw(Arc::as_ptr(self))) };
    }

    /// Finishes the run through the raw pointer of a job.
    ///
    /// # Safety
    /// The caller accounted the last step (owns the execution reference) and
    /// holds no borrow of the run.
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
    fn settle(&self) {
        self.elapsed_ns.store(self.started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Some(id) = self.deadline_timer.lock().take() {
            self.env.timer.cancel(id);
        }
        if self.timing {
            self.learn();
        }
        self.env.runs.lock().remove(&self.id);
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

    /// Folds the measured durations of succeeded steps into the estimates.
    fn learn(&self) {
        let alpha = self.env.estimates.alpha();
        let mut shared: Vec<(std::sync::Arc<str>, u64)> = Vec::new();
        let mut changed = false;
        for (i, def) in self.wf.steps.iter().enumerate() {
            if self.step_state(i as u32) != SUCCEEDED {
                continue;
            }
            let ns = self.env.clock.delta_as_nanos(0, self.slot(i as u32).ran);
            let e = &self.wf.est[i];
            let old = e.load(Ordering::Relaxed) as f64;
            e.store((old + alpha * (ns as f64 - old)).max(0.0) as u64, Ordering::Relaxed);
            changed = true;
            if let Some(k) = &def.est_key {
                shared.push((k.clone(), ns));
            }
        }
        if changed {
            self.wf.est_version.fetch_add(1, Ordering::Release);
        }
        if !shared.is_empty() {
            self.env.estimates.record(shared);
        }
    }

    /// Converts raw clock ticks to a duration.
    pub(crate) fn ticks(&self, raw: u64) -> Duration {
        if self.timing { Duration::from_nanos(self.env.clock.delta_as_nanos(0, raw)) } else { Duration::ZERO }
    }

    /// Waits until the run is done or `deadline` passes.
    pub(crate) fn wait_done(&self, deadline: Option<Instant>) -> bool {
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        // A short spin catches short runs without a sleep/wake round trip.
        let spin_until = Instant::now() + Duration::from_micros(30);
        let mut k = 0u32;
        while !self.done.load(Ordering::Acquire) {
            k += 1;
            if k % 64 == 0 {
                let now = Instant::now();
                if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                    break;
                }
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        let pool = &self.env.pool;
        if pool.on_worker() {
            // Help instead of blocking a worker the run may need.
            loop {
                if self.done.load(Ordering::Acquire) {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                if !pool.help_once() {
                    let mut g = self.waiters.lock();
                    if !self.done.load(Ordering::Acquire) {
                        let _ = self.cv.wait_for(&mut g, Duration::from_micros(200));
                    }
                }
            }
        }
        let mut g = self.waiters.lock();
        while !self.done.load(Ordering::Acquire) {
            match deadline {
                Some(d) => {
                    if self.cv.wait_until(&mut g, d).timed_out() {
                        return self.done.load(Ordering::Acquire);
                    }
                }
                None => self.cv.wait(&mut g),
            }
        }
        true
    }

    /// Registers a waker; returns true if the run is already done.
    pub(crate) fn register_waker(&self, waker: &Waker) -> bool {
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        let mut w = self.waiters.lock();
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        if !w.iter().any(|x| x.will_wake(waker)) {
            w.push(waker.clone());
        }
        false
    }

    /// Child groups, for results.
    pub(crate) fn child_groups(&self) -> Vec<Arc<ChildGroup>> {
        self.groups.lock().clone()
    }

    /// Raw start tick (for converting absolute ticks).
    #[allow(dead_code)]
    pub(crate) fn start_raw(&self) -> u64 {
        self.start_raw
    }

    /// The op function of a child (for bindings' history).
    #[allow(dead_code)]
    pub(crate) fn child_fn(g: &ChildGroup, k: u32) -> &OpFn {
        &g.defs[k as usize].f
    }
}

impl Drop for RunInner {
    fn drop(&mut self) {
        // A run dropped while steps are unaccounted would mean a leaked
        // execution reference was freed: impossible by construction.
        debug_assert!(self.done.load(Ordering::Relaxed) || self.remaining.load(Ordering::Relaxed) == 0);
    }
}
