//! `epiflow validate`: the validation dataflow over the whole index.

use super::{cluster, out_dir, print_json, store};
use crate::cache::DiskCache;
use crate::cli::{ClusterArgs, Global};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress;
use crate::stats::{OperatorStats, RunStats, WorkerStats};
use epiflow_models::eval::EvalConfig;
use epiflow_models::sink::ModelsConfig;
use epiflow_operators::decode::Decode;
use epiflow_operators::index::{read_index, IndexEntry};
use epiflow_operators::validate::{Outcome, ValidationRecord};
use epiflow_pipelines::lineage::Lineage;
use epiflow_pipelines::output::write_atomically;
use epiflow_pipelines::results::NoStore;
use epiflow_pipelines::sinks::manifest::Manifest;
use epiflow_pipelines::sinks::splits;
use epiflow_pipelines::stages::{Caching, Registry};
use epiflow_pipelines::validate::{run as run_dataflow, ValidateJob, ValidateOutput};
use epiflow_pipelines::Cluster;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

pub fn run(g: &Global, args: &ClusterArgs) -> Result<ExitCode> {
    let store = store(g)?;
    let out = out_dir(g, &store);
    let cluster = cluster(g, args)?;
    let config = Config::load(g.config.as_deref())?;
    if let Some(stats) = validate_store(&store, &out, &config, &cluster, g.quiet || g.json, Mode::Validate)? {
        report(g, &stats, &out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a corpus run computes, and whether it reuses earlier results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Validation and classification, all computed.
    Validate,
    /// Also windows and tensors, all computed.
    Features,
    /// Everything, reusing `OUT/cache` and the published features.
    Run,
    /// Like `Run`, following the index as it changes.
    Watch,
    /// Like `Run`, then training without evaluation (`epiflow train`).
    Train,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Validate => "validate",
            Mode::Features => "features",
            Mode::Run => "run",
            Mode::Watch => "watch",
            Mode::Train => "train",
        }
    }

    /// Whether earlier results are reused.
    fn reuses(self) -> bool {
        matches!(self, Mode::Run | Mode::Watch | Mode::Train)
    }
}

/// Runs validation and classification — and, unless `mode` is validation
/// only, windows and tensors — and writes `validation.parquet`,
/// `quality.parquet`, `run.json` and the feature shards under `out`. Returns
/// the statistics on the process that hosts worker 0.
pub fn validate_store(
    store: &Path,
    out: &Path,
    config: &Config,
    cluster: &Cluster,
    quiet: bool,
    mode: Mode,
) -> Result<Option<RunStats>> {
    validate_store_with(store, out, config, config.stages()?, cluster, quiet, mode)
}

/// `epiflow run` (features and the cache; models only if `config` asks)
/// as a library call, with `stages` as the registry: how a stage written
/// outside this crate runs in the real pipeline (`examples/nonzero_share.rs`)
/// and how `tests/stage_compliance.rs` checks every stage. Returns what
/// `run.json` says.
pub fn run_stages(store: &Path, out: &Path, config: &Config, stages: Registry, workers: usize) -> Result<RunStats> {
    let cluster = Cluster::local(workers);
    validate_store_with(store, out, config, stages, &cluster, true, Mode::Run)?
        .ok_or_else(|| Error::Dataflow("no result from worker 0".into()))
}

/// [`validate_store`] with `stages` instead of the configuration's registry.
fn validate_store_with(
    store: &Path,
    out: &Path,
    config: &Config,
    stages: Registry,
    cluster: &Cluster,
    quiet: bool,
    mode: Mode,
) -> Result<Option<RunStats>> {
    let start = Instant::now();
    let index_path = store.join("index.jsonl");
    let (entries, index_problems) = if cluster.is_leader() { read_entries(&index_path)? } else { (Vec::new(), 0) };
    let (job, mut publisher) = prepare(store, out, config, stages, cluster, mode)?;
    if matches!(mode, Mode::Run | Mode::Train) && !config.train.splits.is_empty() {
        let eval = (mode == Mode::Run).then(|| config.eval.clone());
        publisher.models = Some(Downstream { train: config.train.clone(), eval, quiet });
    }
    let Some(output) = run_corpus(job, entries, cluster, quiet)? else { return Ok(None) };
    publisher.publish(&output, start, index_problems).map(Some)
}

