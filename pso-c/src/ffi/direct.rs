//! Direct channels between pairs of systems, and mesh scopes.
//!
//! A `pso_direct_end` names an [`EndCell`]: one side's core [`DirectEnd`]
//! behind a mutex (an end is used by one thread at a time; concurrent calls
//! on one end take turns) and a `freed` flag. Waits are cut into slices of
//! [`SLICE`], with the mutex released between slices, so
//! `pso_direct_end_free` never waits: it retires the handle and sets `freed`;
//! a send or receive blocked on another thread sees the flag within a slice
//! and returns `PSO_ERR_STALE_HANDLE`. The core end is dropped — closing the
//! channel for both sides — when the last call using the cell returns (at
//! once when none does).
//!
//! A `pso_mesh` names the core [`Mesh`] guard; `pso_mesh_end` drops it.

use std::ffi::c_char;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pso_core::{DirectEnd, DirectSendError, HubError, Value};

use super::args::{Call, Wait, c_str, json_arg, json_doc_arg, opt_c_str, out};
use crate::error::{Failure, pso_status};
use crate::handle::{DIRECT_ENDS, MESHES, pso_direct_end, pso_mesh, pso_orchestrator};

/// The longest a send or receive waits in one go before it looks at the
/// `freed` flag again.
const SLICE: Duration = Duration::from_millis(20);

/// The value behind a `pso_direct_end`.
#[derive(Debug)]
pub(crate) struct EndCell {
    end: Mutex<DirectEnd>,
    freed: AtomicBool,
}

impl EndCell {
    fn lock(&self) -> MutexGuard<'_, DirectEnd> {
        // The core end stays consistent whatever panics (its operations are
        // single ring pushes and pops): poisoning is ignored.
        self.end.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The deadline of a wait (`None`: no limit) and how long the next slice may
/// take.
fn slice(deadline: Option<Instant>) -> Duration {
    deadline.map_or(SLICE, |d| {
        d.saturating_duration_since(Instant::now()).min(SLICE)
    })
}

fn deadline_of(wait: Wait) -> Option<Instant> {
    match wait {
        Wait::Forever => None,
        w => Some(Instant::now() + w.duration()),
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Declares a direct channel between systems `a` and `b` (unordered; the
/// names need not be registered). `reason` (nullable) is recorded in
/// `pso_coordination_status`. Each side then takes its end with
/// `pso_direct_endpoint`. The channel closes when either system is
/// deactivated or fails, on `pso_direct_close`, or when either end is freed.
///
/// # Errors
/// `PSO_ERR_ALREADY_EXISTS` if the pair has an open channel;
/// `PSO_ERR_INVALID_ARGUMENT` (an empty name, `a` equal to `b`),
/// `PSO_ERR_NULL_POINTER` (`a`, `b`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// Each string is NULL or a NUL-terminated string, valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_direct_open(
    o: pso_orchestrator,
    a: *const c_char,
    b: *const c_char,
    reason: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_direct_open, |call| {
        // SAFETY: per `# Safety`, every string is NULL or valid for the call.
        let (a, b, reason) = unsafe {
            (
                c_str!(call, a)?,
                c_str!(call, b)?,
                opt_c_str!(call, reason)?,
            )
        };
        let orch = call.orchestrator(o)?;
        orch.hub()
            .open_direct(a, b, reason.unwrap_or("declared from C"))?;
        Ok(())
    })
}

/// Closes the direct channel between `a` and `b`, whatever opened it (a mesh
/// or a promotion included), recording `reason` (nullable). Ends already
/// taken see it closed: sends give `PSO_ERR_CLOSED` (publish through the hub
/// instead), receives drain what was sent, then give `PSO_ERR_CLOSED`.
///
/// # Errors
/// `PSO_ERR_NOT_FOUND` if the pair has no open channel; as `pso_direct_open`
/// otherwise.
///
/// # Safety
/// As `pso_direct_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_direct_close(
    o: pso_orchestrator,
    a: *const c_char,
    b: *const c_char,
    reason: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_direct_close, |call| {
        // SAFETY: per `# Safety`, every string is NULL or valid for the call.
        let (a, b, reason) = unsafe {
            (
                c_str!(call, a)?,
                c_str!(call, b)?,
                opt_c_str!(call, reason)?,
            )
        };
        let orch = call.orchestrator(o)?;
        orch.hub()
            .close_direct(a, b, reason.unwrap_or("closed from C"))?;
        Ok(())
    })
}

