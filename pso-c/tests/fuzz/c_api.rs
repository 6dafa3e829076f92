//! The C API fuzz harness, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/c_api.rs`) and the regression replay
//! (`pso-c/tests/fuzz_c_api.rs`), both of which include this file with
//! `#[path]`. It calls the exported `extern "C"` functions of libpso through
//! the `pso` rlib, exactly as a C program would.
//!
//! The input is a program: each operation is one byte choosing a call, then
//! bytes for its arguments. A string argument is NULL, a known name, or raw
//! input bytes (often not UTF-8) made NUL-terminated. Handle arguments come
//! from every handle issued so far (including closed, freed and released
//! ones: stale) or are made up. Out-parameters are NULL or a slot.
//!
//! Checked on every call: it returns (no crash, no abort); the status is not
//! `PSO_ERR_INTERNAL` (a panic caught at the boundary is a bug); a string
//! out-parameter is always written (it starts as a sentinel), and is either
//! NULL or a UTF-8 string, freed with `pso_string_free`; a handle
//! out-parameter is the zero handle after a failure; NULL for a required
//! pointer gives `PSO_ERR_NULL_POINTER` (never success); the last error
//! message is a UTF-8 C string. At the end of an input every live handle is
//! released and every orchestrator closed, except one base orchestrator that
//! is kept for a few thousand inputs (an input may also close it); released
//! and closed handles stay around, stale, for the next inputs.

#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::ffi::{CStr, c_char};
use std::ptr;

use pso::*;

/// Most calls per input.
const MAX_OPS: usize = 32;
/// Most orchestrators open at once (the base one included).
const MAX_ORCHS: usize = 3;
/// Inputs after which the base orchestrator is replaced (its state store and
/// registry grow with the inputs).
const BASE_INPUTS: u64 = 2000;
/// Stale handles kept from earlier inputs.
const MAX_STALE: usize = 16;

/// Names that exist in a typical run, so calls get past lookup.
const NAMES: [&[u8]; 8] = [
    b"A",
    b"B",
    b"cpu",
    b"g",
    b"a.b",
    b"a.*",
    b"{\"v\": 1}",
    b"core",
];

/// The sentinel a string out-parameter holds before a call.
const SENTINEL: *mut c_char = ptr::dangling_mut::<c_char>();

/// Reads the input.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        match self.byte() % 4 {
            0 => 0,
            1 => u64::from(self.byte()),
            2 => u64::MAX,
            _ => (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte())),
        }
    }

    /// A string argument: `None` for NULL, else NUL-terminated bytes.
    fn string(&mut self) -> Option<Vec<u8>> {
        let sel = self.byte();
        let mut bytes = match sel % 8 {
            0 => return None,
            1..=4 => NAMES[usize::from(sel / 8) % NAMES.len()].to_vec(),
            _ => {
                let len = usize::from(self.byte() % 48).min(self.data.len());
                let (s, rest) = self.data.split_at(len);
                self.data = rest;
                s.to_vec()
            }
        };
        bytes.retain(|&b| b != 0);
        bytes.push(0);
        Some(bytes)
    }

    /// Whether an out-parameter is NULL (1 in 8).
    fn null_out(&mut self) -> bool {
        self.byte().is_multiple_of(8)
    }
}

fn ptr_of(s: &Option<Vec<u8>>) -> *const c_char {
    s.as_ref().map_or(ptr::null(), |b| b.as_ptr().cast())
}

/// Issued handles of one kind: live ones (to release at the end) and stale
/// ones (closed or released; kept across inputs).
#[derive(Debug, Default)]
struct Handles {
    live: Vec<u64>,
    stale: Vec<u64>,
}

impl Handles {
    /// A live, stale or made-up handle id.
    fn pick(&self, input: &mut Input<'_>) -> u64 {
        let sel = usize::from(input.byte());
        match sel % 4 {
            0 | 1 if !self.live.is_empty() => self.live[sel / 4 % self.live.len()],
            2 if !self.stale.is_empty() => self.stale[sel / 4 % self.stale.len()],
            _ => input.u64(),
        }
    }

    /// Marks `id` stale (if it was live); returns whether it was.
    fn retire(&mut self, id: u64) -> bool {
        let Some(i) = self.live.iter().position(|&h| h == id) else {
            return false;
        };
        self.live.swap_remove(i);
        if self.stale.len() >= MAX_STALE {
            self.stale.remove(0);
        }
        self.stale.push(id);
        true
    }
}

