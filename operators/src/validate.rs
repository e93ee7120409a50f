//! Validate: one outcome and a list of reason codes per episode (SPEC section 5).

use crate::channels::{Phase, Source};
use crate::fingerprint::Operator;
use crate::index::IndexEntry;
use crate::model::{AlignedEpisode, Failure, MemberState};
use serde::{Deserialize, Serialize};

/// Thresholds of the row gate and the bad-row rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateConfig {
    /// A source passes the row gate with at least this fraction of its nominal
    /// rows over `t_end`.
    pub row_gate_fraction: f64,
    /// Over this fraction of unparseable telemetry lines rejects the episode.
    pub max_bad_row_fraction: f64,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig { row_gate_fraction: 0.5, max_bad_row_fraction: 0.1 }
    }
}

/// The four outcomes, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Usable as it is.
    Accepted,
    /// Usable, with defects worth knowing (`source_missing:*`, `bad_rows`, ...).
    Degraded,
    /// Readable but unusable (`sha256_mismatch`, `missing_labels`, ...).
    Rejected,
    /// The archive could not be read.
    Errored,
}

impl Outcome {
    /// All outcomes, best first.
    pub const ALL: [Outcome; 4] = [Outcome::Accepted, Outcome::Degraded, Outcome::Rejected, Outcome::Errored];

    /// Name as written in `validation.parquet`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Degraded => "degraded",
            Outcome::Rejected => "rejected",
            Outcome::Errored => "errored",
        }
    }

    /// Whether features are written for the episode.
    pub fn is_usable(self) -> bool {
        matches!(self, Outcome::Accepted | Outcome::Degraded)
    }
}

/// One row of the acceptance index.
#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct ValidationRecord {
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id on that host.
    pub episode_id: String,
    /// sha256 of the archive's bytes, when it could be read.
    pub sha256: Option<String>,
    /// Size of the archive file, when it could be read.
    pub archive_bytes: Option<u64>,
    /// Accepted, degraded, rejected or errored.
    pub outcome: Outcome,
    /// The reason codes (SPEC section 5), in the order found.
    pub reasons: Vec<String>,
    /// `meta.profile`, the workload profile.
    pub profile: Option<String>,
    /// `meta.sample.name`.
    pub sample_name: Option<String>,
    /// The episode's length from its labels and telemetry.
    pub duration_s: Option<f64>,
    /// Non-blank lines read per source, in [`Source::ALL`] order.
    pub rows: [Option<u64>; 4],
    /// Telemetry lines that did not parse or lacked `t_wall_ns`.
    pub bad_rows: Option<u64>,
    /// `t_wall_ns` of the first label: the episode's time origin.
    pub t0_wall_ns: Option<i64>,
    /// The first problem found, for logs: names the file, member and line.
    pub detail: Option<String>,
}

impl ValidationRecord {
    /// The record of an archive that could not be read.
    pub fn errored(entry: &IndexEntry, failure: &Failure) -> ValidationRecord {
        ValidationRecord {
            host_id: entry.key.host_id.clone(),
            episode_id: entry.key.episode_id.clone(),
            sha256: failure.sha256.clone(),
            archive_bytes: failure.bytes,
            outcome: Outcome::Errored,
            reasons: vec![failure.code.code().to_string()],
            profile: None,
            sample_name: None,
            duration_s: None,
            rows: [None; 4],
            bad_rows: None,
            t0_wall_ns: None,
            detail: Some(failure.problem.to_string()),
        }
    }
}

/// The validate operator.
#[derive(Clone, Debug, Default)]
pub struct Validate {
    /// The thresholds (SPEC section 5 defaults).
    pub config: ValidateConfig,
}

impl Operator for Validate {
    const NAME: &'static str = "validate";
    const VERSION: u32 = 1;
    type Config = ValidateConfig;
    type Input = AlignedEpisode;
    type Output = ValidationRecord;

    fn config(&self) -> &ValidateConfig {
        &self.config
    }

