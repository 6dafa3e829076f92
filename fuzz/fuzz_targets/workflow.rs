//! Fuzzes workflow definitions from JSON and TOML: parse, load, round trip, run.
//! The logic lives in `pso-core/tests/fuzz/workflow.rs`, shared with the
//! regression replay `pso-core/tests/fuzz_regressions.rs`.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

#[path = "../../pso-core/tests/fuzz/workflow.rs"]
mod workflow;

static HARNESS: Mutex<Option<workflow::Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let harness = guard.get_or_insert_with(workflow::Harness::new);
    let _ = harness.one(data);
});
