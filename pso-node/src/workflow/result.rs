//! What runs report, as plain JS objects (pso-core `workflow/result.rs`):
//! `RunResult`, `StepRecord`, `StepCounts`, `RunProgress`, and the learned
//! `Estimate`s. Durations are milliseconds (`elapsedMs`, `queuedMs`,
//! `ranMs`, `meanMs`); outputs are converted with [`crate::value`].

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{JsObjectValue, Object, ToNapiValue, Unknown};
use napi_derive::napi;
use pso_core::{Estimate, RunProgress, RunResult, StepCounts, StepRecord};

use crate::value;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How many steps (workflow steps plus fan-out children) ended in each
/// state. Once a run is done, `accepted` is the sum of the others.
#[napi(object, js_name = "StepCounts", object_from_js = false)]
#[derive(Debug)]
pub struct JsStepCounts {
    /// Every step of the run, fan-out children included.
    pub accepted: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed (threw, rejected, returned a value PSO cannot carry, or was
    /// abandoned while running when the run was cancelled).
    pub failed: u32,
    /// Cancelled (not run because an upstream step did not succeed, or the
    /// run was cancelled).
    pub cancelled: u32,
    /// Timed out (step timeout or run deadline).
    pub timed_out: u32,
    /// Skipped (a false condition, or every predecessor skipped).
    pub skipped: u32,
    /// Not finished yet (0 once the run is done).
    pub unfinished: u32,
}

fn n(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

impl From<StepCounts> for JsStepCounts {
    fn from(c: StepCounts) -> Self {
        JsStepCounts {
            accepted: n(c.accepted),
            succeeded: n(c.succeeded),
            failed: n(c.failed),
            cancelled: n(c.cancelled),
            timed_out: n(c.timed_out),
            skipped: n(c.skipped),
            unfinished: n(c.unfinished),
        }
    }
}

/// One step's history in a run (one per workflow step, then one per fan-out
/// child, named `parent[i]`).
#[napi(
    object,
    js_name = "StepRecord",
    object_from_js = false,
    use_nullable = true
)]
#[derive(Debug)]
pub struct JsStepRecord {
    /// The step (`parent[i]` for a fan-out child).
    pub name: String,
    /// The system, for system operations.
    pub system: Option<String>,
    /// The operation, for system operations.
    pub operation: Option<String>,
    /// The step's state.
    #[napi(
        ts_type = "'pending' | 'running' | 'waiting_retry' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out' | 'skipped'"
    )]
    pub state: String,
    /// Why it failed, was cancelled or timed out.
    pub error: Option<String>,
    /// Attempts made (0 if it never started).
    pub attempts: u32,
    /// Milliseconds from ready to the start of its last attempt (0 without timing).
    pub queued_ms: f64,
    /// Milliseconds its last attempt ran (0 without timing).
    pub ran_ms: f64,
    /// The worker that ran it (null without timing).
    pub worker: Option<u32>,
    /// The fan-out parent, for children.
    pub parent: Option<String>,
}

impl From<&StepRecord> for JsStepRecord {
    fn from(r: &StepRecord) -> Self {
        JsStepRecord {
            name: r.name.clone(),
            system: r.system.clone(),
            operation: r.operation.clone(),
            state: r.state.name().to_owned(),
            error: r.error.clone(),
            attempts: r.attempts,
            queued_ms: ms(r.queued),
            ran_ms: ms(r.ran),
            worker: r.worker.map(n),
            parent: r.parent.clone(),
        }
    }
}

/// The result of a finished run: `await run.result`. It resolves for every
/// run, whatever its state; inspect `state` (or `ok`). A plain object;
/// `outputs`, `errors` and `steps` are built on first access (a getter that
/// replaces itself with the data), so a result nobody inspects costs little.
#[napi(
    object,
    js_name = "RunResult",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsRunResult {
    /// The run's id (unique per orchestrator).
    pub id: f64,
    /// The workflow's name.
    pub workflow: String,
    /// How the run ended.
    #[napi(ts_type = "'succeeded' | 'failed' | 'cancelled' | 'timed_out'")]
    pub state: String,
    /// `state === 'succeeded'`.
    pub ok: bool,
    /// Steps per terminal state.
    pub counts: JsStepCounts,
    /// Outputs of the steps that succeeded, by step name.
    #[napi(ts_type = "Record<string, Value>")]
    pub outputs: (),
    /// Error text of every step (and child) that did not succeed, by name.
    #[napi(ts_type = "Record<string, string>")]
    pub errors: (),
    /// Wall time from start to the last step, in milliseconds.
    pub elapsed_ms: f64,
    /// One record per step, then per fan-out child.
    #[napi(ts_type = "Array<StepRecord>")]
    pub steps: (),
}

/// The eager part of a `RunResult` (`outputs`, `errors` and `steps` come
/// from [`lazy_part`]).
pub(crate) fn base<'e>(env: &'e Env, r: &RunResult) -> napi::Result<Object<'e>> {
    let mut obj = Object::new(env)?;
    obj.set_named_property("id", r.id() as f64)?;
    obj.set_named_property("workflow", r.workflow())?;
    obj.set_named_property("state", r.state().name())?;
    obj.set_named_property("ok", r.is_success())?;
    obj.set_named_property("counts", JsStepCounts::from(r.counts()))?;
    obj.set_named_property("elapsedMs", ms(r.elapsed()))?;
    Ok(obj)
}

/// `outputs` (0), `errors` (1) or `steps` (2) of a `RunResult`.
pub(crate) fn lazy_part<'e>(env: &'e Env, r: &RunResult, part: u32) -> napi::Result<Unknown<'e>> {
    match part {
        0 => value::to_js(env, &r.outputs()),
        1 => {
            let errors: BTreeMap<String, String> = r
                .steps()
                .into_iter()
                .filter_map(|s| Some((s.name, s.error?)))
                .collect();
            errors.into_unknown(env)
        }
        _ => r
            .steps()
            .iter()
            .map(JsStepRecord::from)
            .collect::<Vec<_>>()
            .into_unknown(env),
    }
}

/// A snapshot of a running (or finished) run: `run.progress()`.
#[napi(object, js_name = "RunProgress", object_from_js = false)]
#[derive(Debug)]
pub struct JsRunProgress {
    /// The run's state so far.
    #[napi(ts_type = "'running' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out'")]
    pub state: String,
    /// Steps per state so far.
    pub counts: JsStepCounts,
}

impl From<RunProgress> for JsRunProgress {
    fn from(p: RunProgress) -> Self {
        JsRunProgress {
            state: p.state.name().to_owned(),
            counts: p.counts.into(),
        }
    }
}

/// A learned duration estimate of one system operation: `estimates()`.
#[napi(object, js_name = "Estimate", object_from_js = false)]
#[derive(Debug)]
pub struct JsEstimate {
    /// `system.operation`.
    pub key: String,
    /// Exponentially weighted mean, in milliseconds.
    pub mean_ms: f64,
    /// Exponentially weighted standard deviation, in milliseconds.
    pub stddev_ms: f64,
    /// Number of measurements folded in.
    pub samples: f64,
}

impl From<&Estimate> for JsEstimate {
    fn from(e: &Estimate) -> Self {
        JsEstimate {
            key: e.key.clone(),
            mean_ms: ms(e.mean),
            stddev_ms: ms(e.stddev),
            samples: e.samples as f64,
        }
    }
}
