//! `epiflow run` (SPEC section 11) on real synthetic stores: each kind of
//! change recomputes exactly what depends on it — counted in `run.json` — and
//! the outputs then equal those of a from-scratch run into an empty `--out`.
//! A run killed at random moments, again and again, loses nothing.
//! `epiflow watch` follows appends and prune while it runs.

mod common;
#[path = "common/watch.rs"]
mod watch;
use arrow_array::{Array, Float64Array, RecordBatch, StringArray};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use watch::Watch;

fn synth(dir: &Path, episodes: usize, seed: u64) -> PathBuf {
    synth_store(&dir.join(format!("store-{seed}")), episodes, seed, 40)
}

/// `epiflow run --json`: the printed statistics (also checked against run.json).
fn run(store: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["run", "--store", store.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json", "-q"];
    args.extend_from_slice(extra);
    let printed: Value = serde_json::from_str(&epiflow_ok(&args, 0)).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(printed, written, "--json prints run.json");
    printed
}

/// `(computed, cached, failed)` of one operator.
fn counts(stats: &Value, operator: &str) -> (u64, u64, u64) {
    let o = &stats["operators"][operator];
    let n = |k: &str| o[k].as_u64().unwrap_or_else(|| panic!("{operator}.{k} in {stats}"));
    (n("computed"), n("cached"), n("failed"))
}

fn computed(stats: &Value, operator: &str) -> u64 {
    counts(stats, operator).0
}

/// Every row of the feature files of `kind`, by (host, episode, window start).
fn feature_rows(out: &Path, kind: &str) -> BTreeMap<(String, String, u64), RecordBatch> {
    let mut rows = BTreeMap::new();
    let dir = out.join("features").join(kind);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            path.extension().is_some_and(|e| e == "parquet"),
            "only shards in {}: {}",
            dir.display(),
            path.display()
        );
        let b = read_parquet(&path);
        let s = |name: &str| b.column_by_name(name).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let (host, ep) = (s("host_id"), s("episode_id"));
        let start = b.column_by_name("window_start_s").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
        for r in 0..b.num_rows() {
            let key = (host.value(r).to_string(), ep.value(r).to_string(), start.value(r).to_bits());
            assert!(rows.insert(key.clone(), b.slice(r, 1)).is_none(), "row {key:?} published twice");
        }
    }
    rows
}

/// Everything a run publishes, in a form where two runs' outputs compare
/// equal exactly when a reader could not tell them apart.
#[derive(Debug, PartialEq)]
struct Outputs {
    validation: Vec<ValidationRow>,
    quality: RecordBatch,
    summary: BTreeMap<(String, String, u64), RecordBatch>,
    tensors: BTreeMap<(String, String, u64), RecordBatch>,
    /// Manifest without file names: schema hash, window config, windows, and
    /// per episode its windows and sha256.
    manifest: Value,
    /// run.json's corpus-level counts.
    counts: Value,
    /// Per recipe: the split file's rows (absent when the recipe failed) and
    /// its summary.
    splits: BTreeMap<String, (Option<RecordBatch>, Value)>,
}

fn outputs(out: &Path) -> Outputs {
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("features/manifest.json")).unwrap()).unwrap();
    let files: Vec<String> =
        manifest["shards"]["tensors"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    for f in &files {
        assert!(out.join("features").join(f).exists(), "manifest lists {f}");
    }
    for entry in manifest["episodes"].as_object_mut().unwrap().values_mut() {
        entry.as_object_mut().unwrap().remove("shard");
    }
    for k in ["shards", "generation"] {
        manifest.as_object_mut().unwrap().remove(k);
    }
    let run: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let counts = ["episodes", "windows", "outcomes", "reasons", "hosts", "profiles", "quality", "fake"]
        .iter()
        .map(|k| (k.to_string(), run[k].clone()))
        .collect();
    Outputs {
        validation: validation_rows(&out.join("validation.parquet")),
        quality: read_parquet(&out.join("quality.parquet")),
        summary: feature_rows(out, "summary"),
        tensors: feature_rows(out, "tensors"),
        manifest,
        counts,
        splits: split_outputs(out),
    }
}

