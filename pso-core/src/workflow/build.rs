//! Building workflows: named [`StepSpec`]s and anonymous tasks wired with
//! [`WorkflowBuilder::precede`], validated and compiled into a
//! [`WorkflowInner`].
//!
//! Compilation is linear in steps and edges: names are hashed only for named
//! steps, edges go into compact successor/predecessor lists by counting (no
//! sort; a duplicate edge is simply counted twice, which the dependency
//! counters handle), Kahn's algorithm gives a topological order and finds
//! cycles, and systems and operations are resolved once per distinct pair.

use std::sync::Arc as StdArc;

use foldhash::HashMap;

use petgraph::stable_graph::NodeIndex;

use super::plan::{self, Estimates};
use super::{
    Action, CondDef, Condition, HAS_CONDITION, HAS_RETRY, HAS_TIMEOUT, InputRef, NO_INDEX, OpRef,
    StepDef, StepMeta, StepSpec, SystemRef, Workflow, WorkflowError, WorkflowInner, buffers,
};
use crate::model::{HandlerError, OpFn, Priority};
use crate::registry::Registry;
use crate::sync::{Arc, AtomicU64, Mutex};
use crate::value::Value;
use crate::workflow::StepContext;

/// A step of a workflow being built, for wiring anonymous tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepId(u32);

impl StepId {
    /// The step's index in the workflow (anonymous tasks are named `#index`).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

enum Pending {
    /// An anonymous function step.
    Task(OpFn),
    Spec(Box<StepSpec>),
}

/// Builds a [`Workflow`] from named [`StepSpec`]s and anonymous tasks.
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
///
/// // Anonymous tasks, wired by id (cheap to build in bulk):
/// let mut b = Workflow::builder("pipeline");
/// let a = b.task(|_| Ok(Value::Null));
/// let c = b.task(|_| Ok(Value::Null));
/// b.precede(a, c);
/// assert!(orch.coordinate_systems(&b.build(&orch)?)?.wait().is_success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WorkflowBuilder {
    name: String,
    steps: Vec<Pending>,
    edges: Vec<(u32, u32)>,
}

