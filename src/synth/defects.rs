//! Defects the synthetic store plants, at rates close to the real corpus, and the
//! outcome and reasons each one must produce. `truth.jsonl` records them so tests
//! can check that every planted defect is found and nothing else is.

use serde::Serialize;

/// A planted defect. At most one validation defect and at most one quality
/// defect per episode, so the expected reasons are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Defect {
    // degraded
    /// The guest agent wrote nothing (`source_missing:guest`).
    DeadGuestAgent,
    /// The bridge capture wrote nothing (`source_missing:netflow`).
    NoNetflowCapture,
    /// `meta.rows_*` disagrees with the lines written.
    RowCountMismatch,
    /// A few unparseable telemetry lines (`bad_rows`).
    FewBadRows,
    /// No `done` marker in the archive.
    NoDoneMarker,
    /// Members under an unexpected prefix.
    PrefixMismatch,
    // rejected
    /// The index claims another sha256.
    ShaMismatch,
    /// A label's time goes back.
    NonMonotonicLabels,
    /// No `labels.jsonl`.
    MissingLabels,
    /// An empty `labels.jsonl`.
    EmptyLabels,
    /// A phase name outside the vocabulary.
    UnknownPhase,
    /// Over 10% of telemetry lines unparseable.
    TooManyBadRows,
    /// A `meta.json` that does not parse.
    BadMeta,
    /// No `meta.json`.
    MissingMeta,
    /// No source passes the row gate.
    NoTelemetry,
    // errored
    /// The archive cut short (`corrupt_archive`).
    TruncatedArchive,
    // quality
    /// No sample in the meta (`no-sample`).
    NoSample,
    /// No workload event (`no-workload-events`).
    NoWorkloadEvents,
    /// A `workload_failed` event.
    WorkloadFailed,
    /// Killed with a probe of 0 and no signal (`workload-silent`).
    WorkloadSilent,
    /// A workload with no inter-phase signal (`flat-cpu`).
    FlatWorkload,
}

/// Validation defects with their per-episode probability. Degraded ones sum to
/// 10.6%, rejected ones to 4.8%, errored to 0.01% (the real corpus's mix).
pub const VALIDATION_RATES: [(Defect, f64); 16] = [
    (Defect::DeadGuestAgent, 0.040),
    (Defect::NoNetflowCapture, 0.006),
    (Defect::RowCountMismatch, 0.020),
    (Defect::FewBadRows, 0.022),
    (Defect::NoDoneMarker, 0.012),
    (Defect::PrefixMismatch, 0.006),
    (Defect::ShaMismatch, 0.008),
    (Defect::NonMonotonicLabels, 0.008),
    (Defect::MissingLabels, 0.005),
    (Defect::EmptyLabels, 0.002),
    (Defect::UnknownPhase, 0.004),
    (Defect::TooManyBadRows, 0.008),
    (Defect::BadMeta, 0.004),
    (Defect::MissingMeta, 0.003),
    (Defect::NoTelemetry, 0.006),
    (Defect::TruncatedArchive, 0.0001),
];

/// Quality defects with their per-episode probability.
pub const QUALITY_RATES: [(Defect, f64); 5] = [
    (Defect::NoSample, 0.010),
    (Defect::NoWorkloadEvents, 0.006),
    (Defect::WorkloadFailed, 0.008),
    (Defect::WorkloadSilent, 0.008),
    (Defect::FlatWorkload, 0.006),
];

/// Picks at most one defect from a rate table with one uniform draw.
pub fn draw(table: &[(Defect, f64)], u: f64) -> Option<Defect> {
    let mut acc = 0.0;
    for (d, p) in table {
        acc += p;
        if u < acc {
            return Some(*d);
        }
    }
    None
}

impl Defect {
    /// The validation outcome and reason this defect produces, if it is one.
    pub fn validation(self) -> Option<(&'static str, &'static str)> {
        use Defect::*;
        Some(match self {
            DeadGuestAgent => ("degraded", "source_missing:guest"),
            NoNetflowCapture => ("degraded", "source_missing:netflow"),
            RowCountMismatch => ("degraded", "row_count_mismatch:proc"),
            FewBadRows => ("degraded", "bad_rows"),
            NoDoneMarker => ("degraded", "no_done_marker"),
            PrefixMismatch => ("degraded", "member_prefix_mismatch"),
            ShaMismatch => ("rejected", "sha256_mismatch"),
            NonMonotonicLabels => ("rejected", "labels_not_monotonic"),
            MissingLabels => ("rejected", "missing_labels"),
            EmptyLabels => ("rejected", "no_labels"),
            UnknownPhase => ("rejected", "unknown_phase"),
            TooManyBadRows => ("rejected", "too_many_bad_rows"),
            BadMeta => ("rejected", "bad_meta"),
            MissingMeta => ("rejected", "missing_meta"),
            NoTelemetry => ("rejected", "no_telemetry"),
            TruncatedArchive => ("errored", "corrupt_archive"),
            _ => return None,
        })
    }

    /// Whether the workload never ran, so every source is flat across phases.
    pub fn is_flat(self) -> bool {
        matches!(self, Defect::WorkloadFailed | Defect::WorkloadSilent | Defect::FlatWorkload)
    }
}

/// The quality reasons (SPEC section 6) an episode with these defects must get,
/// in the contract's order; `None` when it is not classified (errored).
pub fn expected_quality(validation: Option<Defect>, quality: Option<Defect>) -> Option<Vec<&'static str>> {
    use Defect::*;
    if validation == Some(TruncatedArchive) {
        return None;
    }
    let no_meta = matches!(validation, Some(MissingMeta | BadMeta));
    // Without phases or telemetry no source can be judged, so nothing is flat.
    let judgeable = !matches!(validation, Some(MissingLabels | EmptyLabels | NoTelemetry));
    let mut reasons = Vec::new();
    if no_meta || quality == Some(NoSample) {
        reasons.push("no-sample");
    }
    if quality == Some(NoWorkloadEvents) {
        reasons.push("no-workload-events");
    }
    if quality == Some(WorkloadFailed) {
        reasons.push("workload-failed");
    }
    if quality == Some(WorkloadSilent) && judgeable {
        reasons.push("workload-silent");
    }
    if quality.is_some_and(Defect::is_flat) && judgeable {
        reasons.push("flat-cpu");
    }
    Some(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_match_the_corpus_mix() {
        let sum = |o: &str| -> f64 {
            VALIDATION_RATES.iter().filter(|(d, _)| d.validation().unwrap().0 == o).map(|(_, p)| p).sum()
        };
        assert!((sum("degraded") - 0.106).abs() < 1e-9);
        assert!((sum("rejected") - 0.048).abs() < 1e-9);
        assert!((sum("errored") - 0.0001).abs() < 1e-12);
    }

    #[test]
    fn expected_quality_follows_the_rules() {
        assert_eq!(expected_quality(None, None), Some(vec![]));
        assert_eq!(expected_quality(None, Some(Defect::WorkloadSilent)), Some(vec!["workload-silent", "flat-cpu"]));
        assert_eq!(expected_quality(Some(Defect::MissingLabels), Some(Defect::FlatWorkload)), Some(vec![]));
        assert_eq!(expected_quality(Some(Defect::BadMeta), None), Some(vec!["no-sample"]));
        assert_eq!(expected_quality(Some(Defect::TruncatedArchive), None), None);
    }
}
