//! The corpus dataflow: validation, classification and — when asked for —
//! windows, tensors and their shards, each operator reusing earlier results
//! through a [`ResultStore`] (see [`crate::steps`]):
//!
//! ```text
//! index (differential collection)
//!   → exchange by shard (features) or episode key
//!   → decode → align → validate → classify → window → tensor   (one batch per episode)
//!   → feature sink: new rows stream into this worker's shards; reports pass on
//!   → reports gathered at worker 0               (→ validation.parquet, quality.parquet)
//!   → (dimension, value) collection → count      (corpus-level counts)
//!   → shard updates gathered at worker 0         (→ features/manifest.json)
//! ```

use crate::lineage::Lineage;
use crate::results::ResultStore;
use crate::sinks::feature_sink::{FeatureChange, FeatureEvent, FeatureSink, ShardUpdate};
use crate::sinks::features::shard_of;
use crate::sinks::manifest::Published;
use crate::stage::episode_stage;
use crate::steps::{Episode, FeatureSteps, Steps};
use crate::work::{StageSample, Status, Work};
use crate::Cluster;
use differential_dataflow::input::Input;
use differential_dataflow::AsCollection;
use epiflow_operators::classify::{Classify, QualityRecord};
use epiflow_operators::decode::Decode;
use epiflow_operators::index::IndexEntry;
use epiflow_operators::tensor::Tensor;
use epiflow_operators::validate::{Validate, ValidationRecord};
use epiflow_operators::window::Window;
use epiflow_operators::Operator;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator as _;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Exchange, Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::dataflow::Stream;

/// What a corpus run needs: where the archives are, which episodes, the
/// operators' configurations and where results are reused from.
#[derive(Clone)]
pub struct ValidateJob {
    /// `STORE/episodes`.
    pub episodes_root: PathBuf,
    /// The index entries to validate. Only worker 0 feeds them in.
    pub entries: Vec<IndexEntry>,
    pub decode: Decode,
    pub validate: Validate,
    pub classify: Classify,
    /// Windows and tensors for usable episodes, when asked for.
    pub features: Option<FeatureJob>,
    /// Earlier results ([`crate::results::NoStore`] to compute everything).
    pub store: Arc<dyn ResultStore>,
}

/// The feature operators and where their shards go.
#[derive(Clone, Debug)]
pub struct FeatureJob {
    pub window: Window,
    pub tensor: Tensor,
    /// `OUT/features`.
    pub dir: PathBuf,
    pub shards: usize,
    /// Footer metadata of every shard.
    pub metadata: Vec<(String, String)>,
    /// What an earlier run published under the same lineage.
    pub published: Arc<Published>,
}

impl ValidateJob {
    /// The per-episode steps of this job.
    fn steps(&self) -> Steps {
        Steps {
            episodes_root: self.episodes_root.clone(),
            decode: self.decode.clone(),
            validate: self.validate.clone(),
            classify: self.classify.clone(),
            features: self.features.as_ref().map(|f| FeatureSteps {
                window: f.window.clone(),
                tensor: f.tensor.clone(),
                published: Arc::clone(&f.published),
            }),
            lineage: Lineage::of(self),
            store: Arc::clone(&self.store),
        }
    }
}

/// Totals of one operator over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OperatorTotals {
    pub computed: u64,
    pub cached: u64,
    pub failed: u64,
    /// Time spent inside the operator, summed over workers.
    pub nanos: u64,
}

impl OperatorTotals {
    fn add(&mut self, sample: &StageSample) {
        self.nanos += sample.nanos;
        match sample.status {
            Status::Computed => self.computed += 1,
            Status::Cached => self.cached += 1,
            Status::Failed => self.failed += 1,
        }
    }
}

/// What worker 0 gathers from a corpus run.
#[derive(Clone, Debug, Default)]
pub struct ValidateOutput {
    /// One record per episode, sorted by key.
    pub records: Vec<ValidationRecord>,
    /// One quality record per classified (not errored) episode, sorted by key.
    pub quality: Vec<QualityRecord>,
    /// The new content of every shard the run touched, by shard.
    pub shard_updates: BTreeMap<usize, ShardUpdate>,
    /// Shard writes that failed (fatal for the run).
    pub shard_errors: Vec<String>,
    /// Per operator name.
    pub operators: BTreeMap<String, OperatorTotals>,
    /// Corpus-level counts from the differential `count`: (dimension, value) →
    /// episodes. Dimensions: `outcome`, `reason`, `host`, `profile`, and for
    /// classified episodes `quality` (each prune reason) and `fake`.
    pub counts: BTreeMap<(String, String), i64>,
}

