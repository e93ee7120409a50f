//! `quality.parquet`: the quality report, one row per classified episode.

use super::parquet_io::{string_list_field, string_lists, write_batch, writer_properties};
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use epiflow_operators::classify::QualityRecord;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The schema of SPEC section 8, in column order.
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("host_id", DataType::Utf8, false),
        Field::new("episode_id", DataType::Utf8, false),
        string_list_field("reasons"),
        Field::new("fake", DataType::Boolean, false),
        Field::new("sample_name", DataType::Utf8, true),
        Field::new("module_name", DataType::Utf8, true),
    ])
}

/// Writes `quality.parquet` atomically, rows in the given order.
pub fn write(path: &Path, records: &[QualityRecord]) -> io::Result<()> {
    let strings = |f: &dyn Fn(&QualityRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        strings(&|r| Some(&r.host_id)),
        strings(&|r| Some(&r.episode_id)),
        string_lists(records.iter().map(|r| &r.reasons[..])),
        Arc::new(records.iter().map(|r| Some(r.fake)).collect::<BooleanArray>()),
        strings(&|r| r.sample_name.as_deref()),
        strings(&|r| r.module_name.as_deref()),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema()), columns).map_err(io::Error::other)?;
    write_batch(path, &batch, writer_properties(64 * 1024).build())
}
