//! `features/manifest.json`: what a reader needs to use the shards, and what
//! the next run needs to reuse them. It is the commit point of a feature
//! publication: new files get new names, the manifest is renamed into place,
//! and only then are the files it no longer lists removed.

use super::features::{shard_of, FeatureKind};
use crate::output;
use epiflow_operators::channels::{ChannelSet, CHANNELS};
use epiflow_operators::model::EpisodeKey;
use epiflow_operators::schema::feature_schema_hash;
use epiflow_operators::tensor::{Tensor, TensorConfig, TensorSpec};
use epiflow_operators::window::{Window, WindowSpec, STATS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::Path;

/// The manifest's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Hash of what the columns mean: channels, statistics, window configuration.
    pub feature_schema_hash: String,
    /// The 46 channels, in registry order.
    pub channels: Vec<String>,
    /// `realistic` and `oracle`: the channels each set keeps.
    pub channel_sets: BTreeMap<String, Vec<String>>,
    /// The summary statistics, in column order.
    pub stats: Vec<String>,
    /// Window length and stride, tensor rate, hold and time steps.
    pub window: serde_json::Value,
    /// What the rows were computed by: the window and tensor operators'
    /// chained fingerprints and the shard count. A run reuses rows only under
    /// the same lineage.
    #[serde(default)]
    pub lineage: String,
    /// Counts publications; files written by one carry it in their name, so
    /// a new file never replaces one a published manifest lists.
    #[serde(default)]
    pub generation: u64,
    /// `summary` and `tensors` → file paths relative to `features/`.
    pub shards: BTreeMap<String, Vec<String>>,
    /// Windows in all.
    pub windows: u64,
    /// `host_id/episode_id` → where its rows are.
    pub episodes: BTreeMap<String, ManifestEntry>,
}

/// Where one episode's rows are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// File name in `summary/` and `tensors/`; `None` for an episode with no
    /// window.
    pub shard: Option<String>,
    /// Its windows (rows in each kind).
    pub windows: usize,
    /// sha256 of the archive the rows came from.
    #[serde(default)]
    pub sha256: String,
}

impl Manifest {
    /// What the features of `window` and `tensor` are, as a manifest and a
    /// checkpoint's card say it: the schema hash, the channels and sets, the
    /// statistics and the window configuration (no rows yet).
    pub fn describing(window: &Window, tensor: &Tensor) -> Manifest {
        let names = |indices: Vec<usize>| indices.into_iter().map(|i| CHANNELS[i].name.to_string()).collect();
        Manifest {
            feature_schema_hash: feature_schema_hash(window, tensor).hex(),
            channels: CHANNELS.iter().map(|c| c.name.to_string()).collect(),
            channel_sets: ChannelSet::ALL.into_iter().map(|s| (s.name().to_string(), names(s.indices()))).collect(),
            stats: STATS.iter().map(|s| s.to_string()).collect(),
            window: serde_json::json!({
                "window_s": window.spec.window_s, "stride_s": window.spec.stride_s,
                "tensor_hz": tensor.config.tensor.hz, "hold_s": tensor.config.tensor.hold_s,
                "timesteps": tensor.config.timesteps(),
            }),
            ..Manifest::default()
        }
    }

    /// The window and tensor operators a manifest's (or a card's) `window`
    /// describes: the inverse of [`Manifest::describing`].
    pub fn operators_of(window: &serde_json::Value) -> Result<(Window, Tensor), String> {
        let number = |key: &str| window[key].as_f64().ok_or_else(|| format!("window configuration without {key}"));
        let spec = WindowSpec { window_s: number("window_s")?, stride_s: number("stride_s")? };
        let tensor = TensorSpec { hz: number("tensor_hz")?, hold_s: number("hold_s")? };
        let config = TensorConfig { window: spec.clone(), tensor };
        config.check()?;
        Ok((Window { spec }, Tensor { config }))
    }

    /// Reads `features/manifest.json`; `None` when there is none or it does
    /// not parse (then nothing is reused).
    pub fn read(features_dir: &Path) -> Option<Manifest> {
        let text = std::fs::read_to_string(features_dir.join("manifest.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// One published episode's rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeRows {
    /// `host_id/episode_id`.
    pub key: String,
    /// sha256 of the archive the rows came from.
    pub sha256: String,
    /// Its windows.
    pub windows: usize,
}

/// A published summary + tensor file pair (same name in both folders) and
/// the episodes whose rows it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `part-SSS-GGGGGG.parquet`.
    pub name: String,
    /// Whose rows it holds, in file order.
    pub episodes: Vec<EpisodeRows>,
}

impl FileEntry {
    /// Rows in each of the two files.
    pub fn rows(&self) -> usize {
        self.episodes.iter().map(|e| e.windows).sum()
    }
}

/// A shard's content after a publication, for the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardUpdate {
    /// The shard's index.
    pub shard: usize,
    /// Its files, oldest first.
    pub files: Vec<FileEntry>,
    /// Its usable episodes without a window (no rows, no file).
    pub windowless: Vec<EpisodeRows>,
}

/// The features an earlier run published under the current lineage: which
/// episode's rows are where, so unchanged episodes are kept, not recomputed.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// The generation the next publication takes.
    pub next_generation: u64,
    episodes: HashMap<String, EpisodeRows>,
    /// Shard → its files.
    files: BTreeMap<usize, Vec<FileEntry>>,
    /// Shard → its episodes without a window.
    windowless: BTreeMap<usize, Vec<EpisodeRows>>,
}

