//! Feature shards (SPEC section 8): `features/summary/part-NNN.parquet`,
//! `features/tensors/part-NNN.parquet` and `features/manifest.json`.
//!
//! An episode always lands in the same shard (a stable hash of its key). The
//! leader places whole shards on workers, so each shard has one writer, and a
//! worker receives its episodes in the leader's feeding order: it streams their rows into
//! its open shards as they are computed (one row group per shard in memory) and
//! the files are the same bytes however many workers or processes ran.

use super::list_pages::ListPages;
use super::parquet_io::writer_properties;
use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use epiflow_operators::channels::CHANNELS;
use epiflow_operators::model::{EpisodeKey, N_CHANNELS};
use epiflow_operators::tensor::TensorFeatures;
use epiflow_operators::window::{SummaryFeatures, Windows, STATS};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::EnabledStatistics;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, ColumnPath};
use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per row group: readers can skip groups by their episode statistics.
const SUMMARY_ROW_GROUP: usize = 2048;
const TENSOR_ROW_GROUP: usize = 256;

/// Pending summary rows handed to the writer at once: enough to amortise a
/// batch's cost over many episodes, few enough that encoding keeps pace with
/// decoding instead of piling up at the end of the run.
const SUMMARY_HANDOVER: usize = 128;

/// Which of the two feature files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureKind {
    /// `features/summary`: 230 statistics per window.
    Summary,
    /// `features/tensors`: 46 channels × time steps per window, with a mask.
    Tensors,
}

impl FeatureKind {
    /// Folder name under `features/`.
    pub fn dir(self) -> &'static str {
        match self {
            FeatureKind::Summary => "summary",
            FeatureKind::Tensors => "tensors",
        }
    }

    fn row_group(self) -> usize {
        match self {
            FeatureKind::Summary => SUMMARY_ROW_GROUP,
            FeatureKind::Tensors => TENSOR_ROW_GROUP,
        }
    }

    /// Summary files hold 237 small column chunks per row group, and zstd
    /// sets up a fresh context for each: LZ4 closed the shards of a
    /// 500-episode run twice as fast for 3.5% more bytes. Tensor pages are
    /// large, so zstd's better ratio costs little there.
    fn compression(self) -> Compression {
        match self {
            FeatureKind::Summary => Compression::LZ4_RAW,
            FeatureKind::Tensors => Compression::ZSTD(tensor_zstd()),
        }
    }
}

/// The zstd level of a tensor file's pages, its lists' ([`ListPages`]) and
/// its ids' alike.
fn tensor_zstd() -> ZstdLevel {
    ZstdLevel::try_new(1).unwrap_or_default()
}

/// What every row of an episode carries besides its features.
#[derive(Clone, Copy, Debug)]
pub struct EpisodeInfo<'a> {
    /// The episode.
    pub key: &'a EpisodeKey,
    /// Its workload profile.
    pub profile: Option<&'a str>,
    /// Its sample's name.
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

/// The columns every feature row starts with, growing row by row.
#[derive(Default)]
struct IdColumns {
    host: StringBuilder,
    episode: StringBuilder,
    start: Vec<f64>,
    label: Vec<i32>,
}

impl IdColumns {
    /// Appends the ids of windows `rows` of one episode.
    fn push(&mut self, info: &EpisodeInfo, w: &Windows, rows: Range<usize>) {
        for _ in rows.clone() {
            self.host.append_value(&info.key.host_id);
            self.episode.append_value(&info.key.episode_id);
        }
        self.start.extend_from_slice(&w.starts[rows.clone()]);
        self.label.extend(w.labels[rows].iter().map(|l| l.class_id() as i32));
    }

    /// Appends the ids of rows `rows` of a batch read back from a tensor file.
    fn push_batch(&mut self, batch: &TensorBatch, rows: Range<usize>) {
        for r in rows.clone() {
            self.host.append_value(batch.host.value(r));
            self.episode.append_value(batch.episode.value(r));
        }
        self.start.extend_from_slice(&batch.start.values()[rows.clone()]);
        self.label.extend_from_slice(&batch.label.values()[rows]);
    }

    fn len(&self) -> usize {
        self.start.len()
    }

