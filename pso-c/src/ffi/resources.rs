//! The resource exports: capacities, quotas and weights, allocating leases
//! (one request or a gang; blocking), per-step requests of workflow steps,
//! `pso_resource_status` and `pso_optimize_resources`. The lease handle's
//! own functions are in `super::lease`.
//!
//! Requests arrive as JSON text. The text is parsed as JSON first
//! (`PSO_ERR_PARSE` with line and column), then checked field by field
//! against the request format of docs/API.md (`PSO_ERR_INVALID_ARGUMENT`
//! naming the path of the offending field, e.g. `parts_json[1].amounts.gpu`);
//! an unknown field is an error, so a typo never silently changes a request.

use std::ffi::c_char;
use std::ptr;
use std::time::Duration;

use pso_core::{Lease, Priority, ResourceRequest};
use serde_json::Value as Json;

use super::args::{Call, OutArray, c_str, json_doc_arg, opt_c_str, out, out_array};
use crate::error::{Failure, pso_status};
use crate::handle::{LEASES, LeaseCell, pso_lease, pso_orchestrator};

/// The fields of a request object, for messages.
const FIELDS: &str = "amounts, priority, group, preemptible, ttl_ms, wait_ms";

/// How a JSON value is called in messages.
fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// `v` as JSON text for a message, shortened to about 40 characters.
fn shown(v: &Json) -> String {
    let text = v.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn invalid(call: Call, message: impl std::fmt::Display) -> Failure {
    call.fail(pso_status::PSO_ERR_INVALID_ARGUMENT, message)
}

/// A duration field in milliseconds: absent or null is `None`; otherwise an
/// integer, at least 1 when `positive`, else at least 0.
fn millis(
    call: Call,
    path: &str,
    field: &str,
    v: Option<&Json>,
    positive: bool,
) -> Result<Option<Duration>, Failure> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match v.as_u64() {
        Some(ms) if ms > 0 || !positive => Ok(Some(Duration::from_millis(ms))),
        _ => Err(invalid(
            call,
            format_args!(
                "{path}.{field} must be an integer number of milliseconds, {}, got {}",
                if positive { "at least 1" } else { "at least 0" },
                shown(v)
            ),
        )),
    }
}

/// Checks one request object (at `path` in the argument, for messages) and
/// builds the core request. A gang part (`gang`) must also name its
/// `system`, which is returned.
fn request(
    call: Call,
    path: &str,
    v: &Json,
    gang: bool,
) -> Result<(Option<String>, ResourceRequest), Failure> {
    let obj = v.as_object().ok_or_else(|| {
        invalid(
            call,
            format_args!(
                "{path} must be a JSON object ({{\"amounts\": {{...}}, ...}}), got {}",
                json_kind(v)
            ),
        )
    })?;
    let system_field = if gang { "system, " } else { "" };
    if let Some(key) = obj.keys().find(|k| {
        !(matches!(
            k.as_str(),
            "amounts" | "priority" | "group" | "preemptible" | "ttl_ms" | "wait_ms"
        ) || (gang && k.as_str() == "system"))
    }) {
        return Err(invalid(
            call,
            format_args!(
                "{path} has an unknown field \"{key}\" (the fields are {system_field}{FIELDS})"
            ),
        ));
    }
    let system = if gang {
        match obj.get("system") {
            Some(Json::String(s)) => Some(s.clone()),
            None => {
                return Err(invalid(
                    call,
                    format_args!("{path}.system is missing (a gang part names its system)"),
                ));
            }
            Some(other) => {
                return Err(invalid(
                    call,
                    format_args!("{path}.system must be a string, got {}", json_kind(other)),
                ));
            }
        }
    } else {
        None
    };
    let amounts = match obj.get("amounts") {
        Some(Json::Object(m)) => m,
        None => {
            return Err(invalid(
                call,
                format_args!("{path}.amounts is missing (an object of dimension -> amount)"),
            ));
        }
        Some(other) => {
            return Err(invalid(
                call,
                format_args!(
                    "{path}.amounts must be an object of dimension -> amount, got {}",
                    json_kind(other)
                ),
            ));
        }
    };
    let mut req = ResourceRequest::new();
    for (dim, a) in amounts {
        let a = a.as_u64().ok_or_else(|| {
            invalid(
                call,
                format_args!(
                    "{path}.amounts.{dim} must be a non-negative integer, got {}",
                    shown(a)
                ),
            )
        })?;
        req = req.amount(dim.as_str(), a);
    }
    match obj.get("priority") {
        None | Some(Json::Null) => {}
        Some(Json::String(p)) => {
            let p: Priority = p
                .parse()
                .map_err(|m| invalid(call, format_args!("{path}.priority: {m}")))?;
            req = req.priority(p);
        }
        Some(other) => {
            return Err(invalid(
                call,
                format_args!(
                    "{path}.priority must be a string (critical, high, normal, low or \
                     background), got {}",
                    json_kind(other)
                ),
            ));
        }
    }
    match obj.get("group") {
        None | Some(Json::Null) => {}
        Some(Json::String(g)) => req = req.group(g.as_str()),
        Some(other) => {
            return Err(invalid(
                call,
                format_args!("{path}.group must be a string, got {}", json_kind(other)),
            ));
        }
    }
    match obj.get("preemptible") {
        None | Some(Json::Null) => {}
        Some(Json::Bool(b)) => req = req.preemptible(*b),
        Some(other) => {
            return Err(invalid(
                call,
                format_args!(
                    "{path}.preemptible must be true or false, got {}",
                    json_kind(other)
                ),
            ));
        }
    }
    if let Some(ttl) = millis(call, path, "ttl_ms", obj.get("ttl_ms"), true)? {
        req = req.ttl(ttl);
    }
    if let Some(wait) = millis(call, path, "wait_ms", obj.get("wait_ms"), false)? {
        req = req.wait(wait);
    }
    Ok((system, req))
}

