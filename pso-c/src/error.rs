//! Status codes and the thread-local last-error message.
//!
//! [`pso_status`] is the C face of [`pso_core::ErrorKind`]: every kind has the
//! variant `PSO_ERR_<kind name>` whose value is `ErrorKind::code()`. The
//! discriminants are literals (cbindgen cannot evaluate `ErrorKind::X as i32`),
//! so the `const` block below makes any drift a compile error, and the tests
//! check the mapping for every kind in `ErrorKind::ALL`.
//!
//! # Last error
//! Each thread has one message slot. Every status-returning export clears it
//! when it starts and fills it when it fails, so after a success
//! `pso_last_error_message()` is empty. The pointer handed to C points into the
//! slot's `CString` and stays valid until the slot is next written, that is
//! until the next status-returning `pso_` call on the same thread.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};

use pso_core::{ErrorKind, PsoError};

/// The result of every PSO function that can fail.
///
/// `PSO_OK` (0) is success. Every other value names the kind of the failure;
/// the message is in `pso_last_error_message()`. The values are stable and
/// the same as the error kinds of the Rust, Python and Node APIs.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum pso_status {
    /// Success.
    PSO_OK = 0,
    /// A required pointer argument was NULL. The message names the argument.
    PSO_ERR_NULL_POINTER = 1,
    /// A string argument was not valid UTF-8. The message names the argument
    /// and the byte offset.
    PSO_ERR_INVALID_UTF8 = 2,
    /// A handle (orchestrator, workflow, run) was closed or freed, or never
    /// issued by PSO; or a step context was used after its callback returned,
    /// or on another thread.
    PSO_ERR_STALE_HANDLE = 3,
    /// PSO caught an internal panic at the API boundary (a bug in PSO; please
    /// report it with the message). The call was abandoned where it panicked.
    PSO_ERR_INTERNAL = 4,
    /// A named system, operation, workflow step or step input does not exist.
    PSO_ERR_NOT_FOUND = 10,
    /// A system with this name is already registered, or a workflow defines
    /// a step twice.
    PSO_ERR_ALREADY_EXISTS = 11,
    /// The relation (or a workflow's step dependencies) would create a cycle
    /// (the message names the whole path).
    PSO_ERR_CYCLE = 12,
    /// An argument was malformed: an empty or invalid name, an unknown edge
    /// kind, priority or format value.
    PSO_ERR_INVALID_ARGUMENT = 13,
    /// A topology or workflow definition could not be parsed (the message
    /// starts with `source:line:column:`), or a JSON argument is not valid
    /// JSON (the message names the argument, the line and the column).
    PSO_ERR_PARSE = 14,
    /// Two conflicting systems would be active together.
    PSO_ERR_CONFLICT = 15,
    /// A lifecycle handler failed (non-zero return), or a system it needed
    /// failed or timed out. The report JSON is still returned; the message
    /// names the failed chain.
    PSO_ERR_HANDLER_FAILED = 16,
    /// A deadline passed (for instance `pso_run_wait_timeout` before the run
    /// was done).
    PSO_ERR_TIMEOUT = 17,
    /// The call cannot run now, for instance a lifecycle call made from inside
    /// a lifecycle handler (it would wait for itself).
    PSO_ERR_BUSY = 18,
    /// The orchestrator was closed while (or before) the call ran.
    PSO_ERR_CLOSED = 19,
    /// Reading or writing a file failed.
    PSO_ERR_IO = 20,
    /// A system the call needs is not Active (for instance a workflow step's
    /// system); the message names it and its state.
    PSO_ERR_NOT_ACTIVE = 21,
    /// A request found no subscription to answer it (distinct from a
    /// timeout), or every receiver dropped it without replying.
    PSO_ERR_NO_RESPONDERS = 22,
    /// A bounded queue was full and its overflow policy refused the message.
    PSO_ERR_OVERFLOW = 23,
    /// A compare-and-set found a different revision than expected.
    PSO_ERR_CAS_CONFLICT = 24,
    /// A watch asked for changes older than the retained history.
    PSO_ERR_COMPACTED = 25,
    /// A resource request asks for more than the whole capacity of a
    /// dimension: it could never fit (the message names the system, the
    /// dimension, the amount and the capacity).
    PSO_ERR_EXCEEDS_CAPACITY = 30,
    /// A resource request asks for more than its group's whole quota of a
    /// dimension: it could never fit (the message names the group, the
    /// dimension, the amount and the quota).
    PSO_ERR_EXCEEDS_QUOTA = 31,
    /// A request was cancelled before it completed (for instance a pending
    /// resource request withdrawn by its run's cancellation).
    PSO_ERR_CANCELLED = 32,
}

