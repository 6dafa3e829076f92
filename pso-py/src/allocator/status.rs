//! Snapshots: `ResourceStatus` (with `DimensionStatus`, `GroupStatus`,
//! `LeaseStatus`, `WaiterStatus`) and `ResourcePlan`, converted on access.
//! Durations are float seconds; JSON is core's (`to_json()`).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use pso_core::{
    DimensionStatus, GroupStatus, LeaseStatus, ResourcePlan, ResourceStatus, WaiterStatus,
};
use pyo3::intern;
use pyo3::prelude::*;

/// Capacity, allocation, leases and waiters, at one moment.
#[pyclass(name = "ResourceStatus", module = "pso", frozen)]
pub(crate) struct PyResourceStatus {
    inner: ResourceStatus,
}

impl From<ResourceStatus> for PyResourceStatus {
    fn from(inner: ResourceStatus) -> Self {
        PyResourceStatus { inner }
    }
}

#[pymethods]
impl PyResourceStatus {
    /// Every dimension with a capacity.
    #[getter]
    fn dimensions(&self) -> Vec<PyDimensionStatus> {
        self.inner
            .dimensions
            .iter()
            .cloned()
            .map(|inner| PyDimensionStatus { inner })
            .collect()
    }

    /// Every group (with a quota, or holding leases).
    #[getter]
    fn groups(&self) -> Vec<PyGroupStatus> {
        self.inner
            .groups
            .iter()
            .cloned()
            .map(|inner| PyGroupStatus { inner })
            .collect()
    }

    /// Every lease, oldest first.
    #[getter]
    fn leases(&self) -> Vec<PyLeaseStatus> {
        self.inner
            .leases
            .iter()
            .cloned()
            .map(|inner| PyLeaseStatus { inner })
            .collect()
    }

    /// Every waiting request, in policy order.
    #[getter]
    fn waiters(&self) -> Vec<PyWaiterStatus> {
        self.inner
            .waiters
            .iter()
            .cloned()
            .map(|inner| PyWaiterStatus { inner })
            .collect()
    }

    /// The dimension called `name`, or `None`.
    fn dimension(&self, name: &str) -> Option<PyDimensionStatus> {
        self.inner
            .dimension(name)
            .cloned()
            .map(|inner| PyDimensionStatus { inner })
    }

    /// The status as JSON (durations in seconds), as in C.
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_json())
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.ResourceStatus dimensions={} groups={} leases={} waiters={}>",
            self.inner.dimensions.len(),
            self.inner.groups.len(),
            self.inner.leases.len(),
            self.inner.waiters.len()
        )
    }
}

/// One dimension: capacity, allocated, free.
#[pyclass(name = "DimensionStatus", module = "pso", frozen)]
pub(crate) struct PyDimensionStatus {
    inner: DimensionStatus,
}

#[pymethods]
impl PyDimensionStatus {
    /// Its name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Total capacity.
    #[getter]
    fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Held by leases.
    #[getter]
    fn allocated(&self) -> u64 {
        self.inner.allocated
    }

    /// Capacity minus allocated (0 if the capacity was lowered below it).
    #[getter]
    fn free(&self) -> u64 {
        self.inner.free
    }

    fn __repr__(&self) -> String {
        format!(
            "DimensionStatus(name={:?}, capacity={}, allocated={}, free={})",
            self.inner.name, self.inner.capacity, self.inner.allocated, self.inner.free
        )
    }
}

/// One group: its quotas and what its leases hold.
#[pyclass(name = "GroupStatus", module = "pso", frozen)]
pub(crate) struct PyGroupStatus {
    inner: GroupStatus,
}

#[pymethods]
impl PyGroupStatus {
    /// Its name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Quota per dimension (only dimensions with a quota).
    #[getter]
    fn quota(&self) -> BTreeMap<String, u64> {
        self.inner.quota.clone()
    }

    /// Held by the group's leases, per dimension (only non-zero).
    #[getter]
    fn allocated(&self) -> BTreeMap<String, u64> {
        self.inner.allocated.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "GroupStatus(name={:?}, quota={:?}, allocated={:?})",
            self.inner.name, self.inner.quota, self.inner.allocated
        )
    }
}

/// One lease, as the allocator sees it.
#[pyclass(name = "LeaseStatus", module = "pso", frozen)]
pub(crate) struct PyLeaseStatus {
    inner: LeaseStatus,
}

