//! Replays every input under `pso-core/tests/fuzz/testdata/c_api/` (where
//! `scripts/test-fuzz.sh` takes the seeds of every target) through the C API
//! fuzz harness, the same code the cargo-fuzz target `c_api` runs, so inputs
//! the fuzzer once crashed on stay fixed under plain `cargo test`.
//!
//! Every input only has to pass the harness's own checks (no panic, no
//! `PSO_ERR_INTERNAL`, out-parameters written, NULLs refused, stale handles
//! refused).

#[path = "fuzz/c_api.rs"]
mod c_api;

use std::path::PathBuf;

#[test]
fn c_api_inputs_replay_without_panics() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pso-core/tests/fuzz/testdata/c_api");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "seed inputs are missing: {files:?}");
    let mut harness = c_api::Harness::new();
    let mut calls = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        // A failed check panics with the call and the status; the file name
        // is printed first so the failure names its input.
        eprintln!("replaying {}", path.display());
        calls += harness.one(&data);
    }
    assert!(calls >= 40, "the seeds make only {calls} calls");
}