fn split_outputs(out: &Path) -> BTreeMap<String, (Option<RecordBatch>, Value)> {
    ["host", "sample", "time"]
        .iter()
        .map(|recipe| {
            let parquet = out.join(format!("splits/{recipe}.parquet"));
            let json = std::fs::read_to_string(out.join(format!("splits/{recipe}.json"))).unwrap();
            let rows = parquet.exists().then(|| read_parquet(&parquet));
            (recipe.to_string(), (rows, serde_json::from_str(&json).unwrap()))
        })
        .collect()
}

/// Runs from scratch into a fresh folder and asserts `out` publishes the same.
fn assert_equals_scratch(store: &Path, out: &Path, extra: &[&str]) {
    let scratch = tempfile::tempdir().unwrap();
    let stats = run(store, scratch.path(), extra);
    assert_eq!(counts(&stats, "decode").1, 0, "a fresh --out reuses nothing");
    assert_eq!(outputs(out), outputs(scratch.path()));
}

/// Keys of episodes with the given outcomes, from a run's validation.parquet.
fn keys_with(out: &Path, outcomes: &[&str]) -> Vec<(String, String)> {
    validation_rows(&out.join("validation.parquet"))
        .into_iter()
        .filter(|r| outcomes.contains(&r.outcome.as_str()))
        .map(|r| (r.host_id, r.episode_id))
        .collect()
}

#[test]
fn nothing_changed_computes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth(dir.path(), 24, 41);
    let out = dir.path().join("out");
    let cold = run(&store, &out, &[]);
    let (decoded, cached, failed) = counts(&cold, "decode");
    assert_eq!((decoded + failed, cached), (24, 0));
    let usable = keys_with(&out, &["accepted", "degraded"]).len() as u64;
    assert_eq!(computed(&cold, "window"), usable);

    let again = run(&store, &out, &[]);
    let operators = stages(&store);
    assert_eq!(
        operators.iter().collect::<std::collections::BTreeSet<_>>(),
        again["operators"].as_object().unwrap().keys().collect(),
        "every declared stage reports in run.json, and only they"
    );
    for op in &operators {
        assert_eq!(computed(&again, op), 0, "{op} computed nothing: {again}");
    }
    assert_eq!(counts(&again, "decode").1, decoded, "every decoded archive reused");
    assert_eq!(counts(&again, "window").1, usable);
    assert_equals_scratch(&store, &out, &[]);
}

/// Episodes that went through the dataflow's workers on a run.
fn through_workers(stats: &Value) -> u64 {
    stats["per_worker"].as_array().unwrap().iter().map(|w| w["episodes"].as_u64().unwrap()).sum()
}

/// A run's statistics without what differs between two runs that reuse
/// everything: times and the workers' lines.
fn counted(stats: &Value) -> Value {
    let mut stats = stats.clone();
    for field in ["wall_s", "corpus_s", "per_worker"] {
        stats.as_object_mut().unwrap().remove(field);
    }
    for op in stats["operators"].as_object_mut().unwrap().values_mut() {
        op.as_object_mut().unwrap().remove("wall_s");
    }
    stats
}

