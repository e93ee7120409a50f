//! The training sink as a run drives it: every model the configuration
//! names, trained (or found cached) from the published features and splits,
//! its progress told to the run's observer, and its line of `run.json`.

use crate::observer::{Observer, Part};
use crate::stats::OperatorStats;
use epiflow_models::dirs::Dirs;
use epiflow_models::sink::{train_models, ModelRun, ModelsConfig};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Trains (or finds cached) every model `config` names from the features
/// and splits under `dirs.inputs`, on `threads` threads, until `stop` is
/// raised; returns each model's line and the sink's totals.
pub fn train(
    dirs: &Dirs,
    config: &ModelsConfig,
    threads: usize,
    stop: &AtomicBool,
    observer: &dyn Observer,
) -> (Vec<ModelRun>, OperatorStats) {
    let start = Instant::now();
    observer.started(Part::Training, config.models().len() as u64);
    let runs = train_models(dirs, config, threads, stop, &|id, event| observer.model(id, event));
    observer.finished(Part::Training);
    let stats = OperatorStats::of_statuses(runs.iter().map(|r| r.status), start.elapsed().as_secs_f64());
    (runs, stats)
}
