//! The state-store exports: get, list, put, delete, compare-and-set, watches
//! delivered to C callbacks, snapshots.
//!
//! # Watches
//! pso-core's [`Watcher`] is pulled; C gets a callback. `pso_state_watch`
//! creates the core watch (so `PSO_ERR_COMPACTED` is returned at once) and
//! starts one thread (`pso-watch`) that pulls events and calls the callback
//! with each, in revision order, exactly once. A [`Watcher`] can only be
//! closed by its owner (`close` takes `&mut self`), so the thread waits in
//! slices of [`SLICE`] and looks at its `stop` flag between them: a close
//! takes effect within one slice. When the thread ends it drops the watcher
//! and then `user_data` (so `free_user_data` runs on that thread, after the
//! last callback), and then says it is done; `pso_watch_close` and
//! `pso_orchestrator_close` wait for that (except on the watch's own
//! thread, from inside its callback).

use std::ffi::{CString, c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use pso_core::{Entry, PsoError, StateError, Watcher};

use super::args::{Call, c_str, json_arg, opt_c_str, opt_out, out, required};
use super::handlers::{UserData, in_c_callback, owned_user_data, pso_free_fn};
use super::serialize_error;
use crate::error::{Failure, pso_status};
use crate::handle::{WATCHES, pso_orchestrator, pso_watch};

/// How long the watch thread waits for an event before it looks at its
/// `stop` flag again.
const SLICE: Duration = Duration::from_millis(50);

/// A state watch callback (`pso_state_watch`).
///
/// Called on the watch's own PSO thread, one event at a time, in revision
/// order, each change exactly once, with `event_json` (valid only during the
/// call): `{"revision": n, "key": "...", "value": <JSON> | null (a delete),
/// "writer": "..." | null, "timestamp": "RFC 3339"}`. If the watch ends on
/// its own — it fell so far behind that changes were no longer retained, or
/// the store was restored from a snapshot — a last call gets `{"error":
/// "<message>", "status": <pso_status>}` (`PSO_ERR_COMPACTED` or
/// `PSO_ERR_CLOSED`) and no event follows. It may call PSO functions,
/// `pso_watch_close` on its own watch included.
#[allow(non_camel_case_types)]
pub type pso_event_fn =
    Option<unsafe extern "C" fn(event_json: *const c_char, user_data: *mut c_void)>;

type RawEventFn = unsafe extern "C" fn(*const c_char, *mut c_void);

/// The value behind a `pso_watch`: how to stop its thread and learn that it
/// ended.
#[derive(Debug)]
pub(crate) struct WatchCtl {
    /// The orchestrator handle it was made with (its close stops the watch).
    orch: u64,
    stop: AtomicBool,
    /// The watch thread, once it runs.
    thread: OnceLock<ThreadId>,
    /// Set (and `ended` notified) when the thread has freed `user_data`.
    done: Mutex<bool>,
    ended: Condvar,
}

impl WatchCtl {
    /// Stops the watch; unless called on the watch's own thread (from its
    /// callback), waits until the thread has delivered its last event and
    /// freed `user_data`.
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if self.thread.get() == Some(&std::thread::current().id()) {
            return;
        }
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done {
            done = self
                .ended
                .wait(done)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Says the watch thread is done when dropped (also if it unwinds).
struct Done(Arc<WatchCtl>);

impl Drop for Done {
    fn drop(&mut self) {
        *self.0.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.0.ended.notify_all();
    }
}

/// Stops every watch made with orchestrator handle `o` (from
/// `pso_orchestrator_close`); waits for them unless `wait` is false. Their
/// handles stay valid until `pso_watch_close`.
pub(crate) fn stop_watches_of(o: pso_orchestrator, wait: bool) {
    for ctl in WATCHES.values_where(|c| c.orch == o.id) {
        if wait {
            ctl.stop();
        } else {
            ctl.stop.store(true, Ordering::Release);
        }
    }
}

/// The watch thread: see the module docs.
fn run_watch(ctl: Arc<WatchCtl>, mut watcher: Watcher, f: RawEventFn, ud: Arc<UserData>) {
    let _done = Done(ctl.clone());
    let _ = ctl.thread.set(std::thread::current().id());
    let deliver = |text: String| {
        // Event JSON has no NUL: strings are escaped by serde_json.
        let Ok(text) = CString::new(text) else { return };
        in_c_callback(|| {
            // SAFETY: `f` is a non-null callback given to `pso_state_watch`,
            // whose contract makes it callable on any thread with this
            // `user_data` (kept alive by `ud` until after the last call).
            // `text` outlives the call.
            unsafe { f(text.as_ptr(), ud.ptr()) }
        });
    };
    loop {
        if ctl.stop.load(Ordering::Acquire) {
            break;
        }
        match watcher.recv_timeout(SLICE) {
            Ok(event) => {
                if ctl.stop.load(Ordering::Acquire) {
                    break;
                }
                let text = serde_json::to_string(&event)
                    .unwrap_or_else(|e| terminal(&format!("cannot serialize the event: {e}"), 4));
                deliver(text);
            }
            Err(StateError::Timeout { .. }) => {}
            Err(e) => {
                if !ctl.stop.load(Ordering::Acquire) {
                    let status = pso_status::from_kind(e.kind()) as i32;
                    deliver(terminal(&e.to_string(), status));
                }
                break;
            }
        }
    }
    drop(watcher);
    // The last reference: `free_user_data` runs here, on this thread, which
    // is inside no export.
    drop(ud);
}

/// The last event of a watch that ended on its own.
fn terminal(message: &str, status: i32) -> String {
    serde_json::json!({ "error": message, "status": status }).to_string()
}

/// An entry (or `null`) as JSON text.
fn entry_text(call: Call, entry: Option<&Entry>) -> Result<String, Failure> {
    serde_json::to_string(&entry).map_err(|e| serialize_error(call, e))
}

/// The latest revision of the store in `*rev` (0 before the first write).
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`rev`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `rev` is NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_state_revision(o: pso_orchestrator, rev: *mut u64) -> pso_status {
    ffi_boundary!(pso_state_revision, |call| {
        // SAFETY: per `# Safety`, `rev` is NULL or writable.
        let mut rev = unsafe { out!(call, rev, 0)? };
        let orch = call.orchestrator(o)?;
        rev.set(orch.state().revision());
        Ok(())
    })
}

/// The current entry of `key` as JSON in `*entry_json` (free it with
/// `pso_string_free`): `{"key", "value", "revision", "writer", "timestamp"}`,
/// or the text `null` if the key is absent.
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` (empty key), `PSO_ERR_NULL_POINTER` (`key`,
/// `entry_json`), `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string; `entry_json` is NULL or points
/// to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_state_get(
    o: pso_orchestrator,
    key: *const c_char,
    entry_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_state_get, |call| {
        // SAFETY: per `# Safety`, `entry_json` is NULL or writable and `key`
        // NULL or a valid C string, for the whole call.
        let (mut entry_json, key) =
            unsafe { (out!(call, entry_json, ptr::null_mut())?, c_str!(call, key)?) };
        let orch = call.orchestrator(o)?;
        let entry = orch.state().get(key)?;
        entry_json.set(call.c_string(entry_text(call, entry.as_ref())?)?);
        Ok(())
    })
}

/// Every present entry whose key starts with `prefix` (nullable: all keys),
/// sorted by key, as a JSON array of entries (as `pso_state_get`) in
/// `*json`. Free it with `pso_string_free`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `prefix` is NULL or a NUL-terminated string; `json` is NULL or points to
/// a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_state_list(
    o: pso_orchestrator,
    prefix: *const c_char,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_state_list, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable and `prefix` NULL
        // or a valid C string, for the whole call.
        let (mut json, prefix) = unsafe {
            (
                out!(call, json, ptr::null_mut())?,
                opt_c_str!(call, prefix)?,
            )
        };
        let orch = call.orchestrator(o)?;
        let entries = orch.state().list(prefix.unwrap_or(""))?;
        let text = serde_json::to_string(&entries).map_err(|e| serialize_error(call, e))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

/// Sets `key` to the value `json`; `writer` (nullable) names the writing
/// system. `*rev` (nullable) receives the write's revision (revisions are
/// global and strictly increasing).
///
/// # Errors
/// `PSO_ERR_PARSE` (`json` is not JSON; line and column),
/// `PSO_ERR_INVALID_ARGUMENT` (empty key), `PSO_ERR_NULL_POINTER` (`key`,
/// `json`), `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `key`, `json` and `writer` are NULL or NUL-terminated strings; `rev` is
/// NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_state_put(
    o: pso_orchestrator,
    key: *const c_char,
    json: *const c_char,
    writer: *const c_char,
    rev: *mut u64,
) -> pso_status {
    ffi_boundary!(pso_state_put, |call| {
        // SAFETY: per `# Safety`, `rev` is NULL or writable and the strings
        // NULL or valid C strings, for the whole call.
        let (rev, key, json, writer) = unsafe {
            (
                opt_out!(call, rev, 0),
                c_str!(call, key)?,
                c_str!(call, json)?,
                opt_c_str!(call, writer)?,
            )
        };
        let value = json_arg!(call, json)?;
        let orch = call.orchestrator(o)?;
        let r = match writer {
            Some(w) => orch.state().as_writer(w).put(key, value)?,
            None => orch.state().put(key, value)?,
        };
        if let Some(mut rev) = rev {
            rev.set(r);
        }
        Ok(())
    })
}

