//! The channel registry (SPEC section 3) and the phase vocabulary, as data.
//!
//! Everything that needs a list of channels (parsing into columns, alignment,
//! features, the realistic/oracle channel sets, schema hashes) derives it from
//! [`CHANNELS`]; nothing else lists channels by hand.

use crate::rows::TelemetryRow;
use serde::{Deserialize, Serialize};

/// One of the four telemetry sources of an episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Host /proc of the qemu process.
    Proc,
    /// In-guest agent.
    Guest,
    /// QEMU QMP block and kvm stats.
    Qmp,
    /// Bridge packet capture, bucketed.
    Netflow,
}

impl Source {
    /// All sources, in registry order.
    pub const ALL: [Source; 4] = [Source::Proc, Source::Guest, Source::Qmp, Source::Netflow];

    /// Name used in channel names and reason codes (`source_missing:proc`).
    pub fn name(self) -> &'static str {
        match self {
            Source::Proc => "proc",
            Source::Guest => "guest",
            Source::Qmp => "qmp",
            Source::Netflow => "netflow",
        }
    }

    /// Member file name inside an episode archive.
    pub fn member(self) -> &'static str {
        match self {
            Source::Proc => "telemetry-proc.jsonl",
            Source::Guest => "telemetry-guest.jsonl",
            Source::Qmp => "telemetry-qmp.jsonl",
            Source::Netflow => "netflow.jsonl",
        }
    }

    /// Nominal sampling rate in Hz, used by the row gate.
    pub fn nominal_hz(self) -> f64 {
        match self {
            Source::Qmp => 1.0,
            _ => 10.0,
        }
    }

    /// Whether a deployed detector sees this source (the threat model).
    pub fn in_deployment(self) -> bool {
        matches!(self, Source::Guest | Source::Netflow)
    }

    /// Position in [`Source::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The source whose archive member has this file name.
    pub fn from_member(file_name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.member() == file_name)
    }
}

/// How a channel's raw values become points (SPEC section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Cumulative; turned into a per-second rate between consecutive values.
    Counter,
    /// Taken as is.
    Gauge,
    /// A count per netflow bucket; divided by the bucket length.
    Bucket,
}

/// How a channel's raw value is read from a telemetry row (`None`: missing).
pub type ChannelRead = fn(&TelemetryRow) -> Option<f64>;

/// One channel: its name, source, kind and how to read it from a row.
#[derive(Clone, Copy, Debug)]
pub struct Channel {
    /// Full name, e.g. `proc.cpu_user_jiffies`.
    pub name: &'static str,
    /// Which source's rows carry it.
    pub source: Source,
    /// How raw values become points.
    pub kind: Kind,
    /// Reads the raw value from a parsed row; `None` when the row lacks it.
    pub read: ChannelRead,
}

impl Channel {
    /// Whether the channel is part of the realistic (deployment) set.
    pub fn in_deployment(&self) -> bool {
        self.source.in_deployment()
    }
}

macro_rules! channel {
    ($name:literal, $source:ident, $kind:ident, |$r:ident| $read:expr) => {
        Channel {
            name: $name,
            source: Source::$source,
            kind: Kind::$kind,
            read: {
                fn read($r: &TelemetryRow) -> Option<f64> {
                    $read
                }
                read
            },
        }
    };
}

