//! Options of the hub as JS passes them: `new Orchestrator({ hub })`,
//! `subscribe(pattern, options)`, overflow policy names. Every mistake is a
//! `PSO_INVALID_ARGUMENT` naming the bad value (typo'd keys included).

use std::time::Duration;

use napi::bindgen_prelude::Unknown;
use napi::{Env, ValueType};
use napi_derive::napi;
use pso_core::{Overflow, SubscribeOptions};

use crate::error;
use crate::model::js::{self, check_keys, get};

/// `subscribe(pattern, options)`.
#[napi(
    object,
    js_name = "SubscribeOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsSubscribeOptions {
    /// Queue capacity (default: the hub's `queueCapacity`, 1024).
    pub capacity: Option<u32>,
    /// What a full queue does (default: the hub's, `'block'`).
    #[napi(ts_type = "Overflow")]
    pub overflow: Option<String>,
    /// With `'block'`: how long a publisher waits for room (default 1000).
    pub block_timeout_ms: Option<f64>,
    /// Queue group: each message goes to one member of the group.
    pub group: Option<String>,
    /// The receiving system (edge rates, `pso.alert.<owner>.dropped`).
    pub owner: Option<String>,
    /// Callback subscriptions: called with what the callback threw (and the
    /// message); default: a process warning.
    #[napi(ts_type = "(error: unknown, message: Message | null) => void")]
    pub on_error: Option<()>,
}

/// `new Orchestrator({ hub })`: hub settings.
#[napi(
    object,
    js_name = "HubOptions",
    object_to_js = false,
    object_from_js = false
)]
#[derive(Debug)]
pub struct JsHubOptions {
    /// Default queue capacity of a subscription (default 1024).
    pub queue_capacity: Option<u32>,
    /// Default overflow policy (default `'block'`, 1000 ms).
    #[napi(ts_type = "Overflow")]
    pub overflow: Option<String>,
    /// With `'block'`: the default publisher wait, in ms.
    pub block_timeout_ms: Option<f64>,
    /// A pair is promoted above this many messages/s (default 10000).
    pub promote_threshold: Option<f64>,
    /// A promoted pair is demoted below this many messages/s (default 1000).
    pub demote_threshold: Option<f64>,
    /// The window of the rate average, in ms (default 10000).
    pub rate_window_ms: Option<f64>,
    /// Capacity of each direction of a direct channel (default 1024).
    pub direct_capacity: Option<u32>,
}

const HUB_KEYS: [&str; 7] = [
    "queueCapacity",
    "overflow",
    "blockTimeoutMs",
    "promoteThreshold",
    "demoteThreshold",
    "rateWindowMs",
    "directCapacity",
];

