//! The topology fuzz harness, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/topology.rs`) and the regression replay
//! (`pso-core/tests/fuzz_regressions.rs`), both of which include this file with
//! `#[path]`. It uses only pso-core's public API.
//!
//! For one input: if it is UTF-8, load it as TOML and as JSON. A load may fail
//! (with an error, never a panic) and must then leave the orchestrator empty.
//! A load that succeeds is exported in every format; the JSON and TOML exports
//! must load back into a fresh orchestrator and export identically; then
//! `activate_all`/`deactivate_all` run (errors such as conflicts are fine).

use pso_core::{ExportFormat, Orchestrator, PsoError, TopologyFormat};

/// What happened to one input in one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// Loaded this many systems (and round-tripped).
    Systems(usize),
    /// Rejected with an error.
    Rejected,
}

/// Keeps an empty orchestrator between inputs, so most inputs (which do not
/// parse) cost no thread start-up.
#[derive(Debug)]
pub(crate) struct Harness {
    orch: Orchestrator,
}

fn fresh() -> Orchestrator {
    Orchestrator::builder()
        .workers(1)
        .build()
        .expect("start a worker")
}

impl Harness {
    pub(crate) fn new() -> Self {
        Harness { orch: fresh() }
    }

    /// Runs one input; `None` if it is not UTF-8, else the TOML and JSON results.
    pub(crate) fn one(&mut self, data: &[u8]) -> Option<[Loaded; 2]> {
        let text = std::str::from_utf8(data).ok()?;
        Some([
            self.load(text, TopologyFormat::Toml),
            self.load(text, TopologyFormat::Json),
        ])
    }

    fn load(&mut self, text: &str, format: TopologyFormat) -> Loaded {
        match self.orch.load_topology_str(text, format) {
            Err(e) => {
                let _ = (e.to_string(), e.kind());
                assert_eq!(
                    self.orch.len(),
                    0,
                    "a rejected load registered systems: {e}"
                );
                Loaded::Rejected
            }
            Ok(n) => {
                let orch = std::mem::replace(&mut self.orch, fresh());
                assert_eq!(orch.len(), n);
                round_trip(&orch, n);
                let _ = (
                    orch.activate_all(),
                    orch.system_status(),
                    orch.deactivate_all(),
                );
                Loaded::Systems(n)
            }
        }
    }
}

fn round_trip(orch: &Orchestrator, n: usize) {
    let _ = (
        orch.export(ExportFormat::Dot),
        orch.export(ExportFormat::Mermaid),
    );
    for (export, format) in [
        (ExportFormat::Json, TopologyFormat::Json),
        (ExportFormat::Toml, TopologyFormat::Toml),
    ] {
        let text = orch.export(export);
        let again = fresh();
        match again.load_topology_str(&text, format) {
            Ok(m) => assert_eq!(m, n, "{export} round trip changed the system count"),
            Err(e) => panic!("{export} export does not load back: {e}\n{text}"),
        }
        assert_eq!(
            again.export(export),
            text,
            "{export} round trip is not exact"
        );
    }
}
