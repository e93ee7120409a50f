//! `epiflow demo`: a small synthetic store, the whole pipeline — training
//! all six architectures on both channel sets for every split recipe, on
//! short schedules, and evaluating them — and the results.

use super::{arenas_for, observer, print_json, workers};
use crate::cli::Global;
use crate::progress;
use crate::synth::{synthesize, SynthConfig, DEFAULT_DURATION_S};
use crate::tables::{model_table, outcome_table, results_table};
use epiflow_engine::config::Config;
use epiflow_engine::{Error, Job, Mode, Result, RunStats};
use epiflow_operators::split::Recipe;
use epiflow_pipelines::Cluster;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The default configuration with training on: every split recipe (so the
/// generalization table has all three), every architecture and channel
/// set, and schedules short enough for a laptop.
fn demo_config() -> Config {
    let mut config = Config::default();
    config.train.splits = Recipe::ALL.to_vec();
    config.train.neural.max_epochs = 20;
    config.train.neural.patience = 5;
    config.train.gbt.rounds = 100;
    config
}

/// Synthesizes `episodes` episodes into DIR (`--keep`) or a temporary
/// folder, runs everything on them and prints the results.
pub fn run(g: &Global, keep: Option<PathBuf>, episodes: usize) -> Result<ExitCode> {
    let trained = demo_config();
    arenas_for(&trained);
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
    let config = SynthConfig {
        out: store.clone(),
        episodes,
        hosts: 4,
        seed: 7,
        duration_s: DEFAULT_DURATION_S,
        threads: workers(g),
    };
    let start = Instant::now();
    let bar = progress::bar(episodes as u64, "synth", quiet);
    synthesize(&config, &|| bar.inc(1)).map_err(|e| Error::io("cannot write store", &store, e))?;
    bar.finish_and_clear();
    let synth_s = start.elapsed().as_secs_f64();
    let out = store.join("derived");
    let job = Job { cluster: Cluster::local(workers(g)), config: trained, ..Job::new(&store, &out) };
    let stats = job.run(Mode::Run, observer(g))?.ok_or_else(|| Error::Dataflow("no result from worker 0".into()))?;
    let timings = Timings::of(&stats, synth_s, start.elapsed().as_secs_f64());
    if g.json {
        print_json(&serde_json::json!({
            "store": store, "episodes": stats.episodes, "outcomes": stats.outcomes, "reasons": stats.reasons,
            "quality": stats.quality, "fake": stats.fake, "windows": stats.windows,
            "models": stats.models, "evals": stats.evals, "output": out, "timings": timings,
        }))?;
    } else {
        println!("epiflow demo: {episodes} synthetic episodes from 4 lab hosts\n");
        print!("{}", outcome_table(&stats));
        println!("\n{} feature windows (summary: 230 features; tensors: 46 channels x 20 steps)", stats.windows);
        print!("\n{}", model_table(&stats.models));
        print!("\n{}", results_table(&stats.evals));
        println!("\n{}", timings.line());
        if kept {
            println!("\noutputs in {}", out.display());
        } else {
            println!("\n(the store and outputs were temporary; `epiflow demo --keep DIR` keeps them)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the demo's time went, each stage under its own name.
#[derive(Debug, PartialEq, serde::Serialize)]
struct Timings {
    synth_s: f64,
    /// Validation to published features and splits.
    pipeline_s: f64,
    train_s: f64,
    eval_s: f64,
    total_s: f64,
}

impl Timings {
    fn of(stats: &RunStats, synth_s: f64, total_s: f64) -> Timings {
        let sink = |name: &str| stats.operators.get(name).map_or(0.0, |o| o.wall_s);
        Timings { synth_s, pipeline_s: stats.corpus_s, train_s: sink("train"), eval_s: sink("eval"), total_s }
    }

    fn line(&self) -> String {
        format!(
            "time: synth {:.1} s, pipeline {:.1} s, training {:.1} s, evaluation {:.1} s; demo {:.1} s in all",
            self.synth_s, self.pipeline_s, self.train_s, self.eval_s, self.total_s
        )
    }
}
