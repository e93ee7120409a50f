//! The corpus dataflow: validation, classification and — when asked for —
//! windows, tensors and their shards, each operator reusing earlier results
//! through a [`ResultStore`] (see [`crate::steps`]):
//!
//! ```text
//! index (differential collection, fed epoch by epoch from an IndexFeed)
//!   → exchange to the worker the leader placed each entry on (largest first;
//!     with features, the worker owning the entry's shard)
//!   → insertions: decode → align → each registered stage, in order
//!     (crate::stages: validate → classify → window → tensor → …)
//!                                                   (one batch per episode)
//!   → reports; retractions replay the episode's report with diff -1
//!   → feature sink: new rows stream into the shard's files; kept rows stay;
//!     retracted rows go
//!   → reports gathered at worker 0               (→ each stage's table:
//!                                                   validation.parquet, quality.parquet, …)
//!   → (dimension, value) collection → count      (corpus-level counts)
//!   → training candidates → reduce (split operator, whole corpus under one key)
//!     → split facts gathered at worker 0         (→ splits/, for run and watch)
//!   → shard updates gathered at worker 0         (→ features/manifest.json)
//! ```
//!
//! A batch run is one epoch holding the whole index. `epiflow watch` keeps
//! the input open: each change of the index is one more epoch, and when the
//! dataflow has finished an epoch worker 0 hands the corpus as it now stands
//! to the caller, which publishes it.

use crate::balance::{archive_weigher, Balancer};
use crate::episode_map::episode_map;
use crate::index_feed::{IndexFeed, Once, Poll};
use crate::lineage::Lineage;
use crate::results::ResultStore;
use crate::sinks::feature_sink::{FeatureChange, FeatureEvent, FeatureSink};
use crate::sinks::manifest::{Published, ShardUpdate};
use crate::splits::{split_facts, SplitFact, SplitState};
use crate::stages::{IndexKey, Results, Stages};
use crate::steps::{Episode, Finished, Steps};
use crate::work::{StageSample, Status, Work};
use crate::Cluster;
use differential_dataflow::input::Input;
use differential_dataflow::AsCollection;
use epiflow_operators::classify::Classify;
use epiflow_operators::decode::Decode;
use epiflow_operators::index::IndexEntry;
use epiflow_operators::split::{Candidate, Recipe, Split, SplitConfig};
use epiflow_operators::tensor::Tensor;
use epiflow_operators::validate::{Validate, ValidationRecord};
use epiflow_operators::Operator;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator as _;
use timely::dataflow::operators::vec::{Filter, Map, Partition};
use timely::dataflow::operators::{Capability, Exchange, Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::dataflow::Stream;

/// What a corpus run needs: where the archives are, the stages and their
/// configurations and where results are reused from.
#[derive(Clone)]
pub struct CorpusPlan {
    /// `STORE/episodes`.
    pub episodes_root: PathBuf,
    /// How archives are read: the operator every result depends on.
    pub decode: Decode,
    /// The stages after decode and align, configured
    /// ([`crate::stages::Registry::configure`]); those kept in the feature
    /// shards run only when `features` is set.
    pub stages: Stages,
    /// Where windows and tensors of usable episodes go, when asked for.
    pub features: Option<FeaturePlan>,
    /// The held-out splits of the training candidates, when asked for.
    pub splits: Option<SplitConfig>,
    /// Earlier results ([`crate::results::NoStore`] to compute everything).
    pub store: Arc<dyn ResultStore>,
}

/// Where the shard stages' rows go.
#[derive(Clone, Debug)]
pub struct FeaturePlan {
    /// `OUT/features`.
    pub dir: PathBuf,
    /// Shards per feature kind: an episode's shard is a stable hash of its key.
    pub shards: usize,
    /// Footer metadata of every shard.
    pub metadata: Vec<(String, String)>,
    /// What an earlier run published under the same lineage.
    pub published: Arc<Published>,
}

impl CorpusPlan {
    /// The stages this plan runs: all of them with features, else those not
    /// kept in the feature shards.
    pub fn active(&self) -> Stages {
        match self.features {
            Some(_) => self.stages.clone(),
            None => self.stages.without_feature_shards(),
        }
    }

    /// The fingerprints of the operators this plan runs.
    pub fn lineage(&self) -> Lineage {
        Lineage::of(&self.decode, &self.active())
    }

    /// The per-episode steps of this plan.
    fn steps(&self) -> Steps {
        Steps {
            episodes_root: self.episodes_root.clone(),
            decode: self.decode.clone(),
            stages: self.active(),
            published: self.features.as_ref().map(|f| Arc::clone(&f.published)),
            lineage: self.lineage(),
            store: Arc::clone(&self.store),
            undeclared_read: Arc::new(OnceLock::new()),
        }
    }
}

/// Totals of one operator over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OperatorTotals {
    /// Episodes it computed the result of on this run.
    pub computed: u64,
    /// Episodes whose result it reused.
    pub cached: u64,
    /// Episodes it failed on.
    pub failed: u64,
    /// Time spent inside the operator, summed over workers.
    pub nanos: u64,
}

