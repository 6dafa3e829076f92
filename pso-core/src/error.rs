//! Error kinds shared by every binding.
//!
//! Each domain has its own error enum (`RegistryError`, `TopologyError`,
//! `LifecycleError`, ...), and every variant of every domain error reports one
//! [`ErrorKind`] through [`PsoError::kind`]. The bindings map a kind to exactly
//! one Python exception class, one JS `code` string and one C status code; the
//! numbers and names below are that contract and never change meaning.

use std::fmt;

/// The classification of an error, stable across languages and releases.
///
/// The numeric value is the C status code (`pso_status`); [`ErrorKind::name`] is
/// the suffix of the JS code (`PSO_` + name) and of the Python class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[repr(i32)]
pub enum ErrorKind {
    /// A required pointer argument was null (C only).
    NullPointer = 1,
    /// A string argument was not valid UTF-8 (C only).
    InvalidUtf8 = 2,
    /// A handle was closed, freed, or never issued (C only).
    StaleHandle = 3,
    /// An internal panic was caught at the API boundary; the call did nothing.
    Internal = 4,
    /// A named system (or other named entity) does not exist.
    NotFound = 10,
    /// A name is already registered.
    AlreadyExists = 11,
    /// The requested edges would form an ordering cycle.
    Cycle = 12,
    /// An argument was malformed: an empty name, an unknown edge kind or format.
    InvalidArgument = 13,
    /// A topology or definition file could not be parsed (line and column given).
    Parse = 14,
    /// Two systems that conflict would be active together.
    Conflict = 15,
    /// A handler failed, panicked, raised or threw, so the operation failed.
    HandlerFailed = 16,
    /// A deadline passed.
    Timeout = 17,
    /// The call cannot run now: for instance a lifecycle call from inside a
    /// lifecycle handler, which would wait on itself.
    Busy = 18,
    /// The orchestrator was closed.
    Closed = 19,
    /// Reading or writing a file failed.
    Io = 20,
    /// A system the call needs is not Active.
    NotActive = 21,
    /// A request found no subscription to answer it (distinct from a timeout),
    /// or every receiver dropped it without replying.
    NoResponders = 22,
    /// A bounded queue was full and its overflow policy refused the message
    /// (the `error` policy, or `block` whose timeout passed).
    Overflow = 23,
    /// A compare-and-set found a different revision than expected; the error
    /// carries the current value and revision.
    CasConflict = 24,
    /// A watch asked for changes older than the retained history.
    Compacted = 25,
    /// A resource request asks for more than the whole capacity.
    ExceedsCapacity = 30,
    /// A resource request asks for more than its group's whole quota.
    ExceedsQuota = 31,
    /// A request was cancelled before it completed.
    Cancelled = 32,
}

impl ErrorKind {
    /// Every kind, in code order. Bindings iterate this to build their tables.
    pub const ALL: [ErrorKind; 23] = [
        ErrorKind::NullPointer,
        ErrorKind::InvalidUtf8,
        ErrorKind::StaleHandle,
        ErrorKind::Internal,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Cycle,
        ErrorKind::InvalidArgument,
        ErrorKind::Parse,
        ErrorKind::Conflict,
        ErrorKind::HandlerFailed,
        ErrorKind::Timeout,
        ErrorKind::Busy,
        ErrorKind::Closed,
        ErrorKind::Io,
        ErrorKind::NotActive,
        ErrorKind::NoResponders,
        ErrorKind::Overflow,
        ErrorKind::CasConflict,
        ErrorKind::Compacted,
        ErrorKind::ExceedsCapacity,
        ErrorKind::ExceedsQuota,
        ErrorKind::Cancelled,
    ];

    /// The stable C status code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The stable SCREAMING_CASE name (`NOT_FOUND`); JS codes are `PSO_` + name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NullPointer => "NULL_POINTER",
            ErrorKind::InvalidUtf8 => "INVALID_UTF8",
            ErrorKind::StaleHandle => "STALE_HANDLE",
            ErrorKind::Internal => "INTERNAL",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::AlreadyExists => "ALREADY_EXISTS",
            ErrorKind::Cycle => "CYCLE",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::Parse => "PARSE",
            ErrorKind::Conflict => "CONFLICT",
            ErrorKind::HandlerFailed => "HANDLER_FAILED",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Busy => "BUSY",
            ErrorKind::Closed => "CLOSED",
            ErrorKind::Io => "IO",
            ErrorKind::NotActive => "NOT_ACTIVE",
            ErrorKind::NoResponders => "NO_RESPONDERS",
            ErrorKind::Overflow => "OVERFLOW",
            ErrorKind::CasConflict => "CAS_CONFLICT",
            ErrorKind::Compacted => "COMPACTED",
            ErrorKind::ExceedsCapacity => "EXCEEDS_CAPACITY",
            ErrorKind::ExceedsQuota => "EXCEEDS_QUOTA",
            ErrorKind::Cancelled => "CANCELLED",
        }
    }

    /// The kind with this C code, if any.
    pub fn from_code(code: i32) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.code() == code)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Implemented by every public error type of pso-core.
pub trait PsoError: std::error::Error + Send + Sync + 'static {
    /// The cross-language classification of this error.
    fn kind(&self) -> ErrorKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_unique_and_round_trip() {
        let mut codes: Vec<i32> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ErrorKind::from_code(0), None);
    }
}
