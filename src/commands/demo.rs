//! `epiflow demo`: a small synthetic store, the whole pipeline, the results.

use super::validate::{outcome_table, validate_store, Mode};
use super::{print_json, workers};
use crate::cli::Global;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress;
use crate::synth::{synthesize, SynthConfig};
use epiflow_pipelines::Cluster;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(g: &Global, keep: Option<PathBuf>, episodes: usize) -> Result<ExitCode> {
    let temp;
    let kept = keep.is_some();
    let root = match keep {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir().map_err(|e| Error::Io(format!("cannot create a temporary folder: {e}")))?;
            temp.path().to_path_buf()
        }
    };
    let store = root.join("store");
    let quiet = g.quiet || g.json;
    let config = SynthConfig { out: store.clone(), episodes, hosts: 4, seed: 7, duration_s: 60.0, threads: workers(g) };
    let bar = progress::bar(episodes as u64, "synth", quiet);
    synthesize(&config, &|| bar.inc(1)).map_err(|e| Error::io("cannot write store", &store, e))?;
    bar.finish_and_clear();
    let out = store.join("derived");
    let cluster = Cluster::local(workers(g));
    let stats = validate_store(&store, &out, &Config::default(), &cluster, quiet, Mode::Run)?
        .ok_or_else(|| Error::Dataflow("no result from worker 0".into()))?;
    if g.json {
        print_json(&serde_json::json!({
            "store": store, "episodes": stats.episodes, "outcomes": stats.outcomes, "reasons": stats.reasons,
            "quality": stats.quality, "fake": stats.fake, "windows": stats.windows,
            "output": out,
        }))?;
    } else {
        println!("epiflow demo: {episodes} synthetic episodes from 4 lab hosts\n");
        print!("{}", outcome_table(&stats));
        println!("\n{} feature windows (summary: 230 features; tensors: 46 channels x 20 steps)", stats.windows);
        if kept {
            println!("\noutputs in {}", out.display());
        } else {
            println!("\n(the store and outputs were temporary; `epiflow demo --keep DIR` keeps them)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
