//! The fast path for telemetry rows: one forward scan over the line that
//! writes the registry's fields straight into a [`TelemetryRow`], without
//! serde's visitor machinery. The top-level keys of a row are predicted
//! from the row before (the rows of one member share their shape), so a
//! row's keys are compared eight bytes at a time instead of scanned and
//! looked up. BENCHMARKS.md has its speed against serde_json, sonic-rs and
//! simd-json.
//!
//! It must never give another answer than
//! `serde_json::from_str::<TelemetryRow>`, so it answers only when it is
//! sure. For every line it does not understand exactly as serde does — an
//! escape anywhere, a number serde might round differently (a fraction or
//! exponent whose significand passes 2^53 or whose exponent passes 10^±22,
//! an integer past `u64`), a duplicate field, a struct written as a list,
//! nesting deeper than [`MAX_DEPTH`], any syntax error — it returns `None`,
//! and the caller asks serde, which gives the row or the error message.
//!
//! Within those bounds every step mirrors serde_json 1.x: integers become
//! `f64` with `as` (`-0` is `-0.0`); a fraction `d.ddd[e±x]` is its integer
//! significand times or divided by an exact power of ten, which is the
//! correctly rounded value whichever float algorithm serde_json was built
//! with; numeric strings go through the same `str::parse::<f64>` as
//! [`Num`]'s visitor; unknown fields are skipped but must be valid JSON.

use super::{BlockDev, CpuTotal, FieldSum, First, KvmStats, ListLen, NetIface, Num, Summed, TelemetryRow};

/// Deepest nesting of arrays and objects the scan follows (serde_json's
/// limit is 128; deeper lines go to serde).
pub const MAX_DEPTH: u32 = 64;

/// Powers of ten that `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Rows of one archive member, scanned one after another: remembers the
/// keys of the last row's members, in order, to predict the next row's.
#[derive(Debug, Default)]
pub struct RowScanner {
    /// Per member position: the key as written (quotes included) and its
    /// field in [`ROW_FIELDS`] ([`UNKNOWN`] for a key the row ignores);
    /// `None` where the key held non-ASCII bytes (a predicted key skips the
    /// UTF-8 check).
    shape: Vec<Option<(Box<[u8]>, u8)>>,
}

/// Longest key sequence remembered per row.
const MAX_SHAPE: usize = 64;

impl RowScanner {
    /// Parses one telemetry line into `row` as serde would, or returns
    /// false, with `row` in any state, when the line needs serde to decide
    /// (see the module documentation). The caller keeps `row` from line to
    /// line: a row is a few hundred bytes, and moving one per line cost as
    /// much as parsing its numbers.
    pub fn scan_into(&mut self, line: &[u8], row: &mut TelemetryRow) -> bool {
        *row = TelemetryRow::default();
        self.fill(line, row).is_some()
    }

