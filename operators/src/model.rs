//! The types that flow between operators: keys, problems, decoded and aligned
//! episodes. Telemetry is held as plain column vectors per source (one vector per
//! channel), never as one object per row.

use crate::channels::{Phase, Source, CHANNELS};
use crate::shared_values::SharedValues;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Identity of an episode in the receiver store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EpisodeKey {
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id, unique on its host.
    pub episode_id: String,
}

impl EpisodeKey {
    /// A hash that is the same in every process and on every machine (FNV-1a),
    /// used to spread episodes over workers.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.host_id.bytes().chain([b'/']).chain(self.episode_id.bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}

impl fmt::Display for EpisodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host_id, self.episode_id)
    }
}

/// Something wrong with the input, located as precisely as we can: the file (or
/// archive member) and the 1-based line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// File or archive member the problem is in.
    pub member: Option<String>,
    /// 1-based line number within the member.
    pub line: Option<u64>,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    /// A problem with no particular location.
    pub fn new(message: impl Into<String>) -> Problem {
        Problem { member: None, line: None, message: message.into() }
    }

    /// A problem in a member, optionally at a line.
    pub fn at(member: &str, line: Option<u64>, message: impl Into<String>) -> Problem {
        Problem { member: Some(member.to_string()), line, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.member, self.line) {
            (Some(m), Some(l)) => write!(f, "{m}:{l}: {}", self.message),
            (Some(m), None) => write!(f, "{m}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Why an archive could not be read at all (the `errored` outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCode {
    /// No archive at the indexed path.
    MissingArchive,
    /// The archive could not be read.
    IoError,
    /// zstd or tar damage.
    CorruptArchive,
    /// Over the decompressed size limits of `[decode]`.
    TooLarge,
}

impl FailureCode {
    /// The reason code of SPEC section 5.
    pub fn code(self) -> &'static str {
        match self {
            FailureCode::MissingArchive => "missing_archive",
            FailureCode::IoError => "io_error",
            FailureCode::CorruptArchive => "corrupt_archive",
            FailureCode::TooLarge => "too_large",
        }
    }
}

/// An archive that could not be read, with what is known about its bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The reason code validation reports.
    pub code: FailureCode,
    /// Names the file (and member, when inside the archive) and the problem.
    pub problem: Problem,
    /// Size of the archive file, when it could be read.
    pub bytes: Option<u64>,
    /// sha256 of the archive file, when it could be read.
    pub sha256: Option<String>,
}

/// State of a required or optional member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MemberState<T> {
    /// Not in the archive.
    Missing,
    /// Present but unusable; the problem says why.
    Invalid(Problem),
    /// Present and parsed.
    Present(T),
}

/// What validation and classification read from `meta.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// `sample.name`, when the sample is an object with a string name.
    pub sample_name: Option<String>,
    /// `sample.profile`.
    pub profile: Option<String>,
    /// `exploit.module_name`.
    pub module_name: Option<String>,
    /// `result.duration_observed_s`.
    pub duration_observed_s: Option<f64>,
    /// `result.rows_<source>`, in [`Source::ALL`] order.
    pub rows: [Option<u64>; 4],
}

/// One label row: the raw phase name (checked by validation) and its wall time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// The phase name as written (an unknown one rejects the episode).
    pub phase: String,
    /// When the phase began (CLOCK_REALTIME, ns).
    pub t_wall_ns: i64,
}

/// One orchestration event, reduced to what classification reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's name (`workload_started`, `workload_killed`, ...).
    pub event: String,
    /// `pre_kill_probe.yes`, as a number (strings are parsed).
    pub probe_yes: Option<f64>,
}

/// How the archive's members were laid out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Some member is not under a top-level folder named after the episode.
    pub prefix_mismatch: bool,
    /// The `DONE` marker was present.
    pub done_marker: bool,
    /// Members that were counted but not read (pcap, links, unknown files).
    pub other_members: u32,
    /// Members with absolute or `..` paths: never read.
    pub unsafe_members: u32,
}

/// One source's rows as columns, in file order (alignment sorts them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceColumns {
    /// Whether the member was in the archive at all.
    pub present: bool,
    /// Non-blank lines read, parseable or not.
    pub lines: u64,
    /// Lines that were unparseable or lacked an integer `t_wall_ns`.
    pub bad_lines: u64,
    /// `t_wall_ns` of every good row.
    pub t_wall_ns: Vec<i64>,
    /// One column per channel of this source (registry order); NaN = missing.
    /// Shared: alignment takes a column as it is when the rows are already
    /// in time order.
    pub columns: Vec<SharedValues>,
    /// `bucket_ms` per row (netflow only; NaN when missing).
    pub bucket_ms: Vec<f64>,
}

