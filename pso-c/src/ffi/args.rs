//! Turning C arguments into Rust values, and Rust results into C out-parameters.
//!
//! Every exported function gets a [`Call`] naming it, so each error message
//! says which function and which argument was wrong. The macros
//! [`c_str!`](crate::ffi::args), `opt_c_str!`, `out!`, `opt_out!` and
//! `opt_ref!` take the argument *identifier* and use its name in the
//! message, so a message can never name the wrong argument. They expand to
//! calls of `unsafe` methods; each call site wraps them in one `unsafe` block
//! whose `SAFETY:` comment points at the function's `# Safety` contract.
//!
//! Out-parameters are written with their "nothing" value (NULL, 0) as soon as
//! they are checked, before anything can fail, so C always reads a defined
//! value.

use std::ffi::{CStr, CString, c_char};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use pso_core::{Orchestrator, RunHandle, Value, Workflow};

use crate::error::{Failure, pso_status};
use crate::handle::{
    Handle, Handles, LEASES, LeaseCell, ORCHESTRATORS, RUNS, WORKFLOWS, pso_lease,
    pso_orchestrator, pso_run, pso_workflow,
};

/// Wait without limit: the `timeout_ms` value (`UINT64_MAX`) that makes
/// `pso_subscription_recv`, `pso_direct_send` and `pso_direct_recv` wait as
/// long as it takes (and `pso_request` for 100 years).
pub const PSO_WAIT_FOREVER: u64 = u64::MAX;

/// The longest finite wait: a `timeout_ms` longer than this (100 years) is
/// cut to it, so no deadline computation can overflow.
const MAX_WAIT: Duration = Duration::from_secs(100 * 365 * 86_400);

/// How long a call may wait, from a C `timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// 0: do not wait.
    Now,
    /// Wait up to this long (at most [`MAX_WAIT`]).
    For(Duration),
    /// `PSO_WAIT_FOREVER`.
    Forever,
}

impl Wait {
    pub(crate) fn from_ms(ms: u64) -> Wait {
        match ms {
            0 => Wait::Now,
            PSO_WAIT_FOREVER => Wait::Forever,
            ms => Wait::For(Duration::from_millis(ms).min(MAX_WAIT)),
        }
    }

    /// As one duration: 0, the wait, or [`MAX_WAIT`] for "forever".
    pub(crate) fn duration(self) -> Duration {
        match self {
            Wait::Now => Duration::ZERO,
            Wait::For(d) => d,
            Wait::Forever => MAX_WAIT,
        }
    }
}

/// The exported function being run; names it in error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    func: &'static str,
}

impl Call {
    pub(crate) fn new(func: &'static str) -> Self {
        Call { func }
    }

    /// A failure whose message starts with the function name.
    pub(crate) fn fail(self, status: pso_status, message: impl std::fmt::Display) -> Failure {
        Failure::new(status, format!("{}: {message}", self.func))
    }

    pub(crate) fn null(self, arg: &str) -> Failure {
        self.fail(
            pso_status::PSO_ERR_NULL_POINTER,
            format_args!("argument '{arg}' is NULL"),
        )
    }

    /// The orchestrator behind `h` (a clone the call runs on), or
    /// `PSO_ERR_STALE_HANDLE`.
    pub(crate) fn orchestrator(self, h: pso_orchestrator) -> Result<Orchestrator, Failure> {
        self.live(&ORCHESTRATORS, h)
    }

    /// The workflow behind `h` (a clone), or `PSO_ERR_STALE_HANDLE`.
    pub(crate) fn workflow(self, h: pso_workflow) -> Result<Workflow, Failure> {
        self.live(&WORKFLOWS, h)
    }

    /// The run behind `h` (a clone), or `PSO_ERR_STALE_HANDLE`.
    pub(crate) fn run(self, h: pso_run) -> Result<RunHandle, Failure> {
        self.live(&RUNS, h)
    }

    /// The lease cell behind `h` (a clone of its `Arc`), or
    /// `PSO_ERR_STALE_HANDLE`.
    pub(crate) fn lease(self, h: pso_lease) -> Result<Arc<LeaseCell>, Failure> {
        self.live(&LEASES, h)
    }

    /// Runs `f` on the lease behind `h`: `PSO_ERR_STALE_HANDLE` if `h` was
    /// released, also by another thread while this call looked it up.
    pub(crate) fn with_lease<R>(
        self,
        h: pso_lease,
        f: impl FnOnce(&pso_core::Lease) -> R,
    ) -> Result<R, Failure> {
        self.lease(h)?.with(f).ok_or_else(|| self.stale(h))
    }

