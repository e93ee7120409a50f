//! Decode: archive bytes → episode facts and per-source column vectors.
//!
//! The archive is read into memory compressed (archives are small; this also
//! gives the sha256 for free). When its zstd frame says how large it is, and
//! that is within the archive limit, it is decompressed whole into one
//! buffer the thread reuses, and each member's lines are split in place;
//! otherwise (no size, damage) it is streamed: zstd → tar → one member at a
//! time → one line at a time. Both read the same tar the same way and give the
//! same episode. Nothing is extracted to disk and a member's path is only
//! ever compared as a string, never used as a file system path. Byte limits
//! on the decompressed archive, each member and each line guard against
//! decompression bombs.

mod decompress;

use crate::archive::sha256_hex;
use crate::channels::{channels_of, ChannelRead, Source, CHANNELS};
use crate::fingerprint::Operator;
use crate::lines::{LineSplitter, Member};
use crate::model::{
    DecodedEpisode, EpisodeFacts, EpisodeKey, Event, Failure, FailureCode, Label, Layout, MemberState, Meta, Problem,
    SourceColumns,
};
use crate::rows::scan::RowScanner;
use crate::rows::{EventRow, LabelRow, TelemetryRow};
use crate::shared_values::SharedValues;
pub use decompress::decompress_sized;
use decompress::{decompress_whole, with_context, with_whole_archive, LimitedReader};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::io::{self, Read};
use std::path::PathBuf;

/// Limits that bound the work and memory of one archive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeConfig {
    /// Largest decompressed archive (the tar stream), in bytes.
    pub max_archive_bytes: u64,
    /// Largest single member, in bytes.
    pub max_member_bytes: u64,
    /// Longer lines are counted as bad rows without being held in memory.
    pub max_line_bytes: u64,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig { max_archive_bytes: 2 << 30, max_member_bytes: 1 << 30, max_line_bytes: 16 << 20 }
    }
}

/// Where to find one episode, and what the index says its bytes hash to.
#[derive(Clone, Debug)]
pub struct DecodeInput {
    /// The episode, as the index names it.
    pub key: EpisodeKey,
    /// The archive, `STORE/episodes/<host_id>/<episode_id>.tar.zst`.
    pub path: PathBuf,
    /// The sha256 the index claims, compared by validation.
    pub expected_sha256: Option<String>,
}

/// How telemetry lines are parsed. Both give the same rows and the same
/// errors (the differential tests check it), so the choice is not part of
/// the operator's fingerprint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RowParser {
    /// A [`RowScanner`] first, serde for the lines it leaves to serde.
    #[default]
    Scan,
    /// serde alone: the reference the scan is tested and measured against.
    Serde,
}

/// The decode operator.
#[derive(Clone, Debug, Default)]
pub struct Decode {
    /// Size limits (SPEC section 5: `too_large`).
    pub config: DecodeConfig,
    /// How telemetry lines become columns.
    pub rows: RowParser,
}

/// At most this many problems are kept per episode (all are counted).
const KEPT_PROBLEMS: usize = 20;

impl Operator for Decode {
    const NAME: &'static str = "decode";
    const VERSION: u32 = 1;
    type Config = DecodeConfig;
    type Input = DecodeInput;
    type Output = Result<DecodedEpisode, Failure>;

    fn config(&self) -> &DecodeConfig {
        &self.config
    }

    fn apply(&self, input: &DecodeInput) -> Self::Output {
        let bytes = self.read_archive(&input.path)?;
        self.decode_bytes(&bytes, input.key.clone(), input.expected_sha256.clone(), &input.path.display().to_string())
    }
}

