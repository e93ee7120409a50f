//! The feature shards as a run plans and publishes them: the shards'
//! footer metadata, what the last publication left to reuse, and the
//! manifest that commits a run's shards.

use crate::error::{Error, Result};
use epiflow_operators::tensor::Tensor;
use epiflow_operators::window::Window;
use epiflow_pipelines::corpus::{CorpusState, FeaturePlan};
use epiflow_pipelines::lineage::Lineage;
use epiflow_pipelines::sinks::manifest::{Manifest, Published};
use epiflow_pipelines::stages::Stages;
use std::path::Path;
use std::sync::Arc;

/// The feature part of a corpus plan under `out`, in `shards` shards
/// (nothing published to reuse yet: see [`reuse`]), and what its features
/// are (no rows): the base of every manifest it publishes.
pub fn plan(out: &Path, stages: &Stages, shards: usize) -> Result<(FeaturePlan, Manifest)> {
    let (Some(window), Some(tensor)) = (stages.stage::<Window>(), stages.stage::<Tensor>()) else {
        return Err(Error::Usage("features need the window and tensor stages".into()));
    };
    let described = Manifest::describing(window, tensor);
    let metadata = vec![
        ("epiflow.feature_schema_hash".to_string(), described.feature_schema_hash.clone()),
        ("epiflow.channels".to_string(), serde_json::to_string(&described.channels).unwrap_or_default()),
        ("epiflow.timesteps".to_string(), tensor.config.timesteps().to_string()),
        ("epiflow.hz".to_string(), tensor.config.tensor.hz.to_string()),
        ("epiflow.window_s".to_string(), window.spec.window_s.to_string()),
        ("epiflow.layout".to_string(), "channel-major: x[c * timesteps + t]".to_string()),
    ];
    let plan = FeaturePlan { dir: out.join("features"), shards, metadata, published: Default::default() };
    Ok((plan, described))
}

/// Points `features` at what the last publication left: its rows for reuse
/// when `reuse` and the lineage is unchanged, else only its generation (new
/// files must not take published names). Returns the manifest to publish
/// after the run: `described` with the lineage and generation.
pub fn reuse(features: &mut FeaturePlan, described: Manifest, lineage: &Lineage, reuse: bool) -> Option<Manifest> {
    let lineage = lineage.features(features.shards)?;
    let previous = Manifest::read(&features.dir);
    let published = match reuse {
        true => Published::from_manifest(previous, &lineage, features.shards),
        false => Published::nothing_after(previous.as_ref()),
    };
    let generation = published.next_generation;
    features.published = Arc::new(published);
    Some(Manifest { lineage, generation, ..described })
}

/// Publishes the manifest of the run's shards (then removes the files it no
/// longer lists). Epoch `e` of a followed run wrote files of generation
/// `base + e`, which the manifest records. Returns the number of windows
/// published.
pub fn publish(out: &Path, mut manifest: Manifest, corpus: &CorpusState) -> Result<u64> {
    manifest.generation += corpus.epoch;
    if let Some(first) = corpus.shard_errors.first() {
        return Err(Error::Io(format!("{} feature shard writes failed; first: {first}", corpus.shard_errors.len())));
    }
    let dir = out.join("features");
    let manifest = manifest.publish(&dir, &corpus.shard_updates).map_err(|e| Error::io("cannot publish", &dir, e))?;
    Ok(manifest.windows)
}
