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
