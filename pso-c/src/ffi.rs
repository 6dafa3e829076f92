//! The exported C functions.
//!
//! Every export has the same shape:
//!
//! 1. [`ffi_boundary!`] around the whole body: it clears the thread's last
//!    error, catches any panic (turned into `PSO_ERR_INTERNAL` with a
//!    message; no unwind ever reaches C), stores the message of a failure,
//!    and runs the `free_user_data` callbacks that became due during the body
//!    only after it (see [`handlers::deferring_frees`]).
//! 2. One `unsafe` block that checks every pointer argument through the
//!    macros of [`args`]: out-parameters first (so they are initialized
//!    whatever fails next), then inputs, in argument order.
//! 3. The handle lookup ([`args::Call::orchestrator`]), which clones the
//!    orchestrator so a concurrent `pso_orchestrator_close` cannot pull it
//!    away mid-call; the core then answers `Closed` if it was closed.
//! 4. One pso-core call; its error becomes the kind's status and `Display`.
//!
//! This module and [`crate::handle`] are the only places with `unsafe` code
//! (`handle` has none today).

pub(crate) mod args;
pub(crate) mod handlers;

use std::any::Any;
use std::ffi::{CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::time::Duration;

use pso_core::{
    ActivationReport, EdgeKind, ExportFormat, HubConfig, LifecycleError, Orchestrator, Priority,
    SystemSpec, TopologyFormat,
};

use crate::error::{self, Failure, pso_status};
use crate::handle::{ORCHESTRATORS, pso_orchestrator};
use args::{Call, Out, c_str, opt_c_str, opt_out, opt_ref, out};
use handlers::{c_handlers, in_c_handler, pso_free_fn, pso_lifecycle_fn};

/// Runs an export's body behind the panic boundary.
///
/// `ffi_boundary!(name, |call| { .. })` is for status-returning exports: the
/// body returns `Result<(), Failure>`. `ffi_boundary!(name, or = d, |call| { .. })`
/// is for exports that return a value but can fail (the step-context
/// getters): the body returns `Result<R, Failure>`; a failure or a panic
/// returns `d`, and the last error is cleared and set as for status-returning
/// exports. `ffi_boundary!(name, default = d, { .. })` is for the few exports
/// that cannot fail and leave the last error alone; a panic returns `d`.
macro_rules! ffi_boundary {
    ($func:ident, |$call:ident| $body:block) => {
        $crate::ffi::boundary(
            stringify!($func),
            |$call: $crate::ffi::args::Call| -> Result<(), $crate::error::Failure> { $body },
        )
    };
    ($func:ident, or = $default:expr, |$call:ident| $body:block) => {
        $crate::ffi::boundary_value(
            stringify!($func),
            $default,
            |$call: $crate::ffi::args::Call| -> Result<_, $crate::error::Failure> { $body },
        )
    };
    ($func:ident, default = $default:expr, $body:block) => {
        $crate::ffi::boundary_or(stringify!($func), $default, || $body)
    };
}

/// See [`ffi_boundary!`].
pub(crate) fn boundary(
    func: &'static str,
    body: impl FnOnce(Call) -> Result<(), Failure>,
) -> pso_status {
    error::clear_last_error();
    let result =
        handlers::deferring_frees(|| catch_unwind(AssertUnwindSafe(|| body(Call::new(func)))));
    match result {
        Ok(Ok(())) => pso_status::PSO_OK,
        Ok(Err(failure)) => {
            error::set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            error::set_last_error(&panic_text(func, payload));
            pso_status::PSO_ERR_INTERNAL
        }
    }
}

/// See [`ffi_boundary!`].
pub(crate) fn boundary_value<R>(
    func: &'static str,
    default: R,
    body: impl FnOnce(Call) -> Result<R, Failure>,
) -> R {
    error::clear_last_error();
    let result =
        handlers::deferring_frees(|| catch_unwind(AssertUnwindSafe(|| body(Call::new(func)))));
    match result {
        Ok(Ok(v)) => v,
        Ok(Err(failure)) => {
            error::set_last_error(&failure.message);
            default
        }
        Err(payload) => {
            error::set_last_error(&panic_text(func, payload));
            default
        }
    }
}

/// See [`ffi_boundary!`].
pub(crate) fn boundary_or<R>(func: &'static str, default: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            error::set_last_error(&panic_text(func, payload));
            default
        }
    }
}

