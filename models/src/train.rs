//! The one training loop of the neural models (SPEC section 13):
//! class-weighted cross-entropy, AdamW, linear warm-up then cosine decay of
//! the learning rate, gradient-norm clipping, early stopping on validation
//! macro F1 with patience, the best-on-validation weights kept, seeded.
//!
//! The loop is written once against [`Network`]; an architecture only says
//! how it turns a batch of windows into logits.

use crate::scoring::{argmax, class_weights, Confusion};
use crate::CLASSES;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use epiflow_operators::rng::SplitMix64;
use epiflow_pipelines::feature_reader::WindowRows;
use serde::{Deserialize, Serialize};

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

/// Trains `model` on `train` (already normalised), keeping the weights of
/// the epoch with the best validation macro F1; `progress` hears each epoch.
pub fn train<N: Network>(
    mut model: N,
    train: &WindowRows,
    val: &WindowRows,
    config: &TrainConfig,
    device: &Device,
    mut progress: impl FnMut(&Epoch),
) -> (N, TrainReport) {
    // CrossEntropyLoss wants every weight positive; a class absent from
    // training never appears as a target, so its weight is never used.
    let weights: Vec<f32> = class_weights(&train.labels).iter().map(|&w| if w > 0.0 { w } else { 1.0 }).collect();
    let loss_fn = CrossEntropyLossConfig::new().with_weights(Some(weights)).init(device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.clip_norm)))
        .init();
    let batch = config.batch.max(1);
    let steps_per_epoch = train.rows().div_ceil(batch);
    let total = steps_per_epoch * config.max_epochs;
    let mut order: Vec<usize> = (0..train.rows()).collect();
    let mut rng = SplitMix64::new(config.seed);
    let mut report = TrainReport { epochs: Vec::new(), best_epoch: 0, best_val_macro_f1: f64::NEG_INFINITY };
    let mut best = model.clone();
    let (mut step, mut x, mut y) = (0, Vec::new(), Vec::new());
    for epoch in 0..config.max_epochs {
        rng.shuffle(&mut order);
        let (mut loss_sum, mut lr) = (0.0, 0.0);
        for chunk in order.chunks(batch) {
            x.clear();
            y.clear();
            for &i in chunk {
                x.extend_from_slice(train.row(i));
                y.push(train.labels[i] as i64);
            }
            let logits = model.logits(&x, chunk.len(), train.width, device);
            let targets = Tensor::<1, Int>::from_data(TensorData::new(y.clone(), [chunk.len()]), device);
            let loss = loss_fn.forward(logits, targets);
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            lr = learning_rate(step, total, config.warmup, config.lr);
            model = optim.step(lr, model, grads);
            step += 1;
        }
        let f1 = Confusion::of(&val.labels, &argmax(&predict(&model, val, device))).macro_f1();
        let summary = Epoch { epoch, train_loss: loss_sum / train.rows().max(1) as f64, val_macro_f1: f1, lr };
        progress(&summary);
        report.epochs.push(summary);
        if f1 > report.best_val_macro_f1 {
            (report.best_epoch, report.best_val_macro_f1, best) = (epoch, f1, model.clone());
        } else if epoch - report.best_epoch >= config.patience {
            break;
        }
    }
    (best, report)
}

/// Class probabilities, `rows × CLASSES`, in batches.
pub fn predict<N: Network>(model: &N, windows: &WindowRows, device: &Device) -> Vec<f32> {
    let mut out = Vec::with_capacity(windows.rows() * CLASSES);
    let batch = 512;
    for start in (0..windows.rows()).step_by(batch) {
        let rows = batch.min(windows.rows() - start);
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
