//! Prune: act on the episodes the classifier flags as fake — list them (the
//! default), move them to the archive, or delete them — without ever losing an
//! episode or a row the receiver appends meanwhile.
//!
//! Order of an action, chosen so a kill at any moment leaves every episode in
//! the store or in the archive and an index that names only archives present:
//! 1. `--archive`: place a whole copy of each flagged archive in the archive;
//! 2. append one row per action to `prune-log.jsonl` (fsynced);
//! 3. rewrite the index without the flagged rows (atomically, under a lock);
//! 4. remove the store copies.
//!
//! A run killed between 3 and 4 leaves store copies no index row names; the next
//! `--archive`/`--delete` run removes them, guided by the log and a sha check.
//! A run killed between 2 and 3 left the episodes indexed; the next run flags
//! and acts on them again (so the log may hold a row twice, never a row short).

pub mod index_rewrite;
pub mod relocate;

use epiflow_operators::archive::{archive_path, sha256_hex};
use epiflow_operators::classify::QualityRecord;
use epiflow_operators::index::{parse_index, IndexEntry};
use epiflow_operators::model::EpisodeKey;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What prune does with flagged episodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Action {
    #[serde(rename = "dry-run")]
    DryRun,
    #[serde(rename = "archive")]
    Archive,
    #[serde(rename = "delete")]
    Delete,
}

/// Where prune works.
#[derive(Clone, Debug)]
pub struct Paths {
    pub episodes_root: PathBuf,
    pub index: PathBuf,
    /// Required for [`Action::Archive`].
    pub archive_root: Option<PathBuf>,
}

impl Paths {
    /// `prune-log.jsonl`, beside the index.
    pub fn log(&self) -> PathBuf {
        self.index.parent().unwrap_or(Path::new(".")).join("prune-log.jsonl")
    }
}

/// One examined episode, as listed by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Examined {
    pub host_id: String,
    pub episode_id: String,
    pub reasons: Vec<String>,
    pub fake: bool,
    pub flagged: bool,
    pub sample_name: Option<String>,
    pub module_name: Option<String>,
}

impl Examined {
    /// Whether `q` is flagged when only `selected` reasons count (all when empty).
    pub fn from_quality(q: &QualityRecord, selected: &[String]) -> Examined {
        let flagged = q.fake && (selected.is_empty() || q.reasons.iter().any(|r| selected.contains(r)));
        Examined {
            host_id: q.host_id.clone(),
            episode_id: q.episode_id.clone(),
            reasons: q.reasons.clone(),
            fake: q.fake,
            flagged,
            sample_name: q.sample_name.clone(),
            module_name: q.module_name.clone(),
        }
    }

    /// An episode that could not be classified (its archive is unreadable).
    pub fn unclassified(key: &EpisodeKey) -> Examined {
        Examined {
            host_id: key.host_id.clone(),
            episode_id: key.episode_id.clone(),
            reasons: vec![],
            fake: false,
            flagged: false,
            sample_name: None,
            module_name: None,
        }
    }

    fn key(&self) -> EpisodeKey {
        EpisodeKey { host_id: self.host_id.clone(), episode_id: self.episode_id.clone() }
    }
}

/// One line of `prune-log.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogRow {
    pub host_id: String,
    pub episode_id: String,
    pub reasons: Vec<String>,
    pub action: String,
    pub sha256: Option<String>,
    pub at_ns: i64,
}

/// The index as prune saw it: its entries and how many bytes were read.
pub struct Snapshot {
    pub entries: Vec<IndexEntry>,
    pub problems: Vec<epiflow_operators::model::Problem>,
    pub len: u64,
}

/// Reads the index once; the rewrite later touches only these bytes.
pub fn snapshot(index: &Path) -> io::Result<Snapshot> {
    let bytes = std::fs::read(index)?;
    let len = index_rewrite::whole_lines(&bytes, bytes.len());
    let scan = parse_index(&bytes[..len], &index.display().to_string());
    Ok(Snapshot { entries: scan.entries, problems: scan.problems, len: len as u64 })
}