/// Handles kept between inputs.
#[derive(Debug, Default)]
pub(crate) struct Harness {
    /// An orchestrator kept open across inputs (starting one per input would
    /// cost more than the calls), in `orchs.live` while open.
    base: Option<u64>,
    /// Inputs run with the current base orchestrator.
    base_inputs: u64,
    orchs: Handles,
    subs: Handles,
    leases: Handles,
    workflows: Handles,
}

/// Panics unless `s` is a status a caller may see.
fn checked(call: &str, s: pso_status) -> pso_status {
    assert_ne!(
        s,
        pso_status::PSO_ERR_INTERNAL,
        "{call}: a panic was caught at the boundary: {}",
        last_error()
    );
    let _ = last_error();
    s
}

fn last_error() -> String {
    let p = pso_last_error_message();
    assert!(!p.is_null(), "pso_last_error_message returned NULL");
    // SAFETY: documented to be a NUL-terminated string valid until the next call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .expect("the last error message is UTF-8")
        .to_owned()
}

/// Checks and frees a string out-parameter after `status`.
fn take_string(call: &str, out: *mut c_char) {
    assert_ne!(
        out, SENTINEL,
        "{call} did not write its string out-parameter"
    );
    if !out.is_null() {
        // SAFETY: PSO returned it: a NUL-terminated string owned by the caller.
        let s = unsafe { CStr::from_ptr(out) };
        assert!(
            s.to_str().is_ok(),
            "{call} returned a string that is not UTF-8"
        );
        // SAFETY: freed once, with the function that goes with it.
        unsafe { pso_string_free(out) };
    }
}

/// A `char **` out-parameter: NULL or a slot holding the sentinel.
struct StrOut {
    slot: *mut c_char,
    null: bool,
}

impl StrOut {
    fn new(input: &mut Input<'_>) -> Self {
        StrOut {
            slot: SENTINEL,
            null: input.null_out(),
        }
    }
    fn ptr(&mut self) -> *mut *mut c_char {
        if self.null {
            ptr::null_mut()
        } else {
            &mut self.slot
        }
    }
    /// `required`: the header lists the out-parameter under
    /// `PSO_ERR_NULL_POINTER`, so NULL can never succeed.
    fn finish(self, call: &str, status: pso_status, required: bool) {
        checked(call, status);
        if self.null {
            if required {
                assert_ne!(
                    status,
                    pso_status::PSO_OK,
                    "{call}: NULL out-parameter accepted"
                );
            }
        } else {
            take_string(call, self.slot);
        }
    }
}

/// A required pointer that was NULL must give `PSO_ERR_NULL_POINTER` unless
/// an earlier argument failed first; it can never give success.
fn null_checked(call: &str, status: pso_status, any_null: bool) -> pso_status {
    let status = checked(call, status);
    if any_null {
        assert_ne!(
            status,
            pso_status::PSO_OK,
            "{call}: a NULL argument was accepted"
        );
    }
    status
}

impl Harness {
    pub(crate) fn new() -> Self {
        Harness::default()
    }

    /// Runs one input; returns how many calls it made.
    pub(crate) fn one(&mut self, data: &[u8]) -> usize {
        self.base_inputs += 1;
        if self.base.is_some() && self.base_inputs > BASE_INPUTS {
            let id = self.base.take().unwrap();
            let s = pso_orchestrator_close(pso_orchestrator { id });
            assert_eq!(checked("pso_orchestrator_close", s), pso_status::PSO_OK);
            self.orchs.retire(id);
        }
        if self.base.is_none() {
            let opts = pso_options {
                workers: 1,
                ..Default::default()
            };
            let mut out = pso_orchestrator::default();
            // SAFETY: both pointers are to live locals.
            let s = unsafe { pso_orchestrator_new(&opts, &mut out) };
            assert_eq!(checked("pso_orchestrator_new", s), pso_status::PSO_OK);
            self.base = Some(out.id);
            self.base_inputs = 0;
            self.orchs.live.push(out.id);
        }
        let mut input = Input { data };
        let mut calls = 0;
        while !input.data.is_empty() && calls < MAX_OPS {
            calls += 1;
            self.step(&mut input);
        }
        self.finish();
        calls
    }

