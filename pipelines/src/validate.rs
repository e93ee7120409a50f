//! The validation dataflow, which also classifies (one pass computes both):
//!
//! ```text
//! index (differential collection)
//!   → exchange by episode key
//!   → decode → align → validate → classify     (one columnar batch per episode)
//!   → window → tensor                            (usable episodes, when features are asked for;
//!                                                 rows staged per episode, see sinks::features)
//!   → records gathered at worker 0              (→ validation.parquet, quality.parquet)
//!   → (dimension, value) collection → count     (corpus-level counts)
//! ```

use crate::sinks::features::{shard_of, EpisodeInfo, ShardWriters};
use crate::stage::episode_stage;
use crate::work::{StageSample, Work};
use crate::Cluster;
use differential_dataflow::input::Input;
use differential_dataflow::AsCollection;
use epiflow_operators::align::Align;
use epiflow_operators::archive::archive_path;
use epiflow_operators::classify::{Classify, QualityRecord};
use epiflow_operators::decode::{Decode, DecodeInput};
use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::{AlignedEpisode, EpisodeKey};
use epiflow_operators::tensor::{Tensor, TensorFeatures};
use epiflow_operators::validate::{Validate, ValidationRecord};
use epiflow_operators::window::{SummaryFeatures, Window};
use epiflow_operators::Operator;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator as _;
use timely::dataflow::operators::{Exchange, Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::dataflow::Stream;

/// What a validation run needs: where the archives are, which episodes, and the
/// operators' configurations.
#[derive(Clone, Debug)]
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
}

/// An episode after validation and classification, on its way to features.
#[derive(Clone, Debug)]
struct Analyzed {
    validation: ValidationRecord,
    quality: QualityRecord,
    aligned: AlignedEpisode,
    summary: Option<SummaryFeatures>,
    tensors: Option<TensorFeatures>,
}

impl Analyzed {
    /// Whether features are computed for this episode.
    fn wants_features(&self, job: &Option<FeatureJob>) -> bool {
        job.is_some() && self.validation.outcome.is_usable()
    }

    fn info(&self) -> EpisodeInfo<'_> {
        EpisodeInfo {
            key: &self.aligned.facts.key,
            profile: self.validation.profile.as_deref(),
            sample_name: self.validation.sample_name.as_deref(),
        }
    }
}

/// Totals of one operator over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OperatorTotals {
    pub computed: u64,
    pub failed: u64,
    /// Time spent inside the operator, summed over workers.
    pub nanos: u64,
}

/// What worker 0 gathers from a validation run.
#[derive(Clone, Debug, Default)]
pub struct ValidateOutput {
    /// One record per episode, sorted by key.
    pub records: Vec<ValidationRecord>,
    /// One quality record per classified (not errored) episode, sorted by key.
    pub quality: Vec<QualityRecord>,
    /// Episodes whose features were written, with their window counts.
    pub featured: Vec<(EpisodeKey, usize)>,
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
    /// Windows written, when features were computed.
    pub windows: Option<usize>,
    pub trace: Vec<StageSample>,
}

/// Called on worker 0 for each finished episode (progress display).
pub type Observer = Arc<dyn Fn(&EpisodeReport) + Send + Sync>;

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

