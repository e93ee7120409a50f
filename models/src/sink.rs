//! The training sink (SPEC section 13): after a run has published its
//! feature shards and split files, every configured model — architecture ×
//! channel set × split — is trained and checkpointed, unless its checkpoint
//! was trained on exactly the same inputs, in which case it is reported
//! cached.
//!
//! A model's inputs are the feature schema hash, the split's placements with
//! each placed episode's archive hash and window count, the architecture and
//! its version, the channel set and the training settings. Windows are read
//! from the shards once per (input kind, channel set) and shared by the
//! architectures that read them; those models train side by side, one per
//! thread, each with its own seed.

use crate::arch::Arch;
use crate::checkpoint::{self, ModelCard, SplitCard, TrainingCard, ValMetrics};
use crate::classifier::Model;
use crate::device;
use crate::gbt::{Gbt, GbtConfig};
use crate::net::Net;
use crate::scoring::{argmax, Confusion};
use crate::train::{train, Epoch, TrainConfig};
use epiflow_operators::channels::{ChannelSet, Phase, CHANNELS};
use epiflow_operators::fingerprint::Fingerprint;
use epiflow_operators::split::{Assignment, Recipe, Side};
use epiflow_pipelines::feature_reader::{read_windows, WindowRows};
use epiflow_pipelines::normalise::Normalisation;
use epiflow_pipelines::sinks::features::FeatureKind;
use epiflow_pipelines::sinks::manifest::Manifest;
use epiflow_pipelines::sinks::splits;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
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
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            splits: Vec::new(),
            archs: Arch::ALL.to_vec(),
            channels: ChannelSet::ALL.to_vec(),
            neural: TrainConfig::default(),
            gbt: GbtConfig::default(),
        }
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
    /// A neural model finished an epoch.
    Epoch(&'a Epoch),
    /// A model is done: trained, found cached, or failed.
    Finished(Status),
}

/// Hears every [`TrainEvent`] of every model, from any training thread.
pub type Progress<'a> = &'a (dyn Fn(ModelId, TrainEvent) + Sync);

