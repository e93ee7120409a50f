//! A split's evaluation report: what `report.json` holds (the figures the
//! evaluation sink computes, [`crate::eval`]) and `report.md`, the same as a
//! person reads it — models × macro F1 with intervals (realistic and oracle
//! side by side), the breakdowns, the significant gaps and the confusion
//! matrices, linking the charts.

use crate::arch::Arch;
use crate::bootstrap::{Gap, Interval};
use crate::scoring::Calibration;
use epiflow_operators::channels::{ChannelSet, Phase};
use epiflow_operators::split::Recipe;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The report's file names in `OUT/eval/<recipe>/`.
pub const MARKDOWN: &str = "report.md";
/// The report as data (`report.json`).
pub const JSON: &str = "report.json";

/// The section headings, in order (a test checks every one is written).
pub const SECTIONS: [&str; 8] = [
    "## Models",
    "## F1 per phase",
    "## Macro F1 per profile",
    "## Macro F1 per host",
    "## Significant gaps",
    "## Calibration",
    "## Confusion matrices",
    "## Skipped checkpoints",
];

/// A split's evaluation, as `report.json` holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The split.
    pub recipe: Recipe,
    /// The report's layout version: an older report is redone.
    pub version: u32,
    /// Fingerprint of everything the figures depend on.
    pub inputs: String,
    /// Bootstrap resamples behind every interval.
    pub resamples: usize,
    /// Resamples behind the pairwise p-values and gap intervals: the first
    /// `resamples` of them and more ([`crate::eval::pair_resamples`]); absent from a
    /// report written before they were extended (read as 0).
    #[serde(default)]
    pub pair_resamples: usize,
    /// Seed of the resamples.
    pub seed: u64,
    /// The intervals' confidence (0.95).
    pub confidence: f64,
    /// What the test side holds.
    pub test: TestSummary,
    /// Profiles in training that the test side lacks: listed, never scored.
    pub untested_profiles: Vec<String>,
    /// In report order: architecture, then channel set.
    pub models: Vec<ModelScore>,
    /// Every two models, `a` before `b` in report order.
    pub pairs: Vec<PairScore>,
    /// Checkpoints that could not be evaluated, and why.
    pub skipped: Vec<Skipped>,
    /// The macro-F1 chart, relative to the report.
    pub macro_f1_png: String,
}

impl Report {
    /// Each architecture with a scored model, in report order, with its
    /// realistic and oracle models (`None`: not scored): the rows of every
    /// table and chart that puts the two channel sets side by side.
    pub fn side_by_side(&self) -> Vec<(Arch, [Option<&ModelScore>; 2])> {
        Arch::ALL
            .into_iter()
            .filter(|&arch| self.models.iter().any(|m| m.arch == arch))
            .map(|arch| {
                (arch, ChannelSet::ALL.map(|set| self.models.iter().find(|m| m.arch == arch && m.channels == set)))
            })
            .collect()
    }
}

/// What the test side holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestSummary {
    /// Test episodes with at least one window: the bootstrap's units.
    pub episodes: usize,
    /// Test windows.
    pub windows: u64,
    /// Scored episodes per host and per profile.
    pub hosts: BTreeMap<String, usize>,
    /// Scored episodes per profile.
    pub profiles: BTreeMap<String, usize>,
}

/// One model's figures on the test side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelScore {
    /// `<arch>-<channels>`.
    pub model: String,
    /// The architecture.
    pub arch: Arch,
    /// The channel set.
    pub channels: ChannelSet,
    /// sha256 of the weights scored: the report is redone when they change.
    pub weights_sha256: String,
    /// Macro F1 on the split's validation side (in distribution: the
    /// training hosts, samples and times), from the checkpoint's card; the
    /// test figure beside it shows how much of it carries over.
    pub val_macro_f1: f64,
    /// Test macro F1 over the phases.
    pub macro_f1: f64,
    /// Its bootstrap interval over test episodes.
    pub ci: Option<Interval>,
    /// F1 of each phase present in the test side's truth.
    pub per_class_f1: BTreeMap<String, f64>,
    /// Macro F1 per profile of the test side.
    pub per_profile: BTreeMap<String, Breakdown>,
    /// Macro F1 per host of the test side.
    pub per_host: BTreeMap<String, Breakdown>,
    /// The confusion matrix on the test side.
    pub confusion: ConfusionTable,
    /// The confusion matrix drawn, relative to the report.
    pub confusion_png: String,
    /// How well its probabilities match how often it is right, window by
    /// window on the test side.
    pub calibration: Calibration,
    /// The reliability chart, relative to the report.
    pub reliability_png: String,
}