#[test]
fn a_run_with_nothing_changed_is_not_run_again_and_any_change_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth(dir.path(), 24, 45);
    let out = dir.path().join("out");
    run(&store, &out, &[]);
    let memo = out.join("cache/last-run.json");
    assert!(memo.exists(), "a complete run is remembered");
    let full = |stats: &Value, why: &str| assert_eq!(through_workers(stats), 24, "{why}: the dataflow ran: {stats}");
    let fresh = |why: &str| {
        let stats = run(&store, &out, &[]);
        assert_eq!(through_workers(&stats), 0, "{why}: nothing went through the dataflow: {stats}");
        stats
    };

    // Nothing changed: run.json says what a run through the dataflow says,
    // but for the times and the workers' lines.
    let remembered = fresh("nothing changed");
    std::fs::remove_file(&memo).unwrap();
    let through = run(&store, &out, &[]);
    full(&through, "without the memo");
    assert_eq!(counted(&remembered), counted(&through));
    fresh("remembered again");

    // An archive rewritten with the same bytes (a new inode): through the
    // dataflow, every result reused.
    let (host, episode) = keys_with(&out, &["accepted"]).remove(0);
    let archive = store.join("episodes").join(&host).join(format!("{episode}.tar.zst"));
    std::fs::copy(&archive, archive.with_extension("copy")).unwrap();
    std::fs::rename(archive.with_extension("copy"), &archive).unwrap();
    let touched = run(&store, &out, &[]);
    full(&touched, "an archive touched");
    assert_eq!(counted(&touched), counted(&through));
    fresh("after the archive");

    // An output deleted comes back.
    std::fs::remove_file(out.join("quality.parquet")).unwrap();
    full(&run(&store, &out, &[]), "an output deleted");
    assert!(out.join("quality.parquet").exists());
    fresh("after the output");

    // An index line written again (the later row wins: the same entry).
    let mut index = std::fs::OpenOptions::new().append(true).open(store.join("index.jsonl")).unwrap();
    std::io::Write::write_all(&mut index, format!("{}\n", index_lines(&store)[0]).as_bytes()).unwrap();
    full(&run(&store, &out, &[]), "the index rewritten");
    fresh("after the index");

    // Another configuration, and back.
    for window in [&["--window-s", "20"][..], &[]] {
        let changed = run(&store, &out, window);
        full(&changed, "another window");
        assert!(computed(&changed, "window") > 0);
        let again = run(&store, &out, window);
        assert_eq!(through_workers(&again), 0, "the new configuration remembered");
    }
    assert_equals_scratch(&store, &out, &[]);

    // A missing archive fails its episode on every run: such a run is not
    // remembered, so the next one tries the archive again.
    std::fs::remove_file(&archive).unwrap();
    for _ in 0..2 {
        let missing = run(&store, &out, &[]);
        full(&missing, "an archive missing");
        assert_eq!(counts(&missing, "decode").2, 1, "{missing}");
    }
    assert!(!memo.exists());
}

#[test]
fn a_new_window_length_recomputes_only_windows_and_tensors() {
    // Episodes of 180 s, as the lab's: the window change reads every one
    // back from the aligned cache.
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 10, 42, 180);
    let out = dir.path().join("out");
    run(&store, &out, &[]);
    let usable = keys_with(&out, &["accepted", "degraded"]).len() as u64;

    // 10 s → 20 s and back: each time windows and tensors alone, and the
    // outputs a cold run's.
    for window in [&["--window-s", "20"][..], &[]] {
        let changed = run(&store, &out, window);
        for op in stages(&store).iter().filter(|op| !["window", "tensor"].contains(&op.as_str())) {
            assert_eq!(computed(&changed, op), 0, "{op} reused: {changed}");
        }
        assert_eq!((computed(&changed, "window"), computed(&changed, "tensor")), (usable, usable));
        assert_equals_scratch(&store, &out, window);
    }
}