// Every discriminant equals its ErrorKind's code; a mismatch fails the build.
const _: () = {
    use pso_status::*;
    let pairs = [
        (PSO_ERR_NULL_POINTER, ErrorKind::NullPointer),
        (PSO_ERR_INVALID_UTF8, ErrorKind::InvalidUtf8),
        (PSO_ERR_STALE_HANDLE, ErrorKind::StaleHandle),
        (PSO_ERR_INTERNAL, ErrorKind::Internal),
        (PSO_ERR_NOT_FOUND, ErrorKind::NotFound),
        (PSO_ERR_ALREADY_EXISTS, ErrorKind::AlreadyExists),
        (PSO_ERR_CYCLE, ErrorKind::Cycle),
        (PSO_ERR_INVALID_ARGUMENT, ErrorKind::InvalidArgument),
        (PSO_ERR_PARSE, ErrorKind::Parse),
        (PSO_ERR_CONFLICT, ErrorKind::Conflict),
        (PSO_ERR_HANDLER_FAILED, ErrorKind::HandlerFailed),
        (PSO_ERR_TIMEOUT, ErrorKind::Timeout),
        (PSO_ERR_BUSY, ErrorKind::Busy),
        (PSO_ERR_CLOSED, ErrorKind::Closed),
        (PSO_ERR_IO, ErrorKind::Io),
        (PSO_ERR_NOT_ACTIVE, ErrorKind::NotActive),
        (PSO_ERR_NO_RESPONDERS, ErrorKind::NoResponders),
        (PSO_ERR_OVERFLOW, ErrorKind::Overflow),
        (PSO_ERR_CAS_CONFLICT, ErrorKind::CasConflict),
        (PSO_ERR_COMPACTED, ErrorKind::Compacted),
        (PSO_ERR_EXCEEDS_CAPACITY, ErrorKind::ExceedsCapacity),
        (PSO_ERR_EXCEEDS_QUOTA, ErrorKind::ExceedsQuota),
        (PSO_ERR_CANCELLED, ErrorKind::Cancelled),
    ];
    let mut i = 0;
    while i < pairs.len() {
        assert!(pairs[i].0 as i32 == pairs[i].1 as i32);
        i += 1;
    }
};

impl pso_status {
    /// Every status, `PSO_OK` first, then in code order.
    pub const ALL: [pso_status; 24] = {
        use pso_status::*;
        [
            PSO_OK,
            PSO_ERR_NULL_POINTER,
            PSO_ERR_INVALID_UTF8,
            PSO_ERR_STALE_HANDLE,
            PSO_ERR_INTERNAL,
            PSO_ERR_NOT_FOUND,
            PSO_ERR_ALREADY_EXISTS,
            PSO_ERR_CYCLE,
            PSO_ERR_INVALID_ARGUMENT,
            PSO_ERR_PARSE,
            PSO_ERR_CONFLICT,
            PSO_ERR_HANDLER_FAILED,
            PSO_ERR_TIMEOUT,
            PSO_ERR_BUSY,
            PSO_ERR_CLOSED,
            PSO_ERR_IO,
            PSO_ERR_NOT_ACTIVE,
            PSO_ERR_NO_RESPONDERS,
            PSO_ERR_OVERFLOW,
            PSO_ERR_CAS_CONFLICT,
            PSO_ERR_COMPACTED,
            PSO_ERR_EXCEEDS_CAPACITY,
            PSO_ERR_EXCEEDS_QUOTA,
            PSO_ERR_CANCELLED,
        ]
    };

