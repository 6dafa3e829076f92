//! Replays every input under `tests/fuzz/testdata/<target>/` through that
//! target's fuzz harness (the same code the cargo-fuzz target runs), so
//! inputs the fuzzer once crashed on stay fixed under plain `cargo test`.
//! Targets: `topology`, `workflow`, `topic` (here) and `c_api` (in
//! `pso-c/tests/fuzz_c_api.rs`, which reads `tests/fuzz/testdata/c_api/`).
//!
//! File names say what is expected beyond "no panic" (the harness's own
//! assertions):
//! * `ok-*.toml` / `ok-*.json`: loads in that format (topology: and
//!   round-trips exactly; workflow: builds and runs);
//! * `bad-*`: rejected with an error in both formats (or not UTF-8);
//! * anything else (the fuzzer's `crash-*`, `any-*`): only must not panic.

#[path = "fuzz/topic.rs"]
mod topic;
#[path = "fuzz/topology.rs"]
mod topology;
#[path = "fuzz/workflow.rs"]
mod workflow;

use std::path::PathBuf;

use topology::{Harness, Loaded};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/testdata")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn topology_inputs_replay_without_panics() {
    let files = inputs("topology");
    assert!(files.len() >= 10, "seed inputs are missing: {files:?}");
    let mut harness = Harness::new();
    let mut problems = Vec::new();
    let (mut loaded, mut rejected) = (0, 0);
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(path).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness.one(&data)));
        let Ok(result) = result else {
            problems.push(format!("{file}: panicked"));
            // The harness may be mid-load; start from a clean one.
            harness = Harness::new();
            continue;
        };
        let [toml, json] = result.unwrap_or([Loaded::Rejected, Loaded::Rejected]);
        for r in [toml, json] {
            match r {
                Loaded::Systems(n) => loaded += n,
                Loaded::Rejected => rejected += 1,
            }
        }
        let expected_ok = if file.starts_with("ok-") && file.ends_with(".toml") {
            Some(toml)
        } else if file.starts_with("ok-") && file.ends_with(".json") {
            Some(json)
        } else {
            None
        };
        if let Some(Loaded::Rejected) = expected_ok {
            problems.push(format!("{file}: expected to load, was rejected"));
        }
        if file.starts_with("bad-") && (toml != Loaded::Rejected || json != Loaded::Rejected) {
            problems.push(format!(
                "{file}: expected rejection, got {toml:?} / {json:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The two `ok-` seeds have 4 systems each.
    assert!(
        loaded >= 8 && rejected >= 10,
        "{loaded} systems loaded, {rejected} rejections"
    );
}

/// Replays one target's inputs with `run` (which panics on a failed check);
/// returns the problems, naming each file.
fn replay(target: &str, mut run: impl FnMut(&str, &[u8]) -> Result<(), String>) -> Vec<String> {
    let files = inputs(target);
    assert!(
        files.len() >= 5,
        "{target} seed inputs are missing: {files:?}"
    );
    let mut problems = Vec::new();
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(path).unwrap();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&file, &data))) {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => problems.push(format!("{file}: {problem}")),
            Err(_) => problems.push(format!("{file}: panicked")),
        }
    }
    problems
}

#[test]
fn workflow_inputs_replay_without_panics() {
    let mut harness = workflow::Harness::new();
    let mut built = 0;
    let problems = replay("workflow", |file, data| {
        let result = harness.one(data);
        let [toml, json] = result.unwrap_or([workflow::Built::Unparsed; 2]);
        built += [toml, json]
            .iter()
            .filter(|b| matches!(b, workflow::Built::Steps(_)))
            .count();
        let format_result = if file.ends_with(".toml") { toml } else { json };
        if file.starts_with("ok-") && !matches!(format_result, workflow::Built::Steps(_)) {
            return Err(format!("expected to build, got {format_result:?}"));
        }
        if file.starts_with("bad-")
            && [toml, json]
                .iter()
                .any(|b| matches!(b, workflow::Built::Steps(_)))
        {
            return Err(format!("expected rejection, got {toml:?} / {json:?}"));
        }
        Ok(())
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(built >= 2, "only {built} seeds built a workflow");
}

#[test]
fn topic_inputs_replay_without_panics() {
    let mut harness = topic::Harness::new();
    let mut total = topic::Stats::default();
    let problems = replay("topic", |_, data| {
        let s = harness.one(data);
        total.subscribed += s.subscribed;
        total.published += s.published;
        total.delivered += s.delivered;
        total.rejected += s.rejected;
        Ok(())
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        total.subscribed >= 5 && total.delivered >= 5 && total.rejected >= 5,
        "the seeds exercise too little: {total:?}"
    );
}
