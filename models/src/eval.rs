//! The evaluation sink (SPEC section 14): every current checkpoint of a
//! split scored on the split's test side — macro F1 with a bootstrap
//! interval over test episodes, F1 per phase, macro F1 per profile and per
//! host, the confusion matrix, and a paired comparison of every two models
//! on the same resamples — written to `OUT/eval/<recipe>/` as
//! `report.json`, `report.md` and PNG charts.
//!
//! A report is redone only when its inputs change: the evaluation settings,
//! the split, or a model's weights.

use crate::arch::Arch;
use crate::bootstrap::{adjust, interval, paired_gap, resamples_to_resolve, Resamples, CONFIDENCE};
use crate::charts;
use crate::checkpoint::{self, Checkpoint};
use crate::dirs::Dirs;
use crate::report::{self, Breakdown, ConfusionTable, ModelScore, PairScore, Report, Skipped, TestSummary};
use crate::scoring::{argmax, Calibration, Confusion};
use crate::sink::{by_windows, split_fingerprint, Status};
use epiflow_operators::channels::{ChannelSet, Phase};
use epiflow_operators::fingerprint::Fingerprint;
use epiflow_operators::split::{Assignment, Recipe, Side};
use epiflow_pipelines::feature_reader::read_windows;
use epiflow_pipelines::output::write_atomically;
use epiflow_pipelines::sinks::manifest::Manifest;
use epiflow_pipelines::sinks::splits;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bumped when the report's figures or layout change, so that older
/// reports are redone.
const REPORT_VERSION: u32 = 4;

/// How figures are resampled: the `[eval]` configuration section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Bootstrap resamples of the test episodes for every interval (the
    /// pairwise tests extend them; see [`pair_resamples`]).
    pub resamples: usize,
    /// Seed of the resamples: the same seed, the same intervals.
    pub seed: u64,
}

/// Resamples for the pairwise tests among `models` models: the intervals'
/// `resamples`, extended (the same draws first, then more from the same
/// stream) until the smallest p-value a gap can have survives Holm's
/// adjustment over every pair — with 1,000 resamples and 12 models no gap
/// could, however large.
pub fn pair_resamples(resamples: usize, models: usize) -> usize {
    resamples.max(resamples_to_resolve(models * models.saturating_sub(1) / 2))
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { resamples: 1000, seed: 7 }
    }
}

/// What became of one split's evaluation in a run.
#[derive(Clone, Debug, Serialize)]
pub struct EvalRun {
    /// The split.
    pub recipe: Recipe,
    /// Evaluated now, found current, or failed.
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why it failed.
    pub error: Option<String>,
    /// `report.md`, when there is a report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    /// Time spent on it in this run.
    pub wall_s: f64,
    /// The report itself, for the tables a command prints.
    #[serde(skip)]
    pub scores: Option<Report>,
}

/// Evaluates the checkpoints of `recipe` under `dirs.out` on the features
/// and split under `dirs.inputs` (or finds the report current) and writes
/// `OUT/eval/<recipe>/`.
pub fn evaluate(dirs: &Dirs, recipe: Recipe, config: &EvalConfig) -> EvalRun {
    let start = Instant::now();
    let (status, error, scores) = match evaluate_split(dirs, recipe, config) {
        Ok((status, report)) => (status, None, Some(report)),
        Err(why) => (Status::Failed, Some(why), None),
    };
    if let Some(why) = &error {
        tracing::warn!("{recipe} evaluation: {why}");
    }
    EvalRun {
        recipe,
        status,
        error,
        report: scores.as_ref().map(|_| report_dir(&dirs.out, recipe).join(report::MARKDOWN)),
        wall_s: start.elapsed().as_secs_f64(),
        scores,
    }
}

/// `OUT/eval/<recipe>/`.
pub fn report_dir(out: &Path, recipe: Recipe) -> PathBuf {
    out.join("eval").join(recipe.name())
}