impl Decode {
    /// Reads an archive whole, refusing one over the size limit before
    /// reading it. Shared by decoding and by the cache, which hashes the bytes
    /// to learn whether it has seen them before.
    pub fn read_archive(&self, path: &std::path::Path) -> Result<Vec<u8>, Failure> {
        let file = path.display().to_string();
        let fail = |code, message: String| Failure {
            code,
            problem: Problem::at(&file, None, message),
            bytes: None,
            sha256: None,
        };
        let len = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(fail(FailureCode::MissingArchive, "archive file not found".into()))
            }
            Err(e) => return Err(fail(FailureCode::IoError, format!("cannot stat archive: {e}"))),
        };
        if len > self.config.max_archive_bytes {
            return Err(Failure {
                bytes: Some(len),
                ..fail(
                    FailureCode::TooLarge,
                    format!("archive is {len} bytes, over the {} byte limit", self.config.max_archive_bytes),
                )
            });
        }
        std::fs::read(path).map_err(|e| fail(FailureCode::IoError, format!("cannot read archive: {e}")))
    }

    /// Decodes archive bytes already in memory. `file` names the archive in
    /// problems.
    pub fn decode_bytes(
        &self,
        bytes: &[u8],
        key: EpisodeKey,
        expected_sha256: Option<String>,
        file: &str,
    ) -> Result<DecodedEpisode, Failure> {
        self.decode_hashed(bytes, sha256_hex(bytes), key, expected_sha256, file)
    }

    /// Decodes archive bytes whose sha256 the caller already computed.
    pub fn decode_hashed(
        &self,
        bytes: &[u8],
        sha256: String,
        key: EpisodeKey,
        expected_sha256: Option<String>,
        file: &str,
    ) -> Result<DecodedEpisode, Failure> {
        let failure = |code: FailureCode, member: Option<&str>, message: String| Failure {
            code,
            problem: Problem {
                member: Some(match member {
                    Some(m) => format!("{file}!{m}"),
                    None => file.to_string(),
                }),
                line: None,
                message,
            },
            bytes: Some(bytes.len() as u64),
            sha256: Some(sha256.clone()),
        };
        if bytes.is_empty() {
            return Err(failure(FailureCode::CorruptArchive, None, "empty file, not a zstd frame".into()));
        }
        with_context(|context| {
            let whole = with_whole_archive(|archive| {
                decompress_whole(context, bytes, self.config.max_archive_bytes, archive)
                    .then(|| self.read_members_in(archive, key.clone(), &failure))
            });
            whole.unwrap_or_else(|| {
                let decoder = zstd::stream::read::Decoder::with_context(bytes, context);
                self.read_members(decoder, key, &failure)
            })
        })
        .map(|state| state.finish(bytes.len() as u64, sha256.clone(), expected_sha256))
    }

    /// Reads the tar archive `archive`, decompressed whole, member by member,
    /// each member's lines split in place, or fails as `failure` says (as
    /// [`Self::read_members`] would on the same tar stream).
    fn read_members_in(
        &self,
        archive: &[u8],
        key: EpisodeKey,
        failure: &dyn Fn(FailureCode, Option<&str>, String) -> Failure,
    ) -> Result<DecodeState<'_>, Failure> {
        let mut tar = tar::Archive::new(io::Cursor::new(archive));
        let mut state = DecodeState::new(key, &self.config, self.rows);
        let damaged = |member: Option<&str>, e: &dyn std::fmt::Display| {
            failure(FailureCode::CorruptArchive, member, format!("damaged archive: {e}"))
        };
        let entries = tar.entries_with_seek().map_err(|e| damaged(None, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| damaged(None, &e))?;
            let (path, size) = self.sized_member(&entry, failure)?;
            // The stream would fail reading a member cut short, whatever
            // its type; seeking past the end would not.
            let text = usize::try_from(entry.raw_file_position())
                .ok()
                .and_then(|start| archive.get(start..start.checked_add(usize::try_from(size).ok()?)?))
                .ok_or_else(|| damaged(Some(&path), &"unexpected end of file"))?;
            state
                .member::<&[u8]>(entry.header().entry_type(), size, &path, Member::InMemory(text))
                .map_err(|e| damaged(Some(&path), &e))?;
        }
        Ok(state)
    }

    /// A member's path and size, or a failure when it is over the member
    /// limit.
    fn sized_member<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        failure: &dyn Fn(FailureCode, Option<&str>, String) -> Failure,
    ) -> Result<(String, u64), Failure> {
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.header().size().unwrap_or(0);
        if size > self.config.max_member_bytes {
            return Err(failure(
                FailureCode::TooLarge,
                Some(&path),
                format!("member is {size} bytes, over the {} byte limit", self.config.max_member_bytes),
            ));
        }
        Ok((path, size))
    }

    /// Reads the tar stream `decoder` gives member by member, or fails as
    /// `failure` says.
    fn read_members<R: Read>(
        &self,
        decoder: R,
        key: EpisodeKey,
        failure: &dyn Fn(FailureCode, Option<&str>, String) -> Failure,
    ) -> Result<DecodeState<'_>, Failure> {
        let over_limit = Cell::new(false);
        let limited = LimitedReader { inner: decoder, left: self.config.max_archive_bytes, over: &over_limit };
        let mut archive = tar::Archive::new(limited);
        let mut state = DecodeState::new(key, &self.config, self.rows);
        let stream_error = |member: Option<&str>, e: io::Error, over: bool| {
            if over {
                failure(
                    FailureCode::TooLarge,
                    member,
                    format!("decompressed archive exceeds {} bytes", self.config.max_archive_bytes),
                )
            } else {
                failure(FailureCode::CorruptArchive, member, format!("damaged archive: {e}"))
            }
        };
        let entries = archive.entries().map_err(|e| stream_error(None, e, over_limit.get()))?;
        for entry in entries {
            let entry = entry.map_err(|e| stream_error(None, e, over_limit.get()))?;
            let (path, size) = self.sized_member(&entry, failure)?;
            let kind = entry.header().entry_type();
            let text = Member::Streamed(entry.take(self.config.max_member_bytes));
            state.member(kind, size, &path, text).map_err(|e| stream_error(Some(&path), e, over_limit.get()))?;
        }
        Ok(state)
    }
}