#[pymethods]
impl PyLeaseStatus {
    /// The lease's id.
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id
    }

    /// The holder.
    #[getter]
    fn system(&self) -> &str {
        &self.inner.system
    }

    /// Its group, or `None`.
    #[getter]
    fn group(&self) -> Option<&str> {
        self.inner.group.as_deref()
    }

    /// Amounts held, by dimension.
    #[getter]
    fn amounts(&self) -> BTreeMap<String, u64> {
        self.inner.amounts.clone()
    }

    /// The priority class of its request.
    #[getter]
    fn priority(&self) -> &'static str {
        self.inner.priority.name()
    }

    /// Whether a higher class may preempt it.
    #[getter]
    fn preemptible(&self) -> bool {
        self.inner.preemptible
    }

    /// Seconds since it was granted.
    #[getter]
    fn age(&self) -> f64 {
        self.inner.age.as_secs_f64()
    }

    /// Seconds since it was last touched (or granted).
    #[getter]
    fn idle(&self) -> f64 {
        self.inner.idle.as_secs_f64()
    }

    /// Seconds left before its TTL revokes it, or `None`.
    #[getter]
    fn ttl_remaining(&self) -> Option<f64> {
        self.inner.ttl_remaining.map(|d| d.as_secs_f64())
    }

    /// Whether it was chosen for preemption (revoked after the grace period).
    #[getter]
    fn revoking(&self) -> bool {
        self.inner.revoking
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.LeaseStatus id={} system={:?} amounts={:?}{}>",
            self.inner.id,
            self.inner.system,
            self.inner.amounts,
            if self.inner.revoking { " revoking" } else { "" }
        )
    }
}

/// One waiting request and why it waits.
#[pyclass(name = "WaiterStatus", module = "pso", frozen)]
pub(crate) struct PyWaiterStatus {
    inner: WaiterStatus,
}

#[pymethods]
impl PyWaiterStatus {
    /// The requesting systems (several for a gang).
    #[getter]
    fn systems(&self) -> Vec<String> {
        self.inner.systems.clone()
    }

    /// Amounts asked for, summed over the parts.
    #[getter]
    fn amounts(&self) -> BTreeMap<String, u64> {
        self.inner.amounts.clone()
    }

    /// Its priority class.
    #[getter]
    fn priority(&self) -> &'static str {
        self.inner.priority.name()
    }

    /// Its class after aging.
    #[getter]
    fn effective_priority(&self) -> &'static str {
        self.inner.effective_priority.name()
    }

    /// Seconds it has waited.
    #[getter]
    fn waited(&self) -> f64 {
        self.inner.waited.as_secs_f64()
    }

    /// Requests ahead of it in policy order.
    #[getter]
    fn ahead(&self) -> usize {
        self.inner.ahead
    }

    /// Why it waits: `"needs 2048 memory, 512 free; 3 requests ahead"`.
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.WaiterStatus systems={:?} reason={:?}>",
            self.inner.systems, self.inner.reason
        )
    }
}

/// What `optimize_resources` found (and with `apply`, did).
#[pyclass(name = "ResourcePlan", module = "pso", frozen)]
pub(crate) struct PyResourcePlan {
    inner: ResourcePlan,
}

impl From<ResourcePlan> for PyResourcePlan {
    fn from(inner: ResourcePlan) -> Self {
        PyResourcePlan { inner }
    }
}

#[pymethods]
impl PyResourcePlan {
    /// Whether the actions were carried out.
    #[getter]
    fn applied(&self) -> bool {
        self.inner.applied
    }

    /// The actions, in order: dicts with `action` (`reclaim_expired`,
    /// `reclaim_idle`, `rebalance`, `resize_concurrency`) and its fields, as
    /// in the JSON (a new list each time).
    #[getter]
    fn actions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = py.detach(|| self.inner.to_json());
        let plan = py
            .import(intern!(py, "json"))?
            .call_method1(intern!(py, "loads"), (json,))?;
        plan.get_item(intern!(py, "actions"))
    }

    /// The plan as JSON, as in C.
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.to_json())
    }

    fn __repr__(&self) -> String {
        format!(
            "<pso.ResourcePlan applied={} actions={}>",
            if self.inner.applied { "True" } else { "False" },
            self.inner.actions.len()
        )
    }
}