/// The last-error text for a caught panic. The payload is dropped inside a
/// second `catch_unwind` (its `Drop` may panic too); if that panics, the
/// second payload is leaked rather than unwound into C.
fn panic_text(func: &str, payload: Box<dyn Any + Send>) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
    format!("{func}: internal error (a bug in PSO; please report it): {msg}")
}

/// Options for `pso_orchestrator_new`. Zero means "the default" for every
/// field, so `pso_options opts = {0};` (or passing NULL) gives the defaults.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct pso_options {
    /// Worker threads that run lifecycle handlers. 0: one per available core.
    pub workers: u32,
    /// Default timeout of one lifecycle transition, in milliseconds (a
    /// system's own `timeout_ms` overrides it). 0: 30 000 (30 s).
    pub transition_timeout_ms: u64,
    /// How long a resource request waits before its priority class improves
    /// by one (aging, so low classes cannot starve), in milliseconds.
    /// 0: 1 000 (1 s).
    pub resource_aging_step_ms: u64,
    /// How long the holder of a preempted lease keeps it after the notice
    /// (`pso_lease_on_preempt`), in milliseconds. 0: 1 000 (1 s); there is no
    /// way to ask for no grace at all, 1 is the shortest.
    pub preemption_grace_ms: u64,
    /// How long a lease may go untouched (`pso_lease_touch`) before
    /// `pso_optimize_resources` proposes reclaiming it, in milliseconds.
    /// 0: 60 000 (60 s).
    pub idle_lease_after_ms: u64,
    /// Automatic promotion from the start: check every this many
    /// milliseconds whether a pair of systems should get (or lose) a direct
    /// channel (see `pso_set_auto_promote`). 0: off.
    pub auto_promote_ms: u64,
    /// Minimalist mode from the start: deactivate systems idle this many
    /// milliseconds (see `pso_set_idle_timeout`). 0: off.
    pub idle_timeout_ms: u64,
    /// Default queue capacity of a hub subscription (messages). 0: 1024.
    pub hub_queue_capacity: usize,
    /// Default overflow policy of a hub subscription, a `pso_overflow`
    /// value. 0 (`PSO_OVERFLOW_DEFAULT`): `PSO_OVERFLOW_BLOCK`.
    pub hub_overflow: u32,
    /// With `hub_overflow` `PSO_OVERFLOW_BLOCK`: how long a publisher waits
    /// for room, in milliseconds. 0: 1000. Must be 0 with another policy.
    pub hub_block_timeout_ms: u64,
    /// Message rate (messages/s, both directions) at which a pair becomes a
    /// promotion candidate. 0: 10 000. Must be finite and positive.
    pub hub_promote_threshold: f64,
    /// Rate below which a promoted pair becomes a demotion candidate. 0:
    /// 1 000 (use a tiny value such as 1e-9 for "never"). Finite, not
    /// negative.
    pub hub_demote_threshold: f64,
    /// Time constant of the measured message rates, in milliseconds. 0:
    /// 10 000 (10 s).
    pub hub_rate_window_ms: u64,
    /// Capacity of each direction of a direct channel (messages). 0: 1024.
    pub hub_direct_capacity: usize,
    /// Flap detection: a system with this many health or state changes
    /// within `flap_window_ms` is Flapping (its repeated alerts are
    /// suppressed until a window passes quietly). 0: 5.
    pub flap_threshold: u32,
    /// The flap-detection window, in milliseconds. 0: 60 000.
    pub flap_window_ms: u64,
    /// The same alert (system and kind) is published at most once per this
    /// many milliseconds (repeats are counted in the next one). 0: 10 000;
    /// `UINT64_MAX`: no deduplication, every alert is published.
    pub alert_interval_ms: u64,
    /// true: probes, watchdogs, restart backoff, restart intensity, flap
    /// windows and alert deduplication run on a virtual clock that moves
    /// only with `pso_clock_advance` (deterministic tests); supervisor
    /// actions then run inside `pso_clock_advance`. false: real time.
    pub virtual_clock: bool,
    /// true: metrics are not recorded from the start (turn them on with
    /// `pso_set_metrics_enabled`). false (zeroed options): recorded.
    pub metrics_disabled: bool,
    /// Measure the delivery latency of one hub message in this many per
    /// topic (rounded up to a power of two; 1: every message). 0: 256.
    pub latency_sample_every: u32,
    /// Hub topics tracked one by one; further topics share the series
    /// `<other>`. 0: 1024.
    pub max_topics: usize,
    /// Resource utilization is kept as `utilization_intervals` means of this
    /// many milliseconds each. 0: 1 000.
    pub utilization_interval_ms: u64,
    /// How many utilization intervals are kept. 0: 300.
    pub utilization_intervals: usize,
}

