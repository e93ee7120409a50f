//! One float series as compact bytes, exactly: the aligned episode's series
//! are mostly integers (counters, sizes, `bucket_ms`) or decimals of a few
//! places (times are nanoseconds over 1e9, load averages hundredths), which
//! are stored as integers — the difference to the previous value, zigzag
//! and LEB128 varint, so a slowly moving counter takes a byte or two instead
//! of eight. What does not come back bit for bit that way is stored as f32
//! when f32 holds it exactly, else as the f64 it is. Missing values are the
//! canonical NaN, stored as their positions. Reading never panics: damaged
//! bytes are an error.

use std::io;

/// Decimal places tried: nanoseconds as seconds need nine.
const MAX_SCALE: u8 = 9;

/// How a series is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Form {
    /// Integers `k` with `v = k / 10^scale`, as varint deltas.
    Decimal = 0,
    /// Little-endian f32.
    F32 = 1,
    /// Little-endian f64.
    F64 = 2,
}

/// Appends `values` to `out`.
pub fn encode(values: &[f64], out: &mut Vec<u8>) {
    let start = out.len();
    // The decimal form's head, its scale filled in below: the form, the
    // scale, the count, then the missing values' positions as gaps.
    out.extend([Form::Decimal as u8, 0]);
    put_varint(out, values.len() as u64);
    // Counted in a loop the compiler vectorises: most columns have no
    // missing value, and their positions are then not looked for.
    let missing = values.iter().filter(|v| is_missing(**v)).count();
    put_varint(out, missing as u64);
    if missing > 0 {
        let mut previous = 0usize;
        for (i, _) in values.iter().enumerate().filter(|(_, v)| is_missing(**v)) {
            put_varint(out, (i - previous) as u64);
            previous = i;
        }
    }
    let head = out.len();
    let mut chunk = [0u8; CHUNK * MAX_VARINT];
    // Scales tried from 0 up, each writing its deltas straight away: an
    // integer column (most) is one pass, and a scale that fails does so at
    // its first inexact value, its bytes then dropped.
    for scale in 0..=MAX_SCALE {
        out[start + 1] = scale;
        let exact = match scale {
            // Dividing by 1 is exact: integers are checked without it.
            0 => put_deltas(values, out, &mut chunk, |v| {
                let k = v as i64;
                (k, k as f64)
            }),
            _ => {
                let power = 10f64.powi(scale as i32);
                put_deltas(values, out, &mut chunk, |v| {
                    let k = (v * power).round() as i64;
                    (k, k as f64 / power)
                })
            }
        };
        if exact {
            return;
        }
        out.truncate(head);
    }
    out.truncate(start);
    if values.iter().all(|v| (*v as f32) as f64 == *v || is_missing(*v)) {
        out.push(Form::F32 as u8);
        put_varint(out, values.len() as u64);
        out.extend(values.iter().flat_map(|v| (*v as f32).to_le_bytes()));
    } else {
        out.push(Form::F64 as u8);
        put_varint(out, values.len() as u64);
        out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
}

/// Reads one series written by [`encode`] from the front of `bytes`,
/// advancing it past the series.
pub fn decode(bytes: &mut &[u8]) -> io::Result<Vec<f64>> {
    let form = take(bytes, 1)?[0];
    match form {
        f if f == Form::Decimal as u8 => {
            let scale = take(bytes, 1)?[0];
            if scale > MAX_SCALE {
                return Err(bad(format!("scale {scale}")));
            }
            let n = length(bytes, 1)?;
            let gaps = length(bytes, 1)?;
            if gaps > n {
                return Err(bad(format!("{gaps} missing of {n}")));
            }
            let mut missing = Vec::with_capacity(gaps);
            let mut at = 0usize;
            for _ in 0..gaps {
                at = at
                    .checked_add(varint(bytes)? as usize)
                    .filter(|i| *i < n)
                    .ok_or_else(|| bad("a missing value past the end".into()))?;
                missing.push(at);
            }
            let power = 10f64.powi(scale as i32);
            let (mut values, mut last) = (Vec::with_capacity(n), 0i64);
            if missing.is_empty() && scale == 0 {
                // Most columns: integers, all present. Dividing by 1 is
                // exact, so the division is left out.
                for _ in 0..n {
                    last = last.wrapping_add(unzigzag(varint(bytes)?));
                    values.push(last as f64);
                }
                return Ok(values);
            }
            let mut next_missing = missing.iter().peekable();
            for i in 0..n {
                if next_missing.next_if(|m| **m == i).is_some() {
                    values.push(f64::NAN);
                    continue;
                }
                last = last.wrapping_add(unzigzag(varint(bytes)?));
                values.push(last as f64 / power);
            }
            Ok(values)
        }
        f if f == Form::F32 as u8 => {
            let n = length(bytes, 4)?;
            let raw = take(bytes, n * 4)?;
            Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect())
        }
        f if f == Form::F64 as u8 => {
            let n = length(bytes, 8)?;
            let raw = take(bytes, n * 8)?;
            Ok(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
        }
        other => Err(bad(format!("unknown series form {other}"))),
    }
}

/// A missing value: the canonical NaN the decoder writes (any other NaN is
/// kept as its bits, in f32 or f64 form).
fn is_missing(v: f64) -> bool {
    v.to_bits() == f64::NAN.to_bits()
}

/// The longest LEB128 varint of a `u64`.
const MAX_VARINT: usize = 10;
/// Values whose varints are written into a buffer on the stack before
/// they join `out` in one copy: a write by index per byte costs less than
/// `Vec::push`'s capacity check per byte, the cache's hottest loop.
const CHUNK: usize = 256;

/// Appends every present value as the varint delta of the integer `k`
/// that `exact` gives it, while `exact`'s value back (`k as f64 /
/// 10^scale`, as [`decode`] computes it) is the value bit for bit; false at
/// the first that is not, with the deltas before it written. `chunk` is the
/// caller's scratch, made once for every scale it tries.
#[inline(always)]
fn put_deltas(
    values: &[f64],
    out: &mut Vec<u8>,
    chunk: &mut [u8; CHUNK * MAX_VARINT],
    exact: impl Fn(f64) -> (i64, f64),
) -> bool {
    let mut last = 0i64;
    for values in values.chunks(CHUNK) {
        let mut at = 0;
        for &v in values {
            if is_missing(v) {
                continue;
            }
            let (k, back) = exact(v);
            if back.to_bits() != v.to_bits() {
                out.extend_from_slice(&chunk[..at]);
                return false;
            }
            at = put_varint_at(chunk, at, zigzag(k.wrapping_sub(last)));
            last = k;
        }
        out.extend_from_slice(&chunk[..at]);
    }
    true
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` as an LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    let mut bytes = [0u8; MAX_VARINT];
    let n = put_varint_at(&mut bytes, 0, v);
    out.extend_from_slice(&bytes[..n]);
}

/// Writes `v` as an LEB128 varint into `room` from `at`, giving where it
/// ends; `room` has [`MAX_VARINT`] bytes from `at`.
#[inline(always)]
fn put_varint_at(room: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        room[at] = v as u8 | 0x80;
        v >>= 7;
        at += 1;
    }
    room[at] = v as u8;
    at + 1
}

/// Reads an LEB128 varint from the front of `bytes`.
#[inline]
pub fn varint(bytes: &mut &[u8]) -> io::Result<u64> {
    // One byte: most deltas of counters and every missing position in a row.
    match bytes.split_first() {
        Some((&byte, rest)) if byte < 0x80 => {
            *bytes = rest;
            Ok(byte as u64)
        }
        _ => longer_varint(bytes),
    }
}

/// A varint of more than one byte (a time's nanoseconds, a large counter's
/// step): read from one eight-byte word when it ends within one, as most
/// do, byte by byte otherwise.
#[inline]
fn longer_varint(bytes: &mut &[u8]) -> io::Result<u64> {
    if let Some(word) = bytes.first_chunk::<8>().map(|w| u64::from_le_bytes(*w)) {
        // The first byte whose high bit is clear ends the varint.
        let ends = !word & 0x8080_8080_8080_8080;
        if ends != 0 {
            let len = (ends.trailing_zeros() / 8 + 1) as usize;
            *bytes = &bytes[len..];
            return Ok(seven_bit_groups(word & (u64::MAX >> (64 - 8 * len))));
        }
    }
    bytewise_varint(bytes)
}

/// The value of a varint's bytes held in one little-endian word (the bytes
/// after its last already zero): each byte's low seven bits, in order,
/// joined in pairs, then pairs of pairs, then halves.
fn seven_bit_groups(word: u64) -> u64 {
    let bytes = word & 0x7f7f_7f7f_7f7f_7f7f;
    let pairs = (bytes & 0x007f_007f_007f_007f) | ((bytes & 0x7f00_7f00_7f00_7f00) >> 1);
    let quads = (pairs & 0x0000_3fff_0000_3fff) | ((pairs & 0x3fff_0000_3fff_0000) >> 2);
    (quads & 0x0fff_ffff) | ((quads & 0x0fff_ffff_0000_0000) >> 4)
}

fn bytewise_varint(bytes: &mut &[u8]) -> io::Result<u64> {
    let mut v = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(v);
        }
    }
    Err(bad("a number cut short".into()))
}

/// A count of items of `width` bytes at least each (a decimal series' value
/// or missing position takes one at least), checked against what is left so
/// that a damaged count cannot ask for a huge allocation.
fn length(bytes: &mut &[u8], width: usize) -> io::Result<usize> {
    let n = varint(bytes)? as usize;
    match n.checked_mul(width).is_some_and(|b| b <= bytes.len()) {
        true => Ok(n),
        false => Err(bad(format!("{n} values, more than the entry holds"))),
    }
}

/// The first `n` bytes, advancing past them.
pub fn take<'a>(bytes: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
    if bytes.len() < n {
        return Err(bad("cut short".into()));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// A damaged entry.
pub fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("aligned cache entry: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[f64]) -> (Vec<f64>, u8) {
        let mut out = Vec::new();
        encode(values, &mut out);
        let mut bytes = &out[..];
        let back = decode(&mut bytes).unwrap();
        assert!(bytes.is_empty(), "the whole series is read");
        (back, out[0])
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn each_kind_of_series_takes_its_form_and_comes_back_bit_for_bit() {
        let t0 = 1_777_000_804_867_742_048i64;
        let times: Vec<f64> = [t0 - 1_995_104_292, t0 + 3, t0 + 100_000_007]
            .iter()
            .map(|ns| epiflow_operators::align::seconds_since(*ns, t0))
            .collect();
        let cases: [(Vec<f64>, Form); 7] = [
            (vec![1_049_966_429.0, 1_050_349_973.0, f64::NAN, 0.0, 3_400_000_000.0], Form::Decimal),
            (times, Form::Decimal),
            (vec![0.22, 0.25, 1.5, f64::NAN], Form::Decimal),
            (vec![-0.0, 1.0], Form::F32),
            (vec![0.1f32 as f64, 1e-30f32 as f64], Form::F32),
            (vec![std::f64::consts::PI, 1e300], Form::F64),
            (vec![f64::from_bits(f64::NAN.to_bits() | 1), 2.0], Form::F64),
        ];
        for (values, form) in cases {
            let (back, stored) = round_trip(&values);
            assert_eq!(bits(&back), bits(&values), "{values:?}");
            assert_eq!(stored, form as u8, "{values:?}");
        }
        assert_eq!(round_trip(&[]).0, Vec::<f64>::new());
    }

    #[test]
    fn a_slow_counter_takes_about_a_byte_a_value() {
        let counter: Vec<f64> = (0..1000).map(|i| (5_000_000_000u64 + i * 37) as f64).collect();
        let mut out = Vec::new();
        encode(&counter, &mut out);
        assert!(out.len() < 1020, "{} bytes", out.len());
    }

    #[test]
    fn damaged_bytes_are_errors() {
        let mut out = Vec::new();
        encode(&[1.0, 2.0, f64::NAN, 300.0], &mut out);
        for cut in 0..out.len() {
            assert!(decode(&mut &out[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&mut &[7u8, 0][..]).is_err(), "unknown form");
        assert!(decode(&mut &[0u8, 0, 0xff, 0xff, 0xff, 0xff, 0x0f][..]).is_err(), "a huge count");
    }

    /// The encoding as its rules read, value by value and byte by byte.
    fn encoded_as_written(values: &[f64]) -> Vec<u8> {
        let mut out = Vec::new();
        let missing: Vec<usize> = (0..values.len()).filter(|&i| is_missing(values[i])).collect();
        for scale in 0..=MAX_SCALE {
            let power = 10f64.powi(scale as i32);
            let ks: Option<Vec<i64>> = values
                .iter()
                .filter(|v| !is_missing(**v))
                .map(|&v| {
                    let k = (v * power).round() as i64;
                    (((k as f64) / power).to_bits() == v.to_bits()).then_some(k)
                })
                .collect();
            let Some(ks) = ks else { continue };
            out.extend([Form::Decimal as u8, scale]);
            put_varint(&mut out, values.len() as u64);
            put_varint(&mut out, missing.len() as u64);
            let gaps = missing.iter().scan(0, |previous, &i| Some(i - std::mem::replace(previous, i)));
            gaps.for_each(|gap| put_varint(&mut out, gap as u64));
            let deltas = ks.iter().scan(0i64, |last, &k| Some(k.wrapping_sub(std::mem::replace(last, k))));
            deltas.for_each(|d| put_varint(&mut out, zigzag(d)));
            return out;
        }
        if values.iter().all(|v| (*v as f32) as f64 == *v || is_missing(*v)) {
            out.push(Form::F32 as u8);
            put_varint(&mut out, values.len() as u64);
            values.iter().for_each(|v| out.extend((*v as f32).to_le_bytes()));
        } else {
            out.push(Form::F64 as u8);
            put_varint(&mut out, values.len() as u64);
            values.iter().for_each(|v| out.extend(v.to_le_bytes()));
        }
        out
    }

    #[test]
    fn varints_take_the_bytes_leb128_gives() {
        for (v, bytes) in [
            (0u64, vec![0u8]),
            (127, vec![127]),
            (128, vec![0x80, 1]),
            (300, vec![0xac, 2]),
            (u64::MAX, vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]),
        ] {
            let mut out = vec![9u8];
            put_varint(&mut out, v);
            assert_eq!(out[1..], bytes[..], "{v}");
            assert_eq!(varint(&mut &out[1..]).unwrap(), v);
        }
    }

    proptest! {
        /// Whatever follows it, a varint reads the same from a word as byte
        /// by byte, and leaves the same bytes after it.
        #[test]
        fn a_varint_reads_the_same_by_word_or_byte(
            v in prop_oneof![0u64..128, 128u64..1 << 35, 1u64 << 35..1 << 56, any::<u64>()],
            after in prop::collection::vec(any::<u8>(), 0..12),
        ) {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, v);
            bytes.extend(&after);
            let (mut by_word, mut by_byte) = (&bytes[..], &bytes[..]);
            prop_assert_eq!(varint(&mut by_word).unwrap(), v);
            prop_assert_eq!(bytewise_varint(&mut by_byte).unwrap(), v);
            prop_assert_eq!(by_word, &after[..]);
            prop_assert_eq!(by_byte, &after[..]);
        }
    }

    proptest! {
        /// Long series cross the chunks the encoder writes through, and a
        /// series inexact at one scale is written again at the next.
        #[test]
        fn a_series_is_the_bytes_its_rules_give(values in prop::collection::vec(prop_oneof![
            4 => (0i64..200).prop_map(|k| k as f64),
            2 => (-3_000_000_000i64..3_000_000_000).prop_map(|k| k as f64),
            2 => (-100_000i64..100_000).prop_map(|k| k as f64 / 1000.0),
            1 => Just(f64::NAN),
            1 => Just(-0.0),
            1 => any::<f64>(),
            1 => any::<f32>().prop_map(|f| f as f64),
        ], 0..1200)) {
            let mut out = vec![7u8];
            encode(&values, &mut out);
            prop_assert_eq!(&out[1..], &encoded_as_written(&values)[..]);
        }

        #[test]
        fn any_series_comes_back_bit_for_bit(values in prop::collection::vec(prop_oneof![
            any::<f64>(),
            (-1_000_000i64..1_000_000).prop_map(|k| k as f64),
            (-100_000i64..100_000).prop_map(|k| k as f64 / 100.0),
            Just(f64::NAN),
            any::<f32>().prop_map(|f| f as f64),
        ], 0..64)) {
            let (back, _) = round_trip(&values);
            prop_assert_eq!(bits(&back), bits(&values));
        }
    }
}
