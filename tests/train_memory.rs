//! Training in bounded memory (`[train] memory_mb`): on a store whose
//! training windows take several times the budget, `epiflow train` still
//! trains every architecture, and its peak resident memory exceeds what the
//! same command takes on a store of a third of the episodes by less than the
//! budget (holding the windows would add two thirds of them).
//! Linux only: the peak is read from the child's `/proc/<pid>/status`.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The budget under test, in MiB.
const MEMORY_MB: usize = 64;

/// Wide windows close together, so that a small store holds many bytes of
/// windows: 80 time steps of 20 s every half second; one channel set, short
/// schedules.
fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("epiflow.toml");
    let text = format!(
        "[window]\nwindow_s = 20.0\nstride_s = 0.5\n[tensor]\nhz = 4.0\n\
         [train]\nchannels = [\"oracle\"]\nmemory_mb = {MEMORY_MB}\n\
         [train.neural]\nmax_epochs = 1\n[train.gbt]\nrounds = 5\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `epiflow train` on `store` and returns its peak resident set in
/// KiB (VmHWM, read until the process exits) and its run.json.
fn train_peak(store: &Path, config: &Path) -> (u64, Value) {
    let out = store.join("derived");
    let args = ["train", "--store", store.to_str().unwrap(), "--config", config.to_str().unwrap(), "--split", "host"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_epiflow"))
        .args(args)
        .arg("-q")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let hwm = text.lines().find_map(|l| l.strip_prefix("VmHWM:"));
            peak = peak.max(hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(child.wait().unwrap().success(), "epiflow {args:?} failed");
    (peak, serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap())
}

#[test]
fn training_far_more_windows_than_the_budget_stays_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (small, large) = (dir.path().join("small"), dir.path().join("large"));
    synth_store(&small, 120, 3, 60);
    synth_store(&large, 360, 3, 60);
    for store in [&small, &large] {
        let s = store.to_str().unwrap();
        epiflow_ok(&["run", "--store", s, "--config", config.to_str().unwrap(), "-q"], 0);
    }
    let (floor, _) = train_peak(&small, &config);
    let (peak, run) = train_peak(&large, &config);

    let models = run["models"].as_array().unwrap();
    assert_eq!(models.len(), 6, "every architecture, oracle channels");
    for m in models {
        assert_eq!(m["status"], "computed", "{m}");
    }
    // What holding the training side would take: its windows × each
    // window's values (f32) and mask cells (a byte each).
    let card: Value =
        serde_json::from_slice(&std::fs::read(large.join("derived/models/host/cnn-oracle/model.json")).unwrap())
            .unwrap();
    let train_windows = card["split"]["windows"]["train"].as_u64().unwrap();
    let window_bytes = card["width"].as_u64().unwrap() * 5;
    let held_mb = (train_windows * window_bytes) as f64 / (1 << 20) as f64;
    assert!(held_mb > 3.0 * MEMORY_MB as f64, "the training side ({held_mb:.0} MiB) is several budgets");
    assert!(
        card["config"]["shuffle_windows"].as_u64().unwrap() < 16_384,
        "the budget shrank the shuffle buffer: {}",
        card["config"]
    );
    let (floor_mb, peak_mb) = (floor as f64 / 1024.0, peak as f64 / 1024.0);
    eprintln!("peak RSS {peak_mb:.0} MiB; {floor_mb:.0} MiB on a third of the store; training side {held_mb:.0} MiB");
    assert!(
        peak_mb <= floor_mb + MEMORY_MB as f64,
        "peak {peak_mb:.0} MiB, more than the budget ({MEMORY_MB} MiB) above the {floor_mb:.0} MiB of a third of the store"
    );
}
