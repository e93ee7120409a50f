//! The six workload profiles and what each does to the four sources, phase by
//! phase. Rates are per second; the episode generator integrates them into
//! cumulative counters and per-bucket counts.

use epiflow_operators::channels::Phase;

/// Workload profiles, as named in `meta.sample.profile`.
pub const PROFILES: [&str; 6] = ["cpu-saturate", "io-walk", "scan-and-dial", "bursty-c2", "exfil-drip", "mem-balloon"];

/// Samples per profile: (name, family, category).
pub fn samples(profile: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match profile {
        "cpu-saturate" => &[
            ("xmrig", "XMRig", "cryptominer"),
            ("cpuminer-opt", "CPUMiner", "cryptominer"),
            ("kinsing-miner", "Kinsing", "cryptominer"),
        ],
        "io-walk" => &[
            ("lockbit-sim", "LockBit", "ransomware"),
            ("babuk-esxi", "Babuk", "ransomware"),
            ("filewalker", "Generic", "wiper"),
        ],
        "scan-and-dial" => {
            &[("mirai-arm7", "Mirai", "botnet"), ("gafgyt", "Gafgyt", "botnet"), ("zmap-dropper", "Generic", "scanner")]
        }
        "bursty-c2" => &[
            ("cobalt-beacon", "CobaltStrike", "rat"),
            ("sliver-implant", "Sliver", "rat"),
            ("tsunami", "Tsunami", "backdoor"),
        ],
        "exfil-drip" => &[
            ("rclone-exfil", "Generic", "stealer"),
            ("dnscat-tunnel", "Dnscat", "tunnel"),
            ("azorult", "Azorult", "stealer"),
        ],
        _ => &[("memhog", "Generic", "dos"), ("forkbomb-lite", "Generic", "dos"), ("balloon-leak", "Generic", "dos")],
    }
}

/// Exploit modules that deliver samples.
pub const MODULES: [&str; 5] = [
    "vsftpd_234_backdoor",
    "distcc_exec",
    "samba_usermap_script",
    "unreal_ircd_3281_backdoor",
    "php_cgi_arg_injection",
];

/// What the VM does per second in a phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    /// qemu process CPU, jiffies/s (100 = one host core).
    pub vm_cpu: f64,
    /// Guest CPU jiffies/s by kind (one vCPU: they sum to at most 100).
    pub user: f64,
    pub system: f64,
    pub iowait: f64,
    pub softirq: f64,
    /// Runnable tasks the load average converges to.
    pub runnable: f64,
    /// Disk bytes/s.
    pub disk_rd: f64,
    pub disk_wr: f64,
    /// Network bytes/s into and out of the VM.
    pub net_in: f64,
    pub net_out: f64,
    /// New TCP connections per second (SYNs).
    pub syn: f64,
    /// DNS queries per second.
    pub dns: f64,
    /// Distinct destinations per 100 ms bucket.
    pub dst_ips: f64,
    pub dst_ports: f64,
    /// Workload memory, bytes, and swap used, bytes, as the guest sees them.
    pub mem: f64,
    pub swap: f64,
    /// Memory the host still holds for the VM after the guest freed it
    /// (pages touched while running, not returned): seen by host /proc and
    /// QMP only.
    pub held: f64,
    /// Extra listening ports opened by the sample.
    pub ports: f64,
    /// On/off modulation: (period s, fraction on); `None` = steady.
    pub burst: Option<(f64, f64)>,
}

/// What a sleeping implant keeps resident inside the guest, bytes: lost in
/// the page cache's churn.
const IMPLANT_RESIDENT_BYTES: f64 = 4.0e6;

/// Guest pages the exploit and the implant's install touched, bytes, which
/// the host keeps for the VM whatever the guest frees.
const IMPLANT_PAGES_BYTES: f64 = 3.2e7;

