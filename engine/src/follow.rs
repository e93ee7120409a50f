//! A job kept running: the index is followed as the receiver appends to it
//! and prune replaces it; each change becomes one epoch of the same
//! dataflow (new episodes processed alone, removed ones retracted), after
//! which every output is published again and the observer hears of it.

use crate::error::{Error, Result};
use crate::job::{Job, Mode};
use crate::observer::Observer;
use epiflow_pipelines::corpus::{follow as follow_dataflow, CorpusState, EpisodeReport, EpochSink};
use epiflow_pipelines::index_feed::{IndexFeed, IndexFollower, Poll};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The command a followed run's `run.json` names.
const WATCH: &str = "watch";

impl Job {
    /// Follows the index until `stop` is raised (the epoch under way then
    /// finishes), publishing every output after each change as a `run`
    /// would, and telling `observer` of each update, episode and
    /// publication. An error from `observer.published` stops it.
    pub fn follow(&self, stop: Arc<AtomicBool>, observer: Arc<dyn Observer>) -> Result<()> {
        let stages = self.stages()?;
        let (plan, publisher) = self.prepare(stages, Mode::Run, WATCH, Arc::clone(&observer))?;
        let problems = Arc::new(AtomicUsize::new(0));
        let feed = Announced {
            follower: IndexFollower::new(&self.index_path(), stop),
            problems: Arc::clone(&problems),
            observer: Arc::clone(&observer),
        };
        let published = Arc::clone(&observer);
        let on_epoch: EpochSink = Arc::new(move |corpus| {
            let stats = publisher
                .publish(corpus, epoch_start(corpus), problems.load(Ordering::Relaxed))
                .map_err(|e| e.to_string())?;
            published.published(corpus, &stats, publisher.generation(corpus))
        });
        let on_episode = Arc::new(move |report: &EpisodeReport| observer.episode(report));
        follow_dataflow(plan, &self.cluster, on_episode, Box::new(feed), on_epoch).map_err(Error::Dataflow)?;
        Ok(())
    }
}

/// The follower, telling the observer of each malformed index line once and
/// of each update, and `run.json` how many malformed lines the index holds.
struct Announced {
    follower: IndexFollower,
    problems: Arc<AtomicUsize>,
    observer: Arc<dyn Observer>,
}

impl IndexFeed for Announced {
    fn poll(&mut self) -> Poll {
        let poll = self.follower.poll();
        self.observer.index_problems(&self.follower.take_problems());
        self.problems.store(self.follower.malformed_lines(), Ordering::Relaxed);
        if let Poll::Changes(changes) = &poll {
            self.observer.update_started(changes.len());
        }
        poll
    }
}

/// When the epoch's changes went in.
fn epoch_start(corpus: &CorpusState) -> Instant {
    Instant::now().checked_sub(corpus.elapsed).unwrap_or_else(Instant::now)
}
