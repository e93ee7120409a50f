//! How many allocator arenas an invocation's threads spread over.
//!
//! glibc gives each thread that allocates beside another an arena of its
//! own (up to eight per core), and each arena keeps what it frees: up to a
//! trim threshold at its top, which glibc raises to 64 MiB as large blocks
//! are freed, and every hole below. Training frees blocks of up to tens of
//! MiB on its model threads, its window readers and burn's pool, so with an
//! arena each the resident memory of a `[train] memory_mb = 64` job grew
//! with how long it ran and how its threads interleaved (320–390 MiB, run to
//! run, for a heap that peaked at 250 MiB either way), not with what it
//! held. Sharing one arena, the same jobs peaked at 286–305 MiB and trained
//! as fast. The dataflow alone runs slower on one arena (a window change
//! +10–20%), so only an invocation that trains shares it. BENCHMARKS.md,
//! "Training's resident memory", has the measurements.

/// Makes every thread allocate from glibc's main arena. Call it before the
/// job's threads start: a thread that already has an arena keeps it. Does
/// nothing on other C libraries.
pub fn share_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes an allocator parameter under glibc's
    // own lock; it has no caller-side invariant, and a value it refuses is
    // left unset (the default stays, which is correct).
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