/// What the dataflow learns about one episode.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EpisodeReport {
    pub validation: ValidationRecord,
    /// `None` for an episode whose archive could not be read.
    pub quality: Option<QualityRecord>,
    /// Windows published, when features were asked for and the episode is usable.
    pub windows: Option<usize>,
    pub trace: Vec<StageSample>,
}

/// Called on worker 0 for each finished episode (progress display).
pub type Observer = Arc<dyn Fn(&EpisodeReport) + Send + Sync>;

/// What leaves the feature sink: every episode's report as it passes, and
/// the shards' new content once the run's input is exhausted.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum SinkOut {
    Report(Box<EpisodeReport>),
    Shards(Result<Vec<ShardUpdate>, String>),
}

/// The (dimension, value) pairs an episode contributes to the corpus counts.
fn dimensions(report: &EpisodeReport) -> Vec<(String, String)> {
    let record = &report.validation;
    let mut dims = vec![
        ("outcome".to_string(), record.outcome.name().to_string()),
        ("host".to_string(), record.host_id.clone()),
        ("profile".to_string(), record.profile.clone().unwrap_or_else(|| "(none)".into())),
    ];
    dims.extend(record.reasons.iter().map(|r| ("reason".to_string(), r.clone())));
    if let Some(q) = &report.quality {
        dims.extend(q.reasons.iter().map(|r| ("quality".to_string(), r.clone())));
        dims.push(("fake".to_string(), q.fake.to_string()));
    }
    dims
}

/// Net diff per ((counter, key), value) seen by this worker's count collection.
type CountDiffs = BTreeMap<((String, String), isize), isize>;

/// Runs the corpus dataflow over `cluster`. Returns the gathered output on the
/// process that hosts worker 0, `None` on the others.
pub fn run(job: ValidateJob, cluster: &Cluster, observer: Observer) -> Result<Option<ValidateOutput>, String> {
    let job = Arc::new(job);
    let steps = Arc::new(job.steps());
    let guards = timely::execute(cluster.timely_config()?, move |worker| {
        let gathered = Rc::new(RefCell::new(ValidateOutput::default()));
        let count_diffs: Rc<RefCell<CountDiffs>> = Default::default();
        let probe = ProbeHandle::new();
        let (job_w, steps) = (Arc::clone(&job), Arc::clone(&steps));
        let observer = Arc::clone(&observer);
        let (g, c, s) = (Rc::clone(&gathered), Rc::clone(&count_diffs), Rc::clone(&gathered));
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, index) = scope.new_collection::<IndexEntry, isize>();
            // With features, route by shard: each shard then has exactly one writer.
            let shards = job_w.features.as_ref().map(|f| f.shards);
            let spread = index.inner.exchange(move |(entry, _, _): &(IndexEntry, u64, isize)| match shards {
                Some(n) => shard_of(&entry.key, n) as u64,
                None => entry.key.stable_hash(),
            });

            let st = Arc::clone(&steps);
            let decoded = episode_stage(spread, Decode::NAME, move |entry| st.decode(entry));
            let st = Arc::clone(&steps);
            let aligned = episode_stage(decoded, "align", move |w| st.align(w));
            let st = Arc::clone(&steps);
            let validated = episode_stage(aligned, Validate::NAME, move |w| st.validate(w));
            let st = Arc::clone(&steps);
            let classified = episode_stage(validated, Classify::NAME, move |w| st.classify(w));
            let st = Arc::clone(&steps);
            let windowed = episode_stage(classified, Window::NAME, move |w| st.window(w));
            let st = Arc::clone(&steps);
            let tensored = episode_stage(windowed, Tensor::NAME, move |w| st.tensor(w));
            let out = feature_sink(tensored, job_w.features.clone());

            out.clone()
                .flat_map(|(o, t, r)| match o {
                    SinkOut::Shards(updates) => Some((updates, t, r)),
                    SinkOut::Report(_) => None,
                })
                .exchange(|_| 0)
                .inspect(move |(updates, _, _): &(Result<Vec<ShardUpdate>, String>, u64, isize)| {
                    let mut out = s.borrow_mut();
                    match updates {
                        Ok(updates) => out.shard_updates.extend(updates.iter().map(|u| (u.shard, u.clone()))),
                        Err(e) => out.shard_errors.push(e.clone()),
                    }
                })
                .probe_with(&probe);

            let reports = out.flat_map(|(o, t, r)| match o {
                SinkOut::Report(report) => Some((*report, t, r)),
                SinkOut::Shards(_) => None,
            });
            reports
                .clone()
                .exchange(|_| 0)
                .inspect(move |(report, _, _): &(EpisodeReport, u64, isize)| {
                    observer(report);
                    let mut out = g.borrow_mut();
                    for sample in &report.trace {
                        out.operators.entry(sample.operator.clone()).or_default().add(sample);
                    }
                    out.records.push(report.validation.clone());
                    out.quality.extend(report.quality.clone());
                })
                .probe_with(&probe);

            reports
                .as_collection()
                .flat_map(|report| dimensions(&report))
                .count()
                .inner
                .exchange(|_| 0)
                .inspect(move |(kv, _, diff): &(((String, String), isize), u64, isize)| {
                    *c.borrow_mut().entry(kv.clone()).or_default() += diff;
                })
                .probe_with(&probe);
            input
        });
        if worker.index() == 0 {
            for entry in &job.entries {
                input.insert(entry.clone());
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        (worker.index() == 0).then(|| {
            let mut out = gathered.take();
            out.records.sort_by(|a, b| (&a.host_id, &a.episode_id).cmp(&(&b.host_id, &b.episode_id)));
            out.quality.sort_by(|a, b| (&a.host_id, &a.episode_id).cmp(&(&b.host_id, &b.episode_id)));
            out.counts = count_diffs
                .take()
                .into_iter()
                .filter(|(_, diff)| *diff != 0)
                .map(|((key, count), diff)| (key, (count * diff) as i64))
                .collect();
            out
        })
    })?;
    let mut leader = None;
    for result in guards.join() {
        leader = leader.or(result?);
    }
    Ok(leader)
}

