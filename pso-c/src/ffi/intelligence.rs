//! Intelligence exports: `pso_learn_patterns`, `pso_coordination_insights`,
//! `pso_optimization_recommendations`, `pso_optimize_coordination` with its
//! change log (`pso_coordination_log`, `pso_revert_change`),
//! `pso_evolve_coordination` with a C workload callback and its log
//! (`pso_evolution_log`), and snapshots that carry what was learned
//! (`pso_snapshot`, `pso_restore`).
//!
//! Every result is JSON text (the serde form of pso-core's types, the same
//! field names as in Python and Node) in a `char **` the caller frees with
//! `pso_string_free`. The workload callback runs on the calling thread,
//! inside `pso_evolve_coordination`; `user_data` is only borrowed for that
//! call (no free callback).

use std::ffi::{c_char, c_void};
use std::ptr;
use std::time::Duration;

use pso_core::{Guardrails, Orchestrator, SchedulingPolicy, StrategyChange, Trial, TrialMetric};
use serde_json::{Map, Value};

use super::args::{Call, c_str, json_doc_arg, opt_c_str, out};
use super::serialize_error;
use crate::error::{Failure, pso_status};
use crate::handle::pso_orchestrator;

/// One round of an evolution workload (`pso_evolve_coordination`): does
/// representative work on `o` (for instance runs a workflow and waits for
/// it) and returns 0, or non-zero for a failed round.
///
/// Called on the thread that called `pso_evolve_coordination`, inside that
/// call, with its `user_data`; it may call any PSO function.
#[allow(non_camel_case_types)]
pub type pso_workload_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, o: pso_orchestrator) -> i32>;

/// Puts serialized JSON text in `out`.
fn set_json(
    call: Call,
    out: &mut super::args::Out<'_, *mut c_char>,
    text: serde_json::Result<String>,
) -> Result<(), Failure> {
    let text = text.map_err(|e| serialize_error(call, e))?;
    out.set(call.c_string(text)?);
    Ok(())
}

/// Runs `f` on the orchestrator `o` and puts the JSON it serialized in
/// `*json`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
unsafe fn json_verb(
    call: Call,
    o: pso_orchestrator,
    json: *mut *mut c_char,
    f: impl FnOnce(&Orchestrator) -> serde_json::Result<String>,
) -> Result<(), Failure> {
    // SAFETY: forwarded from this function's contract.
    let mut json = unsafe { out!(call, json, ptr::null_mut())? };
    let orch = call.orchestrator(o)?;
    set_json(call, &mut json, f(&orch))
}

/// Folds history into estimates and puts them, with their sample counts, in
/// `*json` (free it with `pso_string_free`): `operations` ({`key`, `mean`,
/// `stddev`, `samples`, `recent_steps`, `recent_failures`,
/// `failure_rate`}), `edges` ({`from`, `to`, `rate`, `messages`}),
/// `co_activation` ({`a`, `b`, `together`, `a_count`, `b_count`}); seconds.
/// They are also saved in the state store (key `pso.patterns`), so
/// `pso_snapshot` carries them.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_learn_patterns(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_learn_patterns, |call| {
        // SAFETY: per `# Safety`.
        unsafe {
            json_verb(call, o, json, |o| {
                serde_json::to_string(&o.learn_patterns())
            })
        }
    })
}

/// Where coordination time goes, in `*json` (free it with
/// `pso_string_free`): `runs`, `critical_paths` ({`workflow`, `steps`
/// [[name, seconds]], `length`, `makespan`}), `contributors` ({`key`,
/// `waiting`, `working`, `steps`}), `hot_edges`, `idle_direct_pairs`,
/// `contention` ({`dimension`, `utilization`, `waiters`, `longest_wait`}),
/// `unhealthy`, `flapping`, `gave_up`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_coordination_insights(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_coordination_insights, |call| {
        // SAFETY: per `# Safety`.
        unsafe {
            json_verb(call, o, json, |o| {
                serde_json::to_string(&o.coordination_insights())
            })
        }
    })
}

