//! Reading the feature shards back for training: the windows of one split's
//! sides, restricted to a channel set, as dense row-major matrices.
//!
//! Shards are read one record batch at a time, and only the columns the
//! channel set needs (summary files: the set's `<channel>:<stat>` columns;
//! tensor files: `x` and `mask`, of which only the set's channels are kept),
//! so memory holds what training uses and nothing of the rest of the corpus.

use crate::sinks::features::FeatureKind;
use crate::sinks::manifest::Manifest;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type};
use arrow_array::{Array, RecordBatch};
use epiflow_operators::channels::ChannelSet;
use epiflow_operators::model::N_CHANNELS;
use epiflow_operators::split::Side;
use epiflow_operators::window::STATS;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

/// Most rows per record batch read from a shard.
const READ_BATCH: usize = 1024;

/// Most bytes a record batch decodes to: wide tensor rows (every channel's
/// cells, before the set's are picked out) come fewer per batch, so what a
/// read holds does not grow with the window.
const READ_BATCH_BYTES: usize = 4 << 20;

/// The windows of one side: `x` is `rows × width`, row-major. For tensors a
/// row is channel-major (`c * timesteps + t` over the set's channels) and
/// `mask` has the same layout; summaries have no mask (NaN marks a missing
/// statistic).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowRows {
    /// Values per window: the set's channels × statistics, or × time steps.
    pub width: usize,
    /// The windows' values, `width` per row.
    pub x: Vec<f32>,
    /// Tensors only: whether each cell held a point.
    pub mask: Option<Vec<bool>>,
    /// Class ids (SPEC phases).
    pub labels: Vec<u8>,
    /// Index into [`SideWindows::episodes`] per row.
    pub episode: Vec<u32>,
}

impl WindowRows {
    /// Number of windows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// One window's features.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.width..(i + 1) * self.width]
    }

    /// Appends every window of `other` (of the same width).
    pub fn extend(&mut self, other: &WindowRows) {
        self.x.extend_from_slice(&other.x);
        if let Some(cells) = &other.mask {
            self.mask.get_or_insert_with(Vec::new).extend_from_slice(cells);
        }
        self.labels.extend_from_slice(&other.labels);
        self.episode.extend_from_slice(&other.episode);
    }

    /// Appends window `i` of `other` (of the same width).
    pub fn push_row(&mut self, other: &WindowRows, i: usize) {
        self.x.extend_from_slice(other.row(i));
        if let Some(cells) = &other.mask {
            self.mask.get_or_insert_with(Vec::new).extend_from_slice(&cells[i * other.width..(i + 1) * other.width]);
        }
        self.labels.push(other.labels[i]);
        self.episode.push(other.episode[i]);
    }
}

/// The windows of every side, with the episodes they come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SideWindows {
    /// Each side's windows, as the split placed their episodes.
    pub sides: BTreeMap<Side, WindowRows>,
    /// (host, episode) of each [`WindowRows::episode`] index.
    pub episodes: Vec<(String, String)>,
}

/// Reads every window whose episode `sides` places, from the shards
/// `manifest` lists under `features_dir`, keeping the channels of `set`.
pub fn read_windows(
    features_dir: &Path,
    manifest: &Manifest,
    kind: FeatureKind,
    set: ChannelSet,
    sides: &HashMap<(String, String), Side>,
) -> io::Result<SideWindows> {
    let shards = FeatureShards::open(features_dir, manifest, kind, set);
    let mut out = SideWindows::default();
    let mut episode_ids = EpisodeIds::default();
    for shard in 0..shards.len() {
        shards.read(shard, sides, &mut episode_ids, &mut |side, rows| {
            out.sides
                .entry(side)
                .or_insert_with(|| WindowRows { width: rows.width, ..WindowRows::default() })
                .extend(&rows);
        })?;
    }
    out.episodes = episode_ids.into_keys();
    Ok(out)
}

/// Bytes a window of `width` values takes in a [`WindowRows`]: its values,
/// its mask cells when `masked`, its label and episode id.
pub fn window_bytes(width: usize, masked: bool) -> usize {
    width * (std::mem::size_of::<f32>() + usize::from(masked)) + 1 + std::mem::size_of::<u32>()
}

/// Dense ids of the episodes met while reading, in order of first meeting.
#[derive(Default)]
pub struct EpisodeIds(HashMap<(String, String), u32>);

