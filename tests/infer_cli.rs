//! `epiflow infer` (SPEC section 15) at the level users touch: checkpoints
//! trained by `epiflow run` on a synth store, run on the test side's archives
//! without shards, against what the evaluation computes from the shards.

mod common;
use common::*;
use epiflow_models::arch::Arch;
use epiflow_models::checkpoint::{self, Checkpoint};
use epiflow_models::scoring::argmax;
use epiflow_operators::channels::{ChannelSet, Phase};
use epiflow_operators::split::{Recipe, Side};
use epiflow_pipelines::feature_reader::read_windows;
use epiflow_pipelines::sinks::manifest::Manifest;
use epiflow_pipelines::sinks::splits;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// An episode's windows as the evaluation scores them: per window the five
/// probabilities and the predicted class.
type Scored = BTreeMap<(String, String), Vec<([f32; 5], u8)>>;

/// The test side of `recipe`.
fn test_side(out: &Path, recipe: Recipe) -> HashMap<(String, String), Side> {
    let assignments = splits::read(&out.join("splits"), recipe).unwrap();
    assignments.into_iter().filter(|a| a.side == Side::Test).map(|a| ((a.host_id, a.episode_id), a.side)).collect()
}

/// What the evaluation computes from the shards for each test episode.
fn from_shards(out: &Path, dir: &Path, test: &HashMap<(String, String), Side>) -> Scored {
    let features = out.join("features");
    let manifest = Manifest::read(&features).unwrap();
    let model = Checkpoint::load(dir, &manifest).unwrap_or_else(|e| panic!("{e}"));
    let mut windows = read_windows(&features, &manifest, model.card.arch.input(), model.card.channels, test).unwrap();
    let side = windows.sides.remove(&Side::Test).expect("test windows");
    let probabilities = model.predict(side.clone()).unwrap();
    let predicted = argmax(&probabilities);
    let mut scored = Scored::new();
    for (row, (p, class)) in probabilities.chunks_exact(5).zip(predicted).enumerate() {
        let episode = windows.episodes[side.episode[row] as usize].clone();
        scored.entry(episode).or_default().push((p.try_into().unwrap(), class));
    }
    scored
}

/// `epiflow infer --json` on `archives`: the window objects by episode, the
/// other objects (bad archives), and the summary.
fn infer(model: &Path, archives: &[PathBuf], code: i32) -> (Scored, Vec<Value>, Value) {
    let mut args = vec!["infer", "--model", model.to_str().unwrap(), "--json"];
    args.extend(archives.iter().map(|a| a.to_str().unwrap()));
    let text = epiflow_ok(&args, code);
    let (mut scored, mut other, mut summary) = (Scored::new(), Vec::new(), Value::Null);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if !v["summary"].is_null() {
            summary = v["summary"].clone();
        } else if v["window_start_s"].is_number() {
            let p: Vec<f32> =
                Phase::ALL.iter().map(|ph| v["probabilities"][ph.name()].as_f64().unwrap() as f32).collect();
            let class = Phase::parse(v["predicted"].as_str().unwrap()).unwrap().class_id();
            let key = (v["host_id"].as_str().unwrap().to_string(), v["episode_id"].as_str().unwrap().to_string());
            scored.entry(key).or_default().push((p.try_into().unwrap(), class));
        } else {
            other.push(v);
        }
    }
    (scored, other, summary)
}

fn archive(store: &Path, key: &(String, String)) -> PathBuf {
    store.join("episodes").join(&key.0).join(format!("{}.tar.zst", key.1))
}

/// A synth store of `episodes` × `duration_s` under `dir`, its outputs and
/// the configuration file `config`, after `epiflow run --split host` with it
/// and `args`.
fn trained(dir: &Path, (episodes, seed, duration_s): (usize, u64, u32), config: &str, args: &[&str]) -> [PathBuf; 3] {
    let store = synth_store(&dir.join("store"), episodes, seed, duration_s);
    let (out, file) = (dir.join("out"), dir.join("epiflow.toml"));
    std::fs::write(&file, config).unwrap();
    let (s, o, c) = (store.to_str().unwrap(), out.to_str().unwrap(), file.to_str().unwrap());
    epiflow_ok(&[&["run", "--store", s, "--out", o, "--config", c, "--split", "host", "-q"], args].concat(), 0);
    [store, out, file]
}

