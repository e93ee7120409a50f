//! Tensors (SPEC section 9) as a stage: the same episodes and shards as
//! [`super::window`], over the window's length and the tensor's rate.

pub use epiflow_operators::tensor::Tensor;

use super::{Applies, Caching, Sections, Stage};
use epiflow_operators::tensor::TensorConfig;
use epiflow_operators::window::Window;
use epiflow_operators::Operator;

impl Stage for Tensor {
    const APPLIES: Applies = Applies::Usable;
    const CACHING: Caching = Caching::FeatureShards;
    const PUBLISHES: Option<&'static str> = Some("features/tensors");

    fn configure(sections: &Sections) -> Result<Self, String> {
        // The tensors are cut into the window stage's windows: its section
        // is read too (and chained into the fingerprint with the rest).
        let config = TensorConfig { window: sections.get(Window::NAME)?, tensor: sections.get(Self::NAME)? };
        config.check()?;
        Ok(Tensor { config })
    }
}