    fn fill(&mut self, line: &[u8], row: &mut TelemetryRow) -> Option<()> {
        let mut c = Cursor { s: line, i: 0, non_ascii: false };
        c.ws();
        c.eat(b'{')?;
        c.ws();
        let mut seen = 0u64;
        if c.peek() == b'}' {
            c.i += 1;
        } else {
            for position in 0.. {
                let field = self.key(&mut c, position)?;
                c.ws();
                c.eat(b':')?;
                c.ws();
                c.row_field(field, row, &mut seen)?;
                c.ws();
                match c.bump()? {
                    b',' => c.ws(),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        c.ws();
        if c.i != line.len() || (c.non_ascii && std::str::from_utf8(line).is_err()) {
            return None;
        }
        Some(())
    }

    /// The key of the row's member at `position`, as a field index: the
    /// predicted key when the line has it there, else the key read and
    /// looked up (and remembered for the next row).
    fn key(&mut self, c: &mut Cursor, position: usize) -> Option<u8> {
        if let Some(Some((quoted, field))) = self.shape.get(position) {
            if starts_with_at(c.s, c.i, quoted) {
                c.i += quoted.len();
                return Some(*field);
            }
        }
        let start = c.i;
        let key = c.string()?;
        let field = ROW_FIELDS.iter().position(|f| f.len() == key.len() && *f == key).map_or(UNKNOWN, |f| f as u8);
        if position < MAX_SHAPE {
            self.shape.truncate(position);
            self.shape.resize(position, None);
            self.shape.push(key.is_ascii().then(|| (c.s[start..c.i].into(), field)));
        }
        Some(field)
    }
}

/// The eight bytes of `s` from `i`, first byte lowest; `None` near the end.
#[inline]
fn load8(s: &[u8], i: usize) -> Option<u64> {
    s.get(i..i.checked_add(8)?).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
}

/// Whether `s` holds `key` at `i`, compared eight bytes at a time (keys
/// are short: a call to `memcmp` costs more than the comparison).
#[inline]
fn starts_with_at(s: &[u8], i: usize, key: &[u8]) -> bool {
    let n = key.len();
    if n < 8 {
        return s.get(i..i + n) == Some(key);
    }
    let mut k = 0;
    while k + 8 < n {
        if load8(s, i + k) != load8(key, k) {
            return false;
        }
        k += 8;
    }
    // The last eight bytes, overlapping the words already compared.
    load8(s, i + n - 8).is_some() && load8(s, i + n - 8) == load8(key, n - 8)
}

/// The fields of [`TelemetryRow`], by name; a field's index is its bit in
/// the duplicate check and its arm in [`Cursor::row_field`].
const ROW_FIELDS: [&[u8]; 36] = [
    b"t_wall_ns",
    b"cpu_user_jiffies",
    b"cpu_sys_jiffies",
    b"rss_bytes",
    b"vsize_bytes",
    b"io_read_bytes",
    b"io_write_bytes",
    b"voluntary_ctxsw",
    b"involuntary_ctxsw",
    b"minor_faults",
    b"major_faults",
    b"cpu_total_jiffies",
    b"load_1m_5m_15m",
    b"mem_available_bytes",
    b"mem_buffers_bytes",
    b"mem_cached_bytes",
    b"swap_used_bytes",
    b"net",
    b"listen_ports",
    b"top_procs",
    b"blockstats",
    b"kvm_stats",
    b"bucket_ms",
    b"pkts_in",
    b"pkts_out",
    b"bytes_in",
    b"bytes_out",
    b"syn_count",
    b"fin_count",
    b"rst_count",
    b"udp_count",
    b"tcp_count",
    b"dns_query_count",
    b"tcp_new_flows",
    b"unique_dst_ips",
    b"unique_dst_ports",
];

/// The field index of a key the row ignores.
const UNKNOWN: u8 = u8::MAX;

/// A JSON number as serde_json reads it: an integer significand and a
/// decimal exponent.
struct Number {
    negative: bool,
    significand: u64,
    exponent: i32,
    /// Written without a fraction or an exponent.
    integer: bool,
}

impl Number {
    /// The `f64` serde hands to a visitor, or `None` where serde's float
    /// algorithm (which depends on its build features) could round otherwise.
    fn value(&self) -> Option<f64> {
        let s = self.significand;
        if self.integer {
            return Some(match self.negative {
                false => s as f64,
                // serde_json: `-0` and magnitudes past i64 are floats.
                true => match (s as i64).wrapping_neg() {
                    n if n >= 0 => -(s as f64),
                    n => n as f64,
                },
            });
        }
        let scale = *POW10.get(self.exponent.unsigned_abs() as usize)?;
        if s > 1 << 53 {
            return None;
        }
        let f = if self.exponent >= 0 { s as f64 * scale } else { s as f64 / scale };
        Some(if self.negative { -f } else { f })
    }
}

/// Sets bit `bit` of `seen`; `None` when it was set already (serde rejects
/// a duplicate field).
fn once(seen: &mut u64, bit: u32) -> Option<()> {
    let mask = 1u64 << bit;
    if *seen & mask != 0 {
        return None;
    }
    *seen |= mask;
    Some(())
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
    /// Some string held a byte over 0x7f: the line must then be checked as
    /// UTF-8 (serde reads text).
    non_ascii: bool,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> u8 {
        self.s.get(self.i).copied().unwrap_or(0)
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.s.get(self.i).copied()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.bump()? == byte).then_some(())
    }

    /// Skips JSON white space (space, tab, line feed, carriage return).
    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.s.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string without escapes or control characters; its raw bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        for (k, &b) in self.s[start..].iter().enumerate() {
            match b {
                b'"' => {
                    self.i = start + k + 1;
                    return Some(&self.s[start..start + k]);
                }
                b'\\' | 0..=0x1f => return None,
                0x80.. => self.non_ascii = true,
                _ => {}
            }
        }
        None
    }

    /// Digits from here onto `significand`; `counted` counts the
    /// significand's digits (under 20 cannot overflow a `u64`, so only
    /// the 20th and later are checked). Returns how many were read here.
    /// (Eight digits at a time was slower: most numbers are short.)
    fn digits(&mut self, significand: &mut u64, counted: &mut u32) -> Option<u32> {
        let start = self.i;
        while let d @ b'0'..=b'9' = self.peek() {
            if *counted < 19 {
                *significand = *significand * 10 + u64::from(d - b'0');
            } else {
                *significand = significand.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            }
            *counted += 1;
            self.i += 1;
        }
        Some((self.i - start) as u32)
    }

    /// A number in JSON's grammar whose significand fits a `u64`.
    fn number(&mut self) -> Option<Number> {
        let negative = self.peek() == b'-';
        if negative {
            self.i += 1;
        }
        let (mut significand, mut counted) = (0u64, 0u32);
        match self.peek() {
            b'0' => {
                self.i += 1;
                counted = 1;
                if self.peek().is_ascii_digit() {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits(&mut significand, &mut counted)?;
            }
            _ => return None,
        }
        let mut exponent = 0i32;
        let mut integer = true;
        if self.peek() == b'.' {
            self.i += 1;
            integer = false;
            let fraction = self.digits(&mut significand, &mut counted)?;
            if fraction == 0 {
                return None;
            }
            exponent = -(fraction as i32);
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.i += 1;
            integer = false;
            let negative_exponent = self.peek() == b'-';
            if matches!(self.peek(), b'-' | b'+') {
                self.i += 1;
            }
            let start = self.i;
            let mut e = 0i32;
            while let d @ b'0'..=b'9' = self.peek() {
                e = e.checked_mul(10)?.checked_add(i32::from(d - b'0'))?;
                self.i += 1;
            }
            if self.i == start {
                return None;
            }
            exponent = if negative_exponent { exponent.checked_sub(e)? } else { exponent.checked_add(e)? };
        }
        Some(Number { negative, significand, exponent, integer })
    }

    /// The members of an object whose `{` was just read: `field` parses each
    /// value given its key.
    fn object_body(&mut self, depth: u32, mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        if self.peek() == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.bump()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// The elements of an array whose `[` was just read: `element` parses
    /// each given its position. Returns how many there were.
    fn array_body(&mut self, depth: u32, mut element: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        if self.peek() == b']' {
            self.i += 1;
            return Some(0);
        }
        let mut n = 0;
        loop {
            element(self, n)?;
            n += 1;
            self.ws();
            match self.bump()? {
                b',' => self.ws(),
                b']' => return Some(n),
                _ => return None,
            }
        }
    }

    /// Any JSON value, checked and dropped (serde's `IgnoredAny`); a
    /// container at this position would sit at `depth`. One loop with a
    /// stack of bits (object or array per open level) instead of recursion:
    /// most of what a row ignores is nested (`top_procs`).
    fn skip(&mut self, depth: u32) -> Option<()> {
        let mut objects = 0u64;
        let mut open = 0u32;
        'value: loop {
            match self.peek() {
                b @ (b'{' | b'[') => {
                    if depth + open > MAX_DEPTH {
                        return None;
                    }
                    let object = b == b'{';
                    self.i += 1;
                    objects = (objects << 1) | u64::from(object);
                    open += 1;
                    self.ws();
                    match (self.peek(), object) {
                        (b'}', true) | (b']', false) => self.i += 1,
                        (_, true) => {
                            self.member_key()?;
                            continue 'value;
                        }
                        (_, false) => continue 'value,
                    }
                    objects >>= 1;
                    open -= 1;
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.skip_number()?,
                _ => return None,
            }
            // After a value: a comma, or the closing of its container.
            while open > 0 {
                self.ws();
                let in_object = objects & 1 == 1;
                match self.bump()? {
                    b',' => {
                        self.ws();
                        if in_object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                objects >>= 1;
                open -= 1;
            }
            return Some(());
        }
    }

    /// An object member's key and colon, up to its value.
    fn member_key(&mut self) -> Option<()> {
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    /// A number in JSON's grammar, checked and dropped: serde reads an
    /// ignored number's digits without computing its value, so no size is
    /// out of range here.
    fn skip_number(&mut self) -> Option<()> {
        if self.peek() == b'-' {
            self.i += 1;
        }
        match self.bump()? {
            b'0' if self.peek().is_ascii_digit() => return None,
            b'0'..=b'9' => {
                self.skip_digits();
            }
            _ => return None,
        }
        if self.peek() == b'.' {
            self.i += 1;
            if self.skip_digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.i += 1;
            if matches!(self.peek(), b'+' | b'-') {
                self.i += 1;
            }
            if self.skip_digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// Moves past a run of digits; returns its length.
    fn skip_digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }

    /// A value read as [`Num`] reads it: a number, a numeric string, or
    /// anything else as missing.
    fn num(&mut self, depth: u32) -> Option<Num> {
        Some(Num(match self.peek() {
            b'-' | b'0'..=b'9' => Some(self.number()?.value()?),
            b'"' => {
                let text = std::str::from_utf8(self.string()?).ok()?;
                text.trim().parse::<f64>().ok().filter(|x| x.is_finite())
            }
            b'{' | b'[' | b't' | b'f' | b'n' => {
                self.skip(depth)?;
                None
            }
            _ => return None,
        }))
    }

    fn num_field(&mut self, seen: &mut u64, bit: u32, slot: &mut Num, depth: u32) -> Option<()> {
        once(seen, bit)?;
        *slot = self.num(depth)?;
        Some(())
    }

    /// `t_wall_ns`: an integer that fits `i64`, or `null`.
    fn wall_ns(&mut self) -> Option<Option<i64>> {
        if self.peek() == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        let n = self.number()?;
        match (n.integer, n.negative) {
            (true, false) => i64::try_from(n.significand).ok().map(Some),
            // `-0` is a float to serde, and no integer.
            (true, true) if n.significand > 0 => 0i64.checked_sub_unsigned(n.significand).map(Some),
            _ => None,
        }
    }

    /// [`ListLen`]: an array's length; other values count as missing.
    fn list_len(&mut self, depth: u32) -> Option<ListLen> {
        Some(ListLen(match self.peek() {
            b'[' => {
                self.i += 1;
                Some(self.array_body(depth, |s, _| s.skip(depth + 1))?)
            }
            // serde parses a number here before ignoring it.
            b'-' | b'0'..=b'9' => {
                self.number()?.value()?;
                None
            }
            _ => {
                self.skip(depth)?;
                None
            }
        }))
    }

    /// [`First`]: the first element of an array, or `null`.
    fn first(&mut self, depth: u32) -> Option<First> {
        match self.peek() {
            b'n' => self.literal(b"null").map(|()| First::default()),
            b'[' => {
                self.i += 1;
                let mut first = Num(None);
                self.array_body(depth, |s, k| match k {
                    0 => s.num(depth + 1).map(|n| first = n),
                    _ => s.skip(depth + 1),
                })?;
                Some(First(first))
            }
            _ => None,
        }
    }

    /// An `Option` of a struct: `null`, or the object `object` parses.
    fn optional<T>(&mut self, object: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.peek() {
            b'n' => self.literal(b"null").map(|()| None),
            b'{' => object(self).map(Some),
            _ => None,
        }
    }

    /// [`Summed`]: an object of per-device objects, or `null`.
    fn summed<T: FieldSum>(&mut self, depth: u32, device: fn(&mut Self, u32) -> Option<T>) -> Option<Summed<T>> {
        match self.peek() {
            b'n' => self.literal(b"null").map(|()| Summed(T::default())),
            b'{' => {
                self.i += 1;
                let mut total = T::default();
                self.object_body(depth, |s, _| {
                    (s.peek() == b'{').then_some(())?;
                    total.add_fields(device(s, depth + 1)?);
                    Some(())
                })?;
                Some(Summed(total))
            }
            _ => None,
        }
    }

    fn cpu_total(&mut self, depth: u32) -> Option<CpuTotal> {
        self.eat(b'{')?;
        let (mut v, mut seen) = (CpuTotal::default(), 0);
        self.object_body(depth, |s, key| match key {
            b"user" => s.num_field(&mut seen, 0, &mut v.user, depth + 1),
            b"system" => s.num_field(&mut seen, 1, &mut v.system, depth + 1),
            b"idle" => s.num_field(&mut seen, 2, &mut v.idle, depth + 1),
            b"iowait" => s.num_field(&mut seen, 3, &mut v.iowait, depth + 1),
            b"softirq" => s.num_field(&mut seen, 4, &mut v.softirq, depth + 1),
            _ => s.skip(depth + 1),
        })?;
        Some(v)
    }

    fn net_iface(&mut self, depth: u32) -> Option<NetIface> {
        self.eat(b'{')?;
        let (mut v, mut seen) = (NetIface::default(), 0);
        self.object_body(depth, |s, key| match key {
            b"rx_bytes" => s.num_field(&mut seen, 0, &mut v.rx_bytes, depth + 1),
            b"tx_bytes" => s.num_field(&mut seen, 1, &mut v.tx_bytes, depth + 1),
            b"rx_pkts" => s.num_field(&mut seen, 2, &mut v.rx_pkts, depth + 1),
            b"tx_pkts" => s.num_field(&mut seen, 3, &mut v.tx_pkts, depth + 1),
            _ => s.skip(depth + 1),
        })?;
        Some(v)
    }

    fn block_dev(&mut self, depth: u32) -> Option<BlockDev> {
        self.eat(b'{')?;
        let (mut v, mut seen) = (BlockDev::default(), 0);
        self.object_body(depth, |s, key| match key {
            b"rd_ops" => s.num_field(&mut seen, 0, &mut v.rd_ops, depth + 1),
            b"wr_ops" => s.num_field(&mut seen, 1, &mut v.wr_ops, depth + 1),
            b"rd_bytes" => s.num_field(&mut seen, 2, &mut v.rd_bytes, depth + 1),
            b"wr_bytes" => s.num_field(&mut seen, 3, &mut v.wr_bytes, depth + 1),
            _ => s.skip(depth + 1),
        })?;
        Some(v)
    }

    fn kvm_stats(&mut self, depth: u32) -> Option<KvmStats> {
        self.eat(b'{')?;
        let (mut v, mut seen) = (KvmStats::default(), 0);
        self.object_body(depth, |s, key| match key {
            b"remote_tlb_flush" => s.num_field(&mut seen, 0, &mut v.remote_tlb_flush, depth + 1),
            b"pages_4k" => s.num_field(&mut seen, 1, &mut v.pages_4k, depth + 1),
            b"pages_2m" => s.num_field(&mut seen, 2, &mut v.pages_2m, depth + 1),
            _ => s.skip(depth + 1),
        })?;
        Some(v)
    }

    /// The value of the row's field `field` (an index in [`ROW_FIELDS`]).
    /// Values of containers sit at depth 2.
    fn row_field(&mut self, field: u8, r: &mut TelemetryRow, seen: &mut u64) -> Option<()> {
        const D: u32 = 2;
        match field {
            0 => {
                once(seen, 0)?;
                r.t_wall_ns = self.wall_ns()?;
                Some(())
            }
            1 => self.num_field(seen, 1, &mut r.cpu_user_jiffies, D),
            2 => self.num_field(seen, 2, &mut r.cpu_sys_jiffies, D),
            3 => self.num_field(seen, 3, &mut r.rss_bytes, D),
            4 => self.num_field(seen, 4, &mut r.vsize_bytes, D),
            5 => self.num_field(seen, 5, &mut r.io_read_bytes, D),
            6 => self.num_field(seen, 6, &mut r.io_write_bytes, D),
            7 => self.num_field(seen, 7, &mut r.voluntary_ctxsw, D),
            8 => self.num_field(seen, 8, &mut r.involuntary_ctxsw, D),
            9 => self.num_field(seen, 9, &mut r.minor_faults, D),
            10 => self.num_field(seen, 10, &mut r.major_faults, D),
            11 => {
                once(seen, 11)?;
                r.cpu_total_jiffies = self.optional(|s| s.cpu_total(D))?;
                Some(())
            }
            12 => {
                once(seen, 12)?;
                r.load_1m_5m_15m = self.first(D)?;
                Some(())
            }
            13 => self.num_field(seen, 13, &mut r.mem_available_bytes, D),
            14 => self.num_field(seen, 14, &mut r.mem_buffers_bytes, D),
            15 => self.num_field(seen, 15, &mut r.mem_cached_bytes, D),
            16 => self.num_field(seen, 16, &mut r.swap_used_bytes, D),
            17 => {
                once(seen, 17)?;
                r.net = self.summed(D, Self::net_iface)?;
                Some(())
            }
            18 => {
                once(seen, 18)?;
                r.listen_ports = self.list_len(D)?;
                Some(())
            }
            19 => {
                once(seen, 19)?;
                r.top_procs = self.list_len(D)?;
                Some(())
            }
            20 => {
                once(seen, 20)?;
                r.blockstats = self.summed(D, Self::block_dev)?;
                Some(())
            }
            21 => {
                once(seen, 21)?;
                r.kvm_stats = self.optional(|s| s.kvm_stats(D))?;
                Some(())
            }
            22 => self.num_field(seen, 22, &mut r.bucket_ms, D),
            23 => self.num_field(seen, 23, &mut r.pkts_in, D),
            24 => self.num_field(seen, 24, &mut r.pkts_out, D),
            25 => self.num_field(seen, 25, &mut r.bytes_in, D),
            26 => self.num_field(seen, 26, &mut r.bytes_out, D),
            27 => self.num_field(seen, 27, &mut r.syn_count, D),
            28 => self.num_field(seen, 28, &mut r.fin_count, D),
            29 => self.num_field(seen, 29, &mut r.rst_count, D),
            30 => self.num_field(seen, 30, &mut r.udp_count, D),
            31 => self.num_field(seen, 31, &mut r.tcp_count, D),
            32 => self.num_field(seen, 32, &mut r.dns_query_count, D),
            33 => self.num_field(seen, 33, &mut r.tcp_new_flows, D),
            34 => self.num_field(seen, 34, &mut r.unique_dst_ips, D),
            35 => self.num_field(seen, 35, &mut r.unique_dst_ports, D),
            _ => self.skip(D),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, DeserializeOwned, Visitor};

    fn scan(scanner: &mut RowScanner, line: &[u8]) -> Option<TelemetryRow> {
        let mut row = TelemetryRow::default();
        scanner.scan_into(line, &mut row).then_some(row)
    }

    fn scan_row(line: &[u8]) -> Option<TelemetryRow> {
        scan(&mut RowScanner::default(), line)
    }

    /// What serde makes of a line (`None`: an error).
    fn serde_row(line: &str) -> Option<TelemetryRow> {
        serde_json::from_str(line).ok()
    }

    /// Asserts the scan answers `line` and agrees with serde to the bit
    /// (`Debug` prints every `f64` distinctly, `-0.0` included).
    fn scanned(line: &str) -> TelemetryRow {
        let fast = scan_row(line.as_bytes()).unwrap_or_else(|| panic!("the scan leaves {line} to serde"));
        let slow = serde_row(line).unwrap_or_else(|| panic!("serde rejects {line}"));
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{line}");
        fast
    }

    /// Asserts the scan leaves `line` to serde.
    fn left_to_serde(line: &str) {
        assert!(scan_row(line.as_bytes()).is_none(), "the scan answered {line}");
    }

    #[test]
    fn rows_of_every_source_read_as_serde_reads_them() {
        let proc = scanned(
            r#"{"t_mono_ns":12,"t_wall_ns":1777583279100000000,"cpu_user_jiffies":1234,"cpu_sys_jiffies":56,"rss_bytes":104857600,"vsize_bytes":2147483648,"io_read_bytes":0,"io_write_bytes":4096,"voluntary_ctxsw":77,"involuntary_ctxsw":3,"minor_faults":900,"major_faults":1}"#,
        );
        assert_eq!(proc.t_wall_ns, Some(1777583279100000000));
        assert_eq!(proc.vsize_bytes, Num(Some(2147483648.0)));
        let guest = scanned(
            r#"{"t_mono_ns":5,"t_wall_ns":2,"cpu_total_jiffies":{"user":10,"system":2,"idle":300,"iowait":0,"softirq":1},"load_1m_5m_15m":[0.42,0.3,0.1],"mem_total_bytes":2147483648,"mem_available_bytes":1e9,"mem_buffers_bytes":"4096","mem_cached_bytes":null,"swap_used_bytes":true,"net":{"eth0":{"rx_bytes":10,"tx_bytes":2,"rx_pkts":1,"tx_pkts":1},"lo":{"rx_bytes":5}},"listen_ports":[22,80],"top_procs":[{"pid":1,"name":"init","cpu_pct":0.1,"rss_bytes":1024},{"pid":77,"name":"xmrig ✓","cpu_pct":99.5,"rss_bytes":1}]}"#,
        );
        assert_eq!(guest.load_1m_5m_15m, First(Num(Some(0.42))));
        assert_eq!(guest.net.0.rx_bytes, Num(Some(15.0)));
        assert_eq!(guest.top_procs, ListLen(Some(2)));
        assert_eq!(guest.mem_buffers_bytes, Num(Some(4096.0)));
        scanned(
            r#"{"t_wall_ns":3,"vm_status":"running","vm_running":true,"blockstats":{"vda":{"rd_ops":1,"wr_ops":2,"rd_bytes":512,"wr_bytes":1024},"vdb":{"wr_bytes":1}},"kvm_stats":{"remote_tlb_flush":7,"pages_4k":1000,"pages_2m":2}}"#,
        );
        scanned(
            r#"{"t_wall_ns":4,"bucket_ms":100,"pkts_in":3,"pkts_out":4,"bytes_in":1500,"bytes_out":60,"syn_count":0,"fin_count":0,"rst_count":0,"udp_count":1,"tcp_count":6,"dns_query_count":1,"unique_dst_ips":2,"unique_dst_ports":2,"tcp_new_flows":1}"#,
        );
        scanned(" { \"t_wall_ns\" :\t-5 , \"rss_bytes\" : -1.5E+2 }\r\n ");
        scanned(r#"{}"#);
        scanned(r#"{"t_wall_ns":null,"net":null,"blockstats":{},"kvm_stats":null,"cpu_total_jiffies":null}"#);
        scanned(r#"{"rss_bytes":[1e99999,{"a":[]}],"vsize_bytes":{"x":"y"},"listen_ports":{"a":1},"top_procs":"n"}"#);
    }

    #[test]
    fn numbers_are_the_bits_serde_gives() {
        let zero = scanned(r#"{"rss_bytes":-0}"#).rss_bytes.0.unwrap();
        assert_eq!(zero.to_bits(), (-0.0f64).to_bits());
        for n in [
            "0.1",
            "1.797693134862315",
            "123.456e-7",
            "9007199254740993",
            "18446744073709551615",
            "-9223372036854775808",
            "-9223372036854775809",
            "4.5e22",
            "1e-22",
            "3.0e0",
            "0.000001",
        ] {
            scanned(&format!(r#"{{"rss_bytes":{n}}}"#));
        }
        assert_eq!(scanned(r#"{"t_wall_ns":-9223372036854775808}"#).t_wall_ns, Some(i64::MIN));
    }

    #[test]
    fn lines_serde_might_read_otherwise_are_left_to_it() {
        // Numbers whose rounding depends on serde's float algorithm, or past u64.
        for n in ["1e400", "1e23", "0.12345678901234567", "1.7976931348623157", "18446744073709551616", "1.5e-30"] {
            left_to_serde(&format!(r#"{{"t_wall_ns":1,"rss_bytes":{n}}}"#));
        }
        // Integers that are not an i64, or not an integer, as the wall clock.
        for t in ["-0", "9223372036854775808", "1.0", "1e3", "\"5\"", "true"] {
            left_to_serde(&format!(r#"{{"t_wall_ns":{t}}}"#));
        }
        // Escapes, duplicates, structs as lists, odd syntax and tokens.
        for line in [
            r#"{"t_wall\u005fns":1}"#,
            r#"{"t_wall_ns":1,"note":"a\"b"}"#,
            r#"{"t_wall_ns":1,"t_wall_ns":2}"#,
            r#"{"cpu_total_jiffies":{"user":1,"user":2}}"#,
            r#"{"cpu_total_jiffies":[1,2,3]}"#,
            r#"{"net":{"eth0":[1]}}"#,
            r#"{"net":{"eth0":null}}"#,
            r#"{"load_1m_5m_15m":1.5}"#,
            r#"{"rss_bytes":NaN}"#,
            r#"{"rss_bytes":01}"#,
            r#"{"rss_bytes":1.}"#,
            r#"{"rss_bytes":.5}"#,
            r#"{"rss_bytes":+1}"#,
            r#"{"rss_bytes":1,}"#,
            r#"{"rss_bytes":[1,]}"#,
            r#"{"rss_bytes":1} x"#,
            "{\"rss_bytes\":1\u{c}}",
            r#"{"rss_bytes":1"#,
            r#"[1]"#,
            "{\"s\":\"tab\there\"}",
        ] {
            left_to_serde(line);
        }
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(70), "]".repeat(70));
        left_to_serde(&deep);
        assert!(serde_row(&deep).is_some(), "serde follows it");
    }

    /// Rows whose keys move, vanish, grow or turn non-ASCII under a scanner
    /// that predicted the previous row's keys.
    #[test]
    fn predicted_keys_follow_rows_whose_shape_changes() {
        let mut scanner = RowScanner::default();
        // (line, whether the scan answers it)
        let lines: [(&[u8], bool); 12] = [
            (br#"{"t_mono_ns":1,"t_wall_ns":10,"rss_bytes":5,"source":"host_proc"}"#, true),
            (br#"{"t_mono_ns":2,"t_wall_ns":11,"rss_bytes":6,"source":"host_proc"}"#, true),
            (br#"{"t_wall_ns":12,"t_mono_ns":3,"rss_bytes":7}"#, true),
            (br#"{"t_wall_ns":13,"rss_bytes_x":1,"rss_bytes":8}"#, true),
            (br#"{"t_wall_ns":14,"rss_bytes":9,"rss_bytes":9}"#, false),
            ("{\"t_wall_ns\":15,\"é\":1,\"rss_bytes\":10}".as_bytes(), true),
            (b"{\"t_wall_ns\":16,\"\xc3\xa9\":\"\xff\",\"rss_bytes\":11}", false),
            ("{\"t_wall_ns\":17,\"é\":1,\"rss_bytes\":12}".as_bytes(), true),
            (b"{\"t_wall_ns\":18,\"\xc3\xa9\":\"\xff\"}", false),
            (br#"{ "t_wall_ns" :18}"#, true),
            (br#"{}"#, true),
            (br#"{"t_wall_ns":19,"rss_bytes":13}"#, true),
        ];
        for (line, answered) in lines {
            let fast = scan(&mut scanner, line);
            let slow = std::str::from_utf8(line).ok().and_then(|l| serde_json::from_str::<TelemetryRow>(l).ok());
            let text = String::from_utf8_lossy(line);
            assert_eq!(fast.is_some(), answered, "{text}");
            if let Some(fast) = fast {
                assert_eq!(format!("{fast:?}"), format!("{:?}", slow.expect("serde reads it")), "{text}");
            }
        }
    }

    #[test]
    fn invalid_utf8_in_a_string_is_left_to_serde() {
        assert!(scan_row(b"{\"t_wall_ns\":1,\"x\":\"\xff\"}").is_none());
        assert!(scan_row("{\"t_wall_ns\":1,\"x\":\"é\"}".as_bytes()).is_some());
    }

    /// The field names serde's derive passes to `deserialize_struct`.
    fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
        struct Fields(Option<&'static [&'static str]>);
        impl<'de> de::Deserializer<'de> for &mut Fields {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("a struct was expected"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                self.0 = Some(fields);
                Err(de::Error::custom("fields recorded"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
                unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
            }
        }
        let mut fields = Fields(None);
        let _ = T::deserialize(&mut fields);
        fields.0.expect("a derived struct")
    }

    /// A field added to a row struct but not to the scan would be skipped as
    /// unknown: the scan would answer where serde reads a value. Every field
    /// serde knows must be one the scan knows, which shows as the scan
    /// refusing it twice.
    #[test]
    fn the_scan_knows_every_field_serde_knows() {
        let twice = |f: &str, wrap: &dyn Fn(String) -> String| wrap(format!(r#""{f}":null,"{f}":null"#));
        let cases: [(&[&str], &dyn Fn(String) -> String); 5] = [
            (fields_of::<TelemetryRow>(), &|body| format!("{{{body}}}")),
            (fields_of::<CpuTotal>(), &|body| format!(r#"{{"cpu_total_jiffies":{{{body}}}}}"#)),
            (fields_of::<NetIface>(), &|body| format!(r#"{{"net":{{"eth0":{{{body}}}}}}}"#)),
            (fields_of::<BlockDev>(), &|body| format!(r#"{{"blockstats":{{"vda":{{{body}}}}}}}"#)),
            (fields_of::<KvmStats>(), &|body| format!(r#"{{"kvm_stats":{{{body}}}}}"#)),
        ];
        for (fields, wrap) in cases {
            assert!(!fields.is_empty());
            for field in fields {
                let line = twice(field, wrap);
                left_to_serde(&line);
                assert!(serde_row(&line).is_none(), "serde rejects a duplicate: {line}");
            }
        }
        assert_eq!(fields_of::<TelemetryRow>().len(), 36);
    }
}