impl ModelScore {
    /// Macro F1 and its interval as a table shows them: `0.951 [0.921, 0.975]`.
    pub fn with_interval(&self) -> String {
        match self.ci {
            Some(ci) => format!("{:.3} [{:.3}, {:.3}]", self.macro_f1, ci.low, ci.high),
            None => format!("{:.3}", self.macro_f1),
        }
    }
}

/// Macro F1 over a subset of the test episodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Macro F1 over the subset's windows.
    pub macro_f1: f64,
    /// Episodes in the subset.
    pub episodes: usize,
    /// Windows in the subset.
    pub windows: u64,
}

/// A confusion matrix over the phases seen in the truth or the predictions:
/// `counts[truth][predicted]`, in `labels` order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfusionTable {
    /// The phases, in row and column order.
    pub labels: Vec<String>,
    /// `counts[truth][predicted]`.
    pub counts: Vec<Vec<u64>>,
}

/// The gap between two models of the split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairScore {
    /// The first model, in report order.
    pub a: String,
    /// The second model.
    pub b: String,
    #[serde(flatten)]
    /// The gap `a − b`, its interval and p-values.
    pub gap: Gap,
}

/// A checkpoint left out of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// `<arch>-<channels>`.
    pub model: String,
    /// Why it was left out.
    pub reason: String,
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let percent = report.confidence * 100.0;
    let list = |counts: &BTreeMap<String, usize>| {
        counts.iter().map(|(name, n)| format!("{name} ({n})")).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(md, "# Evaluation: the `{}` split\n", report.recipe);
    let _ = writeln!(
        md,
        "Test side: {} episodes, {} windows. Hosts: {}. Profiles: {}.\n",
        report.test.episodes,
        report.test.windows,
        list(&report.test.hosts),
        list(&report.test.profiles)
    );
    let untested =
        if report.untested_profiles.is_empty() { "none".to_string() } else { report.untested_profiles.join(", ") };
    let _ = writeln!(md, "Untested profiles (in training, absent from the test side; never scored): {untested}.\n");
    let _ = writeln!(
        md,
        "Every figure is on the test side. Macro F1 is the mean F1 of the phases present in the truth; \
         [low, high] is its {percent:.0}% bootstrap interval over {} resamples of test episodes \
         (whole episodes, not windows; seed {}).\n",
        report.resamples, report.seed
    );
    models(&mut md, report);
    per_phase(&mut md, report);
    breakdowns(&mut md, SECTIONS[2], "profile", report, |m| &m.per_profile);
    breakdowns(&mut md, SECTIONS[3], "host", report, |m| &m.per_host);
    gaps(&mut md, report);
    calibration(&mut md, report);
    confusions(&mut md, report);
    let _ = writeln!(md, "{}\n", SECTIONS[7]);
    if report.skipped.is_empty() {
        let _ = writeln!(md, "None.");
    }
    for s in &report.skipped {
        let _ = writeln!(md, "- `{}`: {}", s.model, s.reason);
    }
    md
}

fn models(md: &mut String, report: &Report) {
    let _ = writeln!(md, "{}\n\n| arch | realistic | oracle |\n|---|---|---|", SECTIONS[0]);
    for (arch, sets) in report.side_by_side() {
        let [realistic, oracle] = sets.map(|m| m.map_or("–".to_string(), ModelScore::with_interval));
        let _ = writeln!(md, "| {arch} | {realistic} | {oracle} |");
    }
    let _ = writeln!(md, "\n![Test macro F1 per architecture]({})\n", report.macro_f1_png);
}

fn per_phase(md: &mut String, report: &Report) {
    let phases: Vec<&str> = Phase::ALL
        .iter()
        .map(|p| p.name())
        .filter(|p| report.models.iter().any(|m| m.per_class_f1.contains_key(*p)))
        .collect();
    let _ = writeln!(md, "{}\n", SECTIONS[1]);
    table(
        md,
        "model",
        phases.iter().copied(),
        report.models.iter().map(|m| {
            (m.model.as_str(), phases.iter().map(|p| m.per_class_f1.get(*p).map(|f| format!("{f:.3}"))).collect())
        }),
    );
}

