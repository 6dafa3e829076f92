//! The lifecycle state machine of one system.
//!
//! ```text
//! Registered | Inactive | Failed | GaveUp --activate--> Activating
//! Activating   --ok-->      Active
//! Activating   --error-->   Failed{reason}
//! Active       --deactivate--> Deactivating
//! Active       --crash reported, unhealthy, missed watchdog--> Failed{reason}
//! Deactivating --ok-->      Inactive
//! Deactivating --error-->   Failed{reason}
//! Failed       --supervisor gives up--> GaveUp{reason}
//! ```
//!
//! Every other move is rejected by [`Lifecycle::transition`], which returns a
//! `#[must_use]` [`Transitioned`]. Every accepted move is recorded with its reason
//! and wall-clock time in a bounded history (oldest entries fall off first).
//! The lifecycle lives inside the registry and is only mutated under the
//! registry's write lock.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::metrics::Switch;
use crate::metrics::series::Transitions;

/// How many transitions each system keeps in its history.
pub(crate) const HISTORY_LEN: usize = 32;

/// Where a system is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemState {
    /// Registered, never activated.
    Registered,
    /// Its `activate` handler is running.
    Activating,
    /// Activated successfully.
    Active,
    /// Its `deactivate` handler is running.
    Deactivating,
    /// Deactivated successfully.
    Inactive,
    /// A handler failed, panicked, raised or timed out, or it failed while
    /// Active (a reported crash, an unhealthy verdict, a missed watchdog).
    Failed {
        /// What went wrong.
        reason: String,
    },
    /// Its supervisor gave up restarting it (too many failures in the
    /// window). It stays down until activated by hand.
    GaveUp {
        /// Why.
        reason: String,
    },
}

impl SystemState {
    /// The state's name without data (`"Failed"`).
    pub fn name(&self) -> &'static str {
        match self {
            SystemState::Registered => "Registered",
            SystemState::Activating => "Activating",
            SystemState::Active => "Active",
            SystemState::Deactivating => "Deactivating",
            SystemState::Inactive => "Inactive",
            SystemState::Failed { .. } => "Failed",
            SystemState::GaveUp { .. } => "GaveUp",
        }
    }

    /// Whether the system is Active.
    pub fn is_active(&self) -> bool {
        matches!(self, SystemState::Active)
    }

    /// Whether the system is Failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, SystemState::Failed { .. })
    }

    fn allows(&self, to: &SystemState) -> bool {
        use SystemState::*;
        matches!(
            (self, to),
            (
                Registered | Inactive | Failed { .. } | GaveUp { .. },
                Activating
            ) | (Activating, Active | Failed { .. })
                | (Active, Deactivating | Failed { .. })
                | (Failed { .. }, GaveUp { .. })
                | (Deactivating, Inactive | Failed { .. })
        )
    }
}

impl fmt::Display for SystemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemState::Failed { reason } => write!(f, "Failed ({reason})"),
            SystemState::GaveUp { reason } => write!(f, "GaveUp ({reason})"),
            other => f.pad(other.name()),
        }
    }
}

impl Serialize for SystemState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Transition {
    /// The state before.
    pub from: SystemState,
    /// The state after.
    pub to: SystemState,
    /// Why it happened.
    pub reason: String,
    /// When it happened (wall clock).
    #[serde(serialize_with = "crate::lifecycle::ser_time")]
    pub at: SystemTime,
}

/// The result of asking for a transition.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transitioned {
    /// The move was legal and is recorded.
    Applied,
    /// The move is not legal from the current state; nothing changed.
    Rejected,
}

/// A transition reason: shared, so recording one allocates nothing.
pub(crate) type Reason = Arc<str>;

macro_rules! static_reasons {
    ($($name:ident = $text:literal;)*) => {$(
        pub(crate) static $name: LazyLock<Reason> = LazyLock::new(|| Arc::from($text));
    )*};
}
static_reasons! {
    REGISTERED = "registered";
    ACTIVATE_OK = "activate handler succeeded";
    DEACTIVATE_OK = "deactivate handler succeeded";
    ACTIVATE_FAILED = "activate handler failed";
    DEACTIVATE_FAILED = "deactivate handler failed";
    TRANSITION_TIMEOUT = "transition timeout";
}

/// A recorded transition (the public [`Transition`] is built on demand).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) from: SystemState,
    pub(crate) to: SystemState,
    pub(crate) reason: Reason,
    pub(crate) at: SystemTime,
}

impl Record {
    pub(crate) fn public(&self) -> Transition {
        Transition {
            from: self.from.clone(),
            to: self.to.clone(),
            reason: self.reason.to_string(),
            at: self.at,
        }
    }
}

/// One system's lifecycle record.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    pub(crate) state: SystemState,
    pub(crate) since: SystemTime,
    pub(crate) reason: Reason,
    pub(crate) last_error: Option<String>,
    pub(crate) history: VecDeque<Record>,
    /// Transitions by destination, for the metrics.
    pub(crate) transitions: Transitions,
}

