//! Topology and export formats given as strings (pso-core `topology/`).

#![forbid(unsafe_code)]

use napi::Env;
use napi::bindgen_prelude::Unknown;
use pso_core::{ExportFormat, TopologyFormat};

use crate::error;
use crate::model::js;

/// `loadTopologyString(text, format?)`: `"toml"` (default) or `"json"`.
pub(crate) fn topology_format(env: &Env, v: Option<Unknown<'_>>) -> napi::Result<TopologyFormat> {
    match v {
        None => Ok(TopologyFormat::Toml),
        Some(v) => match js::opt_string(env, v, "format")? {
            None => Ok(TopologyFormat::Toml),
            Some(s) => s.parse().map_err(|m: String| error::invalid(env, m)),
        },
    }
}

/// `export(format?)`: `"json"` (default), `"toml"`, `"dot"` or `"mermaid"`.
pub(crate) fn export_format(env: &Env, v: Option<Unknown<'_>>) -> napi::Result<ExportFormat> {
    match v {
        None => Ok(ExportFormat::Json),
        Some(v) => match js::opt_string(env, v, "format")? {
            None => Ok(ExportFormat::Json),
            Some(s) => s.parse().map_err(|m: String| error::invalid(env, m)),
        },
    }
}
