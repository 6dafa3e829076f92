//! Snapshots of the hub and of the coordination modes, converted on access:
//! `CoordinationStatus` (with `PairStatus`, `MeshStatus`, `EdgeRate`,
//! `ModeChange`, `MinimalistStatus`, `IdleDeactivation`) and
//! `SubscriptionStatus`. Durations are float seconds, times UTC `datetime`s,
//! modes and origins their lowercase names; JSON is core's (`to_json()`).

#![forbid(unsafe_code)]

use std::time::SystemTime;

use pso_core::{
    CoordinationMode, CoordinationStatus, DirectOrigin, EdgeRate, IdleDeactivation, MeshStatus,
    MinimalistStatus, ModeChange, Overflow, PairStatus, SubscriptionStatus,
};
use pyo3::prelude::*;

use crate::lifecycle::py_repr;

/// A coordination mode's name.
pub(crate) fn mode_name(mode: CoordinationMode) -> &'static str {
    match mode {
        CoordinationMode::Hierarchical => "hierarchical",
        CoordinationMode::Direct => "direct",
        CoordinationMode::Mesh => "mesh",
        _ => "unknown",
    }
}

fn origin_name(origin: DirectOrigin) -> &'static str {
    match origin {
        DirectOrigin::Declared => "declared",
        DirectOrigin::Promoted => "promoted",
        DirectOrigin::Mesh => "mesh",
        _ => "unknown",
    }
}

/// Modes, direct pairs, meshes, per-edge rates, recent mode changes, and
/// minimalist mode's settings, at one moment.
#[pyclass(name = "CoordinationStatus", module = "pso", frozen)]
pub(crate) struct PyCoordinationStatus {
    inner: CoordinationStatus,
}

impl From<CoordinationStatus> for PyCoordinationStatus {
    fn from(inner: CoordinationStatus) -> Self {
        PyCoordinationStatus { inner }
    }
}

#[pymethods]
impl PyCoordinationStatus {
    /// The most specific mode in use: `"minimalist"` (an idle timeout is
    /// set), else `"mesh"` (a mesh is live), else `"direct"` (a pair has a
    /// direct channel), else `"hierarchical"`.
    #[getter]
    fn mode(&self) -> &'static str {
        self.inner.mode
    }

    /// Minimalist mode's settings and deactivations, or `None` if it is off.
    #[getter]
    fn minimalist(&self) -> Option<PyMinimalistStatus> {
        self.inner
            .minimalist
            .clone()
            .map(|inner| PyMinimalistStatus { inner })
    }

    /// Seconds between automatic promotion checks, or `None` (off).
    #[getter]
    fn auto_promote_every(&self) -> Option<f64> {
        self.inner.auto_promote_every.map(|d| d.as_secs_f64())
    }

    /// Pairs with a direct channel (every other pair is hierarchical).
    #[getter]
    fn direct_pairs(&self) -> Vec<PyPairStatus> {
        self.inner
            .direct_pairs
            .iter()
            .cloned()
            .map(|inner| PyPairStatus { inner })
            .collect()
    }

    /// Live meshes.
    #[getter]
    fn meshes(&self) -> Vec<PyMeshStatus> {
        self.inner
            .meshes
            .iter()
            .cloned()
            .map(|inner| PyMeshStatus { inner })
            .collect()
    }

    /// Measured message rates per edge (sender -> receiving owner).
    #[getter]
    fn edges(&self) -> Vec<PyEdgeRate> {
        self.inner
            .edges
            .iter()
            .cloned()
            .map(|inner| PyEdgeRate { inner })
            .collect()
    }

    /// Recent mode changes of pairs, oldest first.
    #[getter]
    fn changes(&self) -> Vec<PyModeChange> {
        self.inner
            .changes
            .iter()
            .cloned()
            .map(|inner| PyModeChange { inner })
            .collect()
    }

    /// Number of subscriptions.
    #[getter]
    fn subscriptions(&self) -> usize {
        self.inner.subscriptions
    }

    /// The mode of the pair `{a, b}` (`"hierarchical"` unless it has a
    /// channel). Rust's `mode(a, b)`; `mode` is the overall mode here.
    fn pair_mode(&self, a: &str, b: &str) -> &'static str {
        mode_name(self.inner.mode(a, b))
    }

    /// The status as JSON (durations in seconds, times RFC 3339).
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.CoordinationStatus mode={:?} direct_pairs={} meshes={} edges={} \
             subscriptions={}>",
            self.inner.mode,
            self.inner.direct_pairs.len(),
            self.inner.meshes.len(),
            self.inner.edges.len(),
            self.inner.subscriptions
        )
    }
}

/// One pair with a direct channel.
#[pyclass(name = "PairStatus", module = "pso", frozen)]
pub(crate) struct PyPairStatus {
    inner: PairStatus,
}

#[pymethods]
impl PyPairStatus {
    /// One system (`a` < `b` by name).
    #[getter]
    fn a(&self) -> &str {
        &self.inner.a
    }

    /// The other system.
    #[getter]
    fn b(&self) -> &str {
        &self.inner.b
    }

