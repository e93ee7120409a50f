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

use crate::config::Config;
use crate::error::{Error, Result};
use crate::job::{computing_plan, run_plan};
use crate::observer::Observer;
use epiflow_operators::archive::{archive_path, sha256_hex};
use epiflow_operators::classify::{Classify, QualityRecord, REASONS};
use epiflow_operators::index::{parse_index, IndexEntry};
use epiflow_operators::model::EpisodeKey;
use epiflow_operators::Operator;
use epiflow_pipelines::stages::Registry;
use epiflow_pipelines::Cluster;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a prune is asked to do.
#[derive(Clone, Debug)]
pub struct Request {
    /// Where the archives, the index and the archive folder are.
    pub paths: Paths,
    /// List, archive or delete.
    pub action: Action,
    /// Only these reasons flag an episode (all when empty).
    pub reasons: Vec<String>,
    /// Only episodes of this lab host.
    pub host: Option<String>,
}

/// What a prune found and did (fields in name order, as `--json` has
/// always printed them).
#[derive(Clone, Debug, Serialize)]
pub struct Pruned {
    /// What was done with the flagged episodes.
    pub action: Action,
    /// Every episode examined, in index order.
    pub episodes: Vec<Examined>,
    /// How many of them were flagged.
    pub flagged: usize,
}

/// Refuses a reason that is not one of the classifier's.
pub fn check_reasons(reasons: &[String]) -> Result<()> {
    match reasons.iter().find(|r| !REASONS.contains(&r.as_str())) {
        Some(r) => Err(Error::Usage(format!("unknown --reason {r:?}; known: {}", REASONS.join(", ")))),
        None => Ok(()),
    }
}

/// Classifies the indexed episodes with the stages of `registry` (configured
/// from `config`) on `workers` threads, flags the fake ones, and carries out
/// the request's action on them: the one call behind `epiflow prune`.
pub fn run(
    request: &Request,
    config: &Config,
    registry: &Registry,
    workers: usize,
    observer: Arc<dyn Observer>,
) -> Result<Pruned> {
    check_reasons(&request.reasons)?;
    let paths = &request.paths;
    if request.action == Action::Archive && paths.archive_root.is_none() {
        return Err(Error::Usage("--archive needs --archive-root DIR (or --store)".into()));
    }
    let stages = config.stages(registry)?;
    // An acting prune is alone on the store from its first read to its last write.
    let _exclusive = match request.action {
        Action::DryRun => None,
        _ => Some(lock_for_action(paths).map_err(|e| Error::io("cannot lock", &paths.log(), e))?),
    };
    let snap = snapshot(&paths.index).map_err(|e| Error::io("cannot read index", &paths.index, e))?;
    observer.index_problems(&snap.problems);
    if request.action != Action::DryRun {
        let indexed: HashSet<EpisodeKey> = snap.entries.iter().map(|e| e.key.clone()).collect();
        let n = recover(paths, &indexed)
            .map_err(|e| Error::io("cannot finish an earlier prune in", &paths.episodes_root, e))?;
        if n > 0 {
            tracing::warn!("finished {n} actions an interrupted prune left undone");
        }
    }
    let entries: Vec<IndexEntry> =
        snap.entries.iter().filter(|e| request.host.as_ref().is_none_or(|h| *h == e.key.host_id)).cloned().collect();
    let keys: Vec<EpisodeKey> = entries.iter().map(|e| e.key.clone()).collect();
    let plan = computing_plan(config, stages, &paths.episodes_root);
    let corpus = run_plan(plan, entries, &Cluster::local(workers), observer)?
        .ok_or_else(|| Error::Dataflow("no result from worker 0".into()))?;
    let quality: BTreeMap<EpisodeKey, Cow<QualityRecord>> = corpus
        .table(Classify::NAME)
        .into_iter()
        .filter_map(|(key, held)| {
            Some((EpisodeKey { host_id: key.0.clone(), episode_id: key.1.clone() }, held.typed()?))
        })
        .collect();
    let episodes: Vec<Examined> = keys
        .iter()
        .map(|k| match quality.get(k) {
            Some(q) => Examined::from_quality(q, &request.reasons),
            None => Examined::unclassified(k),
        })
        .collect();
    let flagged: Vec<&Examined> = episodes.iter().filter(|e| e.flagged).collect();
    execute(paths, snap.len, &flagged, request.action)
        .map_err(|e| Error::io("prune failed in", &paths.episodes_root, e))?;
    let flagged = flagged.len();
    Ok(Pruned { action: request.action, episodes, flagged })
}

/// What prune does with flagged episodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Action {
    #[serde(rename = "dry-run")]
    /// List the flagged episodes; change nothing.
    DryRun,
    #[serde(rename = "archive")]
    /// Move each flagged archive to the archive folder; drop its index row.
    Archive,
    #[serde(rename = "delete")]
    /// Delete each flagged archive; drop its index row.
    Delete,
}

/// Where prune works.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `<host_id>/<episode_id>.tar.zst` under here.
    pub episodes_root: PathBuf,
    /// The index to read and rewrite.
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
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id on that host.
    pub episode_id: String,
    /// Its quality reasons (empty when unclassified).
    pub reasons: Vec<String>,
    /// Whether any reason applies.
    pub fake: bool,
    /// Whether a selected reason applies: what the action acts on.
    pub flagged: bool,
    /// Its sample, when the meta names one.
    pub sample_name: Option<String>,
    /// The exploit module that delivered it.
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
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id on that host.
    pub episode_id: String,
    /// Why it was flagged.
    pub reasons: Vec<String>,
    /// `archive` or `delete`.
    pub action: String,
    /// sha256 of the archive acted on, to recognise it after a crash.
    pub sha256: Option<String>,
    /// When (CLOCK_REALTIME, ns).
    pub at_ns: i64,
}

/// The index as prune saw it: its entries and how many bytes were read.
pub struct Snapshot {
    /// The well-formed rows, in file order.
    pub entries: Vec<IndexEntry>,
    /// The malformed lines, to report.
    pub problems: Vec<epiflow_operators::model::Problem>,
    /// Bytes of whole lines read: what the rewrite replaces.
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