#[test]
fn every_model_infers_from_archives_what_the_evaluation_computes_from_shards_with_its_own_windows() {
    let dir = tempfile::tempdir().unwrap();
    // Trained on 8 s windows.
    let [store, out, config] =
        trained(dir.path(), (30, 21, 60), "[train.neural]\nmax_epochs = 2\n", &["--window-s", "8"]);
    let (s, o, c) = (store.to_str().unwrap(), out.to_str().unwrap(), config.to_str().unwrap());
    let test = test_side(&out, Recipe::Host);
    let mut references = Vec::new();
    for arch in Arch::ALL {
        for set in ChannelSet::ALL {
            let model = checkpoint::dir_of(&out, Recipe::Host, arch, set);
            references.push((model.clone(), from_shards(&out, &model, &test)));
        }
    }
    let eight_s: usize = references[0].1.values().map(Vec::len).sum();
    // The store's features go back to 10 s windows; the checkpoints stay.
    epiflow_ok(&["run", "--store", s, "--out", o, "--config", c, "-q"], 0);
    let manifest = Manifest::read(&out.join("features")).unwrap();
    assert_eq!(manifest.window["window_s"], 10.0);

    let archives: Vec<PathBuf> = references[0].1.keys().map(|k| archive(&store, k)).collect();
    assert!(archives.len() >= 3, "the test side has episodes with windows");
    for (model, expected) in &references {
        let (got, bad, summary) = infer(model, &archives, 0);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{}", model.display());
        for (key, windows) in expected {
            let inferred = &got[key];
            assert_eq!(inferred.len(), windows.len(), "{} {key:?}: windows of 8 s", model.display());
            for (w, ((p, class), (q, guess))) in windows.iter().zip(inferred).enumerate() {
                let gap = p.iter().zip(q).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(gap <= 1e-5, "{} {key:?} window {w}: {p:?} vs {q:?}", model.display());
                assert_eq!(class, guess, "{} {key:?} window {w}", model.display());
            }
        }
        assert_eq!(summary["windows"], eight_s);
        assert_eq!(summary["window_s"], 8.0);
        assert!(summary["accuracy"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{summary}");
        assert!(summary["episode_ms_median"].as_f64().is_some_and(|ms| ms > 0.0), "{summary}");
    }
}

#[test]
fn a_mismatched_or_damaged_checkpoint_is_refused_and_a_bad_archive_is_what_validate_says() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[train]\narchs = [\"gbt\", \"mlp\"]\nchannels = [\"realistic\"]\n[train.neural]\nmax_epochs = 1\n";
    let [store, out, _] = trained(dir.path(), (24, 22, 40), config, &[]);
    let good = archive(&store, &line_key(&index_lines(&store)[0]));

    // An archive that is not zstd: the outcome and reason `validate` gives, exit 1.
    let bad_store = StoreBuilder::new(&dir.path().join("bad")).add("h1", "not-zstd", b"plain text", None).finish();
    let bad = archive(&bad_store, &("h1".into(), "not-zstd".into()));
    let validated = dir.path().join("validated");
    epiflow_ok(&["validate", "--store", bad_store.to_str().unwrap(), "--out", validated.to_str().unwrap(), "-q"], 0);
    let row = &validation_rows(&validated.join("validation.parquet"))[0];
    for arch in ["gbt", "mlp"] {
        let model = out.join(format!("models/host/{arch}-realistic"));
        let (windows, others, summary) = infer(&model, &[good.clone(), bad.clone()], 1);
        assert!(!windows.is_empty(), "the good archive is still classified");
        assert_eq!(others.len(), 1);
        assert_eq!(others[0]["outcome"], row.outcome.as_str());
        assert_eq!(others[0]["reasons"], serde_json::json!(row.reasons));
        assert!(others[0]["detail"].as_str().unwrap().contains("not-zstd.tar.zst"), "{}", others[0]);
        assert_eq!((summary["archives"].as_u64(), summary["bad_archives"].as_u64()), (Some(2), Some(1)));
    }

    // A card naming another feature schema: exit 2, both hashes named.
    let model = out.join("models/host/gbt-realistic");
    let card_path = model.join("model.json");
    let card = std::fs::read_to_string(&card_path).unwrap();
    let hash = serde_json::from_str::<Value>(&card).unwrap()["feature_schema_hash"].as_str().unwrap().to_string();
    let other = "0".repeat(hash.len());
    std::fs::write(&card_path, card.replace(&hash, &other)).unwrap();
    let refused = epiflow(&["infer", "--model", model.to_str().unwrap(), good.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&hash) && stderr.contains(&other), "{stderr}");
    std::fs::write(&card_path, card).unwrap();

    // Truncated weights: exit 2 with a clear error, not a panic.
    let model = out.join("models/host/mlp-realistic");
    let card: Value = serde_json::from_slice(&std::fs::read(model.join("model.json")).unwrap()).unwrap();
    let weights = model.join(card["weights"].as_str().unwrap());
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let refused = epiflow(&["infer", "--model", model.to_str().unwrap(), good.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(weights.to_str().unwrap()) && !stderr.contains("panicked"), "{stderr}");

    // No checkpoint at all.
    let missing = epiflow(&["infer", "--model", dir.path().join("nothing").to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
}
