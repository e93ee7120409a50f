//! What every registered stage must do (in the spirit of vector's
//! `assert_transform_compliance`), checked over the standard registry plus
//! the worked example of `examples/nonzero_share.rs`, on synth episodes run
//! through the real pipeline: computed once for the episodes it applies to,
//! cached on the next run, recomputed when its version or configuration
//! changes and only then (with what reads it), its cached records read back
//! equal with NaN and infinities in them, an unreadable record counted as
//! failed and recomputed, its output gone when its episode leaves the
//! index, and no record read that its inputs do not declare (a mutant stage
//! that does fails these checks). The stages come from the registry, never
//! from a list here.

#[path = "../examples/nonzero_share.rs"]
#[allow(dead_code)]
mod nonzero_share;

mod common;

use common::{index_lines, line_key, synth_store, validation_rows};
use epiflow_engine::{Config, Job, Mode, RunStats};
use epiflow_operators::classify::Classify;
use epiflow_operators::fingerprint::Fingerprint;
use epiflow_operators::index::{read_index, IndexEntry};
use epiflow_operators::model::{AlignedEpisode, Failure};
use epiflow_operators::Operator;
use epiflow_pipelines::corpus::{follow, CorpusPlan, CorpusState, EpochSink, FeaturePlan};
use epiflow_pipelines::index_feed::{IndexFeed, Poll};
use epiflow_pipelines::results::NoStore;
use epiflow_pipelines::stages::{
    Applies, Caching, ErasedStage, Held, IndexKey, Inputs, Registry, Sections, Stage, Stages,
};
use epiflow_pipelines::Cluster;
use std::any::Any;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The standard stages and the worked example.
fn registry() -> Registry {
    nonzero_share::registry()
}

/// The stages of `registry` as a run configures them.
fn configured(registry: &Registry) -> Stages {
    Config::default().stages(registry).unwrap()
}

/// How many episodes of the last run each kind of stage applies to.
struct Applicable {
    readable: u64,
    usable: u64,
}

impl Applicable {
    fn of(out: &Path) -> Applicable {
        let rows = validation_rows(&out.join("validation.parquet"));
        let count = |f: &dyn Fn(&str) -> bool| rows.iter().filter(|r| f(&r.outcome)).count() as u64;
        Applicable { readable: count(&|o| o != "errored"), usable: count(&|o| o == "accepted" || o == "degraded") }
    }

    fn of_stage(&self, stage: &dyn ErasedStage) -> u64 {
        match stage.applies() {
            Applies::Readable => self.readable,
            Applies::Usable => self.usable,
        }
    }
}

/// (computed, cached, failed) of `name` in a run's statistics.
fn counts(stats: &RunStats, name: &str) -> (u64, u64, u64) {
    let o = stats.operators.get(name).unwrap_or_else(|| panic!("{name} is not in run.json: {:?}", stats.operators));
    (o.computed, o.cached, o.failed)
}

/// `epiflow run` over `registry`'s stages, as a library call; a run that
/// fails panics with its error.
fn run(store: &Path, out: &Path, registry: Registry) -> RunStats {
    let job = Job { cluster: Cluster::local(2), registry, ..Job::new(store, out) };
    let stats = job.run(Mode::Run, Arc::new(())).unwrap_or_else(|e| panic!("the run failed: {e}"));
    stats.expect("one process: the leader")
}

/// A store with usable, rejected and errored episodes.
fn store(dir: &Path) -> PathBuf {
    let store = synth_store(&dir.join("store"), 24, 11, 30);
    let rows = validation_rows(&run_out(&store, &dir.join("probe")).join("validation.parquet"));
    let outcomes: BTreeSet<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
    assert!(outcomes.contains("accepted") && outcomes.len() > 1, "synth gave only {outcomes:?}");
    store
}

fn run_out(store: &Path, out: &Path) -> PathBuf {
    run(store, out, registry());
    out.to_path_buf()
}

/// A stage as registered, but with another version or configuration: what
/// editing its file would do.
struct Changed {
    inner: Arc<dyn ErasedStage>,
    version: u32,
    config: serde_json::Value,
    fingerprint: Fingerprint,
}

impl Changed {
    /// `inner` with its version moved by `bump` and its configuration
    /// replaced by `config`: hashed as [`epiflow_operators::Operator`]
    /// hashes name, version and configuration. Neither: `inner` as it is.
    fn new(inner: &Arc<dyn ErasedStage>, bump: u32, config: Option<serde_json::Value>) -> Changed {
        let version = inner.version() + bump;
        let fingerprint = match (bump, &config) {
            (0, None) => inner.own_fingerprint(),
            (_, config) => {
                let config = serde_json::to_vec(config.as_ref().unwrap_or(&inner.config())).unwrap();
                Fingerprint::of_parts(&[inner.name().as_bytes(), &version.to_le_bytes(), &config])
            }
        };
        let config = config.unwrap_or_else(|| inner.config());
        Changed { inner: Arc::clone(inner), version, config, fingerprint }
    }
}

