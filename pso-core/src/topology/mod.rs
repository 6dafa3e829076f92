//! Topology files: the whole model (systems, relations, tiers, tags,
//! priorities, resources, timeouts) in TOML or JSON.
//!
//! The serde model is strict (`deny_unknown_fields`): a typo is an error with
//! the file, line, column and what was expected, not a silently ignored key.
//! Semantic problems found by the registry (unknown system, duplicate, cycle)
//! are reported with the position of the offending name when it can be found
//! in the text. Loading is one registry batch, so a bad file changes nothing.
//!
//! The JSON and TOML exports produce this same model and load back into an
//! identical registry.

#![forbid(unsafe_code)]

mod export;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{ErrorKind, PsoError};
use crate::model::{EdgeKind, EdgeSpec, Priority, Resources, SystemSpec};
use crate::registry::RegistryError;

pub(crate) use export::{to_dot, to_mermaid, to_topology};

/// A topology: systems with their relations, plus optional extra relations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Topology {
    /// The systems (`[[systems]]` in TOML).
    #[serde(default, alias = "system")]
    pub systems: Vec<SystemDecl>,
    /// Relations declared apart from their systems (`[[edges]]` in TOML).
    #[serde(default, alias = "edge", skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<EdgeSpec>,
}

/// One system in a topology file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SystemDecl {
    /// Unique name.
    pub name: String,
    /// Tier, for grouping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Priority class (default `normal`).
    #[serde(default, skip_serializing_if = "is_normal")]
    pub priority: Priority,
    /// Resource request per dimension.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Systems this one requires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Systems this one wants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wants: Vec<String>,
    /// Systems this one starts after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Systems this one conflicts with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Systems this one talks to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interacts: Vec<String>,
    /// Per-transition timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Limit on concurrently running workflow steps of this system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Never deactivated for being idle (minimalist mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

fn is_normal(p: &Priority) -> bool {
    *p == Priority::Normal
}

impl SystemDecl {
    pub(crate) fn into_spec(self) -> SystemSpec {
        let mut spec = SystemSpec::new(self.name);
        spec.tier = self.tier;
        spec.tags = self.tags;
        spec.priority = self.priority;
        spec.resources = self.resources;
        spec.timeout = self.timeout_ms.map(std::time::Duration::from_millis);
        spec.concurrency = self.concurrency;
        spec.pinned = self.pinned;
        for (kind, list) in [
            (EdgeKind::Requires, self.requires),
            (EdgeKind::Wants, self.wants),
            (EdgeKind::After, self.after),
            (EdgeKind::Conflicts, self.conflicts),
            (EdgeKind::Interacts, self.interacts),
        ] {
            spec.edges.extend(list.into_iter().map(|to| (kind, to)));
        }
        spec
    }
}

/// The text format of a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopologyFormat {
    /// TOML.
    Toml,
    /// JSON.
    Json,
}

impl TopologyFormat {
    /// The format for a file name, from its extension.
    pub fn from_path(path: &Path) -> Option<TopologyFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(TopologyFormat::Toml),
            "json" => Some(TopologyFormat::Json),
            _ => None,
        }
    }
}

impl FromStr for TopologyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "toml" => Ok(TopologyFormat::Toml),
            "json" => Ok(TopologyFormat::Json),
            _ => Err(format!(
                "unknown topology format '{s}' (expected 'toml' or 'json')"
            )),
        }
    }
}

/// An export format for [`crate::Orchestrator::export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// The topology as JSON (loads back with `load_topology_str`).
    Json,
    /// The topology as TOML (loads back with `load_topology_str`).
    Toml,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(ExportFormat::Json),
            "toml" => Ok(ExportFormat::Toml),
            "dot" => Ok(ExportFormat::Dot),
            "mermaid" => Ok(ExportFormat::Mermaid),
            _ => Err(format!(
                "unknown export format '{s}' (expected 'json', 'toml', 'dot' or 'mermaid')"
            )),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Json => "json",
            ExportFormat::Toml => "toml",
            ExportFormat::Dot => "dot",
            ExportFormat::Mermaid => "mermaid",
        })
    }
}

/// Why a topology could not be loaded. The registry is unchanged.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The text is not valid TOML/JSON or does not match the model.
    #[error("{source_name}:{line}:{column}: {message}")]
    Parse {
        /// The file path, or `<string>`.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The topology parsed, but the registry rejected it.
    #[error("{source_name}{}: {error}", position.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// The file path, or `<string>`.
        source_name: String,
        /// Line and column of the offending name, when found in the text.
        position: Option<(usize, usize)>,
        /// The registry's error.
        error: RegistryError,
    },
    /// The file could not be read.
    #[error("cannot read topology file {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The format is unknown (for instance a file without `.toml`/`.json`).
    #[error("{message}")]
    Format {
        /// What is wrong.
        message: String,
    },
}