fn evaluate_split(dirs: &Dirs, recipe: Recipe, config: &EvalConfig) -> Result<(Status, Report), String> {
    let features = dirs.features();
    let manifest = Manifest::read(&features)
        .ok_or_else(|| format!("no features in {}: run `epiflow run` first", features.display()))?;
    let split_dir = dirs.splits();
    let assignments = splits::read(&split_dir, recipe)?;
    let split = split_fingerprint(recipe, &assignments, &manifest).hex();
    let tested: HashSet<(&str, &str)> = assignments
        .iter()
        .filter(|a| a.side == Side::Test)
        .map(|a| (a.host_id.as_str(), a.episode_id.as_str()))
        .collect();
    let (models, skipped) = load_models(&dirs.out, recipe, &manifest, &tested);
    if models.is_empty() {
        let why = skipped.iter().map(|s| format!("; {}: {}", s.model, s.reason)).collect::<String>();
        return Err(format!(
            "no trained model of the {recipe} split to evaluate (`epiflow train --split {recipe}`){why}"
        ));
    }
    let inputs = inputs_of(config, &split, &models, &skipped);
    let dir = report_dir(&dirs.out, recipe);
    if let Some(report) = current_report(&dir, &inputs) {
        return Ok((Status::Cached, report));
    }
    let test = TestEpisodes::of(&assignments, &manifest);
    let pair_resamples = pair_resamples(config.resamples, models.len());
    let resamples = Resamples::draw(test.keys.len(), pair_resamples, config.seed);
    let mut scored = Vec::new();
    for group in by_windows(&models, |m| (m.card.arch, m.card.channels)) {
        let (kind, set) = (group[0].card.arch.input(), group[0].card.channels);
        let mut windows = read_windows(&features, &manifest, kind, set, &test.sides)
            .map_err(|e| format!("{}: {e}", features.display()))?;
        let Some(side) = windows.sides.remove(&Side::Test) else { continue };
        let rows = side
            .episode
            .iter()
            .map(|&e| test.index.get(&windows.episodes[e as usize]).copied())
            .collect::<Option<Vec<usize>>>()
            .ok_or("the shards gave a test window of an episode the split does not place on the test side")?;
        for model in group {
            let probabilities = model.predict(side.clone())?;
            let predicted = argmax(&probabilities);
            let calibration = Calibration::of(&probabilities, &side.labels);
            let mut per_episode = vec![Confusion::default(); test.keys.len()];
            for ((&e, &truth), &guess) in rows.iter().zip(&side.labels).zip(&predicted) {
                per_episode[e].counts[truth as usize][guess as usize] += 1;
            }
            let resampled = resamples.macro_f1s(&per_episode);
            let for_interval = &resampled[..config.resamples.min(resampled.len())];
            scored.push((score(model, &per_episode, for_interval, &test, calibration), resampled));
        }
    }
    scored.sort_by_key(|(s, _)| (s.arch, s.channels));
    let pairs = pairs(&scored);
    let report = Report {
        recipe,
        version: REPORT_VERSION,
        inputs,
        resamples: config.resamples,
        pair_resamples,
        seed: config.seed,
        confidence: CONFIDENCE,
        test: test.summary(),
        untested_profiles: splits::read_summary(&split_dir, recipe)
            .and_then(|s| serde_json::from_value(s["untested_profiles"].clone()).ok())
            .unwrap_or_default(),
        models: scored.into_iter().map(|(s, _)| s).collect(),
        pairs,
        skipped,
        macro_f1_png: "macro_f1.png".into(),
    };
    write_report(&dir, &report).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
    Ok((Status::Computed, report))
}

/// The checkpoints of `recipe` that can be scored against the current
/// features and split; the others with the reason. A model is refused
/// exactly when an episode it learned from is now among the `tested` ones
/// (host, episode); one trained before later arrivals is scored as it is.
fn load_models(
    out: &Path,
    recipe: Recipe,
    manifest: &Manifest,
    tested: &HashSet<(&str, &str)>,
) -> (Vec<Checkpoint>, Vec<Skipped>) {
    let (mut models, mut skipped) = (Vec::new(), Vec::new());
    for arch in Arch::ALL {
        for set in ChannelSet::ALL {
            let dir = checkpoint::dir_of(out, recipe, arch, set);
            if !dir.join(checkpoint::CARD).is_file() {
                continue;
            }
            let model = checkpoint::model_name(arch, set);
            let leak = |loaded: &Checkpoint| -> Option<String> {
                let fitted = match checkpoint::read_fitted(&dir, &loaded.card) {
                    Ok(fitted) => fitted,
                    Err(why) => return Some(format!("{why}; retrain it (`epiflow train --split {recipe}`)")),
                };
                let leaked = fitted.iter().find(|e| tested.contains(&(e.host_id.as_str(), e.episode_id.as_str())))?;
                Some(format!(
                    "it learned from {}/{}, which the {recipe} split now places on its test side; \
                     retrain it (`epiflow train --split {recipe}`)",
                    leaked.host_id, leaked.episode_id
                ))
            };
            match Checkpoint::load(&dir, manifest) {
                Err(reason) => skipped.push(Skipped { model, reason }),
                Ok(loaded) => match leak(&loaded) {
                    Some(reason) => skipped.push(Skipped { model, reason }),
                    None => models.push(loaded),
                },
            }
        }
    }
    (models, skipped)
}