    /// `[host_id, episode_id, window_start_s, label]`, leaving the columns empty.
    fn take(&mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.host.finish()),
            Arc::new(self.episode.finish()),
            Arc::new(Float64Array::from(drain_into_new(&mut self.start))),
            Arc::new(Int32Array::from(drain_into_new(&mut self.label))),
        ]
    }
}

/// Summary rows not yet handed to the writer: one vector per
/// `<channel>:<stat>` column. Rows accumulate as columns and leave as one
/// batch: building a batch per episode cost more than encoding it.
struct SummaryRows {
    ids: IdColumns,
    profile: StringBuilder,
    sample_name: StringBuilder,
    label_name: StringBuilder,
    features: Vec<Vec<f32>>,
}

impl Default for SummaryRows {
    fn default() -> Self {
        SummaryRows {
            ids: IdColumns::default(),
            profile: StringBuilder::new(),
            sample_name: StringBuilder::new(),
            label_name: StringBuilder::new(),
            features: vec![Vec::new(); N_CHANNELS * STATS.len()],
        }
    }
}

impl SummaryRows {
    fn push(&mut self, info: &EpisodeInfo, f: &SummaryFeatures) {
        self.ids.push(info, &f.windows, 0..f.windows.len());
        for label in &f.windows.labels {
            self.profile.append_option(info.profile);
            self.sample_name.append_option(info.sample_name);
            self.label_name.append_value(label.name());
        }
        let width = self.features.len();
        for (col, column) in self.features.iter_mut().enumerate() {
            column.extend(f.values.iter().skip(col).step_by(width));
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// The rows as one batch of `schema`, leaving none pending.
    fn take(&mut self, schema: &SchemaRef) -> io::Result<RecordBatch> {
        let [host, episode, start, label] = self.ids.take();
        let mut columns: Vec<ArrayRef> = vec![
            host,
            episode,
            Arc::new(self.profile.finish()),
            Arc::new(self.sample_name.finish()),
            start,
            label,
            Arc::new(self.label_name.finish()),
        ];
        columns.extend(self.features.iter_mut().map(|c| Arc::new(Float32Array::from(drain_into_new(c))) as ArrayRef));
        RecordBatch::try_new(schema.clone(), columns).map_err(io::Error::other)
    }
}

/// Tensor rows of the row group being filled: `x` and `mask` as the flat
/// values of their lists.
#[derive(Default)]
struct TensorRows {
    ids: IdColumns,
    x: Vec<f32>,
    mask: Vec<bool>,
}

impl TensorRows {
    /// Appends windows `rows` of one episode.
    fn push(&mut self, info: &EpisodeInfo, f: &TensorFeatures, rows: Range<usize>) {
        let cells = rows.start * f.width()..rows.end * f.width();
        self.ids.push(info, &f.windows, rows);
        self.x.extend_from_slice(&f.x[cells.clone()]);
        self.mask.extend_from_slice(&f.mask[cells]);
    }

    /// Appends rows `rows` of a batch read back from a tensor file.
    fn push_batch(&mut self, batch: &TensorBatch, rows: Range<usize>) {
        let cells = rows.start * batch.width..rows.end * batch.width;
        self.ids.push_batch(batch, rows);
        self.x.extend_from_slice(&batch.x[cells.clone()]);
        self.mask.extend(cells.map(|c| batch.mask.value(c)));
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A batch of a tensor file's rows, its columns by type, the lists as their
/// cells.
struct TensorBatch<'a> {
    host: &'a StringArray,
    episode: &'a StringArray,
    start: &'a Float64Array,
    label: &'a Int32Array,
    /// Cells per list.
    width: usize,
    x: &'a [f32],
    mask: &'a BooleanArray,
}

impl<'a> TensorBatch<'a> {
    /// The columns of `batch`, which must have the tensor schema `width` cells wide.
    fn of(batch: &'a RecordBatch, width: usize) -> io::Result<TensorBatch<'a>> {
        let column = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| io::Error::other(format!("no {name} column in a tensor file")))
        };
        let wrong = |name: &str| io::Error::other(format!("the tensor file's {name} column has another type"));
        let cells = |name: &str| -> io::Result<&'a ArrayRef> {
            let list = column(name)?.as_fixed_size_list_opt().ok_or_else(|| wrong(name))?;
            if list.value_length() as usize != width || list.values().len() != batch.num_rows() * width {
                return Err(io::Error::other(format!("the tensor file's {name} lists are not {width} cells wide")));
            }
            Ok(list.values())
        };
        Ok(TensorBatch {
            host: column("host_id")?.as_string_opt().ok_or_else(|| wrong("host_id"))?,
            episode: column("episode_id")?.as_string_opt().ok_or_else(|| wrong("episode_id"))?,
            start: column("window_start_s")?.as_primitive_opt().ok_or_else(|| wrong("window_start_s"))?,
            label: column("label")?.as_primitive_opt().ok_or_else(|| wrong("label"))?,
            width,
            x: cells("x")?.as_primitive_opt::<Float32Type>().ok_or_else(|| wrong("x"))?.values(),
            mask: cells("mask")?.as_boolean_opt().ok_or_else(|| wrong("mask"))?,
        })
    }
}

/// The vector's values, leaving it empty with room for as many: the next
/// batch is about as large, and regrowing from nothing cost more in
/// reallocation than the encoding it feeds.
fn drain_into_new<T>(v: &mut Vec<T>) -> Vec<T> {
    let capacity = v.len();
    std::mem::replace(v, Vec::with_capacity(capacity))
}

/// The shard (bucket) an episode belongs to.
pub fn shard_of(key: &EpisodeKey, shards: usize) -> usize {
    (key.stable_hash() % shards.max(1) as u64) as usize
}

/// A temporary file in `dir` for a feature file of `kind`, and a Parquet
/// writer onto it with the properties every feature file shares.
pub fn open_feature_writer(
    kind: FeatureKind,
    dir: &Path,
    schema: SchemaRef,
    metadata: &[KeyValue],
) -> io::Result<(tempfile::NamedTempFile, ArrowWriter<std::fs::File>)> {
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".part-").suffix(".tmp").tempfile_in(dir)?;
    // Feature values rarely repeat: dictionary encoding only costs time here.
    let props = writer_properties(kind.row_group())
        .set_dictionary_enabled(false)
        .set_compression(kind.compression())
        // Min/max of 920 cells per row helps no reader skip anything.
        .set_column_statistics_enabled(list_item("x"), EnabledStatistics::None)
        .set_column_statistics_enabled(list_item("mask"), EnabledStatistics::None)
        .set_key_value_metadata(Some(metadata.to_vec()))
        .build();
    let writer = ArrowWriter::try_new(tmp.reopen()?, schema, Some(props)).map_err(io::Error::other)?;
    Ok((tmp, writer))
}

