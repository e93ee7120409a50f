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
use crate::publish::{self, Downstream, Publisher};
use crate::run_memo::{self, Inputs, Remembered};
use crate::stats::RunStats;
use epiflow_operators::index::{parse_index, IndexEntry};
use epiflow_pipelines::corpus::{run as run_dataflow, CorpusPlan, CorpusState, EpisodeReport};
use epiflow_pipelines::lineage::Lineage;
use epiflow_pipelines::results::NoStore;
use epiflow_pipelines::stages::{Registry, Stages};
use epiflow_pipelines::Cluster;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
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
    /// A run that reuses results on one process is remembered: the next
    /// one, when nothing it reads changed and its outputs stand, does not
    /// start the dataflow (`OUT/cache/last-run.json`, docs/incremental.md).
    pub fn run(&self, mode: Mode, observer: Arc<dyn Observer>) -> Result<Option<RunStats>> {
        let start = Instant::now();
        let (read, start_with) = self.begin(self.stages()?, mode, &observer)?;
        let downstream = self.downstream(mode);
        let (plan, mut publisher) = match start_with {
            Start::Plan(prepared) => *prepared,
            Start::Current(stats) => return self.rerun_current(mode, *stats, read, downstream, start, &*observer),
        };
        publisher.models = downstream;
        let Some(corpus) = run_plan(plan, read.entries, &self.cluster, observer)? else { return Ok(None) };
        let published = publisher.publish_corpus(&corpus, start, read.problems)?;
        // The models read the published outputs: the corpus's state is freed
        // first, so training's memory does not sit on top of it. Without
        // models nothing waits for the freeing (a record or two per episode,
        // a tenth of a second at 16,000 episodes): it is left to a thread.
        match publisher.models {
            Some(_) => drop(corpus),
            None => drop(std::thread::spawn(move || drop(corpus))),
        }
        let stats = publisher.finish(published.clone(), start)?;
        if let Some(inputs) = read.inputs {
            self.remember(inputs, &published);
        }
        Ok(Some(stats))
    }

    /// Reads the index and prepares the run of `stages` for `mode`: the
    /// dataflow's plan and publisher, or — when a run of one process that
    /// reuses results finds its last run's settings, outputs, index and
    /// archives as they were — that run's statistics.
    fn begin(&self, stages: Stages, mode: Mode, observer: &Arc<dyn Observer>) -> Result<(IndexRead, Start)> {
        let settings = (mode.reuses() && self.cluster.processes == 1)
            .then(|| {
                let lineage = Lineage::of(&self.config.decode(), &stages);
                run_memo::settings(&self.config, &lineage, (self.cluster.workers, 1), &self.store)
            })
            .flatten();
        // The index is read (and with a memo, every archive `stat`ed) while
        // the cache and the published features are loaded: three files of a
        // line per episode, parsed side by side. Only when the last run's
        // settings, outputs and index's bytes stand does the plan wait for
        // the archives' `stat`s, to be skipped when they stand too.
        let (read, prepared) = std::thread::scope(|scope| {
            let (digest, index) = std::sync::mpsc::sync_channel(1);
            let reader = scope.spawn(|| match self.cluster.is_leader() {
                true => self.read_index(settings.as_deref(), &**observer, digest),
                false => Ok(IndexRead::default()),
            });
            let prepare = || {
                let prepared = self.prepare(stages, mode, mode.name(), Arc::clone(observer));
                prepared.map(|prepared| Start::Plan(Box::new(prepared)))
            };
            let remembered = settings
                .as_deref()
                .and_then(|settings| Remembered::find(&self.out, settings))
                .filter(|remembered| index.recv().is_ok_and(|index| remembered.read(&index)));
            match remembered {
                Some(remembered) => {
                    let read = joined(reader);
                    let inputs = read.as_ref().ok().and_then(|read| read.inputs.as_ref());
                    let prepared = match inputs.and_then(|inputs| remembered.stats_if(inputs)) {
                        Some(stats) => Ok(Start::Current(Box::new(stats))),
                        None => prepare(),
                    };
                    (read, prepared)
                }
                None => {
                    let prepared = prepare();
                    (joined(reader), prepared)
                }
            }
        });
        Ok((read?, prepared?))
    }

    /// A run whose last run read the same inputs and whose outputs stand:
    /// `run.json` says every episode was reused (`corpus`, the remembered
    /// statistics), and only the models' sinks look again.
    fn rerun_current(
        &self,
        mode: Mode,
        mut corpus: RunStats,
        read: IndexRead,
        downstream: Option<Downstream>,
        start: Instant,
        observer: &dyn Observer,
    ) -> Result<Option<RunStats>> {
        observer.started(Part::Corpus, read.entries.len() as u64);
        observer.finished(Part::Corpus);
        tracing::info!("nothing changed since the last run: its outputs stand");
        corpus.command = mode.name().into();
        corpus.index_problems = read.problems;
        corpus.wall_s = start.elapsed().as_secs_f64();
        corpus.corpus_s = corpus.wall_s;
        let stats =
            publish::finish(&self.out, downstream.as_ref(), self.cluster.workers, observer, corpus.clone(), start)?;
        // The models' sinks may have written their outputs again.
        if let (Some(_), Some(inputs)) = (downstream, read.inputs) {
            self.remember(inputs, &corpus);
        }
        Ok(Some(stats))
    }

    /// Remembers a completed run (see [`run_memo`]); a memo that cannot be
    /// written only costs the next run its shortcut.
    fn remember(&self, inputs: Inputs, corpus: &RunStats) {
        if let Err(e) = run_memo::remember(&self.out, inputs, corpus) {
            tracing::warn!("the run is not remembered: {e}");
        }
    }

    /// The index as the leader reads it, telling `observer` of each
    /// malformed line; with the `settings` of a run to remember, its
    /// inputs (the index's digest, every archive `stat`ed), the digest sent
    /// to `digest` as soon as it is known.
    fn read_index(
        &self,
        settings: Option<&str>,
        observer: &dyn Observer,
        digest: SyncSender<String>,
    ) -> Result<IndexRead> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read index", &path, e))?;
        let index = settings.map(|_| run_memo::index(&bytes));
        if let Some(index) = &index {
            // Nobody waits when no memo was found.
            let _ = digest.try_send(index.clone());
        }
        let (entries, problems) = parse_entries(&bytes, &path, observer);
        let inputs = settings.zip(index).map(|(settings, index)| Inputs {
            settings: settings.to_string(),
            index,
            archives: run_memo::archives(&self.episodes_root(), &entries),
        });
        Ok(IndexRead { entries, problems, inputs })
    }

    /// The sinks after the corpus that `mode` runs: the models of `[train]
    /// splits`, evaluated unless only training.
    fn downstream(&self, mode: Mode) -> Option<Downstream> {
        let trains = matches!(mode, Mode::Run | Mode::Train) && !self.config.train.splits.is_empty();
        let eval = (mode == Mode::Run).then(|| self.config.eval.clone());
        trains.then(|| Downstream { train: self.config.train.clone(), eval })
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
                    let root = self.cache_root();
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
            (joined(cache), manifest)
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

/// The index as a run read it.
#[derive(Default)]
struct IndexRead {
    entries: Vec<IndexEntry>,
    /// Malformed lines skipped.
    problems: usize,
    /// What the run reads, when it is to be remembered.
    inputs: Option<Inputs>,
}

/// How a run starts: with the dataflow's plan and publisher, or with the
/// statistics of a last run that read the same inputs.
enum Start {
    Plan(Box<(CorpusPlan, Publisher)>),
    Current(Box<RunStats>),
}

/// A scoped thread's result, its panic raised again here.
fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Reads the index, telling `observer` of each malformed line; returns the
/// entries and how many lines were skipped.
pub(crate) fn read_entries(index_path: &Path, observer: &dyn Observer) -> Result<(Vec<IndexEntry>, usize)> {
    let bytes = std::fs::read(index_path).map_err(|e| Error::io("cannot read index", index_path, e))?;
    Ok(parse_entries(&bytes, index_path, observer))
}

/// The entries of the index's `bytes` read from `index_path`, telling
/// `observer` of each malformed line, and how many lines were skipped.
fn parse_entries(bytes: &[u8], index_path: &Path, observer: &dyn Observer) -> (Vec<IndexEntry>, usize) {
    let scan = parse_index(bytes, &index_path.display().to_string());
    observer.index_problems(&scan.problems);
    (scan.entries, scan.problems.len())
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
