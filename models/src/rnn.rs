//! `gru` and `lstm`: recurrent networks over the tensors' time steps (SPEC
//! section 13). Each reads the window's 20 steps in order and names the
//! phase from its last hidden state.

use crate::train::Network;
use crate::CLASSES;
use burn::module::Module;
use burn::nn::{Gru, GruConfig, Linear, LinearConfig, Lstm, LstmConfig};
use burn::tensor::{Device, Tensor};

/// Hidden state width of both recurrent networks.
const HIDDEN: usize = 32;

/// A GRU over time, then a linear read-out of the last step.
#[derive(Module, Debug)]
pub struct GruNet {
    gru: Gru,
    out: Linear,
    timesteps: usize,
}

impl GruNet {
    /// A network for `channels × timesteps` tensors.
    pub fn new(channels: usize, timesteps: usize, device: &Device) -> GruNet {
        GruNet {
            gru: GruConfig::new(channels, HIDDEN, true).init(device),
            out: LinearConfig::new(HIDDEN, CLASSES).init(device),
            timesteps,
        }
    }
}

impl Network for GruNet {
    fn logits(&self, x: &[f32], rows: usize, width: usize, device: &Device) -> Tensor<2> {
        let steps = crate::layout::time_major(x, rows, width, self.timesteps, device);
        let h = self.gru.forward(steps, None);
        self.out.forward(h.narrow(1, self.timesteps - 1, 1).squeeze_dim(1))
    }
}

/// An LSTM over time, then a linear read-out of the final hidden state.
#[derive(Module, Debug)]
pub struct LstmNet {
    lstm: Lstm,
    out: Linear,
    timesteps: usize,
}

impl LstmNet {
    /// A network for `channels × timesteps` tensors.
    pub fn new(channels: usize, timesteps: usize, device: &Device) -> LstmNet {
        LstmNet {
            lstm: LstmConfig::new(channels, HIDDEN, true).init(device),
            out: LinearConfig::new(HIDDEN, CLASSES).init(device),
            timesteps,
        }
    }
}

impl Network for LstmNet {
    fn logits(&self, x: &[f32], rows: usize, width: usize, device: &Device) -> Tensor<2> {
        let steps = crate::layout::time_major(x, rows, width, self.timesteps, device);
        let (_, state) = self.lstm.forward(steps, None);
        self.out.forward(state.hidden)
    }
}
