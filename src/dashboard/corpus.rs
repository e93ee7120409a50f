//! The corpus as the dashboard sees it: what the last publication holds —
//! each indexed episode's validation record, the classified ones' quality
//! records, and the windows published per episode. The routes and the
//! `profiles` producer read it; each publication replaces it whole.

use epiflow_operators::classify::{Classify, QualityRecord};
use epiflow_operators::validate::{Validate, ValidationRecord};
use epiflow_pipelines::corpus::CorpusState;
use std::collections::BTreeMap;

/// One publication's corpus.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    /// One per indexed episode, in key order: the index as published.
    pub records: Vec<ValidationRecord>,
    /// One per classified episode.
    pub quality: Vec<QualityRecord>,
    /// `host_id/episode_id` → feature windows published.
    pub windows: BTreeMap<String, usize>,
    /// The features' generation.
    pub generation: u64,
}

impl Corpus {
    /// The corpus `output` describes, as features generation `generation`.
    pub fn of(output: &CorpusState, generation: u64) -> Corpus {
        let results = output.episodes.iter().map(|(_, results)| results);
        let windows = output
            .shard_updates
            .values()
            .flat_map(|shard| shard.files.iter().flat_map(|f| &f.episodes).chain(&shard.windowless))
            .map(|rows| (rows.key.clone(), rows.windows))
            .collect();
        Corpus {
            records: results.clone().filter_map(|r| r.get::<Validate>().map(|v| v.into_owned())).collect(),
            quality: results.filter_map(|r| r.get::<Classify>().map(|q| q.into_owned())).collect(),
            windows,
            generation,
        }
    }

    /// The validation record of the indexed episode `host`/`episode`.
    pub fn record(&self, host: &str, episode: &str) -> Option<&ValidationRecord> {
        let at = self.records.binary_search_by(|r| (r.host_id.as_str(), r.episode_id.as_str()).cmp(&(host, episode)));
        at.ok().map(|i| &self.records[i])
    }
}
