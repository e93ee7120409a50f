//! glibc's allocator settings: what it keeps of the memory it frees, and
//! how many arenas an invocation's threads spread over.
//!
//! glibc gives the top of its heap back to the kernel whenever 128 KiB or
//! more lie free there, and serves every block of 128 KiB and up with a
//! mapping of its own, raising that bound only as such blocks are freed. A
//! run allocates and frees a few megabytes per episode (an aligned
//! episode's columns, its tensors, Parquet's page buffers); once decode
//! kept its whole-archive buffer (never freed, so the bound was never
//! raised), the kernel mapped, zeroed and unmapped those blocks episode
//! after episode: twice the page faults of a cold run. Every invocation
//! therefore keeps up to 64 MiB free at the heap's top and serves blocks
//! under 32 MiB from the heap ([`keep_freed_memory`]).
//!
//! glibc also gives each thread that allocates beside another an arena of
//! its own (up to eight per core), each keeping what it frees. Training
//! frees blocks of up to tens of MiB on its model threads, its window
//! readers and burn's pool, so with an arena each the resident memory of a
//! `[train] memory_mb = 64` job grew with how long it ran and how its
//! threads interleaved (320–390 MiB run to run for a heap that peaked at
//! 250 MiB either way), not with what it held. Sharing one arena, the same
//! jobs peaked at 286–307 MiB and trained as fast. The dataflow alone runs
//! slower on one arena (a window change +10–20%), so only an invocation that
//! trains shares it ([`share_one_arena`]). BENCHMARKS.md, "Training's
//! resident memory" and "Archives decompressed whole", has the measurements.

/// Free memory kept at the heap's top before any is given back.
const TRIM_THRESHOLD: i32 = 64 << 20;
/// Blocks from this size up get a mapping of their own (glibc's largest).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Sets glibc's trim and mapping thresholds (see the module).
pub fn keep_freed_memory() {
    mallopt(Setting::TrimThreshold, TRIM_THRESHOLD);
    mallopt(Setting::MmapThreshold, MMAP_THRESHOLD);
}

/// Makes every thread allocate from glibc's main arena. Call it before the
/// job's threads start: a thread that already has an arena keeps it.
pub fn share_one_arena() {
    mallopt(Setting::ArenaMax, 1);
}

/// The `mallopt` parameters set here.
enum Setting {
    TrimThreshold,
    MmapThreshold,
    ArenaMax,
}

/// Sets one glibc allocator parameter.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn mallopt(setting: Setting, value: i32) {
    let param = match setting {
        Setting::TrimThreshold => libc::M_TRIM_THRESHOLD,
        Setting::MmapThreshold => libc::M_MMAP_THRESHOLD,
        Setting::ArenaMax => libc::M_ARENA_MAX,
    };
    // SAFETY: `mallopt` only changes an allocator parameter under glibc's
    // own lock; it has no caller-side invariant, and a value it refuses is
    // left unset (the default stays, which is correct).
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(param, value);
    }
}

/// Other C libraries keep their own settings.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn mallopt(_setting: Setting, _value: i32) {}
