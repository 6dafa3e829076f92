//! Hub settings from Python: `Orchestrator(hub={...})` (core's
//! `HubConfig`) and the keyword options of `Hub.subscribe` (core's
//! `SubscribeOptions`). Bad input raises `TypeError` (wrong type) or
//! `InvalidArgumentError` (bad value, unknown key), naming the field.

#![forbid(unsafe_code)]

use std::time::Duration;

use pso_core::{HubConfig, Overflow, SubscribeOptions};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::error::invalid_argument;
use crate::workflow::seconds_arg;

/// The policy names `overflow` accepts.
const POLICIES: &str = "'block', 'drop_oldest', 'drop_newest' or 'error'";

/// The keys `Orchestrator(hub=...)` accepts.
const HUB_KEYS: [&str; 9] = [
    "queue_capacity",
    "overflow",
    "block_timeout",
    "alert_interval",
    "direct_capacity",
    "promote_threshold",
    "demote_threshold",
    "rate_window",
    "match_cache",
];

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// An overflow policy from its name and, for `block`, a timeout (default 1
/// s). `None` for neither (the hub's default). A `block_timeout` alone means
/// `block`.
pub(crate) fn overflow(
    py: Python<'_>,
    name: Option<&str>,
    block_timeout: Option<Duration>,
    at: &str,
) -> PyResult<Option<Overflow>> {
    let policy = match (name, block_timeout) {
        (None, None) => return Ok(None),
        (None, Some(t)) | (Some("block"), Some(t)) => Overflow::Block(t),
        (Some("block"), None) => Overflow::Block(Duration::from_secs(1)),
        (Some(p @ ("drop_oldest" | "drop_newest" | "error")), Some(_)) => {
            return Err(invalid_argument(
                py,
                format!("{at}block_timeout only applies to overflow='block', not '{p}'"),
            ));
        }
        (Some("drop_oldest"), None) => Overflow::DropOldest,
        (Some("drop_newest"), None) => Overflow::DropNewest,
        (Some("error"), None) => Overflow::Error,
        (Some(other), _) => {
            return Err(invalid_argument(
                py,
                format!("{at}overflow must be {POLICIES}, got '{other}'"),
            ));
        }
    };
    Ok(Some(policy))
}

/// A positive int (capacities).
fn positive(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<usize> {
    let n = if obj.is_instance_of::<PyBool>() {
        None
    } else {
        obj.extract::<i128>().ok()
    };
    let n = n.ok_or_else(|| {
        PyTypeError::new_err(format!("{what} must be an int, got '{}'", type_name(obj)))
    })?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| invalid_argument(py, format!("{what} must be at least 1, got {n}")))
}

/// A finite rate (messages per second), at least 0.
fn rate(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number (messages per second), got 'bool'"
        )));
    }
    let r: f64 = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a number (messages per second), got '{}'",
            type_name(obj)
        ))
    })?;
    if !(r.is_finite() && r >= 0.0) {
        return Err(invalid_argument(
            py,
            format!("{what} must be a finite number, at least 0, got {r}"),
        ));
    }
    Ok(r)
}

/// `Orchestrator(hub={...})`.
pub(crate) fn hub_config(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<HubConfig> {
    let dict = obj.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "hub must be a dict of hub settings, got '{}'",
            type_name(obj)
        ))
    })?;
    let mut cfg = HubConfig::new();
    let mut policy: Option<String> = None;
    let mut block_timeout = None;
    for (k, v) in dict.iter() {
        let key: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!("hub: keys must be str, got '{}'", type_name(&k)))
        })?;
        let what = format!("hub['{key}']");
        if v.is_none() {
            continue; // the default
        }
        match key.as_str() {
            "queue_capacity" => cfg = cfg.queue_capacity(positive(py, &v, &what)?),
            "direct_capacity" => cfg = cfg.direct_capacity(positive(py, &v, &what)?),
            "match_cache" => cfg = cfg.match_cache(positive(py, &v, &what)?),
            "overflow" => {
                policy = Some(v.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "{what} must be a str ({POLICIES}), got '{}'",
                        type_name(&v)
                    ))
                })?)
            }
            "block_timeout" => block_timeout = Some(seconds_arg(py, &v, &what, false)?),
            "alert_interval" => cfg = cfg.alert_interval(seconds_arg(py, &v, &what, false)?),
            "rate_window" => cfg = cfg.rate_window(seconds_arg(py, &v, &what, true)?),
            "promote_threshold" => cfg = cfg.promote_threshold(rate(py, &v, &what)?),
            "demote_threshold" => cfg = cfg.demote_threshold(rate(py, &v, &what)?),
            other => {
                return Err(invalid_argument(
                    py,
                    format!(
                        "hub: unknown setting '{other}' (expected one of: {})",
                        HUB_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    if let Some(p) = overflow(py, policy.as_deref(), block_timeout, "hub: ")? {
        cfg = cfg.overflow(p);
    }
    Ok(cfg)
}

/// The keyword options of `Hub.subscribe`.
pub(crate) struct SubscribeArgs<'a, 'py> {
    pub(crate) capacity: Option<&'a Bound<'py, PyAny>>,
    pub(crate) overflow: Option<&'a str>,
    pub(crate) block_timeout: Option<&'a Bound<'py, PyAny>>,
    pub(crate) group: Option<String>,
    pub(crate) owner: Option<String>,
}

impl SubscribeArgs<'_, '_> {
    pub(crate) fn to_core(&self, py: Python<'_>) -> PyResult<SubscribeOptions> {
        let mut opts = SubscribeOptions::new();
        if let Some(c) = self.capacity.filter(|c| !c.is_none()) {
            opts = opts.capacity(positive(py, c, "capacity")?);
        }
        let block_timeout = match self.block_timeout.filter(|t| !t.is_none()) {
            Some(t) => Some(seconds_arg(py, t, "block_timeout", false)?),
            None => None,
        };
        if let Some(p) = overflow(py, self.overflow, block_timeout, "")? {
            opts = opts.overflow(p);
        }
        if let Some(g) = &self.group {
            opts = opts.queue_group(g.clone()); // empty: core's InvalidArgument
        }
        if let Some(o) = &self.owner {
            if o.is_empty() {
                return Err(invalid_argument(py, "owner must not be empty"));
            }
            opts = opts.owner(o.clone());
        }
        Ok(opts)
    }
}
