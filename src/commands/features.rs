//! `epiflow features`: windows and tensors for every usable episode, and the
//! publication of the feature shards and manifest.

use super::validate::{report, validate_store};
use super::{cluster, out_dir, store};
use crate::cli::{ClusterArgs, Global, WindowArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use epiflow_operators::registry::{ChannelSet, CHANNELS};
use epiflow_operators::schema::feature_schema_hash;
use epiflow_operators::tensor::Tensor;
use epiflow_operators::window::{Window, STATS};
use epiflow_pipelines::output::write_atomically;
use epiflow_pipelines::sinks::features::{remove_other_shards, shard_name, shard_of, Kind, Manifest, ManifestEntry};
use epiflow_pipelines::validate::{FeatureJob, ValidateOutput};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

pub fn run(g: &Global, window: WindowArgs, args: &ClusterArgs) -> Result<ExitCode> {
    let store = store(g)?;
    let out = out_dir(g, &store);
    let cluster = cluster(g, args)?;
    let config = Config::load(g.config.as_deref())?.with_overrides(window.into())?;
    if let Some(stats) = validate_store(&store, &out, &config, &cluster, g.quiet || g.json, true)? {
        report(g, &stats, &out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The feature operators of a configuration, and what their shards declare.
struct FeatureSchema {
    window: Window,
    tensor: Tensor,
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
            window,
            tensor,
        }
    }
}

/// The feature part of the dataflow job.
pub fn feature_job(out: &Path, config: &Config) -> FeatureJob {
    let FeatureSchema { window, tensor, hash, channels, timesteps } = FeatureSchema::of(config);
    let metadata = vec![
        ("epiflow.feature_schema_hash".to_string(), hash),
        ("epiflow.channels".to_string(), serde_json::to_string(&channels).unwrap_or_default()),
        ("epiflow.timesteps".to_string(), timesteps.to_string()),
        ("epiflow.hz".to_string(), config.tensor.hz.to_string()),
        ("epiflow.window_s".to_string(), config.window.window_s.to_string()),
        ("epiflow.layout".to_string(), "channel-major: x[c * timesteps + t]".to_string()),
    ];
    FeatureJob { window, tensor, dir: out.join("features"), shards: config.features.shards, metadata }
}

/// Removes shards this run did not write and writes the manifest. Returns the
/// number of windows published.
pub fn publish(out: &Path, config: &Config, output: &ValidateOutput) -> Result<u64> {
    if let Some(first) = output.shard_errors.first() {
        return Err(Error::Io(format!("{} feature shard writes failed; first: {first}", output.shard_errors.len())));
    }
    let dir = out.join("features");
    let FeatureSchema { hash, channels, timesteps: steps, .. } = FeatureSchema::of(config);
    let shards = config.features.shards;
    let keys: Vec<_> = output.featured.iter().filter(|(_, n)| *n > 0).map(|(k, _)| k.clone()).collect();
    let used: std::collections::BTreeSet<usize> = keys.iter().map(|k| shard_of(k, shards)).collect();
    for kind in [Kind::Summary, Kind::Tensors] {
        remove_other_shards(&dir, kind, &used).map_err(|e| Error::io("cannot clean", &dir.join(kind.dir()), e))?;
    }
    let episodes: BTreeMap<String, ManifestEntry> = output
        .featured
        .iter()
        .map(|(k, n)| (k.to_string(), ManifestEntry { shard: shard_name(shard_of(k, shards)), windows: *n }))
        .collect();
    let names = |kind: Kind| used.iter().map(|i| format!("{}/{}", kind.dir(), shard_name(*i))).collect::<Vec<_>>();
    let set = |s: ChannelSet| s.indices().into_iter().map(|i| CHANNELS[i].name).collect::<Vec<_>>();
    let manifest = Manifest {
        feature_schema_hash: hash,
        channels,
        channel_sets: [("realistic", set(ChannelSet::Realistic)), ("oracle", set(ChannelSet::Oracle))].into(),
        stats: STATS.to_vec(),
        window: serde_json::json!({
            "window_s": config.window.window_s, "stride_s": config.window.stride_s,
            "tensor_hz": config.tensor.hz, "hold_s": config.tensor.hold_s, "timesteps": steps,
        }),
        shards: [("summary", names(Kind::Summary)), ("tensors", names(Kind::Tensors))].into(),
        windows: output.featured.iter().map(|(_, n)| *n as u64).sum(),
        episodes,
    };
    let path = dir.join("manifest.json");
    write_atomically(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, &manifest)?;
        std::io::Write::write_all(w, b"\n")
    })
    .map_err(|e| Error::io("cannot write", &path, e))?;
    Ok(manifest.windows)
}
