//! Training at the level users touch: `epiflow run --split` and `epiflow
//! train` on a synth store, the checkpoints they leave read back with the
//! library, and both sides of the split they did not train on scored with
//! them.

mod common;
use common::*;
use epiflow_models::arch::Arch;
use epiflow_models::checkpoint::{self, Checkpoint};
use epiflow_models::scoring::{argmax, Confusion};
use epiflow_operators::channels::ChannelSet;
use epiflow_operators::split::{Recipe, Side};
use epiflow_pipelines::feature_reader::read_windows;
use epiflow_pipelines::sinks::manifest::Manifest;
use epiflow_pipelines::sinks::splits;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The in-distribution (validation side) macro F1 every model must reach:
/// within the training hosts each phase has its own signature, so a model
/// that learned anything separates them; chance is about 0.2 (uniform
/// guesses over five phases) and a constant guess scores at most 1/5 of one
/// class's F1. 0.6 is three times chance yet leaves room for the
/// shortest-trained recurrent models.
const MIN_VAL_MACRO_F1: f64 = 0.6;

/// What every model must still reach on the held-out host. Synth hosts
/// differ (CPU speed, memory, background load and traffic) and idle or
/// dormant windows look clean from inside the guest, so an unseen host is
/// genuinely harder (0.45–0.9 on this store); above 0.3 is still clearly
/// better than guessing.
const MIN_TEST_MACRO_F1: f64 = 0.3;

/// Macro F1 of the checkpoint in `dir` on one side of `recipe`.
fn macro_f1(out: &Path, recipe: Recipe, dir: &Path, side: Side) -> f64 {
    let features = out.join("features");
    let manifest = Manifest::read(&features).expect("features written");
    let model = Checkpoint::load(dir, &manifest).unwrap_or_else(|e| panic!("{e}"));
    let wanted: HashMap<(String, String), Side> = splits::read(&out.join("splits"), recipe)
        .unwrap()
        .into_iter()
        .filter(|a| a.side == side)
        .map(|a| ((a.host_id, a.episode_id), a.side))
        .collect();
    let mut windows =
        read_windows(&features, &manifest, model.card.arch.input(), model.card.channels, &wanted).unwrap();
    let windows = windows.sides.remove(&side).expect("windows on that side");
    let truth = windows.labels.clone();
    let probs = model.predict(windows).unwrap();
    Confusion::of(&truth, &argmax(&probs)).macro_f1()
}

