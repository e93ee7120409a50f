//! The feature sink under change. Each shard is a few files (one summary +
//! tensor pair each): an unchanged episode keeps its rows where they are, new
//! rows go to one new file per shard and publication, and a shard is
//! compacted into one file when an episode left it or when its newer files
//! hold more than a quarter of its rows. So appending ten episodes writes
//! ten small files instead of re-encoding the corpus, and a removal rewrites
//! only the shards it touches.

use super::features::{
    open_feature_writer, shard_of, ClosedPair, EpisodeInfo, FeatureKind, RewrittenTensors, ShardWriters,
};
use super::manifest::{file_name, EpisodeRows, FileEntry, Published, ShardUpdate};
use crate::output;
use arrow_array::cast::AsArray;
use arrow_array::{BooleanArray, RecordBatch};
use epiflow_operators::model::EpisodeKey;
use epiflow_operators::tensor::TensorFeatures;
use epiflow_operators::window::SummaryFeatures;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// More files than this in a shard and it is compacted.
const MAX_FILES_PER_SHARD: usize = 8;

/// What happened to one usable episode's features.
#[derive(Clone, Debug)]
pub struct FeatureEvent {
    /// The episode.
    pub key: EpisodeKey,
    /// sha256 of the archive the rows come from (empty on removal).
    pub sha256: String,
    /// What happens to its rows.
    pub change: FeatureChange,
}

/// Rows kept from the published shards, computed on this run, or retracted.
#[derive(Clone, Debug)]
pub enum FeatureChange {
    /// The published rows stand: the archive and the lineage are unchanged.
    Keep {
        /// How many windows they hold.
        windows: usize,
    },
    /// Rows computed on this run.
    New(Box<NewRows>),
    /// The episode left the index after the first epoch: its rows go.
    Remove,
}

/// An episode's newly computed feature rows.
#[derive(Clone, Debug)]
pub struct NewRows {
    /// Its workload profile (a summary column).
    pub profile: Option<String>,
    /// Its sample (a summary column).
    pub sample_name: Option<String>,
    /// One summary row per window.
    pub summary: SummaryFeatures,
    /// One tensor row per window.
    pub tensors: TensorFeatures,
}

/// One shard while a publication is under way.
struct OpenShard {
    files: Vec<FileEntry>,
    windowless: Vec<EpisodeRows>,
    kept: HashSet<String>,
    new: Vec<EpisodeRows>,
}

/// A shard's files and windowless episodes.
type ShardContent = (Vec<FileEntry>, Vec<EpisodeRows>);

impl OpenShard {
    /// Epoch 0 carries the whole index: the shard starts from what the last
    /// run published and keeps only the episodes the epoch confirms. Later
    /// epochs (of `epiflow watch`) carry changes: the shard starts from what
    /// this sink settled and keeps every episode not retracted or replaced.
    fn starting(published: &Published, settled: &BTreeMap<usize, ShardContent>, shard: usize, epoch: u64) -> Self {
        if epoch == 0 {
            let (files, windowless) = published.shard(shard);
            return OpenShard { files, windowless, kept: HashSet::new(), new: Vec::new() };
        }
        let (files, windowless) = settled.get(&shard).cloned().unwrap_or_default();
        let kept = files.iter().flat_map(|f| &f.episodes).chain(&windowless).map(|e| e.key.clone()).collect();
        OpenShard { files, windowless, kept, new: Vec::new() }
    }
}

/// The shards one worker owns. Events stream in; [`FeatureSink::publish`]
/// settles every shard they touched.
pub struct FeatureSink {
    dir: PathBuf,
    shards: usize,
    /// The generation of epoch 0's files; epoch `e` writes `base + e`.
    base_generation: u64,
    writers: ShardWriters,
    published: Arc<Published>,
    /// Each shard's content as this sink last settled it.
    settled: BTreeMap<usize, ShardContent>,
    open: BTreeMap<usize, OpenShard>,
}

impl FeatureSink {
    /// A sink writing under `features_dir`, continuing from `published`.
    pub fn new(
        features_dir: &Path,
        timesteps: usize,
        metadata: &[(String, String)],
        shards: usize,
        published: Arc<Published>,
    ) -> FeatureSink {
        let metadata: Vec<KeyValue> = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
        FeatureSink {
            dir: features_dir.to_path_buf(),
            shards,
            base_generation: published.next_generation,
            writers: ShardWriters::new(features_dir, timesteps, &metadata),
            published,
            settled: BTreeMap::new(),
            open: BTreeMap::new(),
        }
    }

