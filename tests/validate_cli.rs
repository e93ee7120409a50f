//! `epiflow validate` on hand-made `.tar.zst` stores: every reason code of SPEC
//! section 5, hostile inputs, clear messages, no panics, and the store untouched.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| l.to_vec()).collect()
}

fn join_lines(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// Healthy members with one member edited by `f`.
fn edited(id: &str, name: &str, f: impl FnOnce(Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut m = healthy(id);
    let current = m.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone()).unwrap_or_default();
    set_member(&mut m, name, f(current));
    archive_under(id, &m)
}

/// Healthy members with some lines of a member replaced.
fn replace_lines(id: &str, name: &str, at: &[usize], with: &[u8]) -> Vec<u8> {
    edited(id, name, |b| {
        let mut lines = lines_of(&b);
        for &i in at {
            lines[i] = with.to_vec();
        }
        Some(join_lines(&lines))
    })
}

fn meta_with(id: &str, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    edited(id, "meta.json", |b| {
        let mut v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        f(&mut v);
        Some(serde_json::to_vec(&v).unwrap())
    })
}

fn run_validate(store: &Path, out: &Path, extra: &[&str]) -> (BTreeMap<String, ValidationRow>, String) {
    let mut args =
        vec!["validate", "--store", store.to_str().unwrap(), "--out", out.to_str().unwrap(), "--workers", "2"];
    args.extend_from_slice(extra);
    let output = epiflow(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let rows =
        validation_rows(&out.join("validation.parquet")).into_iter().map(|r| (r.episode_id.clone(), r)).collect();
    (rows, stderr)
}

fn expect(rows: &BTreeMap<String, ValidationRow>, id: &str, outcome: &str, reasons: &[&str]) {
    let row = rows.get(id).unwrap_or_else(|| panic!("no row for {id}"));
    assert_eq!(
        (row.outcome.as_str(), row.reasons.clone()),
        (outcome, reasons.iter().map(|s| s.to_string()).collect()),
        "{id}"
    );
}

#[test]
fn every_reason_code_is_reached_and_the_store_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StoreBuilder::new(&dir.path().join("store"));
    let h = "lab1";
    s.add(h, "ok", &archive_under("ok", &healthy("ok")), None);
    s.add(h, "sha", &archive_under("sha", &healthy("sha")), Some(&"0".repeat(64)));
    s.add(h, "nometa", &edited("nometa", "meta.json", |_| None), None);
    s.add(h, "badmeta", &edited("badmeta", "meta.json", |_| Some(b"{\"schema_version\": 1,".to_vec())), None);
    s.add(h, "schema2", &meta_with("schema2", |v| v["schema_version"] = 2.into()), None);
    s.add(h, "nolabelsfile", &edited("nolabelsfile", "labels.jsonl", |_| None), None);
    s.add(h, "emptylabels", &edited("emptylabels", "labels.jsonl", |_| Some(Vec::new())), None);
    s.add(h, "badlabels", &replace_lines("badlabels", "labels.jsonl", &[1], b"{\"phase\": \"clean\""), None);
    s.add(
        h,
        "unknownphase",
        &edited("unknownphase", "labels.jsonl", |b| {
            Some(String::from_utf8(b).unwrap().replace("dormant", "pwned").into_bytes())
        }),
        None,
    );
    s.add(
        h,
        "nonmono",
        &edited("nonmono", "labels.jsonl", |b| {
            let mut l = lines_of(&b);
            l.swap(1, 2);
            Some(join_lines(&l))
        }),
        None,
    );
    s.add(
        h,
        "manybad",
        &replace_lines("manybad", "telemetry-proc.jsonl", &(0..300).collect::<Vec<_>>(), b"{\"t_wall_ns\": "),
        None,
    );
    s.add(
        h,
        "notelemetry",
        &{
            let mut m = healthy("notelemetry");
            for f in ["telemetry-proc.jsonl", "telemetry-guest.jsonl", "telemetry-qmp.jsonl", "netflow.jsonl"] {
                set_member(&mut m, f, None);
            }
            archive_under("notelemetry", &m)
        },
        None,
    );
    s.add(h, "fewqmp", &edited("fewqmp", "telemetry-qmp.jsonl", |b| Some(join_lines(&lines_of(&b)[..5]))), None);
    s.add(h, "rowcount", &meta_with("rowcount", |v| v["result"]["rows_netflow"] = 301.into()), None);
    s.add(h, "badrows", &replace_lines("badrows", "telemetry-guest.jsonl", &[5, 6, 7], b"{\"t_wall_ns\": 1.5}"), None);
    s.add(h, "nodone", &edited("nodone", "DONE", |_| None), None);
    s.add(h, "prefix", &archive_under("elsewhere", &healthy("prefix")), None);
    s.index_line(r#"{"host_id":"lab1","episode_id":"missing"}"#);
    std::fs::create_dir_all(s.root.join("episodes/lab1/isdir.tar.zst")).unwrap();
    s.index_line(r#"{"host_id":"lab1","episode_id":"isdir"}"#);
    let good = archive_under("truncated", &healthy("truncated"));
    s.add(h, "truncated", &good[..good.len() / 2], None);
    let mut big = healthy("big");
    big.push(("capture.pcap".into(), vec![7u8; 300_000]));
    s.add(h, "big", &archive_under("big", &big), None);
    let store = s.finish();
    let config = dir.path().join("epiflow.toml");
    std::fs::write(&config, "[decode]\nmax_member_bytes = 200000\n").unwrap();

    let before = tree_hash(&store);
    let (rows, stderr) = run_validate(&store, &dir.path().join("out"), &["--config", config.to_str().unwrap()]);
    assert_eq!(before, tree_hash(&store), "validate never modifies the store");

    expect(&rows, "ok", "accepted", &[]);
    expect(&rows, "sha", "rejected", &["sha256_mismatch"]);
    expect(&rows, "nometa", "rejected", &["missing_meta"]);
    expect(&rows, "badmeta", "rejected", &["bad_meta"]);
    expect(&rows, "schema2", "rejected", &["bad_meta"]);
    expect(&rows, "nolabelsfile", "rejected", &["missing_labels"]);
    expect(&rows, "emptylabels", "rejected", &["no_labels"]);
    expect(&rows, "badlabels", "rejected", &["bad_labels"]);
    expect(&rows, "unknownphase", "rejected", &["unknown_phase"]);
    expect(&rows, "nonmono", "rejected", &["labels_not_monotonic"]);
    expect(&rows, "manybad", "rejected", &["too_many_bad_rows", "source_missing:proc"]);
    expect(
        &rows,
        "notelemetry",
        "rejected",
        &[
            "no_telemetry",
            "row_count_mismatch:proc",
            "row_count_mismatch:guest",
            "row_count_mismatch:qmp",
            "row_count_mismatch:netflow",
        ],
    );
    expect(&rows, "fewqmp", "degraded", &["source_missing:qmp", "row_count_mismatch:qmp"]);
    expect(&rows, "rowcount", "degraded", &["row_count_mismatch:netflow"]);
    expect(&rows, "badrows", "degraded", &["bad_rows"]);
    assert_eq!(rows["badrows"].bad_rows, Some(3));
    expect(&rows, "nodone", "degraded", &["no_done_marker"]);
    expect(&rows, "prefix", "degraded", &["member_prefix_mismatch"]);
    expect(&rows, "missing", "errored", &["missing_archive"]);
    expect(&rows, "isdir", "errored", &["io_error"]);
    expect(&rows, "truncated", "errored", &["corrupt_archive"]);
    expect(&rows, "big", "errored", &["too_large"]);
    assert_eq!(rows["missing"].sha256, None);

    // Messages name the file, the member and the line.
    assert!(stderr.contains("missing.tar.zst: archive file not found"), "{stderr}");
    assert!(stderr.contains("big.tar.zst!big/capture.pcap: member is 300000 bytes"), "{stderr}");
    assert!(stderr.contains("labels.jsonl:2: bad label row"), "{stderr}");
    assert!(stderr.contains("meta.json: unknown schema_version 2"), "{stderr}");
}

#[test]
fn hostile_archives_give_their_documented_outcome_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StoreBuilder::new(&dir.path().join("store"));
    let h = "lab1";
    s.add(h, "random", &(0..50_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect::<Vec<_>>(), None);
    s.add(h, "zerobytes", b"", None);
    s.add(h, "emptytar", &zstd::encode_all(&[0u8; 1024][..], 3).unwrap(), None);
    let mut garbage = tar_bytes(&[("g/meta.json", b"{\"schema_version\":1}".to_vec())]);
    garbage.truncate(512);
    garbage.extend((0..4096u32).map(|i| (i * 7 + 3) as u8));
    s.add(h, "garbage", &zstd::encode_all(&garbage[..], 3).unwrap(), None);
    // Hostile paths carry a bad meta; if they were read the outcome would be bad_meta.
    let mut members: Vec<(String, Vec<u8>)> =
        healthy("paths").into_iter().map(|(n, b)| (format!("paths/{n}"), b)).collect();
    members.push(("../meta.json".into(), b"{\"schema_version\": 9}".to_vec()));
    members.push(("/etc/labels.jsonl".into(), b"nonsense".to_vec()));
    members.push(("paths/../../telemetry-proc.jsonl".into(), b"nonsense".to_vec()));
    let raw: Vec<Member> = members.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    s.add(h, "paths", &tar_zst(&raw), None);
    let mut long = vec![b'x'; 200 << 20];
    long.push(b'}');
    s.add(h, "longline", &replace_lines("longline", "telemetry-guest.jsonl", &[10], &long), None);
    drop(long);
    s.add(
        h,
        "nonutf8",
        &replace_lines("nonutf8", "netflow.jsonl", &[3], b"{\"t_wall_ns\": 1, \"x\": \"\xff\xfe\xfd\"}"),
        None,
    );
    s.index_line("this is not json");
    s.index_line(r#"{"host_id": "lab1"}"#);
    s.index_line(r#"{"host_id": "..", "episode_id": "escape"}"#);
    s.index_line("");
    let store = s.finish();
    let before = tree_hash(&store);
    let (rows, stderr) = run_validate(&store, &dir.path().join("out"), &[]);
    assert_eq!(before, tree_hash(&store));
    assert_eq!(rows.len(), 7, "malformed index lines are skipped");
    expect(&rows, "random", "errored", &["corrupt_archive"]);
    expect(&rows, "zerobytes", "errored", &["corrupt_archive"]);
    expect(&rows, "emptytar", "rejected", &["missing_meta", "missing_labels", "no_telemetry", "no_done_marker"]);
    expect(&rows, "garbage", "errored", &["corrupt_archive"]);
    expect(&rows, "paths", "degraded", &["member_prefix_mismatch"]);
    expect(&rows, "longline", "degraded", &["bad_rows"]);
    expect(&rows, "nonutf8", "degraded", &["bad_rows"]);
    for line in [8, 9, 10] {
        assert!(stderr.contains(&format!("index.jsonl:{line}: ")), "index line {line} reported: {stderr}");
    }
    assert!(stderr.contains("zerobytes.tar.zst: empty file"), "{stderr}");
}

#[test]
fn json_summary_counts_outcomes_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StoreBuilder::new(&dir.path().join("store"));
    s.add("a", "ok1", &archive_under("ok1", &healthy("ok1")), None);
    s.add("b", "ok2", &archive_under("ok2", &healthy("ok2")), None);
    s.add("b", "nodone", &edited("nodone", "DONE", |_| None), None);
    s.index_line(r#"{"host_id":"b","episode_id":"gone"}"#);
    let store = s.finish();
    let stdout = epiflow_ok(&["validate", "--store", store.to_str().unwrap(), "--json", "-q"], 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["episodes"], 4);
    assert_eq!(v["outcomes"]["accepted"], 2);
    assert_eq!(v["outcomes"]["degraded"], 1);
    assert_eq!(v["outcomes"]["errored"], 1);
    assert_eq!(v["reasons"]["no_done_marker"], 1);
    assert_eq!(v["reasons"]["missing_archive"], 1);
    assert_eq!(v["hosts"]["b"], 3);
    assert!(store.join("derived/validation.parquet").is_file(), "default --out is STORE/derived");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("derived/run.json")).unwrap()).unwrap();
    assert_eq!(run["operators"]["decode"]["computed"], 3);
    assert_eq!(run["operators"]["decode"]["failed"], 1);
    assert_eq!(run["operators"]["validate"]["computed"], 3);
}

#[test]
fn usage_and_io_errors_exit_2_with_a_clear_message() {
    let out = epiflow(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store DIR is required"));
    let dir = tempfile::tempdir().unwrap();
    let out = epiflow(&["validate", "--store", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read index"), "{out:?}");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[validate]\nrow_gate = 1\n").unwrap();
    std::fs::write(dir.path().join("index.jsonl"), "").unwrap();
    let out = epiflow(&["validate", "--store", dir.path().to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("row_gate"), "{err}");
    assert_eq!(epiflow(&["frobnicate"]).status.code(), Some(2));
}
