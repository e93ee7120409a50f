//! `epiflow prune` on real `.tar.zst` files: the earlier tool's whole prune suite
//! (`shared/seeds/004_*`), then what it never had: concurrent appends, kills at
//! random moments, and archiving onto another file system.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const STEP: i64 = 100_000_000;

fn jsonl(rows: &[Value]) -> Vec<u8> {
    let mut s = rows.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n");
    s.push('\n');
    s.into_bytes()
}

fn meta(sample: Option<Value>) -> Vec<u8> {
    jsonl(&[json!({"episode_id": "01TEST", "schema_version": 1, "sample": sample,
        "exploit": {"module_name": "vsftpd_234_backdoor", "module": "x"},
        "result": {"phases_observed": ["clean", "infected_running", "dormant"]}})])
}

fn xmrig() -> Option<Value> {
    Some(json!({"name": "xmrig", "kind": "real", "family": "XMRig", "category": "cryptominer",
                "profile": "cpu-saturate", "sha256": "a".repeat(64)}))
}

fn events(probe_yes: &str) -> Vec<u8> {
    jsonl(&[
        json!({"event": "snapshot_load"}),
        json!({"event": "workload_setup"}),
        json!({"event": "workload_started", "phase": "infected_running"}),
        json!({"event": "workload_killed", "phase": "dormant", "pre_kill_probe": {"yes": probe_yes, "loadavg": "1.4"}}),
        json!({"event": "episode_end"}),
    ])
}

/// Host /proc rows, the seed's fixture: flat (a constant 200 jiffies/s) or a
/// sharp envelope in the middle third.
fn proc_rows(flat: bool, n: i64) -> Vec<u8> {
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            let jiff = if flat || i < n / 3 || i >= 2 * n / 3 { 100 + i * 20 } else { 100 + i * 1000 };
            json!({"t_mono_ns": i * STEP, "t_wall_ns": i * STEP, "cpu_user_jiffies": jiff, "cpu_sys_jiffies": 0, "rss_bytes": 1 << 20})
        })
        .collect();
    jsonl(&rows)
}

fn labels(n: i64) -> Vec<u8> {
    let b = [0, n / 3 * STEP, 2 * n / 3 * STEP];
    let names = ["clean", "infected_running", "dormant"];
    jsonl(
        &(0..3)
            .map(|i| json!({"t_mono_ns": b[i], "t_wall_ns": b[i], "phase": names[i], "prev": null}))
            .collect::<Vec<_>>(),
    )
}

/// The seed's `_make_episode`: a healthy episode unless members are overridden.
fn make_episode(overrides: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let n = 60;
    let mut members: Vec<(String, Vec<u8>)> = vec![
        ("meta.json".into(), meta(xmrig())),
        ("events.jsonl".into(), events("2")),
        ("labels.jsonl".into(), labels(n)),
        ("telemetry-proc.jsonl".into(), proc_rows(false, n)),
    ];
    for (name, bytes) in overrides {
        set_member(&mut members, name, Some(bytes.clone()));
    }
    archive_under("01TEST", &members)
}

