//! What a run with this configuration would do, before paying for it (like
//! DataFusion's `EXPLAIN`, it runs nothing): the operator graph — each
//! stage's version, configuration, inputs, fingerprint and output — and
//! which stages would recompute, for how many episodes, against the last
//! run's fingerprints (`OUT/run.json`) and outcomes
//! (`OUT/validation.parquet`) and the index as it stands.

use crate::error::Result;
use crate::job::{read_entries, Job};
use crate::observer::Observer;
use epiflow_pipelines::lineage::{Lineage, Scope, StageInfo};
use epiflow_pipelines::sinks::validation::read_outcomes;
use epiflow_pipelines::stages::Applies;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The episodes a run would see, against the last run's outcomes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Episodes {
    /// In the index now.
    pub indexed: usize,
    /// In the index and not in the last run's outputs.
    pub new: usize,
    /// In the last run's outputs and no longer in the index.
    pub removed: usize,
    /// Still indexed, and readable (not errored) in the last run.
    pub readable: usize,
    /// Still indexed, and accepted or degraded in the last run.
    pub usable: usize,
}

/// One stage as `explain --json` prints it: the stage and its impact.
#[derive(Clone, Debug, Serialize)]
pub struct StageImpact {
    #[serde(flatten)]
    /// The stage as a run would build it.
    pub stage: StageInfo,
    /// The stage's fingerprint in the last run, if it ran.
    pub last_fingerprint: Option<String>,
    /// Whether `OUT/cache` holds results under this fingerprint (an earlier
    /// run with the same configuration left them): they are reused.
    pub cached: bool,
    /// Episodes a run would compute this stage for.
    pub recompute: usize,
}

/// What `explain` found.
#[derive(Clone, Debug, Serialize)]
pub struct Explained {
    /// Whether `OUT` holds an earlier run to compare against.
    pub last_run: bool,
    /// The episodes a run would see.
    pub episodes: Episodes,
    /// Each operator of the graph, in run order, with its impact.
    pub stages: Vec<StageImpact>,
}

impl Job {
    /// The graph a run of this job would build (features included) and its
    /// impact against the last run in `out`; malformed index lines are told
    /// to `observer`.
    pub fn explain(&self, observer: &dyn Observer) -> Result<Explained> {
        let stages = self.stages()?;
        let (entries, _) = read_entries(&self.index_path(), observer)?;
        let indexed: BTreeSet<(String, String)> =
            entries.into_iter().map(|e| (e.key.host_id, e.key.episode_id)).collect();
        Ok(impact(&Lineage::stages(&self.config.decode(), &stages), &self.out, &indexed))
    }
}

/// The last run's fingerprints by operator, and its outcome per episode
/// (both empty when `out` holds no run).
fn last_run(out: &Path) -> (BTreeMap<String, String>, BTreeMap<(String, String), String>) {
    let stats: Option<serde_json::Value> =
        std::fs::read(out.join("run.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let fingerprints = stats
        .as_ref()
        .and_then(|s| s["operators"].as_object())
        .map(|ops| {
            ops.iter().filter_map(|(name, o)| Some((name.clone(), o["fingerprint"].as_str()?.to_string()))).collect()
        })
        .unwrap_or_default();
    let outcomes = read_outcomes(&out.join("validation.parquet")).unwrap_or_default().into_iter().collect();
    (fingerprints, outcomes)
}

/// The impact of running `stages` on the `indexed` episodes, against the
/// last run in `out`: a stage whose fingerprint moved recomputes every
/// episode it applies to, unless `OUT/cache` still holds its results under
/// the new fingerprint (a configuration used before, e.g. a threshold set
/// back); otherwise only the new episodes.
fn impact(stages: &[StageInfo], out: &Path, indexed: &BTreeSet<(String, String)>) -> Explained {
    let (fingerprints, outcomes) = last_run(out);
    let still: Vec<&String> = outcomes.iter().filter(|(k, _)| indexed.contains(*k)).map(|(_, o)| o).collect();
    let episodes = Episodes {
        indexed: indexed.len(),
        new: indexed.iter().filter(|k| !outcomes.contains_key(*k)).count(),
        removed: outcomes.keys().filter(|k| !indexed.contains(*k)).count(),
        readable: still.iter().filter(|o| o.as_str() != "errored").count(),
        usable: still.iter().filter(|o| matches!(o.as_str(), "accepted" | "degraded")).count(),
    };
    let stages = stages
        .iter()
        .map(|s| {
            let fingerprint = s.fingerprint.hex();
            let last_fingerprint = fingerprints.get(s.name).cloned();
            let cached = crate::cache::root(out).join(s.name).join(&fingerprint).is_dir();
            let moved = last_fingerprint.as_deref() != Some(fingerprint.as_str()) && !cached;
            let recompute = episodes.new
                + match (moved, s.applies) {
                    (false, _) => 0,
                    (true, Scope::Indexed) => episodes.indexed - episodes.new,
                    (true, Scope::Stage(Applies::Readable)) => episodes.readable,
                    (true, Scope::Stage(Applies::Usable)) => episodes.usable,
                };
            StageImpact { stage: s.clone(), last_fingerprint, cached, recompute }
        })
        .collect();
    Explained { last_run: !fingerprints.is_empty(), episodes, stages }
}
