//! The training sink as a run drives it: every model the configuration
//! names, trained (or found cached) from the published features and splits,
//! its progress told to the run's observer, and its line of `run.json`.

use crate::observer::{Observer, Part};
use crate::stats::OperatorStats;
use epiflow_models::sink::{train_models, ModelRun, ModelsConfig};
use std::path::Path;
use std::time::Instant;

/// Trains (or finds cached) every model `config` names from the outputs
/// under `out`, on `threads` threads; returns each model's line and the
/// sink's totals.
pub fn train(
    out: &Path,
    config: &ModelsConfig,
    threads: usize,
    observer: &dyn Observer,
) -> (Vec<ModelRun>, OperatorStats) {
    let start = Instant::now();
    let total = config.splits.len() * config.archs.len() * config.channels.len();
    observer.started(Part::Training, total as u64);
    let runs = train_models(out, config, threads, &|id, event| observer.model(id, event));
    observer.finished(Part::Training);
    let stats = OperatorStats::of_statuses(runs.iter().map(|r| r.status), start.elapsed().as_secs_f64());
    (runs, stats)
}
