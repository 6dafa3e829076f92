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

mod buffers;
mod context;
mod control;
mod def;
mod fanout;
mod limits;
mod plan;
mod result;
pub(crate) mod run;
#[cfg(test)]
mod test;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc as StdArc;
use std::time::Duration;

use petgraph::stable_graph::NodeIndex;
use thiserror::Error;

use crate::error::{ErrorKind, PsoError};
use crate::model::{HandlerError, OpFn, Priority};
use crate::registry::{Registry, RegistryError};
use crate::sync::{Arc, AtomicU64, Mutex};
use crate::value::Value;

pub use context::{CancelToken, Child, StepContext};
pub use def::{StepDecl, WorkflowDecl};
pub(crate) use limits::SystemSlots;
pub(crate) use plan::Estimates;
pub use plan::{Estimate, SchedulingPolicy};
pub use result::{RunHandle, RunProgress, RunResult, RunState, StepCounts, StepRecord, StepState};
pub(crate) use run::RunEnv;

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

#[derive(Clone)]
enum Action {
    Op { system: String, op: String },
    Func(OpFn),
}

#[derive(Clone)]
enum Condition {
    Predicate(ConditionFn),
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

/// Builds a [`Workflow`] from [`StepSpec`]s.
///
/// # Examples
/// ```
/// use pso_core::{Orchestrator, StepSpec, SystemSpec, Value, Workflow};
/// let orch = Orchestrator::new();
/// orch.register(SystemSpec::new("PDT").operation("collect", |_| Ok(Value::from(21))))?;
/// orch.activate_system("PDT")?;
/// let wf = Workflow::builder("double")
///     .step(StepSpec::op("collect", "PDT", "collect"))
///     .step(StepSpec::func("double", |ctx| Ok(Value::from(ctx.input("n").unwrap().as_int().unwrap() * 2)))
///         .input("n", "collect"))
///     .build(&orch)?;
/// let result = orch.coordinate_systems(&wf)?.wait();
/// assert!(result.is_success());
/// assert_eq!(result.output("double"), Some(&Value::from(42)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct WorkflowBuilder {
    name: String,
    steps: Vec<StepSpec>,
}

