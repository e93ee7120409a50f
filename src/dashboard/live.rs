//! The live dashboard's shared state: the hub, the corpus as last
//! published, the update under way, the evaluation reports and the loaded
//! models. The pipeline loop tells it what happens (an update starts, an
//! episode is done, the outputs are published); a one-second tick asks it
//! for `perf` during an update and for reports that changed; the routes read
//! it and plan replays with it. Every event goes out through
//! [`Dashboard::publish`], which also keeps the Prometheus figures.

use super::api::WindowJson;
use super::corpus::Corpus;
use super::events::{Event, Stamped};
use super::hub::Hub;
use super::replay::Replay;
use super::{perf, profiles, report_metrics};
use epiflow_engine::observer::Observer;
use epiflow_engine::stats::ModelState;
use epiflow_engine::stats::RunStats;
use epiflow_models::arch::Arch;
use epiflow_models::checkpoint::{dir_of, model_name};
use epiflow_models::predictor::Predictor;
use epiflow_models::report::Report;
use epiflow_models::sink::ModelId;
use epiflow_operators::align::Align;
use epiflow_operators::channels::ChannelSet;
use epiflow_operators::decode::Decode;
use epiflow_operators::model::{EpisodeKey, Failure};
use epiflow_operators::split::Recipe;
use epiflow_operators::tensor::Tensor;
use epiflow_operators::validate::{Outcome, Validate};
use epiflow_operators::window::Window;
use epiflow_operators::Operator;
use epiflow_pipelines::corpus::{CorpusState, EpisodeReport, OperatorTotals};
use epiflow_pipelines::work::Status;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime};

/// What the dashboard works with: where the outputs and archives are, and
/// the operators of the served configuration.
pub struct Settings {
    /// Where the outputs are (`OUT`).
    pub out: PathBuf,
    /// `STORE/episodes`, to read an archive on demand.
    pub episodes_root: PathBuf,
    /// How archives are read.
    pub decode: Decode,
    /// Validation, to say why an archive cannot be replayed.
    pub validate: Validate,
    /// The windows cut on demand.
    pub window: Window,
    /// The tensors cut on demand.
    pub tensor: Tensor,
    /// The recipe whose models a replay uses when the request names none.
    pub recipe: Recipe,
}

/// Why a request was refused.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// No such episode or model (404).
    NotFound(String),
    /// The request is malformed (400).
    Invalid(String),
    /// The episode or model exists but cannot be used (422).
    Unusable(String),
}

/// One model a replay can use.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelEntry {
    /// The split whose model it is.
    pub recipe: String,
    /// `<arch>-<channels>`.
    pub model: String,
    /// Where it stands when the models follow the store in the background
    /// (`[train] splits`): current, training, stale or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ModelState>,
}

/// The dashboard.
pub struct Dashboard {
    /// Numbers events and hands them to every client.
    pub hub: Hub,
    /// What the dashboard serves.
    pub settings: Settings,
    /// `None` until the first publication.
    corpus: RwLock<Option<Arc<Corpus>>>,
    update: Mutex<Option<Update>>,
    reports: Mutex<BTreeMap<Recipe, Seen>>,
    predictors: Mutex<HashMap<(Recipe, Arch, ChannelSet), Arc<Predictor>>>,
    /// Where each model (`recipe/arch-channels`) stands, when the models
    /// follow the store.
    model_states: Mutex<BTreeMap<String, ModelState>>,
    next_replay: AtomicU64,
}

/// An update under way: when it began and what its episodes went through.
struct Update {
    started: Instant,
    /// Episodes some stage computed (or failed on) rather than found
    /// cached: the work the rate shows.
    computed: u64,
    operators: BTreeMap<String, OperatorTotals>,
}

/// An evaluation report as last read, with its file's state then.
struct Seen {
    stamp: (SystemTime, u64),
    report: Report,
}

impl Dashboard {
    /// A dashboard knowing nothing yet.
    pub fn new(settings: Settings) -> Dashboard {
        Dashboard {
            hub: Hub::default(),
            settings,
            corpus: RwLock::default(),
            update: Mutex::default(),
            reports: Mutex::default(),
            predictors: Mutex::default(),
            model_states: Mutex::default(),
            next_replay: AtomicU64::new(1),
        }
    }

    /// Sends `event` to every client.
    pub fn publish(&self, event: Event) -> Arc<Stamped> {
        ::metrics::counter!("epiflow_events_published_total", "type" => event.name()).increment(1);
        self.hub.publish(event)
    }

