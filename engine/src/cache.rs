//! The result cache under `OUT/cache` (docs/incremental.md):
//!
//! ```text
//! files.jsonl                               archive identity → sha256 (append-only)
//! last-run.json                             the last complete run (crate::run_memo)
//! <operator>/<fingerprint>/records.jsonl    small results: "<key>\t<json>" lines (append-only)
//! <operator>/<fingerprint>/<sha[..2]>/<sha>.bin     large results, one file each
//!                                           (`.arrow` before issue 28: still read)
//! ```
//!
//! One folder per (operator, fingerprint) makes `gc` exact: a folder no
//! current fingerprint names is garbage. Entries are written whole under a
//! temporary name and renamed, and log lines are appended in one write, so a
//! killed run leaves at worst one partial last line, which reads as a miss.
//! Every read is checked by its decoder; a damaged entry costs a
//! recomputation, never a wrong result.

use crate::lock;
use epiflow_operators::fingerprint::Fingerprint;
use epiflow_pipelines::results::{FileIdentity, ResultName, ResultStore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The identity memo's file.
pub(crate) const MEMO: &str = "files.jsonl";
/// A records log's file name.
pub(crate) const RECORDS: &str = "records.jsonl";
/// A large result's extension: its bytes say their form (the codec's magic).
const BLOB: &str = "bin";
/// A large result's extension before issue 28's compact entries (Arrow IPC):
/// such entries are still read, and replaced when the result is written again.
const OLD_BLOB: &str = "arrow";

/// One line of `files.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MemoLine {
    pub path: PathBuf,
    #[serde(flatten)]
    pub id: FileIdentity,
    pub sha256: String,
}

/// An append-only log of lines, loaded on first use.
#[derive(Default)]
struct Log {
    lines: HashMap<String, String>,
    file: Option<File>,
}

/// The cache's folder under `OUT`, named here once for every reader and
/// writer of the cache.
pub const FOLDER: &str = "cache";

/// `OUT/cache`.
pub fn root(out: &Path) -> PathBuf {
    out.join(FOLDER)
}

/// Archive identity → sha256, and the log it is appended to.
#[derive(Default)]
struct Memo {
    known: HashMap<PathBuf, (FileIdentity, String)>,
    file: Option<File>,
}

/// The on-disk result cache.
pub struct DiskCache {
    root: PathBuf,
    memo: Mutex<Memo>,
    records: Mutex<HashMap<(&'static str, Fingerprint), Log>>,
}

impl DiskCache {
    /// Opens (creating) the cache at `root` and loads the identity memo.
    pub fn open(root: &Path) -> io::Result<DiskCache> {
        std::fs::create_dir_all(root)?;
        let mut memo = Memo::default();
        for line in read_lines(&root.join(MEMO)) {
            if let Ok(m) = serde_json::from_str::<MemoLine>(&line) {
                memo.known.insert(m.path, (m.id, m.sha256));
            }
        }
        Ok(DiskCache { root: root.to_path_buf(), memo: Mutex::new(memo), records: Mutex::default() })
    }

    fn dir(&self, operator: &str, fingerprint: Fingerprint) -> PathBuf {
        self.root.join(operator).join(fingerprint.hex())
    }

    /// Where `name`'s large result is written.
    fn blob_path(&self, name: ResultName) -> PathBuf {
        self.blob_path_with(name, BLOB)
    }

    fn blob_path_with(&self, name: ResultName, extension: &str) -> PathBuf {
        let shard = name.key.get(..2).unwrap_or("__");
        self.dir(name.operator, name.fingerprint).join(shard).join(format!("{}.{extension}", name.key))
    }

    /// Makes every log line written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        if let Some(f) = lock(&self.memo).file.as_ref() {
            f.sync_all()?;
        }
        for log in lock(&self.records).values() {
            if let Some(f) = &log.file {
                f.sync_all()?;
            }
        }
        Ok(())
    }
}

impl ResultStore for DiskCache {
    fn known_sha(&self, path: &Path, id: FileIdentity) -> Option<String> {
        let memo = lock(&self.memo);
        memo.known.get(path).filter(|(known, _)| *known == id).map(|(_, sha)| sha.clone())
    }

    fn remember_sha(&self, path: &Path, id: FileIdentity, sha: &str) {
        let line = MemoLine { path: path.to_path_buf(), id, sha256: sha.to_string() };
        let mut memo = lock(&self.memo);
        memo.known.insert(line.path.clone(), (id, line.sha256.clone()));
        if let Ok(json) = serde_json::to_string(&line) {
            warn_on_error(&self.root.join(MEMO), append(&mut memo.file, &self.root.join(MEMO), &json));
        }
    }

    fn get_blob(&self, name: ResultName) -> Option<Vec<u8>> {
        std::fs::read(self.blob_path(name)).or_else(|_| std::fs::read(self.blob_path_with(name, OLD_BLOB))).ok()
    }

