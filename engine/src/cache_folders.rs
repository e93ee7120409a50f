//! What `OUT/cache` holds, folder by folder, and dropping the folders no
//! current fingerprint names (`epiflow cache stats` / `gc`).

use crate::cache::{read_lines, MemoLine, MEMO, RECORDS};
use crate::error::{Error, Result};
use crate::job::Job;
use epiflow_pipelines::lineage::Lineage;
use epiflow_pipelines::results::FileIdentity;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Entries and bytes of one (operator, fingerprint) folder.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FolderStats {
    /// The operator whose results the folder holds.
    pub operator: String,
    /// The operator's chained fingerprint (hex): the folder's name.
    pub fingerprint: String,
    /// Results held: blob files, plus the lines of a records log.
    pub entries: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Whether the current configuration's lineage names this fingerprint.
    pub live: bool,
}

/// Every (operator, fingerprint) folder of the cache at `root`, marked live
/// when `live` names it.
fn folders(root: &Path, live: &BTreeMap<String, String>) -> io::Result<Vec<FolderStats>> {
    let mut out = Vec::new();
    let Ok(operators) = std::fs::read_dir(root) else { return Ok(out) };
    for op in operators.flatten().filter(|e| e.path().is_dir()) {
        let operator = op.file_name().to_string_lossy().into_owned();
        for fp in std::fs::read_dir(op.path())?.flatten().filter(|e| e.path().is_dir()) {
            let fingerprint = fp.file_name().to_string_lossy().into_owned();
            let (entries, bytes) = tally(&fp.path())?;
            let live = live.get(&operator) == Some(&fingerprint);
            out.push(FolderStats { operator: operator.clone(), fingerprint, entries, bytes, live });
        }
    }
    out.sort_by(|a, b| (&a.operator, !a.live, &a.fingerprint).cmp(&(&b.operator, !b.live, &b.fingerprint)));
    Ok(out)
}

/// Entries (blob files, plus lines of a records log) and bytes under `dir`.
fn tally(dir: &Path) -> io::Result<(u64, u64)> {
    let (mut entries, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir)?.flatten() {
        let meta = e.metadata()?;
        if meta.is_dir() {
            let (n, b) = tally(&e.path())?;
            entries += n;
            bytes += b;
        } else {
            bytes += meta.len();
            entries += if e.file_name() == RECORDS { read_lines(&e.path()).len() as u64 } else { 1 };
        }
    }
    Ok((entries, bytes))
}

/// Removes every folder `live` does not name, and rewrites the identity memo
/// without entries for files that are gone or changed. Returns what was
/// removed.
fn gc(root: &Path, live: &BTreeMap<String, String>) -> io::Result<Vec<FolderStats>> {
    let dead: Vec<FolderStats> = folders(root, live)?.into_iter().filter(|f| !f.live).collect();
    for f in &dead {
        std::fs::remove_dir_all(root.join(&f.operator).join(&f.fingerprint))?;
    }
    let memo_path = root.join(MEMO);
    if memo_path.exists() {
        let mut latest: BTreeMap<PathBuf, MemoLine> = BTreeMap::new();
        for line in read_lines(&memo_path) {
            if let Ok(m) = serde_json::from_str::<MemoLine>(&line) {
                latest.insert(m.path.clone(), m);
            }
        }
        epiflow_pipelines::output::write_atomically(&memo_path, |w| {
            for m in latest.values().filter(|m| FileIdentity::of(&m.path) == Some(m.id)) {
                serde_json::to_writer(&mut *w, m)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
    }
    Ok(dead)
}

impl Job {
    /// `OUT/cache`.
    pub fn cache_root(&self) -> PathBuf {
        crate::cache::root(&self.out)
    }

    /// What `OUT/cache` holds per operator and fingerprint, marked live
    /// when this job's configuration uses it.
    pub fn cache_stats(&self) -> Result<Vec<FolderStats>> {
        let root = self.cache_root();
        folders(&root, &self.live_fingerprints()?).map_err(|e| Error::io("cannot read cache", &root, e))
    }

    /// Removes from `OUT/cache` what this job's configuration does not use;
    /// returns what was removed.
    pub fn cache_gc(&self) -> Result<Vec<FolderStats>> {
        let root = self.cache_root();
        gc(&root, &self.live_fingerprints()?).map_err(|e| Error::io("cannot read cache", &root, e))
    }

    /// Operator → fingerprint (hex) under this configuration, features
    /// included, as `run` computes them.
    fn live_fingerprints(&self) -> Result<BTreeMap<String, String>> {
        Ok(Lineage::of(&self.config.decode(), &self.stages()?).hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::DiskCache;
    use epiflow_operators::fingerprint::Fingerprint;
    use epiflow_pipelines::results::{ResultName, ResultStore};

    #[test]
    fn gc_keeps_live_folders_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path()).unwrap();
        let old = ResultName { operator: "window", fingerprint: Fingerprint([1; 16]), key: "k" };
        let new = ResultName { operator: "window", fingerprint: Fingerprint([2; 16]), key: "k" };
        cache.put_record(old, "1");
        cache.put_record(new, "2");
        let live = BTreeMap::from([("window".to_string(), Fingerprint([2; 16]).hex())]);
        let stats = folders(dir.path(), &live).unwrap();
        assert_eq!(stats.len(), 2);
        assert_eq!(stats.iter().filter(|f| f.live).count(), 1);
        let removed = gc(dir.path(), &live).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].fingerprint, Fingerprint([1; 16]).hex());
        let left = folders(dir.path(), &live).unwrap();
        assert_eq!((left.len(), left[0].live, left[0].entries), (1, true, 1));
    }

    /// The folder names of `OUT/cache` are the operators' fingerprints: a
    /// release that moved them would compute everything again beside an
    /// intact cache. These are the fingerprints runs have written since the
    /// cache's layout was settled, under the default configuration and
    /// after `--window-s 20`; `window`'s moved with its version 2 (its
    /// statistics merged from blocks), as a changed output must.
    #[test]
    fn fingerprints_name_the_folders_earlier_runs_wrote() {
        let job = Job::new("store", "out");
        let default = job.live_fingerprints().unwrap();
        let expected = [
            ("align", "606f74239850897316cf89dbbf50eb62"),
            ("classify", "bf3f544fa36ad53ea8f95faeee111551"),
            ("decode", "4f704977e9416f891809b9acf61e7b9c"),
            ("tensor", "70be728c24b60ab430ca2163345fb496"),
            ("validate", "b32e412c56f07345c79f13432bd4f1dc"),
            ("window", "f30c67fcb031bf753778cba0504238c5"),
        ];
        let expected: BTreeMap<String, String> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(default, expected);
        let window = crate::config::WindowOverrides { window_s: Some(20.0), ..Default::default() };
        let longer = Job { config: job.config.clone().with_overrides(window).unwrap(), ..job };
        let moved = longer.live_fingerprints().unwrap();
        assert_eq!(moved["window"], "b575bc674108d4305a65729a5a81cd69");
        assert_eq!(moved["tensor"], "58d19a82e7438a3120e8cdb7ca90fdda");
        assert_eq!(moved.iter().filter(|(name, fp)| default[*name] == **fp).count(), 4, "the rest stay");
    }
}
