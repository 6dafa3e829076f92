//! Cross-system workflows: a DAG of steps, each a system operation or a plain
//! function, run by [`crate::Orchestrator::coordinate_systems`] on the
//! work-stealing pool.
//!
//! * [`StepSpec`] / [`WorkflowBuilder`] describe a workflow; `build` validates
//!   it (unknown steps, systems or operations, duplicate names, cycles — each
//!   error names the step) and compiles it into an immutable [`Workflow`] that
//!   can be run many times cheaply. Definitions can also come from JSON/TOML
//!   ([`def`]).
//! * [`run`] executes one run: atomic dependency counters, priority classes,
//!   critical-path ordering from learned durations, retries with back-off,
//!   timeouts, deadlines, cancellation, conditional steps and dynamic fan-out.
//! * [`result`] is what callers hold: [`RunHandle`] (wait, poll as a `Future`,
//!   cancel) and [`RunResult`] (state, outputs, per-step history).
//!
//! A built workflow keeps its compiled form: later changes to a system's
//! operations do not affect it (build it again to pick them up).

mod account;
mod buffers;
mod build;
mod context;
mod control;
mod def;
mod deferred;
mod env;
mod fanout;
mod fold;
pub(crate) mod history;
pub(crate) mod limits;
#[cfg(all(test, loom))]
mod loom_deps;
#[cfg(all(test, loom))]
mod loom_steps;
pub(crate) mod plan;
mod resources;
mod result;
pub(crate) mod run;
#[cfg(test)]
mod test;
mod wait;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc as StdArc;
use std::time::Duration;

use petgraph::stable_graph::NodeIndex;
use thiserror::Error;

use crate::error::{ErrorKind, PsoError};
use crate::model::{HandlerError, OpFn, Priority};
use crate::registry::RegistryError;
use crate::sync::{Arc, AtomicU64, Mutex, OnceLock};
use crate::value::Value;

pub use build::{StepId, WorkflowBuilder};
pub use context::{CancelToken, Child, StepContext};
pub use def::{StepDecl, WorkflowDecl};
pub use deferred::Completion;
pub(crate) use env::RunEnv;
pub use env::RunOptions;
pub(crate) use limits::SystemSlots;
pub use plan::{Estimate, SchedulingPolicy};
pub use result::{RunHandle, RunProgress, RunResult, RunState, StepCounts, StepRecord, StepState};

/// The most retries a step may ask for (attempts are counted in 24 bits).
pub const MAX_RETRIES: u32 = (1 << 24) - 2;

/// Retries of a failing step: up to `max_retries` more attempts, waiting
/// `base * 2^(n-1)` (capped at `max`) before attempt `n + 1`, with jitter
/// ("equal jitter": half the delay fixed, half random) when `jitter` is set.
/// Panics and errors are retried; timeouts are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Randomize delays to avoid retry storms.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 0,
            base: Duration::from_millis(10),
            max: Duration::from_secs(10),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next_attempt` (2 for the first retry).
    pub fn delay(&self, next_attempt: u32) -> Duration {
        let exp = next_attempt.saturating_sub(2).min(30);
        let d = self.base.saturating_mul(1u32 << exp).min(self.max);
        if self.jitter && !d.is_zero() {
            let half = d / 2;
            half + Duration::from_nanos(fastrand::u64(
                0..=half.as_nanos().min(u64::MAX as u128) as u64,
            ))
        } else {
            d
        }
    }
}

/// A predicate deciding whether a conditional step runs.
pub type ConditionFn = StdArc<dyn Fn(&StepContext<'_>) -> bool + Send + Sync>;

/// A predicate that can fail (the step then fails with its error).
pub type TryConditionFn =
    StdArc<dyn Fn(&StepContext<'_>) -> Result<bool, HandlerError> + Send + Sync>;

#[derive(Clone)]
enum Action {
    Op { system: String, op: String },
    Func(OpFn),
}

#[derive(Clone)]
enum Condition {
    Predicate(ConditionFn),
    TryPredicate(TryConditionFn),
    Truthy(String),
}

/// One step of a workflow, before it is built.
///
/// # Examples
/// ```
/// use pso_core::{StepSpec, Value};
/// let parse = StepSpec::op("parse", "PAT", "parse")
///     .input("raw", "fetch")
///     .retries(2)
///     .timeout(std::time::Duration::from_secs(5));
/// let report = StepSpec::func("report", |ctx| Ok(Value::from(ctx.input("tree").is_some())))
///     .input("tree", "parse");
/// # let _ = (parse, report);
/// ```
#[derive(Clone)]
pub struct StepSpec {
    name: String,
    action: Action,
    inputs: Vec<(String, String)>,
    after: Vec<String>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    priority: Option<Priority>,
    condition: Option<Condition>,
}

