//! `pso_core::Value` to and from JS values (pso-core `value.rs`).
//!
//! | JS | `Value` |
//! |---|---|
//! | `undefined`, `null` | `Null` (and `Null` becomes `null`) |
//! | boolean | `Bool` |
//! | number | `Int` if it is an integer within ±2^53 (and not `-0`), else `Float` |
//! | BigInt | `Int` if it fits in 64 bits (an `Int` beyond ±2^53 comes back as a BigInt) |
//! | string | `String` |
//! | `Buffer`, `Uint8Array` | `Bytes` (it comes back as a `Buffer`) |
//! | array | `List` (holes are `Null`) |
//! | plain object (prototype `Object.prototype` or `null`) | `Map` of its own enumerable string keys |
//!
//! Anything else — functions, symbols, class instances (`Date`, `Map`,
//! `Promise`, ...), other typed arrays, values nested deeper than
//! [`MAX_DEPTH`] (a cycle, say) — is refused with a message naming the type
//! and where it was found (`a Date at .when[2]`); it never panics.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use napi::bindgen_prelude::{
    BigInt, Buffer, FromNapiValue, JsObjectValue, JsValue, Null, Object, Property,
    PropertyAttributes, ToNapiValue, TypedArray, TypedArrayType, Uint8ArraySlice, Unknown,
};
use napi::{Env, ValueType};
use pso_core::Value;