    fn apply(&self, ep: &AlignedEpisode) -> ValidationRecord {
        let (outcome, reasons) = self.judge(ep);
        let facts = &ep.facts;
        let meta = facts.meta();
        let detail = match &facts.meta {
            MemberState::Invalid(p) => Some(p.to_string()),
            _ => facts.problems.first().map(|p| p.to_string()),
        };
        ValidationRecord {
            host_id: facts.key.host_id.clone(),
            episode_id: facts.key.episode_id.clone(),
            sha256: Some(facts.sha256.clone()),
            archive_bytes: Some(facts.archive_bytes),
            outcome,
            reasons,
            profile: meta.and_then(|m| m.profile.clone()),
            sample_name: meta.and_then(|m| m.sample_name.clone()),
            duration_s: ep.t_end,
            rows: ep.row_counts.map(|c| Some(c.lines)),
            bad_rows: Some(ep.row_counts.iter().map(|c| c.bad_lines).sum()),
            t0_wall_ns: ep.t0_wall_ns,
            detail,
        }
    }
}

impl Validate {
    /// Whether a source has enough rows to count as present (the row gate).
    pub fn passes_row_gate(&self, good_rows: u64, source: Source, t_end: Option<f64>) -> bool {
        match t_end {
            Some(t) if t > 0.0 => good_rows as f64 >= t * source.nominal_hz() * self.config.row_gate_fraction,
            _ => good_rows >= 2,
        }
    }