/// An idle Linux VM: the background every phase has.
pub const IDLE: Load = Load {
    vm_cpu: 4.0,
    user: 1.0,
    system: 1.0,
    iowait: 0.2,
    softirq: 0.1,
    runnable: 0.05,
    disk_rd: 0.0,
    disk_wr: 4096.0,
    net_in: 150.0,
    net_out: 60.0,
    syn: 0.02,
    dns: 0.05,
    dst_ips: 0.1,
    dst_ports: 0.1,
    mem: 0.0,
    swap: 0.0,
    held: 0.0,
    ports: 0.0,
    burst: None,
};

/// The sample's activity at full strength (`infected_running`).
fn running(profile: &str) -> Load {
    let zero = Load::default();
    match profile {
        "cpu-saturate" => Load {
            vm_cpu: 92.0,
            user: 88.0,
            system: 3.0,
            runnable: 2.2,
            net_in: 9000.0,
            net_out: 15000.0,
            syn: 0.1,
            dst_ips: 1.0,
            dst_ports: 1.0,
            mem: 2.4e8,
            ..zero
        },
        "io-walk" => Load {
            vm_cpu: 38.0,
            user: 8.0,
            system: 16.0,
            iowait: 42.0,
            runnable: 1.4,
            disk_rd: 1.2e7,
            disk_wr: 7.0e6,
            mem: 6.0e7,
            ..zero
        },
        "scan-and-dial" => Load {
            vm_cpu: 14.0,
            user: 5.0,
            system: 4.0,
            softirq: 9.0,
            runnable: 0.6,
            net_in: 26000.0,
            net_out: 64000.0,
            syn: 160.0,
            dns: 3.0,
            dst_ips: 35.0,
            dst_ports: 28.0,
            ports: 1.0,
            ..zero
        },
        "bursty-c2" => Load {
            vm_cpu: 9.0,
            user: 4.0,
            system: 2.0,
            softirq: 2.0,
            runnable: 0.5,
            net_in: 260000.0,
            net_out: 60000.0,
            syn: 4.0,
            dns: 6.0,
            dst_ips: 2.0,
            dst_ports: 2.0,
            burst: Some((6.0, 0.2)),
            ports: 1.0,
            ..zero
        },
        "exfil-drip" => Load {
            vm_cpu: 11.0,
            user: 5.0,
            system: 3.0,
            softirq: 1.5,
            runnable: 0.6,
            disk_rd: 1.5e6,
            net_in: 3000.0,
            net_out: 32000.0,
            syn: 0.5,
            dns: 1.0,
            dst_ips: 1.0,
            dst_ports: 1.0,
            ..zero
        },
        _ => Load {
            vm_cpu: 30.0,
            user: 12.0,
            system: 14.0,
            iowait: 6.0,
            runnable: 1.1,
            disk_wr: 5.0e6,
            mem: 6.5e8,
            swap: 2.2e8,
            ..zero
        },
    }
}

/// How strongly the sample acts in each phase, and what the exploit adds.
pub fn load(profile: &str, phase: Phase) -> Load {
    let run = running(profile);
    let exploit = Load {
        vm_cpu: 18.0,
        user: 10.0,
        system: 6.0,
        runnable: 0.4,
        net_in: 45000.0,
        net_out: 12000.0,
        syn: 2.0,
        dst_ips: 1.0,
        dst_ports: 1.0,
        disk_wr: 3.0e5,
        ..Load::default()
    };
    let (strength, extra) = match phase {
        Phase::Clean => (0.0, None),
        Phase::Exploiting => (0.0, Some(exploit)),
        // The same sleeping implant before and after its run.
        Phase::InfectedIdle | Phase::Dormant => (0.03, None),
        Phase::InfectedRunning => (1.0, None),
    };
    let mut l = IDLE.plus(&run.scaled(strength));
    if let Some(e) = extra {
        l = l.plus(&e);
    }
    // Running, the sample holds its memory and its ports. Idle or dormant,
    // the implant keeps a sliver of guest memory and closes its ports, so
    // that from inside the guest and on the wire (the deployment channels)
    // it looks almost clean; the host still holds the pages the install
    // (and, once it has run, the sample) touched, which host /proc and QMP
    // (oracle channels) see.
    match phase {
        Phase::InfectedRunning => {
            l.mem = run.mem;
            l.swap = run.swap;
            l.ports = run.ports;
        }
        Phase::InfectedIdle | Phase::Dormant => {
            // What the sliver of activity costs shows on the host's qemu
            // process; inside the guest it is lost in the idle background.
            let host_cpu = l.vm_cpu;
            l = IDLE;
            l.vm_cpu = host_cpu;
            l.mem = IMPLANT_RESIDENT_BYTES + run.mem * 0.003;
            // Only after running has the sample touched its working set.
            let touched = if phase == Phase::Dormant { run.mem * 0.35 } else { 0.0 };
            l.held = IMPLANT_PAGES_BYTES + touched;
        }
        Phase::Clean | Phase::Exploiting => {}
    }
    l.burst = if strength >= 1.0 { run.burst } else { None };
    l
}