    /// The corpus as last published (empty before the first publication).
    pub fn corpus(&self) -> Arc<Corpus> {
        self.published_corpus().unwrap_or_default()
    }

    fn published_corpus(&self) -> Option<Arc<Corpus>> {
        self.corpus.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `perf` of the update under way, if one is: published every
    /// second while it runs.
    pub fn tick_perf(&self) -> Option<Arc<Stamped>> {
        let event = {
            let update = lock(&self.update);
            let update = update.as_ref()?;
            let corpus = self.corpus();
            let windows = corpus.windows.values().sum::<usize>() as u64;
            perf::under_way(&update.operators, update.computed, update.started.elapsed(), &corpus, windows)
        };
        Some(self.publish(event))
    }

    /// Reads the evaluation reports that appeared, changed or went since
    /// the last look, publishing each one's `metrics` (and `profiles` when
    /// any did). Returns how many changed.
    pub fn poll_reports(&self) -> usize {
        let mut changed = Vec::new();
        {
            let mut reports = lock(&self.reports);
            for recipe in Recipe::ALL {
                let path = self.settings.out.join("eval").join(recipe.name()).join(epiflow_models::report::JSON);
                let stamp = std::fs::metadata(&path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
                if stamp == reports.get(&recipe).map(|s| s.stamp) {
                    continue;
                }
                let read = stamp.and_then(|stamp| {
                    let text = std::fs::read(&path).ok()?;
                    match serde_json::from_slice::<Report>(&text) {
                        Ok(report) => Some(Seen { stamp, report }),
                        Err(e) => {
                            tracing::warn!("{}: {e}", path.display());
                            None
                        }
                    }
                });
                match read {
                    Some(seen) => {
                        changed.push(report_metrics::of(&seen.report));
                        reports.insert(recipe, seen);
                    }
                    None if reports.remove(&recipe).is_some() => changed.push(report_metrics::empty(recipe)),
                    None => {}
                }
            }
        }
        let n = changed.len();
        for event in changed {
            self.publish(event);
        }
        if n > 0 {
            self.publish_profiles();
        }
        n
    }

    /// The `profiles` of the published corpus (none before the first
    /// publication: there is nothing to count yet).
    fn publish_profiles(&self) {
        let Some(corpus) = self.published_corpus() else { return };
        let event = {
            let reports = lock(&self.reports);
            let reports: Vec<&Report> = reports.values().map(|s| &s.report).collect();
            profiles::of(&corpus.records, &corpus.quality, &corpus.windows, &reports)
        };
        self.publish(event);
    }

    /// The trained models under `OUT/models`, by recipe, with where each
    /// stands when the models follow the store.
    pub fn models(&self) -> Vec<ModelEntry> {
        let states = lock(&self.model_states).clone();
        Recipe::ALL
            .into_iter()
            .flat_map(|recipe| Arch::ALL.into_iter().map(move |arch| (recipe, arch)))
            .flat_map(|(recipe, arch)| ChannelSet::ALL.into_iter().map(move |set| (recipe, arch, set)))
            .filter(|&(recipe, arch, set)| dir_of(&self.settings.out, recipe, arch, set).join("model.json").is_file())
            .map(|(recipe, arch, set)| {
                let state = states.get(&ModelId { recipe, arch, channels: set }.to_string()).copied();
                ModelEntry { recipe: recipe.name().into(), model: model_name(arch, set), state }
            })
            .collect()
    }

    /// The model `name` (`<arch>-<channels>`, or `<recipe>/<arch>-<channels>`),
    /// loaded once. The name is matched against the known architectures and
    /// channel sets; the folder is built from those, never from the text.
    pub fn predictor(&self, name: &str) -> Result<Arc<Predictor>, Refused> {
        let unknown = || Refused::NotFound(format!("no model {name:?}"));
        let (recipe, model) = match name.split_once('/') {
            Some((recipe, model)) => (Recipe::parse(recipe).ok_or_else(unknown)?, model),
            None => (self.settings.recipe, name),
        };
        let (arch, set) = Arch::ALL
            .into_iter()
            .flat_map(|arch| ChannelSet::ALL.into_iter().map(move |set| (arch, set)))
            .find(|&(arch, set)| model_name(arch, set) == model)
            .ok_or_else(unknown)?;
        if let Some(loaded) = lock(&self.predictors).get(&(recipe, arch, set)) {
            return Ok(Arc::clone(loaded));
        }
        let dir = dir_of(&self.settings.out, recipe, arch, set);
        if !dir.join("model.json").is_file() {
            return Err(Refused::NotFound(format!("no {recipe} model {model:?} has been trained")));
        }
        let s = &self.settings;
        let predictor = Predictor::load(&dir, s.decode.clone(), s.validate.clone()).map_err(Refused::Unusable)?;
        let predictor = Arc::new(predictor);
        lock(&self.predictors).insert((recipe, arch, set), Arc::clone(&predictor));
        Ok(predictor)
    }

    /// The windows of the indexed episode `host`/`episode`, extracted from
    /// its archive with the served configuration (blocking work).
    pub fn episode_windows(&self, host: &str, episode: &str) -> Result<Vec<WindowJson>, Refused> {
        let (path, key) = self.indexed(host, episode)?;
        let s = &self.settings;
        let decoded = s.decode.decode_bytes(&self.read(&path)?, key, None, &path.display().to_string());
        let aligned = Align.apply(&decoded.map_err(unusable)?);
        Ok(super::api::windows(&aligned, &s.window, &s.tensor))
    }

    /// The archive and key of the indexed episode `host`/`episode` (found in
    /// the published index, never built from the request's text).
    fn indexed(&self, host: &str, episode: &str) -> Result<(PathBuf, EpisodeKey), Refused> {
        let corpus = self.corpus();
        let Some((path, record)) = super::api::archive_of(&corpus, &self.settings.episodes_root, host, episode) else {
            return Err(Refused::NotFound(format!("no indexed episode {host}/{episode}")));
        };
        Ok((path, EpisodeKey { host_id: record.host_id.clone(), episode_id: record.episode_id.clone() }))
    }

    /// The bytes of the archive at `path`.
    fn read(&self, path: &std::path::Path) -> Result<Vec<u8>, Refused> {
        self.settings.decode.read_archive(path).map_err(unusable)
    }

    /// Plans a replay of the indexed episode `host`/`episode` with `model`
    /// at `speed`: reads, decodes and aligns its archive, and classifies its
    /// windows (blocking work).
    pub fn plan_replay(&self, host: &str, episode: &str, model: &str, speed: f64) -> Result<Replay, Refused> {
        if !(speed.is_finite() && speed > 0.0) {
            return Err(Refused::Invalid(format!(
                "speed must be a positive number of seconds per second, got {speed}"
            )));
        }
        let (path, key) = self.indexed(host, episode)?;
        let predictor = self.predictor(model)?;
        let (aligned, validation) =
            predictor.align(&self.read(&path)?, key, &path.display().to_string()).map_err(unusable)?;
        let id = self.next_replay.fetch_add(1, Ordering::Relaxed);
        let replay = Replay::plan(id, &predictor, &aligned, &validation, speed).map_err(Refused::Unusable)?;
        for step in &replay.steps {
            if let Event::Prediction(p) = &step.event {
                ::metrics::histogram!("epiflow_inference_latency_seconds").record(p.latency_ms / 1e3);
            }
        }
        Ok(replay)
    }
}

/// An archive that cannot be read or decoded: why, naming the file.
fn unusable(failure: Failure) -> Refused {
    Refused::Unusable(failure.problem.to_string())
}

/// The pipeline loop's side of the dashboard: it never waits, it only
/// records and publishes to the hub.
impl Observer for Dashboard {
    /// An update begins.
    fn update_started(&self, _changes: usize) {
        *lock(&self.update) = Some(Update { started: Instant::now(), computed: 0, operators: BTreeMap::new() });
    }

    /// An episode of the update under way is done.
    fn episode(&self, report: &EpisodeReport) {
        if let Some(update) = lock(&self.update).as_mut() {
            update.computed += u64::from(report.trace.iter().any(|s| s.status != Status::Cached));
            for sample in &report.trace {
                update.operators.entry(sample.operator.to_string()).or_default().add(sample);
            }
        }
    }

    /// The outputs were published: the corpus is replaced, and `perf` and
    /// `profiles` go out.
    fn published(&self, output: &CorpusState, stats: &RunStats, generation: u64) -> Result<(), String> {
        let corpus = Arc::new(Corpus::of(output, generation));
        *self.corpus.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&corpus));
        let computed = lock(&self.update).take().map_or(0, |update| update.computed);
        for outcome in Outcome::ALL {
            let n = corpus.records.iter().filter(|r| r.outcome == outcome).count();
            ::metrics::gauge!("epiflow_episodes", "outcome" => outcome.name()).set(n as f64);
        }
        for (name, o) in &stats.operators {
            for (status, n) in [("computed", o.computed), ("cached", o.cached), ("failed", o.failed)] {
                ::metrics::counter!("epiflow_operator_results_total", "operator" => name.clone(), "status" => status)
                    .increment(n);
            }
            ::metrics::gauge!("epiflow_operator_busy_seconds", "operator" => name.clone()).increment(o.wall_s);
        }
        self.publish(perf::of(stats, computed, generation));
        self.publish_profiles();
        Ok(())
    }

