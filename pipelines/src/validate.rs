//! The validation dataflow:
//!
//! ```text
//! index (differential collection)
//!   → exchange by episode key → decode → align → validate   (one batch per episode)
//!   → records gathered at worker 0                           (→ validation.parquet)
//!   → (dimension, value) collection → count                  (corpus-level counts)
//! ```

use crate::stage::episode_stage;
use crate::work::{StageSample, Work};
use crate::Cluster;
use differential_dataflow::input::Input;
use differential_dataflow::AsCollection;
use epiflow_operators::align::Align;
use epiflow_operators::archive::archive_path;
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
    /// Per operator name.
    pub operators: BTreeMap<String, OperatorTotals>,
    /// Corpus-level counts from the differential `count`: (dimension, value) →
    /// episodes. Dimensions: `outcome`, `reason`, `host`, `profile`.
    pub counts: BTreeMap<(String, String), i64>,
}

/// Called on worker 0 for each finished episode (progress display).
pub type Observer = Arc<dyn Fn(&ValidationRecord) + Send + Sync>;

/// The (dimension, value) pairs an episode contributes to the corpus counts.
fn dimensions(record: &ValidationRecord) -> Vec<(String, String)> {
    let mut dims = vec![
        ("outcome".to_string(), record.outcome.name().to_string()),
        ("host".to_string(), record.host_id.clone()),
        ("profile".to_string(), record.profile.clone().unwrap_or_else(|| "(none)".into())),
    ];
    dims.extend(record.reasons.iter().map(|r| ("reason".to_string(), r.clone())));
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
                Work::start(entry, input).then(Decode::NAME, |i| decode.apply(i))
            });
            let aligned = episode_stage(decoded, Align::NAME, |w: Work<_>| w.then(Align::NAME, |d| Ok(Align.apply(d))));
            let validate = job_w.validate.clone();
            let records = episode_stage(aligned, Validate::NAME, move |w: Work<_>| {
                let w = w.then(Validate::NAME, |a| Ok(validate.apply(a)));
                let record = match w.state {
                    Ok(record) => record,
                    Err(failure) => ValidationRecord::errored(&w.entry, &failure),
                };
                (record, w.trace)
            });

            records
                .clone()
                .exchange(|_| 0)
                .inspect(move |((record, trace), _, _): &((ValidationRecord, Vec<StageSample>), u64, isize)| {
                    observer(record);
                    let mut out = g.borrow_mut();
                    for s in trace {
                        let t = out.operators.entry(s.operator.clone()).or_default();
                        t.nanos += s.nanos;
                        if s.failed {
                            t.failed += 1;
                        } else {
                            t.computed += 1;
                        }
                    }
                    out.records.push(record.clone());
                })
                .probe_with(&probe);

            records
                .as_collection()
                .flat_map(|(record, _)| dimensions(&record))
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