/// The hub settings of `opts`.
fn hub_config(call: Call, opts: &pso_options) -> Result<HubConfig, Failure> {
    let mut hub = HubConfig::new();
    if opts.hub_queue_capacity != 0 {
        hub = hub.queue_capacity(opts.hub_queue_capacity);
    }
    if let Some(p) = hub::overflow_policy(
        call,
        ("opts->hub_overflow", "opts->hub_block_timeout_ms"),
        opts.hub_overflow,
        opts.hub_block_timeout_ms,
    )? {
        hub = hub.overflow(p);
    }
    let threshold = |name: &str, v: f64| -> Result<Option<f64>, Failure> {
        if !v.is_finite() || v < 0.0 {
            return Err(call.fail(
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                format_args!("'opts->{name}' must be a finite rate of at least 0, got {v}"),
            ));
        }
        Ok((v != 0.0).then_some(v))
    };
    if let Some(t) = threshold("hub_promote_threshold", opts.hub_promote_threshold)? {
        hub = hub.promote_threshold(t);
    }
    if let Some(t) = threshold("hub_demote_threshold", opts.hub_demote_threshold)? {
        hub = hub.demote_threshold(t);
    }
    if opts.hub_rate_window_ms != 0 {
        hub = hub.rate_window(Duration::from_millis(opts.hub_rate_window_ms));
    }
    if opts.hub_direct_capacity != 0 {
        hub = hub.direct_capacity(opts.hub_direct_capacity);
    }
    Ok(hub)
}

/// Text formats of a topology, for `pso_load_topology_str` (passed as `uint32_t`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pso_topology_format {
    /// TOML: `[[systems]]` tables.
    PSO_FORMAT_TOML = 1,
    /// JSON: `{"systems": [...]}`.
    PSO_FORMAT_JSON = 2,
}

/// Output formats of `pso_export` (passed as `uint32_t`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pso_export_format {
    /// The topology as JSON (loads back with `pso_load_topology_str`).
    PSO_EXPORT_JSON = 1,
    /// The topology as TOML (loads back with `pso_load_topology_str`).
    PSO_EXPORT_TOML = 2,
    /// A Graphviz DOT graph.
    PSO_EXPORT_DOT = 3,
    /// A Mermaid flowchart.
    PSO_EXPORT_MERMAID = 4,
}

fn topology_format(call: Call, format: u32) -> Result<TopologyFormat, Failure> {
    match format {
        f if f == pso_topology_format::PSO_FORMAT_TOML as u32 => Ok(TopologyFormat::Toml),
        f if f == pso_topology_format::PSO_FORMAT_JSON as u32 => Ok(TopologyFormat::Json),
        other => Err(call.fail(
            pso_status::PSO_ERR_INVALID_ARGUMENT,
            format_args!(
                "unknown topology format {other} (expected PSO_FORMAT_TOML (1) or PSO_FORMAT_JSON (2))"
            ),
        )),
    }
}

fn export_format(call: Call, format: u32) -> Result<ExportFormat, Failure> {
    use pso_export_format::*;
    [
        (PSO_EXPORT_JSON, ExportFormat::Json),
        (PSO_EXPORT_TOML, ExportFormat::Toml),
        (PSO_EXPORT_DOT, ExportFormat::Dot),
        (PSO_EXPORT_MERMAID, ExportFormat::Mermaid),
    ]
    .into_iter()
    .find(|(c, _)| *c as u32 == format)
    .map(|(_, f)| f)
    .ok_or_else(|| {
        call.fail(
            pso_status::PSO_ERR_INVALID_ARGUMENT,
            format_args!(
                "unknown export format {format} (expected PSO_EXPORT_JSON (1), PSO_EXPORT_TOML (2), \
                 PSO_EXPORT_DOT (3) or PSO_EXPORT_MERMAID (4))"
            ),
        )
    })
}

fn serialize_error(call: Call, e: serde_json::Error) -> Failure {
    call.fail(
        pso_status::PSO_ERR_INTERNAL,
        format_args!("cannot serialize the result: {e}"),
    )
}

