//! Reading the feature shards back for training (`feature_reader`), on the
//! outputs of a real `epiflow run`: the windows of each side of a split, for
//! both channel sets and both feature kinds, equal the shards' rows with the
//! set's channels picked out; and a training epoch streamed from them sees
//! every training window once, in an order its seed alone sets.

mod common;
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use common::*;
use epiflow_models::stream::{stream, Order, Pass, ShardSide};
use epiflow_models::train::{EpochOrders, TrainConfig};
use epiflow_operators::channels::{ChannelSet, CHANNELS};
use epiflow_operators::rng::SplitMix64;
use epiflow_operators::split::Side;
use epiflow_operators::window::STATS;
use epiflow_pipelines::feature_reader::{read_windows, FeatureShards, WindowRows};
use epiflow_pipelines::sinks::features::FeatureKind;
use epiflow_pipelines::sinks::manifest::Manifest;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// (host, episode) → side, from a split file.
fn sides(out: &Path, recipe: &str) -> HashMap<(String, String), Side> {
    let b = read_parquet(&out.join(format!("splits/{recipe}.parquet")));
    let s = |name: &str| -> Vec<String> {
        b.column_by_name(name).unwrap().as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect()
    };
    let side = |name: &str| match name {
        "train" => Side::Train,
        "val" => Side::Val,
        _ => Side::Test,
    };
    s("host_id").into_iter().zip(s("episode_id")).zip(s("side")).map(|(k, v)| (k, side(&v))).collect()
}

/// Every row of the shards of `kind`, by (host, episode, window start bits):
/// (label, all 46 channels' features, the mask for tensors).
type FullRows = BTreeMap<(String, String, u64), (i32, Vec<f32>, Vec<bool>)>;

/// One window as compared: label, feature bits, mask.
type Compared = (u8, Vec<u32>, Vec<bool>);

fn full_rows(features: &Path, manifest: &Manifest, kind: FeatureKind) -> FullRows {
    let mut rows = FullRows::new();
    for file in &manifest.shards[kind.dir()] {
        let b = read_parquet(&features.join(file));
        let s = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>().clone();
        let (hosts, episodes) = (s("host_id"), s("episode_id"));
        let starts = b.column_by_name("window_start_s").unwrap().as_primitive::<arrow_array::types::Float64Type>();
        let labels = b.column_by_name("label").unwrap().as_primitive::<arrow_array::types::Int32Type>();
        for r in 0..b.num_rows() {
            let (x, mask) = match kind {
                FeatureKind::Summary => {
                    let x = CHANNELS
                        .iter()
                        .flat_map(|c| STATS.map(|s| format!("{}:{s}", c.name)))
                        .map(|name| b.column_by_name(&name).unwrap().as_primitive::<Float32Type>().value(r))
                        .collect();
                    (x, Vec::new())
                }
                FeatureKind::Tensors => {
                    let x = b.column_by_name("x").unwrap().as_fixed_size_list().value(r);
                    let m = b.column_by_name("mask").unwrap().as_fixed_size_list().value(r);
                    (
                        x.as_primitive::<Float32Type>().values().to_vec(),
                        m.as_boolean().iter().map(|v| v.unwrap()).collect(),
                    )
                }
            };
            let key = (hosts.value(r).to_string(), episodes.value(r).to_string(), starts.value(r).to_bits());
            rows.insert(key, (labels.value(r), x, mask));
        }
    }
    rows
}

/// A 40-episode synth store run through `epiflow run`: its OUT folder.
fn run_outputs(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    let out = dir.join("out");
    let (s, o) = (store.to_str().unwrap(), out.to_str().unwrap());
    epiflow_ok(&["synth", "--out", s, "--episodes", "40", "--seed", "5", "--duration-s", "40", "-q"], 0);
    epiflow_ok(&["run", "--store", s, "--out", o, "-q"], 0);
    out
}

/// Each window of `rows` as its label and value bits.
fn windows_of(rows: &WindowRows) -> Vec<(u8, Vec<u32>)> {
    (0..rows.rows()).map(|i| (rows.labels[i], rows.row(i).iter().map(|v| v.to_bits()).collect())).collect()
}

/// The training windows of the host split's oracle tensors, streamed from
/// the shards of a real run, and the same side read whole in storage order.
struct TrainingSide {
    shards: FeatureShards,
    sides: HashMap<(String, String), Side>,
    in_memory: Vec<(u8, Vec<u32>)>,
}

impl TrainingSide {
    fn of(out: &Path) -> TrainingSide {
        let features = out.join("features");
        let manifest = Manifest::read(&features).unwrap();
        let sides = sides(out, "host");
        let (kind, set) = (FeatureKind::Tensors, ChannelSet::Oracle);
        let read = read_windows(&features, &manifest, kind, set, &sides).unwrap();
        let in_memory = windows_of(&read.sides[&Side::Train]);
        let shards = FeatureShards::open(&features, &manifest, kind, set);
        assert!(shards.len() > 1, "the order of several shards is drawn");
        TrainingSide { shards, sides, in_memory }
    }

    /// The windows one epoch hands over, in order.
    fn epoch(&self, batch: usize, order: Order) -> Vec<(u8, Vec<u32>)> {
        let train = ShardSide::new(&self.shards, &self.sides, Side::Train);
        let mut seen = Vec::new();
        stream(&train, Pass { batch, order }, None, |b| seen.extend(windows_of(&b))).unwrap();
        seen
    }
}