    /// Takes in one episode's features in epoch `epoch`; new rows start
    /// streaming to disk.
    pub fn apply(&mut self, event: FeatureEvent, epoch: u64) -> io::Result<()> {
        let shard = shard_of(&event.key, self.shards);
        let (published, settled) = (&self.published, &self.settled);
        let open = self.open.entry(shard).or_insert_with(|| OpenShard::starting(published, settled, shard, epoch));
        let key = event.key.to_string();
        match event.change {
            FeatureChange::Keep { .. } => {
                open.kept.insert(key);
            }
            FeatureChange::Remove => {
                open.kept.remove(&key);
            }
            FeatureChange::New(rows) => {
                open.kept.remove(&key);
                let NewRows { profile, sample_name, summary, tensors } = *rows;
                let windows = summary.windows.len();
                if windows > 0 {
                    let info = EpisodeInfo {
                        key: &event.key,
                        profile: profile.as_deref(),
                        sample_name: sample_name.as_deref(),
                    };
                    self.writers.write(shard, &info, &summary, &tensors)?;
                }
                open.new.push(EpisodeRows { key, sha256: event.sha256, windows });
            }
        }
        Ok(())
    }

    /// Settles every shard touched in epoch `epoch`: drops the episodes not
    /// kept, adds the new files or compacts, syncs and renames the new files
    /// into place. Returns the shards' new content; the caller publishes the
    /// manifest and then removes files no longer listed.
    pub fn publish(&mut self, epoch: u64) -> io::Result<Vec<ShardUpdate>> {
        let mut updates = Vec::new();
        let mut finished: Vec<(ClosedPair, String)> = Vec::new();
        for (shard, open) in std::mem::take(&mut self.open) {
            let delta = self.writers.close(shard)?;
            let name = file_name(shard, self.base_generation + epoch);
            let (files, closed) = self.settle(&open, delta, &name)?;
            finished.extend(closed.map(|pair| (pair, name)));
            let kept = |e: &&EpisodeRows| open.kept.contains(&e.key);
            let windowless: Vec<EpisodeRows> = open
                .windowless
                .iter()
                .filter(kept)
                .chain(open.new.iter().filter(|e| e.windows == 0))
                .cloned()
                .collect();
            self.settled.insert(shard, (files.clone(), windowless.clone()));
            updates.push(ShardUpdate { shard, files, windowless });
        }
        let files: Vec<&std::fs::File> =
            finished.iter().flat_map(|(pair, _)| pair.iter().map(|t| t.as_file())).collect();
        output::sync_together(&files)?;
        for ([summary, tensors], name) in finished {
            output::persist(summary, &self.dir.join(FeatureKind::Summary.dir()).join(&name))?;
            output::persist(tensors, &self.dir.join(FeatureKind::Tensors.dir()).join(&name))?;
        }
        for kind in [FeatureKind::Summary, FeatureKind::Tensors] {
            output::sync_dir(&self.dir.join(kind.dir()));
        }
        Ok(updates)
    }

    /// One shard's files after this publication, and the pair to publish
    /// under `name`, if any.
    fn settle(
        &self,
        open: &OpenShard,
        delta: Option<ClosedPair>,
        name: &str,
    ) -> io::Result<(Vec<FileEntry>, Option<ClosedPair>)> {
        let files = &open.files;
        let new_rows: Vec<EpisodeRows> = open.new.iter().filter(|e| e.windows > 0).cloned().collect();
        let new_total: usize = new_rows.iter().map(|e| e.windows).sum();
        let dirty = files.iter().any(|f| f.episodes.iter().any(|e| !open.kept.contains(&e.key)));
        let count = files.len() + usize::from(delta.is_some());
        let total = files.iter().map(FileEntry::rows).sum::<usize>() + new_total;
        let largest = files.iter().map(FileEntry::rows).chain([new_total]).max().unwrap_or(0);
        let compact = dirty || count > MAX_FILES_PER_SHARD || (count > 1 && 4 * (total - largest) > total);
        if !compact {
            let mut files = files.clone();
            if delta.is_some() {
                files.push(FileEntry { name: name.to_string(), episodes: new_rows });
            }
            return Ok((files, delta));
        }
        let mut episodes: Vec<EpisodeRows> = files
            .iter()
            .flat_map(|f| &f.episodes)
            .filter(|e| open.kept.contains(&e.key) && e.windows > 0)
            .cloned()
            .collect();
        if episodes.is_empty() && delta.is_none() {
            return Ok((Vec::new(), None));
        }
        let merged = self.merge(files, &open.kept, delta.as_ref())?;
        episodes.extend(new_rows);
        Ok((vec![FileEntry { name: name.to_string(), episodes }], Some(merged)))
    }

