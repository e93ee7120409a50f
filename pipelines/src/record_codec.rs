//! How a stage's record is written to the result store and read back: one
//! line of JSON that holds every value serde can describe, floats included.
//!
//! `serde_json` writes NaN and the infinities as `null`, which then cannot be
//! read back into an `f64`: a record holding one would be a silent cache miss
//! on every run. Records therefore pass through serde's data model as a
//! [`ciborium::Value`], which keeps floats whole, and non-finite floats are
//! written as `{"$f64": "NaN" | "inf" | "-inf"}`. Maps whose keys are not all
//! strings are written as `{"$map": [[key, value], ...]}`. Everything else is
//! plain JSON, so a cache line stays readable with `grep`.

use ciborium::value::{Integer, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Number, Value as Json};

/// The marker key of a non-finite float.
const FLOAT: &str = "$f64";
/// The marker key of a map with keys that are not strings.
const MAP: &str = "$map";

/// Encodes `record` as one line of JSON that [`decode`] reads back equal.
pub fn encode<T: Serialize + ?Sized>(record: &T) -> Result<String, String> {
    let value = Value::serialized(record).map_err(|e| format!("cannot encode record: {e}"))?;
    serde_json::to_string(&to_json(&value)?).map_err(|e| format!("cannot encode record: {e}"))
}

/// Reads a record written by [`encode`].
pub fn decode<T: DeserializeOwned>(line: &str) -> Result<T, String> {
    // Without a marker the line is plain JSON of `T`'s serde model, read
    // straight into `T` (a nothing-changed run reads two records an episode).
    if !line.contains(FLOAT) && !line.contains(MAP) {
        if let Ok(record) = serde_json::from_str(line) {
            return Ok(record);
        }
    }
    decode_marked(line)
}

/// Reads any record written by [`encode`], markers and all, through
/// serde's data model.
fn decode_marked<T: DeserializeOwned>(line: &str) -> Result<T, String> {
    let json: Json = serde_json::from_str(line).map_err(|e| format!("unreadable record: {e}"))?;
    from_json(json).deserialized().map_err(|e| format!("unreadable record: {e}"))
}

/// Serde's view of `record`, floats whole: what "reads back equal" compares.
pub fn model_of<T: Serialize + ?Sized>(record: &T) -> Result<Value, String> {
    Value::serialized(record).map_err(|e| format!("cannot describe record: {e}"))
}

/// Whether two serde views are the same value, floats compared by their bits
/// (any NaN equals any NaN: JSON keeps no payload).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        (Value::Tag(t, x), Value::Tag(u, y)) => t == u && same(x, y),
        _ => a == b,
    }
}

/// `value` with every float replaced by the next of `float()`: a record of
/// the same shape holding other floats (the compliance check feeds it NaN,
/// infinities, -0 and extremes).
pub fn with_floats(value: &mut Value, float: &mut dyn FnMut() -> f64) {
    match value {
        Value::Float(f) => *f = float(),
        Value::Array(items) => items.iter_mut().for_each(|v| with_floats(v, float)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| with_floats(v, float)),
        Value::Tag(_, inner) => with_floats(inner, float),
        _ => {}
    }
}

/// Whether `record`, with its floats replaced by `float()`, reads back
/// equal through [`encode`] and [`decode`].
pub fn round_trips<T: Serialize + DeserializeOwned>(record: &T, float: &mut dyn FnMut() -> f64) -> Result<(), String> {
    let mut model = model_of(record)?;
    with_floats(&mut model, float);
    let changed: T = model.deserialized().map_err(|e| format!("cannot rebuild record: {e}"))?;
    let line = encode(&changed)?;
    let back: T = decode(&line)?;
    match same(&model_of(&changed)?, &model_of(&back)?) {
        true => Ok(()),
        false => Err(format!("record does not read back equal: {line}")),
    }
}

fn to_json(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Text(s) => Json::String(s.clone()),
        Value::Integer(i) => integer(*i)?,
        Value::Float(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => tagged(FLOAT, Json::String(non_finite_name(*f).into())),
        },
        Value::Bytes(bytes) => Json::Array(bytes.iter().map(|b| Json::from(*b)).collect()),
        Value::Tag(_, inner) => to_json(inner)?,
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(entries) if entries.iter().all(|(k, _)| k.is_text()) => {
            let mut map = Map::new();
            for (key, value) in entries {
                map.insert(key.as_text().unwrap_or_default().to_string(), to_json(value)?);
            }
            Json::Object(map)
        }
        Value::Map(entries) => {
            let pairs = entries.iter().map(|(k, v)| Ok(Json::Array(vec![to_json(k)?, to_json(v)?])));
            tagged(MAP, Json::Array(pairs.collect::<Result<_, String>>()?))
        }
        other => return Err(format!("cannot encode {other:?}")),
    })
}

fn from_json(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::String(s) => Value::Text(s),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::Integer(u.into()),
            (None, Some(i)) => Value::Integer(i.into()),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::Array(items) => Value::Array(items.into_iter().map(from_json).collect()),
        Json::Object(map) => match marked(&map) {
            Some((FLOAT, Json::String(name))) => Value::Float(non_finite(name)),
            Some((MAP, Json::Array(pairs))) => Value::Map(pairs.iter().cloned().map(pair).collect()),
            _ => Value::Map(map.into_iter().map(|(k, v)| (Value::Text(k), from_json(v))).collect()),
        },
    }
}

