//! `epiflow eval`: the checkpoints of each `--split` scored on its test
//! side from the outputs already under OUT (run `train` first), with the
//! results and generalization tables.

use super::{out_dir, print_json, store};
use crate::cli::{Global, TrainArgs};
use crate::tables::results_table;
use epiflow_engine::config::Config;
use epiflow_engine::evaluation::evaluate;
use epiflow_engine::{Error, Result};
use epiflow_models::dirs::Dirs;
use epiflow_pipelines::stages::Registry;
use std::process::ExitCode;

pub fn run(g: &Global, train: TrainArgs) -> Result<ExitCode> {
    let store = store(g)?;
    let out = out_dir(g, &store);
    let mut config = Config::load(g.config.as_deref())?;
    // Evaluation reads no stage, but a section no one claims is still a
    // mistake in the file.
    config.stages(&Registry::standard())?;
    config.train = train.over(config.train);
    if config.train.splits.is_empty() {
        return Err(Error::Usage("eval needs --split host|sample|time (or [train] splits)".into()));
    }
    let (runs, _) = evaluate(&Dirs::of(&out), &config.train.splits, &config.eval, &*super::observer(g));
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
