//! `epiflow cache stats` and `epiflow cache gc`: what `OUT/cache` holds, and
//! dropping what no current fingerprint uses.

use super::validate::corpus_job;
use super::{out_dir, print_json, store};
use crate::cache::{folders, gc, FolderStats};
use crate::cli::{CacheAction, Global, WindowArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use epiflow_pipelines::lineage::Lineage;
use std::collections::BTreeMap;
use std::process::ExitCode;

pub fn run(g: &Global, action: CacheAction, window: WindowArgs) -> Result<ExitCode> {
    let store = store(g)?;
    let root = out_dir(g, &store).join("cache");
    let config = Config::load(g.config.as_deref())?.with_overrides(window.into())?;
    let live = live_fingerprints(&config, &out_dir(g, &store))?;
    let (listed, verb) = match action {
        CacheAction::Stats => (folders(&root, &live), "holds"),
        CacheAction::Gc => (gc(&root, &live), "removed"),
    };
    let listed = listed.map_err(|e| Error::io("cannot read cache", &root, e))?;
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

/// Operator → fingerprint (hex) under the current configuration, as `run`
/// would compute them.
fn live_fingerprints(config: &Config, out: &std::path::Path) -> Result<BTreeMap<String, String>> {
    let mut job = corpus_job(std::path::Path::new(""), config, config.stages()?);
    job.features = Some(super::features::feature_job(out, config));
    Ok(Lineage::of(&job).hex())
}

fn table(folders: &[FolderStats]) -> String {
    let mut s = format!("{:<10} {:<34} {:>9} {:>12} {}\n", "operator", "fingerprint", "entries", "bytes", "");
    for f in folders {
        let live = if f.live { "live" } else { "unused" };
        s += &format!("{:<10} {:<34} {:>9} {:>12} {live}\n", f.operator, f.fingerprint, f.entries, f.bytes);
    }
    s
}
