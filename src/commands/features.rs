//! `epiflow features`: validation, classification, and windows and tensors
//! for every usable episode.

use super::validate::report;
use super::{config, job, observer};
use crate::cli::{ClusterArgs, Global, WindowArgs};
use epiflow_engine::{Mode, Result};
use std::process::ExitCode;

pub fn run(g: &Global, window: WindowArgs, args: &ClusterArgs) -> Result<ExitCode> {
    let job = job(g, config(g, window)?, args)?;
    if let Some(stats) = job.run(Mode::Features, observer(g))? {
        report(g, &stats, &job.out)?;
    }
    Ok(ExitCode::SUCCESS)
}
