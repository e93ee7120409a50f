//! The last complete run, remembered whole (`OUT/cache/last-run.json`): what
//! it read — the program, the configuration and every stage's lineage, the
//! index's bytes, every indexed archive's file identity — and what it left:
//! every output file's identity and the corpus's statistics.
//!
//! A `run` that finds all of it as it was cannot compute anything different,
//! so it does not start the dataflow at all (as cargo finds a unit fresh):
//! it writes `run.json` from the remembered statistics — every episode
//! reused — and only the models' sinks, which keep their own memos, look
//! again. Anything else — a line added to or removed from the index, an
//! archive touched, an output deleted or rewritten, another configuration,
//! another build of the program — sends the run through the dataflow, where
//! each episode's results are still reused one by one. A run that failed on
//! an episode is not remembered, so its next run tries again.

use crate::cache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::stats::{RunStats, WorkerStats};
use epiflow_operators::archive::archive_path;
use epiflow_operators::fingerprint::Fingerprint;
use epiflow_operators::index::IndexEntry;
use epiflow_pipelines::lineage::Lineage;
use epiflow_pipelines::output::write_atomically;
use epiflow_pipelines::parallel::map_in_order;
use epiflow_pipelines::results::FileIdentity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The memo's file, in the cache folder: deleting the cache forgets it.
const FILE: &str = "last-run.json";
/// Bumped whenever what the memo records, or how, changes.
const VERSION: u32 = 1;
/// Archives `stat`ed per thread at least.
const STATS_PER_THREAD: usize = 2048;

/// What a run reads, each part as a digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Inputs {
    /// The program's file, the configuration, the cluster's shape, the
    /// store's folders and every operator's chained fingerprint.
    pub settings: String,
    /// The index's bytes.
    pub index: String,
    /// Every indexed archive's path and identity, in index order; `None`
    /// when one cannot be `stat`ed (such a run is never remembered: its
    /// next run must try the archive again).
    pub archives: Option<String>,
}

/// The configuration's sections a corpus run does not read: the models'
/// (whose sinks remember their own inputs) and `watch`'s. Every other
/// section, a future one included, is part of a run's settings.
const NOT_READ: [&str; 3] = ["train", "eval", "watch"];

/// The settings part of a run's [`Inputs`]: `None` when the program's own
/// file cannot be `stat`ed (a rebuilt program might then go unnoticed).
pub(crate) fn settings(config: &Config, lineage: &Lineage, cluster: (usize, usize), store: &Path) -> Option<String> {
    let program = FileIdentity::of(&std::env::current_exe().ok()?)?;
    let mut config = serde_json::to_value(config).ok()?;
    for section in NOT_READ {
        config.as_object_mut()?.remove(section);
    }
    let lineage: Vec<u8> = lineage
        .names()
        .flat_map(|name| [name.as_bytes(), &lineage.get(name).map_or([0; 16], |f| f.0)].concat())
        .collect();
    let parts: [&[u8]; 7] = [
        &VERSION.to_le_bytes(),
        &serde_json::to_vec(&program).ok()?,
        &serde_json::to_vec(&config).ok()?,
        &lineage,
        &(cluster.0 as u64).to_le_bytes(),
        &(cluster.1 as u64).to_le_bytes(),
        store.as_os_str().as_encoded_bytes(),
    ];
    Some(Fingerprint::of_parts(&parts).hex())
}

/// The index part of a run's [`Inputs`], from the bytes the run parses.
pub(crate) fn index(bytes: &[u8]) -> String {
    Fingerprint::of_parts(&[bytes]).hex()
}

/// The archives part of a run's [`Inputs`]: every entry's archive under
/// `episodes_root`, `stat`ed on every core.
pub(crate) fn archives(episodes_root: &Path, entries: &[IndexEntry]) -> Option<String> {
    let identities = map_in_order(entries, STATS_PER_THREAD, |entry| {
        let path = archive_path(episodes_root, &entry.key.host_id, &entry.key.episode_id);
        let id = FileIdentity::of(&path)?;
        let mut part = path.into_os_string().into_encoded_bytes();
        part.extend_from_slice(&id.size.to_le_bytes());
        part.extend_from_slice(&id.mtime_ns.to_le_bytes());
        part.extend_from_slice(&id.inode.to_le_bytes());
        Some(part)
    });
    let identities: Vec<Vec<u8>> = identities.into_iter().collect::<Option<_>>()?;
    let parts: Vec<&[u8]> = identities.iter().map(Vec::as_slice).collect();
    Some(Fingerprint::of_parts(&parts).hex())
}

/// The memo as written.
#[derive(Serialize, Deserialize)]
struct Memo {
    version: u32,
    inputs: Inputs,
    /// Every output file under `OUT` but `run.json` and the cache, by its
    /// path under `OUT`.
    outputs: BTreeMap<PathBuf, FileIdentity>,
    /// The corpus's statistics as a run that reuses everything reports them.
    stats: RunStats,
}

/// The last run's memo under `out`, when its settings are `settings` and
/// every output is as it left them: the other inputs are left to compare
/// with [`Remembered::read`] and [`Remembered::stats_if`] as the index is
/// read and every archive `stat`ed.
pub(crate) struct Remembered {
    memo: Memo,
}

