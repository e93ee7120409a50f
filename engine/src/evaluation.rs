//! The evaluation sink as a run drives it: each split's checkpoints scored
//! (or their report found current), the generalization table across the
//! splits written beside the reports, progress told to the run's observer.

use crate::observer::{Observer, Part};
use crate::stats::OperatorStats;
use epiflow_models::dirs::Dirs;
use epiflow_models::eval::{evaluate as evaluate_split, EvalConfig, EvalRun};
use epiflow_models::generalization::Generalization;
use epiflow_models::report::Report;
use epiflow_operators::split::Recipe;
use std::time::Instant;

/// Evaluates (or finds current) the report of each split in `recipes` from
/// the features and splits under `dirs.inputs` and the checkpoints under
/// `dirs.out`, and writes `OUT/eval/generalization.*`.
pub fn evaluate(
    dirs: &Dirs,
    recipes: &[Recipe],
    config: &EvalConfig,
    observer: &dyn Observer,
) -> (Vec<EvalRun>, OperatorStats) {
    let start = Instant::now();
    observer.started(Part::Evaluation, recipes.len() as u64);
    let runs: Vec<EvalRun> = recipes
        .iter()
        .map(|&recipe| {
            observer.evaluating(recipe);
            let run = evaluate_split(dirs, recipe, config);
            observer.evaluated(&run);
            run
        })
        .collect();
    observer.finished(Part::Evaluation);
    let dir = dirs.out.join("eval");
    if let Err(e) = generalization(&runs).write(&dir) {
        tracing::warn!("cannot write the generalization table in {}: {e}", dir.display());
    }
    let stats = OperatorStats::of_statuses(runs.iter().map(|r| r.status), start.elapsed().as_secs_f64());
    (runs, stats)
}

/// Validation against test macro F1 across the recipes of `runs`.
pub fn generalization(runs: &[EvalRun]) -> Generalization {
    let evaluated: Vec<(Recipe, Result<&Report, String>)> = runs
        .iter()
        .map(|r| (r.recipe, r.scores.as_ref().ok_or_else(|| r.error.clone().unwrap_or_else(|| "not evaluated".into()))))
        .collect();
    Generalization::of(&evaluated)
}
