//! `epiflow synth`: a realistic, deterministic synthetic receiver store.
//!
//! Several rack hosts and one laptop-class host with 14 slots (whose host /proc
//! CPU signal is buried in contention), six workload profiles with their own
//! signatures, the phase schedule clean → exploiting → infected_idle →
//! infected_running → dormant, per-source `t_mono_ns` bases that disagree,
//! jitter, dropped, duplicated and late rows, and the defects of SPEC sections 5
//! and 6 at rates close to the real corpus. `truth.jsonl` records, per episode,
//! what was planted and what epiflow must report.

mod defects;
mod episode;
mod profile;
mod rng;

pub use defects::{expected_quality, Defect};
pub use profile::PROFILES;

use epiflow_operators::archive::{archive_path, sha256_hex};
use epiflow_pipelines::output::write_atomically;
pub use episode::HostTraits;
use episode::{pick_module, pick_sample, render, ulid, Host, Plan};
use rng::Rng;
use serde::Serialize;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Nominal episode length, seconds: long enough that the idle and dormant
/// stretches hold whole 10 s windows, as lab episodes do (`synth`'s default
/// and the demo's).
pub const DEFAULT_DURATION_S: f64 = 90.0;

/// What to synthesize.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// The store to write.
    pub out: PathBuf,
    /// Episodes to write.
    pub episodes: usize,
    /// Lab hosts (the last one a contended laptop).
    pub hosts: usize,
    /// The seed: the same seed, the same bytes.
    pub seed: u64,
    /// Nominal episode length, seconds.
    pub duration_s: f64,
    /// Generator threads.
    pub threads: usize,
}

/// One line of `truth.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct Truth {
    /// The lab host the episode ran on.
    pub host_id: String,
    /// Its id on that host.
    pub episode_id: String,
    /// The workload profile it ran.
    pub profile: &'static str,
    /// The sample's name.
    pub sample_name: &'static str,
    /// Whether the host is the contended laptop.
    pub laptop: bool,
    /// How the episode's host differs from the others.
    pub host_traits: HostTraits,
    /// Planted defects, by name.
    pub defects: Vec<Defect>,
    /// Harmless oddities that must *not* be reported (e.g. `busybox_probe`).
    pub quirks: Vec<&'static str>,
    /// The validation outcome and reasons epiflow must report.
    pub outcome: &'static str,
    /// The reasons of that outcome.
    pub reasons: Vec<&'static str>,
    /// The quality reasons epiflow must report; null when not classified.
    pub quality: Option<Vec<&'static str>>,
    /// `t_wall_ns` of its first label.
    pub t0_wall_ns: i64,
}

/// Summary of a synthesized store.
#[derive(Clone, Debug, Serialize)]
pub struct SynthReport {
    /// The store written.
    pub store: PathBuf,
    /// Episodes written.
    pub episodes: usize,
    /// Its lab hosts.
    pub hosts: Vec<String>,
    /// Bytes of archives written.
    pub bytes: u64,
}

/// The fleet: rack hosts plus one laptop when there are at least two hosts,
/// each with its own traits drawn from `seed`.
fn fleet(n: usize, seed: u64) -> Vec<Host> {
    let n = n.max(1);
    (0..n)
        .map(|i| {
            let laptop = n > 1 && i == n - 1;
            let traits = HostTraits::draw(laptop, &mut Rng::new(seed, u64::MAX - i as u64));
            match laptop {
                true => Host { id: "elliott-thinkpad".into(), slots: 14, laptop, traits },
                false => Host { id: format!("lab-rack-{:02}", i + 1), slots: 16, laptop, traits },
            }
        })
        .collect()
}

/// Base of synthetic wall clocks: 2026-04-24.
const EPOCH_NS: i64 = 1_777_000_000_000_000_000;

