//! What a run tells whoever watches it: a progress bar, the logs, the live
//! dashboard's producers. The engine calls an [`Observer`] at each step and
//! never waits on it for anything but `published`; every method has a
//! default that does nothing, so an observer implements only what it shows.
//! Observers combine as a pair: `Arc::new((Logs, bar))`.

use crate::stats::{ModelState, RunStats};
use epiflow_models::eval::EvalRun;
use epiflow_models::sink::{ModelId, TrainEvent};
use epiflow_operators::model::Problem;
use epiflow_operators::split::Recipe;
use epiflow_operators::validate::{Outcome, ValidationRecord};
use epiflow_pipelines::corpus::{CorpusState, EpisodeReport};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A part of a run that a progress display counts through (not a phase of
/// an episode: those are `epiflow_operators::channels::Phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The corpus dataflow, counted in episodes.
    Corpus,
    /// The training sink, counted in models.
    Training,
    /// The evaluation sink, counted in splits.
    Evaluation,
}

impl Part {
    /// The part as a progress display labels it.
    pub fn name(self) -> &'static str {
        match self {
            Part::Corpus => "validate",
            Part::Training => "train",
            Part::Evaluation => "eval",
        }
    }
}

/// Hears a run as it goes. Called from the dataflow's worker 0 and from
/// training threads, hence `Send + Sync`.
pub trait Observer: Send + Sync {
    /// `part` begins with `total` items to go through.
    fn started(&self, _part: Part, _total: u64) {}
    /// `part` is over.
    fn finished(&self, _part: Part) {}
    /// Malformed index lines the run skips.
    fn index_problems(&self, _problems: &[Problem]) {}
    /// A followed index changed: an update taking in `changes` entries
    /// begins.
    fn update_started(&self, _changes: usize) {}
    /// An episode went through every operator.
    fn episode(&self, _report: &EpisodeReport) {}
    /// A model's training moved on (from its training thread).
    fn model(&self, _id: ModelId, _event: TrainEvent) {}
    /// A split's evaluation is about to begin.
    fn evaluating(&self, _recipe: Recipe) {}
    /// One split's evaluation is done.
    fn evaluated(&self, _run: &EvalRun) {}
    /// Every output was published: the corpus as it now stands, `run.json`'s
    /// statistics and the features' generation. An error stops a followed
    /// run.
    fn published(&self, _corpus: &CorpusState, _stats: &RunStats, _generation: u64) -> Result<(), String> {
        Ok(())
    }
    /// A followed job's models moved (a publication made them stale, one
    /// began training, one is done): where each one stands now.
    fn model_states(&self, _states: &BTreeMap<String, ModelState>) {}
    /// A followed job's models and reports were brought up to date in the
    /// background (checkpoints and reports written): `run.json` as it now
    /// stands, the models' lines and the evaluations included.
    fn models_published(&self, _stats: &RunStats) {}
}

/// Hears nothing.
impl Observer for () {}

/// Both observers hear everything, the first one first; publication fails
/// when either fails.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn started(&self, part: Part, total: u64) {
        self.0.started(part, total);
        self.1.started(part, total);
    }
    fn finished(&self, part: Part) {
        self.0.finished(part);
        self.1.finished(part);
    }
    fn index_problems(&self, problems: &[Problem]) {
        self.0.index_problems(problems);
        self.1.index_problems(problems);
    }
    fn update_started(&self, changes: usize) {
        self.0.update_started(changes);
        self.1.update_started(changes);
    }
    fn episode(&self, report: &EpisodeReport) {
        self.0.episode(report);
        self.1.episode(report);
    }
    fn model(&self, id: ModelId, event: TrainEvent) {
        self.0.model(id, event);
        self.1.model(id, event);
    }
    fn evaluating(&self, recipe: Recipe) {
        self.0.evaluating(recipe);
        self.1.evaluating(recipe);
    }
    fn evaluated(&self, run: &EvalRun) {
        self.0.evaluated(run);
        self.1.evaluated(run);
    }
    fn published(&self, corpus: &CorpusState, stats: &RunStats, generation: u64) -> Result<(), String> {
        self.0.published(corpus, stats, generation)?;
        self.1.published(corpus, stats, generation)
    }
    fn model_states(&self, states: &BTreeMap<String, ModelState>) {
        self.0.model_states(states);
        self.1.model_states(states);
    }
    fn models_published(&self, stats: &RunStats) {
        self.0.models_published(stats);
        self.1.models_published(stats);
    }
}

/// A shared observer hears what it shares.
impl<O: Observer + ?Sized> Observer for Arc<O> {
    fn started(&self, part: Part, total: u64) {
        (**self).started(part, total);
    }
    fn finished(&self, part: Part) {
        (**self).finished(part);
    }
    fn index_problems(&self, problems: &[Problem]) {
        (**self).index_problems(problems);
    }
    fn update_started(&self, changes: usize) {
        (**self).update_started(changes);
    }
    fn episode(&self, report: &EpisodeReport) {
        (**self).episode(report);
    }
    fn model(&self, id: ModelId, event: TrainEvent) {
        (**self).model(id, event);
    }
    fn evaluating(&self, recipe: Recipe) {
        (**self).evaluating(recipe);
    }
    fn evaluated(&self, run: &EvalRun) {
        (**self).evaluated(run);
    }
    fn published(&self, corpus: &CorpusState, stats: &RunStats, generation: u64) -> Result<(), String> {
        (**self).published(corpus, stats, generation)
    }
    fn model_states(&self, states: &BTreeMap<String, ModelState>) {
        (**self).model_states(states);
    }
    fn models_published(&self, stats: &RunStats) {
        (**self).models_published(stats);
    }
}

/// The run's log lines (through `tracing`): each episode that is not
/// accepted, and each malformed index line skipped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Logs;

impl Observer for Logs {
    fn index_problems(&self, problems: &[Problem]) {
        for p in problems {
            tracing::warn!("skipping malformed index line: {p}");
        }
    }

    fn episode(&self, report: &EpisodeReport) {
        if let Some(v) = report.validation() {
            log_outcome(&v);
        }
    }
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
