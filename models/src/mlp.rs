//! `mlp`: a multi-layer perceptron on the summary features (SPEC section 13).

use crate::train::Network;
use crate::CLASSES;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Device, Tensor, TensorData};

/// Hidden layers with ReLU, then one logit per class.
#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Vec<Linear>,
    out: Linear,
    act: Relu,
}

impl Mlp {
    /// A network from `d_input` features through `hidden` widths.
    pub fn new(d_input: usize, hidden: &[usize], device: &Device) -> Mlp {
        let mut layers = Vec::new();
        let mut width = d_input;
        for &h in hidden {
            layers.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        Mlp { hidden: layers, out: LinearConfig::new(width, CLASSES).init(device), act: Relu::new() }
    }
}

impl Network for Mlp {
    fn logits(&self, x: &[f32], rows: usize, width: usize, device: &Device) -> Tensor<2> {
        let mut h = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [rows, width]), device);
        for layer in &self.hidden {
            h = self.act.forward(layer.forward(h));
        }
        self.out.forward(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{argmax, Confusion};
    use crate::stream::class_counts;
    use crate::test_data::windows;
    use crate::train::{predict, train, Sides, TrainConfig};
    use epiflow_pipelines::normalise::Normalisation;
    use std::sync::atomic::AtomicBool;

    fn trained(seed: u64) -> (Vec<f32>, Vec<u8>, f64) {
        let (tr, val, mut test) = (windows(600, 1), windows(200, 2), windows(300, 3));
        let norm = Normalisation::fit(&tr, 1);
        norm.apply(&mut test);
        let device = Device::flex().autodiff();
        device.seed(seed);
        let config = TrainConfig { max_epochs: 30, batch: 64, seed, ..TrainConfig::default() };
        let sides = Sides { train: &tr, val: &val, scale: &norm, class_counts: class_counts(&tr).unwrap() };
        let (model, report) =
            train(Mlp::new(3, &[32, 32], &device), &sides, &config, &device, &AtomicBool::new(false), |_| {}).unwrap();
        (predict(&model, &test, &device), test.labels, report.best_val_macro_f1)
    }

    #[test]
    fn learns_a_clear_signature_and_the_same_seed_repeats_exactly() {
        let (probs, truth, best_val) = trained(11);
        let f1 = Confusion::of(&truth, &argmax(&probs)).macro_f1();
        assert!(f1 > 0.9 && best_val > 0.9, "test macro F1 {f1}, best validation {best_val}");
        assert_eq!(trained(11).0, probs, "same seed, same probabilities");
    }
}
