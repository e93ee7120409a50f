//! Feature shards (SPEC section 8): `features/summary/part-NNN.parquet`,
//! `features/tensors/part-NNN.parquet` and `features/manifest.json`.
//!
//! An episode always lands in the same shard (a stable hash of its key). The
//! dataflow routes episodes to workers by shard, so each shard has one writer,
//! and a worker receives its episodes in key order: it streams their rows into
//! its open shards as they are computed (one row group per shard in memory) and
//! the files are the same bytes however many workers or processes ran.

use super::parquet_io::writer_properties;
use arrow_array::builder::{BooleanBuilder, FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use epiflow_operators::model::{EpisodeKey, N_CHANNELS};
use epiflow_operators::registry::CHANNELS;
use epiflow_operators::tensor::TensorFeatures;
use epiflow_operators::window::{SummaryFeatures, Windows, STATS};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::EnabledStatistics;
use parquet::schema::types::ColumnPath;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per row group: readers can skip groups by their episode statistics.
const SUMMARY_ROW_GROUP: usize = 2048;
const TENSOR_ROW_GROUP: usize = 256;

/// Which of the two feature files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Summary,
    Tensors,
}

impl Kind {
    /// Folder name under `features/`.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Summary => "summary",
            Kind::Tensors => "tensors",
        }
    }

    fn row_group(self) -> usize {
        match self {
            Kind::Summary => SUMMARY_ROW_GROUP,
            Kind::Tensors => TENSOR_ROW_GROUP,
        }
    }
}

/// What every row of an episode carries besides its features.
#[derive(Clone, Copy, Debug)]
pub struct EpisodeInfo<'a> {
    pub key: &'a EpisodeKey,
    pub profile: Option<&'a str>,
    pub sample_name: Option<&'a str>,
}

/// The summary schema: ids, window, label, then `<channel>:<stat>` columns in
/// registry × stat order.
pub fn summary_schema() -> Schema {
    let mut fields = vec![
        Field::new("host_id", DataType::Utf8, false),
        Field::new("episode_id", DataType::Utf8, false),
        Field::new("profile", DataType::Utf8, true),
        Field::new("sample_name", DataType::Utf8, true),
        Field::new("window_start_s", DataType::Float64, false),
        Field::new("label", DataType::Int32, false),
        Field::new("label_name", DataType::Utf8, false),
    ];
    for c in CHANNELS.iter() {
        for s in STATS {
            fields.push(Field::new(format!("{}:{s}", c.name), DataType::Float32, false));
        }
    }
    Schema::new(fields)
}

/// The tensor schema for `timesteps` bins: `x` and `mask` are channel-major
/// fixed-size lists of 46 × timesteps.
pub fn tensor_schema(timesteps: usize) -> Schema {
    let width = (N_CHANNELS * timesteps) as i32;
    Schema::new(vec![
        Field::new("host_id", DataType::Utf8, false),
        Field::new("episode_id", DataType::Utf8, false),
        Field::new("window_start_s", DataType::Float64, false),
        Field::new("label", DataType::Int32, false),
        Field::new("x", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), width), false),
        Field::new(
            "mask",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Boolean, false)), width),
            false,
        ),
    ])
}

fn id_columns(info: &EpisodeInfo, n: usize) -> [ArrayRef; 2] {
    [
        Arc::new(StringArray::from(vec![info.key.host_id.as_str(); n])),
        Arc::new(StringArray::from(vec![info.key.episode_id.as_str(); n])),
    ]
}

fn window_columns(w: &Windows) -> [ArrayRef; 2] {
    [
        Arc::new(Float64Array::from(w.starts.clone())),
        Arc::new(Int32Array::from(w.labels.iter().map(|l| l.class_id() as i32).collect::<Vec<_>>())),
    ]
}

/// One episode's summary rows.
pub fn summary_batch(info: &EpisodeInfo, f: &SummaryFeatures) -> io::Result<RecordBatch> {
    let n = f.windows.len();
    let [host, episode] = id_columns(info, n);
    let [start, label] = window_columns(&f.windows);
    let mut columns: Vec<ArrayRef> = vec![
        host,
        episode,
        Arc::new(StringArray::from(vec![info.profile; n])),
        Arc::new(StringArray::from(vec![info.sample_name; n])),
        start,
        label,
        Arc::new(StringArray::from(f.windows.labels.iter().map(|l| l.name()).collect::<Vec<_>>())),
    ];
    let width = N_CHANNELS * STATS.len();
    for col in 0..width {
        columns.push(Arc::new(Float32Array::from((0..n).map(|w| f.values[w * width + col]).collect::<Vec<_>>())));
    }
    RecordBatch::try_new(Arc::new(summary_schema()), columns).map_err(io::Error::other)
}