/// What one worker did in an epoch: where the leader's placement put the
/// work, and whether every worker (and process) took its share.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerTotals {
    /// Episodes that went through this worker's operators.
    pub episodes: u64,
    /// Of those, the ones whose archive this worker decoded (not cached).
    pub decoded: u64,
    /// Time spent inside operators on this worker.
    pub nanos: u64,
}

impl OperatorTotals {
    /// Counts what the operator did with one episode (also used to follow
    /// an update while it runs, from the episodes' traces).
    pub fn add(&mut self, sample: &StageSample) {
        self.nanos += sample.nanos;
        match sample.status {
            Status::Computed => self.computed += 1,
            Status::Cached => self.cached += 1,
            Status::Failed => self.failed += 1,
        }
    }
}

/// The corpus as worker 0 sees it when an epoch is complete.
#[derive(Clone, Debug, Default)]
pub struct CorpusState {
    /// Which epoch this is: 0 for a batch run.
    pub epoch: u64,
    /// Every indexed episode's records (one per stage cached as records),
    /// sorted by key; shared with the dataflow's own view, which the next
    /// epoch changes only where episodes arrive or go.
    pub episodes: Vec<(IndexKey, Arc<Results>)>,
    /// Every shard's content as last published, by shard.
    pub shard_updates: BTreeMap<usize, ShardUpdate>,
    /// Shard writes that failed in this epoch (fatal).
    pub shard_errors: Vec<String>,
    /// Each recipe's split, when the plan asked for splits and some episode
    /// may train.
    pub splits: BTreeMap<Recipe, Result<Split, String>>,
    /// Per operator name, this epoch's work.
    pub operators: BTreeMap<String, OperatorTotals>,
    /// Per worker index (across processes), this epoch's work.
    pub workers: BTreeMap<u64, WorkerTotals>,
    /// Index entries inserted and retracted by this epoch.
    pub inserted: u64,
    /// Index entries retracted by this epoch.
    pub retracted: u64,
    /// From feeding the epoch's changes to the dataflow finishing it.
    pub elapsed: Duration,
    /// Corpus-level counts from the differential `count`: (dimension, value) →
    /// episodes. Dimensions: `outcome`, `reason`, `host`, `profile`, and for
    /// classified episodes `quality` (each prune reason) and `fake`.
    pub counts: BTreeMap<(String, String), i64>,
}

impl CorpusState {
    /// Each episode's record of stage `name`, for those that have one, in
    /// key order: the rows of the stage's table.
    pub fn table(&self, name: &str) -> Vec<(&IndexKey, &crate::stages::Held)> {
        let rows = self.episodes.iter().map(|(key, results)| (key, results.held(name)));
        rows.filter(|(_, held)| held.is_done()).collect()
    }
}

/// What the dataflow learns about one episode.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EpisodeReport {
    /// `(host_id, episode_id)`.
    pub key: IndexKey,
    /// The records of the stages cached as records: validation for every
    /// episode, the others for episodes that reached them.
    pub records: Results,
    /// Windows published, when features were asked for and the episode is usable.
    pub windows: Option<usize>,
    /// What each operator did with the episode, in order.
    pub trace: Vec<StageSample>,
    /// The worker whose operators took the episode.
    pub worker: u64,
}

