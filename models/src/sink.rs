//! The training sink (SPEC section 13): after a run has published its
//! feature shards and split files, every configured model — architecture ×
//! channel set × split — is trained and checkpointed, unless its checkpoint
//! was trained on exactly the same inputs, in which case it is reported
//! cached.
//!
//! A model's inputs are the feature schema hash, the split's placements with
//! each placed episode's archive hash and window count, the architecture and
//! its version, the channel set, the training settings and what `[train]
//! memory_mb` changed of them. No model holds its windows: one pass per
//! (input kind, channel set), shared by the architectures that read them,
//! counts the training side's classes and fits the scaling; then each model
//! streams the shards itself (see [`crate::stream`]), the models training
//! side by side, one per thread, while their buffers fit the budget
//! together (see [`crate::memory`]).

use crate::arch::Arch;
use crate::checkpoint::{self, FittedEpisode, ModelCard, SplitCard, TrainingCard, TrainingMode, ValMetrics};
use crate::classifier::Model;
use crate::device;
use crate::dirs::Dirs;
use crate::gbt::{Gbt, GbtConfig, Sample};
use crate::memory::{Gate, Memory};
use crate::net::Net;
use crate::scoring::{argmax, count_classes, Confusion};
use crate::stream::{class_counts, stream, Order, Pass, ShardSide, SideCache};
use crate::train::{score, train, Epoch, Sides, TrainConfig, TrainReport, EPOCH_ORDER_VERSION, PREDICT_BATCH};
use crate::warm::{Parent, WarmConfig};
use crate::CLASSES;
use epiflow_operators::channels::{ChannelSet, Phase, CHANNELS};
use epiflow_operators::fingerprint::Fingerprint;
use epiflow_operators::split::{Assignment, Recipe, Side};
use epiflow_pipelines::feature_reader::FeatureShards;
use epiflow_pipelines::normalise::{Moments, Normalisation};
use epiflow_pipelines::sinks::features::FeatureKind;
use epiflow_pipelines::sinks::manifest::Manifest;
use epiflow_pipelines::sinks::splits;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Which models a run trains, and how: the `[train]` configuration section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Splits to train on; with none, a run trains nothing.
    pub splits: Vec<Recipe>,
    /// Architectures to train (default: all six).
    pub archs: Vec<Arch>,
    /// Channel sets to train on (default: both).
    pub channels: Vec<ChannelSet>,
    /// Settings of the neural training loop.
    pub neural: TrainConfig,
    /// Settings of the boosted trees.
    pub gbt: GbtConfig,
    /// Memory the training buffers may hold, in MiB: streamed epochs' shuffle
    /// buffers and read-ahead, the trees' matrices (see [`crate::memory`]).
    /// Sized for a laptop; training's memory does not grow with the corpus
    /// past it.
    pub memory_mb: usize,
    /// When a model is updated from its checkpoint instead of trained anew
    /// (see [`crate::warm`]).
    pub warm: WarmConfig,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            splits: Vec::new(),
            archs: Arch::ALL.to_vec(),
            channels: ChannelSet::ALL.to_vec(),
            neural: TrainConfig::default(),
            gbt: GbtConfig::default(),
            memory_mb: 512,
            warm: WarmConfig::default(),
        }
    }
}

impl ModelsConfig {
    /// Every model it names, split by split, then channel set, then
    /// architecture: the order of `run.json`'s lines.
    pub fn models(&self) -> Vec<ModelId> {
        self.splits
            .iter()
            .flat_map(|&recipe| {
                self.channels
                    .iter()
                    .flat_map(move |&channels| self.archs.iter().map(move |&arch| ModelId { recipe, arch, channels }))
            })
            .collect()
    }
}

/// One model: split, architecture, channel set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId {
    /// The split.
    pub recipe: Recipe,
    /// The architecture.
    pub arch: Arch,
    /// The channel set.
    pub channels: ChannelSet,
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.recipe, checkpoint::model_name(self.arch, self.channels))
    }
}

/// What became of a model in a run: trained, found current, or failed.
pub use epiflow_pipelines::work::Status;