    /// `"direct"` or `"mesh"`.
    #[getter]
    fn mode(&self) -> &'static str {
        mode_name(self.inner.mode)
    }

    /// `"declared"`, `"promoted"` or `"mesh"`.
    #[getter]
    fn origin(&self) -> &'static str {
        origin_name(self.inner.origin)
    }

    /// The reason recorded when it was opened.
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// When it was opened.
    #[getter]
    fn since(&self) -> SystemTime {
        self.inner.since
    }

    /// Messages sent `a -> b` on the channel.
    #[getter]
    fn sent_ab(&self) -> u64 {
        self.inner.sent_ab
    }

    /// Messages sent `b -> a`.
    #[getter]
    fn sent_ba(&self) -> u64 {
        self.inner.sent_ba
    }

    /// Messages waiting `a -> b`.
    #[getter]
    fn queued_ab(&self) -> usize {
        self.inner.queued_ab
    }

    /// Messages waiting `b -> a`.
    #[getter]
    fn queued_ba(&self) -> usize {
        self.inner.queued_ba
    }

    /// Whether each side's endpoint was taken, `(a, b)`.
    #[getter]
    fn endpoints_taken(&self) -> (bool, bool) {
        (self.inner.endpoints_taken[0], self.inner.endpoints_taken[1])
    }

    /// The mesh it belongs to, if any.
    #[getter]
    fn mesh(&self) -> Option<u64> {
        self.inner.mesh
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "PairStatus(a={}, b={}, mode={}, origin={}, reason={})",
            py_repr(py, &self.inner.a)?,
            py_repr(py, &self.inner.b)?,
            py_repr(py, mode_name(self.inner.mode))?,
            py_repr(py, origin_name(self.inner.origin))?,
            py_repr(py, &self.inner.reason)?
        ))
    }
}

/// A live mesh scope.
#[pyclass(name = "MeshStatus", module = "pso", frozen)]
pub(crate) struct PyMeshStatus {
    inner: MeshStatus,
}

#[pymethods]
impl PyMeshStatus {
    /// Its id.
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id
    }

    /// Its systems.
    #[getter]
    fn systems(&self) -> Vec<String> {
        self.inner.systems.clone()
    }

    /// When it was opened.
    #[getter]
    fn since(&self) -> SystemTime {
        self.inner.since
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "MeshStatus(id={}, systems={})",
            self.inner.id,
            py_repr(py, self.inner.systems.clone())?
        ))
    }
}

/// The measured message rate of one edge.
#[pyclass(name = "EdgeRate", module = "pso", frozen)]
pub(crate) struct PyEdgeRate {
    inner: EdgeRate,
}

#[pymethods]
impl PyEdgeRate {
    /// The sending system (`from` is a Python keyword, hence `from_`).
    #[getter]
    fn from_(&self) -> &str {
        &self.inner.from
    }

    /// The receiving system (owner of the subscription, or direct peer).
    #[getter]
    fn to(&self) -> &str {
        &self.inner.to
    }

    /// Messages per second (moving average).
    #[getter]
    fn rate(&self) -> f64 {
        self.inner.rate
    }

    /// Messages routed through the hub so far.
    #[getter]
    fn routed(&self) -> u64 {
        self.inner.routed
    }

    /// Messages sent on direct channels so far.
    #[getter]
    fn direct(&self) -> u64 {
        self.inner.direct
    }

    /// The pair's mode now.
    #[getter]
    fn mode(&self) -> &'static str {
        mode_name(self.inner.mode)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "EdgeRate(from_={}, to={}, rate={}, routed={}, direct={}, mode={})",
            py_repr(py, &self.inner.from)?,
            py_repr(py, &self.inner.to)?,
            py_repr(py, self.inner.rate)?,
            self.inner.routed,
            self.inner.direct,
            py_repr(py, mode_name(self.inner.mode))?
        ))
    }
}

/// A recorded mode change of a pair.
#[pyclass(name = "ModeChange", module = "pso", frozen)]
pub(crate) struct PyModeChange {
    inner: ModeChange,
}

#[pymethods]
impl PyModeChange {
    /// One system.
    #[getter]
    fn a(&self) -> &str {
        &self.inner.a
    }

    /// The other.
    #[getter]
    fn b(&self) -> &str {
        &self.inner.b
    }

    /// The mode before (`from_`: `from` is a Python keyword).
    #[getter]
    fn from_(&self) -> &'static str {
        mode_name(self.inner.from)
    }

    /// The mode after.
    #[getter]
    fn to(&self) -> &'static str {
        mode_name(self.inner.to)
    }

    /// Why.
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// When.
    #[getter]
    fn at(&self) -> SystemTime {
        self.inner.at
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ModeChange(a={}, b={}, from_={}, to={}, reason={})",
            py_repr(py, &self.inner.a)?,
            py_repr(py, &self.inner.b)?,
            py_repr(py, mode_name(self.inner.from))?,
            py_repr(py, mode_name(self.inner.to))?,
            py_repr(py, &self.inner.reason)?
        ))
    }
}