/// Every model line of a run's JSON summary: name → status.
fn statuses(summary: &Value) -> HashMap<String, String> {
    summary["models"]
        .as_array()
        .expect("models in the summary")
        .iter()
        .map(|m| (m["model"].as_str().unwrap().to_string(), m["status"].as_str().unwrap().to_string()))
        .collect()
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> HashMap<String, Vec<u8>> {
    paths_under(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.strip_prefix(dir).unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// A card with the timing of training (which differs between runs) removed.
fn without_timing(card: &[u8]) -> Value {
    let mut card: Value = serde_json::from_slice(card).unwrap();
    let training = card["training"].as_object_mut().unwrap();
    assert!(training.remove("wall_s").is_some() && training.remove("windows_per_s").is_some());
    card
}

#[test]
fn every_architecture_learns_both_channel_sets_repeatably_and_retrains_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    let (s, o) = (store.to_str().unwrap(), out.to_str().unwrap());
    epiflow_ok(&["synth", "--out", s, "--episodes", "60", "--seed", "11", "-q"], 0);

    // Twelve models, each clearly above chance in distribution and still
    // above it on the held-out host.
    let first: Value =
        serde_json::from_str(&epiflow_ok(&["run", "--store", s, "--out", o, "--split", "host", "--json", "-q"], 0))
            .unwrap();
    let trained = statuses(&first);
    assert_eq!(trained.len(), 12, "{trained:?}");
    assert!(trained.values().all(|s| s == "computed"), "{trained:?}");
    let mut scores = Vec::new();
    for arch in Arch::ALL {
        for set in ChannelSet::ALL {
            let dir = checkpoint::dir_of(&out, Recipe::Host, arch, set);
            let [val, test] = [Side::Val, Side::Test].map(|side| macro_f1(&out, Recipe::Host, &dir, side));
            scores.push((format!("{arch}-{}", set.name()), val, test));
        }
    }
    assert!(
        scores.iter().all(|(_, val, test)| *val >= MIN_VAL_MACRO_F1 && *test >= MIN_TEST_MACRO_F1),
        "validation macro F1 below {MIN_VAL_MACRO_F1} or test below {MIN_TEST_MACRO_F1}: {scores:?}"
    );
    let run_json: Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["operators"]["train"]["computed"], 12);

    // Nothing changed: every model cached.
    let second: Value =
        serde_json::from_str(&epiflow_ok(&["run", "--store", s, "--out", o, "--split", "host", "--json", "-q"], 0))
            .unwrap();
    assert!(statuses(&second).values().all(|s| s == "cached"), "{:?}", statuses(&second));
    assert_eq!(second["operators"]["train"]["cached"], 12);
    assert_eq!(second["operators"]["train"]["computed"], 0);
    // Nor was the corpus run again, then or after the models' sinks looked.
    let through = |stats: &Value| -> u64 {
        stats["per_worker"].as_array().unwrap().iter().map(|w| w["episodes"].as_u64().unwrap()).sum()
    };
    assert_eq!(through(&second), 0, "the dataflow is not started: {second}");
    let third: Value =
        serde_json::from_str(&epiflow_ok(&["run", "--store", s, "--out", o, "--split", "host", "--json", "-q"], 0))
            .unwrap();
    assert_eq!((through(&third), &third["operators"]["train"]["cached"]), (0, &12.into()));

    // The same seed again, on one worker: the same weights, byte for byte,
    // and the same cards but for how long training took.
    let models = out.join("models");
    let before = files(&models);
    std::fs::remove_dir_all(&models).unwrap();
    epiflow_ok(&["train", "--store", s, "--out", o, "--split", "host", "--workers", "1", "-q"], 0);
    let after = files(&models);
    assert_eq!(before.len(), 36, "weights, card and fitted episodes of each of the 12 models");
    assert_eq!(after.keys().collect::<std::collections::BTreeSet<_>>(), before.keys().collect());
    for (path, bytes) in &before {
        if path.ends_with("model.json") {
            assert_eq!(without_timing(bytes), without_timing(&after[path]), "{path}");
        } else {
            assert!(bytes == &after[path], "{path} differs between two trainings with the same seed");
        }
    }

    // A change to the networks' settings retrains the networks, not the trees.
    let config = dir.path().join("epiflow.toml");
    std::fs::write(&config, "[train.neural]\nmax_epochs = 5\n").unwrap();
    let c = config.to_str().unwrap();
    let changed: Value = serde_json::from_str(&epiflow_ok(
        &[
            "train",
            "--store",
            s,
            "--out",
            o,
            "--config",
            c,
            "--split",
            "host",
            "--arch",
            "gbt",
            "--arch",
            "mlp",
            "--channels",
            "realistic",
            "--json",
            "-q",
        ],
        0,
    ))
    .unwrap();
    let changed = statuses(&changed);
    assert_eq!(changed["host/gbt-realistic"], "cached");
    assert_eq!(changed["host/mlp-realistic"], "computed");
    assert_eq!(changed.len(), 2, "{changed:?}");

    // New window settings: the old checkpoints are refused, naming both
    // feature schema hashes and what changed.
    let old_hash = Manifest::read(&out.join("features")).unwrap().feature_schema_hash;
    epiflow_ok(&["features", "--store", s, "--out", o, "--window-s", "8", "-q"], 0);
    let manifest = Manifest::read(&out.join("features")).unwrap();
    assert_ne!(manifest.feature_schema_hash, old_hash);
    let cnn = checkpoint::dir_of(&out, Recipe::Host, Arch::Cnn, ChannelSet::Oracle);
    let Err(refusal) = Checkpoint::load(&cnn, &manifest) else { panic!("a checkpoint loaded against other features") };
    assert!(refusal.contains(&format!("trained on features with schema hash {old_hash}")), "{refusal}");
    assert!(refusal.contains(&format!("the current features have {}", manifest.feature_schema_hash)), "{refusal}");
    assert!(refusal.contains("window_s 10.0 -> 8.0"), "{refusal}");
    assert!(refusal.contains("retrain it (`epiflow train`)"), "{refusal}");
}

#[test]
fn train_needs_a_split_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    epiflow_ok(&["synth", "--out", s, "--episodes", "3", "-q"], 0);
    let out = epiflow(&["train", "--store", s]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--split"), "{stderr}");
    assert!(!store.join("derived/models").exists(), "nothing trained");
}

#[test]
fn a_test_side_arrival_re_evaluates_and_retrains_nothing_and_a_moved_split_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 40, 5, 40);
    let out = dir.path().join("out");
    let (s, o) = (store.to_str().unwrap(), out.to_str().unwrap());
    // One episode of the test host held back from the index, to arrive later.
    let lines = index_lines(&store);
    let host = busiest_host(&lines, None);
    let clean = clean_episodes(&store);
    let held = lines.iter().rposition(|l| line_key(l).0 == host && clean.contains(&line_key(l))).unwrap();
    let without: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != held).map(|(_, l)| l.as_str()).collect();
    std::fs::write(store.join("index.jsonl"), without.join("\n") + "\n").unwrap();
    let run = |test_host: &str| -> Value {
        let args = ["run", "--store", s, "--out", o, "--split", "host", "--arch", "gbt", "--channels", "realistic"];
        let text = epiflow_ok(&[&args[..], &["--test-host", test_host, "--json", "-q"]].concat(), 0);
        serde_json::from_str(&text).unwrap()
    };
    let report =
        || -> Value { serde_json::from_slice(&std::fs::read(out.join("eval/host/report.json")).unwrap()).unwrap() };
    let first = run(&host);
    assert_eq!(first["operators"]["train"]["computed"], 1);
    let tested = report()["test"]["episodes"].as_u64().unwrap();

    // The episode arrives on the test side: the model is the same, the
    // report scores one test episode more.
    let mut index = std::fs::OpenOptions::new().append(true).open(store.join("index.jsonl")).unwrap();
    std::io::Write::write_all(&mut index, format!("{}\n", lines[held]).as_bytes()).unwrap();
    let second = run(&host);
    assert_eq!(second["operators"]["train"]["computed"], 0, "a test episode changes no model");
    assert_eq!(second["operators"]["train"]["cached"], 1);
    assert_eq!(second["operators"]["eval"]["computed"], 1, "it changes the evaluation");
    assert_eq!(report()["test"]["episodes"].as_u64().unwrap(), tested + 1);

    // Another host becomes the test host (no model retrained): the model
    // learned from its episodes, and eval refuses it, naming one.
    let other = busiest_host(&lines, Some(&host));
    epiflow_ok(&["run", "--store", s, "--out", o, "--test-host", &other, "-q"], 0);
    let refused = epiflow(&["eval", "--store", s, "--out", o, "--split", "host"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let named = stderr
        .split("it learned from ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no episode named: {stderr}"));
    assert!(named.starts_with(&format!("{other}/")), "{stderr}");
    let fitted = std::fs::read_to_string(out.join("models/host/gbt-realistic").join(checkpoint::FITTED)).unwrap();
    assert!(fitted.contains(&named.replacen('/', "\t", 1)), "{named} is listed as learned from");
    assert!(stderr.contains("which the host split now places on its test side"), "{stderr}");
}

