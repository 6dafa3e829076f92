//! `Orchestrator`, the JS class over `pso_core::Orchestrator`.
//!
//! # Threads
//! * Registration, status, plans and exports are quick and never run
//!   handlers: they run synchronously on the JS thread.
//! * The four lifecycle calls run handlers, which need the JS thread, so they
//!   return a Promise and run the blocking pso-core call on a helper thread
//!   (`pso-node-call`), one per call (pso-core serializes them). The Promise's
//!   deferred keeps the event loop alive until the call settles; a panic on
//!   the helper thread still settles it (`PSO_INTERNAL`).
//!
//! # Closing
//! `close()` marks the object closed at once (every later call fails with
//! `PSO_CLOSED`, reads included) and closes the core. When no lifecycle call is
//! in flight that is quick and done inline; otherwise pso-core's `close()`
//! waits for the running transaction, whose handlers need the JS thread, so it
//! runs on a helper thread (`pso-node-close`) and `close()` returns at once.
//! Handlers are weak thread-safe functions, so once nothing is pending the
//! process can exit. Workflow steps waiting for the JS thread are failed
//! first (their `ctx.signal`s abort) and pso-core then cancels their runs,
//! whose `result` Promises resolve as `cancelled` (see `workflow::context`).

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use napi::Env;
use napi::JsDeferred;
use napi::bindgen_prelude::{Object, Unknown};
use napi_derive::napi;
use pso_core::{ActivationReport, LifecycleError, Orchestrator};

use crate::error;
use crate::lifecycle::{JsActivationReport, JsPlan};
use crate::model::handler;
use crate::model::{self, js};
use crate::status::{self, JsSystemStatus};
use crate::topology;
use crate::workflow::bridge::{Bridge, Shared};

/// Ids that tie JS handlers to their orchestrator (see `model::handler`).
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

type Resolver = Box<dyn FnOnce(Env) -> napi::Result<JsActivationReport> + Send>;
type Deferred = JsDeferred<JsActivationReport, Resolver>;

/// The four lifecycle verbs.
#[derive(Debug, Clone, Copy)]
enum Verb {
    ActivateSystem,
    ActivateAll,
    DeactivateSystem,
    DeactivateAll,
}

impl Verb {
    /// The core verb's name, as pso-core reports it in `PSO_BUSY` messages.
    fn name(self) -> &'static str {
        match self {
            Verb::ActivateSystem => "activate_system",
            Verb::ActivateAll => "activate_all",
            Verb::DeactivateSystem => "deactivate_system",
            Verb::DeactivateAll => "deactivate_all",
        }
    }

    fn run(self, core: &Orchestrator, name: &str) -> Result<ActivationReport, LifecycleError> {
        match self {
            Verb::ActivateSystem => core.activate_system(name),
            Verb::ActivateAll => core.activate_all(),
            Verb::DeactivateSystem => core.deactivate_system(name),
            Verb::DeactivateAll => core.deactivate_all(),
        }
    }
}

/// Runs `f`, turning a panic into a `PSO_INTERNAL` error.
pub(crate) fn guard<T>(env: &Env, f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(error::internal(env, panic)))
}

/// Registers systems and their relations, activates them in dependency order
/// on a pool of worker threads, and answers what state each is in and why.
///
/// Handlers are JS functions `(system) => void | Promise<void>`; they run on
/// the JS thread and a returned Promise is awaited. Lifecycle calls return
/// Promises. Every error is an `Error` with `code` (`"PSO_NOT_FOUND"`, ...)
/// and `kind` (`"NOT_FOUND"`, ...); see `errorCodes()`.
#[napi(js_name = "Orchestrator")]
pub struct JsOrchestrator {
    core: Orchestrator,
    closed: Cell<bool>,
    in_flight: Arc<AtomicUsize>,
    id: u32,
    /// Runs JS step functions for the workers; set up on first use.
    bridge: RefCell<Option<Bridge>>,
}

impl Drop for JsOrchestrator {
    fn drop(&mut self) {
        // Collected without close(): the hub's binding-side state goes too.
        crate::hub::forget(self.id);
    }
}

impl std::fmt::Debug for JsOrchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("core", &self.core)
            .field("closed", &self.closed.get())
            .finish_non_exhaustive()
    }
}

