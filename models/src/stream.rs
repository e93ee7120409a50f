//! Streamed passes over one side of a split's windows, the way training
//! reads them at corpus scale: a reader thread takes the windows a chunk (a
//! shard's record batch) at a time — shards in a seeded order, then through
//! a bounded shuffle buffer — cuts them into batches, scales them, and hands
//! them over a bounded channel, so reading the next batches overlaps
//! computing on the current one and memory holds the buffer, not the side.
//! A side that fits in the buffer whole is permuted whole instead (the
//! uniform shuffle a buffer only approximates).
//!
//! Written once for every model: the networks' epochs and validation
//! scoring go through [`stream`]; the trees' matrix and the group's fitting
//! pass read the same [`WindowSource`]s chunk by chunk.

use crate::scoring::count_classes;
use crate::CLASSES;
use epiflow_operators::rng::SplitMix64;
use epiflow_operators::split::Side;
use epiflow_pipelines::feature_reader::{window_bytes, EpisodeIds, FeatureShards, WindowRows};
use epiflow_pipelines::normalise::Normalisation;
use std::collections::HashMap;

/// Batches a pass may run ahead of the batch being computed on.
const PREFETCH: usize = 4;

/// The windows of one side, read in chunks.
pub trait WindowSource: Sync {
    /// Values per window.
    fn width(&self) -> usize;

    /// Bytes one window takes in memory (what buffers are sized by).
    fn window_bytes(&self) -> usize;

    /// Hands every chunk of windows to `each`, in storage order, or with
    /// `order` the chunks' shards in an order drawn from that seed.
    fn chunks(&self, order: Option<u64>, each: &mut dyn FnMut(&WindowRows)) -> Result<(), String>;
}

/// One side of a split in the feature shards: the windows of the episodes
/// the split places on it, read from the shards or, for the shards its
/// [`SideCache`] holds, replayed from memory.
pub struct ShardSide<'a> {
    shards: &'a FeatureShards,
    episodes: HashMap<(String, String), Side>,
    cache: Option<&'a SideCache>,
}

/// Decoded chunks of some of a side's shards, kept in memory up to a byte
/// budget, so that the epochs of a group's models replay them instead of
/// decoding those shards again. The chunks are the ones a read hands over,
/// so a pass sees the same windows in the same order either way.
#[derive(Default)]
pub struct SideCache {
    shards: HashMap<usize, Vec<WindowRows>>,
    bytes: usize,
}

impl SideCache {
    /// Bytes the cache holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl<'a> ShardSide<'a> {
    /// The windows of `shards` whose episode `sides` places on `side`.
    pub fn new(shards: &'a FeatureShards, sides: &HashMap<(String, String), Side>, side: Side) -> ShardSide<'a> {
        let episodes = sides.iter().filter(|(_, &s)| s == side).map(|(k, &s)| (k.clone(), s)).collect();
        ShardSide { shards, episodes, cache: None }
    }

    /// The same side, replaying the shards `cache` holds from memory.
    pub fn cached(self, cache: &'a SideCache) -> ShardSide<'a> {
        ShardSide { cache: Some(cache), ..self }
    }

    /// Reads every shard in storage order, handing each chunk to `each`, and
    /// keeps the chunks of whole shards, in storage order, while they fit in
    /// `budget` bytes.
    pub fn read_keeping(&self, budget: usize, each: &mut dyn FnMut(&WindowRows)) -> Result<SideCache, String> {
        let mut cache = SideCache::default();
        let mut ids = EpisodeIds::default();
        let window_bytes = self.window_bytes();
        for shard in 0..self.shards.len() {
            let mut chunks = Vec::new();
            self.shards
                .read(shard, &self.episodes, &mut ids, &mut |_, rows| chunks.push(rows))
                .map_err(|e| e.to_string())?;
            chunks.iter().for_each(&mut *each);
            let bytes: usize = chunks.iter().map(|c| c.rows() * window_bytes).sum();
            if cache.bytes + bytes <= budget {
                cache.bytes += bytes;
                cache.shards.insert(shard, chunks);
            }
        }
        Ok(cache)
    }
}

impl WindowSource for ShardSide<'_> {
    fn width(&self) -> usize {
        self.shards.width()
    }

    fn window_bytes(&self) -> usize {
        self.shards.window_bytes()
    }

    fn chunks(&self, order: Option<u64>, each: &mut dyn FnMut(&WindowRows)) -> Result<(), String> {
        let mut shards: Vec<usize> = (0..self.shards.len()).collect();
        if let Some(seed) = order {
            SplitMix64::new(seed).shuffle(&mut shards);
        }
        let mut ids = EpisodeIds::default();
        for shard in shards {
            match self.cache.and_then(|c| c.shards.get(&shard)) {
                Some(chunks) => chunks.iter().for_each(&mut *each),
                None => self
                    .shards
                    .read(shard, &self.episodes, &mut ids, &mut |_, rows| each(&rows))
                    .map_err(|e| e.to_string())?,
            }
        }
        Ok(())
    }
}

/// Windows already in memory are one chunk (the models' unit tests, and any
/// caller that holds its windows).
impl WindowSource for WindowRows {
    fn width(&self) -> usize {
        self.width
    }