fn breakdowns(
    md: &mut String,
    heading: &str,
    what: &str,
    report: &Report,
    of: impl Fn(&ModelScore) -> &BTreeMap<String, Breakdown>,
) {
    let names: BTreeSet<&String> = report.models.iter().flat_map(|m| of(m).keys()).collect();
    let _ = writeln!(md, "{heading}\n");
    let episodes: Vec<Option<String>> = names
        .iter()
        .map(|n| report.models.first().and_then(|m| of(m).get(*n)).map(|b| b.episodes.to_string()))
        .collect();
    let rows = std::iter::once(("episodes", episodes)).chain(report.models.iter().map(|m| {
        (m.model.as_str(), names.iter().map(|n| of(m).get(*n).map(|b| format!("{:.3}", b.macro_f1))).collect())
    }));
    table(md, what, names.iter().map(|n| n.as_str()), rows);
}

fn gaps(md: &mut String, report: &Report) {
    let significant: Vec<_> = report.pairs.iter().filter(|p| p.gap.significant).collect();
    let _ = writeln!(
        md,
        "{}\n\n{} of {} pairs differ with Holm-adjusted p < {:.2}: paired bootstrap on the same {} resamples{}, \
         each p-value adjusted for the {} comparisons by Holm's step-down method (raw and adjusted for every \
         pair are in `report.json`).\n",
        SECTIONS[4],
        significant.len(),
        report.pairs.len(),
        crate::bootstrap::SIGNIFICANCE,
        report.pair_resamples,
        extended(report),
        report.pairs.len()
    );
    if !significant.is_empty() {
        let _ = writeln!(md, "| a | b | gap a − b | interval | p | p (Holm) |\n|---|---|---|---|---|---|");
    }
    for p in significant {
        let ci = p.gap.ci.map_or("–".to_string(), |ci| format!("[{:+.3}, {:+.3}]", ci.low, ci.high));
        let (raw, adjusted) = (p.gap.p_value, p.gap.p_adjusted);
        let _ = writeln!(md, "| {} | {} | {:+.3} | {ci} | {raw:.4} | {adjusted:.4} |", p.a, p.b, p.gap.gap);
    }
    md.push('\n');
}

/// Why the pairs have more resamples than the intervals, when they do.
fn extended(report: &Report) -> String {
    match report.pair_resamples.checked_sub(report.resamples) {
        Some(more) if more > 0 => format!(
            " (the intervals' {} and {more} more, so that the smallest p-value a gap can have, {:.5}, \
             survives the adjustment)",
            report.resamples,
            crate::bootstrap::smallest_p(report.pair_resamples)
        ),
        _ => String::new(),
    }
}

fn calibration(md: &mut String, report: &Report) {
    let _ = writeln!(
        md,
        "{}\n\nExpected calibration error over {} equal-width bins of the top probability, window by window \
         (0: a probability of 0.9 is right nine times in ten; 1: always sure and always wrong), and each \
         model's reliability chart.\n\n| model | ECE | windows |\n|---|---|---|",
        SECTIONS[5],
        crate::scoring::CALIBRATION_BINS
    );
    for m in &report.models {
        let windows: u64 = m.calibration.bins.iter().map(|b| b.windows).sum();
        let _ = writeln!(md, "| [{}]({}) | {:.3} | {windows} |", m.model, m.reliability_png, m.calibration.ece);
    }
    md.push('\n');
}

fn confusions(md: &mut String, report: &Report) {
    let _ = writeln!(md, "{}\n\nRows are the truth, columns the prediction.\n", SECTIONS[6]);
    for m in &report.models {
        let _ = writeln!(md, "### {}\n\n![{} confusion matrix]({})\n", m.model, m.model, m.confusion_png);
        let c = &m.confusion;
        let rows = c
            .labels
            .iter()
            .zip(&c.counts)
            .map(|(l, row)| (l.as_str(), row.iter().map(|n| Some(n.to_string())).collect()));
        table(md, "truth \\ predicted", c.labels.iter().map(|l| l.as_str()), rows);
    }
}

/// A Markdown table: a first column, then one column per `columns`; a
/// missing cell shows as `–`.
fn table<'a>(
    md: &mut String,
    first: &str,
    columns: impl Iterator<Item = &'a str>,
    rows: impl Iterator<Item = (&'a str, Vec<Option<String>>)>,
) {
    let columns: Vec<&str> = columns.collect();
    let _ = writeln!(md, "| {first} | {} |", columns.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(columns.len()));
    for (name, cells) in rows {
        let cells: Vec<String> = cells.into_iter().map(|c| c.unwrap_or_else(|| "–".into())).collect();
        let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
    }
    md.push('\n');
}
