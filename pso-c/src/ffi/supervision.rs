//! Health and supervision exports: `pso_set_health_check` (a C probe
//! callback and/or a watchdog), `pso_set_supervision`, `pso_check_in`,
//! `pso_report_failure`, and the virtual clock (`pso_clock_advance`) of
//! orchestrators made with `pso_options.virtual_clock`.
//!
//! # Probe contexts
//! A `pso_probe_fn` gets a `const pso_probe_ctx *` that, like a
//! `pso_message`, is a *key* from [`super::ops::next_key`], never a pointer
//! into Rust memory. While the probe runs, a frame with that key (and the
//! detail set so far) sits on a thread-local stack of the thread running it;
//! it is removed when the probe returns (also on unwind). So
//! `pso_probe_set_detail` after the probe returned, or on another thread,
//! finds no frame and gives `PSO_ERR_STALE_HANDLE`.
//!
//! # user_data
//! The probe closure owns an `Arc<UserData>`; pso-core keeps the closure in
//! the system's `HealthCheck` (cloned into a probe that is running). The
//! free callback runs once, when the last clone is dropped: after the check
//! is replaced or removed and no probe of it runs, or when the orchestrator
//! is dropped. Drops under a pso-core lock inside an export are deferred to
//! the end of the export (see `handlers`).
//!
//! # Virtual clocks
//! pso-core does not hand out an orchestrator's clock, so the clock made for
//! `pso_options.virtual_clock` is kept here, in [`CLOCKS`], by orchestrator
//! handle id; `pso_orchestrator_close` removes it ([`forget_clock`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{CString, c_char, c_void};
use std::ptr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pso_core::{
    HandlerError, HealthCheck, HealthReport, OrchestratorBuilder, RestartPolicy, RestartStrategy,
    Supervision, VirtualClock,
};

use super::args::{Call, c_str, opt_c_str, opt_ref};
use super::handlers::{UserData, in_c_callback, owned_user_data, pso_free_fn};
use super::ops::next_key;
use super::pso_options;
use crate::error::{Failure, pso_status};
use crate::handle::pso_orchestrator;

/// Values a `pso_probe_fn` returns (as `int32_t`).
#[allow(non_camel_case_types)]
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pso_health_status {
    /// Working.
    PSO_HEALTH_HEALTHY = 0,
    /// Working, with a problem worth reporting (not a failure).
    PSO_HEALTH_DEGRADED = 1,
    /// Not working: counts as a failed probe.
    PSO_HEALTH_UNHEALTHY = 2,
}

/// The context of one probe call, passed to a `pso_probe_fn`. Opaque: use it
/// only with `pso_probe_set_detail`, only on the thread running the probe,
/// and only until it returns (afterwards, or on another thread, it gives
/// `PSO_ERR_STALE_HANDLE`; it is a key, never dereferenced).
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct pso_probe_ctx {
    _opaque: [u8; 0],
}

/// A health probe: returns a `pso_health_status` value.
///
/// Runs on a PSO worker thread every `interval_ms` while the system is
/// Active (with `pso_options.virtual_clock`: on the thread calling
/// `pso_clock_advance`, inside that call). Probes of different systems may
/// run at once, and a probe that outlives its timeout keeps running while
/// the next one of the same system starts, so the callback and `user_data`
/// must be thread-safe. `system` is the system's name, valid
/// during the call. It may describe what it saw with
/// `pso_probe_set_detail(ctx, ...)`. Any other return value than the three
/// `pso_health_status` values counts as a failed probe (`probe returned
/// <n>`, or the detail), as does taking longer than `timeout_ms` (the late
/// answer is ignored).
#[allow(non_camel_case_types)]
pub type pso_probe_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        system: *const c_char,
        ctx: *const pso_probe_ctx,
    ) -> i32,
>;

type RawProbeFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const pso_probe_ctx) -> i32;

/// How a system's health is checked, for `pso_set_health_check`. Zero means
/// "the default" for every number.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pso_health_check {
    /// The probe (nullable: a watchdog only; then `watchdog_ms` is required).
    pub probe: pso_probe_fn,
    /// Passed to `probe`; owned by PSO once `pso_set_health_check` succeeds.
    pub user_data: *mut c_void,
    /// Frees `user_data` (nullable); see `pso_set_health_check`.
    pub free_user_data: pso_free_fn,
    /// How often the probe runs, in milliseconds. 0: 10 000.
    pub interval_ms: u64,
    /// How long a probe may take before it counts as failed, in
    /// milliseconds. 0: 5 000.
    pub timeout_ms: u64,
    /// Failed probes in a row before the system is Unhealthy. 0: 3.
    pub failures_before_unhealthy: u32,
    /// Good probes in a row before an Unhealthy system is Healthy. 0: 1.
    pub successes_before_healthy: u32,
    /// Watchdog: the system must `pso_check_in` at least this often while
    /// Active, in milliseconds. 0: no watchdog.
    pub watchdog_ms: u64,
}

