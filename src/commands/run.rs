//! `epiflow run`: the whole pipeline, incrementally (SPEC section 11).

use super::validate::{validate_store, Mode};
use super::{print_json, CorpusArgs};
use crate::cli::{ClusterArgs, Global, SplitArgs, WindowArgs};
use crate::error::Result;
use crate::stats::RunStats;
use std::process::ExitCode;

pub fn run(g: &Global, window: WindowArgs, split: SplitArgs, args: &ClusterArgs) -> Result<ExitCode> {
    let CorpusArgs { store, out, cluster, mut config } = CorpusArgs::of(g, window, args)?;
    config.split = split.over(config.split);
    if let Some(stats) = validate_store(&store, &out, &config, &cluster, g.quiet || g.json, Mode::Run)? {
        if g.json {
            print_json(&stats)?;
        } else {
            print!("{}", operator_table(&stats));
            println!("wrote {}", out.display());
        }
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
