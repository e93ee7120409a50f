//! One synthetic episode: its plan (host, profile, phases, defects) and its
//! rendering into archive members, row by row, as the lab's tools write them.

use super::defects::Defect;
use super::profile::{load, samples, Load, IDLE, MODULES};
use super::rng::Rng;
use epiflow_operators::channels::{Phase, Source};
use std::io::Write;

/// A lab host of the synthetic fleet.
#[derive(Clone, Debug)]
pub struct Host {
    pub id: String,
    /// Parallel fleet slots.
    pub slots: u32,
    /// A laptop-class host: 14 slots contend for few cores, so host /proc CPU of
    /// one VM is flat whatever its workload does.
    pub laptop: bool,
    pub traits: HostTraits,
}

/// How one lab host differs from the others, as real hosts do: drawn from
/// the seed per host and written to `truth.jsonl` with each episode.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HostTraits {
    /// Work per jiffy against the reference host: the same workload takes
    /// `1 / cpu_speed` as many CPU jiffies (0.7–1.5).
    pub cpu_speed: f64,
    /// The guest's memory (2 or 4 GiB) and what its OS uses at rest.
    pub mem_total_bytes: u64,
    /// What the guest's OS uses at rest.
    pub mem_baseline_bytes: u64,
    /// How the guest kernel's load average answers runnable tasks (0.8–1.3).
    pub load_gain: f64,
    /// Runnable tasks of the guest at rest (its agent, its kernel threads):
    /// a chattier guest's clean load average sits where a quieter guest's
    /// sits just after a workload.
    pub background_runnable: f64,
    /// The guest's page cache at rest, bytes.
    pub mem_cached_bytes: u64,
    /// Background traffic on the host's bridge, bytes/s in and out.
    pub background_in_bps: f64,
    /// Bytes/s out.
    pub background_out_bps: f64,
    /// Each source's wall-clock offset, ms (proc, guest, qmp, netflow).
    pub clock_offset_ms: [f64; 4],
    /// Relative noise of every rate (the laptop's is highest).
    pub noise: f64,
    /// Chance that the guest agent's counters reset in an episode (an
    /// older agent resets more often).
    pub counter_reset: f64,
}

impl HostTraits {
    /// The reference host: what every host was before hosts differed.
    pub const REFERENCE: HostTraits = HostTraits {
        cpu_speed: 1.0,
        mem_total_bytes: 2 << 30,
        mem_baseline_bytes: 547_483_648,
        load_gain: 1.0,
        background_runnable: 0.05,
        mem_cached_bytes: 400_000_000,
        background_in_bps: 0.0,
        background_out_bps: 0.0,
        clock_offset_ms: [0.0; 4],
        noise: 0.08,
        counter_reset: 0.02,
    };

    /// A host's traits from `rng`; the laptop is slower and noisier.
    pub fn draw(laptop: bool, rng: &mut Rng) -> HostTraits {
        let mem_total_bytes: u64 = if rng.chance(0.5) { 2 << 30 } else { 4 << 30 };
        HostTraits {
            cpu_speed: if laptop { rng.range(0.7, 0.85) } else { rng.range(0.8, 1.5) },
            mem_total_bytes,
            mem_baseline_bytes: (mem_total_bytes as f64 * rng.range(0.2, 0.35)) as u64,
            load_gain: rng.range(0.8, 1.3),
            background_runnable: rng.range(0.02, 0.35),
            mem_cached_bytes: (mem_total_bytes as f64 * rng.range(0.08, 0.2)) as u64,
            background_in_bps: rng.range(0.0, 3000.0),
            background_out_bps: rng.range(0.0, 1200.0),
            clock_offset_ms: [0; 4].map(|_| rng.range(-25.0, 25.0)),
            noise: if laptop { 0.16 } else { rng.range(0.05, 0.1) },
            counter_reset: if rng.chance(0.25) { 0.2 } else { 0.02 },
        }
    }
}

