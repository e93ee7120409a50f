//! JSON Lines members split into lines without copying them: a member
//! already in memory is split in place; a streamed one is read in large
//! chunks into one buffer, kept across members, and each complete line is
//! handed out as a slice of it. Only the unfinished line at a chunk's end
//! moves (to the buffer's front) before the next read. Line lengths are
//! bounded, so a hostile member cannot make the buffer grow without limit.

use std::borrow::Cow;
use std::io::{self, Read};

/// A member's bytes: streamed from a reader, or already in memory (an
/// archive decompressed whole).
pub enum Member<'a, R> {
    /// Read as it is split.
    Streamed(R),
    /// Split in place.
    InMemory(&'a [u8]),
}

impl<'a, R: Read> Member<'a, R> {
    /// The member's bytes whole (a small member such as `meta.json`).
    pub fn bytes(self) -> io::Result<Cow<'a, [u8]>> {
        match self {
            Member::Streamed(mut reader) => {
                let mut text = Vec::new();
                reader.read_to_end(&mut text)?;
                Ok(Cow::Owned(text))
            }
            Member::InMemory(bytes) => Ok(Cow::Borrowed(bytes)),
        }
    }
}

/// Bytes read from a member at a time.
const CHUNK: usize = 64 << 10;

/// A line that was too long to hold.
#[derive(Debug)]
pub struct LineTooLong(pub u64);

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line longer than {} bytes; skipped", self.0)
    }
}

/// Splits members into lines; one per archive decoded, reused for each of
/// its members.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// Holds bytes read and not yet handed out from `start` to `end`.
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Calls `f` with each non-blank line of `member`, as [`Self::for_each`]
    /// does for a reader; a member in memory is split without a copy.
    pub fn lines_of<R: Read>(
        &mut self,
        member: Member<'_, R>,
        max: u64,
        mut f: impl FnMut(u64, Result<&[u8], LineTooLong>),
    ) -> io::Result<()> {
        match member {
            Member::Streamed(reader) => self.for_each(reader, max, f),
            Member::InMemory(mut rest) => {
                let mut line_no = 0;
                while !rest.is_empty() {
                    let (line, after) = match memchr::memchr(b'\n', rest) {
                        Some(newline) => (&rest[..newline], &rest[newline + 1..]),
                        None => (rest, &rest[rest.len()..]),
                    };
                    line_no += 1;
                    give(line_no, line, max, &mut f);
                    rest = after;
                }
                Ok(())
            }
        }
    }

    /// Calls `f` with each non-blank line of `reader` (its 1-based number,
    /// its bytes without the newline or a carriage return before it). A line
    /// over `max` bytes is skipped without being held whole and given as
    /// `Err`.
    pub fn for_each<R: Read>(
        &mut self,
        mut reader: R,
        max: u64,
        mut f: impl FnMut(u64, Result<&[u8], LineTooLong>),
    ) -> io::Result<()> {
        if self.buf.len() < CHUNK {
            self.buf.resize(CHUNK, 0);
        }
        let (mut start, mut end, mut line_no) = (0usize, 0usize, 0u64);
        // Inside a line already reported as too long, discarding to its end.
        let mut skipping = false;
        loop {
            while let Some(newline) = memchr::memchr(b'\n', &self.buf[start..end]) {
                let line = &self.buf[start..start + newline];
                start += newline + 1;
                if std::mem::take(&mut skipping) {
                    continue;
                }
                line_no += 1;
                give(line_no, line, max, &mut f);
            }
            if !skipping && (end - start) as u64 > max {
                line_no += 1;
                f(line_no, Err(LineTooLong(max)));
                skipping = true;
            }
            if skipping {
                start = end;
            }
            self.buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            if end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = match reader.read(&mut self.buf[end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                if end > 0 && !skipping {
                    give(line_no + 1, &self.buf[..end], max, &mut f);
                }
                return Ok(());
            }
            end += n;
        }
    }
}