/// The 46 channels in registry order: tensor rows and feature columns follow it.
pub static CHANNELS: [Channel; 46] = [
    channel!("proc.cpu_user_jiffies", Proc, Counter, |r| r.cpu_user_jiffies.0),
    channel!("proc.cpu_sys_jiffies", Proc, Counter, |r| r.cpu_sys_jiffies.0),
    channel!("proc.rss_bytes", Proc, Gauge, |r| r.rss_bytes.0),
    channel!("proc.vsize_bytes", Proc, Gauge, |r| r.vsize_bytes.0),
    channel!("proc.io_read_bytes", Proc, Counter, |r| r.io_read_bytes.0),
    channel!("proc.io_write_bytes", Proc, Counter, |r| r.io_write_bytes.0),
    channel!("proc.voluntary_ctxsw", Proc, Counter, |r| r.voluntary_ctxsw.0),
    channel!("proc.involuntary_ctxsw", Proc, Counter, |r| r.involuntary_ctxsw.0),
    channel!("proc.minor_faults", Proc, Counter, |r| r.minor_faults.0),
    channel!("proc.major_faults", Proc, Counter, |r| r.major_faults.0),
    channel!("guest.cpu_total_jiffies.user", Guest, Counter, |r| r.cpu_total_jiffies.and_then(|c| c.user.0)),
    channel!("guest.cpu_total_jiffies.system", Guest, Counter, |r| r.cpu_total_jiffies.and_then(|c| c.system.0)),
    channel!("guest.cpu_total_jiffies.idle", Guest, Counter, |r| r.cpu_total_jiffies.and_then(|c| c.idle.0)),
    channel!("guest.cpu_total_jiffies.iowait", Guest, Counter, |r| r.cpu_total_jiffies.and_then(|c| c.iowait.0)),
    channel!("guest.cpu_total_jiffies.softirq", Guest, Counter, |r| r.cpu_total_jiffies.and_then(|c| c.softirq.0)),
    channel!("guest.load_1m", Guest, Gauge, |r| r.load_1m_5m_15m.0 .0),
    channel!("guest.mem_available_bytes", Guest, Gauge, |r| r.mem_available_bytes.0),
    channel!("guest.mem_buffers_bytes", Guest, Gauge, |r| r.mem_buffers_bytes.0),
    channel!("guest.mem_cached_bytes", Guest, Gauge, |r| r.mem_cached_bytes.0),
    channel!("guest.swap_used_bytes", Guest, Gauge, |r| r.swap_used_bytes.0),
    channel!("guest.net.rx_bytes", Guest, Counter, |r| r.net.0.rx_bytes.0),
    channel!("guest.net.tx_bytes", Guest, Counter, |r| r.net.0.tx_bytes.0),
    channel!("guest.net.rx_pkts", Guest, Counter, |r| r.net.0.rx_pkts.0),
    channel!("guest.net.tx_pkts", Guest, Counter, |r| r.net.0.tx_pkts.0),
    channel!("guest.listen_ports", Guest, Gauge, |r| r.listen_ports.0.map(|n| n as f64)),
    channel!("guest.top_procs", Guest, Gauge, |r| r.top_procs.0.map(|n| n as f64)),
    channel!("qmp.blockstats.rd_ops", Qmp, Counter, |r| r.blockstats.0.rd_ops.0),
    channel!("qmp.blockstats.wr_ops", Qmp, Counter, |r| r.blockstats.0.wr_ops.0),
    channel!("qmp.blockstats.rd_bytes", Qmp, Counter, |r| r.blockstats.0.rd_bytes.0),
    channel!("qmp.blockstats.wr_bytes", Qmp, Counter, |r| r.blockstats.0.wr_bytes.0),
    channel!("qmp.kvm_stats.remote_tlb_flush", Qmp, Counter, |r| r.kvm_stats.and_then(|k| k.remote_tlb_flush.0)),
    channel!("qmp.kvm_stats.pages_4k", Qmp, Gauge, |r| r.kvm_stats.and_then(|k| k.pages_4k.0)),
    channel!("qmp.kvm_stats.pages_2m", Qmp, Gauge, |r| r.kvm_stats.and_then(|k| k.pages_2m.0)),
    channel!("netflow.pkts_in", Netflow, Bucket, |r| r.pkts_in.0),
    channel!("netflow.pkts_out", Netflow, Bucket, |r| r.pkts_out.0),
    channel!("netflow.bytes_in", Netflow, Bucket, |r| r.bytes_in.0),
    channel!("netflow.bytes_out", Netflow, Bucket, |r| r.bytes_out.0),
    channel!("netflow.syn_count", Netflow, Bucket, |r| r.syn_count.0),
    channel!("netflow.fin_count", Netflow, Bucket, |r| r.fin_count.0),
    channel!("netflow.rst_count", Netflow, Bucket, |r| r.rst_count.0),
    channel!("netflow.udp_count", Netflow, Bucket, |r| r.udp_count.0),
    channel!("netflow.tcp_count", Netflow, Bucket, |r| r.tcp_count.0),
    channel!("netflow.dns_query_count", Netflow, Bucket, |r| r.dns_query_count.0),
    channel!("netflow.tcp_new_flows", Netflow, Bucket, |r| r.tcp_new_flows.0),
    channel!("netflow.unique_dst_ips", Netflow, Gauge, |r| r.unique_dst_ips.0),
    channel!("netflow.unique_dst_ports", Netflow, Gauge, |r| r.unique_dst_ports.0),
];