/// Finishes a lifecycle call: the report goes to `report_json` (when given)
/// on success *and* on a failure that carries one (`PSO_ERR_HANDLER_FAILED`).
fn lifecycle(
    call: Call,
    result: Result<ActivationReport, LifecycleError>,
    report_json: Option<Out<'_, *mut c_char>>,
) -> Result<(), Failure> {
    let report = match &result {
        Ok(r) => Some(r),
        Err(e) => e.report(),
    };
    if let (Some(mut out), Some(report)) = (report_json, report) {
        out.set(call.c_string(report.to_json())?);
    }
    result.map(|_| ()).map_err(Failure::from)
}

/// Creates an orchestrator and starts its worker threads.
///
/// `opts` may be NULL (all defaults). On success `*out` is a new handle; on
/// failure it is the zero handle. Release it with `pso_orchestrator_close`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`out`), `PSO_ERR_INVALID_ARGUMENT` (an unknown
/// `hub_overflow`, a block timeout without `PSO_OVERFLOW_BLOCK`, a negative
/// or non-finite threshold, too many workers), `PSO_ERR_IO` if a thread
/// cannot start.
///
/// # Safety
/// `opts` is NULL or points to a readable `pso_options`; `out` is NULL or
/// points to writable memory for a `pso_orchestrator`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_orchestrator_new(
    opts: *const pso_options,
    out: *mut pso_orchestrator,
) -> pso_status {
    ffi_boundary!(pso_orchestrator_new, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable and `opts` is NULL
        // or readable, for the whole call.
        let (mut out, opts) = unsafe {
            (
                out!(call, out, pso_orchestrator::default())?,
                opt_ref!(call, opts),
            )
        };
        let opts = opts.copied().unwrap_or_default();
        let mut builder = Orchestrator::builder();
        if opts.workers != 0 {
            builder = builder.workers(opts.workers as usize);
        }
        if opts.transition_timeout_ms != 0 {
            builder = builder.transition_timeout(Duration::from_millis(opts.transition_timeout_ms));
        }
        if opts.resource_aging_step_ms != 0 {
            builder =
                builder.resource_aging_step(Duration::from_millis(opts.resource_aging_step_ms));
        }
        if opts.preemption_grace_ms != 0 {
            builder = builder.preemption_grace(Duration::from_millis(opts.preemption_grace_ms));
        }
        if opts.idle_lease_after_ms != 0 {
            builder = builder.idle_lease_after(Duration::from_millis(opts.idle_lease_after_ms));
        }
        if opts.auto_promote_ms != 0 {
            builder = builder.auto_promote(Duration::from_millis(opts.auto_promote_ms));
        }
        if opts.idle_timeout_ms != 0 {
            builder = builder.idle_timeout(Duration::from_millis(opts.idle_timeout_ms));
        }
        builder = builder.hub_config(hub_config(call, &opts)?);
        let (builder, clock) = supervision::configure(builder, &opts);
        let builder = metrics::configure(builder, &opts);
        let orch = builder.build()?;
        match ORCHESTRATORS.insert(orch) {
            Ok(h) => {
                if let Some(clock) = clock {
                    supervision::remember_clock(h, clock);
                }
                out.set(h);
                Ok(())
            }
            Err(orch) => {
                orch.close();
                Err(call.fail(
                    pso_status::PSO_ERR_BUSY,
                    "too many orchestrators are open (2^32)",
                ))
            }
        }
    })
}