impl EpisodeIds {
    /// The id of `key`, given it on first sight.
    fn of(&mut self, key: (String, String)) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(key).or_insert(next)
    }

    /// (host, episode) of each id, by id.
    fn into_keys(self) -> Vec<(String, String)> {
        let mut keys = vec![Default::default(); self.0.len()];
        for (key, id) in self.0 {
            keys[id as usize] = key;
        }
        keys
    }
}

/// The feature shards of one kind, read for one channel set: what a pass
/// over the windows reads, one shard and one record batch at a time, so
/// that a caller streaming epochs holds a batch, not the corpus.
pub struct FeatureShards {
    files: Vec<PathBuf>,
    layout: Layout,
    wanted: Vec<String>,
}

impl FeatureShards {
    /// The shards of `kind` that `manifest` lists under `features_dir`, to be
    /// read keeping the channels of `set`.
    pub fn open(features_dir: &Path, manifest: &Manifest, kind: FeatureKind, set: ChannelSet) -> FeatureShards {
        let channels = set.indices();
        let timesteps = manifest.window.get("timesteps").and_then(|t| t.as_u64()).unwrap_or(0) as usize;
        let width = match kind {
            FeatureKind::Summary => channels.len() * STATS.len(),
            FeatureKind::Tensors => channels.len() * timesteps,
        };
        let files = manifest.shards.get(kind.dir()).into_iter().flatten().map(|f| features_dir.join(f)).collect();
        FeatureShards { files, wanted: columns(kind, &channels), layout: Layout { kind, channels, timesteps, width } }
    }

    /// Number of shard files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there is no shard at all.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Values per window.
    pub fn width(&self) -> usize {
        self.layout.width
    }

    /// Bytes one window takes in memory: its values, its mask cells (tensors),
    /// its label and episode id. What buffers are sized by.
    pub fn window_bytes(&self) -> usize {
        window_bytes(self.layout.width, self.layout.kind == FeatureKind::Tensors)
    }

    /// Rows per record batch: [`READ_BATCH`], fewer for rows so wide that
    /// a batch would decode to more than [`READ_BATCH_BYTES`].
    fn batch_rows(&self) -> usize {
        let stored = match self.layout.kind {
            FeatureKind::Summary => self.layout.width * std::mem::size_of::<f32>(),
            FeatureKind::Tensors => N_CHANNELS * self.layout.timesteps * (std::mem::size_of::<f32>() + 1),
        };
        (READ_BATCH_BYTES / stored.max(1)).clamp(16, READ_BATCH)
    }

    /// Reads shard `shard` one record batch at a time and hands `each` the
    /// windows of every batch whose episode `sides` places, one side at a
    /// time, in file order; episodes get their ids from `episode_ids`.
    pub fn read(
        &self,
        shard: usize,
        sides: &HashMap<(String, String), Side>,
        episode_ids: &mut EpisodeIds,
        each: &mut dyn FnMut(Side, WindowRows),
    ) -> io::Result<()> {
        let Some(path) = self.files.get(shard) else { return Ok(()) };
        let bad =
            |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()));
        let reader =
            std::fs::File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(reader).map_err(|e| bad(&e))?;
        let schema = builder.schema().clone();
        let roots: Vec<usize> = self.wanted.iter().filter_map(|name| schema.index_of(name).ok()).collect();
        if roots.len() != self.wanted.len() {
            return Err(bad(&format!("missing columns: expected {}", self.wanted.join(", "))));
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let batches = builder.with_projection(mask).with_batch_size(self.batch_rows()).build().map_err(|e| bad(&e))?;
        for batch in batches {
            let batch = batch.map_err(|e| bad(&e))?;
            let mut by_side = BTreeMap::new();
            append_batch(&batch, &self.layout, sides, episode_ids, &mut by_side).map_err(|e| bad(&e))?;
            for (side, rows) in by_side {
                each(side, rows);
            }
        }
        Ok(())
    }
}

/// What a row of the output holds.
struct Layout {
    kind: FeatureKind,
    /// Registry indices of the kept channels.
    channels: Vec<usize>,
    timesteps: usize,
    width: usize,
}

