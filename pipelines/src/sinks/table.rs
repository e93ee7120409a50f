//! The table a stage publishes when it does not write its own: one row per
//! episode, `host_id` and `episode_id` first, then one column per field of
//! the record, typed from what the records hold.
//!
//! | the field holds                       | column            |
//! |---------------------------------------|-------------------|
//! | integers (and nulls)                  | `int64`           |
//! | numbers, any of them fractional       | `float64`         |
//! | strings                               | `utf8`            |
//! | booleans                              | `bool`            |
//! | lists of numbers                      | `list<float64>`   |
//! | anything else (maps, mixed)           | `utf8`, the value as a cache line |
//!
//! A record that is not a struct becomes one column, `value`. Floats are kept
//! whole: NaN stays NaN.

use super::parquet_io::{write_batch, writer_properties};
use crate::record_codec::{encode, model_of};
use arrow_array::builder::{Float64Builder, ListBuilder};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use ciborium::value::Value;
use serde::Serialize;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Writes `rows` (episode key, record) to `path` atomically, in order.
pub fn write<T: Serialize>(path: &Path, rows: &[(&(String, String), T)]) -> io::Result<()> {
    write_batch(path, &to_batch(rows)?, writer_properties(64 * 1024).build())
}

/// The rows as one Arrow batch.
pub fn to_batch<T: Serialize>(rows: &[(&(String, String), T)]) -> io::Result<RecordBatch> {
    let models =
        rows.iter().map(|(_, record)| model_of(record).map_err(io::Error::other)).collect::<io::Result<Vec<_>>>()?;
    let names = field_names(&models);
    let mut fields =
        vec![Field::new("host_id", DataType::Utf8, false), Field::new("episode_id", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|(k, _)| Some(k.0.as_str())).collect::<StringArray>()),
        Arc::new(rows.iter().map(|(k, _)| Some(k.1.as_str())).collect::<StringArray>()),
    ];
    for name in names {
        let cells: Vec<&Value> = models.iter().map(|m| field(m, &name)).collect();
        let column = column(&cells)?;
        fields.push(Field::new(name, column.data_type().clone(), true));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(io::Error::other)
}

/// The struct fields over all records in first-seen order, or `value`.
fn field_names(models: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for model in models {
        match model {
            Value::Map(entries) if entries.iter().all(|(k, _)| k.is_text()) => {
                for name in entries.iter().filter_map(|(k, _)| k.as_text()) {
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_string());
                    }
                }
            }
            _ => return vec!["value".to_string()],
        }
    }
    names
}

const NULL: &Value = &Value::Null;

fn field<'a>(model: &'a Value, name: &str) -> &'a Value {
    match model {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.as_text() == Some(name)).map_or(NULL, |(_, v)| v),
        other if name == "value" => other,
        _ => NULL,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Integer(i) => Some(i128::from(*i) as f64),
        _ => None,
    }
}

fn column(cells: &[&Value]) -> io::Result<ArrayRef> {
    let present: Vec<&Value> = cells.iter().copied().filter(|v| !v.is_null()).collect();
    let all = |f: fn(&Value) -> bool| present.iter().all(|v| f(v));
    let ints = all(|v| v.as_integer().is_some_and(|i| i64::try_from(i).is_ok()));
    Ok(if ints {
        Arc::new(cells.iter().map(|v| v.as_integer().and_then(|i| i64::try_from(i).ok())).collect::<Int64Array>())
    } else if all(|v| number(v).is_some()) {
        Arc::new(cells.iter().map(|v| number(v)).collect::<Float64Array>())
    } else if all(Value::is_text) {
        Arc::new(cells.iter().map(|v| v.as_text()).collect::<StringArray>())
    } else if all(Value::is_bool) {
        Arc::new(cells.iter().map(|v| v.as_bool()).collect::<BooleanArray>())
    } else if all(|v| v.as_array().is_some_and(|a| a.iter().all(|x| number(x).is_some() || x.is_null()))) {
        let mut lists = ListBuilder::new(Float64Builder::new());
        for cell in cells {
            match cell.as_array() {
                Some(items) => {
                    items.iter().for_each(|x| lists.values().append_option(number(x)));
                    lists.append(true);
                }
                None => lists.append(false),
            }
        }
        Arc::new(lists.finish())
    } else {
        let text = cells
            .iter()
            .map(|v| if v.is_null() { Ok(None) } else { encode(v).map(Some) })
            .collect::<Result<Vec<_>, String>>()
            .map_err(io::Error::other)?;
        Arc::new(text.into_iter().collect::<StringArray>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, ListArray};
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Share {
        share: Vec<f64>,
        points: u64,
        name: Option<String>,
        mean: f64,
        flags: BTreeMap<String, bool>,
    }

    #[test]
    fn columns_follow_the_record_fields_and_keep_nan() {
        let keys = [("h1".to_string(), "e1".to_string()), ("h2".to_string(), "e2".to_string())];
        let rows = [
            (&keys[0], Share { share: vec![0.5, f64::NAN], points: 4, name: None, mean: 1.0, flags: BTreeMap::new() }),
            (
                &keys[1],
                Share {
                    share: vec![],
                    points: 0,
                    name: Some("x".into()),
                    mean: 2.5,
                    flags: [("a".into(), true)].into(),
                },
            ),
        ];
        let batch = to_batch(&rows).unwrap();
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["host_id", "episode_id", "share", "points", "name", "mean", "flags"]);
        let share = batch.column(2).as_any().downcast_ref::<ListArray>().unwrap();
        let first = share.value(0);
        let first = first.as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(first.value(0) == 0.5 && first.value(1).is_nan());
        assert_eq!(share.value(1).len(), 0);
        assert_eq!(batch.column(3).data_type(), &DataType::Int64);
        assert_eq!(batch.column(4).null_count(), 1);
        assert_eq!(batch.column(5).data_type(), &DataType::Float64, "1.0 and 2.5 are floats");
        let flags = batch.column(6).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(flags.value(1), r#"{"a":true}"#);
    }
}