/// Carries out `action` on the flagged episodes. Returns the log rows written.
pub fn execute(paths: &Paths, snapshot_len: u64, flagged: &[&Examined], action: Action) -> io::Result<Vec<LogRow>> {
    if action == Action::DryRun || flagged.is_empty() {
        return Ok(Vec::new());
    }
    let store_path = |e: &Examined| archive_path(&paths.episodes_root, &e.host_id, &e.episode_id);
    let mut rows = Vec::with_capacity(flagged.len());
    for e in flagged {
        let src = store_path(e);
        let sha = std::fs::read(&src).ok().map(|b| sha256_hex(&b));
        if action == Action::Archive {
            let root = paths.archive_root.as_ref().ok_or_else(|| io::Error::other("no archive folder"))?;
            relocate::place_copy(&src, &archive_path(root, &e.host_id, &e.episode_id))
                .map_err(|err| io::Error::new(err.kind(), format!("cannot archive {}: {err}", src.display())))?;
        }
        rows.push(LogRow {
            host_id: e.host_id.clone(),
            episode_id: e.episode_id.clone(),
            reasons: e.reasons.clone(),
            action: if action == Action::Archive { "archive" } else { "delete" }.into(),
            sha256: sha,
            at_ns: now_ns(),
        });
    }
    append_log(&paths.log(), &rows)?;
    let drop: HashSet<EpisodeKey> = flagged.iter().map(|e| e.key()).collect();
    let rewrite = index_rewrite::rewrite_index(&paths.index, snapshot_len, &drop)?;
    // A re-shipped episode is indexed again: its store file stays.
    for e in flagged.iter().filter(|e| !rewrite.reshipped.contains(&e.key())) {
        let src = store_path(e);
        match relocate::remove_durably(&src) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    Ok(rows)
}

/// Makes this the only acting prune on the store until the file is dropped:
/// an exclusive lock on `prune-log.jsonl`. Without it two prunes could sweep
/// each other's temporaries.
pub fn lock_for_action(paths: &Paths) -> io::Result<std::fs::File> {
    let log = OpenOptions::new().append(true).create(true).open(paths.log())?;
    log.lock()?;
    Ok(log)
}

/// Finishes actions a killed run left half done (call under
/// [`lock_for_action`]): removes prune's own temporaries, and every store copy
/// that the log says was archived (with a whole archive copy) or deleted and
/// that no index row names any more. Returns how many store copies it removed.
pub fn recover(paths: &Paths, indexed: &HashSet<EpisodeKey>) -> io::Result<usize> {
    let index_dir = paths.index.parent().unwrap_or(Path::new("."));
    sweep_temporaries(index_dir, ".index.jsonl.")?;
    if let Some(root) = &paths.archive_root {
        for host in std::fs::read_dir(root).into_iter().flatten().flatten() {
            sweep_temporaries(&host.path(), ".archiving.")?;
        }
    }
    let Ok(text) = std::fs::read_to_string(paths.log()) else { return Ok(0) };
    let mut removed = 0;
    for row in text.lines().filter_map(|l| serde_json::from_str::<LogRow>(l).ok()) {
        let key = EpisodeKey { host_id: row.host_id.clone(), episode_id: row.episode_id.clone() };
        let src = archive_path(&paths.episodes_root, &row.host_id, &row.episode_id);
        if indexed.contains(&key) || !src.exists() {
            continue;
        }
        let done_elsewhere = match row.action.as_str() {
            "archive" => paths
                .archive_root
                .as_ref()
                .and_then(|root| std::fs::read(archive_path(root, &row.host_id, &row.episode_id)).ok())
                .is_some_and(|b| Some(sha256_hex(&b)) == row.sha256),
            "delete" => std::fs::read(&src).ok().is_some_and(|b| Some(sha256_hex(&b)) == row.sha256),
            _ => false,
        };
        if done_elsewhere {
            relocate::remove_durably(&src)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes `<prefix>*.tmp` files a killed prune left in `dir`.
fn sweep_temporaries(dir: &Path, prefix: &str) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".tmp") && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn append_log(path: &Path, rows: &[LogRow]) -> io::Result<()> {
    let mut f = OpenOptions::new().append(true).create(true).open(path)?;
    let mut buf = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut buf, row)?;
        buf.push(b'\n');
    }
    f.write_all(&buf)?;
    f.sync_all()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}
