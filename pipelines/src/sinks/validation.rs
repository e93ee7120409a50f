//! `validation.parquet`: the acceptance index, one row per indexed episode.

use super::parquet_io::{string_list_field, string_lists, write_batch, writer_properties};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use epiflow_operators::channels::Source;
use epiflow_operators::validate::ValidationRecord;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The schema of SPEC section 8, in column order.
pub fn schema() -> Schema {
    let mut fields = vec![
        Field::new("host_id", DataType::Utf8, false),
        Field::new("episode_id", DataType::Utf8, false),
        Field::new("sha256", DataType::Utf8, true),
        Field::new("archive_bytes", DataType::Int64, true),
        Field::new("outcome", DataType::Utf8, false),
        string_list_field("reasons"),
        Field::new("profile", DataType::Utf8, true),
        Field::new("sample_name", DataType::Utf8, true),
        Field::new("duration_s", DataType::Float64, true),
    ];
    for s in Source::ALL {
        fields.push(Field::new(format!("rows_{}", s.name()), DataType::Int64, true));
    }
    fields.push(Field::new("bad_rows", DataType::Int64, true));
    fields.push(Field::new("t0_wall_ns", DataType::Int64, true));
    Schema::new(fields)
}

/// The records as one Arrow batch, in the given order.
pub fn to_batch(records: &[ValidationRecord]) -> io::Result<RecordBatch> {
    let strings = |f: &dyn Fn(&ValidationRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let ints = |f: &dyn Fn(&ValidationRecord) -> Option<i64>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<Int64Array>())
    };
    let mut columns: Vec<ArrayRef> = vec![
        strings(&|r| Some(&r.host_id)),
        strings(&|r| Some(&r.episode_id)),
        strings(&|r| r.sha256.as_deref()),
        ints(&|r| r.archive_bytes.map(|b| b as i64)),
        strings(&|r| Some(r.outcome.name())),
        string_lists(records.iter().map(|r| &r.reasons[..])),
        strings(&|r| r.profile.as_deref()),
        strings(&|r| r.sample_name.as_deref()),
        Arc::new(records.iter().map(|r| r.duration_s).collect::<Float64Array>()),
    ];
    for s in Source::ALL {
        columns.push(ints(&|r| r.rows[s.index()].map(|n| n as i64)));
    }
    columns.push(ints(&|r| r.bad_rows.map(|n| n as i64)));
    columns.push(ints(&|r| r.t0_wall_ns));
    RecordBatch::try_new(Arc::new(schema()), columns).map_err(io::Error::other)
}

/// Writes `validation.parquet` atomically. Records are written in the given order;
/// callers sort them by key so the file is the same however the work was spread.
pub fn write(path: &Path, records: &[ValidationRecord]) -> io::Result<()> {
    write_batch(path, &to_batch(records)?, writer_properties(64 * 1024).build())
}

/// Each episode's key and outcome name from a `validation.parquet` an
/// earlier run wrote (`epiflow explain` compares the index against it).
pub fn read_outcomes(path: &Path) -> io::Result<Vec<((String, String), String)>> {
    use arrow_array::cast::AsArray;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |e: &dyn std::fmt::Display| io::Error::other(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path)?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| bad(&e))?;
    let mut out = Vec::new();
    for batch in batches {
        let batch = batch.map_err(|e| bad(&e))?;
        let column = |name: &str| {
            batch.column_by_name(name).and_then(|c| c.as_string_opt::<i32>()).ok_or_else(|| bad(&format!("no {name}")))
        };
        let (hosts, episodes, outcomes) = (column("host_id")?, column("episode_id")?, column("outcome")?);
        for row in 0..batch.num_rows() {
            let key = (hosts.value(row).to_string(), episodes.value(row).to_string());
            out.push((key, outcomes.value(row).to_string()));
        }
    }
    Ok(out)
}
