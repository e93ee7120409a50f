//! Run statistics: `run.json` (SPEC section 11) and the summary printed with
//! `--json`.

use epiflow_models::eval::EvalRun;
use epiflow_models::sink::{ModelRun, Status};
use epiflow_operators::fingerprint::Fingerprint;
use epiflow_pipelines::corpus::{OperatorTotals, WorkerTotals};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One operator's counts over a run. `wall_s` is time spent inside the operator,
/// summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatorStats {
    /// Episodes whose result it computed.
    pub computed: u64,
    /// Episodes whose result it reused.
    pub cached: u64,
    /// Episodes it failed on.
    pub failed: u64,
    /// Time inside the operator, summed over workers.
    pub wall_s: f64,
    /// The operator's chained fingerprint (hex): what its results are keyed
    /// by, so two runs' outputs can be told apart or matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl OperatorStats {
    /// Totals from the dataflow, with the operator's fingerprint.
    pub fn new(t: OperatorTotals, fingerprint: Option<Fingerprint>) -> Self {
        OperatorStats {
            computed: t.computed,
            cached: t.cached,
            failed: t.failed,
            wall_s: t.nanos as f64 / 1e9,
            fingerprint: fingerprint.map(|f| f.hex()),
        }
    }

    /// Totals of a sink (training, evaluation) from what became of each of
    /// its items, over `wall_s` seconds.
    pub fn of_statuses(statuses: impl Iterator<Item = Status>, wall_s: f64) -> Self {
        let mut stats = OperatorStats { wall_s, ..Default::default() };
        for status in statuses {
            *match status {
                Status::Computed => &mut stats.computed,
                Status::Cached => &mut stats.cached,
                Status::Failed => &mut stats.failed,
            } += 1;
        }
        stats
    }
}

/// What one dataflow worker did over a run: whether the work was spread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// The worker's index across all processes (process `p` of `n` with
    /// `w` workers each holds `p * w .. (p + 1) * w`).
    pub worker: u64,
    /// Episodes that went through this worker's operators.
    pub episodes: u64,
    /// Of those, the ones whose archive it decoded (the rest were cached).
    pub decoded: u64,
    /// Time spent inside operators on this worker.
    pub busy_s: f64,
}

impl WorkerStats {
    /// One worker's line from the dataflow's totals.
    pub fn new(worker: u64, t: WorkerTotals) -> Self {
        WorkerStats { worker, episodes: t.episodes, decoded: t.decoded, busy_s: t.nanos as f64 / 1e9 }
    }
}

/// The statistics of one run, as written to `run.json`; read back (without
/// the models' parts) from the memo of the last run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunStats {
    /// The command that ran (`validate`, `features`, `run`, `train`, `watch`).
    pub command: String,
    /// Episodes in the index.
    pub episodes: u64,
    /// Feature windows written (0 when features were not computed).
    pub windows: u64,
    /// Per operator of the graph (and the sinks that ran): what it did.
    pub operators: BTreeMap<String, OperatorStats>,
    /// Wall-clock time of the whole run.
    pub wall_s: f64,
    /// Of which: until the corpus outputs (tables, features, splits) were
    /// published, before any training or evaluation.
    #[serde(default)]
    pub corpus_s: f64,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes of the cluster.
    pub processes: usize,
    /// Per worker, in worker order: what each one did (workers that got no
    /// episode are listed with zeros).
    pub per_worker: Vec<WorkerStats>,
    /// Episodes per outcome.
    pub outcomes: BTreeMap<String, i64>,
    /// Episodes per reason code.
    pub reasons: BTreeMap<String, i64>,
    /// Episodes per lab host.
    pub hosts: BTreeMap<String, i64>,
    /// Episodes per workload profile (`(none)` without one).
    pub profiles: BTreeMap<String, i64>,
    /// Classified episodes per prune reason.
    pub quality: BTreeMap<String, i64>,
    /// Classified episodes that are fake.
    pub fake: i64,
    /// Malformed index lines skipped.
    pub index_problems: usize,
    /// Recipes that could not be split, and why (also in `splits/<recipe>.json`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub split_errors: BTreeMap<String, String>,
    /// The models the run trained or found cached (none unless asked for).
    #[serde(skip_serializing_if = "Vec::is_empty", skip_deserializing)]
    pub models: Vec<ModelRun>,
    /// The splits the run evaluated (or found current), with their reports.
    #[serde(skip_serializing_if = "Vec::is_empty", skip_deserializing)]
    pub evals: Vec<EvalRun>,
    /// A followed job (`watch`, `serve`) training in the background: where
    /// each model (`recipe/arch-channels`) stands against the latest
    /// publication.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", skip_deserializing)]
    pub model_states: BTreeMap<String, ModelState>,
}

/// Where a followed job's model stands against the latest publication of
/// the features and splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// Its checkpoint and report are those of the latest publication.
    Current,
    /// It is being trained now.
    Training,
    /// A publication came after it was last brought up to date (it may
    /// still be found current when its turn comes: its inputs may not
    /// have changed).
    Stale,
    /// Its last training failed (run.json's `models` says why).
    Failed,
}

impl RunStats {
    /// Fills the per-dimension maps from the dataflow's `(dimension, value)`
    /// counts.
    pub fn set_counts(&mut self, counts: &BTreeMap<(String, String), i64>) {
        for ((dim, value), n) in counts {
            let map = match dim.as_str() {
                "outcome" => &mut self.outcomes,
                "reason" => &mut self.reasons,
                "host" => &mut self.hosts,
                "profile" => &mut self.profiles,
                "quality" => &mut self.quality,
                "fake" => {
                    if value == "true" {
                        self.fake = *n;
                    }
                    continue;
                }
                _ => continue,
            };
            map.insert(value.clone(), *n);
        }
    }

    /// Episodes that were classified (every episode that is not errored).
    pub fn quality_classified(&self) -> i64 {
        self.episodes as i64 - self.outcomes.get("errored").copied().unwrap_or(0)
    }
}