/// Restart policies (`pso_supervision.policy`, a `uint32_t`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pso_restart_policy {
    /// The default: `PSO_RESTART_ON_FAILURE`.
    PSO_RESTART_DEFAULT = 0,
    /// Never restart; failures are recorded and alerted.
    PSO_RESTART_NEVER = 1,
    /// Restart after a failed activation, a reported crash, an Unhealthy
    /// verdict or a missed watchdog deadline.
    PSO_RESTART_ON_FAILURE = 2,
    /// As on-failure, and bring the system back when a system it requires
    /// returns after stopping it.
    PSO_RESTART_ALWAYS = 3,
}

/// Restart strategies (`pso_supervision.strategy`, a `uint32_t`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pso_restart_strategy {
    /// The default: `PSO_STRATEGY_ONE_FOR_ONE`.
    PSO_STRATEGY_DEFAULT = 0,
    /// The failed system alone (with the dependents that stopped with it).
    PSO_STRATEGY_ONE_FOR_ONE = 1,
    /// Every Active system connected to it by requires/wants edges.
    PSO_STRATEGY_ONE_FOR_ALL = 2,
    /// It and every system that requires or wants it, in dependency order.
    PSO_STRATEGY_REST_FOR_ONE = 3,
}

/// How a system is supervised, for `pso_set_supervision`. Zero means "the
/// default" for every field, so `pso_supervision s = {0};` restarts on
/// failure, one-for-one, backoff 100 ms doubling to 30 s with jitter, reset
/// after 60 s up, giving up after 5 restarts within 60 s.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct pso_supervision {
    /// A `pso_restart_policy` value.
    pub policy: u32,
    /// A `pso_restart_strategy` value.
    pub strategy: u32,
    /// First restart delay, in milliseconds (doubling per attempt). 0: 100.
    pub backoff_ms: u64,
    /// Longest restart delay, in milliseconds. 0: 30 000.
    pub max_backoff_ms: u64,
    /// true: exact delays; false (the default): equal jitter (half fixed,
    /// half random).
    pub no_jitter: bool,
    /// Up this long (and not unhealthy), the backoff starts over, in
    /// milliseconds. 0: 60 000.
    pub reset_after_ms: u64,
    /// More failures than this within `within_ms` give up (the system is
    /// `GaveUp` until activated by hand). 0: 5.
    pub max_restarts: u32,
    /// The restart-intensity window, in milliseconds. 0: 60 000.
    pub within_ms: u64,
}

/// Applies the supervision fields of `pso_options` to `builder`, and makes
/// the virtual clock if asked for (to register with [`remember_clock`] once
/// the orchestrator has a handle).
pub(crate) fn configure(
    mut builder: OrchestratorBuilder,
    opts: &pso_options,
) -> (OrchestratorBuilder, Option<VirtualClock>) {
    if opts.flap_threshold != 0 || opts.flap_window_ms != 0 {
        let threshold = if opts.flap_threshold == 0 {
            5
        } else {
            opts.flap_threshold
        };
        let window = ms_or(opts.flap_window_ms, 60_000);
        builder = builder.flap_detection(threshold, window);
    }
    if opts.alert_interval_ms != 0 {
        // u64::MAX is "no deduplication": PSO_ALERT_EVERY_TIME.
        let d = if opts.alert_interval_ms == u64::MAX {
            Duration::ZERO
        } else {
            Duration::from_millis(opts.alert_interval_ms)
        };
        builder = builder.alert_interval(d);
    }
    let clock = opts.virtual_clock.then(VirtualClock::new);
    if let Some(c) = &clock {
        builder = builder.virtual_clock(c.clone());
    }
    (builder, clock)
}

fn ms_or(ms: u64, default_ms: u64) -> Duration {
    Duration::from_millis(if ms == 0 { default_ms } else { ms })
}

/// The virtual clocks of open orchestrators, by handle id.
static CLOCKS: Mutex<Option<HashMap<u64, VirtualClock>>> = Mutex::new(None);

pub(crate) fn remember_clock(o: pso_orchestrator, clock: VirtualClock) {
    let mut map = CLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    map.get_or_insert_with(HashMap::new).insert(o.id, clock);
}

