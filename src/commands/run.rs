//! `epiflow run`: the whole pipeline, incrementally (SPEC section 11), the
//! models included when asked for; `epiflow train`: the same, for the models
//! of the splits it names.

use super::eval::results_table;
use super::train::model_table;
use super::validate::{validate_store, Mode};
use super::{print_json, CorpusArgs};
use crate::cli::{Global, PipelineArgs};
use crate::error::{Error, Result};
use crate::stats::RunStats;
use epiflow_models::sink::Status;
use std::process::ExitCode;

/// Runs the pipeline; `train_command` makes a split mandatory and a failed
/// model an error.
pub fn run(g: &Global, args: PipelineArgs, train_command: bool) -> Result<ExitCode> {
    let PipelineArgs { window, split, train, cluster } = args;
    let CorpusArgs { store, out, cluster, mut config } = CorpusArgs::of(g, window, &cluster)?;
    config.split = split.over(config.split);
    config.train = train.over(config.train);
    if train_command && config.train.splits.is_empty() {
        return Err(Error::Usage("train needs --split host|sample|time (or [train] splits)".into()));
    }
    let mode = if train_command { Mode::Train } else { Mode::Run };
    let Some(stats) = validate_store(&store, &out, &config, &cluster, g.quiet || g.json, mode)? else {
        return Ok(ExitCode::SUCCESS);
    };
    if g.json {
        print_json(&stats)?;
    } else {
        print!("{}", operator_table(&stats));
        if !stats.models.is_empty() {
            print!("\n{}", model_table(&stats.models));
        }
        if !stats.evals.is_empty() {
            print!("\n{}", results_table(&stats.evals));
        }
        println!("wrote {}", out.display());
    }
    let failed = stats.models.iter().filter(|m| m.status == Status::Failed).count();
    if train_command && failed > 0 {
        return Err(Error::Io(format!("{failed} of {} models failed (see run.json)", stats.models.len())));
    }
    Ok(ExitCode::SUCCESS)
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