impl WorkflowBuilder {
    /// An empty workflow called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        WorkflowBuilder {
            name: name.into(),
            steps: Vec::new(),
        }
    }

    /// Adds a step.
    pub fn step(mut self, step: StepSpec) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds a step in place.
    pub fn add(&mut self, step: StepSpec) -> &mut Self {
        self.steps.push(step);
        self
    }

    /// Number of steps so far.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether no step was added.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Validates and compiles the workflow against `orch`'s systems.
    ///
    /// # Errors
    /// [`WorkflowError`] naming the offending step.
    pub fn build(self, orch: &crate::Orchestrator) -> Result<Workflow, WorkflowError> {
        orch.build_workflow(self)
    }

    pub(crate) fn compile(
        self,
        reg: &Registry,
        orch_id: u64,
        est: &Estimates,
        default_ns: u64,
    ) -> Result<Workflow, WorkflowError> {
        let wf_name = self.name;
        if wf_name.is_empty() {
            return Err(WorkflowError::Invalid {
                message: "workflow name is empty".into(),
            });
        }
        let n = self.steps.len();
        if n >= u32::MAX as usize / 2 {
            return Err(WorkflowError::Invalid {
                message: format!("workflow '{wf_name}' has too many steps ({n})"),
            });
        }
        let mut index: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (i, s) in self.steps.iter().enumerate() {
            if s.name.is_empty() || s.name.len() > 256 || s.name.chars().any(char::is_control) {
                return Err(WorkflowError::Invalid {
                    message: format!(
                        "workflow '{wf_name}': step name {:?} must be 1 to 256 printable characters",
                        s.name
                    ),
                });
            }
            if index.insert(s.name.as_str(), i as u32).is_some() {
                return Err(WorkflowError::DuplicateStep {
                    workflow: wf_name.clone(),
                    step: s.name.clone(),
                });
            }
        }
        let lookup = |step: &str, other: &str| -> Result<u32, WorkflowError> {
            index
                .get(other)
                .copied()
                .ok_or_else(|| WorkflowError::UnknownStep {
                    workflow: wf_name.clone(),
                    step: step.to_owned(),
                    missing: other.to_owned(),
                })
        };

        // Edges pred -> succ, deduplicated per pair; named inputs per step.
        let mut edges: Vec<(u32, u32)> = Vec::new();
        let mut input_start = Vec::with_capacity(n + 1);
        let mut inputs: Vec<InputRef> = Vec::new();
        let mut conditions: Vec<Option<CondDef>> = Vec::with_capacity(n);
        for (i, s) in self.steps.iter().enumerate() {
            input_start.push(inputs.len() as u32);
            for (input, from) in &s.inputs {
                if input.is_empty() {
                    return Err(WorkflowError::Invalid {
                        message: format!(
                            "workflow '{wf_name}': step '{}' has an input with an empty name",
                            s.name
                        ),
                    });
                }
                let p = lookup(&s.name, from)?;
                inputs.push(InputRef {
                    name: StdArc::from(input.as_str()),
                    from: p,
                });
                edges.push((p, i as u32));
            }
            for a in &s.after {
                edges.push((lookup(&s.name, a)?, i as u32));
            }
            conditions.push(match &s.condition {
                None => None,
                Some(Condition::Predicate(f)) => Some(CondDef::Predicate(f.clone())),
                Some(Condition::Truthy(other)) => {
                    let p = lookup(&s.name, other)?;
                    edges.push((p, i as u32));
                    Some(CondDef::Truthy(p))
                }
            });
        }
        input_start.push(inputs.len() as u32);
        for &(p, s) in &edges {
            if p == s {
                let name = self.steps[p as usize].name.clone();
                return Err(WorkflowError::Cycle {
                    workflow: wf_name.clone(),
                    path: vec![name.clone(), name],
                });
            }
        }
        edges.sort_unstable();
        edges.dedup();

        let csr = |pairs: &[(u32, u32)],
                   key: fn(&(u32, u32)) -> (u32, u32)|
         -> (Box<[u32]>, Box<[u32]>) {
            let mut start = vec![0u32; n + 1];
            for e in pairs {
                start[key(e).0 as usize + 1] += 1;
            }
            for i in 0..n {
                start[i + 1] += start[i];
            }
            let mut fill = start.clone();
            let mut out = vec![0u32; pairs.len()];
            for e in pairs {
                let (a, b) = key(e);
                out[fill[a as usize] as usize] = b;
                fill[a as usize] += 1;
            }
            (start.into_boxed_slice(), out.into_boxed_slice())
        };
        let (succ_start, succ) = csr(&edges, |&(a, b)| (a, b));
        let (pred_start, pred) = csr(&edges, |&(a, b)| (b, a));
        let pred_count: Box<[u32]> = (0..n).map(|i| pred_start[i + 1] - pred_start[i]).collect();

        // Topological order (Kahn); a leftover means a cycle.
        let mut left = pred_count.to_vec();
        let mut topo: Vec<u32> = (0..n as u32).filter(|&i| left[i as usize] == 0).collect();
        let mut k = 0;
        while k < topo.len() {
            let i = topo[k] as usize;
            for &s in &succ[succ_start[i] as usize..succ_start[i + 1] as usize] {
                left[s as usize] -= 1;
                if left[s as usize] == 0 {
                    topo.push(s);
                }
            }
            k += 1;
        }
        if topo.len() < n {
            let names: Vec<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
            let path = plan::find_cycle(&left, &succ_start, &succ)
                .into_iter()
                .map(|i| names[i as usize].to_owned())
                .collect();
            return Err(WorkflowError::Cycle {
                workflow: wf_name,
                path,
            });
        }

        // Resolve systems and operations.
        let mut systems: Vec<SystemRef> = Vec::new();
        let mut system_ix: HashMap<NodeIndex, u32> = HashMap::new();
        let mut steps = Vec::with_capacity(n);
        let mut meta = Vec::with_capacity(n);
        let mut est_init = Vec::with_capacity(n);
        for (s, cond) in self.steps.into_iter().zip(conditions) {
            let (f, system, op, class) = match s.action {
                Action::Func(f) => (f, None, None, Priority::Normal),
                Action::Op { system, op } => {
                    let idx = reg
                        .index(&system)
                        .map_err(|_| WorkflowError::UnknownSystem {
                            workflow: wf_name.clone(),
                            step: s.name.clone(),
                            system: system.clone(),
                        })?;
                    let node = reg.node(idx);
                    let Some((op_name, f)) = node.operations.get_key_value(op.as_str()) else {
                        return Err(WorkflowError::UnknownOperation {
                            workflow: wf_name.clone(),
                            step: s.name.clone(),
                            system,
                            op,
                            available: node.operations.keys().map(|k| k.to_string()).collect(),
                        });
                    };
                    let sys = *system_ix.entry(idx).or_insert_with(|| {
                        systems.push(SystemRef {
                            name: node.name.clone(),
                            idx,
                            slots: node.slots.clone(),
                            first_step: s.name.clone(),
                        });
                        (systems.len() - 1) as u32
                    });
                    (
                        f.clone(),
                        Some(sys),
                        Some(op_name.clone()),
                        node.info.priority,
                    )
                }
            };
            let key = match (&system, &op) {
                (Some(sys), Some(op)) => Some(format!("{}.{op}", systems[*sys as usize].name)),
                _ => None,
            };
            est_init.push(
                key.as_deref()
                    .and_then(|k| est.mean_ns(k))
                    .unwrap_or(default_ns),
            );
            let timeout_ns = s
                .timeout
                .map_or(0, |d| d.as_nanos().clamp(1, u64::MAX as u128) as u64);
            let retry = (s.retry.max_retries > 0).then(|| Box::new(s.retry));
            let flags = if timeout_ns > 0 { HAS_TIMEOUT } else { 0 }
                | if retry.is_some() { HAS_RETRY } else { 0 }
                | if cond.is_some() { HAS_CONDITION } else { 0 };
            steps.push(StepDef {
                f,
                system,
                class: s.priority.unwrap_or(class).rank(),
                flags,
            });
            meta.push(StepMeta {
                name: StdArc::from(s.name.as_str()),
                op,
                timeout_ns,
                retry,
                condition: cond.map(Box::new),
                est_key: key.map(|k| StdArc::from(k.as_str())),
            });
        }

        let wf = WorkflowInner {
            name: wf_name,
            orch_id,
            steps: steps.into_boxed_slice(),
            meta: meta.into_boxed_slice(),
            succ_start,
            succ,
            pred_start,
            pred,
            pred_count,
            input_start: input_start.into_boxed_slice(),
            inputs: inputs.into_boxed_slice(),
            topo: topo.into_boxed_slice(),
            systems: systems.into_boxed_slice(),
            est: est_init.into_iter().map(AtomicU64::new).collect(),
            est_version: AtomicU64::new(1),
            plan: Mutex::new(None),
            buffers: buffers::BufferPool::default(),
        };
        Ok(Workflow {
            inner: Arc::new(wf),
        })
    }
}

