//! The workflow exports: operations and concurrency limits, loading
//! workflows, starting, waiting for, cancelling and releasing runs.

use std::ffi::{c_char, c_void};
use std::ptr;
use std::time::Duration;

use pso_core::{RunHandle, RunOptions, Value};

use super::args::{Call, Out, c_str, json_arg, opt_c_str, opt_ref, out, required};
use super::handlers::pso_free_fn;
use super::ops::{c_operation, pso_op_fn};
use super::{serialize_error, topology_format};
use crate::error::{Failure, pso_status};
use crate::handle::{RUNS, WORKFLOWS, pso_orchestrator, pso_run, pso_workflow};

/// Options of one run, for `pso_coordinate_systems`. Zero means "the default"
/// for every field, so `pso_run_options opts = {0};` (or passing NULL) gives
/// the defaults.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct pso_run_options {
    /// Stop the whole run (state `timed_out`) this many milliseconds after it
    /// starts. 0: no deadline.
    pub deadline_ms: u64,
    /// Per-step timing (queue wait, run time, learned estimates):
    /// `PSO_TIMING_DEFAULT` (0, on), `PSO_TIMING_ON` or `PSO_TIMING_OFF`.
    pub timing: u32,
}

/// Values of `pso_run_options.timing` (a `uint32_t`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pso_timing {
    /// The default: on.
    PSO_TIMING_DEFAULT = 0,
    /// Record per-step timing and learn durations.
    PSO_TIMING_ON = 1,
    /// No timing: `queued` and `ran` are 0 in the result, saving clock reads.
    PSO_TIMING_OFF = 2,
}

fn timing(call: Call, value: u32) -> Result<bool, Failure> {
    use pso_timing::*;
    match value {
        v if v == PSO_TIMING_DEFAULT as u32 || v == PSO_TIMING_ON as u32 => Ok(true),
        v if v == PSO_TIMING_OFF as u32 => Ok(false),
        other => Err(call.fail(
            pso_status::PSO_ERR_INVALID_ARGUMENT,
            format_args!(
                "unknown timing value {other} in 'opts' (expected PSO_TIMING_DEFAULT (0), \
                 PSO_TIMING_ON (1) or PSO_TIMING_OFF (2))"
            ),
        )),
    }
}

/// Stores a new workflow or run in its table, or fails with `PSO_ERR_BUSY`.
fn too_many(call: Call, what: &str) -> Failure {
    call.fail(
        pso_status::PSO_ERR_BUSY,
        format_args!("too many {what} handles are live (2^32)"),
    )
}

/// Sets `*out` to `result` as JSON.
fn set_result(
    call: Call,
    result: &pso_core::RunResult,
    out: &mut Out<'_, *mut c_char>,
) -> Result<(), Failure> {
    out.set(call.c_string(result.to_json())?);
    Ok(())
}

/// Adds or replaces operation `op` of system `system`, implemented by `func`.
/// Workflows built (loaded) afterwards use it; workflows built before keep
/// the operation they resolved.
///
/// `func` runs on PSO worker threads, possibly several calls at once, so it
/// and `user_data` must be thread-safe; see `pso_op_fn`.
///
/// Ownership of `user_data`, as for `pso_set_handlers`: on `PSO_OK`, PSO owns
/// it and calls `free_user_data(user_data)` (if not NULL) exactly once, on
/// any thread, when nothing can call `func` any more: after the operation is
/// replaced or the orchestrator is closed, *and* once every workflow built
/// with it (`pso_workflow_free`) and every run of those has been released and
/// has finished. Never while `func` runs. On any error, PSO does not take
/// `user_data` and never calls `free_user_data`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`system`, `op`, `func`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_NOT_FOUND` (unknown system),
/// `PSO_ERR_INVALID_ARGUMENT` (empty operation name), `PSO_ERR_CLOSED`.
///
/// # Safety
/// `system` and `op` are NULL or NUL-terminated strings. `func` is NULL or a
/// function with the `pso_op_fn` signature, callable from any thread with
/// `user_data` until `free_user_data` runs (or for as long as workflows
/// using it exist, when it is NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_operation(
    o: pso_orchestrator,
    system: *const c_char,
    op: *const c_char,
    func: pso_op_fn,
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
) -> pso_status {
    ffi_boundary!(pso_set_operation, |call| {
        // SAFETY: per `# Safety`, `system` and `op` are NULL or valid C
        // strings for the whole call.
        let (system, op) = unsafe { (c_str!(call, system)?, c_str!(call, op)?) };
        let func = required!(call, func)?;
        let orch = call.orchestrator(o)?;
        let (f, ownership) = c_operation(func, user_data, free_user_data);
        // On error (or a panic) `ownership` is dropped uncommitted, which
        // disarms `free_user_data` before the closure goes away.
        orch.set_operation_shared(system, op, f)?;
        ownership.commit();
        Ok(())
    })
}

