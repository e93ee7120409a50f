//! Feature shards (SPEC section 8): `features/summary/part-NNN.parquet`,
//! `features/tensors/part-NNN.parquet` and `features/manifest.json`.
//!
//! Workers write each episode's rows to a staging file (Arrow IPC) as soon as
//! they are computed, so a worker holds one episode's features at a time. The
//! shards are then assembled from staging in key order: the same bytes however
//! many workers or processes computed them. An episode always lands in the same
//! shard (a stable hash of its key), so readers can find it and later runs can
//! rewrite only the shards whose episodes changed.

use super::parquet_io::writer_properties;
use crate::output::write_atomically;
use arrow_array::builder::{BooleanBuilder, FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use epiflow_operators::model::{EpisodeKey, N_CHANNELS};
use epiflow_operators::registry::CHANNELS;
use epiflow_operators::tensor::TensorFeatures;
use epiflow_operators::window::{SummaryFeatures, Windows, STATS};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per row group: readers can skip groups by their episode statistics.
const SUMMARY_ROW_GROUP: usize = 8192;
const TENSOR_ROW_GROUP: usize = 1024;

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

/// Per-episode feature files, written by workers and read back in key order.
#[derive(Clone, Debug)]
pub struct Staging {
    pub dir: PathBuf,
}

impl Staging {
    fn path(&self, kind: Kind, key: &EpisodeKey) -> PathBuf {
        self.dir.join(kind.dir()).join(&key.host_id).join(format!("{}.arrow", key.episode_id))
    }

    /// Writes one episode's rows (atomically).
    pub fn put(&self, kind: Kind, key: &EpisodeKey, batch: &RecordBatch) -> io::Result<()> {
        write_atomically(&self.path(kind, key), |w| {
            let mut writer = FileWriter::try_new(w, &batch.schema()).map_err(io::Error::other)?;
            writer.write(batch).map_err(io::Error::other)?;
            writer.finish().map_err(io::Error::other)
        })
    }

    /// Reads one episode's rows.
    pub fn get(&self, kind: Kind, key: &EpisodeKey) -> io::Result<Vec<RecordBatch>> {
        let file = std::fs::File::open(self.path(kind, key))?;
        let reader = FileReader::try_new(file, None).map_err(io::Error::other)?;
        reader.map(|b| b.map_err(io::Error::other)).collect()
    }
}

/// The shard an episode belongs to.
pub fn shard_of(key: &EpisodeKey, shards: usize) -> usize {
    (key.stable_hash() % shards.max(1) as u64) as usize
}

/// File name of shard `i`.
pub fn shard_name(i: usize) -> String {
    format!("part-{i:03}.parquet")
}

/// Writes every shard of `kind` from staging: episodes in key order, row groups
/// of a fixed size, `metadata` in the file footer. Shards with no episode are
/// removed. `threads` shards are written at once.
pub fn assemble(
    staging: &Staging,
    features_dir: &Path,
    kind: Kind,
    schema: SchemaRef,
    episodes: &[EpisodeKey],
    shards: usize,
    metadata: &[(String, String)],
    threads: usize,
) -> io::Result<()> {
    let mut by_shard: Vec<Vec<&EpisodeKey>> = vec![Vec::new(); shards.max(1)];
    for key in episodes {
        by_shard[shard_of(key, shards)].push(key);
    }
    for list in by_shard.iter_mut() {
        list.sort();
    }
    let dir = features_dir.join(kind.dir());
    std::fs::create_dir_all(&dir)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<io::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.clamp(1, by_shard.len()))
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(keys) = by_shard.get(i) else { return Ok(()) };
                    let path = dir.join(shard_name(i));
                    if keys.is_empty() {
                        match std::fs::remove_file(&path) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                            _ => continue,
                        }
                    }
                    write_shard(staging, &path, kind, schema.clone(), keys, metadata)?;
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("shard writer panicked"))))
            .collect()
    });
    results.into_iter().collect()
}

fn write_shard(
    staging: &Staging,
    path: &Path,
    kind: Kind,
    schema: SchemaRef,
    keys: &[&EpisodeKey],
    metadata: &[(String, String)],
) -> io::Result<()> {
    let kv = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    let props = writer_properties(kind.row_group()).set_key_value_metadata(Some(kv)).build();
    write_atomically(path, |w| {
        let mut writer = ArrowWriter::try_new(w, schema, Some(props)).map_err(io::Error::other)?;
        for key in keys {
            for batch in staging.get(kind, key)? {
                writer.write(&batch).map_err(io::Error::other)?;
            }
        }
        writer.close().map_err(io::Error::other)?;
        Ok(())
    })
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
