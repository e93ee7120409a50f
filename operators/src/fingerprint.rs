//! Operator identity: name, version and configuration, hashed into a fingerprint.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;

/// A stable 128-bit digest of an operator's identity (or, for the feature schema
/// hash, of several identities). Two results with the same archive hash and the
/// same fingerprint are interchangeable, which is what makes caching sound.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// Hashes arbitrary labelled parts; used by [`Operator::fingerprint`] and by
    /// sinks that derive a schema hash from several fingerprints.
    pub fn of_parts(parts: &[&[u8]]) -> Fingerprint {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Fingerprint(out)
    }

    /// This fingerprint chained with those of the operator's inputs, in
    /// order: a result is reusable only when its own identity and everything
    /// upstream of it are unchanged.
    pub fn chain(self, inputs: &[Fingerprint]) -> Fingerprint {
        let parts: Vec<&[u8]> = std::iter::once(&self.0[..]).chain(inputs.iter().map(|f| &f.0[..])).collect();
        Fingerprint::of_parts(&parts)
    }

    /// Lower-case hex, as written in manifests and cache paths.
    pub fn hex(&self) -> String {
        crate::archive::hex(&self.0)
    }

    /// The fingerprint [`Fingerprint::hex`] wrote; `None` for any other text.
    pub fn from_hex(text: &str) -> Option<Fingerprint> {
        let mut out = [0u8; 16];
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// A pipeline step: typed input to typed output, with a declared identity.
///
/// The configuration is whatever subset of the run's configuration the operator
/// reads, serialised into its fingerprint, so changing a threshold invalidates
/// exactly the operators that read it.
pub trait Operator {
    /// Name used in `run.json`, logs and cache keys.
    const NAME: &'static str;
    /// Bump whenever the operator's output changes for the same input and config.
    const VERSION: u32;
    /// The configuration the operator reads.
    type Config: Serialize;
    /// What the operator consumes.
    type Input;
    /// What the operator produces.
    type Output;

    /// The configuration this instance runs with.
    fn config(&self) -> &Self::Config;

    /// Runs the operator on one episode.
    fn apply(&self, input: &Self::Input) -> Self::Output;

    /// Name, version and configuration, hashed.
    fn fingerprint(&self) -> Fingerprint {
        let config = serde_json::to_vec(self.config()).unwrap_or_default();
        Fingerprint::of_parts(&[Self::NAME.as_bytes(), &Self::VERSION.to_le_bytes(), &config])
    }

    /// The fingerprint of this operator's results given its inputs'
    /// fingerprints (see [`Fingerprint::chain`]).
    fn fingerprint_after(&self, inputs: &[Fingerprint]) -> Fingerprint {
        self.fingerprint().chain(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_reads_back() {
        let f = Fingerprint::of_parts(&[b"x"]);
        assert_eq!(Fingerprint::from_hex(&f.hex()), Some(f));
        assert_eq!(Fingerprint::from_hex("zz"), None);
        assert_eq!(Fingerprint::from_hex(&"g".repeat(32)), None);
    }

    #[test]
    fn parts_are_length_delimited() {
        assert_ne!(Fingerprint::of_parts(&[b"ab", b"c"]), Fingerprint::of_parts(&[b"a", b"bc"]));
    }

    #[test]
    fn a_chain_moves_with_every_input_and_their_order() {
        let [a, b, c] = [b"a", b"b", b"c"].map(|p| Fingerprint::of_parts(&[p]));
        assert_eq!(a.chain(&[b, c]), a.chain(&[b, c]));
        assert_ne!(a.chain(&[b, c]), a.chain(&[c, b]));
        assert_ne!(a.chain(&[b]), a.chain(&[c]));
        assert_ne!(a.chain(&[]), a);
    }
}
