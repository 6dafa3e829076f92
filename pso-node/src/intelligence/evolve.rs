//! `evolveCoordination`: reading the strategy change and the trial options,
//! calling the JS workload from the helper thread (each call waited for,
//! with its Promise, while the JS thread stays free), and the `Evolution`
//! it returns.

use std::sync::mpsc::{self, Sender};

use napi::bindgen_prelude::{CallbackContext, JsValue, PromiseRaw, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, ValueType};
use napi_derive::napi;
use pso_core::{
    ArmStats, Evolution, Orchestrator, SchedulingPolicy, StrategyChange, Trial, TrialMetric,
};

use super::learn::ms;
use crate::error;
use crate::model::handler::{raised, raised_from_error};
use crate::model::js::{self, check_keys, get};

/// One arm of an evolution trial.
#[napi(object, js_name = "ArmStats", object_from_js = false)]
#[derive(Debug)]
pub struct JsArmStats {
    /// Workload calls.
    pub rounds: u32,
    /// Median wall time of one call, ms.
    pub median_ms: f64,
    /// 99th percentile wall time of one call, ms.
    pub p99_ms: f64,
    /// Share of calls that failed (threw or rejected).
    pub error_rate: f64,
}

/// A finished evolution trial.
#[napi(object, js_name = "Evolution", object_from_js = false)]
#[derive(Debug)]
pub struct JsEvolution {
    /// Its id in the log.
    pub id: f64,
    /// What was tried, in words.
    pub change: String,
    /// Measured without the change.
    pub baseline: JsArmStats,
    /// Measured with it.
    pub trial: JsArmStats,
    /// The relative improvement of the metric (positive: better).
    pub improvement: f64,
    /// Whether the change was kept.
    pub kept: bool,
    /// Why, in words and numbers.
    pub reason: String,
}

/// Declares `evolveCoordination`'s options.
#[napi(
    object,
    js_name = "EvolveOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsEvolveOptions {
    /// Workload calls per arm (default 5).
    pub rounds: Option<u32>,
    /// What is compared (default `'makespan'`: median wall time).
    #[napi(ts_type = "'makespan' | 'p99' | 'error_rate'")]
    pub metric: Option<String>,
    /// The relative improvement needed to keep the change (default 0.05).
    pub margin: Option<f64>,
}

pub(super) fn arm(a: &ArmStats) -> JsArmStats {
    JsArmStats {
        rounds: u32::try_from(a.rounds).unwrap_or(u32::MAX),
        median_ms: ms(a.median),
        p99_ms: ms(a.p99),
        error_rate: a.error_rate,
    }
}

pub(super) fn evolution(e: &Evolution) -> JsEvolution {
    JsEvolution {
        id: e.id as f64,
        change: e.change.clone(),
        baseline: arm(&e.baseline),
        trial: arm(&e.trial),
        improvement: e.improvement,
        kept: e.kept,
        reason: e.reason.clone(),
    }
}

pub(super) const EVOLVE_KEYS: [&str; 3] = ["rounds", "metric", "margin"];

/// Reads a strategy change: `{ kind: 'scheduling_policy', policy }` or
/// `{ kind: 'concurrency_limit', system, limit }`.
pub(super) fn strategy_change(
    env: &Env,
    core: &Orchestrator,
    v: Unknown<'_>,
) -> napi::Result<StrategyChange> {
    let obj = js::object(env, v, "change")?;
    let kind = js::string(env, get(&obj, "kind")?, "change.kind")?;
    match kind.as_str() {
        "scheduling_policy" => {
            check_keys(env, &obj, &["kind", "policy"], "change")?;
            let p: SchedulingPolicy = js::string(env, get(&obj, "policy")?, "change.policy")?
                .parse()
                .map_err(|m: String| error::invalid(env, m))?;
            Ok(StrategyChange::SchedulingPolicy(p))
        }
        "concurrency_limit" => {
            check_keys(env, &obj, &["kind", "system", "limit"], "change")?;
            let system = js::string(env, get(&obj, "system")?, "change.system")?;
            core.status(&system).map_err(|e| error::registry(env, &e))?;
            let limit = match js::opt_number(env, get(&obj, "limit")?, "change.limit")? {
                None => None,
                Some(n) => match u32::try_from(js::count(env, n, "change.limit")?) {
                    Ok(l) if l >= 1 => Some(l),
                    _ => {
                        return Err(error::invalid(
                            env,
                            format!(
                                "change.limit must be an integer of at least 1 or null, got {n}"
                            ),
                        ));
                    }
                },
            };
            Ok(StrategyChange::ConcurrencyLimit { system, limit })
        }
        other => Err(error::invalid(
            env,
            format!(
                "change.kind must be 'scheduling_policy' or 'concurrency_limit', got '{other}'"
            ),
        )),
    }
}

