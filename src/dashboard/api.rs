//! What the dashboard's JSON routes answer (SPEC section 15), as plain
//! functions the server calls: the episode list with its filters, and one
//! episode's windows extracted on demand from its archive.
//!
//! An episode named in a request is looked up in the index and its archive
//! path built from the index's own (checked) key, never from the request's
//! text: `../`, encoded slashes or absolute paths simply name no episode.

use super::corpus::Corpus;
use epiflow_operators::archive::archive_path;
use epiflow_operators::channels::CHANNELS;
use epiflow_operators::classify::QualityRecord;
use epiflow_operators::model::AlignedEpisode;
use epiflow_operators::tensor::Tensor;
use epiflow_operators::validate::ValidationRecord;
use epiflow_operators::window::{Window, STATS};
use epiflow_operators::Operator;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// `GET /api/episodes` filters; each one given must match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeFilter {
    /// Only this lab host's episodes.
    pub host: Option<String>,
    /// Only this profile's.
    pub profile: Option<String>,
    /// Only those with this outcome.
    pub outcome: Option<String>,
}

/// One episode in the list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpisodeRow {
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id on that host.
    pub episode_id: String,
    /// Its validation outcome.
    pub outcome: String,
    /// Its workload profile.
    pub profile: Option<String>,
    /// `None` for an episode that was not classified (unreadable archive).
    pub fake: Option<bool>,
    /// Feature windows published for it.
    pub windows: usize,
}

/// The episodes `filter` selects, in key order.
pub fn episodes(
    records: &[ValidationRecord],
    quality: &[QualityRecord],
    windows: &BTreeMap<String, usize>,
    filter: &EpisodeFilter,
) -> Vec<EpisodeRow> {
    let fake: HashMap<(&str, &str), bool> =
        quality.iter().map(|q| ((q.host_id.as_str(), q.episode_id.as_str()), q.fake)).collect();
    let wanted = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    records
        .iter()
        .filter(|r| wanted(&filter.host, Some(&r.host_id)))
        .filter(|r| wanted(&filter.profile, r.profile.as_deref()))
        .filter(|r| wanted(&filter.outcome, Some(r.outcome.name())))
        .map(|r| EpisodeRow {
            host_id: r.host_id.clone(),
            episode_id: r.episode_id.clone(),
            outcome: r.outcome.name().to_string(),
            profile: r.profile.clone(),
            fake: fake.get(&(r.host_id.as_str(), r.episode_id.as_str())).copied(),
            windows: windows.get(&format!("{}/{}", r.host_id, r.episode_id)).copied().unwrap_or(0),
        })
        .collect()
}

/// The archive of the indexed episode `host`/`episode` (with its record),
/// `None` when the published index has no such episode.
pub fn archive_of<'c>(
    corpus: &'c Corpus,
    episodes_root: &Path,
    host: &str,
    episode: &str,
) -> Option<(PathBuf, &'c ValidationRecord)> {
    let record = corpus.record(host, episode)?;
    Some((archive_path(episodes_root, &record.host_id, &record.episode_id), record))
}

/// One window as `GET /api/episodes/<host>/<episode>/windows` gives it: the
/// shards' summary values (`<channel>:<stat>` → value, null for NaN) and
/// tensor cells (`x` and `mask`, channel-major over the 46 channels).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowJson {
    /// Seconds since the episode's first label.
    pub window_start_s: f64,
    /// The phase at the window's centre.
    pub label: String,
    /// `<channel>:<stat>` → value (null for NaN), as the summary shards hold it.
    pub summary: BTreeMap<String, Option<f32>>,
    /// The tensor, channel-major, as the tensor shards hold it.
    pub x: Vec<f32>,
    /// Whether each tensor cell held a point.
    pub mask: Vec<bool>,
}

/// An episode's windows, extracted from its aligned telemetry with the
/// batch pipeline's operators.
pub fn windows(aligned: &AlignedEpisode, window: &Window, tensor: &Tensor) -> Vec<WindowJson> {
    let summary = window.apply(aligned);
    let tensors = tensor.apply(aligned);
    let width = CHANNELS.len() * STATS.len();
    let names: Vec<String> = CHANNELS.iter().flat_map(|c| STATS.map(|s| format!("{}:{s}", c.name))).collect();
    let cells = tensors.width();
    let rows = summary.windows.starts.iter().zip(&summary.windows.labels).zip(summary.values.chunks_exact(width));
    rows.enumerate()
        .map(|(w, ((&start, label), values))| WindowJson {
            window_start_s: start,
            label: label.name().to_string(),
            summary: names.iter().cloned().zip(values.iter().map(|v| (!v.is_nan()).then_some(*v))).collect(),
            x: tensors.x[w * cells..(w + 1) * cells].to_vec(),
            mask: tensors.mask[w * cells..(w + 1) * cells].to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::index::IndexEntry;
    use epiflow_operators::validate::Outcome;

    fn record(host: &str, id: &str, profile: &str, outcome: Outcome) -> ValidationRecord {
        let entry = IndexEntry {
            key: epiflow_operators::model::EpisodeKey { host_id: host.into(), episode_id: id.into() },
            sha256: None,
            bytes: None,
            received_at_ns: None,
            line: 1,
        };
        let failure = epiflow_operators::model::Failure {
            code: epiflow_operators::model::FailureCode::CorruptArchive,
            problem: epiflow_operators::model::Problem::at("x", None, "y"),
            bytes: None,
            sha256: None,
        };
        ValidationRecord { outcome, profile: Some(profile.into()), ..ValidationRecord::errored(&entry, &failure) }
    }

    #[test]
    fn filters_select_by_host_profile_and_outcome() {
        let records = [
            record("h1", "a", "io-walk", Outcome::Accepted),
            record("h1", "b", "scan", Outcome::Rejected),
            record("h2", "c", "io-walk", Outcome::Accepted),
        ];
        let windows: BTreeMap<String, usize> = [("h1/a".to_string(), 7)].into();
        let all = episodes(&records, &[], &windows, &EpisodeFilter::default());
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].windows, all[0].fake), (7, None));
        let filter = EpisodeFilter { profile: Some("io-walk".into()), outcome: Some("accepted".into()), host: None };
        let keys: Vec<_> = episodes(&records, &[], &windows, &filter).into_iter().map(|r| r.episode_id).collect();
        assert_eq!(keys, ["a", "c"]);
        let nobody = EpisodeFilter { host: Some("h3".into()), ..EpisodeFilter::default() };
        assert!(episodes(&records, &[], &windows, &nobody).is_empty());
    }

    #[test]
    fn only_an_indexed_key_names_an_archive() {
        let records = vec![record("h1", "e0", "p", Outcome::Accepted), record("h1", "e1", "p", Outcome::Accepted)];
        let corpus = Corpus { records, ..Corpus::default() };
        let root = Path::new("/store/episodes");
        let (path, found) = archive_of(&corpus, root, "h1", "e1").unwrap();
        assert_eq!((path, found.episode_id.as_str()), (PathBuf::from("/store/episodes/h1/e1.tar.zst"), "e1"));
        for (host, episode) in
            [("h1", "../e1"), ("..", "h1/e1"), ("h1", "e1%2F..%2F..%2Fetc"), ("/etc", "passwd"), ("h1", "e2")]
        {
            assert!(archive_of(&corpus, root, host, episode).is_none(), "{host}/{episode}");
        }
    }
}