/// What a member path means for reading.
enum MemberPath<'a> {
    /// Absolute or containing `..`: never read.
    Unsafe,
    /// Safe; `file` is the last component, `prefixed` whether it sits directly
    /// under a folder named after the episode.
    Safe { file: &'a str, prefixed: bool },
    /// A directory entry or an empty path.
    Folder,
}

fn classify_path<'a>(path: &'a str, episode_id: &str) -> MemberPath<'a> {
    if path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return MemberPath::Unsafe;
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    match parts.as_slice() {
        [] => MemberPath::Folder,
        [file] => MemberPath::Safe { file, prefixed: false },
        [first, .., file] => MemberPath::Safe { file, prefixed: *first == episode_id && parts.len() == 2 },
    }
}

/// Accumulates one archive's members.
struct DecodeState<'c> {
    key: EpisodeKey,
    config: &'c DecodeConfig,
    parser: RowParser,
    layout: Layout,
    meta: MemberState<Meta>,
    labels: MemberState<Vec<Label>>,
    events: Option<Vec<Event>>,
    sources: [SourceColumns; 4],
    /// Per source, how each of its channels is read from a row, in
    /// registry order: resolved once, not looked up per row and channel.
    channel_reads: [Vec<ChannelRead>; 4],
    problems: Vec<Problem>,
    problem_count: u64,
    lines: LineSplitter,
}

impl<'c> DecodeState<'c> {
    fn new(key: EpisodeKey, config: &'c DecodeConfig, parser: RowParser) -> Self {
        DecodeState {
            key,
            config,
            parser,
            layout: Layout::default(),
            meta: MemberState::Missing,
            labels: MemberState::Missing,
            events: None,
            sources: Source::ALL.map(SourceColumns::new),
            channel_reads: Source::ALL.map(|s| channels_of(s).map(|ch| CHANNELS[ch].read).collect()),
            problems: Vec::new(),
            problem_count: 0,
            lines: LineSplitter::default(),
        }
    }

    fn problem(&mut self, p: Problem) {
        self.problem_count += 1;
        if self.problems.len() < KEPT_PROBLEMS {
            self.problems.push(p);
        }
    }

    /// Reads one member of type `kind` whose header gives `size` bytes.
    fn member<R: Read>(&mut self, kind: tar::EntryType, size: u64, path: &str, text: Member<'_, R>) -> io::Result<()> {
        if kind.is_dir() {
            return Ok(());
        }
        let (file, prefixed) = match classify_path(path, &self.key.episode_id) {
            MemberPath::Folder => return Ok(()),
            MemberPath::Unsafe => {
                self.layout.unsafe_members += 1;
                self.layout.prefix_mismatch = true;
                self.problem(Problem::at(path, None, "unsafe member path (absolute or '..'); not read"));
                return Ok(());
            }
            MemberPath::Safe { file, prefixed } => (file, prefixed),
        };
        if !prefixed {
            self.layout.prefix_mismatch = true;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            self.layout.other_members += 1;
            return Ok(());
        }
        let size = size.min(self.config.max_member_bytes);
        match file {
            "meta.json" => self.meta = parse_meta(&text.bytes()?, file),
            "labels.jsonl" => self.read_labels(text, file)?,
            "events.jsonl" => self.read_events(text, file)?,
            "DONE" => self.layout.done_marker = true,
            other => match Source::from_member(other) {
                Some(source) => self.read_telemetry(text, source, size)?,
                None => self.layout.other_members += 1,
            },
        }
        Ok(())
    }