/// The parts of a gang: `[{"system": ..., "amounts": ..., ...}, ...]`.
fn gang_parts(call: Call, arg: &str, v: &Json) -> Result<Vec<(String, ResourceRequest)>, Failure> {
    let parts = v.as_array().ok_or_else(|| {
        invalid(
            call,
            format_args!(
                "{arg} must be a JSON array of requests, each with \"system\", got {}",
                json_kind(v)
            ),
        )
    })?;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (system, req) = request(call, &format!("{arg}[{i}]"), p, true)?;
            Ok((system.unwrap_or_default(), req))
        })
        .collect()
}

/// Stores granted leases in the lease table and their handles in `out`
/// (in order). If the table is full (2^32 live leases), every lease is
/// released and nothing is returned.
fn store_leases(
    call: Call,
    leases: Vec<Lease>,
    out: &mut OutArray<'_, pso_lease>,
) -> Result<(), Failure> {
    let mut handles = Vec::with_capacity(leases.len());
    let mut full = false;
    for lease in leases {
        if full {
            continue; // dropping it releases it
        }
        match LEASES.insert(LeaseCell::new(lease)) {
            Ok(h) => handles.push(h),
            Err(cell) => {
                drop(cell);
                full = true;
            }
        }
    }
    if full {
        for h in handles {
            if let Some(cell) = LEASES.remove(h) {
                drop(cell.take());
            }
        }
        return Err(call.fail(
            pso_status::PSO_ERR_BUSY,
            "too many lease handles are live (2^32)",
        ));
    }
    for (i, h) in handles.into_iter().enumerate() {
        out.set(i, h);
    }
    Ok(())
}

/// Declares (or changes) the capacity of resource dimension `dimension`:
/// `"cpu"`, `"memory"`, or any counter such as `"gpu"` or
/// `"db_connections"`. Requests may only name declared dimensions. Raising
/// a capacity grants waiters that now fit at once; lowering it revokes
/// nothing (new requests wait until enough is released) but rejects waiters
/// that could never fit any more (`PSO_ERR_EXCEEDS_CAPACITY`).
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` (empty name, or one with whitespace or control
/// characters), `PSO_ERR_NULL_POINTER`, `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `dimension` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_capacity(
    o: pso_orchestrator,
    dimension: *const c_char,
    capacity: u64,
) -> pso_status {
    ffi_boundary!(pso_set_capacity, |call| {
        // SAFETY: per `# Safety`, `dimension` is NULL or a valid C string.
        let dimension = unsafe { c_str!(call, dimension)? };
        let orch = call.orchestrator(o)?;
        orch.set_capacity(dimension, capacity)?;
        Ok(())
    })
}

