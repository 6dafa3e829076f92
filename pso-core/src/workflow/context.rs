//! What a workflow step's function sees: its inputs, the run's input, its
//! attempt number, cancellation, and a way to fan out into child steps.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc as StdArc;
use std::sync::Weak;

use crate::model::{HandlerError, OpFn};
use crate::sync::Arc;
use crate::value::Value;
use crate::workflow::deferred::{Claim, Deferral};
use crate::workflow::fanout::ChildGroup;
use crate::workflow::run::RunInner;

/// The context passed to a step's function.
pub struct StepContext<'a> {
    pub(crate) run: &'a RunInner,
    pub(crate) step: u32,
    pub(crate) attempt: u32,
    pub(crate) child: Option<(&'a ChildGroup, u32)>,
    pub(crate) children: RefCell<Vec<Child>>,
    /// Set for a step's own function (not conditions, not children): what
    /// [`StepContext::defer`] hands to the completion.
    pub(crate) claim: Option<&'a Claim>,
    pub(crate) deferral: RefCell<Option<Arc<Deferral>>>,
}

impl fmt::Debug for StepContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("step", &self.step_name())
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl<'a> StepContext<'a> {
    pub(crate) fn new(
        run: &'a RunInner,
        step: u32,
        attempt: u32,
        child: Option<(&'a ChildGroup, u32)>,
    ) -> Self {
        StepContext {
            run,
            step,
            attempt,
            child,
            children: RefCell::new(Vec::new()),
            claim: None,
            deferral: RefCell::new(None),
        }
    }

    /// The context of a step's own function, which may defer its result
    /// (see [`StepContext::defer`]); built in place (no move of a finished
    /// context, which is large enough that copying it cost the hot path).
    pub(crate) fn claimed(run: &'a RunInner, step: u32, attempt: u32, claim: &'a Claim) -> Self {
        StepContext {
            run,
            step,
            attempt,
            child: None,
            children: RefCell::new(Vec::new()),
            claim: Some(claim),
            deferral: RefCell::new(None),
        }
    }

    /// Its fan-out children and deferral, consuming it.
    pub(crate) fn into_parts(self) -> (Vec<Child>, Option<Arc<Deferral>>) {
        (self.children.into_inner(), self.deferral.into_inner())
    }

    /// The step's name (`parent[i]` for a fan-out child).
    pub fn step_name(&self) -> String {
        let parent = self.run.wf.name_of(self.step);
        match self.child {
            Some((_, k)) => format!("{parent}[{k}]"),
            None => parent.to_string(),
        }
    }

    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        &self.run.wf.name
    }

    /// The run's id.
    pub fn run_id(&self) -> u64 {
        self.run.id
    }

    /// The system this step operates on, if it is a system operation.
    pub fn system(&self) -> Option<&str> {
        match self.child {
            Some((g, k)) => g.defs[k as usize].system.as_deref(),
            None => self.run.wf.step_system(self.step),
        }
    }

    /// The operation name, if this is a system operation.
    pub fn operation(&self) -> Option<&str> {
        match self.child {
            Some((g, k)) => g.defs[k as usize].op.as_deref(),
            None => self.run.wf.step_op(self.step).map(|o| &*o.name),
        }
    }

    /// Which attempt this is (1 for the first; retries count up).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The named input `name`: the output of the upstream step wired to it,
    /// or `None` if there is no such input or that step was skipped.
    pub fn input(&self, name: &str) -> Option<&'a Value> {
        if self.child.is_some() {
            return None;
        }
        self.run.input_of(self.step, name)
    }

    /// Every named input that has a value, in declaration order.
    pub fn inputs(&self) -> Vec<(&'a str, &'a Value)> {
        if self.child.is_some() {
            return Vec::new();
        }
        self.run.inputs_of(self.step)
    }

    /// The step's input as one value: a map of its named inputs; the run's
    /// input for a step without named inputs; the value a fan-out child was
    /// emitted with.
    pub fn input_value(&self) -> Value {
        match self.child {
            Some((g, k)) => g.defs[k as usize].input.clone(),
            None => {
                if self.run.wf.has_inputs(self.step) {
                    Value::Map(
                        self.inputs()
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v.clone()))
                            .collect(),
                    )
                } else {
                    self.run.input.clone()
                }
            }
        }
    }

    /// The input the run was started with.
    pub fn run_input(&self) -> &'a Value {
        &self.run.input
    }

    /// Whether the step should stop: the run was cancelled or passed its
    /// deadline, or this step passed its timeout. A handler that sees this
    /// should return promptly; its result may be ignored.
    pub fn is_cancelled(&self) -> bool {
        self.run.step_abandoned(self.step, self.attempt, self.child)
    }

    /// A token that answers [`StepContext::is_cancelled`] from anywhere (for
    /// example another thread the handler started), for as long as it lives.
    /// It does not keep the run alive: once the run is gone (it ended and
    /// nothing holds it), the token reads cancelled.
    pub fn cancel_token(&self) -> CancelToken {
        CancelToken {
            run: Arc::downgrade(&self.run.arc()),
            step: self.step,
            attempt: self.attempt,
            child: self.child.map(|(_, k)| k),
        }
    }

    /// A fan-out child that runs operation `op` of `system` with `input`.
    ///
    /// # Errors
    /// The system or operation does not exist, or the system is not Active.
    pub fn child_op(
        &self,
        system: &str,
        op: &str,
        input: impl Into<Value>,
    ) -> Result<Child, HandlerError> {
        let reg = self.run.env.registry.read();
        let idx = reg
            .index(system)
            .map_err(|e| HandlerError::failed(e.to_string()))?;
        let node = reg.node(idx);
        if !node.life.state.is_active() {
            return Err(HandlerError::failed(format!(
                "system '{system}' is {}, not Active",
                node.life.state.name()
            )));
        }
        let (name, f) = node.operations.get_key_value(op).ok_or_else(|| {
            HandlerError::failed(format!("system '{system}' has no operation '{op}'"))
        })?;
        Ok(Child::shared(input, f.clone()).with_op(node.name.clone(), name.clone()))
    }

    /// Emits child steps (dynamic fan-out). They run in parallel once this
    /// step's function returns `Ok`; the step succeeds when all of them
    /// succeed, and its output is the list of their outputs, in order (the
    /// value the function returned is discarded). Successors wait for the
    /// children. Calling it again adds more children. Children cannot fan out.
    ///
    /// # Errors
    /// A child step cannot fan out.
    pub fn fan_out(&self, children: impl IntoIterator<Item = Child>) -> Result<(), HandlerError> {
        if self.child.is_some() {
            return Err(HandlerError::failed("a fan-out child cannot fan out"));
        }
        self.children.borrow_mut().extend(children);
        Ok(())
    }
}

