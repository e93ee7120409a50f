//! `epiflow features`: windows and tensors for every usable episode, and the
//! publication of the feature shards and manifest.

use super::validate::{report, validate_store, Mode};
use super::CorpusArgs;
use crate::cli::{ClusterArgs, Global, WindowArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use epiflow_operators::registry::{ChannelSet, CHANNELS};
use epiflow_operators::schema::feature_schema_hash;
use epiflow_operators::tensor::Tensor;
use epiflow_operators::window::{Window, STATS};
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

/// The feature operators of a configuration, and what their shards declare.
struct FeatureSchema {
    hash: String,
    channels: Vec<&'static str>,
    timesteps: usize,
}

impl FeatureSchema {
    fn of(config: &Config) -> FeatureSchema {
        let window = Window { spec: config.window.clone() };
        let tensor = Tensor { config: config.tensor_config() };
        FeatureSchema {
            hash: feature_schema_hash(&window, &tensor).hex(),
            channels: CHANNELS.iter().map(|c| c.name).collect(),
            timesteps: tensor.config.timesteps(),
        }
    }
}

/// The feature part of the dataflow job (nothing published to reuse yet:
/// see [`reuse`]).
pub fn feature_job(out: &Path, config: &Config) -> FeatureJob {
    let FeatureSchema { hash, channels, timesteps } = FeatureSchema::of(config);
    let metadata = vec![
        ("epiflow.feature_schema_hash".to_string(), hash),
        ("epiflow.channels".to_string(), serde_json::to_string(&channels).unwrap_or_default()),
        ("epiflow.timesteps".to_string(), timesteps.to_string()),
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
    let FeatureSchema { hash, channels, timesteps, .. } = FeatureSchema::of(config);
    let set = |s: ChannelSet| s.indices().into_iter().map(|i| CHANNELS[i].name.to_string()).collect::<Vec<_>>();
    Some(Manifest {
        feature_schema_hash: hash,
        channels: channels.into_iter().map(str::to_string).collect(),
        channel_sets: [
            ("realistic".to_string(), set(ChannelSet::Realistic)),
            ("oracle".to_string(), set(ChannelSet::Oracle)),
        ]
        .into(),
        stats: STATS.iter().map(|s| s.to_string()).collect(),
        window: serde_json::json!({
            "window_s": config.window.window_s, "stride_s": config.window.stride_s,
            "tensor_hz": config.tensor.hz, "hold_s": config.tensor.hold_s, "timesteps": timesteps,
        }),
        lineage,
        generation,
        ..Manifest::default()
    })
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
