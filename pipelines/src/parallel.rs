//! Mapping a slice on every core, keeping its order: for the passes that
//! `stat` one archive per indexed episode, which at tens of thousands of
//! episodes wait on the filesystem more than they compute.

/// `f` of every item, in the items' order, on up to every core: a thread
/// per `per_thread` items at least, so a short slice stays on the caller's
/// thread (below that, a thread costs more than the work it would share).
pub fn map_in_order<T: Sync, U: Send>(items: &[T], per_thread: usize, f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (items.len() / per_thread.max(1)).clamp(1, cores);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_slice_is_mapped_on_several_threads_in_order() {
        let items: Vec<u64> = (0..10_000).collect();
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        let mapped = map_in_order(&items, 100, |i| {
            threads.lock().unwrap().insert(std::thread::current().id());
            3 * i + 1
        });
        assert_eq!(mapped, items.iter().map(|i| 3 * i + 1).collect::<Vec<_>>());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(threads.lock().unwrap().len(), cores.min(100), "one thread per core");
    }

    #[test]
    fn a_short_slice_stays_on_the_callers_thread() {
        let caller = std::thread::current().id();
        let mapped = map_in_order(&[1, 2, 3], 100, |i| (i * 2, std::thread::current().id() == caller));
        assert_eq!(mapped, vec![(2, true), (4, true), (6, true)]);
        assert!(map_in_order(&[] as &[u8], 0, |i| *i).is_empty());
    }
}
