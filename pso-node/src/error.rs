//! Error mapping: every pso-core error becomes a JS `Error` with
//! `code = "PSO_" + kind name`, `kind` (the name) and the extra properties of
//! docs/API.md:
//!
//! | kind | extra properties |
//! |---|---|
//! | HandlerFailed | `report`, `chain` (target first, failing system last), `target`, `cause` (the value the failing JS handler threw or rejected with) |
//! | Conflict | `system`, `other` |
//! | Cycle | `path` (names; the first is repeated at the end) |
//! | Parse | `line`, `column`, `source` (file name or `<string>`) |
//! | ExceedsCapacity | `system`, `dimension`, `requested`, `capacity` |
//! | ExceedsQuota | `group`, `dimension`, `requested`, `quota` |
//! | Timeout (resource wait) | `system`, `waitedMs`, `reason` |
//! | NotFound (resources) | `dimension` and `declared`, or `system` |
//! | Cancelled | `system` |
//!
//! Every kind of `pso_core::ErrorKind::ALL` has its code (`errorCodes()`
//! lists them: `PSO_NO_RESPONDERS`, `PSO_OVERFLOW`, `PSO_CAS_CONFLICT`,
//! `PSO_COMPACTED`, `PSO_EXCEEDS_CAPACITY`, `PSO_EXCEEDS_QUOTA`,
//! `PSO_CANCELLED`, ...), whether or not the Node API raises it yet.
//!
//! Workflow errors also carry what they name: `workflow`, and where they
//! apply `step`, `system`, `op`, `missing` (an unknown step), `available`
//! (the operations a system has), `state` (of a system that is not Active),
//! `path` (a workflow file that could not be read).
//!
//! The message is pso-core's `Display` text. The JS objects are built on the JS
//! thread; errors produced on other threads travel there as pso-core values
//! (they are `Send`) and are converted when the Promise settles.
//!
//! napi-rs would give a `Status`-typed error `code: 'GenericFailure'`, so every
//! error object is built here and handed to napi-rs as an already-made JS value
//! (`napi::Error::from_unknown_without_coercion`), which napi-rs throws or
//! rejects with unchanged.

use std::any::Any;
use std::fmt::Display;

use napi::bindgen_prelude::{JsObjectValue, JsValue, Object, ToNapiValue};
use napi::{Env, Status};
use napi_derive::napi;
use pso_core::{
    ErrorKind, HandlerError, LifecycleError, PsoError, RegistryError, ResourceError, TopologyError,
    WorkflowError,
};

use crate::lifecycle::JsActivationReport;

/// The value a JS handler threw (or rejected with), kept alive for
/// `err.cause`. napi-rs's `Error` holds a reference to the JS value that may
/// be dropped on any thread (the release is routed back to the JS thread).
pub(crate) struct JsCause(pub(crate) napi::Error);

/// One row of the error table: how a pso-core error kind appears in JS.
#[napi(object, js_name = "ErrorCode")]
#[derive(Debug)]
pub struct JsErrorCode {
    /// The kind name, as in `err.kind` (`"NOT_FOUND"`).
    pub kind: String,
    /// The JS code, as in `err.code` (`"PSO_NOT_FOUND"`).
    pub code: String,
    /// The C status number of the same kind (`pso_status`), for reference.
    pub status: i32,
}

/// Every error kind pso-core defines, with its JS `code`. Built from
/// `pso_core::ErrorKind::ALL`.
#[napi(js_name = "errorCodes")]
pub fn error_codes() -> Vec<JsErrorCode> {
    ErrorKind::ALL
        .iter()
        .map(|&k| JsErrorCode {
            kind: k.name().to_owned(),
            code: js_code(k),
            status: k.code(),
        })
        .collect()
}

/// `"PSO_" + kind name`.
pub(crate) fn js_code(kind: ErrorKind) -> String {
    format!("PSO_{}", kind.name())
}

/// Builds the JS error object and hands it to napi-rs. If building fails (the
/// environment is going away), falls back to a plain napi error with the
/// same message.
pub(crate) fn make(
    env: &Env,
    kind: ErrorKind,
    message: &str,
    extra: impl FnOnce(&Env, &mut Object<'_>) -> napi::Result<()>,
) -> napi::Error {
    let built = (|| {
        let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, message))?;
        obj.set_named_property("code", js_code(kind))?;
        obj.set_named_property("kind", kind.name())?;
        extra(env, &mut obj)?;
        Ok::<_, napi::Error>(napi::Error::from_unknown_without_coercion(obj.to_unknown()))
    })();
    built.unwrap_or_else(|_| napi::Error::new(Status::GenericFailure, message))
}

