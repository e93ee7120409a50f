//! Lineage: every operator's fingerprint chained with those of its inputs,
//! following the dataflow's edges. Together with an archive's content hash it
//! names a result, so a result can be reused exactly when nothing it depends
//! on changed: a new window length moves `window` and `tensor` and leaves
//! `decode`, `align`, `validate` and `classify` where they were.

use crate::stages::{Applies, Stages};
use epiflow_operators::align::Align;
use epiflow_operators::decode::Decode;
use epiflow_operators::fingerprint::{Fingerprint, Operator};
use epiflow_operators::tensor::Tensor;
use epiflow_operators::window::Window;
use std::collections::BTreeMap;

/// Operator name → chained fingerprint, for the operators a job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage(BTreeMap<&'static str, Fingerprint>);

/// One stage of a job as its results are named: what `epiflow explain`
/// shows and what the lineage is made of.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StageInfo {
    /// The operator's name: its cache folder and row in `run.json`.
    pub name: &'static str,
    /// Bumped whenever the operator's output changes for the same input.
    pub version: u32,
    /// The configuration the stage reads, as hashed into its fingerprint.
    pub config: serde_json::Value,
    /// The stages whose results it reads.
    pub inputs: Vec<&'static str>,
    /// Its own fingerprint chained with its inputs' (hex in JSON).
    #[serde(serialize_with = "as_hex")]
    pub fingerprint: Fingerprint,
    /// Which episodes it computes on.
    pub applies: Scope,
    /// The output its results end up in, if any.
    pub publishes: Option<&'static str>,
}

/// Which episodes an operator of the graph computes on: decode opens every
/// indexed archive; the others are stages ([`Applies`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every indexed episode, errored ones included: decode.
    Indexed,
    /// What a stage applies to.
    Stage(Applies),
}

/// In `explain --json`: `all` for decode, beside the stages' `readable`
/// and `usable`.
impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scope::Indexed => s.serialize_str("all"),
            Scope::Stage(applies) => applies.serialize(s),
        }
    }
}

fn as_hex<S: serde::Serializer>(fingerprint: &Fingerprint, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fingerprint.hex())
}

impl Lineage {
    /// The stages of a corpus graph in order: decode → align → each of
    /// `stages`, with its inputs' fingerprints chained into its own.
    pub fn stages(decode: &Decode, stages: &Stages) -> Vec<StageInfo> {
        let decode = StageInfo {
            name: Decode::NAME,
            version: Decode::VERSION,
            config: serde_json::to_value(decode.config()).unwrap_or_default(),
            inputs: Vec::new(),
            fingerprint: decode.fingerprint(),
            applies: Scope::Indexed,
            publishes: None,
        };
        let align = StageInfo {
            name: Align::NAME,
            version: Align::VERSION,
            config: serde_json::to_value(Align.config()).unwrap_or_default(),
            inputs: vec![Decode::NAME],
            fingerprint: Align.fingerprint_after(&[decode.fingerprint]),
            applies: Scope::Stage(Applies::Readable),
            publishes: None,
        };
        let mut infos = vec![decode, align];
        for stage in stages.iter() {
            let inputs = stage.inputs().to_vec();
            let upstream: Vec<Fingerprint> =
                inputs.iter().filter_map(|i| infos.iter().find(|s| s.name == *i)).map(|s| s.fingerprint).collect();
            infos.push(StageInfo {
                name: stage.name(),
                version: stage.version(),
                config: stage.config(),
                inputs,
                fingerprint: match upstream.is_empty() {
                    true => stage.own_fingerprint(),
                    false => stage.own_fingerprint().chain(&upstream),
                },
                applies: Scope::Stage(stage.applies()),
                publishes: stage.publishes(),
            });
        }
        infos
    }

    /// The lineage of a corpus graph ([`Lineage::stages`]).
    pub fn of(decode: &Decode, stages: &Stages) -> Lineage {
        Lineage(Lineage::stages(decode, stages).into_iter().map(|s| (s.name, s.fingerprint)).collect())
    }

    /// The fingerprint of operator `name`, if the job runs it.
    pub fn get(&self, name: &str) -> Option<Fingerprint> {
        self.0.get(name).copied()
    }

    /// The names of the operators the job runs: one row each in `run.json`,
    /// whether or not any episode reached them.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.keys().copied()
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
    use crate::stages::{Registry, Sections};
    use epiflow_operators::classify::{Classify, ClassifyConfig};
    use epiflow_operators::window::WindowSpec;

    /// A corpus graph's decoder and stages.
    struct Graph {
        decode: Decode,
        stages: Stages,
    }

    fn job(window: WindowSpec, guest_min_load_delta: Option<f64>, max_line_bytes: Option<u64>) -> Graph {
        let mut classify = ClassifyConfig::default();
        classify.guest_min_load_delta = guest_min_load_delta.unwrap_or(classify.guest_min_load_delta);
        let sections = Sections::new(
            [
                ("window".to_string(), serde_json::to_value(window).unwrap()),
                ("classify".to_string(), serde_json::to_value(classify).unwrap()),
            ]
            .into(),
        );
        let mut decode = Decode::default();
        if let Some(n) = max_line_bytes {
            decode.config.max_line_bytes = n;
        }
        Graph { decode, stages: Registry::standard().configure(&sections).unwrap() }
    }

    impl Graph {
        fn lineage(&self) -> Lineage {
            Lineage::of(&self.decode, &self.stages)
        }
    }

    /// The operators whose fingerprints differ between two lineages.
    fn moved(a: &Lineage, b: &Lineage) -> Vec<&'static str> {
        a.0.iter().filter(|(name, f)| b.get(name) != Some(**f)).map(|(name, _)| *name).collect()
    }

    #[test]
    fn a_change_moves_its_operator_and_everything_downstream_only() {
        let base = job(WindowSpec::default(), None, None).lineage();
        assert_eq!(base, job(WindowSpec::default(), None, None).lineage(), "deterministic");
        let longer = job(WindowSpec { window_s: 20.0, stride_s: 5.0 }, None, None).lineage();
        assert_eq!(moved(&base, &longer), vec!["tensor", "window"]);
        let threshold = job(WindowSpec::default(), Some(0.9), None).lineage();
        assert_eq!(moved(&base, &threshold), vec!["classify"]);
        let decoding = job(WindowSpec::default(), None, Some(4096)).lineage();
        let graph = job(WindowSpec::default(), None, None);
        let all = Lineage::stages(&graph.decode, &graph.stages).len();
        assert_eq!(moved(&base, &decoding).len(), all, "decode moves everything");
    }

    /// The fingerprints name cached results on disk: listing the stages
    /// must not move them (decode, with no input, is its own fingerprint).
    #[test]
    fn stages_chain_as_the_cache_names_results() {
        let job = job(WindowSpec::default(), None, None);
        let stages = Lineage::stages(&job.decode, &job.stages);
        let names: Vec<&str> = stages.iter().map(|s| s.name).collect();
        assert_eq!(names, ["decode", "align", "validate", "classify", "window", "tensor"]);
        let decode = job.decode.fingerprint();
        let align = Align.fingerprint_after(&[decode]);
        assert_eq!(stages[0].fingerprint, decode);
        assert_eq!(stages[1].fingerprint, align);
        let classify = job.stages.stage::<Classify>().unwrap();
        assert_eq!(stages[3].fingerprint, classify.fingerprint_after(&[align]));
        assert_eq!(stages[4].inputs, ["align"]);
        assert_eq!(stages[4].config["window_s"], 10.0);
    }
}
