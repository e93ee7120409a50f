//! `epiflow run`: the whole pipeline, incrementally (SPEC section 11), the
//! models included when asked for; `epiflow train`: the same, for the models
//! of the splits it names, without evaluating them.

use super::{arenas_for, config, job, observer, print_json};
use crate::cli::{Global, PipelineArgs};
use crate::tables::{model_table, operator_table, results_table};
use epiflow_engine::{Error, Mode, Result};
use epiflow_models::sink::Status;
use std::process::ExitCode;

/// Runs the pipeline; `train_command` makes a split mandatory and a failed
/// model an error.
pub fn run(g: &Global, args: PipelineArgs, train_command: bool) -> Result<ExitCode> {
    let PipelineArgs { window, split, train, cluster } = args;
    let mut config = config(g, window)?;
    config.split = split.over(config.split);
    config.train = train.over(config.train);
    if train_command && config.train.splits.is_empty() {
        return Err(Error::Usage("train needs --split host|sample|time (or [train] splits)".into()));
    }
    arenas_for(&config);
    let job = job(g, config, &cluster)?;
    let mode = if train_command { Mode::Train } else { Mode::Run };
    let Some(stats) = job.run(mode, observer(g))? else {
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
        println!("wrote {}", job.out.display());
    }
    let failed = stats.models.iter().filter(|m| m.status == Status::Failed).count();
    if train_command && failed > 0 {
        return Err(Error::Io(format!("{failed} of {} models failed (see run.json)", stats.models.len())));
    }
    Ok(ExitCode::SUCCESS)
}