/// An error of `kind` that pso-core reports only as text (`revert_change`,
/// `evolve_coordination`), with extra properties set by `extra`.
pub(crate) fn with_kind(
    env: &Env,
    kind: ErrorKind,
    message: impl Display,
    extra: impl FnOnce(&mut Object<'_>) -> napi::Result<()>,
) -> napi::Error {
    make(env, kind, &message.to_string(), |_, obj| extra(obj))
}

/// A binding-level argument error (wrong JS type, unknown key, bad value).
pub(crate) fn invalid(env: &Env, message: impl Display) -> napi::Error {
    make(
        env,
        ErrorKind::InvalidArgument,
        &message.to_string(),
        |_, _| Ok(()),
    )
}

/// An error of `kind` with this message and no extra properties.
pub(crate) fn of_kind(env: &Env, kind: ErrorKind, message: &str) -> napi::Error {
    make(env, kind, message, |_, _| Ok(()))
}

/// A thread could not be started (the same kind pso-core uses for that).
pub(crate) fn io(env: &Env, message: impl Display) -> napi::Error {
    make(env, ErrorKind::Io, &message.to_string(), |_, _| Ok(()))
}

/// The orchestrator was closed (pso-core's own `Closed` error and message).
pub(crate) fn closed(env: &Env) -> napi::Error {
    registry(env, &RegistryError::Closed)
}

/// A lifecycle call made from inside a lifecycle handler.
pub(crate) fn busy(env: &Env, call: &'static str) -> napi::Error {
    lifecycle(env, &LifecycleError::Reentrant { call })
}

/// A panic caught at the binding boundary.
pub(crate) fn internal(env: &Env, payload: Box<dyn Any + Send>) -> napi::Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
    // A payload's own Drop may panic; never let that escape.
    if let Err(second) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(second);
    }
    make(
        env,
        ErrorKind::Internal,
        &format!("internal error in pso-node: {what}"),
        |_, _| Ok(()),
    )
}

/// Any pso-core error without extra properties (`BuildError`, ...).
pub(crate) fn plain<E: PsoError>(env: &Env, e: &E) -> napi::Error {
    make(env, e.kind(), &e.to_string(), |_, _| Ok(()))
}

fn registry_props(obj: &mut Object<'_>, e: &RegistryError) -> napi::Result<()> {
    if let RegistryError::Cycle { path, .. } = e {
        obj.set_named_property("path", path.clone())?;
    }
    Ok(())
}

/// A registry error: `path` for cycles.
pub(crate) fn registry(env: &Env, e: &RegistryError) -> napi::Error {
    make(env, e.kind(), &e.to_string(), |_, obj| {
        registry_props(obj, e)
    })
}

/// A topology error: `line`, `column`, `source` for parse errors (and for
/// registry errors whose position in the text is known), plus the registry
/// error's own properties.
pub(crate) fn topology(env: &Env, e: &TopologyError) -> napi::Error {
    make(env, e.kind(), &e.to_string(), |_, obj| match e {
        TopologyError::Parse {
            source_name,
            line,
            column,
            ..
        } => {
            obj.set_named_property("line", *line as u32)?;
            obj.set_named_property("column", *column as u32)?;
            obj.set_named_property("source", source_name.as_str())
        }
        TopologyError::Invalid {
            source_name,
            position,
            error,
        } => {
            if let Some((line, column)) = position {
                obj.set_named_property("line", *line as u32)?;
                obj.set_named_property("column", *column as u32)?;
            }
            obj.set_named_property("source", source_name.as_str())?;
            registry_props(obj, error)
        }
        _ => Ok(()),
    })
}

/// A lifecycle error: `report`/`chain`/`target`/`cause` for handler
/// failures, `system`/`other` for conflicts.
pub(crate) fn lifecycle(env: &Env, e: &LifecycleError) -> napi::Error {
    make(env, e.kind(), &e.to_string(), |env, obj| {
        match e {
            LifecycleError::Registry(inner) => return registry_props(obj, inner),
            LifecycleError::Conflict { system, other, .. } => {
                obj.set_named_property("system", system.as_str())?;
                obj.set_named_property("other", other.as_str())?;
                return Ok(());
            }
            LifecycleError::ActivationFailed { target, chain, .. } => {
                obj.set_named_property("target", target.as_str())?;
                obj.set_named_property("chain", chain.clone())?;
            }
            LifecycleError::DeactivationFailed { target, .. } => {
                obj.set_named_property("target", target.as_str())?;
                obj.set_named_property("chain", vec![target.clone()])?;
            }
            _ => return Ok(()),
        }
        if let Some(report) = e.report() {
            obj.set_named_property("report", JsActivationReport::from(report))?;
        }
        if let Some(cause) = e.cause().and_then(|c| js_cause(env, c)) {
            obj.set_named_property("cause", cause?)?;
        }
        Ok(())
    })
}

