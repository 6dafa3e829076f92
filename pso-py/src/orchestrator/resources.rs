//! The resource verbs of `pso.Orchestrator` (core's
//! `orchestrator/resources.rs`): capacities, group quotas, fairness weights,
//! leases (blocking, async and gang), per-step resources, status and
//! optimization. Requests are converted in `allocator/`; every wait happens
//! with the GIL released (`allocator::wait_blocking`).

#![forbid(unsafe_code)]

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::PyOrchestrator;
use crate::allocator::lease::PyLease;
use crate::allocator::status::{PyResourcePlan, PyResourceStatus};
use crate::allocator::{self, RequestOptions};
use crate::error::OrRaise;

#[pymethods]
impl PyOrchestrator {
    /// Declares (or changes) the capacity of resource dimension `dimension`
    /// (`cpu`, `memory`, or any counter). Raising it grants waiters at once.
    fn set_capacity(
        &self,
        py: Python<'_>,
        dimension: &str,
        capacity: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let capacity = allocator::amount(py, capacity, "capacity")?;
        py.detach(|| orch.set_capacity(dimension, capacity))
            .or_raise(py)
    }

    /// Sets (or with `None` removes) the hard quota of `group` on
    /// `dimension`: the group's leases never hold more together.
    fn set_group_quota(
        &self,
        py: Python<'_>,
        group: &str,
        dimension: &str,
        quota: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let quota = match quota.filter(|q| !q.is_none()) {
            Some(q) => Some(allocator::amount(py, q, "quota")?),
            None => None,
        };
        py.detach(|| orch.set_group_quota(group, dimension, quota))
            .or_raise(py)
    }

    /// Sets `system`'s weight in dominant-resource fairness (default 1.0): a
    /// system of weight 2 is served as if its share were half.
    fn set_resource_weight(
        &self,
        py: Python<'_>,
        system: &str,
        weight: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        if weight.is_instance_of::<pyo3::types::PyBool>() {
            return Err(PyTypeError::new_err("weight must be a number, got 'bool'"));
        }
        let weight: f64 = weight.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "weight must be a number, got '{}'",
                weight
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        py.detach(|| orch.set_resource_weight(system, weight))
            .or_raise(py)
    }

    /// Leases `amounts` (dimension -> amount) for `system`, waiting with the
    /// GIL released until they fit in policy order (at most `wait` seconds,
    /// if given; `wait=0` answers at once). Ctrl-C withdraws the request.
    /// Raises `ExceedsCapacityError`/`ExceedsQuotaError` (it could never
    /// fit), `TimeoutError` (saying what it waited for), `NotFoundError`.
    #[pyo3(signature = (
        system, amounts, *, priority = None, group = None, preemptible = false, ttl = None,
        wait = None
    ))]
    #[pyo3(
        text_signature = "(self, system, amounts, *, priority=None, group=None, \
        preemptible=False, ttl=None, wait=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn allocate_resources(
        &self,
        py: Python<'_>,
        system: String,
        amounts: &Bound<'_, PyAny>,
        priority: Option<&str>,
        group: Option<String>,
        preemptible: bool,
        ttl: Option<&Bound<'_, PyAny>>,
        wait: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyLease> {
        let orch = self.core(py)?;
        let opts = RequestOptions {
            priority,
            group,
            preemptible,
            ttl,
            wait,
        };
        let req = allocator::request(py, amounts, opts)?;
        let pending = allocator::queue(py, &orch, &[(system, req)])?;
        drop(orch);
        let mut leases = allocator::wait_blocking(py, pending)?;
        let lease = leases
            .pop()
            .ok_or_else(|| crate::error::invalid_argument(py, "no lease was granted"))?;
        Ok(PyLease::new(lease))
    }

    /// `allocate_resources` for asyncio: returns a coroutine that waits
    /// without blocking the event loop. Cancelling its task withdraws the
    /// request. Bad arguments raise at once; rejections when awaited.
    #[pyo3(signature = (
        system, amounts, *, priority = None, group = None, preemptible = false, ttl = None,
        wait = None
    ))]
    #[pyo3(
        text_signature = "(self, system, amounts, *, priority=None, group=None, \
        preemptible=False, ttl=None, wait=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn allocate_resources_async<'py>(
        &self,
        py: Python<'py>,
        system: String,
        amounts: &Bound<'py, PyAny>,
        priority: Option<&str>,
        group: Option<String>,
        preemptible: bool,
        ttl: Option<&Bound<'py, PyAny>>,
        wait: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let orch = self.core(py)?;
        let opts = RequestOptions {
            priority,
            group,
            preemptible,
            ttl,
            wait,
        };
        let req = allocator::request(py, amounts, opts)?;
        allocator::coroutine(py, orch, vec![(system, req)])
    }

    /// Leases several parts (`pso.ResourceRequest`s) all or nothing: while
    /// the gang waits, no part is held. Served at the highest priority among
    /// the parts; waits at most the shortest `wait`. One lease per part.
    fn allocate_gang(&self, py: Python<'_>, requests: &Bound<'_, PyAny>) -> PyResult<Vec<PyLease>> {
        let orch = self.core(py)?;
        let parts = allocator::gang_parts(requests)?;
        let pending = allocator::queue(py, &orch, &parts)?;
        drop(orch);
        let leases = allocator::wait_blocking(py, pending)?;
        Ok(leases.into_iter().map(PyLease::new).collect())
    }

    /// Sets (or with `None` removes) what each workflow step of `system`
    /// leases while it runs: asked for when the step is ready to run,
    /// released when its attempt ends. A rejected request fails the step.
    #[pyo3(signature = (
        system, amounts, *, priority = None, group = None, preemptible = false, ttl = None,
        wait = None
    ))]
    #[pyo3(
        text_signature = "(self, system, amounts, *, priority=None, group=None, \
        preemptible=False, ttl=None, wait=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn set_step_resources(
        &self,
        py: Python<'_>,
        system: &str,
        amounts: Option<&Bound<'_, PyAny>>,
        priority: Option<&str>,
        group: Option<String>,
        preemptible: bool,
        ttl: Option<&Bound<'_, PyAny>>,
        wait: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let orch = self.core(py)?;
        let req = match amounts.filter(|a| !a.is_none()) {
            Some(a) => Some(allocator::request(
                py,
                a,
                RequestOptions {
                    priority,
                    group,
                    preemptible,
                    ttl,
                    wait,
                },
            )?),
            None => None,
        };
        py.detach(|| orch.set_step_resources(system, req))
            .or_raise(py)
    }

    /// Capacity, allocated and free per dimension; group quotas; every lease;
    /// every waiter with why it waits, in policy order.
    fn resource_status(&self, py: Python<'_>) -> PyResult<PyResourceStatus> {
        let orch = self.core(py)?;
        Ok(py.detach(|| orch.resource_status()).into())
    }

    /// Plans (and with `apply=True`, carries out): reclaiming expired and idle
    /// leases, rebalancing toward fair shares, resizing per-system
    /// concurrency limits. A dry run changes nothing.
    #[pyo3(signature = (apply = false))]
    fn optimize_resources(&self, py: Python<'_>, apply: bool) -> PyResult<PyResourcePlan> {
        let orch = self.core(py)?;
        py.detach(|| orch.optimize_resources(apply))
            .map(PyResourcePlan::from)
            .or_raise(py)
    }
}
