//! Window: summary features per window (SPEC section 7).
//!
//! Windows start at 0, stride, 2·stride, … while `start + length <= t_end`; a
//! window holds the points with `start <= t < start + length` and is labelled
//! with the phase at its centre. Per channel: mean, population std, min, max and
//! the least-squares slope (units per second) — 46 × 5 = 230 features, NaN where
//! a channel has no point (slope: under two points).
//!
//! Overlapping windows share points: with a 20 s window every 5 s, each point
//! lies in four. So a channel is summarised once per *block*, the stretch
//! between two consecutive window edges (starts and ends), into centred
//! moments ([`Moments`]), and a window's statistics merge the moments of the
//! blocks it is made of with the pairwise update of Chan, Golub and LeVeque,
//! which keeps the centred sums' accuracy. Each point is then read twice (the
//! block's two passes) however much windows overlap.

use crate::channels::Phase;
use crate::fingerprint::Operator;
use crate::model::{AlignedEpisode, Series, N_CHANNELS};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Window length and stride, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowSpec {
    /// Window length in seconds.
    pub window_s: f64,
    /// Seconds between window starts.
    pub stride_s: f64,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec { window_s: 10.0, stride_s: 5.0 }
    }
}

impl WindowSpec {
    /// Rejects lengths that would give no or infinitely many windows.
    pub fn check(&self) -> Result<(), String> {
        if !(self.window_s.is_finite() && self.window_s > 0.0) {
            return Err(format!("window_s must be positive, got {}", self.window_s));
        }
        if !(self.stride_s.is_finite() && self.stride_s > 0.0) {
            return Err(format!("stride_s must be positive, got {}", self.stride_s));
        }
        Ok(())
    }

    /// Start times and labels of the episode's windows.
    pub fn windows(&self, ep: &AlignedEpisode) -> Windows {
        let mut out = Windows::default();
        let (Some(_), Some(t_end)) = (ep.t0_wall_ns, ep.t_end) else { return out };
        for k in 0u64.. {
            let start = k as f64 * self.stride_s;
            if start + self.window_s > t_end {
                break;
            }
            if let Some(label) = ep.phase_at(start + self.window_s / 2.0) {
                out.starts.push(start);
                out.labels.push(label);
            }
        }
        out
    }
}

/// The windows of one episode: start times (seconds since `t0`) and labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    /// Each window's start, in seconds since `t0`.
    pub starts: Vec<f64>,
    /// Each window's label: the phase at its centre.
    pub labels: Vec<Phase>,
}

impl Windows {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
}

/// The summary statistics, in column order.
pub const STATS: [&str; 5] = ["mean", "std", "min", "max", "slope"];

/// Summary features of one episode: `values[w * 230 + c * 5 + s]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryFeatures {
    /// Each window's start and label.
    pub windows: Windows,
    /// Channel `c`'s statistic `s` in window `w`, row by row.
    pub values: Vec<f32>,
}

/// The window operator.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Window length and stride.
    pub spec: WindowSpec,
}

impl Operator for Window {
    const NAME: &'static str = "window";
    // 2: statistics merged from blocks' moments (the last bits may differ).
    const VERSION: u32 = 2;
    type Config = WindowSpec;
    type Input = AlignedEpisode;
    type Output = SummaryFeatures;

    fn config(&self) -> &WindowSpec {
        &self.spec
    }

    fn apply(&self, ep: &AlignedEpisode) -> SummaryFeatures {
        let windows = self.spec.windows(ep);
        let blocks = Blocks::of(&windows.starts, self.spec.window_s);
        // Channel `c`'s moments in block `b` at `c * blocks + b`.
        let mut moments = Vec::with_capacity(ep.channels.len() * blocks.len());
        for series in &ep.channels {
            blocks.summarise(series, &mut moments);
        }
        let mut values = Vec::with_capacity(windows.len() * N_CHANNELS * STATS.len());
        for window in &blocks.windows {
            for c in 0..ep.channels.len() {
                let run = &moments[c * blocks.len() + window.start..c * blocks.len() + window.end];
                let merged = run.iter().fold(Moments::EMPTY, |a, b| a.merge(b));
                values.extend(merged.summary().map(|x| x as f32));
            }
        }
        SummaryFeatures { windows, values }
    }
}