#[napi]
impl JsOrchestrator {
    /// Starts an orchestrator and its worker threads.
    #[napi(constructor, ts_args_type = "options?: OrchestratorOptions")]
    pub fn new(env: Env, options: Option<Unknown<'_>>) -> napi::Result<Self> {
        guard(&env, || {
            let opts = model::options(&env, options)?;
            let mut builder = Orchestrator::builder().thread_name("pso-worker");
            if let Some(n) = opts.workers {
                builder = builder.workers(n);
            }
            if let Some(t) = opts.transition_timeout {
                builder = builder.transition_timeout(t);
            }
            if let Some(d) = opts.resource_aging_step {
                builder = builder.resource_aging_step(d);
            }
            if let Some(d) = opts.preemption_grace {
                builder = builder.preemption_grace(d);
            }
            if let Some(d) = opts.idle_lease_after {
                builder = builder.idle_lease_after(d);
            }
            if let Some(h) = opts.hub {
                builder = builder.hub_config(h);
            }
            if let Some(d) = opts.auto_promote {
                builder = builder.auto_promote(d);
            }
            if let Some(d) = opts.idle_timeout {
                builder = builder.idle_timeout(d);
            }
            // With a virtual clock, its in-flight counter (see `supervision`).
            let in_flight = opts.supervision.in_flight();
            builder = opts.supervision.apply(builder);
            builder = opts.metrics.apply(builder);
            let core = builder.build().map_err(|e| error::plain(&env, &e))?;
            Ok(JsOrchestrator {
                core,
                closed: Cell::new(false),
                in_flight: in_flight.unwrap_or_else(|| Arc::new(AtomicUsize::new(0))),
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                bridge: RefCell::new(None),
            })
        })
    }