    fn window_bytes(&self) -> usize {
        window_bytes(self.width, self.mask.is_some())
    }

    fn chunks(&self, _order: Option<u64>, each: &mut dyn FnMut(&WindowRows)) -> Result<(), String> {
        each(self);
        Ok(())
    }
}

/// How a pass orders its windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shuffle {
    /// Seed of the pass's order (training derives one per epoch).
    pub seed: u64,
    /// Windows the shuffle buffer holds.
    pub buffer: usize,
}

/// The order a pass hands its windows over in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order<'a> {
    /// As stored: shards in storage order, rows in shard order (scoring).
    Storage,
    /// Shards in a seeded order, then through a bounded shuffle buffer (a
    /// side larger than memory allows).
    Buffered(Shuffle),
    /// The side read whole in storage order, then handed over in this
    /// permutation of it (a side that fits in memory: `permutation[k]` is
    /// the storage position of the `k`-th window handed over).
    Permuted(&'a [usize]),
}

/// One pass over a source: `batch` windows at a time, in an [`Order`].
#[derive(Clone, Copy, Debug)]
pub struct Pass<'a> {
    /// Windows per batch (the last may hold fewer).
    pub batch: usize,
    /// The order the windows come in.
    pub order: Order<'a>,
}

/// Most windows a pass holds at once: the shuffle buffer's (or the whole
/// side, permuted), the batches read ahead, the one being filled and the one
/// being computed on.
pub fn held_windows(pass: Pass) -> usize {
    let ordering = match pass.order {
        Order::Storage => 0,
        Order::Buffered(shuffle) => shuffle.buffer,
        Order::Permuted(permutation) => permutation.len(),
    };
    ordering + (PREFETCH + 2) * pass.batch.max(1)
}

/// Runs one pass over `source`: a reader thread orders and batches the
/// windows (scaled by `scale`, their masks then dropped), at most
/// [`PREFETCH`] batches ahead of `consume`, which takes each batch on the
/// calling thread. Every window is in exactly one batch.
pub fn stream(
    source: &dyn WindowSource,
    pass: Pass,
    scale: Option<&Normalisation>,
    mut consume: impl FnMut(WindowRows),
) -> Result<(), String> {
    let (tx, rx) = crossbeam_channel::bounded::<WindowRows>(PREFETCH);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut batches = Batcher { width: source.width(), batch: pass.batch.max(1), scale, tx, current: None };
            match pass.order {
                Order::Storage => {
                    source.chunks(None, &mut |chunk| (0..chunk.rows()).for_each(|i| batches.push(chunk, i)))?
                }
                Order::Buffered(shuffle) => {
                    // One generator per pass: its first draw orders the shards,
                    // the rest are the buffer's.
                    let mut rng = SplitMix64::new(shuffle.seed);
                    let shard_seed = rng.next_u64();
                    let mut buffer = ShuffleBuffer::new(shuffle.buffer, source.width(), rng);
                    source.chunks(Some(shard_seed), &mut |chunk| buffer.take(chunk, &mut batches))?;
                    buffer.drain(&mut batches);
                }
                Order::Permuted(permutation) => {
                    let mut side = WindowRows { width: source.width(), ..WindowRows::default() };
                    source.chunks(None, &mut |chunk| side.extend(chunk))?;
                    if side.rows() != permutation.len() {
                        return Err(format!(
                            "the side holds {} windows, its permutation {}: the shards changed while training",
                            side.rows(),
                            permutation.len()
                        ));
                    }
                    permutation.iter().for_each(|&i| batches.push(&side, i));
                }
            }
            batches.flush();
            Ok(())
        });
        for batch in rx {
            consume(batch);
        }
        reader.join().unwrap_or_else(|_| Err("the window reader panicked".to_string()))
    })
}

