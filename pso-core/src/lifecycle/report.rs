//! What lifecycle calls return: per-system outcomes with timing, plans, and
//! the typed error a failed call raises (which carries the full report).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::error::{ErrorKind, PsoError};
use crate::model::{HandlerError, LifecycleAction};
use crate::registry::RegistryError;

/// What happened to one system in a lifecycle call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// Its `activate` handler succeeded; it is Active.
    Activated,
    /// Its `deactivate` handler succeeded; it is Inactive.
    Deactivated,
    /// It was already Active; nothing ran.
    AlreadyActive,
    /// It was not Active; nothing ran.
    NotActive,
    /// Its handler failed, panicked or raised; it is Failed.
    Failed {
        /// Why.
        error: HandlerError,
    },
    /// Its handler did not finish in time; it is Failed.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// It was not attempted because something it requires failed.
    Blocked {
        /// This system, then each requirement down to the one that failed.
        chain: Vec<String>,
    },
}

impl Outcome {
    /// A short name: `activated`, `deactivated`, `already_active`,
    /// `not_active`, `failed`, `timed_out`, `blocked`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Activated => "activated",
            Outcome::Deactivated => "deactivated",
            Outcome::AlreadyActive => "already_active",
            Outcome::NotActive => "not_active",
            Outcome::Failed { .. } => "failed",
            Outcome::TimedOut { .. } => "timed_out",
            Outcome::Blocked { .. } => "blocked",
        }
    }

    /// Whether this outcome is a failure (failed, timed out, blocked).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Failed { .. } | Outcome::TimedOut { .. } | Outcome::Blocked { .. }
        )
    }

    /// The handler error, for `Failed` and `TimedOut`.
    pub fn error(&self) -> Option<HandlerError> {
        match self {
            Outcome::Failed { error } => Some(error.clone()),
            Outcome::TimedOut { after } => Some(HandlerError::TimedOut { after: *after }),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Failed { error } => write!(f, "failed: {error}"),
            Outcome::TimedOut { after } => {
                write!(f, "timed out after {}", humantime::format_duration(*after))
            }
            Outcome::Blocked { chain } => write!(f, "blocked: {}", chain.join(" -> ")),
            other => f.pad(other.name()),
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One system's line in an [`ActivationReport`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SystemOutcome {
    /// The system.
    pub system: String,
    /// What happened.
    pub outcome: Outcome,
    /// The failure message, for failed, timed-out and blocked systems.
    pub error: Option<String>,
    /// Its level in the plan (0 runs first).
    pub level: usize,
    /// Time from becoming ready (all predecessors done) to its handler starting.
    #[serde(serialize_with = "ser_secs")]
    pub queued: Duration,
    /// Time its handler ran.
    #[serde(serialize_with = "ser_secs")]
    pub ran: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The result of `activate_system`, `deactivate_system` and friends.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ActivationReport {
    /// The system asked for (`*` for the `_all` variants).
    pub target: String,
    /// Activate or deactivate.
    pub action: LifecycleAction,
    /// One line per system touched, level by level.
    pub outcomes: Vec<SystemOutcome>,
    /// Wall time of the whole call.
    #[serde(serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

impl ActivationReport {
    /// The line for `system`, if it was touched.
    pub fn outcome(&self, system: &str) -> Option<&SystemOutcome> {
        self.outcomes.iter().find(|o| o.system == system)
    }

    /// Systems whose handler succeeded, in completion-independent plan order.
    pub fn activated(&self) -> Vec<&str> {
        self.with(|o| matches!(o, Outcome::Activated))
    }

    /// Systems deactivated by this call, in plan order.
    pub fn deactivated(&self) -> Vec<&str> {
        self.with(|o| matches!(o, Outcome::Deactivated))
    }

    /// Systems that failed, timed out or were blocked.
    pub fn failures(&self) -> Vec<&SystemOutcome> {
        self.outcomes
            .iter()
            .filter(|o| o.outcome.is_failure())
            .collect()
    }

    /// Whether the call was a no-op because the target was already in the
    /// requested state.
    pub fn was_noop(&self) -> bool {
        self.outcomes
            .iter()
            .all(|o| matches!(o.outcome, Outcome::AlreadyActive | Outcome::NotActive))
    }

    fn with(&self, f: impl Fn(&Outcome) -> bool) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|o| f(&o.outcome))
            .map(|o| o.system.as_str())
            .collect()
    }

    /// The report as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("report serializes")
    }
}

