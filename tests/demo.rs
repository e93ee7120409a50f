//! `epiflow demo`, the README's first command, runs end to end and leaves what
//! it made with `--keep`.

mod common;
use common::*;

#[test]
fn demo_runs_the_pipeline_and_keeps_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let stdout = epiflow_ok(&["demo", "--keep", keep.to_str().unwrap(), "--episodes", "40"], 0);
    assert!(stdout.contains("outcome") && stdout.contains("accepted"), "{stdout}");
    assert!(stdout.contains("feature windows"), "{stdout}");
    let out = keep.join("store/derived");
    assert_eq!(validation_rows(&out.join("validation.parquet")).len(), 40);
    assert!(out.join("quality.parquet").is_file());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("features/manifest.json")).unwrap()).unwrap();
    assert!(manifest["windows"].as_u64().unwrap() > 100);
    let summary: serde_json::Value =
        serde_json::from_str(&epiflow_ok(&["demo", "--episodes", "10", "--json"], 0)).unwrap();
    assert_eq!(summary["episodes"], 10);
}