/// Takes `me`'s end of the open channel between `me` and `peer` (declared
/// with `pso_direct_open`, promoted, or in a mesh) into `*out`. Each end can
/// be taken once per channel. Free it with `pso_direct_end_free`.
///
/// # Errors
/// `PSO_ERR_NOT_FOUND` if the pair has no open channel;
/// `PSO_ERR_ALREADY_EXISTS` if this end was taken; `PSO_ERR_NULL_POINTER`
/// (`me`, `peer`, `out`), `PSO_ERR_INVALID_UTF8`, `PSO_ERR_INVALID_ARGUMENT`,
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `me` and `peer` are NULL or NUL-terminated strings; `out` is NULL or
/// points to a writable `pso_direct_end`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_direct_endpoint(
    o: pso_orchestrator,
    me: *const c_char,
    peer: *const c_char,
    out: *mut pso_direct_end,
) -> pso_status {
    ffi_boundary!(pso_direct_endpoint, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable and the strings
        // NULL or valid, for the whole call.
        let (mut out, me, peer) = unsafe {
            (
                out!(call, out, pso_direct_end::default())?,
                c_str!(call, me)?,
                c_str!(call, peer)?,
            )
        };
        let orch = call.orchestrator(o)?;
        let end = orch.hub().endpoint(me, peer)?;
        let cell = Arc::new(EndCell {
            end: Mutex::new(end),
            freed: AtomicBool::new(false),
        });
        match DIRECT_ENDS.insert(cell) {
            Ok(h) => {
                out.set(h);
                Ok(())
            }
            Err(cell) => {
                drop(cell);
                Err(call.fail(
                    pso_status::PSO_ERR_BUSY,
                    "too many direct channel end handles are live (2^32)",
                ))
            }
        }
    })
}

/// Sends the value `json` to the peer, skipping the hub's routing. Waits up
/// to `timeout_ms` milliseconds for room when the channel is full (0: do not
/// wait; `PSO_WAIT_FOREVER`: no limit).
///
/// # Errors
/// `PSO_ERR_OVERFLOW` (full, `timeout_ms` 0), `PSO_ERR_TIMEOUT` (stayed
/// full), `PSO_ERR_CLOSED` (the channel is closed: publish through the hub
/// instead), `PSO_ERR_STALE_HANDLE` (also when the end is freed by another
/// thread during the wait), `PSO_ERR_PARSE` (`json`; line and column),
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_INVALID_UTF8`.
///
/// # Safety
/// `json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_direct_send(
    e: pso_direct_end,
    json: *const c_char,
    timeout_ms: u64,
) -> pso_status {
    ffi_boundary!(pso_direct_send, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or a valid C string.
        let json = unsafe { c_str!(call, json)? };
        let mut value: Value = json_arg!(call, json)?;
        let cell = DIRECT_ENDS.get(e).ok_or_else(|| call.stale(e))?;
        let wait = Wait::from_ms(timeout_ms);
        let deadline = deadline_of(wait);
        loop {
            if cell.freed.load(Ordering::Acquire) {
                return Err(call.stale(e));
            }
            let mut end = cell.lock();
            let result = match wait {
                Wait::Now => end.try_send(value),
                _ => end.send_timeout(value, slice(deadline)),
            };
            let err = match result {
                Ok(()) => return Ok(()),
                Err(DirectSendError::Timeout(v)) if !passed(deadline) => {
                    value = v;
                    continue;
                }
                Err(err) => err,
            };
            let (me, peer, capacity) = (end.system(), end.peer(), end.capacity());
            return Err(match err {
                DirectSendError::Full(_) => call.fail(
                    pso_status::PSO_ERR_OVERFLOW,
                    format_args!("direct channel {me} -> {peer} is full ({capacity} queued)"),
                ),
                DirectSendError::Timeout(_) => call.fail(
                    pso_status::PSO_ERR_TIMEOUT,
                    format_args!(
                        "direct channel {me} -> {peer} stayed full ({capacity} queued) for \
                         {timeout_ms} ms"
                    ),
                ),
                other => call.fail(
                    pso_status::PSO_ERR_CLOSED,
                    format_args!(
                        "direct channel {me} -> {peer} is closed ({other}); publish through the \
                         hub instead"
                    ),
                ),
            });
        }
    })
}

