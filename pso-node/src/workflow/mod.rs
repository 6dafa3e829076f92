//! Workflows (`coordinate_systems`): the Node column of docs/API.md,
//! "Workflows" (pso-core `workflow/`).
//!
//! * [`build`] reads steps and run options from JS;
//! * [`bridge`] carries step calls from pso-core's workers to the JS thread
//!   (batched) and their outcomes back; [`context`] is the JS thread's half
//!   (the `ctx`, calling functions, Promises, signals, fan-out);
//! * [`result`] turns results into plain JS objects.
//!
//! This module adds the workflow methods to `Orchestrator` and defines the
//! `Workflow` and `Run` classes. A run's `result` Promise is settled from the
//! worker that finishes the run (pso-core's `RunHandle` is a `Future`; its
//! waker resolves the Promise), so no thread waits for a run.

pub(crate) mod bridge;
pub(crate) mod build;
pub(crate) mod context;
pub(crate) mod result;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use napi::bindgen_prelude::{
    ClassInstance, FnArgs, FromNapiValue, Function, FunctionCallContext, JavaScriptClassExt,
    JsValue, Object, ObjectFinalize, ObjectRef, Unknown,
};
use napi::{Env, JsDeferred};
use napi_derive::napi;
use pso_core::{RunHandle, RunResult, Workflow};

use self::bridge::Shared;
use self::context::JsFn;
use self::result::{JsEstimate, JsRunProgress};
use crate::error;
use crate::model::js;
use crate::orchestrator::{JsOrchestrator, guard};
use crate::topology;

pub use self::build::{JsRunOptions, JsStepSpec};

/// A built workflow: validated against the orchestrator's systems and
/// compiled. Run it with `coordinateSystems`, as often as you like (also
/// concurrently). It keeps the operations it resolved when it was built.
#[napi(js_name = "Workflow")]
pub struct JsWorkflow {
    inner: Workflow,
}

impl std::fmt::Debug for JsWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[napi]
impl JsWorkflow {
    /// The workflow's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// Number of steps.
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        u32::try_from(self.inner.len()).unwrap_or(u32::MAX)
    }

    /// Number of steps (same as `length`).
    #[napi(getter)]
    pub fn size(&self) -> u32 {
        self.length()
    }

    /// Step names in a topological order.
    #[napi(getter)]
    pub fn step_names(&self) -> Vec<String> {
        self.inner.step_names()
    }

    /// The systems whose operations the steps run.
    #[napi(getter)]
    pub fn systems(&self) -> Vec<String> {
        self.inner
            .systems()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

/// A workflow run in progress (or finished): `coordinateSystems` returns it
/// at once.
#[napi(js_name = "Run", custom_finalize)]
pub struct JsRun {
    handle: RunHandle,
    shared: Arc<Shared>,
    /// The `result` Promise (unreferenced when this object is collected).
    result: Option<ObjectRef<false>>,
}

impl std::fmt::Debug for JsRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handle.fmt(f)
    }
}

impl ObjectFinalize for JsRun {
    fn finalize(self, env: Env) -> napi::Result<()> {
        if let Some(r) = self.result {
            r.unref(&env)?;
        }
        Ok(())
    }
}

#[napi]
impl JsRun {
    /// The run's id (unique per orchestrator).
    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.handle.id() as f64
    }

    /// The workflow's name.
    #[napi(getter)]
    pub fn workflow(&self) -> String {
        self.handle.workflow().to_owned()
    }

    /// Resolves with the `RunResult` when every step has finished — also for
    /// failed, cancelled and timed-out runs (inspect `state`). Never rejects
    /// because of what the steps did.
    #[napi(getter, ts_return_type = "Promise<RunResult>")]
    pub fn result<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        match &self.result {
            Some(r) => r.get_value(env),
            None => Err(napi::Error::from_reason("the run has no result Promise")),
        }
    }

    /// Whether every step has finished.
    #[napi(getter)]
    pub fn done(&self) -> bool {
        self.handle.is_finished()
    }

    /// Cancels the run: steps not yet started are cancelled at once; running
    /// ones see `ctx.signal` abort and their results are ignored. Returns
    /// false if the run had already finished or been stopped.
    #[napi]
    pub fn cancel(&self) -> bool {
        self.shared.cancel_run(&self.handle)
    }

    /// Counts of steps by state right now.
    #[napi]
    pub fn progress(&self) -> JsRunProgress {
        self.handle.progress().into()
    }
}

type Resolver = Box<dyn FnOnce(Env) -> napi::Result<ObjectRef<false>> + Send>;
type RunDeferred = JsDeferred<ObjectRef<false>, Resolver>;

