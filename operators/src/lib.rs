//! epiflow's operators: plain, typed Rust functions from one representation of an
//! episode to the next. Nothing here knows about timely or differential-dataflow;
//! the `epiflow-pipelines` crate wires these functions into dataflows.
//!
//! Every operator implements [`Operator`]: a name, a version and the configuration
//! it reads. Those three make its [`Fingerprint`], which the incremental engine uses
//! to decide whether a cached result is still valid. Adding an operator is writing
//! one module that implements the trait and registering it in [`OPERATORS`].

pub mod align;
pub mod archive;
pub mod classify;
pub mod decode;
pub mod fingerprint;
pub mod index;
pub mod model;
pub mod registry;
pub mod rows;
pub mod schema;
pub mod tensor;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod validate;
pub mod window;

pub use fingerprint::{Fingerprint, Operator};

/// Names and versions of every registered operator, in pipeline order. The
/// feature schema hash and `epiflow cache gc` read this list; an operator that is
/// not listed here is never cached.
pub const OPERATORS: &[(&str, u32)] = &[
    (decode::Decode::NAME, decode::Decode::VERSION),
    (align::Align::NAME, align::Align::VERSION),
    (validate::Validate::NAME, validate::Validate::VERSION),
    (classify::Classify::NAME, classify::Classify::VERSION),
    (window::Window::NAME, window::Window::VERSION),
    (tensor::Tensor::NAME, tensor::Tensor::VERSION),
];
