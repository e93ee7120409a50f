//! The row scan alone, over telemetry lines held in memory: what the scan
//! costs per byte on this machine, without zstd, tar or the operators
//! around it. Reads the first `N` archives of a store into memory, then
//! scans every member's lines with one `RowScanner` per member (as decode
//! does), best of five passes, and prints MB/s per source.
//!
//! Usage: `cargo run --release -p epiflow-operators --example scan_lines -- STORE [N]`

use epiflow_operators::archive::archive_path;
use epiflow_operators::index::read_index;
use epiflow_operators::rows::scan::RowScanner;
use epiflow_operators::rows::TelemetryRow;
use std::io::Read;
use std::time::Instant;

const SOURCES: [&str; 4] = ["telemetry-proc", "telemetry-guest", "telemetry-qmp", "netflow"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = std::path::PathBuf::from(args.first().ok_or("usage: scan_lines STORE [N]")?);
    let n: usize = args.get(1).map_or(Ok(50), |a| a.parse())?;
    let index = read_index(&store.join("index.jsonl"))?;
    // Per source: each member's text.
    let mut members: [Vec<Vec<u8>>; 4] = Default::default();
    for entry in index.entries.iter().take(n) {
        let path = archive_path(&store.join("episodes"), &entry.key.host_id, &entry.key.episode_id);
        let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(std::fs::File::open(&path)?)?);
        for member in archive.entries()? {
            let mut member = member?;
            let name = member.path()?.to_string_lossy().into_owned();
            if let Some(k) = SOURCES.iter().position(|s| name.ends_with(&format!("{s}.jsonl"))) {
                let mut text = Vec::new();
                member.read_to_end(&mut text)?;
                members[k].push(text);
            }
        }
    }
    let (mut all_bytes, mut all_secs) = (0usize, 0.0);
    for (source, texts) in SOURCES.iter().zip(&members) {
        let bytes: usize = texts.iter().map(Vec::len).sum();
        let lines: Vec<Vec<&[u8]>> =
            texts.iter().map(|t| t.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect()).collect();
        let (mut best, mut answered) = (f64::INFINITY, 0usize);
        for _ in 0..5 {
            let start = Instant::now();
            let mut row = TelemetryRow::default();
            answered = 0;
            for member in &lines {
                let mut scanner = RowScanner::default();
                for line in member {
                    answered += usize::from(scanner.scan_into(line, &mut row));
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{source}: {:.1} MB, {answered} lines scanned, {:.0} MB/s",
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / best
        );
        (all_bytes, all_secs) = (all_bytes + bytes, all_secs + best);
    }
    println!("all: {:.0} MB/s", all_bytes as f64 / 1e6 / all_secs);
    Ok(())
}