/// The marker and its value, when `map` is one of the encoder's markers.
fn marked(map: &Map<String, Json>) -> Option<(&'static str, &Json)> {
    let (key, value) = map.iter().next().filter(|_| map.len() == 1)?;
    [FLOAT, MAP].into_iter().find(|m| m == key).map(|m| (m, value))
}

fn pair(json: Json) -> (Value, Value) {
    match json {
        Json::Array(mut kv) if kv.len() == 2 => {
            let value = kv.pop().map_or(Value::Null, from_json);
            (kv.pop().map_or(Value::Null, from_json), value)
        }
        other => (from_json(other), Value::Null),
    }
}

fn tagged(marker: &str, value: Json) -> Json {
    Json::Object(Map::from_iter([(marker.to_string(), value)]))
}

fn integer(i: Integer) -> Result<Json, String> {
    let wide = i128::from(i);
    if let Ok(u) = u64::try_from(wide) {
        return Ok(Json::from(u));
    }
    i64::try_from(wide).map(Json::from).map_err(|_| format!("integer {wide} does not fit 64 bits"))
}

fn non_finite_name(f: f64) -> &'static str {
    match f {
        f if f.is_nan() => "NaN",
        f if f > 0.0 => "inf",
        _ => "-inf",
    }
}

fn non_finite(name: &str) -> f64 {
    match name {
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Serialize, serde::Deserialize)]
    struct Record {
        share: Vec<f64>,
        single: f32,
        name: Option<String>,
        by_id: BTreeMap<u32, f64>,
        kind: Kind,
        big: u64,
        small: i64,
    }

    #[derive(Debug, Serialize, serde::Deserialize)]
    enum Kind {
        Unit,
        Pair(f64, String),
        Named { x: f64 },
    }

    fn reads_back(record: &Record) -> Result<(), TestCaseError> {
        let line = encode(record).map_err(TestCaseError::fail)?;
        prop_assert!(!line.contains('\n'), "one line: {line}");
        let back: Record = decode(&line).map_err(TestCaseError::fail)?;
        let (a, b) = (model_of(record).unwrap(), model_of(&back).unwrap());
        prop_assert!(same(&a, &b), "{record:?} read back as {back:?} via {line}");
        Ok(())
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(f64::MIN_POSITIVE / 2.0),
            Just(f64::MAX),
            any::<f64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]
        #[test]
        fn any_record_reads_back_equal(
            share in proptest::collection::vec(any_f64(), 0..6),
            single in any::<f32>(),
            name in proptest::option::of(".{0,8}"),
            by_id in proptest::collection::btree_map(any::<u32>(), any_f64(), 0..3),
            x in any_f64(),
            variant in 0..3u8,
            big in any::<u64>(),
            small in any::<i64>(),
        ) {
            let kind = match variant {
                0 => Kind::Unit,
                1 => Kind::Pair(x, "$f64".into()),
                _ => Kind::Named { x },
            };
            reads_back(&Record { share, single, name, by_id, kind, big, small })?;
        }
    }

    /// A record whose line has no marker (string keys, finite floats).
    #[derive(Debug, Serialize, serde::Deserialize)]
    struct Plain {
        share: Vec<f64>,
        single: f32,
        name: Option<String>,
        by_name: BTreeMap<String, f64>,
        kind: Kind,
        big: u64,
        small: i64,
    }

    proptest! {
        #[test]
        fn a_line_without_markers_reads_as_through_the_data_model(
            share in proptest::collection::vec(-1e300f64..1e300, 0..6),
            single in -1e30f32..1e30,
            name in proptest::option::of(".{0,8}"),
            by_name in proptest::collection::btree_map("[a-z]{1,4}", -1e9f64..1e9, 0..3),
            x in -1e9f64..1e9,
            variant in 0..3u8,
            big in any::<u64>(),
            small in any::<i64>(),
        ) {
            let kind = match variant {
                0 => Kind::Unit,
                1 => Kind::Pair(x, "pair".into()),
                _ => Kind::Named { x },
            };
            let line = encode(&Plain { share, single, name, by_name, kind, big, small }).map_err(TestCaseError::fail)?;
            prop_assert!(!line.contains(FLOAT) && !line.contains(MAP), "{line}");
            let fast: Plain = decode(&line).map_err(TestCaseError::fail)?;
            let marked: Plain = decode_marked(&line).map_err(TestCaseError::fail)?;
            let (a, b) = (model_of(&fast).unwrap(), model_of(&marked).unwrap());
            prop_assert!(same(&a, &b), "{fast:?} against {marked:?} via {line}");
        }
    }

    #[test]
    fn serde_json_alone_loses_nan_which_is_why_this_exists() {
        let plain = serde_json::to_string(&vec![f64::NAN]).unwrap();
        assert!(serde_json::from_str::<Vec<f64>>(&plain).is_err(), "{plain}");
        let line = encode(&vec![f64::NAN, f64::INFINITY, 1.5]).unwrap();
        assert_eq!(line, r#"[{"$f64":"NaN"},{"$f64":"inf"},1.5]"#);
        let back: Vec<f64> = decode(&line).unwrap();
        assert!(back[0].is_nan() && back[1] == f64::INFINITY && back[2] == 1.5);
    }

    #[test]
    fn a_record_of_another_shape_is_an_error_not_a_default() {
        let line = encode(&vec![1.0f64]).unwrap();
        let err = decode::<Record>(&line).unwrap_err();
        assert!(err.starts_with("unreadable record"), "{err}");
        assert!(decode::<Vec<f64>>("{\"share\": [1.0,").is_err());
    }
}
