//! One module per command; `run` dispatches. A command turns its arguments
//! into one call of `epiflow-engine` and prints what comes back.

mod cache;
mod demo;
mod eval;
mod explain;
mod features;
mod infer;
mod prune;
mod run;
mod serve;
mod synth;
mod validate;
mod watch;

use crate::cli::{Cli, ClusterArgs, Command, Global, WindowArgs};
use crate::progress::Bars;
use epiflow_engine::config::Config;
use epiflow_engine::{Error, Job, Logs, Observer, Result};
use epiflow_pipelines::Cluster;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs a parsed command line; returns the exit status for a normal end.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Synth { episodes, hosts, seed, duration_s } => synth::run(g, episodes, hosts, seed, duration_s),
        Command::Validate { cluster } => validate::run(g, &cluster),
        Command::Features { window, cluster } => features::run(g, window, &cluster),
        Command::Run(args) => run::run(g, args, false),
        Command::Train(args) => run::run(g, args, true),
        Command::Eval { train } => eval::run(g, train),
        Command::Watch { follow, train } => watch::run(g, follow, train),
        Command::Serve { follow, serve } => serve::run(g, follow, serve),
        Command::Explain { window } => explain::run(g, window),
        Command::Infer { model, archives } => infer::run(g, &model, &archives),
        Command::Cache { action, window } => cache::run(g, action, window),
        Command::Prune(args) => prune::run(g, &args),
        Command::Demo { keep, episodes } => demo::run(g, keep, episodes),
    }
}

/// The store a command works on (`--store` is required).
fn store(g: &Global) -> Result<PathBuf> {
    g.store.clone().ok_or_else(|| Error::Usage("--store DIR is required".into()))
}

/// Where outputs go: `--out`, else `STORE/derived`.
fn out_dir(g: &Global, store: &Path) -> PathBuf {
    g.out.clone().unwrap_or_else(|| store.join("derived"))
}

/// Worker threads: `--workers`, else every core.
fn workers(g: &Global) -> usize {
    g.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1)
}

fn cluster(g: &Global, args: &ClusterArgs) -> Result<Cluster> {
    let cluster = Cluster {
        workers: workers(g),
        processes: args.processes,
        process: args.process,
        hostfile: args.hostfile.clone(),
    };
    cluster.check().map_err(Error::Usage)?;
    Ok(cluster)
}

/// The configuration file (`--config`) with the command line's window
/// overrides.
fn config(g: &Global, window: WindowArgs) -> Result<Config> {
    Config::load(g.config.as_deref())?.with_overrides(window.into())
}

/// The corpus job a command works on: `--store`, `--out`, the cluster and
/// `config`, over the standard stages.
fn job(g: &Global, config: Config, args: &ClusterArgs) -> Result<Job> {
    let store = store(g)?;
    let out = out_dir(g, &store);
    Ok(Job { cluster: cluster(g, args)?, config, ..Job::new(store, out) })
}

/// Before a job's threads start: one that trains shares one allocator arena
/// between its threads (see [`crate::allocator`]), so that `[train]
/// memory_mb` bounds its resident memory; one that does not keeps glibc's
/// arena per thread, which its dataflow runs faster with.
fn arenas_for(config: &Config) {
    if !config.train.splits.is_empty() {
        crate::allocator::share_one_arena();
    }
}

/// What a command's run is heard by: the logs, and progress bars unless
/// `--quiet` or `--json`.
fn observer(g: &Global) -> Arc<dyn Observer> {
    Arc::new((Logs, Bars::new(g.quiet || g.json)))
}

/// Prints `value` as one line of JSON on stdout.
fn print_json(value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|e| Error::Io(format!("cannot encode summary: {e}")))?;
    println!("{text}");
    Ok(())
}
