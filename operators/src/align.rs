//! Align: every source onto one time axis, `t = (t_wall_ns - t0) / 1e9`, and raw
//! values into points (SPEC section 4).
//!
//! `t0` is the first label row's wall time. `t_mono_ns` is never read: its time
//! base differs per source, and using it once silently dropped every netflow
//! channel in the earlier tooling.

use crate::channels::{channels_of, Kind, Phase, Source, CHANNELS};
use crate::fingerprint::Operator;
use crate::model::{AlignedEpisode, AlignedSource, DecodedEpisode, MemberState, RowCounts, Series, SourceColumns};
use crate::shared_values::SharedValues;
use serde::Serialize;
use std::ops::Range;

/// The align operator. It has no configuration: the rules are the contract.
#[derive(Clone, Debug, Default)]
pub struct Align;

impl Operator for Align {
    const NAME: &'static str = "align";
    const VERSION: u32 = 1;
    type Config = NoConfig;
    type Input = DecodedEpisode;
    type Output = AlignedEpisode;

    fn config(&self) -> &NoConfig {
        &NoConfig
    }

    fn apply(&self, input: &DecodedEpisode) -> AlignedEpisode {
        align(input)
    }
}

/// The configuration of an operator that reads none.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct NoConfig;

/// Seconds between two wall times, subtracting as integers first (in
/// `i64` when the difference fits, which rounds to the same `f64` as the
/// `i128` difference and converts without a library call).
pub fn seconds_since(t_wall_ns: i64, t0_wall_ns: i64) -> f64 {
    match t_wall_ns.checked_sub(t0_wall_ns) {
        Some(ns) => ns as f64 / 1e9,
        None => (t_wall_ns as i128 - t0_wall_ns as i128) as f64 / 1e9,
    }
}

fn align(decoded: &DecodedEpisode) -> AlignedEpisode {
    let DecodedEpisode { facts, sources } = decoded;
    let facts = facts.clone();
    let labels: &[crate::model::Label] = match &facts.labels {
        MemberState::Present(l) => l,
        _ => &[],
    };
    let t0 = labels.first().map(|l| l.t_wall_ns);
    let phases: Vec<(f64, Phase)> = match t0 {
        Some(t0) => {
            labels.iter().filter_map(|l| Phase::parse(&l.phase).map(|p| (seconds_since(l.t_wall_ns, t0), p))).collect()
        }
        None => Vec::new(),
    };
    let row_counts = Source::ALL.map(|s| {
        let c = &sources[s.index()];
        RowCounts { present: c.present, lines: c.lines, bad_lines: c.bad_lines, good_rows: c.rows() as u64 }
    });
    let aligned: [AlignedSource; 4] = match t0 {
        Some(t0) => std::array::from_fn(|i| sort_and_dedup(&sources[i], t0)),
        None => std::array::from_fn(|i| AlignedSource {
            columns: vec![SharedValues::default(); sources[i].columns.len()],
            ..Default::default()
        }),
    };
    let duration = facts.meta().and_then(|m| m.duration_observed_s).filter(|d| d.is_finite() && *d > 0.0);
    let last_t = aligned.iter().filter_map(|s| s.t.last().copied()).reduce(f64::max);
    let t_end = duration.or(last_t);
    let channels = channel_series(&aligned);
    AlignedEpisode { facts, row_counts, t0_wall_ns: t0, t_end, phases, sources: aligned, channels }
}

/// Every channel's points (registry order) from the aligned sources. Cheap
/// next to decoding, so a cached episode stores its sources and derives these.
pub fn channel_series(sources: &[AlignedSource; 4]) -> Vec<Series> {
    let mut channels = vec![Series::default(); CHANNELS.len()];
    for source in Source::ALL {
        let s = &sources[source.index()];
        for (col, ch) in channels_of(source).enumerate() {
            channels[ch] = points(CHANNELS[ch].kind, &s.t, &s.columns[col], &s.bucket_ms);
        }
    }
    channels
}