#[test]
fn appended_episodes_are_processed_alone_and_removed_ones_vanish_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth(dir.path(), 24, 43);
    let out = dir.path().join("out");
    run(&store, &out, &[]);

    // Five accepted episodes of another store, appended as the receiver does.
    let other = synth(dir.path(), 12, 44);
    let other_out = dir.path().join("other-out");
    run(&other, &other_out, &[]);
    let accepted = keys_with(&other_out, &["accepted"]);
    assert!(accepted.len() >= 5, "the other store has 5 accepted episodes");
    append_from(&other, &store, &accepted[..5]);

    let appended = run(&store, &out, &[]);
    for op in &stages(&store) {
        assert_eq!(computed(&appended, op), 5, "{op} computed the 5 new episodes alone: {appended}");
    }
    assert_eq!(appended["episodes"], 29);
    assert_equals_scratch(&store, &out, &[]);

    // Three usable episodes leave the index (as prune's atomic rewrite does).
    let gone: Vec<_> = keys_with(&out, &["accepted", "degraded"]).into_iter().take(3).collect();
    let kept: Vec<String> = index_lines(&store).into_iter().filter(|l| !gone.contains(&line_key(l))).collect();
    std::fs::write(store.join("index.jsonl.tmp"), kept.join("\n") + "\n").unwrap();
    std::fs::rename(store.join("index.jsonl.tmp"), store.join("index.jsonl")).unwrap();

    let removed = run(&store, &out, &[]);
    for op in &stages(&store) {
        assert_eq!(computed(&removed, op), 0, "{op}: a removal computes nothing");
    }
    assert_eq!(removed["episodes"], 26);
    assert_gone(&out, &gone);
    assert_equals_scratch(&store, &out, &[]);
}

/// None of `keys` is in any output of `out`.
fn assert_gone(out: &Path, keys: &[(String, String)]) {
    let now = outputs(out);
    for (host, id) in keys {
        assert!(!now.validation.iter().any(|r| &r.host_id == host && &r.episode_id == id));
        assert!(!now.summary.keys().chain(now.tensors.keys()).any(|(h, e, _)| h == host && e == id));
        assert!(now.manifest["episodes"].get(format!("{host}/{id}")).is_none());
        let quality_ids =
            now.quality.column_by_name("episode_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        assert!(!quality_ids.iter().any(|q| q == Some(id.as_str())));
        for (recipe, (rows, _)) in &now.splits {
            let ids = rows.as_ref().map(|b| strings(b, "episode_id")).unwrap_or_default();
            assert!(!ids.contains(id), "{id} still in the {recipe} split");
        }
    }
}

/// A string column of a batch.
fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column_by_name(name).unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    column.iter().map(|v| v.unwrap().to_string()).collect()
}

/// Epochs of `watch` until one reports `episodes`; their operator counts
/// summed.
fn until_episodes(watch: &Watch, episodes: u64) -> BTreeMap<String, u64> {
    let mut computed = BTreeMap::new();
    loop {
        let stats = watch.lines.recv_timeout(std::time::Duration::from_secs(120)).expect("an epoch within 2 min");
        for (op, counts) in stats["operators"].as_object().into_iter().flatten() {
            *computed.entry(op.clone()).or_default() += counts["computed"].as_u64().unwrap_or(0);
        }
        if stats["episodes"] == episodes {
            return computed;
        }
    }
}