    /// The outcome and reason codes, in the contract's order: rejecting reasons
    /// first, then degrading ones. All reasons that apply are listed.
    fn judge(&self, ep: &AlignedEpisode) -> (Outcome, Vec<String>) {
        let facts = &ep.facts;
        let mut rejected: Vec<String> = Vec::new();
        let mut degraded: Vec<String> = Vec::new();
        if let Some(expected) = &facts.expected_sha256 {
            if !expected.eq_ignore_ascii_case(&facts.sha256) {
                rejected.push("sha256_mismatch".into());
            }
        }
        match &facts.meta {
            MemberState::Missing => rejected.push("missing_meta".into()),
            MemberState::Invalid(_) => rejected.push("bad_meta".into()),
            MemberState::Present(_) => {}
        }
        match &facts.labels {
            MemberState::Missing => rejected.push("missing_labels".into()),
            MemberState::Invalid(_) => rejected.push("bad_labels".into()),
            MemberState::Present(labels) if labels.is_empty() => rejected.push("no_labels".into()),
            MemberState::Present(labels) => {
                if labels.iter().any(|l| Phase::parse(&l.phase).is_none()) {
                    rejected.push("unknown_phase".into());
                }
                if labels.windows(2).any(|w| w[1].t_wall_ns < w[0].t_wall_ns) {
                    rejected.push("labels_not_monotonic".into());
                }
            }
        }
        let lines: u64 = ep.row_counts.iter().map(|c| c.lines).sum();
        let bad: u64 = ep.row_counts.iter().map(|c| c.bad_lines).sum();
        if lines > 0 && bad as f64 > lines as f64 * self.config.max_bad_row_fraction {
            rejected.push("too_many_bad_rows".into());
        } else if bad > 0 {
            degraded.push("bad_rows".into());
        }
        let passing: Vec<bool> = Source::ALL
            .iter()
            .map(|s| self.passes_row_gate(ep.row_counts[s.index()].good_rows, *s, ep.t_end))
            .collect();
        if passing.iter().all(|p| !p) {
            rejected.push("no_telemetry".into());
        } else {
            for s in Source::ALL.iter().filter(|s| !passing[s.index()]) {
                degraded.push(format!("source_missing:{}", s.name()));
            }
        }
        if let Some(meta) = facts.meta() {
            for s in Source::ALL {
                if let Some(claimed) = meta.rows[s.index()] {
                    if claimed != ep.row_counts[s.index()].lines {
                        degraded.push(format!("row_count_mismatch:{}", s.name()));
                    }
                }
            }
        }
        if !facts.layout.done_marker {
            degraded.push("no_done_marker".into());
        }
        if facts.layout.prefix_mismatch {
            degraded.push("member_prefix_mismatch".into());
        }
        let outcome = if !rejected.is_empty() {
            Outcome::Rejected
        } else if !degraded.is_empty() {
            Outcome::Degraded
        } else {
            Outcome::Accepted
        };
        rejected.extend(degraded);
        (outcome, rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Operator;
    use crate::model::{EpisodeFacts, EpisodeKey, Label, Layout, Meta, RowCounts};

    fn base() -> AlignedEpisode {
        AlignedEpisode {
            facts: EpisodeFacts {
                key: EpisodeKey { host_id: "h".into(), episode_id: "e".into() },
                archive_bytes: 10,
                sha256: "ab".into(),
                expected_sha256: Some("AB".into()),
                layout: Layout { done_marker: true, ..Default::default() },
                meta: MemberState::Present(Meta { rows: [Some(100), None, None, None], ..Default::default() }),
                labels: MemberState::Present(vec![
                    Label { phase: "clean".into(), t_wall_ns: 0 },
                    Label { phase: "dormant".into(), t_wall_ns: 5 },
                ]),
                events: None,
                problems: vec![],
                problem_count: 0,
            },
            row_counts: [
                RowCounts { present: true, lines: 100, bad_lines: 0, good_rows: 100 },
                RowCounts { present: true, lines: 100, bad_lines: 0, good_rows: 100 },
                RowCounts { present: true, lines: 10, bad_lines: 0, good_rows: 10 },
                RowCounts { present: true, lines: 100, bad_lines: 0, good_rows: 100 },
            ],
            t0_wall_ns: Some(0),
            t_end: Some(10.0),
            phases: vec![],
            sources: Default::default(),
            channels: vec![],
        }
    }

    fn judge(ep: AlignedEpisode) -> (Outcome, Vec<String>) {
        let r = Validate::default().apply(&ep);
        (r.outcome, r.reasons)
    }

    #[test]
    fn a_clean_episode_is_accepted() {
        assert_eq!(judge(base()), (Outcome::Accepted, vec![]));
    }

    #[test]
    fn row_gate_is_half_the_nominal_rows() {
        let mut ep = base();
        ep.row_counts[1].good_rows = 49; // 10 s * 10 Hz / 2 = 50
        ep.row_counts[2].good_rows = 5; // 10 s * 1 Hz / 2 = 5: passes
        assert_eq!(judge(ep), (Outcome::Degraded, vec!["source_missing:guest".to_string()]));
        let mut ep = base();
        ep.t_end = None;
        for c in ep.row_counts.iter_mut() {
            c.good_rows = 1;
        }
        assert_eq!(judge(ep).1, vec!["no_telemetry"]);
    }

    #[test]
    fn bad_rows_degrade_up_to_ten_percent_and_reject_above() {
        let mut ep = base();
        ep.row_counts[0].bad_lines = 31; // 31 of 310 lines = 10%
        assert_eq!(judge(ep), (Outcome::Degraded, vec!["bad_rows".to_string()]));
        let mut ep = base();
        ep.row_counts[0].bad_lines = 32;
        assert_eq!(judge(ep), (Outcome::Rejected, vec!["too_many_bad_rows".to_string()]));
    }

    #[test]
    fn every_degrading_reason_in_contract_order() {
        let mut ep = base();
        ep.facts.layout = Layout { done_marker: false, prefix_mismatch: true, ..Default::default() };
        ep.row_counts[0].lines = 99;
        ep.row_counts[3].good_rows = 0;
        let (o, r) = judge(ep);
        assert_eq!(o, Outcome::Degraded);
        assert_eq!(
            r,
            vec!["source_missing:netflow", "row_count_mismatch:proc", "no_done_marker", "member_prefix_mismatch"]
        );
    }

    #[test]
    fn rejecting_reasons() {
        let mut ep = base();
        ep.facts.expected_sha256 = Some("cd".into());
        ep.facts.labels = MemberState::Present(vec![
            Label { phase: "clean".into(), t_wall_ns: 5 },
            Label { phase: "pwned".into(), t_wall_ns: 1 },
        ]);
        ep.facts.meta = MemberState::Missing;
        assert_eq!(
            judge(ep),
            (
                Outcome::Rejected,
                vec!["sha256_mismatch", "missing_meta", "unknown_phase", "labels_not_monotonic"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        let mut ep = base();
        ep.facts.labels = MemberState::Present(vec![]);
        assert_eq!(judge(ep).1, vec!["no_labels"]);
        let mut ep = base();
        ep.facts.labels = MemberState::Missing;
        assert_eq!(judge(ep).1, vec!["missing_labels"]);
    }
}