/// One model's line in `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRun {
    /// `recipe/arch-channels`.
    pub model: String,
    /// Trained, cached or failed.
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why it failed.
    pub error: Option<String>,
    /// Validation macro F1 of the checkpoint (trained now or earlier).
    pub val_macro_f1: Option<f64>,
    /// Time spent training it in this run (0 when cached).
    pub wall_s: f64,
    /// Windows on the training side.
    pub train_windows: usize,
    /// Training windows per second of wall time.
    pub windows_per_s: Option<f64>,
}

impl ModelRun {
    /// A failed model, logged and told to `progress`.
    fn failed(id: ModelId, error: String, progress: Progress) -> ModelRun {
        tracing::warn!("{id}: {error}");
        progress(id, TrainEvent::Finished(Status::Failed));
        ModelRun {
            model: id.to_string(),
            status: Status::Failed,
            error: Some(error),
            val_macro_f1: None,
            wall_s: 0.0,
            train_windows: 0,
            windows_per_s: None,
        }
    }

    fn of_card(id: ModelId, status: Status, card: &ModelCard, wall_s: f64) -> ModelRun {
        ModelRun {
            model: id.to_string(),
            status,
            error: None,
            val_macro_f1: Some(card.val.macro_f1),
            wall_s,
            train_windows: card.split.windows.get(Side::Train.name()).copied().unwrap_or(0),
            windows_per_s: Some(card.training.windows_per_s),
        }
    }
}

/// What the sink tells its progress display.
#[derive(Clone, Copy, Debug)]
pub enum TrainEvent<'a> {
    /// A model's training begins (it was not current).
    Started,
    /// A neural model finished an epoch.
    Epoch(&'a Epoch),
    /// A model is done: trained, found cached, or failed.
    Finished(Status),
}

/// Hears every [`TrainEvent`] of every model, from any training thread.
pub type Progress<'a> = &'a (dyn Fn(ModelId, TrainEvent) + Sync);

/// Trains every model `config` asks for from the features and splits under
/// `dirs.inputs`, on up to `threads` threads, and checkpoints them under
/// `OUT/models`. One line per model, in configuration order.
///
/// Raising `stop` stops it soon (between batches, rounds or models): a
/// model that had not finished fails as stopped and its checkpoint is left
/// as it was; one that had finished is saved whole.
pub fn train_models(
    dirs: &Dirs,
    config: &ModelsConfig,
    threads: usize,
    stop: &AtomicBool,
    progress: Progress,
) -> Vec<ModelRun> {
    let ids = config.models();
    let features = dirs.features();
    let Some(manifest) = Manifest::read(&features) else {
        let why = format!("no features in {}: run `epiflow run` first", features.display());
        return ids.into_iter().map(|id| ModelRun::failed(id, why.clone(), progress)).collect();
    };
    let mut runs: BTreeMap<ModelId, ModelRun> = BTreeMap::new();
    for &recipe in &config.splits {
        let of_recipe: Vec<ModelId> = ids.iter().copied().filter(|id| id.recipe == recipe).collect();
        match splits::read(&dirs.splits(), recipe) {
            Err(why) => runs.extend(of_recipe.into_iter().map(|id| (id, ModelRun::failed(id, why.clone(), progress)))),
            Ok(assignments) => {
                let split = SplitInputs::of(recipe, &assignments, &manifest);
                for group in by_windows(of_recipe, |id| (id.arch, id.channels)) {
                    let job = GroupJob { dirs, manifest: &manifest, split: &split, config, stop, ids: group };
                    runs.extend(job.run(threads, progress));
                }
            }
        }
    }
    ids.iter().filter_map(|id| runs.remove(id)).collect()
}

/// Items (models to train, checkpoints to score) grouped by the windows
/// they read — channel set, then input kind — so each group's windows are
/// read from the shards once. `of` gives an item's architecture and set.
pub(crate) fn by_windows<T>(items: impl IntoIterator<Item = T>, of: impl Fn(&T) -> (Arch, ChannelSet)) -> Vec<Vec<T>> {
    let mut groups: BTreeMap<(ChannelSet, bool), Vec<T>> = BTreeMap::new();
    for item in items {
        let (arch, channels) = of(&item);
        groups.entry((channels, arch.input() == FeatureKind::Tensors)).or_default().push(item);
    }
    groups.into_values().collect()
}

