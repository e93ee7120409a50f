//! Classify: is an episode fake? (SPEC section 6, the prune reasons)
//!
//! The classifier is multi-source. A single-source version once archived 143
//! good episodes of a contended laptop host as fake: their host /proc CPU was
//! flat while netflow, qmp and the guest clearly showed the workload. A source
//! that is missing or too sparse is *unknown*, never flat; an episode is flat
//! only when at least one source could be judged and no judged source shows
//! inter-phase signal.

use crate::align::points;
use crate::channels::{channel_index, channels_of, Kind, Phase, Source};
use crate::fingerprint::Operator;
use crate::model::{phase_at, AlignedEpisode, AlignedSource, Series};
use crate::shared_values::SharedValues;
use serde::{Deserialize, Serialize};

/// Thresholds of the inter-phase signal tests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifyConfig {
    /// A phase counts for a source with at least this many points.
    pub min_points_per_phase: usize,
    /// A source is judged with at least this many counting phases.
    pub min_phases: usize,
    /// proc: spread of per-phase median CPU% (jiffies/s, 100 = one core).
    pub proc_min_cpu_delta: f64,
    /// netflow: spread of per-phase mean bytes/s, and max/min ratio.
    pub netflow_min_delta_bps: f64,
    /// netflow: the max/min ratio the per-phase means must also reach.
    pub netflow_min_ratio: f64,
    /// qmp: spread of per-phase block throughput (bytes/s), and max/min ratio.
    pub qmp_min_delta_bps: f64,
    /// qmp: the max/min ratio the per-phase throughputs must also reach.
    pub qmp_min_ratio: f64,
    /// guest: spread of per-phase mean `load_1m`.
    pub guest_min_load_delta: f64,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            min_points_per_phase: 3,
            min_phases: 2,
            proc_min_cpu_delta: 5.0,
            netflow_min_delta_bps: 8192.0,
            netflow_min_ratio: 2.0,
            qmp_min_delta_bps: 262_144.0,
            qmp_min_ratio: 2.0,
            guest_min_load_delta: 0.3,
        }
    }
}

/// The prune reasons, in the order they are always listed.
pub const REASONS: [&str; 5] = ["no-sample", "no-workload-events", "workload-failed", "workload-silent", "flat-cpu"];

/// What the classifier concluded about one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Too few points or phases to judge.
    Unknown,
    /// Judged, and the phases differ.
    Signal,
    /// Judged, and the phases look alike.
    Flat,
}

/// One row of the quality report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityRecord {
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id on that host.
    pub episode_id: String,
    /// Reasons in [`REASONS`] order.
    pub reasons: Vec<String>,
    /// Whether any reason applies: what prune flags.
    pub fake: bool,
    /// `meta.sample.name`, when the meta names a sample.
    pub sample_name: Option<String>,
    /// `meta.module`, the exploit module that delivered it.
    pub module_name: Option<String>,
    /// Per source, in [`Source::ALL`] order.
    pub sources: [Verdict; 4],
}

/// The classify operator.
#[derive(Clone, Debug, Default)]
pub struct Classify {
    /// The thresholds (SPEC section 6 defaults).
    pub config: ClassifyConfig,
}

impl Operator for Classify {
    const NAME: &'static str = "classify";
    const VERSION: u32 = 1;
    type Config = ClassifyConfig;
    type Input = AlignedEpisode;
    type Output = QualityRecord;

    fn config(&self) -> &ClassifyConfig {
        &self.config
    }

    fn apply(&self, ep: &AlignedEpisode) -> QualityRecord {
        let facts = &ep.facts;
        let meta = facts.meta();
        let sample_name = meta.and_then(|m| m.sample_name.clone());
        let events = facts.events.as_deref().unwrap_or(&[]);
        let has = |name: &str| events.iter().any(|e| e.event == name);
        let sources = Source::ALL.map(|s| self.verdict(ep, s));
        let judged = sources.iter().any(|v| *v != Verdict::Unknown);
        let flat = judged && !sources.contains(&Verdict::Signal);
        let probe_silent = events.iter().any(|e| e.event == "workload_killed" && e.probe_yes.is_some_and(|y| y == 0.0));
        let mut reasons = Vec::new();
        if sample_name.is_none() {
            reasons.push(REASONS[0]);
        }
        if !["workload_setup", "workload_started", "workload_killed", "workload_failed"].iter().any(|e| has(e)) {
            reasons.push(REASONS[1]);
        }
        if has("workload_failed") {
            reasons.push(REASONS[2]);
        }
        if probe_silent && flat {
            reasons.push(REASONS[3]);
        }
        if flat {
            reasons.push(REASONS[4]);
        }
        QualityRecord {
            host_id: facts.key.host_id.clone(),
            episode_id: facts.key.episode_id.clone(),
            fake: !reasons.is_empty(),
            reasons: reasons.into_iter().map(String::from).collect(),
            sample_name,
            module_name: meta.and_then(|m| m.module_name.clone()),
            sources,
        }
    }
}

