//! Health probes: JS functions run for pso-core's supervisor.
//!
//! A probe is a JS function `(system) => HealthReport | HealthStatus |
//! Promise<...>`. pso-core calls it on a worker (real time) or inside
//! `VirtualClock.advance` (virtual time) and waits for the answer, so the
//! probe is queued on a *weak* thread-safe function and runs on the JS
//! thread. The waiting thread gives up after the check's `timeoutMs` (in
//! real time, whatever the clock), so a busy or blocked JS thread can never
//! hold a worker for longer. A throw, a rejection, or a value that is not a
//! report is a failed probe whose detail is the message. Once the
//! orchestrator is closed, waiting probes give up within `GATE_POLL` (so
//! that `close()`, which joins the workers, is not held up by a probe that
//! waits for the JS thread `close()` itself runs on).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{
    CallbackContext, Function, JsObjectValue, JsValue, PromiseRaw, Unknown,
};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, ValueType};
use pso_core::{HandlerError, HealthReport, ProbeFn};

use crate::model::handler::{raised, raised_from_error};
use crate::model::js;

/// How often a thread waiting for a probe looks at its orchestrator's gate.
const GATE_POLL: Duration = Duration::from_millis(20);

/// Closed once its orchestrator is closed; probes waiting for JS stop.
#[derive(Debug, Default)]
pub(super) struct Gate {
    closed: AtomicBool,
}

/// The gates of orchestrators that have probes, by orchestrator id. Weak:
/// the probes own their gate.
static GATES: Mutex<Option<HashMap<u32, Weak<Gate>>>> = Mutex::new(None);

fn gate(owner: u32) -> Arc<Gate> {
    let mut gates = GATES.lock().unwrap_or_else(|p| p.into_inner());
    let map = gates.get_or_insert_with(HashMap::new);
    if let Some(g) = map.get(&owner).and_then(Weak::upgrade) {
        return g;
    }
    map.retain(|_, g| g.strong_count() > 0);
    let g = Arc::new(Gate::default());
    map.insert(owner, Arc::downgrade(&g));
    g
}

/// Called by `close()` before pso-core's close: probes of orchestrator
/// `owner` waiting for the JS thread give up.
pub(crate) fn close_probes(owner: u32) {
    let mut gates = GATES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(g) = gates
        .as_mut()
        .and_then(|m| m.remove(&owner))
        .and_then(|g| g.upgrade())
    {
        g.closed.store(true, Ordering::Release);
    }
}

/// Weak (does not keep the loop alive), errors not passed as a first argument.
type ProbeTsfn = ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true>;

type Outcome = Result<HealthReport, HandlerError>;

/// Wraps the JS function `f` as a probe that waits at most `timeout`.
pub(super) fn probe_fn(
    owner: u32,
    f: Function<'_, String, Unknown<'static>>,
    timeout: Duration,
) -> napi::Result<ProbeFn> {
    let tsfn: ProbeTsfn = f
        .build_threadsafe_function::<String>()
        .weak::<true>()
        .callee_handled::<false>()
        .build()?;
    let tsfn = Arc::new(tsfn);
    let gate = gate(owner);
    Ok(Arc::new(move |system: &str| {
        probe(&tsfn, &gate, system, timeout)
    }))
}

/// Runs on a worker (or inside `advance`): calls the JS probe and waits for
/// its answer, at most `timeout`.
fn probe(tsfn: &ProbeTsfn, gate: &Gate, system: &str, timeout: Duration) -> Outcome {
    let closed = || HandlerError::failed("the orchestrator was closed");
    if gate.closed.load(Ordering::Acquire) {
        return Err(closed());
    }
    let (tx, rx) = mpsc::channel::<Outcome>();
    let status = tsfn.call_with_return_value(
        system.to_owned(),
        ThreadsafeFunctionCallMode::NonBlocking,
        move |ret, env| {
            settle(&env, ret, tx);
            // An `Err` here would go to `napi_fatal_exception`: never return one.
            Ok(())
        },
    );
    if status != Status::Ok {
        return Err(HandlerError::failed(format!(
            "cannot call the JS probe of {system}: the Node.js environment is shutting down ({status})"
        )));
    }
    let deadline = Instant::now() + timeout;
    loop {
        if gate.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HandlerError::failed(format!(
                "the JS probe gave no answer within {}",
                humanize(timeout)
            )));
        }
        match rx.recv_timeout((deadline - now).min(GATE_POLL)) {
            Ok(outcome) => return outcome,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(HandlerError::failed(
                    "the Promise the JS probe returned was collected without settling",
                ));
            }
        }
    }
}

