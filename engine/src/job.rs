//! A corpus job: the store it reads, where its outputs go, the processes
//! that work on it, its configuration and its stages. Preparing one builds
//! the dataflow's plan (the cache, the features' reuse, the splits) and the
//! publisher of its outputs; [`Job::run`] runs it once over the index,
//! [`Job::follow`] keeps it running as the index changes.
//!
//! ```no_run
//! use epiflow_engine::{Job, Mode};
//! use std::sync::Arc;
//!
//! let job = Job::new("STORE", "STORE/derived");
//! let stats = job.run(Mode::Run, Arc::new(epiflow_engine::Logs))?.expect("one process: the leader");
//! println!("{} episodes, {} windows", stats.episodes, stats.windows);
//! # Ok::<(), epiflow_engine::Error>(())
//! ```

use crate::cache::DiskCache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::features;
use crate::observer::{Observer, Part};
use crate::publish::{Downstream, Publisher};
use crate::stats::RunStats;
use epiflow_operators::index::{read_index, IndexEntry};
use epiflow_pipelines::corpus::{run as run_dataflow, CorpusPlan, CorpusState, EpisodeReport};
use epiflow_pipelines::results::NoStore;
use epiflow_pipelines::stages::{Registry, Stages};
use epiflow_pipelines::Cluster;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A corpus job. Its fields are plain settings; [`Job::new`] gives the
/// defaults.
#[derive(Clone)]
pub struct Job {
    /// The receiver store (`index.jsonl`, `episodes/`).
    pub store: PathBuf,
    /// Where every output goes (the commands' default: `STORE/derived`).
    pub out: PathBuf,
    /// The dataflow's workers and processes.
    pub cluster: Cluster,
    /// The engine's settings and every stage's section.
    pub config: Config,
    /// The stages to run, configured from `config` when the job is
    /// prepared: the standard ones, plus any registered out of tree.
    pub registry: Registry,
}

/// What a run computes, and whether it reuses earlier results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Validation and classification, all computed (`epiflow validate`).
    Validate,
    /// Also windows and tensors, all computed (`epiflow features`).
    Features,
    /// Everything, reusing `OUT/cache` and the published features; then the
    /// models of `[train] splits`, trained and evaluated (`epiflow run`).
    Run,
    /// Like `Run`, training without evaluating (`epiflow train`).
    Train,
}

impl Mode {
    /// The command's name, as `run.json` records it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Validate => "validate",
            Mode::Features => "features",
            Mode::Run => "run",
            Mode::Train => "train",
        }
    }

    /// Whether earlier results are reused.
    fn reuses(self) -> bool {
        matches!(self, Mode::Run | Mode::Train)
    }
}

impl Job {
    /// A job on `store` writing to `out`: the default configuration and the
    /// standard stages, on one process with a worker per core.
    pub fn new(store: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Job {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Job {
            store: store.into(),
            out: out.into(),
            cluster: Cluster::local(cores),
            config: Config::default(),
            registry: Registry::standard(),
        }
    }

    /// `STORE/episodes`.
    pub fn episodes_root(&self) -> PathBuf {
        self.store.join("episodes")
    }

    /// `STORE/index.jsonl`.
    pub fn index_path(&self) -> PathBuf {
        self.store.join("index.jsonl")
    }

    /// The registry's stages, each configured from its section.
    pub fn stages(&self) -> Result<Stages> {
        self.config.stages(&self.registry)
    }

    /// Runs the job once over the index as it stands: validation and
    /// classification, and — unless `mode` is validation only — windows,
    /// tensors and their shards, the splits, and with `[train] splits` the
    /// models. Writes every output under `out` and returns what `run.json`
    /// says; `None` on processes other than the leader, which writes them.
    pub fn run(&self, mode: Mode, observer: Arc<dyn Observer>) -> Result<Option<RunStats>> {
        let start = Instant::now();
        let stages = self.stages()?;
        // The index is read while the cache and the published features are
        // loaded: three files of a line per episode, parsed side by side.
        let (read, prepared) = std::thread::scope(|scope| {
            let reader = scope.spawn(|| match self.cluster.is_leader() {
                true => read_entries(&self.index_path(), &*observer),
                false => Ok((Vec::new(), 0)),
            });
            let prepared = self.prepare(stages, mode, mode.name(), Arc::clone(&observer));
            (reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), prepared)
        });
        let (entries, index_problems) = read?;
        let (plan, mut publisher) = prepared?;
        if matches!(mode, Mode::Run | Mode::Train) && !self.config.train.splits.is_empty() {
            let eval = (mode == Mode::Run).then(|| self.config.eval.clone());
            publisher.models = Some(Downstream { train: self.config.train.clone(), eval });
        }
        let Some(corpus) = run_plan(plan, entries, &self.cluster, observer)? else { return Ok(None) };
        let stats = publisher.publish_corpus(&corpus, start, index_problems)?;
        // The models read the published outputs: the corpus's state is freed
        // first, so training's memory does not sit on top of it. Without
        // models nothing waits for the freeing (a record or two per episode,
        // a tenth of a second at 16,000 episodes): it is left to a thread.
        match publisher.models {
            Some(_) => drop(corpus),
            None => drop(std::thread::spawn(move || drop(corpus))),
        }
        publisher.finish(stats, start).map(Some)
    }

