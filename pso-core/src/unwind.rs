//! The panic boundary: the only module that calls `catch_unwind`.
//!
//! Every user handler (Rust closure, or a binding's host callable) runs through
//! [`run_handler`]. A panic becomes [`HandlerError::Panicked`] with its message and
//! never unwinds into a worker. The panic payload is dropped inside a second
//! `catch_unwind`, because a payload's own `Drop` may panic too; if it does, that
//! second payload is leaked rather than allowed to escape.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::model::HandlerError;

/// Runs `f`, turning a panic into [`HandlerError::Panicked`].
pub(crate) fn run_handler<R>(
    f: impl FnOnce() -> Result<R, HandlerError>,
) -> Result<R, HandlerError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(HandlerError::Panicked {
            message: take_message(payload),
        }),
    }
}

/// Runs `f`, returning `None` if it panicked. For internal code paths that must
/// not unwind (worker loop, completion callbacks) yet cannot report an error.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            let _ = take_message(payload);
            None
        }
    }
}

/// Extracts a readable message from a panic payload and disposes of the payload
/// without letting a panicking `Drop` escape.
pub(crate) fn take_message(payload: Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_error_with_message() {
        let r: Result<(), _> = run_handler(|| panic!("boom {}", 7));
        match r {
            Err(HandlerError::Panicked { message }) => assert_eq!(message, "boom 7"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn static_str_panic() {
        let r: Result<(), _> = run_handler(|| panic!("static"));
        assert!(matches!(r, Err(HandlerError::Panicked { message }) if message == "static"));
    }

    #[test]
    fn panicking_payload_drop_is_contained() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("drop of payload panicked");
            }
        }
        let r: Result<(), _> = run_handler(|| std::panic::panic_any(Bomb));
        assert!(
            matches!(r, Err(HandlerError::Panicked { message }) if message.contains("non-string"))
        );
    }

    #[test]
    fn ok_passes_through() {
        assert_eq!(run_handler(|| Ok::<_, HandlerError>(3)).unwrap(), 3);
        assert_eq!(catch(|| 4), Some(4));
        assert_eq!(catch(|| -> i32 { panic!("x") }), None);
    }
}
