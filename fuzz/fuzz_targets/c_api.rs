//! Fuzzes sequences of C API calls (libpso's `extern "C"` functions through
//! the `pso` rlib), with NULL pointers, invalid UTF-8 and stale or made-up
//! handles. The logic lives in `pso-c/tests/fuzz/c_api.rs`, shared with the
//! regression replay `pso-c/tests/fuzz_c_api.rs`.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

#[path = "../../pso-c/tests/fuzz/c_api.rs"]
mod c_api;

static HARNESS: Mutex<Option<c_api::Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let harness = guard.get_or_insert_with(c_api::Harness::new);
    let _ = harness.one(data);
});
