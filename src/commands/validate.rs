//! `epiflow validate`: validation and classification over the whole index.

use super::{job, observer, print_json};
use crate::cli::{ClusterArgs, Global};
use crate::tables::outcome_table;
use epiflow_engine::config::Config;
use epiflow_engine::{Mode, Result, RunStats};
use std::path::Path;
use std::process::ExitCode;

pub fn run(g: &Global, args: &ClusterArgs) -> Result<ExitCode> {
    let job = job(g, Config::load(g.config.as_deref())?, args)?;
    if let Some(stats) = job.run(Mode::Validate, observer(g))? {
        report(g, &stats, &job.out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a corpus run's summary: the outcome table, or one JSON line with
/// `--json`.
pub fn report(g: &Global, stats: &RunStats, out: &Path) -> Result<()> {
    if g.json {
        return print_json(&serde_json::json!({
            "episodes": stats.episodes,
            "outcomes": stats.outcomes,
            "reasons": stats.reasons,
            "hosts": stats.hosts,
            "profiles": stats.profiles,
            "quality": stats.quality,
            "fake": stats.fake,
            "windows": stats.windows,
            "index_problems": stats.index_problems,
            "wall_s": stats.wall_s,
            "output": out.join("validation.parquet"),
        }));
    }
    print!("{}", outcome_table(stats));
    println!("wrote {}", out.join("validation.parquet").display());
    if stats.command == "features" {
        println!("wrote {} windows to {}", stats.windows, out.join("features").display());
    }
    Ok(())
}
