//! The workflow-definition fuzz harness, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/workflow.rs`) and the regression replay
//! (`pso-core/tests/fuzz_regressions.rs`), both of which include this file with
//! `#[path]`. It uses only pso-core's public API (and `serde_json`/`toml`,
//! which pso-core depends on).
//!
//! One orchestrator (one worker) is kept for every input. It has three Active
//! systems `A`, `B`, `C`, each with operations `x` (returns 1), `y` (returns
//! null, so a `when` on it skips) and `z` (returns how many named inputs it
//! got). For one input, if it is UTF-8, in TOML and in JSON:
//!
//! * [`WorkflowDecl::parse`] and [`Orchestrator::load_workflow_str`] agree: a
//!   text that does not parse is rejected by the loader with a `Parse` error,
//!   and one that parses is never rejected with a `Parse` error;
//! * a parsed definition serializes to JSON and TOML and parses back equal;
//! * a built workflow has the definition's steps, and runs to completion on
//!   the systems (bounded: a run that cannot finish within its own timeouts
//!   is cancelled and must then finish), every accepted step ending in exactly
//!   one terminal state.

use std::time::Duration;

use pso_core::{
    ErrorKind, Orchestrator, PsoError, SystemSpec, TopologyFormat, Value, Workflow, WorkflowDecl,
};

/// What happened to one input in one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Built {
    /// Parsed and built a workflow of this many steps (and ran it).
    Steps(usize),
    /// Parsed, but the build rejected it (unknown system, cycle, ...).
    Invalid,
    /// Did not parse.
    Unparsed,
}

/// The orchestrator the inputs load into.
#[derive(Debug)]
pub(crate) struct Harness {
    orch: Orchestrator,
}

impl Harness {
    pub(crate) fn new() -> Self {
        let orch = Orchestrator::builder()
            .workers(1)
            .build()
            .expect("start a worker");
        for name in ["A", "B", "C"] {
            orch.register(
                SystemSpec::new(name)
                    .operation("x", |_| Ok(Value::from(1)))
                    .operation("y", |_| Ok(Value::Null))
                    .operation("z", |ctx| Ok(Value::from(ctx.inputs().len() as i64))),
            )
            .expect("register a system");
        }
        orch.activate_all().expect("activate the systems");
        Harness { orch }
    }

    /// Runs one input; `None` if it is not UTF-8, else the TOML and JSON results.
    pub(crate) fn one(&mut self, data: &[u8]) -> Option<[Built; 2]> {
        let text = std::str::from_utf8(data).ok()?;
        Some([
            self.load(text, TopologyFormat::Toml),
            self.load(text, TopologyFormat::Json),
        ])
    }

    fn load(&mut self, text: &str, format: TopologyFormat) -> Built {
        let parsed = WorkflowDecl::parse(text, format, "<string>");
        let loaded = self.orch.load_workflow_str(text, format);
        let decl = match parsed {
            Err(e) => {
                let _ = e.to_string();
                match loaded {
                    Ok(_) => panic!("the loader accepted a text the parser rejects: {e}"),
                    Err(l) => assert_eq!(l.kind(), ErrorKind::Parse, "{l}"),
                }
                return Built::Unparsed;
            }
            Ok(decl) => decl,
        };
        round_trip(&decl);
        match loaded {
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    ErrorKind::Parse,
                    "parsed, then a parse error: {e}"
                );
                let _ = e.to_string();
                Built::Invalid
            }
            Ok(wf) => {
                assert_eq!(wf.len(), decl.steps.len());
                let mut names = wf.step_names();
                let mut declared: Vec<String> = decl.steps.iter().map(|s| s.name.clone()).collect();
                names.sort();
                declared.sort();
                assert_eq!(names, declared);
                if runs_quickly(&decl) {
                    self.run(&wf);
                }
                Built::Steps(wf.len())
            }
        }
    }

    fn run(&self, wf: &Workflow) {
        let handle = self
            .orch
            .coordinate_systems(wf)
            .unwrap_or_else(|e| panic!("every system is Active, yet: {e}"));
        let result = match handle.wait_timeout(Duration::from_secs(20)) {
            Some(r) => r,
            None => {
                let _ = handle.cancel();
                handle
                    .wait_timeout(Duration::from_secs(20))
                    .expect("a cancelled run finishes")
            }
        };
        let c = result.counts();
        assert_eq!(c.unfinished, 0, "{c:?}");
        assert_eq!(c.accepted, c.terminal(), "{c:?}");
        assert_eq!(result.steps().len(), c.accepted);
        let _ = (result.to_json(), result.outputs());
    }
}

/// The operations never fail, so only a step timeout can cause a retry; a
/// run is skipped when a retry could wait long (to keep executions fast).
fn runs_quickly(decl: &WorkflowDecl) -> bool {
    decl.steps.iter().all(|s| {
        s.retries == 0
            || s.timeout_ms.is_none()
            || (s.backoff_ms.unwrap_or(10) <= 50 && s.max_backoff_ms.unwrap_or(10_000) <= 50)
    })
}

fn round_trip(decl: &WorkflowDecl) {
    let json = serde_json::to_string(decl).expect("a definition serializes to JSON");
    let again = WorkflowDecl::parse(&json, TopologyFormat::Json, "json")
        .unwrap_or_else(|e| panic!("the JSON export does not parse: {e}\n{json}"));
    assert_eq!(&again, decl, "JSON round trip\n{json}");
    // TOML cannot hold every definition the JSON form can; when it can, it
    // must read back the same.
    if let Ok(toml) = toml::to_string(decl) {
        let again = WorkflowDecl::parse(&toml, TopologyFormat::Toml, "toml")
            .unwrap_or_else(|e| panic!("the TOML export does not parse: {e}\n{toml}"));
        assert_eq!(&again, decl, "TOML round trip\n{toml}");
    }
}