/// Minimalist mode: its idle timeout, pinned systems, how long each active
/// system has been idle, and what it deactivated.
#[pyclass(name = "MinimalistStatus", module = "pso", frozen)]
pub(crate) struct PyMinimalistStatus {
    inner: MinimalistStatus,
}

#[pymethods]
impl PyMinimalistStatus {
    /// Seconds of idleness after which a system is deactivated.
    #[getter]
    fn idle_timeout(&self) -> f64 {
        self.inner.idle_timeout.as_secs_f64()
    }

    /// Pinned systems (never deactivated for being idle).
    #[getter]
    fn pinned(&self) -> Vec<String> {
        self.inner.pinned.clone()
    }

    /// Active systems with the seconds each has been idle (0 while a run
    /// uses it), in registration order.
    #[getter]
    fn idle(&self) -> Vec<(String, f64)> {
        self.inner.idle.clone()
    }

    /// Recent deactivations for idleness, oldest first.
    #[getter]
    fn deactivated(&self) -> Vec<PyIdleDeactivation> {
        self.inner
            .deactivated
            .iter()
            .cloned()
            .map(|inner| PyIdleDeactivation { inner })
            .collect()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "MinimalistStatus(idle_timeout={}, pinned={}, deactivated={})",
            py_repr(py, self.inner.idle_timeout.as_secs_f64())?,
            py_repr(py, self.inner.pinned.clone())?,
            self.inner.deactivated.len()
        ))
    }
}

/// A system minimalist mode deactivated for being idle.
#[pyclass(name = "IdleDeactivation", module = "pso", frozen)]
pub(crate) struct PyIdleDeactivation {
    inner: IdleDeactivation,
}

#[pymethods]
impl PyIdleDeactivation {
    /// The system.
    #[getter]
    fn system(&self) -> &str {
        &self.inner.system
    }

    /// How long it had been idle, seconds.
    #[getter]
    fn idle_secs(&self) -> f64 {
        self.inner.idle_secs
    }

    /// When.
    #[getter]
    fn at(&self) -> SystemTime {
        self.inner.at
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "IdleDeactivation(system={}, idle_secs={})",
            py_repr(py, &self.inner.system)?,
            py_repr(py, self.inner.idle_secs)?
        ))
    }
}

/// One subscription's queue and counters.
#[pyclass(name = "SubscriptionStatus", module = "pso", frozen)]
pub(crate) struct PySubscriptionStatus {
    inner: SubscriptionStatus,
}

impl From<SubscriptionStatus> for PySubscriptionStatus {
    fn from(inner: SubscriptionStatus) -> Self {
        PySubscriptionStatus { inner }
    }
}

/// An overflow policy's name and, for `block`, its timeout in seconds.
pub(crate) fn policy_parts(policy: Overflow) -> (&'static str, Option<f64>) {
    match policy {
        Overflow::Block(d) => ("block", Some(d.as_secs_f64())),
        other => (other.name(), None),
    }
}

#[pymethods]
impl PySubscriptionStatus {
    /// Its id.
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id.0
    }

    /// The pattern it listens to.
    #[getter]
    fn pattern(&self) -> &str {
        &self.inner.pattern
    }

    /// Its queue group, if any.
    #[getter]
    fn group(&self) -> Option<&str> {
        self.inner.group.as_deref()
    }

    /// Its owning system, if any.
    #[getter]
    fn owner(&self) -> Option<&str> {
        self.inner.owner.as_deref()
    }

    /// `"callback"` or `"pull"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    /// Messages queued now.
    #[getter]
    fn queue_len(&self) -> usize {
        self.inner.queue_len
    }

    /// Queue capacity.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Overflow policy: `"block"`, `"drop_oldest"`, `"drop_newest"` or
    /// `"error"`.
    #[getter]
    fn overflow(&self) -> &'static str {
        policy_parts(self.inner.policy).0
    }

    /// Seconds a publisher waits under `block`, else `None`.
    #[getter]
    fn block_timeout(&self) -> Option<f64> {
        policy_parts(self.inner.policy).1
    }

    /// Messages handed to the callback (that returned) or to a receiver.
    #[getter]
    fn delivered(&self) -> u64 {
        self.inner.delivered
    }

    /// Messages dropped or refused by the overflow policy.
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped
    }

    /// Callback calls that raised (also written to `sys.unraisablehook`).
    #[getter]
    fn errors(&self) -> u64 {
        self.inner.errors + self.inner.panics
    }

    /// Whether it was unsubscribed.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.closed
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "SubscriptionStatus(id={}, pattern={}, kind={}, queue_len={}, capacity={}, \
             overflow={}, delivered={}, dropped={}, errors={})",
            self.inner.id.0,
            py_repr(py, &self.inner.pattern)?,
            py_repr(py, self.inner.kind)?,
            self.inner.queue_len,
            self.inner.capacity,
            py_repr(py, policy_parts(self.inner.policy).0)?,
            self.inner.delivered,
            self.inner.dropped,
            self.inner.errors + self.inner.panics
        ))
    }
}