    /// One new pair holding the kept rows of `files`, then every row of
    /// `delta`.
    fn merge(&self, files: &[FileEntry], kept: &HashSet<String>, delta: Option<&ClosedPair>) -> io::Result<ClosedPair> {
        // Every row of the shard's files that stays, then the delta's, in order.
        let each_row = |kind: FeatureKind, put: &mut dyn FnMut(&RecordBatch) -> io::Result<()>| {
            let dir = self.dir.join(kind.dir());
            for file in files {
                let path = dir.join(&file.name);
                copy_rows(&path, Some(kept), put).map_err(|e| annotate(&path, e))?;
            }
            match delta {
                Some(delta) => copy_rows(delta[kind as usize].path(), None, put),
                None => Ok(()),
            }
        };
        let kind = FeatureKind::Summary;
        let (summary, mut writer) =
            open_feature_writer(kind, &self.dir.join(kind.dir()), self.writers.schema(kind), self.writers.metadata())?;
        each_row(kind, &mut |batch| writer.write(batch).map_err(io::Error::other))?;
        writer.close().map_err(io::Error::other)?;
        let kind = FeatureKind::Tensors;
        let mut tensors = RewrittenTensors::create(&self.dir.join(kind.dir()), &self.writers)?;
        each_row(kind, &mut |batch| tensors.push(batch))?;
        Ok([summary, tensors.close()?])
    }
}

/// Hands the rows of the feature file at `path` to `put`, batch by batch,
/// only those of episodes in `kept` when given.
fn copy_rows(
    path: &Path,
    kept: Option<&HashSet<String>>,
    put: &mut dyn FnMut(&RecordBatch) -> io::Result<()>,
) -> io::Result<()> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)
        .and_then(|b| b.build())
        .map_err(io::Error::other)?;
    for batch in reader {
        let batch = batch.map_err(io::Error::other)?;
        let batch = match kept {
            Some(kept) => keep_rows(&batch, kept)?,
            None => batch,
        };
        if batch.num_rows() > 0 {
            put(&batch)?;
        }
    }
    Ok(())
}

