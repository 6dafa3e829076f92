//! The coordination exports: `pso_coordination_status`, automatic promotion
//! of hot pairs to direct channels, and minimalist mode (`pso_run_minimal`,
//! the idle timeout, `pso_deactivate_idle`, pinning).

use std::ffi::c_char;
use std::ptr;
use std::time::Duration;

use super::args::{c_str, opt_out, out};
use super::serialize_error;
use crate::error::pso_status;
use crate::handle::pso_orchestrator;

/// The coordination state as JSON in `*json` (free it with
/// `pso_string_free`): `mode` (`minimalist` if an idle timeout is set, else
/// `mesh` if a mesh is live, else `direct` if any pair has a channel, else
/// `hierarchical`), `minimalist` (`idle_timeout`, `pinned`, `idle`
/// [[system, seconds]], `deactivated` [{`system`, `idle_secs`, `at`}]) or
/// null, `auto_promote_every` (seconds or null), `direct_pairs` ({`a`, `b`,
/// `mode`, `origin`, `reason`, `since`, `sent_ab`, `sent_ba`, `queued_ab`,
/// `queued_ba`, `endpoints_taken`, `mesh`}), `meshes` ({`id`, `systems`,
/// `since`}), `edges` ({`from`, `to`, `rate`, `routed`, `direct`, `mode`}),
/// `changes` ({`a`, `b`, `from`, `to`, `reason`, `at`}), `subscriptions`
/// (a count). Durations in seconds, times RFC 3339.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_coordination_status(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_coordination_status, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        json.set(call.c_string(orch.coordination_status().to_json())?);
        Ok(())
    })
}

/// Turns automatic promotion on (checking every `every_ms` milliseconds) or
/// off (0): a pair whose measured message rate reaches the hub's promotion
/// threshold (`pso_options.hub_promote_threshold`) gets a direct channel, a
/// promoted pair whose rate falls below the demotion threshold goes back
/// through the hub; each change is recorded with its reason.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE`.
#[unsafe(no_mangle)]
pub extern "C" fn pso_set_auto_promote(o: pso_orchestrator, every_ms: u64) -> pso_status {
    ffi_boundary!(pso_set_auto_promote, |call| {
        let orch = call.orchestrator(o)?;
        orch.set_auto_promote((every_ms != 0).then(|| Duration::from_millis(every_ms)));
        Ok(())
    })
}

/// Applies the promotion candidates now (as one automatic check would):
/// promotes hot pairs, demotes cooled promoted ones. `*changed` (nullable)
/// receives how many pairs changed.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `changed` is NULL or points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_promote_pairs(o: pso_orchestrator, changed: *mut usize) -> pso_status {
    ffi_boundary!(pso_promote_pairs, |call| {
        // SAFETY: per `# Safety`, `changed` is NULL or writable.
        let changed = unsafe { opt_out!(call, changed, 0) };
        let orch = call.orchestrator(o)?;
        let n = orch.promote_pairs();
        if let Some(mut changed) = changed {
            changed.set(n);
        }
        Ok(())
    })
}

/// Turns minimalist mode's idle deactivation on (`ms` > 0) or off (0).
/// While on, active systems that are not pinned, that no live run uses,
/// that hold no lease, and that have been unused for `ms` milliseconds are
/// deactivated (with their dependents, only if those are idle too), by a
/// sweep every quarter of the timeout (at least every 10 ms, at most every
/// second). Deactivation publishes `pso.lifecycle.<system>.deactivated` and
/// closes the system's direct channels, as always.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE`.
#[unsafe(no_mangle)]
pub extern "C" fn pso_set_idle_timeout(o: pso_orchestrator, ms: u64) -> pso_status {
    ffi_boundary!(pso_set_idle_timeout, |call| {
        let orch = call.orchestrator(o)?;
        orch.set_idle_timeout((ms != 0).then(|| Duration::from_millis(ms)));
        Ok(())
    })
}

/// Runs one idle sweep now (minimalist mode must be on, else it does
/// nothing) and puts the systems it deactivated in `*json` (free it with
/// `pso_string_free`), a JSON array of names, dependents first.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_deactivate_idle(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_deactivate_idle, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        let names = orch.deactivate_idle();
        let text = serde_json::to_string(&names).map_err(|e| serialize_error(call, e))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

/// Pins system `name` (`pinned` true) or unpins it: a pinned system is never
/// deactivated for being idle. Topology files say `pinned = true`.
///
/// # Errors
/// `PSO_ERR_NOT_FOUND`, `PSO_ERR_NULL_POINTER` (`name`),
/// `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_pin_system(
    o: pso_orchestrator,
    name: *const c_char,
    pinned: bool,
) -> pso_status {
    ffi_boundary!(pso_pin_system, |call| {
        // SAFETY: per `# Safety`, `name` is NULL or a valid C string.
        let name = unsafe { c_str!(call, name)? };
        let orch = call.orchestrator(o)?;
        orch.pin_system(name, pinned)?;
        Ok(())
    })
}
