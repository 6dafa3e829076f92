//! Workflow operations implemented in C, and the step context they see.
//!
//! A `pso_op_fn` gets a `const pso_step_ctx *` that is not a pointer into
//! Rust memory: it is a *key*, unique for the process lifetime (a global
//! counter, never 0), naming one call of the callback. While the callback
//! runs, a [`Frame`] with that key sits on a thread-local list of the thread
//! that runs it; the frame points at the core's `StepContext` (which lives on
//! that thread's stack, further down) and collects the output or error the
//! callback sets. When the callback returns, the frame is removed. So a
//! context used after its callback returned — or from another thread — finds
//! no frame and gives `PSO_ERR_STALE_HANDLE`: it is never dereferenced.
//!
//! Strings handed to C (`pso_step_input`, `pso_step_name`, ...) are owned by
//! the frame, so they stay valid until the callback returns.
//!
//! Nested frames: a callback that waits for a run on a worker thread of the
//! same orchestrator may run other steps on this thread meanwhile (the core
//! helps instead of blocking), so the list is a stack, searched by key.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_void};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pso_core::{HandlerError, OpFn, StepContext, Value};

use super::args::{Call, c_str, json_arg, out};
use super::handlers::{
    Ownership, UserData, in_c_callback, owned_user_data, pso_free_fn, status_error,
};
use crate::error::{Failure, pso_status};

/// The context of one step attempt, passed to a `pso_op_fn`. Opaque: use it
/// only through the `pso_step_*` functions, only on the thread running the
/// callback, and only until the callback returns (afterwards, or on another
/// thread, those functions give `PSO_ERR_STALE_HANDLE`; it is a key, never
/// dereferenced, so this is never undefined behaviour).
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct pso_step_ctx {
    _opaque: [u8; 0],
}

/// A workflow operation implemented in C: returns 0 on success.
///
/// Called on a PSO worker thread, possibly several times at once (one step
/// per worker), with the `user_data` given to `pso_set_operation` and the
/// context of this step attempt. While it runs it may call
/// `pso_step_input`, `pso_step_input_named`, `pso_step_name`,
/// `pso_step_attempt`, `pso_step_cancelled`, `pso_step_set_output` and
/// `pso_step_set_error` with `ctx`, on this thread.
///
/// * Success: return 0. The step's output is the JSON last given to
///   `pso_step_set_output` (JSON `null` if none).
/// * Failure: return non-zero. The step fails (and is retried if its
///   definition says so) with the message last given to `pso_step_set_error`,
///   reported as `status <n>: <message>` (`status <n>: status <n>` if none).
///
/// A step that times out, or whose run is cancelled or passes its deadline,
/// sees `pso_step_cancelled(ctx)` become 1; it should return soon (its result
/// is then ignored). PSO never interrupts a callback.
#[allow(non_camel_case_types)]
pub type pso_op_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, ctx: *const pso_step_ctx) -> i32>;

type RawOpFn = unsafe extern "C" fn(*mut c_void, *const pso_step_ctx) -> i32;

/// One running callback's context.
struct Frame {
    key: usize,
    /// The `StepContext<'_>` of the running step, lifetime erased (see
    /// [`with_frame`]).
    ctx: *const (),
    output: Option<Value>,
    error: Option<String>,
    /// Every string handed to C during the callback.
    strings: Vec<CString>,
    name: Option<*const c_char>,
    input: Option<*const c_char>,
    named: Vec<(String, *const c_char)>,
}

impl Frame {
    /// Keeps `text` until the callback returns and gives C a pointer to it.
    fn keep(&mut self, call: Call, text: String) -> Result<*const c_char, Failure> {
        let c = CString::new(text).map_err(|e| {
            call.fail(
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                format_args!(
                    "the value contains a NUL byte at offset {}, which a C string cannot carry",
                    e.nul_position()
                ),
            )
        })?;
        // The bytes live on the heap: moving the CString into the vector (or
        // the vector growing) does not move them.
        let p = c.as_ptr();
        self.strings.push(c);
        Ok(p)
    }
}

