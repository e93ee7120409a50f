//! The evaluation sink as `run`, `eval` and `demo` drive it: the per-split
//! lines of `run.json` and the results table a person reads.

use super::print_json;
use crate::cli::{Global, TrainArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress;
use crate::stats::OperatorStats;
use epiflow_models::eval::{evaluate, EvalConfig, EvalRun, ModelScore, Report};
use epiflow_models::generalization::Generalization;
use epiflow_operators::split::Recipe;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// `epiflow eval`: scores the checkpoints of each `--split` on its test
/// side from the outputs already under OUT (run `train` first).
pub fn run(g: &Global, train: TrainArgs) -> Result<ExitCode> {
    let store = super::store(g)?;
    let out = g.out.clone().unwrap_or_else(|| store.join("derived"));
    let mut config = Config::load(g.config.as_deref())?;
    config.train = train.over(config.train);
    if config.train.splits.is_empty() {
        return Err(Error::Usage("eval needs --split host|sample|time (or [train] splits)".into()));
    }
    let (runs, _) = eval_sink(&out, &config.train.splits, &config.eval, g.quiet || g.json);
    if g.json {
        print_json(&runs)?;
    } else {
        print!("{}", results_table(&runs));
    }
    match runs.iter().find_map(|r| r.error.as_ref()) {
        Some(error) => Err(Error::Io(error.clone())),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Evaluates (or finds current) the report of each split in `recipes`.
pub fn eval_sink(out: &Path, recipes: &[Recipe], config: &EvalConfig, quiet: bool) -> (Vec<EvalRun>, OperatorStats) {
    let start = Instant::now();
    let bar = progress::bar(recipes.len() as u64, "eval", quiet);
    let runs: Vec<EvalRun> = recipes
        .iter()
        .map(|&recipe| {
            bar.set_message(format!("{recipe} split"));
            let run = evaluate(out, recipe, config);
            bar.inc(1);
            run
        })
        .collect();
    bar.finish_and_clear();
    let dir = out.join("eval");
    if let Err(e) = generalization(&runs).write(&dir) {
        tracing::warn!("cannot write the generalization table in {}: {e}", dir.display());
    }
    let stats = OperatorStats::of_statuses(runs.iter().map(|r| r.status), start.elapsed().as_secs_f64());
    (runs, stats)
}

/// Validation against test macro F1 across the recipes of `runs`.
fn generalization(runs: &[EvalRun]) -> Generalization {
    let evaluated: Vec<(Recipe, std::result::Result<&Report, String>)> = runs
        .iter()
        .map(|r| (r.recipe, r.scores.as_ref().ok_or_else(|| r.error.clone().unwrap_or_else(|| "not evaluated".into()))))
        .collect();
    Generalization::of(&evaluated)
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