impl fmt::Debug for StepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StepSpec");
        d.field("name", &self.name);
        if let Action::Op { system, op } = &self.action {
            d.field("system", system).field("op", op);
        }
        d.field("inputs", &self.inputs)
            .field("after", &self.after)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl StepSpec {
    /// A step that runs operation `op` of `system`.
    pub fn op(
        name: impl Into<String>,
        system: impl Into<String>,
        op: impl Into<String>,
    ) -> StepSpec {
        Self::new(
            name.into(),
            Action::Op {
                system: system.into(),
                op: op.into(),
            },
        )
    }

    /// A step that runs a function.
    pub fn func<F>(name: impl Into<String>, f: F) -> StepSpec
    where
        F: Fn(&StepContext<'_>) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        Self::new(name.into(), Action::Func(StdArc::new(f)))
    }

    /// A step that runs a shared function (bindings use this).
    pub fn shared(name: impl Into<String>, f: OpFn) -> StepSpec {
        Self::new(name.into(), Action::Func(f))
    }

    fn new(name: String, action: Action) -> StepSpec {
        StepSpec {
            name,
            action,
            inputs: Vec::new(),
            after: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: None,
            priority: None,
            condition: None,
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wires the output of step `from` to this step's input `name` (and runs
    /// this step after it).
    pub fn input(mut self, name: impl Into<String>, from: impl Into<String>) -> Self {
        self.inputs.push((name.into(), from.into()));
        self
    }

    /// Runs this step after step `other` (ordering only).
    pub fn after(mut self, other: impl Into<String>) -> Self {
        self.after.push(other.into());
        self
    }

    /// Retries up to `n` times with the default back-off.
    pub fn retries(mut self, n: u32) -> Self {
        self.retry.max_retries = n;
        self
    }

    /// Sets the whole retry policy.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Fails the step as `TimedOut` if one attempt runs longer than this. The
    /// handler is told through [`StepContext::is_cancelled`]; its late result
    /// is ignored.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the priority class (default: the system's, or normal for a function).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Runs the step only if `predicate` holds when it is ready (it can read
    /// the step's inputs); otherwise the step is `Skipped`, and so is every
    /// step whose predecessors were all skipped.
    pub fn when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&StepContext<'_>) -> bool + Send + Sync + 'static,
    {
        self.condition = Some(Condition::Predicate(StdArc::new(predicate)));
        self
    }

    /// Runs the step only if step `other`'s output is truthy (see
    /// [`Value::is_truthy`]); implies `after(other)`.
    pub fn when_truthy(mut self, other: impl Into<String>) -> Self {
        self.condition = Some(Condition::Truthy(other.into()));
        self
    }

    /// Sets a shared predicate (bindings use this).
    pub fn when_shared(mut self, predicate: ConditionFn) -> Self {
        self.condition = Some(Condition::Predicate(predicate));
        self
    }

    /// [`StepSpec::when`] with a predicate that can fail: an `Err` fails the
    /// step (not retried) and cancels what depends on it.
    pub fn when_try<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&StepContext<'_>) -> Result<bool, HandlerError> + Send + Sync + 'static,
    {
        self.condition = Some(Condition::TryPredicate(StdArc::new(predicate)));
        self
    }

    /// Sets a shared fallible predicate (bindings use this).
    pub fn when_try_shared(mut self, predicate: TryConditionFn) -> Self {
        self.condition = Some(Condition::TryPredicate(predicate));
        self
    }
}

/// Why a workflow could not be built or started.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkflowError {
    /// Two steps have the same name.
    #[error("workflow '{workflow}': step '{step}' is defined twice")]
    DuplicateStep {
        /// The workflow.
        workflow: String,
        /// The duplicated name.
        step: String,
    },
    /// A step refers to a step that does not exist.
    #[error("workflow '{workflow}': step '{step}' refers to unknown step '{missing}'")]
    UnknownStep {
        /// The workflow.
        workflow: String,
        /// The referring step.
        step: String,
        /// The missing name.
        missing: String,
    },
    /// A step names a system that is not registered.
    #[error("workflow '{workflow}': step '{step}' uses unknown system '{system}'")]
    UnknownSystem {
        /// The workflow.
        workflow: String,
        /// The step.
        step: String,
        /// The missing system.
        system: String,
    },
    /// A step names an operation its system does not have.
    #[error("workflow '{workflow}': step '{step}' uses unknown operation '{op}' of system '{system}' (it has: {})", if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    UnknownOperation {
        /// The workflow.
        workflow: String,
        /// The step.
        step: String,
        /// The system.
        system: String,
        /// The missing operation.
        op: String,
        /// The operations the system does have.
        available: Vec<String>,
    },
    /// The steps' dependencies form a cycle.
    #[error("workflow '{workflow}': dependency cycle {}", path.join(" -> "))]
    Cycle {
        /// The workflow.
        workflow: String,
        /// Step names on the cycle; the first is repeated at the end.
        path: Vec<String>,
    },
    /// Something else is malformed (an empty name, a file that does not parse).
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The definition file could not be parsed.
    #[error("{source_name}:{line}:{column}: {message}")]
    Parse {
        /// File name or `<string>`.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A system the workflow uses is not Active.
    #[error(
        "cannot run workflow '{workflow}': step '{step}' uses system '{system}', which is {state} (activate it first)"
    )]
    NotActive {
        /// The workflow.
        workflow: String,
        /// The first step that uses it.
        step: String,
        /// The system.
        system: String,
        /// Its state.
        state: String,
    },
    /// The workflow was built by another orchestrator.
    #[error("workflow '{workflow}' was built for another orchestrator")]
    ForeignWorkflow {
        /// The workflow.
        workflow: String,
    },
    /// `run_minimal` could not activate a system the workflow uses.
    #[error("cannot run workflow '{workflow}': activating '{system}' failed: {message}")]
    ActivationFailed {
        /// The workflow.
        workflow: String,
        /// The system.
        system: String,
        /// Why (the activation error).
        message: String,
    },
    /// A workflow file could not be read.
    #[error("cannot read workflow file {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// The orchestrator is closed.
    #[error("the orchestrator is closed")]
    Closed,
}