/// Registry indices of the channels a source carries, in registry order.
pub fn channels_of(source: Source) -> impl Iterator<Item = usize> {
    CHANNELS.iter().enumerate().filter(move |(_, c)| c.source == source).map(|(i, _)| i)
}

/// Registry index of a channel by name.
pub fn channel_index(name: &str) -> Option<usize> {
    CHANNELS.iter().position(|c| c.name == name)
}

/// Which channels a model or a feature consumer sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelSet {
    /// Deployment channels only: guest + netflow (29).
    Realistic,
    /// All 46 channels.
    Oracle,
}

impl ChannelSet {
    /// Both sets, realistic first.
    pub const ALL: [ChannelSet; 2] = [ChannelSet::Realistic, ChannelSet::Oracle];

    /// The name on the command line, in the manifest and in checkpoint paths.
    pub fn name(self) -> &'static str {
        match self {
            ChannelSet::Realistic => "realistic",
            ChannelSet::Oracle => "oracle",
        }
    }

    /// Parses a set name; `None` for anything else.
    pub fn parse(name: &str) -> Option<ChannelSet> {
        ChannelSet::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Registry indices of the set, in registry order.
    pub fn indices(self) -> Vec<usize> {
        CHANNELS
            .iter()
            .enumerate()
            .filter(|(_, c)| self == ChannelSet::Oracle || c.in_deployment())
            .map(|(i, _)| i)
            .collect()
    }
}

/// The phase vocabulary; the discriminant is the class id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the exploit: the clean guest.
    Clean = 0,
    /// The exploit module delivering the sample.
    Exploiting = 1,
    /// Sample installed, not yet working.
    InfectedIdle = 2,
    /// Sample running its workload.
    InfectedRunning = 3,
    /// After the workload was killed, the guest observed for a while longer.
    Dormant = 4,
}

impl Phase {
    /// All phases in class-id order.
    pub const ALL: [Phase; 5] =
        [Phase::Clean, Phase::Exploiting, Phase::InfectedIdle, Phase::InfectedRunning, Phase::Dormant];

    /// The label as written in `labels.jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Clean => "clean",
            Phase::Exploiting => "exploiting",
            Phase::InfectedIdle => "infected_idle",
            Phase::InfectedRunning => "infected_running",
            Phase::Dormant => "dormant",
        }
    }

    /// Parses a label name; `None` for anything outside the vocabulary.
    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The class id used in feature files and by models.
    pub fn class_id(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_matches_the_contract_counts() {
        assert_eq!(CHANNELS.len(), 46);
        assert_eq!(ChannelSet::Realistic.indices().len(), 29);
        assert_eq!(ChannelSet::Oracle.indices().len(), 46);
        let per_source: Vec<usize> = Source::ALL.iter().map(|s| channels_of(*s).count()).collect();
        assert_eq!(per_source, vec![10, 16, 7, 13]);
        let mut names: Vec<_> = CHANNELS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 46, "channel names are unique");
    }

    #[test]
    fn registry_order_and_kinds_follow_the_table() {
        assert_eq!(channel_index("proc.cpu_user_jiffies"), Some(0));
        assert_eq!(channel_index("guest.load_1m"), Some(15));
        assert_eq!(channel_index("guest.top_procs"), Some(25));
        assert_eq!(channel_index("netflow.pkts_in"), Some(33));
        assert_eq!(channel_index("netflow.unique_dst_ports"), Some(45));
        assert_eq!(CHANNELS[24].kind, Kind::Gauge);
        assert_eq!(CHANNELS[30].kind, Kind::Counter);
        assert_eq!(CHANNELS[31].kind, Kind::Gauge);
        assert_eq!(CHANNELS[43].kind, Kind::Bucket);
        assert_eq!(CHANNELS[44].kind, Kind::Gauge);
    }

    #[test]
    fn phases_round_trip_with_class_ids() {
        for (i, p) in Phase::ALL.into_iter().enumerate() {
            assert_eq!(p.class_id() as usize, i);
            assert_eq!(Phase::parse(p.name()), Some(p));
        }
        assert_eq!(Phase::parse("infected"), None);
    }
}
