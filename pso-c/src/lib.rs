//! # pso-c — the C API of PSO
//!
//! `libpso` (`libpso.so` / `libpso.a`) with the header `include/pso.h`,
//! generated from this crate by cbindgen. The API is the one documented in
//! `docs/API.md` (C column); every function returns a [`pso_status`], whose
//! values are pso-core's [`pso_core::ErrorKind`] codes.
//!
//! # Layout
//! * `ffi` — the exported functions, the panic boundary, and
//!   argument checks (the only `unsafe` code).
//! * `handle` — generation-checked orchestrator, workflow, run and lease
//!   handles.
//! * `error` — status codes and the thread-local last error.
//!
//! The functions are also callable from Rust through this `rlib` (the tests
//! do), but Rust programs should use `pso-core` directly.

#![forbid(unsafe_op_in_unsafe_fn)]

mod error;
mod ffi;
mod handle;

pub use crate::error::pso_status;
pub use crate::ffi::handlers::{PSO_HANDLER_ERROR_BUF_LEN, pso_free_fn, pso_lifecycle_fn};
pub use crate::ffi::lease::{
    pso_lease_held, pso_lease_id, pso_lease_info, pso_lease_on_preempt, pso_lease_release,
    pso_lease_touch, pso_preempt_fn, pso_preempt_notice,
};
pub use crate::ffi::ops::{
    pso_op_fn, pso_step_attempt, pso_step_cancelled, pso_step_ctx, pso_step_input,
    pso_step_input_named, pso_step_name, pso_step_set_error, pso_step_set_output,
};
pub use crate::ffi::resources::{
    pso_allocate_gang, pso_allocate_resources, pso_clear_group_quota, pso_optimize_resources,
    pso_resource_status, pso_set_capacity, pso_set_group_quota, pso_set_resource_weight,
    pso_set_step_resources,
};
pub use crate::ffi::workflow::{
    pso_coordinate_systems, pso_estimates, pso_run_cancel, pso_run_free, pso_run_options,
    pso_run_progress, pso_run_wait, pso_run_wait_timeout, pso_set_concurrency_limit,
    pso_set_operation, pso_timing, pso_workflow_free, pso_workflow_load, pso_workflow_load_str,
};
pub use crate::ffi::{
    pso_activate_all, pso_activate_system, pso_connect, pso_deactivate_all, pso_deactivate_system,
    pso_export, pso_export_format, pso_last_error_message, pso_load_topology,
    pso_load_topology_str, pso_options, pso_orchestrator_close, pso_orchestrator_new,
    pso_orchestrator_workers, pso_plan, pso_register_system, pso_set_handlers, pso_status_name,
    pso_status_of, pso_string_free, pso_system_status, pso_topology_format, pso_version,
    pso_why_inactive,
};
pub use crate::handle::{pso_lease, pso_orchestrator, pso_run, pso_workflow};
