//! The system model: what a host registers.
//!
//! A [`SystemSpec`] is plain data plus optional handlers. Names are validated on
//! registration (ASCII letters, digits, `_` and `-`, 1 to 128 bytes), because they
//! also appear in topics (`pso.alert.<system>.<kind>`), DOT and Mermaid output.
//! Handlers are `Arc<dyn Fn>` so a registry snapshot can hand them to workers
//! without holding any lock while they run.

#![forbid(unsafe_code)]

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::allocator::ResourceRequest;
use crate::supervise::{HealthCheck, Supervision};
use crate::sync::{AtomicU8, Ordering};
use crate::value::Value;
use crate::workflow::StepContext;

/// Amounts per named resource dimension (`cpu` millicores, `memory` MiB, or any
/// custom counter such as `gpu` or `db_connections`).
pub type Resources = BTreeMap<String, u64>;

/// The kind of a relation between two systems. `A <kind> B` is stored as an
/// edge from A to B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// Hard dependency: B must be Active before A activates; if B fails to
    /// activate, A is not activated; deactivating B deactivates A first.
    Requires,
    /// Soft dependency: B is activated too (before A), but A does not fail with it.
    Wants,
    /// Ordering only: if both are being activated, B goes first (and on
    /// deactivation, A goes first). Does not pull B in.
    After,
    /// A and B are never active together.
    Conflicts,
    /// A communication edge, used by coordination modes and insights. No
    /// effect on ordering.
    Interacts,
}

impl EdgeKind {
    /// Every kind, in declaration order.
    pub const ALL: [EdgeKind; 5] = [
        EdgeKind::Requires,
        EdgeKind::Wants,
        EdgeKind::After,
        EdgeKind::Conflicts,
        EdgeKind::Interacts,
    ];

    /// The lowercase name used in files and bindings (`"requires"`).
    pub fn name(self) -> &'static str {
        match self {
            EdgeKind::Requires => "requires",
            EdgeKind::Wants => "wants",
            EdgeKind::After => "after",
            EdgeKind::Conflicts => "conflicts",
            EdgeKind::Interacts => "interacts",
        }
    }

    /// Whether this edge constrains activation order (requires, wants, after).
    pub fn is_ordering(self) -> bool {
        matches!(self, EdgeKind::Requires | EdgeKind::Wants | EdgeKind::After)
    }
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for EdgeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EdgeKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown edge kind '{s}' (expected one of: requires, wants, after, conflicts, interacts)"))
    }
}

/// A priority class. Higher classes are served first by the scheduler and,
/// in later modules, the resource allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Served before everything else.
    Critical,
    /// Above normal.
    High,
    /// The default class.
    #[default]
    Normal,
    /// Below normal.
    Low,
    /// Only when nothing else waits.
    Background,
}

impl Priority {
    /// Every class, highest first.
    pub const ALL: [Priority; 5] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Background,
    ];

    /// The lowercase name (`"normal"`).
    pub fn name(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Background => "background",
        }
    }

    /// 0 for the highest class; smaller ranks are served first.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown priority '{s}' (expected one of: critical, high, normal, low, background)"))
    }
}

/// An opaque host-language object (a Python exception, a JS error) carried
/// inside a [`HandlerError`] so a binding can re-raise the original.
#[derive(Clone)]
pub struct HostPayload(Arc<dyn Any + Send + Sync>);

impl HostPayload {
    /// Wraps a host object.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        HostPayload(Arc::new(value))
    }

    /// The host object, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl fmt::Debug for HostPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostPayload(..)")
    }
}

/// Why a handler did not succeed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HandlerError {
    /// The handler returned an error.
    Failed {
        /// What the handler said.
        message: String,
    },
    /// The handler panicked; the panic was caught at the boundary.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// A host-language handler raised (Python) or threw (JS), or a C handler
    /// returned a non-zero status.
    Raised {
        /// The exception's type (`ValueError`, `TypeError`, `status 3`).
        type_name: String,
        /// The exception's message.
        message: String,
        /// The original exception, for the binding to re-attach as a cause.
        payload: Option<HostPayload>,
    },
    /// The handler did not finish within its timeout; its eventual result is
    /// ignored.
    TimedOut {
        /// The timeout that passed.
        after: Duration,
    },
}