/// Settles a run's `result` Promise when pso-core wakes it.
struct Completion {
    handle: RunHandle,
    shared: Arc<Shared>,
    /// `context.js`'s `makeResult`.
    make_result: Arc<JsFn>,
    pending: Mutex<Option<(RunDeferred, Option<JsFn>)>>,
}

impl Wake for Completion {
    fn wake(self: Arc<Self>) {
        self.poll();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll();
    }
}

impl Completion {
    /// Polls the run; once it is done, resolves the Promise (on the JS thread,
    /// where the result object is built and the signal listener removed).
    fn poll(self: &Arc<Self>) {
        let waker = Waker::from(self.clone());
        let mut handle = self.handle.clone();
        let Poll::Ready(result) = Pin::new(&mut handle).poll(&mut Context::from_waker(&waker))
        else {
            return;
        };
        // Steps stopped by the run's deadline gave their completions to the
        // run; now that it has ended, using them only gives back their
        // slots and leases (see `bridge`, "Cancellation").
        for c in self.shared.untrack_run(self.handle.id()) {
            let _ = c.complete(Err(bridge::stopped_error()));
        }
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((deferred, unwatch)) = taken {
            let make_result = self.make_result.clone();
            deferred.resolve(Box::new(move |env: Env| {
                if let Some(unwatch) = unwatch {
                    let _ = unwatch.borrow_back(&env).and_then(|f| f.call(()));
                }
                settled(&env, &make_result, result)
            }));
        }
    }
}

/// Builds the `RunResult` object (on the JS thread).
fn settled(env: &Env, make_result: &JsFn, result: RunResult) -> napi::Result<ObjectRef<false>> {
    let base = result::base(env, &result)?;
    let load: Function<'_, u32, ObjectRef<false>> =
        env.create_function_from_closure("load", move |ctx: FunctionCallContext<'_>| {
            let env = *ctx.env;
            guard(&env, || {
                let part: u32 = ctx.get(0)?;
                result::lazy_part(&env, &result, part)?
                    .coerce_to_object()?
                    .create_ref::<false>()
            })
        })?;
    type Load<'e> = Function<'e, u32, ObjectRef<false>>;
    let make: Function<'_, FnArgs<(Object<'_>, Load<'_>)>, Object<'_>> =
        Function::from_unknown(make_result.borrow_back(env)?.to_unknown())?;
    make.call(FnArgs::from((base, load)))?.create_ref::<false>()
}

/// The `Workflow` passed to `coordinateSystems`.
pub(crate) fn workflow_arg(env: &Env, v: Unknown<'_>) -> napi::Result<Workflow> {
    if v.get_type()? == napi::ValueType::Object
        && JsWorkflow::instance_of(env, &v)?
        && let Ok(wf) = ClassInstance::<JsWorkflow>::from_unknown(v)
    {
        return Ok(wf.inner.clone());
    }
    Err(error::invalid(
        env,
        format!(
            "workflow must be a Workflow (from workflow(), loadWorkflow() or loadWorkflowString()), got {}",
            js::type_of(&v)
        ),
    ))
}