pub(crate) fn forget_clock(o: pso_orchestrator) {
    let clock = {
        let mut map = CLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
        map.as_mut().and_then(|m| m.remove(&o.id))
    };
    drop(clock); // outside the lock: it may own callbacks
}

fn clock_of(o: pso_orchestrator) -> Option<VirtualClock> {
    let map = CLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    map.as_ref().and_then(|m| m.get(&o.id).cloned())
}

// ------------------------------------------------------------ probe frames

/// One running probe: its key and the detail set so far.
struct Frame {
    key: usize,
    detail: Option<String>,
}

thread_local! {
    /// Whether this thread is inside `pso_clock_advance`.
    static ADVANCING: Cell<bool> = const { Cell::new(false) };
    /// The probes running on this thread, innermost last.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Removes frame `key` when dropped (also on unwind), returning its detail
/// through [`PopFrame::take`].
struct PopFrame(usize);

impl PopFrame {
    fn take(self) -> Option<String> {
        let key = self.0;
        std::mem::forget(self);
        remove_frame(key).and_then(|f| f.detail)
    }
}

impl Drop for PopFrame {
    fn drop(&mut self) {
        drop(remove_frame(self.0));
    }
}

fn remove_frame(key: usize) -> Option<Frame> {
    FRAMES
        .try_with(|frames| {
            let mut frames = frames.try_borrow_mut().ok()?;
            let i = frames.iter().rposition(|f| f.key == key)?;
            Some(frames.remove(i))
        })
        .ok()
        .flatten()
}

/// The core probe that calls `f` with `ud`.
fn c_probe(f: RawProbeFn, ud: Arc<UserData>) -> pso_core::ProbeFn {
    Arc::new(move |system: &str| invoke(f, &ud, system))
}

fn invoke(f: RawProbeFn, ud: &UserData, system: &str) -> Result<HealthReport, HandlerError> {
    let name = CString::new(system)
        .map_err(|_| HandlerError::failed("system name contains a NUL byte"))?;
    let key = next_key();
    let pushed = FRAMES
        .try_with(|frames| {
            frames
                .try_borrow_mut()
                .map(|mut frames| frames.push(Frame { key, detail: None }))
                .is_ok()
        })
        .unwrap_or(false);
    if !pushed {
        return Err(HandlerError::failed(
            "PSO could not set up the probe (thread-local storage unavailable)",
        ));
    }
    let pop = PopFrame(key);
    let rc = in_c_callback(|| {
        // SAFETY: `f` is the non-null probe given to `pso_set_health_check`,
        // whose contract makes it callable on any thread with this
        // `user_data` (kept alive by `ud`, which the probe closure owns).
        // `name` outlives the call; the context is a key C never
        // dereferences.
        unsafe { f(ud.ptr(), name.as_ptr(), ptr::without_provenance(key)) }
    });
    let detail = pop.take().unwrap_or_default();
    match rc {
        0 => Ok(HealthReport::healthy()),
        1 => Ok(HealthReport::degraded(detail)),
        2 => Ok(HealthReport::unhealthy(detail)),
        rc if detail.is_empty() => Err(HandlerError::failed(format!("probe returned {rc}"))),
        rc => Err(HandlerError::failed(format!(
            "probe returned {rc}: {detail}"
        ))),
    }
}

/// Describes what the running probe saw (`"queue depth 1200"`); shown as the
/// health `detail` in the status JSON and in alerts. Replaces an earlier
/// detail of the same call. `detail` is copied.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`ctx`, `detail`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE` (the probe returned, or another thread).
///
/// # Safety
/// `detail` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_probe_set_detail(
    ctx: *const pso_probe_ctx,
    detail: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_probe_set_detail, |call| {
        if ctx.is_null() {
            return Err(call.null("ctx"));
        }
        // SAFETY: per `# Safety`, `detail` is NULL or a valid C string.
        let detail = unsafe { c_str!(call, detail)? };
        let key = ctx.addr();
        let stale = || {
            call.fail(
                pso_status::PSO_ERR_STALE_HANDLE,
                format_args!(
                    "probe context {key:#x} is stale: its probe has returned, or it is used on \
                     another thread than the one running the probe"
                ),
            )
        };
        FRAMES
            .try_with(|frames| {
                let mut frames = frames.try_borrow_mut().map_err(|_| stale())?;
                let frame = frames
                    .iter_mut()
                    .rev()
                    .find(|f| f.key == key)
                    .ok_or_else(stale)?;
                frame.detail = Some(detail.to_owned());
                Ok(())
            })
            .unwrap_or_else(|_| Err(stale()))
    })
}

