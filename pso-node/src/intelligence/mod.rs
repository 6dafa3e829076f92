//! Coordination intelligence (pso-core `intelligence` and
//! `orchestrator/intelligence.rs`): `learnPatterns`, `snapshot`/`restore`
//! (with what was learned), `coordinationInsights`,
//! `optimizationRecommendations`, `optimizeCoordination` with its log and
//! `revertChange`, `evolveCoordination` and `evolutionLog`.
//!
//! Every result is a plain object (interfaces in `index.d.ts`) carrying its
//! evidence and sample counts; durations are milliseconds, counts are
//! numbers (exact up to 2^53).
//!
//! # Threads
//! Reading verbs are quick and run on the JS thread. The verbs that may run
//! lifecycle handlers or JS code — `optimizeCoordination` (it may activate
//! or deactivate systems), `revertChange` (likewise), `evolveCoordination`
//! (it calls the workload) — return Promises and run on a helper thread
//! (`promise::spawn`). The workload is a JS function queued on a weak
//! thread-safe function: the helper thread waits for each call (and for the
//! Promise it returns) while the JS thread stays free to run it and the
//! workflows it starts. Made from inside a lifecycle handler of the same
//! orchestrator (`optimizeCoordination` only with `apply`), they reject
//! with `PSO_BUSY` instead of waiting for themselves. Argument errors reject
//! too, as for the lifecycle verbs.
//!
//! # Errors
//! pso-core reports `revert_change` and `evolve_coordination` failures as
//! text. The binding checks what it can first (unknown change:
//! `PSO_NOT_FOUND` with `id`; unknown system: `PSO_NOT_FOUND`; a change
//! already reverted or never applied, a bad argument: `PSO_INVALID_ARGUMENT`)
//! and reports any other failure as `PSO_INVALID_ARGUMENT` with pso-core's
//! message.

mod evolve;
mod learn;
mod plan;

pub use self::evolve::{JsArmStats, JsEvolution, JsEvolveOptions};
pub use self::learn::{
    JsCoActivation, JsContention, JsContributor, JsCriticalPath, JsEdgePattern, JsHubLatency,
    JsHubShare, JsInsights, JsOperationPattern, JsPathStep, JsPatterns, JsTopicLatency,
};
pub use self::plan::{
    JsChange, JsCoordinationPlan, JsDeactivateIdle, JsDemoteDirect, JsOptimizeOptions,
    JsOtherAction, JsPreActivate, JsPromoteToDirect, JsRecommendation, JsSetConcurrencyLimit,
    JsSetSchedulingPolicy, JsSkipped,
};

use std::sync::Arc;

use napi::bindgen_prelude::{FromNapiValue, Function, JsObjectValue, Object, Unknown};
use napi::{Env, ValueType};
use napi_derive::napi;
use pso_core::{ErrorKind, Trial};

use self::evolve::{WorkloadTsfn, call_workload, evolution, evolve_options, strategy_change};
use self::learn::{insights, patterns};
use self::plan::{change, optimize_options, plan, recommendation};
use crate::error;
use crate::model::handler;
use crate::model::js;
use crate::orchestrator::{JsOrchestrator, guard};
use crate::promise;
use crate::state::{JsSnapshotInfo, state_error};

#[napi]
impl JsOrchestrator {
    /// Folds history into estimates, each with its sample count: per
    /// operation duration mean/stddev and recent failure rate, per edge
    /// message rates, co-activation counts. Also saved in the state store
    /// (key `pso.patterns`), so `snapshot` carries them.
    #[napi(ts_return_type = "Patterns")]
    pub fn learn_patterns(&self, env: &Env) -> napi::Result<JsPatterns> {
        guard(env, || Ok(patterns(self.open(env)?.learn_patterns())))
    }

    /// Writes the state store, with what was learned, to `path` atomically.
    /// `PSO_IO` if it cannot be written.
    #[napi(ts_args_type = "path: string", ts_return_type = "SnapshotInfo")]
    pub fn snapshot(&self, env: &Env, path: Unknown<'_>) -> napi::Result<JsSnapshotInfo> {
        guard(env, || {
            let core = self.open(env)?;
            let path = js::string(env, path, "path")?;
            core.snapshot(&path)
                .map(JsSnapshotInfo::from)
                .map_err(|e| state_error(env, &e))
        })
    }

    /// Restores the state store from `path` and loads the learned patterns
    /// in it, so duration estimates start warm. `PSO_IO`, `PSO_PARSE`.
    #[napi(ts_args_type = "path: string", ts_return_type = "SnapshotInfo")]
    pub fn restore(&self, env: &Env, path: Unknown<'_>) -> napi::Result<JsSnapshotInfo> {
        guard(env, || {
            let core = self.open(env)?;
            let path = js::string(env, path, "path")?;
            core.restore(&path)
                .map(JsSnapshotInfo::from)
                .map_err(|e| state_error(env, &e))
        })
    }

    /// Where coordination time goes: critical paths of recent runs, top
    /// latency contributors (waiting vs working), hot edges and idle direct
    /// pairs, resource contention, unhealthy, flapping and given-up systems.
    #[napi(ts_return_type = "Insights")]
    pub fn coordination_insights(&self, env: &Env) -> napi::Result<JsInsights> {
        guard(env, || {
            Ok(insights(self.open(env)?.coordination_insights()))
        })
    }

    /// Typed suggestions, most confident first, each with its target,
    /// evidence, expected gain, confidence and samples.
    #[napi(ts_return_type = "Array<Recommendation>")]
    pub fn optimization_recommendations(&self, env: &Env) -> napi::Result<Vec<JsRecommendation>> {
        guard(env, || {
            let core = self.open(env)?;
            Ok(core
                .optimization_recommendations()
                .iter()
                .map(recommendation)
                .collect())
        })
    }