    /// One call. Every pointer passed is NULL, a live local, or a
    /// NUL-terminated buffer that outlives the call.
    fn step(&mut self, input: &mut Input<'_>) {
        let mut op = input.byte() % 24;
        // Starting, closing, activating and deactivating cost milliseconds
        // (threads start, stop or hand over); a further byte must agree (1 in
        // 4), so that most executions stay fast. The rest become op 23.
        if matches!(op, 0 | 1 | 4 | 5) && !input.byte().is_multiple_of(4) {
            op = 23;
        }
        let o = pso_orchestrator {
            id: self.orchs.pick(input),
        };
        match op {
            0 => {
                if self.orchs.live.len() >= MAX_ORCHS {
                    return;
                }
                let opts = pso_options {
                    workers: 1,
                    ..Default::default()
                };
                let opts_ptr = if input.null_out() { ptr::null() } else { &opts };
                let mut out = pso_orchestrator { id: 7 };
                let null_out = input.null_out();
                let out_ptr = if null_out { ptr::null_mut() } else { &mut out };
                let s = unsafe { pso_orchestrator_new(opts_ptr, out_ptr) };
                null_checked("pso_orchestrator_new", s, null_out);
                if s == pso_status::PSO_OK {
                    self.orchs.live.push(out.id);
                } else if !null_out {
                    assert_eq!(out.id, 0, "a failed pso_orchestrator_new left a handle");
                }
            }
            1 => {
                let s = checked("pso_orchestrator_close", pso_orchestrator_close(o));
                let was_live = self.orchs.retire(o.id);
                if self.base == Some(o.id) {
                    self.base = None;
                }
                assert_eq!(s == pso_status::PSO_OK, was_live, "close of {o:?}: {s:?}");
            }
            2 => {
                let (a, b, c) = (input.string(), input.string(), input.string());
                let s = unsafe { pso_register_system(o, ptr_of(&a), ptr_of(&b), ptr_of(&c)) };
                null_checked("pso_register_system", s, a.is_none());
            }
            3 => {
                let (a, b, c) = (input.string(), input.string(), input.string());
                let s = unsafe { pso_connect(o, ptr_of(&a), ptr_of(&b), ptr_of(&c)) };
                null_checked("pso_connect", s, a.is_none() || b.is_none() || c.is_none());
            }
            4 => {
                let name = input.string();
                let mut out = StrOut::new(input);
                let s = unsafe { pso_activate_system(o, ptr_of(&name), out.ptr()) };
                out.finish(
                    "pso_activate_system",
                    null_checked("pso_activate_system", s, name.is_none()),
                    false,
                );
            }
            5 => {
                let mut out = StrOut::new(input);
                let s = if input.byte().is_multiple_of(2) {
                    unsafe { pso_deactivate_all(o, out.ptr()) }
                } else {
                    unsafe { pso_activate_all(o, out.ptr()) }
                };
                out.finish("pso_activate_all/pso_deactivate_all", s, false);
            }
            6 => {
                let (topic, json, sender) = (input.string(), input.string(), input.string());
                let mut delivered = 0usize;
                let d = if input.null_out() {
                    ptr::null_mut()
                } else {
                    &mut delivered
                };
                let s =
                    unsafe { pso_publish(o, ptr_of(&topic), ptr_of(&json), ptr_of(&sender), d) };
                null_checked("pso_publish", s, topic.is_none() || json.is_none());
            }
            7 => {
                let pattern = input.string();
                let mut out = pso_subscription { id: 7 };
                let null_out = input.null_out();
                let out_ptr = if null_out { ptr::null_mut() } else { &mut out };
                let s = unsafe { pso_subscribe_pull(o, ptr_of(&pattern), ptr::null(), out_ptr) };
                null_checked("pso_subscribe_pull", s, pattern.is_none() || null_out);
                if s == pso_status::PSO_OK {
                    self.subs.live.push(out.id);
                } else if !null_out {
                    assert_eq!(out.id, 0, "a failed pso_subscribe_pull left a handle");
                }
            }
            8 => {
                let sub = pso_subscription {
                    id: self.subs.pick(input),
                };
                let mut out = StrOut::new(input);
                let s = unsafe { pso_subscription_recv(sub, 0, out.ptr()) };
                out.finish("pso_subscription_recv", s, true);
            }
            9 => {
                let sub = pso_subscription {
                    id: self.subs.pick(input),
                };
                let s = checked("pso_unsubscribe", pso_unsubscribe(sub));
                let was_live = self.subs.retire(sub.id);
                assert!(
                    was_live || s != pso_status::PSO_OK,
                    "stale {sub:?} was unsubscribed"
                );
            }
            10 => {
                let (key, json, writer) = (input.string(), input.string(), input.string());
                let mut rev = 0u64;
                let r = if input.null_out() {
                    ptr::null_mut()
                } else {
                    &mut rev
                };
                let s =
                    unsafe { pso_state_put(o, ptr_of(&key), ptr_of(&json), ptr_of(&writer), r) };
                null_checked("pso_state_put", s, key.is_none() || json.is_none());
            }
            11 => {
                let key = input.string();
                let mut out = StrOut::new(input);
                let s = unsafe { pso_state_get(o, ptr_of(&key), out.ptr()) };
                out.finish(
                    "pso_state_get",
                    null_checked("pso_state_get", s, key.is_none()),
                    true,
                );
            }
            12 => {
                let (key, expected, json) = (input.string(), input.u64(), input.string());
                let mut rev = 0u64;
                let r = if input.null_out() {
                    ptr::null_mut()
                } else {
                    &mut rev
                };
                let mut current = StrOut::new(input);
                let s = unsafe {
                    pso_state_cas(o, ptr_of(&key), expected, ptr_of(&json), r, current.ptr())
                };
                let s = null_checked("pso_state_cas", s, key.is_none() || json.is_none());
                // `current_json` is nullable.
                current.finish("pso_state_cas", s, false);
            }
            13 => self.allocate(o, input),
            14 => {
                let l = pso_lease {
                    id: self.leases.pick(input),
                };
                let mut held = false;
                let h = if input.null_out() {
                    ptr::null_mut()
                } else {
                    &mut held
                };
                let s = checked("pso_lease_release", unsafe { pso_lease_release(l, h) });
                let was_live = self.leases.retire(l.id);
                assert!(
                    was_live || s != pso_status::PSO_OK,
                    "stale {l:?} was released"
                );
            }
            15 => {
                let dim = input.string();
                let cap = input.u64();
                let s = unsafe { pso_set_capacity(o, ptr_of(&dim), cap) };
                null_checked("pso_set_capacity", s, dim.is_none());
            }
            16 => {
                let text = input.string();
                let format = u32::from(input.byte() % 4);
                let mut added = 0usize;
                let a = if input.null_out() {
                    ptr::null_mut()
                } else {
                    &mut added
                };
                let s = unsafe { pso_load_topology_str(o, ptr_of(&text), format, a) };
                null_checked("pso_load_topology_str", s, text.is_none());
            }
            17 => {
                let mut out = StrOut::new(input);
                let s = match input.byte() % 4 {
                    0 => unsafe { pso_system_status(o, out.ptr()) },
                    1 => unsafe { pso_export(o, u32::from(input.byte() % 6), out.ptr()) },
                    2 => unsafe { pso_resource_status(o, out.ptr()) },
                    _ => unsafe { pso_hub_subscriptions(o, out.ptr()) },
                };
                out.finish(
                    "pso_system_status/export/resource_status/hub_subscriptions",
                    s,
                    true,
                );
            }
            18 => {
                let text = input.string();
                let format = u32::from(input.byte() % 4);
                let mut out = pso_workflow { id: 7 };
                let null_out = input.null_out();
                let out_ptr = if null_out { ptr::null_mut() } else { &mut out };
                let s = unsafe { pso_workflow_load_str(o, ptr_of(&text), format, out_ptr) };
                null_checked("pso_workflow_load_str", s, text.is_none() || null_out);
                if s == pso_status::PSO_OK {
                    self.workflows.live.push(out.id);
                } else if !null_out {
                    assert_eq!(out.id, 0, "a failed pso_workflow_load_str left a handle");
                }
            }
            19 => {
                let wf = pso_workflow {
                    id: self.workflows.pick(input),
                };
                let s = checked("pso_workflow_free", pso_workflow_free(wf));
                let was_live = self.workflows.retire(wf.id);
                assert!(
                    was_live || s != pso_status::PSO_OK,
                    "stale {wf:?} was freed"
                );
            }
            20 => {
                let key = input.string();
                if input.byte().is_multiple_of(2) {
                    let mut out = StrOut::new(input);
                    let s = unsafe { pso_state_list(o, ptr_of(&key), out.ptr()) };
                    out.finish("pso_state_list", s, true);
                } else {
                    let mut rev = 0u64;
                    let r = if input.null_out() {
                        ptr::null_mut()
                    } else {
                        &mut rev
                    };
                    let s = unsafe { pso_state_delete(o, ptr_of(&key), r) };
                    null_checked("pso_state_delete", s, key.is_none());
                }
            }
            21 => {
                let l = pso_lease {
                    id: self.leases.pick(input),
                };
                let mut out = StrOut::new(input);
                let s = unsafe { pso_lease_info(l, out.ptr()) };
                out.finish("pso_lease_info", s, true);
                let mut held = false;
                checked("pso_lease_held", unsafe { pso_lease_held(l, &mut held) });
                checked("pso_lease_touch", pso_lease_touch(l));
            }
            22 => {
                let name = input.string();
                let mut out = StrOut::new(input);
                let s = match input.byte() % 3 {
                    0 => unsafe { pso_why_inactive(o, ptr_of(&name), out.ptr()) },
                    1 => unsafe { pso_plan(o, ptr_of(&name), out.ptr()) },
                    _ => unsafe { pso_status_of(o, ptr_of(&name), out.ptr()) },
                };
                out.finish(
                    "pso_why_inactive/plan/status_of",
                    null_checked("pso_why_inactive/plan/status_of", s, name.is_none()),
                    false,
                );
            }
            _ => {
                let code = u32::from(input.byte());
                for p in [
                    pso_status_name(code),
                    pso_version(),
                    pso_last_error_message(),
                ] {
                    assert!(!p.is_null());
                    // SAFETY: static or thread-local NUL-terminated strings.
                    let s = unsafe { CStr::from_ptr(p) };
                    assert!(s.to_str().is_ok());
                }
            }
        }
    }