/// `watch` follows an append, prune's rename into place and a truncation,
/// and stops on Ctrl-C, with `[watch]` set to `watch_section`.
fn watch_follows_appends_prune_and_truncation(watch_section: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = synth(dir.path(), 20, 51);
    let out = dir.path().join("out");
    let config = dir.path().join("watch.toml");
    std::fs::write(&config, format!("[watch]\n{watch_section}\n")).unwrap();
    let (store_arg, out_arg) = (store.to_str().unwrap(), out.to_str().unwrap());
    let mut watch = Watch::start(&["--store", store_arg, "--out", out_arg, "--config", config.to_str().unwrap()]);
    until_episodes(&watch, 20);
    assert_equals_scratch(&store, &out, &[]);

    // Five episodes arrive while it runs: processed alone, outputs catch up.
    let other = synth(dir.path(), 8, 52);
    let other_out = dir.path().join("other-out");
    run(&other, &other_out, &[]);
    let accepted = keys_with(&other_out, &["accepted"]);
    append_from(&other, &store, &accepted[..5]);
    let computed = until_episodes(&watch, 25);
    for op in &stages(&store) {
        assert_eq!(computed[op], 5, "{op} computed the 5 new episodes alone");
    }
    assert_equals_scratch(&store, &out, &[]);

    // prune --archive replaces the index: the archived episodes disappear.
    let before: Vec<_> = index_lines(&store).iter().map(|l| line_key(l)).collect();
    epiflow_ok(&["prune", "--store", store_arg, "--archive", "-q"], 1);
    let after: Vec<_> = index_lines(&store).iter().map(|l| line_key(l)).collect();
    let archived: Vec<_> = before.into_iter().filter(|k| !after.contains(k)).collect();
    assert!(!archived.is_empty(), "the synth store has episodes to prune");
    let computed = until_episodes(&watch, after.len() as u64);
    assert!(computed.values().all(|n| *n == 0), "a retraction computes nothing: {computed:?}");
    assert_gone(&out, &archived);
    assert_equals_scratch(&store, &out, &[]);

    // The index cut short where it is (same file): its last two rows leave.
    let lines = index_lines(&store);
    let kept: u64 = lines[..lines.len() - 2].iter().map(|l| l.len() as u64 + 1).sum();
    std::fs::OpenOptions::new().write(true).open(store.join("index.jsonl")).unwrap().set_len(kept).unwrap();
    let cut: Vec<_> = lines[lines.len() - 2..].iter().map(|l| line_key(l)).collect();
    until_episodes(&watch, lines.len() as u64 - 2);
    assert_gone(&out, &cut);
    assert_equals_scratch(&store, &out, &[]);

    // Ctrl-C: the watch finishes cleanly.
    let status = watch.interrupt();
    assert!(status.success(), "Ctrl-C ends watch with status 0: {status:?}");
}

/// With notifications the poll is set to an hour: every change must reach
/// the follower by a notification (`until_episodes` waits 2 minutes).
#[test]
fn watch_wakes_on_notifications_for_an_append_a_prune_and_a_truncation() {
    watch_follows_appends_prune_and_truncation("poll_ms = 3600000");
}

/// Notifications off (as on a network filesystem): the poll alone follows.
#[test]
fn watch_follows_by_polling_when_notifications_are_off() {
    watch_follows_appends_prune_and_truncation("notifications = false\npoll_ms = 50");
}

#[test]
fn splits_place_every_trainable_episode_on_one_side_and_name_what_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth(dir.path(), 80, 11);
    let out = dir.path().join("out");
    run(&store, &out, &[]);
    let quality = read_parquet(&out.join("quality.parquet"));
    let fake = quality.column_by_name("fake").unwrap().as_any().downcast_ref::<arrow_array::BooleanArray>().unwrap();
    let fakes: Vec<String> = strings(&quality, "episode_id")
        .into_iter()
        .enumerate()
        .filter(|(i, _)| fake.value(*i))
        .map(|(_, e)| e)
        .collect();
    let trainable: Vec<(String, String)> =
        keys_with(&out, &["accepted"]).into_iter().filter(|(_, e)| !fakes.contains(e)).collect();
    assert!(trainable.len() >= 20, "a store worth splitting: {} trainable", trainable.len());
    for (recipe, (rows, summary)) in split_outputs(&out) {
        let rows = rows.unwrap_or_else(|| panic!("{recipe}: no split: {summary}"));
        let keys: Vec<(String, String)> =
            strings(&rows, "host_id").into_iter().zip(strings(&rows, "episode_id")).collect();
        let unique: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{recipe}: an episode on two sides");
        let unplaced = summary["unplaced"].as_u64().unwrap() as usize;
        assert_eq!(keys.len() + unplaced, trainable.len(), "{recipe}: every trainable episode, nothing else");
        assert!(keys.iter().all(|k| trainable.contains(k)), "{recipe}: only accepted, non-fake episodes");
        let sides = strings(&rows, "side");
        for side in ["train", "val", "test"] {
            let n = sides.iter().filter(|s| *s == side).count();
            assert_eq!(summary["episodes"][side], n, "{recipe}: {side} count in the summary");
        }
        if recipe == "host" {
            let test_host = summary["test_host"].as_str().unwrap();
            let hosts = strings(&rows, "host_id");
            assert!(sides.iter().zip(&hosts).all(|(s, h)| (s == "test") == (h == test_host)));
        }
    }
    // An unknown test host: the host split fails, naming it; the others stand.
    let stats = run(&store, &out, &["--test-host", "no-such-host"]);
    assert!(stats["split_errors"]["host"].as_str().unwrap().contains("no-such-host"), "run.json says why: {stats}");
    assert!(stats["split_errors"].get("sample").is_none());
    let splits = split_outputs(&out);
    let (rows, summary) = &splits["host"];
    assert!(rows.is_none(), "no host.parquet for a failed split");
    assert!(summary["error"].as_str().unwrap().contains("no-such-host"), "{summary}");
    assert!(splits["sample"].0.is_some() && splits["time"].0.is_some());
}