/// How many of a source's windows are of each class.
pub fn class_counts(source: &dyn WindowSource) -> Result<[u64; CLASSES], String> {
    let mut counts = [0u64; CLASSES];
    source.chunks(None, &mut |chunk| count_classes(&mut counts, &chunk.labels))?;
    Ok(counts)
}

/// Cuts windows into batches (scaling them as it copies them in, when
/// asked: a scaled batch has no mask) and sends them on.
struct Batcher<'a> {
    width: usize,
    batch: usize,
    scale: Option<&'a Normalisation>,
    tx: crossbeam_channel::Sender<WindowRows>,
    current: Option<WindowRows>,
}

impl Batcher<'_> {
    /// Adds window `i` of `from` to the batch being filled.
    fn push(&mut self, from: &WindowRows, i: usize) {
        let (width, batch) = (self.width, self.batch);
        let current = self.current.get_or_insert_with(|| WindowRows {
            width,
            x: Vec::with_capacity(batch * width),
            mask: None,
            labels: Vec::with_capacity(batch),
            episode: Vec::with_capacity(batch),
        });
        match self.scale {
            Some(scale) => {
                scale.extend_scaled(from, i, &mut current.x);
                current.labels.push(from.labels[i]);
                current.episode.push(from.episode[i]);
            }
            None => current.push_row(from, i),
        }
        if current.rows() == self.batch {
            self.flush();
        }
    }

    /// Sends the batch being filled, if it holds any window. A consumer that
    /// is gone ends the pass's use of the batch, not the reader: it stops at
    /// its next chunk.
    fn flush(&mut self) {
        let Some(batch) = self.current.take().filter(|b| b.rows() > 0) else { return };
        let _ = self.tx.send(batch);
    }
}

/// A bounded shuffle buffer (as tf.data's): once full, each arriving window
/// takes the place of one drawn at random, which goes to the batches; at the
/// end the rest leave in random order.
struct ShuffleBuffer {
    held: WindowRows,
    capacity: usize,
    rng: SplitMix64,
}

impl ShuffleBuffer {
    fn new(capacity: usize, width: usize, rng: SplitMix64) -> ShuffleBuffer {
        ShuffleBuffer { held: WindowRows { width, ..WindowRows::default() }, capacity: capacity.max(1), rng }
    }

    fn take(&mut self, chunk: &WindowRows, out: &mut Batcher) {
        for i in 0..chunk.rows() {
            if self.held.rows() < self.capacity {
                self.held.push_row(chunk, i);
                continue;
            }
            let j = self.rng.below(self.capacity);
            out.push(&self.held, j);
            overwrite(&mut self.held, j, chunk, i);
        }
    }

    fn drain(mut self, out: &mut Batcher) {
        while self.held.rows() > 0 {
            let j = self.rng.below(self.held.rows());
            out.push(&self.held, j);
            swap_remove(&mut self.held, j);
        }
    }
}

/// Removes window `j` of `rows`, the last taking its place.
fn swap_remove(rows: &mut WindowRows, j: usize) {
    let (w, last) = (rows.width, rows.rows() - 1);
    rows.x.copy_within(last * w..(last + 1) * w, j * w);
    rows.x.truncate(last * w);
    if let Some(cells) = rows.mask.as_mut() {
        cells.copy_within(last * w..(last + 1) * w, j * w);
        cells.truncate(last * w);
    }
    rows.labels.swap_remove(j);
    rows.episode.swap_remove(j);
}

