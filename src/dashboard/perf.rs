//! The `perf` producer: the pipeline's work as the run statistics of an
//! update (or of an update under way) give it.

use super::corpus::Corpus;
use super::events::{Event, OperatorPerf, Perf};
use epiflow_engine::stats::RunStats;
use epiflow_pipelines::corpus::OperatorTotals;
use std::collections::BTreeMap;
use std::time::Duration;

/// The `perf` event of an update that computed `processed` episodes (some
/// stage computed rather than found cached) in `stats.wall_s`, for features
/// publication `generation`.
pub fn of(stats: &RunStats, processed: u64, generation: u64) -> Event {
    let operators = stats
        .operators
        .iter()
        .map(|(name, o)| {
            let perf = OperatorPerf { computed: o.computed, cached: o.cached, failed: o.failed, busy_s: o.wall_s };
            (name.clone(), perf)
        })
        .collect();
    Event::Perf(Perf {
        operators,
        episodes_per_s: if stats.wall_s > 0.0 { processed as f64 / stats.wall_s } else { 0.0 },
        episodes: stats.episodes,
        windows: stats.windows,
        generation,
    })
}

/// The `perf` event of an update under way: what its episodes so far went
/// through, `episodes` of them computed, in `elapsed`, against the last
/// publication's corpus (`corpus`, with `windows` published).
pub fn under_way(
    operators: &BTreeMap<String, OperatorTotals>,
    episodes: u64,
    elapsed: Duration,
    corpus: &Corpus,
    windows: u64,
) -> Event {
    let operators = operators
        .iter()
        .map(|(name, o)| {
            let busy_s = o.nanos as f64 / 1e9;
            (name.clone(), OperatorPerf { computed: o.computed, cached: o.cached, failed: o.failed, busy_s })
        })
        .collect();
    let seconds = elapsed.as_secs_f64();
    Event::Perf(Perf {
        operators,
        episodes_per_s: if seconds > 0.0 { episodes as f64 / seconds } else { 0.0 },
        episodes: corpus.records.len() as u64,
        windows,
        generation: corpus.generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_engine::stats::OperatorStats;

    #[test]
    fn perf_carries_every_operator_and_the_update_rate() {
        let mut stats = RunStats { episodes: 40, windows: 900, wall_s: 2.0, ..RunStats::default() };
        let decode = OperatorStats { computed: 5, cached: 35, failed: 1, wall_s: 0.25, fingerprint: None };
        stats.operators.insert("decode".into(), decode);
        stats.operators.insert("window".into(), OperatorStats::default());
        let Event::Perf(perf) = of(&stats, 6, 3) else { panic!("not perf") };
        assert_eq!(perf.operators.len(), 2);
        assert_eq!(perf.operators["decode"], OperatorPerf { computed: 5, cached: 35, failed: 1, busy_s: 0.25 });
        assert_eq!((perf.episodes_per_s, perf.episodes, perf.windows, perf.generation), (3.0, 40, 900, 3));
        let idle = RunStats { wall_s: 0.0, ..stats };
        let Event::Perf(perf) = of(&idle, 6, 3) else { panic!("not perf") };
        assert_eq!(perf.episodes_per_s, 0.0, "no time, no rate (never infinite)");
    }

    #[test]
    fn perf_under_way_counts_the_episodes_done_so_far_against_the_last_publication() {
        let decode = OperatorTotals { computed: 3, cached: 1, failed: 1, nanos: 500_000_000 };
        let operators: BTreeMap<String, OperatorTotals> = [("decode".to_string(), decode)].into();
        let corpus = Corpus { generation: 4, ..Corpus::default() };
        let Event::Perf(perf) = under_way(&operators, 5, Duration::from_secs(2), &corpus, 70) else { panic!() };
        assert_eq!(perf.operators["decode"], OperatorPerf { computed: 3, cached: 1, failed: 1, busy_s: 0.5 });
        assert_eq!((perf.episodes_per_s, perf.episodes, perf.windows, perf.generation), (2.5, 0, 70, 4));
    }
}
