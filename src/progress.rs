//! Progress display on stderr: drawn only when stderr is a terminal, so logs
//! and CI output stay clean. [`Bars`] is the run's observer that draws
//! one bar per part of a run (episodes, models, splits).

use epiflow_engine::observer::{Observer, Part};
use epiflow_models::eval::EvalRun;
use epiflow_models::sink::{ModelId, TrainEvent};
use epiflow_operators::split::Recipe;
use epiflow_pipelines::corpus::EpisodeReport;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Mutex, MutexGuard};

/// A progress bar over `total` items, hidden when stderr is not a terminal or
/// when `quiet`.
pub fn bar(total: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// A run's progress bars: one per part, counting its episodes, models or
/// splits; the training bar's message follows the latest epoch.
pub struct Bars {
    quiet: bool,
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars unless `quiet` (and only on a terminal).
    pub fn new(quiet: bool) -> Bars {
        Bars { quiet, current: Mutex::new(None) }
    }

    /// The bar of the part under way, if any.
    fn current(&self) -> MutexGuard<'_, Option<ProgressBar>> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Observer for Bars {
    fn started(&self, part: Part, total: u64) {
        *self.current() = Some(bar(total, part.name(), self.quiet));
    }

    fn finished(&self, _part: Part) {
        if let Some(bar) = self.current().take() {
            bar.finish_and_clear();
        }
    }

    fn episode(&self, _report: &EpisodeReport) {
        if let Some(bar) = self.current().as_ref() {
            bar.inc(1);
        }
    }

    fn model(&self, id: ModelId, event: TrainEvent) {
        let current = self.current();
        let Some(bar) = current.as_ref() else { return };
        match event {
            TrainEvent::Started => bar.set_message(format!("{id}")),
            TrainEvent::Epoch(e) => bar.set_message(format!("{id} epoch {} F1 {:.3}", e.epoch, e.val_macro_f1)),
            TrainEvent::Finished(_) => bar.inc(1),
        }
    }

    fn evaluating(&self, recipe: Recipe) {
        if let Some(bar) = self.current().as_ref() {
            bar.set_message(format!("{recipe} split"));
        }
    }

    fn evaluated(&self, _run: &EvalRun) {
        if let Some(bar) = self.current().as_ref() {
            bar.inc(1);
        }
    }
}