// ----------------------------------------------------------------- exports

/// Sets how system `system`'s health is checked (`check` NULL: removes the
/// check). Takes effect at once if the system is Active; probes run while it
/// is Active (see `pso_probe_fn`: on PSO worker threads, or inside
/// `pso_clock_advance` with a virtual clock). The verdicts are in the status
/// JSON (`health`: `status`, `detail`, `consecutive_failures`, `probes`,
/// `since_check_in`, `flapping`) and alerts go to
/// `pso.alert.<system>.<kind>`.
///
/// Ownership of `check->user_data`: on `PSO_OK`, PSO owns it and calls
/// `check->free_user_data(user_data)` (if not NULL) exactly once, on any
/// thread, when no probe of this check runs any more: after the check is
/// replaced or removed (by the end of that call, or as soon as a running
/// probe returns) or when the orchestrator is closed (by the time
/// `pso_orchestrator_close` returns, unless a probe still runs then). With
/// no probe (a watchdog only) it is freed before this function returns. On
/// any error PSO does not take it and never calls `free_user_data`.
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` (neither a probe nor a watchdog),
/// `PSO_ERR_NOT_FOUND` (unknown system), `PSO_ERR_NULL_POINTER` (`system`),
/// `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `system` is NULL or a NUL-terminated string; `check` is NULL or points to
/// a readable `pso_health_check` whose `probe` is NULL or a function with
/// the `pso_probe_fn` signature, callable from any thread with `user_data`
/// until `free_user_data` runs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_health_check(
    o: pso_orchestrator,
    system: *const c_char,
    check: *const pso_health_check,
) -> pso_status {
    ffi_boundary!(pso_set_health_check, |call| {
        // SAFETY: per `# Safety`, `system` is NULL or a valid C string and
        // `check` NULL or readable, for the whole call.
        let (system, check) = unsafe { (c_str!(call, system)?, opt_ref!(call, check)) };
        let orch = call.orchestrator(o)?;
        let Some(c) = check.copied() else {
            orch.set_health_check(system, None)?;
            return Ok(());
        };
        if c.probe.is_none() && c.watchdog_ms == 0 {
            return Err(call.fail(
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                format_args!("system '{system}': a health check needs a probe or a watchdog"),
            ));
        }
        let (ud, ownership) = owned_user_data(c.user_data, c.free_user_data);
        let mut hc = match c.probe {
            Some(f) => HealthCheck::probe_shared(c_probe(f, Arc::clone(&ud)))
                .interval(ms_or(c.interval_ms, 10_000))
                .timeout(ms_or(c.timeout_ms, 5_000)),
            None => HealthCheck::watchdog_only(Duration::from_millis(c.watchdog_ms)),
        };
        if c.probe.is_some() && c.watchdog_ms != 0 {
            hc = hc.watchdog(Duration::from_millis(c.watchdog_ms));
        }
        if c.failures_before_unhealthy != 0 {
            hc = hc.failures_before_unhealthy(c.failures_before_unhealthy);
        }
        if c.successes_before_healthy != 0 {
            hc = hc.successes_before_healthy(c.successes_before_healthy);
        }
        if let Err(e) = orch.set_health_check(system, Some(hc)) {
            // `ud` still holds `user_data`: disarm the free, then let it go.
            drop(ownership);
            drop(ud);
            return Err(e.into());
        }
        ownership.commit();
        // Without a probe nothing else holds `user_data`: it is freed at the
        // end of this call.
        drop(ud);
        Ok(())
    })
}

/// Sets how system `system` is supervised (`sup` NULL: removes supervision,
/// so failures are only recorded). Clears an earlier give-up. The status
/// JSON shows `supervision`: `policy`, `strategy`, `restarts`,
/// `recent_failures`, `failures_left`, `next_attempt_in` (seconds or null),
/// `attempt`, `gave_up`; a given-up system's `state` is `GaveUp`.
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` (an unknown policy or strategy, a backoff
/// above its maximum), `PSO_ERR_NOT_FOUND`, `PSO_ERR_NULL_POINTER`
/// (`system`), `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`,
/// `PSO_ERR_CLOSED`.
///
/// # Safety
/// `system` is NULL or a NUL-terminated string; `sup` is NULL or points to a
/// readable `pso_supervision`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_set_supervision(
    o: pso_orchestrator,
    system: *const c_char,
    sup: *const pso_supervision,
) -> pso_status {
    ffi_boundary!(pso_set_supervision, |call| {
        // SAFETY: per `# Safety`, as for `pso_set_health_check`.
        let (system, sup) = unsafe { (c_str!(call, system)?, opt_ref!(call, sup)) };
        let sup = sup.copied().map(|s| supervision(call, &s)).transpose()?;
        let orch = call.orchestrator(o)?;
        orch.set_supervision(system, sup)?;
        Ok(())
    })
}