/// Closes an orchestrator and retires its handle.
///
/// Further calls with this handle (or any copy of it) return
/// `PSO_ERR_STALE_HANDLE`. Waits for a running activation or deactivation to
/// finish, cancels its workflow runs (running operations see
/// `pso_step_cancelled` become 1 and are waited for), then stops the worker
/// threads; calls still running on other threads finish or fail with
/// `PSO_ERR_CLOSED`. Run handles stay valid: `pso_run_wait` returns the
/// cancelled result. Every `free_user_data` runs once the last such call has
/// returned (before this function returns if there are none), except that
/// an operation's waits for the workflows and runs that use it to be freed.
/// Subscriptions end (their callbacks' `user_data` is freed as above) and
/// state watches stop (theirs too, after their last event); their handles,
/// like direct-channel ends and meshes, stay valid until released.
/// Called from inside a lifecycle handler or a workflow operation (of any
/// orchestrator), it only retires the handle without waiting: the
/// orchestrator closes when the last call still using it returns (for its
/// own handler: the lifecycle call that ran the handler).
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` if the handle was already closed (double close).
#[unsafe(no_mangle)]
pub extern "C" fn pso_orchestrator_close(o: pso_orchestrator) -> pso_status {
    ffi_boundary!(pso_orchestrator_close, |call| {
        let orch = ORCHESTRATORS.remove(o).ok_or_else(|| call.stale(o))?;
        let wait = !in_c_handler();
        if wait {
            orch.close();
        }
        drop(orch);
        state::stop_watches_of(o, wait);
        supervision::forget_clock(o);
        Ok(())
    })
}

/// The number of worker threads of `o`, in `*out`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`out`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `out` is NULL or points to a writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_orchestrator_workers(
    o: pso_orchestrator,
    out: *mut u32,
) -> pso_status {
    ffi_boundary!(pso_orchestrator_workers, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable for the call.
        let mut out = unsafe { out!(call, out, 0)? };
        let orch = call.orchestrator(o)?;
        out.set(u32::try_from(orch.workers()).unwrap_or(u32::MAX));
        Ok(())
    })
}

/// Registers one system, without relations or handlers (add them with
/// `pso_connect` and `pso_set_handlers`).
///
/// `name`: 1 to 128 ASCII letters, digits, `_` or `-`. `tier` (nullable): a
/// free-form group. `priority` (nullable, default `"normal"`): `"critical"`,
/// `"high"`, `"normal"`, `"low"` or `"background"`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`name`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_INVALID_ARGUMENT` (bad name or priority),
/// `PSO_ERR_ALREADY_EXISTS`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// Each string is NULL or a NUL-terminated string, valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_register_system(
    o: pso_orchestrator,
    name: *const c_char,
    tier: *const c_char,
    priority: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_register_system, |call| {
        // SAFETY: per `# Safety`, each pointer is NULL or a valid C string for
        // the whole call.
        let (name, tier, priority) = unsafe {
            (
                c_str!(call, name)?,
                opt_c_str!(call, tier)?,
                opt_c_str!(call, priority)?,
            )
        };
        let orch = call.orchestrator(o)?;
        let mut spec = SystemSpec::new(name);
        if let Some(tier) = tier {
            spec = spec.tier(tier);
        }
        if let Some(p) = priority {
            let p: Priority = p
                .parse()
                .map_err(|m| call.fail(pso_status::PSO_ERR_INVALID_ARGUMENT, m))?;
            spec = spec.priority(p);
        }
        orch.register(spec)?;
        Ok(())
    })
}

/// Loads a topology file (`.toml` or `.json`, by extension) as one
/// transaction: every system and relation in it, or none. `*added` (nullable)
/// receives the number of systems added.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`path`), `PSO_ERR_INVALID_UTF8` (the path must be
/// UTF-8), `PSO_ERR_STALE_HANDLE`, `PSO_ERR_IO` (unreadable file),
/// `PSO_ERR_INVALID_ARGUMENT` (unknown extension), `PSO_ERR_PARSE` (message
/// `path:line:column: ...`), and the registry errors of `pso_register_system`,
/// `pso_connect`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `added` is NULL or points to a
/// writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_load_topology(
    o: pso_orchestrator,
    path: *const c_char,
    added: *mut usize,
) -> pso_status {
    ffi_boundary!(pso_load_topology, |call| {
        // SAFETY: per `# Safety`, `added` is NULL or writable and `path` is
        // NULL or a valid C string, for the whole call.
        let (added, path) = unsafe { (opt_out!(call, added, 0), c_str!(call, path)?) };
        let orch = call.orchestrator(o)?;
        let n = orch.load_topology(path)?;
        if let Some(mut added) = added {
            added.set(n);
        }
        Ok(())
    })
}

/// Loads a topology from text (`format`: `PSO_FORMAT_TOML` or
/// `PSO_FORMAT_JSON`) as one transaction. `*added` (nullable) receives the
/// number of systems added. Errors name the source `<string>`.
///
/// # Errors
/// As `pso_load_topology`, and `PSO_ERR_INVALID_ARGUMENT` for an unknown format.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string; `added` is NULL or points to a
/// writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_load_topology_str(
    o: pso_orchestrator,
    text: *const c_char,
    format: u32,
    added: *mut usize,
) -> pso_status {
    ffi_boundary!(pso_load_topology_str, |call| {
        // SAFETY: per `# Safety`, `added` is NULL or writable and `text` is
        // NULL or a valid C string, for the whole call.
        let (added, text) = unsafe { (opt_out!(call, added, 0), c_str!(call, text)?) };
        let format = topology_format(call, format)?;
        let orch = call.orchestrator(o)?;
        let n = orch.load_topology_str(text, format)?;
        if let Some(mut added) = added {
            added.set(n);
        }
        Ok(())
    })
}

