//! Archive builders for tests (this crate's and, through the `test-support`
//! feature, the CLI tests'). Member names are written as given, even hostile
//! ones (`..`, absolute), the way a damaged or malicious archive would.

/// An uncompressed tar of raw members.
pub fn tar_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name like a hostile archive would.
        if let Some(gnu) = header.as_gnu_mut() {
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, *data).expect("appending to a Vec cannot fail");
    }
    builder.into_inner().expect("finishing a Vec cannot fail")
}

/// A zstd-compressed tar of raw members.
pub fn tar_zst(members: &[(&str, &[u8])]) -> Vec<u8> {
    zstd::encode_all(&tar_bytes(members)[..], 3).expect("compressing a slice cannot fail")
}

/// Wall clock of `t = 0` in test episodes (~2026-04-30, as in the seed tests).
pub const T0: i64 = 1_777_583_279_000_000_000;

/// Members of an episode archive (under `e/`): labels at `(seconds, phase)`,
/// a meta with an optional duration, and telemetry members whose rows are
/// `(seconds, "fields after t_wall_ns")`.
pub fn episode_members(
    labels: &[(f64, &str)],
    duration_s: Option<f64>,
    telemetry: &[(&str, Vec<(f64, String)>)],
) -> Vec<(String, Vec<u8>)> {
    let at = |t: f64| T0 + (t * 1e9).round() as i64;
    let duration = duration_s.map(|d| format!(",\"result\":{{\"duration_observed_s\":{d}}}")).unwrap_or_default();
    let mut members = vec![
        (
            "e/meta.json".to_string(),
            format!("{{\"schema_version\":1,\"sample\":{{\"name\":\"s\"}}{duration}}}").into_bytes(),
        ),
        (
            "e/labels.jsonl".to_string(),
            labels
                .iter()
                .map(|(t, p)| format!("{{\"phase\":\"{p}\",\"t_wall_ns\":{}}}\n", at(*t)))
                .collect::<String>()
                .into_bytes(),
        ),
        ("e/events.jsonl".to_string(), b"{\"event\":\"workload_started\"}\n".to_vec()),
    ];
    for (name, rows) in telemetry {
        let text: String = rows
            .iter()
            .map(|(t, f)| {
                if f.is_empty() {
                    format!("{{\"t_wall_ns\":{}}}\n", at(*t))
                } else {
                    format!("{{\"t_wall_ns\":{},{f}}}\n", at(*t))
                }
            })
            .collect();
        members.push((format!("e/{name}"), text.into_bytes()));
    }
    members
}

/// The aligned episode of [`episode_members`], through the real decoder.
pub fn aligned(
    labels: &[(f64, &str)],
    duration_s: Option<f64>,
    telemetry: &[(&str, Vec<(f64, String)>)],
) -> crate::model::AlignedEpisode {
    aligned_from(&episode_members(labels, duration_s, telemetry))
}

/// The aligned episode of archive members, through the real decoder.
pub fn aligned_from(members: &[(String, Vec<u8>)]) -> crate::model::AlignedEpisode {
    use crate::fingerprint::Operator;
    let raw: Vec<(&str, &[u8])> = members.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    let key = crate::model::EpisodeKey { host_id: "h".into(), episode_id: "e".into() };
    let decoded =
        crate::decode::Decode::default().decode_bytes(&tar_zst(&raw), key, None, "e").expect("test archive decodes");
    crate::align::Align.apply(&decoded)
}

/// Rows every `step` seconds in `[from, to)`, fields from `f(t)`.
pub fn rows(from: f64, to: f64, step: f64, f: impl Fn(f64) -> String) -> Vec<(f64, String)> {
    let n = ((to - from) / step).round() as i64;
    (0..n).map(|k| from + k as f64 * step).map(|t| (t, f(t))).collect()
}

/// The earlier tooling's `_FakeEpi`: `n_seconds` of proc and guest and netflow
/// at 10 Hz and qmp at 1 Hz, a proc CPU counter rising `cpu_per_s` jiffies per
/// second, and netflow rows whose `t_mono_ns` may be garbage.
pub fn seed_episode(
    n_seconds: f64,
    phases: &[(f64, &str)],
    cpu_per_s: f64,
    garbage_mono: bool,
) -> Vec<(String, Vec<u8>)> {
    let mono = if garbage_mono { "1777543932511943778".to_string() } else { "0".to_string() };
    let proc = rows(0.0, n_seconds, 0.1, |t| {
        format!("\"cpu_user_jiffies\":{},\"cpu_sys_jiffies\":0,\"rss_bytes\":1000000,\"vsize_bytes\":2000000,\"io_read_bytes\":0,\"io_write_bytes\":0,\"voluntary_ctxsw\":0,\"involuntary_ctxsw\":0,\"minor_faults\":0,\"major_faults\":0", ((t * 10.0).round() + 1.0) * cpu_per_s / 10.0)
    });
    let guest = rows(0.0, n_seconds, 0.1, |t| {
        let k = (t * 10.0).round() as i64;
        format!("\"cpu_total_jiffies\":{{\"user\":{k},\"system\":0,\"idle\":0,\"iowait\":0,\"softirq\":0}},\"load_1m_5m_15m\":[0.1,0,0],\"mem_total_bytes\":1,\"mem_available_bytes\":1,\"mem_buffers_bytes\":1,\"mem_cached_bytes\":1,\"swap_used_bytes\":0,\"net\":{{\"eth0\":{{\"rx_bytes\":0,\"tx_bytes\":0,\"rx_pkts\":0,\"tx_pkts\":0}}}},\"listen_ports\":[],\"top_procs\":[]")
    });
    let qmp = rows(0.0, n_seconds, 1.0, |_| {
        "\"vm_status\":\"running\",\"vm_running\":true,\"blockstats\":{\"virtio0\":{\"rd_ops\":0,\"wr_ops\":0,\"rd_bytes\":0,\"wr_bytes\":0}},\"kvm_stats\":{\"remote_tlb_flush\":0,\"pages_4k\":0,\"pages_2m\":0}".to_string()
    });
    let netflow = rows(0.0, n_seconds, 0.1, |_| {
        format!("\"t_mono_ns\":{mono},\"bucket_ms\":100,\"pkts_in\":0,\"pkts_out\":0,\"bytes_in\":0,\"bytes_out\":0,\"syn_count\":0,\"fin_count\":0,\"rst_count\":0,\"udp_count\":0,\"tcp_count\":0,\"dns_query_count\":0,\"unique_dst_ips\":0,\"unique_dst_ports\":0,\"tcp_new_flows\":0")
    });
    episode_members(
        phases,
        Some(n_seconds),
        &[
            ("telemetry-proc.jsonl", proc),
            ("telemetry-guest.jsonl", guest),
            ("telemetry-qmp.jsonl", qmp),
            ("netflow.jsonl", netflow),
        ],
    )
}