impl HandlerError {
    /// A [`HandlerError::Failed`] with this message.
    pub fn failed(message: impl Into<String>) -> Self {
        HandlerError::Failed {
            message: message.into(),
        }
    }

    /// The original host exception, if a binding stored one.
    pub fn host_payload(&self) -> Option<&HostPayload> {
        match self {
            HandlerError::Raised { payload, .. } => payload.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::Failed { message } => f.write_str(message),
            HandlerError::Panicked { message } => write!(f, "handler panicked: {message}"),
            HandlerError::Raised {
                type_name, message, ..
            } => write!(f, "{type_name}: {message}"),
            HandlerError::TimedOut { after } => write!(
                f,
                "handler timed out after {}",
                humantime::format_duration(*after)
            ),
        }
    }
}

impl std::error::Error for HandlerError {}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        HandlerError::Failed { message }
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        HandlerError::Failed {
            message: message.to_owned(),
        }
    }
}

impl From<std::io::Error> for HandlerError {
    fn from(e: std::io::Error) -> Self {
        HandlerError::Failed {
            message: e.to_string(),
        }
    }
}

impl From<Box<dyn std::error::Error + Send + Sync>> for HandlerError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        HandlerError::Failed {
            message: e.to_string(),
        }
    }
}

/// Which lifecycle handler is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleAction {
    /// The `activate` handler.
    Activate,
    /// The `deactivate` handler.
    Deactivate,
}

impl LifecycleAction {
    /// `"activate"` or `"deactivate"`.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleAction::Activate => "activate",
            LifecycleAction::Deactivate => "deactivate",
        }
    }
}

impl fmt::Display for LifecycleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What a lifecycle handler is told about its call.
#[derive(Debug)]
pub struct LifecycleContext<'a> {
    pub(crate) system: &'a str,
    pub(crate) action: LifecycleAction,
    pub(crate) deadline: Instant,
    pub(crate) status: &'a AtomicU8,
}

impl LifecycleContext<'_> {
    /// The system whose handler this is.
    pub fn system(&self) -> &str {
        self.system
    }

    /// Activate or deactivate.
    pub fn action(&self) -> LifecycleAction {
        self.action
    }

    /// When the orchestrator stops waiting for this handler.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the orchestrator gave up waiting (the timeout passed): the
    /// handler's result will be ignored and it should return promptly.
    pub fn abandoned(&self) -> bool {
        self.status.load(Ordering::Acquire) == crate::lifecycle::MEMBER_ABANDONED
    }
}

/// A lifecycle handler: returns `Ok(())` on success.
pub type LifecycleFn = Arc<dyn Fn(&LifecycleContext<'_>) -> Result<(), HandlerError> + Send + Sync>;

/// A system operation or workflow function: reads its inputs from the step
/// context and returns its output.
pub type OpFn = Arc<dyn Fn(&StepContext<'_>) -> Result<Value, HandlerError> + Send + Sync>;

/// The handlers of one system. A system without handlers is valid: its
/// transitions succeed immediately.
#[derive(Clone, Default)]
pub struct Handlers {
    pub(crate) activate: Option<LifecycleFn>,
    pub(crate) deactivate: Option<LifecycleFn>,
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the `activate` handler.
    pub fn on_activate<F>(mut self, f: F) -> Self
    where
        F: Fn(&LifecycleContext<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.activate = Some(Arc::new(f));
        self
    }

    /// Sets the `deactivate` handler.
    pub fn on_deactivate<F>(mut self, f: F) -> Self
    where
        F: Fn(&LifecycleContext<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.deactivate = Some(Arc::new(f));
        self
    }

    /// Sets the `activate` handler from a shared function.
    pub fn with_activate(mut self, f: Option<LifecycleFn>) -> Self {
        self.activate = f;
        self
    }

    /// Sets the `deactivate` handler from a shared function.
    pub fn with_deactivate(mut self, f: Option<LifecycleFn>) -> Self {
        self.deactivate = f;
        self
    }

    /// Whether an `activate` handler is set.
    pub fn has_activate(&self) -> bool {
        self.activate.is_some()
    }

    /// Whether a `deactivate` handler is set.
    pub fn has_deactivate(&self) -> bool {
        self.deactivate.is_some()
    }

    pub(crate) fn for_action(&self, action: LifecycleAction) -> Option<&LifecycleFn> {
        match action {
            LifecycleAction::Activate => self.activate.as_ref(),
            LifecycleAction::Deactivate => self.deactivate.as_ref(),
        }
    }
}

impl fmt::Debug for SystemSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemSpec")
            .field("name", &self.name)
            .field("tier", &self.tier)
            .field("priority", &self.priority)
            .field("edges", &self.edges)
            .field("handlers", &self.handlers)
            .field("operations", &self.operations.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("activate", &self.activate.is_some())
            .field("deactivate", &self.deactivate.is_some())
            .finish()
    }
}

/// A relation between two named systems.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// The system the relation starts from (`A` in `A requires B`).
    pub from: String,
    /// The relation.
    pub kind: EdgeKind,
    /// The system it points to (`B` in `A requires B`).
    pub to: String,
}