/// Stable sort by `t_wall_ns`; of rows sharing a timestamp the later line wins.
fn sort_and_dedup(src: &SourceColumns, t0: i64) -> AlignedSource {
    // Most sources write their rows in time order, each time once: then
    // sorting keeps every row where it is, and the columns are shared as
    // they are instead of gathered row by row.
    if src.t_wall_ns.windows(2).all(|pair| pair[0] < pair[1]) {
        return AlignedSource {
            t: src.t_wall_ns.iter().map(|&t| seconds_since(t, t0)).collect(),
            columns: src.columns.clone(),
            bucket_ms: src.bucket_ms.clone(),
        };
    }
    let mut order: Vec<usize> = (0..src.rows()).collect();
    order.sort_by_key(|&i| src.t_wall_ns[i]);
    let mut keep: Vec<usize> = Vec::with_capacity(order.len());
    for i in order {
        match keep.last_mut() {
            Some(last) if src.t_wall_ns[*last] == src.t_wall_ns[i] => *last = i,
            _ => keep.push(i),
        }
    }
    // A late or repeated row moves or drops a few rows; the others are
    // copied a run of consecutive source rows at a time.
    let runs = consecutive_runs(&keep);
    let pick = |col: &[f64]| {
        let mut picked = Vec::with_capacity(keep.len());
        for run in &runs {
            picked.extend_from_slice(&col[run.clone()]);
        }
        picked
    };
    AlignedSource {
        t: keep.iter().map(|&i| seconds_since(src.t_wall_ns[i], t0)).collect(),
        columns: src.columns.iter().map(|col| pick(col).into()).collect(),
        bucket_ms: if src.bucket_ms.is_empty() { Vec::new() } else { pick(&src.bucket_ms) },
    }
}

/// `rows` as ranges of consecutive rows, in order.
fn consecutive_runs(rows: &[usize]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for &row in rows {
        match runs.last_mut() {
            Some(run) if run.end == row => run.end += 1,
            _ => runs.push(row..row + 1),
        }
    }
    runs
}

/// Turns one channel's raw values (NaN = missing) into points.
///
/// - gauge: the value at `t`;
/// - counter: `(v_k - v_prev) / (t_k - t_prev)` between consecutive rows that
///   carry the channel; no point at the first, at `t_k <= t_prev`, or at a reset;
/// - bucket: `v / bucket_s` with `bucket_s` from `bucket_ms` when positive, else
///   the gap to the source's previous row (none at the first row).
///
/// Points that are rows of the source share its vectors ([`SharedValues`]).
pub fn points(kind: Kind, t: &SharedValues, v: &SharedValues, bucket_ms: &[f64]) -> Series {
    let n = t.len().min(v.len());
    let (t, v) = (t.slice(0..n), v.slice(0..n));
    // Most columns have a value on every row. Then a gauge's points are the
    // rows themselves, a counter's rates come from consecutive rows and a
    // bucket's from each row's own bucket, in loops without a branch per
    // row; the points are the same, bit for bit.
    if !has_missing(&v) {
        match kind {
            Kind::Gauge => return Series { t, v },
            Kind::Counter => return counter_rates(&t, &v),
            Kind::Bucket if bucket_ms.len() >= n && bucket_ms[..n].iter().all(|&ms| ms > 0.0) => {
                let v = v.iter().zip(bucket_ms).map(|(&v, &ms)| v / (ms / 1000.0)).collect();
                return Series { t, v };
            }
            Kind::Bucket => {}
        }
    }
    points_row_by_row(kind, &t, &v, bucket_ms)
}

/// [`points`] by the rules as written, one row at a time: any column, with
/// values missing or not.
fn points_row_by_row(kind: Kind, t: &[f64], v: &[f64], bucket_ms: &[f64]) -> Series {
    // At most one point per row: one allocation per vector.
    let (mut out_t, mut out_v) = (Vec::with_capacity(t.len()), Vec::with_capacity(t.len()));
    let mut push = |t: f64, v: f64| {
        out_t.push(t);
        out_v.push(v);
    };
    match kind {
        Kind::Gauge => {
            for (&tk, &vk) in t.iter().zip(v) {
                if !vk.is_nan() {
                    push(tk, vk);
                }
            }
        }
        Kind::Counter => {
            let mut prev: Option<(f64, f64)> = None;
            for (&tk, &vk) in t.iter().zip(v) {
                if vk.is_nan() {
                    continue;
                }
                if let Some((tp, vp)) = prev {
                    if tk > tp && vk >= vp {
                        push(tk, (vk - vp) / (tk - tp));
                    }
                }
                prev = Some((tk, vk));
            }
        }
        Kind::Bucket => {
            for k in 0..t.len() {
                if v[k].is_nan() {
                    continue;
                }
                let ms = bucket_ms.get(k).copied().unwrap_or(f64::NAN);
                let bucket_s = if ms > 0.0 {
                    Some(ms / 1000.0)
                } else if k > 0 && t[k] > t[k - 1] {
                    Some(t[k] - t[k - 1])
                } else {
                    None
                };
                if let Some(b) = bucket_s {
                    push(t[k], v[k] / b);
                }
            }
        }
    }
    Series { t: out_t.into(), v: out_v.into() }
}