    /// `pso_allocate_resources`, never waiting: the request either says
    /// `"wait_ms": 0` or is raw input while this harness holds no lease
    /// (then it fits at once or can never fit).
    fn allocate(&mut self, o: pso_orchestrator, input: &mut Input<'_>) {
        let system = input.string();
        let raw = input.string();
        let request = match &raw {
            Some(bytes) if self.leases.live.is_empty() && input.byte().is_multiple_of(2) => {
                bytes.clone()
            }
            _ => {
                let dim = input.string().unwrap_or_else(|| b"cpu\0".to_vec());
                let dim = String::from_utf8_lossy(&dim[..dim.len() - 1]).into_owned();
                format!(
                    "{{\"amounts\": {{{}: {}}}, \"wait_ms\": 0, \"preemptible\": {}}}\0",
                    serde_json::Value::from(dim),
                    input.byte() % 8,
                    input.byte().is_multiple_of(2)
                )
                .into_bytes()
            }
        };
        let mut out = pso_lease { id: 7 };
        let null_out = input.null_out();
        let out_ptr = if null_out { ptr::null_mut() } else { &mut out };
        let s =
            unsafe { pso_allocate_resources(o, ptr_of(&system), request.as_ptr().cast(), out_ptr) };
        null_checked("pso_allocate_resources", s, system.is_none() || null_out);
        if s == pso_status::PSO_OK {
            self.leases.live.push(out.id);
        } else if !null_out {
            assert_eq!(out.id, 0, "a failed pso_allocate_resources left a handle");
        }
    }

