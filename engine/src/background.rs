//! The models of a followed job (`watch`, `serve`) as a background sink:
//! each publication of the features and splits asks for the configured
//! models and reports to be brought up to date, which one thread does on a
//! snapshot of that publication while the follower goes on publishing.
//!
//! - A newer publication supersedes the work queued for an older one: the
//!   thread always takes the latest, and one model is never trained twice
//!   at once (there is one thread).
//! - Models whose inputs did not change are found current, as in a run: a
//!   test-side arrival retrains nothing and re-evaluates.
//! - `run.json` and the observer say where each model stands
//!   ([`ModelState`]); when a pass ends, `run.json` gets its models and
//!   reports and the observer hears of it.
//! - Stopping ends training at its next batch or round without writing the
//!   model it was on (its checkpoint stays as it was); the next start finds
//!   it stale and trains it.

use crate::error::{Error, Result};
use crate::evaluation;
use crate::lock;
use crate::observer::Observer;
use crate::publish::write_run_json;
use crate::snapshot;
use crate::stats::{ModelState, RunStats};
use crate::training;
use epiflow_models::dirs::Dirs;
use epiflow_models::eval::{EvalConfig, EvalRun};
use epiflow_models::sink::{ModelId, ModelRun, ModelsConfig, Status, TrainEvent};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The background sink of a followed job's models.
pub(crate) struct BackgroundModels {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// What the follower and the sink's thread share.
struct Shared {
    out: PathBuf,
    train: ModelsConfig,
    eval: EvalConfig,
    threads: usize,
    observer: Arc<dyn Observer>,
    /// Held while the outputs the models read are published, or linked into
    /// a snapshot: a snapshot is always of one whole publication.
    publishing: Mutex<()>,
    sink: Mutex<SinkState>,
    /// Wakes the sink's thread when a publication asks for work, or to stop.
    wake: Condvar,
    stop: AtomicBool,
}

/// Where the sink is.
#[derive(Default)]
struct SinkState {
    /// The latest publication's statistics, as `run.json` has them.
    stats: Option<RunStats>,
    /// The latest publication's generation, and the one the models were
    /// last brought up to.
    published: Option<u64>,
    done: Option<u64>,
    states: BTreeMap<String, ModelState>,
    models: Vec<ModelRun>,
    evals: Vec<EvalRun>,
}

impl SinkState {
    /// The models' lines, states and reports added to `stats`.
    fn fill(&self, stats: &mut RunStats) {
        stats.models = self.models.clone();
        stats.evals = self.evals.clone();
        stats.model_states = self.states.clone();
    }
}

impl BackgroundModels {
    /// Starts the sink for the models `train` names (evaluated with `eval`)
    /// under `out`, trained on `threads` threads; every model is stale until
    /// the first publication is looked at.
    pub fn start(
        out: PathBuf,
        train: ModelsConfig,
        eval: EvalConfig,
        threads: usize,
        observer: Arc<dyn Observer>,
    ) -> Result<BackgroundModels> {
        let snapshot = snapshot::dir(&out);
        snapshot::remove(&snapshot).map_err(|e| Error::io("cannot remove", &snapshot, e))?;
        let states = train.models().into_iter().map(|id| (id.to_string(), ModelState::Stale)).collect();
        let shared = Arc::new(Shared {
            out,
            train,
            eval,
            threads,
            observer,
            publishing: Mutex::default(),
            sink: Mutex::new(SinkState { states, ..SinkState::default() }),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let worker = std::thread::Builder::new()
            .name("models".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shared.work()
            })
            .map_err(|e| Error::Io(format!("cannot start the models' thread: {e}")))?;
        Ok(BackgroundModels { shared, worker: Mutex::new(Some(worker)) })
    }

    /// Held while a publication writes the outputs the models read.
    pub fn publishing(&self) -> MutexGuard<'_, ()> {
        lock(&self.shared.publishing)
    }

    /// A publication of generation `generation` with `stats` was written:
    /// every model is stale until the sink looks at it. Writes `run.json`
    /// with the models' lines and states, and returns what it wrote.
    pub fn published(&self, mut stats: RunStats, generation: u64) -> Result<RunStats> {
        let mut sink = lock(&self.shared.sink);
        sink.published = Some(generation);
        for state in sink.states.values_mut() {
            if *state != ModelState::Training {
                *state = ModelState::Stale;
            }
        }
        sink.fill(&mut stats);
        write_run_json(&self.shared.out, &stats)?;
        sink.stats = Some(stats.clone());
        self.shared.observer.model_states(&sink.states);
        self.shared.wake.notify_all();
        Ok(stats)
    }