    fn live<H: Handle, T: Clone>(self, table: &Handles<H, T>, h: H) -> Result<T, Failure> {
        table.get(h).ok_or_else(|| self.stale(h))
    }

    /// `PSO_ERR_STALE_HANDLE` for handle `h`.
    pub(crate) fn stale<H: Handle>(self, h: H) -> Failure {
        self.fail(
            pso_status::PSO_ERR_STALE_HANDLE,
            format_args!(
                "{} handle {:#018x} is stale: it was {}, or never returned by {}",
                H::KIND,
                h.id(),
                H::RELEASER,
                H::ISSUER
            ),
        )
    }

    /// A required string argument.
    ///
    /// # Safety
    /// `p` is NULL or points to a NUL-terminated string that stays valid and
    /// unchanged for `'a`.
    pub(crate) unsafe fn str<'a>(self, arg: &str, p: *const c_char) -> Result<&'a str, Failure> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.opt_str(arg, p) }?.ok_or_else(|| self.null(arg))
    }

    /// A nullable string argument.
    ///
    /// # Safety
    /// As [`Call::str`].
    pub(crate) unsafe fn opt_str<'a>(
        self,
        arg: &str,
        p: *const c_char,
    ) -> Result<Option<&'a str>, Failure> {
        if p.is_null() {
            return Ok(None);
        }
        // SAFETY: `p` is non-null, and the caller guarantees it points to a
        // NUL-terminated string valid for `'a`.
        let c = unsafe { CStr::from_ptr(p) };
        c.to_str().map(Some).map_err(|e| {
            self.fail(
                pso_status::PSO_ERR_INVALID_UTF8,
                format_args!(
                    "argument '{arg}' is not valid UTF-8 (invalid byte 0x{:02x} at offset {})",
                    c.to_bytes()[e.valid_up_to()],
                    e.valid_up_to()
                ),
            )
        })
    }

    /// A required out-parameter, set to `init` at once.
    ///
    /// # Safety
    /// `p` is NULL or valid and aligned for writes of a `T` for `'a`.
    pub(crate) unsafe fn out<'a, T: Copy>(
        self,
        arg: &str,
        p: *mut T,
        init: T,
    ) -> Result<Out<'a, T>, Failure> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.opt_out(p, init) }.ok_or_else(|| self.null(arg))
    }

    /// A nullable out-parameter, set to `init` at once when present.
    ///
    /// # Safety
    /// As [`Call::out`].
    pub(crate) unsafe fn opt_out<'a, T: Copy>(self, p: *mut T, init: T) -> Option<Out<'a, T>> {
        let mut out = Out {
            ptr: NonNull::new(p)?,
            _life: PhantomData,
        };
        out.set(init);
        Some(out)
    }

    /// A required out-parameter array of `len` elements, each set to `init`
    /// at once.
    ///
    /// # Safety
    /// `p` is NULL or valid and aligned for writes of `len` consecutive `T`s
    /// for `'a`.
    pub(crate) unsafe fn out_array<'a, T: Copy>(
        self,
        arg: &str,
        p: *mut T,
        len: usize,
        init: T,
    ) -> Result<OutArray<'a, T>, Failure> {
        let ptr = NonNull::new(p).ok_or_else(|| self.null(arg))?;
        let mut out = OutArray {
            ptr,
            len,
            _life: PhantomData,
        };
        for i in 0..len {
            out.set(i, init);
        }
        Ok(out)
    }

    /// A nullable pointer to an input struct.
    ///
    /// # Safety
    /// `p` is NULL or valid and aligned for reads of a `T` for `'a`.
    pub(crate) unsafe fn opt_ref<'a, T>(self, p: *const T) -> Option<&'a T> {
        // SAFETY: the caller guarantees `p` is NULL or valid for reads for `'a`.
        unsafe { p.as_ref() }
    }

    /// A JSON text argument, parsed: `PSO_ERR_PARSE` naming the argument,
    /// with the parser's message, line and column.
    pub(crate) fn json(self, arg: &str, text: &str) -> Result<Value, Failure> {
        serde_json::from_str::<Value>(text).map_err(|e| {
            self.fail(
                pso_status::PSO_ERR_PARSE,
                format_args!("argument '{arg}' is not valid JSON: {e}"),
            )
        })
    }

    /// A JSON text argument as a `serde_json::Value` (for arguments whose
    /// structure the binding checks field by field): `PSO_ERR_PARSE` naming
    /// the argument, with the parser's message, line and column.
    pub(crate) fn json_doc(self, arg: &str, text: &str) -> Result<serde_json::Value, Failure> {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            self.fail(
                pso_status::PSO_ERR_PARSE,
                format_args!("argument '{arg}' is not valid JSON: {e}"),
            )
        })
    }

    /// `text` as a newly allocated C string for C to free with
    /// `pso_string_free`.
    pub(crate) fn c_string(self, text: String) -> Result<*mut c_char, Failure> {
        CString::new(text).map(CString::into_raw).map_err(|e| {
            self.fail(
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                format_args!(
                    "the result contains a NUL byte at offset {}, which a C string cannot carry \
                     (a tier, tag or message with an embedded \\u0000?)",
                    e.nul_position()
                ),
            )
        })
    }
}

