//! `index.jsonl`: the receiver's list of shipped episodes.
//!
//! Malformed lines are reported with their line number and skipped; they never
//! stop a run. When the same episode appears twice the later row wins.

use crate::archive::is_safe_component;
use crate::model::{EpisodeKey, Problem};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One row of the index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IndexEntry {
    /// `host_id` + `episode_id`: the only fields an index row must have.
    pub key: EpisodeKey,
    /// sha256 of the archive as shipped, lower-case hex.
    pub sha256: Option<String>,
    /// Archive size as shipped.
    pub bytes: Option<u64>,
    /// When the receiver stored it.
    pub received_at_ns: Option<i64>,
    /// 1-based line in the index (of the winning row).
    pub line: u64,
}

/// The index as read: one entry per episode, in key order, and the problems.
#[derive(Clone, Debug, Default)]
pub struct IndexScan {
    /// The well-formed rows, in file order.
    pub entries: Vec<IndexEntry>,
    /// One per malformed line, naming it, for the run to skip and report.
    pub problems: Vec<Problem>,
    /// Non-blank lines read.
    pub lines: u64,
}

/// Parses one index line. `Ok(None)` for a blank line.
pub fn parse_index_line(text: &str, line: u64) -> Result<Option<IndexEntry>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let string = |name: &str| -> Result<String, String> {
        let s = obj.get(name).and_then(|v| v.as_str()).ok_or_else(|| format!("missing string field {name:?}"))?;
        if !is_safe_component(s) {
            return Err(format!("{name} {s:?} is not a safe file name"));
        }
        Ok(s.to_string())
    };
    let key = EpisodeKey { host_id: string("host_id")?, episode_id: string("episode_id")? };
    Ok(Some(IndexEntry {
        key,
        sha256: obj.get("sha256").and_then(|v| v.as_str()).map(|s| s.to_ascii_lowercase()),
        bytes: obj.get("bytes").and_then(|v| v.as_u64()),
        received_at_ns: obj.get("received_at_ns").and_then(|v| v.as_i64()),
        line,
    }))
}

/// Parses index text. `file` names the index in problems.
pub fn parse_index(text: &[u8], file: &str) -> IndexScan {
    let mut latest: BTreeMap<EpisodeKey, IndexEntry> = BTreeMap::new();
    let mut scan = IndexScan::default();
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let parsed =
            std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}")).and_then(|t| parse_index_line(t, line));
        match parsed {
            Ok(None) => {}
            Ok(Some(entry)) => {
                scan.lines += 1;
                latest.insert(entry.key.clone(), entry);
            }
            Err(message) => {
                scan.lines += 1;
                scan.problems.push(Problem::at(file, Some(line), message));
            }
        }
    }
    scan.entries = latest.into_values().collect();
    scan
}

/// Reads and parses an index file.
pub fn read_index(path: &Path) -> std::io::Result<IndexScan> {
    let bytes = std::fs::read(path)?;
    Ok(parse_index(&bytes, &path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_row_wins_blank_lines_skip_and_bad_lines_are_reported() {
        let text = br#"{"host_id":"h","episode_id":"a","sha256":"AB"}

not json
{"host_id":"h","episode_id":"a","bytes":5,"extra":1}
{"host_id":"h"}
{"host_id":"../x","episode_id":"b"}
[1,2]
{"host_id":"g","episode_id":"z"}"#;
        let scan = parse_index(text, "index.jsonl");
        assert_eq!(scan.entries.len(), 2);
        assert_eq!(scan.entries[0].key.host_id, "g");
        let a = &scan.entries[1];
        assert_eq!(a.bytes, Some(5));
        assert_eq!(a.sha256, None, "the later row wins whole");
        assert_eq!(a.line, 4);
        let lines: Vec<_> = scan.problems.iter().map(|p| p.line.unwrap()).collect();
        assert_eq!(lines, vec![3, 5, 6, 7]);
        assert!(scan.problems[0].to_string().starts_with("index.jsonl:3: not JSON"));
        assert!(scan.problems[2].message.contains("not a safe file name"));
    }
}
