//! C lifecycle callbacks as pso-core [`Handlers`], and the `user_data`
//! ownership shared with workflow operations (`super::ops`).
//!
//! One [`UserData`] is shared (through an `Arc`) by the activate and the
//! deactivate closure of one `pso_set_handlers` call (or by the operation
//! closure of one `pso_set_operation` call). Its `Drop` calls
//! `free_user_data`, so the C callback runs exactly once, when the last
//! closure is gone: when the handlers are replaced, or when the orchestrator
//! is dropped — and never while a handler still runs (a running or abandoned
//! handler's transaction holds a clone of its closure).
//!
//! `free_user_data` may call back into PSO, but pso-core drops replaced
//! handlers while it holds the registry write lock. So a free that becomes due
//! on a thread running an export is deferred to the end of that export's body
//! ([`deferring_frees`]); anywhere else (a worker dropping a finished
//! transaction) it runs at once.
//!
//! Ownership passes to PSO only when `pso_set_handlers` succeeds: on failure
//! [`Ownership`] disarms the free callback before the closures are dropped,
//! so the caller still owns `user_data` and must free it.

use std::cell::{Cell, RefCell};
use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pso_core::{HandlerError, Handlers, HostPayload, LifecycleContext};

/// A lifecycle callback: returns 0 on success.
///
/// Called on a PSO worker thread (never the thread that called
/// `pso_activate_system`), with no PSO lock held, so it may call read-only
/// functions such as `pso_status_of`; a lifecycle call (`pso_activate_*`,
/// `pso_deactivate_*`) from inside a callback returns `PSO_ERR_BUSY`.
///
/// `system` is the system's name, valid only during the call. On failure,
/// return non-zero and optionally write a NUL-terminated message into
/// `error_buf` (`error_buf_len` bytes, `PSO_HANDLER_ERROR_BUF_LEN`); PSO reads
/// at most `error_buf_len - 1` bytes, so an unterminated message is truncated,
/// never overrun. The failure is reported as `status <n>: <message>` (the
/// message is `status <n>` when none was written).
#[allow(non_camel_case_types)]
pub type pso_lifecycle_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        system: *const c_char,
        error_buf: *mut c_char,
        error_buf_len: usize,
    ) -> i32,
>;

/// Frees the `user_data` given to `pso_set_handlers` or `pso_set_operation`.
/// Called exactly once, possibly on a PSO worker thread.
#[allow(non_camel_case_types)]
pub type pso_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Size of the `error_buf` passed to a `pso_lifecycle_fn`, terminating NUL included.
pub const PSO_HANDLER_ERROR_BUF_LEN: usize = 1024;

thread_local! {
    static IN_C_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running a C callback (lifecycle handler or
/// workflow operation) right now.
pub(crate) fn in_c_handler() -> bool {
    IN_C_HANDLER.with(Cell::get)
}

/// Runs `f` (which calls a C callback) with [`in_c_handler`] set.
pub(crate) fn in_c_callback<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let prev = self.0;
            let _ = IN_C_HANDLER.try_with(|c| c.set(prev));
        }
    }
    let _reset = Reset(IN_C_HANDLER.with(|c| c.replace(true)));
    f()
}

/// The C `user_data` pointer and how to free it.
pub(crate) struct UserData {
    ptr: *mut c_void,
    free: pso_free_fn,
    owned: AtomicBool,
}

// SAFETY: `UserData` only carries the pointer to the C callbacks and to
// `free_user_data`; it never dereferences it. `pso_set_handlers` documents
// that the callbacks run on PSO worker threads, possibly several at once (one
// per system sharing the handlers), and that `free_user_data` may run on any
// thread, so the C caller promises that `user_data` may be used from any
// thread. That promise is what Send + Sync mean here.
unsafe impl Send for UserData {}
// SAFETY: see the `Send` impl above; all shared access is by value (`ptr()`)
// or atomic (`owned`).
unsafe impl Sync for UserData {}

impl UserData {
    /// The pointer (a method, so closures capture the whole `Arc`, not the
    /// non-`Send` field: Rust 2021 disjoint capture).
    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if *self.owned.get_mut()
            && let Some(free) = self.free
        {
            let mut pending = Some(PendingFree {
                free,
                ptr: self.ptr,
            });
            // Inside an export, pso-core may hold a lock right now (it drops
            // replaced handlers under the registry write lock), and the C
            // callback may call back into PSO: run it when the export's body
            // is done. Elsewhere (a worker dropping a finished transaction,
            // or thread teardown) no PSO lock is held: run it now.
            let _ = DEFERRED_FREES.try_with(|d| {
                if let Ok(mut d) = d.try_borrow_mut()
                    && let Some(list) = d.as_mut()
                {
                    list.extend(pending.take());
                }
            });
            if let Some(pending) = pending {
                pending.run();
            }
        }
    }
}