/// Typed suggestions, most confident first, as a JSON array in `*json`
/// (free it with `pso_string_free`); each has `target`, `action` (`kind`:
/// `promote_to_direct`, `demote_direct`, `set_concurrency_limit`,
/// `deactivate_idle`, `pre_activate`, `set_scheduling_policy`, and its
/// fields), `evidence`, `expected_gain`, `confidence` (0 to 1), `samples`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_optimization_recommendations(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_optimization_recommendations, |call| {
        // SAFETY: per `# Safety`.
        unsafe {
            json_verb(call, o, json, |o| {
                serde_json::to_string(&o.optimization_recommendations())
            })
        }
    })
}

/// The recommendations that pass the guardrails, as a plan in `*json` (free
/// it with `pso_string_free`): `actions` (recommendations), `skipped`
/// ([[recommendation, why]]), `applied`, `changes` ({`id`, `action`,
/// `reason`, `reverted`, `error`}). With `apply`, carries the actions out
/// and logs each change (`pso_coordination_log`; undo with
/// `pso_revert_change`).
///
/// `guardrails_json` (nullable: the defaults) is an object with any of
/// `min_samples` (default 20), `min_confidence` (0 to 1, default 0.6) and
/// `idle_after_ms` (how long a system must be unused before deactivating it
/// is suggested; default: the idle timeout if set, else 5 minutes).
///
/// # Errors
/// `PSO_ERR_PARSE` (`guardrails_json` is not JSON), `PSO_ERR_INVALID_ARGUMENT`
/// (an unknown field, a wrong type, a confidence outside 0 to 1),
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `guardrails_json` is NULL or a NUL-terminated string; `json` is NULL or
/// points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_optimize_coordination(
    o: pso_orchestrator,
    apply: bool,
    guardrails_json: *const c_char,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_optimize_coordination, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable and
        // `guardrails_json` NULL or a valid C string.
        let (mut json, guardrails_json) = unsafe {
            (
                out!(call, json, ptr::null_mut())?,
                opt_c_str!(call, guardrails_json)?,
            )
        };
        let mut g = Guardrails::new();
        if let Some(guardrails_json) = guardrails_json {
            let doc = json_doc_arg!(call, guardrails_json)?;
            let mut arg = Fields::new(
                call,
                "guardrails_json",
                doc,
                &["min_samples", "min_confidence", "idle_after_ms"],
            )?;
            if let Some(n) = arg.u64("min_samples")? {
                g = g.min_samples(n);
            }
            if let Some(c) = arg.f64("min_confidence")? {
                if !(0.0..=1.0).contains(&c) {
                    return Err(invalid(
                        call,
                        format_args!("min_confidence {c} is not between 0 and 1"),
                    ));
                }
                g = g.min_confidence(c);
            }
            if let Some(ms) = arg.u64("idle_after_ms")? {
                g = g.idle_after(Duration::from_millis(ms));
            }
        }
        let orch = call.orchestrator(o)?;
        set_json(
            call,
            &mut json,
            serde_json::to_string(&orch.optimize_coordination_with(apply, g)),
        )
    })
}

/// Every change `pso_optimize_coordination` and `pso_evolve_coordination`
/// made, oldest first (the last 256), as a JSON array in `*json` (free it
/// with `pso_string_free`): {`id`, `action`, `reason`, `reverted`, `error`}.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_coordination_log(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_coordination_log, |call| {
        // SAFETY: per `# Safety`.
        unsafe {
            json_verb(call, o, json, |o| {
                serde_json::to_string(&o.coordination_log())
            })
        }
    })
}

/// Undoes logged change `id` (restores what it replaced) and puts the change,
/// now `"reverted": true`, in `*json` (nullable; free it with
/// `pso_string_free`).
///
/// # Errors
/// `PSO_ERR_NOT_FOUND` (no such change in the log),
/// `PSO_ERR_INVALID_ARGUMENT` (already reverted, never applied, or undoing
/// it failed; the message says which), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_revert_change(
    o: pso_orchestrator,
    id: u64,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_revert_change, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let json = unsafe { call.opt_out(json, ptr::null_mut()) };
        let orch = call.orchestrator(o)?;
        if !orch.coordination_log().iter().any(|c| c.id == id) {
            return Err(call.fail(
                pso_status::PSO_ERR_NOT_FOUND,
                format_args!("no coordination change {id}"),
            ));
        }
        let change = orch.revert_change(id).map_err(|m| invalid(call, m))?;
        if let Some(mut json) = json {
            set_json(call, &mut json, serde_json::to_string(&change))?;
        }
        Ok(())
    })
}