impl PsoError for WorkflowError {
    fn kind(&self) -> ErrorKind {
        match self {
            WorkflowError::DuplicateStep { .. } => ErrorKind::AlreadyExists,
            WorkflowError::UnknownStep { .. }
            | WorkflowError::UnknownSystem { .. }
            | WorkflowError::UnknownOperation { .. } => ErrorKind::NotFound,
            WorkflowError::Cycle { .. } => ErrorKind::Cycle,
            WorkflowError::Invalid { .. } | WorkflowError::ForeignWorkflow { .. } => {
                ErrorKind::InvalidArgument
            }
            WorkflowError::Parse { .. } => ErrorKind::Parse,
            WorkflowError::NotActive { .. } => ErrorKind::NotActive,
            WorkflowError::Io { .. } => ErrorKind::Io,
            WorkflowError::ActivationFailed { .. } => ErrorKind::HandlerFailed,
            WorkflowError::Closed => ErrorKind::Closed,
        }
    }
}

impl From<RegistryError> for WorkflowError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Closed => WorkflowError::Closed,
            other => WorkflowError::Invalid {
                message: other.to_string(),
            },
        }
    }
}

/// A named input of a step: the output of step `from`.
pub(crate) struct InputRef {
    pub(crate) name: StdArc<str>,
    pub(crate) from: u32,
}