impl ErasedStage for Changed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn config(&self) -> serde_json::Value {
        self.config.clone()
    }
    fn own_fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
    fn inputs(&self) -> &'static [&'static str] {
        self.inner.inputs()
    }
    fn applies(&self) -> Applies {
        self.inner.applies()
    }
    fn caching(&self) -> Caching {
        self.inner.caching()
    }
    fn publishes(&self) -> Option<&'static str> {
        self.inner.publishes()
    }
    fn key(&self, entry: &IndexEntry) -> String {
        self.inner.key(entry)
    }
    fn compute(&self, aligned: &AlignedEpisode, inputs: &Inputs) -> Held {
        self.inner.compute(aligned, inputs)
    }
    fn on_failure(&self, entry: &IndexEntry, failure: &Failure) -> Option<Held> {
        self.inner.on_failure(entry, failure)
    }
    fn decode(&self, line: &str) -> Result<Held, String> {
        self.inner.decode(line)
    }
    fn write_table(&self, path: &Path, rows: &[(&IndexKey, &Held)]) -> io::Result<()> {
        self.inner.write_table(path, rows)
    }
    fn round_trips(&self, record: &Held, float: &mut dyn FnMut() -> f64) -> Result<(), String> {
        self.inner.round_trips(record, float)
    }
    fn as_any(&self) -> &dyn Any {
        self.inner.as_any()
    }
}

/// How a test edits a registered stage.
type Change = fn(&Arc<dyn ErasedStage>) -> Changed;

/// `stages`, registered as they are, with stage `name` replaced by
/// `change(stage)`.
fn replaced(stages: &Stages, name: &str, change: impl Fn(&Arc<dyn ErasedStage>) -> Changed) -> Registry {
    stages.iter().fold(Registry::default(), |r, s| match s.name() == name {
        true => r.with_erased(Arc::new(change(s))),
        false => r.with_erased(Arc::clone(s)),
    })
}

/// The stages a change of `name` must recompute: itself, what reads it,
/// and — for a stage kept in the shards — every stage kept there (the
/// shards are published as one).
fn moved_by(stages: &Stages, name: &str) -> BTreeSet<&'static str> {
    let mut moved: BTreeSet<&str> = BTreeSet::new();
    for stage in stages.iter() {
        let shards = stages.iter().any(|s| s.name() == name && s.caching() == Caching::FeatureShards);
        let reads_moved = stage.inputs().iter().any(|i| moved.contains(i));
        if stage.name() == name || reads_moved || (shards && stage.caching() == Caching::FeatureShards) {
            moved.insert(stage.name());
        }
    }
    moved
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&entry.path(), &target);
            }
            false => {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
}

#[test]
fn every_stage_is_computed_once_then_cached_and_recomputed_only_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    assert!(registry().names().any(|s| s == "nonzero_share"), "the worked example registers itself");
    assert_compliance(&store, dir.path(), registry());
}

/// The compliance of every stage of `registry` on `store` (outputs under
/// `dir`): each one computed once for exactly the episodes it applies to,
/// cached the next time, and recomputed — with what reads it — after a
/// change of its version or configuration, and only then.
fn assert_compliance(store: &Path, dir: &Path, registry: Registry) {
    let stages = configured(&registry);
    let base = dir.join("base");
    let first = run(store, &base, registry.clone());
    let n = Applicable::of(&base);
    let second = run(store, &base, registry.clone());
    for stage in stages.iter() {
        let expected = n.of_stage(&**stage);
        assert!(expected > 0, "{} applies to some episode", stage.name());
        assert_eq!(counts(&first, stage.name()), (expected, 0, 0), "{} computed once", stage.name());
        assert_eq!(counts(&second, stage.name()), (0, expected, 0), "{} cached the second time", stage.name());
    }

    let changes: [(&str, Change); 3] = [
        ("same", |s| Changed::new(s, 0, None)),
        ("version", |s| Changed::new(s, 1, None)),
        ("config", |s| Changed::new(s, 0, Some(serde_json::json!({ "changed": s.config() })))),
    ];
    for stage in stages.iter() {
        let moved = moved_by(&stages, stage.name());
        for (change, make) in &changes {
            let out = dir.join(format!("{}-{change}", stage.name()));
            std::fs::create_dir_all(&out).unwrap();
            copy_dir(&base, &out);
            let stats = run(store, &out, replaced(&stages, stage.name(), make));
            for other in stages.iter() {
                let expected = n.of_stage(&**other);
                let recomputes = *change != "same" && moved.contains(other.name());
                let want = if recomputes { (expected, 0, 0) } else { (0, expected, 0) };
                let what = format!("{} after a {change} change of {}", other.name(), stage.name());
                assert_eq!(counts(&stats, other.name()), want, "{what}");
            }
            assert_eq!(counts(&stats, "decode").0, 0, "a stage's change never decodes an archive again");
        }
    }
}

