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
use epiflow_pipelines::sinks::features::{
    assemble, shard_name, shard_of, summary_schema, tensor_schema, Kind, Manifest, ManifestEntry, Staging,
};
use epiflow_pipelines::validate::{FeatureJob, ValidateOutput};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

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

fn operators(config: &Config) -> (Window, Tensor) {
    (Window { spec: config.window.clone() }, Tensor { config: config.tensor_config() })
}

fn staging(out: &Path) -> Staging {
    Staging { dir: out.join("features").join(".staging") }
}

/// The feature part of the dataflow job.
pub fn feature_job(out: &Path, config: &Config) -> FeatureJob {
    let (window, tensor) = operators(config);
    FeatureJob { window, tensor, staging: staging(out) }
}

/// Assembles the shards from staging, writes the manifest and clears staging.
/// Returns the number of windows published.
pub fn publish(out: &Path, config: &Config, output: &ValidateOutput, threads: usize) -> Result<u64> {
    if let Some(first) = output.staging_errors.first() {
        return Err(Error::Io(format!("{} episodes could not be staged; first: {first}", output.staging_errors.len())));
    }
    let dir = out.join("features");
    let (window, tensor) = operators(config);
    let hash = feature_schema_hash(&window, &tensor).hex();
    let steps = tensor.config.timesteps();
    let channels: Vec<&str> = CHANNELS.iter().map(|c| c.name).collect();
    let meta = vec![
        ("epiflow.feature_schema_hash".to_string(), hash.clone()),
        ("epiflow.channels".to_string(), serde_json::to_string(&channels).unwrap_or_default()),
        ("epiflow.timesteps".to_string(), steps.to_string()),
        ("epiflow.hz".to_string(), config.tensor.hz.to_string()),
        ("epiflow.window_s".to_string(), config.window.window_s.to_string()),
        ("epiflow.layout".to_string(), "channel-major: x[c * timesteps + t]".to_string()),
    ];
    let keys: Vec<_> = output.featured.iter().filter(|(_, n)| *n > 0).map(|(k, _)| k.clone()).collect();
    let shards = config.features.shards;
    let staging = staging(out);
    for (kind, schema) in [(Kind::Summary, summary_schema()), (Kind::Tensors, tensor_schema(steps))] {
        assemble(&staging, &dir, kind, Arc::new(schema), &keys, shards, &meta, threads)
            .map_err(|e| Error::io("cannot write feature shards in", &dir.join(kind.dir()), e))?;
        remove_stale_shards(&dir.join(kind.dir()), shards)?;
    }
    let episodes: BTreeMap<String, ManifestEntry> = output
        .featured
        .iter()
        .map(|(k, n)| (k.to_string(), ManifestEntry { shard: shard_name(shard_of(k, shards)), windows: *n }))
        .collect();
    let used: std::collections::BTreeSet<usize> = keys.iter().map(|k| shard_of(k, shards)).collect();
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
    std::fs::remove_dir_all(&staging.dir)
        .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        .map_err(|e| Error::io("cannot remove", &staging.dir, e))?;
    Ok(manifest.windows)
}

/// Removes shard files beyond the configured count (the count was lowered).
fn remove_stale_shards(dir: &Path, shards: usize) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("cannot list", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let index =
            name.strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet")).and_then(|n| n.parse::<usize>().ok());
        if index.is_some_and(|i| i >= shards) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io("cannot remove", &entry.path(), e))?;
        }
    }
    Ok(())
}
