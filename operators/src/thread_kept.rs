//! A value each thread keeps from one use to the next — a zstd context, a
//! buffer — where making one per use costs: a zstd context made per archive
//! or per cache entry, with its tables and window, cost 1–1.5% of a cold
//! run (BENCHMARKS.md).

use std::cell::RefCell;
use std::thread::LocalKey;

/// Runs `f` with this thread's value in `slot` (made by `make` when there
/// is none), or with a new one when the thread's is in use (a call within
/// `f`); lets it go after when `too_big` says so, so that a thread that
/// lives on (`watch`, `serve`) does not hold a large one.
pub fn with_kept<T: 'static, U>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
    make: fn() -> T,
    too_big: impl Fn(&T) -> bool,
    f: impl FnOnce(&mut T) -> U,
) -> U {
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) => {
            let out = f(kept.get_or_insert_with(make));
            if kept.as_ref().is_some_and(too_big) {
                *kept = None;
            }
            out
        }
        Err(_) => f(&mut make()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static KEPT: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }

    fn capacity_kept() -> Option<usize> {
        KEPT.with(|cell| cell.borrow().as_ref().map(Vec::capacity))
    }

    #[test]
    fn a_value_is_kept_between_uses_unless_too_big_and_a_nested_use_gets_its_own() {
        let too_big = |v: &Vec<u8>| v.capacity() > 1000;
        with_kept(&KEPT, Vec::new, too_big, |v| v.reserve_exact(100));
        assert!(capacity_kept().is_some_and(|c| c >= 100), "kept for the next use");
        with_kept(&KEPT, Vec::new, too_big, |outer| {
            assert!(outer.capacity() >= 100, "the kept one");
            with_kept(&KEPT, Vec::new, too_big, |inner| assert_eq!(inner.capacity(), 0, "a new one"));
        });
        with_kept(&KEPT, Vec::new, too_big, |v| v.reserve_exact(5000));
        assert_eq!(capacity_kept(), None, "let go");
    }
}