/// A `free_user_data` call waiting for the end of the current export.
struct PendingFree {
    free: unsafe extern "C" fn(*mut c_void),
    ptr: *mut c_void,
}

impl PendingFree {
    fn run(self) {
        // SAFETY: `free` is the caller's `free_user_data` for `ptr`; ownership
        // passed to PSO when `pso_set_handlers` succeeded (`UserData::owned`),
        // and this runs once: `UserData::drop` made exactly one `PendingFree`
        // after the last closure that could pass `ptr` to a callback was gone.
        unsafe { (self.free)(self.ptr) }
    }
}

thread_local! {
    /// `Some` while an export runs on this thread: the frees to run when its
    /// body is done.
    static DEFERRED_FREES: RefCell<Option<Vec<PendingFree>>> = const { RefCell::new(None) };
}

/// Runs `body`; `free_user_data` calls that become due on this thread while it
/// runs are made after it returns (in order), with no PSO lock held. Nests:
/// a free callback that calls PSO gets its own scope.
pub(crate) fn deferring_frees<R>(body: impl FnOnce() -> R) -> R {
    let outer = DEFERRED_FREES.try_with(|d| d.replace(Some(Vec::new())));
    let result = body();
    if let Ok(outer) = outer {
        let due = DEFERRED_FREES.try_with(|d| d.replace(outer)).ok().flatten();
        for pending in due.into_iter().flatten() {
            pending.run();
        }
    }
    result
}

/// Runs `body` with the frees that become due on this thread made at once
/// instead of at the end of the export this thread may be running: for
/// places known to hold no PSO lock, such as right after a preemption
/// callback fired (the allocator delivers notices with nothing locked).
pub(crate) fn frees_now<R>(body: impl FnOnce() -> R) -> R {
    struct Restore(Option<Option<Vec<PendingFree>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                let _ = DEFERRED_FREES.try_with(|d| {
                    if let Ok(mut d) = d.try_borrow_mut() {
                        *d = outer;
                    }
                });
            }
        }
    }
    let _restore = Restore(
        DEFERRED_FREES
            .try_with(|d| d.try_borrow_mut().ok().map(|mut d| d.take()))
            .ok()
            .flatten(),
    );
    body()
}

/// Until [`Ownership::commit`], dropping this gives `user_data` back to the
/// caller (the free callback will not run).
pub(crate) struct Ownership {
    ud: Arc<UserData>,
    committed: bool,
}