/// Limits how many workflow steps of `system` run at once (across all runs);
/// `limit` 0 removes the limit. Steps over the limit wait without holding a
/// worker; raising the limit starts waiting steps at once.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`system`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_NOT_FOUND`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `system` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_concurrency_limit(
    o: pso_orchestrator,
    system: *const c_char,
    limit: u32,
) -> pso_status {
    ffi_boundary!(pso_set_concurrency_limit, |call| {
        // SAFETY: per `# Safety`, `system` is NULL or a valid C string.
        let system = unsafe { c_str!(call, system)? };
        let orch = call.orchestrator(o)?;
        orch.set_concurrency_limit(system, (limit != 0).then_some(limit))?;
        Ok(())
    })
}

/// The learned duration estimates of operations, as a JSON array in `*json`:
/// `[{"key": "system.op", "mean": s, "stddev": s, "samples": n}]`, durations
/// in seconds. Free it with `pso_string_free`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_estimates(o: pso_orchestrator, json: *mut *mut c_char) -> pso_status {
    ffi_boundary!(pso_estimates, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        let list: Vec<serde_json::Value> = orch
            .estimates()
            .into_iter()
            .map(|e| {
                serde_json::json!({
                    "key": e.key,
                    "mean": e.mean.as_secs_f64(),
                    "stddev": e.stddev.as_secs_f64(),
                    "samples": e.samples,
                })
            })
            .collect();
        let text = serde_json::to_string(&list).map_err(|e| serialize_error(call, e))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

fn store_workflow(
    call: Call,
    wf: pso_core::Workflow,
    out: &mut Out<'_, pso_workflow>,
) -> Result<(), Failure> {
    match WORKFLOWS.insert(wf) {
        Ok(h) => {
            out.set(h);
            Ok(())
        }
        Err(_) => Err(too_many(call, "workflow")),
    }
}

/// Loads a workflow definition file (`.toml` or `.json`, by extension) and
/// builds it for `o`: every step names a system and an operation registered
/// on `o` (see `docs/API.md` for the keys: `name`, `system`, `op`, `inputs`,
/// `after`, `retries`, `backoff_ms`, `max_backoff_ms`, `timeout_ms`,
/// `priority`, `when`). On success `*out` is a new workflow handle (release it
/// with `pso_workflow_free`); on failure the zero handle.
///
/// # Errors
/// `PSO_ERR_PARSE` (message `path:line:column: ...`), `PSO_ERR_NOT_FOUND`
/// (unknown system, operation or step; the message names the step),
/// `PSO_ERR_ALREADY_EXISTS` (duplicate step), `PSO_ERR_CYCLE`,
/// `PSO_ERR_INVALID_ARGUMENT` (unknown extension; also an unreadable file —
/// pso-core reports that as invalid, not as `PSO_ERR_IO`),
/// `PSO_ERR_NULL_POINTER` (`path`, `out`), `PSO_ERR_INVALID_UTF8` (the path
/// must be UTF-8), `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or points to a
/// writable `pso_workflow`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_workflow_load(
    o: pso_orchestrator,
    path: *const c_char,
    out: *mut pso_workflow,
) -> pso_status {
    ffi_boundary!(pso_workflow_load, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable and `path` is NULL
        // or a valid C string, for the whole call.
        let (mut out, path) = unsafe {
            (
                out!(call, out, pso_workflow::default())?,
                c_str!(call, path)?,
            )
        };
        let orch = call.orchestrator(o)?;
        let wf = orch.load_workflow(path)?;
        store_workflow(call, wf, &mut out)
    })
}

/// Parses a workflow definition from text (`format`: `PSO_FORMAT_TOML` or
/// `PSO_FORMAT_JSON`) and builds it for `o`, as `pso_workflow_load`. Parse
/// errors name the source `<string>`.
///
/// # Errors
/// As `pso_workflow_load`, and `PSO_ERR_INVALID_ARGUMENT` for an unknown
/// format.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string; `out` is NULL or points to a
/// writable `pso_workflow`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_workflow_load_str(
    o: pso_orchestrator,
    text: *const c_char,
    format: u32,
    out: *mut pso_workflow,
) -> pso_status {
    ffi_boundary!(pso_workflow_load_str, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable and `text` is NULL
        // or a valid C string, for the whole call.
        let (mut out, text) = unsafe {
            (
                out!(call, out, pso_workflow::default())?,
                c_str!(call, text)?,
            )
        };
        let format = topology_format(call, format)?;
        let orch = call.orchestrator(o)?;
        let wf = orch.load_workflow_str(text, format)?;
        store_workflow(call, wf, &mut out)
    })
}