/// A stage that reads classify's record without declaring it: its cached
/// records would outlive a change of classify's configuration.
#[derive(Clone, Default)]
struct ReadsUndeclared;

impl Operator for ReadsUndeclared {
    const NAME: &'static str = "reads_undeclared";
    const VERSION: u32 = 1;
    type Config = ();
    type Input = AlignedEpisode;
    type Output = bool;
    fn config(&self) -> &() {
        &()
    }
    fn apply(&self, _: &AlignedEpisode) -> bool {
        false
    }
}

impl Stage for ReadsUndeclared {
    fn configure(_: &Sections) -> Result<Self, String> {
        Ok(ReadsUndeclared)
    }

    fn compute(&self, _: &AlignedEpisode, inputs: &Inputs) -> bool {
        inputs.get::<Classify>().is_some_and(|q| q.fake)
    }
}

/// The mutation check: the compliance above fails for a stage that reads a
/// record its inputs do not declare, and says which.
#[test]
fn a_stage_reading_an_undeclared_record_fails_compliance() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mutant = Registry::standard().with::<ReadsUndeclared>();
    let check = std::panic::AssertUnwindSafe(|| assert_compliance(&store, dir.path(), mutant));
    let failed = std::panic::catch_unwind(check)
        .expect_err("the compliance check passed a stage that reads an undeclared record");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("stage reads_undeclared read the classify record, which its INPUTS do not declare"),
        "{message}"
    );
    assert!(!dir.path().join("base/run.json").exists(), "nothing is published by a run that read undeclared");
}

/// The `records.jsonl` of every stage cached as a record, from a run's
/// fingerprints.
fn record_logs<'r>(stages: &'r Stages, out: &Path) -> Vec<(&'r Arc<dyn ErasedStage>, PathBuf)> {
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    let logs = stages.iter().filter(|s| s.caching() == Caching::Record).map(|s| {
        let fingerprint = run["operators"][s.name()]["fingerprint"].as_str().unwrap();
        (s, out.join("cache").join(s.name()).join(fingerprint).join("records.jsonl"))
    });
    logs.collect()
}

#[test]
fn every_cached_record_reads_back_equal_with_nan_and_infinities_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let registry = registry();
    let stages = configured(&registry);
    let out = run_out(&store, &dir.path().join("out"));
    let logs = record_logs(&stages, &out);
    assert!(logs.len() >= 3, "validate, classify and the example cache records");
    let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN_POSITIVE / 2.0, f64::MAX, 0.1 + 0.2];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        f64::from_bits(state)
    };
    for (stage, log) in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.is_empty(), "{} cached records in {}", stage.name(), log.display());
        for line in text.lines() {
            let (_, json) = line.split_once('\t').unwrap();
            let record = stage.decode(json).unwrap_or_else(|e| panic!("{}: {e}: {json}", stage.name()));
            stage.round_trips(&record, &mut || 1.5).unwrap();
            for special in specials {
                stage.round_trips(&record, &mut || special).unwrap();
            }
            stage.round_trips(&record, &mut random).unwrap();
        }
    }
}