/// Adds the relation `from <kind> to`; `kind` is `"requires"`, `"wants"`,
/// `"after"`, `"conflicts"` or `"interacts"`. Adding an existing relation does
/// nothing.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER`, `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`,
/// `PSO_ERR_INVALID_ARGUMENT` (unknown kind, self-relation),
/// `PSO_ERR_NOT_FOUND`, `PSO_ERR_CYCLE` (the message names the whole path;
/// nothing changed), `PSO_ERR_CLOSED`.
///
/// # Safety
/// Each string is NULL or a NUL-terminated string, valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_connect(
    o: pso_orchestrator,
    from: *const c_char,
    kind: *const c_char,
    to: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_connect, |call| {
        // SAFETY: per `# Safety`, each pointer is NULL or a valid C string for
        // the whole call.
        let (from, kind, to) =
            unsafe { (c_str!(call, from)?, c_str!(call, kind)?, c_str!(call, to)?) };
        let kind: EdgeKind = kind
            .parse()
            .map_err(|m| call.fail(pso_status::PSO_ERR_INVALID_ARGUMENT, m))?;
        let orch = call.orchestrator(o)?;
        orch.connect(from, kind, to)?;
        Ok(())
    })
}

/// Sets (replaces) the lifecycle handlers of system `name`.
///
/// Either callback may be NULL (that transition then just succeeds). The
/// callbacks run on PSO worker threads, possibly several at once for different
/// systems, so they and `user_data` must be thread-safe; see
/// `pso_lifecycle_fn`.
///
/// Ownership of `user_data`: on `PSO_OK`, PSO owns it and calls
/// `free_user_data(user_data)` (if not NULL) exactly once, never while one of
/// the callbacks still runs: when these handlers are replaced by another
/// `pso_set_handlers` (or, if a lifecycle call that used them is still
/// finishing on a worker thread, as soon as it has), or when the orchestrator
/// is closed (before `pso_orchestrator_close` returns, unless other threads
/// are still inside calls on it). With both callbacks NULL it is called before
/// this function returns. It may run on any thread. On any error, PSO does not
/// take `user_data` and never calls `free_user_data`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`name`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_NOT_FOUND`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string. Each callback is NULL or a
/// function with the `pso_lifecycle_fn` signature, callable from any thread
/// with `user_data` until `free_user_data` runs (or for the orchestrator's
/// lifetime, when it is NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_handlers(
    o: pso_orchestrator,
    name: *const c_char,
    on_activate: pso_lifecycle_fn,
    on_deactivate: pso_lifecycle_fn,
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
) -> pso_status {
    ffi_boundary!(pso_set_handlers, |call| {
        // SAFETY: per `# Safety`, `name` is NULL or a valid C string for the
        // whole call.
        let name = unsafe { c_str!(call, name)? };
        let orch = call.orchestrator(o)?;
        let (handlers, ownership) =
            c_handlers(on_activate, on_deactivate, user_data, free_user_data);
        // On error (or a panic) `ownership` is dropped uncommitted, which
        // disarms `free_user_data` before the closures go away.
        orch.set_handlers(name, handlers)?;
        ownership.commit();
        Ok(())
    })
}

/// Activates `name` and everything it requires or wants, in dependency order
/// (each level in parallel on the worker pool). Idempotent: an Active target
/// gives `PSO_OK` with outcome `already_active`.
///
/// `*report_json` (nullable out-parameter) receives the `ActivationReport` as
/// JSON (free it with `pso_string_free`): `{"target", "action", "outcomes":
/// [{"system", "outcome", "error", "level", "queued", "ran"}], "elapsed"}`,
/// durations in seconds. It is also returned when the call fails with
/// `PSO_ERR_HANDLER_FAILED`; otherwise it is NULL on failure.
///
/// # Errors
/// `PSO_ERR_HANDLER_FAILED` if `name` did not become Active (its handler
/// failed or timed out, or a system it requires did); the message names the
/// chain (`cannot activate A: A requires B, which failed: status 3: ...`).
/// `PSO_ERR_CONFLICT` (nothing ran), `PSO_ERR_NOT_FOUND`, `PSO_ERR_BUSY`
/// (called from a handler), `PSO_ERR_CLOSED`, and the argument errors.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `report_json` is NULL or points
/// to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_activate_system(
    o: pso_orchestrator,
    name: *const c_char,
    report_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_activate_system, |call| {
        // SAFETY: per `# Safety`, `report_json` is NULL or writable and `name`
        // is NULL or a valid C string, for the whole call.
        let (report_json, name) = unsafe {
            (
                opt_out!(call, report_json, ptr::null_mut()),
                c_str!(call, name)?,
            )
        };
        let orch = call.orchestrator(o)?;
        lifecycle(call, orch.activate_system(name), report_json)
    })
}

