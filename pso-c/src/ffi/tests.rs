//! Rust-side tests of the exports: the panic boundary (which C cannot
//! trigger) and a few paths through the real functions.

use std::ffi::{CStr, c_char};

use super::*;

fn last_error() -> String {
    // SAFETY: pso_last_error_message never returns NULL and the string lives
    // until the next status-returning call on this thread.
    unsafe { CStr::from_ptr(pso_last_error_message()) }
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_panic_becomes_internal_with_a_message_and_never_unwinds() {
    let status = boundary("pso_test", |_call| panic!("kaboom {}", 42));
    assert_eq!(status, pso_status::PSO_ERR_INTERNAL);
    let msg = last_error();
    assert!(msg.starts_with("pso_test: internal error"), "{msg}");
    assert!(msg.contains("kaboom 42"), "{msg}");

    let v = boundary_or("pso_test_value", 7, || -> i32 { panic!("static") });
    assert_eq!(v, 7);
    assert!(last_error().contains("static"));

    // A payload whose Drop panics too is contained.
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("drop of the payload panicked");
        }
    }
    let status = boundary("pso_test", |_call| std::panic::panic_any(Bomb));
    assert_eq!(status, pso_status::PSO_ERR_INTERNAL);
    assert!(last_error().contains("non-string payload"));
}

#[test]
fn success_clears_the_last_error_and_failure_names_the_argument() {
    let mut h = pso_orchestrator::default();
    // SAFETY: valid out-pointer; NULL options are allowed.
    let st = unsafe { pso_orchestrator_new(ptr::null(), &mut h) };
    assert_eq!(st, pso_status::PSO_OK);
    // SAFETY: NULL name is the case under test; the other pointers are valid.
    let st = unsafe { pso_register_system(h, ptr::null(), ptr::null(), ptr::null()) };
    assert_eq!(st, pso_status::PSO_ERR_NULL_POINTER);
    assert_eq!(last_error(), "pso_register_system: argument 'name' is NULL");

    let bad: &[u8] = b"a\xffb\0";
    // SAFETY: a NUL-terminated byte string.
    let st =
        unsafe { pso_register_system(h, bad.as_ptr().cast::<c_char>(), ptr::null(), ptr::null()) };
    assert_eq!(st, pso_status::PSO_ERR_INVALID_UTF8);
    assert!(last_error().contains("'name' is not valid UTF-8 (invalid byte 0xff at offset 1)"));

    // SAFETY: valid C strings.
    let st = unsafe { pso_register_system(h, c"db".as_ptr(), c"core".as_ptr(), c"high".as_ptr()) };
    assert_eq!(st, pso_status::PSO_OK);
    assert_eq!(last_error(), "");

    let mut json: *mut c_char = ptr::null_mut();
    // SAFETY: valid string and out-pointer.
    let st = unsafe { pso_status_of(h, c"db".as_ptr(), &mut json) };
    assert_eq!(st, pso_status::PSO_OK);
    // SAFETY: PSO returned a valid C string.
    let text = unsafe { CStr::from_ptr(json) }.to_str().unwrap().to_owned();
    // SAFETY: returned by PSO, freed once.
    unsafe { pso_string_free(json) };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["name"], "db");
    assert_eq!(v["tier"], "core");
    assert_eq!(v["priority"], "high");
    assert_eq!(v["state"], "Registered");

    assert_eq!(pso_orchestrator_close(h), pso_status::PSO_OK);
    assert_eq!(pso_orchestrator_close(h), pso_status::PSO_ERR_STALE_HANDLE);
    assert!(last_error().contains("is stale"), "{}", last_error());
}

#[test]
fn format_values_are_validated() {
    let call = Call::new("pso_test");
    assert_eq!(topology_format(call, 1).unwrap(), TopologyFormat::Toml);
    assert_eq!(topology_format(call, 2).unwrap(), TopologyFormat::Json);
    for bad in [0, 3, u32::MAX] {
        let e = topology_format(call, bad).unwrap_err();
        assert_eq!(e.status, pso_status::PSO_ERR_INVALID_ARGUMENT);
        assert!(
            e.message
                .contains(&format!("unknown topology format {bad}"))
        );
    }
    assert_eq!(export_format(call, 4).unwrap(), ExportFormat::Mermaid);
    assert!(export_format(call, 0).is_err() && export_format(call, 5).is_err());
}

#[test]
fn status_names_and_version() {
    let name = |s: u32| {
        // SAFETY: pso_status_name returns static C strings.
        let c = unsafe { CStr::from_ptr(pso_status_name(s)) };
        c.to_str().unwrap()
    };
    assert_eq!(name(0), "PSO_OK");
    assert_eq!(name(16), "PSO_ERR_HANDLER_FAILED");
    assert_eq!(name(5), "unknown status");
    // SAFETY: static C string.
    let v = unsafe { CStr::from_ptr(pso_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn value_returning_exports_clear_and_set_the_last_error() {
    error::set_last_error("left over");
    assert_eq!(boundary_value("pso_test", 0u32, |_call| Ok(5)), 5);
    assert_eq!(last_error(), "", "success clears the last error");

    let v = boundary_value("pso_test", 0u32, |call| {
        Err(call.fail(pso_status::PSO_ERR_STALE_HANDLE, "gone"))
    });
    assert_eq!(v, 0);
    assert_eq!(last_error(), "pso_test: gone");

    let p = boundary_value("pso_test", ptr::null::<c_char>(), |_call| {
        panic!("in a getter")
    });
    assert!(p.is_null());
    let msg = last_error();
    assert!(msg.starts_with("pso_test: internal error"), "{msg}");
    assert!(msg.contains("in a getter"), "{msg}");
}

#[test]
fn json_arguments_report_line_and_column() {
    let call = Call::new("pso_test");
    assert_eq!(
        call.json("json", "{\"b\": [1, 2.5, null], \"a\": \"x\"}")
            .unwrap()
            .to_json(),
        r#"{"a":"x","b":[1,2.5,null]}"#
    );
    let e = call.json("input_json", "[1,\n  x]").unwrap_err();
    assert_eq!(e.status, pso_status::PSO_ERR_PARSE);
    assert_eq!(
        e.message,
        "pso_test: argument 'input_json' is not valid JSON: expected value at line 2 column 3"
    );
    assert!(call.json("json", "").is_err());
    assert!(call.json("json", "1 2").is_err(), "trailing characters");
}