/// Fingerprint of a report's inputs.
fn inputs_of(config: &EvalConfig, split: &str, models: &[Checkpoint], skipped: &[Skipped]) -> String {
    let settings = serde_json::to_string(config).unwrap_or_default();
    let mut parts: Vec<String> = vec![REPORT_VERSION.to_string(), settings, split.to_string()];
    parts.extend(
        models
            .iter()
            .map(|m| format!("{}|{}", checkpoint::model_name(m.card.arch, m.card.channels), m.card.weights_sha256)),
    );
    parts.extend(skipped.iter().map(|s| format!("{}|{}", s.model, s.reason)));
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    Fingerprint::of_parts(&bytes).hex()
}

/// The report in `dir` when it was made from `inputs` and every file it
/// links is there.
fn current_report(dir: &Path, inputs: &str) -> Option<Report> {
    let report: Report = serde_json::from_slice(&std::fs::read(dir.join(report::JSON)).ok()?).ok()?;
    let complete = dir.join(report::MARKDOWN).is_file()
        && std::iter::once(&report.macro_f1_png)
            .chain(report.models.iter().flat_map(|m| [&m.confusion_png, &m.reliability_png]))
            .all(|f| dir.join(f).is_file());
    (report.inputs == inputs && complete).then_some(report)
}

/// The split's test episodes that have windows, sorted: the units every
/// resample draws.
struct TestEpisodes {
    keys: Vec<(String, String)>,
    index: HashMap<(String, String), usize>,
    profiles: Vec<String>,
    windows: Vec<u64>,
    /// Every scored episode placed on the test side, for the reader.
    sides: HashMap<(String, String), Side>,
}

impl TestEpisodes {
    fn of(assignments: &[Assignment], manifest: &Manifest) -> TestEpisodes {
        let mut placed: Vec<(&Assignment, u64)> = assignments
            .iter()
            .filter(|a| a.side == Side::Test)
            .filter_map(|a| {
                let windows = manifest.episodes.get(&format!("{}/{}", a.host_id, a.episode_id))?.windows as u64;
                (windows > 0).then_some((a, windows))
            })
            .collect();
        placed.sort_by(|(a, _), (b, _)| (&a.host_id, &a.episode_id).cmp(&(&b.host_id, &b.episode_id)));
        let keys: Vec<(String, String)> =
            placed.iter().map(|(a, _)| (a.host_id.clone(), a.episode_id.clone())).collect();
        TestEpisodes {
            index: keys.iter().enumerate().map(|(i, k)| (k.clone(), i)).collect(),
            sides: keys.iter().map(|k| (k.clone(), Side::Test)).collect(),
            profiles: placed.iter().map(|(a, _)| a.profile.clone()).collect(),
            windows: placed.iter().map(|&(_, w)| w).collect(),
            keys,
        }
    }

    fn summary(&self) -> TestSummary {
        let count = |names: Vec<&String>| {
            let mut counts = BTreeMap::new();
            for name in names {
                *counts.entry(name.clone()).or_insert(0) += 1;
            }
            counts
        };
        TestSummary {
            episodes: self.keys.len(),
            windows: self.windows.iter().sum(),
            hosts: count(self.keys.iter().map(|(h, _)| h).collect()),
            profiles: count(self.profiles.iter().collect()),
        }
    }
}