impl std::fmt::Debug for WorkflowBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowBuilder")
            .field("name", &self.name)
            .field("steps", &self.steps.len())
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl WorkflowBuilder {
    /// An empty workflow called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        WorkflowBuilder {
            name: name.into(),
            steps: Vec::new(),
            edges: Vec::new(),
        }
    }

    /// An empty workflow with room for `steps` steps and `edges`
    /// [`WorkflowBuilder::precede`] edges (saves reallocation when building
    /// large workflows).
    pub fn with_capacity(name: impl Into<String>, steps: usize, edges: usize) -> Self {
        WorkflowBuilder {
            name: name.into(),
            steps: Vec::with_capacity(steps),
            edges: Vec::with_capacity(edges),
        }
    }

    /// Adds a named step (builder style).
    pub fn step(mut self, step: StepSpec) -> Self {
        self.add(step);
        self
    }

    /// Adds a named step; returns its id.
    pub fn add(&mut self, step: StepSpec) -> StepId {
        self.steps.push(Pending::Spec(Box::new(step)));
        StepId((self.steps.len() - 1) as u32)
    }

    /// Adds an anonymous function step (shown as `#index`); returns its id.
    pub fn task<F>(&mut self, f: F) -> StepId
    where
        F: Fn(&StepContext<'_>) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        self.task_shared(StdArc::new(f))
    }

    /// Adds an anonymous step running a shared function; returns its id.
    pub fn task_shared(&mut self, f: OpFn) -> StepId {
        self.steps.push(Pending::Task(f));
        StepId((self.steps.len() - 1) as u32)
    }

    /// Runs `after` after `before` (ordering only).
    pub fn precede(&mut self, before: StepId, after: StepId) -> &mut Self {
        self.edges.push((before.0, after.0));
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
        if n > super::run::STEP_MASK as usize {
            return Err(WorkflowError::Invalid {
                message: format!("workflow '{wf_name}' has too many steps ({n})"),
            });
        }
        let display = |steps: &[Pending], i: u32| match &steps[i as usize] {
            Pending::Spec(s) => s.name.clone(),
            Pending::Task(_) => format!("#{i}"),
        };

        // Names of named steps.
        let mut index: HashMap<&str, u32> = HashMap::default();
        for (i, p) in self.steps.iter().enumerate() {
            if let Pending::Spec(s) = p {
                if s.name.is_empty() || s.name.len() > 256 || s.name.chars().any(char::is_control) {
                    return Err(WorkflowError::Invalid {
                        message: format!(
                            "workflow '{wf_name}': step name {:?} must be 1 to 256 printable characters",
                            s.name
                        ),
                    });
                }
                if s.name.starts_with('#') {
                    return Err(WorkflowError::Invalid {
                        message: format!(
                            "workflow '{wf_name}': step name '{}' may not start with '#' (reserved for anonymous tasks)",
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

        // Edges (pred -> succ), named inputs and conditions.
        let mut edges = self.edges;
        for &(a, b) in &edges {
            if a as usize >= n || b as usize >= n {
                return Err(WorkflowError::Invalid {
                    message: format!(
                        "workflow '{wf_name}': precede() got a step id this builder did not issue"
                    ),
                });
            }
        }
        // Named inputs (CSR, empty for a workflow of anonymous tasks) and
        // conditions (only for the steps that have one).
        let any_inputs = self
            .steps
            .iter()
            .any(|p| matches!(p, Pending::Spec(s) if !s.inputs.is_empty()));
        let mut input_start = Vec::with_capacity(if any_inputs { n + 1 } else { 0 });
        let mut inputs: Vec<InputRef> = Vec::new();
        let mut conditions: HashMap<u32, CondDef> = HashMap::default();
        for (i, p) in self.steps.iter().enumerate() {
            if any_inputs {
                input_start.push(inputs.len() as u32);
            }
            let Pending::Spec(s) = p else { continue };
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
            let cond = match &s.condition {
                None => None,
                Some(Condition::Predicate(f)) => Some(CondDef::Predicate(f.clone())),
                Some(Condition::TryPredicate(f)) => Some(CondDef::TryPredicate(f.clone())),
                Some(Condition::Truthy(other)) => {
                    let p = lookup(&s.name, other)?;
                    edges.push((p, i as u32));
                    Some(CondDef::Truthy(p))
                }
            };
            if let Some(c) = cond {
                conditions.insert(i as u32, c);
            }
        }
        if any_inputs {
            input_start.push(inputs.len() as u32);
        }
        if let Some(&(a, _)) = edges.iter().find(|(a, b)| a == b) {
            let name = display(&self.steps, a);
            return Err(WorkflowError::Cycle {
                workflow: wf_name,
                path: vec![name.clone(), name],
            });
        }

        let (succ_start, succ) = csr(n, &edges);
        let mut pred_count = vec![0u32; n];
        for &(_, b) in &edges {
            pred_count[b as usize] += 1;
        }
        drop(edges);
        let pred_count = pred_count.into_boxed_slice();

        // Topological order (Kahn); a leftover means a cycle.
        let mut left = pred_count.to_vec();
        let mut topo: Vec<u32> = (0..n as u32).filter(|&i| left[i as usize] == 0).collect();
        topo.reserve(n - topo.len());
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
            let path = plan::find_cycle(&left, &succ_start, &succ)
                .into_iter()
                .map(|i| display(&self.steps, i))
                .collect();
            return Err(WorkflowError::Cycle {
                workflow: wf_name,
                path,
            });
        }

        // Steps: resolve systems and operations once per distinct pair.
        let mut systems: Vec<SystemRef> = Vec::new();
        let mut system_ix: HashMap<NodeIndex, u32> = HashMap::default();
        let mut ops: Vec<OpRef> = Vec::new();
        let mut op_ix: HashMap<(u32, StdArc<str>), (u32, OpFn, u64)> = HashMap::default();
        let mut steps = Vec::with_capacity(n);
        let mut meta = Vec::new();
        let mut meta_ix = Vec::with_capacity(n);
        let mut est_init: Vec<AtomicU64> = Vec::with_capacity(n);
        let normal = Priority::Normal.rank();
        for (i, p) in self.steps.into_iter().enumerate() {
            let s = match p {
                Pending::Task(f) => {
                    steps.push(StepDef {
                        f,
                        system_ix: NO_INDEX,
                        class: normal,
                        flags: 0,
                    });
                    meta_ix.push(NO_INDEX);
                    est_init.push(AtomicU64::new(default_ns));
                    continue;
                }
                Pending::Spec(s) => *s,
            };
            let cond = conditions.remove(&(i as u32));
            let (f, sys, op, class, est_ns) = match s.action {
                Action::Func(f) => (f, NO_INDEX, NO_INDEX, Priority::Normal, default_ns),
                Action::Op { system, op } => {
                    let idx = reg
                        .index(&system)
                        .map_err(|_| WorkflowError::UnknownSystem {
                            workflow: wf_name.clone(),
                            step: s.name.clone(),
                            system: system.clone(),
                        })?;
                    let node = reg.node(idx);
                    let sys = *system_ix.entry(idx).or_insert_with(|| {
                        systems.push(SystemRef {
                            name: node.name.clone(),
                            idx,
                            slots: node.slots.clone(),
                            first_step: s.name.clone(),
                        });
                        (systems.len() - 1) as u32
                    });
                    let Some((op_name, f)) = node.operations.get_key_value(op.as_str()) else {
                        return Err(WorkflowError::UnknownOperation {
                            workflow: wf_name.clone(),
                            step: s.name.clone(),
                            system,
                            op,
                            available: node.operations.keys().map(|k| k.to_string()).collect(),
                        });
                    };
                    let (ix, f, est_ns) = op_ix
                        .entry((sys, op_name.clone()))
                        .or_insert_with(|| {
                            let key: StdArc<str> =
                                StdArc::from(format!("{}.{op_name}", node.name).as_str());
                            let est_ns = est.mean_ns(&key).unwrap_or(default_ns);
                            ops.push(OpRef {
                                name: op_name.clone(),
                                system: node.name.clone(),
                                key,
                            });
                            ((ops.len() - 1) as u32, f.clone(), est_ns)
                        })
                        .clone();
                    (f, sys, ix, node.info.priority, est_ns)
                }
            };
            let timeout_ns = s
                .timeout
                .map_or(0, |d| d.as_nanos().clamp(1, u64::MAX as u128) as u64);
            if s.retry.max_retries > super::MAX_RETRIES {
                return Err(WorkflowError::Invalid {
                    message: format!(
                        "workflow '{wf_name}': step '{}' asks for {} retries, more than the {} allowed",
                        s.name,
                        s.retry.max_retries,
                        super::MAX_RETRIES
                    ),
                });
            }
            let retry = (s.retry.max_retries > 0).then(|| Box::new(s.retry));
            let flags = if timeout_ns > 0 { HAS_TIMEOUT } else { 0 }
                | if retry.is_some() { HAS_RETRY } else { 0 }
                | if cond.is_some() { HAS_CONDITION } else { 0 };
            steps.push(StepDef {
                f,
                system_ix: sys,
                class: s.priority.unwrap_or(class).rank(),
                flags,
            });
            meta_ix.push(meta.len() as u32);
            meta.push(StepMeta {
                name: StdArc::from(s.name.as_str()),
                step: i as u32,
                op,
                timeout_ns,
                retry,
                condition: cond.map(Box::new),
            });
            est_init.push(AtomicU64::new(est_ns));
        }

        let wf = WorkflowInner {
            name: StdArc::from(wf_name),
            orch_id,
            steps: steps.into_boxed_slice(),
            meta: meta.into_boxed_slice(),
            meta_ix: meta_ix.into_boxed_slice(),
            succ_start,
            succ,
            pred_count,
            input_start: input_start.into_boxed_slice(),
            inputs: inputs.into_boxed_slice(),
            topo: topo.into_boxed_slice(),
            systems: systems.into_boxed_slice(),
            ops: ops.into_boxed_slice(),
            est: est_init.into_boxed_slice(),
            est_version: AtomicU64::new(1),
            plan: Mutex::new(None),
            buffers: buffers::BufferPool::default(),
            metric_ops: Default::default(),
        };
        Ok(Workflow {
            inner: Arc::new(wf),
        })
    }
}

/// Compressed adjacency: `out[start[i]..start[i + 1]]` are the successors
/// of `i`, in edge order. O(n + edges), no sort.
fn csr(n: usize, edges: &[(u32, u32)]) -> (Box<[u32]>, Box<[u32]>) {
    let mut start = vec![0u32; n + 1];
    for &(a, _) in edges {
        start[a as usize + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill: Vec<u32> = start[..n].to_vec();
    let mut out = vec![0u32; edges.len()];
    for &(a, b) in edges {
        out[fill[a as usize] as usize] = b;
        fill[a as usize] += 1;
    }
    (start.into_boxed_slice(), out.into_boxed_slice())
}
