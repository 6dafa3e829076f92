//! [`OrchestratorBuilder`]: the settings of an [`Orchestrator`], checked
//! when it is built (workers, timeouts, estimates, scheduling, resources,
//! the hub and state store, coordination).

use std::time::Duration;

use thiserror::Error;

use super::coordination::Coord;
use super::supervision::{Supervisor, SupervisorConfig};
use super::{DEFAULT_TRANSITION_TIMEOUT, Inner, MAX_WORKERS, NEXT_ORCHESTRATOR_ID, Orchestrator};
use crate::allocator::AllocConfig;
use crate::error::{ErrorKind, PsoError};
use crate::hub::{Hub, HubConfig};
use crate::metrics::{self, MetricsConfig};
use crate::registry::Registry;
use crate::scheduler::{Pool, WorkerScope};
use crate::state::{StateBackend, StateConfig, StateStore};
use crate::supervise::VirtualClock;
use crate::supervise::clock::Clock;
use crate::supervise::monitor::FlapConfig;
use crate::sync::{Arc, AtomicBool, Mutex, RwLock};
use crate::workflow::{RunEnv, SchedulingPolicy};

/// Builds an [`Orchestrator`] with non-default settings.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let orch = pso_core::Orchestrator::builder()
///     .workers(2)
///     .transition_timeout(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(orch.workers(), 2);
/// # Ok::<(), pso_core::BuildError>(())
/// ```
#[derive(Clone)]
pub struct OrchestratorBuilder {
    workers: Option<usize>,
    transition_timeout: Duration,
    thread_name: String,
    default_estimate: Duration,
    estimate_alpha: f64,
    policy: SchedulingPolicy,
    alloc: AllocConfig,
    worker_scope: Option<WorkerScope>,
    hub: HubConfig,
    state: Option<Arc<dyn StateBackend>>,
    state_config: StateConfig,
    auto_promote: Option<Duration>,
    idle_timeout: Option<Duration>,
    virtual_clock: Option<VirtualClock>,
    supervisor: SupervisorConfig,
    metrics: bool,
    metrics_config: MetricsConfig,
}

