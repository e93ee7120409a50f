//! `epiflow features` on real `.tar.zst` stores: the earlier tool's feature
//! tests, shards that read back exactly as the operators computed them, stable
//! bytes across worker counts, and a schema hash that moves only when it must.

mod common;
use arrow_array::{
    Array, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use common::*;
use epiflow_operators::align::Align;
use epiflow_operators::channels::channel_index;
use epiflow_operators::decode::Decode;
use epiflow_operators::model::EpisodeKey;
use epiflow_operators::tensor::{Tensor, TensorFeatures};
use epiflow_operators::test_support::seed_episode;
use epiflow_operators::window::{SummaryFeatures, Window};
use epiflow_operators::Operator;
use std::path::{Path, PathBuf};

const SEED_PHASES: [(f64, &str); 3] = [(0.0, "clean"), (10.0, "infected_running"), (25.0, "clean")];

/// The seed's episode as an archive of episode `id`.
fn seed_archive(id: &str, garbage_mono: bool, with_labels: bool) -> Vec<u8> {
    let mut members: Vec<(String, Vec<u8>)> = seed_episode(30.0, &SEED_PHASES, 100.0, garbage_mono)
        .into_iter()
        .map(|(n, b)| (n.trim_start_matches("e/").to_string(), b))
        .collect();
    members.push(("DONE".into(), vec![]));
    if !with_labels {
        set_member(&mut members, "labels.jsonl", Some(vec![]));
    }
    archive_under(id, &members)
}

fn features(store: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["features", "--store", store.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json", "-q"];
    args.extend_from_slice(extra);
    serde_json::from_str(&epiflow_ok(&args, 0)).unwrap()
}

fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn read_all(dir: &Path) -> Vec<RecordBatch> {
    parts(dir).iter().map(|p| read_parquet(p)).collect()
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).as_any().downcast_ref::<T>().unwrap()
}

/// Rows of one episode from the tensor shards: (start, label, x, mask).
fn tensor_rows(dir: &Path, episode: &str) -> Vec<(f64, i32, Vec<f32>, Vec<bool>)> {
    let mut rows = Vec::new();
    for b in read_all(dir) {
        let ids = col::<StringArray>(&b, "episode_id");
        for i in 0..b.num_rows() {
            if ids.value(i) != episode {
                continue;
            }
            let x = col::<FixedSizeListArray>(&b, "x").value(i);
            let m = col::<FixedSizeListArray>(&b, "mask").value(i);
            rows.push((
                col::<Float64Array>(&b, "window_start_s").value(i),
                col::<Int32Array>(&b, "label").value(i),
                x.as_any().downcast_ref::<Float32Array>().unwrap().values().to_vec(),
                m.as_any().downcast_ref::<BooleanArray>().unwrap().iter().map(|v| v.unwrap()).collect(),
            ));
        }
    }
    rows
}

#[test]
fn seed_feature_cases_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StoreBuilder::new(&dir.path().join("store"));
    s.add("lab", "plain", &seed_archive("plain", false, true), None);
    s.add("lab", "garbagemono", &seed_archive("garbagemono", true, true), None);
    s.add("lab", "nolabels", &seed_archive("nolabels", false, false), None);
    let store = s.finish();
    let out = dir.path().join("out");
    let summary = features(&store, &out, &[]);
    assert_eq!(summary["windows"], 10, "5 windows for each of the two labelled episodes");

    // Shape: 5 windows of 46 × 20, labelled at their centres.
    let rows = tensor_rows(&out.join("features/tensors"), "plain");
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.2.len() == 46 * 20 && r.3.len() == 46 * 20));
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0.0, 5.0, 10.0, 15.0, 20.0]);
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), vec![0, 3, 3, 3, 0]);
    // A counter rising 100 jiffies/s reads as a rate of 100/s.
    let c = channel_index("proc.cpu_user_jiffies").unwrap();
    let valid: Vec<f32> = rows
        .iter()
        .flat_map(|r| (0..20).filter(|t| r.3[c * 20 + t]).map(|t| r.2[c * 20 + t]).collect::<Vec<_>>())
        .collect();
    let mean = valid.iter().sum::<f32>() / valid.len() as f32;
    assert!((90.0..110.0).contains(&mean), "{mean}");
    // Garbage t_mono_ns on netflow: still aligned by t_wall_ns.
    let rows = tensor_rows(&out.join("features/tensors"), "garbagemono");
    let n = channel_index("netflow.pkts_in").unwrap();
    let masked: Vec<bool> = rows.iter().flat_map(|r| r.3[n * 20..(n + 1) * 20].to_vec()).collect();
    assert!(masked.iter().filter(|m| **m).count() as f64 / masked.len() as f64 > 0.5);
    // No labels → rejected → no windows.
    assert!(tensor_rows(&out.join("features/tensors"), "nolabels").is_empty());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("features/manifest.json")).unwrap()).unwrap();
    assert!(manifest["episodes"].get("lab/nolabels").is_none());
    assert_eq!(manifest["episodes"]["lab/plain"]["windows"], 5);
}

/// What the operators compute for one archive, for comparison with the shards.
fn computed(bytes: &[u8], id: &str) -> (SummaryFeatures, TensorFeatures) {
    let key = EpisodeKey { host_id: "lab".into(), episode_id: id.into() };
    let aligned = Align.apply(&Decode::default().decode_bytes(bytes, key.clone(), None, "x").unwrap());
    (Window::default().apply(&aligned), Tensor::default().from_archive(bytes, key).unwrap())
}