/// The dataflow job of a corpus run under `config`, and what publishes its
/// outputs under `out`.
pub fn prepare(
    store: &Path,
    out: &Path,
    config: &Config,
    stages: Registry,
    cluster: &Cluster,
    mode: Mode,
) -> Result<(ValidateJob, Publisher)> {
    let mut job = corpus_job(&store.join("episodes"), config, stages);
    let cache = match mode.reuses() {
        true => {
            let root = out.join("cache");
            let cache = DiskCache::open(&root).map_err(|e| Error::io("cannot open cache", &root, e))?;
            let cache = Arc::new(cache);
            job.store = cache.clone();
            Some(cache)
        }
        false => None,
    };
    if mode != Mode::Validate {
        job.features = Some(super::features::feature_job(out, config));
    }
    if mode.reuses() {
        job.splits = Some(config.split.clone());
    }
    let lineage = Lineage::of(&job);
    let manifest = super::features::reuse(&mut job, &lineage, config, mode.reuses());
    let publisher = Publisher {
        out: out.to_path_buf(),
        mode,
        tables: job.active(),
        lineage,
        cache,
        manifest,
        workers: cluster.workers,
        processes: cluster.processes,
        models: None,
    };
    Ok((job, publisher))
}

/// The sinks after the corpus: the models to train, then to evaluate.
pub struct Downstream {
    pub train: ModelsConfig,
    /// `None` when only training (`epiflow train`).
    pub eval: Option<EvalConfig>,
    /// No progress bars.
    pub quiet: bool,
}

/// Publishes what a corpus run (or one epoch of a followed run) gathered.
pub struct Publisher {
    out: PathBuf,
    mode: Mode,
    /// The job's stages: those cached as records publish their table.
    tables: Registry,
    lineage: Lineage,
    cache: Option<Arc<DiskCache>>,
    /// The features manifest to fill in, when features are computed.
    manifest: Option<Manifest>,
    workers: usize,
    processes: usize,
    /// The models to train and evaluate once the features and splits are
    /// published.
    models: Option<Downstream>,
}

impl Publisher {
    /// The features publication `output` becomes (the manifest's
    /// generation); 0 when no features are computed.
    pub fn generation(&self, output: &ValidateOutput) -> u64 {
        self.manifest.as_ref().map_or(0, |m| m.generation + output.epoch)
    }

    /// Writes the feature manifest (the shards are already in place),
    /// `validation.parquet`, `quality.parquet`, syncs the cache and writes
    /// `run.json`, whose statistics it returns, timed from `start`: when the
    /// run (or the epoch) began.
    pub fn publish(&self, output: &ValidateOutput, start: Instant, index_problems: usize) -> Result<RunStats> {
        let out = &self.out;
        let windows = match &self.manifest {
            Some(base) => super::features::publish(out, base.clone(), output)?,
            None => 0,
        };
        for stage in self.tables.iter().filter(|s| s.caching() == Caching::Record) {
            let Some(table) = stage.publishes() else { continue };
            let path = out.join(table);
            stage.write_table(&path, &output.table(stage.name())).map_err(|e| Error::io("cannot write", &path, e))?;
        }
        let dir = out.join("splits");
        for (recipe, split) in &output.splits {
            if let Err(e) = split {
                tracing::warn!("no {recipe} split: {e}");
            }
            splits::write(&dir, *recipe, split).map_err(|e| Error::io("cannot write", &dir, e))?;
        }
        if let Some(cache) = &self.cache {
            cache.sync().map_err(|e| Error::io("cannot sync", &out.join("cache"), e))?;
        }
        let mut stats = RunStats {
            command: self.mode.name().into(),
            episodes: output.episodes.len() as u64,
            windows,
            operators: self
                .lineage
                .names()
                .map(|name| {
                    let totals = output.operators.get(name).copied().unwrap_or_default();
                    (name.to_string(), OperatorStats::new(totals, self.lineage.get(name)))
                })
                .collect(),
            wall_s: start.elapsed().as_secs_f64(),
            workers: self.workers,
            processes: self.processes,
            per_worker: (0..(self.workers * self.processes) as u64)
                .map(|w| WorkerStats::new(w, output.workers.get(&w).copied().unwrap_or_default()))
                .collect(),
            index_problems,
            split_errors: output
                .splits
                .iter()
                .filter_map(|(recipe, split)| Some((recipe.name().to_string(), split.as_ref().err()?.clone())))
                .collect(),
            ..Default::default()
        };
        stats.set_counts(&output.counts);
        stats.corpus_s = stats.wall_s;
        if let Some(models) = &self.models {
            let (trained, totals) = super::train::train_sink(out, &models.train, self.workers, models.quiet);
            stats.operators.insert("train".into(), totals);
            stats.models = trained;
            if let Some(eval) = &models.eval {
                let (evals, totals) = super::eval::eval_sink(out, &models.train.splits, eval, models.quiet);
                stats.operators.insert("eval".into(), totals);
                stats.evals = evals;
            }
            stats.wall_s = start.elapsed().as_secs_f64();
        }
        write_run_json(out, &stats)?;
        Ok(stats)
    }
}

