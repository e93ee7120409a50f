//! One worker, two workers and two processes (timely's own cluster mode) give
//! byte-identical outputs.

mod common;
use common::*;
use std::net::TcpListener;
use std::process::{Command, Stdio};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn workers_and_processes_give_byte_identical_validation() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    epiflow_ok(&["synth", "--out", s, "--episodes", "120", "--seed", "4", "--duration-s", "30"], 0);

    let run = |name: &str, workers: &str| {
        let out = dir.path().join(name);
        epiflow_ok(&["validate", "--store", s, "--out", out.to_str().unwrap(), "--workers", workers, "-q"], 0);
        std::fs::read(out.join("validation.parquet")).unwrap()
    };
    let one = run("one", "1");
    let two = run("two", "2");
    assert_eq!(one, two, "2 workers == 1 worker");

    let out = dir.path().join("procs");
    two_processes(dir.path(), &["validate", "--store", s, "--out", out.to_str().unwrap()]);
    assert_eq!(one, std::fs::read(out.join("validation.parquet")).unwrap(), "2 processes == 1 worker");
    let rows = validation_rows(&out.join("validation.parquet"));
    assert_eq!(rows.len(), 120);
}

/// Runs `epiflow ARGS --processes 2 --process i` for both processes at once.
fn two_processes(dir: &std::path::Path, args: &[&str]) {
    let hostfile = dir.join("hosts.txt");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            Command::new(env!("CARGO_BIN_EXE_epiflow"))
                .args(args)
                .args(["--workers", "1", "--processes", "2", "--process", &p.to_string()])
                .args(["--hostfile", hostfile.to_str().unwrap(), "-q"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn features_from_two_processes_match_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    epiflow_ok(&["synth", "--out", s, "--episodes", "40", "--seed", "8", "--duration-s", "30"], 0);
    let one = dir.path().join("one");
    epiflow_ok(&["features", "--store", s, "--out", one.to_str().unwrap(), "--workers", "1", "-q"], 0);
    let procs = dir.path().join("procs");
    two_processes(dir.path(), &["features", "--store", s, "--out", procs.to_str().unwrap()]);
    assert_eq!(tree_hash(&one.join("features")), tree_hash(&procs.join("features")));
    assert_eq!(
        std::fs::read(one.join("validation.parquet")).unwrap(),
        std::fs::read(procs.join("validation.parquet")).unwrap()
    );
}

#[test]
fn a_process_index_outside_the_cluster_is_a_usage_error() {
    let out = epiflow(&["validate", "--store", "/nonexistent", "--processes", "2", "--process", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--process 2 must be below --processes 2"));
}

/// Rewrites the store's index as another receiver might write it: only
/// `host_id` and `episode_id` (SPEC section 2: the rest is optional), keys
/// in another order, an extra field — or, with `bytes`, a `bytes` that lies.
fn rewrite_index(store: &std::path::Path, bytes: Option<&dyn Fn(usize) -> u64>) {
    let mut out = String::new();
    for (i, line) in index_lines(store).iter().filter(|l| !l.trim().is_empty()).enumerate() {
        let (host, episode) = line_key(line);
        let size = bytes.map(|b| format!(",\"bytes\":{}", b(i))).unwrap_or_default();
        out += &format!("{{\"shipped_by\":\"rsync\",\"episode_id\":\"{episode}\"{size},\"host_id\":\"{host}\"}}\n");
    }
    std::fs::write(store.join("index.jsonl"), out).unwrap();
}

/// `run.json`'s per-worker lines: (episodes, decoded) by worker.
fn per_worker(out: &std::path::Path) -> Vec<(u64, u64)> {
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    stats["per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["episodes"].as_u64().unwrap(), w["decoded"].as_u64().unwrap()))
        .collect()
}

/// Each worker took between a quarter and three quarters of `total`
/// episodes, and decoded all it took.
fn assert_spread(workers: &[(u64, u64)], total: u64, what: &str) {
    assert_eq!(workers.len(), 2, "{what}: {workers:?}");
    assert_eq!(workers.iter().map(|w| w.0).sum::<u64>(), total, "{what}: {workers:?}");
    for &(episodes, decoded) in workers {
        assert!(episodes >= total / 4 && episodes <= total * 3 / 4, "{what}: {workers:?}");
        assert_eq!(decoded, episodes, "{what}: {workers:?}");
    }
}

#[test]
fn an_index_without_sizes_keeps_every_worker_and_process_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 48, 11, 30);
    let s = store.to_str().unwrap();
    rewrite_index(&store, None);

    let out = |name: &str| dir.path().join(name);
    let two = out("two");
    epiflow_ok(&["validate", "--store", s, "--out", two.to_str().unwrap(), "--workers", "2", "-q"], 0);
    assert_spread(&per_worker(&two), 48, "validate, 2 workers");
    let two = out("two-features");
    epiflow_ok(&["features", "--store", s, "--out", two.to_str().unwrap(), "--workers", "2", "-q"], 0);
    assert_spread(&per_worker(&two), 48, "features, 2 workers (whole shards placed)");

    let one = out("one");
    epiflow_ok(&["features", "--store", s, "--out", one.to_str().unwrap(), "--workers", "1", "-q"], 0);
    let procs = out("procs");
    two_processes(dir.path(), &["features", "--store", s, "--out", procs.to_str().unwrap()]);
    assert_spread(&per_worker(&procs), 48, "features, 2 processes");
    assert_eq!(tree_hash(&one.join("features")), tree_hash(&procs.join("features")));
    for file in ["validation.parquet", "quality.parquet"] {
        assert_eq!(std::fs::read(one.join(file)).unwrap(), std::fs::read(procs.join(file)).unwrap(), "{file}");
    }
}

#[test]
fn an_index_that_lies_about_sizes_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 40, 12, 30);
    let s = store.to_str().unwrap();
    // One archive "weighs" a terabyte, every other one byte.
    rewrite_index(&store, Some(&|i| if i == 0 { 1 << 40 } else { 1 }));
    let two = dir.path().join("two");
    epiflow_ok(&["validate", "--store", s, "--out", two.to_str().unwrap(), "--workers", "2", "-q"], 0);
    assert_spread(&per_worker(&two), 40, "validate, 2 workers, lying index");
    let one = dir.path().join("one");
    epiflow_ok(&["validate", "--store", s, "--out", one.to_str().unwrap(), "--workers", "1", "-q"], 0);
    assert_eq!(
        std::fs::read(one.join("validation.parquet")).unwrap(),
        std::fs::read(two.join("validation.parquet")).unwrap()
    );
}