#[test]
fn shards_read_back_exactly_as_the_operators_computed_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    epiflow_ok(
        &["synth", "--out", store.to_str().unwrap(), "--episodes", "24", "--seed", "5", "--duration-s", "40", "-q"],
        0,
    );
    let out = dir.path().join("out");
    features(&store, &out, &[]);
    let validation = validation_rows(&out.join("validation.parquet"));
    let usable: Vec<&ValidationRow> =
        validation.iter().filter(|r| r.outcome == "accepted" || r.outcome == "degraded").collect();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("features/manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["episodes"].as_object().unwrap().len(),
        usable.len(),
        "features for every usable episode, only those"
    );

    let summaries = read_all(&out.join("features/summary"));
    let names: Vec<String> = summaries[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(
        &names[..7],
        &["host_id", "episode_id", "profile", "sample_name", "window_start_s", "label", "label_name"]
    );
    assert_eq!(names.len(), 7 + 230);
    assert_eq!(names[7], "proc.cpu_user_jiffies:mean");
    assert_eq!(names[7 + 5 * 15 + 4], "guest.load_1m:slope");
    for row in usable.iter().take(6) {
        let bytes =
            std::fs::read(store.join("episodes").join(&row.host_id).join(format!("{}.tar.zst", row.episode_id)))
                .unwrap();
        let (summary, tensors) = computed(&bytes, &row.episode_id);
        // Tensors, bit for bit.
        let shard_rows = tensor_rows(&out.join("features/tensors"), &row.episode_id);
        assert_eq!(shard_rows.len(), tensors.windows.len());
        for (w, (start, label, x, mask)) in shard_rows.iter().enumerate() {
            assert_eq!(*start, tensors.windows.starts[w]);
            assert_eq!(*label, tensors.windows.labels[w].class_id() as i32);
            let width = tensors.width();
            assert!(x.iter().zip(&tensors.x[w * width..(w + 1) * width]).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert_eq!(&mask[..], &tensors.mask[w * width..(w + 1) * width]);
        }
        // Summary features, bit for bit (NaN included).
        let mut w = 0;
        for b in &summaries {
            let ids = col::<StringArray>(b, "episode_id");
            for i in (0..b.num_rows()).filter(|i| ids.value(*i) == row.episode_id) {
                assert_eq!(col::<StringArray>(b, "label_name").value(i), summary.windows.labels[w].name());
                for c in 0..230 {
                    let v = b.column(7 + c).as_any().downcast_ref::<Float32Array>().unwrap().value(i);
                    assert_eq!(
                        v.to_bits(),
                        summary.values[w * 230 + c].to_bits(),
                        "{} window {w} column {c}",
                        row.episode_id
                    );
                }
                w += 1;
            }
        }
        assert_eq!(w, summary.windows.len());
    }
}

fn tensor_metadata(out: &Path) -> std::collections::BTreeMap<String, String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let first = parts(&out.join("features/tensors"))[0].clone();
    let reader = SerializedFileReader::new(std::fs::File::open(first).unwrap()).unwrap();
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn shards_are_stable_across_workers_and_the_schema_hash_moves_only_with_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    epiflow_ok(&["synth", "--out", s, "--episodes", "30", "--seed", "6", "--duration-s", "30", "-q"], 0);
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    features(&store, &one, &["--workers", "1"]);
    features(&store, &two, &["--workers", "2"]);
    assert_eq!(tree_hash(&one.join("features")), tree_hash(&two.join("features")), "same bytes with 1 and 2 workers");
    for kind in ["summary", "tensors"] {
        assert!(
            parts(&one.join("features").join(kind)).iter().all(|p| p.extension().unwrap() == "parquet"),
            "no temporaries left"
        );
    }

    let meta = tensor_metadata(&one);
    assert_eq!(meta["epiflow.timesteps"], "20");
    assert_eq!(meta["epiflow.hz"], "2");
    let channels: Vec<String> = serde_json::from_str(&meta["epiflow.channels"]).unwrap();
    assert_eq!(channels.len(), 46);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("features/manifest.json")).unwrap()).unwrap();
    let hash = manifest["feature_schema_hash"].as_str().unwrap().to_string();
    assert_eq!(meta["epiflow.feature_schema_hash"], hash);
    assert_eq!(manifest["channel_sets"]["realistic"].as_array().unwrap().len(), 29);

    // A classifier threshold is not part of the feature schema.
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[classify]\nguest_min_load_delta = 0.9\n").unwrap();
    let other = dir.path().join("other");
    features(&store, &other, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(tensor_metadata(&other)["epiflow.feature_schema_hash"], hash);
    // A window length is.
    let longer = dir.path().join("longer");
    features(&store, &longer, &["--window-s", "20"]);
    let meta = tensor_metadata(&longer);
    assert_ne!(meta["epiflow.feature_schema_hash"], hash);
    assert_eq!(meta["epiflow.timesteps"], "40");

    // run.json names each operator's chained fingerprint: the window length
    // moves window and tensor, the threshold moves classify, nothing else.
    let fingerprints = |out: &Path| -> std::collections::BTreeMap<String, String> {
        let run: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
        let ops = run["operators"].as_object().unwrap();
        ops.iter().map(|(name, op)| (name.clone(), op["fingerprint"].as_str().unwrap().to_string())).collect()
    };
    let declared = stages(Path::new(s)).len();
    let moved = |a: &Path, b: &Path| -> Vec<String> {
        let (a, b) = (fingerprints(a), fingerprints(b));
        assert_eq!(a.len(), declared, "every declared stage has a fingerprint: {a:?}");
        a.keys().filter(|k| a[*k] != b[*k]).cloned().collect()
    };
    assert_eq!(moved(&one, &longer), ["tensor", "window"]);
    assert_eq!(moved(&one, &other), ["classify"]);
    let bad = epiflow(&["features", "--store", s, "--out", longer.to_str().unwrap(), "--tensor-hz", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tensor hz 0"), "{bad:?}");
}