/// A named input of a step: the output of step `from`.
pub(crate) struct InputRef {
    pub(crate) name: StdArc<str>,
    pub(crate) from: u32,
}

pub(crate) enum CondDef {
    Predicate(ConditionFn),
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
    pub(crate) system: Option<u32>,
    pub(crate) class: u8,
    /// `HAS_TIMEOUT | HAS_RETRY | HAS_CONDITION`: whether to look at [`StepMeta`].
    pub(crate) flags: u8,
}

pub(crate) const HAS_TIMEOUT: u8 = 1;
pub(crate) const HAS_RETRY: u8 = 2;
pub(crate) const HAS_CONDITION: u8 = 4;

/// The cold part of a compiled step.
pub(crate) struct StepMeta {
    pub(crate) name: StdArc<str>,
    pub(crate) op: Option<StdArc<str>>,
    /// 0 = no timeout.
    pub(crate) timeout_ns: u64,
    pub(crate) retry: Option<Box<RetryPolicy>>,
    pub(crate) condition: Option<Box<CondDef>>,
    /// `system.op`, the key of the shared duration estimate.
    pub(crate) est_key: Option<StdArc<str>>,
}

/// The compiled, immutable form of a workflow (plus learned estimates).
pub(crate) struct WorkflowInner {
    pub(crate) name: String,
    pub(crate) orch_id: u64,
    pub(crate) steps: Box<[StepDef]>,
    pub(crate) meta: Box<[StepMeta]>,
    pub(crate) succ_start: Box<[u32]>,
    pub(crate) succ: Box<[u32]>,
    pub(crate) pred_start: Box<[u32]>,
    pub(crate) pred: Box<[u32]>,
    pub(crate) pred_count: Box<[u32]>,
    pub(crate) input_start: Box<[u32]>,
    pub(crate) inputs: Box<[InputRef]>,
    pub(crate) topo: Box<[u32]>,
    pub(crate) systems: Box<[SystemRef]>,
    /// Estimated duration of each step, ns (learned per run when timing is on).
    pub(crate) est: Box<[AtomicU64]>,
    pub(crate) est_version: AtomicU64,
    pub(crate) plan: Mutex<Option<Arc<plan::RunPlan>>>,
    /// Buffers of finished runs, for the next runs.
    pub(crate) buffers: buffers::BufferPool,
}

impl WorkflowInner {
    pub(crate) fn succ_of(&self, i: u32) -> &[u32] {
        &self.succ[self.succ_start[i as usize] as usize..self.succ_start[i as usize + 1] as usize]
    }

    pub(crate) fn pred_of(&self, i: u32) -> &[u32] {
        &self.pred[self.pred_start[i as usize] as usize..self.pred_start[i as usize + 1] as usize]
    }

    pub(crate) fn inputs_of(&self, i: u32) -> &[InputRef] {
        &self.inputs
            [self.input_start[i as usize] as usize..self.input_start[i as usize + 1] as usize]
    }

    pub(crate) fn has_inputs(&self, i: u32) -> bool {
        self.input_start[i as usize] != self.input_start[i as usize + 1]
    }

    pub(crate) fn step_system(&self, i: u32) -> Option<&str> {
        self.steps[i as usize]
            .system
            .map(|s| &*self.systems[s as usize].name)
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
    pub fn step_names(&self) -> Vec<&str> {
        self.inner
            .topo
            .iter()
            .map(|&i| &*self.inner.meta[i as usize].name)
            .collect()
    }

    /// The systems the workflow's steps operate on.
    pub fn systems(&self) -> Vec<&str> {
        self.inner.systems.iter().map(|s| &*s.name).collect()
    }

    /// The current duration estimate of each step, by name.
    pub fn estimates(&self) -> Vec<(&str, Duration)> {
        self.inner
            .meta
            .iter()
            .zip(self.inner.est.iter())
            .map(|(s, e)| {
                (
                    &*s.name,
                    Duration::from_nanos(e.load(crate::sync::Ordering::Relaxed)),
                )
            })
            .collect()
    }
}
