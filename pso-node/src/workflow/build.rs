//! Reading workflow steps and run options from JS (pso-core
//! `workflow/build.rs`, `workflow/env.rs`). As in `model`, every mistake — a
//! wrong type, a typo'd key, a step with both `fn` and `op` — is a
//! `PSO_INVALID_ARGUMENT` error naming the step and the field.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{JsObjectValue, JsValue, Object, Unknown};
use napi::{Env, ValueType};
use pso_core::{Priority, RetryPolicy, RunOptions, StepSpec};

use super::bridge::Shared;
use super::context::{self, JsSide};
use crate::error;
use crate::model::js::{self, check_keys, get};

/// A step of `o.workflow(name, steps)`.
#[napi_derive::napi(
    object,
    js_name = "StepSpec",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsStepSpec {
    /// Unique in the workflow.
    pub name: String,
    /// The system whose operation `op` runs (with `op`; not with `fn`).
    pub system: Option<String>,
    /// The operation of `system` to run.
    pub op: Option<String>,
    /// A function to run instead of a system operation.
    #[napi(js_name = "fn", ts_type = "StepFn")]
    pub func: Option<()>,
    /// Named inputs: input name -> the step whose output it is (implies `after`).
    pub inputs: Option<std::collections::HashMap<String, String>>,
    /// Steps this one runs after (ordering only).
    pub after: Option<Vec<String>>,
    /// Extra attempts after a failure (default 0). Timeouts are not retried.
    pub retries: Option<u32>,
    /// Delay before the first retry, in milliseconds (default 10); doubles
    /// per retry, with jitter.
    pub backoff_ms: Option<f64>,
    /// Longest retry delay, in milliseconds (default 10000).
    pub max_backoff_ms: Option<f64>,
    /// Timeout of one attempt, in milliseconds: the step is `timed_out` and
    /// its `ctx.signal` aborts.
    pub timeout_ms: Option<f64>,
    /// Priority class (default: the system's, or `'normal'` for a function).
    #[napi(ts_type = "'critical' | 'high' | 'normal' | 'low' | 'background'")]
    pub priority: Option<String>,
    /// Run the step only if this holds when it is ready: a predicate of its
    /// `ctx` (synchronous), or the name of an upstream step whose output must
    /// be truthy. Otherwise the step is `skipped`.
    #[napi(ts_type = "string | ((ctx: StepContext) => unknown)")]
    pub when: Option<()>,
}

/// Options of `coordinateSystems(workflow, options)`.
#[napi_derive::napi(
    object,
    js_name = "RunOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsRunOptions {
    /// The run's input: what steps without named inputs see as `ctx.input`,
    /// and every step as `ctx.runInput`.
    #[napi(ts_type = "ValueInput")]
    pub input: Option<()>,
    /// Time out everything unfinished this many milliseconds after the start.
    pub deadline_ms: Option<f64>,
    /// Record per-step times and learn durations (default true).
    pub timing: Option<bool>,
    /// Aborting it cancels the run (an already aborted one cancels it at once).
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<()>,
}

const STEP_KEYS: [&str; 12] = [
    "name",
    "system",
    "op",
    "fn",
    "inputs",
    "after",
    "retries",
    "backoffMs",
    "maxBackoffMs",
    "timeoutMs",
    "priority",
    "when",
];

const RUN_KEYS: [&str; 4] = ["input", "deadlineMs", "timing", "signal"];