/// Copies every file under `from` to the same place under `to`.
fn copy_tree(from: &Path, to: &Path) {
    for path in paths_under(from).into_iter().filter(|p| p.is_file()) {
        let target = to.join(path.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&path, &target).unwrap();
    }
}

#[test]
fn a_small_training_side_arrival_updates_the_models_repeatably_and_a_window_change_or_retrain_trains_anew() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 80, 5, 60);
    let s = store.to_str().unwrap();
    // Where the host split places the episodes, from the whole store.
    let probe = dir.path().join("probe");
    epiflow_ok(&["run", "--store", s, "--out", probe.to_str().unwrap(), "-q"], 0);
    let summary: Value = serde_json::from_slice(&std::fs::read(probe.join("splits/host.json")).unwrap()).unwrap();
    let test_host = summary["test_host"].as_str().unwrap().to_string();
    let training: Vec<(String, String)> = splits::read(&probe.join("splits"), Recipe::Host)
        .unwrap()
        .into_iter()
        .filter(|a| a.side == Side::Train)
        .map(|a| (a.host_id, a.episode_id))
        .collect();
    let clean = clean_episodes(&store);
    let lines = index_lines(&store);
    let held = lines.iter().rposition(|l| training.contains(&line_key(l)) && clean.contains(&line_key(l))).unwrap();
    let kept: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != held).map(|(_, l)| l.as_str()).collect();
    std::fs::write(store.join("index.jsonl"), kept.join("\n") + "\n").unwrap();
    let run = |out: &Path, extra: &[&str]| -> Value {
        let args = ["run", "--store", s, "--out", out.to_str().unwrap(), "--test-host", &test_host];
        let args = [&args[..], &["--split", "host", "--arch", "gbt", "--arch", "mlp", "--channels", "realistic"]];
        serde_json::from_str(&epiflow_ok(&[&args.concat()[..], extra, &["--json", "-q"]].concat(), 0)).unwrap()
    };
    let card = |out: &Path, model: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.join("models/host").join(model).join("model.json")).unwrap()).unwrap()
    };
    let first = dir.path().join("first");
    assert_eq!(run(&first, &[])["operators"]["train"]["computed"], 2);
    let parents: Vec<Value> = ["gbt-realistic", "mlp-realistic"].iter().map(|m| card(&first, m)).collect();
    assert!(parents.iter().all(|c| c["training"]["mode"] == "full"));

    // The episode arrives on the training side: both models are updated
    // from their checkpoints, the same way twice.
    let mut index = std::fs::OpenOptions::new().append(true).open(store.join("index.jsonl")).unwrap();
    std::io::Write::write_all(&mut index, format!("{}\n", lines[held]).as_bytes()).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    copy_tree(&first, &a);
    copy_tree(&first, &b);
    let updated = run(&a, &[]);
    assert_eq!(updated["operators"]["train"]["computed"], 2, "{updated}");
    assert_eq!(updated["evals"][0]["status"], "computed", "the updated models are evaluated");
    let manifest = Manifest::read(&a.join("features")).unwrap();
    let (host, episode) = line_key(&lines[held]);
    let added = manifest.episodes[&format!("{host}/{episode}")].windows;
    for (model, parent) in ["gbt-realistic", "mlp-realistic"].iter().zip(&parents) {
        let warm = card(&a, model);
        assert_eq!(warm["training"]["mode"], "warm", "{model}: {}", warm["training"]);
        assert_eq!(warm["training"]["windows_added"], added);
        assert_eq!(warm["training"]["parent_weights_sha256"], parent["weights_sha256"]);
        // New weights, unless a network's fine-tuning never beat its
        // checkpoint's on validation and kept them (as the card says).
        let kept = warm["training"]["report"]["kept_start"] == true;
        assert_eq!(warm["weights_sha256"] == parent["weights_sha256"], kept, "{model}: {}", warm["training"]);
        assert_eq!(
            warm["split"]["windows"]["train"],
            parent["split"]["windows"]["train"].as_u64().unwrap() + added as u64
        );
    }
    run(&b, &[]);
    let models = |out: &Path| files(&out.join("models"));
    let (in_a, in_b) = (models(&a), models(&b));
    assert_eq!(in_a.keys().collect::<std::collections::BTreeSet<_>>(), in_b.keys().collect());
    for (name, bytes) in &in_a {
        match name.ends_with(checkpoint::CARD) {
            true => assert_eq!(without_timing(bytes), without_timing(&in_b[name]), "{name}"),
            false => assert_eq!(bytes, &in_b[name], "{name}: the same history gives the same weights"),
        }
    }

    // --retrain, and a window change (another feature schema): from scratch.
    let c = dir.path().join("c");
    copy_tree(&first, &c);
    run(&c, &["--retrain"]);
    assert!(["gbt-realistic", "mlp-realistic"].iter().all(|m| card(&c, m)["training"]["mode"] == "full"));
    let rewindowed = run(&a, &["--window-s", "20"]);
    assert_eq!(rewindowed["operators"]["train"]["computed"], 2);
    assert!(["gbt-realistic", "mlp-realistic"].iter().all(|m| card(&a, m)["training"]["mode"] == "full"));
}
