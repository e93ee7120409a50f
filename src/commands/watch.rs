//! `epiflow watch`: `run`, kept running (`Job::follow`): one line (or with
//! `--json` one `run.json` object) per update, and one more each time the
//! models of `--split` (trained in the background) and their reports are
//! brought up to date. Ctrl-C (or SIGTERM) lets the epoch under way finish,
//! stops training without writing the model it was on, and exits 0; a
//! second one exits at once.

use super::{arenas_for, config, job, print_json};
use crate::cli::{FollowArgs, Global, TrainArgs};
use crate::tables::{epoch_line, models_line};
use epiflow_engine::observer::Observer;
use epiflow_engine::{Error, Job, Logs, Result, RunStats};
use epiflow_pipelines::corpus::CorpusState;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Exit status after a second Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: i32 = 130;

pub fn run(g: &Global, follow: FollowArgs, train: TrainArgs) -> Result<ExitCode> {
    let mut job = following(g, follow)?;
    job.config.train = train.over(job.config.train);
    arenas_for(&job.config);
    announce(g, &job);
    job.follow(stop_on_signals()?, Arc::new((Logs, Printed { json: g.json })))?;
    Ok(ExitCode::SUCCESS)
}

/// The job `watch` and `serve` follow: with the split overrides too.
pub fn following(g: &Global, follow: FollowArgs) -> Result<Job> {
    let mut config = config(g, follow.window)?;
    config.split = follow.split.over(config.split);
    job(g, config, &follow.cluster)
}

/// Says on stderr what is followed, unless `--quiet`.
pub fn announce(g: &Global, job: &Job) {
    if !g.quiet {
        eprintln!("watching {} → {} (Ctrl-C to stop)", job.index_path().display(), job.out.display());
    }
}

/// Prints each publication on stdout.
struct Printed {
    json: bool,
}

impl Observer for Printed {
    fn published(&self, corpus: &CorpusState, stats: &RunStats, _generation: u64) -> std::result::Result<(), String> {
        match self.json {
            true => print_json(stats).map_err(|e| e.to_string()),
            false => {
                println!("{}", epoch_line(corpus, stats));
                Ok(())
            }
        }
    }

    fn models_published(&self, stats: &RunStats) {
        let printed = match self.json {
            true => print_json(stats),
            false => {
                println!("{}", models_line(stats));
                Ok(())
            }
        };
        if let Err(e) = printed {
            tracing::warn!("{e}");
        }
    }
}

/// A flag the first Ctrl-C (or SIGTERM) raises, asking the epoch under way
/// to finish; a second one ends the process at once (what it finished is in
/// the cache, and every output is still the last one published).
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, INTERRUPTED, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| Error::Io(format!("cannot handle signal {signal}: {e}")))?;
    }
    Ok(stop)
}
