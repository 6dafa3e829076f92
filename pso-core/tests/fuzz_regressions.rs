//! Replays every input under `tests/fuzz/testdata/topology/` through the
//! topology fuzz harness (the same code the cargo-fuzz target runs), so inputs
//! the fuzzer once crashed on stay fixed under plain `cargo test`.
//!
//! File names say what is expected beyond "no panic":
//! * `ok-*.toml` / `ok-*.json`: loads in that format and round-trips exactly;
//! * `bad-*`: rejected with an error in both formats (or not UTF-8);
//! * anything else (the fuzzer's `crash-*`, `any-*`): only must not panic.

#[path = "fuzz/topology.rs"]
mod topology;

use std::path::PathBuf;

use topology::{Harness, Loaded};

fn inputs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/testdata/topology");
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
    let files = inputs();
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
