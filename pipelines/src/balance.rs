//! Which worker takes which episode. Hashing keys (or shards) onto workers
//! fixes each worker's share up front, and episodes differ in size tenfold:
//! one worker was left decoding its last large archives for 10–25% of a
//! run's wall time after the other ran dry (BENCHMARKS.md). The leader
//! instead places work largest first on the least-loaded worker
//! (longest-processing-time-first scheduling) and feeds each epoch's entries
//! largest first, so every worker starts with its large episodes and ends
//! with small ones.
//!
//! An entry weighs its archive's real size, which the leader reads with a
//! `stat`: the index's `bytes` is optional (SPEC section 2) and may be
//! wrong, and weighing entries it leaves out as 0 once put every episode on
//! worker 0. Every entry also weighs a fixed [`PER_EPISODE`], for the work
//! an episode costs whatever its size, so equal weights spread evenly.
//!
//! With features the unit placed is a shard, not an episode: a shard has
//! one writer, and its rows arrive in the leader's feeding order whatever
//! the number of workers or processes, so the shard files come out the same
//! byte for byte. A shard keeps its worker for the life of the dataflow (its
//! sink lives there); one first seen in a later epoch goes to the least
//! loaded worker. A retraction goes where its entry went, where the
//! episode's report is remembered.

use crate::parallel::map_in_order;
use crate::sinks::features::shard_of;
use epiflow_operators::archive::archive_path;
use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::EpisodeKey;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The weight of an episode's fixed costs (opening, hashing, records), in
/// archive bytes: about a tenth of a typical archive.
pub const PER_EPISODE: u64 = 16 << 10;

/// How much work an index entry is.
pub type Weigher = Box<dyn Fn(&IndexEntry) -> u64 + Send + Sync>;

/// Entries weighed per thread at least: below this a thread costs more than
/// the `stat`s it would share.
const WEIGHED_PER_THREAD: usize = 2048;

/// Weighs entries by the size of their archive under `episodes_root` (the
/// index's `bytes` only when the archive cannot be read), plus
/// [`PER_EPISODE`].
pub fn archive_weigher(episodes_root: PathBuf) -> Weigher {
    Box::new(move |entry: &IndexEntry| {
        let path = archive_path(&episodes_root, &entry.key.host_id, &entry.key.episode_id);
        let size = std::fs::metadata(path).map(|m| m.len()).ok().or(entry.bytes).unwrap_or(0);
        PER_EPISODE + size
    })
}

/// Places index entries on `peers` workers.
pub struct Balancer {
    /// Work placed on each worker so far, in archive bytes.
    load: Vec<u64>,
    /// The shard count, when features are written.
    shards: Option<usize>,
    /// Shard → its worker.
    owners: HashMap<usize, usize>,
    /// Where each entry in the dataflow went, and its weight.
    placed: HashMap<EpisodeKey, (usize, u64)>,
    weigh: Weigher,
}

impl Balancer {
    /// A balancer over `peers` workers that weighs entries with `weigh`;
    /// `shards` when features are written.
    pub fn new(peers: usize, shards: Option<usize>, weigh: Weigher) -> Balancer {
        Balancer { load: vec![0; peers.max(1)], shards, owners: HashMap::new(), placed: HashMap::new(), weigh }
    }

    fn least_loaded(&self) -> usize {
        (0..self.load.len()).min_by_key(|w| self.load[*w]).unwrap_or(0)
    }

    /// One epoch's changes as `(worker, entry)` updates in feeding order:
    /// retractions first, then insertions largest first (ties by key).
    pub fn place(&mut self, changes: Vec<(IndexEntry, isize)>) -> Vec<((u64, IndexEntry), isize)> {
        let (inserted, retracted): (Vec<_>, Vec<_>) = changes.into_iter().partition(|(_, diff)| *diff > 0);
        let mut placed = Vec::with_capacity(inserted.len() + retracted.len());
        for (entry, diff) in retracted {
            let (worker, weight) = self.placed.remove(&entry.key).unwrap_or((0, 0));
            self.load[worker] -= weight.min(self.load[worker]);
            placed.push(((worker as u64, entry), diff));
        }
        let weights = self.weigh_all(&inserted);
        let mut inserted: Vec<(IndexEntry, isize, u64)> =
            inserted.into_iter().zip(weights).map(|((entry, diff), weight)| (entry, diff, weight)).collect();
        inserted.sort_by(|(a, _, wa), (b, _, wb)| (Reverse(wa), &a.key).cmp(&(Reverse(wb), &b.key)));
        if let Some(shards) = self.shards {
            self.own_new_shards(&inserted, shards);
        }
        for (entry, diff, weight) in inserted {
            let worker = match self.shards {
                Some(shards) => self.owners.get(&shard_of(&entry.key, shards)).copied().unwrap_or(0),
                None => self.least_loaded(),
            };
            self.load[worker] += weight;
            self.placed.insert(entry.key.clone(), (worker, weight));
            placed.push(((worker as u64, entry), diff));
        }
        placed
    }

