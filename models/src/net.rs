//! The five neural architectures as one module type, so the training loop,
//! checkpoints and the training sink handle any of them alike.

use crate::arch::Arch;
use crate::cnn::Cnn;
use crate::mlp::Mlp;
use crate::rnn::{GruNet, LstmNet};
use crate::train::Network;
use crate::transformer::TransformerNet;
use burn::module::{Module, ModuleMapper, Param, ParamId, ParameterValue};
use burn::tensor::{Bool, Device, Int, Tensor};
use std::sync::Mutex;

/// Hidden widths of the `mlp`.
const MLP_HIDDEN: [usize; 2] = [128, 64];

/// One neural network of any architecture. Its variants differ in size,
/// but a network is built once per model and never copied around.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Net {
    /// See [`Mlp`].
    Mlp(Mlp),
    /// See [`Cnn`].
    Cnn(Cnn),
    /// See [`GruNet`].
    Gru(GruNet),
    /// See [`LstmNet`].
    Lstm(LstmNet),
    /// See [`TransformerNet`].
    Transformer(TransformerNet),
}

/// Serialises seeding and initialisation: the backend's random source is
/// process-wide, so two models built at once on two threads would draw
/// from it in an order that changes between runs.
static INIT: Mutex<()> = Mutex::new(());

impl Net {
    /// A freshly initialised network for windows of `width` values
    /// (`channels × timesteps` for tensors), its weights drawn from `seed`.
    /// `None` for `gbt`, which is not a neural network.
    pub fn new(arch: Arch, width: usize, timesteps: usize, seed: u64, device: &Device) -> Option<Net> {
        let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        device.seed(seed);
        let channels = width / timesteps.max(1);
        let net = match arch {
            Arch::Gbt => return None,
            Arch::Mlp => Net::Mlp(Mlp::new(width, &MLP_HIDDEN, device)),
            Arch::Cnn => Net::Cnn(Cnn::new(channels, timesteps, device)),
            Arch::Gru => Net::Gru(GruNet::new(channels, timesteps, device)),
            Arch::Lstm => Net::Lstm(LstmNet::new(channels, timesteps, device)),
            Arch::Transformer => Net::Transformer(TransformerNet::new(channels, timesteps, device)),
        };
        // Parameters initialise lazily; draw them now, under the lock, and
        // number them so the saved record is the same bytes on every run.
        Some(net.map(&mut NumberParams::default()))
    }
}

impl Network for Net {
    fn logits(&self, x: &[f32], rows: usize, width: usize, device: &Device) -> Tensor<2> {
        match self {
            Net::Mlp(n) => n.logits(x, rows, width, device),
            Net::Cnn(n) => n.logits(x, rows, width, device),
            Net::Gru(n) => n.logits(x, rows, width, device),
            Net::Lstm(n) => n.logits(x, rows, width, device),
            Net::Transformer(n) => n.logits(x, rows, width, device),
        }
    }
}

/// Initialises every parameter and gives it a sequential id in place of
/// burn's random one: ids are written into checkpoints, and random ones
/// would make two identical trainings save different bytes.
#[derive(Default)]
struct NumberParams {
    next: u64,
}

impl NumberParams {
    fn renumber<T: ParameterValue>(&mut self, param: Param<T>) -> Param<T> {
        let (_, value, mapper) = param.consume();
        self.next += 1;
        Param::from_mapped_value(ParamId::from(self.next), value, mapper)
    }
}

impl ModuleMapper for NumberParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.renumber(param)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        self.renumber(param)
    }

    fn map_bool<const D: usize>(&mut self, param: Param<Tensor<D, Bool>>) -> Param<Tensor<D, Bool>> {
        self.renumber(param)
    }
}
