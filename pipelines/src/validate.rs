//! The validation dataflow, which also classifies (one pass computes both):
//!
//! ```text
//! index (differential collection)
//!   → exchange by episode key
//!   → decode → align → validate → classify     (one columnar batch per episode)
//!   → records gathered at worker 0              (→ validation.parquet, quality.parquet)
//!   → (dimension, value) collection → count     (corpus-level counts)
//! ```

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
use epiflow_operators::validate::{Validate, ValidationRecord};
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
            let reports = episode_stage(validated, Classify::NAME, move |w: Work<_>| {
                let w = w.then(Classify::NAME, |(v, a)| Ok((v, classify.apply(&a))));
                let (validation, quality) = match w.state {
                    Ok((v, q)) => (v, Some(q)),
                    Err(failure) => (ValidationRecord::errored(&w.entry, &failure), None),
                };
                EpisodeReport { validation, quality, trace: w.trace }
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
        if let Some(out) = result? {
            leader = Some(out);
        }
    }
    Ok(leader)
}
