//! epiflow's phase classifiers (SPEC section 13): the windows a split puts on
//! each side go in, a model that names each window's phase comes out.
//!
//! Every trained architecture is a [`classifier::Classifier`]: class
//! probabilities for windows, and its weights as bytes. The five networks
//! also share [`train::Network`] and one training loop; all are judged by
//! the same [`scoring`].

pub mod arch;
pub mod bootstrap;
pub mod charts;
pub mod checkpoint;
pub mod classifier;
pub mod cnn;
pub mod device;
pub mod dirs;
pub mod eval;
pub mod gbt;
pub mod generalization;
pub mod layout;
pub mod memory;
pub mod mlp;
pub mod net;
pub mod predictor;
pub mod report;
pub mod rnn;
pub mod scoring;
pub mod sink;
pub mod stream;
#[cfg(test)]
mod test_data;
pub mod train;
pub mod transformer;
pub mod warm;

/// Number of phase classes (SPEC section 3).
pub const CLASSES: usize = epiflow_operators::channels::Phase::ALL.len();