#[test]
fn an_unreadable_cached_record_is_a_failure_in_run_json_and_is_computed_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let registry = registry();
    let stages = configured(&registry);
    let out = run_out(&store, &dir.path().join("out"));
    let tables: Vec<(String, Vec<u8>)> = stages
        .iter()
        .filter_map(|s| s.publishes().filter(|_| s.caching() == Caching::Record))
        .map(|t| (t.to_string(), std::fs::read(out.join(t)).unwrap()))
        .collect();
    for (stage, log) in record_logs(&stages, &out) {
        let text = std::fs::read_to_string(&log).unwrap();
        let (key, _) = text.lines().next().unwrap().split_once('\t').unwrap();
        let damaged = text.replacen(text.lines().next().unwrap(), &format!("{key}\t{{\"not\": \"a record\"}}"), 1);
        std::fs::write(&log, damaged).unwrap();
        assert!(stage.decode("{\"not\": \"a record\"}").is_err(), "{} refuses the damaged line", stage.name());
    }
    // The outputs stand, so the run memo would not start the dataflow.
    std::fs::remove_file(out.join("cache/last-run.json")).unwrap();
    let n = Applicable::of(&out);
    let damaged = run(&store, &out, registry.clone());
    let healed = run(&store, &out, registry.clone());
    for stage in stages.iter() {
        let expected = n.of_stage(&**stage);
        let want = match stage.caching() {
            Caching::Record => (0, expected - 1, 1),
            Caching::FeatureShards => (0, expected, 0),
        };
        assert_eq!(counts(&damaged, stage.name()), want, "{} with one damaged record", stage.name());
        assert_eq!(counts(&healed, stage.name()), (0, expected, 0), "{} once recomputed", stage.name());
    }
    for (table, bytes) in tables {
        assert!(std::fs::read(out.join(&table)).unwrap() == bytes, "{table} is the same after the recomputation");
    }
}

#[test]
fn a_stage_output_leaves_with_its_episode() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let registry = registry();
    let stages = configured(&registry);
    let out = run_out(&store, &dir.path().join("out"));
    let usable: Vec<(String, String)> = validation_rows(&out.join("validation.parquet"))
        .into_iter()
        .filter(|r| r.outcome == "accepted")
        .map(|r| (r.host_id, r.episode_id))
        .collect();
    let gone = usable[0].clone();
    let lines: Vec<String> = index_lines(&store).into_iter().filter(|l| line_key(l) != gone).collect();
    std::fs::write(store.join("index.jsonl"), lines.join("\n") + "\n").unwrap();
    let stats = run(&store, &out, registry.clone());
    assert_eq!(stats.episodes as usize, lines.len());
    for table in stages.iter().filter(|s| s.caching() == Caching::Record).filter_map(|s| s.publishes()) {
        let batch = common::read_parquet(&out.join(table));
        let keys = common::strings(&batch, "host_id").into_iter().zip(common::strings(&batch, "episode_id"));
        let keys: Vec<(String, String)> = keys.collect();
        assert!(!keys.is_empty(), "{table} has rows");
        assert!(!keys.contains(&gone), "{table} no longer lists {gone:?}");
    }
    let manifest = std::fs::read_to_string(out.join("features/manifest.json")).unwrap();
    let key = format!("\"{}/{}\"", gone.0, gone.1);
    assert!(manifest.contains("\"episodes\"") && !manifest.contains(&key), "the shards no longer hold {key}");
}

/// Index changes handed to a followed run, one epoch each, then the end.
struct Scripted(std::collections::VecDeque<Vec<(IndexEntry, isize)>>);

impl IndexFeed for Scripted {
    fn poll(&mut self) -> Poll {
        self.0.pop_front().map_or(Poll::Closed, Poll::Changes)
    }
}

/// The episode keys each shard's files list after an epoch.
fn shard_keys(output: &CorpusState) -> BTreeSet<String> {
    let files = output.shard_updates.values().flat_map(|u| u.files.iter());
    files.flat_map(|f| f.episodes.iter().map(|e| e.key.clone())).collect()
}

#[test]
fn a_stage_output_is_retracted_when_its_episode_leaves_a_followed_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let registry = registry();
    let stages = configured(&registry);
    let entries = read_index(&store.join("index.jsonl")).unwrap().entries;
    let job = CorpusPlan {
        episodes_root: store.join("episodes"),
        decode: Default::default(),
        stages: stages.clone(),
        features: Some(FeaturePlan {
            dir: dir.path().join("features"),
            shards: 4,
            metadata: Vec::new(),
            published: Default::default(),
        }),
        splits: None,
        store: Arc::new(NoStore),
    };
    let outputs: Arc<Mutex<Vec<CorpusState>>> = Arc::default();
    let kept = Arc::clone(&outputs);
    let on_epoch: EpochSink = Arc::new(move |o: &CorpusState| {
        kept.lock().unwrap().push(o.clone());
        Ok(())
    });
    // Epoch 0 inserts the index; epoch 1 retracts a usable episode.
    let probe = run_out(&store, &dir.path().join("probe"));
    let usable = validation_rows(&probe.join("validation.parquet")).into_iter().find(|r| r.outcome == "accepted");
    let usable = usable.unwrap();
    let gone = entries.iter().find(|e| e.key.episode_id == usable.episode_id).unwrap().clone();
    let feed = Scripted([entries.iter().map(|e| (e.clone(), 1)).collect(), vec![(gone.clone(), -1)]].into());
    follow(job, &Cluster::local(2), Arc::new(|_| {}), Box::new(feed), on_epoch).unwrap();

    let outputs = outputs.lock().unwrap();
    let [before, after] = &outputs[..] else { panic!("two epochs, got {}", outputs.len()) };
    let key: IndexKey = (gone.key.host_id.clone(), gone.key.episode_id.clone());
    for stage in stages.iter().filter(|s| s.caching() == Caching::Record) {
        let listed = |o: &CorpusState| o.table(stage.name()).iter().any(|(k, _)| **k == key);
        assert!(listed(before), "{} has a record of {key:?} before", stage.name());
        assert!(!listed(after), "{}'s record of {key:?} is retracted", stage.name());
        assert_eq!(after.table(stage.name()).len() + 1, before.table(stage.name()).len(), "{}", stage.name());
    }
    let shard_key = gone.key.to_string();
    assert!(shard_keys(before).contains(&shard_key), "the shards hold {shard_key} before");
    assert!(!shard_keys(after).contains(&shard_key), "the shards drop {shard_key}");
    assert_eq!((after.retracted, after.inserted), (1, 0));
}

