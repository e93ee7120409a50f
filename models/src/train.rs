//! The one training loop of the neural models (SPEC section 13):
//! class-weighted cross-entropy, AdamW, linear warm-up then cosine decay of
//! the learning rate, gradient-norm clipping, early stopping on validation
//! macro F1 with patience, the best-on-validation weights kept, seeded.
//!
//! The loop is written once against [`Network`]; an architecture only says
//! how it turns a batch of windows into logits.

use crate::scoring::{argmax, weights_of_counts, Confusion};
use crate::stream::{stream, Order, Pass, Shuffle, WindowSource};
use crate::CLASSES;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use epiflow_operators::rng::SplitMix64;
use epiflow_pipelines::feature_reader::WindowRows;
use epiflow_pipelines::normalise::Normalisation;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// A model the loop can train: windows in, one logit per class out.
pub trait Network: Module {
    /// Logits, `batch × CLASSES`, for `rows` windows of `width` values
    /// (row-major in `x`).
    fn logits(&self, x: &[f32], rows: usize, width: usize, device: &Device) -> Tensor<2>;
}

/// Optimisation settings shared by every neural architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Most epochs.
    pub max_epochs: usize,
    /// Windows per batch.
    pub batch: usize,
    /// Peak learning rate, reached at the end of the warm-up.
    pub lr: f64,
    /// Share of all steps spent warming up.
    pub warmup: f64,
    /// AdamW's weight decay.
    pub weight_decay: f32,
    /// Gradient norm limit.
    pub clip_norm: f32,
    /// Epochs without a better validation macro F1 before stopping.
    pub patience: usize,
    /// Seed of the weights and the batch order.
    pub seed: u64,
    /// Windows the shuffle buffer of an epoch holds: epochs stream from the
    /// shards (in an order drawn per epoch) through this buffer, so it sets
    /// both how far apart the windows of a batch come from and the memory a
    /// model's training holds; a training side no larger is permuted whole.
    /// `[train] memory_mb` may lower it.
    pub shuffle_windows: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            max_epochs: 40,
            batch: 128,
            lr: 2e-3,
            warmup: 0.05,
            weight_decay: 1e-2,
            clip_norm: 1.0,
            patience: 6,
            seed: 7,
            shuffle_windows: 16_384,
        }
    }
}

/// One epoch, for progress reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    /// The epoch's number, from 0.
    pub epoch: usize,
    /// Mean training loss over its batches.
    pub train_loss: f64,
    /// Macro F1 on the validation side after it.
    pub val_macro_f1: f64,
    /// Learning rate at its end.
    pub lr: f64,
}

/// What training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Every epoch run.
    pub epochs: Vec<Epoch>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// The best validation macro F1: the weights kept.
    pub best_val_macro_f1: f64,
    /// A warm update whose fine-tuning never beat the weights it started
    /// from on validation: those were kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept_start: bool,
}

/// Learning rate at `step` of `total`: linear warm-up over the first
/// `warmup` share of steps, then cosine decay to zero.
pub fn learning_rate(step: usize, total: usize, warmup: f64, peak: f64) -> f64 {
    let warm = ((total as f64 * warmup).ceil() as usize).max(1);
    if step < warm {
        return peak * (step + 1) as f64 / warm as f64;
    }
    let progress = (step - warm) as f64 / (total.saturating_sub(warm)).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// The two sides a network trains on, streamed.
pub struct Sides<'a> {
    /// The training windows.
    pub train: &'a dyn WindowSource,
    /// The validation windows, scored after every epoch.
    pub val: &'a dyn WindowSource,
    /// The normalisation fitted on the training side, applied to every batch.
    pub scale: &'a Normalisation,
    /// The training side's windows per class (from its fitting pass).
    pub class_counts: [u64; CLASSES],
}

/// Trains `model`, keeping the weights of the epoch with the best
/// validation macro F1; `progress` hears each epoch. Each epoch streams the
/// training side in an order drawn from the seed alone (see
/// [`EpochOrders`]), the same whatever else runs beside it. Raising `stop`
/// ends it with an error: the batches left in the epoch under way are read
/// but not learned from.
pub fn train<N: Network>(
    mut model: N,
    sides: &Sides,
    config: &TrainConfig,
    device: &Device,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Epoch),
) -> Result<(N, TrainReport), String> {
    // CrossEntropyLoss wants every weight positive; a class absent from
    // training never appears as a target, so its weight is never used.
    let weights: Vec<f32> =
        weights_of_counts(&sides.class_counts).iter().map(|&w| if w > 0.0 { w } else { 1.0 }).collect();
    let loss_fn = CrossEntropyLossConfig::new().with_weights(Some(weights)).init(device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.clip_norm)))
        .init();
    let batch = config.batch.max(1);
    let rows = sides.class_counts.iter().sum::<u64>() as usize;
    let total = rows.div_ceil(batch) * config.max_epochs;
    let mut orders = EpochOrders::new(config, rows);
    let mut report =
        TrainReport { epochs: Vec::new(), best_epoch: 0, best_val_macro_f1: f64::NEG_INFINITY, kept_start: false };
    let mut best = model.clone();
    let mut step = 0;
    for epoch in 0..config.max_epochs {
        let (mut loss_sum, mut lr) = (0.0, 0.0);
        // The optimiser takes the model by value: it goes in and out of a slot.
        let mut slot = Some(model);
        stream(sides.train, Pass { batch, order: orders.next_epoch() }, Some(sides.scale), |b| {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(current) = slot.take() else { return };
            let targets: Vec<i64> = b.labels.iter().map(|&l| i64::from(l)).collect();
            let logits = current.logits(&b.x, b.rows(), b.width, device);
            let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [b.rows()]), device);
            let loss = loss_fn.forward(logits, targets);
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * b.rows() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &current);
            lr = learning_rate(step, total, config.warmup, config.lr);
            slot = Some(optim.step(lr, current, grads));
            step += 1;
        })?;
        if stop.load(Ordering::Relaxed) {
            return Err("stopped".into());
        }
        model = slot.ok_or("the model was lost in a training step")?;
        let (truth, predicted) = score(&model, sides.val, sides.scale, device)?;
        let f1 = Confusion::of(&truth, &predicted).macro_f1();
        let summary = Epoch { epoch, train_loss: loss_sum / rows.max(1) as f64, val_macro_f1: f1, lr };
        progress(&summary);
        report.epochs.push(summary);
        if f1 > report.best_val_macro_f1 {
            (report.best_epoch, report.best_val_macro_f1, best) = (epoch, f1, model.clone());
        } else if epoch - report.best_epoch >= config.patience {
            break;
        }
    }
    Ok((best, report))
}

