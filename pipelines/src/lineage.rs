//! Lineage: every operator's fingerprint chained with those of its inputs,
//! following the dataflow's edges. Together with an archive's content hash it
//! names a result, so a result can be reused exactly when nothing it depends
//! on changed: a new window length moves `window` and `tensor` and leaves
//! `decode`, `align`, `validate` and `classify` where they were.

use crate::validate::ValidateJob;
use epiflow_operators::align::Align;
use epiflow_operators::classify::Classify;
use epiflow_operators::decode::Decode;
use epiflow_operators::fingerprint::{Fingerprint, Operator};
use epiflow_operators::tensor::Tensor;
use epiflow_operators::validate::Validate;
use epiflow_operators::window::Window;
use std::collections::BTreeMap;

/// Operator name → chained fingerprint, for the operators a job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage(BTreeMap<&'static str, Fingerprint>);

impl Lineage {
    /// The lineage of `job`'s graph: decode → align → {validate, classify,
    /// window, tensor}. Validation and classification read the aligned
    /// episode (facts included); windows and tensors read its series.
    pub fn of(job: &ValidateJob) -> Lineage {
        let decode = job.decode.fingerprint();
        let align = Align.fingerprint_after(&[decode]);
        let mut by_name = BTreeMap::from([
            (Decode::NAME, decode),
            (Align::NAME, align),
            (Validate::NAME, job.validate.fingerprint_after(&[align])),
            (Classify::NAME, job.classify.fingerprint_after(&[align])),
        ]);
        if let Some(features) = &job.features {
            by_name.insert(Window::NAME, features.window.fingerprint_after(&[align]));
            by_name.insert(Tensor::NAME, features.tensor.fingerprint_after(&[align]));
        }
        Lineage(by_name)
    }

    /// The fingerprint of operator `name`, if the job runs it.
    pub fn get(&self, name: &str) -> Option<Fingerprint> {
        self.0.get(name).copied()
    }

    /// Operator name → fingerprint (hex), as cache folders are named.
    pub fn hex(&self) -> BTreeMap<String, String> {
        self.0.iter().map(|(name, f)| (name.to_string(), f.hex())).collect()
    }

    /// What published feature rows depend on: the window and tensor
    /// lineages and the shard count. `None` for a job without features.
    pub fn features(&self, shards: usize) -> Option<String> {
        let (window, tensor) = (self.get(Window::NAME)?, self.get(Tensor::NAME)?);
        Some(Fingerprint::of_parts(&[&window.0, &tensor.0, &(shards as u64).to_le_bytes()]).hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::FeatureJob;
    use epiflow_operators::tensor::TensorConfig;
    use epiflow_operators::window::WindowSpec;

    fn job(window: WindowSpec, guest_min_load_delta: Option<f64>, max_line_bytes: Option<u64>) -> ValidateJob {
        let mut job = ValidateJob {
            episodes_root: "episodes".into(),
            decode: Decode::default(),
            validate: Validate::default(),
            classify: Classify::default(),
            features: Some(FeatureJob {
                window: Window { spec: window.clone() },
                tensor: Tensor { config: TensorConfig { window, ..Default::default() } },
                dir: "features".into(),
                shards: 32,
                metadata: Vec::new(),
                published: Default::default(),
            }),
            splits: None,
            store: std::sync::Arc::new(crate::results::NoStore),
        };
        if let Some(d) = guest_min_load_delta {
            job.classify.config.guest_min_load_delta = d;
        }
        if let Some(n) = max_line_bytes {
            job.decode.config.max_line_bytes = n;
        }
        job
    }

    /// The operators whose fingerprints differ between two lineages.
    fn moved(a: &Lineage, b: &Lineage) -> Vec<&'static str> {
        a.0.iter().filter(|(name, f)| b.get(name) != Some(**f)).map(|(name, _)| *name).collect()
    }

    #[test]
    fn a_change_moves_its_operator_and_everything_downstream_only() {
        let base = Lineage::of(&job(WindowSpec::default(), None, None));
        assert_eq!(base, Lineage::of(&job(WindowSpec::default(), None, None)), "deterministic");
        let longer = Lineage::of(&job(WindowSpec { window_s: 20.0, stride_s: 5.0 }, None, None));
        assert_eq!(moved(&base, &longer), vec!["tensor", "window"]);
        let threshold = Lineage::of(&job(WindowSpec::default(), Some(0.9), None));
        assert_eq!(moved(&base, &threshold), vec!["classify"]);
        let decoding = Lineage::of(&job(WindowSpec::default(), None, Some(4096)));
        assert_eq!(moved(&base, &decoding).len(), 6, "decode moves everything");
    }
}