pub(crate) enum CondDef {
    Predicate(ConditionFn),
    TryPredicate(TryConditionFn),
    Truthy(u32),
}

/// A system used by a workflow.
pub(crate) struct SystemRef {
    pub(crate) name: StdArc<str>,
    pub(crate) idx: NodeIndex,
    pub(crate) slots: StdArc<SystemSlots>,
    pub(crate) first_step: String,
}

/// The hot part of a compiled step: what running it reads (24 bytes).
pub(crate) struct StepDef {
    pub(crate) f: OpFn,
    /// Index into `WorkflowInner::systems`, or [`NO_INDEX`].
    pub(crate) system_ix: u32,
    pub(crate) class: u8,
    /// `HAS_TIMEOUT | HAS_RETRY | HAS_CONDITION`: whether to look at [`StepMeta`].
    pub(crate) flags: u8,
}

/// "None" for the `u32` indices of compiled steps.
pub(crate) const NO_INDEX: u32 = u32::MAX;

impl StepDef {
    /// The index of the step's system, if it is a system operation.
    #[inline]
    pub(crate) fn system(&self) -> Option<u32> {
        (self.system_ix != NO_INDEX).then_some(self.system_ix)
    }
}

pub(crate) const HAS_TIMEOUT: u8 = 1;
pub(crate) const HAS_RETRY: u8 = 2;
pub(crate) const HAS_CONDITION: u8 = 4;

/// The cold part of a compiled named step; anonymous tasks have none.
pub(crate) struct StepMeta {
    pub(crate) name: StdArc<str>,
    /// The step's index.
    pub(crate) step: u32,
    /// Index into `WorkflowInner::ops`, or [`NO_INDEX`].
    pub(crate) op: u32,
    /// 0 = no timeout.
    pub(crate) timeout_ns: u64,
    pub(crate) retry: Option<Box<RetryPolicy>>,
    pub(crate) condition: Option<Box<CondDef>>,
}

/// A system operation used by a workflow.
pub(crate) struct OpRef {
    pub(crate) name: StdArc<str>,
    pub(crate) system: StdArc<str>,
    /// `system.op`, the key of the shared duration estimate.
    pub(crate) key: StdArc<str>,
}

/// The compiled, immutable form of a workflow (plus learned estimates).
pub(crate) struct WorkflowInner {
    pub(crate) name: StdArc<str>,
    pub(crate) orch_id: u64,
    pub(crate) steps: Box<[StepDef]>,
    /// Metadata of named steps.
    pub(crate) meta: Box<[StepMeta]>,
    /// Per step: index into `meta`, or [`NO_INDEX`] for an anonymous task.
    pub(crate) meta_ix: Box<[u32]>,
    pub(crate) succ_start: Box<[u32]>,
    pub(crate) succ: Box<[u32]>,
    pub(crate) pred_count: Box<[u32]>,
    /// CSR of named inputs; empty when no step has any.
    pub(crate) input_start: Box<[u32]>,
    pub(crate) inputs: Box<[InputRef]>,
    pub(crate) topo: Box<[u32]>,
    pub(crate) systems: Box<[SystemRef]>,
    pub(crate) ops: Box<[OpRef]>,
    /// Estimated duration of each step, ns (learned per run when timing is on).
    pub(crate) est: Box<[AtomicU64]>,
    pub(crate) est_version: AtomicU64,
    pub(crate) plan: Mutex<Option<Arc<plan::RunPlan>>>,
    /// Buffers of finished runs, for the next runs.
    pub(crate) buffers: buffers::BufferPool,
    /// The metrics series of each of `ops` (set on the first run that
    /// records metrics).
    pub(crate) metric_ops: OnceLock<Box<[u32]>>,
}

impl WorkflowInner {
    pub(crate) fn succ_of(&self, i: u32) -> &[u32] {
        &self.succ[self.succ_start[i as usize] as usize..self.succ_start[i as usize + 1] as usize]
    }

    /// The predecessors of step `i`. O(steps + edges): only for messages.
    pub(crate) fn preds_of(&self, i: u32) -> Vec<u32> {
        (0..self.steps.len() as u32)
            .filter(|&p| self.succ_of(p).contains(&i))
            .collect()
    }

