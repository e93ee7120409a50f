//! Publishing what a corpus run (or one epoch of a followed run) gathered:
//! the features' manifest, each stage's table, the splits, the cache's logs
//! and `run.json` — then the models when the run asks for them.

use crate::cache::DiskCache;
use crate::error::{Error, Result};
use crate::evaluation;
use crate::features;
use crate::observer::Observer;
use crate::stats::{OperatorStats, RunStats, WorkerStats};
use crate::training;
use epiflow_models::dirs::Dirs;
use epiflow_models::eval::EvalConfig;
use epiflow_models::sink::ModelsConfig;
use epiflow_pipelines::corpus::CorpusState;
use epiflow_pipelines::lineage::Lineage;
use epiflow_pipelines::output::write_atomically;
use epiflow_pipelines::sinks::manifest::Manifest;
use epiflow_pipelines::sinks::splits;
use epiflow_pipelines::stages::{Caching, Stages};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// The sinks after the corpus: the models to train, then to evaluate.
pub(crate) struct Downstream {
    pub train: ModelsConfig,
    /// `None` when only training (`epiflow train`).
    pub eval: Option<EvalConfig>,
}

/// Publishes what a corpus run (or one epoch of a followed run) gathered.
pub(crate) struct Publisher {
    pub out: PathBuf,
    /// The command `run.json` names.
    pub command: &'static str,
    /// The job's stages: those cached as records publish their table.
    pub tables: Stages,
    pub lineage: Lineage,
    pub cache: Option<Arc<DiskCache>>,
    /// The features manifest to fill in, when features are computed.
    pub manifest: Option<Manifest>,
    pub workers: usize,
    pub processes: usize,
    /// The models to train and evaluate once the features and splits are
    /// published.
    pub models: Option<Downstream>,
    /// Hears the sinks' progress.
    pub observer: Arc<dyn Observer>,
}

impl Publisher {
    /// The features publication `corpus` becomes (the manifest's
    /// generation); 0 when no features are computed.
    pub fn generation(&self, corpus: &CorpusState) -> u64 {
        self.manifest.as_ref().map_or(0, |m| m.generation + corpus.epoch)
    }

    /// Publishes `corpus` as [`Publisher::publish_corpus`], then the
    /// models as [`Publisher::finish`]: for a caller that keeps the corpus
    /// (the follower's epochs).
    pub fn publish(&self, corpus: &CorpusState, start: Instant, index_problems: usize) -> Result<RunStats> {
        let stats = self.publish_corpus(corpus, start, index_problems)?;
        self.finish(stats, start)
    }

    /// Writes the feature manifest (the shards are already in place),
    /// every stage's table and the splits, syncs the cache, and returns the
    /// run's statistics, timed from `start`: when the run (or the epoch)
    /// began. The models train from these outputs alone, so a caller done
    /// with `corpus` can free it before [`Publisher::finish`].
    pub fn publish_corpus(&self, corpus: &CorpusState, start: Instant, index_problems: usize) -> Result<RunStats> {
        let out = &self.out;
        // Independent outputs, written side by side: their syncs overlap
        // (one journal commit for several files), which is most of an
        // epoch's publication in `watch`.
        let (windows, written) = std::thread::scope(|s| {
            let mut writing = Vec::new();
            for stage in self.tables.iter().filter(|s| s.caching() == Caching::Record) {
                let Some(table) = stage.publishes() else { continue };
                writing.push(s.spawn(move || {
                    let path = out.join(table);
                    stage
                        .write_table(&path, &corpus.table(stage.name()))
                        .map_err(|e| Error::io("cannot write", &path, e))
                }));
            }
            for (recipe, split) in &corpus.splits {
                if let Err(e) = split {
                    tracing::warn!("no {recipe} split: {e}");
                }
                writing.push(s.spawn(move || {
                    let dir = out.join("splits");
                    splits::write(&dir, *recipe, split).map_err(|e| Error::io("cannot write", &dir, e))
                }));
            }
            if let Some(cache) = &self.cache {
                writing.push(
                    s.spawn(move || cache.sync().map_err(|e| Error::io("cannot sync", &crate::cache::root(out), e))),
                );
            }
            let windows = match &self.manifest {
                Some(base) => features::publish(out, base.clone(), corpus),
                None => Ok(0),
            };
            let written: Result<()> = writing.into_iter().try_for_each(|w| {
                w.join().unwrap_or_else(|_| Err(Error::Dataflow("a publishing thread panicked".into())))
            });
            (windows, written)
        });
        let windows = windows?;
        written?;
        let mut stats = RunStats {
            command: self.command.into(),
            episodes: corpus.episodes.len() as u64,
            windows,
            operators: self
                .lineage
                .names()
                .map(|name| {
                    let totals = corpus.operators.get(name).copied().unwrap_or_default();
                    (name.to_string(), OperatorStats::new(totals, self.lineage.get(name)))
                })
                .collect(),
            wall_s: start.elapsed().as_secs_f64(),
            workers: self.workers,
            processes: self.processes,
            per_worker: (0..(self.workers * self.processes) as u64)
                .map(|w| WorkerStats::new(w, corpus.workers.get(&w).copied().unwrap_or_default()))
                .collect(),
            index_problems,
            split_errors: corpus
                .splits
                .iter()
                .filter_map(|(recipe, split)| Some((recipe.name().to_string(), split.as_ref().err()?.clone())))
                .collect(),
            ..Default::default()
        };
        stats.set_counts(&corpus.counts);
        stats.corpus_s = stats.wall_s;
        Ok(stats)
    }

    /// Trains and evaluates the models when the run asks for them, and
    /// writes `run.json` with `stats`, which it returns.
    pub fn finish(&self, stats: RunStats, start: Instant) -> Result<RunStats> {
        finish(&self.out, self.models.as_ref(), self.workers, &*self.observer, stats, start)
    }
}

/// Trains and evaluates `models` (on `workers` threads) from the outputs
/// under `out`, when a run asks for them, and writes `run.json` with
/// `stats` — the corpus's, completed with the models' — which it returns.
/// `start`: when the run began.
pub(crate) fn finish(
    out: &Path,
    models: Option<&Downstream>,
    workers: usize,
    observer: &dyn Observer,
    mut stats: RunStats,
    start: Instant,
) -> Result<RunStats> {
    if let Some(models) = models {
        let dirs = Dirs::of(out);
        let never = AtomicBool::new(false);
        let (trained, totals) = training::train(&dirs, &models.train, workers, &never, observer);
        stats.operators.insert("train".into(), totals);
        stats.models = trained;
        if let Some(eval) = &models.eval {
            let (evals, totals) = evaluation::evaluate(&dirs, &models.train.splits, eval, observer);
            stats.operators.insert("eval".into(), totals);
            stats.evals = evals;
        }
        stats.wall_s = start.elapsed().as_secs_f64();
    }
    write_run_json(out, &stats)?;
    Ok(stats)
}

/// Writes `run.json` atomically.
pub(crate) fn write_run_json(out: &Path, stats: &RunStats) -> Result<()> {
    let path = out.join("run.json");
    write_atomically(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, stats)?;
        std::io::Write::write_all(w, b"\n")
    })
    .map_err(|e| Error::io("cannot write", &path, e))
}
