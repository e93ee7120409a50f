//! Rewriting `index.jsonl` without some rows while the receiver keeps appending.
//!
//! The lab once lost its receiver to a prune run that replaced the index with a
//! root-owned file the service could not append to. So the rewrite:
//! - takes an exclusive advisory lock on the index (a receiver that appends
//!   under the same lock never interleaves with it);
//! - drops only rows from the part of the file that was classified (the
//!   snapshot) and carries over everything appended since, byte for byte;
//! - writes aside, keeps the file's mode bits and owner, fsyncs, renames;
//! - after the rename, checks the old file once more for late appends by a
//!   writer that does not lock, and carries them over too.

use epiflow_operators::index::parse_index_line;
use epiflow_operators::model::EpisodeKey;
use epiflow_pipelines::output::sync_dir;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Length of the index prefix made of whole lines, at most `len` bytes.
pub fn whole_lines(bytes: &[u8], len: usize) -> usize {
    bytes[..len.min(bytes.len())].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
}

/// What a rewrite did.
#[derive(Debug, Default, PartialEq)]
pub struct Rewrite {
    /// Rows removed.
    pub removed: usize,
    /// Dropped keys that a row appended after the snapshot names again (the
    /// receiver re-shipped them): their archives must stay.
    pub reshipped: HashSet<EpisodeKey>,
}

/// Removes the rows of `drop` from the first `snapshot_len` bytes of the index
/// (rows appended later are kept).
pub fn rewrite_index(index: &Path, snapshot_len: u64, drop: &HashSet<EpisodeKey>) -> io::Result<Rewrite> {
    let mut old = OpenOptions::new().read(true).open(index)?;
    old.lock()?;
    let meta = old.metadata()?;
    let mut current = Vec::new();
    old.read_to_end(&mut current)?;
    let head_len = whole_lines(&current, snapshot_len as usize);
    let mut kept = Vec::with_capacity(current.len());
    let mut removed = 0;
    for line in current[..head_len].split_inclusive(|b| *b == b'\n') {
        if line_key(line).is_some_and(|k| drop.contains(&k)) {
            removed += 1;
        } else {
            kept.extend_from_slice(line);
        }
    }
    let tail = &current[head_len..];
    let reshipped = tail.split_inclusive(|b| *b == b'\n').filter_map(line_key).filter(|k| drop.contains(k)).collect();
    kept.extend_from_slice(tail);
    let mut read_len = current.len() as u64;

    let dir = index.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".index.jsonl.").suffix(".tmp").tempfile_in(dir)?;
    tmp.as_file_mut().write_all(&kept)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    if tmp.as_file().metadata()?.uid() != meta.uid() || tmp.as_file().metadata()?.gid() != meta.gid() {
        std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid())).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot keep the index's owner {}:{} ({e})", meta.uid(), meta.gid()))
        })?;
        // chown may clear set-id bits; put the mode back.
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    // Carry over what a writer that does not lock appended since the read.
    read_len = append_new_bytes(&mut old, read_len, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(index).map_err(|e| e.error)?;
    sync_dir(dir);
    // A non-locking writer may have appended to the old file during the rename.
    std::thread::sleep(Duration::from_millis(20));
    let mut new = OpenOptions::new().append(true).open(index)?;
    if append_new_bytes(&mut old, read_len, &mut new)? > read_len {
        new.sync_all()?;
    }
    Ok(Rewrite { removed, reshipped })
}

fn line_key(line: &[u8]) -> Option<EpisodeKey> {
    std::str::from_utf8(line).ok().and_then(|t| parse_index_line(t, 0).ok().flatten()).map(|e| e.key)
}

/// Appends bytes of `old` past `from` to `to`; returns the new read position.
fn append_new_bytes(old: &mut File, from: u64, to: &mut File) -> io::Result<u64> {
    let len = old.metadata()?.len();
    if len <= from {
        return Ok(from);
    }
    old.seek(SeekFrom::Start(from))?;
    let mut extra = Vec::new();
    old.take(len - from).read_to_end(&mut extra)?;
    to.write_all(&extra)?;
    Ok(from + extra.len() as u64)
}

/// Appends one line to the index the way a receiver should: under the same
/// advisory lock, re-opening when prune has replaced the file meanwhile.
pub fn append_locked(index: &Path, line: &str) -> io::Result<()> {
    loop {
        let mut f = OpenOptions::new().append(true).create(true).open(index)?;
        f.lock()?;
        let same = std::fs::metadata(index).map(|m| m.ino() == f.metadata().map(|n| n.ino()).unwrap_or(0));
        if same.unwrap_or(false) {
            f.write_all(format!("{line}\n").as_bytes())?;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(e: &str) -> EpisodeKey {
        EpisodeKey { host_id: "h".into(), episode_id: e.into() }
    }

    #[test]
    fn drops_only_snapshot_rows_and_keeps_mode_and_later_rows() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index.jsonl");
        let head = "{\"host_id\":\"h\",\"episode_id\":\"a\"}\nnot json\n{\"host_id\":\"h\",\"episode_id\":\"b\"}\n";
        std::fs::write(&index, head).unwrap();
        std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o664)).unwrap();
        append_locked(&index, "{\"host_id\":\"h\",\"episode_id\":\"b\",\"late\":1}").unwrap();
        let done = rewrite_index(&index, head.len() as u64, &[key("b")].into_iter().collect()).unwrap();
        assert_eq!(done.removed, 1);
        assert_eq!(done.reshipped, [key("b")].into_iter().collect(), "b was shipped again after the snapshot");
        let text = std::fs::read_to_string(&index).unwrap();
        assert_eq!(
            text,
            "{\"host_id\":\"h\",\"episode_id\":\"a\"}\nnot json\n{\"host_id\":\"h\",\"episode_id\":\"b\",\"late\":1}\n",
            "a row appended after the snapshot is kept, even for a dropped key; malformed lines are kept"
        );
        assert_eq!(std::fs::metadata(&index).unwrap().permissions().mode() & 0o7777, 0o664);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left behind");
    }

    #[test]
    fn a_partial_last_line_of_the_snapshot_is_carried_over() {
        assert_eq!(whole_lines(b"ab\ncd", 5), 3);
        assert_eq!(whole_lines(b"ab\ncd\n", 6), 6);
        assert_eq!(whole_lines(b"abc", 3), 0);
    }
}