/// The activation levels for a system, computed without running anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Plan {
    /// The system asked for (`*` for all).
    pub target: String,
    /// Systems to activate, level by level; each level may run in parallel once
    /// the previous levels are done.
    pub levels: Vec<Vec<String>>,
    /// Systems in the closure that are already Active (nothing to do).
    pub already_active: Vec<String>,
}

impl Plan {
    /// The plan as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plan serializes")
    }
}

/// Why a lifecycle call failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// A name was not found (or another registry problem).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Activating would make two conflicting systems active together.
    #[error("cannot activate {system}: it conflicts with {other}, which {}", if *other_active { "is Active" } else { "would be activated by the same call" })]
    Conflict {
        /// A system the call would activate.
        system: String,
        /// The system it conflicts with.
        other: String,
        /// Whether `other` is already Active (else it is in the same call).
        other_active: bool,
    },
    /// The target could not be activated: it, or a system it requires,
    /// failed. The full report is included.
    #[error("cannot activate {}: {}", if target == "*" { "all systems" } else { target }, describe_failure(target, chain, cause, report))]
    ActivationFailed {
        /// The system asked for.
        target: String,
        /// `target`, then each requirement, down to the system that failed.
        chain: Vec<String>,
        /// The failure of the last system in `chain`.
        cause: HandlerError,
        /// Every system's outcome.
        report: Box<ActivationReport>,
    },
    /// The target's own `deactivate` handler failed (it is now Failed, not
    /// Active). Dependents were still stopped; the report has them.
    #[error("deactivating {target} failed: {cause}")]
    DeactivationFailed {
        /// The system asked for.
        target: String,
        /// Its handler's failure.
        cause: HandlerError,
        /// Every system's outcome.
        report: Box<ActivationReport>,
    },
    /// A lifecycle call was made from inside a lifecycle handler.
    #[error("{call} called from inside a lifecycle handler; it would wait for itself")]
    Reentrant {
        /// The verb that was called.
        call: &'static str,
    },
    /// The orchestrator is closed.
    #[error("the orchestrator is closed")]
    Closed,
}

fn describe_failure(
    target: &str,
    chain: &[String],
    cause: &HandlerError,
    report: &ActivationReport,
) -> String {
    let mut s = match chain {
        [only] if only == target => cause.to_string(),
        [only] => format!("{only} failed: {cause}"),
        _ => {
            let path: Vec<String> = chain
                .windows(2)
                .map(|w| format!("{} requires {}", w[0], w[1]))
                .collect();
            format!("{}, which failed: {cause}", path.join(", "))
        }
    };
    let more = report.failures().len().saturating_sub(1);
    if target == "*" && more > 0 {
        s.push_str(&format!(" ({more} more failed or blocked)"));
    }
    s
}

impl LifecycleError {
    /// The report, for `ActivationFailed` and `DeactivationFailed`.
    pub fn report(&self) -> Option<&ActivationReport> {
        match self {
            LifecycleError::ActivationFailed { report, .. }
            | LifecycleError::DeactivationFailed { report, .. } => Some(report),
            _ => None,
        }
    }

    /// The handler error at the root of the failure, if any.
    pub fn cause(&self) -> Option<&HandlerError> {
        match self {
            LifecycleError::ActivationFailed { cause, .. }
            | LifecycleError::DeactivationFailed { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

impl PsoError for LifecycleError {
    fn kind(&self) -> ErrorKind {
        match self {
            LifecycleError::Registry(e) => e.kind(),
            LifecycleError::Conflict { .. } => ErrorKind::Conflict,
            LifecycleError::ActivationFailed { .. } | LifecycleError::DeactivationFailed { .. } => {
                ErrorKind::HandlerFailed
            }
            LifecycleError::Reentrant { .. } => ErrorKind::Busy,
            LifecycleError::Closed => ErrorKind::Closed,
        }
    }
}