impl EdgeSpec {
    /// `from <kind> to`.
    pub fn new(from: impl Into<String>, kind: EdgeKind, to: impl Into<String>) -> Self {
        EdgeSpec {
            from: from.into(),
            kind,
            to: to.into(),
        }
    }
}

impl fmt::Display for EdgeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.from, self.kind, self.to)
    }
}

/// Everything the orchestrator knows about a system at registration.
///
/// # Examples
/// ```
/// use pso_core::{Orchestrator, Priority, SystemSpec};
/// let orch = Orchestrator::new();
/// orch.register(SystemSpec::new("db").tier("foundation").resource("memory", 512))?;
/// orch.register(
///     SystemSpec::new("api")
///         .priority(Priority::High)
///         .requires("db")
///         .on_activate(|ctx| {
///             assert_eq!(ctx.system(), "api");
///             Ok(())
///         }),
/// )?;
/// let report = orch.activate_system("api")?;
/// assert_eq!(report.activated(), vec!["db", "api"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SystemSpec {
    pub(crate) name: String,
    pub(crate) tier: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) priority: Priority,
    pub(crate) resources: Resources,
    pub(crate) timeout: Option<Duration>,
    pub(crate) edges: Vec<(EdgeKind, String)>,
    pub(crate) handlers: Handlers,
    pub(crate) operations: BTreeMap<String, OpFn>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) step_resources: Option<ResourceRequest>,
    pub(crate) pinned: bool,
    pub(crate) health: Option<HealthCheck>,
    pub(crate) supervision: Option<Supervision>,
}

impl SystemSpec {
    /// A system with this name, no relations and no handlers.
    pub fn new(name: impl Into<String>) -> Self {
        SystemSpec {
            name: name.into(),
            tier: None,
            tags: Vec::new(),
            priority: Priority::Normal,
            resources: Resources::new(),
            timeout: None,
            edges: Vec::new(),
            handlers: Handlers::default(),
            operations: BTreeMap::new(),
            concurrency: None,
            step_resources: None,
            pinned: false,
            health: None,
            supervision: None,
        }
    }