/// The columns to read, in the order [`BatchFeatures::of`] expects them.
fn columns(kind: FeatureKind, channels: &[usize]) -> Vec<String> {
    let mut names: Vec<String> = ["host_id", "episode_id", "label"].map(String::from).to_vec();
    match kind {
        FeatureKind::Summary => {
            let registry = epiflow_operators::channels::CHANNELS;
            names.extend(channels.iter().flat_map(|&c| STATS.map(|s| format!("{}:{s}", registry[c].name))));
        }
        FeatureKind::Tensors => names.extend(["x", "mask"].map(String::from)),
    }
    names
}

/// A batch's feature columns, looked up once per batch.
enum BatchFeatures<'a> {
    Summary(Vec<&'a arrow_array::Float32Array>),
    Tensors { x: &'a arrow_array::FixedSizeListArray, mask: &'a arrow_array::FixedSizeListArray },
}

impl<'a> BatchFeatures<'a> {
    fn of(batch: &'a RecordBatch, kind: FeatureKind) -> Result<Self, String> {
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("no column {name}"));
        Ok(match kind {
            // Feature columns follow the three id columns, in `columns` order.
            FeatureKind::Summary => BatchFeatures::Summary(
                (3..batch.num_columns())
                    .map(|c| batch.column(c).as_primitive_opt::<Float32Type>().ok_or("a feature is not float32".into()))
                    .collect::<Result<_, String>>()?,
            ),
            FeatureKind::Tensors => BatchFeatures::Tensors {
                x: column("x")?.as_fixed_size_list_opt().ok_or("x is not a fixed-size list")?,
                mask: column("mask")?.as_fixed_size_list_opt().ok_or("mask is not a fixed-size list")?,
            },
        })
    }

    /// Appends row `row`'s features for `channels` to `windows`.
    fn append(&self, row: usize, channels: &[usize], timesteps: usize, windows: &mut WindowRows) -> Result<(), String> {
        match self {
            BatchFeatures::Summary(columns) => {
                windows.x.extend(columns.iter().map(|v| if v.is_null(row) { f32::NAN } else { v.value(row) }));
            }
            BatchFeatures::Tensors { x, mask } => {
                let (xv, mv) = (x.value(row), mask.value(row));
                let xv = xv.as_primitive_opt::<Float32Type>().ok_or("x items are not float32")?;
                let mv = mv.as_boolean_opt().ok_or("mask items are not boolean")?;
                if xv.len() != N_CHANNELS * timesteps || mv.len() != xv.len() {
                    return Err(format!("x has {} cells, expected {}", xv.len(), N_CHANNELS * timesteps));
                }
                let cells = windows.mask.get_or_insert_with(Vec::new);
                for &c in channels {
                    let range = c * timesteps..(c + 1) * timesteps;
                    windows.x.extend_from_slice(&xv.values()[range.clone()]);
                    cells.extend(range.map(|i| mv.value(i)));
                }
            }
        }
        Ok(())
    }
}

/// Appends the rows of `batch` whose episode has a side.
fn append_batch(
    batch: &RecordBatch,
    layout: &Layout,
    sides: &HashMap<(String, String), Side>,
    episode_ids: &mut EpisodeIds,
    out: &mut BTreeMap<Side, WindowRows>,
) -> Result<(), String> {
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("no column {name}"));
    let hosts = column("host_id")?.as_string_opt::<i32>().ok_or("host_id is not a string")?;
    let episodes = column("episode_id")?.as_string_opt::<i32>().ok_or("episode_id is not a string")?;
    let labels = column("label")?.as_primitive_opt::<Int32Type>().ok_or("label is not int32")?;
    let features = BatchFeatures::of(batch, layout.kind)?;
    // An episode's rows are consecutive: its side and id are looked up once
    // per run of them, not (with two owned strings) once per row.
    let mut last: Option<(&str, &str)> = None;
    let mut placed: Option<(Side, u32)> = None;
    for row in 0..batch.num_rows() {
        let key = (hosts.value(row), episodes.value(row));
        if last != Some(key) {
            let owned = (key.0.to_string(), key.1.to_string());
            placed = sides.get(&owned).copied().map(|side| (side, episode_ids.of(owned)));
            last = Some(key);
        }
        let Some((side, id)) = placed else { continue };
        let windows = out.entry(side).or_insert_with(|| WindowRows { width: layout.width, ..WindowRows::default() });
        let label = u8::try_from(labels.value(row)).map_err(|_| format!("label {} out of range", labels.value(row)))?;
        features.append(row, &layout.channels, layout.timesteps, windows)?;
        windows.labels.push(label);
        windows.episode.push(id);
    }
    Ok(())
}
