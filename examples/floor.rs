//! Throughput floors for decoding, single-threaded, over a store's archives.
//! BENCHMARKS.md compares the pipeline against them.
//!
//! - `floor STORE` (the serde floor): zstd decompression, tar and serde
//!   parsing of every line into a `TelemetryRow`, in a minimal loop.
//! - `floor STORE --rows scan`: the same loop with the row scan
//!   (`epiflow_operators::rows::scan`) before serde, which parses only the
//!   lines the scan leaves to it: the new decoder's own floor.
//! - `floor STORE --operators [--rows serde|scan]`: the decode and align
//!   operators themselves (sha256, columns, problems, alignment), as one
//!   worker runs them.
//!
//! Usage: `cargo run --release --example floor -- STORE [--rows serde|scan] [--operators]`

use epiflow_operators::align::Align;
use epiflow_operators::archive::archive_path;
use epiflow_operators::decode::{Decode, RowParser};
use epiflow_operators::index::read_index;
use epiflow_operators::rows::scan::RowScanner;
use epiflow_operators::rows::TelemetryRow;
use epiflow_operators::Operator;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = std::path::PathBuf::from(args.first().ok_or("usage: floor STORE [--rows serde|scan] [--operators]")?);
    let rows = match args.iter().position(|a| a == "--rows").and_then(|i| args.get(i + 1)).map(String::as_str) {
        None | Some("serde") => RowParser::Serde,
        Some("scan") => RowParser::Scan,
        Some(other) => return Err(format!("--rows {other}: serde or scan").into()),
    };
    let operators = args.iter().any(|a| a == "--operators");
    let index = read_index(&store.join("index.jsonl"))?;
    let start = Instant::now();
    let (mut episodes, mut rows_read, mut decompressed) = (0u64, 0u64, 0u64);
    let decode = Decode { rows, ..Decode::default() };
    for entry in &index.entries {
        let path = archive_path(&store.join("episodes"), &entry.key.host_id, &entry.key.episode_id);
        let Ok(bytes) = std::fs::read(&path) else { continue };
        if operators {
            let file = path.display().to_string();
            if let Ok(decoded) = decode.decode_bytes(&bytes, entry.key.clone(), entry.sha256.clone(), &file) {
                let aligned = Align.apply(&decoded);
                rows_read += aligned.sources.iter().map(|s| s.t.len() as u64).sum::<u64>();
            }
        } else {
            let (rows, size) = parse_archive(&bytes, rows);
            rows_read += rows;
            decompressed += size;
        }
        episodes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"episodes\": {episodes}, \"rows\": {rows_read}, \"decompressed_mb\": {:.1}, \"wall_s\": {secs:.3}, \"episodes_per_s\": {:.1}, \"mb_per_s\": {:.1}}}",
        decompressed as f64 / 1e6,
        episodes as f64 / secs,
        decompressed as f64 / 1e6 / secs
    );
    Ok(())
}

/// Decompresses one archive and parses every line of every member as a
/// telemetry row; returns the rows parsed and the bytes decompressed.
fn parse_archive(bytes: &[u8], rows: RowParser) -> (u64, u64) {
    let (mut parsed, mut decompressed) = (0, 0);
    let Ok(decoder) = zstd::stream::read::Decoder::with_buffer(bytes) else { return (0, 0) };
    let mut archive = tar::Archive::new(decoder);
    let Ok(members) = archive.entries() else { return (0, 0) };
    let (mut line, mut row) = (Vec::new(), TelemetryRow::default());
    for member in members {
        let Ok(member) = member else { break };
        decompressed += member.header().size().unwrap_or(0);
        let mut scanner = (rows == RowParser::Scan).then(RowScanner::default);
        let mut reader = BufReader::new(member);
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // The scan answers what it can; serde parses the rest.
                    let scanned = scanner.as_mut().is_some_and(|s| s.scan_into(&line, &mut row));
                    parsed += (scanned || serde_json::from_slice::<TelemetryRow>(&line).is_ok()) as u64;
                }
            }
        }
        let _ = reader.read_to_end(&mut Vec::new());
    }
    (parsed, decompressed)
}