impl EpisodeReport {
    /// The validation record (every episode has one).
    pub fn validation(&self) -> Option<Cow<'_, ValidationRecord>> {
        self.records.get::<Validate>()
    }
}

/// Called on worker 0 for each finished episode (progress display).
pub type OnEpisode = Arc<dyn Fn(&EpisodeReport) + Send + Sync>;

/// What leaves the report stage: every episode's report (with its diff),
/// what its features do in the sink of its shard, and the facts the
/// corpus-level collections count and split. Each goes to its own stream by
/// [`Partition`], moved, not cloned: a stream read by several operators
/// copies every item for all but one of them.
#[derive(Clone, Debug)]
enum Reported {
    Report(Box<EpisodeReport>),
    Features(FeatureEvent),
    Dimension((String, String)),
    Candidate(Candidate),
}

impl Reported {
    /// The number of [`Reported`] kinds: the report stage's output streams.
    const KINDS: u64 = 4;

    /// Which of the report stage's output streams this goes to.
    fn stream(&self) -> u64 {
        match self {
            Reported::Report(_) => 0,
            Reported::Features(_) => 1,
            Reported::Dimension(_) => 2,
            Reported::Candidate(_) => 3,
        }
    }

    /// An episode's report and what is derived from it: its counted
    /// dimensions and, when splits are asked for (`candidates` holds their
    /// `include_degraded`), its training candidate.
    fn of(report: EpisodeReport, candidates: Option<bool>) -> impl Iterator<Item = Reported> {
        let dims = dimensions(&report).into_iter().map(Reported::Dimension);
        let candidate = candidates.and_then(|include_degraded| {
            let validation = report.validation()?;
            let quality = report.records.get::<Classify>();
            Candidate::of(&validation, quality.as_deref(), include_degraded).map(Reported::Candidate)
        });
        dims.chain(candidate).chain(std::iter::once(Reported::Report(Box::new(report))))
    }
}

/// The (dimension, value) pairs an episode contributes to the corpus counts.
fn dimensions(report: &EpisodeReport) -> Vec<(String, String)> {
    let Some(record) = report.validation() else { return Vec::new() };
    let mut dims = vec![
        ("outcome".to_string(), record.outcome.name().to_string()),
        ("host".to_string(), record.host_id.clone()),
        ("profile".to_string(), record.profile.clone().unwrap_or_else(|| "(none)".into())),
    ];
    dims.extend(record.reasons.iter().map(|r| ("reason".to_string(), r.clone())));
    if let Some(q) = report.records.get::<Classify>() {
        dims.extend(q.reasons.iter().map(|r| ("quality".to_string(), r.clone())));
        dims.push(("fake".to_string(), q.fake.to_string()));
    }
    dims
}

/// Split facts leaving the split `reduce` (all under the one key 0).
type SplitFacts<'scope> = Stream<'scope, u64, Vec<((u8, SplitFact), u64, isize)>>;

/// Net diff per ((counter, key), value) seen by this worker's count collection.
type CountDiffs = BTreeMap<((String, String), isize), isize>;

/// Called on worker 0 with the corpus as it stands after each epoch; an
/// error stops the run.
pub type EpochSink = Arc<dyn Fn(&CorpusState) -> Result<(), String> + Send + Sync>;

/// Worker 0's view of the corpus, updated by each epoch's diffs.
#[derive(Default)]
struct Gathered {
    episodes: BTreeMap<IndexKey, Arc<Results>>,
    shard_updates: BTreeMap<usize, ShardUpdate>,
    shard_errors: Vec<String>,
    /// The split facts, when the plan asks for splits.
    splits: Option<SplitState>,
    operators: BTreeMap<String, OperatorTotals>,
    workers: BTreeMap<u64, WorkerTotals>,
    counts: CountDiffs,
    inserted: u64,
    retracted: u64,
}

