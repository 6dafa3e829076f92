//! The [`Orchestrator`]: the public face of pso-core.
//!
//! It owns the registry (behind a read-write lock: status reads never wait for
//! handlers), the worker pool, and the lifecycle lock that serializes
//! lifecycle transactions. It is cheap to clone (an `Arc`) and `Send + Sync`.
//!
//! # Closing
//! [`Orchestrator::close`] refuses new calls with `Closed`, waits for a running
//! lifecycle transaction to finish (bounded by transition timeouts), then stops
//! the workers. Dropping the last clone does the same.

use std::path::Path;
use std::time::Duration;

use crate::hub::Hub;
use crate::lifecycle::{
    ActivationReport, LifecycleError, Outcome, Plan, Txn, in_lifecycle_handler, why_inactive,
};
use crate::model::{EdgeKind, EdgeSpec, HandlerError, Handlers, LifecycleAction, SystemSpec};
use crate::registry::{OrderedSet, Registry, RegistryError};
use crate::scheduler::Pool;
use crate::state::StateStore;
use crate::status::SystemStatus;
use crate::sync::{Arc, AtomicBool, Mutex, MutexGuard, Ordering, RwLock, RwLockReadGuard};
use crate::topology::{self, ExportFormat, Topology, TopologyError, TopologyFormat};
use crate::workflow::RunEnv;
use crate::workflow::run::STOP_CLOSE;

mod builder;
mod coordination;
mod intelligence;
mod metrics;
mod resources;
mod supervision;
mod workflows;

pub use builder::{BuildError, OrchestratorBuilder};

/// The largest worker pool an orchestrator accepts.
pub const MAX_WORKERS: usize = 1024;

/// The default timeout for one lifecycle transition.
pub const DEFAULT_TRANSITION_TIMEOUT: Duration = Duration::from_secs(30);

/// Source of orchestrator ids (0 is never used).
static NEXT_ORCHESTRATOR_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) struct Inner {
    id: u64,
    sup: supervision::Supervisor,
    intel: Mutex<intelligence::IntelLog>,
    hub: Hub,
    state: StateStore,
    coord: Mutex<coordination::Coord>,
    registry: Arc<RwLock<Registry>>,
    env: Arc<RunEnv>,
    metrics: Arc<crate::metrics::Registry>,
    default_estimate_ns: u64,
    pool: Arc<Pool>,
    lifecycle: Mutex<()>,
    closed: AtomicBool,
    /// Held shared by a run's start from its `closed` check until its jobs
    /// are queued, and exclusively by `close` to set `closed`: a run either
    /// is registered (and then cancelled and drained by `close`) or sees
    /// `closed`. Without it, a run started while another thread closed could
    /// queue its jobs after the workers had exited, and its waiters waited
    /// forever.
    start_gate: RwLock<()>,
    transition_timeout: Duration,
}