/// The original JS value behind a handler error, if a JS handler threw it.
fn js_cause<'e>(
    env: &'e Env,
    cause: &HandlerError,
) -> Option<napi::Result<napi::bindgen_prelude::Unknown<'e>>> {
    let JsCause(error) = cause.host_payload()?.downcast_ref::<JsCause>()?;
    Some(error.try_clone().and_then(|e| e.into_unknown(env)))
}

/// A workflow build or start error: `workflow`, `step`, `system`, `op`,
/// `missing`, `available`, `state` where they apply; `path` for cycles;
/// `line`, `column`, `source` for parse errors.
pub(crate) fn workflow(env: &Env, e: &WorkflowError) -> napi::Error {
    make(env, e.kind(), &e.to_string(), |_, obj| {
        match e {
            WorkflowError::DuplicateStep { workflow, step } => {
                obj.set_named_property("workflow", workflow.as_str())?;
                obj.set_named_property("step", step.as_str())?;
            }
            WorkflowError::UnknownStep {
                workflow,
                step,
                missing,
            } => {
                obj.set_named_property("workflow", workflow.as_str())?;
                obj.set_named_property("step", step.as_str())?;
                obj.set_named_property("missing", missing.as_str())?;
            }
            WorkflowError::UnknownSystem {
                workflow,
                step,
                system,
            } => {
                obj.set_named_property("workflow", workflow.as_str())?;
                obj.set_named_property("step", step.as_str())?;
                obj.set_named_property("system", system.as_str())?;
            }
            WorkflowError::UnknownOperation {
                workflow,
                step,
                system,
                op,
                available,
            } => {
                obj.set_named_property("workflow", workflow.as_str())?;
                obj.set_named_property("step", step.as_str())?;
                obj.set_named_property("system", system.as_str())?;
                obj.set_named_property("op", op.as_str())?;
                obj.set_named_property("available", available.clone())?;
            }
            WorkflowError::Cycle { workflow, path } => {
                obj.set_named_property("workflow", workflow.as_str())?;
                obj.set_named_property("path", path.clone())?;
            }
            WorkflowError::Parse {
                source_name,
                line,
                column,
                ..
            } => {
                obj.set_named_property("line", *line as u32)?;
                obj.set_named_property("column", *column as u32)?;
                obj.set_named_property("source", source_name.as_str())?;
            }
            WorkflowError::NotActive {
                workflow,
                step,
                system,
                state,
            } => {
                obj.set_named_property("workflow", workflow.as_str())?;
                obj.set_named_property("step", step.as_str())?;
                obj.set_named_property("system", system.as_str())?;
                obj.set_named_property("state", state.as_str())?;
            }
            WorkflowError::ForeignWorkflow { workflow } => {
                obj.set_named_property("workflow", workflow.as_str())?;
            }
            WorkflowError::Io { path, .. } => {
                obj.set_named_property("path", path.as_str())?;
            }
            _ => {}
        }
        Ok(())
    })
}

/// A resource error: `system`, `dimension`, `requested`, `capacity` when it
/// exceeds a capacity; `group`, `dimension`, `requested`, `quota` when it
/// exceeds a quota; `system`, `waitedMs`, `reason` for a wait that timed
/// out; `dimension` and `declared`, or `system`, for unknown names;
/// `system` for a cancelled request.
pub(crate) fn resource(env: &Env, e: &ResourceError) -> napi::Error {
    make(env, e.kind(), &e.to_string(), |_, obj| {
        match e {
            ResourceError::ExceedsCapacity {
                system,
                dimension,
                requested,
                capacity,
            } => {
                obj.set_named_property("system", system.as_str())?;
                obj.set_named_property("dimension", dimension.as_str())?;
                obj.set_named_property("requested", *requested as f64)?;
                obj.set_named_property("capacity", *capacity as f64)?;
            }
            ResourceError::ExceedsQuota {
                group,
                dimension,
                requested,
                quota,
            } => {
                obj.set_named_property("group", group.as_str())?;
                obj.set_named_property("dimension", dimension.as_str())?;
                obj.set_named_property("requested", *requested as f64)?;
                obj.set_named_property("quota", *quota as f64)?;
            }
            ResourceError::TimedOut {
                system,
                waited,
                reason,
            } => {
                obj.set_named_property("system", system.as_str())?;
                obj.set_named_property("waitedMs", waited.as_secs_f64() * 1000.0)?;
                obj.set_named_property("reason", reason.as_str())?;
            }
            ResourceError::UnknownDimension {
                dimension,
                declared,
            } => {
                obj.set_named_property("dimension", dimension.as_str())?;
                obj.set_named_property("declared", declared.clone())?;
            }
            ResourceError::UnknownSystem { system } | ResourceError::Cancelled { system } => {
                obj.set_named_property("system", system.as_str())?;
            }
            _ => {}
        }
        Ok(())
    })
}