impl PsoError for TopologyError {
    fn kind(&self) -> ErrorKind {
        match self {
            TopologyError::Parse { .. } => ErrorKind::Parse,
            TopologyError::Invalid { error, .. } => error.kind(),
            TopologyError::Io { .. } => ErrorKind::Io,
            TopologyError::Format { .. } => ErrorKind::InvalidArgument,
        }
    }
}

impl Topology {
    /// Parses `text`. `source_name` names it in errors (a path or `<string>`).
    pub fn parse(
        text: &str,
        format: TopologyFormat,
        source_name: &str,
    ) -> Result<Topology, TopologyError> {
        match format {
            TopologyFormat::Toml => toml::from_str::<Topology>(text).map_err(|e| {
                let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                TopologyError::Parse {
                    source_name: source_name.to_owned(),
                    line,
                    column,
                    message: e.message().trim().to_owned(),
                }
            }),
            TopologyFormat::Json => serde_json::from_str::<Topology>(text).map_err(|e| {
                let full = e.to_string();
                let message = match full.rfind(" at line ") {
                    Some(i) => full[..i].to_owned(),
                    None => full,
                };
                TopologyError::Parse {
                    source_name: source_name.to_owned(),
                    line: e.line().max(1),
                    column: e.column().max(1),
                    message,
                }
            }),
        }
    }

    /// Renders as text in `format`.
    pub fn render(&self, format: TopologyFormat) -> String {
        match format {
            TopologyFormat::Json => {
                serde_json::to_string_pretty(self).expect("topology serializes") + "\n"
            }
            TopologyFormat::Toml => toml::to_string(self).expect("topology serializes"),
        }
    }

    /// Splits into registry input.
    pub(crate) fn into_batch(self) -> (Vec<SystemSpec>, Vec<EdgeSpec>) {
        (
            self.systems
                .into_iter()
                .map(SystemDecl::into_spec)
                .collect(),
            self.edges,
        )
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let at = text.floor_char_boundary(at);
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Where the registry error's subject appears in the text: the quoted name
/// (the second occurrence for a duplicate).
pub(crate) fn locate(text: &str, error: &RegistryError) -> Option<(usize, usize)> {
    let (needle, nth) = match error {
        RegistryError::UnknownSystem { name, .. } => (format!("\"{name}\""), 0),
        RegistryError::DuplicateSystem { name } => (format!("\"{name}\""), 1),
        RegistryError::Cycle { path, .. } => (format!("\"{}\"", path.first()?), 0),
        _ => return None,
    };
    let at = text.match_indices(&needle).nth(nth).map(|(i, _)| i + 1)?;
    Some(line_col(text, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let t = "ab\ncdé\nfg";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(line_col(t, 100), (3, 3));
    }

    #[test]
    fn toml_typo_reports_position_and_expectation() {
        let text = "[[systems]]\nname = \"a\"\nrequries = [\"b\"]\n";
        let e = Topology::parse(text, TopologyFormat::Toml, "t.toml").unwrap_err();
        match &e {
            TopologyError::Parse {
                line,
                column,
                message,
                ..
            } => {
                assert_eq!((*line, *column), (3, 1), "{e}");
                assert!(
                    message.contains("requries") && message.contains("requires"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with("t.toml:3:1: "));
        assert_eq!(e.kind(), ErrorKind::Parse);
    }

    #[test]
    fn json_syntax_error_position() {
        let text = "{\n  \"systems\": [\n    {\"name\": \"a\",}\n  ]\n}";
        let e = Topology::parse(text, TopologyFormat::Json, "t.json").unwrap_err();
        match e {
            TopologyError::Parse { line, message, .. } => {
                assert_eq!(line, 3);
                assert!(!message.contains(" at line "), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_type_and_bad_enum() {
        let e = Topology::parse("[[systems]]\nname = 5\n", TopologyFormat::Toml, "x").unwrap_err();
        assert!(matches!(e, TopologyError::Parse { line: 2, .. }), "{e}");
        let e = Topology::parse(
            "[[systems]]\nname = \"a\"\npriority = \"urgent\"\n",
            TopologyFormat::Toml,
            "x",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("urgent") && e.to_string().contains("critical"),
            "{e}"
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!(
            "TOML".parse::<TopologyFormat>().unwrap(),
            TopologyFormat::Toml
        );
        assert!("yaml".parse::<TopologyFormat>().is_err());
        assert_eq!(
            "mermaid".parse::<ExportFormat>().unwrap(),
            ExportFormat::Mermaid
        );
        assert_eq!(
            TopologyFormat::from_path(Path::new("a/b.JSON")),
            Some(TopologyFormat::Json)
        );
        assert_eq!(TopologyFormat::from_path(Path::new("a/b")), None);
    }
}