impl Gathered {
    fn report(&mut self, report: EpisodeReport, diff: isize) {
        if diff < 0 {
            self.retracted += 1;
            self.episodes.remove(&report.key);
            return;
        }
        self.inserted += 1;
        let worker = self.workers.entry(report.worker).or_default();
        worker.episodes += 1;
        for sample in &report.trace {
            match self.operators.get_mut(&*sample.operator) {
                Some(totals) => totals.add(sample),
                None => self.operators.entry(sample.operator.to_string()).or_default().add(sample),
            }
            worker.nanos += sample.nanos;
            if sample.operator == Decode::NAME && sample.status != Status::Cached {
                worker.decoded += 1;
            }
        }
        self.episodes.insert(report.key, Arc::new(report.records));
    }

    /// The corpus after `epoch`, which took `elapsed`; per-epoch tallies
    /// start again.
    fn snapshot(&mut self, epoch: u64, elapsed: Duration) -> CorpusState {
        self.counts.retain(|_, diff| *diff != 0);
        CorpusState {
            epoch,
            episodes: self.episodes.iter().map(|(key, results)| (key.clone(), Arc::clone(results))).collect(),
            shard_updates: self.shard_updates.clone(),
            shard_errors: std::mem::take(&mut self.shard_errors),
            splits: self.splits.as_ref().map(SplitState::splits).unwrap_or_default(),
            operators: std::mem::take(&mut self.operators),
            workers: std::mem::take(&mut self.workers),
            inserted: std::mem::take(&mut self.inserted),
            retracted: std::mem::take(&mut self.retracted),
            elapsed,
            counts: self.counts.iter().map(|((key, count), diff)| (key.clone(), (count * diff) as i64)).collect(),
        }
    }
}

/// The split facts of the training `candidates`: every candidate under one
/// key, so the split operator sees the whole corpus and its output changes
/// by the facts an arrival or a removal moves.
fn splits<'scope>(
    candidates: Stream<'scope, u64, Vec<(Candidate, u64, isize)>>,
    config: SplitConfig,
) -> SplitFacts<'scope> {
    candidates
        .as_collection()
        .map(|c| (0u8, c))
        .reduce(move |_, candidates, facts| {
            let candidates = candidates.iter().filter(|(_, n)| *n > 0).map(|(c, _)| (*c).clone()).collect();
            facts.extend(split_facts(&config, candidates).into_iter().map(|fact| (fact, 1)));
        })
        .inner
}

/// Runs the corpus dataflow over `entries` (the whole index, one epoch).
/// Returns the gathered output on the process that hosts worker 0, `None` on
/// the others.
pub fn run(
    plan: CorpusPlan,
    entries: Vec<IndexEntry>,
    cluster: &Cluster,
    on_episode: OnEpisode,
) -> Result<Option<CorpusState>, String> {
    execute(plan, cluster, on_episode, Box::new(Once::new(entries)), None)
}

/// Runs the corpus dataflow on the changes `feed` reports, one epoch per
/// change, handing the corpus to `on_epoch` after each, until the feed
/// closes. Returns the last epoch's output on the leader.
pub fn follow(
    plan: CorpusPlan,
    cluster: &Cluster,
    on_episode: OnEpisode,
    feed: Box<dyn IndexFeed>,
    on_epoch: EpochSink,
) -> Result<Option<CorpusState>, String> {
    execute(plan, cluster, on_episode, feed, Some(on_epoch))
}

