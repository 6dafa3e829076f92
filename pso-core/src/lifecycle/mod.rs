//! Lifecycles: the per-system state machine ([`state`]), the transactions that
//! activate and deactivate sets of systems ([`txn`]), their reports
//! ([`report`]) and the "why is X not active" explanation ([`explain`]).
//!
//! # Invariants
//! * One lifecycle transaction runs at a time per orchestrator (the
//!   orchestrator's lifecycle lock); reads of status never wait for it.
//! * A lifecycle handler never runs while the registry lock is held, so a
//!   handler may read status; it may not start another lifecycle call on the
//!   same orchestrator (that would wait on itself) and gets
//!   [`ErrorKind::Busy`](crate::ErrorKind::Busy) if it tries.
//! * A transaction drops every handler closure it holds before it signals
//!   completion, so after a lifecycle call returns, replaced handlers are
//!   not kept alive by it.

mod explain;
mod report;
mod state;
mod txn;

use std::cell::Cell;
use std::time::SystemTime;

use serde::Serializer;

pub(crate) use explain::why_inactive;
pub use report::{ActivationReport, LifecycleError, Outcome, Plan, SystemOutcome};
pub(crate) use state::{Lifecycle, Reason, Transitioned};
pub use state::{SystemState, Transition};
pub(crate) use txn::{MEMBER_ABANDONED, Txn};

thread_local! {
    /// The id of the orchestrator whose lifecycle handler this thread is
    /// running (0: none).
    static IN_LIFECYCLE_HANDLER: Cell<u64> = const { Cell::new(0) };
}

/// Marks the current thread as running a lifecycle handler of orchestrator
/// `id` until dropped.
pub(crate) struct HandlerScope {
    prev: u64,
}

impl HandlerScope {
    pub(crate) fn enter(id: u64) -> Self {
        HandlerScope {
            prev: IN_LIFECYCLE_HANDLER.with(|c| c.replace(id)),
        }
    }
}

impl Drop for HandlerScope {
    fn drop(&mut self) {
        IN_LIFECYCLE_HANDLER.with(|c| c.set(self.prev));
    }
}

/// Whether the current thread is inside a lifecycle handler of orchestrator
/// `id` (a lifecycle call on *that* orchestrator would wait for itself; other
/// orchestrators are fine).
pub(crate) fn in_lifecycle_handler(id: u64) -> bool {
    IN_LIFECYCLE_HANDLER.with(|c| c.get()) == id
}

/// Formats a wall-clock time as RFC 3339 with milliseconds (UTC).
pub(crate) fn fmt_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_time(*t))
}
