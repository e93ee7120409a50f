//! `cnn`: 1-D convolutions over time on the tensors (SPEC section 13).
//!
//! Two same-padded convolutions (kernel 3, so a cell sees 1.5 s either side
//! at 2 Hz), then the mean over time: a phase is a pattern anywhere in the
//! window, not at one position.

use crate::train::Network;
use crate::CLASSES;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig1d, Relu};
use burn::tensor::{Device, Tensor};

/// Filters per convolution.
const FILTERS: usize = 32;

/// Convolutions over `[batch, channels, timesteps]`, pooled over time.
#[derive(Module, Debug)]
pub struct Cnn {
    conv1: Conv1d,
    conv2: Conv1d,
    out: Linear,
    act: Relu,
    timesteps: usize,
}

impl Cnn {
    /// A network for `channels × timesteps` tensors.
    pub fn new(channels: usize, timesteps: usize, device: &Device) -> Cnn {
        let conv = |from, to| Conv1dConfig::new(from, to, 3).with_padding(PaddingConfig1d::Same).init(device);
        Cnn {
            conv1: conv(channels, FILTERS),
            conv2: conv(FILTERS, FILTERS),
            out: LinearConfig::new(FILTERS, CLASSES).init(device),
            act: Relu::new(),
            timesteps,
        }
    }
}

impl Network for Cnn {
    fn logits(&self, x: &[f32], rows: usize, width: usize, device: &Device) -> Tensor<2> {
        let x = crate::layout::channel_major(x, rows, width, self.timesteps, device);
        let h = self.act.forward(self.conv2.forward(self.act.forward(self.conv1.forward(x))));
        self.out.forward(h.mean_dim(2).squeeze_dim(2))
    }
}