/// Classifies archives with `prune --json` (legacy flags); returns reasons by id.
fn classify(episodes: &[(&str, Vec<u8>)]) -> BTreeMap<String, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StoreBuilder::new(dir.path());
    for (id, bytes) in episodes {
        s.add("lab1", id, bytes, None);
    }
    let store = s.finish();
    let out = epiflow(&[
        "prune",
        "--episodes-root",
        store.join("episodes").to_str().unwrap(),
        "--index",
        store.join("index.jsonl").to_str().unwrap(),
        "--json",
        "-q",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let flagged = v["flagged"].as_u64().unwrap();
    assert_eq!(out.status.code(), Some(if flagged > 0 { 1 } else { 0 }));
    assert_eq!(v["action"], "dry-run");
    v["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["fake"], !e["reasons"].as_array().unwrap().is_empty());
            (
                e["episode_id"].as_str().unwrap().to_string(),
                e["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect()
}

fn netflow(n: i64, bytes: impl Fn(i64) -> (i64, i64)) -> Vec<u8> {
    jsonl(
        &(0..n * 5)
            .map(|i| {
                let t = i * 20_000_000;
                let (bi, bo) = bytes(t);
                json!({"t_mono_ns": t, "t_wall_ns": t, "bytes_in": bi, "bytes_out": bo})
            })
            .collect::<Vec<_>>(),
    )
}

#[test]
fn seed_classifier_cases() {
    let n = 60;
    let r = classify(&[
        ("healthy", make_episode(&[])),
        ("nosample", make_episode(&[("meta.json", meta(None))])),
        (
            "noworkload",
            make_episode(&[(
                "events.jsonl",
                jsonl(&[
                    json!({"event": "snapshot_load"}),
                    json!({"event": "phase_transition", "to": "clean"}),
                    json!({"event": "episode_end"}),
                ]),
            )]),
        ),
        (
            "failed",
            make_episode(&[(
                "events.jsonl",
                jsonl(&[
                    json!({"event": "workload_setup"}),
                    json!({"event": "workload_failed", "phase": "infected_running", "error": "EOF on serial"}),
                    json!({"event": "episode_end"}),
                ]),
            )]),
        ),
        ("silent", make_episode(&[("events.jsonl", events("0")), ("telemetry-proc.jsonl", proc_rows(true, n))])),
        (
            "rescued",
            make_episode(&[
                ("telemetry-proc.jsonl", proc_rows(true, n)),
                (
                    "netflow.jsonl",
                    netflow(
                        n,
                        |t| if (n / 3 * STEP..2 * n / 3 * STEP).contains(&t) { (80_000, 60_000) } else { (0, 0) },
                    ),
                ),
            ]),
        ),
        (
            "flateverywhere",
            make_episode(&[("telemetry-proc.jsonl", proc_rows(true, n)), ("netflow.jsonl", netflow(n, |_| (100, 50)))]),
        ),
        ("busybox", make_episode(&[("events.jsonl", events("0"))])),
        ("flatcpu", make_episode(&[("telemetry-proc.jsonl", proc_rows(true, n))])),
        (
            "multiple",
            make_episode(&[("meta.json", meta(None)), ("events.jsonl", jsonl(&[json!({"event": "snapshot_load"})]))]),
        ),
    ]);
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(r["healthy"], v(&[]), "test_healthy_episode_has_no_reasons");
    assert_eq!(r["nosample"], v(&["no-sample"]), "test_no_sample_flag");
    assert_eq!(r["noworkload"], v(&["no-workload-events"]), "test_no_workload_events_flag");
    assert!(r["failed"].contains(&"workload-failed".into()), "test_workload_failed_flag");
    assert_eq!(r["silent"], v(&["workload-silent", "flat-cpu"]), "test_workload_silent_flag");
    assert!(!r["rescued"].contains(&"flat-cpu".into()), "test_flat_proc_rescued_by_netflow: {:?}", r["rescued"]);
    assert_eq!(r["flateverywhere"], v(&["flat-cpu"]), "test_flat_everywhere_still_flags");
    assert_eq!(r["busybox"], v(&[]), "test_workload_silent_suppressed_when_host_cpu_real");
    assert_eq!(r["flatcpu"], v(&["flat-cpu"]), "test_flat_cpu_flag");
    assert_eq!(r["multiple"], v(&["no-sample", "no-workload-events"]), "test_multiple_reasons_combine");
}

/// The seed's `_stage_receiver_tree`: lab1/01OK healthy, lab1/01FAKE no-sample.
fn stage_receiver_tree(root: &Path) -> (PathBuf, PathBuf) {
    let mut s = StoreBuilder::new(root);
    s.add("lab1", "01OK", &make_episode(&[]), None);
    s.add("lab1", "01FAKE", &make_episode(&[("meta.json", meta(None))]), None);
    let store = s.finish();
    (store.join("episodes"), store.join("index.jsonl"))
}

fn legacy(episodes: &Path, index: &Path, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["prune", "--episodes-root", episodes.to_str().unwrap(), "--index", index.to_str().unwrap(), "-q"];
    args.extend_from_slice(extra);
    epiflow(&args)
}

fn index_ids(index: &Path) -> Vec<String> {
    std::fs::read_to_string(index)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["episode_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dry_run_does_not_modify_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (episodes, index) = stage_receiver_tree(dir.path());
    let before = tree_hash(dir.path());
    let out = legacy(&episodes, &index, &["--reason", "no-sample"]);
    assert_eq!(out.status.code(), Some(1), "flagged episodes exist → exit 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("01FAKE"));
    assert_eq!(before, tree_hash(dir.path()));
}

#[test]
fn archive_moves_flagged_and_rewrites_index() {
    let dir = tempfile::tempdir().unwrap();
    let (episodes, index) = stage_receiver_tree(dir.path());
    let archive = dir.path().join("archive");
    let fake = std::fs::read(episodes.join("lab1/01FAKE.tar.zst")).unwrap();
    let out =
        legacy(&episodes, &index, &["--archive-root", archive.to_str().unwrap(), "--reason", "no-sample", "--archive"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(episodes.join("lab1/01OK.tar.zst").exists());
    assert!(!episodes.join("lab1/01FAKE.tar.zst").exists());
    assert_eq!(std::fs::read(archive.join("lab1/01FAKE.tar.zst")).unwrap(), fake);
    assert_eq!(index_ids(&index), vec!["01OK"]);
    let log: Value =
        serde_json::from_str(std::fs::read_to_string(dir.path().join("prune-log.jsonl")).unwrap().trim()).unwrap();
    assert_eq!(log["episode_id"], "01FAKE");
    assert_eq!(log["action"], "archive");
    assert_eq!(log["reasons"], json!(["no-sample"]));
    assert_eq!(log["sha256"].as_str().unwrap(), hex(&<sha2::Sha256 as sha2::Digest>::digest(&fake)));
    assert!(log["at_ns"].as_i64().unwrap() > 0);
}

#[test]
fn delete_removes_flagged_and_rewrites_index() {
    let dir = tempfile::tempdir().unwrap();
    let (episodes, index) = stage_receiver_tree(dir.path());
    let out = legacy(&episodes, &index, &["--reason", "no-sample", "--delete"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!episodes.join("lab1/01FAKE.tar.zst").exists());
    assert!(episodes.join("lab1/01OK.tar.zst").exists());
    assert_eq!(index_ids(&index), vec!["01OK"]);
    assert!(!dir.path().join("archive").exists());
}

#[test]
fn host_filter_scopes_to_one_lab_host() {
    let dir = tempfile::tempdir().unwrap();
    let (episodes, index) = stage_receiver_tree(dir.path());
    let out = legacy(&episodes, &index, &["--reason", "no-sample", "--host", "lab2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "zero flagged → exit 0");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["episodes"].as_array().unwrap().len(), 0);
    assert!(episodes.join("lab1/01FAKE.tar.zst").exists());
}

#[test]
fn archive_preserves_index_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (episodes, index) = stage_receiver_tree(dir.path());
    std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o664)).unwrap();
    // The receiver's service account owns the index (possible when tests run as root).
    let owned = std::os::unix::fs::chown(&index, Some(4321), Some(4322)).is_ok();
    let archive = dir.path().join("archive");
    legacy(&episodes, &index, &["--archive-root", archive.to_str().unwrap(), "--reason", "no-sample", "--archive"]);
    assert_eq!(std::fs::metadata(&index).unwrap().permissions().mode() & 0o7777, 0o664);
    if owned {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&index).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 4322), "the rewritten index keeps its owner");
    } else {
        eprintln!("owner check skipped: not allowed to chown here");
    }
    assert_eq!(index_ids(&index), vec!["01OK"]);
}

#[test]
fn reason_selection_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (episodes, index) = stage_receiver_tree(dir.path());
    assert_eq!(legacy(&episodes, &index, &["--reason", "flat-cpu"]).status.code(), Some(0), "01FAKE is not flat");
    let out = legacy(&episodes, &index, &["--reason", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown --reason \"bogus\""));
    let out = legacy(&episodes, &index, &["--archive"]);
    assert_eq!(out.status.code(), Some(2), "--archive needs somewhere to archive to");
    let out = legacy(&episodes, &index, &["--archive", "--delete"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(epiflow(&["prune"]).status.code(), Some(2));
}

/// A store whose flagged episodes are `fakes` and clean ones `goods`, using the
/// `--store` layout.
fn mixed_store(root: &Path, goods: usize, fakes: usize) -> PathBuf {
    let mut s = StoreBuilder::new(root);
    let good = make_episode(&[]);
    let fake = make_episode(&[("meta.json", meta(None))]);
    for i in 0..goods {
        s.add("lab1", &format!("good{i:03}"), &good, None);
    }
    for i in 0..fakes {
        s.add(if i % 2 == 0 { "lab1" } else { "lab2" }, &format!("fake{i:03}"), &fake, None);
    }
    s.finish()
}

#[test]
fn rows_appended_while_prune_archives_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = mixed_store(&dir.path().join("store"), 40, 40);
    let index = store.join("index.jsonl");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let index = index.clone();
        std::thread::spawn(move || {
            for i in 0..1000 {
                epiflow_engine::prune::index_rewrite::append_locked(
                    &index,
                    &format!("{{\"host_id\":\"new\",\"episode_id\":\"n{i:04}\"}}"),
                )
                .unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        })
    };
    let out = epiflow(&["prune", "--store", store.to_str().unwrap(), "--archive", "-q"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    appender.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let ids = index_ids(&index);
    let appended: BTreeSet<&String> = ids.iter().filter(|i| i.starts_with('n')).collect();
    assert_eq!(appended.len(), 1000, "every appended row survives");
    assert_eq!(ids.iter().filter(|i| i.starts_with("good")).count(), 40);
    assert_eq!(ids.iter().filter(|i| i.starts_with("fake")).count(), 0);
    assert_eq!(ids.len(), 1040, "no row is duplicated");
}

/// Checks the store after a prune that may have been killed: the index is valid
/// JSON Lines without duplicates, every episode is in the store (and indexed) or
/// in the archive, and no index row names an archive that is gone.
fn check_invariants(store: &Path, all: &BTreeMap<String, Vec<u8>>) -> usize {
    let text = std::fs::read_to_string(store.join("index.jsonl")).unwrap();
    let mut indexed = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("invalid index line {line:?}: {e}"));
        let key = format!("{}/{}", v["host_id"].as_str().unwrap(), v["episode_id"].as_str().unwrap());
        assert!(indexed.insert(key.clone()), "{key} indexed twice");
    }
    let mut archived = 0;
    for (key, bytes) in all {
        let in_store = std::fs::read(store.join("episodes").join(format!("{key}.tar.zst"))).ok();
        let in_archive = std::fs::read(store.join("archive").join(format!("{key}.tar.zst"))).ok();
        if indexed.contains(key) {
            assert_eq!(in_store.as_ref(), Some(bytes), "{key} is indexed, so its archive is in the store, whole");
        } else {
            assert_eq!(in_archive.as_ref(), Some(bytes), "{key} left the index, so it is in the archive, whole");
            archived += 1;
        }
    }
    archived
}

#[test]
fn prune_killed_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let template = mixed_store(&dir.path().join("template"), 20, 60);
    let all: BTreeMap<String, Vec<u8>> = ["lab1", "lab2"]
        .iter()
        .flat_map(|h| {
            std::fs::read_dir(template.join("episodes").join(h)).unwrap().map(move |e| (h, e.unwrap().path()))
        })
        .map(|(h, p)| {
            (
                format!("{h}/{}", p.file_stem().unwrap().to_str().unwrap().trim_end_matches(".tar")),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    assert_eq!(all.len(), 80);
    // An uninterrupted run archives all 60 fakes.
    let timed = dir.path().join("timed");
    copy_dir(&template, &timed);
    epiflow(&["prune", "--store", timed.to_str().unwrap(), "--archive", "-q"]);
    assert_eq!(check_invariants(&timed, &all), 60);

    let mut interrupted = 0;
    for run in 0..24u64 {
        let store = dir.path().join(format!("run{run}"));
        copy_dir(&template, &store);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_epiflow"))
            .args(["prune", "--store", store.to_str().unwrap(), "--archive", "-q"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill at an observable point of the action, different for every run:
        // after k archives are placed, once the log is written, once the index
        // is replaced, or after j store copies are gone.
        let index_inode = inode(&store.join("index.jsonl"));
        let k = (run as usize * 7) % 60;
        let trigger = |store: &Path| match run % 4 {
            0 => count_files(&store.join("archive")) > k,
            1 => store.join("prune-log.jsonl").exists(),
            2 => inode(&store.join("index.jsonl")) != index_inode,
            _ => count_files(&store.join("episodes")) < 80 - k / 2,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && !trigger(&store) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.code().is_none() {
            interrupted += 1;
        }
        check_invariants(&store, &all);
        // The next run finishes the job.
        let rerun = epiflow(&["prune", "--store", store.to_str().unwrap(), "--archive", "-q"]);
        assert!(rerun.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&rerun.stderr));
        assert_eq!(check_invariants(&store, &all), 60, "run {run}: every fake archived after a rerun");
        let mut names = Vec::new();
        for sub in ["episodes/lab1", "episodes/lab2", "archive/lab1", "archive/lab2", "."] {
            for e in std::fs::read_dir(store.join(sub)).unwrap() {
                names.push(e.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "run {run}: temporaries left: {names:?}");
        for (key, _) in all.iter().filter(|(k, _)| k.contains("fake")) {
            assert!(
                !store.join("episodes").join(format!("{key}.tar.zst")).exists(),
                "run {run}: {key} left in the store"
            );
        }
        std::fs::remove_dir_all(&store).unwrap();
    }
    assert!(interrupted >= 12, "most runs were really killed mid-way ({interrupted} of 24)");
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

/// Archive files under `dir` (two levels: host folders), temporaries excluded.
fn count_files(dir: &Path) -> usize {
    let Ok(hosts) = std::fs::read_dir(dir) else { return 0 };
    hosts
        .filter_map(|h| std::fs::read_dir(h.ok()?.path()).ok())
        .flat_map(|files| files.filter_map(|f| f.ok()))
        .filter(|f| f.file_name().to_string_lossy().ends_with(".tar.zst"))
        .count()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

#[test]
fn archive_onto_another_file_system() {
    use std::os::unix::fs::MetadataExt;
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm on this machine");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    if std::fs::metadata(shm.path()).unwrap().dev() == std::fs::metadata(dir.path()).unwrap().dev() {
        eprintln!("skipped: /dev/shm is on the same file system as the temp dir");
        return;
    }
    let (episodes, index) = stage_receiver_tree(dir.path());
    let fake = std::fs::read(episodes.join("lab1/01FAKE.tar.zst")).unwrap();
    let out = legacy(&episodes, &index, &["--archive-root", shm.path().to_str().unwrap(), "--archive"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(shm.path().join("lab1/01FAKE.tar.zst")).unwrap(), fake);
    assert!(!episodes.join("lab1/01FAKE.tar.zst").exists());
    assert_eq!(index_ids(&index), vec!["01OK"]);
}
