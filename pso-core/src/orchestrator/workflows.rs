//! Workflow verbs of the [`Orchestrator`]: operations, concurrency limits,
//! building, loading and running workflows, estimates and the scheduling
//! policy. The engine is in [`crate::workflow`].

use std::path::Path;

use super::Orchestrator;
use crate::model::{HandlerError, OpFn};
use crate::registry::RegistryError;
use crate::topology::TopologyFormat;
use crate::value::Value;
use crate::workflow::run::RunInner;
use crate::workflow::{
    Estimate, RunHandle, RunOptions, SchedulingPolicy, StepContext, Workflow, WorkflowBuilder,
    WorkflowDecl, WorkflowError,
};

impl Orchestrator {
    /// Adds or replaces operation `op` of `system` (for systems loaded from a
    /// topology file, or registered without it). Workflows built afterwards
    /// use it; already built ones keep what they resolved.
    ///
    /// # Errors
    /// Unknown system, empty operation name, closed orchestrator.
    pub fn set_operation<F>(&self, system: &str, op: &str, f: F) -> Result<(), RegistryError>
    where
        F: Fn(&StepContext<'_>) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        self.set_operation_shared(system, op, std::sync::Arc::new(f))
    }

    /// [`Orchestrator::set_operation`] with a shared function (bindings use this).
    ///
    /// # Errors
    /// As [`Orchestrator::set_operation`].
    pub fn set_operation_shared(
        &self,
        system: &str,
        op: &str,
        f: OpFn,
    ) -> Result<(), RegistryError> {
        self.check_open_registry()?;
        let old = self.inner.registry.write().set_operation(system, op, f)?;
        drop(old); // outside the lock: a host finalizer may call back
        Ok(())
    }

    /// Sets (or with `None` removes) the limit on how many workflow steps of
    /// `system` run at once. Raising it starts waiting steps at once.
    ///
    /// # Errors
    /// Unknown system, a limit of 0, closed orchestrator.
    pub fn set_concurrency_limit(
        &self,
        system: &str,
        limit: Option<u32>,
    ) -> Result<(), RegistryError> {
        self.check_open_registry()?;
        if limit == Some(0) {
            return Err(RegistryError::Invalid {
                message: format!("system '{system}': concurrency limit must be at least 1"),
            });
        }
        let slots = {
            let reg = self.inner.registry.read();
            reg.node(reg.index(system)?).slots.clone()
        };
        for w in slots.set_limit(limit) {
            self.inner.env.start_waiter(w);
        }
        Ok(())
    }

    /// Validates and compiles a workflow (see [`WorkflowBuilder::build`]).
    pub(crate) fn build_workflow(
        &self,
        builder: WorkflowBuilder,
    ) -> Result<Workflow, WorkflowError> {
        if self.is_closed() {
            return Err(WorkflowError::Closed);
        }
        let reg = self.inner.registry.read();
        builder.compile(
            &reg,
            self.inner.id,
            &self.inner.env.estimates,
            self.inner.default_estimate_ns,
        )
    }

    /// Loads a workflow definition file (`.toml` or `.json`) and builds it.
    ///
    /// # Errors
    /// Parse errors with file, line and column; build errors naming the step.
    pub fn load_workflow(&self, path: impl AsRef<Path>) -> Result<Workflow, WorkflowError> {
        let path = path.as_ref();
        let format = TopologyFormat::from_path(path).ok_or_else(|| WorkflowError::Invalid {
            message: format!(
                "cannot tell the format of {}: use a .toml or .json extension",
                path.display()
            ),
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| WorkflowError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        WorkflowDecl::parse(&text, format, &path.display().to_string())?
            .into_builder()
            .build(self)
    }

    /// Parses a workflow definition from text and builds it.
    ///
    /// # Errors
    /// As [`Orchestrator::load_workflow`].
    pub fn load_workflow_str(
        &self,
        text: &str,
        format: TopologyFormat,
    ) -> Result<Workflow, WorkflowError> {
        WorkflowDecl::parse(text, format, "<string>")?
            .into_builder()
            .build(self)
    }

    /// Runs a workflow across the systems: steps start as soon as their
    /// predecessors are done, in parallel on the worker pool. Returns at once
    /// with a handle to wait on, await or cancel.
    ///
    /// # Errors
    /// [`WorkflowError::NotActive`] naming a system that is not Active (and the
    /// first step that uses it); the workflow was built by another
    /// orchestrator; the orchestrator is closed. Nothing ran.
    pub fn coordinate_systems(&self, workflow: &Workflow) -> Result<RunHandle, WorkflowError> {
        self.coordinate_systems_with(workflow, RunOptions::default())
    }

    /// [`Orchestrator::coordinate_systems`] with an input, a deadline, or
    /// timing turned off.
    ///
    /// # Errors
    /// As [`Orchestrator::coordinate_systems`].
    pub fn coordinate_systems_with(
        &self,
        workflow: &Workflow,
        options: RunOptions,
    ) -> Result<RunHandle, WorkflowError> {
        // Shared with other starts, exclusive with `close` (see `start_gate`).
        let _gate = self.inner.start_gate.read();
        if self.is_closed() {
            return Err(WorkflowError::Closed);
        }
        let wf = &workflow.inner;
        if wf.orch_id != self.inner.id {
            return Err(WorkflowError::ForeignWorkflow {
                workflow: wf.name.to_string(),
            });
        }
        if !wf.systems.is_empty() {
            let reg = self.inner.registry.read();
            for s in wf.systems.iter() {
                let state = &reg.node(s.idx).life.state;
                if !state.is_active() {
                    return Err(WorkflowError::NotActive {
                        workflow: wf.name.to_string(),
                        step: s.first_step.clone(),
                        system: s.name.to_string(),
                        state: state.name().to_owned(),
                    });
                }
            }
        }
        Ok(RunHandle {
            run: RunInner::start(&self.inner.env, wf, options),
        })
    }

    /// Learned duration estimates per `system.operation`, with sample counts.
    pub fn estimates(&self) -> Vec<Estimate> {
        self.inner.env.estimates.snapshot()
    }

    /// How ready steps of one priority class are ordered.
    pub fn scheduling_policy(&self) -> SchedulingPolicy {
        self.inner.env.policy()
    }

    /// Changes the scheduling policy for runs started from now on.
    pub fn set_scheduling_policy(&self, policy: SchedulingPolicy) {
        self.inner.env.set_policy(policy);
    }
}