    /// The status for an error kind. A kind added to pso-core after this
    /// binding was written maps to `PSO_ERR_INTERNAL` (and fails this crate's
    /// tests, so it cannot ship unnoticed).
    pub fn from_kind(kind: ErrorKind) -> pso_status {
        use pso_status::*;
        match kind {
            ErrorKind::NullPointer => PSO_ERR_NULL_POINTER,
            ErrorKind::InvalidUtf8 => PSO_ERR_INVALID_UTF8,
            ErrorKind::StaleHandle => PSO_ERR_STALE_HANDLE,
            ErrorKind::Internal => PSO_ERR_INTERNAL,
            ErrorKind::NotFound => PSO_ERR_NOT_FOUND,
            ErrorKind::AlreadyExists => PSO_ERR_ALREADY_EXISTS,
            ErrorKind::Cycle => PSO_ERR_CYCLE,
            ErrorKind::InvalidArgument => PSO_ERR_INVALID_ARGUMENT,
            ErrorKind::Parse => PSO_ERR_PARSE,
            ErrorKind::Conflict => PSO_ERR_CONFLICT,
            ErrorKind::HandlerFailed => PSO_ERR_HANDLER_FAILED,
            ErrorKind::Timeout => PSO_ERR_TIMEOUT,
            ErrorKind::Busy => PSO_ERR_BUSY,
            ErrorKind::Closed => PSO_ERR_CLOSED,
            ErrorKind::Io => PSO_ERR_IO,
            ErrorKind::NotActive => PSO_ERR_NOT_ACTIVE,
            ErrorKind::NoResponders => PSO_ERR_NO_RESPONDERS,
            ErrorKind::Overflow => PSO_ERR_OVERFLOW,
            ErrorKind::CasConflict => PSO_ERR_CAS_CONFLICT,
            ErrorKind::Compacted => PSO_ERR_COMPACTED,
            ErrorKind::ExceedsCapacity => PSO_ERR_EXCEEDS_CAPACITY,
            ErrorKind::ExceedsQuota => PSO_ERR_EXCEEDS_QUOTA,
            ErrorKind::Cancelled => PSO_ERR_CANCELLED,
            _ => PSO_ERR_INTERNAL,
        }
    }

    /// The status with this numeric value, if any.
    pub fn from_code(code: u32) -> Option<pso_status> {
        pso_status::ALL.into_iter().find(|s| *s as u32 == code)
    }