/// The rows of `batch` whose `host_id/episode_id` is in `kept`.
fn keep_rows(batch: &RecordBatch, kept: &HashSet<String>) -> io::Result<RecordBatch> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| io::Error::other(format!("no {name} column")))
    };
    let (hosts, episodes) = (column("host_id")?, column("episode_id")?);
    let mut key = String::new();
    let mask: BooleanArray = (0..batch.num_rows())
        .map(|r| {
            key.clear();
            key.push_str(hosts.value(r));
            key.push('/');
            key.push_str(episodes.value(r));
            Some(kept.contains(&key))
        })
        .collect();
    arrow_select::filter::filter_record_batch(batch, &mask).map_err(io::Error::other)
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::features::tests::{episode, read, TIMESTEPS, WINDOWS};
    use crate::sinks::manifest::Manifest;

    /// A sink over one shard continuing from what `dir` has published.
    fn sink(dir: &Path) -> FeatureSink {
        let published = Published::from_manifest(Manifest::read(dir), "L", 1);
        FeatureSink::new(dir, TIMESTEPS, &[], 1, Arc::new(published))
    }

    fn new(e: usize) -> FeatureEvent {
        let (key, summary, tensors) = episode(e);
        let rows = NewRows { profile: None, sample_name: None, summary, tensors };
        FeatureEvent { key, sha256: format!("sha{e}"), change: FeatureChange::New(Box::new(rows)) }
    }

    fn keep(e: usize) -> FeatureEvent {
        FeatureEvent { key: episode(e).0, sha256: format!("sha{e}"), change: FeatureChange::Keep { windows: WINDOWS } }
    }

    fn remove(e: usize) -> FeatureEvent {
        FeatureEvent { key: episode(e).0, sha256: String::new(), change: FeatureChange::Remove }
    }

    /// Publishes epoch `epoch` and returns, per listed file, the episode ids
    /// its tensor rows hold.
    fn publish(dir: &Path, sink: &mut FeatureSink, epoch: u64) -> Vec<Vec<String>> {
        let updates = sink.publish(epoch).unwrap().into_iter().map(|u| (u.shard, u)).collect();
        let base = Manifest { lineage: "L".into(), generation: sink.base_generation + epoch, ..Manifest::default() };
        let manifest = base.publish(dir, &updates).unwrap();
        manifest.shards["tensors"]
            .iter()
            .map(|f| {
                let (_, batch) = read(&dir.join(f));
                let ids = batch.column_by_name("episode_id").unwrap().as_string::<i32>();
                let mut ids: Vec<String> = ids.iter().map(|s| s.unwrap().to_string()).collect();
                ids.dedup();
                ids
            })
            .collect()
    }

    fn ids(es: &[usize]) -> Vec<String> {
        es.iter().map(|e| format!("e{e:03}")).collect()
    }

    #[test]
    fn kept_rows_stay_put_appends_add_a_file_and_a_removal_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = sink(dir.path());
        (0..6).for_each(|e| first.apply(new(e), 0).unwrap());
        assert_eq!(publish(dir.path(), &mut first, 0), vec![ids(&[0, 1, 2, 3, 4, 5])]);

        // One new episode: a seventh of the rows goes to a file of its own.
        let mut second = sink(dir.path());
        (0..6).for_each(|e| second.apply(keep(e), 0).unwrap());
        second.apply(new(6), 0).unwrap();
        assert_eq!(publish(dir.path(), &mut second, 0), vec![ids(&[0, 1, 2, 3, 4, 5]), ids(&[6])]);

        // Episode 2 is gone: the shard becomes one file without it.
        let mut third = sink(dir.path());
        [0, 1, 3, 4, 5, 6].into_iter().for_each(|e| third.apply(keep(e), 0).unwrap());
        assert_eq!(publish(dir.path(), &mut third, 0), vec![ids(&[0, 1, 3, 4, 5, 6])]);
        let files = std::fs::read_dir(dir.path().join("tensors")).unwrap().count();
        assert_eq!(files, 1, "replaced files and temporaries are gone");

        // Compacted rows are the computed ones, cell for cell.
        let name = &Manifest::read(dir.path()).unwrap().shards["tensors"][0];
        let (_, batch) = read(&dir.path().join(name));
        let x = batch.column_by_name("x").unwrap().as_fixed_size_list();
        let (_, _, tensors) = episode(6);
        let width = tensors.width();
        let last = batch.num_rows() - 1;
        let cells = x.value(last);
        let cells = cells.as_primitive::<arrow_array::types::Float32Type>().values();
        assert_eq!(cells, &tensors.x[(WINDOWS - 1) * width..WINDOWS * width]);
    }

    #[test]
    fn later_epochs_keep_what_they_do_not_mention() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = sink(dir.path());
        (0..4).for_each(|e| live.apply(new(e), 0).unwrap());
        assert_eq!(publish(dir.path(), &mut live, 0), vec![ids(&[0, 1, 2, 3])]);

        // Epoch 1 names only its changes: one arrival, one retraction.
        live.apply(remove(1), 1).unwrap();
        live.apply(new(4), 1).unwrap();
        assert_eq!(publish(dir.path(), &mut live, 1), vec![ids(&[0, 2, 3, 4])], "a retraction compacts");

        // An arrival alone adds a file; a replaced episode's old rows go.
        live.apply(new(5), 2).unwrap();
        assert_eq!(publish(dir.path(), &mut live, 2), vec![ids(&[0, 2, 3, 4]), ids(&[5])]);
        live.apply(new(0), 3).unwrap();
        assert_eq!(publish(dir.path(), &mut live, 3), vec![ids(&[2, 3, 4, 5, 0])]);
        let manifest = Manifest::read(dir.path()).unwrap();
        assert_eq!(manifest.windows, 5 * WINDOWS as u64);
        assert_eq!(manifest.generation, 3);
    }
}