fn humanize(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000.0)
    }
}

/// On the JS thread: turns what the probe did into an outcome. Errors are
/// reduced to their text here, so no JS value leaves the JS thread.
fn settle(env: &Env, ret: napi::Result<Unknown<'static>>, tx: Sender<Outcome>) {
    let value = match ret {
        Ok(value) => value,
        Err(thrown) => {
            let _ = tx.send(Err(failed_from(raised_from_error(env, thrown))));
            return;
        }
    };
    if !value.is_promise().unwrap_or(false) {
        let _ = tx.send(report(&value));
        return;
    }
    let on_error = tx.clone();
    let promise = PromiseRaw::<Unknown<'_>>::new(env.raw(), value.raw());
    let resolved = tx.clone();
    let awaited = promise
        .then(move |ctx: CallbackContext<Unknown<'_>>| {
            let _ = resolved.send(report(&ctx.value));
            Ok(())
        })
        .and_then(|then| {
            then.catch(move |ctx: CallbackContext<Unknown<'_>>| {
                let _ = tx.send(Err(failed_from(raised(ctx.value, None))));
                Ok(())
            })
        });
    if let Err(e) = awaited {
        let _ = on_error.send(Err(HandlerError::failed(format!(
            "cannot wait for the Promise the probe returned: {e}"
        ))));
    }
}

/// `Failed` with the text of a raised error (`TypeError: message`).
fn failed_from(e: HandlerError) -> HandlerError {
    HandlerError::failed(e.to_string())
}

/// Reads a probe's answer: `{ status, detail? }` or a status string.
fn report(v: &Unknown<'_>) -> Outcome {
    let bad = |got: &str| {
        HandlerError::failed(format!(
            "the probe returned {got}; expected {{ status: 'healthy' | 'degraded' | 'unhealthy', detail?: string }}"
        ))
    };
    let text = |v: &Unknown<'_>| -> Option<String> {
        if v.get_type().ok()? != ValueType::String {
            return None;
        }
        v.coerce_to_string()
            .ok()?
            .into_utf8()
            .ok()?
            .into_owned()
            .ok()
    };
    let (status, detail) = match v.get_type() {
        Ok(ValueType::String) => (text(v).unwrap_or_default(), String::new()),
        Ok(ValueType::Object) if !v.is_array().unwrap_or(false) => {
            let Ok(obj) = v.coerce_to_object() else {
                return Err(bad("an object"));
            };
            let status = obj
                .get_named_property::<Unknown<'_>>("status")
                .ok()
                .and_then(|s| text(&s));
            let Some(status) = status else {
                return Err(bad("an object without a string status"));
            };
            let detail = obj
                .get_named_property::<Unknown<'_>>("detail")
                .ok()
                .filter(|d| !js::is_nullish(d));
            let detail = match detail {
                None => String::new(),
                Some(d) => match text(&d) {
                    Some(d) => d,
                    None => return Err(bad("a detail that is not a string")),
                },
            };
            (status, detail)
        }
        _ => return Err(bad(js::type_of(v))),
    };
    let mut r = match status.as_str() {
        "healthy" => HealthReport::healthy(),
        "degraded" => HealthReport::degraded(""),
        "unhealthy" => HealthReport::unhealthy(""),
        other => return Err(bad(&format!("status '{other}'"))),
    };
    r.detail = detail;
    Ok(r)
}
