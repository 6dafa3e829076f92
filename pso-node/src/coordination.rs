//! Coordination verbs of `Orchestrator` (pso-core
//! `orchestrator/coordination.rs`): `coordinationStatus`, automatic
//! promotion of hot pairs, and minimalist mode (`runMinimal`, idle
//! timeout, pinning).
//!
//! `runMinimal` activates the systems a workflow uses, which runs their
//! handlers on the JS thread, so it returns a Promise: it awaits
//! `activateSystem` for each system that is not Active (in the workflow's
//! order; a failure rejects with that call's `PSO_HANDLER_FAILED`, naming
//! the system as `target`, and nothing runs), then starts the run with
//! `coordinateSystems` and resolves with its `Run`. No thread waits for JS.

use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{FnArgs, Function, JsValue, Object, This, ToNapiValue, Unknown};
use napi_derive::napi;

use crate::error;
use crate::hub::status::{self, JsCoordinationStatus};
use crate::model::js;
use crate::orchestrator::{JsOrchestrator, guard};

const RUN_MINIMAL: &str = r#"(async function (o, wf, options, systems) {
  for (const s of systems) {
    if (o.status(s).state !== 'Active') await o.activateSystem(s);
  }
  return o.coordinateSystems(wf, options);
})"#;

/// `null` or a positive number of milliseconds.
fn period(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Option<Duration>> {
    js::duration_ms(env, v, what, true)
}

#[napi]
impl JsOrchestrator {
    /// The current coordination mode, direct pairs, meshes, per-edge rates,
    /// recent mode changes, and minimalist mode's settings.
    #[napi(ts_return_type = "CoordinationStatus")]
    pub fn coordination_status<'e>(&self, env: &'e Env) -> napi::Result<JsCoordinationStatus<'e>> {
        guard(env, || {
            let core = self.open(env)?;
            status::coordination(env, core.coordination_status())
        })
    }

    /// Checks every `ms` milliseconds whether a pair's message rate crossed
    /// the promotion (or demotion) threshold, and promotes (or demotes) it;
    /// `null` turns it off.
    #[napi(ts_args_type = "ms: number | null")]
    pub fn set_auto_promote(&self, env: &Env, ms: Unknown<'_>) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            core.set_auto_promote(period(env, ms, "ms")?);
            Ok(())
        })
    }

    /// Promotes hot pairs and demotes cooled ones now; returns how many
    /// changed.
    #[napi]
    pub fn promote_pairs(&self, env: &Env) -> napi::Result<u32> {
        guard(env, || {
            let core = self.open(env)?;
            Ok(u32::try_from(core.promote_pairs()).unwrap_or(u32::MAX))
        })
    }

    /// Minimalist mode: deactivates active systems that are not pinned and
    /// have been idle for `ms` milliseconds; `null` turns it off.
    #[napi(ts_args_type = "ms: number | null")]
    pub fn set_idle_timeout(&self, env: &Env, ms: Unknown<'_>) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            core.set_idle_timeout(period(env, ms, "ms")?);
            Ok(())
        })
    }

    /// Pins a system (or unpins it, with `false`): a pinned system is never
    /// deactivated for being idle.
    #[napi(ts_args_type = "name: string, pinned?: boolean")]
    pub fn pin_system(
        &self,
        env: &Env,
        name: Unknown<'_>,
        pinned: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        guard(env, || {
            let core = self.open(env)?;
            let name = js::string(env, name, "name")?;
            let pinned = match pinned {
                Some(p) => js::opt_bool(env, p, "pinned")?.unwrap_or(true),
                None => true,
            };
            core.pin_system(&name, pinned)
                .map_err(|e| error::registry(env, &e))
        })
    }

    /// Runs one idle sweep now (with an idle timeout set). Resolves with the
    /// systems it deactivated (their handlers run on the event loop).
    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn deactivate_idle<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        type R = Box<dyn FnOnce(Env) -> napi::Result<Vec<String>> + Send>;
        let (deferred, promise) = env.create_deferred::<Vec<String>, R>()?;
        match guard(env, || Ok(self.open(env)?.clone())) {
            Ok(core) => {
                let spawned = std::thread::Builder::new()
                    .name("pso-node-call".to_owned())
                    .spawn(move || {
                        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            core.deactivate_idle()
                        }));
                        deferred.resolve(Box::new(move |env| {
                            out.map_err(|p| error::internal(&env, p))
                        }));
                    });
                if let Err(e) = spawned {
                    return Err(error::io(env, format!("cannot start a thread: {e}")));
                }
            }
            Err(e) => deferred.reject(e),
        }
        Ok(promise)
    }

    /// Minimalist mode for one task: activates only the systems `workflow`
    /// uses (and what they require and want), then runs it. Resolves with
    /// the `Run`.
    #[napi(
        ts_args_type = "workflow: Workflow, options?: RunOptions",
        ts_return_type = "Promise<Run>"
    )]
    pub fn run_minimal<'e>(
        &self,
        env: &'e Env,
        this: This<'e>,
        workflow: Unknown<'e>,
        options: Option<Unknown<'e>>,
    ) -> napi::Result<Unknown<'e>> {
        let systems = guard(env, || {
            self.open(env)?;
            let wf = crate::workflow::workflow_arg(env, workflow)?;
            Ok(wf
                .systems()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<String>>())
        });
        let systems = match systems {
            Ok(s) => s,
            Err(e) => return crate::hub::subscription::rejected(env, e).map(|p| p.to_unknown()),
        };
        type Args<'e> = FnArgs<(Unknown<'e>, Unknown<'e>, Unknown<'e>, Unknown<'e>)>;
        let run: Function<'_, Args<'_>, Unknown<'_>> = env.run_script(RUN_MINIMAL)?;
        let options = match options {
            Some(o) => o,
            None => ().into_unknown(env)?,
        };
        run.call(FnArgs::from((
            this.object.to_unknown(),
            workflow,
            options,
            systems.into_unknown(env)?,
        )))
    }
}