/// The blocks an episode's windows are made of: consecutive edges, every
/// window start and end, in order. Each window is a run of whole blocks.
struct Blocks {
    /// Distinct window starts and ends, ascending.
    edges: Vec<f64>,
    /// Each window's blocks, by index.
    windows: Vec<Range<usize>>,
}

impl Blocks {
    /// The blocks of windows `length` seconds long starting at `starts`. The
    /// ends are computed as the windows' own bounds are (`start + length`),
    /// so a block edge is a window bound bit for bit.
    fn of(starts: &[f64], length: f64) -> Blocks {
        let mut edges: Vec<f64> = starts.iter().flat_map(|&start| [start, start + length]).collect();
        edges.sort_by(f64::total_cmp);
        edges.dedup_by(|a, b| a.to_bits() == b.to_bits());
        let at = |x: f64| edges.partition_point(|e| e.total_cmp(&x).is_lt());
        let windows = starts.iter().map(|&start| at(start)..at(start + length)).collect();
        Blocks { edges, windows }
    }

    /// Number of blocks.
    fn len(&self) -> usize {
        self.edges.len().saturating_sub(1)
    }

    /// Appends the moments of `series`' points in each block.
    fn summarise(&self, series: &Series, out: &mut Vec<Moments>) {
        let mut cursor = Cursor::default();
        out.extend(self.edges.windows(2).map(|edge| {
            let (t, v) = cursor.window(series, edge[0], edge[1]);
            Moments::of(t, v)
        }));
    }
}

/// A set of points' count, means, centred sums of squares and products,
/// and extremes: enough to give the summary statistics, and to merge with
/// another set's without reading the points again.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Moments {
    n: usize,
    mean_t: f64,
    mean_v: f64,
    /// Σ (t − mean_t)².
    m2_t: f64,
    /// Σ (v − mean_v)².
    m2_v: f64,
    /// Σ (t − mean_t)(v − mean_v).
    c_tv: f64,
    min: f64,
    max: f64,
}