/// A summary file being written: a temporary file, its Parquet writer and
/// the rows not yet handed to the writer.
struct SummaryFile {
    tmp: tempfile::NamedTempFile,
    writer: ArrowWriter<std::fs::File>,
    schema: SchemaRef,
    pending: SummaryRows,
}

impl SummaryFile {
    fn create(dir: &Path, schema: SchemaRef, metadata: &[KeyValue]) -> io::Result<Self> {
        let (tmp, writer) = open_feature_writer(FeatureKind::Summary, dir, schema.clone(), metadata)?;
        Ok(SummaryFile { tmp, writer, schema, pending: SummaryRows::default() })
    }

    /// Adds one episode's rows, handing them over once enough are pending.
    fn push(&mut self, info: &EpisodeInfo, features: &SummaryFeatures) -> io::Result<()> {
        self.pending.push(info, features);
        if self.pending.len() >= SUMMARY_HANDOVER {
            self.hand_over()?;
        }
        Ok(())
    }

    fn hand_over(&mut self) -> io::Result<()> {
        if self.pending.len() > 0 {
            let batch = self.pending.take(&self.schema)?;
            self.writer.write(&batch).map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Writes what is pending and completes the file, still under its
    /// temporary name.
    fn close(mut self) -> io::Result<tempfile::NamedTempFile> {
        self.hand_over()?;
        self.writer.close().map_err(io::Error::other)?;
        Ok(self.tmp)
    }
}

/// A tensor file being written, one row group at a time. The id columns go
/// through arrow-rs's column writers; `x` and `mask` are pages made by
/// [`ListPages`]. A shard's compaction writes through one too
/// ([`RewrittenTensors`]), so its file is the bytes the shard's rows make
/// wherever they come from.
struct TensorFile {
    tmp: tempfile::NamedTempFile,
    file: SerializedFileWriter<std::fs::File>,
    columns: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The `x` and `mask` leaves.
    lists: [ColumnDescPtr; 2],
    pending: TensorRows,
}

impl TensorFile {
    fn create(dir: &Path, schema: SchemaRef, metadata: &[KeyValue]) -> io::Result<Self> {
        let (tmp, writer) = open_feature_writer(FeatureKind::Tensors, dir, schema.clone(), metadata)?;
        let (file, columns) = writer.into_serialized_writer().map_err(io::Error::other)?;
        let leaf = |name: &str| {
            file.schema_descr()
                .columns()
                .iter()
                .find(|c| c.path().parts().first().is_some_and(|p| p == name))
                .cloned()
                .ok_or_else(|| io::Error::other(format!("no column {name} in the tensor schema")))
        };
        let lists = [leaf("x")?, leaf("mask")?];
        Ok(TensorFile { tmp, file, columns, schema, lists, pending: TensorRows::default() })
    }

    /// Adds one episode's rows, writing each row group as it fills.
    fn push(&mut self, info: &EpisodeInfo, features: &TensorFeatures, pages: &mut ListPages) -> io::Result<()> {
        let width = pages.width();
        let cells = features.windows.len() * width;
        if features.width() != width || features.x.len() != cells || features.mask.len() != cells {
            return Err(io::Error::other(format!(
                "{}: {} windows of tensors {} cells wide in {} values and {} mask cells; the shard's are {} cells wide",
                info.key,
                features.windows.len(),
                features.width(),
                features.x.len(),
                features.mask.len(),
                width
            )));
        }
        self.push_rows(features.windows.len(), pages, |pending, rows| pending.push(info, features, rows))
    }

    /// Adds the rows of a batch read back from a tensor file.
    fn push_batch(&mut self, batch: &RecordBatch, pages: &mut ListPages) -> io::Result<()> {
        let batch_columns = TensorBatch::of(batch, pages.width())?;
        self.push_rows(batch.num_rows(), pages, |pending, rows| pending.push_batch(&batch_columns, rows))
    }

    /// Hands `rows` rows to `push` in runs that fill the pending row group,
    /// writing each group as it fills.
    fn push_rows(
        &mut self,
        rows: usize,
        pages: &mut ListPages,
        mut push: impl FnMut(&mut TensorRows, Range<usize>),
    ) -> io::Result<()> {
        let mut from = 0;
        while from < rows {
            let to = rows.min(from + TENSOR_ROW_GROUP - self.pending.len());
            push(&mut self.pending, from..to);
            if self.pending.len() == TENSOR_ROW_GROUP {
                self.write_row_group(pages)?;
            }
            from = to;
        }
        Ok(())
    }

    /// Writes the pending rows as one row group, leaving none pending.
    fn write_row_group(&mut self, pages: &mut ListPages) -> io::Result<()> {
        if self.pending.len() == 0 {
            return Ok(());
        }
        let ids = self.pending.ids.take();
        // Writers come for every column; the list columns' two go unused.
        let writers =
            self.columns.create_column_writers(self.file.flushed_row_groups().len()).map_err(io::Error::other)?;
        let mut group = self.file.next_row_group().map_err(io::Error::other)?;
        for ((field, array), mut writer) in self.schema.fields().iter().zip(&ids).zip(writers) {
            for leaf in compute_leaves(field, array).map_err(io::Error::other)? {
                writer.write(&leaf).map_err(io::Error::other)?;
            }
            writer.close().and_then(|chunk| chunk.append_to_row_group(&mut group)).map_err(io::Error::other)?;
        }
        pages.write_floats(&mut group, &self.lists[0], &self.pending.x)?;
        pages.write_bools(&mut group, &self.lists[1], &self.pending.mask)?;
        group.close().map_err(io::Error::other)?;
        self.pending.x.clear();
        self.pending.mask.clear();
        Ok(())
    }

    /// Writes what is pending and completes the file, still under its
    /// temporary name.
    fn close(mut self, pages: &mut ListPages) -> io::Result<tempfile::NamedTempFile> {
        self.write_row_group(pages)?;
        self.file.close().map_err(io::Error::other)?;
        Ok(self.tmp)
    }
}

/// A shard's tensor file written again from the rows of its files, batch by
/// batch, through the writer every tensor file goes through.
pub struct RewrittenTensors {
    file: TensorFile,
    pages: ListPages,
}

impl RewrittenTensors {
    /// A new tensor file in `dir` with the shards' schema and footer.
    pub fn create(dir: &Path, writers: &ShardWriters) -> io::Result<RewrittenTensors> {
        Ok(RewrittenTensors {
            file: TensorFile::create(dir, writers.schema(FeatureKind::Tensors), &writers.metadata)?,
            pages: ListPages::new(writers.pages.width(), tensor_zstd()),
        })
    }

    /// Appends the rows of `batch`, read from a tensor file of the same schema.
    pub fn push(&mut self, batch: &RecordBatch) -> io::Result<()> {
        self.file.push_batch(batch, &mut self.pages)
    }

    /// Completes the file, still under its temporary name.
    pub fn close(mut self) -> io::Result<tempfile::NamedTempFile> {
        self.file.close(&mut self.pages)
    }
}

/// A summary file and a tensor file holding the same rows, complete under
/// temporary names.
pub type ClosedPair = [tempfile::NamedTempFile; 2];

/// New feature files of one worker, one summary + tensor pair per shard,
/// open for writing. [`ShardWriters::close`] completes a pair; the caller
/// names it.
pub struct ShardWriters {
    dir: PathBuf,
    schemas: [SchemaRef; 2],
    metadata: Vec<KeyValue>,
    pages: ListPages,
    open: BTreeMap<usize, (SummaryFile, TensorFile)>,
}

impl ShardWriters {
    /// Writers under `features_dir` with `metadata` in every file footer.
    pub fn new(features_dir: &Path, timesteps: usize, metadata: &[KeyValue]) -> ShardWriters {
        ShardWriters {
            dir: features_dir.to_path_buf(),
            schemas: [Arc::new(summary_schema()), Arc::new(tensor_schema(timesteps))],
            metadata: metadata.to_vec(),
            pages: ListPages::new(N_CHANNELS * timesteps, tensor_zstd()),
            open: BTreeMap::new(),
        }
    }

    /// The schema of `kind`'s files.
    pub fn schema(&self, kind: FeatureKind) -> SchemaRef {
        self.schemas[kind as usize].clone()
    }

    /// The footer metadata of every file.
    pub fn metadata(&self) -> &[KeyValue] {
        &self.metadata
    }

    /// Appends one episode's summary and tensor rows to shard `shard`.
    pub fn write(
        &mut self,
        shard: usize,
        info: &EpisodeInfo,
        summary: &SummaryFeatures,
        tensors: &TensorFeatures,
    ) -> io::Result<()> {
        let files = match self.open.entry(shard) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let [summary_schema, tensor_schema] = &self.schemas;
                let dir = |kind: FeatureKind| self.dir.join(kind.dir());
                e.insert((
                    SummaryFile::create(&dir(FeatureKind::Summary), summary_schema.clone(), &self.metadata)?,
                    TensorFile::create(&dir(FeatureKind::Tensors), tensor_schema.clone(), &self.metadata)?,
                ))
            }
        };
        files.0.push(info, summary)?;
        files.1.push(info, tensors, &mut self.pages)
    }

