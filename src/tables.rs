//! What the commands print: the tables a person reads, from what the
//! engine's calls return.

use epiflow_engine::evaluation::generalization;
use epiflow_engine::stats::{ModelState, RunStats};
use epiflow_models::eval::EvalRun;
use epiflow_models::report::ModelScore;
use epiflow_models::sink::{ModelRun, Status};
use epiflow_operators::validate::Outcome;
use epiflow_pipelines::corpus::CorpusState;

/// The outcome table a person reads: outcomes with shares, then reasons.
pub fn outcome_table(stats: &RunStats) -> String {
    let n = stats.episodes.max(1) as f64;
    let rate = stats.episodes as f64 / stats.corpus_s.max(1e-9);
    let mut s = format!("validated {} episodes in {:.1} s ({rate:.0} episodes/s)\n\n", stats.episodes, stats.corpus_s);
    s += &format!("{:<10} {:>9} {:>7}\n", "outcome", "episodes", "share");
    for o in Outcome::ALL {
        let c = stats.outcomes.get(o.name()).copied().unwrap_or(0);
        s += &format!("{:<10} {:>9} {:>6.1}%\n", o.name(), c, 100.0 * c as f64 / n);
    }
    if !stats.reasons.is_empty() {
        s += &format!("\n{:<28} {:>9}\n", "reason", "episodes");
        for (r, c) in &stats.reasons {
            s += &format!("{r:<28} {c:>9}\n");
        }
    }
    s += &format!("\n{} of {} classified episodes look fake\n", stats.fake, stats.quality_classified());
    for (r, c) in &stats.quality {
        s += &format!("  {r:<26} {c:>9}\n");
    }
    if stats.index_problems > 0 {
        s += &format!("\n{} malformed index lines skipped (see warnings)\n", stats.index_problems);
    }
    s
}

/// What each operator computed and reused, as a person reads it.
pub fn operator_table(stats: &RunStats) -> String {
    let mut s = format!("{} episodes, {} windows in {:.2} s\n\n", stats.episodes, stats.windows, stats.wall_s);
    s += &format!("{:<10} {:>9} {:>9} {:>7} {:>9}\n", "operator", "computed", "cached", "failed", "wall s");
    for (name, o) in &stats.operators {
        s += &format!("{name:<10} {:>9} {:>9} {:>7} {:>9.2}\n", o.computed, o.cached, o.failed, o.wall_s);
    }
    s
}

/// One line per model: status, validation macro F1, training time.
pub fn model_table(runs: &[ModelRun]) -> String {
    let mut s = format!("{:<28} {:>9} {:>8} {:>9} {:>11}\n", "model", "status", "val F1", "train s", "windows/s");
    for r in runs {
        let status = match r.status {
            Status::Computed => "trained",
            Status::Cached => "cached",
            Status::Failed => "FAILED",
        };
        let f1 = r.val_macro_f1.map_or("-".into(), |f| format!("{f:.3}"));
        let rate = r.windows_per_s.map_or("-".into(), |w| format!("{w:.0}"));
        s += &format!("{:<28} {status:>9} {f1:>8} {:>9.1} {rate:>11}\n", r.model, r.wall_s);
        if let Some(error) = &r.error {
            s += &format!("  {error}\n");
        }
    }
    s
}

/// Test macro F1 with its interval, realistic and oracle side by side, per
/// split; then where each report is.
pub fn results_table(runs: &[EvalRun]) -> String {
    let mut s = String::new();
    for run in runs {
        let Some(report) = &run.scores else {
            s += &format!("{} split: not evaluated: {}\n", run.recipe, run.error.as_deref().unwrap_or("unknown error"));
            continue;
        };
        s += &format!(
            "{} split: test macro F1 [{:.0}% interval], {} test episodes, {} windows\n",
            run.recipe,
            report.confidence * 100.0,
            report.test.episodes,
            report.test.windows
        );
        s += &format!("{:<12} {:>22} {:>22}\n", "arch", "realistic", "oracle");
        for (arch, sets) in report.side_by_side() {
            let [realistic, oracle] = sets.map(|m| m.map_or("-".to_string(), ModelScore::with_interval));
            s += &format!("{:<12} {realistic:>22} {oracle:>22}\n", arch.name());
        }
        let significant = report.pairs.iter().filter(|p| p.gap.significant).count();
        let raw = report.pairs.iter().filter(|p| p.gap.p_value < epiflow_models::bootstrap::SIGNIFICANCE).count();
        s += &format!(
            "{significant} of {} model pairs differ significantly (Holm-adjusted p < {:.2}; {raw} before adjusting)\n",
            report.pairs.len(),
            epiflow_models::bootstrap::SIGNIFICANCE
        );
        for skipped in &report.skipped {
            s += &format!("skipped {}: {}\n", skipped.model, skipped.reason);
        }
        if let Some(path) = &run.report {
            s += &format!("report: {}\n", path.display());
        }
        s += "\n";
    }
    let table = generalization(runs);
    if !table.rows.is_empty() {
        s += &table.table();
    }
    s
}

/// One line for a followed job's models brought up to date: what the pass
/// trained, where the models stand, and each split's report.
pub fn models_line(stats: &RunStats) -> String {
    let count = |status: Status| stats.models.iter().filter(|m| m.status == status).count();
    let states = |state: ModelState| stats.model_states.values().filter(|s| **s == state).count();
    let reports: Vec<String> = stats
        .evals
        .iter()
        .map(|e| {
            let done = match e.status {
                Status::Computed => "evaluated",
                Status::Cached => "current",
                Status::Failed => "failed",
            };
            format!("{} {done}", e.recipe)
        })
        .collect();
    format!(
        "models: {} trained, {} cached, {} failed → {} current, {} stale; reports: {}",
        count(Status::Computed),
        count(Status::Cached),
        count(Status::Failed),
        states(ModelState::Current),
        states(ModelState::Stale),
        reports.join(", ")
    )
}

/// One line for a publication of a followed job: the update's episodes and
/// what it computed.
pub fn epoch_line(corpus: &CorpusState, stats: &RunStats) -> String {
    let computed: u64 = stats.operators.values().map(|o| o.computed).sum();
    format!(
        "epoch {}: +{} -{} episodes → {} episodes, {} windows ({} operator results computed) in {:.2} s",
        corpus.epoch, corpus.inserted, corpus.retracted, stats.episodes, stats.windows, computed, stats.wall_s
    )
}