/// Releases a workflow handle. Runs already started go on (they keep what
/// they need); the handle (and every copy) becomes stale.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` if it was already freed (double free).
#[unsafe(no_mangle)]
pub extern "C" fn pso_workflow_free(wf: pso_workflow) -> pso_status {
    ffi_boundary!(pso_workflow_free, |call| {
        let wf = WORKFLOWS.remove(wf).ok_or_else(|| call.stale(wf))?;
        drop(wf);
        Ok(())
    })
}

/// Starts a run of workflow `wf` on `o` and returns at once: steps start as
/// soon as their predecessors are done, in parallel on the worker pool.
///
/// `input_json` (nullable: JSON `null`) is the run's input: what steps without
/// named inputs see as their input. `opts` (nullable: all defaults) sets a
/// deadline and timing. On success `*out` is a new run handle: wait for it
/// with `pso_run_wait`, release it with `pso_run_free`. A workflow can be run
/// many times, also concurrently.
///
/// # Errors
/// `PSO_ERR_NOT_ACTIVE` if a system a step uses is not Active (the message
/// names the system, its state and the first step using it; nothing ran).
/// `PSO_ERR_PARSE` (`input_json` is not JSON; line and column),
/// `PSO_ERR_INVALID_ARGUMENT` (a `timing` value, or `wf` was built by another
/// orchestrator), `PSO_ERR_NULL_POINTER` (`out`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE` (`o` or `wf`), `PSO_ERR_CLOSED`.
///
/// # Safety
/// `input_json` is NULL or a NUL-terminated string; `opts` is NULL or points
/// to a readable `pso_run_options`; `out` is NULL or points to a writable
/// `pso_run`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_coordinate_systems(
    o: pso_orchestrator,
    wf: pso_workflow,
    input_json: *const c_char,
    opts: *const pso_run_options,
    out: *mut pso_run,
) -> pso_status {
    ffi_boundary!(pso_coordinate_systems, |call| {
        // SAFETY: forwarded from this function's `# Safety`.
        unsafe { start_run(call, o, wf, input_json, opts, out, false) }
    })
}

/// Minimalist mode for one task: activates only the closure of the systems
/// that `wf`'s steps use (what they require and want, in dependency order)
/// and then starts the run as `pso_coordinate_systems` does. With an idle
/// timeout set (`pso_set_idle_timeout`) those systems are deactivated again
/// once idle.
///
/// # Errors
/// `PSO_ERR_HANDLER_FAILED` if a system could not be activated (the message
/// names it and why; nothing ran; systems activated before it stay
/// Active); `PSO_ERR_BUSY` from inside a lifecycle handler; otherwise as
/// `pso_coordinate_systems`.
///
/// # Safety
/// As `pso_coordinate_systems`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_run_minimal(
    o: pso_orchestrator,
    wf: pso_workflow,
    input_json: *const c_char,
    opts: *const pso_run_options,
    out: *mut pso_run,
) -> pso_status {
    ffi_boundary!(pso_run_minimal, |call| {
        // SAFETY: forwarded from this function's `# Safety`.
        unsafe { start_run(call, o, wf, input_json, opts, out, true) }
    })
}

/// The body of `pso_coordinate_systems` (`minimal` false) and
/// `pso_run_minimal` (true).
///
/// # Safety
/// As `pso_coordinate_systems`.
unsafe fn start_run(
    call: Call,
    o: pso_orchestrator,
    wf: pso_workflow,
    input_json: *const c_char,
    opts: *const pso_run_options,
    out: *mut pso_run,
    minimal: bool,
) -> Result<(), Failure> {
    // SAFETY: per `# Safety`, `out` is NULL or writable, `input_json` NULL
    // or a valid C string and `opts` NULL or readable, for the whole call.
    let (mut out, input_json, opts) = unsafe {
        (
            out!(call, out, pso_run::default())?,
            opt_c_str!(call, input_json)?,
            opt_ref!(call, opts),
        )
    };
    let opts = opts.copied().unwrap_or_default();
    let timing = timing(call, opts.timing)?;
    let input = match input_json {
        Some(input_json) => json_arg!(call, input_json)?,
        None => Value::Null,
    };
    let orch = call.orchestrator(o)?;
    let wf = call.workflow(wf)?;
    let mut options = RunOptions::with_input(input).timing(timing);
    if opts.deadline_ms != 0 {
        options = options.deadline(Duration::from_millis(opts.deadline_ms));
    }
    let run = if minimal {
        orch.run_minimal(&wf, options)?
    } else {
        orch.coordinate_systems_with(&wf, options)?
    };
    match RUNS.insert(run) {
        Ok(h) => {
            out.set(h);
            Ok(())
        }
        Err(run) => {
            run.cancel();
            Err(too_many(call, "run"))
        }
    }
}