    fn read_labels<R: Read>(&mut self, text: Member<'_, R>, file: &str) -> io::Result<()> {
        let mut labels = Vec::new();
        let mut first_bad = None;
        let mut bad = Vec::new();
        let mut lines = std::mem::take(&mut self.lines);
        lines.lines_of(text, self.config.max_line_bytes, |line_no, line| {
            let parsed = line
                .map_err(|e| e.to_string())
                .and_then(|l| serde_json::from_str::<LabelRow>(utf8(l)?).map_err(|e| format!("bad label row: {e}")));
            match parsed {
                Ok(row) => labels.push(Label { phase: row.phase.unwrap_or_default(), t_wall_ns: row.t_wall_ns }),
                Err(message) => {
                    let p = Problem::at(file, Some(line_no), message);
                    first_bad.get_or_insert_with(|| p.clone());
                    bad.push(p);
                }
            }
        })?;
        self.lines = lines;
        for p in bad {
            self.problem(p);
        }
        self.labels = match first_bad {
            Some(p) => MemberState::Invalid(p),
            None => MemberState::Present(labels),
        };
        Ok(())
    }

    fn read_events<R: Read>(&mut self, text: Member<'_, R>, file: &str) -> io::Result<()> {
        let mut events = Vec::new();
        let mut bad = Vec::new();
        let mut lines = std::mem::take(&mut self.lines);
        lines.lines_of(text, self.config.max_line_bytes, |line_no, line| {
            let parsed = line
                .map_err(|e| e.to_string())
                .and_then(|l| serde_json::from_str::<EventRow>(utf8(l)?).map_err(|e| format!("bad event row: {e}")));
            match parsed {
                Ok(EventRow { event: Some(event), pre_kill_probe, .. }) => {
                    events.push(Event { event, probe_yes: pre_kill_probe.and_then(|p| p.yes.0) })
                }
                Ok(_) => bad.push(Problem::at(file, Some(line_no), "event row without an \"event\" name")),
                Err(message) => bad.push(Problem::at(file, Some(line_no), message)),
            }
        })?;
        self.lines = lines;
        for p in bad {
            self.problem(p);
        }
        self.events = Some(events);
        Ok(())
    }

    /// Reads a telemetry member of `size` bytes (as its header says) into
    /// the source's columns.
    fn read_telemetry<R: Read>(&mut self, text: Member<'_, R>, source: Source, size: u64) -> io::Result<()> {
        let mut scanner = (self.parser == RowParser::Scan).then(RowScanner::default);
        let file = source.member();
        let si = source.index();
        let mut cols = SourceColumns::new(source);
        cols.present = true;
        let reads = std::mem::take(&mut self.channel_reads[si]);
        let mut bad = Vec::new();
        let mut row = TelemetryRow::default();
        let mut lines = std::mem::take(&mut self.lines);
        let mut columns = vec![Vec::new(); cols.columns.len()];
        lines.lines_of(text, self.config.max_line_bytes, |line_no, line| {
            cols.lines += 1;
            let len = line.as_ref().map_or(0, |l| l.len());
            match line.map_err(|e| e.to_string()).and_then(|l| parse_telemetry(l, scanner.as_mut(), &mut row)) {
                Ok(t) => {
                    if cols.t_wall_ns.is_empty() {
                        let rows = rows_expected(size, len);
                        cols.t_wall_ns.reserve(rows);
                        columns.iter_mut().for_each(|c: &mut Vec<f64>| c.reserve(rows));
                        if source == Source::Netflow {
                            cols.bucket_ms.reserve(rows);
                        }
                    }
                    cols.t_wall_ns.push(t);
                    for (column, read) in columns.iter_mut().zip(&reads) {
                        column.push(read(&row).unwrap_or(f64::NAN));
                    }
                    if source == Source::Netflow {
                        cols.bucket_ms.push(row.bucket_ms.0.unwrap_or(f64::NAN));
                    }
                }
                Err(message) => {
                    cols.bad_lines += 1;
                    if bad.len() < KEPT_PROBLEMS {
                        bad.push(Problem::at(file, Some(line_no), message));
                    }
                }
            }
        })?;
        cols.columns = columns.into_iter().map(SharedValues::from).collect();
        self.lines = lines;
        self.channel_reads[si] = reads;
        let extra = cols.bad_lines.saturating_sub(bad.len() as u64);
        for p in bad {
            self.problem(p);
        }
        self.problem_count += extra;
        self.sources[si] = cols;
        Ok(())
    }