fn positive_count(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Option<usize>> {
    match js::opt_number(env, v, what)? {
        None => Ok(None),
        Some(n) => {
            let n = js::count(env, n, what)?;
            if n == 0 {
                return Err(error::invalid(env, format!("{what} must be at least 1")));
            }
            Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
        }
    }
}

fn rate(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Option<f64>> {
    match js::opt_number(env, v, what)? {
        Some(r) if r < 0.0 => Err(error::invalid(
            env,
            format!("{what} must be a non-negative rate, got {r}"),
        )),
        other => Ok(other),
    }
}

/// Reads `options.hub`.
pub(crate) fn hub_config(env: &Env, v: Unknown<'_>) -> napi::Result<Option<pso_core::HubConfig>> {
    let Some(obj) = js::opt_object(env, Some(v), "options.hub")? else {
        return Ok(None);
    };
    check_keys(env, &obj, &HUB_KEYS, "hub options")?;
    let mut c = pso_core::HubConfig::new();
    if let Some(n) = positive_count(env, get(&obj, "queueCapacity")?, "hub.queueCapacity")? {
        c = c.queue_capacity(n);
    }
    let block = js::duration_ms(
        env,
        get(&obj, "blockTimeoutMs")?,
        "hub.blockTimeoutMs",
        false,
    )?;
    match js::opt_string(env, get(&obj, "overflow")?, "hub.overflow")? {
        Some(name) => c = c.overflow(overflow(env, &name, block, "hub.overflow")?),
        None => {
            if let Some(b) = block {
                c = c.overflow(Overflow::Block(b));
            }
        }
    }
    if let Some(r) = rate(env, get(&obj, "promoteThreshold")?, "hub.promoteThreshold")? {
        c = c.promote_threshold(r);
    }
    if let Some(r) = rate(env, get(&obj, "demoteThreshold")?, "hub.demoteThreshold")? {
        c = c.demote_threshold(r);
    }
    if let Some(d) = js::duration_ms(env, get(&obj, "rateWindowMs")?, "hub.rateWindowMs", true)? {
        c = c.rate_window(d);
    }
    if let Some(n) = positive_count(env, get(&obj, "directCapacity")?, "hub.directCapacity")? {
        c = c.direct_capacity(n);
    }
    Ok(Some(c))
}

const SUB_KEYS: [&str; 6] = [
    "capacity",
    "overflow",
    "blockTimeoutMs",
    "group",
    "owner",
    "onError",
];

/// Reads an overflow policy name (camelCase or snake_case).
pub(crate) fn overflow(
    env: &Env,
    name: &str,
    block: Option<Duration>,
    what: &str,
) -> napi::Result<Overflow> {
    let p = match name {
        "block" => Overflow::Block(block.unwrap_or(Duration::from_secs(1))),
        "dropOldest" | "drop_oldest" => Overflow::DropOldest,
        "dropNewest" | "drop_newest" => Overflow::DropNewest,
        "error" => Overflow::Error,
        other => {
            return Err(error::invalid(
                env,
                format!(
                    "{what} must be 'block', 'dropOldest', 'dropNewest' or 'error', got '{other}'"
                ),
            ));
        }
    };
    if block.is_some() && !matches!(p, Overflow::Block(_)) {
        return Err(error::invalid(
            env,
            format!("blockTimeoutMs applies only to the 'block' policy, not '{name}'"),
        ));
    }
    Ok(p)
}

/// The JS name of a policy.
pub(crate) fn overflow_name(p: &Overflow) -> &'static str {
    match p {
        Overflow::Block(_) => "block",
        Overflow::DropOldest => "dropOldest",
        Overflow::DropNewest => "dropNewest",
        _ => "error",
    }
}

/// Parsed `subscribe` options.
pub(crate) struct SubOptions<'e> {
    pub(crate) core: SubscribeOptions,
    pub(crate) on_error: Option<Unknown<'e>>,
}

pub(crate) fn sub_options<'e>(env: &Env, v: Option<Unknown<'e>>) -> napi::Result<SubOptions<'e>> {
    let mut opts = SubscribeOptions::new();
    let Some(obj) = js::opt_object(env, v, "options")? else {
        return Ok(SubOptions {
            core: opts,
            on_error: None,
        });
    };
    check_keys(env, &obj, &SUB_KEYS, "subscribe options")?;
    if let Some(n) = js::opt_number(env, get(&obj, "capacity")?, "options.capacity")? {
        let n = js::count(env, n, "options.capacity")?;
        if n == 0 {
            return Err(error::invalid(env, "options.capacity must be at least 1"));
        }
        opts = opts.capacity(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let block = js::duration_ms(
        env,
        get(&obj, "blockTimeoutMs")?,
        "options.blockTimeoutMs",
        false,
    )?;
    match js::opt_string(env, get(&obj, "overflow")?, "options.overflow")? {
        Some(name) => opts = opts.overflow(overflow(env, &name, block, "options.overflow")?),
        None if block.is_some() => opts = opts.overflow(Overflow::Block(block.unwrap_or_default())),
        None => {}
    }
    if let Some(g) = js::opt_string(env, get(&obj, "group")?, "options.group")? {
        opts = opts.queue_group(g);
    }
    if let Some(o) = js::opt_string(env, get(&obj, "owner")?, "options.owner")? {
        opts = opts.owner(o);
    }
    let on_error: Unknown<'e> = get(&obj, "onError")?;
    let on_error = if js::is_nullish(&on_error) {
        None
    } else if on_error.get_type()? == ValueType::Function {
        Some(on_error)
    } else {
        return Err(error::invalid(
            env,
            format!(
                "options.onError must be a function, got {}",
                js::type_of(&on_error)
            ),
        ));
    };
    Ok(SubOptions {
        core: opts,
        on_error,
    })
}
