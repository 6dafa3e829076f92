//! Reading typed values out of untyped JS arguments.
//!
//! Arguments arrive as `Unknown` so that a wrong JS type is reported as a
//! `PSO_INVALID_ARGUMENT` error naming the argument and what it got, instead of
//! napi-rs's own conversion error (whose `code` is `'StringExpected'` and
//! the like, outside the error table of docs/API.md).

#![forbid(unsafe_code)]

use napi::bindgen_prelude::{JsObjectValue, JsValue, Object, Unknown};
use napi::{Env, ValueType};

use crate::error;

/// A short name of the JS type of `v` (`typeof`, with `null` and `array`).
pub(crate) fn type_of(v: &Unknown<'_>) -> &'static str {
    match v.get_type() {
        Ok(ValueType::Undefined) => "undefined",
        Ok(ValueType::Null) => "null",
        Ok(ValueType::Boolean) => "boolean",
        Ok(ValueType::Number) => "number",
        Ok(ValueType::String) => "string",
        Ok(ValueType::Symbol) => "symbol",
        Ok(ValueType::Object) if v.is_array().unwrap_or(false) => "array",
        Ok(ValueType::Object) => "object",
        Ok(ValueType::Function) => "function",
        Ok(ValueType::External) => "external",
        Ok(ValueType::BigInt) => "bigint",
        _ => "unknown",
    }
}

/// Whether `v` is `undefined` or `null`.
pub(crate) fn is_nullish(v: &Unknown<'_>) -> bool {
    matches!(v.get_type(), Ok(ValueType::Undefined | ValueType::Null))
}

fn wrong(env: &Env, what: &str, expected: &str, got: &Unknown<'_>) -> napi::Error {
    error::invalid(
        env,
        format!("{what} must be {expected}, got {}", type_of(got)),
    )
}

/// A string.
pub(crate) fn string(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<String> {
    if v.get_type()? != ValueType::String {
        return Err(wrong(env, what, "a string", &v));
    }
    v.coerce_to_string()?.into_utf8()?.into_owned()
}

/// A string, or `None` for `undefined`/`null`.
pub(crate) fn opt_string(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Option<String>> {
    if is_nullish(&v) {
        return Ok(None);
    }
    if v.get_type()? != ValueType::String {
        return Err(wrong(env, what, "a string, undefined or null", &v));
    }
    string(env, v, what).map(Some)
}

/// A finite number, or `None` for `undefined`/`null`.
pub(crate) fn opt_number(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Option<f64>> {
    if is_nullish(&v) {
        return Ok(None);
    }
    if v.get_type()? != ValueType::Number {
        return Err(wrong(env, what, "a number", &v));
    }
    let n = v.coerce_to_number()?.get_double()?;
    if !n.is_finite() {
        return Err(error::invalid(
            env,
            format!("{what} must be finite, got {n}"),
        ));
    }
    Ok(Some(n))
}

/// A number of milliseconds as a `Duration`, or `None` for
/// `undefined`/`null`; `positive` refuses 0.
pub(crate) fn duration_ms(
    env: &Env,
    v: Unknown<'_>,
    what: &str,
    positive: bool,
) -> napi::Result<Option<std::time::Duration>> {
    let Some(ms) = opt_number(env, v, what)? else {
        return Ok(None);
    };
    if ms < 0.0 || (positive && ms == 0.0) {
        let expected = if positive { "positive" } else { "non-negative" };
        return Err(error::invalid(
            env,
            format!("{what} must be a {expected} number of milliseconds, got {ms}"),
        ));
    }
    std::time::Duration::try_from_secs_f64(ms / 1000.0)
        .map(Some)
        .map_err(|_| error::invalid(env, format!("{what} is too large: {ms}")))
}

/// A boolean, or `None` for `undefined`/`null`.
pub(crate) fn opt_bool(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Option<bool>> {
    if is_nullish(&v) {
        return Ok(None);
    }
    if v.get_type()? != ValueType::Boolean {
        return Err(wrong(env, what, "a boolean", &v));
    }
    v.coerce_to_bool().map(Some)
}

/// A non-negative integer no larger than `Number.MAX_SAFE_INTEGER`.
pub(crate) fn count(env: &Env, n: f64, what: &str) -> napi::Result<u64> {
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
    if n < 0.0 || n.fract() != 0.0 || n > MAX_SAFE_INTEGER {
        return Err(error::invalid(
            env,
            format!("{what} must be a non-negative integer, got {n}"),
        ));
    }
    Ok(n as u64)
}

/// A plain object (not an array, not a function).
pub(crate) fn object<'e>(env: &Env, v: Unknown<'e>, what: &str) -> napi::Result<Object<'e>> {
    if v.get_type()? != ValueType::Object || v.is_array()? {
        return Err(wrong(env, what, "an object", &v));
    }
    v.coerce_to_object()
}

/// An object, or `None` for `undefined`/`null`.
pub(crate) fn opt_object<'e>(
    env: &Env,
    v: Option<Unknown<'e>>,
    what: &str,
) -> napi::Result<Option<Object<'e>>> {
    match v {
        None => Ok(None),
        Some(v) if is_nullish(&v) => Ok(None),
        Some(v) => object(env, v, what).map(Some),
    }
}

/// The elements of an array.
pub(crate) fn array<'e>(env: &Env, v: Unknown<'e>, what: &str) -> napi::Result<Vec<Unknown<'e>>> {
    if v.get_type()? != ValueType::Object || !v.is_array()? {
        return Err(wrong(env, what, "an array", &v));
    }
    let arr = v.coerce_to_object()?;
    (0..arr.get_array_length()?)
        .map(|i| arr.get_element::<Unknown<'e>>(i))
        .collect()
}

/// An array of strings; `undefined`/`null` is empty.
pub(crate) fn strings(env: &Env, v: Unknown<'_>, what: &str) -> napi::Result<Vec<String>> {
    if is_nullish(&v) {
        return Ok(Vec::new());
    }
    array(env, v, what)?
        .into_iter()
        .enumerate()
        .map(|(i, s)| string(env, s, &format!("{what}[{i}]")))
        .collect()
}

/// Property `key` of `obj`.
pub(crate) fn get<'e>(obj: &Object<'e>, key: &str) -> napi::Result<Unknown<'e>> {
    obj.get_named_property::<Unknown<'e>>(key)
}

/// Fails on an own enumerable key of `obj` that is not in `allowed` (a typo
/// such as `requries` must not be ignored silently).
pub(crate) fn check_keys(
    env: &Env,
    obj: &Object<'_>,
    allowed: &[&str],
    what: &str,
) -> napi::Result<()> {
    for key in Object::keys(obj)? {
        if !allowed.contains(&key.as_str()) {
            return Err(error::invalid(
                env,
                format!(
                    "unknown key '{key}' in {what} (expected one of: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
