//! Summary windows (SPEC section 9) as a stage: usable episodes only, kept
//! in the feature shards, which the shard sink writes.

pub use epiflow_operators::window::Window;

use epiflow_operators::window::WindowSpec;

use epiflow_operators::Operator;
use super::{Applies, Caching, Sections, Stage};

impl Stage for Window {
    const APPLIES: Applies = Applies::Usable;
    const CACHING: Caching = Caching::FeatureShards;
    const PUBLISHES: Option<&'static str> = Some("features/summary");

    fn configure(sections: &Sections) -> Result<Self, String> {
        let spec: WindowSpec = sections.get(Self::NAME)?;
        spec.check()?;
        Ok(Window { spec })
    }
}
