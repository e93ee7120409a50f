//! Checkpoints (SPEC section 13): `OUT/models/<recipe>/<arch>-<channels>/`
//! holds the weights and a `model.json` card saying what the model was
//! trained on — architecture, channels, window configuration, normalisation,
//! feature schema hash, split, validation metrics, training time.
//!
//! The card is written last: a checkpoint is whole once its card names the
//! sha256 of the weights beside it, so a run killed between the two files
//! leaves a checkpoint that reads as stale and is trained again, never one
//! that loads the wrong weights. Loading refuses weights whose feature schema
//! differs from the current features, naming both hashes and what changed.

use crate::arch::Arch;
use crate::classifier::Model;
use crate::device;
use crate::gbt::Gbt;
use crate::net::Net;
use crate::train::TrainReport;
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use epiflow_operators::archive::sha256_hex;
use epiflow_operators::channels::ChannelSet;
use epiflow_operators::split::{Recipe, Side};
use epiflow_pipelines::feature_reader::WindowRows;
use epiflow_pipelines::normalise::Normalisation;
use epiflow_pipelines::output::write_atomically;
use epiflow_pipelines::sinks::manifest::Manifest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The card's file name.
pub const CARD: &str = "model.json";

/// The file beside the card listing the episodes the model learned from,
/// one `host_id<TAB>episode_id<TAB>side<TAB>sha256<TAB>windows` line each
/// (train and val; the archive hash and window count of the features it
/// learned), so an evaluation can refuse it exactly when one of them is now
/// a test episode, and a later run can tell what was added since.
pub const FITTED: &str = "fitted.tsv";

/// One episode a model learned from: a line of [`FITTED`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FittedEpisode {
    /// The lab host.
    pub host_id: String,
    /// The episode.
    pub episode_id: String,
    /// `train` or `val`.
    pub side: Side,
    /// sha256 of the archive its features came from (empty in lists written
    /// before it was kept).
    pub sha256: String,
    /// Its windows (`None` in lists written before they were kept).
    pub windows: Option<usize>,
}

impl FittedEpisode {
    fn line(&self) -> String {
        let windows = self.windows.map_or(String::new(), |w| w.to_string());
        format!("{}\t{}\t{}\t{}\t{windows}\n", self.host_id, self.episode_id, self.side.name(), self.sha256)
    }
}

/// A model's name within its split, `<arch>-<channels>`: its checkpoint
/// folder and its name in reports.
pub fn model_name(arch: Arch, channels: ChannelSet) -> String {
    format!("{}-{}", arch.name(), channels.name())
}

/// Where a model's checkpoint lives under `out`.
pub fn dir_of(out: &Path, recipe: Recipe, arch: Arch, channels: ChannelSet) -> PathBuf {
    out.join("models").join(recipe.name()).join(model_name(arch, channels))
}

/// What the model was trained on and how it did: `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The architecture.
    pub arch: Arch,
    /// The architecture's version when trained: a newer one retrains.
    pub arch_version: u32,
    /// The channel set, and its channels in input order.
    pub channels: ChannelSet,
    /// The set's channels, in input order.
    pub channel_list: Vec<String>,
    /// `summary` or `tensors`.
    pub input: String,
    /// Values per window, and time steps per channel (tensors).
    pub width: usize,
    /// Tensors only: time steps per channel.
    pub timesteps: usize,
    /// The features' window configuration, registry channels and statistics
    /// (what the schema hash covers that a person can read).
    pub window: serde_json::Value,
    /// Every channel of the registry, in order.
    pub registry: Vec<String>,
    /// The summary statistics, in column order.
    pub stats: Vec<String>,
    /// The features' schema hash: a model refuses features of another.
    pub feature_schema_hash: String,
    /// Fitted on the training side; `None` for trees, which need none.
    pub normalisation: Option<Normalisation>,
    /// The split it was trained on.
    pub split: SplitCard,
    /// The architecture's training settings.
    pub config: serde_json::Value,
    /// How it did on the validation side.
    pub val: ValMetrics,
    /// How training went.
    pub training: TrainingCard,
    /// Fingerprint of everything the weights depend on (features, split,
    /// settings): a run retrains only when it changes.
    pub inputs: String,
    /// The weights' file name beside the card, and their sha256.
    pub weights: String,
    /// sha256 of the weights file, checked when loaded.
    pub weights_sha256: String,
}

