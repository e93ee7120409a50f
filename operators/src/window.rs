//! Window: summary features per window (SPEC section 7).
//!
//! Windows start at 0, stride, 2·stride, … while `start + length <= t_end`; a
//! window holds the points with `start <= t < start + length` and is labelled
//! with the phase at its centre. Per channel: mean, population std, min, max and
//! the least-squares slope (units per second) — 46 × 5 = 230 features, NaN where
//! a channel has no point (slope: under two points).

use crate::channels::Phase;
use crate::fingerprint::Operator;
use crate::model::{AlignedEpisode, Series, N_CHANNELS};
use serde::{Deserialize, Serialize};

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
    const VERSION: u32 = 1;
    type Config = WindowSpec;
    type Input = AlignedEpisode;
    type Output = SummaryFeatures;

    fn config(&self) -> &WindowSpec {
        &self.spec
    }

    fn apply(&self, ep: &AlignedEpisode) -> SummaryFeatures {
        let windows = self.spec.windows(ep);
        let mut values = Vec::with_capacity(windows.len() * N_CHANNELS * STATS.len());
        let mut cursors = vec![Cursor::default(); ep.channels.len()];
        for &start in &windows.starts {
            for (series, cursor) in ep.channels.iter().zip(&mut cursors) {
                let (t, v) = cursor.window(series, start, start + self.spec.window_s);
                values.extend(summary(t, v).map(|x| x as f32));
            }
        }
        SummaryFeatures { windows, values }
    }
}

/// Where one series' points for the current window begin and end. Window
/// bounds only grow from one window to the next, so the cursor moves forward
/// over the points instead of searching afresh for each window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cursor {
    lo: usize,
    hi: usize,
}

impl Cursor {
    /// The points with `lo <= t < hi`. Bounds must not decrease between calls.
    pub fn window<'a>(&mut self, series: &'a Series, lo: f64, hi: f64) -> (&'a [f64], &'a [f64]) {
        self.lo = skip_before(&series.t, self.lo, lo);
        self.hi = skip_before(&series.t, self.hi.max(self.lo), hi);
        (&series.t[self.lo..self.hi], &series.v[self.lo..self.hi])
    }
}

/// The first index from `from` on whose time is not before `bound` (`t` sorted).
pub fn skip_before(t: &[f64], from: usize, bound: f64) -> usize {
    from + t[from.min(t.len())..].iter().take_while(|&&p| p < bound).count()
}

/// mean, population std, min, max, least-squares slope; NaN where undefined.
/// Two passes: sums and extremes, then centred moments. Each pass keeps
/// `LANES` independent partial sums so that consecutive additions do not
/// wait on one another (a single running sum is bound by the add latency).
pub fn summary(t: &[f64], v: &[f64]) -> [f64; 5] {
    if v.is_empty() {
        return [f64::NAN; 5];
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
    let (t_mean, mean) = (sum_t.iter().sum::<f64>() / n, sum_v.iter().sum::<f64>() / n);
    let (min, max) = (min.into_iter().fold(f64::INFINITY, f64::min), max.into_iter().fold(f64::NEG_INFINITY, f64::max));
    let (mut var_v, mut var_t, mut cov) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
    for_lanes(t, v, |lane, a, b| {
        let (dt, dv) = (a - t_mean, b - mean);
        var_v[lane] += dv * dv;
        var_t[lane] += dt * dt;
        cov[lane] += dt * dv;
    });
    let (var_v, var_t, cov) = (var_v.iter().sum::<f64>(), var_t.iter().sum::<f64>(), cov.iter().sum::<f64>());
    let slope = if v.len() < 2 || var_t == 0.0 { f64::NAN } else { cov / var_t };
    [mean, (var_v / n).sqrt(), min, max, slope]
}

/// Independent accumulators per pass in [`summary`].
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
            for (got, want) in summary(&t, &v).into_iter().zip(want) {
                assert!(
                    (got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{len} points: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn cursor_finds_what_a_search_finds_as_windows_move_on() {
        let t = vec![0.0, 1.0, 1.0, 2.5, 5.0, 5.0, 7.0, 10.0];
        let series = Series { v: t.iter().map(|x| x * 2.0).collect(), t };
        let mut cursor = Cursor::default();
        // Overlapping, gapped, touching points exactly, and past the last point.
        for (lo, hi) in [(0.0, 1.0), (0.5, 5.0), (1.0, 5.0), (5.0, 7.0), (8.0, 9.0), (10.0, 12.0), (20.0, 30.0)] {
            let a = series.t.partition_point(|&p| p < lo);
            let b = series.t.partition_point(|&p| p < hi);
            assert_eq!(cursor.window(&series, lo, hi), (&series.t[a..b], &series.v[a..b]), "[{lo}, {hi})");
        }
    }
}
