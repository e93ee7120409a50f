//! Results as bytes for the incremental cache (docs/incremental.md).
//!
//! An aligned episode is stored compactly ([`encode_aligned`]): a short
//! magic, then one zstd frame (level 1, with its checksum) holding the parts
//! that are not series as JSON ([`Header`]) and every per-source series
//! (times, `bucket_ms`, columns) in [`series`]' exact integer-delta form.
//! Channel points are derived again on reading ([`channel_series`]). Entries
//! written before (Arrow IPC with LZ4 buffers, [`arrow_ipc`]) are still
//! read: the first bytes say which form an entry has. Measured in
//! BENCHMARKS.md ("A compact aligned cache").

mod arrow_ipc;
pub mod series;

use epiflow_operators::align::channel_series;
use epiflow_operators::channels::Phase;
use epiflow_operators::decode::decompress_sized;
use epiflow_operators::model::{AlignedEpisode, AlignedSource, EpisodeFacts, RowCounts};
use epiflow_operators::thread_kept::with_kept;
use serde::{Deserialize, Serialize};
use series::{bad, put_varint, take, varint};
use std::cell::RefCell;
use std::io::{self, Read};
use zstd::zstd_safe::{CCtx, CParameter};

/// The first bytes of a compact entry: its form and version.
const MAGIC: &[u8; 8] = b"EPALIGN1";
/// zstd level: level 1 is within a few percent of level 3's size on these
/// bytes and several times faster to write (BENCHMARKS.md).
const LEVEL: i32 = 1;

/// The parts of an aligned episode that are not series.
#[derive(Serialize, Deserialize)]
struct Header {
    facts: EpisodeFacts,
    row_counts: [RowCounts; 4],
    t0_wall_ns: Option<i64>,
    t_end: Option<f64>,
    phases: Vec<(f64, Phase)>,
    /// Columns per source, to rebuild [`AlignedSource::columns`].
    source_columns: [usize; 4],
}

impl Header {
    fn of(ep: &AlignedEpisode) -> Header {
        Header {
            facts: ep.facts.clone(),
            row_counts: ep.row_counts,
            t0_wall_ns: ep.t0_wall_ns,
            t_end: ep.t_end,
            phases: ep.phases.clone(),
            source_columns: std::array::from_fn(|s| ep.sources[s].columns.len()),
        }
    }

    /// The episode of this header and its `sources`, channels derived again.
    fn with(self, sources: [AlignedSource; 4]) -> AlignedEpisode {
        let channels = channel_series(&sources);
        AlignedEpisode {
            facts: self.facts,
            row_counts: self.row_counts,
            t0_wall_ns: self.t0_wall_ns,
            t_end: self.t_end,
            phases: self.phases,
            sources,
            channels,
        }
    }
}

/// Every per-source series of `ep`, named, in a fixed order.
fn series_of(ep: &AlignedEpisode) -> Vec<(String, &[f64])> {
    let mut out = Vec::new();
    for (s, source) in ep.sources.iter().enumerate() {
        out.push((format!("s{s}.t"), &source.t[..]));
        out.push((format!("s{s}.bucket_ms"), &source.bucket_ms[..]));
        for (c, column) in source.columns.iter().enumerate() {
            out.push((format!("s{s}.c{c}"), &column[..]));
        }
    }
    out
}

/// The aligned episode as a compact cache entry.
pub fn encode_aligned(ep: &AlignedEpisode) -> io::Result<Vec<u8>> {
    let header = serde_json::to_vec(&Header::of(ep)).map_err(io::Error::other)?;
    let mut body = Vec::with_capacity(header.len() + 16 * ep.sources.iter().map(|s| s.t.len()).sum::<usize>());
    put_varint(&mut body, header.len() as u64);
    body.extend_from_slice(&header);
    for (_, values) in series_of(ep) {
        series::encode(values, &mut body);
    }
    let mut out = Vec::with_capacity(MAGIC.len() + zstd::zstd_safe::compress_bound(body.len()));
    out.extend_from_slice(MAGIC);
    with_kept(
        &COMPRESSOR,
        CCtx::create,
        |_| false,
        |context| {
            for parameter in
                [CParameter::CompressionLevel(LEVEL), CParameter::ChecksumFlag(true), CParameter::ContentSizeFlag(true)]
            {
                context.set_parameter(parameter).map_err(zstd_error)?;
            }
            let mut after_magic = io::Cursor::new(&mut out);
            after_magic.set_position(MAGIC.len() as u64);
            context.compress2(&mut after_magic, &body).map_err(zstd_error)
        },
    )?;
    Ok(out)
}

thread_local! {
    /// This thread's compression context for entries, reused entry after
    /// entry (its level and flags set again each time, which costs nothing).
    static COMPRESSOR: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
}

/// An aligned episode from a cache entry, compact or written before as
/// Arrow IPC. Anything else is an error saying what is wrong, never a
/// panic: a cache entry may be damaged.
pub fn decode_aligned(bytes: &[u8]) -> io::Result<AlignedEpisode> {
    match bytes.strip_prefix(MAGIC) {
        Some(frame) => decode_compact(frame),
        None if arrow_ipc::is_arrow(bytes) => arrow_ipc::decode_aligned(bytes),
        None => Err(bad("neither a compact entry nor Arrow IPC".into())),
    }
}