impl Moments {
    /// No point.
    const EMPTY: Moments = Moments {
        n: 0,
        mean_t: 0.0,
        mean_v: 0.0,
        m2_t: 0.0,
        m2_v: 0.0,
        c_tv: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// The moments of the points `(t, v)`. Two passes: sums and extremes,
    /// then centred sums. Each pass keeps `LANES` independent partial sums
    /// so that consecutive additions do not wait on one another (a single
    /// running sum is bound by the add latency).
    fn of(t: &[f64], v: &[f64]) -> Moments {
        if v.is_empty() {
            return Moments::EMPTY;
        }
        let (t, v) = (&t[..v.len()], v);
        let n = v.len() as f64;
        let (mut sum_t, mut sum_v) = ([0.0; LANES], [0.0; LANES]);
        let (mut min, mut max) = ([f64::INFINITY; LANES], [f64::NEG_INFINITY; LANES]);
        for_lanes(t, v, |lane, a, b| {
            sum_t[lane] += a;
            sum_v[lane] += b;
            // What `f64::min` / `max` gave here, without their NaN checks: the
            // extreme so far starts infinite and only ever takes a value that
            // compared below or above it, so it is never NaN; on ties (±0) it
            // is kept, as before. One `minpd` / `maxpd` each.
            min[lane] = if b < min[lane] { b } else { min[lane] };
            max[lane] = if b > max[lane] { b } else { max[lane] };
        });
        let (mean_t, mean_v) = (sum_t.iter().sum::<f64>() / n, sum_v.iter().sum::<f64>() / n);
        let (min, max) =
            (min.into_iter().fold(f64::INFINITY, f64::min), max.into_iter().fold(f64::NEG_INFINITY, f64::max));
        let (mut m2_v, mut m2_t, mut c_tv) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
        for_lanes(t, v, |lane, a, b| {
            let (dt, dv) = (a - mean_t, b - mean_v);
            m2_v[lane] += dv * dv;
            m2_t[lane] += dt * dt;
            c_tv[lane] += dt * dv;
        });
        let sum = |lanes: [f64; LANES]| lanes.iter().sum::<f64>();
        Moments { n: v.len(), mean_t, mean_v, m2_t: sum(m2_t), m2_v: sum(m2_v), c_tv: sum(c_tv), min, max }
    }

    /// The moments of both sets together (Chan, Golub and LeVeque): the
    /// means move by the difference of the two, weighted by the other's
    /// share, and the centred sums gain that difference's own term.
    fn merge(self, other: &Moments) -> Moments {
        match (self.n, other.n) {
            (_, 0) => return self,
            (0, _) => return *other,
            _ => {}
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let (dt, dv) = (other.mean_t - self.mean_t, other.mean_v - self.mean_v);
        let weight = na * nb / n;
        Moments {
            n: self.n + other.n,
            mean_t: self.mean_t + dt * (nb / n),
            mean_v: self.mean_v + dv * (nb / n),
            m2_t: self.m2_t + other.m2_t + dt * dt * weight,
            m2_v: self.m2_v + other.m2_v + dv * dv * weight,
            c_tv: self.c_tv + other.c_tv + dt * dv * weight,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// mean, population std, min, max, least-squares slope; NaN where
    /// undefined.
    fn summary(&self) -> [f64; 5] {
        if self.n == 0 {
            return [f64::NAN; 5];
        }
        let slope = if self.n < 2 || self.m2_t == 0.0 { f64::NAN } else { self.c_tv / self.m2_t };
        [self.mean_v, (self.m2_v / self.n as f64).sqrt(), self.min, self.max, slope]
    }
}

/// Where one series' points for the current window begin and end. Window
/// bounds only grow from one window to the next, so the cursor moves forward
/// over the points instead of searching afresh for each window.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    lo: usize,
    hi: usize,
}

impl Cursor {
    /// The points with `lo <= t < hi`. Bounds must not decrease between calls.
    fn window<'a>(&mut self, series: &'a Series, lo: f64, hi: f64) -> (&'a [f64], &'a [f64]) {
        self.lo = skip_before(&series.t, self.lo, lo);
        self.hi = skip_before(&series.t, self.hi.max(self.lo), hi);
        (&series.t[self.lo..self.hi], &series.v[self.lo..self.hi])
    }
}

/// The first index from `from` on whose time is not before `bound` (`t` sorted).
pub(crate) fn skip_before(t: &[f64], from: usize, bound: f64) -> usize {
    from + t[from.min(t.len())..].iter().take_while(|&&p| p < bound).count()
}

/// Independent accumulators per pass in [`Moments::of`].
const LANES: usize = 4;

/// Calls `step(lane, t, v)` for every point, point `i` in lane `i % LANES`.
#[inline(always)]
fn for_lanes(t: &[f64], v: &[f64], mut step: impl FnMut(usize, f64, f64)) {
    let (t_chunks, v_chunks) = (t.chunks_exact(LANES), v.chunks_exact(LANES));
    let (t_rest, v_rest) = (t_chunks.remainder(), v_chunks.remainder());
    for (tc, vc) in t_chunks.zip(v_chunks) {
        for lane in 0..LANES {
            step(lane, tc[lane], vc[lane]);
        }
    }
    for (lane, (&a, &b)) in t_rest.iter().zip(v_rest).enumerate() {
        step(lane, a, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::channel_index;
    use crate::test_support::{aligned, aligned_from, rows, seed_episode};
    use proptest::prelude::*;

    const SEED_PHASES: [(f64, &str); 3] = [(0.0, "clean"), (10.0, "infected_running"), (25.0, "clean")];

    fn stat(f: &SummaryFeatures, w: usize, channel: &str, s: &str) -> f32 {
        let c = channel_index(channel).unwrap();
        f.values[w * N_CHANNELS * 5 + c * 5 + STATS.iter().position(|x| *x == s).unwrap()]
    }

    #[test]
    fn seed_summary_windows_shape() {
        let f = Window::default().apply(&aligned_from(&seed_episode(30.0, &SEED_PHASES, 100.0, false)));
        assert_eq!(f.windows.starts, vec![0.0, 5.0, 10.0, 15.0, 20.0]);
        assert_eq!(f.values.len(), 5 * 230);
    }

    #[test]
    fn seed_phase_label_at_window_center() {
        let f = Window::default().apply(&aligned_from(&seed_episode(30.0, &SEED_PHASES, 100.0, false)));
        use Phase::*;
        assert_eq!(f.windows.labels, vec![Clean, InfectedRunning, InfectedRunning, InfectedRunning, Clean]);
    }

    #[test]
    fn seed_no_labels_returns_empty() {
        let mut members = seed_episode(30.0, &SEED_PHASES, 100.0, false);
        members.retain(|(n, _)| !n.ends_with("labels.jsonl"));
        let f = Window::default().apply(&aligned_from(&members));
        assert!(f.windows.is_empty() && f.values.is_empty());
    }

    #[test]
    fn counter_reset_gives_no_point_and_stats_are_exact() {
        // Counter at 1 Hz: 0, 100, 200, 50 (reset), 150 → rates 100 at t=1, 2, 4.
        let vals = [0.0, 100.0, 200.0, 50.0, 150.0];
        let proc: Vec<(f64, String)> =
            vals.iter().enumerate().map(|(k, v)| (k as f64, format!("\"cpu_user_jiffies\":{v}"))).collect();
        let ep = aligned(&[(0.0, "clean")], Some(10.0), &[("telemetry-proc.jsonl", proc)]);
        let f = Window::default().apply(&ep);
        let ch = "proc.cpu_user_jiffies";
        assert_eq!(ep.channel(channel_index(ch).unwrap()).t, vec![1.0, 2.0, 4.0]);
        assert_eq!((stat(&f, 0, ch, "mean"), stat(&f, 0, ch, "std")), (100.0, 0.0));
        assert_eq!((stat(&f, 0, ch, "min"), stat(&f, 0, ch, "max"), stat(&f, 0, ch, "slope")), (100.0, 100.0, 0.0));
    }

    #[test]
    fn bucket_without_bucket_ms_uses_the_gap() {
        let net =
            vec![(0.0, "\"pkts_in\":5".to_string()), (0.5, "\"pkts_in\":5".into()), (1.5, "\"pkts_in\":5".into())];
        let ep = aligned(&[(0.0, "clean")], Some(10.0), &[("netflow.jsonl", net)]);
        let f = Window::default().apply(&ep);
        // No point at the first row; 5/0.5 = 10 and 5/1.0 = 5.
        assert_eq!(stat(&f, 0, "netflow.pkts_in", "mean"), 7.5);
        assert_eq!(stat(&f, 0, "netflow.pkts_in", "slope"), -5.0);
    }

    #[test]
    fn points_on_window_boundaries_belong_to_the_later_window() {
        let g: Vec<(f64, String)> = vec![(5.0, "\"rss_bytes\":1".into()), (10.0, "\"rss_bytes\":2".into())];
        let ep = aligned(&[(0.0, "clean")], Some(20.0), &[("telemetry-proc.jsonl", g)]);
        let f = Window::default().apply(&ep);
        // Windows [0,10), [5,15), [10,20).
        assert_eq!(stat(&f, 0, "proc.rss_bytes", "max"), 1.0, "t=10 is not in [0,10)");
        assert_eq!(stat(&f, 1, "proc.rss_bytes", "mean"), 1.5);
        assert_eq!(stat(&f, 2, "proc.rss_bytes", "min"), 2.0, "t=5 is not in [10,20)");
    }

    #[test]
    fn missing_channel_is_nan_and_one_point_has_no_slope() {
        let g = rows(0.0, 8.0, 1.0, |t| format!("\"rss_bytes\":{t}"));
        let ep = aligned(&[(0.0, "clean")], Some(20.0), &[("telemetry-proc.jsonl", g)]);
        let f = Window::default().apply(&ep);
        assert!(stat(&f, 2, "proc.rss_bytes", "mean").is_nan(), "no point in [10, 20)");
        assert!(stat(&f, 0, "guest.load_1m", "max").is_nan(), "a source that is absent");
        assert!((stat(&f, 1, "proc.rss_bytes", "slope") - 1.0).abs() < 1e-6, "slope in units per second");
        let one = vec![(3.0, "\"rss_bytes\":7".to_string())];
        let f = Window::default().apply(&aligned(&[(0.0, "clean")], Some(10.0), &[("telemetry-proc.jsonl", one)]));
        assert_eq!(stat(&f, 0, "proc.rss_bytes", "std"), 0.0);
        assert!(stat(&f, 0, "proc.rss_bytes", "slope").is_nan());
    }

    #[test]
    fn t_end_from_duration_or_from_the_last_row() {
        let g = rows(0.0, 29.95, 0.1, |_| "\"rss_bytes\":1".into());
        let with = aligned(&[(0.0, "clean")], Some(30.0), &[("telemetry-proc.jsonl", g.clone())]);
        assert_eq!(WindowSpec::default().windows(&with).starts, vec![0.0, 5.0, 10.0, 15.0, 20.0]);
        let without = aligned(&[(0.0, "clean")], None, &[("telemetry-proc.jsonl", g)]);
        assert!((without.t_end.unwrap() - 29.9).abs() < 1e-9);
        assert_eq!(WindowSpec::default().windows(&without).starts, vec![0.0, 5.0, 10.0, 15.0], "20 + 10 > 29.9");
    }

    #[test]
    fn window_length_and_stride_are_configuration() {
        let g = rows(0.0, 30.0, 1.0, |_| "\"rss_bytes\":1".into());
        let ep = aligned(&[(0.0, "clean")], Some(30.0), &[("telemetry-proc.jsonl", g)]);
        let spec = WindowSpec { window_s: 20.0, stride_s: 2.5 };
        assert_eq!(spec.windows(&ep).starts, vec![0.0, 2.5, 5.0, 7.5, 10.0]);
        assert!(WindowSpec { window_s: 0.0, stride_s: 1.0 }.check().is_err());
    }

    #[test]
    fn summary_in_lanes_agrees_with_one_running_sum_for_every_remainder() {
        for len in 1..=11 {
            let t: Vec<f64> = (0..len).map(|i| 100.0 + i as f64 * 0.37).collect();
            let v: Vec<f64> = (0..len).map(|i| ((i * 7919) % 13) as f64 * 1.5e6 - 3.0e6).collect();
            let n = len as f64;
            let (tm, vm) = (t.iter().sum::<f64>() / n, v.iter().sum::<f64>() / n);
            let moment = |f: &dyn Fn(f64, f64) -> f64| t.iter().zip(&v).map(|(&a, &b)| f(a - tm, b - vm)).sum::<f64>();
            let (var_v, var_t, cov) = (moment(&|_, dv| dv * dv), moment(&|dt, _| dt * dt), moment(&|dt, dv| dt * dv));
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let slope = if len < 2 { f64::NAN } else { cov / var_t };
            let want = [vm, (var_v / n).sqrt(), min, max, slope];
            for (got, want) in Moments::of(&t, &v).summary().into_iter().zip(want) {
                assert!(
                    (got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{len} points: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn blocks_run_between_every_window_edge_and_make_up_each_window() {
        let edges_and_runs = |starts: &[f64], length: f64| {
            let b = Blocks::of(starts, length);
            (b.edges, b.windows)
        };
        assert_eq!(edges_and_runs(&[0.0, 5.0, 10.0], 10.0), (vec![0.0, 5.0, 10.0, 15.0, 20.0], vec![0..2, 1..3, 2..4]));
        // Ends between starts: 7 s every 3 s.
        assert_eq!(
            edges_and_runs(&[0.0, 3.0, 6.0], 7.0),
            (vec![0.0, 3.0, 6.0, 7.0, 10.0, 13.0], vec![0..3, 1..4, 2..5])
        );
        // Gaps between windows are blocks no window uses; a window left out
        // (no label at its centre) leaves no block of its own.
        assert_eq!(
            edges_and_runs(&[0.0, 10.0, 30.0], 5.0),
            (vec![0.0, 5.0, 10.0, 15.0, 30.0, 35.0], vec![0..1, 2..3, 4..5])
        );
        assert_eq!(edges_and_runs(&[], 10.0), (vec![], vec![]));
    }

    #[test]
    fn a_window_too_short_to_move_its_end_past_its_start_holds_no_point() {
        // 1e17 + 1 is 1e17 in f64: the window [1e17, 1e17) is empty, as
        // the rule `start <= t < start + length` says, and has no block.
        let b = Blocks::of(&[1e17], 1.0);
        assert_eq!((b.len(), b.windows.len()), (0, 1));
        assert!(b.windows[0].is_empty());
        let g = vec![(2.5, "\"rss_bytes\":1".to_string())];
        let ep = aligned(&[(0.0, "clean")], Some(10.0), &[("telemetry-proc.jsonl", g)]);
        let f = Window { spec: WindowSpec { window_s: 1e-20, stride_s: 5.0 } }.apply(&ep);
        assert_eq!(f.values.len(), f.windows.len() * N_CHANNELS * STATS.len());
        assert!(f.values.iter().all(|v| v.is_nan()), "no point lies in [s, s + 1e-20) once s + 1e-20 == s");
    }

    /// Points at irregular times with values around `offset`, as a channel
    /// of large counts that moves little.
    fn jittered(steps: &[(u8, i32)], offset: f64) -> Series {
        let mut t = 0.0;
        let (mut times, mut values) = (Vec::new(), Vec::new());
        for &(dt, dv) in steps {
            t += dt as f64 * 0.05;
            times.push(t);
            values.push(offset + dv as f64 * 0.25);
        }
        Series { t: times.into(), v: values.into() }
    }

    proptest! {
        #[test]
        fn merged_blocks_give_each_window_what_its_own_points_give(
            steps in prop::collection::vec((0u8..40, -400i32..400), 0..400),
            offset in prop_oneof![Just(0.0), Just(3.0e9)],
            (window_s, stride_s) in prop_oneof![
                Just((10.0, 5.0)), Just((20.0, 5.0)), Just((7.0, 3.0)), Just((5.0, 10.0)), Just((2.5, 0.5)),
            ],
        ) {
            let series = jittered(&steps, offset);
            let starts: Vec<f64> = (0..).map(|k| k as f64 * stride_s).take_while(|s| s + window_s <= 40.0).collect();
            let blocks = Blocks::of(&starts, window_s);
            let mut moments = Vec::new();
            blocks.summarise(&series, &mut moments);
            let mut cursor = Cursor::default();
            for (&start, run) in starts.iter().zip(&blocks.windows) {
                let merged = moments[run.clone()].iter().fold(Moments::EMPTY, |a, b| a.merge(b));
                let (t, v) = cursor.window(&series, start, start + window_s);
                let direct = Moments::of(t, v);
                prop_assert_eq!((merged.n, merged.min.to_bits(), merged.max.to_bits()), (direct.n, direct.min.to_bits(), direct.max.to_bits()));
                let (got, direct) = (merged.summary(), direct.summary());
                if run.len() == 1 {
                    // One block: the window's own two passes, bit for bit.
                    prop_assert_eq!(got.map(f64::to_bits), direct.map(f64::to_bits));
                }
                // The statistics of the values less their offset, which is
                // exact: a reference without the rounding the offset brings.
                let less_offset: Vec<f64> = v.iter().map(|x| x - offset).collect();
                let mut reference = Moments::of(t, &less_offset).summary();
                reference[0] += offset;
                // Both ways round by about the offset's last bits, times a few.
                let spread = direct[3] - direct[2];
                let tolerance = 1e-13 * (offset + spread);
                for (s, per_second) in [(0, 1.0), (1, 1.0), (4, 1.0 / 0.05)] {
                    for (way, value) in [("merged", got[s]), ("direct", direct[s])] {
                        prop_assert!(
                            (value.is_nan() && reference[s].is_nan()) || (value - reference[s]).abs() <= tolerance * per_second,
                            "{} at {start}, {way}: {value} against {}", STATS[s], reference[s]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn cursor_finds_what_a_search_finds_as_windows_move_on() {
        let t = vec![0.0, 1.0, 1.0, 2.5, 5.0, 5.0, 7.0, 10.0];
        let series = Series { v: t.iter().map(|x| x * 2.0).collect(), t: t.into() };
        let mut cursor = Cursor::default();
        // Overlapping, gapped, touching points exactly, and past the last point.
        for (lo, hi) in [(0.0, 1.0), (0.5, 5.0), (1.0, 5.0), (5.0, 7.0), (8.0, 9.0), (10.0, 12.0), (20.0, 30.0)] {
            let a = series.t.partition_point(|&p| p < lo);
            let b = series.t.partition_point(|&p| p < hi);
            assert_eq!(cursor.window(&series, lo, hi), (&series.t[a..b], &series.v[a..b]), "[{lo}, {hi})");
        }
    }
}