/// Whether a source's statistic moved enough between two phases (low, high).
type PhaseTest<'a> = dyn Fn(f64, f64) -> bool + 'a;

impl Classify {
    /// Whether one source shows inter-phase signal.
    pub fn verdict(&self, ep: &AlignedEpisode, source: Source) -> Verdict {
        let c = &self.config;
        let src = &ep.sources[source.index()];
        let (series, stat, test): (Series, Stat, Box<PhaseTest>) = match source {
            Source::Proc => (
                points(
                    Kind::Counter,
                    &src.t,
                    &summed(src, source, &["proc.cpu_user_jiffies", "proc.cpu_sys_jiffies"]),
                    &[],
                ),
                Stat::Median,
                Box::new(move |lo, hi| hi - lo >= c.proc_min_cpu_delta),
            ),
            Source::Netflow => (
                points(
                    Kind::Bucket,
                    &src.t,
                    &summed(src, source, &["netflow.bytes_in", "netflow.bytes_out"]),
                    &src.bucket_ms,
                ),
                Stat::Mean,
                Box::new(move |lo, hi| hi - lo >= c.netflow_min_delta_bps && hi >= c.netflow_min_ratio * lo),
            ),
            Source::Qmp => (
                points(
                    Kind::Gauge,
                    &src.t,
                    &summed(src, source, &["qmp.blockstats.rd_bytes", "qmp.blockstats.wr_bytes"]),
                    &[],
                ),
                Stat::Throughput,
                Box::new(move |lo, hi| hi - lo >= c.qmp_min_delta_bps && hi >= c.qmp_min_ratio * lo),
            ),
            Source::Guest => (
                ep.channels[channel_index("guest.load_1m").unwrap_or(15)].clone(),
                Stat::Mean,
                Box::new(move |lo, hi| hi - lo >= c.guest_min_load_delta),
            ),
        };
        let per_phase = self.per_phase(&ep.phases, &series, stat);
        if per_phase.len() < c.min_phases {
            return Verdict::Unknown;
        }
        let lo = per_phase.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per_phase.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if test(lo, hi) {
            Verdict::Signal
        } else {
            Verdict::Flat
        }
    }

    /// The statistic of every phase that holds enough points. Points before the
    /// first label belong to no phase and are ignored.
    fn per_phase(&self, phases: &[(f64, Phase)], series: &Series, stat: Stat) -> Vec<f64> {
        let mut groups: Vec<Vec<(f64, f64)>> = vec![Vec::new(); Phase::ALL.len()];
        for (&t, &v) in series.t.iter().zip(&series.v) {
            if let Some(p) = phase_at(phases, t) {
                groups[p.class_id() as usize].push((t, v));
            }
        }
        groups.iter().filter(|g| g.len() >= self.config.min_points_per_phase).filter_map(|g| stat.of(g)).collect()
    }
}

/// Per-phase statistics of SPEC section 6.
#[derive(Clone, Copy)]
enum Stat {
    Median,
    Mean,
    /// `(last - first) / (t_last - t_first)` of a cumulative value.
    Throughput,
}

impl Stat {
    fn of(self, points: &[(f64, f64)]) -> Option<f64> {
        match self {
            Stat::Mean => Some(points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64),
            Stat::Median => {
                let mut v: Vec<f64> = points.iter().map(|p| p.1).collect();
                v.sort_by(f64::total_cmp);
                let n = v.len();
                Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
            }
            Stat::Throughput => {
                let (first, last) = (points.first()?, points.last()?);
                let span = last.0 - first.0;
                (span > 0.0).then(|| (last.1 - first.1) / span)
            }
        }
    }
}