/// Fingerprint of placements: each episode's side, and the sha256 and
/// window count of its features. Over every placed episode it is the split
/// an evaluation scores; over the training and validation sides alone
/// ([`fitting_fingerprint`]), what a model learns from.
pub fn split_fingerprint<'a>(
    recipe: Recipe,
    assignments: impl IntoIterator<Item = &'a Assignment>,
    manifest: &Manifest,
) -> Fingerprint {
    let mut lines: Vec<String> = assignments
        .into_iter()
        .map(|a| {
            let key = format!("{}/{}", a.host_id, a.episode_id);
            let (sha, windows) = manifest.episodes.get(&key).map_or(("", 0), |e| (e.sha256.as_str(), e.windows));
            format!("{key}|{}|{sha}|{windows}", a.side.name())
        })
        .collect();
    lines.sort_unstable();
    Fingerprint::of_parts(&[recipe.name().as_bytes(), lines.join("\n").as_bytes()])
}

/// Fingerprint of what a model learns from: the training and validation
/// placements and their features. An episode placed on the test side
/// changes the evaluation, never the model (SPEC section 13).
pub fn fitting_fingerprint(recipe: Recipe, assignments: &[Assignment], manifest: &Manifest) -> Fingerprint {
    split_fingerprint(recipe, assignments.iter().filter(|a| a.side != Side::Test), manifest)
}

/// A split as training sees it: where each episode goes, and the
/// fingerprint of the sides it learns from.
struct SplitInputs {
    recipe: Recipe,
    /// The training and validation placements (training never reads the
    /// test side).
    sides: HashMap<(String, String), Side>,
    /// The same placements with their features: what a checkpoint lists as
    /// learned from.
    fitted: HashMap<(String, String), FittedEpisode>,
    episodes: BTreeMap<String, usize>,
    fingerprint: Fingerprint,
}

impl SplitInputs {
    fn of(recipe: Recipe, assignments: &[Assignment], manifest: &Manifest) -> SplitInputs {
        // Training never reads the test side, and the card records what the
        // model learned from: the test side's count would make it depend on
        // arrivals that change no weight.
        let fitting = assignments.iter().filter(|a| a.side != Side::Test);
        let mut episodes = BTreeMap::new();
        for a in fitting.clone() {
            *episodes.entry(a.side.name().to_string()).or_insert(0) += 1;
        }
        let fitted: HashMap<(String, String), FittedEpisode> = fitting
            .map(|a| {
                let entry = manifest.episodes.get(&format!("{}/{}", a.host_id, a.episode_id));
                let episode = FittedEpisode {
                    host_id: a.host_id.clone(),
                    episode_id: a.episode_id.clone(),
                    side: a.side,
                    sha256: entry.map_or(String::new(), |e| e.sha256.clone()),
                    windows: Some(entry.map_or(0, |e| e.windows)),
                };
                ((a.host_id.clone(), a.episode_id.clone()), episode)
            })
            .collect();
        SplitInputs {
            recipe,
            sides: fitted.iter().map(|(key, e)| (key.clone(), e.side)).collect(),
            fitted,
            episodes,
            fingerprint: fitting_fingerprint(recipe, assignments, manifest),
        }
    }
}

/// The models of one group of one split.
struct GroupJob<'a> {
    dirs: &'a Dirs,
    manifest: &'a Manifest,
    split: &'a SplitInputs,
    config: &'a ModelsConfig,
    /// Raised to stop training (see [`train_models`]).
    stop: &'a AtomicBool,
    ids: Vec<ModelId>,
}

/// A group's windows as its models read them: the shards of its input kind
/// for its channel set, what one shared fitting pass over the training side
/// found, and the decoded shards that fit the group's cache (shared by its
/// models, so their epochs replay them instead of decoding them again).
/// Every model streams its windows.
struct GroupWindows {
    shards: FeatureShards,
    /// The training and validation placements.
    sides: HashMap<(String, String), Side>,
    /// Decoded training and validation shards kept in memory.
    cache: (SideCache, SideCache),
    /// Training windows per class.
    class_counts: [u64; CLASSES],
    /// Validation windows.
    val_rows: usize,
    /// The normalisation fitted on the training side, when the group has
    /// networks.
    scale: Option<Normalisation>,
}

impl GroupWindows {
    fn train_rows(&self) -> usize {
        self.class_counts.iter().sum::<u64>() as usize
    }