/// Activates every registered system that is not Active. `*report_json` as for
/// `pso_activate_system` (target `"*"`).
///
/// # Errors
/// `PSO_ERR_HANDLER_FAILED` if any system failed or was blocked (the report is
/// still returned); `PSO_ERR_CONFLICT`, `PSO_ERR_BUSY`, `PSO_ERR_CLOSED`,
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `report_json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_activate_all(
    o: pso_orchestrator,
    report_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_activate_all, |call| {
        // SAFETY: per `# Safety`, `report_json` is NULL or writable.
        let report_json = unsafe { opt_out!(call, report_json, ptr::null_mut()) };
        let orch = call.orchestrator(o)?;
        lifecycle(call, orch.activate_all(), report_json)
    })
}

/// Deactivates `name`: first every Active system that requires it
/// (transitively, dependents first), then `name`. A system that is not Active
/// gives `PSO_OK` with outcome `not_active`. `*report_json` as for
/// `pso_activate_system`.
///
/// # Errors
/// `PSO_ERR_HANDLER_FAILED` if `name`'s own deactivate handler failed (it is
/// then Failed; dependents were still stopped; the report is returned);
/// `PSO_ERR_NOT_FOUND`, `PSO_ERR_BUSY`, `PSO_ERR_CLOSED`, and the argument
/// errors.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `report_json` is NULL or points
/// to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_deactivate_system(
    o: pso_orchestrator,
    name: *const c_char,
    report_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_deactivate_system, |call| {
        // SAFETY: per `# Safety`, `report_json` is NULL or writable and `name`
        // is NULL or a valid C string, for the whole call.
        let (report_json, name) = unsafe {
            (
                opt_out!(call, report_json, ptr::null_mut()),
                c_str!(call, name)?,
            )
        };
        let orch = call.orchestrator(o)?;
        lifecycle(call, orch.deactivate_system(name), report_json)
    })
}

/// Deactivates every Active system, dependents first. `*report_json` as for
/// `pso_activate_system` (target `"*"`).
///
/// # Errors
/// `PSO_ERR_HANDLER_FAILED` naming the first handler that failed (every other
/// system was still stopped; the report is returned); `PSO_ERR_BUSY`,
/// `PSO_ERR_CLOSED`, `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `report_json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_deactivate_all(
    o: pso_orchestrator,
    report_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_deactivate_all, |call| {
        // SAFETY: per `# Safety`, `report_json` is NULL or writable.
        let report_json = unsafe { opt_out!(call, report_json, ptr::null_mut()) };
        let orch = call.orchestrator(o)?;
        lifecycle(call, orch.deactivate_all(), report_json)
    })
}

/// The status of every system, in registration order, as a JSON array in
/// `*json` (free it with `pso_string_free`). Each element: `name`, `state`
/// (`Registered`, `Activating`, `Active`, `Deactivating`, `Inactive`,
/// `Failed`), `since` (RFC 3339), `reason`, `last_error`, `tier`, `tags`,
/// `priority`, `resources`, `requires`, `wants`, `after`, `conflicts`,
/// `interacts`, `required_by`, `has_activate_handler`,
/// `has_deactivate_handler`, `history` (`from`, `to`, `reason`, `at`),
/// `operations`, `concurrency`, `running_steps`, `waiting_steps`,
/// `resources_held` (what its leases hold now, per dimension).
///
/// Reads never wait for running handlers, so handlers may call this.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_system_status(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_system_status, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        let text =
            serde_json::to_string(&orch.system_status()).map_err(|e| serialize_error(call, e))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

/// The status of one system as a JSON object in `*json` (the elements of
/// `pso_system_status`). Free it with `pso_string_free`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER`, `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`,
/// `PSO_ERR_NOT_FOUND`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `json` is NULL or points to a
/// writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_status_of(
    o: pso_orchestrator,
    name: *const c_char,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_status_of, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable and `name` is NULL
        // or a valid C string, for the whole call.
        let (mut json, name) = unsafe { (out!(call, json, ptr::null_mut())?, c_str!(call, name)?) };
        let orch = call.orchestrator(o)?;
        let text =
            serde_json::to_string(&orch.status(name)?).map_err(|e| serialize_error(call, e))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