/// Version of how epochs order the training windows: part of every
/// network's inputs, so a change of order retrains (it changes the weights,
/// not the settings).
pub const EPOCH_ORDER_VERSION: u32 = 2;

/// The order of each epoch's training windows, drawn from the training seed
/// alone. A side that fits in the shuffle buffer (`shuffle_windows`) is
/// permuted whole, each epoch shuffling the last epoch's permutation (a
/// uniform shuffle, and the order training in memory had); a larger side
/// streams through the buffer, with a seed per epoch for its shard order
/// and its draws.
pub struct EpochOrders {
    rng: SplitMix64,
    buffer: usize,
    permutation: Option<Vec<usize>>,
}

impl EpochOrders {
    /// The orders for a training side of `windows` windows.
    pub fn new(config: &TrainConfig, windows: usize) -> EpochOrders {
        let buffer = config.shuffle_windows.max(1);
        let permutation = (windows <= buffer).then(|| (0..windows).collect());
        EpochOrders { rng: SplitMix64::new(config.seed), buffer, permutation }
    }

    /// The next epoch's order.
    pub fn next_epoch(&mut self) -> Order<'_> {
        match &mut self.permutation {
            Some(permutation) => {
                self.rng.shuffle(permutation);
                Order::Permuted(permutation)
            }
            None => Order::Buffered(Shuffle { seed: self.rng.next_u64(), buffer: self.buffer }),
        }
    }
}

/// Each window's class and the class `model` predicts for it, streamed
/// from `windows` in storage order and scaled by `scale`.
pub fn score<N: Network>(
    model: &N,
    windows: &dyn WindowSource,
    scale: &Normalisation,
    device: &Device,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let (model, device) = without_gradients(model, device);
    let (mut truth, mut predicted) = (Vec::new(), Vec::new());
    stream(windows, Pass { batch: PREDICT_BATCH, order: Order::Storage }, Some(scale), |b| {
        truth.extend_from_slice(&b.labels);
        predicted.extend(argmax(&probabilities(&model, &b, &device)));
    })?;
    Ok((truth, predicted))
}

/// `model` and `device` without gradient tracking, to predict with: a
/// forward pass on the training device records a graph that no backward
/// pass ever frees (burn sweeps such graphs only on request), so scoring
/// every epoch on it kept each batch's activations until the end of the
/// run — hundreds of MB per epoch for the transformer.
fn without_gradients<N: Network>(model: &N, device: &Device) -> (N, Device) {
    (model.valid(), device.clone().inner())
}

/// Windows per batch when predicting: a training batch's worth, so that
/// scoring never holds more activations than a training step does (the
/// networks' working memory grows with the batch, and for attention with
/// the square of the time steps).
pub const PREDICT_BATCH: usize = 128;

/// Class probabilities, `rows × CLASSES`, in batches, whatever device the
/// model trained on.
pub fn predict<N: Network>(model: &N, windows: &WindowRows, device: &Device) -> Vec<f32> {
    let (model, device) = without_gradients(model, device);
    probabilities(&model, windows, &device)
}

/// [`predict`] for a model and device already without gradient tracking.
fn probabilities<N: Network>(model: &N, windows: &WindowRows, device: &Device) -> Vec<f32> {
    let mut out = Vec::with_capacity(windows.rows() * CLASSES);
    for start in (0..windows.rows()).step_by(PREDICT_BATCH) {
        let rows = PREDICT_BATCH.min(windows.rows() - start);
        let x = &windows.x[start * windows.width..(start + rows) * windows.width];
        let probs = softmax(model.logits(x, rows, windows.width, device), 1);
        out.extend(probs.into_data().try_to_vec::<f32>().unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_learning_rate_warms_up_linearly_then_decays_as_a_cosine() {
        let (total, peak) = (100, 1.0);
        assert_eq!(learning_rate(0, total, 0.05, peak), 0.2);
        assert_eq!(learning_rate(4, total, 0.05, peak), 1.0);
        assert!((learning_rate(52, total, 0.05, peak) - 0.5).abs() < 0.02, "half way down at the middle");
        assert!(learning_rate(99, total, 0.05, peak) < 0.001);
        let lrs: Vec<f64> = (5..100).map(|s| learning_rate(s, total, 0.05, peak)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]), "decay never rises");
    }
}
