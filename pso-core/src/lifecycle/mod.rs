//! Lifecycles: the per-system state machine ([`state`]), the transactions that
//! activate and deactivate sets of systems ([`txn`]), their reports
//! ([`report`]) and the "why is X not active" explanation ([`explain`]).
//!
//! # Invariants
//! * One lifecycle transaction runs at a time per orchestrator (the
//!   orchestrator's lifecycle lock); reads of status never wait for it.
//! * A lifecycle handler never runs while the registry lock is held, so a
//!   handler may read status; it may not start another lifecycle call (that
//!   would wait on itself) and gets [`ErrorKind::Busy`](crate::ErrorKind::Busy)
//!   if it tries.

mod explain;
mod report;
mod state;
mod txn;

use std::cell::Cell;
use std::time::SystemTime;

use serde::Serializer;

pub(crate) use explain::why_inactive;
pub use report::{ActivationReport, LifecycleError, Outcome, Plan, SystemOutcome};
pub(crate) use state::Lifecycle;
pub use state::{SystemState, Transition};
pub(crate) use txn::{MEMBER_ABANDONED, Txn};

thread_local! {
    static IN_LIFECYCLE_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as running a lifecycle handler until dropped.
pub(crate) struct HandlerScope {
    prev: bool,
}

impl HandlerScope {
    pub(crate) fn enter() -> Self {
        HandlerScope {
            prev: IN_LIFECYCLE_HANDLER.with(|c| c.replace(true)),
        }
    }
}

impl Drop for HandlerScope {
    fn drop(&mut self) {
        IN_LIFECYCLE_HANDLER.with(|c| c.set(self.prev));
    }
}

/// Whether the current thread is inside a lifecycle handler.
pub(crate) fn in_lifecycle_handler() -> bool {
    IN_LIFECYCLE_HANDLER.with(|c| c.get())
}

/// Formats a wall-clock time as RFC 3339 with milliseconds (UTC).
pub(crate) fn fmt_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_time(*t))
}