/// Receives the next value from the peer into `*json` (free it with
/// `pso_string_free`), waiting up to `timeout_ms` milliseconds (0: do not
/// wait; `PSO_WAIT_FOREVER`: no limit). Values sent before the channel
/// closed are still received.
///
/// # Errors
/// `PSO_ERR_TIMEOUT` (nothing came in time), `PSO_ERR_CLOSED` (closed and
/// drained; the message says why it closed), `PSO_ERR_STALE_HANDLE` (also
/// when the end is freed by another thread during the wait),
/// `PSO_ERR_NULL_POINTER` (`json`).
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_direct_recv(
    e: pso_direct_end,
    timeout_ms: u64,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_direct_recv, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let cell = DIRECT_ENDS.get(e).ok_or_else(|| call.stale(e))?;
        let wait = Wait::from_ms(timeout_ms);
        let deadline = deadline_of(wait);
        let value = loop {
            if cell.freed.load(Ordering::Acquire) {
                return Err(call.stale(e));
            }
            let mut end = cell.lock();
            let result = match wait {
                Wait::Now => end.try_recv(),
                _ => match end.recv_timeout(slice(deadline)) {
                    Ok(v) => Ok(Some(v)),
                    Err(HubError::Timeout { .. }) => Ok(None),
                    Err(e) => Err(e),
                },
            };
            match result? {
                Some(v) => break v,
                None if wait != Wait::Now && !passed(deadline) => continue,
                None => {
                    return Err(call.fail(
                        pso_status::PSO_ERR_TIMEOUT,
                        format_args!(
                            "nothing on direct channel {} -> {} within {timeout_ms} ms",
                            end.peer(),
                            end.system()
                        ),
                    ));
                }
            }
        };
        json.set(call.c_string(value.to_json())?);
        Ok(())
    })
}

/// Frees an end and retires its handle: further calls with it (or any copy)
/// give `PSO_ERR_STALE_HANDLE`. The channel closes for both sides (at once,
/// or — if a send or receive on this end is running on another thread — as
/// soon as that call returns `PSO_ERR_STALE_HANDLE`, within 20 ms). Never
/// waits.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` if already freed (or never issued).
#[unsafe(no_mangle)]
pub extern "C" fn pso_direct_end_free(e: pso_direct_end) -> pso_status {
    ffi_boundary!(pso_direct_end_free, |call| {
        let cell = DIRECT_ENDS.remove(e).ok_or_else(|| call.stale(e))?;
        cell.freed.store(true, Ordering::Release);
        drop(cell);
        Ok(())
    })
}

/// Opens a mesh scope over the systems named in `systems_json` (a JSON array
/// of at least two distinct names): every pair of them gets a direct channel
/// (pairs that have one keep it; take ends with `pso_direct_endpoint`). On
/// success `*out` is the scope; `pso_mesh_end` closes the channels it opened
/// and routing between those pairs reverts to the hub.
///
/// # Errors
/// `PSO_ERR_PARSE` (`systems_json` is not JSON; line and column),
/// `PSO_ERR_INVALID_ARGUMENT` (not an array of strings; fewer than two
/// distinct names; an empty name), `PSO_ERR_NULL_POINTER` (`systems_json`,
/// `out`), `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `systems_json` is NULL or a NUL-terminated string; `out` is NULL or
/// points to a writable `pso_mesh`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_mesh_begin(
    o: pso_orchestrator,
    systems_json: *const c_char,
    out: *mut pso_mesh,
) -> pso_status {
    ffi_boundary!(pso_mesh_begin, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable and
        // `systems_json` NULL or a valid C string, for the whole call.
        let (mut out, systems_json) = unsafe {
            (
                out!(call, out, pso_mesh::default())?,
                c_str!(call, systems_json)?,
            )
        };
        let systems = names(call, &json_doc_arg!(call, systems_json)?)?;
        let orch = call.orchestrator(o)?;
        let mesh = orch.hub().mesh(&systems)?;
        match MESHES.insert(Arc::new(mesh)) {
            Ok(h) => {
                out.set(h);
                Ok(())
            }
            Err(mesh) => {
                drop(mesh);
                Err(call.fail(
                    pso_status::PSO_ERR_BUSY,
                    "too many mesh handles are live (2^32)",
                ))
            }
        }
    })
}

/// The names in `systems_json`, an array of strings.
fn names(call: Call, v: &serde_json::Value) -> Result<Vec<String>, Failure> {
    let bad = || {
        call.fail(
            pso_status::PSO_ERR_INVALID_ARGUMENT,
            format_args!("'systems_json' must be a JSON array of system names, got {v}"),
        )
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|n| n.as_str().map(str::to_owned).ok_or_else(bad))
        .collect()
}