    /// Ties binding-side state (the hub's) to this orchestrator.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn open(&self, env: &Env) -> napi::Result<&Orchestrator> {
        if self.closed.get() {
            Err(error::closed(env))
        } else {
            Ok(&self.core)
        }
    }

    /// This orchestrator's id (see `model::handler`).
    pub(crate) fn owner(&self) -> u32 {
        self.id
    }

    /// Calls in flight on helper threads (see `close`, `promise`).
    pub(crate) fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    /// The bridge that runs JS step functions (see `workflow::context`).
    pub(crate) fn bridge(&self, env: &Env) -> napi::Result<Bridge> {
        if let Some(b) = &*self.bridge.borrow() {
            return Ok(b.clone());
        }
        let b = Bridge::new(env)?;
        *self.bridge.borrow_mut() = Some(b.clone());
        Ok(b)
    }

    /// What `model::system_spec` needs to wrap `operations`.
    fn ops<'a>(&'a self, env: &'a Env) -> impl Fn() -> napi::Result<Arc<Shared>> + 'a {
        move || Ok(self.bridge(env)?.shared)
    }

    /// Number of worker threads.
    #[napi(getter)]
    pub fn workers(&self) -> u32 {
        u32::try_from(self.core.workers()).unwrap_or(u32::MAX)
    }

    /// Number of registered systems.
    #[napi(getter)]
    pub fn size(&self) -> u32 {
        u32::try_from(self.core.len()).unwrap_or(u32::MAX)
    }

    /// Registers one system and the relations declared on it. Nothing changes
    /// on error (`PSO_INVALID_ARGUMENT`, `PSO_ALREADY_EXISTS`, `PSO_NOT_FOUND`,
    /// `PSO_CYCLE` with `path`).
    #[napi(ts_args_type = "spec: SystemSpec")]
    pub fn register(&self, env: &Env, spec: Unknown<'_>) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let spec = model::system_spec(env, self.id, &self.ops(env), spec, "spec")?;
            core.register(spec).map_err(|e| error::registry(env, &e))
        })
    }

    /// Registers systems and extra relations as one transaction: all of them
    /// or none. Returns how many systems were added.
    #[napi(ts_args_type = "systems: Array<SystemSpec>, edges?: Array<EdgeSpec>")]
    pub fn register_many(
        &self,
        env: &Env,
        systems: Unknown<'_>,
        edges: Option<Unknown<'_>>,
    ) -> napi::Result<u32> {
        guard(env, || {
            let core = self.open(env)?;
            let specs = js::array(env, systems, "systems")?
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    model::system_spec(env, self.id, &self.ops(env), s, &format!("systems[{i}]"))
                })
                .collect::<napi::Result<Vec<_>>>()?;
            let edges = match edges {
                Some(e) if !js::is_nullish(&e) => js::array(env, e, "edges")?
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| model::edge_spec(env, e, &format!("edges[{i}]")))
                    .collect::<napi::Result<Vec<_>>>()?,
                _ => Vec::new(),
            };
            let added = core
                .register_batch(specs, edges)
                .map_err(|e| error::registry(env, &e))?;
            Ok(u32::try_from(added).unwrap_or(u32::MAX))
        })
    }

    /// Adds the relation `from <kind> to` (a no-op if it exists).
    #[napi(
        ts_args_type = "from: string, kind: 'requires' | 'wants' | 'after' | 'conflicts' | 'interacts', to: string"
    )]
    pub fn connect(
        &self,
        env: &Env,
        from: Unknown<'_>,
        kind: Unknown<'_>,
        to: Unknown<'_>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let from = js::string(env, from, "from")?;
            let kind = model::edge_kind(env, kind, "kind")?;
            let to = js::string(env, to, "to")?;
            core.connect(&from, kind, &to)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// Replaces both handlers of a registered system (for systems loaded from
    /// a topology); a missing handler is removed.
    #[napi(ts_args_type = "name: string, handlers?: Handlers")]
    pub fn set_handlers(
        &self,
        env: &Env,
        name: Unknown<'_>,
        handlers: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let name = js::string(env, name, "name")?;
            let handlers = model::handlers(env, self.id, handlers, "handlers")?;
            core.set_handlers(&name, handlers)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// Loads a topology file (`.toml` or `.json`) as one transaction. Returns
    /// how many systems were added. `PSO_PARSE` errors carry `line`, `column`
    /// and `source`.
    #[napi(ts_args_type = "path: string")]
    pub fn load_topology(&self, env: &Env, path: Unknown<'_>) -> napi::Result<u32> {
        guard(env, || {
            let core = self.open(env)?;
            let path = js::string(env, path, "path")?;
            let added = core
                .load_topology(&path)
                .map_err(|e| error::topology(env, &e))?;
            Ok(u32::try_from(added).unwrap_or(u32::MAX))
        })
    }

    /// Loads a topology from text (`format` `'toml'`, the default, or
    /// `'json'`) as one transaction. Returns how many systems were added.
    #[napi(ts_args_type = "text: string, format?: 'toml' | 'json'")]
    pub fn load_topology_string(
        &self,
        env: &Env,
        text: Unknown<'_>,
        format: Option<Unknown<'_>>,
    ) -> napi::Result<u32> {
        guard(env, || {
            let core = self.open(env)?;
            let text = js::string(env, text, "text")?;
            let format = topology::topology_format(env, format)?;
            let added = core
                .load_topology_str(&text, format)
                .map_err(|e| error::topology(env, &e))?;
            Ok(u32::try_from(added).unwrap_or(u32::MAX))
        })
    }

    /// Activates `name` and everything it requires or wants, level by level.
    /// Idempotent. Rejects with `PSO_HANDLER_FAILED` (with `report`, `chain`,
    /// `target`, `cause`) if `name` did not become Active.
    #[napi(
        ts_args_type = "name: string",
        ts_return_type = "Promise<ActivationReport>"
    )]
    pub fn activate_system<'e>(&self, env: &'e Env, name: Unknown<'_>) -> napi::Result<Object<'e>> {
        self.lifecycle(env, Verb::ActivateSystem, Some(name))
    }

    /// Activates every registered system that is not Active. Rejects with
    /// `PSO_HANDLER_FAILED` if any system failed or was blocked.
    #[napi(ts_return_type = "Promise<ActivationReport>")]
    pub fn activate_all<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        self.lifecycle(env, Verb::ActivateAll, None)
    }

    /// Deactivates `name`, after every Active system that requires it.
    #[napi(
        ts_args_type = "name: string",
        ts_return_type = "Promise<ActivationReport>"
    )]
    pub fn deactivate_system<'e>(
        &self,
        env: &'e Env,
        name: Unknown<'_>,
    ) -> napi::Result<Object<'e>> {
        self.lifecycle(env, Verb::DeactivateSystem, Some(name))
    }

    /// Deactivates every Active system, dependents first.
    #[napi(ts_return_type = "Promise<ActivationReport>")]
    pub fn deactivate_all<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        self.lifecycle(env, Verb::DeactivateAll, None)
    }

    fn lifecycle<'e>(
        &self,
        env: &'e Env,
        verb: Verb,
        name: Option<Unknown<'_>>,
    ) -> napi::Result<Object<'e>> {
        let (deferred, promise) = env.create_deferred::<JsActivationReport, Resolver>()?;
        let prepared = guard(env, || {
            let core = self.open(env)?;
            if handler::inside_handler(env, self.id) {
                return Err(error::busy(env, verb.name()));
            }
            let name = match name {
                Some(v) => js::string(env, v, "name")?,
                None => String::new(),
            };
            Ok((core.clone(), name))
        });
        match prepared {
            Ok((core, name)) => self.spawn_call(env, deferred, verb, core, name),
            Err(e) => deferred.reject(e),
        }
        Ok(promise)
    }

    fn spawn_call(
        &self,
        env: &Env,
        deferred: Deferred,
        verb: Verb,
        core: Orchestrator,
        name: String,
    ) {
        // Shared so the Promise is settled even if the thread cannot start (an
        // unsettled deferred would keep the event loop alive forever).
        let slot = Arc::new(Mutex::new(Some(deferred)));
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        let thread_slot = slot.clone();
        let thread_in_flight = in_flight.clone();
        let spawned = thread::Builder::new()
            .name("pso-node-call".to_owned())
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| verb.run(&core, &name)));
                drop(core);
                thread_in_flight.fetch_sub(1, Ordering::AcqRel);
                let deferred = thread_slot.lock().ok().and_then(|mut d| d.take());
                if let Some(deferred) = deferred {
                    deferred.resolve(Box::new(move |env| match result {
                        Ok(Ok(report)) => Ok(JsActivationReport::from(&report)),
                        Ok(Err(e)) => Err(error::lifecycle(&env, &e)),
                        Err(panic) => Err(error::internal(&env, panic)),
                    }));
                }
            });
        if let Err(e) = spawned {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            if let Some(deferred) = slot.lock().ok().and_then(|mut d| d.take()) {
                deferred.reject(error::io(
                    env,
                    format!("cannot start a thread for {}: {e}", verb.name()),
                ));
            }
        }
    }

    /// Status of every system, in registration order.
    #[napi(ts_return_type = "Array<SystemStatus>")]
    pub fn system_status<'e>(&self, env: &'e Env) -> napi::Result<Vec<JsSystemStatus<'e>>> {
        guard(env, || {
            let core = self.open(env)?;
            core.system_status()
                .into_iter()
                .map(|s| status::status(env, s))
                .collect()
        })
    }

    /// Status of one system (`PSO_NOT_FOUND` if unknown).
    #[napi(ts_args_type = "name: string", ts_return_type = "SystemStatus")]
    pub fn status<'e>(&self, env: &'e Env, name: Unknown<'_>) -> napi::Result<JsSystemStatus<'e>> {
        guard(env, || {
            let core = self.open(env)?;
            let name = js::string(env, name, "name")?;
            let s = core.status(&name).map_err(|e| error::registry(env, &e))?;
            status::status(env, s)
        })
    }

    /// Explains why a system is (or is not) active, following failed
    /// requirements.
    #[napi(ts_args_type = "name: string")]
    pub fn why_inactive(&self, env: &Env, name: Unknown<'_>) -> napi::Result<String> {
        guard(env, || {
            let core = self.open(env)?;
            let name = js::string(env, name, "name")?;
            core.why_inactive(&name)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// The activation levels of `name`, without running anything
    /// (`PSO_CONFLICT` if the activation would hit a conflict).
    #[napi(ts_args_type = "name: string")]
    pub fn plan(&self, env: &Env, name: Unknown<'_>) -> napi::Result<JsPlan> {
        guard(env, || {
            let core = self.open(env)?;
            let name = js::string(env, name, "name")?;
            core.plan(&name)
                .map(JsPlan::from)
                .map_err(|e| error::lifecycle(env, &e))
        })
    }

    /// The registered topology as text: `'json'` (the default) and `'toml'`
    /// load back with `loadTopologyString`; `'dot'` and `'mermaid'` are
    /// diagrams.
    #[napi(ts_args_type = "format?: 'json' | 'toml' | 'dot' | 'mermaid'")]
    pub fn export(&self, env: &Env, format: Option<Unknown<'_>>) -> napi::Result<String> {
        guard(env, || {
            let core = self.open(env)?;
            let format = topology::export_format(env, format)?;
            Ok(core.export(format))
        })
    }

    /// Refuses every later call with `PSO_CLOSED` and stops the worker
    /// threads (after a running lifecycle call ends). Idempotent. Returns at
    /// once; the process can exit afterwards.
    #[napi]
    pub fn close(&self, env: &Env) {
        if self.closed.replace(true) {
            return;
        }
        crate::hub::forget(self.id);
        crate::supervision::close_probes(self.id);
        // The runs are cancelled first, so that the steps failed next end
        // `cancelled`. Steps in flight on the JS side fail now (their signals
        // abort), so waiting workers are free to stop: pso-core's close then
        // stops what is left and joins the workers.
        let bridge = self.bridge.borrow_mut().take();
        if let Some(b) = bridge {
            b.shared.cancel_all_runs();
            b.close(env);
        }
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // Nothing can be waiting for the JS thread: closing is quick.
            self.core.close();
            return;
        }
        let core = self.core.clone();
        let _ = thread::Builder::new()
            .name("pso-node-close".to_owned())
            .spawn(move || core.close());
    }

    /// Same as `close()`, for `using o = new Orchestrator()`.
    #[napi(well_known_symbol = "dispose")]
    pub fn dispose(&self, env: &Env) {
        self.close(env);
    }
}