fn execute(
    plan: CorpusPlan,
    cluster: &Cluster,
    on_episode: OnEpisode,
    feed: Box<dyn IndexFeed>,
    on_epoch: Option<EpochSink>,
) -> Result<Option<CorpusState>, String> {
    plan.stages.check()?;
    let plan = Arc::new(plan);
    let steps = Arc::new(plan.steps());
    let undeclared_read = Arc::clone(&steps.undeclared_read);
    // A stage that read an undeclared record: nothing of the epoch is
    // published, and the run fails naming it.
    let contract = move || undeclared_read.get().map_or(Ok(()), |why| Err(why.clone()));
    let live = on_epoch.is_some();
    let feed = Mutex::new(Some(feed));
    let guards = timely::execute(cluster.timely_config()?, move |worker| {
        let split_state = plan.splits.as_ref().map(|_| SplitState::default());
        let gathered = Rc::new(RefCell::new(Gathered { splits: split_state, ..Gathered::default() }));
        let probe = ProbeHandle::new();
        let (plan_w, steps) = (Arc::clone(&plan), Arc::clone(&steps));
        let on_episode = Arc::clone(&on_episode);
        let (g, c, s, sp) = (Rc::clone(&gathered), Rc::clone(&gathered), Rc::clone(&gathered), Rc::clone(&gathered));
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            // Index entries with the worker the leader placed them on (see
            // `balance`): with features, the one owning their shard, so each
            // shard has one writer.
            let (input, index) = scope.new_collection::<(u64, IndexEntry), isize>();
            let spread = index
                .inner
                .exchange(|((worker, _), _, _): &((u64, IndexEntry), u64, isize)| *worker)
                .map(|((_, entry), t, r)| (entry, t, r));
            let retracted = spread.clone().filter(|(_, _, diff)| *diff < 0);
            let inserted = spread.filter(|(_, _, diff)| *diff > 0).map(|(e, t, r)| ((e, t == 0), t, r));

            let st = Arc::clone(&steps);
            let decoded = episode_map(inserted, Decode::NAME, move |(entry, first)| st.decode(entry, first));
            let st = Arc::clone(&steps);
            let mut episodes = episode_map(decoded, "align", move |w| st.align(w));
            for stage in steps.stages.iter() {
                let (st, stage) = (Arc::clone(&steps), Arc::clone(stage));
                episodes = episode_map(episodes, stage.name(), move |w| st.stage(&*stage, w));
            }
            let (st, worker) = (Arc::clone(&steps), scope.index() as u64);
            let candidates = plan_w.splits.as_ref().map(|config| config.include_degraded);
            let out = report_stage(episodes, retracted, live, candidates, move |w| report(w, &st, worker));
            let [reports, events, dimensions, candidates] = partition(out);
            let reports = reports.flat_map(|(o, t, r)| match o {
                Reported::Report(report) => Some((*report, t, r)),
                _ => None,
            });

            if let Some(features) = &plan_w.features {
                let events = events.flat_map(|(o, t, r)| match o {
                    Reported::Features(event) => Some((event, t, r)),
                    _ => None,
                });
                let timesteps = plan_w.stages.stage::<Tensor>().map_or(0, |t| t.config.timesteps());
                feature_sink(events, features, timesteps)
                    .exchange(|_| 0)
                    .inspect(move |(updates, _, _): &(ShardPublication, u64, isize)| {
                        let mut out = s.borrow_mut();
                        match updates {
                            Ok(updates) => out.shard_updates.extend(updates.iter().map(|u| (u.shard, u.clone()))),
                            Err(e) => out.shard_errors.push(e.clone()),
                        }
                    })
                    .probe_with(&probe);
            }

            reports
                .exchange(|_| 0)
                .unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, "gather", move |_, _| {
                    move |input, _| {
                        input.for_each(|_, batch| {
                            for (report, _, diff) in batch.drain(..) {
                                if diff > 0 {
                                    on_episode(&report);
                                }
                                g.borrow_mut().report(report, diff);
                            }
                        })
                    }
                })
                .probe_with(&probe);

            if let Some(config) = plan_w.splits.clone() {
                let candidates = candidates.flat_map(|(o, t, r)| match o {
                    Reported::Candidate(candidate) => Some((candidate, t, r)),
                    _ => None,
                });
                splits(candidates, config)
                    .exchange(|_| 0)
                    .inspect(move |((_, fact), _, diff): &((u8, SplitFact), u64, isize)| {
                        if let Some(state) = &mut sp.borrow_mut().splits {
                            state.update(fact.clone(), *diff);
                        }
                    })
                    .probe_with(&probe);
            }

            dimensions
                .flat_map(|(o, t, r)| match o {
                    Reported::Dimension(dimension) => Some((dimension, t, r)),
                    _ => None,
                })
                .as_collection()
                .count()
                .inner
                .exchange(|_| 0)
                .inspect(move |(kv, _, diff): &(((String, String), isize), u64, isize)| {
                    *c.borrow_mut().counts.entry(kv.clone()).or_default() += diff;
                })
                .probe_with(&probe);
            input
        });
        // The leader's first worker feeds the index; the others only follow.
        let feed = if worker.index() == 0 { feed.lock().ok().and_then(|mut f| f.take()) } else { None };
        let Some(mut feed) = feed else {
            drop(input);
            worker.step_or_park_while(None, || !probe.done());
            return contract().map(|()| None);
        };
        let shards = plan.features.as_ref().map(|f| f.shards);
        let mut balancer = Balancer::new(worker.peers(), shards, archive_weigher(plan.episodes_root.clone()));
        let (mut epoch, mut last, mut failure) = (0u64, None, None);
        let leader = std::thread::current();
        let idle = feed.listen(Arc::new(move || leader.unpark()));
        loop {
            match feed.poll() {
                Poll::Closed => break,
                Poll::Idle => {
                    worker.step_or_park(Some(idle));
                }
                Poll::Changes(changes) => {
                    let start = Instant::now();
                    for (placed, diff) in balancer.place(changes) {
                        input.update(placed, diff);
                    }
                    input.advance_to(epoch + 1);
                    input.flush();
                    worker.step_or_park_while(None, || probe.less_equal(&epoch));
                    let output = gathered.borrow_mut().snapshot(epoch, start.elapsed());
                    if let Err(e) = contract() {
                        failure = Some(e);
                        break;
                    }
                    if let Some(Err(e)) = on_epoch.as_ref().map(|publish| publish(&output)) {
                        failure = Some(e);
                        break;
                    }
                    last = Some(output);
                    epoch += 1;
                }
            }
        }
        drop(input);
        worker.step_or_park_while(None, || !probe.done());
        failure.map_or_else(|| contract().map(|()| last), Err)
    })?;
    let mut leader = None;
    for result in guards.join() {
        leader = leader.or(result??);
    }
    Ok(leader)
}

