//! Fuzzes topic names and subscription patterns against a reference matcher.
//! The logic lives in `pso-core/tests/fuzz/topic.rs`, shared with the
//! regression replay `pso-core/tests/fuzz_regressions.rs`.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

#[path = "../../pso-core/tests/fuzz/topic.rs"]
mod topic;

static HARNESS: Mutex<Option<topic::Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let harness = guard.get_or_insert_with(topic::Harness::new);
    let _ = harness.one(data);
});