/// Sets the hard quota of group `group` on `dimension`: the leases of
/// requests with `"group": group` never hold more of it together. A request
/// for more than the whole quota is rejected (`PSO_ERR_EXCEEDS_QUOTA`),
/// also a waiting one when the quota is lowered; one that fits the quota
/// but not what the group holds now waits (without holding back requests of
/// other groups). Remove it with `pso_clear_group_quota`.
///
/// # Errors
/// `PSO_ERR_NOT_FOUND` (undeclared dimension; the message lists the
/// declared ones), `PSO_ERR_INVALID_ARGUMENT` (empty group name),
/// `PSO_ERR_NULL_POINTER`, `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`,
/// `PSO_ERR_CLOSED`.
///
/// # Safety
/// `group` and `dimension` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_group_quota(
    o: pso_orchestrator,
    group: *const c_char,
    dimension: *const c_char,
    quota: u64,
) -> pso_status {
    ffi_boundary!(pso_set_group_quota, |call| {
        // SAFETY: per `# Safety`, both are NULL or valid C strings.
        let (group, dimension) = unsafe { (c_str!(call, group)?, c_str!(call, dimension)?) };
        let orch = call.orchestrator(o)?;
        orch.set_group_quota(group, dimension, Some(quota))?;
        Ok(())
    })
}

/// Removes the quota of group `group` on `dimension` (nothing happens if it
/// had none); waiters it held back are granted if they now fit.
///
/// # Errors
/// As `pso_set_group_quota`.
///
/// # Safety
/// `group` and `dimension` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_clear_group_quota(
    o: pso_orchestrator,
    group: *const c_char,
    dimension: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_clear_group_quota, |call| {
        // SAFETY: per `# Safety`, both are NULL or valid C strings.
        let (group, dimension) = unsafe { (c_str!(call, group)?, c_str!(call, dimension)?) };
        let orch = call.orchestrator(o)?;
        orch.set_group_quota(group, dimension, None)?;
        Ok(())
    })
}

/// Sets the weight of `system` in dominant-resource fairness among requests
/// of the same priority class (default 1): a system of weight 2 is served as
/// if its share were half.
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` (a weight that is not positive and finite),
/// `PSO_ERR_NOT_FOUND` (unknown system), `PSO_ERR_NULL_POINTER`,
/// `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `system` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_resource_weight(
    o: pso_orchestrator,
    system: *const c_char,
    weight: f64,
) -> pso_status {
    ffi_boundary!(pso_set_resource_weight, |call| {
        // SAFETY: per `# Safety`, `system` is NULL or a valid C string.
        let system = unsafe { c_str!(call, system)? };
        let orch = call.orchestrator(o)?;
        orch.set_resource_weight(system, weight)?;
        Ok(())
    })
}

/// Leases resources for `system`, blocking the calling thread until the
/// request fits in policy order (strict priority between classes with aging,
/// weighted dominant-resource fairness within a class, group quotas,
/// preemption of lower-class `preemptible` leases), or until its `wait_ms`
/// passes. On success `*out` is a new lease handle: release it with
/// `pso_lease_release` (it also ends at its TTL, or when preempted).
///
/// `request_json`: `{"amounts": {"cpu": 2, "memory": 512}, "priority":
/// "high", "group": "g", "preemptible": true, "ttl_ms": 100, "wait_ms":
/// 50}`. Only `amounts` is required (dimension -> non-negative integer;
/// zeros are ignored). `priority`: `critical`, `high`, `normal` (default),
/// `low`, `background`. `group`: the group whose quota it counts against.
/// `preemptible` (default false): a higher class may revoke it after the
/// grace period. `ttl_ms` (at least 1): revoke it automatically after this
/// long. `wait_ms`: wait at most this long (0: answer at once; absent: as
/// long as it takes). `null` is the same as an absent field.
///
/// # Errors
/// Nothing is held after an error, and `*out` is the zero handle.
/// `PSO_ERR_EXCEEDS_CAPACITY` / `PSO_ERR_EXCEEDS_QUOTA`: more than a whole
/// capacity or group quota, so it could never fit (at once; the message has
/// the numbers). `PSO_ERR_TIMEOUT`: waited `wait_ms` (or `wait_ms` 0 and it
/// does not fit now); the message says how long and why ("b waited 50ms for
/// resources: needs 2048 memory, 512 free; 1 request ahead").
/// `PSO_ERR_NOT_FOUND`: undeclared dimension (the message lists the declared
/// ones) or unknown system. `PSO_ERR_PARSE`: `request_json` is not JSON
/// (line and column). `PSO_ERR_INVALID_ARGUMENT`: a field is missing, has
/// the wrong type or is unknown (the message names its path).
/// `PSO_ERR_CLOSED`: the orchestrator was closed before or while it waited.
/// `PSO_ERR_NULL_POINTER`, `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `system` and `request_json` are NULL or NUL-terminated strings; `out` is
/// NULL or points to a writable `pso_lease`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_allocate_resources(
    o: pso_orchestrator,
    system: *const c_char,
    request_json: *const c_char,
    out: *mut pso_lease,
) -> pso_status {
    ffi_boundary!(pso_allocate_resources, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable and the strings
        // are NULL or valid C strings, for the whole call.
        let (mut out, system, request_json) = unsafe {
            (
                out_array!(call, out, 1, pso_lease::default())?,
                c_str!(call, system)?,
                c_str!(call, request_json)?,
            )
        };
        let doc = json_doc_arg!(call, request_json)?;
        let (_, req) = request(call, "request_json", &doc, false)?;
        let orch = call.orchestrator(o)?;
        let lease = orch.allocate_resources(system, &req)?;
        store_leases(call, vec![lease], &mut out)
    })
}