    fn finish(self, archive_bytes: u64, sha256: String, expected_sha256: Option<String>) -> DecodedEpisode {
        DecodedEpisode {
            facts: EpisodeFacts {
                key: self.key,
                archive_bytes,
                sha256,
                expected_sha256,
                layout: self.layout,
                meta: self.meta,
                labels: self.labels,
                events: self.events,
                problems: self.problems,
                problem_count: self.problem_count,
            },
            sources: self.sources,
        }
    }
}

/// Rows a member of `size` bytes holds when its rows are as long as its
/// first (`first_len` bytes and a newline), with an eighth more for rows
/// that run shorter: reserved once, the columns are not regrown and copied
/// as they fill. No more than one row per 32 bytes, however short the
/// first, so a member of odd rows cannot make a large reservation.
fn rows_expected(size: u64, first_len: usize) -> usize {
    let rows = size / (first_len as u64 + 1).max(32);
    usize::try_from(rows + rows / 8).unwrap_or(usize::MAX)
}

/// Parses one telemetry line into `row`: it must be a JSON object with an
/// integer `t_wall_ns`, which is returned. With a `scanner` the scan
/// answers the lines it can, serde the rest; without, serde answers all.
/// Either way the answer is the same. `row` is left in any state on error.
pub fn parse_telemetry(line: &[u8], scanner: Option<&mut RowScanner>, row: &mut TelemetryRow) -> Result<i64, String> {
    if scanner.is_some_and(|s| s.scan_into(line, row)) {
        if let Some(t) = row.t_wall_ns {
            return Ok(t);
        }
    }
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    *row = serde_json::from_str(utf8(line)?).map_err(|e| format!("unparseable row: {e}"))?;
    row.t_wall_ns.ok_or_else(|| "row has no t_wall_ns".into())
}

/// A line as text. JSON is UTF-8; serde_json would skip invalid bytes inside
/// fields it ignores, so lines are checked whole.
fn utf8(line: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(line).map_err(|e| format!("not UTF-8 at byte {}", e.valid_up_to()))
}