fn decode_compact(frame: &[u8]) -> io::Result<AlignedEpisode> {
    let body = body_of(frame).map_err(|e| bad(format!("zstd: {e}")))?;
    let mut rest = &body[..];
    let header_len = varint(&mut rest)? as usize;
    let header: Header = serde_json::from_slice(take(&mut rest, header_len)?).map_err(|e| bad(e.to_string()))?;
    let mut sources: [AlignedSource; 4] = Default::default();
    for (s, source) in sources.iter_mut().enumerate() {
        source.t = series::decode(&mut rest)?.into();
        source.bucket_ms = series::decode(&mut rest)?;
        source.columns = (0..header.source_columns[s])
            .map(|_| series::decode(&mut rest).map(Into::into))
            .collect::<io::Result<_>>()?;
    }
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the last series", rest.len())));
    }
    Ok(header.with(sources))
}

/// The body of an entry: decompressed in one call when its frame states its
/// size (every entry [`encode_aligned`] writes does), zstd then writing
/// straight into it rather than through its window; streamed otherwise, or
/// when that fails (which words the error).
fn body_of(frame: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if !decompress_sized(frame, u64::MAX, &mut body) {
        body.clear();
        zstd::stream::read::Decoder::new(frame)?.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// A zstd error code as an error naming it.
fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd::zstd_safe::get_error_name(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::align::Align;
    use epiflow_operators::decode::Decode;
    use epiflow_operators::fingerprint::Operator;
    use epiflow_operators::model::EpisodeKey;
    use epiflow_operators::test_support::{seed_episode, tar_zst};

    fn aligned(garbage_mono: bool) -> AlignedEpisode {
        let members = seed_episode(30.0, &[(0.0, "clean"), (10.0, "infected_running")], 100.0, garbage_mono);
        let raw: Vec<(&str, &[u8])> = members.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
        let key = EpisodeKey { host_id: "h".into(), episode_id: "e".into() };
        Align.apply(&Decode::default().decode_bytes(&tar_zst(&raw), key, None, "e").unwrap())
    }

    /// Every series and channel of `back` has `ep`'s bits, and the rest is equal.
    fn assert_same(back: &AlignedEpisode, ep: &AlignedEpisode) {
        let bits = |e: &AlignedEpisode| -> Vec<(String, Vec<u64>)> {
            series_of(e).into_iter().map(|(n, v)| (n, v.iter().map(|x| x.to_bits()).collect())).collect()
        };
        assert_eq!(bits(back), bits(ep));
        let channel_bits = |e: &AlignedEpisode| -> Vec<Vec<u64>> {
            e.channels.iter().flat_map(|c| [&c.t, &c.v]).map(|v| v.iter().map(|x| x.to_bits()).collect()).collect()
        };
        assert_eq!(channel_bits(back), channel_bits(ep), "channels derived again, the same");
        assert_eq!((&back.facts, back.row_counts, back.t0_wall_ns), (&ep.facts, ep.row_counts, ep.t0_wall_ns));
        assert_eq!((back.t_end, &back.phases), (ep.t_end, &ep.phases));
    }

    /// An episode with a missing value, a fractional column and a column
    /// only f64 holds.
    fn varied(garbage_mono: bool) -> AlignedEpisode {
        let mut ep = aligned(garbage_mono);
        ep.sources[0].columns[0].to_mut()[1] = f64::NAN;
        ep.sources[1].columns[0].to_mut()[0] = 0.22;
        ep.sources[1].columns[1].to_mut()[2] = std::f64::consts::PI;
        ep.channels = channel_series(&ep.sources);
        ep
    }

    #[test]
    fn an_aligned_episode_round_trips_bit_for_bit() {
        for garbage_mono in [false, true] {
            let ep = varied(garbage_mono);
            let bytes = encode_aligned(&ep).unwrap();
            assert!(bytes.starts_with(MAGIC));
            let back = decode_aligned(&bytes).unwrap();
            assert!(back.sources[0].columns[0][1].is_nan());
            assert_same(&back, &ep);
        }
    }

    #[test]
    fn an_entry_whose_frame_does_not_state_its_size_is_streamed() {
        let ep = varied(false);
        let entry = encode_aligned(&ep).unwrap();
        let frame = &entry[MAGIC.len()..];
        assert!(zstd::zstd_safe::get_frame_content_size(frame).unwrap().is_some(), "written with its size");
        let body = zstd::stream::decode_all(frame).unwrap();
        let mut sizeless = MAGIC.to_vec();
        let mut encoder = zstd::stream::Encoder::new(&mut sizeless, LEVEL).unwrap();
        io::Write::write_all(&mut encoder, &body).unwrap();
        encoder.finish().unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&sizeless[MAGIC.len()..]).unwrap(), None);
        assert_same(&decode_aligned(&sizeless).unwrap(), &ep);
    }

    #[test]
    fn an_entry_written_before_as_arrow_ipc_is_still_read() {
        let ep = varied(false);
        let old = arrow_ipc::old::encode_aligned(&ep).unwrap();
        assert!(!old.starts_with(MAGIC));
        assert_same(&decode_aligned(&old).unwrap(), &ep);
    }

    #[test]
    fn a_damaged_entry_is_an_error_not_a_panic() {
        for bytes in
            [encode_aligned(&aligned(false)).unwrap(), arrow_ipc::old::encode_aligned(&aligned(false)).unwrap()]
        {
            for cut in [0, 4, 8, bytes.len() / 2, bytes.len() - 1] {
                let err = decode_aligned(&bytes[..cut]).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData, "cut at {cut}");
            }
        }
        // The compact form's checksum catches a flipped byte: after the
        // magic, one zstd frame whose descriptor (the byte after zstd's own
        // magic number) declares a checksum (bit 2).
        let mut flipped = encode_aligned(&aligned(false)).unwrap();
        assert_eq!(flipped[MAGIC.len()..MAGIC.len() + 4], [0x28, 0xb5, 0x2f, 0xfd]);
        assert_ne!(flipped[MAGIC.len() + 4] & 0x04, 0, "the frame carries a checksum");
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        assert_eq!(decode_aligned(&flipped).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