    fn side(&self, side: Side) -> ShardSide<'_> {
        let cache = if side == Side::Train { &self.cache.0 } else { &self.cache.1 };
        ShardSide::new(&self.shards, &self.sides, side).cached(cache)
    }
}

impl GroupJob<'_> {
    /// Fingerprint of everything `id`'s weights depend on.
    fn inputs(&self, id: ModelId, memory: &str) -> String {
        self.inputs_with(id, memory, &self.split.fingerprint)
    }

    /// What [`GroupJob::inputs`] would be over the placements `split`
    /// fingerprints: over a checkpoint's, whether only its placements
    /// changed since.
    fn inputs_with(&self, id: ModelId, memory: &str, split: &Fingerprint) -> String {
        let settings = self.settings(id.arch).to_string();
        let (version, order) = (id.arch.version().to_le_bytes(), EPOCH_ORDER_VERSION.to_le_bytes());
        let mut parts: Vec<&[u8]> = vec![
            self.manifest.feature_schema_hash.as_bytes(),
            &split.0,
            id.arch.name().as_bytes(),
            &version,
            id.channels.name().as_bytes(),
            settings.as_bytes(),
            memory.as_bytes(),
        ];
        if id.arch != Arch::Gbt {
            // How epochs order the windows: the networks' weights depend on it.
            parts.push(&order);
        }
        Fingerprint::of_parts(&parts).hex()
    }

    /// The architecture's training settings, as recorded in its card.
    fn settings(&self, arch: Arch) -> serde_json::Value {
        match arch {
            Arch::Gbt => serde_json::to_value(&self.config.gbt),
            _ => serde_json::to_value(&self.config.neural),
        }
        .unwrap_or_default()
    }

    /// The shards the group's models read (one input kind, one channel set).
    fn shards(&self, id: ModelId) -> FeatureShards {
        FeatureShards::open(&self.dirs.features(), self.manifest, id.arch.input(), id.channels)
    }

    /// Windows the manifest lists for the episodes placed on `side`.
    fn listed_windows(&self, side: Side) -> usize {
        self.split.fitted.values().filter(|e| e.side == side).filter_map(|e| e.windows).sum()
    }

    /// How `memory_mb` bounds `id`'s training, in the words its inputs and
    /// card record: empty when it does not (the model holds what it would
    /// with any budget), else the shuffle buffer or the trees' sample it
    /// gets. A function of the budget and the data alone.
    fn allowance(&self, id: ModelId, shards: &FeatureShards, (train, val): (usize, usize)) -> Allowance {
        let memory = Memory::of_mb(self.config.memory_mb);
        match id.arch {
            Arch::Gbt => {
                let sample = memory.gbt_sample(shards.width(), train, val);
                Allowance::Trees { sample, need: Memory::gbt_need(sample, shards.width(), train, val) }
            }
            _ => {
                let neural = &self.config.neural;
                let buffer = memory.shuffle_windows(neural.shuffle_windows, neural.batch, shards.window_bytes());
                let need = Memory::network_need(buffer.min(train), neural.batch, shards.window_bytes());
                Allowance::Network { buffer, need }
            }
        }
    }

    fn run(self, threads: usize, progress: Progress) -> Vec<(ModelId, ModelRun)> {
        let mut done = Vec::new();
        let mut pending = Vec::new();
        let Some(&any) = self.ids.first() else { return done };
        let shards = self.shards(any);
        let listed = (self.listed_windows(Side::Train), self.listed_windows(Side::Val));
        for &id in &self.ids {
            let dir = checkpoint::dir_of(&self.dirs.out, id.recipe, id.arch, id.channels);
            let allowance = self.allowance(id, &shards, listed);
            let inputs = self.inputs(id, &allowance.bound(&self.config.neural));
            match checkpoint::is_current(&dir, &inputs).then(|| checkpoint::read_card(&dir).ok()).flatten() {
                Some(card) => {
                    progress(id, TrainEvent::Finished(Status::Cached));
                    done.push((id, ModelRun::of_card(id, Status::Cached, &card, 0.0)));
                }
                None => {
                    let bound = allowance.bound(&self.config.neural);
                    let parent = Parent::find(&dir, &self.config.warm, &self.split.fitted, |split| {
                        self.inputs_with(id, &bound, split)
                    });
                    pending.push((id, inputs, allowance, parent));
                }
            }
        }
        pending.sort_by_key(|(id, ..)| std::cmp::Reverse(id.arch.relative_cost()));
        let Some(&(first, ..)) = pending.first() else { return done };
        let windows = match self.fit(first, shards) {
            Ok(windows) => windows,
            Err(why) => {
                done.extend(pending.into_iter().map(|(id, ..)| (id, ModelRun::failed(id, why.clone(), progress))));
                return done;
            }
        };
        let memory = Memory::of_mb(self.config.memory_mb);
        let gate = Gate::new(memory.bytes().saturating_sub(windows.cache.0.bytes() + windows.cache.1.bytes()));
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, pending.len()) {
                scope.spawn(|| {
                    while let Some((id, inputs, allowance, parent)) = pending.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        if self.stop.load(Ordering::Relaxed) {
                            results.lock().unwrap_or_else(|p| p.into_inner()).push((*id, stopped(*id, progress)));
                            continue;
                        }
                        let held = gate.enter(allowance.need());
                        let run = self.train_one(*id, inputs, allowance, parent.as_ref(), &windows, progress);
                        drop(held);
                        if run.status == Status::Computed {
                            progress(*id, TrainEvent::Finished(Status::Computed));
                        }
                        results.lock().unwrap_or_else(|p| p.into_inner()).push((*id, run));
                    }
                });
            }
        });
        done.extend(results.into_inner().unwrap_or_else(|p| p.into_inner()));
        done
    }

    /// The group's one shared pass over its validation side (its count)
    /// and over its training side (its class counts and, for networks, its
    /// normalisation, fitted streaming); each keeps what fits of the group's
    /// cache, the validation side first: every epoch scores all of it, and
    /// its windows are a few in every shard, so a validation pass from disk
    /// decodes every shard for them while a training shard from disk costs
    /// only its own decoding.
    fn fit(&self, id: ModelId, shards: FeatureShards) -> Result<GroupWindows, String> {
        let sides = self.split.sides.clone();
        let networks = self.ids.iter().any(|id| id.arch != Arch::Gbt);
        let group = if id.arch.input() == FeatureKind::Tensors { timesteps(self.manifest) } else { 1 };
        let mut moments = Moments::new(shards.width(), group);
        let mut counts = [0u64; CLASSES];
        let budget = Memory::of_mb(self.config.memory_mb).group_cache();
        let mut val_rows = 0;
        let val =
            ShardSide::new(&shards, &sides, Side::Val).read_keeping(budget, &mut |chunk| val_rows += chunk.rows())?;
        let train = ShardSide::new(&shards, &sides, Side::Train).read_keeping(budget - val.bytes(), &mut |chunk| {
            count_classes(&mut counts, &chunk.labels);
            if networks {
                moments.add(chunk);
            }
        })?;
        if counts.iter().sum::<u64>() == 0 {
            return Err(format!("the {} split has no training windows", self.split.recipe));
        }
        Ok(GroupWindows {
            shards,
            sides,
            cache: (train, val),
            class_counts: counts,
            val_rows,
            scale: networks.then(|| moments.finish()),
        })
    }

    fn train_one(
        &self,
        id: ModelId,
        inputs: &str,
        allowance: &Allowance,
        parent: Option<&Parent>,
        windows: &GroupWindows,
        progress: Progress,
    ) -> ModelRun {
        progress(id, TrainEvent::Started);
        let start = Instant::now();
        let device = device::training();
        let val_side = windows.side(Side::Val);
        // A network is updated only while its scaling still fits the data.
        let warm = parent.filter(|p| match (&windows.scale, id.arch) {
            (_, Arch::Gbt) => true,
            (Some(now), _) => p.scale_holds(now, &self.config.warm),
            (None, _) => false,
        });
        let trained = match warm {
            Some(parent) => self.update(id, allowance, parent, windows, &val_side, &device, progress),
            None => self.fit_anew(id, allowance, windows, &val_side, &device, progress),
        };
        let trained = match trained {
            _ if self.stop.load(Ordering::Relaxed) => return stopped(id, progress),
            Ok(t) => t,
            Err(why) => return ModelRun::failed(id, why, progress),
        };
        let wall_s = start.elapsed().as_secs_f64();
        let model = trained.model;
        let scale = trained.scale.as_ref();
        let val_metrics = match validate(&model, &val_side, scale, &device) {
            Ok((truth, probs)) => validation_metrics(&truth, &probs, &model),
            Err(why) => return ModelRun::failed(id, why, progress),
        };
        let rows = (windows.train_rows(), windows.val_rows);
        let mut card = self.card(id, inputs, rows, windows.shards.width(), trained.scale, val_metrics);
        card.config = allowance.recorded(self.settings(id.arch));
        card.training = TrainingCard {
            mode: TrainingMode::Full,
            parent_weights_sha256: None,
            windows_added: None,
            full_train_windows: rows.0,
            wall_s,
            windows_per_s: (trained.pass_windows * trained.passes) as f64 / wall_s.max(1e-9),
            best_round: model.best_round().map(|(round, _)| round),
            report: trained.report,
        };
        if let Some(parent) = warm {
            card.training.mode = TrainingMode::Warm;
            card.training.parent_weights_sha256 = Some(parent.card.weights_sha256.clone());
            card.training.windows_added = Some(parent.windows_added);
            card.training.full_train_windows = parent.full_train_windows();
        }
        let dir = checkpoint::dir_of(&self.dirs.out, id.recipe, id.arch, id.channels);
        if let Err(e) = checkpoint::save(&dir, &mut card, &model, self.split.fitted.values()) {
            return ModelRun::failed(id, format!("cannot write checkpoint {}: {e}", dir.display()), progress);
        }
        tracing::info!("{id}: validation macro F1 {:.3} in {wall_s:.1} s", card.val.macro_f1);
        ModelRun::of_card(id, Status::Computed, &card, wall_s)
    }

    /// Trains `id` from scratch on the group's training side.
    fn fit_anew(
        &self,
        id: ModelId,
        allowance: &Allowance,
        windows: &GroupWindows,
        val_side: &ShardSide,
        device: &burn::tensor::Device,
        progress: Progress,
    ) -> Result<Trained, String> {
        let train_side = windows.side(Side::Train);
        let pass_windows = windows.train_rows();
        match (id.arch, allowance, &windows.scale) {
            (Arch::Gbt, Allowance::Trees { sample, .. }, _) => {
                let gbt = Gbt::fit(&train_side, val_side, *sample, &self.config.gbt, None, self.stop)?;
                Ok(Trained::trees(gbt, pass_windows))
            }
            (arch, Allowance::Network { buffer, .. }, Some(scale)) => {
                let config = TrainConfig { shuffle_windows: *buffer, ..self.config.neural.clone() };
                let net = Net::new(arch, windows.shards.width(), timesteps(self.manifest), config.seed, device)
                    .ok_or_else(|| format!("{arch} is not a neural network"))?;
                let sides = Sides { train: &train_side, val: val_side, scale, class_counts: windows.class_counts };
                let (net, report) = train(net, &sides, &config, device, self.stop, |e| epoch(id, e, progress))?;
                Ok(Trained::network(net, scale.clone(), Some(report), pass_windows))
            }
            (arch, _, _) => Err(format!("no windows prepared for {arch}")),
        }
    }

    /// Updates `id` from `parent`, its checkpoint (see [`crate::warm`]): on
    /// the windows added and a seeded replay sample of the earlier ones, the
    /// trees boost a few rounds more, a network fine-tunes a few epochs with
    /// the checkpoint's scaling; with no training window added (only the
    /// validation side changed) the weights stay the parent's.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        id: ModelId,
        allowance: &Allowance,
        parent: &Parent,
        windows: &GroupWindows,
        val_side: &ShardSide,
        device: &burn::tensor::Device,
        progress: Progress,
    ) -> Result<Trained, String> {
        let warm = &self.config.warm;
        let seed = if id.arch == Arch::Gbt { self.config.gbt.seed } else { self.config.neural.seed };
        let sides = parent.update_sides(&self.split.fitted, warm, seed);
        let train_side = ShardSide::new(&windows.shards, &sides, Side::Train);
        let counts = match parent.windows_added {
            0 => [0; CLASSES],
            _ => class_counts(&train_side)?,
        };
        let pass_windows = counts.iter().sum::<u64>() as usize;
        match (id.arch, allowance) {
            (Arch::Gbt, Allowance::Trees { sample, .. }) => {
                let was = Gbt::from_bytes(&parent.weights)?;
                if pass_windows == 0 {
                    return Ok(Trained::trees(was, 0));
                }
                let config = GbtConfig { rounds: warm.rounds.max(1), ..self.config.gbt.clone() };
                let gbt = Gbt::fit(&train_side, val_side, *sample, &config, Some(&was), self.stop)?;
                Ok(Trained::trees(gbt, pass_windows))
            }
            (_, Allowance::Network { buffer, .. }) => {
                let scale = parent.card.normalisation.clone().ok_or("the checkpoint keeps no normalisation")?;
                let net = checkpoint::net_of(&parent.card, parent.weights.clone(), device)?;
                if pass_windows == 0 {
                    return Ok(Trained::network(net, scale, None, 0));
                }
                let config = TrainConfig {
                    shuffle_windows: *buffer,
                    max_epochs: warm.epochs.max(1),
                    patience: warm.epochs.max(1),
                    lr: self.config.neural.lr * warm.lr_scale,
                    ..self.config.neural.clone()
                };
                // The parent's weights are a candidate too: fine-tuning that
                // never beats them on validation leaves them as they were.
                let (truth, predicted) = score(&net, val_side, &scale, device)?;
                let start = Confusion::of(&truth, &predicted).macro_f1();
                let sides = Sides { train: &train_side, val: val_side, scale: &scale, class_counts: counts };
                let (tuned, mut report) =
                    train(net.clone(), &sides, &config, device, self.stop, |e| epoch(id, e, progress))?;
                if start >= report.best_val_macro_f1 {
                    (report.kept_start, report.best_val_macro_f1) = (true, start);
                    return Ok(Trained::network(net, scale, Some(report), pass_windows));
                }
                Ok(Trained::network(tuned, scale, Some(report), pass_windows))
            }
            (arch, _) => Err(format!("no windows prepared for {arch}")),
        }
    }

    fn card(
        &self,
        id: ModelId,
        inputs: &str,
        rows: (usize, usize),
        width: usize,
        normalisation: Option<Normalisation>,
        val: ValMetrics,
    ) -> ModelCard {
        let windows = [(Side::Train, rows.0), (Side::Val, rows.1)]
            .into_iter()
            .map(|(side, rows)| (side.name().to_string(), rows))
            .collect();
        ModelCard {
            arch: id.arch,
            arch_version: id.arch.version(),
            channels: id.channels,
            channel_list: id.channels.indices().into_iter().map(|i| CHANNELS[i].name.to_string()).collect(),
            input: id.arch.input().dir().to_string(),
            width,
            timesteps: timesteps(self.manifest),
            window: self.manifest.window.clone(),
            registry: self.manifest.channels.clone(),
            stats: self.manifest.stats.clone(),
            feature_schema_hash: self.manifest.feature_schema_hash.clone(),
            normalisation,
            split: SplitCard {
                recipe: id.recipe,
                episodes: self.split.episodes.clone(),
                windows,
                fingerprint: self.split.fingerprint.hex(),
                fitted_sha256: None,
            },
            config: self.settings(id.arch),
            val,
            training: TrainingCard {
                mode: TrainingMode::Full,
                parent_weights_sha256: None,
                windows_added: None,
                full_train_windows: rows.0,
                wall_s: 0.0,
                windows_per_s: 0.0,
                report: None,
                best_round: None,
            },
            inputs: inputs.to_string(),
            weights: String::new(),
            weights_sha256: String::new(),
        }
    }
}