#[napi]
impl JsOrchestrator {
    /// Adds or replaces operation `op` of `system`. Workflows built afterwards
    /// use it; already built ones keep what they resolved.
    #[napi(ts_args_type = "system: string, op: string, fn: StepFn")]
    pub fn set_operation(
        &self,
        env: &Env,
        system: Unknown<'_>,
        op: Unknown<'_>,
        f: Unknown<'_>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let system = js::string(env, system, "system")?;
            let op = js::string(env, op, "op")?;
            let f = context::step_function(env, f, "fn")?;
            let f = self.bridge(env)?.shared.step_fn(Arc::new(f));
            core.set_operation_shared(&system, &op, f)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// Limits how many workflow steps of `system` run at once (`null`: no
    /// limit). Steps over the limit wait without holding a worker.
    #[napi(ts_args_type = "system: string, limit: number | null")]
    pub fn set_concurrency_limit(
        &self,
        env: &Env,
        system: Unknown<'_>,
        limit: Unknown<'_>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let system = js::string(env, system, "system")?;
            let limit = match js::opt_number(env, limit, "limit")? {
                None => None,
                Some(n) => Some(
                    u32::try_from(js::count(env, n, "limit")?)
                        .map_err(|_| error::invalid(env, format!("limit is too large: {n}")))?,
                ),
            };
            core.set_concurrency_limit(&system, limit)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// Learned duration estimates per `system.operation`.
    #[napi]
    pub fn estimates(&self, env: &Env) -> napi::Result<Vec<JsEstimate>> {
        guard(env, || {
            let core = self.open(env)?;
            Ok(core.estimates().iter().map(JsEstimate::from).collect())
        })
    }

    /// Builds a workflow from steps: validates every name (unknown steps,
    /// systems or operations, duplicates and cycles are errors naming the
    /// step; nothing runs) and compiles it.
    #[napi(ts_args_type = "name: string, steps: Array<StepSpec>")]
    pub fn workflow(
        &self,
        env: &Env,
        name: Unknown<'_>,
        steps: Unknown<'_>,
    ) -> napi::Result<JsWorkflow> {
        guard(env, || {
            let core = self.open(env)?;
            let name = js::string(env, name, "name")?;
            let steps = js::array(env, steps, "steps")?;
            let shared = self.bridge(env)?.shared;
            let mut builder = Workflow::builder(name);
            for (i, s) in steps.into_iter().enumerate() {
                builder = builder.step(build::step_spec(env, &shared, s, &format!("steps[{i}]"))?);
            }
            let inner = builder.build(core).map_err(|e| error::workflow(env, &e))?;
            Ok(JsWorkflow { inner })
        })
    }

    /// Loads a workflow definition file (`.toml` or `.json`) and builds it.
    /// `PSO_PARSE` errors carry `line`, `column` and `source`.
    #[napi(ts_args_type = "path: string")]
    pub fn load_workflow(&self, env: &Env, path: Unknown<'_>) -> napi::Result<JsWorkflow> {
        guard(env, || {
            let core = self.open(env)?;
            let path = js::string(env, path, "path")?;
            let inner = core
                .load_workflow(&path)
                .map_err(|e| error::workflow(env, &e))?;
            Ok(JsWorkflow { inner })
        })
    }

    /// Parses a workflow definition (`format` `'toml'`, the default, or
    /// `'json'`) and builds it.
    #[napi(ts_args_type = "text: string, format?: 'toml' | 'json'")]
    pub fn load_workflow_string(
        &self,
        env: &Env,
        text: Unknown<'_>,
        format: Option<Unknown<'_>>,
    ) -> napi::Result<JsWorkflow> {
        guard(env, || {
            let core = self.open(env)?;
            let text = js::string(env, text, "text")?;
            let format = topology::topology_format(env, format)?;
            let inner = core
                .load_workflow_str(&text, format)
                .map_err(|e| error::workflow(env, &e))?;
            Ok(JsWorkflow { inner })
        })
    }

    /// Starts a run of `workflow` and returns at once. Every system the
    /// workflow uses must be Active (`PSO_NOT_ACTIVE`, naming the system and
    /// step). `await run.result` for the `RunResult`.
    #[napi(ts_args_type = "workflow: Workflow, options?: RunOptions")]
    pub fn coordinate_systems(
        &self,
        env: &Env,
        workflow: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<JsRun> {
        guard(env, || {
            let core = self.open(env)?;
            let wf = workflow_arg(env, workflow)?;
            let bridge = self.bridge(env)?;
            let args = build::run_options(env, bridge.js(), options)?;
            // Taken before pso-core starts the run: never later than its own.
            let deadline = args.deadline.and_then(|d| Instant::now().checked_add(d));
            let handle = core
                .coordinate_systems_with(&wf, args.options)
                .map_err(|e| error::workflow(env, &e))?;
            bridge.shared.track_run(&handle, deadline);
            match self.observe(env, &bridge, &handle, args.signal) {
                Ok(run) => Ok(run),
                Err(e) => {
                    bridge.shared.cancel_run(&handle);
                    Err(e)
                }
            }
        })
    }

    /// The `Run` of a started run: its Promise and signal listener.
    fn observe(
        &self,
        env: &Env,
        bridge: &bridge::Bridge,
        handle: &RunHandle,
        signal: Option<Unknown<'_>>,
    ) -> napi::Result<JsRun> {
        let unwatch = match signal {
            Some(signal) => {
                let h = handle.clone();
                let shared = bridge.shared.clone();
                let cancel: Function<'_, (), bool> = env
                    .create_function_from_closure("cancel", move |_: FunctionCallContext<'_>| {
                        Ok(shared.cancel_run(&h))
                    })?;
                bridge.js().watch(env, signal, cancel)?
            }
            None => None,
        };
        // Created last: an unsettled deferred would keep the event loop alive.
        let (deferred, promise) = env.create_deferred::<ObjectRef<false>, Resolver>()?;
        let result = promise.create_ref::<false>()?;
        let completion = Arc::new(Completion {
            handle: handle.clone(),
            shared: bridge.shared.clone(),
            make_result: bridge.js().make_result()?,
            pending: Mutex::new(Some((deferred, unwatch))),
        });
        completion.poll();
        Ok(JsRun {
            handle: handle.clone(),
            shared: bridge.shared.clone(),
            result: Some(result),
        })
    }
}