thread_local! {
    /// The frames of the callbacks running on this thread, innermost last.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Keys are multiples of 8 (they look like aligned pointers) and never 0.
/// On 64-bit targets they never repeat; on 32-bit ones they would after 2^29
/// callbacks, and a stale context would then need to meet a live frame with
/// the same key on the same thread to be mistaken for it.
static NEXT_KEY: AtomicUsize = AtomicUsize::new(8);

pub(crate) fn next_key() -> usize {
    loop {
        let k = NEXT_KEY.fetch_add(8, Ordering::Relaxed);
        if k != 0 {
            return k;
        }
    }
}

/// Removes the frame `key` from this thread's list when dropped (also if the
/// callback's caller unwinds), unless [`PopFrame::take`] took it.
struct PopFrame {
    key: usize,
    done: bool,
}

impl PopFrame {
    fn take(mut self) -> Option<Frame> {
        self.done = true;
        remove_frame(self.key)
    }
}

impl Drop for PopFrame {
    fn drop(&mut self) {
        if !self.done {
            drop(remove_frame(self.key));
        }
    }
}

fn remove_frame(key: usize) -> Option<Frame> {
    FRAMES
        .try_with(|frames| {
            let mut frames = frames.try_borrow_mut().ok()?;
            let i = frames.iter().rposition(|f| f.key == key)?;
            Some(frames.remove(i))
        })
        .ok()
        .flatten()
}

/// The core operation that calls `f` with `user_data`, and the ownership of
/// `user_data` to commit when PSO has taken it.
pub(crate) fn c_operation(
    f: RawOpFn,
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
) -> (OpFn, Ownership) {
    let (ud, ownership) = owned_user_data(user_data, free_user_data);
    let op: OpFn = Arc::new(move |ctx: &StepContext<'_>| invoke(f, &ud, ctx));
    (op, ownership)
}

fn invoke(f: RawOpFn, ud: &UserData, ctx: &StepContext<'_>) -> Result<Value, HandlerError> {
    let key = next_key();
    let frame = Frame {
        key,
        ctx: ptr::from_ref(ctx).cast::<()>(),
        output: None,
        error: None,
        strings: Vec::new(),
        name: None,
        input: None,
        named: Vec::new(),
    };
    let pushed = FRAMES
        .try_with(|frames| {
            frames
                .try_borrow_mut()
                .map(|mut frames| frames.push(frame))
                .is_ok()
        })
        .unwrap_or(false);
    if !pushed {
        return Err(HandlerError::failed(
            "PSO could not set up the step context (thread-local storage unavailable)",
        ));
    }
    let pop = PopFrame { key, done: false };
    let rc = in_c_callback(|| {
        // SAFETY: `f` is a non-null callback given to `pso_set_operation`,
        // whose contract makes it callable on any thread with this
        // `user_data` (kept alive by `ud`: the operation closure holds it).
        // The context is a key, which C never dereferences.
        unsafe { f(ud.ptr(), ptr::without_provenance(key)) }
    });
    let frame = pop.take();
    let (output, error) = frame.map_or((None, None), |f| (f.output, f.error));
    if rc == 0 {
        Ok(output.unwrap_or(Value::Null))
    } else {
        Err(status_error(rc, error.unwrap_or_default()))
    }
}

/// The key of a context argument, or `PSO_ERR_NULL_POINTER`.
fn ctx_key(call: Call, ctx: *const pso_step_ctx) -> Result<usize, Failure> {
    if ctx.is_null() {
        return Err(call.null("ctx"));
    }
    Ok(ctx.addr())
}

/// Runs `f` on the frame `key` of this thread and its step context, or fails
/// with `PSO_ERR_STALE_HANDLE` if there is none (the callback returned, or
/// this is another thread).
fn with_frame<R>(
    call: Call,
    key: usize,
    f: impl FnOnce(&mut Frame, &StepContext<'_>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let stale = || {
        call.fail(
            pso_status::PSO_ERR_STALE_HANDLE,
            format_args!(
                "step context {key:#x} is stale: its callback has returned, or it is used on \
                 another thread than the one running its callback"
            ),
        )
    };
    FRAMES
        .try_with(|frames| {
            let mut frames = frames.try_borrow_mut().map_err(|_| {
                call.fail(
                    pso_status::PSO_ERR_INTERNAL,
                    "the step contexts of this thread are in use",
                )
            })?;
            let frame = frames
                .iter_mut()
                .rev()
                .find(|fr| fr.key == key)
                .ok_or_else(stale)?;
            // SAFETY: a frame is on this thread's list only while `invoke`,
            // further down this thread's stack, holds the `&StepContext` it
            // points to: `PopFrame` removes it before `invoke` returns (also on
            // unwind). The reference handed to `f` does not outlive this call
            // (`f` only reads it; nothing borrowed from it is returned), so
            // the erased lifetime is never exceeded.
            let ctx = unsafe { &*frame.ctx.cast::<StepContext<'_>>() };
            f(frame, ctx)
        })
        .unwrap_or_else(|_| Err(stale()))
}

/// The step's input value as JSON, in `*json`: the map of its named inputs
/// (those with a value) for a step that has named inputs, else the run's
/// input. Owned by PSO, valid until the callback returns; do not free it.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`ctx`, `json`), `PSO_ERR_STALE_HANDLE` (the
/// callback of `ctx` has returned, or this is another thread).
///
/// # Safety
/// `json` is NULL or points to a writable `const char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_step_input(
    ctx: *const pso_step_ctx,
    json: *mut *const c_char,
) -> pso_status {
    ffi_boundary!(pso_step_input, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable for the call.
        let mut json = unsafe { out!(call, json, ptr::null())? };
        let key = ctx_key(call, ctx)?;
        with_frame(call, key, |frame, ctx| {
            let p = match frame.input {
                Some(p) => p,
                None => {
                    let p = frame.keep(call, ctx.input_value().to_json())?;
                    frame.input = Some(p);
                    p
                }
            };
            json.set(p);
            Ok(())
        })
    })
}

/// The named input `name` (the output of the step wired to it) as JSON, in
/// `*json`. Owned by PSO, valid until the callback returns; do not free it.
///
/// # Errors
/// `PSO_ERR_NOT_FOUND` if the step has no input `name`, or the step wired to
/// it was skipped. `PSO_ERR_NULL_POINTER` (`ctx`, `name`, `json`),
/// `PSO_ERR_INVALID_UTF8` (`name`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `json` is NULL or points to a
/// writable `const char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_step_input_named(
    ctx: *const pso_step_ctx,
    name: *const c_char,
    json: *mut *const c_char,
) -> pso_status {
    ffi_boundary!(pso_step_input_named, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable and `name` is
        // NULL or a valid C string, for the whole call.
        let mut json = unsafe { out!(call, json, ptr::null())? };
        let key = ctx_key(call, ctx)?;
        // SAFETY: as above.
        let name = unsafe { c_str!(call, name)? };
        with_frame(call, key, |frame, ctx| {
            if let Some(&(_, p)) = frame.named.iter().find(|(n, _)| n == name) {
                json.set(p);
                return Ok(());
            }
            let value = ctx.input(name).ok_or_else(|| {
                call.fail(
                    pso_status::PSO_ERR_NOT_FOUND,
                    format_args!(
                        "step '{}' has no input '{name}' (no such input, or the step wired to it \
                         was skipped)",
                        ctx.step_name()
                    ),
                )
            })?;
            let p = frame.keep(call, value.to_json())?;
            frame.named.push((name.to_owned(), p));
            json.set(p);
            Ok(())
        })
    })
}

