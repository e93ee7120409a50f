//! The fast path for telemetry rows: one forward scan over the line that
//! writes the registry's fields straight into a [`TelemetryRow`], without
//! serde's visitor machinery. Keys are predicted from the row before (the
//! rows of one member share their shape): the row's own, and those of each
//! kind of object in it (`cpu_total_jiffies`, each interface of `net`, ...),
//! so a key is compared eight bytes at a time instead of scanned and
//! looked up. The row's own members are predicted whole too: a member
//! whose bytes, key and value, repeat an earlier row's at the same place (a
//! source name, a total, a zero count, a process list that did not change)
//! is stepped over and its field copied, not read again ([`Remembered`]).
//! The JSON itself is read by `super::json_cursor`. BENCHMARKS.md has its
//! speed against serde_json, sonic-rs and simd-json, and
//! `examples/scan_lines.rs` measures it alone.
//!
//! It must never give another answer than
//! `serde_json::from_str::<TelemetryRow>`, so it answers only when it is
//! sure. For every line it does not understand exactly as serde does — an
//! escape anywhere, a number serde might round differently (a fraction or
//! exponent whose significand passes 2^53 or whose exponent passes 10^±22,
//! an integer past `u64`), a duplicate field, a struct written as a list,
//! nesting deeper than `MAX_DEPTH`, any syntax error — it returns `None`,
//! and the caller asks serde, which gives the row or the error message.
//!
//! Within those bounds every step mirrors serde_json 1.x: integers become
//! `f64` with `as` (`-0` is `-0.0`); a fraction `d.ddd[e±x]` is its integer
//! significand times or divided by an exact power of ten, which is the
//! correctly rounded value whichever float algorithm serde_json was built
//! with; numeric strings go through the same `str::parse::<f64>` as
//! [`Num`]'s visitor; unknown fields are skipped but must be valid JSON.

use super::json_cursor::{Cursor, MAX_DEPTH};
use super::{BlockDev, CpuTotal, FieldSum, First, KvmStats, ListLen, NetIface, Num, Summed, TelemetryRow};

/// The keys of one kind of object as last seen, per member position: the
/// key as written (quotes included) and its field in the kind's table
/// ([`UNKNOWN`] for a key the row ignores); `None` where the key held
/// non-ASCII bytes (a predicted key skips the UTF-8 check).
type Shape = Vec<Option<(Box<[u8]>, u8)>>;

/// The kinds of object whose keys are predicted, and their fields by name;
/// a field's position is its bit in the duplicate check and its arm in the
/// object's parser.
const KINDS: [&[&[u8]]; 7] = [ROW_FIELDS, CPU_FIELDS, NET_FIELDS, BLOCK_FIELDS, KVM_FIELDS, &[], &[]];
const ROW: usize = 0;
const CPU: usize = 1;
const IFACE: usize = 2;
const DEVICE: usize = 3;
const KVM: usize = 4;
/// The objects of interfaces (`net`) and of devices (`blockstats`).
const IFACES: usize = 5;
const DEVICES: usize = 6;

/// Declares the row's fields in one list: their names ([`ROW_FIELDS`], in
/// the order of [`Scan::row_field`]'s arms) and, for a member predicted from
/// an earlier row, how each is copied into and out of the member's
/// remembered copy ([`COPY_FIELD`]).
macro_rules! row_fields {
    ($($field:ident),* $(,)?) => {
        const ROW_FIELDS: &[&[u8]] = &[$(stringify!($field).as_bytes()),*];
        const COPY_FIELD: &[fn(&TelemetryRow, &mut TelemetryRow)] = &[$(|from, to| to.$field = from.$field),*];
    };
}