/// A non-negative number of milliseconds; `positive` refuses 0.
fn millis(env: &Env, v: Unknown<'_>, what: &str, positive: bool) -> napi::Result<Option<Duration>> {
    let Some(ms) = js::opt_number(env, v, what)? else {
        return Ok(None);
    };
    if ms < 0.0 || (positive && ms == 0.0) {
        let expected = if positive { "positive" } else { "non-negative" };
        return Err(error::invalid(
            env,
            format!("{what} must be a {expected} number of milliseconds, got {ms}"),
        ));
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .map(Some)
        .map_err(|_| error::invalid(env, format!("{what} is too large: {ms}")))
}

/// Reads one step; `what` names it in errors until its name is known.
pub(crate) fn step_spec(
    env: &Env,
    shared: &Arc<Shared>,
    v: Unknown<'_>,
    what: &str,
) -> napi::Result<StepSpec> {
    let obj = js::object(env, v, what)?;
    let name = js::string(env, get(&obj, "name")?, &format!("{what}.name"))?;
    let what = format!("step '{name}'");
    check_keys(env, &obj, &STEP_KEYS, &what)?;
    let field = |key: &str| format!("{key} of {what}");

    let f = get(&obj, "fn")?;
    let system = js::opt_string(env, get(&obj, "system")?, &field("system"))?;
    let op = js::opt_string(env, get(&obj, "op")?, &field("op"))?;
    let mut spec = match (js::is_nullish(&f), system, op) {
        (false, None, None) => {
            let f = context::step_function(env, f, &field("fn"))?;
            StepSpec::shared(name.as_str(), shared.step_fn(Arc::new(f)))
        }
        (true, Some(system), Some(op)) => StepSpec::op(name.as_str(), system, op),
        (false, _, _) => {
            return Err(error::invalid(
                env,
                format!("{what} has fn and system/op: give either fn, or system and op"),
            ));
        }
        (true, _, _) => {
            return Err(error::invalid(
                env,
                format!("{what} needs either fn, or system and op"),
            ));
        }
    };
    if let Some(inputs) = js::opt_object(env, Some(get(&obj, "inputs")?), &field("inputs"))? {
        for input in Object::keys(&inputs)? {
            let from = js::string(
                env,
                get(&inputs, &input)?,
                &format!("inputs.{input} of {what}"),
            )?;
            spec = spec.input(input, from);
        }
    }
    for after in js::strings(env, get(&obj, "after")?, &field("after"))? {
        spec = spec.after(after);
    }
    let retries = match js::opt_number(env, get(&obj, "retries")?, &field("retries"))? {
        Some(n) => u32::try_from(js::count(env, n, &field("retries"))?)
            .map_err(|_| error::invalid(env, format!("{} is too large: {n}", field("retries"))))?,
        None => 0,
    };
    let default = RetryPolicy::default();
    let base = millis(env, get(&obj, "backoffMs")?, &field("backoffMs"), false)?;
    let max = millis(
        env,
        get(&obj, "maxBackoffMs")?,
        &field("maxBackoffMs"),
        false,
    )?;
    spec = spec.retry_policy(RetryPolicy {
        max_retries: retries,
        base: base.unwrap_or(default.base),
        max: max.unwrap_or(default.max),
        jitter: true,
    });
    if let Some(t) = millis(env, get(&obj, "timeoutMs")?, &field("timeoutMs"), true)? {
        spec = spec.timeout(t);
    }
    if let Some(p) = js::opt_string(env, get(&obj, "priority")?, &field("priority"))? {
        let p: Priority = p.parse().map_err(|m| error::invalid(env, m))?;
        spec = spec.priority(p);
    }
    let when = get(&obj, "when")?;
    match when.get_type()? {
        ValueType::Undefined | ValueType::Null => {}
        ValueType::String => spec = spec.when_truthy(js::string(env, when, &field("when"))?),
        ValueType::Function => {
            let f = context::function(env, when, &field("when"))?;
            spec = spec.when_try_shared(shared.condition_fn(Arc::new(f)));
        }
        _ => {
            return Err(error::invalid(
                env,
                format!(
                    "{} must be a function or a step name, got {}",
                    field("when"),
                    js::type_of(&when)
                ),
            ));
        }
    }
    Ok(spec)
}

/// Parsed `coordinateSystems` options.
pub(crate) struct RunArgs<'e> {
    pub(crate) options: RunOptions,
    pub(crate) deadline: Option<Duration>,
    pub(crate) signal: Option<Unknown<'e>>,
}

/// Reads `coordinateSystems(workflow, options)`'s options.
pub(crate) fn run_options<'e>(
    env: &Env,
    js_side: &JsSide,
    v: Option<Unknown<'e>>,
) -> napi::Result<RunArgs<'e>> {
    let Some(obj) = js::opt_object(env, v, "options")? else {
        return Ok(RunArgs {
            options: RunOptions::default(),
            deadline: None,
            signal: None,
        });
    };
    check_keys(env, &obj, &RUN_KEYS, "run options")?;
    let input = match js_side.value_from_js(env, get(&obj, "input")?) {
        Ok(v) => v,
        Err(bad) => return Err(error::invalid(env, bad.message("options.input"))),
    };
    let mut options = RunOptions::with_input(input);
    let deadline = millis(env, get(&obj, "deadlineMs")?, "options.deadlineMs", true)?;
    if let Some(d) = deadline {
        options = options.deadline(d);
    }
    let timing = get(&obj, "timing")?;
    match timing.get_type()? {
        ValueType::Undefined | ValueType::Null => {}
        ValueType::Boolean => options = options.timing(timing.coerce_to_bool()?),
        _ => {
            return Err(error::invalid(
                env,
                format!(
                    "options.timing must be a boolean, got {}",
                    js::type_of(&timing)
                ),
            ));
        }
    }
    let signal: Unknown<'e> = obj.get_named_property("signal")?;
    let signal = if js::is_nullish(&signal) {
        None
    } else if js_side.is_abort_signal(env, signal)? {
        Some(signal)
    } else {
        return Err(error::invalid(
            env,
            format!(
                "options.signal must be an AbortSignal, got {}",
                js::type_of(&signal)
            ),
        ));
    };
    Ok(RunArgs {
        options,
        deadline,
        signal,
    })
}
