//! epiflow's phase classifiers (SPEC section 13): the windows a split puts on
//! each side go in, a model that names each window's phase comes out.
//!
//! Every architecture is reached through the same functions of its module —
//! fit on the training side with the validation side for stopping, predict
//! class probabilities — and judged by the same [`metrics`].

pub mod arch;
pub mod bootstrap;
pub mod charts;
pub mod checkpoint;
pub mod cnn;
pub mod device;
pub mod gbt;
pub mod metrics;
pub mod mlp;
pub mod net;
pub mod rnn;
pub mod sink;
#[cfg(test)]
mod test_data;
pub mod train;
pub mod transformer;

/// Number of phase classes (SPEC section 3).
pub const CLASSES: usize = epiflow_operators::registry::Phase::ALL.len();
