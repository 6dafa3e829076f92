//! `include/pso.h` must be exactly what cbindgen (the pinned library version)
//! generates from this crate. Regenerate it with
//! `PSO_UPDATE_HEADER=1 cargo test -p pso-c --test header`.

use std::path::Path;

#[test]
fn header_is_fresh() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../include/pso.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("pso-c/cbindgen.toml parses");
    // Parse the sources directly (no `cargo metadata`): the crate has no
    // types from dependencies in its C API.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("the header is UTF-8");

    if std::env::var_os("PSO_UPDATE_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(&header, &fresh).expect("write include/pso.h");
        return;
    }
    let committed = std::fs::read_to_string(&header).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()))
            + 1;
        panic!(
            "include/pso.h is stale (first difference at line {line}); run \
             `PSO_UPDATE_HEADER=1 cargo test -p pso-c --test header` and commit it"
        );
    }
    for f in [
        "pso_orchestrator_new",
        "pso_orchestrator_close",
        "pso_orchestrator_workers",
        "pso_register_system",
        "pso_load_topology",
        "pso_load_topology_str",
        "pso_connect",
        "pso_set_handlers",
        "pso_activate_system",
        "pso_activate_all",
        "pso_deactivate_system",
        "pso_deactivate_all",
        "pso_system_status",
        "pso_status_of",
        "pso_why_inactive",
        "pso_plan",
        "pso_export",
        "pso_last_error_message",
        "pso_string_free",
        "pso_status_name",
        "pso_version",
        "pso_set_operation",
        "pso_set_concurrency_limit",
        "pso_estimates",
        "pso_workflow_load",
        "pso_workflow_load_str",
        "pso_workflow_free",
        "pso_coordinate_systems",
        "pso_run_wait",
        "pso_run_wait_timeout",
        "pso_run_cancel",
        "pso_run_progress",
        "pso_run_free",
        "pso_step_input",
        "pso_step_input_named",
        "pso_step_name",
        "pso_step_attempt",
        "pso_step_cancelled",
        "pso_step_set_output",
        "pso_step_set_error",
        "pso_set_capacity",
        "pso_set_group_quota",
        "pso_clear_group_quota",
        "pso_set_resource_weight",
        "pso_allocate_resources",
        "pso_allocate_gang",
        "pso_set_step_resources",
        "pso_resource_status",
        "pso_optimize_resources",
        "pso_lease_id",
        "pso_lease_info",
        "pso_lease_held",
        "pso_lease_touch",
        "pso_lease_on_preempt",
        "pso_lease_release",
        "pso_publish",
        "pso_subscribe",
        "pso_subscribe_pull",
        "pso_subscription_recv",
        "pso_unsubscribe",
        "pso_request",
        "pso_request_many",
        "pso_hub_subscriptions",
        "pso_message_topic",
        "pso_message_sender",
        "pso_message_payload",
        "pso_message_is_request",
        "pso_message_reply",
        "pso_direct_open",
        "pso_direct_close",
        "pso_direct_endpoint",
        "pso_direct_send",
        "pso_direct_recv",
        "pso_direct_end_free",
        "pso_mesh_begin",
        "pso_mesh_end",
        "pso_coordination_status",
        "pso_set_auto_promote",
        "pso_promote_pairs",
        "pso_set_idle_timeout",
        "pso_run_minimal",
        "pso_deactivate_idle",
        "pso_pin_system",
        "pso_state_revision",
        "pso_state_get",
        "pso_state_list",
        "pso_state_put",
        "pso_state_delete",
        "pso_state_cas",
        "pso_state_watch",
        "pso_watch_close",
        "pso_state_snapshot",
        "pso_state_restore",
    ] {
        assert!(
            fresh.contains(&format!("{f}(")),
            "{f} is missing from the header"
        );
    }
    for t in [
        "typedef struct pso_step_ctx pso_step_ctx;",
        "typedef int32_t (*pso_op_fn)(void *user_data, const struct pso_step_ctx *ctx);",
        "PSO_TIMING_OFF = 2",
        "#include <stdbool.h>",
        "typedef void (*pso_preempt_fn)(void *user_data, const struct pso_preempt_notice *notice);",
        "uint64_t idle_lease_after_ms;",
        "PSO_ERR_CANCELLED = 32",
        "typedef struct pso_message pso_message;",
        "typedef int32_t (*pso_message_fn)(const struct pso_message *m, void *user_data);",
        "typedef void (*pso_event_fn)(const char *event_json, void *user_data);",
        "PSO_OVERFLOW_ERROR = 4",
        "#define PSO_WAIT_FOREVER UINT64_MAX",
        "uint32_t overflow;",
        "double hub_promote_threshold;",
        "uint64_t idle_timeout_ms;",
    ] {
        assert!(fresh.contains(t), "{t:?} is missing from the header");
    }
}