/// Everything decided about an episode before rendering it.
#[derive(Clone, Debug)]
pub struct Plan {
    pub host: Host,
    pub episode_id: String,
    pub profile: &'static str,
    pub sample: (&'static str, &'static str, &'static str),
    pub module: &'static str,
    /// Episode length in seconds.
    pub duration_s: f64,
    pub t0_wall_ns: i64,
    /// Label times, seconds since t0, with their phases.
    pub phases: Vec<(f64, Phase)>,
    pub validation_defect: Option<Defect>,
    pub quality_defect: Option<Defect>,
    /// The guest's probe reports no workload although it ran (busybox guests).
    pub busybox_probe: bool,
    /// Whether `result` carries `duration_observed_s` and `rows_*`.
    pub meta_has_duration: bool,
    pub meta_has_rows: bool,
    pub with_pcap: bool,
    /// Seed of the rendering stream.
    pub seed: u64,
}

/// The phases in schedule order, each with the range its share of the
/// episode is drawn from (the shares are then scaled to fill the episode).
/// Idle and dormant stretches are long enough that most of their windows
/// lie wholly inside them, as in the lab, rather than straddling a
/// neighbour whose signature would give them away.
const SCHEDULE: [(Phase, (f64, f64)); 5] = [
    (Phase::Clean, (0.12, 0.22)),
    (Phase::Exploiting, (0.05, 0.09)),
    (Phase::InfectedIdle, (0.15, 0.28)),
    (Phase::InfectedRunning, (0.25, 0.40)),
    (Phase::Dormant, (0.18, 0.30)),
];

/// Seconds of telemetry before the first label (VM boot).
const PRE_ROLL_S: f64 = 2.0;

impl Plan {
    /// Draws the phase schedule: each phase's share from its range, scaled
    /// so the phases fill the episode.
    pub fn schedule(duration_s: f64, rng: &mut Rng) -> Vec<(f64, Phase)> {
        let shares = SCHEDULE.map(|(_, (lo, hi))| rng.range(lo, hi));
        let scale = duration_s / shares.iter().sum::<f64>();
        let mut t = 0.0;
        SCHEDULE
            .iter()
            .zip(shares)
            .map(|((phase, _), share)| {
                let start = t;
                t += share * scale;
                (start, *phase)
            })
            .collect()
    }

    /// Whether the sample's workload actually ran.
    fn workload_ran(&self) -> bool {
        !self.quality_defect.is_some_and(Defect::is_flat)
    }

    fn phase_at(&self, t: f64) -> Phase {
        epiflow_operators::model::phase_at(&self.phases, t).unwrap_or(Phase::Clean)
    }

