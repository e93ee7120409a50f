//! `epiflow demo`, the README's first command, runs end to end — training
//! all twelve models of the `host` split and evaluating them — and leaves
//! what it made with `--keep`; `epiflow eval` then finds the report current,
//! redoes it only when a model changed, and refuses models that learned from
//! an episode now on the test side.

mod common;
use common::*;
use epiflow_models::report::SECTIONS;
use serde_json::Value;
use std::path::Path;

/// A PNG file: its signature and a non-trivial size.
fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn demo_trains_evaluates_and_keeps_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let stdout = epiflow_ok(&["demo", "--keep", keep.to_str().unwrap(), "--episodes", "80"], 0);
    for expected in ["accepted", "feature windows", "host/transformer-oracle", "test macro F1", "report:"] {
        assert!(stdout.contains(expected), "{expected:?} missing from:\n{stdout}");
    }
    // The first line times validation alone; the last names every stage.
    let seconds = |line: &str, before: &str| -> f64 {
        let at = line.find(before).unwrap_or_else(|| panic!("{before:?} in {line:?}"));
        line[..at].split_whitespace().last().unwrap().parse().unwrap()
    };
    let validated = stdout.lines().find(|l| l.starts_with("validated 80 episodes in ")).unwrap();
    let time = stdout.lines().find(|l| l.starts_with("time: synth ")).unwrap();
    for stage in ["synth", "pipeline", "training", "evaluation"] {
        assert!(time.contains(&format!("{stage} ")), "{time}");
    }
    assert_eq!(seconds(validated, " s ("), seconds(time, " s, training"), "the first line is the pipeline's time");
    assert!(seconds(time, " s in all") > seconds(time, " s, evaluation"), "{time}");
    let store = keep.join("store");
    let out = store.join("derived");
    assert_eq!(validation_rows(&out.join("validation.parquet")).len(), 80);

    let eval = out.join("eval/host");
    let report: Value = serde_json::from_slice(&std::fs::read(eval.join("report.json")).unwrap()).unwrap();
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 12, "six architectures × two channel sets");
    assert_eq!(report["pairs"].as_array().unwrap().len(), 66, "every two of the twelve");
    assert_eq!(report["resamples"], 1000, "the intervals' resamples (SPEC section 14)");
    let pair_resamples = report["pair_resamples"].as_u64().unwrap() as usize;
    assert_eq!(pair_resamples, epiflow_models::bootstrap::resamples_to_resolve(66), "enough for Holm over 66 pairs");
    assert!(report["test"]["episodes"].as_u64().unwrap() > 0);
    for m in models {
        let (f1, low, high) =
            (m["macro_f1"].as_f64().unwrap(), m["ci"]["low"].as_f64().unwrap(), m["ci"]["high"].as_f64().unwrap());
        assert!(low <= f1 && f1 <= high, "{}: {f1} outside [{low}, {high}]", m["model"]);
        assert!(!m["per_profile"].as_object().unwrap().is_empty() && !m["per_host"].as_object().unwrap().is_empty());
        let labels = m["confusion"]["labels"].as_array().unwrap().len();
        assert_eq!(m["confusion"]["counts"].as_array().unwrap().len(), labels);
        assert!(is_png(&eval.join(m["confusion_png"].as_str().unwrap())), "{}", m["model"]);
        assert!(is_png(&eval.join(m["reliability_png"].as_str().unwrap())), "{}", m["model"]);
        let ece = m["calibration"]["ece"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ece), "{}: ECE {ece}", m["model"]);
        let binned: u64 =
            m["calibration"]["bins"].as_array().unwrap().iter().map(|b| b["windows"].as_u64().unwrap()).sum();
        assert_eq!(binned, report["test"]["windows"].as_u64().unwrap(), "every test window in one bin");
    }
    // Significance is decided on the Holm-adjusted p-value, never below the raw one.
    for p in report["pairs"].as_array().unwrap() {
        let (raw, adjusted) = (p["p_value"].as_f64().unwrap(), p["p_adjusted"].as_f64().unwrap());
        assert!(raw <= adjusted && adjusted <= 1.0, "{p}");
        assert_eq!(p["significant"], adjusted < 0.05, "{p}");
    }
    assert!(is_png(&eval.join("macro_f1.png")));
    let md = std::fs::read_to_string(eval.join("report.md")).unwrap();
    for section in SECTIONS {
        assert!(md.contains(&format!("\n{section}\n")), "report.md lacks {section}");
    }
    assert!(md.contains("](macro_f1.png)") && md.contains("](confusion-gbt-realistic.png)"), "charts linked");
    assert!(
        md.contains("](reliability-gbt-realistic.png)") && md.contains("Holm"),
        "calibration and Holm in the report"
    );

    // The generalization table covers the three recipes the demo trains,
    // and each recipe's summary line counts what its column shows.
    let table: Value = serde_json::from_slice(&std::fs::read(out.join("eval/generalization.json")).unwrap()).unwrap();
    assert_eq!(table["recipes"], serde_json::json!(["host", "sample", "time"]));
    for (i, summary) in table["summary"].as_array().unwrap().iter().enumerate() {
        let cells: Vec<&Value> = table["rows"].as_array().unwrap().iter().map(|r| &r["recipes"][i]).collect();
        let f = |c: &Value, k: &str| c[k].as_f64().unwrap();
        let above = cells.iter().filter(|c| f(c, "val") > f(c, "test")).count();
        let beyond = cells.iter().filter(|c| f(c, "val") > c["ci"]["high"].as_f64().unwrap()).count();
        assert_eq!((summary["models"].as_u64(), summary["val_above_test"].as_u64()), (Some(12), Some(above as u64)));
        assert_eq!(summary["val_above_interval"].as_u64(), Some(beyond as u64));
        let line = format!("validation above test for {above} of 12 models ({beyond} above the test interval)");
        assert!(stdout.contains(&format!("{}: {line}", summary["recipe"].as_str().unwrap())), "{line}\n{stdout}");
    }

    // Nothing changed: `eval` finds the report current.
    let s = store.to_str().unwrap();
    let again: Value =
        serde_json::from_str(&epiflow_ok(&["eval", "--store", s, "--split", "host", "--json"], 0)).unwrap();
    assert_eq!(again[0]["status"], "cached");

    // One model retrained (another gbt setting): the report is redone.
    let config = dir.path().join("epiflow.toml");
    std::fs::write(&config, "[train.gbt]\nrounds = 20\n").unwrap();
    let c = config.to_str().unwrap();
    epiflow_ok(
        &["train", "--store", s, "--config", c, "--split", "host", "--arch", "gbt", "--channels", "oracle", "-q"],
        0,
    );
    let redone: Value =
        serde_json::from_str(&epiflow_ok(&["eval", "--store", s, "--split", "host", "--json"], 0)).unwrap();
    assert_eq!(redone[0]["status"], "computed");

    // A recipe whose models are gone cannot be made: the table says why.
    std::fs::remove_dir_all(out.join("models/sample")).unwrap();
    let partial = epiflow(&["eval", "--store", s, "--split", "host", "--split", "sample"]);
    assert_eq!(partial.status.code(), Some(2));
    let printed = String::from_utf8_lossy(&partial.stdout);
    assert!(printed.contains("no sample column: no trained model of the sample split"), "{printed}");
    let table = std::fs::read_to_string(out.join("eval/generalization.md")).unwrap();
    assert!(table.contains("No `sample` column") && table.contains("| host: val | host: test |"), "{table}");

    let usage = epiflow(&["eval", "--store", s]);
    assert_eq!(usage.status.code(), Some(2), "eval without a split is bad usage");

    // Another host becomes the test host: models that learned from its
    // episodes are not scored on them.
    let summary: Value = serde_json::from_slice(&std::fs::read(out.join("splits/host.json")).unwrap()).unwrap();
    let test_host = summary["test_host"].as_str().unwrap().to_string();
    let other = busiest_host(&index_lines(&store), Some(&test_host));
    epiflow_ok(&["run", "--store", s, "--test-host", &other, "-q"], 0);
    let moved = epiflow(&["eval", "--store", s, "--split", "host"]);
    assert_eq!(moved.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(stderr.contains(&format!("gbt-realistic: it learned from {other}/")), "{stderr}");
}

#[test]
fn a_tiny_demo_still_reports_as_json() {
    let summary: Value = serde_json::from_str(&epiflow_ok(&["demo", "--episodes", "10", "--json"], 0)).unwrap();
    assert_eq!(summary["episodes"], 10);
    assert_eq!(summary["models"].as_array().unwrap().len(), 36, "three recipes × six architectures × two sets");
    let t = &summary["timings"];
    let parts: f64 = ["synth_s", "pipeline_s", "train_s", "eval_s"].iter().map(|k| t[k].as_f64().unwrap()).sum();
    assert!(parts > 0.0 && parts <= t["total_s"].as_f64().unwrap(), "each stage's time is a part of the whole: {t}");
}