#[test]
fn a_classifier_threshold_recomputes_only_classification() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth(dir.path(), 24, 45);
    let out = dir.path().join("out");
    let cold = run(&store, &out, &[]);
    let config = dir.path().join("strict.toml");
    // Thresholds no real signal reaches: every judged source looks flat.
    let strict = "[classify]\nproc_min_cpu_delta = 1e9\nnetflow_min_delta_bps = 1e15\nqmp_min_delta_bps = 1e15\nguest_min_load_delta = 1e9\n";
    std::fs::write(&config, strict).unwrap();
    let config = config.to_str().unwrap();

    let strict = run(&store, &out, &["--config", config]);
    assert_eq!(computed(&strict, "classify"), computed(&cold, "classify"));
    for op in stages(&store).iter().filter(|op| *op != "classify") {
        assert_eq!(computed(&strict, op), 0, "{op} reused: {strict}");
    }
    assert_ne!(strict["quality"], cold["quality"], "the threshold changed some verdicts");
    assert_equals_scratch(&store, &out, &["--config", config]);

    // Under the default configuration the strict classifier's entries are
    // unused: `cache stats` says so and `cache gc` drops exactly them.
    let cache = |action: &str| -> Value {
        let args = ["cache", action, "--store", store.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
        serde_json::from_str(&epiflow_ok(&args, 0)).unwrap()
    };
    let folders = cache("stats")["folders"].as_array().unwrap().clone();
    let classify: Vec<&Value> = folders.iter().filter(|f| f["operator"] == "classify").collect();
    assert_eq!(classify.len(), 2);
    assert_eq!(classify.iter().filter(|f| f["live"] == true).count(), 1);
    assert!(folders.iter().filter(|f| f["operator"] != "classify").all(|f| f["live"] == true));
    let removed = cache("gc")["folders"].as_array().unwrap().clone();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["operator"], "classify");
    assert_eq!(removed[0]["live"], false);
    let default = run(&store, &out, &[]);
    assert_eq!(computed(&default, "classify"), 0, "the default classifier's entries survived gc");
    let strict_again = run(&store, &out, &["--config", config]);
    assert_eq!(computed(&strict_again, "classify"), computed(&cold, "classify"), "gc dropped the strict ones");
}

#[test]
fn a_run_killed_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth(dir.path(), 60, 46);
    let out = dir.path().join("out");
    let clean = dir.path().join("clean");
    let started = std::time::Instant::now();
    run(&store, &clean, &[]);
    let cold_ms = started.elapsed().as_millis() as u64;

    // A cheap deterministic spread of kill moments over a cold run's length.
    // The window length changes every time, so every run has features to
    // recompute and shards to publish, and most get cut short somewhere.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let (mut killed, mut runs) = (0, 0);
    while killed < 20 && runs < 80 {
        let i = runs;
        runs += 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let window = ["10", "20", "15"][i % 3];
        let args =
            ["run", "--store", store.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q", "--window-s", window];
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_epiflow"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(x % (cold_ms * 2 / 3).max(1)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    assert_eq!(killed, 20, "20 of {runs} runs were killed while running");
    run(&store, &out, &[]);
    assert_eq!(outputs(&out), outputs(&clean));
}