/// A model just trained or updated, before it is scored and saved.
struct Trained {
    model: Model,
    /// A network's scaling (the trees need none).
    scale: Option<Normalisation>,
    /// A network's epochs (none when an update kept the parent's weights).
    report: Option<TrainReport>,
    /// Passes over the training windows (epochs or rounds), and the windows
    /// in each.
    passes: usize,
    pass_windows: usize,
}

impl Trained {
    fn trees(gbt: Gbt, pass_windows: usize) -> Trained {
        let passes = if pass_windows == 0 { 0 } else { gbt.rounds };
        Trained { model: Box::new(gbt), scale: None, report: None, passes, pass_windows }
    }

    fn network(net: Net, scale: Normalisation, report: Option<TrainReport>, pass_windows: usize) -> Trained {
        let passes = report.as_ref().map_or(0, |r| r.epochs.len());
        Trained { model: Box::new(net), scale: Some(scale), report, passes, pass_windows }
    }
}

/// A network's epoch, logged and told to `progress`.
fn epoch(id: ModelId, e: &Epoch, progress: Progress) {
    tracing::info!("{id}: epoch {} loss {:.4} validation macro F1 {:.3}", e.epoch, e.train_loss, e.val_macro_f1);
    progress(id, TrainEvent::Epoch(e))
}

