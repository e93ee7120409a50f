//! `epiflow synth` is realistic and deterministic, and `epiflow validate` finds
//! exactly what it planted.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The 2,000-episode store of `synth --seed 1`, validated once for all tests
/// here: (store, out, the --json summary).
fn corpus() -> &'static (tempfile::TempDir, PathBuf, PathBuf, serde_json::Value) {
    static CORPUS: OnceLock<(tempfile::TempDir, PathBuf, PathBuf, serde_json::Value)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let store_s = store.to_str().unwrap();
        epiflow_ok(&["synth", "--out", store_s, "--episodes", "2000", "--seed", "1"], 0);
        let out = dir.path().join("out");
        let summary = epiflow_ok(&["validate", "--store", store_s, "--out", out.to_str().unwrap(), "--json"], 0);
        let summary = serde_json::from_str(&summary).unwrap();
        (dir, store, out, summary)
    })
}

fn truth(store: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(store.join("truth.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect()
}

#[test]
fn validation_of_a_2000_episode_store_matches_truth_exactly() {
    let (_, store, out, summary) = corpus();
    assert_eq!(summary["episodes"], 2000);

    let rows: BTreeMap<(String, String), ValidationRow> = validation_rows(&out.join("validation.parquet"))
        .into_iter()
        .map(|r| ((r.host_id.clone(), r.episode_id.clone()), r))
        .collect();
    let mut mismatches = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut planted = 0;
    for t in truth(store) {
        let key = (t["host_id"].as_str().unwrap().to_string(), t["episode_id"].as_str().unwrap().to_string());
        let row = &rows[&key];
        let expected: Vec<String> =
            t["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().into()).collect();
        planted += expected.len();
        if row.outcome != t["outcome"].as_str().unwrap() || row.reasons != expected {
            mismatches.push(format!(
                "{key:?}: expected {} {expected:?}, got {} {:?}",
                t["outcome"], row.outcome, row.reasons
            ));
        }
        *outcomes.entry(row.outcome.clone()).or_default() += 1;
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    assert!(planted > 200, "the store plants defects ({planted})");
    // The mix is close to the real corpus (84.5% accepted, 10.6% degraded, 4.8% rejected).
    let share = |o: &str| *outcomes.get(o).unwrap_or(&0) as f64 / 2000.0;
    assert!((share("accepted") - 0.845).abs() < 0.03, "{outcomes:?}");
    assert!((share("degraded") - 0.106).abs() < 0.025, "{outcomes:?}");
    assert!((share("rejected") - 0.048).abs() < 0.02, "{outcomes:?}");
    // Counts in the summary come from the differential collection and agree.
    for (o, n) in &outcomes {
        assert_eq!(summary["outcomes"][o], *n, "{o}");
    }
}

#[test]
fn synth_is_deterministic_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    epiflow_ok(&["synth", "--out", a.to_str().unwrap(), "--episodes", "40", "--seed", "9", "--workers", "1"], 0);
    epiflow_ok(&["synth", "--out", b.to_str().unwrap(), "--episodes", "40", "--seed", "9", "--workers", "2"], 0);
    assert_eq!(tree_hash(&a), tree_hash(&b));
    let c = dir.path().join("c");
    epiflow_ok(&["synth", "--out", c.to_str().unwrap(), "--episodes", "40", "--seed", "10"], 0);
    assert_ne!(tree_hash(&a), tree_hash(&c), "another seed gives another store");
}

#[test]
fn synth_store_looks_like_the_lab() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    epiflow_ok(
        &["synth", "--out", store.to_str().unwrap(), "--episodes", "300", "--seed", "3", "--duration-s", "30"],
        0,
    );
    let truth = std::fs::read_to_string(store.join("truth.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = truth.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let hosts: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["host_id"].as_str().unwrap()).collect();
    assert_eq!(hosts.len(), 4, "{hosts:?}");
    assert!(rows.iter().any(|r| r["laptop"] == true));
    let profiles: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["profile"].as_str().unwrap()).collect();
    assert_eq!(profiles.len(), 6, "{profiles:?}");
    assert!(rows.iter().filter(|r| r["laptop"] == true).all(|r| r["profile"] != "mem-balloon"));
    // Every archive named by the index exists, under its host.
    let index = std::fs::read_to_string(store.join("index.jsonl")).unwrap();
    assert_eq!(index.lines().count(), 300);
    for line in index.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = store
            .join("episodes")
            .join(r["host_id"].as_str().unwrap())
            .join(format!("{}.tar.zst", r["episode_id"].as_str().unwrap()));
        assert!(p.is_file(), "{}", p.display());
    }
}

/// Per prune reason: recall and precision of quality.parquet against the
/// planted defects, both at least 99%; and the contended laptop's episodes,
/// whose host /proc CPU is flat, are not flagged flat-cpu when their workload
/// shows in netflow, qmp or the guest.
#[test]
fn classification_finds_planted_quality_defects() {
    let (_, store, out, summary) = corpus();
    let batch = read_parquet(&out.join("quality.parquet"));
    let quality: BTreeMap<(String, String), Vec<String>> = {
        use arrow_array::{Array, ListArray, StringArray};
        let s = |n: &str| batch.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let (h, e) = (s("host_id"), s("episode_id"));
        let r = batch.column_by_name("reasons").unwrap().as_any().downcast_ref::<ListArray>().unwrap().clone();
        (0..batch.num_rows())
            .map(|i| {
                let l = r.value(i);
                let l = l.as_any().downcast_ref::<StringArray>().unwrap();
                (
                    (h.value(i).to_string(), e.value(i).to_string()),
                    (0..l.len()).map(|j| l.value(j).to_string()).collect(),
                )
            })
            .collect()
    };
    let mut tp: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new(); // reason → (tp, fp, fn)
    let mut laptop_checked = 0;
    for t in truth(store) {
        let key = (t["host_id"].as_str().unwrap().to_string(), t["episode_id"].as_str().unwrap().to_string());
        let Some(expected) = t["quality"].as_array().map(|_| strings(&t["quality"])) else {
            assert!(!quality.contains_key(&key), "errored episodes are not classified");
            continue;
        };
        let got = &quality[&key];
        for reason in ["no-sample", "no-workload-events", "workload-failed", "workload-silent", "flat-cpu"] {
            let e = expected.iter().any(|r| r == reason);
            let g = got.iter().any(|r| r == reason);
            let c = tp.entry(reason.to_string()).or_default();
            match (e, g) {
                (true, true) => c.0 += 1,
                (false, true) => c.1 += 1,
                (true, false) => c.2 += 1,
                _ => {}
            }
        }
        if t["laptop"] == true && expected.is_empty() {
            laptop_checked += 1;
            assert!(!got.contains(&"flat-cpu".to_string()), "laptop episode {key:?} wrongly flat: {got:?}");
        }
    }
    for (reason, (tp, fp, fn_)) in &tp {
        assert!(*tp > 0, "{reason} was planted");
        let recall = *tp as f64 / (tp + fn_) as f64;
        let precision = *tp as f64 / (tp + fp) as f64;
        assert!(
            recall >= 0.99 && precision >= 0.99,
            "{reason}: recall {recall:.3} precision {precision:.3} ({tp} tp, {fp} fp, {fn_} fn)"
        );
    }
    assert!(laptop_checked > 300, "many clean laptop episodes checked ({laptop_checked})");
    assert_eq!(summary["fake"], quality.values().filter(|r| !r.is_empty()).count(), "summary counts fakes");
}