    fn put_blob(&self, name: ResultName, bytes: &[u8]) {
        let path = self.blob_path(name);
        let write = || -> io::Result<()> {
            let dir = path.parent().ok_or_else(|| io::Error::other("entry has no folder"))?;
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::Builder::new().prefix(".").suffix(".tmp").tempfile_in(dir)?;
            tmp.write_all(bytes)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            match std::fs::remove_file(self.blob_path_with(name, OLD_BLOB)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        };
        warn_on_error(&path, write());
    }

    fn get_record(&self, name: ResultName) -> Option<String> {
        let mut logs = lock(&self.records);
        let log = logs.entry((name.operator, name.fingerprint)).or_insert_with(|| self.load_log(name));
        log.lines.get(name.key).cloned()
    }

    fn put_record(&self, name: ResultName, json: &str) {
        let path = self.dir(name.operator, name.fingerprint).join(RECORDS);
        let mut logs = lock(&self.records);
        let log = logs.entry((name.operator, name.fingerprint)).or_insert_with(|| self.load_log(name));
        log.lines.insert(name.key.to_string(), json.to_string());
        warn_on_error(&path, append(&mut log.file, &path, &format!("{}\t{json}", name.key)));
    }
}

impl DiskCache {
    fn load_log(&self, name: ResultName) -> Log {
        let lines = read_lines(&self.dir(name.operator, name.fingerprint).join(RECORDS))
            .into_iter()
            .filter_map(|line| line.split_once('\t').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Log { lines, file: None }
    }
}

/// The complete lines of a log (a partial last line, left by a killed run,
/// is not one). Missing or unreadable: none.
pub(crate) fn read_lines(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_string).collect()
}

/// Appends one line in one write, opening the log on first use. A log whose
/// last line was cut short by a killed run first gets the newline it lacks,
/// so the cut line stays alone.
fn append(file: &mut Option<File>, path: &Path, line: &str) -> io::Result<()> {
    if file.is_none() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new().create(true).append(true).read(true).open(path)?;
        if f.metadata()?.len() > 0 {
            let mut last = [0u8];
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                f.write_all(b"\n")?;
            }
        }
        *file = Some(f);
    }
    let f = file.as_mut().ok_or_else(|| io::Error::other("log not open"))?;
    f.write_all(format!("{line}\n").as_bytes())
}

fn warn_on_error(path: &Path, result: io::Result<()>) {
    if let Err(e) = result {
        tracing::warn!("cache: cannot write {}: {e} (the result will be computed again next time)", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(key: &str) -> ResultName<'_> {
        ResultName { operator: "validate", fingerprint: Fingerprint([7; 16]), key }
    }

    #[test]
    fn results_survive_reopening_and_a_cut_last_line_is_a_miss_not_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path()).unwrap();
        cache.put_record(name("a"), r#"{"x":1}"#);
        cache.put_blob(ResultName { operator: "align", ..name("ab12") }, b"bytes");
        drop(cache);
        // A killed run's half line.
        let log = dir.path().join("validate").join(Fingerprint([7; 16]).hex()).join(RECORDS);
        OpenOptions::new().append(true).open(&log).unwrap().write_all(b"b\t{\"x\":").unwrap();

        let cache = DiskCache::open(dir.path()).unwrap();
        assert_eq!(cache.get_record(name("a")).as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(cache.get_record(name("b")), None);
        assert_eq!(cache.get_blob(ResultName { operator: "align", ..name("ab12") }).as_deref(), Some(&b"bytes"[..]));
        cache.put_record(name("c"), r#"{"x":3}"#);
        drop(cache);
        let cache = DiskCache::open(dir.path()).unwrap();
        assert_eq!(cache.get_record(name("c")).as_deref(), Some(r#"{"x":3}"#), "the cut line did not swallow it");
        let cut = cache.get_record(name("b"));
        assert!(
            cut.is_none_or(|v| serde_json::from_str::<serde_json::Value>(&v).is_err()),
            "a cut record never parses"
        );
    }

    #[test]
    fn a_large_result_written_by_an_earlier_version_is_read_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path()).unwrap();
        let blob = ResultName { operator: "align", ..name("cd34") };
        let old = cache.blob_path_with(blob, OLD_BLOB);
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, b"old form").unwrap();
        assert_eq!(cache.get_blob(blob).as_deref(), Some(&b"old form"[..]));
        cache.put_blob(blob, b"new form");
        assert_eq!(cache.get_blob(blob).as_deref(), Some(&b"new form"[..]));
        assert!(!old.exists(), "the old entry went with the new one's writing");
    }

    #[test]
    fn a_file_is_known_only_while_its_identity_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.tar.zst");
        std::fs::write(&file, b"one").unwrap();
        let id = FileIdentity::of(&file).unwrap();
        let cache = DiskCache::open(&root(dir.path())).unwrap();
        cache.remember_sha(&file, id, "sha-one");
        drop(cache);
        let cache = DiskCache::open(&root(dir.path())).unwrap();
        assert_eq!(cache.known_sha(&file, id).as_deref(), Some("sha-one"));
        // Replaced by rename, as the receiver does: a new inode.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"two!").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_eq!(cache.known_sha(&file, FileIdentity::of(&file).unwrap()), None);
    }
}