impl Remembered {
    /// The memo under `out`, if there is one for `settings` whose outputs
    /// all stand as they were written.
    pub fn find(out: &Path, settings: &str) -> Option<Remembered> {
        let bytes = std::fs::read(path(out)).ok()?;
        let memo: Memo = serde_json::from_slice(&bytes).ok()?;
        let current = memo.version == VERSION && memo.inputs.settings == settings;
        (current && outputs(out).ok()? == memo.outputs).then_some(Remembered { memo })
    }

    /// Whether the last run read an index of this digest: the first of
    /// its inputs a run knows.
    pub fn read(&self, index: &str) -> bool {
        self.memo.inputs.index == index
    }

    /// The corpus's statistics, when the last run read exactly `inputs`.
    pub fn stats_if(self, inputs: &Inputs) -> Option<RunStats> {
        (inputs.archives.is_some() && self.memo.inputs == *inputs).then_some(self.memo.stats)
    }
}

/// The memo's file: `OUT/cache/last-run.json`.
fn path(out: &Path) -> PathBuf {
    cache::root(out).join(FILE)
}

/// Remembers a run under `out` that read `inputs` and published `corpus`
/// (its statistics before any model). Nothing is remembered of a run that
/// could not `stat` an archive or failed on an episode: its next run must
/// try them again.
pub(crate) fn remember(out: &Path, inputs: Inputs, corpus: &RunStats) -> Result<()> {
    let path = path(out);
    let stats = match inputs.archives.is_some() {
        true => reused(corpus),
        false => None,
    };
    let Some(stats) = stats else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("cannot remove", &path, e)),
            _ => Ok(()),
        };
    };
    let outputs = outputs(out).map_err(|e| Error::io("cannot list", out, e))?;
    let memo = Memo { version: VERSION, inputs, outputs, stats };
    write_atomically(&path, |w| serde_json::to_writer(w, &memo).map_err(std::io::Error::other))
        .map_err(|e| Error::io("cannot write", &path, e))
}

/// `corpus` as a run that reuses every result reports it: what was
/// computed counts as reused, no time is spent in an operator and no
/// episode goes through a worker. `None` when an operator failed on an
/// episode.
fn reused(corpus: &RunStats) -> Option<RunStats> {
    if corpus.operators.values().any(|op| op.failed > 0) {
        return None;
    }
    let mut stats = corpus.clone();
    for op in stats.operators.values_mut() {
        op.cached += op.computed;
        op.computed = 0;
        op.wall_s = 0.0;
    }
    for worker in &mut stats.per_worker {
        *worker = WorkerStats { worker: worker.worker, ..WorkerStats::default() };
    }
    Some(stats)
}