/// Parses `meta.json`: a JSON object with `schema_version: 1`; every other field
/// is optional and read leniently.
fn parse_meta(text: &[u8], file: &str) -> MemberState<Meta> {
    let value: serde_json::Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => return MemberState::Invalid(Problem::at(file, None, format!("not JSON: {e}"))),
    };
    let Some(obj) = value.as_object() else {
        return MemberState::Invalid(Problem::at(file, None, "not a JSON object"));
    };
    match obj.get("schema_version") {
        None => return MemberState::Invalid(Problem::at(file, None, "no schema_version")),
        Some(v) if v.as_i64() == Some(1) => {}
        Some(v) => return MemberState::Invalid(Problem::at(file, None, format!("unknown schema_version {v}"))),
    }
    let text_at = |path: &[&str]| -> Option<String> {
        let mut v = &value;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str().map(str::to_string)
    };
    let result = obj.get("result");
    let number = |name: &str| result.and_then(|r| r.get(name)).and_then(|v| v.as_f64());
    MemberState::Present(Meta {
        sample_name: text_at(&["sample", "name"]),
        profile: text_at(&["sample", "profile"]),
        module_name: text_at(&["exploit", "module_name"]),
        duration_observed_s: number("duration_observed_s"),
        rows: Source::ALL.map(|s| result.and_then(|r| r.get(format!("rows_{}", s.name()))).and_then(|v| v.as_u64())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tar_zst;
    use decompress::{CONTEXT, KEPT_CONTEXT_BYTES};
    use zstd::zstd_safe::DCtx;

    fn key() -> EpisodeKey {
        EpisodeKey { host_id: "h".into(), episode_id: "ep".into() }
    }

    fn decode(bytes: &[u8]) -> Result<DecodedEpisode, Failure> {
        Decode::default().decode_bytes(bytes, key(), None, "ep.tar.zst")
    }

    const META: &[u8] = br#"{"schema_version":1,"sample":{"name":"xmrig","profile":"cpu-saturate"},"exploit":{"module_name":"m"},"result":{"duration_observed_s":30,"rows_proc":3}}"#;

    #[test]
    fn members_become_columns_with_line_numbered_problems() {
        let proc = b"{\"t_wall_ns\": 10, \"cpu_user_jiffies\": 5}\n\nnot json\n{\"rss_bytes\": 1}\n{\"t_wall_ns\": 20, \"rss_bytes\": 7}\n";
        let bytes = tar_zst(&[
            ("ep/meta.json", META),
            ("ep/labels.jsonl", b"{\"phase\":\"clean\",\"t_wall_ns\":1}\n"),
            ("ep/telemetry-proc.jsonl", proc),
            ("ep/capture.pcap", b"\x00\x01"),
            ("ep/DONE", b""),
        ]);
        let d = decode(&bytes).unwrap();
        let p = &d.sources[0];
        assert_eq!((p.lines, p.bad_lines), (4, 2));
        assert_eq!(p.t_wall_ns, vec![10, 20]);
        assert_eq!(p.columns[0][0], 5.0);
        assert!(p.columns[0][1].is_nan());
        assert_eq!(p.columns[2][1], 7.0);
        let msgs: Vec<String> = d.facts.problems.iter().map(|p| p.to_string()).collect();
        assert!(msgs[0].starts_with("telemetry-proc.jsonl:3: "), "{msgs:?}");
        assert!(msgs[1].starts_with("telemetry-proc.jsonl:4: row has no t_wall_ns"), "{msgs:?}");
        assert!(d.facts.layout.done_marker);
        assert!(!d.facts.layout.prefix_mismatch);
        assert_eq!(d.facts.layout.other_members, 1);
        let meta = d.facts.meta().unwrap();
        assert_eq!(meta.sample_name.as_deref(), Some("xmrig"));
        assert_eq!(meta.rows[0], Some(3));
        assert_eq!(meta.duration_observed_s, Some(30.0));
    }

    #[test]
    fn unsafe_paths_are_never_read_and_flag_the_layout() {
        let bytes =
            tar_zst(&[("../meta.json", META), ("/abs/labels.jsonl", b"{\"phase\":\"clean\",\"t_wall_ns\":1}\n")]);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.facts.meta, MemberState::Missing);
        assert_eq!(d.facts.labels, MemberState::Missing);
        assert_eq!(d.facts.layout.unsafe_members, 2);
        assert!(d.facts.layout.prefix_mismatch);
    }

    #[test]
    fn other_folder_name_is_read_but_flagged() {
        let d = decode(&tar_zst(&[("other/meta.json", META)])).unwrap();
        assert!(d.facts.meta().is_some());
        assert!(d.facts.layout.prefix_mismatch);
    }

    #[test]
    fn damaged_inputs_are_failures_not_panics() {
        let good = tar_zst(&[("ep/meta.json", META)]);
        assert_eq!(decode(&good[..good.len() / 2]).unwrap_err().code, FailureCode::CorruptArchive);
        assert_eq!(decode(b"").unwrap_err().code, FailureCode::CorruptArchive);
        let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        assert_eq!(decode(&random).unwrap_err().code, FailureCode::CorruptArchive);
        let mut garbage_tar = vec![0u8; 512];
        garbage_tar[..8].copy_from_slice(b"ep/meta.");
        garbage_tar.extend(std::iter::repeat_n(0xAB, 2048));
        let e = decode(&zstd::encode_all(&garbage_tar[..], 1).unwrap()).unwrap_err();
        assert_eq!(e.code, FailureCode::CorruptArchive, "{e:?}");
        assert!(e.problem.to_string().contains("ep.tar.zst"));
    }

    #[test]
    fn an_archive_cut_inside_a_frame_leaves_the_next_one_on_the_thread_decoded_whole() {
        // Each thread reuses one zstd context: the failure must not leave
        // the cut frame's state behind for the next archive.
        let proc: Vec<u8> = (0..2000)
            .flat_map(|i| format!("{{\"t_wall_ns\": {i}, \"rss_bytes\": {}}}\n", i * 7).into_bytes())
            .collect();
        let good = tar_zst(&[("ep/meta.json", META), ("ep/telemetry-proc.jsonl", &proc)]);
        let alone = std::thread::spawn({
            let good = good.clone();
            move || decode(&good).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(decode(&good[..good.len() / 2]).unwrap_err().code, FailureCode::CorruptArchive);
        let after = decode(&good).unwrap();
        // Compared as printed: a missing value is NaN, which equals nothing.
        assert_eq!(format!("{after:?}"), format!("{alone:?}"));
        assert_eq!(after.sources[Source::Proc.index()].rows(), 2000);
    }

    #[test]
    fn a_thread_keeps_its_zstd_context_only_while_it_is_small() {
        let kept = || CONTEXT.with_borrow(|c| c.as_ref().map(|c| c.sizeof()));
        std::thread::spawn(move || {
            let members: &[(&str, &[u8])] = &[("ep/meta.json", META)];
            decode(&tar_zst(members)).unwrap();
            assert!(kept().is_some_and(|bytes| bytes <= KEPT_CONTEXT_BYTES), "{:?}", kept());
            // A frame of unknown size with a 64 MiB window: its buffer goes
            // when the archive is read.
            let mut long = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
            long.window_log(26).unwrap();
            long.long_distance_matching(true).unwrap();
            std::io::Write::write_all(&mut long, &crate::test_support::tar_bytes(members)).unwrap();
            decode(&long.finish().unwrap()).unwrap();
            assert_eq!(kept(), None);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn limits_stop_decompression_bombs() {
        let big = vec![b'x'; 1 << 20];
        let bytes = tar_zst(&[("ep/telemetry-proc.jsonl", &big)]);
        let small =
            Decode { config: DecodeConfig { max_archive_bytes: 64 << 10, ..Default::default() }, ..Decode::default() };
        let e = small.decode_bytes(&bytes, key(), None, "f").unwrap_err();
        assert_eq!(e.code, FailureCode::TooLarge);
        let small =
            Decode { config: DecodeConfig { max_member_bytes: 1000, ..Default::default() }, ..Decode::default() };
        let e = small.decode_bytes(&bytes, key(), None, "f").unwrap_err();
        assert_eq!(e.code, FailureCode::TooLarge);
        assert!(e.problem.to_string().contains("telemetry-proc.jsonl"));
    }

    /// `tar` compressed as one frame that does not say its size: decode
    /// streams it.
    fn streamed_frame(tar: &[u8]) -> Vec<u8> {
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        std::io::Write::write_all(&mut encoder, tar).unwrap();
        let frame = encoder.finish().unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&frame).ok(), Some(None));
        frame
    }

    /// `tar` compressed as one frame that says its size: decode reads it
    /// whole.
    fn sized_frame(tar: &[u8]) -> Vec<u8> {
        let frame = zstd::encode_all(tar, 3).unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&frame).ok(), Some(Some(tar.len() as u64)));
        frame
    }

    proptest::proptest! {
        /// Whole or streamed, an archive decodes to the same episode: the
        /// same columns, line numbers, problems and layout.
        #[test]
        fn an_archive_decodes_the_same_whole_or_streamed(
            lines in proptest::collection::vec(proptest::sample::select(vec![
                "{\"t_wall_ns\": 10, \"rss_bytes\": 5}",
                "{\"t_wall_ns\": 7, \"cpu_user_jiffies\": 2.5}\r",
                "",
                "  ",
                "not json",
                "{\"rss_bytes\": 1}",
                "{\"t_wall_ns\": 30, \"rss_bytes\": 123456789012345678901234567890}",
            ]), 0..40),
            final_newline in proptest::bool::ANY,
            max_line_bytes in proptest::sample::select(vec![20u64, 1 << 20]),
            prefix in proptest::sample::select(vec!["ep/", "other/", "../", ""]),
        ) {
            let mut proc = lines.join("\n").into_bytes();
            if final_newline {
                proc.push(b'\n');
            }
            let (meta, labels, telemetry) =
                (format!("{prefix}meta.json"), format!("{prefix}labels.jsonl"), format!("{prefix}telemetry-proc.jsonl"));
            let tar = crate::test_support::tar_bytes(&[
                (&meta, META),
                (&labels, b"{\"phase\":\"clean\",\"t_wall_ns\":1}\n\nbad\n"),
                ("ep/capture.pcap", b"\x00\x01"),
                (&telemetry, &proc),
                ("ep/DONE", b""),
            ]);
            let decode = Decode { config: DecodeConfig { max_line_bytes, ..Default::default() }, ..Decode::default() };
            let of = |frame: &[u8]| format!("{:?}", decode.decode_bytes(frame, key(), None, "f").map(|d| (d.facts.problems, d.facts.layout, d.sources)));
            proptest::prop_assert_eq!(of(&sized_frame(&tar)), of(&streamed_frame(&tar)));
        }
    }

    #[test]
    fn only_a_frame_that_says_its_size_within_the_limit_is_read_whole() {
        let tar = crate::test_support::tar_bytes(&[("ep/meta.json", META)]);
        let (sized, mut context, mut whole) = (sized_frame(&tar), DCtx::create(), Vec::new());
        assert!(decompress_whole(&mut context, &sized, tar.len() as u64, &mut whole));
        assert_eq!(whole, tar);
        assert!(!decompress_whole(&mut context, &sized, tar.len() as u64 - 1, &mut whole), "over the limit");
        assert!(!decompress_whole(&mut context, &sized[..sized.len() - 1], u64::MAX, &mut whole), "cut short");
        assert!(!decompress_whole(&mut context, &streamed_frame(&tar), u64::MAX, &mut whole), "no size");
    }

    #[test]
    fn a_tar_cut_short_inside_a_whole_frame_is_damaged_either_way() {
        // Cut inside a telemetry member, and inside a member that is not
        // read (whose bytes a whole archive would seek past).
        let tar = crate::test_support::tar_bytes(&[
            ("ep/telemetry-proc.jsonl", &[b'\n'; 3000]),
            ("ep/capture.pcap", &[0; 3000]),
        ]);
        for cut in [1500, 512 + 3072 + 512 + 1500] {
            for frame in [sized_frame(&tar[..cut]), streamed_frame(&tar[..cut])] {
                let e = decode(&frame).unwrap_err();
                assert_eq!(e.code, FailureCode::CorruptArchive, "{e:?}");
            }
        }
    }

    #[test]
    fn columns_are_reserved_for_the_rows_a_member_holds_and_never_more_than_one_per_32_bytes() {
        // 1,000 rows of 99 bytes and a newline: room for them and an eighth more.
        assert_eq!(rows_expected(100_000, 99), 1_125);
        // A first row of 2 bytes counts as 32: a short row cannot ask for much.
        assert_eq!(rows_expected(3_200, 2), 112);
        assert_eq!(rows_expected(0, 500), 0);
    }

    #[test]
    fn overlong_and_non_utf8_lines_are_bad_rows() {
        let mut proc = vec![b'x'; 5000];
        proc.extend_from_slice(b"\n{\"t_wall_ns\": 1, \"ignored\": \"\xff\xfe\"}\n{\"t_wall_ns\": 2}\n");
        let bytes = tar_zst(&[("ep/telemetry-proc.jsonl", &proc)]);
        let d = Decode { config: DecodeConfig { max_line_bytes: 1000, ..Default::default() }, ..Decode::default() }
            .decode_bytes(&bytes, key(), None, "f")
            .unwrap();
        assert_eq!((d.sources[0].lines, d.sources[0].bad_lines), (3, 2));
        assert!(d.facts.problems[0].message.contains("longer than 1000 bytes"));
        assert_eq!(d.facts.problems[1].message, "not UTF-8 at byte 29");
    }

    #[test]
    fn meta_schema_is_checked() {
        assert!(matches!(parse_meta(b"{}", "m"), MemberState::Invalid(_)));
        assert!(matches!(parse_meta(br#"{"schema_version":2}"#, "m"), MemberState::Invalid(_)));
        assert!(matches!(parse_meta(b"[", "m"), MemberState::Invalid(_)));
        let MemberState::Present(m) = parse_meta(br#"{"schema_version":1,"sample":"odd"}"#, "m") else { panic!() };
        assert_eq!(m.sample_name, None);
    }
}