/// One model's figures from its confusion on each test episode.
fn score(
    model: &Checkpoint,
    per_episode: &[Confusion],
    resampled: &[f64],
    test: &TestEpisodes,
    calibration: Calibration,
) -> ModelScore {
    let name = checkpoint::model_name(model.card.arch, model.card.channels);
    let total = sum(per_episode.iter());
    let breakdown = |key: &dyn Fn(usize) -> String| {
        let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for e in 0..per_episode.len() {
            by.entry(key(e)).or_default().push(e);
        }
        by.into_iter()
            .map(|(name, episodes)| {
                let breakdown = Breakdown {
                    macro_f1: sum(episodes.iter().map(|&e| &per_episode[e])).macro_f1(),
                    episodes: episodes.len(),
                    windows: episodes.iter().map(|&e| test.windows[e]).sum(),
                };
                (name, breakdown)
            })
            .collect()
    };
    let labels = total.labels();
    ModelScore {
        model: name.clone(),
        arch: model.card.arch,
        channels: model.card.channels,
        weights_sha256: model.card.weights_sha256.clone(),
        val_macro_f1: model.card.val.macro_f1,
        macro_f1: total.macro_f1(),
        ci: interval(resampled),
        per_class_f1: Phase::ALL
            .iter()
            .zip(total.f1())
            .filter_map(|(p, f1)| Some((p.name().to_string(), f1?)))
            .collect(),
        per_profile: breakdown(&|e| test.profiles[e].clone()),
        per_host: breakdown(&|e| test.keys[e].0.clone()),
        confusion: ConfusionTable {
            labels: labels.iter().map(|&k| Phase::ALL[k].name().to_string()).collect(),
            counts: labels.iter().map(|&t| labels.iter().map(|&p| total.counts[t][p]).collect()).collect(),
        },
        confusion_png: format!("confusion-{name}.png"),
        calibration,
        reliability_png: format!("reliability-{name}.png"),
    }
}

fn sum<'a>(confusions: impl Iterator<Item = &'a Confusion>) -> Confusion {
    let mut total = Confusion::default();
    for c in confusions {
        total.add(c, 1);
    }
    total
}

/// Every two models, on the same resamples.
fn pairs(scored: &[(ModelScore, Vec<f64>)]) -> Vec<PairScore> {
    let mut pairs: Vec<PairScore> = Vec::new();
    for (i, (a, a_resampled)) in scored.iter().enumerate() {
        for (b, b_resampled) in &scored[i + 1..] {
            pairs.push(PairScore {
                a: a.model.clone(),
                b: b.model.clone(),
                gap: paired_gap(a.macro_f1, b.macro_f1, a_resampled, b_resampled),
            });
        }
    }
    adjust(&mut pairs.iter_mut().map(|p| &mut p.gap).collect::<Vec<_>>());
    pairs
}

/// Writes the charts, then `report.md`, then `report.json` (last: it is
/// what marks the report current).
fn write_report(dir: &Path, report: &Report) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bars: Vec<charts::Bars> = report
        .side_by_side()
        .into_iter()
        .map(|(arch, sets)| charts::Bars { label: arch.name(), sets: sets.map(|m| m.map(|m| (m.macro_f1, m.ci))) })
        .collect();
    let title = format!("{} split: test macro F1, {:.0}% bootstrap interval", report.recipe, CONFIDENCE * 100.0);
    charts::macro_f1(&dir.join(&report.macro_f1_png), &title, &bars)?;
    for m in &report.models {
        let title = format!("{} on the {} test side", m.model, report.recipe);
        let matrix = charts::Matrix { title: &title, labels: &m.confusion.labels, counts: &m.confusion.counts };
        charts::confusion(&dir.join(&m.confusion_png), &matrix)?;
        let title =
            format!("{}: reliability on the {} test side (ECE {:.3})", m.model, report.recipe, m.calibration.ece);
        charts::reliability(&dir.join(&m.reliability_png), &title, &m.calibration)?;
    }
    write_atomically(&dir.join(report::MARKDOWN), |w| w.write_all(report::markdown(report).as_bytes()))?;
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    write_atomically(&dir.join(report::JSON), |w| w.write_all(&json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pairs_get_the_resamples_holm_needs_and_never_fewer_than_asked() {
        assert_eq!(pair_resamples(1000, 12), resamples_to_resolve(66));
        assert!(pair_resamples(1000, 12) > 1000);
        assert_eq!(pair_resamples(5000, 12), 5000, "more asked: kept");
        assert_eq!(pair_resamples(1000, 2), 1000, "one pair: 1,000 already resolve it");
        assert_eq!(pair_resamples(1000, 0), 1000);
    }
}