    /// Sets the tier (for grouping in status and diagrams).
    pub fn tier(mut self, tier: impl Into<String>) -> Self {
        self.tier = Some(tier.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds several tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Sets the priority class.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Requests `amount` of resource dimension `dimension` (stored now; the
    /// allocator uses it).
    pub fn resource(mut self, dimension: impl Into<String>, amount: u64) -> Self {
        self.resources.insert(dimension.into(), amount);
        self
    }

    /// How the system's health is checked while it is Active (probes, a
    /// watchdog). See [`HealthCheck`].
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    /// How the system is supervised (restart policy, strategy, backoff,
    /// intensity). See [`Supervision`].
    pub fn supervise(mut self, supervision: Supervision) -> Self {
        self.supervision = Some(supervision);
        self
    }

    /// Keeps the system active in minimalist mode however long it is idle
    /// (see [`crate::Orchestrator::set_idle_timeout`]).
    pub fn pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
        self
    }

    /// What each workflow step of this system leases while it runs (taken
    /// when the step is ready, released when its attempt ends). See
    /// [`crate::Orchestrator::set_step_resources`].
    pub fn step_resources(mut self, request: ResourceRequest) -> Self {
        self.step_resources = Some(request);
        self
    }

    /// Sets the timeout for each lifecycle transition of this system (default:
    /// the orchestrator's transition timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds the relation `self <kind> other`.
    pub fn edge(mut self, kind: EdgeKind, other: impl Into<String>) -> Self {
        self.edges.push((kind, other.into()));
        self
    }

    /// `self requires other`.
    pub fn requires(self, other: impl Into<String>) -> Self {
        self.edge(EdgeKind::Requires, other)
    }

    /// `self wants other`.
    pub fn wants(self, other: impl Into<String>) -> Self {
        self.edge(EdgeKind::Wants, other)
    }

    /// `self after other`.
    pub fn after(self, other: impl Into<String>) -> Self {
        self.edge(EdgeKind::After, other)
    }

    /// `self conflicts other`.
    pub fn conflicts(self, other: impl Into<String>) -> Self {
        self.edge(EdgeKind::Conflicts, other)
    }

    /// `self interacts other`.
    pub fn interacts(self, other: impl Into<String>) -> Self {
        self.edge(EdgeKind::Interacts, other)
    }

    /// Sets the `activate` handler.
    pub fn on_activate<F>(mut self, f: F) -> Self
    where
        F: Fn(&LifecycleContext<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.handlers.activate = Some(Arc::new(f));
        self
    }

    /// Sets the `deactivate` handler.
    pub fn on_deactivate<F>(mut self, f: F) -> Self
    where
        F: Fn(&LifecycleContext<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.handlers.deactivate = Some(Arc::new(f));
        self
    }

    /// Adds the named operation `name`, which workflow steps can run
    /// (`op(name, input) -> output`).
    pub fn operation<F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(&StepContext<'_>) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        self.operations.insert(name.into(), Arc::new(f));
        self
    }

    /// Limits how many workflow steps of this system run at once (at least 1).
    /// Steps beyond the limit wait in a queue without holding a worker.
    pub fn concurrency(mut self, limit: u32) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// Replaces all handlers.
    pub fn handlers(mut self, handlers: Handlers) -> Self {
        self.handlers = handlers;
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The relations declared on this spec, as `(kind, other)`.
    pub fn edges(&self) -> &[(EdgeKind, String)] {
        &self.edges
    }
}

/// Checks a system name: 1 to 128 bytes of ASCII letters, digits, `_` or `-`.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("system name is empty".to_owned());
    }
    if name.len() > 128 {
        return Err(format!(
            "system name '{}…' is {} bytes long (at most 128)",
            &name[..name.floor_char_boundary(32)],
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "system name '{}' contains {:?}: names may use ASCII letters, digits, '_' and '-'",
            name.escape_debug(),
            c
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("PSO").is_ok());
        assert!(validate_name("db_primary-2").is_ok());
        assert!(validate_name("").unwrap_err().contains("empty"));
        assert!(validate_name("a.b").unwrap_err().contains("'.'"));
        assert!(validate_name("a b").unwrap_err().contains("' '"));
        assert!(
            validate_name(&"x".repeat(129))
                .unwrap_err()
                .contains("129 bytes")
        );
        assert!(validate_name("é").is_err());
    }

    #[test]
    fn kinds_and_priorities_parse() {
        for k in EdgeKind::ALL {
            assert_eq!(k.name().parse::<EdgeKind>().unwrap(), k);
        }
        assert!(
            "require"
                .parse::<EdgeKind>()
                .unwrap_err()
                .contains("unknown edge kind 'require'")
        );
        for p in Priority::ALL {
            assert_eq!(p.name().parse::<Priority>().unwrap(), p);
        }
        assert!(Priority::Critical.rank() < Priority::Background.rank());
    }

    #[test]
    fn handler_error_display() {
        assert_eq!(HandlerError::failed("nope").to_string(), "nope");
        assert_eq!(
            HandlerError::Panicked {
                message: "x".into()
            }
            .to_string(),
            "handler panicked: x"
        );
        let e = HandlerError::Raised {
            type_name: "ValueError".into(),
            message: "bad".into(),
            payload: Some(HostPayload::new(5u32)),
        };
        assert_eq!(e.to_string(), "ValueError: bad");
        assert_eq!(e.host_payload().unwrap().downcast_ref::<u32>(), Some(&5));
        assert_eq!(
            HandlerError::TimedOut {
                after: Duration::from_millis(1500)
            }
            .to_string(),
            "handler timed out after 1s 500ms"
        );
    }
}
