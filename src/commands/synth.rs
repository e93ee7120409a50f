//! `epiflow synth`.

use super::{print_json, workers};
use crate::cli::Global;
use crate::progress;
use crate::synth::{synthesize, SynthConfig};
use epiflow_engine::{Error, Result};
use std::process::ExitCode;
use std::time::Instant;

pub fn run(g: &Global, episodes: usize, hosts: usize, seed: u64, duration_s: f64) -> Result<ExitCode> {
    let out = g.out.clone().ok_or_else(|| Error::Usage("synth needs --out STORE".into()))?;
    if !(duration_s.is_finite() && duration_s >= 5.0) {
        return Err(Error::Usage(format!("--duration-s must be at least 5 seconds, got {duration_s}")));
    }
    let config = SynthConfig { out: out.clone(), episodes, hosts, seed, duration_s, threads: workers(g) };
    let bar = progress::bar(episodes as u64, "synth", g.quiet || g.json);
    let start = Instant::now();
    let report = synthesize(&config, &|| bar.inc(1)).map_err(|e| Error::io("cannot write store", &out, e))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    if g.json {
        print_json(&serde_json::json!({
            "store": report.store, "episodes": report.episodes, "hosts": report.hosts,
            "bytes": report.bytes, "wall_s": secs,
        }))?;
    } else {
        println!(
            "wrote {} episodes ({:.1} MB) from {} hosts to {} in {secs:.1} s",
            report.episodes,
            report.bytes as f64 / 1e6,
            report.hosts.len(),
            report.store.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
