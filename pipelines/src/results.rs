//! Where per-episode results outlive a run. The dataflow asks a
//! [`ResultStore`] before computing and tells it what it computed; the
//! engine provides the on-disk store (`OUT/cache`, `epiflow_engine::cache`),
//! runs that always compute pass [`NoStore`]. Keeping the trait here and the
//! files in the engine lets the dataflow be tested with any store and the
//! store be tested without a dataflow.

use epiflow_operators::fingerprint::Fingerprint;
use std::path::Path;

/// What names a file's bytes without reading them: the receiver publishes
/// archives by rename, so the same (size, mtime, inode) at a path means the
/// same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    /// Bytes.
    pub size: u64,
    /// Last modification, in ns since the epoch.
    pub mtime_ns: i64,
    /// The inode: a file replaced by rename has a new one.
    pub inode: u64,
}

impl FileIdentity {
    /// The identity of the file at `path`, `None` when it cannot be stat'ed
    /// (decoding then reports why).
    pub fn of(path: &Path) -> Option<FileIdentity> {
        let meta = std::fs::metadata(path).ok()?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        Some(FileIdentity { size: meta.len(), mtime_ns, inode: inode(&meta) })
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// One result's name: the operator, its chained fingerprint and the key of
/// the input (the archive's sha256, plus whatever else the result depends on).
#[derive(Clone, Copy, Debug)]
pub struct ResultName<'a> {
    /// The operator that made it.
    pub operator: &'static str,
    /// The operator's chained fingerprint.
    pub fingerprint: Fingerprint,
    /// What it was computed from.
    pub key: &'a str,
}

/// A store of results keyed by content and fingerprint. Reads that fail for
/// any reason are misses; writes that fail are logged by the store and cost
/// a recomputation later, never a wrong result.
pub trait ResultStore: Send + Sync {
    /// Whether results are worth encoding for this store at all.
    fn keeps_results(&self) -> bool {
        true
    }
    /// The sha256 remembered for the file at `path` with identity `id`.
    fn known_sha(&self, path: &Path, id: FileIdentity) -> Option<String>;
    /// Remembers that the file at `path` with identity `id` hashes to `sha`.
    fn remember_sha(&self, path: &Path, id: FileIdentity, sha: &str);
    /// A large result (a file of its own).
    fn get_blob(&self, name: ResultName) -> Option<Vec<u8>>;
    /// Keeps a large result.
    fn put_blob(&self, name: ResultName, bytes: &[u8]);
    /// A small result (a JSON line among many).
    fn get_record(&self, name: ResultName) -> Option<String>;
    /// Keeps a small result.
    fn put_record(&self, name: ResultName, json: &str);
}

/// The store that remembers nothing: every result is computed.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoStore;

impl ResultStore for NoStore {
    fn keeps_results(&self) -> bool {
        false
    }
    fn known_sha(&self, _: &Path, _: FileIdentity) -> Option<String> {
        None
    }
    fn remember_sha(&self, _: &Path, _: FileIdentity, _: &str) {}
    fn get_blob(&self, _: ResultName) -> Option<Vec<u8>> {
        None
    }
    fn put_blob(&self, _: ResultName, _: &[u8]) {}
    fn get_record(&self, _: ResultName) -> Option<String> {
        None
    }
    fn put_record(&self, _: ResultName, _: &str) {}
}