    /// Completes shard `shard`'s pair, if any rows went to it.
    pub fn close(&mut self, shard: usize) -> io::Result<Option<ClosedPair>> {
        match self.open.remove(&shard) {
            Some((summary, tensors)) => Ok(Some([summary.close()?, tensors.close(&mut self.pages)?])),
            None => Ok(None),
        }
    }
}

/// The Parquet path of a list column's values.
fn list_item(column: &str) -> ColumnPath {
    ColumnPath::new(vec![column.to_string(), "list".to_string(), "item".to_string()])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type};
    use epiflow_operators::channels::Phase;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    pub(crate) const TIMESTEPS: usize = 3;
    pub(crate) const WINDOWS: usize = 9;

    /// Episode `e`'s features: every value tells which episode, window and
    /// cell it came from, so a row out of place cannot go unnoticed.
    pub(crate) fn episode(e: usize) -> (EpisodeKey, SummaryFeatures, TensorFeatures) {
        episode_of(e, TIMESTEPS)
    }

    /// [`episode`] with `timesteps` bins per window.
    fn episode_of(e: usize, timesteps: usize) -> (EpisodeKey, SummaryFeatures, TensorFeatures) {
        let windows = Windows {
            starts: (0..WINDOWS).map(|w| w as f64 * 5.0).collect(),
            labels: (0..WINDOWS).map(|w| Phase::ALL[(e + w) % 5]).collect(),
        };
        let cell = |w: usize, c: usize| (e * 100_000 + w * 1000 + c) as f32;
        let summary_width = N_CHANNELS * STATS.len();
        let tensor_width = N_CHANNELS * timesteps;
        let summary = SummaryFeatures {
            windows: windows.clone(),
            values: (0..WINDOWS * summary_width).map(|i| cell(i / summary_width, i % summary_width)).collect(),
        };
        let tensors = TensorFeatures {
            windows,
            timesteps,
            x: (0..WINDOWS * tensor_width).map(|i| cell(i / tensor_width, i % tensor_width)).collect(),
            mask: (0..WINDOWS * tensor_width).map(|i| !(i + e).is_multiple_of(3)).collect(),
        };
        (EpisodeKey { host_id: format!("h{}", e % 2), episode_id: format!("e{e:03}") }, summary, tensors)
    }

    /// Row group sizes and all rows of one file.
    pub(crate) fn read(path: &Path) -> (Vec<usize>, RecordBatch) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
        let groups = builder.metadata().row_groups().iter().map(|g| g.num_rows() as usize).collect();
        let mut batches: Vec<RecordBatch> =
            builder.with_batch_size(1 << 20).build().unwrap().map(Result::unwrap).collect();
        assert_eq!(batches.len(), 1);
        (groups, batches.remove(0))
    }

    #[test]
    fn rows_handed_over_in_batches_read_back_in_order_with_full_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let episodes: Vec<_> = (0..40).map(episode).collect();
        let mut writers = ShardWriters::new(dir.path(), TIMESTEPS, &[KeyValue::new("k".into(), "v".to_string())]);
        for (key, summary, tensors) in &episodes {
            let info = EpisodeInfo { key, profile: Some("io-walk"), sample_name: None };
            writers.write(7, &info, summary, tensors).unwrap();
        }
        let [summary_file, tensor_file] = writers.close(7).unwrap().unwrap();
        assert!(writers.close(7).unwrap().is_none(), "a closed shard is gone");
        let rows = episodes.len() * WINDOWS;

        let (groups, batch) = read(tensor_file.path());
        assert_eq!(groups, vec![TENSOR_ROW_GROUP, rows - TENSOR_ROW_GROUP], "{rows} rows over several handovers");
        let x = batch.column_by_name("x").unwrap().as_fixed_size_list();
        let mask = batch.column_by_name("mask").unwrap().as_fixed_size_list();
        let starts = batch.column_by_name("window_start_s").unwrap().as_primitive::<Float64Type>();
        for (r, (e, w)) in (0..episodes.len()).flat_map(|e| (0..WINDOWS).map(move |w| (e, w))).enumerate() {
            let (key, _, tensors) = &episodes[e];
            let width = tensors.width();
            assert_eq!(batch.column(1).as_string::<i32>().value(r), key.episode_id);
            assert_eq!(starts.value(r), tensors.windows.starts[w]);
            assert_eq!(x.value(r).as_primitive::<Float32Type>().values(), &tensors.x[w * width..(w + 1) * width]);
            let m: Vec<bool> = mask.value(r).as_boolean().iter().map(Option::unwrap).collect();
            assert_eq!(m, &tensors.mask[w * width..(w + 1) * width]);
        }

        let (groups, batch) = read(summary_file.path());
        assert_eq!(groups, vec![rows]);
        let width = N_CHANNELS * STATS.len();
        for (r, (e, w)) in (0..episodes.len()).flat_map(|e| (0..WINDOWS).map(move |w| (e, w))).enumerate() {
            let (_, summary, _) = &episodes[e];
            assert_eq!(batch.column_by_name("profile").unwrap().as_string::<i32>().value(r), "io-walk");
            assert!(batch.column_by_name("sample_name").unwrap().is_null(r));
            assert_eq!(
                batch.column_by_name("label_name").unwrap().as_string::<i32>().value(r),
                summary.windows.labels[w].name()
            );
            for c in [0, 1, width / 2, width - 1] {
                assert_eq!(batch.column(7 + c).as_primitive::<Float32Type>().value(r), summary.values[w * width + c]);
            }
        }
    }

    #[test]
    fn a_tensor_file_written_again_from_its_rows_is_the_same_bytes() {
        // 3 bins: one page per column chunk; 40 bins: a row group's `x` is
        // 1.9 MB, over the 1 MiB page size, so it spans pages.
        for timesteps in [TIMESTEPS, 40] {
            let dir = tempfile::tempdir().unwrap();
            let metadata = [KeyValue::new("k".into(), "v".to_string())];
            let mut writers = ShardWriters::new(dir.path(), timesteps, &metadata);
            let episodes: Vec<_> = (0..70).map(|e| episode_of(e, timesteps)).collect();
            for (key, summary, tensors) in &episodes {
                let info = EpisodeInfo { key, profile: None, sample_name: None };
                writers.write(0, &info, summary, tensors).unwrap();
            }
            let [_, tensor_file] = writers.close(0).unwrap().unwrap();
            let written = std::fs::read(tensor_file.path()).unwrap();

            // Read by arrow-rs as the contract's fixed-size lists, every cell as written.
            let (groups, rows) = read(tensor_file.path());
            assert_eq!(groups, vec![TENSOR_ROW_GROUP, TENSOR_ROW_GROUP, 70 * WINDOWS - 2 * TENSOR_ROW_GROUP]);
            assert_eq!(rows.schema(), writers.schema(FeatureKind::Tensors));
            let x = rows.column_by_name("x").unwrap().as_fixed_size_list().values().as_primitive::<Float32Type>();
            let mask = rows.column_by_name("mask").unwrap().as_fixed_size_list().values().as_boolean();
            let want_x: Vec<u32> = episodes.iter().flat_map(|e| e.2.x.iter().map(|v| v.to_bits())).collect();
            assert_eq!(x.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want_x, "{timesteps} bins");
            let want_mask: Vec<bool> = episodes.iter().flat_map(|e| e.2.mask.iter().copied()).collect();
            assert_eq!(mask.iter().map(Option::unwrap).collect::<Vec<_>>(), want_mask, "{timesteps} bins");

            // Written again from those rows in uneven batches, as a shard's compaction does.
            let mut again = RewrittenTensors::create(dir.path(), &writers).unwrap();
            for at in (0..rows.num_rows()).step_by(97) {
                again.push(&rows.slice(at, 97.min(rows.num_rows() - at))).unwrap();
            }
            let again = again.close().unwrap();
            assert!(written == std::fs::read(again.path()).unwrap(), "{timesteps} bins: the bytes differ");
        }
    }

    #[test]
    fn tensors_of_another_shape_are_refused_not_written_askew() {
        let dir = tempfile::tempdir().unwrap();
        let mut writers = ShardWriters::new(dir.path(), TIMESTEPS, &[]);
        let (key, summary, tensors) = episode_of(1, TIMESTEPS + 1);
        let info = EpisodeInfo { key: &key, profile: None, sample_name: None };
        let err = writers.write(0, &info, &summary, &tensors).unwrap_err();
        let expected = "h1/e001: 9 windows of tensors 184 cells wide in 1656 values and 1656 mask cells; the shard's are 138 cells wide";
        assert!(err.to_string().contains(expected), "{err}");
        let (key, summary, mut tensors) = episode(2);
        tensors.x.pop();
        let info = EpisodeInfo { key: &key, profile: None, sample_name: None };
        let err = writers.write(0, &info, &summary, &tensors).unwrap_err();
        assert!(err.to_string().contains("in 1241 values and 1242 mask cells"), "{err}");
    }
}