/// Turns each finished episode into its report and, for usable episodes
/// when features are asked for, feeds its rows (or the fact that its
/// published rows are kept) to this worker's [`FeatureSink`]. When a time is
/// complete, publishes the touched shards and sends their new content on.
fn feature_sink<'scope>(
    stream: Stream<'scope, u64, Vec<(Work<Episode>, u64, isize)>>,
    job: Option<FeatureJob>,
) -> Stream<'scope, u64, Vec<(SinkOut, u64, isize)>> {
    let mut sink = job.as_ref().map(|job| {
        let timesteps = job.tensor.config.timesteps();
        FeatureSink::new(&job.dir, timesteps, &job.metadata, job.shards, Arc::clone(&job.published))
    });
    let mut held: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    stream.unary_frontier(Pipeline, "feature-sink", move |_, _| {
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each_stamp(|cap, batches| {
                if sink.is_some() {
                    if let Some(retained) = cap.retain_least(port) {
                        held.entry(*retained.time()).or_insert(retained);
                    }
                }
                let mut session = output.session(&cap);
                for batch in batches {
                    for (w, t, r) in batch.drain(..) {
                        let (report, event) = report(w);
                        if let (Some(sink), Some(event)) = (sink.as_mut(), event) {
                            if let Err(e) = sink.apply(event) {
                                let v = &report.validation;
                                errors.push(format!("{}/{}: {e}", v.host_id, v.episode_id));
                            }
                        }
                        session.give((SinkOut::Report(Box::new(report)), t, r));
                    }
                }
            });
            while let Some(entry) = held.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (time, cap) = entry.remove_entry();
                let published = match (sink.as_mut(), errors.is_empty()) {
                    (Some(sink), true) => sink.publish().map_err(|e| format!("publishing feature shards: {e}")),
                    _ => Err(std::mem::take(&mut errors).join("; ")),
                };
                output.session(&cap).give((SinkOut::Shards(published), time, 1));
            }
        }
    })
}

/// An episode's report, and what its features do in the sink.
fn report(w: Work<Episode>) -> (EpisodeReport, Option<FeatureEvent>) {
    let Work { entry, trace, state } = w;
    match state.and_then(Episode::finish) {
        Ok((sha256, validation, quality, change)) => {
            let windows = match &change {
                Some(FeatureChange::Keep { windows }) => Some(*windows),
                Some(FeatureChange::New(rows)) => Some(rows.summary.windows.len()),
                None => None,
            };
            let event = change.map(|change| FeatureEvent { key: entry.key, sha256, change });
            (EpisodeReport { validation, quality: Some(quality), windows, trace }, event)
        }
        Err(failure) => (
            EpisodeReport {
                validation: ValidationRecord::errored(&entry, &failure),
                quality: None,
                windows: None,
                trace,
            },
            None,
        ),
    }
}