/// Replaces window `j` of `rows` with window `i` of `from`.
fn overwrite(rows: &mut WindowRows, j: usize, from: &WindowRows, i: usize) {
    let w = rows.width;
    rows.x[j * w..(j + 1) * w].copy_from_slice(from.row(i));
    if let (Some(cells), Some(src)) = (rows.mask.as_mut(), from.mask.as_ref()) {
        cells[j * w..(j + 1) * w].copy_from_slice(&src[i * w..(i + 1) * w]);
    }
    rows.labels[j] = from.labels[i];
    rows.episode[j] = from.episode[i];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` windows of width 2 whose first value is the window's number.
    fn numbered(n: usize) -> WindowRows {
        WindowRows {
            width: 2,
            x: (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect(),
            mask: Some((0..2 * n).map(|k| k % 3 != 0).collect()),
            labels: (0..n).map(|i| (i % CLASSES) as u8).collect(),
            episode: (0..n).map(|i| i as u32).collect(),
        }
    }

    fn order(source: &dyn WindowSource, pass: Pass) -> Vec<usize> {
        let mut seen = Vec::new();
        stream(source, pass, None, |batch| {
            assert!(batch.rows() <= pass.batch);
            for i in 0..batch.rows() {
                let row = batch.row(i);
                assert_eq!(row[1], -row[0], "a window's values stay together");
                assert_eq!(batch.labels[i] as usize, row[0] as usize % CLASSES, "and its label with them");
                seen.push(row[0] as usize);
            }
        })
        .unwrap();
        seen
    }

    #[test]
    fn a_shuffled_pass_sees_every_window_once_in_an_order_set_by_its_seed() {
        let windows = numbered(1000);
        let pass = |seed| Pass { batch: 64, order: Order::Buffered(Shuffle { seed, buffer: 100 }) };
        let first = order(&windows, pass(1));
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>(), "every window exactly once");
        assert_ne!(first, (0..1000).collect::<Vec<_>>(), "shuffled");
        assert_eq!(order(&windows, pass(1)), first, "the same seed, the same order");
        assert_ne!(order(&windows, pass(2)), first, "another seed, another order");
        // A buffer of 100 lets a window move back, never forward, by more than 100.
        assert!(first.iter().enumerate().all(|(at, &w)| w <= at + 100));
    }

    #[test]
    fn an_unshuffled_pass_keeps_storage_order_and_scales_its_batches() {
        let windows = numbered(10);
        assert_eq!(order(&windows, Pass { batch: 3, order: Order::Storage }), (0..10).collect::<Vec<_>>());
        let scale = Normalisation { group: 1, mean: vec![1.0, 0.0], std: vec![2.0, 1.0] };
        let mut batches = Vec::new();
        stream(&windows, Pass { batch: 4, order: Order::Storage }, Some(&scale), |b| batches.push(b)).unwrap();
        assert_eq!(batches.iter().map(WindowRows::rows).collect::<Vec<_>>(), [4, 4, 2]);
        assert!(batches.iter().all(|b| b.mask.is_none()), "scaled batches carry no mask");
        // Window 1: x = (1, -1), mask (true, false) → ((1 - 1) / 2, masked → 0).
        assert_eq!(batches[0].row(1), [0.0, 0.0]);
        assert_eq!(batches[0].row(2), [0.5, -2.0]);
    }

    #[test]
    fn a_permuted_pass_hands_the_side_over_in_its_permutation() {
        let windows = numbered(10);
        let permutation = [3, 9, 0, 1, 8, 2, 7, 4, 6, 5];
        assert_eq!(order(&windows, Pass { batch: 4, order: Order::Permuted(&permutation) }), permutation);
        let short = stream(&windows, Pass { batch: 4, order: Order::Permuted(&permutation[..9]) }, None, |_| {});
        assert!(short.unwrap_err().contains("the side holds 10 windows, its permutation 9"));
    }

    #[test]
    fn class_counts_count_every_window() {
        assert_eq!(class_counts(&numbered(12)).unwrap(), [3, 3, 2, 2, 2]);
    }
}
