//! The throughput floor for `epiflow validate`: zstd decompression, tar and serde
//! parsing of every line alone, in a minimal single-threaded loop, over the same
//! archives. BENCHMARKS.md compares the pipeline against it.
//!
//! Usage: `cargo run --release --example floor -- STORE`

use epiflow_operators::archive::archive_path;
use epiflow_operators::index::read_index;
use epiflow_operators::rows::TelemetryRow;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: floor STORE")?);
    let index = read_index(&store.join("index.jsonl"))?;
    let start = Instant::now();
    let (mut episodes, mut rows, mut decompressed) = (0u64, 0u64, 0u64);
    let mut line = Vec::new();
    for entry in &index.entries {
        let path = archive_path(&store.join("episodes"), &entry.key.host_id, &entry.key.episode_id);
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let Ok(decoder) = zstd::stream::read::Decoder::with_buffer(&bytes[..]) else { continue };
        let mut archive = tar::Archive::new(decoder);
        let Ok(entries) = archive.entries() else { continue };
        for member in entries {
            let Ok(member) = member else { break };
            decompressed += member.header().size().unwrap_or(0);
            let mut reader = BufReader::new(member);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if serde_json::from_slice::<TelemetryRow>(&line).is_ok() {
                            rows += 1;
                        }
                    }
                }
            }
            let _ = reader.read_to_end(&mut Vec::new());
        }
        episodes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"episodes\": {episodes}, \"rows\": {rows}, \"decompressed_mb\": {:.1}, \"wall_s\": {secs:.3}, \"episodes_per_s\": {:.1}, \"mb_per_s\": {:.1}}}",
        decompressed as f64 / 1e6,
        episodes as f64 / secs,
        decompressed as f64 / 1e6 / secs
    );
    Ok(())
}
