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
//! * `handle` — generation-checked orchestrator, workflow, run, lease,
//!   subscription, direct-channel end, mesh and watch handles.
//! * `error` — status codes and the thread-local last error.
//!
//! The functions are also callable from Rust through this `rlib` (the tests
//! do), but Rust programs should use `pso-core` directly.

#![forbid(unsafe_op_in_unsafe_fn)]

mod error;
mod ffi;
mod handle;

pub use crate::error::pso_status;
pub use crate::ffi::args::PSO_WAIT_FOREVER;
pub use crate::ffi::coordination::{
    pso_coordination_status, pso_deactivate_idle, pso_pin_system, pso_promote_pairs,
    pso_set_auto_promote, pso_set_idle_timeout,
};
pub use crate::ffi::direct::{
    pso_direct_close, pso_direct_end_free, pso_direct_endpoint, pso_direct_open, pso_direct_recv,
    pso_direct_send, pso_mesh_begin, pso_mesh_end,
};
pub use crate::ffi::handlers::{PSO_HANDLER_ERROR_BUF_LEN, pso_free_fn, pso_lifecycle_fn};
pub use crate::ffi::hub::{
    pso_hub_subscriptions, pso_overflow, pso_publish, pso_request, pso_request_many, pso_subscribe,
    pso_subscribe_options, pso_subscribe_pull, pso_subscription_recv, pso_unsubscribe,
};
pub use crate::ffi::intelligence::{
    pso_coordination_insights, pso_coordination_log, pso_evolution_log, pso_evolve_coordination,
    pso_learn_patterns, pso_optimization_recommendations, pso_optimize_coordination, pso_restore,
    pso_revert_change, pso_snapshot, pso_workload_fn,
};
pub use crate::ffi::lease::{
    pso_lease_held, pso_lease_id, pso_lease_info, pso_lease_on_preempt, pso_lease_release,
    pso_lease_touch, pso_preempt_fn, pso_preempt_notice,
};
pub use crate::ffi::message::{
    pso_message, pso_message_fn, pso_message_is_request, pso_message_payload, pso_message_reply,
    pso_message_sender, pso_message_topic,
};
pub use crate::ffi::metrics::{
    pso_metrics_enabled, pso_performance_metrics_json, pso_performance_metrics_prometheus,
    pso_reset_metrics, pso_set_metrics_enabled,
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
pub use crate::ffi::state::{
    pso_event_fn, pso_state_cas, pso_state_delete, pso_state_get, pso_state_list, pso_state_put,
    pso_state_restore, pso_state_revision, pso_state_snapshot, pso_state_watch, pso_watch_close,
};
pub use crate::ffi::supervision::{
    pso_check_in, pso_clock_advance, pso_health_check, pso_health_status, pso_probe_ctx,
    pso_probe_fn, pso_probe_set_detail, pso_report_failure, pso_restart_policy,
    pso_restart_strategy, pso_set_health_check, pso_set_supervision, pso_supervision,
};
pub use crate::ffi::workflow::{
    pso_coordinate_systems, pso_estimates, pso_run_cancel, pso_run_free, pso_run_minimal,
    pso_run_options, pso_run_progress, pso_run_wait, pso_run_wait_timeout,
    pso_set_concurrency_limit, pso_set_operation, pso_timing, pso_workflow_free, pso_workflow_load,
    pso_workflow_load_str,
};
pub use crate::ffi::{
    pso_activate_all, pso_activate_system, pso_connect, pso_deactivate_all, pso_deactivate_system,
    pso_export, pso_export_format, pso_last_error_message, pso_load_topology,
    pso_load_topology_str, pso_options, pso_orchestrator_close, pso_orchestrator_new,
    pso_orchestrator_workers, pso_plan, pso_register_system, pso_set_handlers, pso_status_name,
    pso_status_of, pso_string_free, pso_system_status, pso_topology_format, pso_version,
    pso_why_inactive,
};
pub use crate::handle::{
    pso_direct_end, pso_lease, pso_mesh, pso_orchestrator, pso_run, pso_subscription, pso_watch,
    pso_workflow,
};