/// Trains every model `config` asks for from the features and splits under
/// `out`, on up to `threads` threads, and checkpoints them under
/// `out/models`. One line per model, in configuration order.
pub fn train_models(out: &Path, config: &ModelsConfig, threads: usize, progress: Progress) -> Vec<ModelRun> {
    let ids: Vec<ModelId> = config
        .splits
        .iter()
        .flat_map(|&recipe| {
            config
                .channels
                .iter()
                .flat_map(move |&channels| config.archs.iter().map(move |&arch| ModelId { recipe, arch, channels }))
        })
        .collect();
    let features = out.join("features");
    let Some(manifest) = Manifest::read(&features) else {
        let why = format!("no features in {}: run `epiflow run` first", features.display());
        return ids.into_iter().map(|id| ModelRun::failed(id, why.clone(), progress)).collect();
    };
    let mut runs: BTreeMap<ModelId, ModelRun> = BTreeMap::new();
    for &recipe in &config.splits {
        let of_recipe: Vec<ModelId> = ids.iter().copied().filter(|id| id.recipe == recipe).collect();
        match splits::read(&out.join("splits"), recipe) {
            Err(why) => runs.extend(of_recipe.into_iter().map(|id| (id, ModelRun::failed(id, why.clone(), progress)))),
            Ok(assignments) => {
                let split = SplitInputs::of(recipe, &assignments, &manifest);
                for group in by_windows(of_recipe, |id| (id.arch, id.channels)) {
                    let job = GroupJob { out, manifest: &manifest, split: &split, config, ids: group };
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

/// Fingerprint of a split as a model sees it: every placed episode's side,
/// and the sha256 and window count of its features. A checkpoint records
/// the one it was trained on; evaluation refuses a model whose split moved,
/// as the new test side may hold episodes it trained on.
pub fn split_fingerprint(recipe: Recipe, assignments: &[Assignment], manifest: &Manifest) -> Fingerprint {
    let mut lines: Vec<String> = assignments
        .iter()
        .map(|a| {
            let key = format!("{}/{}", a.host_id, a.episode_id);
            let (sha, windows) = manifest.episodes.get(&key).map_or(("", 0), |e| (e.sha256.as_str(), e.windows));
            format!("{key}|{}|{sha}|{windows}", a.side.name())
        })
        .collect();
    lines.sort_unstable();
    Fingerprint::of_parts(&[recipe.name().as_bytes(), lines.join("\n").as_bytes()])
}

/// A split as training sees it: where each episode goes, and a fingerprint
/// of the placements and of the features of every placed episode.
struct SplitInputs {
    recipe: Recipe,
    sides: HashMap<(String, String), Side>,
    episodes: BTreeMap<String, usize>,
    fingerprint: Fingerprint,
}

impl SplitInputs {
    fn of(recipe: Recipe, assignments: &[Assignment], manifest: &Manifest) -> SplitInputs {
        let mut episodes = BTreeMap::new();
        for a in assignments {
            *episodes.entry(a.side.name().to_string()).or_insert(0) += 1;
        }
        SplitInputs {
            recipe,
            sides: assignments.iter().map(|a| ((a.host_id.clone(), a.episode_id.clone()), a.side)).collect(),
            episodes,
            fingerprint: split_fingerprint(recipe, assignments, manifest),
        }
    }

    /// Only the training and validation placements: training never reads
    /// the test side.
    fn fitting_sides(&self) -> HashMap<(String, String), Side> {
        self.sides.iter().filter(|(_, &s)| s != Side::Test).map(|(k, &s)| (k.clone(), s)).collect()
    }
}

/// The models of one group of one split.
struct GroupJob<'a> {
    out: &'a Path,
    manifest: &'a Manifest,
    split: &'a SplitInputs,
    config: &'a ModelsConfig,
    ids: Vec<ModelId>,
}

/// A group's training and validation windows in the forms its models take:
/// raw for trees, normalised for networks. A form no model of the group
/// takes is not kept, so a tensor group (networks only) holds one copy.
struct Sides {
    /// Windows on the training and the validation side.
    rows: (usize, usize),
    /// Values per window.
    width: usize,
    /// (train, val) as read, when the group has trees.
    raw: Option<(WindowRows, WindowRows)>,
    /// The normalisation fitted on train, and (train, val) with it applied,
    /// when the group has networks.
    normalised: Option<(Normalisation, WindowRows, WindowRows)>,
}

impl GroupJob<'_> {
    /// Fingerprint of everything `id`'s weights depend on.
    fn inputs(&self, id: ModelId) -> String {
        let settings = self.settings(id.arch).to_string();
        Fingerprint::of_parts(&[
            self.manifest.feature_schema_hash.as_bytes(),
            &self.split.fingerprint.0,
            id.arch.name().as_bytes(),
            &id.arch.version().to_le_bytes(),
            id.channels.name().as_bytes(),
            settings.as_bytes(),
        ])
        .hex()
    }

    /// The architecture's training settings, as recorded in its card.
    fn settings(&self, arch: Arch) -> serde_json::Value {
        match arch {
            Arch::Gbt => serde_json::to_value(&self.config.gbt),
            _ => serde_json::to_value(&self.config.neural),
        }
        .unwrap_or_default()
    }

    fn run(self, threads: usize, progress: Progress) -> Vec<(ModelId, ModelRun)> {
        let mut done = Vec::new();
        let mut pending = Vec::new();
        for &id in &self.ids {
            let dir = checkpoint::dir_of(self.out, id.recipe, id.arch, id.channels);
            let inputs = self.inputs(id);
            match checkpoint::is_current(&dir, &inputs).then(|| checkpoint::read_card(&dir).ok()).flatten() {
                Some(card) => {
                    progress(id, TrainEvent::Finished(Status::Cached));
                    done.push((id, ModelRun::of_card(id, Status::Cached, &card, 0.0)));
                }
                None => pending.push((id, inputs)),
            }
        }
        pending.sort_by_key(|(id, _)| std::cmp::Reverse(id.arch.relative_cost()));
        let Some(&(first, _)) = pending.first() else { return done };
        let sides = match self.read(first) {
            Ok(sides) => sides,
            Err(why) => {
                done.extend(pending.into_iter().map(|(id, _)| (id, ModelRun::failed(id, why.clone(), progress))));
                return done;
            }
        };
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, pending.len()) {
                scope.spawn(|| {
                    while let Some((id, inputs)) = pending.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let run = self.train_one(*id, inputs, &sides, progress);
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

    /// Reads the group's training and validation windows once.
    fn read(&self, id: ModelId) -> Result<Sides, String> {
        let kind = id.arch.input();
        let mut windows =
            read_windows(&self.out.join("features"), self.manifest, kind, id.channels, &self.split.fitting_sides())
                .map_err(|e| e.to_string())?;
        let mut train = windows.sides.remove(&Side::Train).unwrap_or_default();
        let mut val = windows.sides.remove(&Side::Val).unwrap_or_default();
        if train.rows() == 0 {
            return Err(format!("the {} split has no training windows", self.split.recipe));
        }
        let (rows, width) = ((train.rows(), val.rows()), train.width);
        let trees = self.ids.iter().any(|id| id.arch == Arch::Gbt);
        let networks = self.ids.iter().any(|id| id.arch != Arch::Gbt);
        let normalised = networks.then(|| {
            let group = if kind == FeatureKind::Tensors { timesteps(self.manifest) } else { 1 };
            let norm = Normalisation::fit(&train, group);
            let (mut t, mut v) = if trees {
                (train.clone(), val.clone())
            } else {
                (std::mem::take(&mut train), std::mem::take(&mut val))
            };
            norm.apply(&mut t);
            norm.apply(&mut v);
            (norm, t, v)
        });
        Ok(Sides { rows, width, raw: trees.then_some((train, val)), normalised })
    }

    fn train_one(&self, id: ModelId, inputs: &str, sides: &Sides, progress: Progress) -> ModelRun {
        let start = Instant::now();
        let device = device::training();
        let trained = match (id.arch, &sides.normalised) {
            (Arch::Gbt, _) => match &sides.raw {
                None => Err("no raw windows for gbt".to_string()),
                Some((train, val)) => Gbt::fit(train, val, &self.config.gbt).map(|gbt| {
                    let passes = gbt.rounds;
                    (Box::new(gbt) as Model, None, val, passes)
                }),
            },
            (arch, Some((norm, train_n, val_n))) => {
                let config = &self.config.neural;
                match Net::new(arch, train_n.width, timesteps(self.manifest), config.seed, &device) {
                    None => Err(format!("{arch} is not a neural network")),
                    Some(net) => {
                        let (net, report) = train(net, train_n, val_n, config, &device, |e| {
                            tracing::info!(
                                "{id}: epoch {} loss {:.4} validation macro F1 {:.3}",
                                e.epoch,
                                e.train_loss,
                                e.val_macro_f1
                            );
                            progress(id, TrainEvent::Epoch(e))
                        });
                        let passes = report.epochs.len();
                        Ok((Box::new(net) as Model, Some((norm.clone(), report)), val_n, passes))
                    }
                }
            }
            (arch, None) => Err(format!("no normalised windows for {arch}")),
        };
        let (model, neural, val, passes) = match trained {
            Ok(t) => t,
            Err(why) => return ModelRun::failed(id, why, progress),
        };
        let wall_s = start.elapsed().as_secs_f64();
        let val_metrics = match model.predict(val, &device) {
            Ok(probs) => validation_metrics(&val.labels, &probs, &model),
            Err(why) => return ModelRun::failed(id, why, progress),
        };
        let (normalisation, report) = neural.map_or((None, None), |(n, r)| (Some(n), Some(r)));
        let mut card = self.card(id, inputs, sides, normalisation, val_metrics);
        card.training = TrainingCard {
            wall_s,
            windows_per_s: (sides.rows.0 * passes) as f64 / wall_s.max(1e-9),
            best_round: model.best_round().map(|(round, _)| round),
            report,
        };
        let dir = checkpoint::dir_of(self.out, id.recipe, id.arch, id.channels);
        if let Err(e) = checkpoint::save(&dir, &mut card, &model) {
            return ModelRun::failed(id, format!("cannot write checkpoint {}: {e}", dir.display()), progress);
        }
        tracing::info!("{id}: validation macro F1 {:.3} in {wall_s:.1} s", card.val.macro_f1);
        ModelRun::of_card(id, Status::Computed, &card, wall_s)
    }

    fn card(
        &self,
        id: ModelId,
        inputs: &str,
        sides: &Sides,
        normalisation: Option<Normalisation>,
        val: ValMetrics,
    ) -> ModelCard {
        let windows = [(Side::Train, sides.rows.0), (Side::Val, sides.rows.1)]
            .into_iter()
            .map(|(side, rows)| (side.name().to_string(), rows))
            .collect();
        ModelCard {
            arch: id.arch,
            arch_version: id.arch.version(),
            channels: id.channels,
            channel_list: id.channels.indices().into_iter().map(|i| CHANNELS[i].name.to_string()).collect(),
            input: id.arch.input().dir().to_string(),
            width: sides.width,
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
            },
            config: self.settings(id.arch),
            val,
            training: TrainingCard { wall_s: 0.0, windows_per_s: 0.0, report: None, best_round: None },
            inputs: inputs.to_string(),
            weights: String::new(),
            weights_sha256: String::new(),
        }
    }
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