impl Load {
    fn scaled(&self, k: f64) -> Load {
        Load {
            vm_cpu: self.vm_cpu * k,
            user: self.user * k,
            system: self.system * k,
            iowait: self.iowait * k,
            softirq: self.softirq * k,
            runnable: self.runnable * k,
            disk_rd: self.disk_rd * k,
            disk_wr: self.disk_wr * k,
            net_in: self.net_in * k,
            net_out: self.net_out * k,
            syn: self.syn * k,
            dns: self.dns * k,
            dst_ips: self.dst_ips * k,
            dst_ports: self.dst_ports * k,
            mem: self.mem * k,
            swap: self.swap * k,
            held: self.held * k,
            ports: self.ports,
            burst: self.burst,
        }
    }

    fn plus(&self, o: &Load) -> Load {
        Load {
            vm_cpu: self.vm_cpu + o.vm_cpu,
            user: self.user + o.user,
            system: self.system + o.system,
            iowait: self.iowait + o.iowait,
            softirq: self.softirq + o.softirq,
            runnable: self.runnable + o.runnable,
            disk_rd: self.disk_rd + o.disk_rd,
            disk_wr: self.disk_wr + o.disk_wr,
            net_in: self.net_in + o.net_in,
            net_out: self.net_out + o.net_out,
            syn: self.syn + o.syn,
            dns: self.dns + o.dns,
            dst_ips: self.dst_ips + o.dst_ips,
            dst_ports: self.dst_ports + o.dst_ports,
            mem: self.mem + o.mem,
            swap: self.swap + o.swap,
            held: self.held + o.held,
            ports: self.ports.max(o.ports),
            burst: self.burst.or(o.burst),
        }
    }

    /// The load at time `t` within a bursty schedule: rates scale by 1/duty
    /// while on and drop to the idle background while off, keeping the mean.
    pub fn at(&self, t: f64) -> Load {
        match self.burst {
            Some((period, duty)) => {
                if (t / period).fract() < duty {
                    let mut l = self.minus_idle().scaled(1.0 / duty).plus(&IDLE);
                    l.mem = self.mem;
                    l.swap = self.swap;
                    l.held = self.held;
                    l
                } else {
                    let mut l = IDLE;
                    l.mem = self.mem;
                    l.swap = self.swap;
                    l.held = self.held;
                    l.ports = self.ports;
                    l.runnable = self.runnable;
                    l
                }
            }
            None => *self,
        }
    }

    fn minus_idle(&self) -> Load {
        Load {
            vm_cpu: self.vm_cpu - IDLE.vm_cpu,
            user: self.user - IDLE.user,
            system: self.system - IDLE.system,
            iowait: self.iowait - IDLE.iowait,
            softirq: self.softirq - IDLE.softirq,
            runnable: self.runnable,
            disk_rd: self.disk_rd - IDLE.disk_rd,
            disk_wr: self.disk_wr - IDLE.disk_wr,
            net_in: self.net_in - IDLE.net_in,
            net_out: self.net_out - IDLE.net_out,
            syn: self.syn - IDLE.syn,
            dns: self.dns - IDLE.dns,
            dst_ips: self.dst_ips - IDLE.dst_ips,
            dst_ports: self.dst_ports - IDLE.dst_ports,
            ..*self
        }
    }
}