/// The trial of `pso_evolve_coordination`, from its JSON argument.
fn trial(call: Call, doc: Value) -> Result<Trial, Failure> {
    let mut a = Fields::new(
        call,
        "trial_json",
        doc,
        &[
            "change", "policy", "system", "limit", "rounds", "metric", "margin",
        ],
    )?;
    let change = a
        .str("change")?
        .ok_or_else(|| invalid(call, "argument 'trial_json': missing field \"change\""))?;
    let change = match change.as_str() {
        "scheduling_policy" => {
            let p = a
                .str("policy")?
                .ok_or_else(|| invalid(call, "a scheduling_policy change needs \"policy\""))?;
            let p: SchedulingPolicy = p.parse().map_err(|m: String| invalid(call, m))?;
            StrategyChange::SchedulingPolicy(p)
        }
        "concurrency_limit" => {
            let system = a
                .str("system")?
                .ok_or_else(|| invalid(call, "a concurrency_limit change needs \"system\""))?;
            let limit = match a.u64("limit")? {
                None => None,
                Some(0) => return Err(invalid(call, "limit 0 (use null for no limit)")),
                Some(n) => Some(u32::try_from(n).map_err(|_| invalid(call, "limit is too large"))?),
            };
            StrategyChange::ConcurrencyLimit { system, limit }
        }
        other => {
            return Err(invalid(
                call,
                format_args!(
                    "unknown change '{other}' (expected 'scheduling_policy' or 'concurrency_limit')"
                ),
            ));
        }
    };
    let mut t = Trial::new(change);
    if let Some(n) = a.u64("rounds")? {
        if n == 0 {
            return Err(invalid(call, "rounds must be at least 1"));
        }
        t = t.rounds(usize::try_from(n).unwrap_or(usize::MAX));
    }
    if let Some(m) = a.str("metric")? {
        t = t.metric(match m.as_str() {
            "makespan" => TrialMetric::Makespan,
            "p99" => TrialMetric::P99,
            "error_rate" => TrialMetric::ErrorRate,
            other => {
                return Err(invalid(
                    call,
                    format_args!(
                        "unknown metric '{other}' (expected 'makespan', 'p99' or 'error_rate')"
                    ),
                ));
            }
        });
    }
    if let Some(m) = a.f64("margin")? {
        if !m.is_finite() {
            return Err(invalid(call, "margin must be finite"));
        }
        t = t.margin(m);
    }
    Ok(t)
}

/// Tries one strategy change on a bounded trial: alternates `rounds` calls
/// of `workload` with the change and as many without it, compares `metric`,
/// keeps the change only if it improved by `margin`, and restores the old
/// setting otherwise. The trial (kept or not) goes to `pso_evolution_log`; a
/// kept change also to `pso_coordination_log` (revertible). The result, in
/// `*json` (free it with `pso_string_free`): {`id`, `change`, `baseline` and
/// `trial` ({`rounds`, `median`, `p99`, `error_rate`}; seconds),
/// `improvement`, `kept`, `reason`}.
///
/// `trial_json`: `{"change": "scheduling_policy", "policy": "fifo" |
/// "critical_path"}` or `{"change": "concurrency_limit", "system": "name",
/// "limit": n | null}`, with optional `"rounds"` (default 5), `"metric"`
/// (`"makespan"` (default), `"p99"`, `"error_rate"`) and `"margin"` (a
/// fraction, default 0.05). `workload` runs on this thread (see
/// `pso_workload_fn`) with `user_data`, which PSO only borrows.
///
/// # Errors
/// `PSO_ERR_PARSE` (`trial_json` is not JSON), `PSO_ERR_INVALID_ARGUMENT`
/// (an unknown change, policy, metric or field; a limit or rounds of 0; the
/// change cannot be made), `PSO_ERR_NOT_FOUND` (unknown system),
/// `PSO_ERR_NULL_POINTER` (`trial_json`, `workload`, `json`),
/// `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `trial_json` is NULL or a NUL-terminated string; `json` is NULL or points
/// to a writable `char *`; `workload` is NULL or a function with the
/// `pso_workload_fn` signature, callable with `user_data` during this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_evolve_coordination(
    o: pso_orchestrator,
    trial_json: *const c_char,
    workload: pso_workload_fn,
    user_data: *mut c_void,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_evolve_coordination, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable and `trial_json`
        // NULL or a valid C string.
        let (mut json, trial_json) = unsafe {
            (
                out!(call, json, ptr::null_mut())?,
                c_str!(call, trial_json)?,
            )
        };
        let workload = workload.ok_or_else(|| call.null("workload"))?;
        let doc = json_doc_arg!(call, trial_json)?;
        let t = trial(call, doc)?;
        let orch = call.orchestrator(o)?;
        if orch.is_closed() {
            return Err(call.fail(pso_status::PSO_ERR_CLOSED, "the orchestrator is closed"));
        }
        if let StrategyChange::ConcurrencyLimit { system, .. } = &t.change {
            orch.status(system)?; // NOT_FOUND for an unknown system
        }
        let evolution = orch
            .evolve_coordination(&t, |_| {
                // SAFETY: `workload` is non-null and, per `# Safety`,
                // callable with `user_data` during this call, which is when
                // pso-core calls this closure (on this thread).
                let rc = unsafe { workload(user_data, o) };
                if rc == 0 { Ok(()) } else { Err(rc) }
            })
            .map_err(|m| invalid(call, m))?;
        set_json(call, &mut json, serde_json::to_string(&evolution))
    })
}