/// Whether any value is missing (NaN). Checked a block at a time without a
/// branch per value, so the check costs little next to copying the column.
fn has_missing(v: &[f64]) -> bool {
    v.chunks(64).any(|block| block.iter().fold(false, |missing, x| missing | x.is_nan()))
}

/// A counter's points when every row has a value: the rate from each row to
/// the next, kept where time advances and the counter did not fall. The
/// rates are computed for every pair in one loop the compiler vectorises;
/// the rare pairs that are not kept (resets) are then left out.
fn counter_rates(times: &SharedValues, v: &[f64]) -> Series {
    let t = &times[..];
    if t.len() < 2 {
        return Series::default();
    }
    let (t_prev, t_next, v_prev, v_next) = (&t[..t.len() - 1], &t[1..], &v[..v.len() - 1], &v[1..]);
    let kept = |tp: f64, tk: f64, vp: f64, vk: f64| tk > tp && vk >= vp;
    let mut all_kept = true;
    let rates: Vec<f64> = t_prev
        .iter()
        .zip(t_next)
        .zip(v_prev.iter().zip(v_next))
        .map(|((&tp, &tk), (&vp, &vk))| {
            all_kept &= kept(tp, tk, vp, vk);
            (vk - vp) / (tk - tp)
        })
        .collect();
    if all_kept {
        return Series { t: times.slice(1..t.len()), v: rates.into() };
    }
    let (mut out_t, mut out_v) = (Vec::with_capacity(rates.len()), Vec::with_capacity(rates.len()));
    for (k, rate) in rates.into_iter().enumerate() {
        if kept(t_prev[k], t_next[k], v_prev[k], v_next[k]) {
            out_t.push(t_next[k]);
            out_v.push(rate);
        }
    }
    Series { t: out_t.into(), v: out_v.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::channel_index;
    use crate::model::{EpisodeFacts, EpisodeKey, Label, Layout, Meta};
    use proptest::prelude::*;

    const T0: i64 = 1_777_583_279_000_000_000;

    fn episode(labels: &[(f64, &str)], duration: Option<f64>) -> DecodedEpisode {
        DecodedEpisode {
            facts: EpisodeFacts {
                key: EpisodeKey { host_id: "h".into(), episode_id: "e".into() },
                archive_bytes: 0,
                sha256: String::new(),
                expected_sha256: None,
                layout: Layout::default(),
                meta: MemberState::Present(Meta { duration_observed_s: duration, ..Default::default() }),
                labels: MemberState::Present(
                    labels
                        .iter()
                        .map(|(t, p)| Label { phase: p.to_string(), t_wall_ns: T0 + (*t * 1e9) as i64 })
                        .collect(),
                ),
                events: None,
                problems: vec![],
                problem_count: 0,
            },
            sources: Source::ALL.map(SourceColumns::new),
        }
    }

    /// Sets rows of one source: (seconds after T0, [(channel name, value)]).
    fn set_rows(ep: &mut DecodedEpisode, source: Source, rows: &[(f64, &[(&str, f64)])], bucket_ms: Option<f64>) {
        let ids: Vec<usize> = channels_of(source).collect();
        let cols = &mut ep.sources[source.index()];
        cols.present = true;
        let mut columns: Vec<Vec<f64>> = cols.columns.iter().map(|c| c.to_vec()).collect();
        for (t, values) in rows {
            cols.t_wall_ns.push(T0 + (*t * 1e9).round() as i64);
            for (col, ch) in ids.iter().enumerate() {
                let v = values.iter().find(|(n, _)| *n == CHANNELS[*ch].name).map(|x| x.1);
                columns[col].push(v.unwrap_or(f64::NAN));
            }
            if source == Source::Netflow {
                cols.bucket_ms.push(bucket_ms.unwrap_or(f64::NAN));
            }
        }
        cols.columns = columns.into_iter().map(SharedValues::from).collect();
    }

    fn bits(s: &Series) -> (Vec<u64>, Vec<u64>) {
        (s.t.iter().map(|x| x.to_bits()).collect(), s.v.iter().map(|x| x.to_bits()).collect())
    }

    /// Rows of a column: times that mostly advance (sometimes stand still or
    /// step back), counter-like values that mostly rise (sometimes fall),
    /// and, when `missing`, some values missing.
    fn column(missing: bool) -> impl Strategy<Value = (Vec<f64>, Vec<f64>, Vec<f64>)> {
        let row = (-1i32..8, -3i64..1000, any::<bool>(), 0u8..10);
        prop::collection::vec(row, 0..48).prop_map(move |rows| {
            let (mut t, mut v, mut bucket_ms) = (Vec::new(), Vec::new(), Vec::new());
            let (mut tk, mut vk) = (0.0f64, 0.0f64);
            for (dt, dv, gap, roll) in rows {
                tk += dt as f64 * 0.1;
                vk += dv as f64;
                t.push(tk);
                v.push(if missing && roll == 0 { f64::NAN } else { vk });
                bucket_ms.push(if gap { f64::NAN } else { (roll as f64 - 2.0) * 250.0 });
            }
            (t, v, bucket_ms)
        })
    }

    proptest! {
        #[test]
        fn seconds_are_those_of_the_exact_difference(t in any::<i64>(), t0 in any::<i64>()) {
            let exact = (t as i128 - t0 as i128) as f64 / 1e9;
            prop_assert_eq!(seconds_since(t, t0).to_bits(), exact.to_bits());
        }
    }

    proptest! {
        /// Rows out of order and times repeated (late and repeated lines):
        /// sorted, the later of equal times kept, every column and
        /// `bucket_ms` gathered with its row.
        #[test]
        fn sorted_rows_carry_their_columns(times in proptest::collection::vec(0i64..40, 0..60)) {
            let n = times.len();
            let column = |k: f64| (0..n).map(|i| i as f64 * 10.0 + k).collect::<Vec<f64>>();
            let src = SourceColumns {
                t_wall_ns: times.clone(),
                columns: vec![column(1.0).into(), column(2.0).into()],
                bucket_ms: column(3.0),
                ..Default::default()
            };
            // The row that wins each time: the last line holding it.
            let mut last_line = std::collections::BTreeMap::new();
            for (i, &t) in times.iter().enumerate() {
                last_line.insert(t, i);
            }
            let kept: Vec<usize> = last_line.values().copied().collect();
            let aligned = sort_and_dedup(&src, 0);
            let expected_t: Vec<f64> = last_line.keys().map(|&t| seconds_since(t, 0)).collect();
            prop_assert_eq!(aligned.t.to_vec(), expected_t);
            for (k, col) in aligned.columns.iter().enumerate() {
                let expected: Vec<f64> = kept.iter().map(|&i| src.columns[k][i]).collect();
                prop_assert_eq!(col.to_vec(), expected);
            }
            prop_assert_eq!(aligned.bucket_ms, kept.iter().map(|&i| src.bucket_ms[i]).collect::<Vec<f64>>());
        }
    }

    proptest! {
        #[test]
        fn points_are_the_rules_as_written_bit_for_bit(
            (t, v, bucket_ms) in prop_oneof![column(false), column(true)],
        ) {
            let (shared_t, shared_v) = (SharedValues::from(t.clone()), SharedValues::from(v.clone()));
            for kind in [Kind::Gauge, Kind::Counter, Kind::Bucket] {
                prop_assert_eq!(
                    bits(&points(kind, &shared_t, &shared_v, &bucket_ms)),
                    bits(&points_row_by_row(kind, &t, &v, &bucket_ms))
                );
            }
        }
    }

    #[test]
    fn points_of_a_column_with_every_value_take_the_rows_and_consecutive_rates() {
        let (t, v) = (SharedValues::from(vec![0.0, 0.5, 1.0, 2.0]), SharedValues::from(vec![10.0, 20.0, 5.0, 25.0]));
        assert_eq!(points(Kind::Gauge, &t, &v, &[]), Series { t: t.clone(), v: v.clone() });
        // 10 → 20 over 0.5 s, a reset (no point), then 5 → 25 over 1 s.
        assert_eq!(points(Kind::Counter, &t, &v, &[]), Series { t: vec![0.5, 2.0].into(), v: vec![20.0, 20.0].into() });
        assert_eq!(points(Kind::Counter, &t.slice(0..1), &v.slice(0..1), &[]), Series::default());
        // Buckets of 250 ms: four times the count per second.
        assert_eq!(
            points(Kind::Bucket, &t, &v, &[250.0; 4]),
            Series { t: t.clone(), v: vec![40.0, 80.0, 20.0, 100.0].into() }
        );
    }

    #[test]
    fn points_that_are_rows_share_the_source_vectors() {
        let t = SharedValues::from(vec![0.0, 1.0, 2.0, 3.0]);
        let rising = SharedValues::from(vec![1.0, 2.0, 4.0, 8.0]);
        let gauge = points(Kind::Gauge, &t, &rising, &[]);
        assert_eq!((gauge.t.as_ptr(), gauge.v.as_ptr()), (t.as_ptr(), rising.as_ptr()), "a gauge is its column");
        let counter = points(Kind::Counter, &t, &rising, &[]);
        assert_eq!(
            (counter.t.as_ptr(), counter.t.len()),
            (t[1..].as_ptr(), 3),
            "a counter's times are its rows' less the first"
        );
        assert_eq!(points(Kind::Bucket, &t, &rising, &[100.0; 4]).t.as_ptr(), t.as_ptr());
        // A column shorter than its times (a damaged cache entry) is cut, never read past.
        assert_eq!(points(Kind::Gauge, &t, &rising.slice(0..2), &[]).t, vec![0.0, 1.0]);
    }

    fn series<'a>(a: &'a AlignedEpisode, name: &str) -> &'a Series {
        a.channel(channel_index(name).unwrap())
    }

    #[test]
    fn counter_rates_skip_first_row_and_resets() {
        let mut ep = episode(&[(0.0, "clean")], None);
        let c = "proc.cpu_user_jiffies";
        let rows: Vec<(f64, Vec<(&str, f64)>)> =
            vec![(0.0, vec![(c, 0.0)]), (1.0, vec![(c, 100.0)]), (2.0, vec![(c, 50.0)]), (2.5, vec![(c, 100.0)])];
        let rows: Vec<(f64, &[(&str, f64)])> = rows.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        set_rows(&mut ep, Source::Proc, &rows, None);
        let a = Align.apply(&ep);
        let s = series(&a, c);
        assert_eq!(s.t, vec![1.0, 2.5]);
        assert_eq!(s.v, vec![100.0, 100.0]);
        assert_eq!(a.t_end, Some(2.5), "largest telemetry t without a duration");
    }

    #[test]
    fn out_of_order_rows_are_sorted_and_later_duplicate_wins() {
        let mut ep = episode(&[(0.0, "clean")], Some(30.0));
        let g = "proc.rss_bytes";
        set_rows(
            &mut ep,
            Source::Proc,
            &[(2.0, &[(g, 2.0)]), (1.0, &[(g, 1.0)]), (2.0, &[(g, 22.0)]), (3.0, &[(g, 3.0)])],
            None,
        );
        let a = Align.apply(&ep);
        let s = series(&a, g);
        assert_eq!(s.t, vec![1.0, 2.0, 3.0]);
        assert_eq!(s.v, vec![1.0, 22.0, 3.0]);
        assert_eq!(a.t_end, Some(30.0), "duration_observed_s wins when positive");
    }

    #[test]
    fn rows_in_time_order_keep_their_columns_shared_and_a_repeated_time_is_still_resolved() {
        let g = "proc.rss_bytes";
        let col = channels_of(Source::Proc).position(|ch| CHANNELS[ch].name == g).unwrap();
        let mut ep = episode(&[(0.0, "clean")], Some(30.0));
        set_rows(&mut ep, Source::Proc, &[(1.0, &[(g, 1.0)]), (2.0, &[(g, 2.0)])], None);
        let a = Align.apply(&ep);
        let decoded = &ep.sources[Source::Proc.index()].columns[col];
        assert_eq!(a.sources[Source::Proc.index()].columns[col].as_ptr(), decoded.as_ptr(), "taken as it is");
        assert_eq!(series(&a, g).v.as_ptr(), decoded.as_ptr(), "and the gauge's points are it too");
        // In order, but one time twice: the later row wins, as when sorting.
        let mut ep = episode(&[(0.0, "clean")], Some(30.0));
        set_rows(&mut ep, Source::Proc, &[(1.0, &[(g, 1.0)]), (1.0, &[(g, 11.0)]), (2.0, &[(g, 2.0)])], None);
        let a = Align.apply(&ep);
        assert_eq!((series(&a, g).t.to_vec(), series(&a, g).v.to_vec()), (vec![1.0, 2.0], vec![11.0, 2.0]));
    }

    #[test]
    fn bucket_uses_bucket_ms_or_the_gap_to_the_previous_row() {
        let b = "netflow.pkts_in";
        let mut ep = episode(&[(0.0, "clean")], None);
        set_rows(&mut ep, Source::Netflow, &[(0.0, &[(b, 10.0)]), (0.1, &[(b, 20.0)])], Some(100.0));
        let s = series(&Align.apply(&ep), b).clone();
        assert_eq!(s.v, vec![100.0, 200.0]);
        let mut ep = episode(&[(0.0, "clean")], None);
        set_rows(&mut ep, Source::Netflow, &[(0.0, &[(b, 10.0)]), (0.5, &[(b, 20.0)])], None);
        let s = series(&Align.apply(&ep), b).clone();
        assert_eq!(s.t, vec![0.5], "no point at the first row without bucket_ms");
        assert_eq!(s.v, vec![40.0]);
    }

    #[test]
    fn time_is_relative_to_the_first_label_and_phase_at_uses_last_label_before() {
        let mut ep = episode(&[(2.0, "clean"), (5.0, "exploiting"), (9.0, "dormant")], None);
        set_rows(&mut ep, Source::Guest, &[(1.0, &[("guest.load_1m", 0.5)])], None);
        let a = Align.apply(&ep);
        assert_eq!(a.t0_wall_ns, Some(T0 + 2_000_000_000));
        assert_eq!(series(&a, "guest.load_1m").t, vec![-1.0]);
        assert_eq!(a.phase_at(-0.5), None);
        assert_eq!(a.phase_at(0.0), Some(Phase::Clean));
        assert_eq!(a.phase_at(3.0), Some(Phase::Exploiting));
        assert_eq!(a.phase_at(7.0), Some(Phase::Dormant));
    }

    #[test]
    fn no_labels_means_no_time_axis() {
        let mut ep = episode(&[], None);
        set_rows(&mut ep, Source::Proc, &[(0.0, &[("proc.rss_bytes", 1.0)])], None);
        let a = Align.apply(&ep);
        assert_eq!(a.t0_wall_ns, None);
        assert!(a.channels.iter().all(|s| s.t.is_empty()));
        assert_eq!(a.row_counts[0].good_rows, 1);
    }

    #[test]
    fn wall_time_subtraction_is_exact_for_large_values() {
        assert_eq!(seconds_since(T0 + 1, T0), 1e-9);
        assert_eq!(seconds_since(i64::MIN, i64::MAX), -(u64::MAX as f64) / 1e9);
    }

    /// Regression from the earlier tooling: netflow stamps `t_mono_ns` from qemu's
    /// boot clock, which shares no number line with the other sources. Rows with
    /// a garbage `t_mono_ns` must still land at their wall-clock time.
    #[test]
    fn netflow_with_garbage_mono_time_aligns_by_wall_time() {
        use crate::decode::Decode;
        use crate::test_support::tar_zst;
        let labels = format!("{{\"phase\":\"clean\",\"t_mono_ns\":5,\"t_wall_ns\":{T0}}}\n");
        let mut netflow = String::new();
        for k in 0..50i64 {
            let wall = T0 + k * 100_000_000;
            netflow += &format!(
                "{{\"t_mono_ns\":1777543932511943778,\"t_wall_ns\":{wall},\"bucket_ms\":100,\"pkts_in\":{k}}}\n"
            );
        }
        let bytes = tar_zst(&[("e/labels.jsonl", labels.as_bytes()), ("e/netflow.jsonl", netflow.as_bytes())]);
        let key = EpisodeKey { host_id: "h".into(), episode_id: "e".into() };
        let decoded = Decode::default().decode_bytes(&bytes, key, None, "e.tar.zst").unwrap();
        let a = Align.apply(&decoded);
        let s = series(&a, "netflow.pkts_in");
        assert_eq!(s.t.len(), 50);
        assert!((s.t[49] - 4.9).abs() < 1e-9, "last bucket at 4.9 s, got {}", s.t[49]);
        assert_eq!(s.v[7], 70.0, "7 packets in a 100 ms bucket = 70/s");
        assert_eq!(a.t_end.map(|t| (t * 10.0).round() / 10.0), Some(4.9));
    }
}
