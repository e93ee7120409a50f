//! `[train] memory_mb`: what the training sink's buffers may hold, and the
//! gate that lets models train side by side only while their buffers fit.
//!
//! A model holds one of two things: a network, the windows its streamed
//! passes hold (the shuffle buffer and the batches read ahead, see
//! [`held_windows`]); the trees, their matrices (see
//! [`Gbt::bytes_per_window`]). Beside them, each group of models keeps the
//! decoded shards that fit its cache, which its models' epochs replay.
//! Nothing grows with the corpus past its allowance: a quarter of the
//! budget per model and for the cache, so that two models train side by
//! side in three quarters of it and the rest is room for what the budget
//! does not count (parquet's decoding scratch, a step's activations). A network
//! whose configured shuffle buffer does not fit gets a smaller one; trees
//! whose sides do not fit take a seeded sample of them. Both depend on the
//! budget and the data only, never on the worker count, so the same inputs
//! still give the same weights.

use crate::gbt::{Draw, Gbt, Sample};
use crate::stream::{held_windows, Order, Pass, Shuffle};
use std::sync::{Condvar, Mutex};

/// Share of the budget one model may hold.
const MODEL_SHARE: usize = 4;

/// Share of the trees' allowance that goes to the training side (the rest
/// holds the validation side, kept as values to score each round).
const GBT_TRAIN_SHARE: f64 = 0.8;

/// A memory budget in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    bytes: usize,
}

impl Memory {
    /// A budget of `mb` mebibytes.
    pub fn of_mb(mb: usize) -> Memory {
        Memory { bytes: mb.saturating_mul(1 << 20) }
    }

    /// The budget in bytes.
    pub fn bytes(self) -> usize {
        self.bytes
    }

    /// The most one model may hold.
    pub fn per_model(self) -> usize {
        self.bytes / MODEL_SHARE
    }

    /// The most a group's cache of decoded shards may hold (the same share:
    /// the cache, and two models beside it, take three quarters).
    pub fn group_cache(self) -> usize {
        self.bytes / MODEL_SHARE
    }

    /// The shuffle buffer a network gets: the configured one, or the
    /// largest that fits its allowance with `batch`-window batches of
    /// `window_bytes` each (at least one window).
    pub fn shuffle_windows(self, configured: usize, batch: usize, window_bytes: usize) -> usize {
        let fits = self.per_model() / window_bytes.max(1);
        let read_ahead = held_windows(Pass { batch, order: Order::Storage });
        configured.min(fits.saturating_sub(read_ahead)).max(1)
    }

    /// Bytes a network holds while training with a `buffer`-window shuffle
    /// buffer.
    pub fn network_need(buffer: usize, batch: usize, window_bytes: usize) -> usize {
        held_windows(Pass { batch, order: Order::Buffered(Shuffle { seed: 0, buffer }) }) * window_bytes
    }

    /// Which windows the trees take from sides of `train` and `val` windows
    /// of `width` values: all that fit their allowance.
    pub fn gbt_sample(self, width: usize, train: usize, val: usize) -> Sample {
        let allowance = self.per_model() as f64;
        let train_most = (allowance * GBT_TRAIN_SHARE) as usize / Gbt::bytes_per_window(width);
        let val_most = (allowance * (1.0 - GBT_TRAIN_SHARE)) as usize / Gbt::bytes_per_validation_window(width);
        Sample { train: Draw::of(train, train_most.max(1)), val: Draw::of(val, val_most.max(1)) }
    }

    /// Bytes the trees hold with `sample` of sides of `train` and `val`
    /// windows of `width` values.
    pub fn gbt_need(sample: Sample, width: usize, train: usize, val: usize) -> usize {
        train.min(sample.train.most) * Gbt::bytes_per_window(width)
            + val.min(sample.val.most) * Gbt::bytes_per_validation_window(width)
    }
}

/// Lets a model start only once what it holds fits beside the models
/// already training.
pub struct Gate {
    total: usize,
    free: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    /// A gate over `bytes`.
    pub fn new(bytes: usize) -> Gate {
        Gate { total: bytes, free: Mutex::new(bytes), freed: Condvar::new() }
    }

    /// Waits until `need` bytes are free (a need beyond the whole budget
    /// waits for all of it), and holds them until the returned guard is
    /// dropped.
    pub fn enter(&self, need: usize) -> Held<'_> {
        let need = need.min(self.total);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free < need {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= need;
        Held { gate: self, bytes: need }
    }
}

/// Memory held by a training model, given back when dropped.
pub struct Held<'a> {
    gate: &'a Gate,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        *self.gate.free.lock().unwrap_or_else(|p| p.into_inner()) += self.bytes;
        self.gate.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_budget_shrinks_the_shuffle_buffer_and_samples_the_trees() {
        let (small, laptop) = (Memory::of_mb(64), Memory::of_mb(512));
        // Oracle tensors of 20 steps: 46 × 20 values, 5 bytes each and 5 more.
        let window = 46 * 20 * 5 + 5;
        assert_eq!(laptop.shuffle_windows(16_384, 128, window), 16_384);
        let shrunk = small.shuffle_windows(16_384, 128, window);
        assert!(shrunk < 16_384 && Memory::network_need(shrunk, 128, window) <= small.per_model());
        let all = laptop.gbt_sample(230, 10_000, 2_000);
        assert_eq!((all.train.keep, all.val.keep), (1.0, 1.0));
        let drawn = small.gbt_sample(230, 100_000, 20_000);
        assert!(drawn.train.keep < 1.0 && Memory::gbt_need(drawn, 230, 100_000, 20_000) <= small.per_model());
    }

    #[test]
    fn the_gate_lets_models_in_while_they_fit() {
        let gate = Gate::new(1 << 20);
        let a = gate.enter(600 << 10);
        let entered = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _b = gate.enter(600 << 10);
                entered.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!entered.load(std::sync::atomic::Ordering::SeqCst), "the second waits while the first holds");
            drop(a);
        });
        assert!(entered.into_inner());
        let _whole = gate.enter(usize::MAX);
    }
}
