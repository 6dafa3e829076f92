//! Workflow definitions in JSON or TOML: steps that name systems and
//! operations registered in code.
//!
//! ```toml
//! name = "release"
//!
//! [[steps]]
//! name = "build"
//! system = "PBOS"
//! op = "build"
//! retries = 2
//!
//! [[steps]]
//! name = "scan"
//! system = "PSec"
//! op = "scan"
//! inputs = { artifact = "build" }
//! when = "build"          # run only if build's output is truthy
//! timeout_ms = 5000
//! ```
//!
//! Unknown keys are errors with line and column; unknown steps, systems and
//! operations are rejected when the workflow is built, naming the step.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RetryPolicy, StepSpec, WorkflowBuilder, WorkflowError};
use crate::model::Priority;
use crate::topology::{TopologyFormat, line_col};

/// A workflow definition file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkflowDecl {
    /// The workflow's name.
    pub name: String,
    /// Its steps.
    #[serde(default)]
    pub steps: Vec<StepDecl>,
}

/// One step of a definition file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StepDecl {
    /// Step name, unique in the workflow.
    pub name: String,
    /// The system whose operation runs.
    pub system: String,
    /// The operation.
    pub op: String,
    /// Named inputs: input name -> upstream step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// Steps this one runs after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Retries after the first attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Delay before the first retry, ms (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Longest retry delay, ms (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    /// Timeout of one attempt, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Priority class (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Run only if this upstream step's output is truthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkflowDecl {
    /// Parses a definition. `source_name` names it in errors.
    ///
    /// # Errors
    /// [`WorkflowError::Parse`] with line and column.
    pub fn parse(
        text: &str,
        format: TopologyFormat,
        source_name: &str,
    ) -> Result<WorkflowDecl, WorkflowError> {
        let parse_err = |line: usize, column: usize, message: String| WorkflowError::Parse {
            source_name: source_name.to_owned(),
            line,
            column,
            message,
        };
        match format {
            TopologyFormat::Toml => toml::from_str(text).map_err(|e| {
                let (l, c) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                parse_err(l, c, e.message().trim().to_owned())
            }),
            TopologyFormat::Json => serde_json::from_str(text).map_err(|e| {
                let full = e.to_string();
                let msg = full
                    .rfind(" at line ")
                    .map_or(full.clone(), |i| full[..i].to_owned());
                parse_err(e.line().max(1), e.column().max(1), msg)
            }),
        }
    }

    /// The builder this definition describes.
    pub fn into_builder(self) -> WorkflowBuilder {
        let mut b = WorkflowBuilder::new(self.name);
        for s in self.steps {
            let mut spec = StepSpec::op(s.name, s.system, s.op);
            for (input, from) in s.inputs {
                spec = spec.input(input, from);
            }
            for a in s.after {
                spec = spec.after(a);
            }
            if s.retries > 0 {
                let d = RetryPolicy::default();
                spec = spec.retry_policy(RetryPolicy {
                    max_retries: s.retries,
                    base: s.backoff_ms.map_or(d.base, Duration::from_millis),
                    max: s.max_backoff_ms.map_or(d.max, Duration::from_millis),
                    jitter: true,
                });
            }
            if let Some(t) = s.timeout_ms {
                spec = spec.timeout(Duration::from_millis(t));
            }
            if let Some(p) = s.priority {
                spec = spec.priority(p);
            }
            if let Some(w) = s.when {
                spec = spec.when_truthy(w);
            }
            b.add(spec);
        }
        b
    }
}