/// A child step emitted by [`StepContext::fan_out`].
#[derive(Clone)]
pub struct Child {
    pub(crate) f: OpFn,
    pub(crate) input: Value,
    pub(crate) system: Option<StdArc<str>>,
    pub(crate) op: Option<StdArc<str>>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("input", &self.input)
            .field("system", &self.system)
            .field("op", &self.op)
            .finish()
    }
}

impl Child {
    /// A child that runs `f` with `input` (its [`StepContext::input_value`]).
    pub fn func<F>(input: impl Into<Value>, f: F) -> Child
    where
        F: Fn(&StepContext<'_>) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        Child {
            f: StdArc::new(f),
            input: input.into(),
            system: None,
            op: None,
        }
    }

    /// A child that runs a shared function with `input`.
    pub fn shared(input: impl Into<Value>, f: OpFn) -> Child {
        Child {
            f,
            input: input.into(),
            system: None,
            op: None,
        }
    }

    /// Names the system operation this child stands for (for history and
    /// estimates; `f` is what runs).
    pub(crate) fn with_op(mut self, system: StdArc<str>, op: StdArc<str>) -> Child {
        self.system = Some(system);
        self.op = Some(op);
        self
    }
}

/// Answers "should this step stop?" from any thread. See
/// [`StepContext::cancel_token`].
#[derive(Clone)]
pub struct CancelToken {
    /// Weak, so that a token kept by a host object (an exception's
    /// traceback, a closure) never keeps the run, its workflow and its step
    /// functions alive.
    run: Weak<RunInner>,
    step: u32,
    attempt: u32,
    child: Option<u32>,
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// Runs `f` once when the step is told to stop — the run is cancelled or
    /// passes its deadline, or the step its timeout — on the thread that
    /// stops it (keep it short), or at once if it already was. If the step's
    /// attempt ends first (or the run is gone), `f` is dropped without
    /// running. For a fan-out child, only the run stopping counts.
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) {
        let Some(run) = self.run.upgrade() else {
            return;
        };
        let attempt = if self.child.is_some() {
            crate::workflow::run::CHILD_HOOK
        } else {
            self.attempt
        };
        run.on_cancel(self.step, attempt, Box::new(f));
    }

    /// Whether the step should stop (true once the run is gone).
    pub fn is_cancelled(&self) -> bool {
        let Some(run) = self.run.upgrade() else {
            return true;
        };
        let group = self
            .child
            .and_then(|k| run.group_of(self.step).map(|g| (g, k)));
        match group {
            Some((g, k)) => run.step_abandoned(self.step, self.attempt, Some((&g, k))),
            None => run.step_abandoned(self.step, self.attempt, None),
        }
    }
}
