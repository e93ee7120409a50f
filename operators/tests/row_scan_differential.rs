//! The row scan against serde on generated hostile lines: whatever the
//! line, `parse_telemetry` gives the same row or the same error with the
//! scan as with serde alone. Lines are rows of the four sources with their
//! fields reordered, repeated, nested, spaced and garbled: extra keys with
//! nested values, exponents, negative zero, huge integers, escapes in keys
//! and strings, NaN tokens, truncation, bytes that are not UTF-8. Lines also
//! come in runs, each row its predecessor edited, so that the scan's
//! prediction of repeated members is tried against serde row by row.

use epiflow_operators::decode::parse_telemetry;
use epiflow_operators::rows::scan::RowScanner;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::cell::Cell;

/// Fields read as a number (`Num`).
const NUM_FIELDS: &[&str] = &[
    "cpu_user_jiffies",
    "cpu_sys_jiffies",
    "rss_bytes",
    "vsize_bytes",
    "io_read_bytes",
    "major_faults",
    "mem_available_bytes",
    "swap_used_bytes",
    "bucket_ms",
    "bytes_in",
    "bytes_out",
    "unique_dst_ips",
    "tcp_new_flows",
];

/// Keys that mean something somewhere, and keys that look like them.
const KEYS: &[&str] = &[
    "t_wall_ns",
    "t_mono_ns",
    "rss_bytes",
    "user",
    "rx_bytes",
    "wr_bytes",
    "pages_4k",
    "eth0",
    "vda",
    "net",
    "top_procs",
    "mem_total_bytes",
    "t_wall\\u005fns",
    "rss\\\"bytes",
    "é",
    "",
];

/// Number spellings JSON allows and some it does not.
fn number() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<u64>().prop_map(|v| v.to_string()),
        3 => (0u64..100_000_000, 0usize..9).prop_map(|(v, d)| {
            let digits = format!("{v:0>10}");
            format!("{}.{}", digits[..10 - d].trim_start_matches('0').to_string() + "0", &digits[10 - d..])
        }),
        2 => "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
        1 => any::<f64>().prop_map(|f| f.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:e}")),
        1 => prop::sample::select(vec![
            "-0", "-0.0", "0e0", "1e400", "-1e400", "1E-400", "01", "1.", ".5", "-", "+1", "NaN", "Infinity",
            "-Infinity", "1e", "1e+", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "-9223372036854775809", "18446744073709551615", "18446744073709551616", "1e22", "1e23", "4.5e-22",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

/// String literals, quoted: plain, numeric, non-ASCII, escaped, broken.
fn string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z0-9 ._-]{0,8}".prop_map(|s| format!("\"{s}\"")),
        2 => number().prop_map(|n| format!("\" {n} \"")),
        1 => "\\PC{0,5}".prop_map(|s| format!("\"{}\"", s.replace(['"', '\\'], ""))),
        1 => prop::sample::select(vec![
            r#""a\"b""#, r#""\u0041""#, r#""\ud800""#, r#""\n""#, r#""\x""#, "\"tab\there\"", "\"nan\"", "\"inf\"",
            "\"1e999\"", "\"unterminated",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

/// Any JSON-ish value, nested a few levels.
fn value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        4 => number(),
        2 => string(),
        1 => prop::sample::select(vec!["true", "false", "null", "NaN", "nul", "tru"]).prop_map(String::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..5).prop_map(|members| object(&members)),
        ]
    })
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![3 => prop::sample::select(KEYS).prop_map(String::from), 1 => "[a-z_]{1,12}"].boxed()
}

