//! Helpers shared by the CLI tests: run the binary, build archives by hand,
//! hash a store, read Parquet outputs.
#![allow(dead_code)]

use arrow_array::{Array, Int64Array, ListArray, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `epiflow` with `args`; returns its output (never panics on failure).
pub fn epiflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_epiflow"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the epiflow binary runs")
}

/// The stages a `run` of `store` goes through, in order, as `epiflow explain`
/// declares them: tests take the operators from the engine, never from a
/// list of their own.
pub fn stages(store: &Path) -> Vec<String> {
    let text = epiflow_ok(&["explain", "--store", store.to_str().unwrap(), "--json"], 0);
    let explained: serde_json::Value = serde_json::from_str(&text).unwrap();
    explained["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// Writes a synthetic store at `store` with `epiflow synth`.
pub fn synth_store(store: &Path, episodes: usize, seed: u64, duration_s: u32) -> PathBuf {
    let (n, seed, duration) = (episodes.to_string(), seed.to_string(), duration_s.to_string());
    let args =
        ["synth", "--out", store.to_str().unwrap(), "--episodes", &n, "--seed", &seed, "--duration-s", &duration];
    epiflow_ok(&[&args[..], &["-q"]].concat(), 0);
    store.to_path_buf()
}

/// The lines of a store's index, as written.
pub fn index_lines(store: &Path) -> Vec<String> {
    std::fs::read_to_string(store.join("index.jsonl")).unwrap().lines().map(str::to_string).collect()
}

/// The `(host_id, episode_id)` of an index line.
pub fn line_key(line: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (v["host_id"].as_str().unwrap().to_string(), v["episode_id"].as_str().unwrap().to_string())
}

/// The host with the most episodes in index `lines`, other than `except`.
pub fn busiest_host(lines: &[String], except: Option<&str>) -> String {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in lines {
        *counts.entry(line_key(line).0).or_default() += 1;
    }
    counts.retain(|host, _| Some(host.as_str()) != except);
    counts.into_iter().max_by_key(|(host, n)| (*n, host.clone())).expect("a host").0
}

/// The episodes of a synth store that its truth says are accepted with no
/// quality problem: `(host_id, episode_id)`.
pub fn clean_episodes(store: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(store.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|t| t["outcome"] == "accepted" && t["quality"].as_array().is_some_and(|q| q.is_empty()))
        .map(|t| (t["host_id"].as_str().unwrap().to_string(), t["episode_id"].as_str().unwrap().to_string()))
        .collect()
}

/// Copies the episodes `keys` of store `from` into store `to` and appends
/// their index lines, as the receiver does.
pub fn append_from(from: &Path, to: &Path, keys: &[(String, String)]) {
    let mut lines = String::new();
    for line in index_lines(from).iter().filter(|l| keys.contains(&line_key(l))) {
        let (host, id) = line_key(line);
        let rel = format!("episodes/{host}/{id}.tar.zst");
        std::fs::create_dir_all(to.join(format!("episodes/{host}"))).unwrap();
        std::fs::copy(from.join(&rel), to.join(&rel)).unwrap();
        lines += &format!("{line}\n");
    }
    let mut index = std::fs::OpenOptions::new().append(true).open(to.join("index.jsonl")).unwrap();
    std::io::Write::write_all(&mut index, lines.as_bytes()).unwrap();
}

/// Runs `epiflow` and asserts it exited with `code`; returns stdout.
pub fn epiflow_ok(args: &[&str], code: i32) -> String {
    let out = epiflow(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "epiflow {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// A member path and its bytes.
pub type Member<'a> = (&'a str, Vec<u8>);

/// A tar of raw members (paths written as given, even hostile ones), zstd'ed.
pub fn tar_zst(members: &[Member]) -> Vec<u8> {
    let raw: Vec<(&str, &[u8])> = members.iter().map(|(n, b)| (*n, &b[..])).collect();
    epiflow_operators::test_support::tar_zst(&raw)
}

/// An uncompressed tar of raw members.
pub fn tar_bytes(members: &[Member]) -> Vec<u8> {
    let raw: Vec<(&str, &[u8])> = members.iter().map(|(n, b)| (*n, &b[..])).collect();
    epiflow_operators::test_support::tar_bytes(&raw)
}

pub const T0: i64 = 1_777_583_279_000_000_000;

/// The members of a healthy 30 s episode named `id`, as (file name, bytes);
/// callers edit the list and prefix paths with [`under`].
pub fn healthy(id: &str) -> Vec<(String, Vec<u8>)> {
    let n = 30.0;
    let meta = serde_json::json!({
        "episode_id": id, "schema_version": 1,
        "sample": {"name": "xmrig", "kind": "real", "family": "XMRig", "category": "cryptominer",
                   "profile": "cpu-saturate", "sha256": "a".repeat(64)},
        "exploit": {"module_name": "vsftpd_234_backdoor", "module": "x"},
        "result": {"duration_observed_s": n, "rows_proc": 300, "rows_guest": 300, "rows_qmp": 30, "rows_netflow": 300},
    });
    let labels = [(0.0, "clean"), (10.0, "infected_running"), (20.0, "dormant")]
        .iter()
        .map(|(t, p)| {
            format!(r#"{{"phase":"{p}","prev":null,"reason":"s","t_mono_ns":0,"t_wall_ns":{}}}"#, T0 + (t * 1e9) as i64)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let events = r#"{"event":"workload_setup"}
{"event":"workload_started"}
{"event":"workload_killed","pre_kill_probe":{"yes":"2","loadavg":"1.4"}}"#;
    let rows = |hz: f64, f: &dyn Fn(usize, i64) -> String| -> Vec<u8> {
        let n = (n * hz) as usize;
        let mut s = String::new();
        for k in 0..n {
            let t = T0 + (k as f64 / hz * 1e9) as i64;
            s += &f(k, t);
            s.push('\n');
        }
        s.into_bytes()
    };
    let proc = rows(10.0, &|k, t| {
        let busy = if (100..200).contains(&k) { 90 } else { 5 };
        let cum: usize = (0..=k).map(|i| if (100..200).contains(&i) { busy } else { 5 }).sum::<usize>() / 10;
        format!(r#"{{"t_mono_ns":{k},"t_wall_ns":{t},"cpu_user_jiffies":{cum},"cpu_sys_jiffies":0,"rss_bytes":1000}}"#)
    });
    let guest = rows(10.0, &|k, t| {
        let load = if (100..200).contains(&k) { 1.5 } else { 0.1 };
        format!(r#"{{"t_mono_ns":0,"t_wall_ns":{t},"load_1m_5m_15m":[{load},0,0],"cpu_total_jiffies":{{"user":{k}}}}}"#)
    });
    let qmp = rows(1.0, &|k, t| {
        format!(r#"{{"t_mono_ns":0,"t_wall_ns":{t},"blockstats":{{"vda":{{"rd_bytes":{},"wr_bytes":0}}}}}}"#, k * 4096)
    });
    let netflow = rows(10.0, &|k, t| {
        format!(r#"{{"t_mono_ns":999,"t_wall_ns":{t},"bucket_ms":100,"bytes_in":{},"bytes_out":10}}"#, k % 7)
    });
    vec![
        ("meta.json".into(), serde_json::to_vec(&meta).unwrap()),
        ("labels.jsonl".into(), labels.into_bytes()),
        ("events.jsonl".into(), events.as_bytes().to_vec()),
        ("telemetry-proc.jsonl".into(), proc),
        ("telemetry-guest.jsonl".into(), guest),
        ("telemetry-qmp.jsonl".into(), qmp),
        ("netflow.jsonl".into(), netflow),
        ("DONE".into(), vec![]),
    ]
}

/// Replaces (or with `None` removes) a member by file name.
pub fn set_member(members: &mut Vec<(String, Vec<u8>)>, name: &str, bytes: Option<Vec<u8>>) {
    members.retain(|(n, _)| n != name);
    if let Some(b) = bytes {
        members.push((name.to_string(), b));
    }
}

/// Compresses members placed under `folder/`.
pub fn archive_under(folder: &str, members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let paths: Vec<String> = members.iter().map(|(n, _)| format!("{folder}/{n}")).collect();
    let raw: Vec<Member> = paths.iter().zip(members).map(|(p, (_, b))| (p.as_str(), b.clone())).collect();
    tar_zst(&raw)
}

/// A receiver store being built by a test.
pub struct StoreBuilder {
    pub root: PathBuf,
    index: String,
}

impl StoreBuilder {
    pub fn new(root: &Path) -> StoreBuilder {
        std::fs::create_dir_all(root.join("episodes")).unwrap();
        StoreBuilder { root: root.to_path_buf(), index: String::new() }
    }

    /// Writes an archive and its index row (with its true sha256 unless given).
    pub fn add(&mut self, host: &str, id: &str, bytes: &[u8], sha: Option<&str>) -> &mut Self {
        let dir = self.root.join("episodes").join(host);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{id}.tar.zst")), bytes).unwrap();
        let sha = sha.map(str::to_string).unwrap_or_else(|| hex(&Sha256::digest(bytes)));
        self.index += &format!("{{\"host_id\":\"{host}\",\"episode_id\":\"{id}\",\"sha256\":\"{sha}\"}}\n");
        self
    }

    /// Adds a raw index line.
    pub fn index_line(&mut self, line: &str) -> &mut Self {
        self.index += line;
        self.index.push('\n');
        self
    }

    pub fn finish(&self) -> PathBuf {
        std::fs::write(self.root.join("index.jsonl"), &self.index).unwrap();
        self.root.clone()
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every file and folder under `root` (not `root` itself), in path order.
pub fn paths_under(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.clone());
            if p.is_dir() {
                walk(&p, out);
            }
        }
    }
    let mut paths = Vec::new();
    walk(root, &mut paths);
    paths.sort();
    paths
}

/// sha256 over every file's relative path, mode and bytes, in path order.
pub fn tree_hash(root: &Path) -> String {
    let files = paths_under(root);
    let mut h = Sha256::new();
    for f in files {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(&f).unwrap();
        h.update(f.strip_prefix(root).unwrap().to_string_lossy().as_bytes());
        h.update(meta.permissions().mode().to_le_bytes());
        if meta.is_file() {
            h.update(std::fs::read(&f).unwrap());
        }
    }
    hex(&h.finalize())
}

/// Reads a whole Parquet file into one batch.
pub fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    arrow_select_concat(&batches)
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert!(!batches.is_empty());
    if batches.len() == 1 {
        return batches[0].clone();
    }
    let schema = batches[0].schema();
    let columns = (0..schema.fields().len())
        .map(|i| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
            arrow_select::concat::concat(&arrays).unwrap()
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

/// A non-null string column of `batch` as owned strings.
pub fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let column = column.as_any().downcast_ref::<StringArray>().unwrap();
    (0..column.len()).map(|i| column.value(i).to_string()).collect()
}

/// One row of validation.parquet, as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationRow {
    pub host_id: String,
    pub episode_id: String,
    pub outcome: String,
    pub reasons: Vec<String>,
    pub bad_rows: Option<i64>,
    pub sha256: Option<String>,
}

pub fn validation_rows(path: &Path) -> Vec<ValidationRow> {
    let b = read_parquet(path);
    let s = |name: &str| b.column_by_name(name).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
    let (host, ep, outcome, sha) = (s("host_id"), s("episode_id"), s("outcome"), s("sha256"));
    let reasons = b.column_by_name("reasons").unwrap().as_any().downcast_ref::<ListArray>().unwrap().clone();
    let bad = b.column_by_name("bad_rows").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
    (0..b.num_rows())
        .map(|i| {
            let r = reasons.value(i);
            let r = r.as_any().downcast_ref::<StringArray>().unwrap();
            ValidationRow {
                host_id: host.value(i).to_string(),
                episode_id: ep.value(i).to_string(),
                outcome: outcome.value(i).to_string(),
                reasons: (0..r.len()).map(|j| r.value(j).to_string()).collect(),
                bad_rows: (!bad.is_null(i)).then(|| bad.value(i)),
                sha256: (!sha.is_null(i)).then(|| sha.value(i).to_string()),
            }
        })
        .collect()
}