/// What a model may hold under `[train] memory_mb`, and the bytes that is.
enum Allowance {
    /// A network's shuffle buffer.
    Network { buffer: usize, need: usize },
    /// The trees' draw of each side.
    Trees { sample: Sample, need: usize },
}

impl Allowance {
    /// Bytes the model holds.
    fn need(&self) -> usize {
        match self {
            Allowance::Network { need, .. } | Allowance::Trees { need, .. } => *need,
        }
    }

    /// What the budget changed, for the model's inputs: nothing when the
    /// model trains as it would with any budget.
    fn bound(&self, neural: &TrainConfig) -> String {
        match self {
            Allowance::Network { buffer, .. } if *buffer < neural.shuffle_windows => {
                format!("shuffle_windows={buffer}")
            }
            Allowance::Trees { sample, .. } if !sample.takes_all() => {
                format!("sample={}/{}", sample.train.most, sample.val.most)
            }
            _ => String::new(),
        }
    }

    /// The settings as the model trained with them, for its card: a
    /// network's shuffle buffer as used; the trees' sample when they took one.
    fn recorded(&self, mut settings: serde_json::Value) -> serde_json::Value {
        if let Some(fields) = settings.as_object_mut() {
            match self {
                Allowance::Network { buffer, .. } => {
                    fields.insert("shuffle_windows".into(), (*buffer).into());
                }
                Allowance::Trees { sample, .. } if !sample.takes_all() => {
                    fields.insert(
                        "sampled_windows".into(),
                        serde_json::json!({"train": sample.train.most, "val": sample.val.most}),
                    );
                }
                Allowance::Trees { .. } => {}
            }
        }
        settings
    }
}

