//! `epiflow cache stats` and `epiflow cache gc`: what `OUT/cache` holds, and
//! dropping what no current fingerprint uses.

use super::{config, job, print_json};
use crate::cli::{CacheAction, ClusterArgs, Global, WindowArgs};
use epiflow_engine::cache_folders::FolderStats;
use epiflow_engine::Result;
use std::process::ExitCode;

pub fn run(g: &Global, action: CacheAction, window: WindowArgs) -> Result<ExitCode> {
    let job = job(g, config(g, window)?, &ClusterArgs::local())?;
    let (listed, verb) = match action {
        CacheAction::Stats => (job.cache_stats()?, "holds"),
        CacheAction::Gc => (job.cache_gc()?, "removed"),
    };
    let root = job.cache_root();
    if g.json {
        print_json(&serde_json::json!({ "cache": root, "action": verb, "folders": listed }))?;
    } else {
        print!("{}", table(&listed));
        let bytes: u64 = listed.iter().map(|f| f.bytes).sum();
        println!(
            "{} {verb} {} entries, {:.1} MB",
            root.display(),
            listed.iter().map(|f| f.entries).sum::<u64>(),
            bytes as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn table(folders: &[FolderStats]) -> String {
    let mut s = format!("{:<10} {:<34} {:>9} {:>12} {}\n", "operator", "fingerprint", "entries", "bytes", "");
    for f in folders {
        let live = if f.live { "live" } else { "unused" };
        s += &format!("{:<10} {:<34} {:>9} {:>12} {live}\n", f.operator, f.fingerprint, f.entries, f.bytes);
    }
    s
}
