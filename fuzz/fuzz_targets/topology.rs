//! Fuzzes topology loading: any bytes, as TOML and as JSON, into an
//! orchestrator; on success, every export and a JSON/TOML round trip.
//! The logic lives in `pso-core/tests/fuzz/topology.rs`, shared with the
//! regression replay `pso-core/tests/fuzz_regressions.rs`.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

#[path = "../../pso-core/tests/fuzz/topology.rs"]
mod topology;

static HARNESS: Mutex<Option<topology::Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let harness = guard.get_or_insert_with(topology::Harness::new);
    let _ = harness.one(data);
});