/// The split a model was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitCard {
    /// The recipe.
    pub recipe: Recipe,
    /// Episodes per side learned from (train, val).
    pub episodes: BTreeMap<String, usize>,
    /// Windows per side.
    pub windows: BTreeMap<String, usize>,
    /// Fingerprint of the training and validation placements and their
    /// features: what the model learned from.
    pub fingerprint: String,
    /// sha256 of [`FITTED`], the list of those episodes beside the card
    /// (absent from cards written before it was kept).
    #[serde(default)]
    pub fitted_sha256: Option<String>,
}

/// Metrics on the validation side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValMetrics {
    /// Macro F1 over the phases on the validation side.
    pub macro_f1: f64,
    /// F1 per phase present on the validation side.
    pub per_class_f1: BTreeMap<String, f64>,
    /// Multi-class log loss at the kept round (trees).
    pub logloss: Option<f64>,
}

/// How a checkpoint's weights were made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainingMode {
    /// Trained from scratch.
    #[default]
    Full,
    /// Updated from an earlier checkpoint of the same model (continued
    /// boosting, fine-tuning) after its training side grew by a small share.
    Warm,
}

/// How training went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingCard {
    /// Trained from scratch, or updated from a parent checkpoint.
    #[serde(default)]
    pub mode: TrainingMode,
    /// A warm update: the parent checkpoint's `weights_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_weights_sha256: Option<String>,
    /// A warm update: training windows added since the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_added: Option<usize>,
    /// Training windows when the model was last trained from scratch: warm
    /// updates stop, and a full training comes, once the side has grown by
    /// more than the allowed share of these.
    #[serde(default)]
    pub full_train_windows: usize,
    /// Seconds spent training.
    pub wall_s: f64,
    /// Training windows per second of wall time, over every epoch or round.
    pub windows_per_s: f64,
    /// Neural models: the epochs run and the one kept.
    pub report: Option<TrainReport>,
    /// Trees: the round kept.
    pub best_round: Option<usize>,
}

/// Writes the list of the episodes `model` learned from (`fitted`, the
/// training and validation placements), its weights, then its card, into
/// `dir`.
pub fn save<'a>(
    dir: &Path,
    card: &mut ModelCard,
    model: &Model,
    fitted: impl IntoIterator<Item = &'a FittedEpisode>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut lines: Vec<String> = fitted.into_iter().map(FittedEpisode::line).collect();
    lines.sort_unstable();
    let listed = lines.concat();
    write_atomically(&dir.join(FITTED), |w| w.write_all(listed.as_bytes()))?;
    card.split.fitted_sha256 = Some(sha256_hex(listed.as_bytes()));
    let (name, bytes) = model.weights().map_err(io::Error::other)?;
    write_atomically(&dir.join(name), |w| w.write_all(&bytes))?;
    card.weights = name.to_string();
    card.weights_sha256 = sha256_hex(&bytes);
    let text = serde_json::to_vec_pretty(card).map_err(io::Error::other)?;
    write_atomically(&dir.join(CARD), |w| w.write_all(&text))
}

/// Reads a checkpoint's card.
pub fn read_card(dir: &Path) -> Result<ModelCard, String> {
    let path = dir.join(CARD);
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The episodes the checkpoint in `dir` learned from, as its card's
/// [`FITTED`] list names them; an error when the card keeps no list or the
/// file beside it is not that list.
pub fn read_fitted(dir: &Path, card: &ModelCard) -> Result<Vec<FittedEpisode>, String> {
    let Some(sha256) = &card.split.fitted_sha256 else {
        return Err("its card does not list the episodes it learned from (an older checkpoint)".into());
    };
    let path = dir.join(FITTED);
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if sha256_hex(&text) != *sha256 {
        return Err(format!("{}: not the list of episodes {CARD} describes", path.display()));
    }
    let text = String::from_utf8(text).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let bad = || {
                format!(
                    "{}:{}: expected host, episode, side, sha256 and windows separated by tabs",
                    path.display(),
                    n + 1
                )
            };
            let fields: Vec<&str> = line.split('\t').collect();
            // Lists written before the features were kept have three fields.
            let (host, episode, side, sha256, windows) = match fields[..] {
                [host, episode, side] => (host, episode, side, "", None),
                [host, episode, side, sha256, windows] => {
                    (host, episode, side, sha256, Some(windows.parse().map_err(|_| bad())?))
                }
                _ => return Err(bad()),
            };
            Ok(FittedEpisode {
                host_id: host.to_string(),
                episode_id: episode.to_string(),
                side: Side::parse(side).ok_or_else(bad)?,
                sha256: sha256.to_string(),
                windows,
            })
        })
        .collect()
}

