//! Receiver-store paths and archive bytes: where an episode lives and what its
//! bytes hash to.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Path of an episode archive in a receiver store's episodes folder.
pub fn archive_path(episodes_root: &Path, host_id: &str, episode_id: &str) -> PathBuf {
    episodes_root.join(host_id).join(format!("{episode_id}.tar.zst"))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// sha256 of bytes, lower-case hex (the form `index.jsonl` uses).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Whether a string is safe as one path component of the store: non-empty, not
/// `.` or `..`, and without separators or NUL. Index rows whose ids fail this are
/// rejected, so an index can never point outside the store.
pub fn is_safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_is_the_known_digest() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn unsafe_components_are_refused() {
        assert!(is_safe_component("01ABC"));
        for bad in ["", ".", "..", "a/b", "../x", "a\\b", "a\0"] {
            assert!(!is_safe_component(bad), "{bad:?}");
        }
    }
}