row_fields!(
    t_wall_ns,
    cpu_user_jiffies,
    cpu_sys_jiffies,
    rss_bytes,
    vsize_bytes,
    io_read_bytes,
    io_write_bytes,
    voluntary_ctxsw,
    involuntary_ctxsw,
    minor_faults,
    major_faults,
    cpu_total_jiffies,
    load_1m_5m_15m,
    mem_available_bytes,
    mem_buffers_bytes,
    mem_cached_bytes,
    swap_used_bytes,
    net,
    listen_ports,
    top_procs,
    blockstats,
    kvm_stats,
    bucket_ms,
    pkts_in,
    pkts_out,
    bytes_in,
    bytes_out,
    syn_count,
    fin_count,
    rst_count,
    udp_count,
    tcp_count,
    dns_query_count,
    tcp_new_flows,
    unique_dst_ips,
    unique_dst_ports,
);
const CPU_FIELDS: &[&[u8]] = &[b"user", b"system", b"idle", b"iowait", b"softirq"];
const NET_FIELDS: &[&[u8]] = &[b"rx_bytes", b"tx_bytes", b"rx_pkts", b"tx_pkts"];
const BLOCK_FIELDS: &[&[u8]] = &[b"rd_ops", b"wr_ops", b"rd_bytes", b"wr_bytes"];
const KVM_FIELDS: &[&[u8]] = &[b"remote_tlb_flush", b"pages_4k", b"pages_2m"];

/// The field index of a key the object ignores.
const UNKNOWN: u8 = u8::MAX;

/// Longest key sequence remembered per kind of object.
const MAX_SHAPE: usize = 64;

/// Rows of one archive member, scanned one after another: remembers each
/// kind of object's keys, in order, to predict the next row's, and the
/// row's members, to predict those that repeat.
#[derive(Debug, Default)]
pub struct RowScanner {
    shapes: [Shape; KINDS.len()],
    /// Per member position of the row: the member remembered there.
    members: Vec<Remembered>,
}

/// A row member (key, colon, value) as an earlier row wrote it, to be
/// taken whole when a row has the same bytes at the same position. The
/// bytes were one complete member at the row's top level, so the same
/// bytes followed by a delimiter are the same key and the same value: the
/// scan reuses the field they gave instead of reading them again.
/// Telemetry repeats much of each row (`source`, totals, zero counts,
/// process lists); a member that changes every row stops being compared
/// for a while after each miss.
#[derive(Debug, Default)]
struct Remembered {
    /// The field the key named ([`UNKNOWN`] for one the row ignores).
    field: u8,
    /// The member's bytes, from its key's opening quote to its value's
    /// last byte; empty when nothing is remembered.
    bytes: Vec<u8>,
    /// The field as read from those bytes (only `field` is set): a
    /// predicted member's field is copied from here.
    read: TelemetryRow,
    /// Rows left before this position is remembered again after a miss.
    rest: u8,
}

impl Remembered {
    /// Forgets the member after a miss, and stops comparing this position
    /// for [`REST_AFTER_MISS`] rows.
    fn rest(&mut self) {
        self.bytes.clear();
        self.rest = REST_AFTER_MISS;
    }
}

/// What [`Scan::predict`] found at a member of the row.
enum Prediction {
    /// A remembered member, already stepped over, of this field.
    Taken(u8),
    /// A member to read, and whether to remember it then.
    Read { remember: bool },
}

/// Rows a position is read without prediction after a miss (a value that
/// changes every row is then compared once in 16 rows; longer rests
/// measured no faster on such rows and slower on process lists that
/// change now and then).
const REST_AFTER_MISS: u8 = 15;