#[test]
fn an_epoch_streams_every_training_window_once_in_an_order_its_seed_sets() {
    let dir = tempfile::tempdir().unwrap();
    let side = TrainingSide::of(&run_outputs(dir.path()));
    let mut all = side.in_memory.clone();
    all.sort();
    // A buffer smaller than the side, as at corpus scale.
    let config = TrainConfig { shuffle_windows: all.len() / 4, batch: 32, ..TrainConfig::default() };
    let three = |orders: &mut EpochOrders| -> Vec<Order<'static>> {
        (0..3)
            .map(|_| match orders.next_epoch() {
                Order::Buffered(shuffle) => Order::Buffered(shuffle),
                other => panic!("a side four times the buffer streams through it, not {other:?}"),
            })
            .collect()
    };
    let shuffles = three(&mut EpochOrders::new(&config, all.len()));
    let orders: Vec<_> = shuffles.iter().map(|&s| side.epoch(config.batch, s)).collect();
    for (e, order) in orders.iter().enumerate() {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, all, "epoch {e} sees every training window exactly once");
    }
    assert!(orders[0] != orders[1] && orders[1] != orders[2], "each epoch has its own order");
    assert_eq!(three(&mut EpochOrders::new(&config, all.len())), shuffles, "drawn from the seed alone");
    // Two passes at once (two models on two workers) each get the order
    // they get alone.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| side.epoch(config.batch, shuffles[0]));
        let b = scope.spawn(|| side.epoch(config.batch, shuffles[1]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!((a, b), (orders[0].clone(), orders[1].clone()));
}

#[test]
fn a_side_that_fits_the_buffer_is_shuffled_whole_as_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let side = TrainingSide::of(&run_outputs(dir.path()));
    let windows = side.in_memory.len();
    let config = TrainConfig { shuffle_windows: windows, batch: 32, ..TrainConfig::default() };
    let mut orders = EpochOrders::new(&config, windows);
    // Training in memory: one permutation of the side in storage order,
    // shuffled again by the seed's generator at every epoch.
    let (mut rng, mut permutation) = (SplitMix64::new(config.seed), (0..windows).collect::<Vec<_>>());
    let mut epochs = Vec::new();
    for epoch in 0..3 {
        rng.shuffle(&mut permutation);
        let expected: Vec<_> = permutation.iter().map(|&i| side.in_memory[i].clone()).collect();
        let streamed = side.epoch(config.batch, orders.next_epoch());
        assert!(streamed == expected, "epoch {epoch}: the in-memory order");
        epochs.push(streamed);
    }
    assert!(epochs[0] != epochs[1] && epochs[1] != epochs[2], "each epoch has its own order");
    // One window more than the buffer, and the side streams through it.
    let smaller = TrainConfig { shuffle_windows: windows - 1, ..config };
    assert!(matches!(EpochOrders::new(&smaller, windows).next_epoch(), Order::Buffered(_)));
}

#[test]
fn each_side_s_windows_are_the_shard_rows_with_the_set_s_channels() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_outputs(dir.path());
    let features = out.join("features");
    let manifest = Manifest::read(&features).unwrap();
    let timesteps = manifest.window["timesteps"].as_u64().unwrap() as usize;
    let sides = sides(&out, "time");
    for kind in [FeatureKind::Summary, FeatureKind::Tensors] {
        let full = full_rows(&features, &manifest, kind);
        for set in [ChannelSet::Realistic, ChannelSet::Oracle] {
            let channels = set.indices();
            let per_channel = if kind == FeatureKind::Summary { STATS.len() } else { timesteps };
            let got = read_windows(&features, &manifest, kind, set, &sides).unwrap();
            // What the shards hold for the placed episodes, channels picked out,
            // in the reader's order (shards in manifest order, rows in file order)
            // compared as multisets per side.
            let mut expected: BTreeMap<Side, Vec<Compared>> = BTreeMap::new();
            for ((host, episode, _), (label, x, mask)) in &full {
                let Some(side) = sides.get(&(host.clone(), episode.clone())) else { continue };
                let pick = |c: usize| c * per_channel..(c + 1) * per_channel;
                let xs = channels.iter().flat_map(|&c| x[pick(c)].iter().map(|v| v.to_bits())).collect();
                let ms = if mask.is_empty() {
                    Vec::new()
                } else {
                    channels.iter().flat_map(|&c| mask[pick(c)].to_vec()).collect()
                };
                expected.entry(*side).or_default().push((*label as u8, xs, ms));
            }
            assert!(expected.len() == 3, "{kind:?}: windows on all three sides");
            for (side, mut rows) in expected {
                let w = &got.sides[&side];
                assert_eq!(w.width, channels.len() * per_channel, "{kind:?} {set:?}");
                let mut read: Vec<Compared> = (0..w.rows())
                    .map(|i| {
                        let mask =
                            w.mask.as_ref().map(|m| m[i * w.width..(i + 1) * w.width].to_vec()).unwrap_or_default();
                        (w.labels[i], w.row(i).iter().map(|v| v.to_bits()).collect(), mask)
                    })
                    .collect();
                rows.sort();
                read.sort();
                assert_eq!(read, rows, "{kind:?} {set:?} {side:?}");
                for &e in &w.episode {
                    let key = &got.episodes[e as usize];
                    assert_eq!(sides[key], side, "{key:?} read into the wrong side");
                }
            }
        }
    }
}
