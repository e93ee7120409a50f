//! Which worker takes which episode. Hashing keys (or shards) onto workers
//! fixes each worker's share up front, and episodes differ in size tenfold:
//! one worker was left decoding its last large archives for 10–25% of a
//! run's wall time after the other ran dry (BENCHMARKS.md). The leader
//! instead places work largest first on the least-loaded worker
//! (longest-processing-time-first scheduling) and feeds each epoch's entries
//! largest first, so every worker starts with its large episodes and ends
//! with small ones.
//!
//! With features the unit placed is a shard, not an episode: a shard has
//! one writer, and its rows arrive in the leader's feeding order whatever
//! the number of workers or processes, so the shard files come out the same
//! byte for byte. A shard keeps its worker for the life of the dataflow (its
//! sink lives there); one first seen in a later epoch goes to the least
//! loaded worker. A retraction goes where its entry went, where the
//! episode's report is remembered.

use crate::sinks::features::shard_of;
use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::EpisodeKey;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

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
}

/// An entry's weight: its archive size from the index (0 when it does not say).
fn weight(entry: &IndexEntry) -> u64 {
    entry.bytes.unwrap_or(0)
}

impl Balancer {
    /// A balancer over `peers` workers; `shards` when features are written.
    pub fn new(peers: usize, shards: Option<usize>) -> Balancer {
        Balancer { load: vec![0; peers.max(1)], shards, owners: HashMap::new(), placed: HashMap::new() }
    }

    fn least_loaded(&self) -> usize {
        (0..self.load.len()).min_by_key(|w| self.load[*w]).unwrap_or(0)
    }

    /// One epoch's changes as `(worker, entry)` updates in feeding order:
    /// retractions first, then insertions largest first (ties by key).
    pub fn place(&mut self, changes: Vec<(IndexEntry, isize)>) -> Vec<((u64, IndexEntry), isize)> {
        let (mut inserted, retracted): (Vec<_>, Vec<_>) = changes.into_iter().partition(|(_, diff)| *diff > 0);
        let mut placed = Vec::with_capacity(inserted.len() + retracted.len());
        for (entry, diff) in retracted {
            let (worker, weight) = self.placed.remove(&entry.key).unwrap_or((0, 0));
            self.load[worker] -= weight.min(self.load[worker]);
            placed.push(((worker as u64, entry), diff));
        }
        inserted.sort_by(|(a, _), (b, _)| (Reverse(weight(a)), &a.key).cmp(&(Reverse(weight(b)), &b.key)));
        if let Some(shards) = self.shards {
            self.own_new_shards(&inserted, shards);
        }
        for (entry, diff) in inserted {
            let worker = match self.shards {
                Some(shards) => self.owners.get(&shard_of(&entry.key, shards)).copied().unwrap_or(0),
                None => self.least_loaded(),
            };
            self.load[worker] += weight(&entry);
            self.placed.insert(entry.key.clone(), (worker, weight(&entry)));
            placed.push(((worker as u64, entry), diff));
        }
        placed
    }

    /// Gives each shard without a worker one: heaviest shard first, on the
    /// least-loaded worker counting the shards already given.
    fn own_new_shards(&mut self, inserted: &[(IndexEntry, isize)], shards: usize) {
        let mut new: BTreeMap<usize, u64> = BTreeMap::new();
        for (entry, _) in inserted {
            let shard = shard_of(&entry.key, shards);
            if !self.owners.contains_key(&shard) {
                *new.entry(shard).or_default() += weight(entry);
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

    fn placement(placed: &[((u64, IndexEntry), isize)]) -> Vec<(u64, &str, isize)> {
        placed.iter().map(|((w, e), d)| (*w, e.key.episode_id.as_str(), *d)).collect()
    }

    #[test]
    fn largest_first_on_the_least_loaded_worker_and_retractions_follow_their_entry() {
        let mut balancer = Balancer::new(2, None);
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
        let mut balancer = Balancer::new(2, Some(4));
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
}
