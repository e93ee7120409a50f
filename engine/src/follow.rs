//! A job kept running: the index is followed as the receiver appends to it
//! and prune replaces it; each change becomes one epoch of the same
//! dataflow (new episodes processed alone, removed ones retracted), after
//! which every output is published again and the observer hears of it.
//! With `[train] splits`, the models follow in the background (see
//! [`crate::background`]): a publication never waits for them.

use crate::background::BackgroundModels;
use crate::error::{Error, Result};
use crate::job::{Job, Mode};
use crate::observer::Observer;
use epiflow_pipelines::corpus::{follow as follow_dataflow, CorpusState, EpisodeReport, EpochSink};
use epiflow_pipelines::index_feed::{IndexFeed, IndexFollower, Poll};
use epiflow_pipelines::index_watch::{Listening, Wake};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The command a followed run's `run.json` names.
const WATCH: &str = "watch";

impl Job {
    /// Follows the index until `stop` is raised (the epoch under way then
    /// finishes, and the models' training stops at its next batch or
    /// round), publishing every output after each change as a `run` would —
    /// the models of `[train] splits` in the background — and telling
    /// `observer` of each update, episode and publication. An error from
    /// `observer.published` stops it.
    pub fn follow(&self, stop: Arc<AtomicBool>, observer: Arc<dyn Observer>) -> Result<()> {
        let stages = self.stages()?;
        let (plan, publisher) = self.prepare(stages, Mode::Run, WATCH, Arc::clone(&observer))?;
        let models = match self.config.train.splits.is_empty() {
            true => None,
            false => Some(BackgroundModels::start(
                self.out.clone(),
                self.config.train.clone(),
                self.config.eval.clone(),
                self.cluster.workers,
                Arc::clone(&observer),
            )?),
        };
        let models = Arc::new(models);
        let background = Arc::clone(&models);
        let problems = Arc::new(AtomicUsize::new(0));
        let feed = Announced {
            follower: IndexFollower::new(&self.index_path(), stop, self.config.watch.clone()),
            problems: Arc::clone(&problems),
            observer: Arc::clone(&observer),
        };
        let published = Arc::clone(&observer);
        let on_epoch: EpochSink = Arc::new(move |corpus| {
            let (start, problems) = (epoch_start(corpus), problems.load(Ordering::Relaxed));
            let generation = publisher.generation(corpus);
            let stats = match &*background {
                Some(models) => {
                    let stats = {
                        let _publishing = models.publishing();
                        publisher.publish_corpus(corpus, start, problems)
                    };
                    stats.and_then(|stats| models.published(stats, generation))
                }
                None => publisher.publish(corpus, start, problems),
            };
            published.published(corpus, &stats.map_err(|e| e.to_string())?, generation)
        });
        let on_episode = Arc::new(move |report: &EpisodeReport| observer.episode(report));
        let followed = follow_dataflow(plan, &self.cluster, on_episode, Box::new(feed), on_epoch);
        if let Some(models) = &*models {
            models.stop();
        }
        followed.map(|_| ()).map_err(Error::Dataflow)
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

    fn listen(&mut self, wake: Wake) -> Duration {
        let poll = self.follower.listen(wake);
        match self.follower.listening() {
            Listening::Notifications => {
                tracing::info!("following the index on file notifications (and a look every {poll:?})")
            }
            Listening::Poll(why) => tracing::info!("following the index every {poll:?} ({why})"),
        }
        poll
    }
}

/// When the epoch's changes went in.
fn epoch_start(corpus: &CorpusState) -> Instant {
    Instant::now().checked_sub(corpus.elapsed).unwrap_or_else(Instant::now)
}
