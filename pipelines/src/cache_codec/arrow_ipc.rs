//! Aligned episodes as the cache wrote them before the compact form: one
//! Arrow IPC file with LZ4-compressed buffers, each per-source series a
//! one-row `list<float64>` column and the [`Header`] as JSON in the schema
//! metadata. Still read, so that a cache written by an earlier version is
//! used, not recomputed.

use super::Header;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;
use arrow_ipc::reader::FileReader;
use epiflow_operators::model::{AlignedEpisode, AlignedSource};
use std::io;

/// Schema metadata key holding [`Header`].
const HEADER_KEY: &str = "epiflow.aligned";

/// Whether `bytes` start as an Arrow IPC file does.
pub(super) fn is_arrow(bytes: &[u8]) -> bool {
    bytes.starts_with(b"ARROW1")
}

/// An aligned episode from an Arrow IPC entry. Anything else is an error
/// saying what is wrong, never a panic: a cache entry may be damaged.
pub(super) fn decode_aligned(bytes: &[u8]) -> io::Result<AlignedEpisode> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, format!("aligned cache entry: {what}"));
    let mut reader = FileReader::try_new(io::Cursor::new(bytes), None).map_err(|e| bad(e.to_string()))?;
    let header: Header = reader
        .schema()
        .metadata()
        .get(HEADER_KEY)
        .ok_or_else(|| bad("no header".into()))
        .and_then(|h| serde_json::from_str(h).map_err(|e| bad(e.to_string())))?;
    let batch = reader.next().ok_or_else(|| bad("no rows".into()))?.map_err(|e| bad(e.to_string()))?;
    let series = |name: String| -> io::Result<Vec<f64>> {
        let column = batch.column_by_name(&name).ok_or_else(|| bad(format!("no column {name}")))?;
        let list = column
            .as_list_opt::<i32>()
            .filter(|l| l.len() == 1)
            .ok_or_else(|| bad(format!("{name} is not one list")))?;
        let values = list.value(0);
        let floats = values.as_primitive_opt::<Float64Type>().ok_or_else(|| bad(format!("{name} is not float64")))?;
        Ok(floats.values().to_vec())
    };
    let mut sources: [AlignedSource; 4] = Default::default();
    for (s, source) in sources.iter_mut().enumerate() {
        source.t = series(format!("s{s}.t"))?.into();
        source.bucket_ms = series(format!("s{s}.bucket_ms"))?;
        source.columns = (0..header.source_columns[s])
            .map(|c| series(format!("s{s}.c{c}")).map(Into::into))
            .collect::<io::Result<_>>()?;
    }
    Ok(header.with(sources))
}

/// Old entries for the tests: the encoder as it was.
#[cfg(test)]
pub(super) mod old {
    use super::super::{series_of, Header};
    use super::HEADER_KEY;
    use arrow_array::{ArrayRef, Float64Array, ListArray, RecordBatch};
    use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
    use arrow_ipc::CompressionType;
    use arrow_schema::{DataType, Field, Schema};
    use epiflow_operators::model::AlignedEpisode;
    use std::collections::HashMap;
    use std::io;
    use std::sync::Arc;

    /// The aligned episode as the Arrow IPC entry it was written as before.
    pub fn encode_aligned(ep: &AlignedEpisode) -> io::Result<Vec<u8>> {
        let header = Header::of(ep);
        let item = Arc::new(Field::new("item", DataType::Float64, false));
        let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = series_of(ep)
            .into_iter()
            .map(|(name, values)| {
                let list = ListArray::new(
                    item.clone(),
                    arrow_buffer::OffsetBuffer::from_lengths([values.len()]),
                    Arc::new(Float64Array::from(values.to_vec())),
                    None,
                );
                (Field::new(name, DataType::List(item.clone()), false), Arc::new(list) as ArrayRef)
            })
            .unzip();
        let metadata =
            HashMap::from([(HEADER_KEY.to_string(), serde_json::to_string(&header).map_err(io::Error::other)?)]);
        let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(io::Error::other)?;
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .map_err(io::Error::other)?;
        let mut bytes = Vec::new();
        let mut writer = FileWriter::try_new_with_options(&mut bytes, &schema, options).map_err(io::Error::other)?;
        writer.write(&batch).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
        drop(writer);
        Ok(bytes)
    }
}
