//! Metrics exports: `pso_performance_metrics_json`,
//! `pso_performance_metrics_prometheus`, `pso_set_metrics_enabled`,
//! `pso_metrics_enabled`, `pso_reset_metrics`, and the metrics fields of
//! `pso_options` ([`configure`]).
//!
//! The snapshot is pso-core's `PerformanceMetrics` (docs/API.md "Metrics"),
//! serialized by pso-core (`to_json`, `to_prometheus`); this module only
//! copies the text into a C string. Reading never fails for a live handle.

use std::ffi::c_char;
use std::ptr;
use std::time::Duration;

use pso_core::OrchestratorBuilder;
use pso_core::metrics::MetricsConfig;

use super::args::out;
use super::pso_options;
use crate::error::pso_status;
use crate::handle::pso_orchestrator;

/// Applies the metrics fields of `pso_options` to `builder` (zero: the
/// default; a bad utilization interval is rejected by `build`).
pub(crate) fn configure(
    mut builder: OrchestratorBuilder,
    opts: &pso_options,
) -> OrchestratorBuilder {
    if opts.metrics_disabled {
        builder = builder.metrics(false);
    }
    let defaults = MetricsConfig::default();
    let touched = opts.latency_sample_every != 0
        || opts.max_topics != 0
        || opts.utilization_interval_ms != 0
        || opts.utilization_intervals != 0;
    if touched {
        let mut config = defaults;
        if opts.latency_sample_every != 0 {
            config = config.latency_sample_every(opts.latency_sample_every);
        }
        if opts.max_topics != 0 {
            config = config.max_topics(opts.max_topics);
        }
        let interval = if opts.utilization_interval_ms == 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(opts.utilization_interval_ms)
        };
        let count = if opts.utilization_intervals == 0 {
            300
        } else {
            opts.utilization_intervals
        };
        config = config.utilization_interval(interval, count);
        builder = builder.metrics_config(config);
    }
    builder
}

/// The orchestrator's metrics as JSON in `*out` (free it with
/// `pso_string_free`): `enabled`, `since`, `taken` (RFC 3339),
/// `latency_sample_every`, `topics_tracked`, `max_topics`, `operations`
/// (per `system.op`: steps by terminal state, `retries`, `run_time`,
/// `queue_wait`), `systems` (`transitions`, handler times, `restarts`,
/// `probes`, `probe_latency`, `leases`), `edges`, `topics` (`published`,
/// `delivered`, `dropped`, `delivery_latency`, `handler_time`), `hub_share`,
/// `resources` (`capacity`, `allocated`, utilization `intervals`). Each
/// latency is {`count`, `sum`, `mean`, `p50`, `p90`, `p99`, `max`} in
/// seconds. See docs/API.md, "Metrics".
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`out`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `out` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_performance_metrics_json(
    o: pso_orchestrator,
    out: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_performance_metrics_json, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable.
        let mut out = unsafe { out!(call, out, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        out.set(call.c_string(orch.performance_metrics().to_json())?);
        Ok(())
    })
}

/// The orchestrator's metrics in Prometheus text exposition format 0.0.4 in
/// `*out` (free it with `pso_string_free`): every family once, after its
/// `# HELP` and `# TYPE` lines (`pso_operation_steps_total`,
/// `pso_system_transitions_total`, `pso_topic_published_total`,
/// `pso_operation_run_seconds`, ...; see docs/API.md, "Metrics").
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`out`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `out` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_performance_metrics_prometheus(
    o: pso_orchestrator,
    out: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_performance_metrics_prometheus, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable.
        let mut out = unsafe { out!(call, out, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        out.set(call.c_string(orch.performance_metrics().to_prometheus())?);
        Ok(())
    })
}

/// Turns recording on or off (what was recorded stays readable; while off,
/// the hot paths do one relaxed load and utilization time is not covered).
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE`.
#[unsafe(no_mangle)]
pub extern "C" fn pso_set_metrics_enabled(o: pso_orchestrator, on: bool) -> pso_status {
    ffi_boundary!(pso_set_metrics_enabled, |call| {
        call.orchestrator(o)?.set_metrics_enabled(on);
        Ok(())
    })
}

/// Whether recording is on, in `*out`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`out`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `out` is NULL or points to a writable `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_metrics_enabled(o: pso_orchestrator, out: *mut bool) -> pso_status {
    ffi_boundary!(pso_metrics_enabled, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable.
        let mut out = unsafe { out!(call, out, false)? };
        out.set(call.orchestrator(o)?.metrics_enabled());
        Ok(())
    })
}

/// Zeroes counters and histograms and forgets utilization history; gauges
/// of the present (leases held, resources allocated) are kept, and tracked
/// topics stay tracked.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE`.
#[unsafe(no_mangle)]
pub extern "C" fn pso_reset_metrics(o: pso_orchestrator) -> pso_status {
    ffi_boundary!(pso_reset_metrics, |call| {
        call.orchestrator(o)?.reset_metrics();
        Ok(())
    })
}
