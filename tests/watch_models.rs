//! `epiflow watch --split`: the models follow the store in the background.
//! An append is published before the training it triggers ends, then the
//! models and report are published; a test-side arrival retrains nothing;
//! Ctrl-C during training leaves the previous checkpoint as it was, and the
//! next start trains it.

mod common;
#[path = "common/watch.rs"]
mod watch;

use common::{busiest_host, clean_episodes, index_lines, line_key, synth_store};
use serde_json::Value;
use std::path::Path;
use watch::Watch;

/// A line for the models brought up to date has the training sink's counts;
/// a publication's line has none.
fn is_models_line(line: &Value) -> bool {
    line["operators"].get("train").is_some()
}

/// The model's checkpoint files, by name, with their bytes.
fn checkpoint(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

fn append(store: &Path, line: &str) {
    let mut index = std::fs::OpenOptions::new().append(true).open(store.join("index.jsonl")).unwrap();
    std::io::Write::write_all(&mut index, format!("{line}\n").as_bytes()).unwrap();
}

#[test]
fn watch_trains_in_the_background_and_ctrl_c_leaves_the_checkpoint_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 40, 5, 40);
    let out = dir.path().join("out");
    // Clean episodes held back: four of training hosts, one of the test
    // host.
    let lines = index_lines(&store);
    let test_host = busiest_host(&lines, None);
    let clean = clean_episodes(&store);
    let held_back = |on_test_host: bool, skip: usize| -> usize {
        let matching = |l: &String| (line_key(l).0 == test_host) == on_test_host && clean.contains(&line_key(l));
        lines.iter().enumerate().filter(|(_, l)| matching(l)).map(|(i, _)| i).rev().nth(skip).unwrap()
    };
    let held = [held_back(false, 0), held_back(true, 0), held_back(false, 1), held_back(false, 2), held_back(false, 3)];
    let kept: Vec<&str> =
        lines.iter().enumerate().filter(|(i, _)| !held.contains(i)).map(|(_, l)| l.as_str()).collect();
    std::fs::write(store.join("index.jsonl"), kept.join("\n") + "\n").unwrap();
    let config = |name: &str, epochs: usize| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("[train.neural]\nmax_epochs = {epochs}\npatience = {epochs}\n")).unwrap();
        path.to_str().unwrap().to_string()
    };
    // Quick, and so slow that training is still under way when the test
    // looks (every epoch runs: no early stop).
    let (quick, slow) = (config("quick.toml", 3), config("slow.toml", 1_000_000));
    let (s, o) = (store.to_str().unwrap(), out.to_str().unwrap());
    let args = |config: &str| -> Vec<String> {
        ["--store", s, "--out", o, "--config", config, "--test-host", &test_host]
            .into_iter()
            .chain(["--split", "host", "--arch", "mlp", "--channels", "realistic"])
            .map(str::to_string)
            .collect()
    };
    let model_dir = out.join("models/host/mlp-realistic");
    let name = "host/mlp-realistic";

    let mut watch = Watch::start(&args(&quick));
    let first = watch.next();
    assert!(!is_models_line(&first), "the features are published first: {first}");
    assert_eq!(first["model_states"][name], "stale", "{first}");
    let trained = watch.next();
    assert!(is_models_line(&trained), "{trained}");
    assert_eq!(trained["models"][0]["status"], "computed", "{trained}");
    assert_eq!(trained["model_states"][name], "current");
    assert_eq!(trained["evals"][0]["status"], "computed");
    let tested = report_episodes(&out);

    // A training-side arrival: published, then the retrained model and its
    // report.
    let before = checkpoint(&model_dir);
    append(&store, &lines[held[0]]);
    let published = watch.next();
    assert!(!is_models_line(&published), "the publication comes first: {published}");
    assert_eq!(published["episodes"], first["episodes"].as_u64().unwrap() + 1);
    assert_ne!(published["model_states"][name], "current", "{published}");
    let retrained = watch.next();
    assert!(is_models_line(&retrained), "{retrained}");
    assert_eq!(retrained["models"][0]["status"], "computed", "{retrained}");
    assert_eq!(retrained["model_states"][name], "current");
    assert_ne!(checkpoint(&model_dir), before, "a new checkpoint");

    // A test-side arrival: nothing retrained, the report re-evaluated.
    append(&store, &lines[held[1]]);
    assert!(!is_models_line(&watch.next()));
    let evaluated = watch.next();
    assert_eq!(evaluated["operators"]["train"]["computed"], 0, "{evaluated}");
    assert_eq!(evaluated["operators"]["eval"]["computed"], 1, "{evaluated}");
    assert_eq!(report_episodes(&out), tested + 1);
    assert_eq!(watch.interrupt().code(), Some(0));
    drop(watch);

    // With settings that train for hours, an arrival is published while
    // the model trains; Ctrl-C then leaves the checkpoint whole and as it
    // was, and the next start trains it.
    let whole = checkpoint(&model_dir);
    let mut watch = Watch::start(&args(&slow));
    assert!(!is_models_line(&watch.next()));
    // The training starts from the snapshot once its inputs are read; an
    // arrival seen before that (notifications are quick) publishes the
    // model as stale, so up to three arrive, a second apart.
    wait_for(&out.join(".snapshot"));
    let mut during = Value::Null;
    for &arrival in &held[2..] {
        append(&store, &lines[arrival]);
        during = watch.next();
        assert!(!is_models_line(&during), "{during}");
        if during["model_states"][name] == "training" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_eq!(during["model_states"][name], "training", "published while the model trains: {during}");
    let status = watch.interrupt();
    assert!(status.success(), "Ctrl-C ends watch with status 0: {status:?}");
    assert!(watch.lines.try_iter().all(|l| !is_models_line(&l)), "no model published after Ctrl-C");
    assert_eq!(checkpoint(&model_dir), whole, "the interrupted training left the checkpoint as it was");
    assert!(!out.join(".snapshot").exists(), "the training's snapshot is removed");
    drop(watch);

    let watch = Watch::start(&args(&quick));
    assert!(!is_models_line(&watch.next()));
    let resumed = watch.next();
    assert_eq!(resumed["models"][0]["status"], "computed", "the next start trains it: {resumed}");
    assert_ne!(checkpoint(&model_dir), whole);
}

/// Waits (up to a minute) for `path` to exist.
fn wait_for(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{} within a minute", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Test episodes in the host split's report.
fn report_episodes(out: &Path) -> u64 {
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("eval/host/report.json")).unwrap()).unwrap();
    report["test"]["episodes"].as_u64().unwrap()
}
