//! The one interface of the six architectures once trained. Training
//! differs by family (boosting rounds for `gbt`, the shared loop of
//! [`crate::train`] for the networks), but checkpoints, validation and
//! evaluation only ever hold a [`Model`] and ask it for probabilities and
//! its weights.

use crate::gbt::Gbt;
use crate::net::Net;
use crate::train::predict;
use burn::module::Module;
use burn::tensor::Device;
use epiflow_pipelines::feature_reader::WindowRows;

/// A trained phase classifier of any architecture.
pub trait Classifier: Send + Sync {
    /// Class probabilities, `rows × CLASSES`, for windows already
    /// normalised as the model's card says.
    fn predict(&self, windows: &WindowRows, device: &Device) -> Result<Vec<f32>, String>;

    /// The file name the weights are stored under, and their bytes.
    fn weights(&self) -> Result<(&'static str, Vec<u8>), String>;

    /// For models stopped by boosting round: the round kept and its
    /// validation log loss. `None` for networks (their card has the epochs).
    fn best_round(&self) -> Option<(usize, Option<f64>)> {
        None
    }
}

/// A trained model, whatever its architecture.
pub type Model = Box<dyn Classifier>;

impl Classifier for Gbt {
    fn predict(&self, windows: &WindowRows, _device: &Device) -> Result<Vec<f32>, String> {
        Gbt::predict(self, windows)
    }

    fn weights(&self) -> Result<(&'static str, Vec<u8>), String> {
        Ok(("weights.hessboost", self.to_bytes()?))
    }

    fn best_round(&self) -> Option<(usize, Option<f64>)> {
        Some((self.best_round, self.best_val_logloss))
    }
}

impl Classifier for Net {
    fn predict(&self, windows: &WindowRows, device: &Device) -> Result<Vec<f32>, String> {
        Ok(predict(self, windows, device))
    }

    fn weights(&self) -> Result<(&'static str, Vec<u8>), String> {
        let bytes = self.clone().into_record().into_bytes().map_err(|e| format!("{e:?}"))?;
        Ok(("weights.bpk", bytes.to_vec()))
    }
}