#[test]
fn every_stage_has_its_row_in_run_json_even_when_it_computed_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::StoreBuilder::new(&dir.path().join("store"))
        .add("h1", "broken-1", b"not a zstd archive", None)
        .add("h1", "broken-2", b"", None)
        .finish();
    let out = dir.path().join("out");
    common::epiflow_ok(&["run", "--store", store.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"], 0);
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    let rows: Vec<&str> = run["operators"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut declared = common::stages(&store);
    declared.sort();
    assert_eq!(rows, declared, "one row per declared stage, and only they");
    assert_eq!(run["operators"]["decode"]["failed"], 2);
    for stage in declared.iter().filter(|s| *s != "decode") {
        let row = &run["operators"][stage];
        assert_eq!((row["computed"].as_u64(), row["cached"].as_u64()), (Some(0), Some(0)), "{stage}: {row}");
        assert!(row["fingerprint"].is_string(), "{stage} names its fingerprint");
    }
}

/// Every share of `OUT/nonzero_share.parquet` that is a number.
fn shares(out: &Path) -> Vec<f64> {
    let batch = common::read_parquet(&out.join("nonzero_share.parquet"));
    let lists = batch.column_by_name("share").expect("a share column");
    let lists = lists.as_any().downcast_ref::<arrow_array::ListArray>().expect("share is a list");
    let values = lists.values().as_any().downcast_ref::<arrow_array::Float64Array>().expect("of float64").clone();
    values.iter().flatten().filter(|v| !v.is_nan()).collect()
}

/// The guide's out-of-tree example reads its own `[nonzero_share]` from a
/// configuration file, through the registry as every stage does: a
/// threshold above every value makes every share 0 and moves the stage's
/// fingerprint; a typo in the section and a section no stage claims are
/// refused, the latter naming the known sections, the example's among them.
#[test]
fn the_out_of_tree_example_reads_its_own_section_from_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 6, 5, 30);
    let defaults = nonzero_share::run(&store, &dir.path().join("defaults"), None).unwrap();
    assert!(shares(&dir.path().join("defaults")).iter().any(|s| *s > 0.0), "some channel moves by default");

    let config = dir.path().join("epiflow.toml");
    std::fs::write(&config, "[nonzero_share]\nzero = 1e300\n").unwrap();
    let out = dir.path().join("configured");
    let configured = nonzero_share::run(&store, &out, Some(&config)).unwrap();
    let shares = shares(&out);
    assert!(!shares.is_empty() && shares.iter().all(|s| *s == 0.0), "nothing is above 1e300: {shares:?}");
    let fingerprint = |stats: &RunStats| stats.operators["nonzero_share"].fingerprint.clone();
    assert_ne!(fingerprint(&configured), fingerprint(&defaults), "the section is part of the fingerprint");
    assert_eq!(configured.operators["window"].fingerprint, defaults.operators["window"].fingerprint);

    std::fs::write(&config, "[nonzero_share]\nzeros = 1\n").unwrap();
    let typo = nonzero_share::run(&store, &out, Some(&config)).unwrap_err().to_string();
    assert!(typo.starts_with("configuration [nonzero_share]: unknown field `zeros`"), "{typo}");
    std::fs::write(&config, "[nonzero_shares]\nzero = 1\n").unwrap();
    let unknown = nonzero_share::run(&store, &out, Some(&config)).unwrap_err().to_string();
    assert!(unknown.contains("unknown section [nonzero_shares]"), "{unknown}");
    assert!(unknown.contains("features, nonzero_share, split"), "the known sections are listed: {unknown}");
}