/// A checked, non-null out-parameter.
#[derive(Debug)]
pub(crate) struct Out<'a, T: Copy> {
    ptr: NonNull<T>,
    _life: PhantomData<&'a mut T>,
}

impl<T: Copy> Out<'_, T> {
    /// Writes the value C will read.
    pub(crate) fn set(&mut self, value: T) {
        // SAFETY: `ptr` is non-null and, by the contract of `Call::opt_out`
        // (the only constructor), valid and aligned for writes of a `T` for
        // this `Out`'s lifetime. `T: Copy`, so the old value needs no drop.
        unsafe { self.ptr.as_ptr().write(value) }
    }
}

/// A checked, non-null out-parameter array.
#[derive(Debug)]
pub(crate) struct OutArray<'a, T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    _life: PhantomData<&'a mut [T]>,
}

impl<T: Copy> OutArray<'_, T> {
    /// Writes element `i` (ignored past the end).
    pub(crate) fn set(&mut self, i: usize, value: T) {
        if i < self.len {
            // SAFETY: `ptr` is non-null and, by the contract of
            // `Call::out_array` (the only constructor), valid and aligned for
            // writes of `len` consecutive `T`s for this value's lifetime;
            // `i < len`. `T: Copy`, so the old value needs no drop.
            unsafe { self.ptr.as_ptr().add(i).write(value) }
        }
    }
}

/// A required `const char *` argument as `&str`: `PSO_ERR_NULL_POINTER` or
/// `PSO_ERR_INVALID_UTF8` naming the argument. Unsafe: see [`Call::str`].
macro_rules! c_str {
    ($call:ident, $arg:ident) => {
        $call.str(stringify!($arg), $arg)
    };
}

/// A nullable `const char *` argument as `Option<&str>`. Unsafe: see
/// [`Call::opt_str`].
macro_rules! opt_c_str {
    ($call:ident, $arg:ident) => {
        $call.opt_str(stringify!($arg), $arg)
    };
}

/// A required out-parameter, initialized to `$init`. Unsafe: see [`Call::out`].
macro_rules! out {
    ($call:ident, $arg:ident, $init:expr) => {
        $call.out(stringify!($arg), $arg, $init)
    };
}

/// A nullable out-parameter, initialized to `$init` when present. Unsafe: see
/// [`Call::opt_out`].
macro_rules! opt_out {
    ($call:ident, $arg:ident, $init:expr) => {
        $call.opt_out($arg, $init)
    };
}

/// A required out-parameter array of `$len` elements, each initialized to
/// `$init`. Unsafe: see [`Call::out_array`].
macro_rules! out_array {
    ($call:ident, $arg:ident, $len:expr, $init:expr) => {
        $call.out_array(stringify!($arg), $arg, $len, $init)
    };
}

/// A nullable pointer to an input struct. Unsafe: see [`Call::opt_ref`].
macro_rules! opt_ref {
    ($call:ident, $arg:ident) => {
        $call.opt_ref($arg)
    };
}

/// A JSON text argument (already a `&str` named like the C argument) parsed
/// into a `serde_json::Value`, or `PSO_ERR_PARSE` naming the argument. Safe.
macro_rules! json_doc_arg {
    ($call:ident, $arg:ident) => {
        $call.json_doc(stringify!($arg), $arg)
    };
}

/// A JSON text argument (already a `&str` named like the C argument) parsed
/// into a `Value`, or `PSO_ERR_PARSE` naming the argument. Safe.
macro_rules! json_arg {
    ($call:ident, $arg:ident) => {
        $call.json(stringify!($arg), $arg)
    };
}

/// A required callback (a nullable function pointer in C): its value, or
/// `PSO_ERR_NULL_POINTER` naming the argument. Safe.
macro_rules! required {
    ($call:ident, $arg:ident) => {
        $arg.ok_or_else(|| $call.null(stringify!($arg)))
    };
}

pub(crate) use {
    c_str, json_arg, json_doc_arg, opt_c_str, opt_out, opt_ref, out, out_array, required,
};