/// Turns each finished episode into its report and, for usable episodes
/// when features are asked for, the event for its shard's sink (new rows, or
/// the fact that its published rows are kept) with `report`. In a followed
/// run (`live`) it remembers each report, without its trace, so that a
/// retracted index entry replays its report with diff -1 and removes its
/// rows. With `candidates` (splits asked for) each report also yields its
/// training candidate; every report yields its counted dimensions.
fn report_stage<'scope>(
    episodes: Stream<'scope, u64, Vec<(Work<Episode>, u64, isize)>>,
    retractions: Stream<'scope, u64, Vec<(IndexEntry, u64, isize)>>,
    live: bool,
    candidates: Option<bool>,
    report: impl Fn(Work<Episode>) -> (EpisodeReport, Option<FeatureEvent>) + 'static,
) -> ReportedStream<'scope> {
    let mut remembered: HashMap<IndexEntry, EpisodeReport> = HashMap::new();
    episodes.binary(retractions, Pipeline, Pipeline, "report", move |_, _| {
        move |arrivals, retractions, output| {
            arrivals.for_each_stamp(|cap, batches| {
                let mut session = output.session(&cap);
                for (w, t, r) in batches.flat_map(|batch| batch.drain(..)) {
                    let entry = live.then(|| w.entry.clone());
                    let (report, event) = report(w);
                    if let Some(entry) = entry {
                        let kept = EpisodeReport {
                            key: report.key.clone(),
                            records: report.records.clone(),
                            windows: report.windows,
                            trace: Vec::new(),
                            worker: report.worker,
                        };
                        remembered.insert(entry, kept);
                    }
                    session.give_iterator(event.map(|e| (Reported::Features(e), t, r)).into_iter());
                    session.give_iterator(Reported::of(report, candidates).map(|o| (o, t, r)));
                }
            });
            retractions.for_each_stamp(|cap, batches| {
                let mut session = output.session(&cap);
                for (entry, t, r) in batches.flat_map(|batch| batch.drain(..)) {
                    let Some(report) = remembered.remove(&entry) else { continue };
                    if report.windows.is_some() {
                        let event =
                            FeatureEvent { key: entry.key, sha256: String::new(), change: FeatureChange::Remove };
                        session.give((Reported::Features(event), t, r));
                    }
                    session.give_iterator(Reported::of(report, candidates).map(|o| (o, t, r)));
                }
            });
        }
    })
}