/// Every evolution trial, oldest first (the last 256), as a JSON array in
/// `*json` (free it with `pso_string_free`); elements as the result of
/// `pso_evolve_coordination`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_evolution_log(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_evolution_log, |call| {
        // SAFETY: per `# Safety`.
        unsafe { json_verb(call, o, json, |o| serde_json::to_string(&o.evolution_log())) }
    })
}

/// Writes the state store, with the learned patterns in it (as
/// `pso_learn_patterns` saves them), to `path` atomically (as
/// `pso_state_snapshot`).
///
/// # Errors
/// `PSO_ERR_IO`, `PSO_ERR_NULL_POINTER` (`path`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_snapshot(o: pso_orchestrator, path: *const c_char) -> pso_status {
    ffi_boundary!(pso_snapshot, |call| {
        // SAFETY: per `# Safety`, `path` is NULL or a valid C string.
        let path = unsafe { c_str!(call, path)? };
        call.orchestrator(o)?.snapshot(path)?;
        Ok(())
    })
}

/// Restores the state store from the snapshot at `path` (as
/// `pso_state_restore`) and loads the learned patterns in it, so duration
/// estimates start warm.
///
/// # Errors
/// `PSO_ERR_IO` (unreadable), `PSO_ERR_PARSE` (not a snapshot),
/// `PSO_ERR_NULL_POINTER` (`path`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_restore(o: pso_orchestrator, path: *const c_char) -> pso_status {
    ffi_boundary!(pso_restore, |call| {
        // SAFETY: per `# Safety`, `path` is NULL or a valid C string.
        let path = unsafe { c_str!(call, path)? };
        call.orchestrator(o)?.restore(path)?;
        Ok(())
    })
}

fn invalid(call: Call, message: impl std::fmt::Display) -> Failure {
    call.fail(pso_status::PSO_ERR_INVALID_ARGUMENT, message)
}

/// The fields of a JSON object argument: an unknown field, a value of the
/// wrong type, or not an object is `PSO_ERR_INVALID_ARGUMENT` naming the
/// argument and the field. `null` counts as absent.
struct Fields {
    call: Call,
    arg: &'static str,
    map: Map<String, Value>,
}

impl Fields {
    fn new(call: Call, arg: &'static str, doc: Value, known: &[&str]) -> Result<Fields, Failure> {
        let Value::Object(map) = doc else {
            return Err(invalid(
                call,
                format_args!("argument '{arg}' is not a JSON object"),
            ));
        };
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(
                call,
                format_args!(
                    "argument '{arg}': unknown field \"{k}\" (expected one of {})",
                    known.join(", ")
                ),
            ));
        }
        Ok(Fields { call, arg, map })
    }

    fn wrong(&self, key: &str, what: &str) -> Failure {
        invalid(
            self.call,
            format_args!("argument '{}': \"{key}\" must be {what}", self.arg),
        )
    }

    fn str(&mut self, key: &str) -> Result<Option<String>, Failure> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    fn u64(&mut self, key: &str) -> Result<Option<u64>, Failure> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a whole number, not negative")),
        }
    }

    fn f64(&mut self, key: &str) -> Result<Option<f64>, Failure> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a number")),
        }
    }
}