impl RowScanner {
    /// Parses one telemetry line into `row` as serde would, or returns
    /// false, with `row` in any state, when the line needs serde to decide
    /// (see the module documentation). The caller keeps `row` from line to
    /// line: a row is a few hundred bytes, and moving one per line cost as
    /// much as parsing its numbers.
    pub fn scan_into(&mut self, line: &[u8], row: &mut TelemetryRow) -> bool {
        *row = TelemetryRow::default();
        let mut scan = Scan {
            c: Cursor { s: line, i: 0, non_ascii: false },
            shapes: &mut self.shapes,
            members: &mut self.members,
        };
        let scanned = scan.row(row).is_some();
        if !scanned {
            // Only a line the scan answered is known valid (its UTF-8 too):
            // members are remembered from those alone.
            self.members.iter_mut().for_each(|m| m.bytes.clear());
        }
        scanned
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

/// One line being scanned, with the scanner's remembered keys and members.
struct Scan<'a, 'b> {
    c: Cursor<'a>,
    shapes: &'b mut [Shape; KINDS.len()],
    members: &'b mut Vec<Remembered>,
}

impl Scan<'_, '_> {
    /// The whole line: one object, then only white space.
    fn row(&mut self, row: &mut TelemetryRow) -> Option<()> {
        self.c.ws();
        self.c.eat(b'{')?;
        let mut seen = 0u64;
        self.members(1, |s, position| s.member(position, row, &mut seen))?;
        self.c.ws();
        let line = self.c.s;
        if self.c.i != line.len() || (self.c.non_ascii && std::str::from_utf8(line).is_err()) {
            return None;
        }
        Some(())
    }

    /// The members of an object of `kind` whose `{` was just read: `field`
    /// parses each value given the index of its key in the kind's table.
    #[inline(always)]
    fn object(&mut self, kind: usize, depth: u32, mut field: impl FnMut(&mut Self, u8) -> Option<()>) -> Option<()> {
        self.members(depth, |s, position| {
            let key = s.key(kind, position)?;
            s.colon()?;
            field(s, key)
        })
    }

    /// The members of an object at `depth` whose `{` was just read, up to
    /// its `}`: `member` reads each, given its position.
    #[inline(always)]
    fn members(&mut self, depth: u32, mut member: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.c.ws();
        if self.c.peek() == b'}' {
            self.c.i += 1;
            return Some(());
        }
        for position in 0.. {
            member(self, position)?;
            self.c.ws();
            match self.c.bump()? {
                b',' => self.c.ws(),
                b'}' => break,
                _ => return None,
            }
        }
        Some(())
    }

    /// The colon between a member's key and its value, with the white space
    /// around it.
    #[inline(always)]
    fn colon(&mut self) -> Option<()> {
        self.c.ws();
        self.c.eat(b':')?;
        self.c.ws();
        Some(())
    }

    /// The key at `position` of an object of `kind`, as a field index: the
    /// predicted key when the line has it there, else the key read and
    /// looked up (and remembered for the next object of this kind).
    #[inline(always)]
    fn key(&mut self, kind: usize, position: usize) -> Option<u8> {
        if let Some(Some((quoted, field))) = self.shapes[kind].get(position) {
            if self.c.at(quoted) {
                self.c.i += quoted.len();
                return Some(*field);
            }
        }
        let start = self.c.i;
        let key = self.c.string()?;
        let field = KINDS[kind].iter().position(|f| *f == key).map_or(UNKNOWN, |f| f as u8);
        if position < MAX_SHAPE {
            let shape = &mut self.shapes[kind];
            shape.resize(position, None);
            shape.push(key.is_ascii().then(|| (self.c.s[start..self.c.i].into(), field)));
        }
        Some(field)
    }

    /// An `Option` of a struct: `null`, or the object `object` parses.
    fn optional<T>(&mut self, object: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.c.peek() {
            b'n' => self.c.literal(b"null").map(|()| None),
            b'{' => object(self).map(Some),
            _ => None,
        }
    }

    /// [`Summed`]: an object (of `kind`) of per-device objects, or `null`.
    fn summed<T: FieldSum>(
        &mut self,
        kind: usize,
        depth: u32,
        device: fn(&mut Self, u32) -> Option<T>,
    ) -> Option<Summed<T>> {
        match self.c.peek() {
            b'n' => self.c.literal(b"null").map(|()| Summed(T::default())),
            b'{' => {
                self.c.i += 1;
                let mut total = T::default();
                self.object(kind, depth, |s, _| {
                    (s.c.peek() == b'{').then_some(())?;
                    total.add_fields(device(s, depth + 1)?);
                    Some(())
                })?;
                Some(Summed(total))
            }
            _ => None,
        }
    }

    /// An object of `kind` whose fields are all [`Num`]s, into `slots` in
    /// the order of the kind's table.
    fn nums(&mut self, kind: usize, depth: u32, slots: &mut [&mut Num]) -> Option<()> {
        self.c.eat(b'{')?;
        let mut seen = 0;
        self.object(kind, depth, |s, field| match slots.get_mut(usize::from(field)) {
            Some(slot) => {
                once(&mut seen, u32::from(field))?;
                **slot = num(&mut s.c, depth + 1)?;
                Some(())
            }
            None => s.c.skip(depth + 1),
        })
    }

    fn cpu_total(&mut self, depth: u32) -> Option<CpuTotal> {
        let mut v = CpuTotal::default();
        self.nums(CPU, depth, &mut [&mut v.user, &mut v.system, &mut v.idle, &mut v.iowait, &mut v.softirq])?;
        Some(v)
    }

    fn net_iface(&mut self, depth: u32) -> Option<NetIface> {
        let mut v = NetIface::default();
        self.nums(IFACE, depth, &mut [&mut v.rx_bytes, &mut v.tx_bytes, &mut v.rx_pkts, &mut v.tx_pkts])?;
        Some(v)
    }

    fn block_dev(&mut self, depth: u32) -> Option<BlockDev> {
        let mut v = BlockDev::default();
        self.nums(DEVICE, depth, &mut [&mut v.rd_ops, &mut v.wr_ops, &mut v.rd_bytes, &mut v.wr_bytes])?;
        Some(v)
    }

    fn kvm_stats(&mut self, depth: u32) -> Option<KvmStats> {
        let mut v = KvmStats::default();
        self.nums(KVM, depth, &mut [&mut v.remote_tlb_flush, &mut v.pages_4k, &mut v.pages_2m])?;
        Some(v)
    }

    /// The row's member at `position`, key and value: a remembered one when
    /// the line repeats its bytes there (see [`Remembered`]), else read
    /// (the key by [`Self::key`], the value by [`Self::row_field`]) and
    /// remembered.
    fn member(&mut self, position: usize, row: &mut TelemetryRow, seen: &mut u64) -> Option<()> {
        let start = self.c.i;
        let remember = match self.predict(position) {
            Prediction::Taken(field) => {
                if field != UNKNOWN {
                    once(seen, u32::from(field))?;
                    COPY_FIELD[usize::from(field)](&self.members[position].read, row);
                }
                return Some(());
            }
            Prediction::Read { remember } => remember,
        };
        let field = self.key(ROW, position)?;
        self.colon()?;
        self.row_field(field, row, seen)?;
        if remember {
            self.remember(field, position, start, row);
        }
        Some(())
    }

    /// Takes the member at `position` from an earlier row when the line
    /// repeats its bytes there, or says whether to remember the member once
    /// read.
    #[inline(always)]
    fn predict(&mut self, position: usize) -> Prediction {
        if position >= MAX_SHAPE {
            return Prediction::Read { remember: false };
        }
        if self.members.len() <= position {
            self.members.resize_with(position + 1, Remembered::default);
        }
        let memo = &mut self.members[position];
        if memo.rest > 0 {
            memo.rest -= 1;
            return Prediction::Read { remember: false };
        }
        if memo.bytes.is_empty() {
            return Prediction::Read { remember: true };
        }
        if self.c.member_at(&memo.bytes) {
            // The bytes were a whole member of a line the scan answered,
            // so they are valid UTF-8 here too.
            self.c.i += memo.bytes.len();
            return Prediction::Taken(memo.field);
        }
        memo.rest();
        Prediction::Read { remember: false }
    }

    /// Remembers the member just read at `position` (from `start`), and
    /// its field as read into `row`.
    fn remember(&mut self, field: u8, position: usize, start: usize, row: &TelemetryRow) {
        let memo = &mut self.members[position];
        memo.bytes.clear();
        memo.field = field;
        memo.bytes.extend_from_slice(&self.c.s[start..self.c.i]);
        if field != UNKNOWN {
            COPY_FIELD[usize::from(field)](row, &mut memo.read);
        }
    }

    /// The value of the row's field `field` (an index in [`ROW_FIELDS`]).
    /// Values of containers sit at depth 2.
    fn row_field(&mut self, field: u8, r: &mut TelemetryRow, seen: &mut u64) -> Option<()> {
        const D: u32 = 2;
        if field == UNKNOWN {
            return self.c.skip(D);
        }
        once(seen, u32::from(field))?;
        match field {
            0 => r.t_wall_ns = wall_ns(&mut self.c)?,
            1 => r.cpu_user_jiffies = num(&mut self.c, D)?,
            2 => r.cpu_sys_jiffies = num(&mut self.c, D)?,
            3 => r.rss_bytes = num(&mut self.c, D)?,
            4 => r.vsize_bytes = num(&mut self.c, D)?,
            5 => r.io_read_bytes = num(&mut self.c, D)?,
            6 => r.io_write_bytes = num(&mut self.c, D)?,
            7 => r.voluntary_ctxsw = num(&mut self.c, D)?,
            8 => r.involuntary_ctxsw = num(&mut self.c, D)?,
            9 => r.minor_faults = num(&mut self.c, D)?,
            10 => r.major_faults = num(&mut self.c, D)?,
            11 => r.cpu_total_jiffies = self.optional(|s| s.cpu_total(D))?,
            12 => r.load_1m_5m_15m = first(&mut self.c, D)?,
            13 => r.mem_available_bytes = num(&mut self.c, D)?,
            14 => r.mem_buffers_bytes = num(&mut self.c, D)?,
            15 => r.mem_cached_bytes = num(&mut self.c, D)?,
            16 => r.swap_used_bytes = num(&mut self.c, D)?,
            17 => r.net = self.summed(IFACES, D, Self::net_iface)?,
            18 => r.listen_ports = list_len(&mut self.c, D)?,
            19 => r.top_procs = list_len(&mut self.c, D)?,
            20 => r.blockstats = self.summed(DEVICES, D, Self::block_dev)?,
            21 => r.kvm_stats = self.optional(|s| s.kvm_stats(D))?,
            22 => r.bucket_ms = num(&mut self.c, D)?,
            23 => r.pkts_in = num(&mut self.c, D)?,
            24 => r.pkts_out = num(&mut self.c, D)?,
            25 => r.bytes_in = num(&mut self.c, D)?,
            26 => r.bytes_out = num(&mut self.c, D)?,
            27 => r.syn_count = num(&mut self.c, D)?,
            28 => r.fin_count = num(&mut self.c, D)?,
            29 => r.rst_count = num(&mut self.c, D)?,
            30 => r.udp_count = num(&mut self.c, D)?,
            31 => r.tcp_count = num(&mut self.c, D)?,
            32 => r.dns_query_count = num(&mut self.c, D)?,
            33 => r.tcp_new_flows = num(&mut self.c, D)?,
            34 => r.unique_dst_ips = num(&mut self.c, D)?,
            35 => r.unique_dst_ports = num(&mut self.c, D)?,
            _ => return None,
        }
        Some(())
    }
}

/// A value read as [`Num`] reads it: a number, a numeric string, or
/// anything else as missing.
#[inline]
fn num(c: &mut Cursor, depth: u32) -> Option<Num> {
    match c.plain_integer() {
        // As serde converts a `u64`.
        Some(integer) => Some(Num(Some(integer as f64))),
        None => any_num(c, depth),
    }
}

/// [`num`] of anything but a plain integer, kept out of line so that the
/// plain path `num` takes for most numbers stays small.
#[inline(never)]
fn any_num(c: &mut Cursor, depth: u32) -> Option<Num> {
    Some(Num(match c.peek() {
        b'-' | b'0'..=b'9' => Some(c.number()?.value()?),
        b'"' => {
            let text = std::str::from_utf8(c.string()?).ok()?;
            text.trim().parse::<f64>().ok().filter(|x| x.is_finite())
        }
        b'{' | b'[' | b't' | b'f' | b'n' => {
            c.skip(depth)?;
            None
        }
        _ => return None,
    }))
}

/// `t_wall_ns`: an integer that fits `i64`, or `null`.
fn wall_ns(c: &mut Cursor) -> Option<Option<i64>> {
    if let Some(integer) = c.plain_integer() {
        return i64::try_from(integer).ok().map(Some);
    }
    if c.peek() == b'n' {
        c.literal(b"null")?;
        return Some(None);
    }
    let n = c.number()?;
    match (n.integer, n.negative) {
        (true, false) => i64::try_from(n.significand).ok().map(Some),
        // `-0` is a float to serde, and no integer.
        (true, true) if n.significand > 0 => 0i64.checked_sub_unsigned(n.significand).map(Some),
        _ => None,
    }
}

/// [`ListLen`]: an array's length; other values count as missing.
fn list_len(c: &mut Cursor, depth: u32) -> Option<ListLen> {
    Some(ListLen(match c.peek() {
        b'[' => {
            c.i += 1;
            Some(c.array_body(depth, |c, _| c.skip(depth + 1))?)
        }
        // serde parses a number here before ignoring it.
        b'-' | b'0'..=b'9' => {
            c.number()?.value()?;
            None
        }
        _ => {
            c.skip(depth)?;
            None
        }
    }))
}

/// [`First`]: the first element of an array, or `null`.
fn first(c: &mut Cursor, depth: u32) -> Option<First> {
    match c.peek() {
        b'n' => c.literal(b"null").map(|()| First::default()),
        b'[' => {
            c.i += 1;
            let mut first = Num(None);
            c.array_body(depth, |c, k| match k {
                0 => num(c, depth + 1).map(|n| first = n),
                _ => c.skip(depth + 1),
            })?;
            Some(First(first))
        }
        _ => None,
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
        rows_read_as_serde(&mut scanner, &lines);
    }

    /// Members repeated from an earlier row are taken from it, not read
    /// again; each row still reads as serde reads it alone. Each scenario
    /// is the rows of one member of an archive, read by one scanner.
    #[test]
    fn repeated_members_read_as_serde_reads_each_row() {
        // (line, whether the scan answers it)
        let repeats: &[(&[u8], bool)] = &[
            (br#"{"a":"constant","rss_bytes":1234567,"top_procs":[{"pid":1},{"pid":2}]}"#, true),
            (br#"{"a":"constant","rss_bytes":1234567,"top_procs":[{"pid":1}, {"pid":2}]}"#, true),
            (br#"{"a":"constant","rss_bytes":1234567,"top_procs":[{"pid":1},{"pid":2}]}"#, true),
            // A longer number with the same first bytes, then a shorter one.
            (br#"{"a":"constant","rss_bytes":12345678,"top_procs":[{"pid":1},{"pid":2}]}"#, true),
            (br#"{"a":"constant","rss_bytes":1234567,"top_procs":[{"pid":1}]}"#, true),
        ];
        // A field is remembered at one place, then at another (once the
        // other place's rest after a miss is over) while the first place is
        // not in the row; back at the first place with its old bytes, it
        // must read as the first place's value, not the second's.
        let mut moved: Vec<(&[u8], bool)> =
            vec![(br#"{"a":"x1","vsize_bytes":7654321}"#, true), (br#"{"a":"x2","vsize_bytes":7654321}"#, true)];
        moved.extend([(br#"{"a":"x3","vsize_bytes":7654321}"# as &[u8], true); REST_AFTER_MISS as usize]);
        moved.extend([(br#"{"vsize_bytes":1111111}"# as &[u8], true), (br#"{"a":"x1","vsize_bytes":7654321}"#, true)]);
        // Bytes that are not UTF-8 inside a member, twice: never taken as read.
        let not_utf8: &[(&[u8], bool)] = &[
            (b"{\"b\":\"\xff\xfe\xfd\xfc\xfb\",\"a\":\"constant\"}", false),
            (b"{\"b\":\"\xff\xfe\xfd\xfc\xfb\",\"a\":\"constant\"}", false),
            (br#"{"b":"elsewhere","a":"constant"}"#, true),
        ];
        // A repeated member that is a field's second occurrence.
        let twice: &[(&[u8], bool)] =
            &[(br#"{"a":"constant","rss_bytes":1234567}"#, true), (br#"{"rss_bytes":5,"rss_bytes":1234567}"#, false)];
        for rows in [repeats, &moved, not_utf8, twice] {
            rows_read_as_serde(&mut RowScanner::default(), rows);
        }
    }

    /// Reads `lines` in order with one scanner, asserting which the scan
    /// answers and that each answer is serde's.
    fn rows_read_as_serde(scanner: &mut RowScanner, lines: &[(&[u8], bool)]) {
        for &(line, answered) in lines {
            let fast = scan(scanner, line);
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
        // Each struct's fields, and a row that puts a body of members where BODY is.
        let cases: [(&[&str], &str); 5] = [
            (fields_of::<TelemetryRow>(), "{BODY}"),
            (fields_of::<CpuTotal>(), r#"{"cpu_total_jiffies":{BODY}}"#),
            (fields_of::<NetIface>(), r#"{"net":{"eth0":{BODY}}}"#),
            (fields_of::<BlockDev>(), r#"{"blockstats":{"vda":{BODY}}}"#),
            (fields_of::<KvmStats>(), r#"{"kvm_stats":{BODY}}"#),
        ];
        for (fields, template) in cases {
            assert!(!fields.is_empty());
            for field in fields {
                let line = template.replace("BODY", &format!(r#""{field}":null,"{field}":null"#));
                left_to_serde(&line);
                assert!(serde_row(&line).is_none(), "serde rejects a duplicate: {line}");
            }
        }
        assert_eq!(fields_of::<TelemetryRow>().len(), 36);
    }

    /// Each name in a kind's table lands in the field of that name: a row
    /// holding only that field reads as serde reads it.
    #[test]
    fn every_field_name_lands_in_its_own_field() {
        let value = |field: &str| match field {
            "cpu_total_jiffies" => r#"{"user":1,"system":2,"idle":3,"iowait":4,"softirq":5}"#,
            "net" => r#"{"eth0":{"rx_bytes":1,"tx_bytes":2,"rx_pkts":3,"tx_pkts":4}}"#,
            "blockstats" => r#"{"vda":{"rd_ops":1,"wr_ops":2,"rd_bytes":3,"wr_bytes":4}}"#,
            "kvm_stats" => r#"{"remote_tlb_flush":1,"pages_4k":2,"pages_2m":3}"#,
            "load_1m_5m_15m" | "listen_ports" | "top_procs" => "[7,8]",
            _ => "7",
        };
        for field in fields_of::<TelemetryRow>() {
            let row = scanned(&format!(r#"{{"{field}":{}}}"#, value(field)));
            assert_ne!(format!("{row:?}"), format!("{:?}", TelemetryRow::default()), "{field} was read");
        }
    }
}
