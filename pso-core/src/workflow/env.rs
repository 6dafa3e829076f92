//! What runs share: the [`RunOptions`] of one run, and the [`RunEnv`] of an
//! orchestrator (pool, timer, clock, estimates, live runs, policy).

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use super::history::History;
use super::limits::Waiter;
use super::plan::{Estimates, SchedulingPolicy};
use super::run::{RunInner, SLOT_HELD, STEP_MASK, exec_step};
use crate::allocator::{AllocConfig, Allocator};
use crate::metrics::Registry;
use crate::registry::Registry as Systems;
use crate::scheduler::{Job, Pool, Timer};
use crate::sync::{Arc, AtomicU8, AtomicU64, Mutex, Ordering, RwLock};
use crate::value::Value;

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's input (what root steps see as their input value).
    pub input: Value,
    /// Stop the whole run (as `TimedOut`) this long after it starts.
    pub deadline: Option<Duration>,
    /// Record per-step queue wait and run time and learn durations (default
    /// true). Off saves the clock reads.
    pub timing: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            input: Value::Null,
            deadline: None,
            timing: true,
        }
    }
}

impl RunOptions {
    /// Default options with this input.
    pub fn with_input(input: impl Into<Value>) -> Self {
        RunOptions {
            input: input.into(),
            ..Self::default()
        }
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
    /// For resolving fan-out children that name a system operation.
    pub(crate) registry: Arc<RwLock<Systems>>,
    /// Shared with the allocator (TTLs, grace periods, aging).
    pub(crate) timer: Arc<Timer>,
    /// The resource allocator (steps of systems with a step request use it).
    pub(crate) alloc: Allocator,
    pub(crate) clock: quanta::Clock,
    pub(crate) estimates: Estimates,
    pub(crate) runs: Mutex<HashMap<u64, Weak<RunInner>>>,
    pub(crate) next_run: AtomicU64,
    pub(crate) policy: AtomicU8,
    /// Recent runs (with timing on), for insights.
    pub(crate) history: History,
    /// The orchestrator's metrics (runs fold their steps in when they settle).
    pub(crate) metrics: Arc<Registry>,
}

impl std::fmt::Debug for RunEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEnv")
            .field("live_runs", &self.runs.lock().len())
            .finish_non_exhaustive()
    }
}

impl RunEnv {
    pub(crate) fn new(
        pool: Arc<Pool>,
        registry: Arc<RwLock<Systems>>,
        name: &str,
        alpha: f64,
        alloc: AllocConfig,
        metrics: Arc<Registry>,
    ) -> Self {
        let timer = Arc::new(Timer::new(name));
        RunEnv {
            alloc: Allocator::new(
                registry.clone(),
                timer.clone(),
                pool.clone(),
                alloc,
                metrics.usage.clone(),
            ),
            metrics,
            pool,
            registry,
            timer,
            clock: quanta::Clock::new(),
            estimates: Estimates::new(alpha),
            runs: Mutex::new(HashMap::new()),
            next_run: AtomicU64::new(1),
            policy: AtomicU8::new(0),
            history: History::default(),
        }
    }

    pub(crate) fn policy(&self) -> SchedulingPolicy {
        match self.policy.load(Ordering::Relaxed) {
            1 => SchedulingPolicy::Fifo,
            _ => SchedulingPolicy::CriticalPath,
        }
    }

    pub(crate) fn set_policy(&self, p: SchedulingPolicy) {
        self.policy.store(
            if p == SchedulingPolicy::Fifo { 1 } else { 0 },
            Ordering::Relaxed,
        );
    }

    /// Live runs (for cancelling them all when closing).
    pub(crate) fn live_runs(&self) -> Vec<Arc<RunInner>> {
        self.runs
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Starts a step that was handed a concurrency slot.
    pub(crate) fn start_waiter(&self, w: Waiter) {
        self.resume(&w.run, w.step | SLOT_HELD);
    }

    /// Queues the job of a parked step again; `arg` is the step with its
    /// `SLOT_HELD` / `LEASE_READY` bits.
    pub(crate) fn resume(&self, run: &Arc<RunInner>, arg: u32) {
        let class = run.wf.steps[(arg & STEP_MASK) as usize].class as usize;
        // SAFETY: the parked step holds a unit (whoever parked it owned it),
        // so the run's execution reference is alive until that job accounts it.
        let job = unsafe { Job::raw(exec_step, Arc::as_ptr(run) as *const (), arg) };
        self.pool.spawn(job, class);
    }
}