/// Every file under `out` but `run.json` and the cache folder, by its path
/// under `out`, with its identity.
fn outputs(out: &Path) -> std::io::Result<BTreeMap<PathBuf, FileIdentity>> {
    let mut files = BTreeMap::new();
    let mut folders = vec![PathBuf::new()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(out.join(&folder))? {
            let entry = entry?;
            let relative = folder.join(entry.file_name());
            if relative == Path::new(cache::FOLDER) || relative == Path::new("run.json") {
                continue;
            }
            match entry.file_type()?.is_dir() {
                true => folders.push(relative),
                false => {
                    let id = FileIdentity::of(&entry.path()).ok_or_else(|| std::io::Error::other("vanished"))?;
                    files.insert(relative, id);
                }
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::OperatorStats;

    fn corpus(failed: u64) -> RunStats {
        let op = OperatorStats { computed: 5, cached: 2, failed, wall_s: 1.5, fingerprint: Some("ab".into()) };
        RunStats {
            episodes: 7,
            operators: [("decode".to_string(), op)].into(),
            per_worker: vec![
                WorkerStats { worker: 0, episodes: 4, decoded: 3, busy_s: 0.5 },
                WorkerStats { worker: 1, episodes: 3, decoded: 2, busy_s: 0.4 },
            ],
            ..RunStats::default()
        }
    }

    fn inputs(index: &str, archives: Option<&str>) -> Inputs {
        Inputs { settings: "s".into(), index: index.into(), archives: archives.map(str::to_string) }
    }

    /// An output folder with a table, a nested shard, `run.json` and a cache.
    fn out() -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(out.path().join("features/summary")).unwrap();
        std::fs::create_dir_all(out.path().join("cache/align")).unwrap();
        for file in ["validation.parquet", "features/summary/part-0.parquet", "run.json", "cache/align/x.bin"] {
            std::fs::write(out.path().join(file), file).unwrap();
        }
        out
    }

    #[test]
    fn settings_follow_what_the_corpus_reads_and_not_the_models_sections() {
        let of = |config: &Config| {
            let stages = config.stages(&epiflow_pipelines::stages::Registry::standard()).unwrap();
            settings(config, &Lineage::of(&config.decode(), &stages), (2, 1), Path::new("store")).unwrap()
        };
        let base = Config::default();
        let mut models = base.clone();
        models.train.memory_mb += 1;
        models.eval.resamples += 1;
        models.watch.poll_ms += 1;
        assert_eq!(of(&models), of(&base));
        let mut shards = base.clone();
        shards.features.shards += 1;
        assert_ne!(of(&shards), of(&base));
        let mut window = base.clone();
        window.stages.insert("window".into(), toml::toml! { window_s = 20.0 }.into());
        assert_ne!(of(&window), of(&base));
        let stages = base.stages(&epiflow_pipelines::stages::Registry::standard()).unwrap();
        let lineage = Lineage::of(&base.decode(), &stages);
        assert_ne!(settings(&base, &lineage, (1, 1), Path::new("store")), Some(of(&base)), "another cluster");
        assert_ne!(settings(&base, &lineage, (2, 1), Path::new("other")), Some(of(&base)), "another store");
    }

    #[test]
    fn a_run_is_remembered_as_one_that_reuses_everything() {
        let stats = reused(&corpus(0)).unwrap();
        let op = &stats.operators["decode"];
        assert_eq!((op.computed, op.cached, op.failed, op.wall_s), (0, 7, 0, 0.0));
        assert_eq!(op.fingerprint.as_deref(), Some("ab"));
        assert_eq!(
            stats.per_worker,
            vec![WorkerStats { worker: 0, ..Default::default() }, WorkerStats { worker: 1, ..Default::default() }]
        );
        assert_eq!(stats.episodes, 7);
        assert!(reused(&corpus(1)).is_none(), "a failed episode must be tried again");
    }

    #[test]
    fn outputs_are_every_file_but_run_json_and_the_cache() {
        let out = out();
        let listed: Vec<_> = outputs(out.path()).unwrap().into_keys().collect();
        assert_eq!(listed, vec![PathBuf::from("features/summary/part-0.parquet"), PathBuf::from("validation.parquet")]);
    }

    #[test]
    fn the_memo_stands_only_for_the_same_settings_inputs_and_outputs() {
        let out = out();
        remember(out.path(), inputs("i", Some("a")), &corpus(0)).unwrap();
        let found = || Remembered::find(out.path(), "s");
        assert_eq!(found().unwrap().stats_if(&inputs("i", Some("a"))).unwrap().operators["decode"].cached, 7);
        assert!(Remembered::find(out.path(), "other settings").is_none());
        assert!(found().unwrap().read("i") && !found().unwrap().read("other index"));
        assert!(found().unwrap().stats_if(&inputs("other index", Some("a"))).is_none());
        assert!(found().unwrap().stats_if(&inputs("i", Some("other archives"))).is_none());

        // run.json and the cache may change; any other output may not.
        std::fs::write(out.path().join("run.json"), "newer").unwrap();
        std::fs::write(out.path().join("cache/align/y.bin"), "newer").unwrap();
        assert!(found().is_some());
        std::fs::write(out.path().join("features/summary/part-1.parquet"), "new").unwrap();
        assert!(found().is_none(), "a file added");
        std::fs::remove_file(out.path().join("features/summary/part-1.parquet")).unwrap();
        assert!(found().is_some());
        std::fs::write(out.path().join("validation.parquet"), "rewritten, longer").unwrap();
        assert!(found().is_none(), "a file rewritten");

        // A damaged memo is no memo.
        std::fs::write(path(out.path()), "{\"version\": 1, \"inp").unwrap();
        assert!(found().is_none());
    }

    #[test]
    fn a_run_that_failed_or_missed_an_archive_removes_the_memo() {
        let out = out();
        remember(out.path(), inputs("i", Some("a")), &corpus(0)).unwrap();
        remember(out.path(), inputs("i", None), &corpus(0)).unwrap();
        assert!(!path(out.path()).exists());
        remember(out.path(), inputs("i", Some("a")), &corpus(0)).unwrap();
        remember(out.path(), inputs("i", Some("a")), &corpus(2)).unwrap();
        assert!(!path(out.path()).exists());
    }

    #[test]
    fn archives_change_with_any_archive_identity_and_miss_a_missing_one() {
        let store = tempfile::tempdir().unwrap();
        let entry = |id: &str| IndexEntry {
            key: epiflow_operators::model::EpisodeKey { host_id: "h".into(), episode_id: id.into() },
            sha256: None,
            bytes: None,
            received_at_ns: None,
            line: 1,
        };
        std::fs::create_dir_all(store.path().join("h")).unwrap();
        let entries = [entry("a"), entry("b")];
        for e in &entries {
            std::fs::write(archive_path(store.path(), "h", &e.key.episode_id), "bytes").unwrap();
        }
        let before = archives(store.path(), &entries).unwrap();
        assert_eq!(archives(store.path(), &entries).unwrap(), before);
        let b = archive_path(store.path(), "h", "b");
        std::fs::write(b.with_extension("new"), "bytes").unwrap();
        std::fs::rename(b.with_extension("new"), &b).unwrap();
        assert_ne!(archives(store.path(), &entries).unwrap(), before, "the same bytes by rename: a new inode");
        std::fs::remove_file(&b).unwrap();
        assert!(archives(store.path(), &entries).is_none());
    }
}
