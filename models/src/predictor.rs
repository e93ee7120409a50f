//! Live inference (SPEC section 15): a trained model classifying one
//! episode's windows straight from its archive, without shards — what the
//! board beside a running VM does.
//!
//! A [`Predictor`] holds one checkpoint and the operators of the batch
//! pipeline configured as the checkpoint was trained: decode and align, then
//! the checkpoint's own window configuration for summary windows or tensors,
//! the rows cut to its channel set exactly as the shard reader cuts them, its
//! training normalisation, its weights. So its probabilities are those the
//! evaluation computes from the shards for the same episode.

use crate::arch::Arch;
use crate::checkpoint::{read_card, Checkpoint};
use crate::scoring::argmax;
use crate::CLASSES;
use epiflow_operators::align::Align;
use epiflow_operators::channels::{ChannelSet, Phase};
use epiflow_operators::decode::Decode;
use epiflow_operators::model::{AlignedEpisode, EpisodeKey, Failure, N_CHANNELS};
use epiflow_operators::tensor::Tensor;
use epiflow_operators::validate::{Outcome, Validate, ValidationRecord};
use epiflow_operators::window::{Window, Windows, STATS};
use epiflow_operators::Operator;
use epiflow_pipelines::feature_reader::WindowRows;
use epiflow_pipelines::sinks::features::FeatureKind;
use epiflow_pipelines::sinks::manifest::Manifest;
use std::path::Path;
use std::time::Instant;

/// One window's prediction.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Seconds since the episode's first label.
    pub window_start_s: f64,
    /// The most probable phase.
    pub predicted: Phase,
    /// Per phase, in class-id order (clean, exploiting, infected_idle,
    /// infected_running, dormant).
    pub probabilities: [f32; CLASSES],
    /// The labelled phase at the window's centre. Windows exist only where
    /// the archive's labels say which phase it is, as in the batch pipeline,
    /// so an archive without labels has no window.
    pub truth: Option<Phase>,
}

/// What became of one archive.
#[derive(Clone, Debug)]
pub struct Inferred {
    /// Validation's verdict, as `epiflow validate` gives it.
    pub validation: ValidationRecord,
    /// The windows' predictions: none unless the episode is usable.
    pub windows: Vec<Prediction>,
    /// Seconds reading, decoding, aligning and validating the archive.
    pub decode_s: f64,
    /// Seconds cutting windows and running the model on them.
    pub predict_s: f64,
}

/// One checkpoint ready to classify episodes.
pub struct Predictor {
    checkpoint: Checkpoint,
    decode: Decode,
    validate: Validate,
    window: Window,
    tensor: Tensor,
}

impl Predictor {
    /// Loads the checkpoint in `dir` with the features its card describes;
    /// refuses it when this binary computes other features for that
    /// configuration (SPEC section 13), naming both schema hashes.
    pub fn load(dir: &Path, decode: Decode, validate: Validate) -> Result<Predictor, String> {
        let card = read_card(dir)?;
        let (window, tensor) =
            Manifest::operators_of(&card.window).map_err(|e| format!("{}: {e}", dir.join("model.json").display()))?;
        let checkpoint = Checkpoint::load(dir, &Manifest::describing(&window, &tensor))?;
        Ok(Predictor { checkpoint, decode, validate, window, tensor })
    }

    /// The architecture of the loaded model.
    pub fn arch(&self) -> Arch {
        self.checkpoint.card.arch
    }

    /// The window length the checkpoint was trained with.
    pub fn window_s(&self) -> f64 {
        self.window.spec.window_s
    }

    /// The tensor operator as the checkpoint configures it (its rate and
    /// hold bin a replay's telemetry).
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// The channel set the model reads.
    pub fn channels(&self) -> ChannelSet {
        self.checkpoint.card.channels
    }

    /// The model's name, `<arch>-<channels>`.
    pub fn model_name(&self) -> String {
        crate::checkpoint::model_name(self.checkpoint.card.arch, self.checkpoint.card.channels)
    }

    /// Decodes and aligns archive bytes with this predictor's decoder, and
    /// validates the episode: what a replay starts from.
    pub fn align(
        &self,
        bytes: &[u8],
        key: EpisodeKey,
        file: &str,
    ) -> Result<(AlignedEpisode, ValidationRecord), Failure> {
        let aligned = Align.apply(&self.decode.decode_bytes(bytes, key, None, file)?);
        let validation = self.validate.apply(&aligned);
        Ok((aligned, validation))
    }