    /// The C name of the status (`"PSO_ERR_NOT_FOUND"`), as a static C string.
    pub fn name(self) -> &'static CStr {
        use pso_status::*;
        match self {
            PSO_OK => c"PSO_OK",
            PSO_ERR_NULL_POINTER => c"PSO_ERR_NULL_POINTER",
            PSO_ERR_INVALID_UTF8 => c"PSO_ERR_INVALID_UTF8",
            PSO_ERR_STALE_HANDLE => c"PSO_ERR_STALE_HANDLE",
            PSO_ERR_INTERNAL => c"PSO_ERR_INTERNAL",
            PSO_ERR_NOT_FOUND => c"PSO_ERR_NOT_FOUND",
            PSO_ERR_ALREADY_EXISTS => c"PSO_ERR_ALREADY_EXISTS",
            PSO_ERR_CYCLE => c"PSO_ERR_CYCLE",
            PSO_ERR_INVALID_ARGUMENT => c"PSO_ERR_INVALID_ARGUMENT",
            PSO_ERR_PARSE => c"PSO_ERR_PARSE",
            PSO_ERR_CONFLICT => c"PSO_ERR_CONFLICT",
            PSO_ERR_HANDLER_FAILED => c"PSO_ERR_HANDLER_FAILED",
            PSO_ERR_TIMEOUT => c"PSO_ERR_TIMEOUT",
            PSO_ERR_BUSY => c"PSO_ERR_BUSY",
            PSO_ERR_CLOSED => c"PSO_ERR_CLOSED",
            PSO_ERR_IO => c"PSO_ERR_IO",
            PSO_ERR_NOT_ACTIVE => c"PSO_ERR_NOT_ACTIVE",
            PSO_ERR_NO_RESPONDERS => c"PSO_ERR_NO_RESPONDERS",
            PSO_ERR_OVERFLOW => c"PSO_ERR_OVERFLOW",
            PSO_ERR_CAS_CONFLICT => c"PSO_ERR_CAS_CONFLICT",
            PSO_ERR_COMPACTED => c"PSO_ERR_COMPACTED",
            PSO_ERR_EXCEEDS_CAPACITY => c"PSO_ERR_EXCEEDS_CAPACITY",
            PSO_ERR_EXCEEDS_QUOTA => c"PSO_ERR_EXCEEDS_QUOTA",
            PSO_ERR_CANCELLED => c"PSO_ERR_CANCELLED",
        }
    }
}

/// Why an exported call failed: the status to return and the message to
/// store as the thread's last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) status: pso_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: pso_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
}

/// Any pso-core error becomes its kind's status and its `Display` text (the
/// same message every language shows).
impl<E: PsoError> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::new(pso_status::from_kind(e.kind()), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Clears this thread's last error (cheap when it is already clear).
pub(crate) fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut()
            && slot.is_some()
        {
            *slot = None;
        }
    });
}

/// Stores `message` as this thread's last error. A NUL byte inside the message
/// (which C could not see past) is shown as `\0`.
pub(crate) fn set_last_error(message: &str) {
    let text = if message.contains('\0') {
        message.replace('\0', "\\0")
    } else {
        message.to_owned()
    };
    let c = CString::new(text).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some(c);
        }
    });
}

/// This thread's last error as a C string: never NULL, `""` when clear. Valid
/// until the slot is next written.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| match &*slot.borrow() {
            Some(c) => c.as_ptr(),
            None => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}

/// This thread's last error as Rust text (tests and diagnostics).
#[cfg(test)]
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|slot| {
        slot.borrow()
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_the_status_with_its_code_and_name() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            let status = pso_status::from_kind(kind);
            assert_eq!(status as i32, kind.code(), "{kind:?}");
            assert_eq!(
                status.name().to_str().unwrap(),
                format!("PSO_ERR_{}", kind.name()),
                "{kind:?}"
            );
            assert!(
                seen.insert(status),
                "{kind:?} maps to a status already used"
            );
            assert_eq!(pso_status::from_code(kind.code() as u32), Some(status));
        }
        // Every status other than PSO_OK is some kind's.
        assert_eq!(seen.len() + 1, pso_status::ALL.len());
        assert_eq!(pso_status::PSO_OK as i32, 0);
        assert_eq!(pso_status::from_code(0), Some(pso_status::PSO_OK));
        assert_eq!(pso_status::from_code(5), None);
        assert_eq!(pso_status::from_code(26), None);
        assert_eq!(pso_status::from_code(33), None);
        assert_eq!(pso_status::from_code(u32::MAX), None);
    }

    #[test]
    fn last_error_is_per_thread_and_clears() {
        set_last_error("boom");
        assert_eq!(last_error(), "boom");
        std::thread::spawn(|| assert_eq!(last_error(), ""))
            .join()
            .unwrap();
        set_last_error("a\0b");
        assert_eq!(last_error(), "a\\0b");
        clear_last_error();
        assert_eq!(last_error(), "");
    }
}