/// Leases resources for several systems at once, all or nothing, blocking
/// like `pso_allocate_resources`: while it waits, none of the parts is
/// held. `parts_json` is a JSON array of requests in the format of
/// `pso_allocate_resources`, each with a `"system"`: `[{"system":
/// "trainer", "amounts": {"gpu": 2}}, {"system": "loader", "amounts":
/// {"cpu": 4}}]`. The gang is served at the highest priority among its parts
/// and waits at most the shortest `wait_ms` among them.
///
/// `out` points to an array of `n` lease handles; `n` must equal the number
/// of parts. On success `out[i]` is the lease of part `i`; on failure every
/// element is the zero handle.
///
/// # Errors
/// As `pso_allocate_resources`, for any part (nothing is held after an
/// error); `PSO_ERR_INVALID_ARGUMENT` if `n` is not the number of parts
/// (checked before anything is requested) or there are no parts.
///
/// # Safety
/// `parts_json` is NULL or a NUL-terminated string; `out` is NULL or points
/// to `n` writable `pso_lease`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_allocate_gang(
    o: pso_orchestrator,
    parts_json: *const c_char,
    out: *mut pso_lease,
    n: usize,
) -> pso_status {
    ffi_boundary!(pso_allocate_gang, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable for `n` handles and
        // `parts_json` is NULL or a valid C string, for the whole call.
        let (mut out, parts_json) = unsafe {
            (
                out_array!(call, out, n, pso_lease::default())?,
                c_str!(call, parts_json)?,
            )
        };
        let doc = json_doc_arg!(call, parts_json)?;
        let parts = gang_parts(call, "parts_json", &doc)?;
        if parts.len() != n {
            return Err(invalid(
                call,
                format_args!(
                    "n is {n} but parts_json has {} part{}: out must have room for one lease \
                     per part",
                    parts.len(),
                    if parts.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        let orch = call.orchestrator(o)?;
        let refs: Vec<(&str, &ResourceRequest)> =
            parts.iter().map(|(s, r)| (s.as_str(), r)).collect();
        let leases = orch.allocate_gang(&refs)?;
        store_leases(call, leases, &mut out)
    })
}

/// Sets what each workflow step of `system` leases while it runs, or with
/// `request_json` NULL removes it. `request_json` is a request as for
/// `pso_allocate_resources`. A step asks only once it is ready to run (its
/// predecessors done, its concurrency slot and condition held), waits
/// without holding a worker, and releases the lease when its attempt ends in
/// any state; a rejected request (or a `wait_ms` that passes) fails the
/// step with the reason; cancelling the run withdraws its waiting requests.
/// Fan-out children take no step leases.
///
/// # Errors
/// `PSO_ERR_NOT_FOUND` (unknown system), `PSO_ERR_PARSE`,
/// `PSO_ERR_INVALID_ARGUMENT` (as for `pso_allocate_resources`; dimensions
/// are checked when a step asks), `PSO_ERR_NULL_POINTER` (`system`),
/// `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `system` and `request_json` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_step_resources(
    o: pso_orchestrator,
    system: *const c_char,
    request_json: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_set_step_resources, |call| {
        // SAFETY: per `# Safety`, both are NULL or valid C strings.
        let (system, request_json) =
            unsafe { (c_str!(call, system)?, opt_c_str!(call, request_json)?) };
        let req = match request_json {
            Some(request_json) => {
                let doc = json_doc_arg!(call, request_json)?;
                Some(request(call, "request_json", &doc, false)?.1)
            }
            None => None,
        };
        let orch = call.orchestrator(o)?;
        orch.set_step_resources(system, req)?;
        Ok(())
    })
}

/// The allocator's state as JSON in `*json` (free it with
/// `pso_string_free`), durations in seconds: `{"dimensions": [{"name",
/// "capacity", "allocated", "free"}], "groups": [{"name", "quota": {dim:
/// n}, "allocated": {dim: n}}], "leases": [{"id", "system", "group",
/// "amounts", "priority", "preemptible", "age", "idle", "ttl_remaining",
/// "revoking"}], "waiters": [{"systems", "amounts", "priority",
/// "effective_priority", "waited", "ahead", "reason"}]}`. Waiters are in
/// policy order; `reason` says why each waits ("needs 2048 memory, 512
/// free; 1 request ahead").
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_resource_status(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_resource_status, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        json.set(call.c_string(orch.resource_status().to_json())?);
        Ok(())
    })
}