/// A model whose training `stop` ended before it finished: its checkpoint
/// is left as it was.
fn stopped(id: ModelId, progress: Progress) -> ModelRun {
    ModelRun::failed(id, "stopped before it finished; its checkpoint is as it was".into(), progress)
}

/// Each validation window's class and the model's probabilities for it,
/// streamed (scaled for a network).
fn validate(
    model: &Model,
    val: &ShardSide,
    scale: Option<&Normalisation>,
    device: &burn::tensor::Device,
) -> Result<(Vec<u8>, Vec<f32>), String> {
    let (mut truth, mut probs) = (Vec::new(), Vec::new());
    let mut failed = None;
    stream(val, Pass { batch: PREDICT_BATCH, order: Order::Storage }, scale, |batch| {
        match model.predict(&batch, device) {
            Ok(p) => {
                truth.extend_from_slice(&batch.labels);
                probs.extend(p);
            }
            Err(why) => failed = Some(why),
        }
    })?;
    failed.map_or(Ok((truth, probs)), Err)
}

/// Tensor time steps per channel, from the manifest's window configuration.
fn timesteps(manifest: &Manifest) -> usize {
    manifest.window.get("timesteps").and_then(|t| t.as_u64()).unwrap_or(1) as usize
}

/// Macro and per-phase F1 on the validation side (and the trees' log loss).
fn validation_metrics(truth: &[u8], probs: &[f32], model: &Model) -> ValMetrics {
    let confusion = Confusion::of(truth, &argmax(probs));
    let per_class_f1 =
        Phase::ALL.iter().zip(confusion.f1()).filter_map(|(p, f1)| Some((p.name().to_string(), f1?))).collect();
    ValMetrics {
        macro_f1: confusion.macro_f1(),
        per_class_f1,
        logloss: model.best_round().and_then(|(_, logloss)| logloss),
    }
}
