//! How a followed index's changes reach the idle leader. File notifications
//! (inotify on Linux, through the `notify` crate) wake it as soon as the
//! receiver appends a row or prune renames a new index into place; a poll at
//! a steady pace stays beneath them, the only way on a filesystem whose
//! changes are made by another machine (NFS, SMB, FUSE mounts: no
//! notification ever comes for those) and a safety net for a dropped one.

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Called from another thread when the index may have changed: it wakes the
/// leader parked between polls.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// How a followed index is watched (`[watch]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Wake on file notifications where the store's filesystem has them;
    /// `false` forces the poll alone (as on a network filesystem).
    pub notifications: bool,
    /// Milliseconds between two looks at the index when nothing woke the
    /// leader: the whole latency without notifications.
    pub poll_ms: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig { notifications: true, poll_ms: 200 }
    }
}

impl WatchConfig {
    /// How long an idle leader parks before looking at the index again.
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

/// How a follower hears of changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listening {
    /// File notifications wake it; the poll stays beneath them.
    Notifications,
    /// The poll alone, and why.
    Poll(String),
}

/// A watch of the index's directory that calls its [`Wake`] whenever the
/// index file is written, truncated, created, renamed or removed. It stops
/// when dropped.
pub struct IndexWatch {
    _watcher: RecommendedWatcher,
}

impl IndexWatch {
    /// Watches `index` (its directory, so that a file renamed into its place
    /// is seen too) or says why it cannot.
    pub fn start(index: &Path, wake: Wake) -> Result<IndexWatch, String> {
        let dir = index.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Some(kind) = remote_filesystem(dir) {
            let dir = dir.display();
            return Err(format!("{dir} is on {kind}, where changes made by other machines raise no notification"));
        }
        let name = index.file_name().map(OsString::from).unwrap_or_default();
        let handler = move |event: notify::Result<Event>| {
            // An error from the watch: look anyway, the poll finds what changed.
            if event.map_or(true, |e| concerns(&e, &name)) {
                wake();
            }
        };
        let mut watcher = notify::recommended_watcher(handler).map_err(|e| format!("no file notifications: {e}"))?;
        watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        Ok(IndexWatch { _watcher: watcher })
    }
}

/// Whether `event` may have changed the file called `name`: anything done to
/// it but opening or reading it (the follower's own reads raise those).
fn concerns(event: &Event, name: &OsString) -> bool {
    let writes = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    writes && event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()))
}

/// Filesystems whose files other machines change (network filesystems and
/// FUSE mounts, `fuse.sshfs` and the like): notifications see only this
/// machine's writes there, so the poll alone follows such a store.
const REMOTE: [&str; 14] = [
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "9p",
    "ceph",
    "afs",
    "coda",
    "glusterfs",
    "lustre",
    "gpfs",
    "fuse",
];

/// The type of network filesystem `dir` is on (`/proc/self/mounts`), if it is one.
#[cfg(target_os = "linux")]
fn remote_filesystem(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mount_type(&mounts, &dir).filter(|t| is_remote(t)).map(str::to_string)
}

/// Not told apart elsewhere than on Linux: the poll beneath the
/// notifications still follows such a store.
#[cfg(not(target_os = "linux"))]
fn remote_filesystem(_dir: &Path) -> Option<String> {
    None
}

/// The type of the filesystem mounted deepest above `dir`, from a mount
/// table in `/proc/mounts`' format (spaces in mount points as `\040`).
fn mount_type<'a>(mounts: &'a str, dir: &Path) -> Option<&'a str> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            let point = point.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\");
            dir.starts_with(&point).then_some((point.len(), kind))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, kind)| kind)
}

/// Whether a filesystem type is one whose changes notifications miss.
fn is_remote(kind: &str) -> bool {
    REMOTE.contains(&kind) || kind.starts_with("fuse.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    /// A watch whose wakes arrive on a channel.
    fn watched(index: &Path) -> (IndexWatch, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let wake: Wake = Arc::new(move || {
            let _ = tx.send(());
        });
        (IndexWatch::start(index, wake).expect("a local directory has notifications"), rx)
    }

    /// Waits for a wake (generously: this tests that one comes, not how
    /// fast), then drains the ones the same change raised.
    fn woke(rx: &mpsc::Receiver<()>) -> bool {
        let woke = rx.recv_timeout(Duration::from_secs(20)).is_ok();
        std::thread::sleep(Duration::from_millis(50));
        while rx.try_recv().is_ok() {}
        woke
    }

    #[test]
    fn an_append_a_rename_into_place_and_a_truncation_wake_the_follower() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index.jsonl");
        let (_watch, rx) = watched(&index);

        std::fs::write(&index, "{}\n").unwrap();
        assert!(woke(&rx), "creation");
        let mut file = std::fs::OpenOptions::new().append(true).open(&index).unwrap();
        file.write_all(b"{}\n").unwrap();
        drop(file);
        assert!(woke(&rx), "append");
        let tmp = dir.path().join("index.jsonl.tmp");
        std::fs::write(&tmp, "{}\n").unwrap();
        std::fs::rename(&tmp, &index).unwrap();
        assert!(woke(&rx), "rename into place (prune)");
        std::fs::OpenOptions::new().write(true).open(&index).unwrap().set_len(0).unwrap();
        assert!(woke(&rx), "truncation");

        // Reading the index, or writing another file, wakes no one.
        let _ = std::fs::read(&index).unwrap();
        std::fs::write(dir.path().join("other.json"), "{}").unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "a read or another file woke the follower");
    }

    #[test]
    fn a_store_on_a_network_mount_is_told_apart_from_a_local_one() {
        let mounts = "/dev/sda1 / ext4 rw 0 0\n\
                      lab:/corpus /mnt/lab nfs4 rw 0 0\n\
                      /dev/sdb1 /mnt/lab/local ext4 rw 0 0\n\
                      me@box:/x /mnt/my\\040box fuse.sshfs rw 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n";
        let kind = |dir: &str| mount_type(mounts, Path::new(dir)).filter(|t| is_remote(t));
        assert_eq!(kind("/mnt/lab/store"), Some("nfs4"));
        assert_eq!(kind("/mnt/lab/local/store"), None, "the deeper local mount wins");
        assert_eq!(kind("/mnt/my box/store"), Some("fuse.sshfs"), "an escaped space");
        assert_eq!(kind("/mnt/labs"), None, "a sibling whose name starts alike");
        assert_eq!(kind("/tmp/store"), None);
        assert_eq!(mount_type(mounts, Path::new("/home/x")), Some("ext4"));
    }
}