impl Inner {
    /// Cancels live runs, then stops the timer and the workers.
    fn shut_down(&self) {
        for run in self.env.live_runs() {
            run.stop_all(STOP_CLOSE);
        }
        self.env.alloc.close();
        self.hub.close();
        self.env.timer.shutdown();
        self.pool.shutdown();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Registers systems and their relations, activates them in dependency order
/// on a worker pool, and answers what state each is in and why.
///
/// # Examples
/// ```
/// use pso_core::{Orchestrator, SystemSpec, SystemState};
/// let orch = Orchestrator::new();
/// orch.register(SystemSpec::new("store"))?;
/// orch.register(SystemSpec::new("index").requires("store"))?;
/// orch.register(SystemSpec::new("search").requires("index").wants("store"))?;
///
/// let plan = orch.plan("search")?;
/// assert_eq!(plan.levels, vec![vec!["store"], vec!["index"], vec!["search"]]);
///
/// orch.activate_system("search")?;
/// assert_eq!(orch.status("index")?.state, SystemState::Active);
///
/// // Deactivating `store` stops what requires it first.
/// let report = orch.deactivate_system("store")?;
/// assert_eq!(report.deactivated(), vec!["search", "index", "store"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("systems", &self.len())
            .field("workers", &self.workers())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Default for Orchestrator {
    fn default() -> Self {
        Self::new()
    }
}

impl Orchestrator {
    /// An orchestrator with default settings.
    ///
    /// # Panics
    /// If the worker threads cannot be started; use [`Orchestrator::builder`]
    /// to handle that as an error.
    pub fn new() -> Orchestrator {
        OrchestratorBuilder::new()
            .build()
            .expect("cannot start PSO worker threads")
    }

    /// A builder for non-default settings.
    pub fn builder() -> OrchestratorBuilder {
        OrchestratorBuilder::new()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.inner.pool.size()
    }

    /// Number of registered systems.
    pub fn len(&self) -> usize {
        self.inner.registry.read().len()
    }

    /// Whether no system is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`Orchestrator::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn check_open_registry(&self) -> Result<(), RegistryError> {
        if self.is_closed() {
            Err(RegistryError::Closed)
        } else {
            Ok(())
        }
    }

    /// Registers one system (and the relations declared on it).
    ///
    /// # Errors
    /// [`RegistryError`]: an invalid or duplicate name, a relation to an unknown
    /// system, or an ordering cycle. The registry is unchanged on error.
    pub fn register(&self, spec: SystemSpec) -> Result<(), RegistryError> {
        self.register_batch([spec], []).map(|_| ())
    }

    /// Registers systems and extra relations as one transaction: all of them or
    /// none. Returns how many systems were added.
    ///
    /// # Errors
    /// As [`Orchestrator::register`]; the error names the offending system,
    /// relation or the whole cycle path.
    pub fn register_batch(
        &self,
        systems: impl IntoIterator<Item = SystemSpec>,
        edges: impl IntoIterator<Item = EdgeSpec>,
    ) -> Result<usize, RegistryError> {
        self.check_open_registry()?;
        let systems: Vec<SystemSpec> = systems.into_iter().collect();
        let edges: Vec<EdgeSpec> = edges.into_iter().collect();
        let mut monitors = Vec::new();
        for s in &systems {
            let checked = s
                .health
                .as_ref()
                .map_or(Ok(()), |h| h.validate())
                .and_then(|()| s.supervision.as_ref().map_or(Ok(()), |v| v.validate()));
            if let Err(m) = checked {
                return Err(RegistryError::Invalid {
                    message: format!("system '{}': {m}", s.name),
                });
            }
            if s.health.is_some() || s.supervision.is_some() {
                monitors.push((s.name.clone(), s.health.clone(), s.supervision.clone()));
            }
        }
        let added = self.inner.registry.write().apply_batch(systems, edges)?;
        self.add_monitors(monitors);
        Ok(added)
    }

    /// Adds the relation `from <kind> to`. Adding an existing relation is a no-op.
    ///
    /// # Errors
    /// Unknown systems, a self-relation, or an ordering cycle (registry unchanged).
    pub fn connect(&self, from: &str, kind: EdgeKind, to: &str) -> Result<(), RegistryError> {
        self.register_batch([], [EdgeSpec::new(from, kind, to)])
            .map(|_| ())
    }

    /// Replaces the handlers of a registered system (for systems loaded from a
    /// topology file).
    ///
    /// # Errors
    /// [`RegistryError::UnknownSystem`].
    pub fn set_handlers(&self, name: &str, handlers: Handlers) -> Result<(), RegistryError> {
        self.check_open_registry()?;
        let old = self.inner.registry.write().set_handlers(name, handlers)?;
        // Dropped after the lock is released: a host finalizer that runs when
        // a closure is dropped may call back into the orchestrator.
        drop(old);
        Ok(())
    }

    /// Loads a topology file (`.toml` or `.json`) as one transaction. Returns
    /// how many systems were added.
    ///
    /// # Errors
    /// [`TopologyError`] with the file, line and column of the problem.
    pub fn load_topology(&self, path: impl AsRef<Path>) -> Result<usize, TopologyError> {
        let path = path.as_ref();
        let format = TopologyFormat::from_path(path).ok_or_else(|| TopologyError::Format {
            message: format!(
                "cannot tell the format of {}: use a .toml or .json extension",
                path.display()
            ),
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.load(&text, format, &path.display().to_string())
    }

    /// Loads a topology from text as one transaction. Returns how many systems
    /// were added.
    ///
    /// # Errors
    /// [`TopologyError`] with the line and column of the problem.
    pub fn load_topology_str(
        &self,
        text: &str,
        format: TopologyFormat,
    ) -> Result<usize, TopologyError> {
        self.load(text, format, "<string>")
    }

    fn load(
        &self,
        text: &str,
        format: TopologyFormat,
        source_name: &str,
    ) -> Result<usize, TopologyError> {
        let (systems, edges) = Topology::parse(text, format, source_name)?.into_batch();
        self.register_batch(systems, edges)
            .map_err(|error| TopologyError::Invalid {
                source_name: source_name.to_owned(),
                position: topology::locate(text, &error),
                error,
            })
    }

    /// Exports the registry (topology only, not states).
    pub fn export(&self, format: ExportFormat) -> String {
        let reg = self.inner.registry.read();
        match format {
            ExportFormat::Json => topology::to_topology(&reg).render(TopologyFormat::Json),
            ExportFormat::Toml => topology::to_topology(&reg).render(TopologyFormat::Toml),
            ExportFormat::Dot => topology::to_dot(&reg),
            ExportFormat::Mermaid => topology::to_mermaid(&reg),
        }
    }

    /// The registry as a [`Topology`] value.
    pub fn topology(&self) -> Topology {
        topology::to_topology(&self.inner.registry.read())
    }

    /// Status of every system, in registration order.
    pub fn system_status(&self) -> Vec<SystemStatus> {
        let held = self.inner.env.alloc.held();
        let mut out: Vec<SystemStatus> = {
            let reg = self.inner.registry.read();
            reg.indices()
                .map(|i| SystemStatus::of(&reg, i, &held))
                .collect()
        };
        for s in &mut out {
            (s.health, s.supervision) = self.inner.sup.info(&s.name);
        }
        out
    }

    /// Status of one system.
    ///
    /// # Errors
    /// [`RegistryError::UnknownSystem`].
    pub fn status(&self, name: &str) -> Result<SystemStatus, RegistryError> {
        let held = self.inner.env.alloc.held();
        let mut s = {
            let reg = self.inner.registry.read();
            let idx = reg.index(name)?;
            SystemStatus::of(&reg, idx, &held)
        };
        (s.health, s.supervision) = self.inner.sup.info(name);
        Ok(s)
    }

    /// Explains why a system is (or is not) active, following failed
    /// requirements: "PBOS is Inactive: it requires PSec, which Failed at ...
    /// with '...'".
    ///
    /// # Errors
    /// [`RegistryError::UnknownSystem`].
    pub fn why_inactive(&self, name: &str) -> Result<String, RegistryError> {
        let reg = self.inner.registry.read();
        let idx = reg.index(name)?;
        Ok(why_inactive(&reg, idx))
    }

    /// The activation levels of `name` (what [`Orchestrator::activate_system`]
    /// would do), without running anything.
    ///
    /// # Errors
    /// Unknown system, or a conflict the activation would hit.
    pub fn plan(&self, name: &str) -> Result<Plan, LifecycleError> {
        let reg = self.inner.registry.read();
        let idx = reg.index(name)?;
        let closure = reg.activation_closure(&[idx]);
        if reg.has_conflicts() {
            check_conflicts(&reg, &closure.members)?;
        }
        let set = reg.order(&closure.members, LifecycleAction::Activate);
        Ok(Plan {
            target: name.to_owned(),
            levels: set
                .levels
                .iter()
                .map(|l| {
                    l.iter()
                        .map(|&p| reg.node(set.members[p as usize]).name.to_string())
                        .collect()
                })
                .collect(),
            already_active: closure
                .already_active
                .iter()
                .map(|&i| reg.node(i).name.to_string())
                .collect(),
        })
    }

    fn begin(&self, call: &'static str) -> Result<MutexGuard<'_, ()>, LifecycleError> {
        if self.is_closed() {
            return Err(LifecycleError::Closed);
        }
        if in_lifecycle_handler(self.inner.id) {
            return Err(LifecycleError::Reentrant { call });
        }
        let guard = self.inner.lifecycle.lock();
        if self.is_closed() {
            return Err(LifecycleError::Closed);
        }
        Ok(guard)
    }

    /// Prepares a transaction under the read lock `reg`, releases it (the
    /// transaction takes the write lock per transition), and runs it.
    fn transact(
        &self,
        reg: RwLockReadGuard<'_, Registry>,
        action: LifecycleAction,
        target: &str,
        reason: String,
        set: OrderedSet,
    ) -> ActivationReport {
        let txn = Txn::new(
            self.inner.id,
            &reg,
            self.inner.registry.clone(),
            self.inner.pool.clone(),
            action,
            reason,
            set,
            self.inner.transition_timeout,
            &self.inner.env.clock,
        );
        drop(reg);
        let report = txn.run(target.to_owned());
        self.record_transaction(&report);
        self.after_transaction(&report);
        self.supervise_transaction(&report);
        report
    }

    /// Activates `name` and everything it requires or wants, each system as
    /// soon as the systems it follows are Active, on the worker pool.
    /// Idempotent: an Active target is reported as `AlreadyActive`.
    ///
    /// A failing `requires` dependency is marked Failed and what requires it is
    /// not activated (`Blocked`); a failing `wants` dependency does not block.
    ///
    /// # Errors
    /// * [`LifecycleError::ActivationFailed`] if `name` did not become Active:
    ///   it names the failing chain and carries the whole report.
    /// * [`LifecycleError::Conflict`] naming both systems; nothing ran.
    /// * Unknown system, `Closed`, or `Reentrant` (called from a lifecycle handler).
    pub fn activate_system(&self, name: &str) -> Result<ActivationReport, LifecycleError> {
        let _txn = self.begin("activate_system")?;
        let reg = self.inner.registry.read();
        let idx = reg.index(name)?;
        if reg.node(idx).life.state.is_active() {
            return Ok(noop_report(
                name,
                LifecycleAction::Activate,
                Outcome::AlreadyActive,
            ));
        }
        let closure = reg.activation_closure(&[idx]);
        if reg.has_conflicts() {
            check_conflicts(&reg, &closure.members)?;
        }
        let set = reg.order(&closure.members, LifecycleAction::Activate);
        let report = self.transact(
            reg,
            LifecycleAction::Activate,
            name,
            format!("activate_system({name})"),
            set,
        );
        match report.outcome(name).map(|o| o.outcome.clone()) {
            Some(Outcome::Activated) => Ok(report),
            _ => Err(activation_failure(name, report)),
        }
    }

    /// Activates every registered system that is not Active.
    ///
    /// # Errors
    /// [`LifecycleError::ActivationFailed`] if any system failed or was
    /// blocked (the report has every outcome); conflicts as for
    /// [`Orchestrator::activate_system`].
    pub fn activate_all(&self) -> Result<ActivationReport, LifecycleError> {
        let _txn = self.begin("activate_all")?;
        let reg = self.inner.registry.read();
        let targets: Vec<_> = reg.indices().collect();
        let closure = reg.activation_closure(&targets);
        if reg.has_conflicts() {
            check_conflicts(&reg, &closure.members)?;
        }
        let set = reg.order(&closure.members, LifecycleAction::Activate);
        let report = self.transact(
            reg,
            LifecycleAction::Activate,
            "*",
            "activate_all()".into(),
            set,
        );
        match report.failures().first() {
            None => Ok(report),
            Some(_) => Err(activation_failure("*", report)),
        }
    }

    /// Deactivates `name`: first every Active system that requires it
    /// (transitively), dependents before their requirements, then `name`.
    /// A system that is not Active is reported as `NotActive`.
    ///
    /// # Errors
    /// [`LifecycleError::DeactivationFailed`] if `name`'s own handler failed (it
    /// is then Failed; dependents were still stopped); unknown system,
    /// `Closed`, `Reentrant`.
    pub fn deactivate_system(&self, name: &str) -> Result<ActivationReport, LifecycleError> {
        let _txn = self.begin("deactivate_system")?;
        let reg = self.inner.registry.read();
        let idx = reg.index(name)?;
        if !reg.node(idx).life.state.is_active() {
            return Ok(noop_report(
                name,
                LifecycleAction::Deactivate,
                Outcome::NotActive,
            ));
        }
        let members = reg.deactivation_closure(idx);
        let set = reg.order(&members, LifecycleAction::Deactivate);
        let report = self.transact(
            reg,
            LifecycleAction::Deactivate,
            name,
            format!("deactivate_system({name})"),
            set,
        );
        deactivation_result(name, report)
    }

    /// Deactivates every Active system, dependents first.
    ///
    /// # Errors
    /// [`LifecycleError::DeactivationFailed`] naming the first handler that
    /// failed (every other system was still stopped).
    pub fn deactivate_all(&self) -> Result<ActivationReport, LifecycleError> {
        let _txn = self.begin("deactivate_all")?;
        let reg = self.inner.registry.read();
        let members: Vec<_> = reg
            .indices()
            .filter(|&i| reg.node(i).life.state.is_active())
            .collect();
        let set = reg.order(&members, LifecycleAction::Deactivate);
        let report = self.transact(
            reg,
            LifecycleAction::Deactivate,
            "*",
            "deactivate_all()".into(),
            set,
        );
        match report
            .failures()
            .first()
            .map(|o| (o.system.clone(), o.outcome.error()))
        {
            None => Ok(report),
            Some((_, cause)) => Err(LifecycleError::DeactivationFailed {
                target: "*".into(),
                cause: cause.unwrap_or_else(|| HandlerError::failed("deactivation failed")),
                report: Box::new(report),
            }),
        }
    }

    /// Refuses further calls with `Closed`, waits for a running lifecycle
    /// transaction to end, cancels live workflow runs, rejects waiting
    /// resource requests (`Closed`), closes the hub, and stops the timer and
    /// the worker threads. Idempotent.
    ///
    /// Leases granted before stay valid until released or dropped; their
    /// TTLs and preemption grace periods no longer fire.
    pub fn close(&self) {
        {
            let _gate = self.inner.start_gate.write();
            if self.inner.closed.swap(true, Ordering::AcqRel) {
                return;
            }
        }
        for run in self.inner.env.live_runs() {
            run.stop_all(STOP_CLOSE);
        }
        if !in_lifecycle_handler(self.inner.id) {
            let _wait = self.inner.lifecycle.lock();
        }
        self.inner.shut_down();
    }
}

const _: () = {
    const fn check<T: Send + Sync>() {}
    check::<Orchestrator>();
};

fn check_conflicts(
    reg: &Registry,
    members: &[petgraph::stable_graph::NodeIndex],
) -> Result<(), LifecycleError> {
    let set: std::collections::HashSet<_> = members.iter().copied().collect();
    for &m in members {
        for other in reg.conflicting(m) {
            let other_active = reg.node(other).life.state.is_active();
            if other_active || set.contains(&other) {
                return Err(LifecycleError::Conflict {
                    system: reg.node(m).name.to_string(),
                    other: reg.node(other).name.to_string(),
                    other_active,
                });
            }
        }
    }
    Ok(())
}

fn noop_report(name: &str, action: LifecycleAction, outcome: Outcome) -> ActivationReport {
    ActivationReport {
        target: name.to_owned(),
        action,
        outcomes: vec![crate::lifecycle::SystemOutcome {
            system: name.to_owned(),
            outcome,
            error: None,
            level: 0,
            queued: Duration::ZERO,
            ran: Duration::ZERO,
        }],
        elapsed: Duration::ZERO,
    }
}

fn activation_failure(target: &str, report: ActivationReport) -> LifecycleError {
    let first = if target == "*" {
        report.failures().first().map(|o| o.system.clone())
    } else {
        Some(target.to_owned())
    };
    let line = first.as_deref().and_then(|f| report.outcome(f));
    let (chain, root) = match line.map(|o| &o.outcome) {
        Some(Outcome::Blocked { chain }) => (chain.clone(), chain.last().cloned()),
        Some(_) => (
            vec![line.unwrap().system.clone()],
            Some(line.unwrap().system.clone()),
        ),
        None => (vec![target.to_owned()], None),
    };
    let cause = root
        .as_deref()
        .and_then(|r| report.outcome(r))
        .and_then(|o| o.outcome.error())
        .unwrap_or_else(|| HandlerError::failed("activation failed"));
    LifecycleError::ActivationFailed {
        target: target.to_owned(),
        chain,
        cause,
        report: Box::new(report),
    }
}

fn deactivation_result(
    target: &str,
    report: ActivationReport,
) -> Result<ActivationReport, LifecycleError> {
    match report.outcome(target).and_then(|o| o.outcome.error()) {
        None => Ok(report),
        Some(cause) => Err(LifecycleError::DeactivationFailed {
            target: target.to_owned(),
            cause,
            report: Box::new(report),
        }),
    }
}