/// Deletes `key`. `*rev` (nullable) receives the delete's revision, or 0 if
/// the key was absent (nothing changed; still `PSO_OK`).
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` (empty key), `PSO_ERR_NULL_POINTER` (`key`),
/// `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string; `rev` is NULL or points to a
/// writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_state_delete(
    o: pso_orchestrator,
    key: *const c_char,
    rev: *mut u64,
) -> pso_status {
    ffi_boundary!(pso_state_delete, |call| {
        // SAFETY: per `# Safety`, `rev` is NULL or writable and `key` NULL or
        // a valid C string, for the whole call.
        let (rev, key) = unsafe { (opt_out!(call, rev, 0), c_str!(call, key)?) };
        let orch = call.orchestrator(o)?;
        let r = orch.state().delete(key)?;
        if let Some(mut rev) = rev {
            rev.set(r.unwrap_or(0));
        }
        Ok(())
    })
}

/// Compare-and-set: sets `key` to the value `json` only if its current
/// revision is `expected` (0: only if the key is absent), atomically.
/// `*rev` (nullable) receives the new revision.
///
/// On a conflict it returns `PSO_ERR_CAS_CONFLICT` and changes nothing;
/// then `*rev` receives the key's *current* revision (0: absent) and
/// `*current_json` (nullable) the current entry as JSON (as
/// `pso_state_get`; the text `null` if absent; free it with
/// `pso_string_free`), so a retry loop needs no extra read. The message
/// says the same: `compare-and-set on 'k' expected revision 3, found 5;
/// current entry: {...}`. `*current_json` is NULL after any other outcome.
///
/// # Errors
/// `PSO_ERR_CAS_CONFLICT`, `PSO_ERR_PARSE` (`json`; line and column),
/// `PSO_ERR_INVALID_ARGUMENT` (empty key), `PSO_ERR_NULL_POINTER` (`key`,
/// `json`), `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `key` and `json` are NULL or NUL-terminated strings; `rev` is NULL or
/// points to a writable `uint64_t`; `current_json` is NULL or points to a
/// writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_state_cas(
    o: pso_orchestrator,
    key: *const c_char,
    expected: u64,
    json: *const c_char,
    rev: *mut u64,
    current_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_state_cas, |call| {
        // SAFETY: per `# Safety`, the out-parameters are NULL or writable and
        // the strings NULL or valid C strings, for the whole call.
        let (rev, current_json, key, json) = unsafe {
            (
                opt_out!(call, rev, 0),
                opt_out!(call, current_json, ptr::null_mut()),
                c_str!(call, key)?,
                c_str!(call, json)?,
            )
        };
        let value = json_arg!(call, json)?;
        let orch = call.orchestrator(o)?;
        match orch.state().compare_and_set(key, expected, value) {
            Ok(r) => {
                if let Some(mut rev) = rev {
                    rev.set(r);
                }
                Ok(())
            }
            Err(e @ StateError::Conflict { .. }) => {
                let StateError::Conflict { current, .. } = &e else {
                    unreachable!("matched above")
                };
                let text = entry_text(call, current.as_ref())?;
                if let Some(mut rev) = rev {
                    rev.set(current.as_ref().map_or(0, |c| c.revision));
                }
                let message = format!("{e}; current entry: {text}");
                if let Some(mut current_json) = current_json {
                    current_json.set(call.c_string(text)?);
                }
                Err(Failure::new(pso_status::PSO_ERR_CAS_CONFLICT, message))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Watches `key` (or, with `prefix` true, every key starting with `key`;
/// `""` for all keys): `func` gets every change with a revision greater
/// than `from_rev`, in revision order, each exactly once, on a PSO thread of
/// the watch's own (see `pso_event_fn`). `from_rev` 0 means "everything
/// still retained"; `pso_state_revision` gives "from now on". On success
/// `*out` is the watch; stop it with `pso_watch_close`.
///
/// Ownership of `user_data`: on `PSO_OK`, PSO owns it and calls
/// `free_user_data(user_data)` (if not NULL) exactly once, on the watch's
/// thread, after its last callback: before `pso_watch_close` (or
/// `pso_orchestrator_close`) returns — or, when `pso_watch_close` is called
/// from inside the callback, right after the callback returns. On any error
/// PSO does not take `user_data` and never calls `free_user_data`.
///
/// # Errors
/// `PSO_ERR_COMPACTED` if changes after `from_rev` are no longer all
/// retained (read the current value and watch from its revision);
/// `PSO_ERR_INVALID_ARGUMENT` (empty key without `prefix`),
/// `PSO_ERR_NULL_POINTER` (`key`, `func`, `out`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_IO` (the thread cannot start).
///
/// # Safety
/// `key` is NULL or a NUL-terminated string; `out` is NULL or points to a
/// writable `pso_watch`. `func` is NULL or a function with the
/// `pso_event_fn` signature, callable from another thread with `user_data`
/// until `free_user_data` runs (or until the watch ends, when it is NULL).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn pso_state_watch(
    o: pso_orchestrator,
    key: *const c_char,
    prefix: bool,
    from_rev: u64,
    func: pso_event_fn,
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
    out: *mut pso_watch,
) -> pso_status {
    ffi_boundary!(pso_state_watch, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable and `key` NULL or
        // a valid C string, for the whole call.
        let (mut out, key) =
            unsafe { (out!(call, out, pso_watch::default())?, c_str!(call, key)?) };
        let func = required!(call, func)?;
        let orch = call.orchestrator(o)?;
        let watcher = if prefix {
            orch.state().watch_prefix(key, from_rev)?
        } else {
            orch.state().watch(key, from_rev)?
        };
        let ctl = Arc::new(WatchCtl {
            orch: o.id,
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
            done: Mutex::new(false),
            ended: Condvar::new(),
        });
        let (ud, ownership) = owned_user_data(user_data, free_user_data);
        // Registered before the thread starts, so an orchestrator close from
        // now on finds it.
        let h = WATCHES.insert(ctl.clone()).map_err(|_| {
            call.fail(
                pso_status::PSO_ERR_BUSY,
                "too many watch handles are live (2^32)",
            )
        })?;
        let thread_ctl = ctl.clone();
        let spawned = std::thread::Builder::new()
            .name("pso-watch".into())
            .spawn(move || run_watch(thread_ctl, watcher, func, ud));
        if let Err(e) = spawned {
            // Nothing ran: `ownership`, dropped uncommitted below, disarms
            // the free before the last `ud` goes with it.
            drop(WATCHES.remove(h));
            return Err(call.fail(
                pso_status::PSO_ERR_IO,
                format_args!("cannot start the watch thread: {e}"),
            ));
        }
        ownership.commit();
        out.set(h);
        Ok(())
    })
}

/// Stops a watch and retires its handle: further calls with it (or any copy)
/// give `PSO_ERR_STALE_HANDLE`. No event is delivered after it returns, and
/// `free_user_data` has run — unless it is called from inside the watch's
/// own callback: then the watch ends when that callback returns. Waits for a
/// running callback to return (within 50 ms otherwise). Works after the
/// orchestrator was closed (the watch had ended then).
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` if already closed (or never issued).
#[unsafe(no_mangle)]
pub extern "C" fn pso_watch_close(w: pso_watch) -> pso_status {
    ffi_boundary!(pso_watch_close, |call| {
        let ctl = WATCHES.remove(w).ok_or_else(|| call.stale(w))?;
        ctl.stop();
        Ok(())
    })
}

/// Writes a snapshot of the present entries to `path`, atomically (a
/// temporary file in the same directory, synced, then renamed over `path`: a
/// failure or crash never corrupts the previous snapshot).
///
/// # Errors
/// `PSO_ERR_IO`, `PSO_ERR_NULL_POINTER` (`path`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_state_snapshot(
    o: pso_orchestrator,
    path: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_state_snapshot, |call| {
        // SAFETY: per `# Safety`, `path` is NULL or a valid C string.
        let path = unsafe { c_str!(call, path)? };
        let orch = call.orchestrator(o)?;
        orch.state().snapshot(path)?;
        Ok(())
    })
}