/// The step's name (`parent[i]` for a fan-out child). Owned by PSO, valid
/// until the callback returns.
///
/// Returns NULL if `ctx` is NULL or stale; `pso_last_error_message()` then
/// says why. Like status-returning calls, it clears the last error on success.
#[unsafe(no_mangle)]
pub extern "C" fn pso_step_name(ctx: *const pso_step_ctx) -> *const c_char {
    ffi_boundary!(pso_step_name, or = ptr::null(), |call| {
        let key = ctx_key(call, ctx)?;
        with_frame(call, key, |frame, ctx| {
            if let Some(p) = frame.name {
                return Ok(p);
            }
            let p = frame.keep(call, ctx.step_name())?;
            frame.name = Some(p);
            Ok(p)
        })
    })
}

/// Which attempt this is: 1 for the first, counting up with retries.
///
/// Returns 0 if `ctx` is NULL or stale; `pso_last_error_message()` then says
/// why. Like status-returning calls, it clears the last error on success.
#[unsafe(no_mangle)]
pub extern "C" fn pso_step_attempt(ctx: *const pso_step_ctx) -> u32 {
    ffi_boundary!(pso_step_attempt, or = 0, |call| {
        let key = ctx_key(call, ctx)?;
        with_frame(call, key, |_, ctx| Ok(ctx.attempt()))
    })
}

/// Whether the step should stop (the live flag): 1 if its run was cancelled
/// (`pso_run_cancel`, or the orchestrator was closed) or passed its deadline,
/// or this attempt passed its timeout; 0 otherwise. Poll it in long
/// callbacks and return soon after it becomes 1 (the result is then ignored).
///
/// Returns 1 ("stop") if `ctx` is NULL or stale, with the reason in
/// `pso_last_error_message()`; it clears the last error otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn pso_step_cancelled(ctx: *const pso_step_ctx) -> i32 {
    ffi_boundary!(pso_step_cancelled, or = 1, |call| {
        let key = ctx_key(call, ctx)?;
        with_frame(call, key, |_, ctx| Ok(i32::from(ctx.is_cancelled())))
    })
}

/// Sets the step's output: `json` is parsed (and copied) now. The output is
/// used if the callback returns 0; a later call replaces it. Without a call
/// the output is JSON `null`.
///
/// # Errors
/// `PSO_ERR_PARSE` if `json` is not valid JSON (the message has the line and
/// column; the output is unchanged). `PSO_ERR_NULL_POINTER` (`ctx`, `json`),
/// `PSO_ERR_INVALID_UTF8` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_step_set_output(
    ctx: *const pso_step_ctx,
    json: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_step_set_output, |call| {
        let key = ctx_key(call, ctx)?;
        // SAFETY: per `# Safety`, `json` is NULL or a valid C string for the
        // whole call.
        let json = unsafe { c_str!(call, json)? };
        with_frame(call, key, |frame, _| {
            frame.output = Some(json_arg!(call, json)?);
            Ok(())
        })
    })
}