/// Plans (and with `apply`, carries out) resource optimizations, as JSON in
/// `*json` (free it with `pso_string_free`): `{"applied": bool, "actions":
/// [...]}`, each action an object whose `action` is `reclaim_expired`
/// (`lease`, `system`), `reclaim_idle` (`lease`, `system`, `idle_secs`:
/// untouched longer than `idle_lease_after_ms`), `rebalance` (`lease`,
/// `system`, `share`, `in_favor_of`, `their_share`: a preemptible lease of
/// an over-share system, for a waiter of an under-share one of the same
/// class) or `resize_concurrency` (`system`, `from`, `to`, `reason`). With
/// `apply`, reclaimed and rebalanced leases are released (a rebalanced
/// holder's preemption callback is called first, with `grace_ms` 0) and
/// concurrency limits are changed. A dry run changes nothing.
///
/// # Errors
/// `PSO_ERR_CLOSED` (only with `apply`; a dry run always answers),
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_optimize_resources(
    o: pso_orchestrator,
    apply: bool,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_optimize_resources, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        let plan = orch.optimize_resources(apply)?;
        json.set(call.c_string(plan.to_json())?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ResourceRequest, Failure> {
        let call = Call::new("pso_test");
        let doc = call.json_doc("request_json", text)?;
        request(call, "request_json", &doc, false).map(|(_, r)| r)
    }

    fn err(text: &str) -> (pso_status, String) {
        let e = parse(text).unwrap_err();
        (e.status, e.message)
    }

    #[test]
    fn a_full_request_is_read_field_by_field() {
        let r = parse(
            r#"{"amounts": {"cpu": 2, "memory": 0}, "priority": "high", "group": "g",
                "preemptible": true, "ttl_ms": 100, "wait_ms": 0}"#,
        )
        .unwrap();
        assert_eq!(r.amounts().get("cpu"), Some(&2));
        let dbg = format!("{r:?}");
        for part in [
            "priority: High",
            "group: Some(\"g\")",
            "preemptible: true",
            "ttl: Some(100ms)",
            "wait: Some(0ns)",
        ] {
            assert!(dbg.contains(part), "{part} in {dbg}");
        }
        // Nulls are absent fields; only amounts is required.
        let r = parse(
            r#"{"amounts": {}, "priority": null, "group": null, "preemptible": null,
                "ttl_ms": null, "wait_ms": null}"#,
        )
        .unwrap();
        let dbg = format!("{r:?}");
        assert!(
            dbg.contains("priority: Normal") && dbg.contains("wait: None"),
            "{dbg}"
        );
    }

    #[test]
    fn bad_requests_name_the_field_and_its_path() {
        let cases = [
            (
                r#"[1]"#,
                "request_json must be a JSON object ({\"amounts\": {...}, ...}), got an array",
            ),
            (r#"{}"#, "request_json.amounts is missing"),
            (
                r#"{"amounts": [1]}"#,
                "request_json.amounts must be an object of dimension -> amount, got an array",
            ),
            (
                r#"{"amounts": {"cpu": -1}}"#,
                "request_json.amounts.cpu must be a non-negative integer, got -1",
            ),
            (
                r#"{"amounts": {"cpu": 1.5}}"#,
                "request_json.amounts.cpu must be a non-negative integer, got 1.5",
            ),
            (
                r#"{"amounts": {"cpu": 18446744073709551616}}"#,
                "request_json.amounts.cpu must be a non-negative integer",
            ),
            (
                r#"{"amounts": {}, "amount": 1}"#,
                "request_json has an unknown field \"amount\" (the fields are amounts, priority, \
                 group, preemptible, ttl_ms, wait_ms)",
            ),
            (
                r#"{"amounts": {}, "system": "a"}"#,
                "unknown field \"system\"",
            ),
            (
                r#"{"amounts": {}, "priority": "urgent"}"#,
                "request_json.priority: unknown priority 'urgent' (expected one of: critical, \
                 high, normal, low, background)",
            ),
            (
                r#"{"amounts": {}, "priority": 1}"#,
                "request_json.priority must be a string",
            ),
            (
                r#"{"amounts": {}, "group": false}"#,
                "request_json.group must be a string, got a boolean",
            ),
            (
                r#"{"amounts": {}, "preemptible": "yes"}"#,
                "request_json.preemptible must be true or false, got a string",
            ),
            (
                r#"{"amounts": {}, "ttl_ms": 0}"#,
                "request_json.ttl_ms must be an integer number of milliseconds, at least 1, got 0",
            ),
            (
                r#"{"amounts": {}, "wait_ms": -5}"#,
                "request_json.wait_ms must be an integer number of milliseconds, at least 0, got -5",
            ),
            (
                r#"{"amounts": {}, "wait_ms": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
                "got \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...",
            ),
        ];
        for (text, want) in cases {
            let (status, msg) = err(text);
            assert_eq!(
                status,
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                "{text}: {msg}"
            );
            assert!(msg.starts_with("pso_test: "), "{msg}");
            assert!(msg.contains(want), "{text}:\n  {msg}\n  wanted {want}");
        }
        let (status, msg) = err("{\"amounts\":\n  {\"cpu\": 1,}}");
        assert_eq!(status, pso_status::PSO_ERR_PARSE);
        assert!(
            msg.contains("argument 'request_json' is not valid JSON")
                && msg.contains("line 2 column"),
            "{msg}"
        );
    }

    #[test]
    fn gang_parts_need_a_system_each() {
        let call = Call::new("pso_test");
        let parse = |text: &str| {
            let doc = call.json_doc("parts_json", text).unwrap();
            gang_parts(call, "parts_json", &doc)
        };
        let parts = parse(
            r#"[{"system": "a", "amounts": {"gpu": 1}},
                {"system": "b", "amounts": {"cpu": 2}, "wait_ms": 5}]"#,
        )
        .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0.as_str(), parts[1].0.as_str()), ("a", "b"));
        assert!(parse("[]").unwrap().is_empty());
        for (text, want) in [
            (
                r#"{"system": "a"}"#,
                "parts_json must be a JSON array of requests",
            ),
            (r#"[{"amounts": {}}]"#, "parts_json[0].system is missing"),
            (
                r#"[{"system": "a", "amounts": {}}, {"system": 2, "amounts": {}}]"#,
                "parts_json[1].system must be a string, got a number",
            ),
            (
                r#"[{"system": "a", "amounts": {}, "gpu": 1}]"#,
                "parts_json[0] has an unknown field \"gpu\" (the fields are system, amounts,",
            ),
            (
                r#"[{"system": "a", "amounts": {"gpu": "1"}}]"#,
                "parts_json[0].amounts.gpu must be a non-negative integer, got \"1\"",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.status, pso_status::PSO_ERR_INVALID_ARGUMENT);
            assert!(e.message.contains(want), "{text}:\n  {}", e.message);
        }
    }
}