fn plan(config: &SynthConfig, hosts: &[Host], index: usize) -> Plan {
    let mut rng = Rng::new(config.seed, index as u64);
    let total_slots: u32 = hosts.iter().map(|h| h.slots).sum();
    let mut slot = rng.below(total_slots as usize) as u32;
    let host = hosts
        .iter()
        .find(|h| {
            if slot < h.slots {
                true
            } else {
                slot -= h.slots;
                false
            }
        })
        .unwrap_or(&hosts[0])
        .clone();
    // The laptop has no RAM to spare for mem-balloon.
    let profiles: &[&'static str] = if host.laptop { &PROFILES[..5] } else { &PROFILES };
    let profile = *rng.pick(profiles);
    let duration_s = config.duration_s * rng.range(0.95, 1.05);
    let start_ns = EPOCH_NS + (index as f64 * 7.3e9) as i64 + (rng.unit() * 2e9) as i64;
    let episode_id = ulid((start_ns / 1_000_000) as u64, &mut rng);
    let validation_defect = defects::draw(&defects::VALIDATION_RATES, rng.unit());
    let quality_defect = defects::draw(&defects::QUALITY_RATES, rng.unit());
    let phases = Plan::schedule(duration_s, &mut rng);
    Plan {
        sample: pick_sample(profile, &mut rng),
        module: pick_module(&mut rng),
        busybox_probe: quality_defect.is_none() && rng.chance(0.04),
        meta_has_duration: rng.chance(0.95),
        meta_has_rows: rng.chance(0.9) || validation_defect == Some(Defect::RowCountMismatch),
        with_pcap: rng.chance(0.1),
        seed: rng.next_u64(),
        host,
        episode_id,
        profile,
        duration_s,
        t0_wall_ns: start_ns,
        phases,
        validation_defect,
        quality_defect,
    }
}

/// The archive of a plan: members under one top folder, tarred and compressed.
fn archive(plan: &Plan) -> io::Result<Vec<u8>> {
    let folder = if plan.validation_defect == Some(Defect::PrefixMismatch) {
        format!("{}-{}", plan.host.id, plan.sample.0)
    } else {
        plan.episode_id.clone()
    };
    let mtime = (plan.t0_wall_ns / 1_000_000_000) as u64 + plan.duration_s as u64;
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in render(plan) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_uid(1000);
        header.set_gid(1000);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{folder}/{name}"), &data[..])?;
    }
    let mut bytes = zstd::bulk::compress(&tar.into_inner()?, 3)?;
    if plan.validation_defect == Some(Defect::TruncatedArchive) {
        bytes.truncate(bytes.len() * 11 / 20);
    }
    Ok(bytes)
}

/// One finished episode: its index row and truth row.
struct Shipped {
    index: usize,
    index_row: serde_json::Value,
    truth: Truth,
    bytes: u64,
}

fn ship(config: &SynthConfig, hosts: &[Host], index: usize) -> io::Result<Shipped> {
    let plan = plan(config, hosts, index);
    let bytes = archive(&plan)?;
    let path = archive_path(&config.out.join("episodes"), &plan.host.id, &plan.episode_id);
    write_atomically(&path, |w| w.write_all(&bytes))?;
    let sha = if plan.validation_defect == Some(Defect::ShaMismatch) {
        sha256_hex(plan.episode_id.as_bytes())
    } else {
        sha256_hex(&bytes)
    };
    let defects: Vec<Defect> = plan.validation_defect.into_iter().chain(plan.quality_defect).collect();
    let (outcome, reasons) = match plan.validation_defect.and_then(Defect::validation) {
        Some((outcome, reason)) => (outcome, vec![reason]),
        None => ("accepted", vec![]),
    };
    let received_at_ns = plan.t0_wall_ns + (plan.duration_s * 1e9) as i64 + 4_000_000_000;
    Ok(Shipped {
        index,
        index_row: serde_json::json!({
            "host_id": plan.host.id, "episode_id": plan.episode_id, "sha256": sha,
            "bytes": bytes.len(), "received_at_ns": received_at_ns,
        }),
        truth: Truth {
            host_id: plan.host.id.clone(),
            episode_id: plan.episode_id.clone(),
            profile: plan.profile,
            sample_name: plan.sample.0,
            laptop: plan.host.laptop,
            host_traits: plan.host.traits.clone(),
            quirks: if plan.busybox_probe { vec!["busybox_probe"] } else { vec![] },
            quality: expected_quality(plan.validation_defect, plan.quality_defect),
            defects,
            outcome,
            reasons,
            t0_wall_ns: plan.t0_wall_ns,
        },
        bytes: bytes.len() as u64,
    })
}

/// Writes the store: archives, `index.jsonl` in arrival order and `truth.jsonl`.
/// `progress` is called once per finished episode.
pub fn synthesize(config: &SynthConfig, progress: &(dyn Fn() + Sync)) -> io::Result<SynthReport> {
    let hosts = fleet(config.hosts, config.seed);
    let threads = config.threads.clamp(1, 64);
    let results: Vec<io::Result<Vec<Shipped>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let hosts = &hosts;
                scope.spawn(move || {
                    (t..config.episodes)
                        .step_by(threads)
                        .map(|i| {
                            let shipped = ship(config, hosts, i);
                            progress();
                            shipped
                        })
                        .collect::<io::Result<Vec<Shipped>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("a generator thread panicked"))))
            .collect()
    });
    let mut shipped = Vec::with_capacity(config.episodes);
    for r in results {
        shipped.extend(r?);
    }
    shipped.sort_by_key(|s| s.index);
    write_jsonl(&config.out.join("index.jsonl"), shipped.iter().map(|s| &s.index_row))?;
    write_jsonl(&config.out.join("truth.jsonl"), shipped.iter().map(|s| &s.truth))?;
    Ok(SynthReport {
        store: config.out.clone(),
        episodes: shipped.len(),
        hosts: hosts.into_iter().map(|h| h.id).collect(),
        bytes: shipped.iter().map(|s| s.bytes).sum(),
    })
}

fn write_jsonl<'a, T: Serialize + 'a>(path: &Path, rows: impl Iterator<Item = &'a T>) -> io::Result<()> {
    write_atomically(path, |w| {
        for row in rows {
            serde_json::to_writer(&mut *w, row)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}