/// Runs validation over `cluster`. Returns the gathered output on the process
/// that hosts worker 0, `None` on the others.
pub fn run(job: ValidateJob, cluster: &Cluster, observer: Observer) -> Result<Option<ValidateOutput>, String> {
    let job = Arc::new(job);
    let guards = timely::execute(cluster.timely_config()?, move |worker| {
        let gathered = Rc::new(RefCell::new(ValidateOutput::default()));
        let count_diffs: Rc<RefCell<CountDiffs>> = Default::default();
        let probe = ProbeHandle::new();
        let job_w = Arc::clone(&job);
        let observer = Arc::clone(&observer);
        let (g, c) = (Rc::clone(&gathered), Rc::clone(&count_diffs));
        let shard_errors: Rc<RefCell<Vec<String>>> = Default::default();
        let shard_errors_w = Rc::clone(&shard_errors);
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, index) = scope.new_collection::<IndexEntry, isize>();
            // With features, route by shard: each shard then has exactly one writer.
            let shards = job_w.features.as_ref().map(|f| f.shards);
            let spread = index.inner.exchange(move |(entry, _, _): &(IndexEntry, u64, isize)| match shards {
                Some(n) => shard_of(&entry.key, n) as u64,
                None => entry.key.stable_hash(),
            });

            let (root, decode) = (job_w.episodes_root.clone(), job_w.decode.clone());
            let decoded = episode_stage(spread, Decode::NAME, move |entry: IndexEntry| {
                let input = DecodeInput {
                    path: archive_path(&root, &entry.key.host_id, &entry.key.episode_id),
                    key: entry.key.clone(),
                    expected_sha256: entry.sha256.clone(),
                };
                Work::start(entry, input).then(Decode::NAME, |i| decode.apply(&i))
            });
            let aligned =
                episode_stage(decoded, Align::NAME, |w: Work<_>| w.then(Align::NAME, |d| Ok(Align.apply(&d))));
            let validate = job_w.validate.clone();
            let validated = episode_stage(aligned, Validate::NAME, move |w: Work<_>| {
                w.then(Validate::NAME, |a| Ok((validate.apply(&a), a)))
            });
            let classify = job_w.classify.clone();
            let classified = episode_stage(validated, Classify::NAME, move |w: Work<_>| {
                w.then(Classify::NAME, |(validation, aligned)| {
                    let quality = classify.apply(&aligned);
                    Ok(Analyzed { validation, quality, aligned, summary: None, tensors: None })
                })
            });
            let windowed = feature_stage(classified, Window::NAME, job_w.features.clone(), |job, a| {
                a.summary = Some(job.window.apply(&a.aligned));
            });
            let tensored = feature_stage(windowed, Tensor::NAME, job_w.features.clone(), |job, a| {
                a.tensors = Some(job.tensor.apply(&a.aligned));
            });
            let shard_errors = Rc::clone(&shard_errors_w);
            let tensored = shard_sink(tensored, job_w.features.clone(), shard_errors);
            let reports = episode_stage(tensored, "report", |w: Work<Analyzed>| match w.state {
                Ok(a) => EpisodeReport {
                    validation: a.validation,
                    quality: Some(a.quality),
                    windows: a.summary.map(|s| s.windows.len()),
                    trace: w.trace,
                },
                Err(failure) => EpisodeReport {
                    validation: ValidationRecord::errored(&w.entry, &failure),
                    quality: None,
                    windows: None,
                    trace: w.trace,
                },
            });

            reports
                .clone()
                .exchange(|_| 0)
                .inspect(move |(report, _, _): &(EpisodeReport, u64, isize)| {
                    observer(report);
                    let mut out = g.borrow_mut();
                    for s in &report.trace {
                        let t = out.operators.entry(s.operator.clone()).or_default();
                        t.nanos += s.nanos;
                        if s.failed {
                            t.failed += 1;
                        } else {
                            t.computed += 1;
                        }
                    }
                    out.records.push(report.validation.clone());
                    out.quality.extend(report.quality.clone());
                    if let Some(n) = report.windows {
                        let v = &report.validation;
                        out.featured
                            .push((EpisodeKey { host_id: v.host_id.clone(), episode_id: v.episode_id.clone() }, n));
                    }
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
        let errors = shard_errors.take();
        let out = (worker.index() == 0).then(|| {
            let mut out = gathered.take();
            out.records.sort_by(|a, b| (&a.host_id, &a.episode_id).cmp(&(&b.host_id, &b.episode_id)));
            out.quality.sort_by(|a, b| (&a.host_id, &a.episode_id).cmp(&(&b.host_id, &b.episode_id)));
            out.featured.sort();
            out.counts = count_diffs
                .take()
                .into_iter()
                .filter(|(_, diff)| *diff != 0)
                .map(|((key, count), diff)| (key, (count * diff) as i64))
                .collect();
            out
        });
        (out, errors)
    })?;
    let mut leader = None;
    let mut errors = Vec::new();
    for result in guards.join() {
        let (out, e) = result?;
        errors.extend(e);
        leader = leader.or(out);
    }
    match leader.as_mut() {
        Some(out) => out.shard_errors = errors,
        None if !errors.is_empty() => return Err(format!("writing feature shards: {}", errors.join("; "))),
        None => {}
    }
    Ok(leader)
}

/// A feature operator's stage: runs `compute` on usable episodes when features
/// are asked for, and lets every other episode pass untouched (and untimed).
fn feature_stage<'scope>(
    stream: Stream<'scope, u64, Vec<(Work<Analyzed>, u64, isize)>>,
    name: &'static str,
    features: Option<FeatureJob>,
    compute: impl Fn(&FeatureJob, &mut Analyzed) + 'static,
) -> Stream<'scope, u64, Vec<(Work<Analyzed>, u64, isize)>> {
    episode_stage(stream, name, move |w: Work<Analyzed>| {
        let wanted = w.state.as_ref().is_ok_and(|a| a.wants_features(&features));
        match features.as_ref().filter(|_| wanted) {
            Some(job) => w.then(name, |mut a| {
                compute(job, &mut a);
                Ok(a)
            }),
            None => w,
        }
    })
}

/// Writes each episode's feature rows into the shards this worker owns, in the
/// order episodes arrive (key order), and publishes the shards when the input
/// is exhausted. Episodes pass on without their tensors.
fn shard_sink<'scope>(
    stream: Stream<'scope, u64, Vec<(Work<Analyzed>, u64, isize)>>,
    job: Option<FeatureJob>,
    errors: Rc<RefCell<Vec<String>>>,
) -> Stream<'scope, u64, Vec<(Work<Analyzed>, u64, isize)>> {
    let Some(job) = job else { return stream };
    let timesteps = job.tensor.config.timesteps();
    let mut writers = Some(ShardWriters::new(&job.dir, timesteps, &job.metadata));
    stream.unary_frontier(Pipeline, "shard-sink", move |_, _| {
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, batches| {
                let mut session = output.session(&cap);
                for batch in batches {
                    for (mut w, t, r) in batch.drain(..) {
                        if let (Ok(a), Some(writers)) = (w.state.as_mut(), writers.as_mut()) {
                            if let (Some(summary), Some(tensors)) = (&a.summary, a.tensors.take()) {
                                let shard = shard_of(&a.aligned.facts.key, job.shards);
                                if let Err(e) = writers.write(shard, &a.info(), summary, &tensors) {
                                    errors.borrow_mut().push(format!("{}: {e}", a.aligned.facts.key));
                                }
                            }
                        }
                        session.give((w, t, r));
                    }
                }
            });
            if frontier.is_empty() {
                if let Some(w) = writers.take() {
                    if let Err(e) = w.finish() {
                        errors.borrow_mut().push(format!("publishing shards: {e}"));
                    }
                }
            }
        }
    })
}
