//! `epiflow watch`: `run`, kept running. The index is followed as the
//! receiver appends to it and prune replaces it; each change becomes one
//! epoch of the same dataflow (new episodes processed alone, removed ones
//! retracted), after which every output is published again. Ctrl-C (or
//! SIGTERM) lets the epoch under way finish and exits 0; a second one exits
//! at once.
//!
//! [`follow_store`] is the loop itself, with [`Hooks`] for what else should
//! happen on the way: `epiflow serve` runs the same loop and turns the hooks
//! into dashboard events.

use super::validate::{log_outcome, prepare, warn_index_problems, Mode};
use super::{print_json, CorpusArgs};
use crate::cli::{FollowArgs, Global};
use crate::error::{Error, Result};
use crate::stats::RunStats;
use epiflow_pipelines::index_feed::{IndexFeed, IndexFollower, Poll};
use epiflow_pipelines::validate::{follow, EpisodeReport, EpochSink, Observer, ValidateOutput};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Exit status after a second Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: i32 = 130;

pub fn run(g: &Global, follow: FollowArgs) -> Result<ExitCode> {
    let corpus = CorpusArgs::following(g, follow)?;
    let json = g.json;
    let hooks = Hooks {
        on_update: Arc::new(|_| {}),
        on_episode: Arc::new(|_| {}),
        on_published: Arc::new(move |output, stats, _| match json {
            true => print_json(stats).map_err(|e| e.to_string()),
            false => {
                println!("{}", epoch_line(output, stats));
                Ok(())
            }
        }),
    };
    follow_store(g.quiet, corpus, stop_on_signals()?, hooks)?;
    Ok(ExitCode::SUCCESS)
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

/// Called after each publication with the corpus after the epoch, the run
/// statistics written to `run.json` and the features' generation; an error
/// stops the loop.
pub type OnPublished = Arc<dyn Fn(&ValidateOutput, &RunStats, u64) -> std::result::Result<(), String> + Send + Sync>;

/// What a followed store tells its caller on the way.
pub struct Hooks {
    /// An update begins, taking in this many index changes.
    pub on_update: Arc<dyn Fn(usize) + Send + Sync>,
    /// An episode of the update went through every operator (worker 0).
    pub on_episode: Observer,
    /// The outputs were published.
    pub on_published: OnPublished,
}

/// Follows `corpus`'s index until `stop` is raised, publishing every output
/// after each change.
pub fn follow_store(quiet: bool, corpus: CorpusArgs, stop: Arc<AtomicBool>, hooks: Hooks) -> Result<()> {
    let CorpusArgs { store, out, cluster, config } = corpus;
    let (job, publisher) = prepare(&store, &out, &config, config.stages()?, &cluster, Mode::Watch)?;
    let index = store.join("index.jsonl");
    let problems = Arc::new(AtomicUsize::new(0));
    let feed = Logged {
        follower: IndexFollower::new(&index, stop),
        problems: Arc::clone(&problems),
        on_update: hooks.on_update,
    };
    let on_published = hooks.on_published;
    let on_epoch: EpochSink = Arc::new(move |output| {
        let stats = publisher
            .publish(output, epoch_start(output), problems.load(Ordering::Relaxed))
            .map_err(|e| e.to_string())?;
        on_published(output, &stats, publisher.generation(output))
    });
    if !quiet {
        eprintln!("watching {} → {} (Ctrl-C to stop)", index.display(), out.display());
    }
    let on_episode = hooks.on_episode;
    let observer: Observer = Arc::new(move |report: &EpisodeReport| {
        if let Some(v) = report.validation() {
            log_outcome(&v)
        }
        on_episode(report)
    });
    follow(job, &cluster, observer, Box::new(feed), on_epoch).map_err(Error::Dataflow)?;
    Ok(())
}

/// The follower, logging each malformed index line once, telling `run.json`
/// how many the index holds, and announcing each update.
struct Logged {
    follower: IndexFollower,
    problems: Arc<AtomicUsize>,
    on_update: Arc<dyn Fn(usize) + Send + Sync>,
}

impl IndexFeed for Logged {
    fn poll(&mut self) -> Poll {
        let poll = self.follower.poll();
        warn_index_problems(&self.follower.take_problems());
        self.problems.store(self.follower.malformed_lines(), Ordering::Relaxed);
        if let Poll::Changes(changes) = &poll {
            (self.on_update)(changes.len());
        }
        poll
    }
}

/// One line per epoch, as a person follows it.
pub fn epoch_line(output: &ValidateOutput, stats: &RunStats) -> String {
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