    fn load_at(&self, t: f64) -> Load {
        let phase = self.phase_at(t);
        let effective = if self.workload_ran() || phase == Phase::Clean { phase } else { Phase::Clean };
        load(self.profile, effective).at(t)
    }
}

/// An archive member: name inside the top folder, bytes.
pub type Member = (String, Vec<u8>);

/// Renders the plan into members, in the order the lab's shipper writes them.
pub fn render(plan: &Plan) -> Vec<Member> {
    let mut rng = Rng::new(plan.seed, 0xE915);
    let defect = plan.validation_defect;
    let mut members: Vec<Member> = Vec::new();
    let mut telemetry: Vec<(Source, Vec<u8>, u64)> = Source::ALL
        .iter()
        .map(|s| {
            let (bytes, lines) = telemetry(plan, *s, &mut rng);
            (*s, bytes, lines)
        })
        .collect();
    match defect {
        Some(Defect::NoTelemetry) => telemetry.clear(),
        Some(Defect::NoNetflowCapture) => telemetry.retain(|(s, _, _)| *s != Source::Netflow),
        _ => {}
    }
    let rows: Vec<(Source, u64)> = telemetry.iter().map(|(s, _, n)| (*s, *n)).collect();
    match defect {
        Some(Defect::MissingMeta) => {}
        Some(Defect::BadMeta) => members.push(("meta.json".into(), bad_meta(&mut rng))),
        _ => members.push(("meta.json".into(), meta(plan, &rows))),
    }
    match defect {
        Some(Defect::MissingLabels) => {}
        Some(Defect::EmptyLabels) => members.push(("labels.jsonl".into(), Vec::new())),
        _ => members.push(("labels.jsonl".into(), labels(plan, &mut rng))),
    }
    members.push(("events.jsonl".into(), events(plan, &mut rng)));
    for (source, bytes, _) in telemetry {
        members.push((source.member().to_string(), bytes));
    }
    if plan.with_pcap {
        let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        pcap.extend((0..2048).map(|_| rng.next_u64() as u8));
        members.push(("capture.pcap".into(), pcap));
    }
    if defect != Some(Defect::NoDoneMarker) {
        members.push(("DONE".into(), Vec::new()));
    }
    members
}

fn meta(plan: &Plan, rows: &[(Source, u64)]) -> Vec<u8> {
    let (name, family, category) = plan.sample;
    let sample = if plan.quality_defect == Some(Defect::NoSample) {
        serde_json::Value::Null
    } else {
        serde_json::json!({
            "name": name, "kind": "real", "family": family, "category": category,
            "profile": plan.profile, "sha256": epiflow_operators::archive::sha256_hex(name.as_bytes()),
        })
    };
    let mut result = serde_json::Map::new();
    if plan.meta_has_duration {
        result.insert("duration_observed_s".into(), serde_json::json!((plan.duration_s * 1000.0).round() / 1000.0));
    }
    result.insert(
        "phases_observed".into(),
        serde_json::json!(plan.phases.iter().map(|(_, p)| p.name()).collect::<Vec<_>>()),
    );
    if plan.meta_has_rows {
        for (source, n) in rows {
            let claimed = if plan.validation_defect == Some(Defect::RowCountMismatch) && *source == Source::Proc {
                n + 37
            } else {
                *n
            };
            result.insert(format!("rows_{}", source.name()), serde_json::json!(claimed));
        }
    }
    let meta = serde_json::json!({
        "episode_id": plan.episode_id,
        "schema_version": 1,
        "host_id": plan.host.id,
        "sample": sample,
        "exploit": {"module_name": plan.module, "module": format!("exploit/unix/{}", plan.module)},
        "result": result,
    });
    serde_json::to_vec_pretty(&meta).unwrap_or_default()
}

fn bad_meta(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(0.5) {
        br#"{"episode_id": "?", "schema_version": 1, "sample": {"name": "tr"#.to_vec()
    } else {
        br#"{"schema_version": 2, "sample": null}"#.to_vec()
    }
}

fn labels(plan: &Plan, rng: &mut Rng) -> Vec<u8> {
    let mut rows: Vec<(f64, &str)> = plan.phases.iter().map(|(t, p)| (*t, p.name())).collect();
    match plan.validation_defect {
        Some(Defect::UnknownPhase) => rows[2].1 = "infected",
        Some(Defect::NonMonotonicLabels) => {
            let (a, b) = (rows[2].0, rows[3].0);
            rows[2].0 = b;
            rows[3].0 = a;
        }
        _ => {}
    }
    let mono_base = rng.range(1e3, 5e4);
    let mut out = Vec::new();
    let mut prev: Option<&str> = None;
    for (t, phase) in rows {
        let reason = match phase {
            "clean" => "snapshot_loaded",
            "exploiting" => "exploit_launched",
            "infected_idle" => "session_opened",
            "infected_running" => "workload_started",
            _ => "workload_killed",
        };
        let prev_json = prev.map(|p| format!("\"{p}\"")).unwrap_or_else(|| "null".into());
        let _ = writeln!(
            out,
            r#"{{"phase": "{phase}", "prev": {prev_json}, "reason": "{reason}", "t_mono_ns": {}, "t_wall_ns": {}}}"#,
            ((mono_base + t) * 1e9) as i64,
            plan.t0_wall_ns + (t * 1e9).round() as i64
        );
        prev = Some(phase);
    }
    out
}

fn events(plan: &Plan, rng: &mut Rng) -> Vec<u8> {
    let at = |t: f64| plan.t0_wall_ns + (t * 1e9).round() as i64;
    let start = |p: Phase| plan.phases.iter().find(|(_, q)| *q == p).map(|(t, _)| *t).unwrap_or(0.0);
    let mut rows: Vec<String> = vec![
        format!(r#"{{"event": "snapshot_load", "t_wall_ns": {}}}"#, at(-PRE_ROLL_S)),
        format!(
            r#"{{"event": "exploit_launch", "module": "{}", "t_wall_ns": {}}}"#,
            plan.module,
            at(start(Phase::Exploiting))
        ),
    ];
    let running = start(Phase::InfectedRunning);
    let dormant = start(Phase::Dormant);
    match plan.quality_defect {
        Some(Defect::NoWorkloadEvents) => rows.push(format!(
            r#"{{"event": "phase_transition", "to": "infected_running", "t_wall_ns": {}}}"#,
            at(running)
        )),
        Some(Defect::WorkloadFailed) => {
            rows.push(format!(r#"{{"event": "workload_setup", "t_wall_ns": {}}}"#, at(running - 1.0)));
            rows.push(format!(
                r#"{{"event": "workload_failed", "phase": "infected_running", "error": "EOF on serial", "t_wall_ns": {}}}"#,
                at(running)
            ));
        }
        _ => {
            let silent = plan.quality_defect == Some(Defect::WorkloadSilent) || plan.busybox_probe;
            let yes = if silent { 0 } else { 1 + rng.below(3) };
            let probe = if rng.chance(0.5) {
                format!(r#"{{"yes": "{yes}", "loadavg": "{:.2}"}}"#, rng.range(0.1, 2.0))
            } else {
                format!(r#"{{"yes": {yes}, "loadavg": {:.2}}}"#, rng.range(0.1, 2.0))
            };
            rows.push(format!(r#"{{"event": "workload_setup", "t_wall_ns": {}}}"#, at(running - 1.0)));
            rows.push(format!(
                r#"{{"event": "workload_started", "phase": "infected_running", "t_wall_ns": {}}}"#,
                at(running)
            ));
            rows.push(format!(
                r#"{{"event": "workload_killed", "phase": "dormant", "pre_kill_probe": {probe}, "t_wall_ns": {}}}"#,
                at(dormant)
            ));
        }
    }
    rows.push(format!(r#"{{"event": "episode_end", "t_wall_ns": {}}}"#, at(plan.duration_s)));
    let mut out = rows.join("\n").into_bytes();
    out.push(b'\n');
    out
}

/// Integer from a real, rounding up with probability equal to the fraction, so
/// low rates still show up on average.
fn stochastic(x: f64, rng: &mut Rng) -> u64 {
    let x = x.max(0.0);
    (x + rng.unit()).floor() as u64
}

/// Running totals of one source's cumulative counters.
#[derive(Default)]
struct Counters([f64; 12]);

impl Counters {
    fn add(&mut self, i: usize, rate: f64, dt: f64) -> u64 {
        self.0[i] += rate.max(0.0) * dt;
        self.0[i] as u64
    }
}

/// Renders one source's rows; returns the member bytes and its line count.
fn telemetry(plan: &Plan, source: Source, rng: &mut Rng) -> (Vec<u8>, u64) {
    let hz = source.nominal_hz();
    let end = plan.duration_s;
    let mut stop = end;
    if source == Source::Guest && plan.validation_defect == Some(Defect::DeadGuestAgent) {
        stop = -PRE_ROLL_S + end * rng.range(0.05, 0.3);
    }
    let mono_offset_s = match source {
        Source::Proc => rng.range(10.0, 5000.0),
        Source::Guest => 25.0 + rng.range(0.0, 3.0),
        Source::Qmp => rng.range(1e5, 1e6),
        Source::Netflow => 27.0 + rng.range(0.0, 3.0),
    };
    let bad_fraction = match plan.validation_defect {
        Some(Defect::TooManyBadRows) if matches!(source, Source::Proc | Source::Guest | Source::Netflow) => 0.3,
        _ => 0.0,
    };
    let mut few_bad = if plan.validation_defect == Some(Defect::FewBadRows) && source == Source::Guest {
        1 + rng.below(5)
    } else {
        0
    };
    let mut out = Vec::with_capacity(((end + PRE_ROLL_S) * hz) as usize * 420);
    let mut lines = 0u64;
    let mut counters = Counters::default();
    let traits = &plan.host.traits;
    // The boot's own tasks are still in the 60 s average when the agent starts.
    let mut load_avg = (traits.background_runnable + rng.range(0.0, 0.2)) * traits.load_gain;
    let reset_at = if source == Source::Guest && rng.chance(traits.counter_reset) {
        Some(rng.range(0.2, 0.8) * end)
    } else {
        None
    };
    let source_index = Source::ALL.iter().position(|s| *s == source).unwrap_or(0);
    let clock_offset_ns = (traits.clock_offset_ms[source_index] * 1e6) as i64;
    let mut reset_done = false;
    let mut row = Vec::with_capacity(512);
    let n = ((end + PRE_ROLL_S) * hz).floor() as i64;
    let mut held_back: Option<Vec<u8>> = None;
    for k in 0..=n {
        let t = -PRE_ROLL_S + k as f64 / hz;
        if t > stop {
            break;
        }
        let dt = 1.0 / hz;
        let l = plan.load_at(t);
        let noise = |rng: &mut Rng| 1.0 + traits.noise * rng.normal();
        // The same work in fewer (or more) jiffies on this host's CPU.
        let jiffies = |rate: f64| rate / traits.cpu_speed;
        if let (Some(r), false) = (reset_at, reset_done) {
            if t >= r {
                counters = Counters::default();
                reset_done = true;
            }
        }
        let t_wall = plan.t0_wall_ns + (t * 1e9).round() as i64 + (rng.normal() * 3e6) as i64 + clock_offset_ns;
        let t_mono = ((t + mono_offset_s) * 1e9) as i64;
        row.clear();
        let _ = write!(row, r#"{{"t_mono_ns": {t_mono}, "t_wall_ns": {t_wall}, "#);
        match source {
            Source::Proc => {
                let cpu = if plan.host.laptop { 2.5 } else { jiffies(l.vm_cpu) * noise(rng) };
                let user = counters.add(0, cpu * 0.85, dt);
                let sys = counters.add(1, cpu * 0.15, dt);
                let rss = 1.05e9 + (l.mem + l.held) * 0.9 + rng.normal() * 2e5;
                let _ = write!(
                    row,
                    r#""source": "host_proc", "available_in_deployment": false, "cpu_user_jiffies": {user}, "cpu_sys_jiffies": {sys}, "rss_bytes": {}, "vsize_bytes": {}, "io_read_bytes": {}, "io_write_bytes": {}, "voluntary_ctxsw": {}, "involuntary_ctxsw": {}, "minor_faults": {}, "major_faults": {}}}"#,
                    rss as u64,
                    (3.4e9 + l.mem + l.held) as u64,
                    counters.add(2, l.disk_rd * noise(rng), dt),
                    counters.add(3, l.disk_wr * noise(rng), dt),
                    counters.add(4, (200.0 + 40.0 * cpu) * noise(rng), dt),
                    counters.add(5, 5.0 + cpu, dt),
                    counters.add(6, 50.0 + l.mem / 4096.0 * 0.02 + l.swap / 4096.0 * 0.05, dt),
                    counters.add(7, l.swap / 4096.0 * 0.01, dt),
                );
            }
            Source::Guest => {
                let (l_user, l_system) = (jiffies(l.user).min(100.0), jiffies(l.system));
                let (l_iowait, l_softirq) = (jiffies(l.iowait), jiffies(l.softirq));
                let user = counters.add(0, l_user * noise(rng), dt);
                let system = counters.add(1, l_system * noise(rng), dt);
                let iowait = counters.add(2, l_iowait * noise(rng), dt);
                let softirq = counters.add(3, l_softirq * noise(rng), dt);
                let busy = l_user + l_system + l_iowait + l_softirq;
                let idle = counters.add(4, (100.0 - busy).max(0.0), dt);
                let runnable = (l.runnable - IDLE.runnable + traits.background_runnable) * traits.load_gain;
                load_avg += (runnable * noise(rng) - load_avg) * (1.0 - (-dt / 60.0f64).exp());
                let free = traits.mem_total_bytes as f64 - traits.mem_baseline_bytes as f64;
                // Page cache churn moves what is available by megabytes.
                let available = free - l.mem + rng.normal() * 6e6;
                let ports = if l.ports > 0.0 { "[22, 4444]" } else { "[22]" };
                let procs = if l.runnable > 0.3 { 6 } else { 5 };
                let _ = write!(
                    row,
                    r#""source": "guest_agent", "available_in_deployment": true, "cpu_total_jiffies": {{"user": {user}, "system": {system}, "idle": {idle}, "iowait": {iowait}, "softirq": {softirq}}}, "load_1m_5m_15m": [{:.2}, {:.2}, {:.2}], "mem_total_bytes": {}, "mem_available_bytes": {}, "mem_buffers_bytes": {}, "mem_cached_bytes": {}, "swap_used_bytes": {}, "net": {{"eth0": {{"rx_bytes": {}, "tx_bytes": {}, "rx_pkts": {}, "tx_pkts": {}}}, "lo": {{"rx_bytes": {}, "tx_bytes": {}, "rx_pkts": {}, "tx_pkts": {}}}}}, "listen_ports": {ports}, "top_procs": ["#,
                    load_avg,
                    load_avg * 0.7,
                    load_avg * 0.4,
                    traits.mem_total_bytes,
                    available.max(5e7) as u64,
                    (8.0e7 + rng.normal() * 1e5) as u64,
                    (traits.mem_cached_bytes as f64 - l.mem * 0.2 + rng.normal() * 3e6) as u64,
                    l.swap as u64,
                    counters.add(5, (l.net_in + traits.background_in_bps) * noise(rng), dt),
                    counters.add(6, (l.net_out + traits.background_out_bps) * noise(rng), dt),
                    counters.add(7, (l.net_in + traits.background_in_bps) / 600.0 * noise(rng), dt),
                    counters.add(8, (l.net_out + traits.background_out_bps) / 400.0 * noise(rng), dt),
                    counters.add(9, 300.0, dt),
                    counters.add(10, 300.0, dt),
                    counters.add(11, 3.0, dt),
                    counters.0[11] as u64,
                );
                for p in 0..procs {
                    let name = ["init", "sshd", "agent", "crond", "syslogd", plan.sample.0][p];
                    let _ = write!(
                        row,
                        r#"{}{{"pid": {}, "name": "{name}", "cpu_pct": {:.1}, "rss_bytes": {}}}"#,
                        if p > 0 { ", " } else { "" },
                        [1, 412, 733, 901, 655, 1337][p],
                        if p == 5 { l.user } else { 0.1 },
                        if p == 5 { l.mem as u64 + 4_000_000 } else { 2_000_000 },
                    );
                }
                row.extend_from_slice(b"]}");
            }
            Source::Qmp => {
                let _ = write!(
                    row,
                    r#""source": "host_qmp", "available_in_deployment": false, "vm_status": "running", "vm_running": true, "blockstats": {{"virtio0": {{"rd_ops": {}, "wr_ops": {}, "rd_bytes": {}, "wr_bytes": {}}}, "ide1-cd0": {{"rd_ops": 12, "wr_ops": 0, "rd_bytes": 49152, "wr_bytes": 0}}}}, "kvm_stats": {{"remote_tlb_flush": {}, "pages_4k": {}, "pages_2m": {}}}}}"#,
                    counters.add(0, l.disk_rd / 65536.0, dt),
                    counters.add(1, l.disk_wr / 65536.0 + 1.0, dt),
                    counters.add(2, l.disk_rd * noise(rng), dt),
                    counters.add(3, l.disk_wr * noise(rng), dt),
                    counters.add(4, 20.0 + jiffies(l.vm_cpu) * 3.0, dt),
                    (260_000.0 + (l.mem + l.held) / 4096.0) as u64,
                    (512.0 + rng.normal().abs() * 4.0) as u64,
                );
            }
            Source::Netflow => {
                let net_in = l.net_in + traits.background_in_bps;
                let net_out = l.net_out + traits.background_out_bps;
                let bytes_in = stochastic(net_in * dt * (1.0 + 0.3 * rng.normal()), rng);
                let bytes_out = stochastic(net_out * dt * (1.0 + 0.3 * rng.normal()), rng);
                let pkts_in = stochastic(bytes_in as f64 / 600.0, rng);
                let pkts_out = stochastic(bytes_out as f64 / 400.0, rng);
                let syn = stochastic(l.syn * dt, rng);
                let dns = stochastic(l.dns * dt, rng);
                let udp = dns * 2 + stochastic(0.02, rng);
                let _ = write!(
                    row,
                    r#""source": "bridge_pcap", "available_in_deployment": true, "bucket_ms": 100, "pkts_in": {pkts_in}, "pkts_out": {pkts_out}, "bytes_in": {bytes_in}, "bytes_out": {bytes_out}, "syn_count": {syn}, "fin_count": {}, "rst_count": {}, "udp_count": {udp}, "tcp_count": {}, "dns_query_count": {dns}, "unique_dst_ips": {}, "unique_dst_ports": {}, "tcp_new_flows": {}}}"#,
                    stochastic(l.syn * dt * 0.7, rng),
                    stochastic(l.syn * dt * 0.2, rng),
                    (pkts_in + pkts_out).saturating_sub(udp),
                    stochastic(l.dst_ips * (1.0 + 0.2 * rng.normal()), rng),
                    stochastic(l.dst_ports * (1.0 + 0.2 * rng.normal()), rng),
                    stochastic(l.syn * dt * 0.9, rng),
                );
            }
        }
        let bad = bad_fraction > 0.0 && rng.chance(bad_fraction) || few_bad > 0 && k % 150 == 7;
        if bad {
            // A torn write: the line ends half way.
            few_bad = few_bad.saturating_sub(1);
            let cut = row.len() / 2;
            row.truncate(cut);
        } else if rng.chance(0.01) {
            continue; // dropped row
        }
        let repeats = if rng.chance(0.002) { 2 } else { 1 };
        for _ in 0..repeats {
            // Rarely, a row is written after its successor (agent buffer flush).
            if held_back.is_none() && rng.chance(0.003) {
                held_back = Some(row.clone());
                continue;
            }
            out.extend_from_slice(&row);
            out.push(b'\n');
            lines += 1;
            if let Some(late) = held_back.take() {
                out.extend_from_slice(&late);
                out.push(b'\n');
                lines += 1;
            }
        }
    }
    if let Some(late) = held_back {
        out.extend_from_slice(&late);
        out.push(b'\n');
        lines += 1;
    }
    (out, lines)
}

/// A 26-character id in the style of a ULID: 48 bits of milliseconds, 80 random.
pub fn ulid(ms: u64, rng: &mut Rng) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let random = ((rng.next_u64() as u128) << 16) | (rng.next_u64() as u128 & 0xFFFF);
    let value: u128 = ((ms as u128 & 0xFFFF_FFFF_FFFF) << 80) | random;
    (0..26).rev().map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char).collect()
}

/// Draws a sample of the profile.
pub fn pick_sample(profile: &str, rng: &mut Rng) -> (&'static str, &'static str, &'static str) {
    *rng.pick(samples(profile))
}

/// Draws an exploit module.
pub fn pick_module(rng: &mut Rng) -> &'static str {
    MODULES[rng.below(MODULES.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A defect-free plan of an `io-walk` sample running throughout (its
    /// vCPU far from saturated) on a rack host with `traits`.
    fn plan(traits: HostTraits) -> Plan {
        let host = Host { id: "lab-rack-01".into(), slots: 16, laptop: false, traits };
        Plan {
            host,
            episode_id: "e".into(),
            profile: "io-walk",
            sample: ("filewalker", "Generic", "wiper"),
            module: MODULES[0],
            duration_s: 60.0,
            t0_wall_ns: 1_777_000_000_000_000_000,
            phases: vec![(0.0, Phase::InfectedRunning)],
            validation_defect: None,
            quality_defect: None,
            busybox_probe: false,
            meta_has_duration: true,
            meta_has_rows: true,
            with_pcap: false,
            seed: 42,
        }
    }

    /// One source's rows of `plan`, parsed.
    fn rows(plan: &Plan, source: Source) -> Vec<serde_json::Value> {
        let (bytes, _) = telemetry(plan, source, &mut Rng::new(plan.seed, 1));
        let text = String::from_utf8(bytes).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The guest's last `cpu_total_jiffies.user` counter and last load
    /// average, and the first row's `t_wall_ns`.
    fn guest(plan: &Plan) -> (f64, f64, i64) {
        let rows = rows(plan, Source::Guest);
        let last = rows.last().unwrap();
        let first_wall = rows[0]["t_wall_ns"].as_i64().unwrap();
        (last["cpu_total_jiffies"]["user"].as_f64().unwrap(), last["load_1m_5m_15m"][0].as_f64().unwrap(), first_wall)
    }

    #[test]
    fn a_faster_cpu_spends_proportionally_fewer_jiffies_on_the_same_work() {
        let reference = HostTraits::REFERENCE;
        let fast = HostTraits { cpu_speed: 1.5, ..reference.clone() };
        let slow = HostTraits { cpu_speed: 0.75, ..reference.clone() };
        let (base, _, _) = guest(&plan(reference.clone()));
        for traits in [fast, slow] {
            let (user, _, _) = guest(&plan(traits.clone()));
            let ratio = user / base;
            let expected = 1.0 / traits.cpu_speed;
            assert!(
                (ratio - expected).abs() / expected < 0.05,
                "cpu_speed {}: {ratio} vs {expected}",
                traits.cpu_speed
            );
        }
    }

    #[test]
    fn each_trait_reaches_the_rows() {
        let reference = HostTraits::REFERENCE;
        let (_, load, wall) = guest(&plan(reference.clone()));
        let heavier = HostTraits { load_gain: 1.3, clock_offset_ms: [0.0, 20.0, 0.0, 0.0], ..reference.clone() };
        let (_, load2, wall2) = guest(&plan(heavier));
        assert!((load2 / load - 1.3).abs() < 0.1, "load average {load} → {load2}");
        assert_eq!(wall2 - wall, 20_000_000, "the guest's clock 20 ms ahead");
        let big = HostTraits { mem_total_bytes: 4 << 30, ..reference };
        let (bytes, _) = telemetry(&plan(big), Source::Guest, &mut Rng::new(42, 1));
        assert!(String::from_utf8(bytes).unwrap().contains("\"mem_total_bytes\": 4294967296"));
    }

    #[test]
    fn the_schedule_fills_the_episode_in_order_with_each_share_in_its_range() {
        let (lowest, highest): (f64, f64) = SCHEDULE.iter().fold((0.0, 0.0), |(lo, hi), (_, (a, b))| (lo + a, hi + b));
        for seed in 0..200 {
            let phases = Plan::schedule(90.0, &mut Rng::new(seed, 5));
            let order: Vec<Phase> = phases.iter().map(|(_, p)| *p).collect();
            assert_eq!(order, SCHEDULE.map(|(p, _)| p).to_vec());
            assert_eq!(phases[0].0, 0.0);
            for (i, (_, (lo, hi))) in SCHEDULE.iter().enumerate() {
                let end = phases.get(i + 1).map_or(90.0, |(t, _)| *t);
                let share = (end - phases[i].0) / 90.0;
                assert!(share >= lo / highest - 1e-9 && share <= hi / lowest + 1e-9, "seed {seed} phase {i}: {share}");
            }
        }
        // The idle and dormant stretches are long enough to hold windows.
        let idle = |seed| {
            let p = Plan::schedule(90.0, &mut Rng::new(seed, 5));
            p[3].0 - p[2].0
        };
        let mean = (0..200).map(idle).sum::<f64>() / 200.0;
        assert!(mean > 15.0, "mean infected_idle stretch {mean} s");
    }

    /// The guest's load average over a clean episode of `length` seconds on
    /// a host with `traits`: (first, last).
    fn clean_load(traits: HostTraits, length: f64) -> (f64, f64) {
        let mut plan = plan(traits);
        plan.duration_s = length;
        plan.phases = vec![(0.0, Phase::Clean)];
        let rows = rows(&plan, Source::Guest);
        let load = |row: &serde_json::Value| row["load_1m_5m_15m"][0].as_f64().unwrap();
        (load(&rows[0]), load(rows.last().unwrap()))
    }

    #[test]
    fn the_load_average_starts_where_the_boot_left_it_and_settles_on_the_hosts_background() {
        for background in [0.02, 0.3] {
            let traits = HostTraits { background_runnable: background, load_gain: 1.2, ..HostTraits::REFERENCE };
            let (first, last) = clean_load(traits, 300.0);
            assert!(first >= background * 1.2 - 0.01 && first <= (background + 0.2) * 1.2 + 0.01, "{first}");
            assert!((last - background * 1.2).abs() < 0.02 + 0.1 * background, "{background}: settled at {last}");
        }
    }

    /// Means of `field` (a path of keys) per second over `[from, to)` of
    /// `plan`'s `rows` (seconds since its t0), as a rate when `counter`.
    fn mean_over(plan: &Plan, rows: &[serde_json::Value], path: &[&str], span: (f64, f64), counter: bool) -> f64 {
        let (t0, (from, to)) = (plan.t0_wall_ns, span);
        let inside: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                let t = (r["t_wall_ns"].as_i64()? - t0) as f64 / 1e9;
                let v = path.iter().fold(r, |v, k| &v[*k]).as_f64()?;
                (t >= from && t < to).then_some((t, v))
            })
            .collect();
        let (first, last) = (inside[0], inside[inside.len() - 1]);
        match counter {
            true => (last.1 - first.1) / (last.0 - first.0),
            false => inside.iter().map(|(_, v)| v).sum::<f64>() / inside.len() as f64,
        }
    }

    #[test]
    fn an_idle_implant_looks_clean_from_the_guest_and_not_from_the_host() {
        let mut plan = plan(HostTraits { counter_reset: 0.0, ..HostTraits::REFERENCE });
        plan.profile = "mem-balloon";
        plan.duration_s = 120.0;
        plan.phases = vec![(0.0, Phase::Clean), (60.0, Phase::InfectedIdle)];
        let (clean, idle) = ((5.0, 55.0), (65.0, 115.0));
        let guest = rows(&plan, Source::Guest);
        for (path, counter, tolerance) in [
            (&["cpu_total_jiffies", "user"][..], true, 0.2),
            (&["mem_available_bytes"][..], false, 0.01),
            (&["net", "eth0", "tx_bytes"][..], true, 0.2),
        ] {
            let (a, b) =
                (mean_over(&plan, &guest, path, clean, counter), mean_over(&plan, &guest, path, idle, counter));
            assert!((b - a).abs() <= tolerance * a, "{path:?}: clean {a}, idle {b}");
        }
        let proc = rows(&plan, Source::Proc);
        let rss = |span| mean_over(&plan, &proc, &["rss_bytes"], span, false);
        assert!(rss(idle) - rss(clean) > 2.5e7, "the host holds the install's pages: {} → {}", rss(clean), rss(idle));
    }

    #[test]
    fn traits_differ_between_hosts_and_repeat_for_a_seed() {
        let draw = |stream| HostTraits::draw(false, &mut Rng::new(7, stream));
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let laptop = HostTraits::draw(true, &mut Rng::new(7, 3));
        assert!(laptop.cpu_speed < 0.85 && laptop.noise > 0.15);
    }
}
