//! The process's allocator settings, made once at start.
//!
//! glibc's malloc gives the top of its heap back to the kernel whenever
//! 128 KiB or more lie free there, and serves every block of 128 KiB and up
//! with a mapping of its own (raising that bound only as such blocks are
//! freed). A run allocates and frees a few megabytes per episode (an aligned
//! episode's columns, its tensors, Parquet's page buffers), so the kernel
//! mapped, zeroed and unmapped the same memory again and again: half of a
//! window change's system time. Keeping up to 64 MiB free at the heap's top
//! and serving blocks under 32 MiB from the heap took a window change's
//! system time from ≈ 0.48 to ≈ 0.21 CPU-s on 1,000 episodes, for ≈ 4% more
//! peak memory (BENCHMARKS.md, "The allocator keeps freed memory").

/// Free memory kept at the heap's top before any is given back.
const TRIM_THRESHOLD: i32 = 64 << 20;
/// Blocks from this size up get a mapping of their own (glibc's largest).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Sets glibc's trim and mapping thresholds (see the module). Does nothing
/// on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it has no
    // caller-side invariant, and a value it refuses is left unset (the
    // return value says so, and the defaults stay, which are correct).
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
