//! The `gpu` build (`cargo test -p epiflow-models --features gpu --test gpu`):
//! a network trains through the same streamed loop on the adapter wgpu finds
//! and learns a clear signature. A machine without an adapter (CI's) says
//! SKIPPED and passes; the build itself is what CI checks there.
#![cfg(feature = "gpu")]

use burn::tensor::{Tensor, TensorData};
use epiflow_models::arch::Arch;
use epiflow_models::device;
use epiflow_models::net::Net;
use epiflow_models::scoring::{argmax, Confusion};
use epiflow_models::stream::class_counts;
use epiflow_models::train::{predict, train, Sides, TrainConfig};
use epiflow_pipelines::feature_reader::WindowRows;
use epiflow_pipelines::normalise::Normalisation;
use std::sync::atomic::AtomicBool;

/// `n` windows of 4 values whose class is set by value 0's band.
fn windows(n: usize) -> WindowRows {
    let x = (0..n).flat_map(|i| [(i % 5) as f32 * 2.0 + (i % 7) as f32 / 7.0, (i % 3) as f32, 1.0, (i % 11) as f32]);
    let labels: Vec<u8> = (0..n).map(|i| (i % 5) as u8).collect();
    WindowRows { width: 4, x: x.collect(), mask: None, episode: vec![0; n], labels }
}

#[test]
fn a_network_trains_and_predicts_on_the_gpu() {
    let probe = std::panic::catch_unwind(|| {
        let device = device::inference();
        Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device).into_data()
    });
    if probe.is_err() {
        eprintln!("SKIPPED: wgpu finds no GPU adapter on this machine");
        return;
    }
    let (train_windows, val, mut test) = (windows(1000), windows(200), windows(300));
    let scale = Normalisation::fit(&train_windows, 1);
    scale.apply(&mut test);
    let device = device::training();
    let config = TrainConfig { max_epochs: 15, batch: 64, ..TrainConfig::default() };
    let net = Net::new(Arch::Mlp, 4, 1, config.seed, &device).unwrap();
    let sides =
        Sides { train: &train_windows, val: &val, scale: &scale, class_counts: class_counts(&train_windows).unwrap() };
    let (net, report) = train(net, &sides, &config, &device, &AtomicBool::new(false), |_| {}).unwrap();
    let f1 = Confusion::of(&test.labels, &argmax(&predict(&net, &test, &device))).macro_f1();
    eprintln!("gpu: test macro F1 {f1:.3}, best validation {:.3}", report.best_val_macro_f1);
    assert!(f1 > 0.9, "macro F1 {f1} on the GPU");
}