impl Published {
    /// Nothing to reuse: every row is written again, into files named
    /// after `manifest`'s generation.
    pub fn nothing_after(manifest: Option<&Manifest>) -> Published {
        Published { next_generation: manifest.map_or(0, |m| m.generation + 1), ..Published::default() }
    }

    /// What `manifest` published, if it was made under `lineage` (which
    /// fixes the shard count, `shards`); nothing otherwise.
    pub fn from_manifest(manifest: Option<Manifest>, lineage: &str, shards: usize) -> Published {
        let mut published = Published::nothing_after(manifest.as_ref());
        let Some(m) = manifest.filter(|m| m.lineage == lineage) else { return published };
        let mut by_name: BTreeMap<String, Vec<EpisodeRows>> = BTreeMap::new();
        for (key, entry) in m.episodes {
            let rows = EpisodeRows { key: key.clone(), sha256: entry.sha256, windows: entry.windows };
            match entry.shard {
                Some(name) => by_name.entry(name).or_default().push(rows.clone()),
                None => match shard_of_key(&key, shards) {
                    Some(shard) => published.windowless.entry(shard).or_default().push(rows.clone()),
                    None => continue,
                },
            }
            published.episodes.insert(key, rows);
        }
        for (name, episodes) in by_name {
            if let Some(shard) = shard_of_file(&name) {
                published.files.entry(shard).or_default().push(FileEntry { name, episodes });
            }
        }
        published
    }

    /// The windows published for `key` when they came from the same bytes.
    pub fn windows_of(&self, key: &str, sha256: &str) -> Option<usize> {
        self.episodes.get(key).filter(|e| e.sha256 == sha256).map(|e| e.windows)
    }

    /// The files and windowless episodes of shard `shard`.
    pub fn shard(&self, shard: usize) -> (Vec<FileEntry>, Vec<EpisodeRows>) {
        (self.files.get(&shard).cloned().unwrap_or_default(), self.windowless.get(&shard).cloned().unwrap_or_default())
    }
}

/// File name of shard `shard`'s file written by publication `generation`.
pub fn file_name(shard: usize, generation: u64) -> String {
    format!("part-{shard:03}-{generation:06}.parquet")
}

/// The shard a file name of [`file_name`] belongs to.
pub fn shard_of_file(name: &str) -> Option<usize> {
    name.strip_prefix("part-")?.split('-').next()?.parse().ok()
}

/// The shard of a manifest key (`host_id/episode_id`).
fn shard_of_key(key: &str, shards: usize) -> Option<usize> {
    let (host_id, episode_id) = key.split_once('/')?;
    let key = EpisodeKey { host_id: host_id.into(), episode_id: episode_id.into() };
    Some(shard_of(&key, shards))
}

impl Manifest {
    /// Fills in where every episode's rows are from the shards' content
    /// after a run (`updates`: every shard holding a usable episode), writes
    /// the manifest atomically, and then removes the feature files it no
    /// longer lists and temporaries left by killed runs.
    pub fn publish(mut self, features_dir: &Path, updates: &BTreeMap<usize, ShardUpdate>) -> io::Result<Manifest> {
        self.episodes.clear();
        let mut names = Vec::new();
        for update in updates.values() {
            for file in &update.files {
                names.push(file.name.clone());
                for e in &file.episodes {
                    let entry =
                        ManifestEntry { shard: Some(file.name.clone()), windows: e.windows, sha256: e.sha256.clone() };
                    self.episodes.insert(e.key.clone(), entry);
                }
            }
            for e in &update.windowless {
                self.episodes
                    .insert(e.key.clone(), ManifestEntry { shard: None, windows: 0, sha256: e.sha256.clone() });
            }
        }
        names.sort();
        self.windows = self.episodes.values().map(|e| e.windows as u64).sum();
        self.shards = [FeatureKind::Summary, FeatureKind::Tensors]
            .into_iter()
            .map(|kind| (kind.dir().to_string(), names.iter().map(|n| format!("{}/{n}", kind.dir())).collect()))
            .collect();
        let path = features_dir.join("manifest.json");
        output::write_atomically(&path, |w| {
            serde_json::to_writer_pretty(&mut *w, &self)?;
            w.write_all(b"\n")
        })?;
        let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
        for kind in [FeatureKind::Summary, FeatureKind::Tensors] {
            let Ok(entries) = std::fs::read_dir(features_dir.join(kind.dir())) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stale = name.ends_with(".parquet") && !listed.contains(name.as_str());
                if stale || (name.starts_with(".part-") && name.ends_with(".tmp")) {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        Ok(self)
    }
}