    /// The metadata of step `i`, if it is a named step.
    #[inline]
    pub(crate) fn meta_of(&self, i: u32) -> Option<&StepMeta> {
        let m = self.meta_ix[i as usize];
        (m != NO_INDEX).then(|| &self.meta[m as usize])
    }

    pub(crate) fn inputs_of(&self, i: u32) -> &[InputRef] {
        if self.input_start.is_empty() {
            return &[];
        }
        &self.inputs
            [self.input_start[i as usize] as usize..self.input_start[i as usize + 1] as usize]
    }

    pub(crate) fn has_inputs(&self, i: u32) -> bool {
        !self.inputs_of(i).is_empty()
    }

    pub(crate) fn step_system(&self, i: u32) -> Option<&str> {
        self.steps[i as usize]
            .system()
            .map(|s| &*self.systems[s as usize].name)
    }

    /// The metrics series of each operation (see `metric_ops`).
    pub(crate) fn metric_ops(&self, reg: &crate::metrics::Registry) -> &[u32] {
        self.metric_ops.get_or_init(|| {
            let mut table = reg.ops.lock();
            self.ops
                .iter()
                .map(|o| table.index_of(&o.key, &o.system))
                .collect()
        })
    }

    /// The metrics series of step `i`, given `metric_ops`: its operation's,
    /// or the function aggregate's.
    #[inline]
    pub(crate) fn metric_series(&self, i: usize, ops: &[u32]) -> u32 {
        match self.meta_ix[i] {
            NO_INDEX => 0,
            m => match self.meta[m as usize].op {
                NO_INDEX => 0,
                op => ops[op as usize],
            },
        }
    }

    pub(crate) fn step_op(&self, i: u32) -> Option<&OpRef> {
        let op = self.meta_of(i)?.op;
        (op != NO_INDEX).then(|| &self.ops[op as usize])
    }

    /// The step's name; anonymous tasks are `#index`.
    pub(crate) fn name_of(&self, i: u32) -> Cow<'_, str> {
        match self.meta_of(i) {
            Some(m) => Cow::Borrowed(&m.name),
            None => Cow::Owned(format!("#{i}")),
        }
    }

    /// The index of the step called `name` (`#index` for anonymous tasks).
    /// O(steps).
    pub(crate) fn index_of(&self, name: &str) -> Option<u32> {
        if let Some(m) = self.meta.iter().find(|m| &*m.name == name) {
            return Some(m.step);
        }
        let i: u32 = name.strip_prefix('#')?.parse().ok()?;
        ((i as usize) < self.steps.len() && self.meta_ix[i as usize] == NO_INDEX).then_some(i)
    }
}

/// A validated, compiled workflow; cheap to clone and to run many times.
#[derive(Clone)]
pub struct Workflow {
    pub(crate) inner: Arc<WorkflowInner>,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.inner.name)
            .field("steps", &self.inner.steps.len())
            .finish()
    }
}

impl Workflow {
    /// A builder for a workflow called `name`.
    pub fn builder(name: impl Into<String>) -> WorkflowBuilder {
        WorkflowBuilder::new(name)
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.inner.steps.len()
    }

    /// Whether it has no steps.
    pub fn is_empty(&self) -> bool {
        self.inner.steps.is_empty()
    }

    /// Step names in a topological order.
    pub fn step_names(&self) -> Vec<String> {
        self.inner
            .topo
            .iter()
            .map(|&i| self.inner.name_of(i).into_owned())
            .collect()
    }

    /// The systems the workflow's steps operate on.
    pub fn systems(&self) -> Vec<&str> {
        self.inner.systems.iter().map(|s| &*s.name).collect()
    }

    /// The current duration estimate of each step, by name.
    pub fn estimates(&self) -> Vec<(String, Duration)> {
        (0..self.inner.steps.len() as u32)
            .map(|i| {
                let ns = self.inner.est[i as usize].load(crate::sync::Ordering::Relaxed);
                (self.inner.name_of(i).into_owned(), Duration::from_nanos(ns))
            })
            .collect()
    }
}