/// Replaces the store's contents with the snapshot at `path`. Entries keep
/// their revisions; the revision counter continues from the larger of the
/// snapshot's and the current one. Live watches end (their callback gets a
/// last `{"error": ..., "status": PSO_ERR_CLOSED}`), and a new watch from a
/// revision before the restore is `PSO_ERR_COMPACTED`.
///
/// # Errors
/// `PSO_ERR_IO` (unreadable), `PSO_ERR_PARSE` (not a snapshot, or an
/// unsupported version), `PSO_ERR_NULL_POINTER` (`path`),
/// `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_state_restore(o: pso_orchestrator, path: *const c_char) -> pso_status {
    ffi_boundary!(pso_state_restore, |call| {
        // SAFETY: per `# Safety`, `path` is NULL or a valid C string.
        let path = unsafe { c_str!(call, path)? };
        let orch = call.orchestrator(o)?;
        orch.state().restore(path)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{pso_orchestrator_close, pso_orchestrator_new};
    use std::sync::atomic::AtomicUsize;

    fn orch() -> pso_orchestrator {
        let mut o = pso_orchestrator::default();
        // SAFETY: NULL options and a valid out-pointer.
        let st = unsafe { pso_orchestrator_new(ptr::null(), &mut o) };
        assert_eq!(st, pso_status::PSO_OK);
        o
    }

    #[derive(Default)]
    struct Seen {
        events: Mutex<Vec<String>>,
        freed: AtomicUsize,
        /// A watch handle for the callback to close (0: none).
        close: Mutex<Option<pso_watch>>,
    }

    unsafe extern "C" fn on_event(json: *const c_char, ud: *mut c_void) {
        // SAFETY: the test passes a live `Seen`; PSO a valid C string.
        let (seen, json) = unsafe { (&*(ud as *const Seen), std::ffi::CStr::from_ptr(json)) };
        seen.events
            .lock()
            .unwrap()
            .push(json.to_str().unwrap().to_owned());
        let close = seen.close.lock().unwrap().take();
        if let Some(w) = close {
            assert_eq!(pso_watch_close(w), pso_status::PSO_OK);
            // Closed from inside: the free waits for this callback to return.
            assert_eq!(seen.freed.load(Ordering::SeqCst), 0);
        }
    }

    unsafe extern "C" fn on_free(ud: *mut c_void) {
        // SAFETY: the test passes a live `Seen`.
        let seen = unsafe { &*(ud as *const Seen) };
        seen.freed.fetch_add(1, Ordering::SeqCst);
    }

    fn put(o: pso_orchestrator, key: &std::ffi::CStr, json: &std::ffi::CStr) -> u64 {
        let mut rev = 0;
        // SAFETY: valid C strings and out-pointer.
        let st = unsafe { pso_state_put(o, key.as_ptr(), json.as_ptr(), ptr::null(), &mut rev) };
        assert_eq!(st, pso_status::PSO_OK);
        rev
    }

    fn watch(o: pso_orchestrator, seen: &Seen, from: u64) -> pso_watch {
        let mut w = pso_watch::default();
        // SAFETY: `seen` outlives the watch (the tests close it first).
        let st = unsafe {
            pso_state_watch(
                o,
                c"k".as_ptr(),
                false,
                from,
                Some(on_event),
                seen as *const Seen as *mut c_void,
                Some(on_free),
                &mut w,
            )
        };
        assert_eq!(st, pso_status::PSO_OK);
        w
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < end, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A watch closed from inside its own callback ends after that callback
    /// returns: nothing more is delivered, and the free runs exactly once,
    /// on the watch thread, without the close waiting for itself.
    #[test]
    fn a_watch_closed_from_its_own_callback_frees_once_after_it() {
        let o = orch();
        let seen = Seen::default();
        let w = watch(o, &seen, 0);
        *seen.close.lock().unwrap() = Some(w);
        put(o, c"k", c"1");
        wait_for("the free", || seen.freed.load(Ordering::SeqCst) == 1);
        put(o, c"k", c"2");
        std::thread::sleep(SLICE * 2);
        assert_eq!(seen.events.lock().unwrap().len(), 1);
        assert_eq!(pso_watch_close(w), pso_status::PSO_ERR_STALE_HANDLE);
        assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
        assert_eq!(seen.freed.load(Ordering::SeqCst), 1);
    }

    /// Closing the orchestrator ends its watches (freeing before it returns)
    /// but leaves the handles for `pso_watch_close`; a concurrent close of
    /// the same watch and the orchestrator both wait for the thread.
    #[test]
    fn closing_the_orchestrator_ends_its_watches_and_keeps_their_handles() {
        let o = orch();
        let seen = Seen::default();
        let w = watch(o, &seen, 0);
        put(o, c"k", c"1");
        wait_for("the event", || seen.events.lock().unwrap().len() == 1);
        assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
        assert_eq!(seen.freed.load(Ordering::SeqCst), 1, "freed by the close");
        assert_eq!(pso_watch_close(w), pso_status::PSO_OK);
        assert_eq!(seen.freed.load(Ordering::SeqCst), 1);
        let ev: serde_json::Value = serde_json::from_str(&seen.events.lock().unwrap()[0]).unwrap();
        assert_eq!(
            (ev["key"].as_str(), ev["value"].as_i64()),
            (Some("k"), Some(1))
        );
    }

    /// A restore ends a live watch with a terminal error event.
    #[test]
    fn a_restore_ends_live_watches_with_an_error_event() {
        let o = orch();
        let dir = std::env::temp_dir().join(format!("pso-c-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snap.json");
        let cpath = CString::new(path.to_str().unwrap()).unwrap();
        put(o, c"k", c"1");
        // SAFETY: a valid C string.
        let st = unsafe { pso_state_snapshot(o, cpath.as_ptr()) };
        assert_eq!(st, pso_status::PSO_OK);
        let seen = Seen::default();
        let w = watch(o, &seen, 0);
        wait_for("the backlog", || seen.events.lock().unwrap().len() == 1);
        // SAFETY: a valid C string.
        let st = unsafe { pso_state_restore(o, cpath.as_ptr()) };
        assert_eq!(st, pso_status::PSO_OK);
        wait_for("the free", || seen.freed.load(Ordering::SeqCst) == 1);
        let last = seen.events.lock().unwrap().last().cloned().unwrap();
        let ev: serde_json::Value = serde_json::from_str(&last).unwrap();
        assert_eq!(ev["status"], pso_status::PSO_ERR_CLOSED as i32, "{last}");
        assert!(ev["error"].as_str().is_some());
        assert_eq!(pso_watch_close(w), pso_status::PSO_OK);
        assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_cas_conflict_reports_the_current_entry_in_both_places() {
        let o = orch();
        let r1 = put(o, c"k", c"{\"n\": 1}");
        let (mut rev, mut cur) = (7u64, ptr::null_mut());
        // SAFETY: valid C strings and out-pointers.
        let st =
            unsafe { pso_state_cas(o, c"k".as_ptr(), r1 + 10, c"2".as_ptr(), &mut rev, &mut cur) };
        assert_eq!(st, pso_status::PSO_ERR_CAS_CONFLICT);
        assert_eq!(rev, r1);
        // SAFETY: PSO returned a C string; freed once.
        let text = unsafe { std::ffi::CStr::from_ptr(cur) }
            .to_str()
            .unwrap()
            .to_owned();
        // SAFETY: as above.
        unsafe { crate::ffi::pso_string_free(cur) };
        assert!(
            text.contains("\"revision\":") && text.contains("\"n\":1"),
            "{text}"
        );
        let msg = crate::error::last_error();
        assert!(msg.contains(&format!("current entry: {text}")), "{msg}");
        // Absent key and expected 0: succeeds, nothing in `cur`. Absent key
        // and expected 5: a conflict reporting `null` and revision 0.
        // SAFETY: valid C strings and out-pointers.
        let st = unsafe { pso_state_cas(o, c"new".as_ptr(), 0, c"1".as_ptr(), &mut rev, &mut cur) };
        assert_eq!(st, pso_status::PSO_OK);
        assert!(cur.is_null());
        // SAFETY: valid C strings and out-pointers.
        let st =
            unsafe { pso_state_cas(o, c"gone".as_ptr(), 5, c"1".as_ptr(), &mut rev, &mut cur) };
        assert_eq!(st, pso_status::PSO_ERR_CAS_CONFLICT);
        assert_eq!(rev, 0);
        // SAFETY: PSO returned a C string; freed once.
        let text = unsafe { std::ffi::CStr::from_ptr(cur) };
        assert_eq!(text.to_str().unwrap(), "null");
        // SAFETY: as above.
        unsafe { crate::ffi::pso_string_free(cur) };
        assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
    }
}
