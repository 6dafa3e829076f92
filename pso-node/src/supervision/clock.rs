//! `VirtualClock`: supervision time that moves only when a test says so.
//!
//! `VirtualClock.advance(ms)` returns a Promise: pso-core runs due probes and
//! supervisor actions (restarts run activate handlers) inside `advance`, and
//! both need the JS thread, so `advance` runs on a helper thread. An
//! orchestrator built with a clock shares the clock's in-flight counter, so
//! `close()` never waits on the JS thread for an advance in progress.
//!
//! One advance at a time: `advance` while another is running (typically from
//! a probe or handler that the running advance waits for, which would only
//! end when that probe timed out) rejects with `PSO_BUSY`, as in Python and
//! C. The flag is set on the JS thread and cleared by the helper thread
//! when its advance ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use napi::Env;
use napi::bindgen_prelude::{Object, Unknown};
use napi_derive::napi;
use pso_core::VirtualClock;

use crate::error;
use crate::model::js;
use crate::promise;

/// A virtual clock for deterministic tests of health and supervision.
///
/// Give it to `new Orchestrator({ clock })`: probes, watchdogs, backoff,
/// restart-intensity and flap windows and alert deduplication then move only
/// when `advance` is called, and supervisor actions (restarts, stops,
/// give-ups) run inside the next `advance`.
#[napi(js_name = "VirtualClock")]
pub struct JsVirtualClock {
    pub(super) clock: VirtualClock,
    /// Advances in progress, plus the lifecycle calls of every orchestrator
    /// built with this clock (their shared in-flight counter).
    pub(super) busy: Arc<AtomicUsize>,
    /// An advance is running.
    advancing: Arc<AtomicBool>,
}

impl std::fmt::Debug for JsVirtualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualClock")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[napi]
impl JsVirtualClock {
    /// A clock standing at the moment it was made.
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        JsVirtualClock {
            clock: VirtualClock::new(),
            busy: Arc::new(AtomicUsize::new(0)),
            advancing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Virtual milliseconds elapsed since the clock was made.
    #[napi(getter)]
    pub fn elapsed_ms(&self) -> f64 {
        self.clock.elapsed().as_secs_f64() * 1000.0
    }

    /// Timers waiting for their time (probes, deadlines, restarts, ...).
    #[napi(getter)]
    pub fn pending(&self) -> u32 {
        u32::try_from(self.clock.pending()).unwrap_or(u32::MAX)
    }

    /// Moves time forward by `ms` (≥ 0; 0 runs what is due now), running
    /// every probe, deadline and supervisor action that falls due on the
    /// way, in order. Resolves when they have all run. Rejects with
    /// `PSO_BUSY` while another advance of this clock is running.
    #[napi(ts_args_type = "ms: number", ts_return_type = "Promise<void>")]
    pub fn advance<'e>(&self, env: &'e Env, ms: Unknown<'_>) -> napi::Result<Object<'e>> {
        let by = match js::duration_ms(env, ms, "ms", false) {
            Ok(Some(by)) => by,
            Ok(None) => return promise::rejected(env, error::invalid(env, "ms must be a number")),
            Err(e) => return promise::rejected(env, e),
        };
        if self.advancing.swap(true, Ordering::AcqRel) {
            let e = error::with_kind(
                env,
                pso_core::ErrorKind::Busy,
                "VirtualClock.advance called while another advance of this clock is running \
                 (from a probe or handler it runs?); it would wait for it",
                |_| Ok(()),
            );
            return promise::rejected(env, e);
        }
        let clock = self.clock.clone();
        let advancing = self.advancing.clone();
        promise::spawn(
            env,
            Some(self.busy.clone()),
            "clock",
            move || {
                // Cleared even if `advance` panics (the callbacks it runs
                // are caught in pso-core; this is belt and braces).
                struct Clear(Arc<AtomicBool>);
                impl Drop for Clear {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::Release);
                    }
                }
                let _clear = Clear(advancing);
                clock.advance(by)
            },
            |_, ()| Ok(()),
        )
    }
}