    /// The models moved: `/api/models` says where each stands.
    fn model_states(&self, states: &BTreeMap<String, ModelState>) {
        *lock(&self.model_states) = states.clone();
    }

    /// New checkpoints were written: a replay loads them afresh (the
    /// reports are picked up by the next tick).
    fn models_published(&self, _stats: &RunStats) {
        lock(&self.predictors).clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_pipelines::work::StageSample;

    fn dashboard() -> Dashboard {
        Dashboard::new(Settings {
            out: PathBuf::from("/nonexistent/out"),
            episodes_root: PathBuf::from("/nonexistent/episodes"),
            decode: Decode::default(),
            validate: Validate::default(),
            window: Window::default(),
            tensor: Tensor::default(),
            recipe: Recipe::Host,
        })
    }

    fn report(status: Status) -> EpisodeReport {
        let sample = StageSample { operator: "decode".into(), nanos: 2_000_000, status };
        EpisodeReport {
            key: ("h".into(), "e".into()),
            records: Default::default(),
            windows: None,
            trace: vec![sample],
            worker: 0,
        }
    }

    #[test]
    fn perf_goes_out_every_tick_while_an_update_runs_and_not_after_its_publication() {
        let dashboard = dashboard();
        assert!(dashboard.tick_perf().is_none(), "no update, no tick");
        dashboard.update_started(2);
        dashboard.episode(&report(Status::Computed));
        dashboard.episode(&report(Status::Failed));
        let Some(tick) = dashboard.tick_perf() else { panic!("an update is under way") };
        let Event::Perf(perf) = &tick.event else { panic!("{tick:?}") };
        let decode = &perf.operators["decode"];
        assert_eq!((decode.computed, decode.cached, decode.failed, decode.busy_s), (1, 0, 1, 0.004));
        assert!(perf.episodes_per_s > 0.0);
        assert!(dashboard.hub.subscribe(None).backlog.iter().any(|e| e.id == tick.id), "published");

        dashboard.published(&CorpusState::default(), &RunStats::default(), 3).unwrap();
        assert!(dashboard.tick_perf().is_none(), "the update is over");
        let state = dashboard.hub.subscribe(None).backlog;
        let names: Vec<&str> = state.iter().map(|e| e.event.name()).collect();
        assert_eq!(names, ["perf", "profiles"], "the publication's perf replaced the tick's");
    }

    #[test]
    fn the_rate_counts_computed_episodes_not_cached_ones() {
        let dashboard = dashboard();
        dashboard.update_started(3);
        for _ in 0..3 {
            dashboard.episode(&report(Status::Cached));
        }
        let rate = |event: &Event| match event {
            Event::Perf(perf) => perf.episodes_per_s,
            other => panic!("{other:?}"),
        };
        assert_eq!(rate(&dashboard.tick_perf().unwrap().event), 0.0, "nothing computed so far");
        let stats = RunStats { wall_s: 0.01, ..RunStats::default() };
        let output = CorpusState { inserted: 3, ..CorpusState::default() };
        dashboard.published(&output, &stats, 1).unwrap();
        let state = dashboard.hub.subscribe(None).backlog;
        let published = state.iter().find(|e| e.event.name() == "perf").unwrap();
        assert_eq!(rate(&published.event), 0.0, "a cached publication is not 300 episodes/s");

        dashboard.update_started(2);
        dashboard.episode(&report(Status::Computed));
        dashboard.episode(&report(Status::Cached));
        dashboard.published(&output, &stats, 2).unwrap();
        let state = dashboard.hub.subscribe(None).backlog;
        let published = state.iter().rfind(|e| e.event.name() == "perf").unwrap();
        assert_eq!(rate(&published.event), 100.0, "one computed episode in 10 ms");
    }

    #[test]
    fn a_model_is_found_by_name_only_among_the_known_ones() {
        let dashboard = dashboard();
        for name in ["../gbt-realistic", "gbt", "host/../gbt-realistic", "lab/gbt-realistic", "/etc/passwd"] {
            assert!(matches!(dashboard.predictor(name), Err(Refused::NotFound(_))), "{name}");
        }
        let Err(Refused::NotFound(why)) = dashboard.predictor("sample/cnn-oracle") else { panic!() };
        assert!(why.contains("sample") && why.contains("cnn-oracle"), "{why}");
        assert!(dashboard.models().is_empty());
    }
}