    /// Reads, decodes, validates and — when the episode is usable — classifies
    /// the archive at `path`. The key names the episode after the archive's
    /// folder (host) and file stem (episode id), as the store lays them out.
    pub fn infer_path(&self, path: &Path) -> Inferred {
        let start = Instant::now();
        let key = EpisodeKey {
            host_id: path.parent().and_then(|p| p.file_name()).map_or("-".into(), |h| h.to_string_lossy().into()),
            episode_id: path
                .file_name()
                .map_or("-".into(), |f| f.to_string_lossy().trim_end_matches(".tar.zst").to_string()),
        };
        match self.decode.read_archive(path) {
            Ok(bytes) => self.infer_bytes(&bytes, key, &path.display().to_string(), start),
            Err(failure) => self.failed(key, &failure, start),
        }
    }

    /// [`Predictor::infer_path`] for archive bytes already in memory; `file`
    /// names the archive in problems, `start` is when the work began.
    pub fn infer_bytes(&self, bytes: &[u8], key: EpisodeKey, file: &str, start: Instant) -> Inferred {
        let (aligned, validation) = match self.align(bytes, key.clone(), file) {
            Ok(read) => read,
            Err(failure) => return self.failed(key, &failure, start),
        };
        let decode_s = start.elapsed().as_secs_f64();
        if !validation.outcome.is_usable() {
            return Inferred { validation, windows: Vec::new(), decode_s, predict_s: 0.0 };
        }
        let predicting = Instant::now();
        match self.infer_aligned(&aligned) {
            Ok(windows) => Inferred { validation, windows, decode_s, predict_s: predicting.elapsed().as_secs_f64() },
            Err(e) => Inferred {
                validation: ValidationRecord {
                    outcome: Outcome::Errored,
                    detail: Some(format!("{file}: the model failed: {e}")),
                    ..validation
                },
                windows: Vec::new(),
                decode_s,
                predict_s: predicting.elapsed().as_secs_f64(),
            },
        }
    }

    /// Classifies the windows of an aligned episode.
    pub fn infer_aligned(&self, aligned: &AlignedEpisode) -> Result<Vec<Prediction>, String> {
        let (times, windows) = self.windows(aligned);
        if times.is_empty() {
            return Ok(Vec::new());
        }
        let probabilities = self.checkpoint.predict(windows)?;
        let predicted = argmax(&probabilities);
        let rows = probabilities.chunks_exact(CLASSES).zip(predicted).zip(times.starts.iter().zip(&times.labels));
        Ok(rows
            .map(|((p, class), (&start, &truth))| Prediction {
                window_start_s: start,
                predicted: Phase::ALL[class as usize],
                probabilities: p.try_into().unwrap_or([f32::NAN; CLASSES]),
                truth: Some(truth),
            })
            .collect())
    }

    /// The episode's windows as the model takes them: the features the
    /// architecture needs, cut to the card's channel set in the shard
    /// reader's layout (summary: the set's `channel × stat` values;
    /// tensors: the set's channels, channel-major, with their mask).
    fn windows(&self, aligned: &AlignedEpisode) -> (Windows, WindowRows) {
        let channels = self.checkpoint.card.channels.indices();
        match self.checkpoint.card.arch.input() {
            FeatureKind::Summary => {
                let features = self.window.apply(aligned);
                let windows = WindowRows {
                    width: channels.len() * STATS.len(),
                    x: keep_channels(&features.values, &channels, STATS.len()),
                    labels: labels(&features.windows),
                    ..WindowRows::default()
                };
                (features.windows, windows)
            }
            FeatureKind::Tensors => {
                let features = self.tensor.apply(aligned);
                let steps = features.timesteps;
                let windows = WindowRows {
                    width: channels.len() * steps,
                    x: keep_channels(&features.x, &channels, steps),
                    mask: Some(keep_channels(&features.mask, &channels, steps)),
                    labels: labels(&features.windows),
                    ..WindowRows::default()
                };
                (features.windows, windows)
            }
        }
    }

    /// The verdict on an archive that could not be read.
    fn failed(&self, key: EpisodeKey, failure: &Failure, start: Instant) -> Inferred {
        let entry =
            epiflow_operators::index::IndexEntry { key, sha256: None, bytes: None, received_at_ns: None, line: 0 };
        let validation = ValidationRecord::errored(&entry, failure);
        Inferred { validation, windows: Vec::new(), decode_s: start.elapsed().as_secs_f64(), predict_s: 0.0 }
    }
}

/// Of rows holding every registry channel's `per_channel` values in
/// registry order, the values of `channels`, row by row.
fn keep_channels<T: Copy>(values: &[T], channels: &[usize], per_channel: usize) -> Vec<T> {
    let rows = values.chunks_exact(N_CHANNELS * per_channel);
    rows.flat_map(|row| channels.iter().flat_map(move |&c| &row[c * per_channel..(c + 1) * per_channel]))
        .copied()
        .collect()
}

/// The windows' class ids.
fn labels(windows: &Windows) -> Vec<u8> {
    windows.labels.iter().map(|p| p.class_id()).collect()
}
