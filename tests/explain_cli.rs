//! `epiflow explain` predicts what `epiflow run` then does: for every stage,
//! the episodes it would compute equal the episodes the run computes, for a
//! first run, nothing changed, a window change, a classifier threshold (and
//! setting it back), and episodes appended to the index.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `explain --json` with `extra` arguments: stage → episodes to recompute.
fn predicted(store: &str, extra: &[&str]) -> (Value, BTreeMap<String, u64>) {
    let text = epiflow_ok(&[&["explain", "--store", store, "--json"], extra].concat(), 0);
    let value: Value = serde_json::from_str(&text).unwrap();
    let by_stage = value["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["recompute"].as_u64().unwrap()))
        .collect();
    (value, by_stage)
}

/// `run --json` with `extra` arguments: operator → episodes computed.
fn computed(store: &str, extra: &[&str]) -> BTreeMap<String, u64> {
    let text = epiflow_ok(&[&["run", "--store", store, "--json", "-q"], extra].concat(), 0);
    let value: Value = serde_json::from_str(&text).unwrap();
    value["operators"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, o)| (name.clone(), o["computed"].as_u64().unwrap()))
        .collect()
}

/// Explains, runs, and checks the prediction stage by stage: exact when no
/// episode is new; when some are, their outcomes are unknown before the run
/// and the prediction is an upper bound (exact for decode).
fn explain_then_run(store: &str, extra: &[&str]) -> (Value, BTreeMap<String, u64>) {
    let (value, predicted) = predicted(store, extra);
    let computed = computed(store, extra);
    assert_eq!(predicted.keys().collect::<Vec<_>>(), computed.keys().collect::<Vec<_>>(), "{value}");
    let exact = value["episodes"]["new"] == 0;
    for (stage, n) in &predicted {
        let ran = computed[stage];
        let holds = if exact || stage == "decode" { ran == *n } else { ran <= *n };
        assert!(holds, "{stage} with {extra:?}: predicted {predicted:?}, ran {computed:?}");
    }
    (value, predicted)
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("epiflow.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn explain_predicts_what_run_computes() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 30, 7, 30);
    let s = store.to_str().unwrap();

    let (first, all) = explain_then_run(s, &[]);
    assert_eq!(first["last_run"], false);
    assert!(all.values().all(|n| *n == 30), "a first run computes every episode: {all:?}");
    let (value, none) = explain_then_run(s, &[]);
    assert_eq!(value["last_run"], true);
    assert!(none.values().all(|n| *n == 0), "nothing changed: {none:?}");

    let (value, window) = explain_then_run(s, &["--window-s", "20"]);
    let usable = value["episodes"]["usable"].as_u64().unwrap();
    assert!(usable > 20 && usable < 30, "{value}");
    let expected: BTreeMap<String, u64> =
        [("align", 0), ("classify", 0), ("decode", 0), ("tensor", usable), ("validate", 0), ("window", usable)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
    assert_eq!(window, expected);

    let stricter = write_config(dir.path(), "[classify]\nguest_min_load_delta = 0.9\n[window]\nwindow_s = 20.0\n");
    let (value, threshold) = explain_then_run(s, &["--config", &stricter]);
    assert_eq!(threshold["classify"], value["episodes"]["readable"].as_u64().unwrap());
    assert_eq!(threshold["decode"] + threshold["window"], 0, "{threshold:?}");
    // Back to the default threshold: its results are still in the cache.
    let (value, back) = explain_then_run(s, &["--window-s", "20"]);
    let classify = value["stages"].as_array().unwrap().iter().find(|st| st["name"] == "classify").unwrap();
    assert_eq!(classify["cached"], true, "{value}");
    assert!(back.values().all(|n| *n == 0), "{back:?}");

    // Three episodes appended to the index.
    let extra = synth_store(&dir.path().join("extra"), 3, 99, 30);
    let keys: Vec<_> = index_lines(&extra).iter().map(|l| line_key(l)).collect();
    append_from(&extra, &store, &keys);
    let (value, appended) = explain_then_run(s, &["--window-s", "20"]);
    assert_eq!(value["episodes"]["new"], 3);
    assert!(appended.values().all(|n| *n == 3), "{appended:?}");
}

#[test]
fn explain_prints_the_graph_for_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 5, 3, 20);
    let s = store.to_str().unwrap();
    let text = epiflow_ok(&["explain", "--store", s, "--window-s", "8"], 0);
    for needle in
        ["decode", "archive", "validation.parquet", "features/tensors", "\"window_s\":8.0", "all new", "recompute"]
    {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!store.join("derived").exists(), "explain writes nothing");
}
