//! `epiflow watch`: `run`, kept running. The index is followed as the
//! receiver appends to it and prune replaces it; each change becomes one
//! epoch of the same dataflow (new episodes processed alone, removed ones
//! retracted), after which every output is published again. Ctrl-C (or
//! SIGTERM) lets the epoch under way finish and exits 0; a second one exits
//! at once.

use super::validate::{log_outcome, prepare, warn_index_problems, Mode};
use super::{print_json, CorpusArgs};
use crate::cli::{ClusterArgs, Global, SplitArgs, WindowArgs};
use crate::error::{Error, Result};
use crate::stats::RunStats;
use epiflow_pipelines::index_feed::{IndexFeed, IndexFollower, Poll};
use epiflow_pipelines::validate::{follow, EpisodeReport, EpochSink, ValidateOutput};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Exit status after a second Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: i32 = 130;

pub fn run(g: &Global, window: WindowArgs, split: SplitArgs, args: &ClusterArgs) -> Result<ExitCode> {
    let CorpusArgs { store, out, cluster, mut config } = CorpusArgs::of(g, window, args)?;
    config.split = split.over(config.split);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal asks the epoch under way to finish; a second one
        // ends the process at once (what it finished is in the cache, and
        // every output is still the last one published).
        signal_hook::flag::register_conditional_shutdown(signal, INTERRUPTED, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| Error::Io(format!("cannot handle signal {signal}: {e}")))?;
    }
    let (job, publisher) = prepare(&store, &out, &config, config.stages()?, &cluster, Mode::Watch)?;
    let index = store.join("index.jsonl");
    let problems = Arc::new(AtomicUsize::new(0));
    let feed = Logged { follower: IndexFollower::new(&index, stop), problems: Arc::clone(&problems) };
    let json = g.json;
    let on_epoch: EpochSink = Arc::new(move |output| {
        let stats = publisher
            .publish(output, epoch_start(output), problems.load(Ordering::Relaxed))
            .map_err(|e| e.to_string())?;
        match json {
            true => print_json(&stats).map_err(|e| e.to_string()),
            false => {
                println!("{}", epoch_line(output, &stats));
                Ok(())
            }
        }
    });
    if !g.quiet {
        eprintln!("watching {} → {} (Ctrl-C to stop)", index.display(), out.display());
    }
    let observer = Arc::new(|report: &EpisodeReport| {
        if let Some(v) = report.validation() {
            log_outcome(&v)
        }
    });
    follow(job, &cluster, observer, Box::new(feed), on_epoch).map_err(Error::Dataflow)?;
    Ok(ExitCode::SUCCESS)
}

/// The follower, logging each malformed index line once and telling
/// `run.json` how many the index holds.
struct Logged {
    follower: IndexFollower,
    problems: Arc<AtomicUsize>,
}

impl IndexFeed for Logged {
    fn poll(&mut self) -> Poll {
        let poll = self.follower.poll();
        warn_index_problems(&self.follower.take_problems());
        self.problems.store(self.follower.malformed_lines(), Ordering::Relaxed);
        poll
    }
}

/// One line per epoch, as a person follows it.
fn epoch_line(output: &ValidateOutput, stats: &RunStats) -> String {
    let computed: u64 = stats.operators.values().map(|o| o.computed).sum();
    format!(
        "epoch {}: +{} -{} episodes → {} episodes, {} windows ({} operator results computed) in {:.2} s",
        output.epoch, output.inserted, output.retracted, stats.episodes, stats.windows, computed, stats.wall_s
    )
}

/// When the epoch's changes went in.
fn epoch_start(output: &ValidateOutput) -> Instant {
    Instant::now().checked_sub(output.elapsed).unwrap_or_else(Instant::now)
}
