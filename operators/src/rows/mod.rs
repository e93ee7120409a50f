//! Typed JSON Lines rows, tolerant of what real telemetry does: missing fields,
//! numbers written as strings, extra fields. One struct covers the four telemetry
//! sources so the channel registry can read any channel from any row.
//!
//! Maps of devices or interfaces are summed while parsing and lists are only
//! counted, so a row never allocates per interface or per process.

mod json_cursor;
pub mod scan;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// A number that may be missing. Accepts JSON numbers and numeric strings; any
/// other value (bool, object, a non-numeric string) counts as missing rather than
/// making the whole row unparseable.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Num(pub Option<f64>);

impl Num {
    /// Sum of two optional numbers: missing only when both are missing.
    fn add(self, other: Num) -> Num {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Num(Some(a + b)),
            (a, b) => Num(a.or(b)),
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl<'de> Visitor<'de> for NumVisitor {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v.is_finite().then_some(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Num, E> {
                Ok(Num(v.trim().parse::<f64>().ok().filter(|x| x.is_finite())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_unit<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_none<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Num, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Num, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Num(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Num(None))
            }
        }
        d.deserialize_any(NumVisitor)
    }
}

/// Length of a JSON list; `null` or a non-list counts as missing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ListLen(pub Option<usize>);

impl<'de> Deserialize<'de> for ListLen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LenVisitor;
        impl<'de> Visitor<'de> for LenVisitor {
            type Value = ListLen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListLen, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(ListLen(Some(n)))
            }
            fn visit_unit<E>(self) -> Result<ListLen, E> {
                Ok(ListLen(None))
            }
            fn visit_none<E>(self) -> Result<ListLen, E> {
                Ok(ListLen(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ListLen, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListLen, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ListLen(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<ListLen, E> {
                Ok(ListLen(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ListLen, E> {
                Ok(ListLen(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ListLen, E> {
                Ok(ListLen(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ListLen, E> {
                Ok(ListLen(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ListLen, E> {
                Ok(ListLen(None))
            }
        }
        d.deserialize_any(LenVisitor)
    }
}

/// The first element of a JSON list of numbers (`load_1m_5m_15m`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct First(pub Num);

impl<'de> Deserialize<'de> for First {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FirstVisitor;
        impl<'de> Visitor<'de> for FirstVisitor {
            type Value = First;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First, A::Error> {
                let first = seq.next_element::<Num>()?.unwrap_or_default();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
            fn visit_unit<E>(self) -> Result<First, E> {
                Ok(First::default())
            }
            fn visit_none<E>(self) -> Result<First, E> {
                Ok(First::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<First, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(FirstVisitor)
    }
}

/// Field-wise sum of a JSON object's values (devices, interfaces), without
/// keeping the keys. Used for `net` and `blockstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summed<T>(pub T);

/// Field-wise addition of per-device records.
pub trait FieldSum: Default {
    /// Adds `other` into `self`, field by field.
    fn add_fields(&mut self, other: Self);
}

impl<'de, T: Deserialize<'de> + FieldSum> Deserialize<'de> for Summed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SumVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + FieldSum> Visitor<'de> for SumVisitor<T> {
            type Value = Summed<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of per-device records")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Summed<T>, A::Error> {
                let mut total = T::default();
                while let Some((_, v)) = map.next_entry::<IgnoredAny, T>()? {
                    total.add_fields(v);
                }
                Ok(Summed(total))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Summed<T>, E> {
                Ok(Summed(T::default()))
            }
        }
        d.deserialize_any(SumVisitor(PhantomData))
    }
}

/// `guest.cpu_total_jiffies`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CpuTotal {
    /// Jiffies in user mode.
    pub user: Num,
    /// Jiffies in kernel mode.
    pub system: Num,
    /// Jiffies idle.
    pub idle: Num,
    /// Jiffies waiting for I/O.
    pub iowait: Num,
    /// Jiffies in soft interrupts.
    pub softirq: Num,
}

/// One interface of `guest.net`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct NetIface {
    /// Bytes received.
    pub rx_bytes: Num,
    /// Bytes sent.
    pub tx_bytes: Num,
    /// Packets received.
    pub rx_pkts: Num,
    /// Packets sent.
    pub tx_pkts: Num,
}

impl FieldSum for NetIface {
    fn add_fields(&mut self, o: Self) {
        self.rx_bytes = self.rx_bytes.add(o.rx_bytes);
        self.tx_bytes = self.tx_bytes.add(o.tx_bytes);
        self.rx_pkts = self.rx_pkts.add(o.rx_pkts);
        self.tx_pkts = self.tx_pkts.add(o.tx_pkts);
    }
}

/// One device of `qmp.blockstats`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BlockDev {
    /// Read operations.
    pub rd_ops: Num,
    /// Write operations.
    pub wr_ops: Num,
    /// Bytes read.
    pub rd_bytes: Num,
    /// Bytes written.
    pub wr_bytes: Num,
}

impl FieldSum for BlockDev {
    fn add_fields(&mut self, o: Self) {
        self.rd_ops = self.rd_ops.add(o.rd_ops);
        self.wr_ops = self.wr_ops.add(o.wr_ops);
        self.rd_bytes = self.rd_bytes.add(o.rd_bytes);
        self.wr_bytes = self.wr_bytes.add(o.wr_bytes);
    }
}

/// `qmp.kvm_stats`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct KvmStats {
    /// Remote TLB flushes.
    pub remote_tlb_flush: Num,
    /// Guest pages mapped with 4 KiB pages.
    pub pages_4k: Num,
    /// Guest pages mapped with 2 MiB pages.
    pub pages_2m: Num,
}

/// One telemetry line of any source. Every field is optional; `t_wall_ns` must be
/// an integer when present (a float or a string makes the line unparseable, as the
/// contract requires an integer timestamp).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct TelemetryRow {
    /// CLOCK_REALTIME of the sample: the one time every source is aligned on.
    pub t_wall_ns: Option<i64>,
    // proc
    /// proc: user-mode CPU of the qemu process, in jiffies.
    pub cpu_user_jiffies: Num,
    /// proc: kernel-mode CPU of the qemu process, in jiffies.
    pub cpu_sys_jiffies: Num,
    /// proc: resident memory.
    pub rss_bytes: Num,
    /// proc: virtual memory size.
    pub vsize_bytes: Num,
    /// proc: bytes read from storage.
    pub io_read_bytes: Num,
    /// proc: bytes written to storage.
    pub io_write_bytes: Num,
    /// proc: voluntary context switches.
    pub voluntary_ctxsw: Num,
    /// proc: involuntary context switches.
    pub involuntary_ctxsw: Num,
    /// proc: minor page faults.
    pub minor_faults: Num,
    /// proc: major page faults.
    pub major_faults: Num,
    // guest
    /// guest: CPU time by mode, in jiffies.
    pub cpu_total_jiffies: Option<CpuTotal>,
    /// guest: the 1, 5 and 15 minute load averages (the first is read).
    pub load_1m_5m_15m: First,
    /// guest: available memory.
    pub mem_available_bytes: Num,
    /// guest: buffer memory.
    pub mem_buffers_bytes: Num,
    /// guest: page cache.
    pub mem_cached_bytes: Num,
    /// guest: swap in use.
    pub swap_used_bytes: Num,
    /// guest: counters of every interface, summed.
    pub net: Summed<NetIface>,
    /// guest: how many ports listen.
    pub listen_ports: ListLen,
    /// guest: how many processes the agent lists.
    pub top_procs: ListLen,
    // qmp
    /// qmp: block counters of every device, summed.
    pub blockstats: Summed<BlockDev>,
    /// qmp: KVM's counters.
    pub kvm_stats: Option<KvmStats>,
    // netflow
    /// netflow: the bucket's length (counts are per bucket).
    pub bucket_ms: Num,
    /// netflow: packets into the guest.
    pub pkts_in: Num,
    /// netflow: packets out of the guest.
    pub pkts_out: Num,
    /// netflow: bytes into the guest.
    pub bytes_in: Num,
    /// netflow: bytes out of the guest.
    pub bytes_out: Num,
    /// netflow: TCP SYN packets.
    pub syn_count: Num,
    /// netflow: TCP FIN packets.
    pub fin_count: Num,
    /// netflow: TCP RST packets.
    pub rst_count: Num,
    /// netflow: UDP packets.
    pub udp_count: Num,
    /// netflow: TCP packets.
    pub tcp_count: Num,
    /// netflow: DNS queries.
    pub dns_query_count: Num,
    /// netflow: TCP flows opened.
    pub tcp_new_flows: Num,
    /// netflow: distinct destination addresses.
    pub unique_dst_ips: Num,
    /// netflow: distinct destination ports.
    pub unique_dst_ports: Num,
}

/// One line of `labels.jsonl`. Only the phase and wall time are read.
#[derive(Clone, Debug, Deserialize)]
pub struct LabelRow {
    /// The phase name (checked by validation).
    pub phase: Option<String>,
    /// When the phase began.
    pub t_wall_ns: i64,
}

/// `pre_kill_probe` of a `workload_killed` event.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct KillProbe {
    /// How many probes answered "yes" before the kill (a number or a string).
    pub yes: Num,
}

/// One line of `events.jsonl`. Only what classification reads is kept.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventRow {
    /// The event's name.
    pub event: Option<String>,
    /// The probe of a `workload_killed` event.
    pub pre_kill_probe: Option<KillProbe>,
    /// The error of a `workload_failed` event, if it says one.
    pub error: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str) -> TelemetryRow {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn missing_and_odd_fields_are_missing_not_errors() {
        let r = row(r#"{"t_wall_ns": 5, "rss_bytes": "12", "vsize_bytes": true, "extra": [1]}"#);
        assert_eq!(r.t_wall_ns, Some(5));
        assert_eq!(r.rss_bytes, Num(Some(12.0)));
        assert_eq!(r.vsize_bytes, Num(None));
        assert_eq!(r.cpu_user_jiffies, Num(None));
    }

    #[test]
    fn maps_are_summed_and_lists_counted() {
        let r = row(r#"{"t_wall_ns": 1,
                "net": {"eth0": {"rx_bytes": 10, "tx_bytes": 1}, "lo": {"rx_bytes": 5}},
                "blockstats": {"vda": {"wr_bytes": 7}, "vdb": {"wr_bytes": 8, "rd_ops": 2}},
                "listen_ports": [22, 80], "top_procs": [{"pid": 1}],
                "load_1m_5m_15m": [1.5, 2, 3]}"#);
        assert_eq!(r.net.0.rx_bytes, Num(Some(15.0)));
        assert_eq!(r.net.0.tx_bytes, Num(Some(1.0)));
        assert_eq!(r.net.0.rx_pkts, Num(None));
        assert_eq!(r.blockstats.0.wr_bytes, Num(Some(15.0)));
        assert_eq!(r.blockstats.0.rd_ops, Num(Some(2.0)));
        assert_eq!(r.listen_ports, ListLen(Some(2)));
        assert_eq!(r.top_procs, ListLen(Some(1)));
        assert_eq!(r.load_1m_5m_15m, First(Num(Some(1.5))));
    }

    #[test]
    fn non_integer_wall_time_is_an_error() {
        assert!(serde_json::from_str::<TelemetryRow>(r#"{"t_wall_ns": 1.5}"#).is_err());
        assert!(serde_json::from_str::<TelemetryRow>(r#"{"t_wall_ns": "1"}"#).is_err());
    }

    #[test]
    fn probe_yes_accepts_strings_and_numbers() {
        let e: EventRow = serde_json::from_str(r#"{"event":"workload_killed","pre_kill_probe":{"yes":"0"}}"#).unwrap();
        assert_eq!(e.pre_kill_probe.unwrap().yes, Num(Some(0.0)));
        let e: EventRow = serde_json::from_str(r#"{"event":"x","pre_kill_probe":{"yes":2}}"#).unwrap();
        assert_eq!(e.pre_kill_probe.unwrap().yes, Num(Some(2.0)));
    }
}