fn object(members: &[(String, String)]) -> String {
    let body: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

/// What a `Num` field holds: mostly numbers.
fn num_value() -> BoxedStrategy<String> {
    prop_oneof![6 => number(), 2 => string(), 1 => Just("null".to_string()), 1 => value()].boxed()
}

/// An object of the given keys' numbers (a struct such as `cpu_total_jiffies`).
fn record(keys: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::collection::vec((prop::sample::select(keys).prop_map(String::from), num_value()), 0..5)
        .prop_map(|members| object(&members))
        .boxed()
}

/// One member of a row: usually a field of the registry with a plausible
/// value, sometimes anything.
fn field() -> BoxedStrategy<(String, String)> {
    const CPU: &[&str] = &["user", "system", "idle", "iowait", "softirq", "steal"];
    const DEVICE: &[&str] = &["rx_bytes", "tx_bytes", "rx_pkts", "tx_pkts", "rd_ops", "wr_ops", "rd_bytes", "wr_bytes"];
    const KVM: &[&str] = &["remote_tlb_flush", "pages_4k", "pages_2m", "other"];
    let named = |name: &'static str, v: BoxedStrategy<String>| v.prop_map(move |v| (name.to_string(), v)).boxed();
    let devices = || {
        prop::collection::vec(
            (prop::sample::select(vec!["eth0", "lo", "vda"]).prop_map(String::from), record(DEVICE)),
            0..3,
        )
        .prop_map(|members| object(&members))
        .boxed()
    };
    prop_oneof![
        1 => named("t_wall_ns", num_value()),
        12 => (prop::sample::select(NUM_FIELDS).prop_map(String::from), num_value()),
        2 => named("cpu_total_jiffies", prop_oneof![4 => record(CPU), 1 => value()].boxed()),
        1 => named("kvm_stats", prop_oneof![4 => record(KVM), 1 => value()].boxed()),
        2 => named("net", prop_oneof![4 => devices(), 1 => value()].boxed()),
        1 => named("blockstats", prop_oneof![4 => devices(), 1 => value()].boxed()),
        2 => named("load_1m_5m_15m", prop_oneof![
            4 => prop::collection::vec(num_value(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            1 => value(),
        ].boxed()),
        1 => named("listen_ports", value()),
        1 => named("top_procs", prop::collection::vec(value(), 0..3).prop_map(|v| format!("[{}]", v.join(","))).boxed()),
        3 => (key(), value()),
    ]
    .boxed()
}

/// How a rendered line is damaged, if at all.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Truncate(usize),
    Replace(usize, u8),
    Insert(usize, u8),
}

fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Replace(i, b)),
        1 => (any::<usize>(), prop::sample::select(vec![0xff, 0xc3, b' ', b',', b'"', b'\\', b'}', b'\t', 0x0c])).prop_map(|(i, b)| Damage::Insert(i, b)),
    ]
    .boxed()
}

/// A row: its members, white space between tokens drawn from `spacing`, damaged.
fn line() -> BoxedStrategy<Vec<u8>> {
    let wall =
        prop_oneof![8 => any::<i64>().prop_map(|v| Some(v.to_string())), 1 => number().prop_map(Some), 1 => Just(None)];
    (wall, prop::collection::vec(field(), 0..8), any::<u64>(), damage())
        .prop_map(|(wall, mut members, spacing, damage)| {
            if let Some(t) = wall {
                let at = spacing as usize % (members.len() + 1);
                members.insert(at, ("t_wall_ns".to_string(), t));
            }
            damaged(render(&members, spacing), &damage)
        })
        .boxed()
}

/// A row's text: its members in order, with white space between tokens
/// drawn from `spacing` (the same seed spaces the same members alike).
fn render(members: &[(String, String)], spacing: u64) -> Vec<u8> {
    let mut state = spacing | 1;
    let mut space = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match state % 16 {
            0 => " ",
            1 => "\t",
            2 => "  ",
            3 => "\r",
            4 => "\n",
            _ => "",
        }
    };
    let mut text = String::from(space());
    text.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text += &format!("{}\"{k}\"{}:{}{v}{}", space(), space(), space(), space());
    }
    text.push('}');
    text.push_str(space());
    text.into_bytes()
}

fn damaged(mut bytes: Vec<u8>, damage: &Damage) -> Vec<u8> {
    match *damage {
        Damage::None => {}
        Damage::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
        Damage::Replace(i, b) => {
            let i = i % bytes.len();
            bytes[i] = b;
        }
        Damage::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
    }
    bytes
}

