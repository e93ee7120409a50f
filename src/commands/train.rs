//! The training sink as `run` and `train` drive it: progress on stderr, the
//! per-model lines of `run.json`, and the table a person reads.

use crate::progress;
use crate::stats::OperatorStats;
use epiflow_models::sink::{train_models, ModelRun, ModelsConfig, Status, TrainEvent};
use std::path::Path;
use std::time::Instant;

/// Trains (or finds cached) every model `config` names from the outputs
/// under `out`, on `threads` threads, with a progress bar over the models
/// whose message follows the latest epoch.
pub fn train_sink(out: &Path, config: &ModelsConfig, threads: usize, quiet: bool) -> (Vec<ModelRun>, OperatorStats) {
    let start = Instant::now();
    let total = config.splits.len() * config.archs.len() * config.channels.len();
    let bar = progress::bar(total as u64, "train", quiet);
    let runs = train_models(out, config, threads, &|id, event| match event {
        TrainEvent::Epoch(e) => bar.set_message(format!("{id} epoch {} F1 {:.3}", e.epoch, e.val_macro_f1)),
        TrainEvent::Finished(_) => bar.inc(1),
    });
    bar.finish_and_clear();
    let stats = OperatorStats::of_statuses(runs.iter().map(|r| r.status), start.elapsed().as_secs_f64());
    (runs, stats)
}

/// One line per model: status, validation macro F1, training time.
pub fn model_table(runs: &[ModelRun]) -> String {
    let mut s = format!("{:<28} {:>9} {:>8} {:>9} {:>11}\n", "model", "status", "val F1", "train s", "windows/s");
    for r in runs {
        let status = match r.status {
            Status::Computed => "trained",
            Status::Cached => "cached",
            Status::Failed => "FAILED",
        };
        let f1 = r.val_macro_f1.map_or("-".into(), |f| format!("{f:.3}"));
        let rate = r.windows_per_s.map_or("-".into(), |w| format!("{w:.0}"));
        s += &format!("{:<28} {status:>9} {f1:>8} {:>9.1} {rate:>11}\n", r.model, r.wall_s);
        if let Some(error) = &r.error {
            s += &format!("  {error}\n");
        }
    }
    s
}