/// How deep values may nest (deeper is refused, which also stops cycles).
pub(crate) const MAX_DEPTH: usize = 200;

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER + 1`).
const EXACT: f64 = 9_007_199_254_740_992.0;

const EXPECTED: &str = "expected undefined, null, a boolean, a number, a BigInt, a string, \
     a Buffer/Uint8Array, an array or a plain object";

/// Why a JS value cannot become a `Value`: what was found, and where.
#[derive(Debug)]
pub(crate) struct Unsupported {
    found: String,
    path: String,
    /// Reading it failed in N-API (a getter or Proxy trap threw, say): the
    /// N-API reason until `from_js` replaces `found` with the exception.
    unreadable: Option<String>,
    threw: bool,
}

impl Unsupported {
    fn new(found: impl Into<String>) -> Self {
        Unsupported {
            found: found.into(),
            path: String::new(),
            unreadable: None,
            threw: false,
        }
    }

    fn at(mut self, segment: String) -> Self {
        self.path.insert_str(0, &segment);
        self
    }

    /// `"cannot pass a Date (at .when) to PSO: expected ..."`, with `what`
    /// saying which value it was (`"the output of step 'x'"`).
    pub(crate) fn message(&self, what: &str) -> String {
        let at = if self.path.is_empty() {
            String::new()
        } else {
            format!(" (at {})", self.path)
        };
        if self.threw {
            return format!("{what} could not be read{at}: {}", self.found);
        }
        format!(
            "{what} is {}{at}, which PSO cannot carry: {EXPECTED}",
            self.found
        )
    }
}

impl From<napi::Error> for Unsupported {
    fn from(e: napi::Error) -> Self {
        Unsupported {
            found: String::new(),
            path: String::new(),
            unreadable: Some(e.reason),
            threw: false,
        }
    }
}

/// Converts a JS value to a `Value`.
///
/// Reading runs JS (getters, Proxy traps); when that throws, the exception
/// is left pending by N-API and must not leak into the next call, so
/// `take_exception` is called: it clears a pending exception and describes
/// it (`"Error: boom"`), or returns `None` if there was none.
pub(crate) fn from_js(
    env: &Env,
    v: Unknown<'_>,
    take_exception: &dyn Fn() -> Option<String>,
) -> Result<Value, Unsupported> {
    let mut reader = Reader {
        env,
        object_prototype: None,
    };
    reader.read(v, 0).map_err(|mut bad| {
        // Only failures leave exceptions behind (`instance_name` reads
        // `constructor.name`, which may throw too).
        let thrown = take_exception();
        if let Some(reason) = bad.unreadable.take() {
            bad.threw = true;
            bad.found = match thrown {
                Some(e) => format!("reading it threw {e}"),
                None => format!("N-API failed ({reason})"),
            };
        }
        bad
    })
}

struct Reader<'a, 'e> {
    env: &'a Env,
    object_prototype: Option<Unknown<'e>>,
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

fn key_segment(key: &str) -> String {
    if is_identifier(key) {
        format!(".{key}")
    } else {
        format!("[{key:?}]")
    }
}

impl<'e> Reader<'_, 'e> {
    fn read(&mut self, v: Unknown<'e>, depth: usize) -> Result<Value, Unsupported> {
        if depth > MAX_DEPTH {
            return Err(Unsupported::new(format!(
                "nested more than {MAX_DEPTH} levels deep (a cycle?)"
            )));
        }
        Ok(match v.get_type()? {
            ValueType::Undefined | ValueType::Null => Value::Null,
            ValueType::Boolean => Value::Bool(v.coerce_to_bool()?),
            ValueType::Number => number(v.coerce_to_number()?.get_double()?),
            ValueType::String => Value::String(v.coerce_to_string()?.into_utf8()?.into_owned()?),
            ValueType::BigInt => {
                let (i, lossless) = BigInt::from_unknown(v)?.get_i64();
                if !lossless {
                    return Err(Unsupported::new(
                        "a BigInt outside the 64-bit integer range",
                    ));
                }
                Value::Int(i)
            }
            ValueType::Symbol => return Err(Unsupported::new("a symbol")),
            ValueType::Function => return Err(Unsupported::new("a function")),
            ValueType::External => return Err(Unsupported::new("an external")),
            ValueType::Object => return self.object(v, depth),
            _ => return Err(Unsupported::new("a value of an unknown type")),
        })
    }

    fn object(&mut self, v: Unknown<'e>, depth: usize) -> Result<Value, Unsupported> {
        if v.is_array()? {
            let arr = v.coerce_to_object()?;
            let n = arr.get_array_length()?;
            let mut items = Vec::with_capacity(n.min(4096) as usize);
            for i in 0..n {
                let item = arr
                    .get_element::<Unknown<'e>>(i)
                    .map_err(|e| Unsupported::from(e).at(format!("[{i}]")))
                    .and_then(|item| {
                        self.read(item, depth + 1)
                            .map_err(|e| e.at(format!("[{i}]")))
                    })?;
                items.push(item);
            }
            return Ok(Value::List(items));
        }
        if v.is_typedarray()? {
            let kind = TypedArray::from_unknown(v)?.typed_array_type;
            if kind != TypedArrayType::Uint8 {
                return Err(Unsupported::new(format!("a {}", typed_array_name(kind))));
            }
            return Ok(Value::Bytes(Uint8ArraySlice::from_unknown(v)?.to_vec()));
        }
        let special = [
            (v.is_date()?, "a Date"),
            (v.is_promise()?, "a Promise"),
            (v.is_arraybuffer()?, "an ArrayBuffer"),
            (v.is_dataview()?, "a DataView"),
        ];
        if let Some((_, name)) = special.iter().find(|(is, _)| *is) {
            return Err(Unsupported::new(*name));
        }
        let obj = v.coerce_to_object()?;
        let proto = obj.get_prototype()?;
        if proto.get_type()? != ValueType::Null && !self.is_object_prototype(proto)? {
            return Err(Unsupported::new(instance_name(proto)));
        }
        let mut map = BTreeMap::new();
        for key in Object::keys(&obj)? {
            let value = obj
                .get_named_property::<Unknown<'e>>(&key)
                .map_err(Unsupported::from)
                .and_then(|item| self.read(item, depth + 1))
                .map_err(|e| e.at(key_segment(&key)))?;
            map.insert(key, value);
        }
        Ok(Value::Map(map))
    }

    fn is_object_prototype(&mut self, proto: Unknown<'e>) -> napi::Result<bool> {
        let expected = match self.object_prototype {
            Some(p) => p,
            None => {
                let global = self.env.get_global()?;
                let object: Unknown<'e> = global.get_named_property("Object")?;
                let p: Unknown<'e> = object.coerce_to_object()?.get_named_property("prototype")?;
                self.object_prototype = Some(p);
                p
            }
        };
        self.env.strict_equals(proto, expected)
    }
}

/// `an instance of Map` (from the prototype's `constructor.name`).
fn instance_name(proto: Unknown<'_>) -> String {
    let name = proto
        .coerce_to_object()
        .and_then(|p| p.get_named_property::<Unknown<'_>>("constructor"))
        .ok()
        .filter(|c| c.get_type().ok() == Some(ValueType::Function))
        .and_then(|c| c.coerce_to_object().ok())
        .and_then(|c| c.get_named_property::<Unknown<'_>>("name").ok())
        .filter(|n| n.get_type().ok() == Some(ValueType::String))
        .and_then(|n| {
            n.coerce_to_string()
                .ok()?
                .into_utf8()
                .ok()?
                .into_owned()
                .ok()
        })
        .filter(|n| !n.is_empty());
    match name {
        Some(n) => format!("an instance of {n}"),
        None => "an object with a custom prototype".to_owned(),
    }
}

fn typed_array_name(kind: TypedArrayType) -> &'static str {
    match kind {
        TypedArrayType::Int8 => "Int8Array",
        TypedArrayType::Uint8 => "Uint8Array",
        TypedArrayType::Uint8Clamped => "Uint8ClampedArray",
        TypedArrayType::Int16 => "Int16Array",
        TypedArrayType::Uint16 => "Uint16Array",
        TypedArrayType::Int32 => "Int32Array",
        TypedArrayType::Uint32 => "Uint32Array",
        TypedArrayType::Float32 => "Float32Array",
        TypedArrayType::Float64 => "Float64Array",
        TypedArrayType::BigInt64 => "BigInt64Array",
        TypedArrayType::BigUint64 => "BigUint64Array",
        _ => "typed array",
    }
}

/// A JS number: `Int` when it is an exact integer, else `Float`.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= EXACT && !(n == 0.0 && n.is_sign_negative()) {
        Value::Int(n as i64)
    } else {
        Value::Float(n)
    }
}

/// Converts a `Value` to a fresh JS value.
pub(crate) fn to_js<'e>(env: &'e Env, v: &Value) -> napi::Result<Unknown<'e>> {
    write(env, v, 0)
}

fn write<'e>(env: &'e Env, v: &Value, depth: usize) -> napi::Result<Unknown<'e>> {
    if depth > MAX_DEPTH {
        return Err(napi::Error::from_reason(format!(
            "a value nested more than {MAX_DEPTH} levels deep cannot be passed to JS"
        )));
    }
    match v {
        Value::Null => Null.into_unknown(env),
        Value::Bool(b) => b.into_unknown(env),
        Value::Int(i) if (*i as f64).abs() <= EXACT => (*i as f64).into_unknown(env),
        Value::Int(i) => BigInt::from(*i).into_unknown(env),
        Value::Float(f) => f.into_unknown(env),
        Value::String(s) => s.as_str().into_unknown(env),
        Value::Bytes(b) => Buffer::from(b.clone()).into_unknown(env),
        Value::List(items) => {
            let mut arr = env.create_array(u32::try_from(items.len()).unwrap_or(u32::MAX))?;
            for (i, item) in items.iter().enumerate() {
                arr.set(i as u32, write(env, item, depth + 1)?)?;
            }
            arr.into_unknown(env)
        }
        Value::Map(map) => {
            let mut obj = Object::new(env)?;
            for (k, item) in map {
                set_key(&mut obj, k, write(env, item, depth + 1)?)?;
            }
            Ok(obj.to_unknown())
        }
    }
}

/// `obj[key] = value` as a data property, also for the key `"__proto__"`
/// (a plain assignment would set the prototype instead).
pub(crate) fn set_key(obj: &mut Object<'_>, key: &str, value: Unknown<'_>) -> napi::Result<()> {
    if key == "__proto__" {
        obj.define_properties(&[Property::new()
            .with_utf8_name(key)?
            .with_value(&value)
            .with_property_attributes(PropertyAttributes::default())])
    } else {
        obj.set_named_property(key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_ints_only_when_exact() {
        assert_eq!(number(3.0), Value::Int(3));
        assert_eq!(number(-EXACT), Value::Int(-9_007_199_254_740_992));
        assert_eq!(number(EXACT * 2.0), Value::Float(EXACT * 2.0));
        assert_eq!(number(0.5), Value::Float(0.5));
        assert!(matches!(number(-0.0), Value::Float(f) if f.is_sign_negative()));
        assert!(matches!(number(f64::NAN), Value::Float(f) if f.is_nan()));
        assert_eq!(number(f64::INFINITY), Value::Float(f64::INFINITY));
    }

    #[test]
    fn paths_name_where_the_bad_value_is() {
        let e = Unsupported::new("a Date")
            .at(".when".into())
            .at("[2]".into());
        assert_eq!(
            e.message("the output"),
            format!("the output is a Date (at [2].when), which PSO cannot carry: {EXPECTED}")
        );
        assert_eq!(key_segment("a b"), "[\"a b\"]");
        assert_eq!(key_segment("_x1"), "._x1");
    }
}