/// The report stage's output.
type ReportedStream<'scope> = Stream<'scope, u64, Vec<(Reported, u64, isize)>>;

/// The report stage's output split by kind, moved: reports, feature
/// events, dimensions, candidates (see [`Reported::stream`]).
fn partition(out: ReportedStream<'_>) -> [ReportedStream<'_>; 4] {
    let streams = out.partition(Reported::KINDS, |(o, t, r)| (o.stream(), (o, t, r)));
    streams.try_into().unwrap_or_else(|_| unreachable!("partition makes Reported::KINDS streams"))
}

/// One worker's publication of the shards an epoch touched, or why it failed.
type ShardPublication = Result<Vec<ShardUpdate>, String>;

/// Feeds each feature event to this worker's [`FeatureSink`] (the leader
/// placed the episode on its shard's owner); when an epoch is complete, publishes the shards it
/// touched and sends their new content on — or the shard writes that failed.
fn feature_sink<'scope>(
    events: Stream<'scope, u64, Vec<(FeatureEvent, u64, isize)>>,
    plan: &FeaturePlan,
    timesteps: usize,
) -> Stream<'scope, u64, Vec<(ShardPublication, u64, isize)>> {
    let mut sink = FeatureSink::new(&plan.dir, timesteps, &plan.metadata, plan.shards, Arc::clone(&plan.published));
    let mut errors: Vec<String> = Vec::new();
    let mut held: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
    events.unary_frontier(Pipeline, "feature-sink", move |_, _| {
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each_stamp(|cap, batches| {
                if let Some(retained) = cap.retain_least(port) {
                    held.entry(*retained.time()).or_insert(retained);
                }
                for (event, epoch, _) in batches.flat_map(|batch| batch.drain(..)) {
                    let key = event.key.clone();
                    if let Err(e) = sink.apply(event, epoch) {
                        errors.push(format!("{key}: {e}"));
                    }
                }
            });
            while let Some(entry) = held.first_entry() {
                let epoch = *entry.key();
                if frontier.less_equal(&epoch) {
                    break;
                }
                let cap = entry.remove();
                let published = match errors.is_empty() {
                    true => sink.publish(epoch).map_err(|e| format!("publishing feature shards: {e}")),
                    false => Err(std::mem::take(&mut errors).join("; ")),
                };
                output.session(&cap).give((published, epoch, 1));
            }
        }
    })
}

/// An episode's report, and what its features do in the sink. `worker` is
/// this worker's index, recorded in the report.
fn report(w: Work<Episode>, steps: &Steps, worker: u64) -> (EpisodeReport, Option<FeatureEvent>) {
    let Work { entry, trace, state } = w;
    let key = (entry.key.host_id.clone(), entry.key.episode_id.clone());
    match state.and_then(|ep| ep.finish(&steps.stages, steps.published.is_some())) {
        Ok(Finished { sha, records, features }) => {
            let windows = match &features {
                Some(FeatureChange::Keep { windows }) => Some(*windows),
                Some(FeatureChange::New(rows)) => Some(rows.summary.windows.len()),
                Some(FeatureChange::Remove) | None => None,
            };
            let event = features.map(|change| FeatureEvent { key: entry.key, sha256: sha, change });
            (EpisodeReport { key, records, windows, trace, worker }, event)
        }
        Err(failure) => {
            let mut records = Results::default();
            for stage in steps.stages.iter() {
                if let Some(record) = stage.on_failure(&entry, &failure) {
                    records.set(stage.name(), record);
                }
            }
            (EpisodeReport { key, records, windows: None, trace, worker }, None)
        }
    }
}
