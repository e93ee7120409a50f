//! Tensors (SPEC section 9) as a stage: the same episodes and shards as
//! [`super::window`], over the window's length and the tensor's rate.

pub use epiflow_operators::tensor::Tensor;

use super::{Applies, Caching, Sections, Stage};
use epiflow_operators::tensor::TensorConfig;

impl Stage for Tensor {
    const APPLIES: Applies = Applies::Usable;
    const CACHING: Caching = Caching::Shards;
    const PUBLISHES: Option<&'static str> = Some("features/tensors");

    fn configure(sections: &Sections) -> Result<Self, String> {
        Ok(Tensor { config: TensorConfig { window: sections.get("window")?, tensor: sections.get("tensor")? } })
    }
}