/// Whether `dir` holds a whole checkpoint trained on `inputs`: its card
/// names them and the weights beside it are the ones the card hashed.
pub fn is_current(dir: &Path, inputs: &str) -> bool {
    let Ok(card) = read_card(dir) else { return false };
    card.inputs == inputs && std::fs::read(dir.join(&card.weights)).is_ok_and(|b| sha256_hex(&b) == card.weights_sha256)
}

/// The weights beside the card in `dir`, checked against its sha256.
pub fn read_weights(dir: &Path, card: &ModelCard) -> Result<Vec<u8>, String> {
    let path = dir.join(&card.weights);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    match sha256_hex(&bytes) == card.weights_sha256 {
        true => Ok(bytes),
        false => Err(format!("{}: the weights are not the ones {CARD} describes", path.display())),
    }
}

/// The network `card` describes with the weights `bytes`, on `device` (the
/// inference device to predict, the training device to fine-tune).
pub fn net_of(card: &ModelCard, bytes: Vec<u8>, device: &Device) -> Result<Net, String> {
    let net = Net::new(card.arch, card.width, card.timesteps, 0, device)
        .ok_or_else(|| format!("{} is not a neural network", card.arch))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| format!("{e:?}"))?;
    net.try_load_record(record).map_err(|e| format!("{e:?}"))
}

/// A checkpoint loaded for prediction.
pub struct Checkpoint {
    /// What the model was trained on and how it did.
    pub card: ModelCard,
    /// The model itself, its weights loaded.
    pub model: Model,
    /// The CPU device inference runs on: no autodiff, as nothing is learned.
    device: Device,
}

impl Checkpoint {
    /// Loads the checkpoint in `dir` for use with the features `current`
    /// describes; refuses it when they are not the features it was trained on.
    pub fn load(dir: &Path, current: &Manifest) -> Result<Checkpoint, String> {
        let device = device::inference();
        let card = read_card(dir)?;
        if let Some(why) = schema_mismatch(&card, current) {
            return Err(format!("{}: {why}", dir.display()));
        }
        let bytes = read_weights(dir, &card)?;
        let path = dir.join(&card.weights);
        let model: Model = match card.arch {
            Arch::Gbt => Box::new(Gbt::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?),
            _ => Box::new(net_of(&card, bytes, &device).map_err(|e| format!("{}: {e}", path.display()))?),
        };
        Ok(Checkpoint { card, model, device })
    }

    /// Class probabilities for raw windows (read from the shards with the
    /// card's channel set): normalised as in training, then predicted.
    pub fn predict(&self, mut windows: WindowRows) -> Result<Vec<f32>, String> {
        if windows.width != self.card.width {
            return Err(format!("windows have {} values, the model takes {}", windows.width, self.card.width));
        }
        if let Some(norm) = &self.card.normalisation {
            norm.apply(&mut windows);
        }
        self.model.predict(&windows, &self.device)
    }
}

/// Why a checkpoint cannot be used with the `current` features, if it
/// cannot: both schema hashes and what differs between them.
pub fn schema_mismatch(card: &ModelCard, current: &Manifest) -> Option<String> {
    if card.feature_schema_hash == current.feature_schema_hash {
        return None;
    }
    let mut changed = Vec::new();
    let keys: std::collections::BTreeSet<&String> =
        card.window.as_object().into_iter().chain(current.window.as_object()).flat_map(|o| o.keys()).collect();
    for key in keys {
        let (was, now) = (&card.window[key.as_str()], &current.window[key.as_str()]);
        if was != now {
            changed.push(format!("{key} {was} -> {now}"));
        }
    }
    if card.registry != current.channels {
        changed.push("the channel registry".into());
    }
    if card.stats != current.stats {
        changed.push(format!("the statistics {:?} -> {:?}", card.stats, current.stats));
    }
    if changed.is_empty() {
        changed.push("the version of an operator that shapes features (decode, align, window or tensor)".into());
    }
    Some(format!(
        "trained on features with schema hash {} but the current features have {}: changed {}; retrain it (`epiflow train`)",
        card.feature_schema_hash,
        current.feature_schema_hash,
        changed.join(", ")
    ))
}