    /// The dataflow's plan of `stages` for `mode` and what publishes its
    /// outputs, recorded in `run.json` as `command`.
    pub(crate) fn prepare(
        &self,
        stages: Stages,
        mode: Mode,
        command: &'static str,
        observer: Arc<dyn Observer>,
    ) -> Result<(CorpusPlan, Publisher)> {
        let mut plan = computing_plan(&self.config, stages, &self.episodes_root());
        let described = match mode {
            Mode::Validate => None,
            _ => {
                let (features, described) = features::plan(&self.out, &plan.stages, self.config.features.shards)?;
                plan.features = Some(features);
                Some(described)
            }
        };
        if mode.reuses() {
            plan.splits = Some(self.config.split.clone());
        }
        let lineage = plan.lineage();
        // The cache's identity memo and the published manifest are read side by side.
        let (cache, manifest) = std::thread::scope(|scope| {
            let cache = scope.spawn(|| match mode.reuses() {
                true => {
                    let root = self.out.join("cache");
                    DiskCache::open(&root)
                        .map(|c| Some(Arc::new(c)))
                        .map_err(|e| Error::io("cannot open cache", &root, e))
                }
                false => Ok(None),
            });
            let manifest = plan
                .features
                .as_mut()
                .zip(described)
                .and_then(|(features, described)| features::reuse(features, described, &lineage, mode.reuses()));
            (cache.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), manifest)
        });
        let cache = cache?;
        if let Some(cache) = &cache {
            plan.store = cache.clone();
        }
        let publisher = Publisher {
            out: self.out.clone(),
            command,
            tables: plan.active(),
            lineage,
            cache,
            manifest,
            workers: self.cluster.workers,
            processes: self.cluster.processes,
            models: None,
            observer,
        };
        Ok((plan, publisher))
    }
}

/// The plan of validation and classification over the archives under
/// `episodes_root` with `stages` and `config`'s decoder, computing
/// everything: no features, no splits, no cache.
pub(crate) fn computing_plan(config: &Config, stages: Stages, episodes_root: &Path) -> CorpusPlan {
    CorpusPlan {
        episodes_root: episodes_root.to_path_buf(),
        decode: config.decode(),
        stages,
        features: None,
        splits: None,
        store: Arc::new(NoStore),
    }
}

/// Reads the index, telling `observer` of each malformed line; returns the
/// entries and how many lines were skipped.
pub(crate) fn read_entries(index_path: &Path, observer: &dyn Observer) -> Result<(Vec<IndexEntry>, usize)> {
    let scan = read_index(index_path).map_err(|e| Error::io("cannot read index", index_path, e))?;
    observer.index_problems(&scan.problems);
    Ok((scan.entries, scan.problems.len()))
}

/// Runs `plan` over `entries` once, telling `observer` of each episode.
/// `None` on processes other than the leader.
pub(crate) fn run_plan(
    plan: CorpusPlan,
    entries: Vec<IndexEntry>,
    cluster: &Cluster,
    observer: Arc<dyn Observer>,
) -> Result<Option<CorpusState>> {
    observer.started(Part::Corpus, entries.len() as u64);
    let hears = Arc::clone(&observer);
    let corpus = run_dataflow(plan, entries, cluster, Arc::new(move |report: &EpisodeReport| hears.episode(report)))
        .map_err(Error::Dataflow)?;
    observer.finished(Part::Corpus);
    Ok(corpus)
}