impl Lifecycle {
    /// A fresh record, registered at `now`, counting transitions while
    /// `metrics` is on.
    pub(crate) fn new_at(now: SystemTime, metrics: Switch) -> Self {
        Lifecycle {
            state: SystemState::Registered,
            since: now,
            reason: REGISTERED.clone(),
            last_error: None,
            history: VecDeque::new(),
            transitions: Transitions::new(metrics),
        }
    }

    /// Moves to `to` at `at` if the state machine allows it, recording `reason`.
    pub(crate) fn transition(
        &mut self,
        to: SystemState,
        reason: &Reason,
        at: SystemTime,
    ) -> Transitioned {
        if !self.state.allows(&to) {
            return Transitioned::Rejected;
        }
        if let SystemState::Failed { reason: why } = &to {
            self.last_error = Some(why.clone());
        }
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.transitions.count(match &to {
            SystemState::Activating => 0,
            SystemState::Active => 1,
            SystemState::Deactivating => 2,
            SystemState::Inactive => 3,
            SystemState::Failed { .. } => 4,
            // `allows` never admits Registered as a destination.
            SystemState::GaveUp { .. } | SystemState::Registered => 5,
        });
        let from = std::mem::replace(&mut self.state, to.clone());
        self.history.push_back(Record {
            from,
            to,
            reason: reason.clone(),
            at,
        });
        self.since = at;
        self.reason = reason.clone();
        Transitioned::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(r: &str) -> SystemState {
        SystemState::Failed { reason: r.into() }
    }

    fn r(s: impl AsRef<str>) -> Reason {
        Arc::from(s.as_ref())
    }

    #[test]
    fn legal_path_is_recorded() {
        let mut l = Lifecycle::new_at(SystemTime::now(), Switch::default());
        assert_eq!(
            l.transition(SystemState::Activating, &r("asked"), SystemTime::now()),
            Transitioned::Applied
        );
        assert_eq!(
            l.transition(SystemState::Active, &r("handler ok"), SystemTime::now()),
            Transitioned::Applied
        );
        assert_eq!(
            l.transition(SystemState::Deactivating, &r("asked"), SystemTime::now()),
            Transitioned::Applied
        );
        assert_eq!(
            l.transition(SystemState::Inactive, &r("handler ok"), SystemTime::now()),
            Transitioned::Applied
        );
        assert_eq!(
            l.transition(SystemState::Activating, &r("again"), SystemTime::now()),
            Transitioned::Applied
        );
        assert_eq!(
            l.transition(failed("boom"), &r("handler failed"), SystemTime::now()),
            Transitioned::Applied
        );
        assert_eq!(
            l.transition(SystemState::Activating, &r("retry"), SystemTime::now()),
            Transitioned::Applied
        );
        assert_eq!(l.history.len(), 7);
        assert_eq!(l.last_error.as_deref(), Some("boom"));
        assert_eq!(&*l.reason, "retry");
        assert_eq!(l.history[1].from, SystemState::Activating);
        assert_eq!(l.history[1].to, SystemState::Active);
    }

    #[test]
    fn illegal_moves_change_nothing() {
        let mut l = Lifecycle::new_at(SystemTime::now(), Switch::default());
        for to in [
            SystemState::Active,
            SystemState::Deactivating,
            SystemState::Inactive,
            failed("x"),
            SystemState::Registered,
        ] {
            assert_eq!(
                l.transition(to, &r("bad"), SystemTime::now()),
                Transitioned::Rejected
            );
        }
        assert_eq!(l.state, SystemState::Registered);
        assert!(l.history.is_empty());
        let _ = l.transition(SystemState::Activating, &r("a"), SystemTime::now());
        let _ = l.transition(SystemState::Active, &r("b"), SystemTime::now());
        assert_eq!(
            l.transition(SystemState::Activating, &r("c"), SystemTime::now()),
            Transitioned::Rejected
        );
        assert_eq!(
            l.transition(SystemState::Inactive, &r("c"), SystemTime::now()),
            Transitioned::Rejected
        );
        assert_eq!(l.state, SystemState::Active);
    }

    #[test]
    fn history_is_bounded() {
        let mut l = Lifecycle::new_at(SystemTime::now(), Switch::default());
        for i in 0..100 {
            let _ = l.transition(
                SystemState::Activating,
                &r(format!("a{i}")),
                SystemTime::now(),
            );
            let _ = l.transition(SystemState::Active, &r("ok"), SystemTime::now());
            let _ = l.transition(SystemState::Deactivating, &r("d"), SystemTime::now());
            let _ = l.transition(SystemState::Inactive, &r("ok"), SystemTime::now());
        }
        assert_eq!(l.history.len(), HISTORY_LEN);
        assert_eq!(l.history.back().unwrap().to, SystemState::Inactive);
    }
}