fn supervision(call: Call, s: &pso_supervision) -> Result<Supervision, Failure> {
    let policy = match s.policy {
        0 | 2 => RestartPolicy::OnFailure,
        1 => RestartPolicy::Never,
        3 => RestartPolicy::Always,
        n => {
            return Err(call.fail(
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                format_args!("unknown restart policy {n} (expected 0 to 3)"),
            ));
        }
    };
    let strategy = match s.strategy {
        0 | 1 => RestartStrategy::OneForOne,
        2 => RestartStrategy::OneForAll,
        3 => RestartStrategy::RestForOne,
        n => {
            return Err(call.fail(
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                format_args!("unknown restart strategy {n} (expected 0 to 3)"),
            ));
        }
    };
    Ok(Supervision::new(policy)
        .strategy(strategy)
        .backoff(ms_or(s.backoff_ms, 100), ms_or(s.max_backoff_ms, 30_000))
        .jitter(!s.no_jitter)
        .reset_after(ms_or(s.reset_after_ms, 60_000))
        .intensity(
            if s.max_restarts == 0 {
                5
            } else {
                s.max_restarts
            },
            ms_or(s.within_ms, 60_000),
        ))
}

/// Tells the watchdog of `system` it is alive (restarts its deadline). Does
/// nothing for a system without a watchdog or not Active.
///
/// # Errors
/// `PSO_ERR_NOT_FOUND`, `PSO_ERR_NULL_POINTER` (`system`),
/// `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `system` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_check_in(o: pso_orchestrator, system: *const c_char) -> pso_status {
    ffi_boundary!(pso_check_in, |call| {
        // SAFETY: per `# Safety`, `system` is NULL or a valid C string.
        let system = unsafe { c_str!(call, system)? };
        call.orchestrator(o)?.check_in(system)?;
        Ok(())
    })
}

/// Reports that Active system `system` crashed (a failure the host saw,
/// described by `message`, nullable): it becomes Failed without running its
/// deactivate handler, the systems that require it stop, and its supervisor
/// decides what comes next (a restart after the backoff, or giving up).
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` (it is not Active), `PSO_ERR_NOT_FOUND`,
/// `PSO_ERR_NULL_POINTER` (`system`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `system` and `message` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_report_failure(
    o: pso_orchestrator,
    system: *const c_char,
    message: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_report_failure, |call| {
        // SAFETY: per `# Safety`, both are NULL or valid C strings.
        let (system, message) = unsafe { (c_str!(call, system)?, opt_c_str!(call, message)?) };
        let orch = call.orchestrator(o)?;
        orch.report_failure(system, message.unwrap_or("reported by the host"))?;
        Ok(())
    })
}

/// Moves the virtual clock of `o` (made with `pso_options.virtual_clock`)
/// forward by `ms` milliseconds, running on this thread, in time order,
/// everything that falls due: probes (C probe callbacks included),
/// watchdog deadlines, restarts after their backoff, give-ups, the end of
/// flapping. 0 runs what is due now. Advances are serialized: a lifecycle
/// handler run by a restart inside it must not call it (it would wait for
/// itself); a probe calling it gets `PSO_ERR_BUSY`.
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` if `o` runs on real time, `PSO_ERR_BUSY`
/// (called from inside `pso_clock_advance` on this thread),
/// `PSO_ERR_STALE_HANDLE`.
#[unsafe(no_mangle)]
pub extern "C" fn pso_clock_advance(o: pso_orchestrator, ms: u64) -> pso_status {
    ffi_boundary!(pso_clock_advance, |call| {
        if ADVANCING.with(Cell::get) {
            return Err(call.fail(
                pso_status::PSO_ERR_BUSY,
                "called from inside pso_clock_advance (a probe it ran): it would wait for itself",
            ));
        }
        let orch = call.orchestrator(o)?;
        let clock = clock_of(o).ok_or_else(|| {
            call.fail(
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                "this orchestrator runs on real time (set pso_options.virtual_clock)",
            )
        })?;
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                let _ = ADVANCING.try_with(|a| a.set(false));
            }
        }
        ADVANCING.with(|a| a.set(true));
        let reset = Reset;
        clock.advance(Duration::from_millis(ms));
        drop(reset);
        drop(orch);
        Ok(())
    })
}
