//! epiflow's operators: plain, typed Rust functions from one representation of an
//! episode to the next. Nothing here knows about timely or differential-dataflow;
//! the `epiflow-pipelines` crate wires these functions into dataflows.
//!
//! Every operator implements [`Operator`]: a name, a version and the configuration
//! it reads. Those three make its [`Fingerprint`], which the incremental engine uses
//! to decide whether a cached result is still valid. Adding an operator is writing
//! one module that implements the trait and adding it as a stage of a pipeline.

pub mod align;
pub mod archive;
pub mod channels;
pub mod classify;
pub mod decode;
pub mod fingerprint;
pub mod index;
pub mod lines;
pub mod model;
pub mod rng;
pub mod rows;
pub mod schema;
pub mod shared_values;
pub mod split;
pub mod tensor;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod thread_kept;
pub mod validate;
pub mod window;

pub use fingerprint::{Fingerprint, Operator};