/// Waits until the run is done and puts its result in `*result_json` (free it
/// with `pso_string_free`): `{"id", "workflow", "state", "counts",
/// "elapsed", "outputs", "steps"}` — `state` is `succeeded`, `failed`,
/// `cancelled` or `timed_out`; `counts` has `accepted` = `succeeded` +
/// `failed` + `cancelled` + `timed_out` + `skipped`; `outputs` maps succeeded
/// steps to their output; each of `steps` has `name`, `system`, `operation`,
/// `state`, `error`, `attempts`, `queued`, `ran` (seconds), `worker`,
/// `parent`. A failed run is still `PSO_OK`: inspect `state`.
///
/// Called from an operation running on a worker of the same orchestrator, it
/// runs other steps while it waits instead of blocking the worker.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`result_json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `result_json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_run_wait(run: pso_run, result_json: *mut *mut c_char) -> pso_status {
    ffi_boundary!(pso_run_wait, |call| {
        // SAFETY: per `# Safety`, `result_json` is NULL or writable.
        let mut result_json = unsafe { out!(call, result_json, ptr::null_mut())? };
        let run: RunHandle = call.run(run)?;
        set_result(call, &run.wait(), &mut result_json)
    })
}

/// As `pso_run_wait`, waiting at most `timeout_ms` milliseconds (0: just
/// check). If the run is not done by then, returns `PSO_ERR_TIMEOUT` and
/// `*result_json` stays NULL; the run goes on.
///
/// # Errors
/// `PSO_ERR_TIMEOUT`, `PSO_ERR_NULL_POINTER` (`result_json`),
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `result_json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_run_wait_timeout(
    run: pso_run,
    timeout_ms: u64,
    result_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_run_wait_timeout, |call| {
        // SAFETY: per `# Safety`, `result_json` is NULL or writable.
        let mut result_json = unsafe { out!(call, result_json, ptr::null_mut())? };
        let handle = call.run(run)?;
        match handle.wait_timeout(Duration::from_millis(timeout_ms)) {
            Some(result) => set_result(call, &result, &mut result_json),
            None => Err(call.fail(
                pso_status::PSO_ERR_TIMEOUT,
                format_args!(
                    "run {} of workflow '{}' is not done after {timeout_ms} ms",
                    handle.id(),
                    handle.workflow()
                ),
            )),
        }
    })
}

/// Cancels the run: steps not started yet are cancelled at once, running
/// ones see `pso_step_cancelled(ctx)` become 1 and finish on their own. Does
/// nothing if the run has already finished or was stopped. The run handle
/// stays valid (wait for the result, then free it).
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE`.
#[unsafe(no_mangle)]
pub extern "C" fn pso_run_cancel(run: pso_run) -> pso_status {
    ffi_boundary!(pso_run_cancel, |call| {
        call.run(run)?.cancel();
        Ok(())
    })
}

/// A snapshot of the run's progress as JSON in `*json` (free it with
/// `pso_string_free`): `{"state": "running" | "succeeded" | ..., "counts":
/// {"accepted", "succeeded", "failed", "cancelled", "timed_out", "skipped",
/// "unfinished"}}`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_run_progress(run: pso_run, json: *mut *mut c_char) -> pso_status {
    ffi_boundary!(pso_run_progress, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let run = call.run(run)?;
        let text = serde_json::to_string(&run.progress()).map_err(|e| serialize_error(call, e))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

/// Releases a run handle. It does not stop the run (`pso_run_cancel` does);
/// the run finishes on its own. The handle (and every copy) becomes stale.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` if it was already freed (double free).
#[unsafe(no_mangle)]
pub extern "C" fn pso_run_free(run: pso_run) -> pso_status {
    ffi_boundary!(pso_run_free, |call| {
        let run = RUNS.remove(run).ok_or_else(|| call.stale(run))?;
        drop(run);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_values_are_validated() {
        let call = Call::new("pso_test");
        assert!(timing(call, 0).unwrap());
        assert!(timing(call, 1).unwrap());
        assert!(!timing(call, 2).unwrap());
        for bad in [3, u32::MAX] {
            let e = timing(call, bad).unwrap_err();
            assert_eq!(e.status, pso_status::PSO_ERR_INVALID_ARGUMENT);
            assert!(e.message.contains(&format!("unknown timing value {bad}")));
        }
    }
}