/// One episode's tensor rows.
pub fn tensor_batch(info: &EpisodeInfo, f: &TensorFeatures) -> io::Result<RecordBatch> {
    let n = f.windows.len();
    let width = f.width() as i32;
    let [host, episode] = id_columns(info, n);
    let [start, label] = window_columns(&f.windows);
    let item = |t| Arc::new(Field::new("item", t, false));
    let mut x = FixedSizeListBuilder::with_capacity(Float32Builder::with_capacity(f.x.len()), width, n)
        .with_field(item(DataType::Float32));
    let mut mask = FixedSizeListBuilder::with_capacity(BooleanBuilder::with_capacity(f.mask.len()), width, n)
        .with_field(item(DataType::Boolean));
    for w in 0..n {
        let range = w * width as usize..(w + 1) * width as usize;
        x.values().append_slice(&f.x[range.clone()]);
        x.append(true);
        mask.values().append_slice(&f.mask[range]);
        mask.append(true);
    }
    let columns: Vec<ArrayRef> = vec![host, episode, start, label, Arc::new(x.finish()), Arc::new(mask.finish())];
    RecordBatch::try_new(Arc::new(tensor_schema(f.timesteps)), columns).map_err(io::Error::other)
}

/// The shard an episode belongs to.
pub fn shard_of(key: &EpisodeKey, shards: usize) -> usize {
    (key.stable_hash() % shards.max(1) as u64) as usize
}

/// File name of shard `i`.
pub fn shard_name(i: usize) -> String {
    format!("part-{i:03}.parquet")
}

/// The shards one worker owns, open for writing. Rows go to a temporary file
/// per shard; [`ShardWriters::finish`] closes them and renames them into place.
pub struct ShardWriters {
    dir: PathBuf,
    timesteps: usize,
    metadata: Vec<KeyValue>,
    open: BTreeMap<(usize, usize), (tempfile::NamedTempFile, ArrowWriter<std::fs::File>)>,
}

impl ShardWriters {
    /// Writers under `features_dir` with `metadata` in every file footer.
    pub fn new(features_dir: &Path, timesteps: usize, metadata: &[(String, String)]) -> ShardWriters {
        ShardWriters {
            dir: features_dir.to_path_buf(),
            timesteps,
            metadata: metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect(),
            open: BTreeMap::new(),
        }
    }

    /// Appends one episode's rows to shard `shard` of `kind`.
    pub fn write(&mut self, kind: Kind, shard: usize, batch: &RecordBatch) -> io::Result<()> {
        let slot = (kind as usize, shard);
        if !self.open.contains_key(&slot) {
            let dir = self.dir.join(kind.dir());
            std::fs::create_dir_all(&dir)?;
            let tmp = tempfile::Builder::new()
                .prefix(&format!(".{}.", shard_name(shard)))
                .suffix(".tmp")
                .tempfile_in(&dir)?;
            let schema = Arc::new(match kind {
                Kind::Summary => summary_schema(),
                Kind::Tensors => tensor_schema(self.timesteps),
            });
            // Feature values rarely repeat: dictionary encoding only costs time here.
            let props = writer_properties(kind.row_group())
                .set_dictionary_enabled(false)
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
                // Min/max of 920 cells per row helps no reader skip anything.
                .set_column_statistics_enabled(list_item("x"), EnabledStatistics::None)
                .set_column_statistics_enabled(list_item("mask"), EnabledStatistics::None)
                .set_key_value_metadata(Some(self.metadata.clone()))
                .build();
            let writer = ArrowWriter::try_new(tmp.reopen()?, schema, Some(props)).map_err(io::Error::other)?;
            self.open.insert(slot, (tmp, writer));
        }
        let (_, writer) = self.open.get_mut(&slot).ok_or_else(|| io::Error::other("shard writer vanished"))?;
        writer.write(batch).map_err(io::Error::other)
    }

    /// Closes every open shard, syncs it and renames it into place.
    pub fn finish(self) -> io::Result<()> {
        for ((kind, shard), (tmp, writer)) in self.open {
            writer.close().map_err(io::Error::other)?;
            tmp.as_file().sync_all()?;
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
            let kind = if kind == Kind::Summary as usize { Kind::Summary } else { Kind::Tensors };
            let dir = self.dir.join(kind.dir());
            tmp.persist(dir.join(shard_name(shard))).map_err(|e| e.error)?;
            crate::output::sync_dir(&dir);
        }
        Ok(())
    }
}

/// The Parquet path of a list column's values.
fn list_item(column: &str) -> ColumnPath {
    ColumnPath::new(vec![column.to_string(), "list".to_string(), "item".to_string()])
}

/// Removes shard files of `kind` that this run did not write (their episodes
/// are gone, or the shard count was lowered).
pub fn remove_other_shards(
    features_dir: &Path,
    kind: Kind,
    written: &std::collections::BTreeSet<usize>,
) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(features_dir.join(kind.dir())) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let index = name.strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet")).and_then(|n| n.parse().ok());
        if index.is_some_and(|i: usize| !written.contains(&i)) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// `features/manifest.json`: what a reader needs to use the shards.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Manifest {
    pub feature_schema_hash: String,
    pub channels: Vec<&'static str>,
    pub channel_sets: BTreeMap<&'static str, Vec<&'static str>>,
    pub stats: Vec<&'static str>,
    pub window: serde_json::Value,
    pub shards: BTreeMap<&'static str, Vec<String>>,
    pub windows: u64,
    /// `host_id/episode_id` → shard file name and window count.
    pub episodes: BTreeMap<String, ManifestEntry>,
}

/// Where one episode's rows are.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ManifestEntry {
    pub shard: String,
    pub windows: usize,
}