    /// Releases every live handle and closes every orchestrator but the base
    /// one.
    fn finish(&mut self) {
        for id in std::mem::take(&mut self.leases.live) {
            self.leases.live.push(id);
            // SAFETY: a handle by value and a NULL optional out-parameter.
            let s = unsafe { pso_lease_release(pso_lease { id }, ptr::null_mut()) };
            // A lease may have ended already (TTL, preemption, closed
            // orchestrator): then its handle was still live until now.
            checked("pso_lease_release", s);
            self.leases.retire(id);
        }
        for id in std::mem::take(&mut self.subs.live) {
            self.subs.live.push(id);
            checked("pso_unsubscribe", pso_unsubscribe(pso_subscription { id }));
            self.subs.retire(id);
        }
        for id in std::mem::take(&mut self.workflows.live) {
            self.workflows.live.push(id);
            checked("pso_workflow_free", pso_workflow_free(pso_workflow { id }));
            self.workflows.retire(id);
        }
        for id in std::mem::take(&mut self.orchs.live) {
            self.orchs.live.push(id);
            if self.base == Some(id) {
                continue;
            }
            let s = pso_orchestrator_close(pso_orchestrator { id });
            assert_eq!(checked("pso_orchestrator_close", s), pso_status::PSO_OK);
            self.orchs.retire(id);
        }
    }
}