/// The validation job over archives under `episodes_root` with `stages`.
pub fn corpus_job(episodes_root: &Path, config: &Config, stages: Registry) -> ValidateJob {
    ValidateJob {
        episodes_root: episodes_root.to_path_buf(),
        decode: Decode { config: config.decode.clone(), ..Decode::default() },
        stages,
        features: None,
        splits: None,
        store: Arc::new(NoStore),
    }
}

/// Reads the index, logging each malformed line; returns the entries and how
/// many lines were skipped.
pub fn read_entries(index_path: &Path) -> Result<(Vec<IndexEntry>, usize)> {
    let scan = read_index(index_path).map_err(|e| Error::io("cannot read index", index_path, e))?;
    warn_index_problems(&scan.problems);
    Ok((scan.entries, scan.problems.len()))
}

/// Logs each malformed index line that a run skips.
pub fn warn_index_problems(problems: &[epiflow_operators::model::Problem]) {
    for p in problems {
        tracing::warn!("skipping malformed index line: {p}");
    }
}

/// Runs the validation dataflow over `entries` with a progress bar, logging
/// every episode that is not accepted. `None` on processes other than the
/// leader.
pub fn run_corpus(
    job: ValidateJob,
    entries: Vec<IndexEntry>,
    cluster: &Cluster,
    quiet: bool,
) -> Result<Option<ValidateOutput>> {
    let bar = progress::bar(entries.len() as u64, "validate", quiet);
    let observer_bar = bar.clone();
    let output = run_dataflow(
        job,
        entries,
        cluster,
        Arc::new(move |report| {
            observer_bar.inc(1);
            if let Some(v) = report.validation() {
                log_outcome(&v);
            }
        }),
    )
    .map_err(Error::Dataflow)?;
    bar.finish_and_clear();
    Ok(output)
}

/// Logs an episode that is not accepted: degraded at info, the rest as
/// warnings.
pub fn log_outcome(record: &ValidationRecord) {
    if record.outcome == Outcome::Accepted {
        return;
    }
    let detail = record.detail.as_deref().unwrap_or("");
    let reasons = record.reasons.join(", ");
    let key = format!("{}/{}", record.host_id, record.episode_id);
    match record.outcome {
        Outcome::Degraded => tracing::info!("{key}: degraded [{reasons}] {detail}"),
        _ => tracing::warn!("{key}: {} [{reasons}] {detail}", record.outcome.name()),
    }
}

/// Writes `run.json` atomically.
pub fn write_run_json(out: &Path, stats: &RunStats) -> Result<()> {
    let path = out.join("run.json");
    write_atomically(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, stats)?;
        std::io::Write::write_all(w, b"\n")
    })
    .map_err(|e| Error::io("cannot write", &path, e))
}

/// Prints the run's summary: a table, or one JSON line with `--json`.
pub fn report(g: &Global, stats: &RunStats, out: &Path) -> Result<()> {
    if g.json {
        return print_json(&serde_json::json!({
            "episodes": stats.episodes,
            "outcomes": stats.outcomes,
            "reasons": stats.reasons,
            "hosts": stats.hosts,
            "profiles": stats.profiles,
            "quality": stats.quality,
            "fake": stats.fake,
            "windows": stats.windows,
            "index_problems": stats.index_problems,
            "wall_s": stats.wall_s,
            "output": out.join("validation.parquet"),
        }));
    }
    print!("{}", outcome_table(stats));
    println!("wrote {}", out.join("validation.parquet").display());
    if stats.command == "features" {
        println!("wrote {} windows to {}", stats.windows, out.join("features").display());
    }
    Ok(())
}

/// The outcome table a person reads: outcomes with shares, then reasons.
pub fn outcome_table(stats: &RunStats) -> String {
    let n = stats.episodes.max(1) as f64;
    let rate = stats.episodes as f64 / stats.corpus_s.max(1e-9);
    let mut s = format!("validated {} episodes in {:.1} s ({rate:.0} episodes/s)\n\n", stats.episodes, stats.corpus_s);
    s += &format!("{:<10} {:>9} {:>7}\n", "outcome", "episodes", "share");
    for o in Outcome::ALL {
        let c = stats.outcomes.get(o.name()).copied().unwrap_or(0);
        s += &format!("{:<10} {:>9} {:>6.1}%\n", o.name(), c, 100.0 * c as f64 / n);
    }
    if !stats.reasons.is_empty() {
        s += &format!("\n{:<28} {:>9}\n", "reason", "episodes");
        for (r, c) in &stats.reasons {
            s += &format!("{r:<28} {c:>9}\n");
        }
    }
    s += &format!("\n{} of {} classified episodes look fake\n", stats.fake, stats.quality_classified());
    for (r, c) in &stats.quality {
        s += &format!("  {r:<26} {c:>9}\n");
    }
    if stats.index_problems > 0 {
        s += &format!("\n{} malformed index lines skipped (see warnings)\n", stats.index_problems);
    }
    s
}