impl std::fmt::Debug for OrchestratorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("workers", &self.workers)
            .field("transition_timeout", &self.transition_timeout)
            .field("thread_name", &self.thread_name)
            .field("worker_scope", &self.worker_scope.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for OrchestratorBuilder {
    fn default() -> Self {
        OrchestratorBuilder {
            workers: None,
            transition_timeout: DEFAULT_TRANSITION_TIMEOUT,
            thread_name: "pso-worker".into(),
            default_estimate: Duration::from_millis(1),
            estimate_alpha: 0.2,
            policy: SchedulingPolicy::CriticalPath,
            alloc: AllocConfig::default(),
            worker_scope: None,
            hub: HubConfig::default(),
            state: None,
            state_config: StateConfig::default(),
            auto_promote: None,
            idle_timeout: None,
            virtual_clock: None,
            supervisor: SupervisorConfig::default(),
            metrics: true,
            metrics_config: MetricsConfig::default(),
        }
    }
}

impl OrchestratorBuilder {
    /// The default settings: one worker per available core, 30 s transitions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of worker threads (default: available cores).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Default timeout of each lifecycle transition (a system's own
    /// `timeout` overrides it).
    pub fn transition_timeout(mut self, timeout: Duration) -> Self {
        self.transition_timeout = timeout;
        self
    }

    /// Prefix of worker thread names (default `pso-worker`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Duration assumed for a workflow step before any was measured (default
    /// 1 ms); it orders ready steps by critical path from the first run.
    pub fn default_estimate(mut self, estimate: Duration) -> Self {
        self.default_estimate = estimate;
        self
    }

    /// Weight of each new measurement in the duration estimates, in (0, 1]
    /// (default 0.2).
    pub fn estimate_alpha(mut self, alpha: f64) -> Self {
        self.estimate_alpha = alpha;
        self
    }

    /// How ready steps of one priority class are ordered (default: critical
    /// path).
    pub fn scheduling_policy(mut self, policy: SchedulingPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Runs each worker thread's whole loop inside `scope`, which must call
    /// the function it is given once (if it does not, or panics, the loop
    /// runs after it). For bindings that make a thread ready for their
    /// runtime once instead of on every call — a Python binding keeps the
    /// thread's interpreter state alive with the lock released in between.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// let entered = Arc::new(AtomicUsize::new(0));
    /// let e = entered.clone();
    /// let orch = pso_core::Orchestrator::builder()
    ///     .workers(2)
    ///     .worker_scope(Arc::new(move |run: &mut (dyn FnMut() + Send)| {
    ///         e.fetch_add(1, Ordering::SeqCst);
    ///         run();
    ///     }))
    ///     .build()?;
    /// # while entered.load(Ordering::SeqCst) < 2 { std::thread::yield_now(); }
    /// assert_eq!(entered.load(Ordering::SeqCst), 2);
    /// # Ok::<(), pso_core::BuildError>(())
    /// ```
    pub fn worker_scope(mut self, scope: WorkerScope) -> Self {
        self.worker_scope = Some(scope);
        self
    }

    /// Settings of the hub (queue capacity and overflow policy, direct
    /// channel capacity, promotion thresholds, rate window, ...). Its
    /// `workers` and `thread_name` are ignored: the hub runs callbacks on the
    /// orchestrator's workers.
    pub fn hub_config(mut self, config: HubConfig) -> Self {
        self.hub = config;
        self
    }

    /// Settings of the in-memory state store (history kept per key, ...).
    pub fn state_config(mut self, config: StateConfig) -> Self {
        self.state_config = config;
        self
    }

    /// A state store backend other than the in-memory default.
    pub fn state_backend(mut self, backend: Arc<dyn StateBackend>) -> Self {
        self.state = Some(backend);
        self
    }

    /// Checks every `every` whether a pair's message rate crossed the hub's
    /// promotion threshold (then it gets a direct channel) or a promoted
    /// pair's fell below the demotion threshold (then it goes back through
    /// the router); each change is recorded with its reason. Off by default.
    pub fn auto_promote(mut self, every: Duration) -> Self {
        self.auto_promote = Some(every);
        self
    }

    /// Minimalist mode from the start: systems idle (no run uses them, no
    /// lease held) longer than `timeout` are deactivated unless pinned. See
    /// [`Orchestrator::set_idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Runs health probes, watchdogs, restart backoff, restart intensity,
    /// flap detection and alert deduplication on `clock` instead of real
    /// time: they move only when the clock is advanced (tests).
    pub fn virtual_clock(mut self, clock: VirtualClock) -> Self {
        self.virtual_clock = Some(clock);
        self
    }

    /// A system with `threshold` health or state changes within `window` is
    /// Flapping: its alerts are suppressed until a window passes quietly
    /// (default 5 within 60 s).
    pub fn flap_detection(mut self, threshold: u32, window: Duration) -> Self {
        self.supervisor.flap = FlapConfig { threshold, window };
        self
    }

    /// The same alert (system and kind) is published at most once per
    /// `interval` (default 10 s); repeats are counted in the next one.
    pub fn alert_interval(mut self, interval: Duration) -> Self {
        self.supervisor.alert_interval = interval;
        self
    }

    /// How long a waiting resource request waits before its class improves
    /// by one (default 1 s): a request of the lowest of the five classes
    /// outranks new requests of the highest after four steps.
    pub fn resource_aging_step(mut self, step: Duration) -> Self {
        self.alloc.aging_step = step;
        self
    }

    /// How long a preempted lease's holder has between the notice and the
    /// revocation (default 1 s).
    pub fn preemption_grace(mut self, grace: Duration) -> Self {
        self.alloc.grace = grace;
        self
    }

    /// How long a lease may go untouched before `optimize_resources` proposes
    /// reclaiming it (default 60 s).
    pub fn idle_lease_after(mut self, idle: Duration) -> Self {
        self.alloc.idle_after = idle;
        self
    }

    /// Records performance metrics from the start (default) or not; see
    /// [`Orchestrator::performance_metrics`] and
    /// [`Orchestrator::set_metrics_enabled`].
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// Settings of the metrics: latency sampling of hub messages, the cap
    /// on topics tracked one by one, utilization intervals.
    pub fn metrics_config(mut self, config: MetricsConfig) -> Self {
        self.metrics_config = config;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`BuildError`] if `workers(0)` was asked for, the timeout is zero, or a
    /// thread cannot be started.
    pub fn build(self) -> Result<Orchestrator, BuildError> {
        let workers = match self.workers {
            Some(0) => {
                return Err(BuildError {
                    kind: ErrorKind::InvalidArgument,
                    message: "workers must be at least 1".into(),
                });
            }
            Some(n) if n > MAX_WORKERS => {
                return Err(BuildError {
                    kind: ErrorKind::InvalidArgument,
                    message: format!("workers must be at most {MAX_WORKERS}, got {n}"),
                });
            }
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        if self.transition_timeout.is_zero() {
            return Err(BuildError {
                kind: ErrorKind::InvalidArgument,
                message: "transition_timeout must be positive".into(),
            });
        }
        if self.auto_promote.is_some_and(|d| d.is_zero())
            || self.idle_timeout.is_some_and(|d| d.is_zero())
        {
            return Err(BuildError {
                kind: ErrorKind::InvalidArgument,
                message: "auto_promote and idle_timeout must be positive".into(),
            });
        }
        if self.supervisor.flap.threshold == 0 || self.supervisor.flap.window.is_zero() {
            return Err(BuildError {
                kind: ErrorKind::InvalidArgument,
                message: "flap detection needs a threshold of at least 1 and a positive window"
                    .into(),
            });
        }
        if self.alloc.aging_step.is_zero() {
            return Err(BuildError {
                kind: ErrorKind::InvalidArgument,
                message: "resource_aging_step must be positive".into(),
            });
        }
        if !(self.estimate_alpha > 0.0 && self.estimate_alpha <= 1.0) {
            return Err(BuildError {
                kind: ErrorKind::InvalidArgument,
                message: format!(
                    "estimate_alpha must be in (0, 1], got {}",
                    self.estimate_alpha
                ),
            });
        }
        if let Err(message) = self.metrics_config.validate() {
            return Err(BuildError {
                kind: ErrorKind::InvalidArgument,
                message,
            });
        }
        let pool = Pool::with_scope(workers, &self.thread_name, self.worker_scope.clone())
            .map_err(|e| BuildError {
                kind: ErrorKind::Io,
                message: format!("cannot start worker threads: {e}"),
            })?;
        let pool = Arc::new(pool);
        let metrics = Arc::new(metrics::Registry::new(self.metrics, self.metrics_config));
        let registry = Arc::new(RwLock::new(Registry::with_metrics(metrics.switch.clone())));
        let env = Arc::new(RunEnv::new(
            pool.clone(),
            registry.clone(),
            &self.thread_name,
            self.estimate_alpha,
            self.alloc,
            metrics.clone(),
        ));
        env.set_policy(self.policy);
        let hub = Hub::with_pool(pool.clone(), self.hub, metrics.hub.clone());
        let state = match self.state {
            Some(backend) => StateStore::with_backend(backend),
            None => StateStore::with_config(self.state_config),
        };
        let clock = match self.virtual_clock {
            Some(v) => Clock::Virtual(v),
            None => Clock::Real(env.timer.clone()),
        };
        let orch = Orchestrator {
            inner: Arc::new(Inner {
                sup: Supervisor::new(clock, self.supervisor),
                intel: Mutex::new(Default::default()),
                hub,
                state,
                coord: Mutex::new(Coord::default()),
                id: NEXT_ORCHESTRATOR_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                registry,
                env,
                metrics,
                default_estimate_ns: self.default_estimate.as_nanos().min(u64::MAX as u128) as u64,
                pool,
                lifecycle: Mutex::new(()),
                closed: AtomicBool::new(false),
                start_gate: RwLock::new(()),
                transition_timeout: self.transition_timeout,
            }),
        };
        if let Some(every) = self.auto_promote {
            orch.set_auto_promote(Some(every));
        }
        if let Some(timeout) = self.idle_timeout {
            orch.set_idle_timeout(Some(timeout));
        }
        Ok(orch)
    }
}

/// Why an orchestrator could not be built.
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct BuildError {
    kind: ErrorKind,
    message: String,
}

impl PsoError for BuildError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}
