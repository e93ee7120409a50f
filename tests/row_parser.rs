//! The row scan on a real synthetic store: every episode `epiflow synth`
//! writes decodes and aligns to the same episode, problems included, with
//! the scan as with serde alone; and the scan itself answers every line
//! serde reads (it does not lean on its fallback for the lab's rows).

mod common;
use common::*;
use epiflow_operators::align::Align;
use epiflow_operators::archive::archive_path;
use epiflow_operators::channels::Source;
use epiflow_operators::decode::{Decode, RowParser};
use epiflow_operators::index::read_index;
use epiflow_operators::rows::scan::RowScanner;
use epiflow_operators::rows::TelemetryRow;
use epiflow_operators::Operator;
use std::io::{BufRead, BufReader};

#[test]
fn synth_episodes_align_the_same_with_the_scan_as_with_serde() {
    let dir = tempfile::tempdir().unwrap();
    // Synth plants bad rows, truncated members, dead agents and meta without row counts.
    let store = synth_store(&dir.path().join("store"), 80, 3, 30);
    let index = read_index(&store.join("index.jsonl")).unwrap();
    let (scan, serde) = (Decode::default(), Decode { rows: RowParser::Serde, ..Decode::default() });
    let (mut episodes, mut problems) = (0, 0);
    for entry in &index.entries {
        let path = archive_path(&store.join("episodes"), &entry.key.host_id, &entry.key.episode_id);
        let bytes = std::fs::read(&path).unwrap();
        let decoded = |d: &Decode| {
            d.decode_bytes(&bytes, entry.key.clone(), entry.sha256.clone(), "a.tar.zst").map(|e| Align.apply(&e))
        };
        let (fast, slow) = (decoded(&scan), decoded(&serde));
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{}", entry.key);
        episodes += 1;
        problems += slow.map_or(0, |aligned| aligned.facts.problem_count);
    }
    assert_eq!(episodes, 80);
    assert!(problems > 0, "the store holds bad rows");
}

#[test]
fn the_scan_answers_every_row_serde_reads_in_a_synth_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = synth_store(&dir.path().join("store"), 30, 5, 30);
    let (mut rows, mut by_serde_only) = (0u64, Vec::new());
    let mut scanner = RowScanner::default();
    for path in paths_under(&store.join("episodes")) {
        let Ok(decoder) = zstd::stream::read::Decoder::new(std::fs::File::open(&path).unwrap()) else { continue };
        let mut archive = tar::Archive::new(decoder);
        let Ok(members) = archive.entries() else { continue };
        for member in members {
            let Ok(member) = member else { break };
            let name = member.path().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            if Source::from_member(&name).is_none() {
                continue;
            }
            for line in BufReader::new(member).split(b'\n') {
                let Ok(line) = line else { break };
                let parsed = std::str::from_utf8(&line).ok().and_then(|s| serde_json::from_str::<TelemetryRow>(s).ok());
                if parsed.is_some_and(|row| row.t_wall_ns.is_some()) {
                    rows += 1;
                    if !scanner.scan_into(&line, &mut TelemetryRow::default()) {
                        by_serde_only.push(String::from_utf8_lossy(&line).into_owned());
                    }
                }
            }
        }
    }
    assert!(rows > 25_000, "{rows} rows");
    assert!(
        by_serde_only.is_empty(),
        "{} of {rows} rows left to serde, e.g. {:?}",
        by_serde_only.len(),
        by_serde_only.first()
    );
}
