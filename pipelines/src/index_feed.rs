//! Where a corpus dataflow's index changes come from. A batch run hands in
//! the whole index once ([`Once`]); `epiflow watch` follows `index.jsonl` as
//! the receiver appends to it and prune replaces it ([`IndexFollower`]), and
//! turns what changed into insertions and retractions of index entries,
//! woken by file notifications where it can be ([`crate::index_watch`]).

use crate::index_watch::{IndexWatch, Listening, Wake, WatchConfig};
use crate::results::FileIdentity;
use epiflow_operators::index::{parse_index, parse_index_line, IndexEntry};
use epiflow_operators::model::{EpisodeKey, Problem};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest an idle leader parks without looking at the stop flag (and so
/// how soon Ctrl-C is heard, whatever the poll's pace).
const STOP_CHECK: Duration = Duration::from_millis(100);

/// What the index did since the last poll.
#[derive(Debug, PartialEq)]
pub enum Poll {
    /// Entries to insert (+1) and retract (-1), as one epoch of the dataflow.
    Changes(Vec<(IndexEntry, isize)>),
    /// Nothing new yet; ask again later.
    Idle,
    /// No more changes will come: the dataflow finishes.
    Closed,
}

/// A source of index changes, read by the leader's first worker only.
pub trait IndexFeed: Send {
    /// Returns at once with what changed.
    fn poll(&mut self) -> Poll;

    /// Called once before the first poll: the feed may call `wake` (from
    /// any thread) when it may have changes, and returns how long an idle
    /// leader waits for that before polling anyway (a poll may still find
    /// it is not time to look).
    fn listen(&mut self, wake: Wake) -> Duration {
        let _ = wake;
        WatchConfig::default().poll()
    }
}

/// The whole index, once: a batch run.
pub struct Once(Option<Vec<IndexEntry>>);

impl Once {
    /// The feed of `entries`, all at once.
    pub fn new(entries: Vec<IndexEntry>) -> Once {
        Once(Some(entries))
    }
}

impl IndexFeed for Once {
    fn poll(&mut self) -> Poll {
        match self.0.take() {
            Some(entries) => Poll::Changes(entries.into_iter().map(|e| (e, 1)).collect()),
            None => Poll::Closed,
        }
    }
}

/// The episode an index row describes, without where the row is: a row
/// moving to another line (prune rewrote the index) is not a change.
fn same_episode(a: &IndexEntry, b: &IndexEntry) -> bool {
    (&a.key, &a.sha256, a.bytes, a.received_at_ns) == (&b.key, &b.sha256, b.bytes, b.received_at_ns)
}

/// Follows `index.jsonl`. Appended lines are parsed from where the last poll
/// stopped (a line still being written waits for its newline); a replaced
/// file (new inode, or shorter) is read whole and diffed against the entries
/// in the dataflow. The later row of a key wins, as in a batch run.
///
/// An episode whose entry changed leaves in one epoch and comes back in the
/// next, so its old results are retracted before its new ones arrive.
pub struct IndexFollower {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    config: WatchConfig,
    /// The file notifications waking the leader, while they last.
    watch: Option<IndexWatch>,
    listening: Listening,
    /// Set by a notification: look at the index now.
    notified: Arc<AtomicBool>,
    /// When the index was last looked at: the poll looks again after `config.poll()`.
    last_look: Option<Instant>,
    /// Identity of the file read so far, and how far (just past a newline).
    identity: Option<FileIdentity>,
    offset: u64,
    lines: u64,
    /// The entries in the dataflow, one per key.
    current: BTreeMap<EpisodeKey, IndexEntry>,
    /// Entries to insert in the next epoch (their old entry leaves in this one).
    deferred: Vec<IndexEntry>,
    /// Malformed lines seen since the last [`IndexFollower::take_problems`].
    problems: Vec<Problem>,
    /// Malformed lines in the index as it now stands.
    malformed: usize,
}

impl IndexFollower {
    /// Follows the index at `path` until `stop` is set, watched as `config` says.
    pub fn new(path: &Path, stop: Arc<AtomicBool>, config: WatchConfig) -> IndexFollower {
        IndexFollower {
            path: path.to_path_buf(),
            stop,
            config,
            watch: None,
            listening: Listening::Poll("not listening yet".into()),
            notified: Arc::new(AtomicBool::new(false)),
            last_look: None,
            identity: None,
            offset: 0,
            lines: 0,
            current: BTreeMap::new(),
            deferred: Vec::new(),
            problems: Vec::new(),
            malformed: 0,
        }
    }

    /// How changes reach it: notifications, or the poll alone and why.
    pub fn listening(&self) -> &Listening {
        &self.listening
    }

    /// Malformed lines in the index as it now stands (a batch run skips as many).
    pub fn malformed_lines(&self) -> usize {
        self.malformed
    }

    /// Malformed lines found since the last call.
    pub fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }

    /// The index's new rows, or all of them when the file was replaced;
    /// `None` when nothing changed or the file cannot be read right now.
    fn read_changes(&mut self) -> io::Result<Option<Vec<IndexEntry>>> {
        let Some(identity) = FileIdentity::of(&self.path) else { return Ok(None) };
        let appended = self.identity.is_some_and(|old| old.inode == identity.inode && identity.size >= self.offset);
        if appended && Some(identity) == self.identity {
            return Ok(None);
        }
        let mut file = std::fs::File::open(&self.path)?;
        let whole = !appended;
        if whole {
            self.offset = 0;
            self.lines = 0;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // Only whole lines: a row being appended is read on a later poll.
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(complete);
        self.offset += complete as u64;
        self.identity = Some(FileIdentity { size: self.offset, ..identity });
        let name = self.path.display().to_string();
        if whole {
            let scan = parse_index(&bytes, &name);
            self.lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
            self.malformed = scan.problems.len();
            self.problems.extend(scan.problems);
            return Ok(Some(scan.entries));
        }
        // Appended rows change only their own keys: the rest of the index stands.
        let mut index: BTreeMap<EpisodeKey, IndexEntry> = self.current.clone();
        index.extend(self.deferred.iter().map(|e| (e.key.clone(), e.clone())));
        for raw in bytes.split_inclusive(|b| *b == b'\n') {
            self.lines += 1;
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            let parsed = std::str::from_utf8(raw)
                .map_err(|e| format!("not UTF-8: {e}"))
                .and_then(|text| parse_index_line(text, self.lines));
            match parsed {
                Ok(Some(entry)) => {
                    index.insert(entry.key.clone(), entry);
                }
                Ok(None) => {}
                Err(message) => {
                    self.malformed += 1;
                    self.problems.push(Problem::at(&name, Some(self.lines), message));
                }
            }
        }
        Ok(Some(index.into_values().collect()))
    }

    /// The epoch that takes the dataflow from its entries to `index`.
    fn diff(&mut self, index: Vec<IndexEntry>) -> Vec<(IndexEntry, isize)> {
        let mut changes: Vec<(IndexEntry, isize)> = Vec::new();
        let listed: HashSet<&EpisodeKey> = index.iter().map(|e| &e.key).collect();
        let gone: Vec<EpisodeKey> = self.current.keys().filter(|k| !listed.contains(k)).cloned().collect();
        for key in gone {
            if let Some(old) = self.current.remove(&key) {
                changes.push((old, -1));
            }
        }
        self.deferred.clear();
        for entry in index {
            match self.current.get(&entry.key) {
                Some(old) if same_episode(old, &entry) => {}
                Some(_) => {
                    if let Some(old) = self.current.remove(&entry.key) {
                        changes.push((old, -1));
                    }
                    self.deferred.push(entry);
                }
                None => {
                    self.current.insert(entry.key.clone(), entry.clone());
                    changes.push((entry, 1));
                }
            }
        }
        changes
    }

    /// Moves the deferred entries into the dataflow.
    fn take_deferred(&mut self) -> Vec<(IndexEntry, isize)> {
        let deferred = std::mem::take(&mut self.deferred);
        deferred
            .into_iter()
            .map(|e| {
                self.current.insert(e.key.clone(), e.clone());
                (e, 1)
            })
            .collect()
    }
}

impl IndexFeed for IndexFollower {
    fn poll(&mut self) -> Poll {
        if self.stop.load(Ordering::Relaxed) {
            return Poll::Closed;
        }
        let due = self.last_look.is_none_or(|at| at.elapsed() >= self.config.poll());
        if !self.notified.swap(false, Ordering::AcqRel) && !due && self.deferred.is_empty() {
            return Poll::Idle;
        }
        self.last_look = Some(Instant::now());
        let first_read = self.identity.is_none();
        let changes = match self.read_changes() {
            Ok(Some(index)) => self.diff(index),
            Ok(None) => self.take_deferred(),
            Err(e) => {
                self.problems.push(Problem::at(&self.path.display().to_string(), None, format!("cannot read: {e}")));
                Vec::new()
            }
        };
        // The first read is an epoch even when the index is empty, so that
        // the outputs exist from the start.
        match changes.is_empty() && !(first_read && self.identity.is_some()) {
            true => Poll::Idle,
            false => Poll::Changes(changes),
        }
    }

    fn listen(&mut self, wake: Wake) -> Duration {
        let notified = Arc::clone(&self.notified);
        let wake: Wake = Arc::new(move || {
            notified.store(true, Ordering::Release);
            wake();
        });
        let started = match self.config.notifications {
            true => IndexWatch::start(&self.path, wake),
            false => Err("[watch] notifications = false".to_string()),
        };
        (self.watch, self.listening) = match started {
            Ok(watch) => (Some(watch), Listening::Notifications),
            Err(why) => (None, Listening::Poll(why)),
        };
        self.config.poll().clamp(Duration::from_millis(1), STOP_CHECK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Looks at the index at every poll.
    const EVERY_POLL: WatchConfig = WatchConfig { notifications: false, poll_ms: 0 };

    fn row(ep: &str, sha: &str) -> String {
        format!("{{\"host_id\":\"h\",\"episode_id\":\"{ep}\",\"sha256\":\"{sha}\"}}\n")
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Replaces the file by rename, as prune does.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// A poll's changes as (episode, sha, diff), in order.
    fn changes(feed: &mut IndexFollower) -> Vec<(String, String, isize)> {
        match feed.poll() {
            Poll::Changes(c) => {
                c.into_iter().map(|(e, d)| (e.key.episode_id, e.sha256.unwrap_or_default(), d)).collect()
            }
            Poll::Idle => Vec::new(),
            Poll::Closed => panic!("closed"),
        }
    }

    fn c(ep: &str, sha: &str, diff: isize) -> (String, String, isize) {
        (ep.to_string(), sha.to_string(), diff)
    }

    #[test]
    fn appends_replacements_and_rewrites_become_the_right_diffs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.jsonl");
        let stop = Arc::new(AtomicBool::new(false));
        let mut feed = IndexFollower::new(&path, Arc::clone(&stop), EVERY_POLL);
        assert_eq!(feed.poll(), Poll::Idle, "no index yet");
        append(&path, "");
        assert_eq!(feed.poll(), Poll::Changes(Vec::new()), "an empty index is a first epoch");
        assert_eq!(feed.poll(), Poll::Idle);

        append(&path, &(row("a", "01") + &row("b", "02")));
        assert_eq!(changes(&mut feed), vec![c("a", "01", 1), c("b", "02", 1)]);
        assert_eq!(feed.poll(), Poll::Idle, "nothing new");

        // A row being written waits for its newline; the bad line is reported.
        append(&path, "not json\n{\"host_id\":\"h\",\"episode_id\":\"c\",");
        assert_eq!(changes(&mut feed), vec![]);
        let problems = feed.take_problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3));
        assert_eq!(feed.malformed_lines(), 1);
        append(&path, "\"sha256\":\"03\"}\n");
        assert_eq!(changes(&mut feed), vec![c("c", "03", 1)]);

        // A later row for a key: the old entry leaves, the new one comes next.
        append(&path, &row("a", "11"));
        assert_eq!(changes(&mut feed), vec![c("a", "01", -1)]);
        assert_eq!(changes(&mut feed), vec![c("a", "11", 1)]);

        // Prune's rewrite: rows move to other lines (no change) and one goes.
        replace(&path, &(row("c", "03") + &row("a", "11")));
        assert_eq!(changes(&mut feed), vec![c("b", "02", -1)]);
        assert_eq!(feed.malformed_lines(), 0, "the bad line went with the rewrite");
        append(&path, &row("d", "04"));
        assert_eq!(changes(&mut feed), vec![c("d", "04", 1)]);
        assert!(feed.take_problems().is_empty());

        stop.store(true, Ordering::Relaxed);
        assert_eq!(feed.poll(), Poll::Closed);
    }

    #[test]
    fn a_replacement_during_a_deferred_insert_keeps_the_latest_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.jsonl");
        let mut feed = IndexFollower::new(&path, Arc::new(AtomicBool::new(false)), EVERY_POLL);
        append(&path, &row("a", "01"));
        assert_eq!(changes(&mut feed), vec![c("a", "01", 1)]);
        append(&path, &row("a", "02"));
        assert_eq!(changes(&mut feed), vec![c("a", "01", -1)]);
        append(&path, &row("a", "03"));
        assert_eq!(changes(&mut feed), vec![c("a", "03", 1)], "the deferred row is superseded");
        assert_eq!(feed.poll(), Poll::Idle);
    }
}