/// Explains in one sentence why `name` is (or is not) Active, following
/// failed requirements ("PBOS is Inactive: it requires PSec, which Failed
/// ..."), in `*text`. Free it with `pso_string_free`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER`, `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`,
/// `PSO_ERR_NOT_FOUND`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `text` is NULL or points to a
/// writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_why_inactive(
    o: pso_orchestrator,
    name: *const c_char,
    text: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_why_inactive, |call| {
        // SAFETY: per `# Safety`, `text` is NULL or writable and `name` is NULL
        // or a valid C string, for the whole call.
        let (mut text, name) = unsafe { (out!(call, text, ptr::null_mut())?, c_str!(call, name)?) };
        let orch = call.orchestrator(o)?;
        let why = orch.why_inactive(name)?;
        text.set(call.c_string(why)?);
        Ok(())
    })
}

/// What `pso_activate_system(name)` would do, without running anything, as
/// JSON in `*json`: `{"target", "levels": [[names], ...], "already_active":
/// [names]}`. Free it with `pso_string_free`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER`, `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`,
/// `PSO_ERR_NOT_FOUND`, `PSO_ERR_CONFLICT`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `json` is NULL or points to a
/// writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_plan(
    o: pso_orchestrator,
    name: *const c_char,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_plan, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable and `name` is NULL
        // or a valid C string, for the whole call.
        let (mut json, name) = unsafe { (out!(call, json, ptr::null_mut())?, c_str!(call, name)?) };
        let orch = call.orchestrator(o)?;
        let plan = orch.plan(name)?;
        json.set(call.c_string(plan.to_json())?);
        Ok(())
    })
}

/// The registry (systems and relations, not states) as text in `*text`:
/// `format` is `PSO_EXPORT_JSON` or `PSO_EXPORT_TOML` (both load back with
/// `pso_load_topology_str`), `PSO_EXPORT_DOT` or `PSO_EXPORT_MERMAID`. Free
/// it with `pso_string_free`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`text`), `PSO_ERR_INVALID_ARGUMENT` (unknown
/// format), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `text` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_export(
    o: pso_orchestrator,
    format: u32,
    text: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_export, |call| {
        // SAFETY: per `# Safety`, `text` is NULL or writable.
        let mut text = unsafe { out!(call, text, ptr::null_mut())? };
        let format = export_format(call, format)?;
        let orch = call.orchestrator(o)?;
        text.set(call.c_string(orch.export(format))?);
        Ok(())
    })
}

/// The message of the last failed `pso_` call on this thread, or `""` after a
/// success. Never NULL. Owned by PSO: valid until the next status-returning
/// `pso_` call on this thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn pso_last_error_message() -> *const c_char {
    ffi_boundary!(pso_last_error_message, default = c"".as_ptr(), {
        error::last_error_ptr()
    })
}

/// Frees a string returned by PSO through a `char **` out-parameter. NULL is
/// ignored. Does not change the last error.
///
/// # Safety
/// `s` is NULL or a string returned by a PSO function and not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_string_free(s: *mut c_char) {
    ffi_boundary!(pso_string_free, default = (), {
        if !s.is_null() {
            // SAFETY: per `# Safety`, `s` came from `CString::into_raw` in
            // `Call::c_string` and is freed once.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// The name of a status value (`"PSO_ERR_NOT_FOUND"`), or `"unknown status"`.
/// Static storage: never freed, never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn pso_status_name(status: u32) -> *const c_char {
    ffi_boundary!(pso_status_name, default = c"unknown status".as_ptr(), {
        pso_status::from_code(status)
            .map(|s| s.name())
            .unwrap_or(c"unknown status")
            .as_ptr()
    })
}

/// The version of libpso (`"0.1.0"`). Static storage: never freed, never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn pso_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => panic!("the package version contains a NUL byte"),
    };
    ffi_boundary!(pso_version, default = c"".as_ptr(), { VERSION.as_ptr() })
}

// Declared after `ffi_boundary!` so they can use it (in the order of the
// header: workflows, then resources, then leases, then hub, messages, direct
// channels, coordination and state).
pub(crate) mod ops;
pub(crate) mod workflow;

pub(crate) mod resources;

pub(crate) mod lease;

pub(crate) mod coordination;
pub(crate) mod direct;
pub(crate) mod hub;
pub(crate) mod intelligence;
pub(crate) mod message;
pub(crate) mod metrics;
pub(crate) mod state;
pub(crate) mod supervision;

#[cfg(test)]
mod tests;
