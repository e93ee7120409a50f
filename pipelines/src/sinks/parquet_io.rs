//! Shared Parquet writing: one record batch, zstd pages, written atomically.

use crate::output::write_atomically;
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Writer settings shared by every epiflow Parquet file; callers add their own
/// (footer metadata) before `build()`.
pub fn writer_properties(row_group_rows: usize) -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_created_by(format!("epiflow {}", env!("CARGO_PKG_VERSION")))
}

/// Writes `batch` to `path` atomically.
pub fn write_batch(path: &Path, batch: &RecordBatch, props: WriterProperties) -> io::Result<()> {
    write_atomically(path, |w| {
        let mut writer = ArrowWriter::try_new(w, batch.schema(), Some(props)).map_err(io::Error::other)?;
        writer.write(batch).map_err(io::Error::other)?;
        writer.close().map_err(io::Error::other)?;
        Ok(())
    })
}

/// A non-null `list<utf8>` column field (reason lists).
pub fn string_list_field(name: &str) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false)
}

/// A `list<utf8>` column, one list per row.
pub fn string_lists<'a>(rows: impl Iterator<Item = &'a [String]>) -> ArrayRef {
    let mut lists = ListBuilder::new(StringBuilder::new());
    for row in rows {
        for item in row {
            lists.values().append_value(item);
        }
        lists.append(true);
    }
    Arc::new(lists.finish())
}
