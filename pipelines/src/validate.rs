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

use crate::sinks::features::{summary_batch, tensor_batch, EpisodeInfo, Kind, Staging};
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
use epiflow_operators::tensor::Tensor;
use epiflow_operators::validate::{Validate, ValidationRecord};
use epiflow_operators::window::Window;
use epiflow_operators::Operator;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::operators::{Exchange, Inspect, Probe};
use timely::dataflow::ProbeHandle;

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

/// The feature operators and where they stage each episode's rows.
#[derive(Clone, Debug)]
pub struct FeatureJob {
    pub window: Window,
    pub tensor: Tensor,
    pub staging: Staging,
}

/// An episode after validation and classification, on its way to features.
#[derive(Clone, Debug)]
struct Analyzed {
    validation: ValidationRecord,
    quality: QualityRecord,
    aligned: AlignedEpisode,
    /// Windows staged, when features were computed.
    windows: Option<usize>,
    /// A staging write that failed: fatal for the run, reported at the end.
    staging_error: Option<String>,
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
    /// Episodes whose features were staged, with their window counts.
    pub featured: Vec<(EpisodeKey, usize)>,
    /// Staging writes that failed.
    pub staging_errors: Vec<String>,
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
    /// Windows staged, when features were computed.
    pub windows: Option<usize>,
    pub staging_error: Option<String>,
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

/// Runs validation over `cluster`. Returns the gathered output on the process
/// that hosts worker 0, `None` on the others.
pub fn run(job: ValidateJob, cluster: &Cluster, observer: Observer) -> Result<Option<ValidateOutput>, String> {
    let job = Arc::new(job);
    let guards = timely::execute(cluster.timely_config()?, move |worker| {
        let gathered = Rc::new(RefCell::new(ValidateOutput::default()));
        let count_diffs: Rc<RefCell<BTreeMap<((String, String), isize), isize>>> = Default::default();
        let probe = ProbeHandle::new();
        let job_w = Arc::clone(&job);
        let observer = Arc::clone(&observer);
        let (g, c) = (Rc::clone(&gathered), Rc::clone(&count_diffs));
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, index) = scope.new_collection::<IndexEntry, isize>();
            let spread = index.inner.exchange(|(entry, _, _): &(IndexEntry, u64, isize)| entry.key.stable_hash());

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
                    Ok(Analyzed { validation, quality, aligned, windows: None, staging_error: None })
                })
            });
            let features = job_w.features.clone();
            let windowed = episode_stage(classified, Window::NAME, move |w: Work<Analyzed>| {
                let Some(job) =
                    features.as_ref().filter(|_| w.state.as_ref().is_ok_and(|a| a.wants_features(&features)))
                else {
                    return w;
                };
                w.then(Window::NAME, |mut a| {
                    let summary = job.window.apply(&a.aligned);
                    a.windows = Some(summary.windows.len());
                    let staged = summary_batch(&a.info(), &summary)
                        .and_then(|batch| job.staging.put(Kind::Summary, &a.aligned.facts.key, &batch));
                    a.staging_error = staged.err().map(|e| format!("staging summary of {}: {e}", a.aligned.facts.key));
                    Ok(a)
                })
            });
            let features = job_w.features.clone();
            let tensored = episode_stage(windowed, Tensor::NAME, move |w: Work<Analyzed>| {
                let Some(job) =
                    features.as_ref().filter(|_| w.state.as_ref().is_ok_and(|a| a.wants_features(&features)))
                else {
                    return w;
                };
                w.then(Tensor::NAME, |mut a| {
                    let tensors = job.tensor.apply(&a.aligned);
                    let staged = tensor_batch(&a.info(), &tensors)
                        .and_then(|batch| job.staging.put(Kind::Tensors, &a.aligned.facts.key, &batch));
                    if let Err(e) = staged {
                        a.staging_error.get_or_insert(format!("staging tensors of {}: {e}", a.aligned.facts.key));
                    }
                    Ok(a)
                })
            });
            let reports = episode_stage(tensored, "report", |w: Work<Analyzed>| match w.state {
                Ok(a) => EpisodeReport {
                    validation: a.validation,
                    quality: Some(a.quality),
                    windows: a.windows,
                    staging_error: a.staging_error,
                    trace: w.trace,
                },
                Err(failure) => EpisodeReport {
                    validation: ValidationRecord::errored(&w.entry, &failure),
                    quality: None,
                    windows: None,
                    staging_error: None,
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
                    out.staging_errors.extend(report.staging_error.clone());
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
            out.featured.sort();
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
        if let Some(out) = result? {
            leader = Some(out);
        }
    }
    Ok(leader)
}