impl Ownership {
    /// PSO now owns `user_data`: the free callback runs when the last handler
    /// closure is dropped (at once if there are none).
    pub(crate) fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Ownership {
    fn drop(&mut self) {
        if !self.committed {
            self.ud.owned.store(false, Ordering::Release);
        }
    }
}

/// Builds core handlers that call the C callbacks with `user_data`.
pub(crate) fn c_handlers(
    on_activate: pso_lifecycle_fn,
    on_deactivate: pso_lifecycle_fn,
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
) -> (Handlers, Ownership) {
    let (ud, ownership) = owned_user_data(user_data, free_user_data);
    let closure = |f: pso_lifecycle_fn| {
        f.map(|f| {
            let ud = Arc::clone(&ud);
            Arc::new(move |ctx: &LifecycleContext<'_>| invoke(f, &ud, ctx.system()))
                as pso_core::LifecycleFn
        })
    };
    let handlers = Handlers::new()
        .with_activate(closure(on_activate))
        .with_deactivate(closure(on_deactivate));
    (handlers, ownership)
}

/// `user_data` with its free function, for closures to share, and the
/// [`Ownership`] to commit once PSO has taken it.
pub(crate) fn owned_user_data(
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
) -> (Arc<UserData>, Ownership) {
    let ud = Arc::new(UserData {
        ptr: user_data,
        free: free_user_data,
        owned: AtomicBool::new(true),
    });
    let ownership = Ownership {
        ud: Arc::clone(&ud),
        committed: false,
    };
    (ud, ownership)
}

type RawLifecycleFn = unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_char, usize) -> i32;

fn invoke(f: RawLifecycleFn, ud: &UserData, system: &str) -> Result<(), HandlerError> {
    let name = CString::new(system)
        .map_err(|_| HandlerError::failed("system name contains a NUL byte"))?;
    let mut buf = [0u8; PSO_HANDLER_ERROR_BUF_LEN];
    let rc = in_c_callback(|| {
        // SAFETY: `f` is a non-null callback given to `pso_set_handlers`,
        // whose contract makes it callable on any thread with this
        // `user_data` (kept alive by `ud`, see the module docs). `name`
        // outlives the call; `buf` is valid for writes of `buf.len()` bytes
        // and outlives the call.
        unsafe { f(ud.ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    });
    if rc == 0 {
        Ok(())
    } else {
        Err(raised(rc, &buf))
    }
}

/// The error for a callback that returned `rc` after writing (or not) into
/// `buf`. Reads at most `buf.len() - 1` bytes, up to the first NUL.
fn raised(rc: i32, buf: &[u8]) -> HandlerError {
    let text = &buf[..buf.len().saturating_sub(1)];
    let text = &text[..text.iter().position(|&b| b == 0).unwrap_or(text.len())];
    let message = match std::str::from_utf8(text) {
        Ok(s) => s.to_owned(),
        // Cut inside the last character by truncation: drop the partial one.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&text[..e.valid_up_to()]).into_owned()
        }
        // The handler's own bytes are not UTF-8: show them with U+FFFD (this
        // is output from C, not an argument, so it is not rejected).
        Err(_) => String::from_utf8_lossy(text).into_owned(),
    };
    status_error(rc, message)
}

/// The error of a C callback that returned `rc` with `message` (empty: none):
/// type `status <rc>`, message `message` or else `status <rc>`, and `rc` as
/// the payload.
pub(crate) fn status_error(rc: i32, message: String) -> HandlerError {
    let type_name = format!("status {rc}");
    HandlerError::Raised {
        message: if message.is_empty() {
            type_name.clone()
        } else {
            message
        },
        type_name,
        payload: Some(HostPayload::new(rc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(e: HandlerError) -> (String, String, Option<i32>) {
        match e {
            HandlerError::Raised {
                type_name,
                message,
                payload,
            } => (
                type_name,
                message,
                payload.and_then(|p| p.downcast_ref::<i32>().copied()),
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_up_to_nul() {
        let mut buf = [0u8; 16];
        buf[..5].copy_from_slice(b"oops\0");
        buf[5..8].copy_from_slice(b"xyz");
        let (t, m, p) = parts(raised(7, &buf));
        assert_eq!((t.as_str(), m.as_str(), p), ("status 7", "oops", Some(7)));
        assert_eq!(raised(7, &buf).to_string(), "status 7: oops");
    }

    #[test]
    fn no_message_uses_the_status() {
        let (t, m, _) = parts(raised(-2, &[0u8; 8]));
        assert_eq!((t.as_str(), m.as_str()), ("status -2", "status -2"));
        let (_, m, _) = parts(raised(1, &[]));
        assert_eq!(m, "status 1");
    }

    #[test]
    fn unterminated_message_is_truncated_to_len_minus_one() {
        let (_, m, _) = parts(raised(1, &[b'x'; 10]));
        assert_eq!(m, "x".repeat(9));
        // A two-byte character cut by the truncation is dropped whole.
        let (_, m, _) = parts(raised(1, b"abc\xc3\xa9"));
        assert_eq!(m, "abc", "the 4 readable bytes end inside 'é'");
        let (_, m, _) = parts(raised(1, b"abc\xc3\xa9!"));
        assert_eq!(m, "abc\u{e9}");
        let (_, m, _) = parts(raised(1, b"a\xffb\0"));
        assert_eq!(m, "a\u{fffd}b");
    }

    unsafe extern "C" fn count_free(p: *mut c_void) {
        // SAFETY: the tests pass a pointer to a live AtomicUsize.
        let n = unsafe { &*(p as *const std::sync::atomic::AtomicUsize) };
        n.fetch_add(1, Ordering::SeqCst);
    }

    unsafe extern "C" fn ok(_: *mut c_void, _: *const c_char, _: *mut c_char, _: usize) -> i32 {
        0
    }

    #[test]
    fn frees_due_inside_an_export_wait_for_its_end() {
        let n = std::sync::atomic::AtomicUsize::new(0);
        let p = &n as *const _ as *mut c_void;
        let (h, own) = c_handlers(Some(ok), None, p, Some(count_free));
        own.commit();
        let seen_inside = deferring_frees(|| {
            drop(h);
            n.load(Ordering::SeqCst)
        });
        assert_eq!(seen_inside, 0, "deferred while the body runs");
        assert_eq!(n.load(Ordering::SeqCst), 1, "run when it ends");
    }

    #[test]
    fn free_runs_once_after_commit_and_never_without() {
        let n = std::sync::atomic::AtomicUsize::new(0);
        let p = &n as *const _ as *mut c_void;

        let (h, own) = c_handlers(Some(ok), Some(ok), p, Some(count_free));
        own.commit();
        let h2 = h.clone();
        drop(h);
        assert_eq!(n.load(Ordering::SeqCst), 0, "a clone still holds it");
        drop(h2);
        assert_eq!(n.load(Ordering::SeqCst), 1);

        let (h, own) = c_handlers(Some(ok), None, p, Some(count_free));
        drop(own); // the call failed: the caller keeps user_data
        drop(h);
        assert_eq!(n.load(Ordering::SeqCst), 1);

        let (h, own) = c_handlers(None, None, p, Some(count_free));
        assert!(!h.has_activate() && !h.has_deactivate());
        own.commit();
        assert_eq!(
            n.load(Ordering::SeqCst),
            2,
            "no handler keeps it: freed at once"
        );
    }
}