    /// Each entry's weight, in order. A whole index is weighed on every
    /// core: a `stat` per archive, serial, held the first episodes back by
    /// a tenth of a second at 16,000 episodes.
    fn weigh_all(&self, entries: &[(IndexEntry, isize)]) -> Vec<u64> {
        map_in_order(entries, WEIGHED_PER_THREAD, |(entry, _)| (self.weigh)(entry))
    }

    /// Gives each shard without a worker one: heaviest shard first, on the
    /// least-loaded worker counting the shards already given.
    fn own_new_shards(&mut self, inserted: &[(IndexEntry, isize, u64)], shards: usize) {
        let mut new: BTreeMap<usize, u64> = BTreeMap::new();
        for (entry, _, weight) in inserted {
            let shard = shard_of(&entry.key, shards);
            if !self.owners.contains_key(&shard) {
                *new.entry(shard).or_default() += weight;
            }
        }
        let mut new: Vec<(usize, u64)> = new.into_iter().collect();
        new.sort_by_key(|&(shard, weight)| (Reverse(weight), shard));
        let mut planned = self.load.clone();
        for (shard, weight) in new {
            let worker = (0..planned.len()).min_by_key(|w| planned[*w]).unwrap_or(0);
            planned[worker] += weight;
            self.owners.insert(shard, worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, bytes: u64) -> IndexEntry {
        IndexEntry {
            key: EpisodeKey { host_id: "h".into(), episode_id: id.into() },
            sha256: None,
            bytes: Some(bytes),
            received_at_ns: None,
            line: 1,
        }
    }

    /// Weighs an entry by the index's `bytes`, as a test can choose.
    fn by_index() -> Weigher {
        Box::new(|e: &IndexEntry| e.bytes.unwrap_or(0))
    }

    fn placement(placed: &[((u64, IndexEntry), isize)]) -> Vec<(u64, &str, isize)> {
        placed.iter().map(|((w, e), d)| (*w, e.key.episode_id.as_str(), *d)).collect()
    }

    #[test]
    fn largest_first_on_the_least_loaded_worker_and_retractions_follow_their_entry() {
        let mut balancer = Balancer::new(2, None, by_index());
        let sizes = [("a", 10), ("b", 70), ("c", 30), ("d", 40), ("e", 20)];
        let placed = balancer.place(sizes.iter().map(|(id, b)| (entry(id, *b), 1)).collect());
        // 70 → w0; 40 → w1; 30 → w1 (40 < 70); 20 → w0 (70 = 70: the first); 10 → w1 (70 < 90).
        assert_eq!(placement(&placed), vec![(0, "b", 1), (1, "d", 1), (1, "c", 1), (0, "e", 1), (1, "a", 1)]);
        assert_eq!(balancer.load, vec![90, 80]);

        // "b" leaves: retracted on worker 0, which then takes the next arrival.
        let placed = balancer.place(vec![(entry("f", 5), 1), (entry("b", 70), -1)]);
        assert_eq!(placement(&placed), vec![(0, "b", -1), (0, "f", 1)]);
        assert_eq!(balancer.load, vec![25, 80]);
    }

    #[test]
    fn with_features_whole_shards_are_placed_and_keep_their_worker() {
        let key = |id: &str| EpisodeKey { host_id: "h".into(), episode_id: id.into() };
        let of = |shard: usize| -> Vec<String> {
            (0..200).map(|i| format!("e{i:03}")).filter(|id| shard_of(&key(id), 4) == shard).take(3).collect()
        };
        let (s0, s1, s2) = (of(0), of(1), of(2));
        let mut balancer = Balancer::new(2, Some(4), by_index());
        // Shard 0 weighs 90, shard 1 60, shard 2 50: 0 → w0, 1 → w1, 2 → w1.
        let changes = vec![
            (entry(&s0[0], 50), 1),
            (entry(&s0[1], 40), 1),
            (entry(&s1[0], 60), 1),
            (entry(&s2[0], 30), 1),
            (entry(&s2[1], 20), 1),
        ];
        let placed = balancer.place(changes);
        let workers: BTreeMap<&str, u64> = placed.iter().map(|((w, e), _)| (e.key.episode_id.as_str(), *w)).collect();
        assert_eq!(workers[s0[0].as_str()], 0);
        assert_eq!(workers[s0[1].as_str()], 0);
        assert_eq!(workers[s1[0].as_str()], 1);
        assert_eq!(workers[s2[0].as_str()], 1);
        assert_eq!(workers[s2[1].as_str()], 1);
        let order: Vec<u64> = placed.iter().map(|((_, e), _)| e.bytes.unwrap()).collect();
        assert_eq!(order, vec![60, 50, 40, 30, 20], "fed largest first");
        assert_eq!(balancer.load, vec![90, 110]);

        // A later arrival in shard 0 goes to its owner even though worker 0 is busier.
        let placed = balancer.place(vec![(entry(&s0[2], 500), 1)]);
        assert_eq!(placement(&placed)[0].0, 0);
    }

    /// Without `bytes` in the index every entry once weighed 0, and the
    /// least-loaded worker was always worker 0.
    #[test]
    fn entries_the_index_does_not_size_are_weighed_by_their_archive_and_spread() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [("a", 900), ("b", 100), ("c", 800), ("d", 200), ("e", 0)];
        for (id, size) in sizes {
            std::fs::create_dir_all(dir.path().join("h")).unwrap();
            std::fs::write(dir.path().join("h").join(format!("{id}.tar.zst")), vec![0u8; size]).unwrap();
        }
        let unsized_entry = |id: &str| IndexEntry { bytes: None, ..entry(id, 0) };
        let mut balancer = Balancer::new(2, None, archive_weigher(dir.path().to_path_buf()));
        let mut changes: Vec<_> = sizes.iter().map(|(id, _)| (unsized_entry(id), 1)).collect();
        changes.push((unsized_entry("missing"), 1));
        let placed = balancer.place(changes);
        let on = |w: u64| -> Vec<&str> { placement(&placed).into_iter().filter(|p| p.0 == w).map(|p| p.1).collect() };
        // Largest first: 900 → w0, 800 → w1, 200 → w1, 100 → w0, then the
        // empty and the missing archive (fixed cost only) one each.
        assert_eq!(on(0), vec!["a", "b", "e"]);
        assert_eq!(on(1), vec!["c", "d", "missing"]);
    }

    #[test]
    fn a_large_epoch_is_weighed_on_several_threads_in_order() {
        let balancer = Balancer::new(2, None, Box::new(|e: &IndexEntry| 3 * e.bytes.unwrap_or(0) + 1));
        let entries: Vec<_> = (0..3 * WEIGHED_PER_THREAD as u64).map(|i| (entry(&format!("e{i}"), i), 1)).collect();
        let expected: Vec<u64> = (0..3 * WEIGHED_PER_THREAD as u64).map(|i| 3 * i + 1).collect();
        assert_eq!(balancer.weigh_all(&entries), expected);
        assert_eq!(balancer.weigh_all(&entries[..5]), expected[..5]);
    }

    #[test]
    fn equal_weights_alternate_and_an_index_that_lies_is_not_believed() {
        let mut balancer = Balancer::new(3, None, Box::new(|_: &IndexEntry| PER_EPISODE));
        let placed = balancer.place((0..9).map(|i| (entry(&format!("e{i}"), 0), 1)).collect());
        let per_worker = |w| placement(&placed).iter().filter(|p| p.0 == w).count();
        assert_eq!((per_worker(0), per_worker(1), per_worker(2)), (3, 3, 3));

        // The index claims one archive is huge and the rest empty; their
        // files say otherwise.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("h")).unwrap();
        let mut changes = Vec::new();
        for i in 0..8 {
            std::fs::write(dir.path().join("h").join(format!("e{i}.tar.zst")), vec![0u8; 1000]).unwrap();
            changes.push((entry(&format!("e{i}"), if i == 0 { 1 << 40 } else { 0 }), 1));
        }
        let mut balancer = Balancer::new(2, None, archive_weigher(dir.path().to_path_buf()));
        let placed = balancer.place(changes);
        let per_worker = |w| placement(&placed).iter().filter(|p| p.0 == w).count();
        assert_eq!((per_worker(0), per_worker(1)), (4, 4));
    }
}