/// Reads `evolveCoordination`'s options into `trial`.
pub(super) fn evolve_options(
    env: &Env,
    v: Option<Unknown<'_>>,
    mut trial: Trial,
) -> napi::Result<Trial> {
    let Some(obj) = js::opt_object(env, v, "options")? else {
        return Ok(trial);
    };
    check_keys(env, &obj, &EVOLVE_KEYS, "evolveCoordination options")?;
    if let Some(n) = js::opt_number(env, get(&obj, "rounds")?, "options.rounds")? {
        let n = js::count(env, n, "options.rounds")?;
        if n == 0 {
            return Err(error::invalid(env, "options.rounds must be at least 1"));
        }
        trial = trial.rounds(usize::try_from(n).unwrap_or(usize::MAX));
    }
    match js::opt_string(env, get(&obj, "metric")?, "options.metric")?.as_deref() {
        None => {}
        Some("makespan") => trial = trial.metric(TrialMetric::Makespan),
        Some("p99") => trial = trial.metric(TrialMetric::P99),
        Some("error_rate") => trial = trial.metric(TrialMetric::ErrorRate),
        Some(other) => {
            return Err(error::invalid(
                env,
                format!("options.metric must be 'makespan', 'p99' or 'error_rate', got '{other}'"),
            ));
        }
    }
    if let Some(m) = js::opt_number(env, get(&obj, "margin")?, "options.margin")? {
        trial = trial.margin(m);
    }
    Ok(trial)
}

/// Weak (the evolve Promise keeps the loop alive), no error-first argument.
pub(super) type WorkloadTsfn = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, true>;

/// Runs on the helper thread: one workload call, waited for.
pub(super) fn call_workload(tsfn: &WorkloadTsfn) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<Result<(), String>>();
    let status = tsfn.call_with_return_value(
        (),
        ThreadsafeFunctionCallMode::NonBlocking,
        move |ret, env| {
            settle_workload(&env, ret, tx);
            // An `Err` here would go to `napi_fatal_exception`: never return one.
            Ok(())
        },
    );
    if status != Status::Ok {
        return Err(format!(
            "cannot call the workload: the Node.js environment is shutting down ({status})"
        ));
    }
    rx.recv().unwrap_or_else(|_| {
        Err("the Promise the workload returned was collected without settling".to_owned())
    })
}

/// On the JS thread: a throw or a rejection fails the round.
pub(super) fn settle_workload(
    env: &Env,
    ret: napi::Result<Unknown<'static>>,
    tx: Sender<Result<(), String>>,
) {
    let value = match ret {
        Ok(v) => v,
        Err(thrown) => {
            let _ = tx.send(Err(raised_from_error(env, thrown).to_string()));
            return;
        }
    };
    if value.get_type().ok() != Some(ValueType::Object) || !value.is_promise().unwrap_or(false) {
        let _ = tx.send(Ok(()));
        return;
    }
    let on_error = tx.clone();
    let resolved = tx.clone();
    let promise = PromiseRaw::<Unknown<'_>>::new(env.raw(), value.raw());
    let awaited = promise
        .then(move |_ctx: CallbackContext<Unknown<'_>>| {
            let _ = resolved.send(Ok(()));
            Ok(())
        })
        .and_then(|then| {
            then.catch(move |ctx: CallbackContext<Unknown<'_>>| {
                let _ = tx.send(Err(raised(ctx.value, None).to_string()));
                Ok(())
            })
        });
    if let Err(e) = awaited {
        let _ = on_error.send(Err(format!(
            "cannot wait for the Promise the workload returned: {e}"
        )));
    }
}