/// Sets the message the step fails with if the callback returns non-zero
/// (copied now; a later call replaces it). Ignored if the callback returns 0.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`ctx`, `message`), `PSO_ERR_INVALID_UTF8`
/// (`message`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_step_set_error(
    ctx: *const pso_step_ctx,
    message: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_step_set_error, |call| {
        let key = ctx_key(call, ctx)?;
        // SAFETY: per `# Safety`, `message` is NULL or a valid C string for
        // the whole call.
        let message = unsafe { c_str!(call, message)? };
        with_frame(call, key, |frame, _| {
            frame.error = Some(message.to_owned());
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_aligned_and_never_zero() {
        let a = next_key();
        let b = next_key();
        assert_ne!(a, b);
        assert!(a != 0 && b != 0);
        assert_eq!(a % 8, 0);
    }

    #[test]
    fn an_unknown_key_is_stale_and_null_is_null() {
        let call = Call::new("pso_test");
        let e = with_frame(call, next_key(), |_, _| Ok(())).unwrap_err();
        assert_eq!(e.status, pso_status::PSO_ERR_STALE_HANDLE);
        assert!(e.message.contains("is stale"), "{}", e.message);
        let e = ctx_key(call, ptr::null()).unwrap_err();
        assert_eq!(e.status, pso_status::PSO_ERR_NULL_POINTER);
        assert_eq!(e.message, "pso_test: argument 'ctx' is NULL");
    }

    fn bare_frame(key: usize) -> Frame {
        // No StepContext behind it: these tests never read `ctx`.
        Frame {
            key,
            ctx: ptr::null(),
            output: None,
            error: None,
            strings: Vec::new(),
            name: None,
            input: None,
            named: Vec::new(),
        }
    }

    /// C callbacks cannot unwind, but the Rust code around them could in
    /// principle; the frame must not outlive `invoke` then either, or a stale
    /// context would find a frame pointing at a dead `StepContext`.
    #[test]
    fn a_frame_is_removed_when_invoke_unwinds() {
        let key = next_key();
        let r = std::panic::catch_unwind(|| {
            FRAMES.with(|f| f.borrow_mut().push(bare_frame(key)));
            let _pop = PopFrame { key, done: false };
            panic!("unwinding past the frame");
        });
        assert!(r.is_err());
        assert!(remove_frame(key).is_none());
    }

    /// Nested frames (a callback waiting for a run whose steps run on this
    /// thread meanwhile) are found by key, and removing an inner one keeps
    /// the outer one.
    #[test]
    fn nested_frames_are_found_by_key() {
        let (outer, inner) = (next_key(), next_key());
        FRAMES.with(|f| {
            f.borrow_mut().push(bare_frame(outer));
            f.borrow_mut().push(bare_frame(inner));
        });
        let call = Call::new("pso_test");
        let found = |key| FRAMES.with(|f| f.borrow().iter().any(|fr| fr.key == key));
        assert!(found(outer) && found(inner));
        assert!(
            PopFrame {
                key: inner,
                done: false
            }
            .take()
            .is_some()
        );
        assert!(found(outer) && !found(inner));
        let e = with_frame(call, inner, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.status, pso_status::PSO_ERR_STALE_HANDLE);
        drop(PopFrame {
            key: outer,
            done: false,
        });
        assert!(!found(outer));
    }

    #[test]
    fn kept_strings_stay_put_and_nul_is_refused() {
        let call = Call::new("pso_test");
        let mut frame = bare_frame(next_key());
        let first = frame.keep(call, "first".to_owned()).unwrap();
        for i in 0..100 {
            frame.keep(call, format!("more {i}")).unwrap();
        }
        // SAFETY: `first` points into a CString the frame still owns.
        let text = unsafe { std::ffi::CStr::from_ptr(first) };
        assert_eq!(
            text.to_str().unwrap(),
            "first",
            "a growing frame moved a string"
        );
        let e = frame.keep(call, "a\0b".to_owned()).unwrap_err();
        assert_eq!(e.status, pso_status::PSO_ERR_INVALID_ARGUMENT);
        assert!(e.message.contains("NUL byte at offset 1"), "{}", e.message);
    }

    #[test]
    fn a_frame_is_gone_when_its_guard_drops() {
        let key = next_key();
        FRAMES.with(|f| f.borrow_mut().push(bare_frame(key)));
        drop(PopFrame { key, done: false });
        assert!(remove_frame(key).is_none());
        FRAMES.with(|f| assert!(f.borrow().is_empty()));
    }
}