/// A member as telemetry writes it: a registry field with a plain number,
/// an object of them, a list, or an ignored key with a string, a literal or
/// a list of process records.
fn plain_field() -> BoxedStrategy<(String, String)> {
    let plain_number = prop_oneof![3 => any::<u32>().prop_map(|v| v.to_string()), 1 => (0u32..10_000, 0u32..100).prop_map(|(a, b)| format!("{a}.{b:02}"))];
    let procs = prop::collection::vec(("[a-z]{1,8}", any::<u16>()), 0..4).prop_map(|ps| {
        let ps: Vec<String> =
            ps.iter().map(|(n, pid)| format!(r#"{{"pid": {pid}, "name": "{n}", "cpu_pct": 0.1}}"#)).collect();
        format!("[{}]", ps.join(", "))
    });
    prop_oneof![
        6 => (prop::sample::select(NUM_FIELDS).prop_map(String::from), plain_number.clone()),
        1 => plain_number.clone().prop_map(|v| ("t_wall_ns".to_string(), v)),
        1 => prop::collection::vec(plain_number.clone(), 5).prop_map(|v| (
            "cpu_total_jiffies".to_string(),
            format!(r#"{{"user": {}, "system": {}, "idle": {}, "iowait": {}, "softirq": {}}}"#, v[0], v[1], v[2], v[3], v[4]),
        )),
        1 => prop::collection::vec(plain_number, 3).prop_map(|v| ("load_1m_5m_15m".to_string(), format!("[{}]", v.join(", ")))),
        1 => procs.clone().prop_map(|p| ("top_procs".to_string(), p)),
        1 => procs.prop_map(|p| ("listen_ports".to_string(), p)),
        2 => (key(), prop::sample::select(vec![r#""guest_agent""#, "true", "false", "null", r#""é""#, "123456789012"]).prop_map(String::from)),
    ]
    .boxed()
}

/// How one row of a member differs from the row before.
#[derive(Clone, Debug)]
enum Edit {
    /// The same members.
    Same,
    /// A member's value replaced.
    Value(usize, String),
    /// A member's value with a digit or a word after it (`12` → `120`, `true` → `truex`).
    Longer(usize, char),
    /// A member's value one byte shorter (`123` → `12`).
    Shorter(usize),
    /// Two members swap places.
    Swap(usize, usize),
    /// A member goes.
    Remove(usize),
    /// A member comes (again, if it is there already).
    Add(usize, (String, String)),
    /// This row only is damaged.
    Damaged(Damage),
}

impl Edit {
    /// Edits `members` (positions wrap around); returns the damage of this
    /// row alone.
    fn apply(self, members: &mut Vec<(String, String)>) -> Damage {
        let n = members.len().max(1);
        match self {
            Edit::Same => {}
            Edit::Value(i, v) => {
                if let Some(m) = members.get_mut(i % n) {
                    m.1 = v;
                }
            }
            Edit::Longer(i, c) => {
                if let Some(m) = members.get_mut(i % n) {
                    m.1.push(c);
                }
            }
            Edit::Shorter(i) => {
                if let Some(m) = members.get_mut(i % n) {
                    m.1.pop();
                }
            }
            Edit::Swap(i, j) if !members.is_empty() => members.swap(i % n, j % n),
            Edit::Remove(i) if !members.is_empty() => drop(members.remove(i % n)),
            Edit::Swap(..) | Edit::Remove(_) => {}
            Edit::Add(i, f) => members.insert(i % (members.len() + 1), f),
            Edit::Damaged(d) => return d,
        }
        Damage::None
    }
}

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        6 => Just(Edit::Same),
        6 => (any::<usize>(), plain_field()).prop_map(|(i, (_, v))| Edit::Value(i, v)),
        1 => (any::<usize>(), num_value()).prop_map(|(i, v)| Edit::Value(i, v)),
        1 => (any::<usize>(), prop::sample::select(vec!['0', '7', '.', 'e', 'x', ' '])).prop_map(|(i, c)| Edit::Longer(i, c)),
        1 => any::<usize>().prop_map(Edit::Shorter),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Swap(i, j)),
        1 => any::<usize>().prop_map(Edit::Remove),
        1 => (any::<usize>(), plain_field()).prop_map(|(i, f)| Edit::Add(i, f)),
        1 => (any::<usize>(), field()).prop_map(|(i, f)| Edit::Add(i, f)),
        2 => damage().prop_map(Edit::Damaged),
    ]
    .boxed()
}

/// The rows of one member: a first row, then each row the one before it
/// edited, so that most values repeat at their place, as telemetry's do.
fn run() -> BoxedStrategy<Vec<Vec<u8>>> {
    (prop::collection::vec(plain_field(), 1..10), any::<u64>(), prop::collection::vec(edit(), 1..60))
        .prop_map(|(mut members, spacing, edits)| {
            // A first row serde reads: no key twice.
            let mut keys = std::collections::HashSet::new();
            members.retain(|(k, _)| keys.insert(k.clone()));
            let mut lines = vec![render(&members, spacing)];
            for e in edits {
                let damage = e.apply(&mut members);
                lines.push(damaged(render(&members, spacing), &damage));
            }
            lines
        })
        .boxed()
}

/// What `parse_telemetry` makes of a line, `Debug`-printed so that every
/// float bit counts.
fn outcome(line: &[u8], scanner: Option<&mut RowScanner>) -> String {
    let mut row = Default::default();
    match parse_telemetry(line, scanner, &mut row) {
        Ok(t) => format!("ok {t} {row:?}"),
        Err(e) => format!("error {e}"),
    }
}

#[test]
fn the_scan_and_serde_agree_on_hostile_lines() {
    let (accepted, rejected, scanned) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    // A fixed seed: CI sees the same 50,000 lines every run, so a failure
    // is reproducible and never blocks an unrelated change by chance.
    let config = Config { cases: 50_000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    // One scanner sees every line, as a member's rows are seen: its key
    // predictions come from whichever line came before.
    let shared = std::cell::RefCell::new(RowScanner::default());
    runner
        .run(&line(), |line| {
            let serde = outcome(&line, None);
            let fresh = outcome(&line, Some(&mut RowScanner::default()));
            let scan = outcome(&line, Some(&mut shared.borrow_mut()));
            if scan != serde || fresh != serde {
                return Err(TestCaseError::fail(format!(
                    "{}\n  scan:  {scan}\n  fresh: {fresh}\n  serde: {serde}",
                    String::from_utf8_lossy(&line)
                )));
            }
            let counter = if scan.starts_with("ok") { &accepted } else { &rejected };
            counter.set(counter.get() + 1);
            if RowScanner::default().scan_into(&line, &mut Default::default()) {
                scanned.set(scanned.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    // Every side is exercised: rows read, rows refused, and rows the scan
    // answered itself.
    let (accepted, rejected, scanned) = (accepted.get(), rejected.get(), scanned.get());
    println!("{accepted} read ({scanned} by the scan), {rejected} refused");
    assert!(
        accepted > 10_000 && rejected > 10_000 && scanned > 7_500,
        "{accepted} read ({scanned} by the scan), {rejected} refused"
    );
}

/// One scanner reads each member's rows in order, as decode does, and
/// predicts the values that repeat from the row before: rows whose values
/// repeat, grow, shrink, move, vanish, come back twice or break must still
/// read as serde reads them, row by row.
#[test]
fn the_scan_and_serde_agree_on_rows_that_repeat_their_values() {
    let (lines, scanned) = (Cell::new(0u32), Cell::new(0u32));
    let config = Config { cases: 3_000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&run(), |rows| {
            let mut scanner = RowScanner::default();
            for (k, line) in rows.iter().enumerate() {
                let serde = outcome(line, None);
                let scan = outcome(line, Some(&mut scanner));
                if scan != serde {
                    let before: Vec<_> = rows[..k].iter().map(|l| String::from_utf8_lossy(l)).collect();
                    return Err(TestCaseError::fail(format!(
                        "row {k}: {}\n  scan:  {scan}\n  serde: {serde}\n  rows before: {before:#?}",
                        String::from_utf8_lossy(line)
                    )));
                }
                lines.set(lines.get() + 1);
                if RowScanner::default().scan_into(line, &mut Default::default()) {
                    scanned.set(scanned.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    let (lines, scanned) = (lines.get(), scanned.get());
    println!("{lines} rows, {scanned} answered by the scan");
    assert!(scanned > lines / 4, "{scanned} of {lines} rows answered by the scan");
}
