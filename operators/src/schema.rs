//! The feature schema hash: what a model's inputs depend on. It changes when
//! the channel registry, the statistics, the window or tensor configuration or
//! the version of an operator that shapes features changes, and only then.

use crate::align::Align;
use crate::channels::CHANNELS;
use crate::decode::Decode;
use crate::fingerprint::{Fingerprint, Operator};
use crate::tensor::Tensor;
use crate::window::{Window, STATS};

/// The hash of everything that determines the meaning of a feature column or a
/// tensor cell.
pub fn feature_schema_hash(window: &Window, tensor: &Tensor) -> Fingerprint {
    let registry: Vec<String> =
        CHANNELS.iter().map(|c| format!("{}|{}|{:?}", c.name, c.source.name(), c.kind)).collect();
    let versions = format!("{}:{} {}:{}", Decode::NAME, Decode::VERSION, Align::NAME, Align::VERSION);
    Fingerprint::of_parts(&[
        registry.join(",").as_bytes(),
        STATS.join(",").as_bytes(),
        versions.as_bytes(),
        &window.fingerprint().0,
        &tensor.fingerprint().0,
    ])
}
