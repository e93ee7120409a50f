//! `transformer`: an encoder over the tensors' 20 time steps (SPEC section
//! 13). Each step's channels are projected to the model width, sinusoidal
//! positions are added, two pre-norm encoder layers attend across time, and
//! the mean over steps is read out.
//!
//! Dropout is off: the corpus is large next to the model, and a network
//! without random layers trains identically from the same seed whatever else
//! runs beside it (the backend's random source is process-wide).

use crate::train::Network;
use crate::CLASSES;
use burn::module::Module;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput};
use burn::nn::{Linear, LinearConfig, PositionalEncoding, PositionalEncodingConfig};
use burn::tensor::{Device, Tensor};

/// Model width, attention heads and encoder layers.
const D_MODEL: usize = 32;
const HEADS: usize = 4;
const LAYERS: usize = 2;

/// Projection, positions, encoder, mean over time, read-out.
#[derive(Module, Debug)]
pub struct TransformerNet {
    project: Linear,
    positions: PositionalEncoding,
    encoder: TransformerEncoder,
    out: Linear,
    timesteps: usize,
}

impl TransformerNet {
    /// A network for `channels × timesteps` tensors.
    pub fn new(channels: usize, timesteps: usize, device: &Device) -> TransformerNet {
        TransformerNet {
            project: LinearConfig::new(channels, D_MODEL).init(device),
            positions: PositionalEncodingConfig::new(D_MODEL).with_max_sequence_size(timesteps.max(1)).init(device),
            encoder: TransformerEncoderConfig::new(D_MODEL, 2 * D_MODEL, HEADS, LAYERS)
                .with_dropout(0.0)
                .with_norm_first(true)
                .init(device),
            out: LinearConfig::new(D_MODEL, CLASSES).init(device),
            timesteps,
        }
    }
}

impl Network for TransformerNet {
    fn logits(&self, x: &[f32], rows: usize, width: usize, device: &Device) -> Tensor<2> {
        let steps = crate::layout::time_major(x, rows, width, self.timesteps, device);
        let h = self.positions.forward(self.project.forward(steps));
        let h = self.encoder.forward(TransformerEncoderInput::new(h));
        self.out.forward(h.mean_dim(1).squeeze_dim(1))
    }
}