impl SourceColumns {
    /// Empty columns for `source`, with one column per channel of it.
    pub fn new(source: Source) -> SourceColumns {
        let columns = vec![SharedValues::default(); crate::channels::channels_of(source).count()];
        SourceColumns { columns, ..Default::default() }
    }

    /// Number of good rows.
    pub fn rows(&self) -> usize {
        self.t_wall_ns.len()
    }
}

/// What decoding learned about an episode, besides its telemetry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeFacts {
    /// Which episode these facts are of.
    pub key: EpisodeKey,
    /// Archive size in bytes.
    pub archive_bytes: u64,
    /// sha256 of the archive bytes, lower-case hex.
    pub sha256: String,
    /// The sha256 the index claims, if any.
    pub expected_sha256: Option<String>,
    /// Which members the archive holds, and how they are named.
    pub layout: Layout,
    /// `meta.json`: present and parsed, absent, or unreadable.
    pub meta: MemberState<Meta>,
    /// `labels.jsonl`: present and parsed, absent, or unreadable.
    pub labels: MemberState<Vec<Label>>,
    /// `None` when the archive has no `events.jsonl`.
    pub events: Option<Vec<Event>>,
    /// The first problems found (capped), for messages.
    pub problems: Vec<Problem>,
    /// How many problems there were in all.
    pub problem_count: u64,
}

impl EpisodeFacts {
    /// The meta when it parsed.
    pub fn meta(&self) -> Option<&Meta> {
        match &self.meta {
            MemberState::Present(m) => Some(m),
            _ => None,
        }
    }
}

/// Output of decode: facts plus per-source columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecodedEpisode {
    /// What decoding learned besides the telemetry.
    pub facts: EpisodeFacts,
    /// In [`Source::ALL`] order.
    pub sources: [SourceColumns; 4],
}

/// One channel's points on the episode's time axis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Seconds since `t0`, non-decreasing; most often its source's times,
    /// shared.
    pub t: SharedValues,
    /// The channel's value at each `t`; a gauge's column, shared, when it
    /// has a value on every row.
    pub v: SharedValues,
}

/// One source after alignment: sorted by `t_wall_ns`, duplicates resolved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlignedSource {
    /// Seconds since `t0` (empty when the episode has no `t0`), shared
    /// with the channel points taken from this source.
    pub t: SharedValues,
    /// Columns as in [`SourceColumns::columns`], reordered with `t`.
    pub columns: Vec<SharedValues>,
    /// `bucket_ms` per row (netflow only), reordered with `t`.
    pub bucket_ms: Vec<f64>,
}

/// Output of align: every channel as points on one time axis, and the phases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlignedEpisode {
    /// What decoding learned besides the telemetry.
    pub facts: EpisodeFacts,
    /// Per source: rows read, bad lines and good rows, for validation.
    pub row_counts: [RowCounts; 4],
    /// `t_wall_ns` of the first label row.
    pub t0_wall_ns: Option<i64>,
    /// Episode end in seconds since `t0`.
    pub t_end: Option<f64>,
    /// Label times (seconds since `t0`) and phases, in file order; labels with
    /// an unknown phase are left out.
    pub phases: Vec<(f64, Phase)>,
    /// Per source, sorted and de-duplicated rows.
    pub sources: [AlignedSource; 4],
    /// Per channel, in registry order.
    pub channels: Vec<Series>,
}

/// Row bookkeeping of one source, kept through alignment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Whether the archive holds the source's file.
    pub present: bool,
    /// Lines read.
    pub lines: u64,
    /// Lines that did not parse or lacked `t_wall_ns`.
    pub bad_lines: u64,
    /// Rows kept.
    pub good_rows: u64,
}

impl AlignedEpisode {
    /// The phase at time `t`: the last label (in file order) whose time is `<= t`.
    pub fn phase_at(&self, t: f64) -> Option<Phase> {
        phase_at(&self.phases, t)
    }

    /// The points of a channel by registry index.
    pub fn channel(&self, index: usize) -> &Series {
        &self.channels[index]
    }
}

/// The phase at time `t` given labels in file order (SPEC section 4).
pub fn phase_at(phases: &[(f64, Phase)], t: f64) -> Option<Phase> {
    phases.iter().rev().find(|(lt, _)| *lt <= t).map(|(_, p)| *p)
}

/// Number of channels in the registry, for fixed-size layouts.
pub const N_CHANNELS: usize = CHANNELS.len();