/// Row-wise sum of some of a source's channels; NaN where all are missing.
///
/// Column by column into one vector: a row's first present value is taken
/// as it is and later ones added in column order, the additions (and so the
/// bits) of summing the row's present values in order.
fn summed(src: &AlignedSource, source: Source, names: &[&str]) -> SharedValues {
    let mut sums = vec![f64::NAN; src.t.len()];
    let cols = channels_of(source)
        .enumerate()
        .filter(|(_, ch)| names.contains(&crate::channels::CHANNELS[*ch].name))
        .filter_map(|(col, _)| src.columns.get(col));
    for col in cols {
        for (sum, &v) in sums.iter_mut().zip(col.iter()) {
            if !v.is_nan() {
                *sum = if sum.is_nan() { v } else { *sum + v };
            }
        }
    }
    sums.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::aligned;

    /// Labels at 0 s (clean), 10 s (infected_running) and 20 s (dormant).
    const PHASES: [(f64, &str); 3] = [(0.0, "clean"), (10.0, "infected_running"), (20.0, "dormant")];

    fn episode(members: &[(&str, Vec<(f64, String)>)]) -> AlignedEpisode {
        aligned(&PHASES, None, members)
    }

    /// Rows every `step` seconds over 30 s; `f(t)` gives the fields after t_wall_ns.
    fn rows(step: f64, f: impl Fn(f64) -> String) -> Vec<(f64, String)> {
        crate::test_support::rows(0.0, 30.0, step, f)
    }

    fn running(t: f64) -> bool {
        (10.0..20.0).contains(&t)
    }

    use proptest::prelude::*;

    proptest! {
        /// Each row's present values added in column order (signed zeros
        /// and all), NaN where none is present: bit for bit the row's
        /// present values summed.
        #[test]
        fn summed_is_each_rows_present_values_summed(
            rows in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(f64::NAN), Just(-0.0), Just(0.0), -1e6f64..1e6], 3),
                0..20,
            ),
        ) {
            let names = ["proc.cpu_user_jiffies", "proc.cpu_sys_jiffies", "proc.rss_bytes"];
            let positions: Vec<usize> = names
                .iter()
                .map(|name| channels_of(Source::Proc).position(|ch| crate::channels::CHANNELS[ch].name == *name).unwrap())
                .collect();
            let mut columns = vec![vec![f64::NAN; rows.len()]; channels_of(Source::Proc).count()];
            for (i, row) in rows.iter().enumerate() {
                for (k, &value) in row.iter().enumerate() {
                    columns[positions[k]][i] = value;
                }
            }
            let src = AlignedSource {
                t: (0..rows.len()).map(|i| i as f64).collect(),
                columns: columns.into_iter().map(SharedValues::from).collect(),
                bucket_ms: Vec::new(),
            };
            let got = summed(&src, Source::Proc, &names);
            for (i, row) in rows.iter().enumerate() {
                let present: Vec<f64> = row.iter().copied().filter(|v| !v.is_nan()).collect();
                let expected = if present.is_empty() { f64::NAN } else { present.iter().sum() };
                prop_assert_eq!(got[i].to_bits(), expected.to_bits(), "row {:?}", row);
            }
        }
    }

    #[test]
    fn proc_signal_is_the_spread_of_per_phase_median_cpu() {
        let c = Classify::default();
        // Cumulative jiffies rising at 10/s, then 16/s while running, then 10/s.
        let cum = |t: f64| {
            if t < 10.0 {
                t * 10.0
            } else if t < 20.0 {
                100.0 + (t - 10.0) * 16.0
            } else {
                260.0 + (t - 20.0) * 10.0
            }
        };
        let ep = episode(&[(
            "telemetry-proc.jsonl",
            rows(0.5, |t| format!("\"cpu_user_jiffies\":{},\"cpu_sys_jiffies\":0", cum(t))),
        )]);
        // Medians 10, 16, 10 jiffies/s: spread 6 ≥ 5 → signal.
        assert_eq!(c.verdict(&ep, Source::Proc), Verdict::Signal);
        let cum = |t: f64| {
            if t < 10.0 {
                t * 10.0
            } else if t < 20.0 {
                100.0 + (t - 10.0) * 14.0
            } else {
                240.0 + (t - 20.0) * 10.0
            }
        };
        let ep = episode(&[(
            "telemetry-proc.jsonl",
            rows(0.5, |t| format!("\"cpu_user_jiffies\":{},\"cpu_sys_jiffies\":0", cum(t))),
        )]);
        assert_eq!(c.verdict(&ep, Source::Proc), Verdict::Flat, "spread 4 < 5");
    }

    #[test]
    fn guest_netflow_and_qmp_thresholds() {
        let c = Classify::default();
        let guest =
            |hi: f64| rows(1.0, move |t| format!("\"load_1m_5m_15m\":[{},0,0]", if running(t) { hi } else { 0.1 }));
        assert_eq!(c.verdict(&episode(&[("telemetry-guest.jsonl", guest(0.4))]), Source::Guest), Verdict::Signal);
        assert_eq!(c.verdict(&episode(&[("telemetry-guest.jsonl", guest(0.35))]), Source::Guest), Verdict::Flat);
        // netflow: 1000 B/s outside, x B/s inside, buckets of 100 ms.
        let net = |inside: f64| {
            rows(0.1, move |t| {
                format!(
                    "\"bucket_ms\":100,\"bytes_in\":{},\"bytes_out\":0",
                    if running(t) { inside } else { 1000.0 } / 10.0
                )
            })
        };
        assert_eq!(c.verdict(&episode(&[("netflow.jsonl", net(9500.0))]), Source::Netflow), Verdict::Signal);
        assert_eq!(
            c.verdict(&episode(&[("netflow.jsonl", net(9000.0))]), Source::Netflow),
            Verdict::Flat,
            "8000 < 8192"
        );
        // qmp: cumulative bytes; 300 KB/s inside vs 10 KB/s outside.
        let qmp = |inside: f64| {
            let cum = move |t: f64| {
                if t < 10.0 {
                    t * 1e4
                } else if t < 20.0 {
                    1e5 + (t - 10.0) * inside
                } else {
                    1e5 + 10.0 * inside + (t - 20.0) * 1e4
                }
            };
            rows(1.0, move |t| format!("\"blockstats\":{{\"vda\":{{\"rd_bytes\":{},\"wr_bytes\":0}}}}", cum(t)))
        };
        assert_eq!(c.verdict(&episode(&[("telemetry-qmp.jsonl", qmp(3e5))]), Source::Qmp), Verdict::Signal);
        assert_eq!(
            c.verdict(&episode(&[("telemetry-qmp.jsonl", qmp(2.6e5))]), Source::Qmp),
            Verdict::Flat,
            "250 KB/s spread"
        );
    }

    #[test]
    fn sparse_or_missing_sources_are_unknown_never_flat() {
        let c = Classify::default();
        // Two points per phase: no phase counts.
        let ep = episode(&[("telemetry-guest.jsonl", rows(5.0, |_| "\"load_1m_5m_15m\":[0.1,0,0]".into()))]);
        assert_eq!(c.verdict(&ep, Source::Guest), Verdict::Unknown);
        assert_eq!(c.verdict(&ep, Source::Proc), Verdict::Unknown);
        let q = c.apply(&ep);
        assert!(!q.reasons.contains(&"flat-cpu".to_string()), "nothing judged, nothing flat: {:?}", q.reasons);
    }

    #[test]
    fn the_probe_alone_never_flags_silent() {
        let c = Classify::default();
        let mut ep = episode(&[]);
        ep.facts.events = Some(vec![crate::model::Event { event: "workload_killed".into(), probe_yes: Some(0.0) }]);
        assert!(c.apply(&ep).reasons.is_empty(), "no source judged");
        let flat_guest = rows(1.0, |_| "\"load_1m_5m_15m\":[0.1,0,0]".into());
        let mut ep = episode(&[("telemetry-guest.jsonl", flat_guest)]);
        ep.facts.events = Some(vec![crate::model::Event { event: "workload_killed".into(), probe_yes: Some(0.0) }]);
        assert_eq!(c.apply(&ep).reasons, vec!["workload-silent", "flat-cpu"]);
    }

    #[test]
    fn rows_before_the_first_label_belong_to_no_phase() {
        let c = Classify::default();
        // A burst before t0 (negative times) must not make the guest look busy.
        let mut guest = crate::test_support::rows(-10.0, 0.0, 0.5, |_| "\"load_1m_5m_15m\":[5,0,0]".into());
        guest.extend(rows(1.0, |_| "\"load_1m_5m_15m\":[0.1,0,0]".into()));
        let ep = episode(&[("telemetry-guest.jsonl", guest)]);
        assert_eq!(c.verdict(&ep, Source::Guest), Verdict::Flat);
    }
}