/// Ends a mesh scope and retires its handle: the channels it opened close
/// (ends taken see them closed) and those pairs route through the hub again.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` if already ended (or never issued).
#[unsafe(no_mangle)]
pub extern "C" fn pso_mesh_end(m: pso_mesh) -> pso_status {
    ffi_boundary!(pso_mesh_end, |call| {
        let mesh = MESHES.remove(m).ok_or_else(|| call.stale(m))?;
        drop(mesh);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{pso_orchestrator_close, pso_orchestrator_new};

    fn orch() -> pso_orchestrator {
        let mut o = pso_orchestrator::default();
        // SAFETY: NULL options and a valid out-pointer.
        let st = unsafe { pso_orchestrator_new(ptr::null(), &mut o) };
        assert_eq!(st, pso_status::PSO_OK);
        o
    }

    fn end(o: pso_orchestrator, me: &std::ffi::CStr, peer: &std::ffi::CStr) -> pso_direct_end {
        let mut e = pso_direct_end::default();
        // SAFETY: valid C strings and out-pointer.
        let st = unsafe { pso_direct_endpoint(o, me.as_ptr(), peer.as_ptr(), &mut e) };
        assert_eq!(st, pso_status::PSO_OK);
        e
    }

    /// A receive blocked without limit on one thread returns STALE when
    /// another thread frees the end, and the peer then sees the channel
    /// closed.
    #[test]
    fn freeing_an_end_under_a_blocked_receive_wakes_it_and_closes_the_channel() {
        let o = orch();
        // SAFETY: valid C strings.
        let st = unsafe { pso_direct_open(o, c"a".as_ptr(), c"b".as_ptr(), ptr::null()) };
        assert_eq!(st, pso_status::PSO_OK);
        let (a, b) = (end(o, c"a", c"b"), end(o, c"b", c"a"));
        let waiter = std::thread::spawn(move || {
            let mut json = ptr::null_mut();
            // SAFETY: a valid out-pointer.
            let st = unsafe { pso_direct_recv(a, crate::ffi::args::PSO_WAIT_FOREVER, &mut json) };
            (st, json.is_null(), crate::error::last_error())
        });
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(pso_direct_end_free(a), pso_status::PSO_OK);
        let (st, null, msg) = waiter.join().unwrap();
        assert_eq!(st, pso_status::PSO_ERR_STALE_HANDLE, "{msg}");
        assert!(null);
        // The end was dropped with the waiter's last reference: closed.
        // SAFETY: a valid C string.
        let st = unsafe { pso_direct_send(b, c"1".as_ptr(), 0) };
        assert_eq!(st, pso_status::PSO_ERR_CLOSED);
        assert_eq!(pso_direct_end_free(b), pso_status::PSO_OK);
        assert_eq!(pso_direct_end_free(b), pso_status::PSO_ERR_STALE_HANDLE);
        assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
    }

    /// Two threads using one end take turns: a send on the same end gets in
    /// between the slices of a long receive.
    #[test]
    fn calls_on_one_end_take_turns() {
        let o = orch();
        // SAFETY: valid C strings.
        let st = unsafe { pso_direct_open(o, c"a".as_ptr(), c"b".as_ptr(), ptr::null()) };
        assert_eq!(st, pso_status::PSO_OK);
        let (a, b) = (end(o, c"a", c"b"), end(o, c"b", c"a"));
        let waiter = std::thread::spawn(move || {
            let mut json = ptr::null_mut();
            // SAFETY: a valid out-pointer.
            let st = unsafe { pso_direct_recv(b, 10_000, &mut json) };
            assert_eq!(st, pso_status::PSO_OK);
            // SAFETY: PSO returned a C string; freed once.
            let text = unsafe { std::ffi::CStr::from_ptr(json) }
                .to_str()
                .unwrap()
                .to_owned();
            // SAFETY: as above.
            unsafe { crate::ffi::pso_string_free(json) };
            text
        });
        std::thread::sleep(Duration::from_millis(50));
        // B -> A from the main thread while B's receive waits.
        // SAFETY: a valid C string.
        let st = unsafe { pso_direct_send(b, c"\"to a\"".as_ptr(), 5_000) };
        assert_eq!(st, pso_status::PSO_OK);
        // SAFETY: a valid C string.
        let st = unsafe { pso_direct_send(a, c"[1, 2]".as_ptr(), 5_000) };
        assert_eq!(st, pso_status::PSO_OK);
        assert_eq!(waiter.join().unwrap(), "[1,2]");
        for e in [a, b] {
            assert_eq!(pso_direct_end_free(e), pso_status::PSO_OK);
        }
        assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
    }

    #[test]
    fn mesh_names_are_checked() {
        let call = Call::new("pso_test");
        assert_eq!(
            names(call, &serde_json::json!(["a", "b"])).unwrap(),
            ["a", "b"]
        );
        for bad in [serde_json::json!({"a": 1}), serde_json::json!(["a", 1])] {
            let e = names(call, &bad).unwrap_err();
            assert_eq!(e.status, pso_status::PSO_ERR_INVALID_ARGUMENT);
            assert!(e.message.contains("array of system names"), "{}", e.message);
        }
    }
}
