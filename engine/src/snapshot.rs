//! A snapshot of one publication's features and splits, for the models a
//! followed job trains in the background: training reads the shards for
//! hours while the follower publishes newer ones and removes the files it
//! no longer lists. The snapshot links (or, where links cannot be made,
//! copies) the manifest, every file it lists and the split files: shard
//! files are never rewritten and the manifest and splits are replaced by
//! renaming, so a link keeps the bytes it was made with.

use epiflow_pipelines::sinks::manifest::Manifest;
use std::io;
use std::path::{Path, PathBuf};

/// Where a followed job's snapshot lives under its output directory.
pub(crate) fn dir(out: &Path) -> PathBuf {
    out.join(".snapshot")
}

/// Takes a snapshot of the features and splits published under `out` into
/// `into` (replacing what it held), laid out as under `out`. The caller
/// makes sure no publication is under way.
pub(crate) fn take(out: &Path, into: &Path) -> io::Result<()> {
    remove(into)?;
    let features = out.join("features");
    let manifest = Manifest::read(&features)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no features in {}", features.display())))?;
    let mut files: Vec<PathBuf> = vec![PathBuf::from("features/manifest.json")];
    files.extend(manifest.shards.values().flatten().map(|name| Path::new("features").join(name)));
    let splits = out.join("splits");
    for entry in std::fs::read_dir(&splits)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            files.push(Path::new("splits").join(name));
        }
    }
    for file in files {
        let (from, to) = (out.join(&file), into.join(&file));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Removes the snapshot at `dir`, if there is one.
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_keeps_a_publications_bytes_after_the_next_one_replaces_them() {
        let out = tempfile::tempdir().unwrap();
        let features = out.path().join("features");
        std::fs::create_dir_all(features.join("summary")).unwrap();
        std::fs::create_dir_all(out.path().join("splits")).unwrap();
        std::fs::write(features.join("summary/part-000-000001.parquet"), b"rows of 1").unwrap();
        std::fs::write(features.join("summary/part-000-000000.parquet"), b"unlisted").unwrap();
        let manifest = Manifest {
            generation: 1,
            shards: [("summary".to_string(), vec!["summary/part-000-000001.parquet".to_string()])].into(),
            ..Manifest::default()
        };
        std::fs::write(features.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
        std::fs::write(out.path().join("splits/host.json"), b"split 1").unwrap();

        let into = dir(out.path());
        take(out.path(), &into).unwrap();
        // The next publication: a new split, the shard removed.
        std::fs::remove_file(features.join("summary/part-000-000001.parquet")).unwrap();
        let next = out.path().join("splits/.host.json.tmp");
        std::fs::write(&next, b"split 2").unwrap();
        std::fs::rename(&next, out.path().join("splits/host.json")).unwrap();

        assert_eq!(std::fs::read(into.join("features/summary/part-000-000001.parquet")).unwrap(), b"rows of 1");
        assert_eq!(std::fs::read(into.join("splits/host.json")).unwrap(), b"split 1");
        assert!(!into.join("features/summary/part-000-000000.parquet").exists(), "only the listed files");
        assert_eq!(Manifest::read(&into.join("features")).unwrap().generation, 1);
        remove(&into).unwrap();
        assert!(!into.exists());
        remove(&into).unwrap();
    }
}