/// Hands one line to `f` unless it is blank.
fn give(line_no: u64, line: &[u8], max: u64, f: &mut impl FnMut(u64, Result<&[u8], LineTooLong>)) {
    if line.len() as u64 > max {
        return f(line_no, Err(LineTooLong(max)));
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.iter().all(u8::is_ascii_whitespace) {
        f(line_no, Ok(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, so lines
    /// straddle every possible chunk boundary.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn lines(data: &[u8], step: usize, max: u64) -> Vec<(u64, Result<String, String>)> {
        let mut out = Vec::new();
        LineSplitter::default()
            .for_each(Trickle { data, step }, max, |n, line| {
                out.push((n, line.map(|l| String::from_utf8_lossy(l).into_owned()).map_err(|e| e.to_string())))
            })
            .unwrap();
        out
    }

    #[test]
    fn lines_are_numbered_blank_ones_skipped_and_long_ones_refused() {
        let data = b"one\r\n\n  \ntwo\nxxxxxxxxxxxx\nthree\nyyyyyyyyyyyyyyyyyyyyyyyy\nfour";
        for step in [1, 2, 3, 7, 64, 1 << 20] {
            let got = lines(data, step, 8);
            let expected = vec![
                (1, Ok("one".to_string())),
                (4, Ok("two".to_string())),
                (5, Err("line longer than 8 bytes; skipped".to_string())),
                (6, Ok("three".to_string())),
                (7, Err("line longer than 8 bytes; skipped".to_string())),
                (8, Ok("four".to_string())),
            ];
            assert_eq!(got, expected, "step {step}");
        }
    }

    #[test]
    fn a_line_of_exactly_max_bytes_is_kept_and_one_more_is_not() {
        assert_eq!(lines(b"12345678\n", 3, 8), vec![(1, Ok("12345678".into()))]);
        assert_eq!(lines(b"12345678", 3, 8), vec![(1, Ok("12345678".into()))]);
        assert_eq!(lines(b"123456789", 3, 8)[0].1, Err("line longer than 8 bytes; skipped".into()));
        assert_eq!(lines(b"123456789\nok", 3, 8)[1], (2, Ok("ok".into())));
    }

    #[test]
    fn lines_longer_than_a_chunk_grow_the_buffer_up_to_the_limit() {
        let long = "z".repeat(CHUNK * 2 + 17);
        let data = format!("a\n{long}\nb\n");
        let got = lines(data.as_bytes(), CHUNK / 3, (CHUNK * 3) as u64);
        assert_eq!(got, vec![(1, Ok("a".into())), (2, Ok(long)), (3, Ok("b".into()))]);
        let got = lines(data.as_bytes(), CHUNK, CHUNK as u64);
        assert_eq!(got[1].1, Err(format!("line longer than {CHUNK} bytes; skipped")));
        assert_eq!(got[2], (3, Ok("b".into())));
    }

    proptest::proptest! {
        /// A member in memory gives the lines, numbers and refusals its
        /// streamed reading gives, whatever the lines and chunk sizes.
        #[test]
        fn a_member_in_memory_is_split_as_its_stream_is(
            pieces in proptest::collection::vec(proptest::sample::select(vec![&b"a"[..], b"bc", b"\n", b"\r\n", b" ", b"{\"x\":1}", b"zzzzzzzzzzzz"]), 0..60),
            step in 1usize..40,
            max in 1u64..20,
        ) {
            let data = pieces.concat();
            let mut in_memory = Vec::new();
            LineSplitter::default()
                .lines_of(Member::<&[u8]>::InMemory(&data), max, |n, line| {
                    in_memory.push((n, line.map(|l| String::from_utf8_lossy(l).into_owned()).map_err(|e| e.to_string())))
                })
                .unwrap();
            proptest::prop_assert_eq!(in_memory, lines(&data, step, max));
        }
    }

    #[test]
    fn one_splitter_serves_member_after_member() {
        let mut splitter = LineSplitter::default();
        for member in [&b"a\nb"[..], b"c\n", b"", b"\n\nd"] {
            let mut got = Vec::new();
            splitter.for_each(member, 10, |n, l| got.push((n, l.unwrap().to_vec()))).unwrap();
            let expected: Vec<(u64, Vec<u8>)> = std::str::from_utf8(member)
                .unwrap()
                .split('\n')
                .enumerate()
                .filter(|(_, l)| !l.is_empty())
                .map(|(i, l)| (i as u64 + 1, l.as_bytes().to_vec()))
                .collect();
            assert_eq!(got, expected);
        }
    }
}
