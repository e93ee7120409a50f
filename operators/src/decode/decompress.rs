//! The zstd side of decode: the thread's reused context and whole-archive
//! buffer, decompressing an archive whole when its frame says its size,
//! and the limit on a streamed archive's decompressed bytes.

use crate::thread_kept::with_kept;
use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use zstd::zstd_safe::DCtx;

thread_local! {
    /// This thread's zstd decompression context, reused from archive to
    /// archive as the `zstd` tool reuses one for every file: making one per
    /// archive, and its window buffer with it, cost ≈ 1.5% of a cold run.
    pub(super) static CONTEXT: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };

    /// This thread's buffer for an archive decompressed whole, reused from
    /// archive to archive (a fresh one would be mapped and zeroed by the
    /// kernel each time).
    static WHOLE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// The largest context a thread keeps between archives: an archive made
/// with a long window (`zstd --long`, up to the 128 MiB zstd accepts) must
/// not leave its window buffer held by a thread that lives on (`watch`,
/// `serve`).
pub(super) const KEPT_CONTEXT_BYTES: usize = 16 << 20;

/// The largest whole-archive buffer a thread keeps between archives.
const KEPT_WHOLE_BYTES: usize = 64 << 20;

/// The largest archive decompressed whole: a larger one is streamed, in the
/// bounded memory of zstd's window, rather than held.
const MOST_WHOLE_BYTES: u64 = 256 << 20;

/// Runs `f` with this thread's decompression context. A decoder made on it
/// resets its session first, so a damaged archive leaves nothing behind for
/// the next.
pub(super) fn with_context<T>(f: impl FnOnce(&mut DCtx<'static>) -> T) -> T {
    with_kept(&CONTEXT, DCtx::create, |context| context.sizeof() > KEPT_CONTEXT_BYTES, f)
}

/// Runs `f` with this thread's whole-archive buffer.
pub(super) fn with_whole_archive<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    with_kept(&WHOLE, Vec::new, |buffer| buffer.capacity() > KEPT_WHOLE_BYTES, f)
}

/// Decompresses `bytes` whole into `archive` when its frame header gives its
/// size and that size is within `max` (and [`MOST_WHOLE_BYTES`]): zstd then
/// writes straight into the buffer, and the members' lines are split in
/// place — no copy out of a window, none into a line buffer. False when it
/// does not or cannot (no size, over the limits, no memory for it, damage,
/// more than one frame): the archive is then streamed, which also words any
/// failure as before.
pub(super) fn decompress_whole(context: &mut DCtx<'static>, bytes: &[u8], max: u64, archive: &mut Vec<u8>) -> bool {
    let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(bytes) else { return false };
    let Some(size) = usize::try_from(size).ok().filter(|&s| s as u64 <= max.min(MOST_WHOLE_BYTES)) else {
        return false;
    };
    archive.clear();
    if archive.try_reserve_exact(size).is_err() {
        return false;
    }
    context.decompress(archive, bytes).is_ok_and(|written| written == size)
}

/// [`decompress_whole`] through this thread's kept context, for a frame
/// read whole elsewhere (the aligned cache's entries): false when its frame
/// does not state a size within `max`, or it fails, and the caller streams.
pub fn decompress_sized(bytes: &[u8], max: u64, out: &mut Vec<u8>) -> bool {
    with_context(|context| decompress_whole(context, bytes, max, out))
}

/// Counts decompressed bytes and fails once over the limit.
pub(super) struct LimitedReader<'a, R> {
    pub(super) inner: R,
    pub(super) left: u64,
    pub(super) over: &'a Cell<bool>,
}

impl<R: Read> Read for LimitedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.over.set(true);
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