    /// Stops the sink: training ends at its next batch or round, and the
    /// thread is waited for.
    pub fn stop(&self) {
        {
            // Under the lock the thread checks it with, so that it cannot
            // miss the wake-up between its check and its wait.
            let _sink = lock(&self.shared.sink);
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        self.shared.wake.notify_all();
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

impl Drop for BackgroundModels {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    /// The sink's thread: a pass for the latest publication, whenever one
    /// came after the last pass, until stopped.
    fn work(&self) {
        while let Some(generation) = self.next_publication() {
            let into = snapshot::dir(&self.out);
            let taken = {
                let _publishing = lock(&self.publishing);
                snapshot::take(&self.out, &into)
            };
            match taken {
                Ok(()) => self.pass(generation, Dirs { inputs: into.clone(), out: self.out.clone() }),
                Err(e) => {
                    tracing::warn!("models: cannot snapshot the publication in {}: {e}", into.display());
                    // Not retried until the next publication.
                    lock(&self.sink).done = Some(generation);
                }
            }
            if let Err(e) = snapshot::remove(&into) {
                tracing::warn!("models: cannot remove {}: {e}", into.display());
            }
        }
    }

    /// Waits for a publication the models were not brought up to; `None`
    /// once stopped.
    fn next_publication(&self) -> Option<u64> {
        let mut sink = lock(&self.sink);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if sink.published.is_some() && sink.published != sink.done {
                return sink.published;
            }
            sink = self.wake.wait(sink).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Trains and evaluates on the publication of `generation`, as `dirs`
    /// has it, then publishes the models' lines and reports.
    fn pass(&self, generation: u64, dirs: Dirs) {
        let heard = Heard { shared: self, generation };
        let (models, trained) = training::train(&dirs, &self.train, self.threads, &self.stop, &heard);
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        let (evals, evaluated) = evaluation::evaluate(&dirs, &self.train.splits, &self.eval, &*self.observer);
        // Every model's state was set as it finished (and made stale by
        // any publication since).
        let mut sink = lock(&self.sink);
        sink.done = Some(generation);
        sink.models = models;
        sink.evals = evals;
        // The latest publication's statistics with this pass's: what the
        // models' publication writes and tells.
        let Some(mut stats) = sink.stats.clone() else { return };
        sink.fill(&mut stats);
        stats.operators.extend([("train".to_string(), trained), ("eval".to_string(), evaluated)]);
        if let Err(e) = write_run_json(&self.out, &stats) {
            tracing::warn!("models: {e}");
        }
        self.observer.models_published(&stats);
    }

    /// Sets `id`'s state, given the latest publication, and tells the
    /// observer.
    fn set_state(&self, id: ModelId, state: impl FnOnce(Option<u64>) -> ModelState) {
        let mut sink = lock(&self.sink);
        let state = state(sink.published);
        sink.states.insert(id.to_string(), state);
        self.observer.model_states(&sink.states);
    }
}

/// Where a model stands once a pass is done with it: current when the pass
/// was on the latest publication, stale when another came meanwhile.
fn state_after(status: Status, latest: bool) -> ModelState {
    match status {
        Status::Failed => ModelState::Failed,
        _ if latest => ModelState::Current,
        _ => ModelState::Stale,
    }
}

/// A pass's observer: the job's own, and the models' states as training
/// moves.
struct Heard<'a> {
    shared: &'a Shared,
    generation: u64,
}

impl Observer for Heard<'_> {
    fn model(&self, id: ModelId, event: TrainEvent) {
        self.shared.observer.model(id, event);
        match event {
            TrainEvent::Started => self.shared.set_state(id, |_| ModelState::Training),
            TrainEvent::Finished(status) => {
                self.shared.set_state(id, |latest| state_after(status, latest == Some(self.generation)))
            }
            TrainEvent::Epoch(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::split::Recipe;
    use std::time::{Duration, Instant};

    #[test]
    fn a_publication_that_cannot_be_snapshotted_is_not_retried_until_the_next() {
        let out = tempfile::tempdir().unwrap();
        let train = ModelsConfig { splits: vec![Recipe::Host], ..ModelsConfig::default() };
        let models =
            BackgroundModels::start(out.path().to_path_buf(), train, EvalConfig::default(), 1, Arc::new(())).unwrap();
        // No features were published under `out`: no snapshot can be taken.
        let stats = models.published(RunStats::default(), 1).unwrap();
        assert!(stats.model_states.values().all(|s| *s == ModelState::Stale), "{:?}", stats.model_states);
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&models.shared.sink).done != Some(1) {
            assert!(Instant::now() < deadline, "the sink keeps retrying the publication");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(out.path().join("run.json").is_file(), "run.json says where the models stand");
        models.stop();
    }
}