    /// The recommendations that pass the guardrails; with `apply`, carries
    /// them out (which may activate or deactivate systems) and logs each
    /// change (`coordinationLog`, `revertChange`).
    #[napi(
        ts_args_type = "options?: OptimizeOptions",
        ts_return_type = "Promise<CoordinationPlan>"
    )]
    pub fn optimize_coordination<'e>(
        &self,
        env: &'e Env,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Object<'e>> {
        let prepared = guard(env, || {
            let core = self.open(env)?.clone();
            let (apply, g) = optimize_options(env, options)?;
            if apply && handler::inside_handler(env, self.owner()) {
                return Err(error::busy(env, "optimize_coordination"));
            }
            Ok((core, apply, g))
        });
        let (core, apply, g) = match prepared {
            Ok(p) => p,
            Err(e) => return promise::rejected(env, e),
        };
        promise::spawn(
            env,
            Some(self.in_flight()),
            "optimize",
            move || plan(&core.optimize_coordination_with(apply, g)),
            |_, p| Ok(p),
        )
    }

    /// Every change `optimizeCoordination` and `evolveCoordination` made,
    /// oldest first (bounded).
    #[napi(ts_return_type = "Array<CoordinationChange>")]
    pub fn coordination_log(&self, env: &Env) -> napi::Result<Vec<JsChange>> {
        guard(env, || {
            Ok(self
                .open(env)?
                .coordination_log()
                .iter()
                .map(change)
                .collect())
        })
    }

    /// Undoes change `id` (restores what it replaced) and resolves with the
    /// change, now `reverted`. `PSO_NOT_FOUND` (with `id`) for an unknown
    /// change; `PSO_INVALID_ARGUMENT` if it was already reverted, never
    /// applied, or undoing it failed.
    #[napi(
        ts_args_type = "id: number",
        ts_return_type = "Promise<CoordinationChange>"
    )]
    pub fn revert_change<'e>(&self, env: &'e Env, id: Unknown<'_>) -> napi::Result<Object<'e>> {
        let prepared = guard(env, || {
            let core = self.open(env)?.clone();
            let n = js::opt_number(env, id, "id")?
                .ok_or_else(|| error::invalid(env, "id must be a number"))?;
            let id = js::count(env, n, "id")?;
            let known = core.coordination_log().into_iter().any(|c| c.id == id);
            if !known {
                return Err(error::with_kind(
                    env,
                    ErrorKind::NotFound,
                    format!("no coordination change {id}"),
                    |obj| obj.set_named_property("id", id as f64),
                ));
            }
            if handler::inside_handler(env, self.owner()) {
                return Err(error::busy(env, "revert_change"));
            }
            Ok((core, id))
        });
        let (core, id) = match prepared {
            Ok(p) => p,
            Err(e) => return promise::rejected(env, e),
        };
        promise::spawn(
            env,
            Some(self.in_flight()),
            "revert",
            move || core.revert_change(id),
            move |env, r| match r {
                Ok(c) => Ok(change(&c)),
                Err(m) => Err(error::with_kind(
                    env,
                    ErrorKind::InvalidArgument,
                    m,
                    |obj| obj.set_named_property("id", id as f64),
                )),
            },
        )
    }

    /// Tries `change` on `workload` against the current setting, alternating
    /// baseline and trial calls (`rounds` each), and keeps it only if
    /// `metric` improved by `margin`; otherwise the setting is restored.
    /// `workload` is called with no arguments; a throw or a rejection fails
    /// that round. The trial is logged (`evolutionLog`); a kept change is
    /// also in `coordinationLog` and can be reverted.
    #[napi(
        ts_args_type = "change: StrategyChange, workload: () => unknown, options?: EvolveOptions",
        ts_return_type = "Promise<Evolution>"
    )]
    pub fn evolve_coordination<'e>(
        &self,
        env: &'e Env,
        change_: Unknown<'_>,
        workload: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Object<'e>> {
        let prepared = guard(env, || {
            let core = self.open(env)?.clone();
            let sc = strategy_change(env, &core, change_)?;
            let trial = evolve_options(env, options, Trial::new(sc))?;
            if workload.get_type()? != ValueType::Function {
                return Err(error::invalid(
                    env,
                    format!(
                        "workload must be a function, got {}",
                        js::type_of(&workload)
                    ),
                ));
            }
            if handler::inside_handler(env, self.owner()) {
                return Err(error::busy(env, "evolve_coordination"));
            }
            let f: Function<'_, (), Unknown<'static>> = Function::from_unknown(workload)?;
            let tsfn: WorkloadTsfn = f
                .build_threadsafe_function::<()>()
                .weak::<true>()
                .callee_handled::<false>()
                .build()?;
            Ok((core, trial, Arc::new(tsfn)))
        });
        let (core, trial, tsfn) = match prepared {
            Ok(p) => p,
            Err(e) => return promise::rejected(env, e),
        };
        promise::spawn(
            env,
            Some(self.in_flight()),
            "evolve",
            move || core.evolve_coordination(&trial, |_| call_workload(&tsfn)),
            |env, r| match r {
                Ok(e) => Ok(evolution(&e)),
                Err(m) => Err(error::with_kind(env, ErrorKind::InvalidArgument, m, |_| {
                    Ok(())
                })),
            },
        )
    }

    /// Every evolution trial, oldest first (bounded).
    #[napi(ts_return_type = "Array<Evolution>")]
    pub fn evolution_log(&self, env: &Env) -> napi::Result<Vec<JsEvolution>> {
        guard(env, || {
            Ok(self
                .open(env)?
                .evolution_log()
                .iter()
                .map(evolution)
                .collect())
        })
    }
}
