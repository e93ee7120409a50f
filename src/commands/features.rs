//! `epiflow features`: windows and tensors for every usable episode, and the
//! publication of the feature shards and manifest.

use super::validate::{report, validate_store, Mode};
use super::CorpusArgs;
use crate::cli::{ClusterArgs, Global, WindowArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use epiflow_operators::tensor::Tensor;
use epiflow_operators::window::Window;
use epiflow_pipelines::lineage::Lineage;
use epiflow_pipelines::sinks::manifest::{Manifest, Published};
use epiflow_pipelines::validate::{FeatureJob, ValidateJob, ValidateOutput};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(g: &Global, window: WindowArgs, args: &ClusterArgs) -> Result<ExitCode> {
    let CorpusArgs { store, out, cluster, config } = CorpusArgs::of(g, window, args)?;
    if let Some(stats) = validate_store(&store, &out, &config, &cluster, g.quiet || g.json, Mode::Features)? {
        report(g, &stats, &out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What the features of a configuration are (no rows): the base of every
/// manifest it publishes and of the shards' footer metadata.
fn described(config: &Config) -> Manifest {
    let window = Window { spec: config.window.clone() };
    let tensor = Tensor { config: config.tensor_config() };
    Manifest::describing(&window, &tensor)
}

/// The feature part of the dataflow job (nothing published to reuse yet:
/// see [`reuse`]).
pub fn feature_job(out: &Path, config: &Config) -> FeatureJob {
    let described = described(config);
    let metadata = vec![
        ("epiflow.feature_schema_hash".to_string(), described.feature_schema_hash),
        ("epiflow.channels".to_string(), serde_json::to_string(&described.channels).unwrap_or_default()),
        ("epiflow.timesteps".to_string(), config.tensor_config().timesteps().to_string()),
        ("epiflow.hz".to_string(), config.tensor.hz.to_string()),
        ("epiflow.window_s".to_string(), config.window.window_s.to_string()),
        ("epiflow.layout".to_string(), "channel-major: x[c * timesteps + t]".to_string()),
    ];
    FeatureJob { dir: out.join("features"), shards: config.features.shards, metadata, published: Default::default() }
}

/// Points `job`'s features at what the last publication left: its rows for
/// reuse when `reuse` and the lineage is unchanged, else only its generation
/// (new files must not take published names). Returns the manifest to
/// publish after the run, `None` for a job without features.
pub fn reuse(job: &mut ValidateJob, lineage: &Lineage, config: &Config, reuse: bool) -> Option<Manifest> {
    let features = job.features.as_mut()?;
    let lineage = lineage.features(features.shards)?;
    let previous = Manifest::read(&features.dir);
    let published = match reuse {
        true => Published::from_manifest(previous, &lineage, features.shards),
        false => Published::nothing_after(previous.as_ref()),
    };
    let generation = published.next_generation;
    features.published = Arc::new(published);
    Some(Manifest { lineage, generation, ..described(config) })
}

/// Publishes the manifest of the run's shards (then removes the files it no
/// longer lists). Epoch `e` of a followed run wrote files of generation
/// `base + e`, which the manifest records. Returns the number of windows
/// published.
pub fn publish(out: &Path, mut manifest: Manifest, output: &ValidateOutput) -> Result<u64> {
    manifest.generation += output.epoch;
    if let Some(first) = output.shard_errors.first() {
        return Err(Error::Io(format!("{} feature shard writes failed; first: {first}", output.shard_errors.len())));
    }
    let dir = out.join("features");
    let manifest = manifest.publish(&dir, &output.shard_updates).map_err(|e| Error::io("cannot publish", &dir, e))?;
    Ok(manifest.windows)
}
