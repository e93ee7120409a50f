//! Tensor: each window as channels × time steps (SPEC section 7).
//!
//! A window of `window_s` seconds has `window_s * hz` bins. A bin's value is the
//! mean of the channel's points inside it. An empty bin holds the channel's
//! latest point before the bin's start when that point is at most `hold_s`
//! older; the mask is true for both. Otherwise the value is 0 and the mask
//! false. Layout is channel-major: `x[c * timesteps + t]`.

use crate::decode::Decode;
use crate::fingerprint::Operator;
use crate::model::{AlignedEpisode, EpisodeKey, Failure, Series, N_CHANNELS};
use crate::window::{skip_before, WindowSpec, Windows};
use serde::{Deserialize, Serialize};

/// Tensor rate and hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TensorSpec {
    /// Bins per second.
    pub hz: f64,
    /// How old a held point may be, in seconds.
    pub hold_s: f64,
}

impl Default for TensorSpec {
    fn default() -> Self {
        TensorSpec { hz: 2.0, hold_s: 1.0 }
    }
}

/// What the tensor operator reads: the windows and its own spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TensorConfig {
    /// The windows the tensors are cut into (the window stage's).
    pub window: WindowSpec,
    /// The time steps' rate and how long a point is held.
    pub tensor: TensorSpec,
}

impl TensorConfig {
    /// Bins per window.
    pub fn timesteps(&self) -> usize {
        (self.window.window_s * self.tensor.hz).round() as usize
    }

    /// Rejects configurations that give no bins or a negative hold.
    pub fn check(&self) -> Result<(), String> {
        self.window.check()?;
        if !(self.tensor.hz.is_finite() && self.tensor.hz > 0.0) || self.timesteps() == 0 {
            return Err(format!(
                "tensor hz {} gives no time step in a {} s window",
                self.tensor.hz, self.window.window_s
            ));
        }
        if !(self.tensor.hold_s.is_finite() && self.tensor.hold_s >= 0.0) {
            return Err(format!("hold_s must be zero or more, got {}", self.tensor.hold_s));
        }
        Ok(())
    }
}

/// The tensors of one episode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TensorFeatures {
    /// Each window's start and label.
    pub windows: Windows,
    /// Time steps per window (`window_s × hz`).
    pub timesteps: usize,
    /// `x[w * 46 * T + c * T + t]`.
    pub x: Vec<f32>,
    /// Same layout as `x`.
    pub mask: Vec<bool>,
}

impl TensorFeatures {
    /// Values per window (46 × timesteps).
    pub fn width(&self) -> usize {
        N_CHANNELS * self.timesteps
    }
}

/// The tensor operator.
#[derive(Clone, Debug, Default)]
pub struct Tensor {
    /// The windows, the rate and the hold.
    pub config: TensorConfig,
}

impl Operator for Tensor {
    const NAME: &'static str = "tensor";
    const VERSION: u32 = 1;
    type Config = TensorConfig;
    type Input = AlignedEpisode;
    type Output = TensorFeatures;

    fn config(&self) -> &TensorConfig {
        &self.config
    }

    fn apply(&self, ep: &AlignedEpisode) -> TensorFeatures {
        let windows = self.config.window.windows(ep);
        let steps = self.config.timesteps();
        let width = N_CHANNELS * steps;
        let mut x = vec![0.0; windows.len() * width];
        let mut mask = vec![false; x.len()];
        // Per channel: where its points at or after the window start begin,
        // and where they stood at the end of the window before.
        let mut cursors = vec![0; ep.channels.len()];
        let mut ends = vec![0; ep.channels.len()];
        let (mut edges, mut before) = (Vec::with_capacity(steps + 1), Vec::with_capacity(steps + 1));
        for (w, &start) in windows.starts.iter().enumerate() {
            edges.clear();
            edges.extend((0..=steps).map(|i| start + i as f64 / self.config.tensor.hz));
            // Overlapping windows share bins: a bin whose two edges are those
            // of a bin of the window before, bit for bit, holds the same
            // points and the same hold, so its cells are copied, not swept.
            let shift = overlap(&before, &edges);
            let kept = shift.map_or(0, |shift| steps - shift);
            for (c, series) in ep.channels.iter().enumerate().take(N_CHANNELS) {
                let channel = w * width + c * steps;
                cursors[c] = skip_before(&series.t, cursors[c], start);
                let from = match shift {
                    Some(shift) => {
                        let earlier = channel - width + shift;
                        x.copy_within(earlier..earlier + kept, channel);
                        mask.copy_within(earlier..earlier + kept, channel);
                        ends[c]
                    }
                    None => cursors[c],
                };
                let (x, mask) = (&mut x[channel + kept..channel + steps], &mut mask[channel + kept..channel + steps]);
                ends[c] = self.fill_bins(series, from, &edges[kept..], x, mask);
            }
            std::mem::swap(&mut edges, &mut before);
        }
        TensorFeatures { windows, timesteps: steps, x, mask }
    }
}

/// How many bins `edges` starts after `before` when the bins they share
/// have the same edges bit for bit (and at least one bin is shared); `None`
/// otherwise.
fn overlap(before: &[f64], edges: &[f64]) -> Option<usize> {
    let first = edges.first()?.to_bits();
    let shift = before.iter().position(|e| e.to_bits() == first)?;
    let shared = before.len() - shift;
    let same = before[shift..].iter().zip(edges).all(|(a, b)| a.to_bits() == b.to_bits());
    (shared >= 2 && shift > 0 && same).then_some(shift)
}

impl Tensor {
    /// Every channel binned over the whole episode, from 0 to its end, as
    /// the tensors bin a window (same rate, same hold): `(bins, x, mask)`
    /// with `x[c * bins + b]`. What a replay shows as its clock passes each
    /// bin.
    pub fn timeline(&self, ep: &AlignedEpisode) -> (usize, Vec<f32>, Vec<bool>) {
        let Some(t_end) = ep.t_end.filter(|t| t.is_finite() && *t > 0.0) else { return (0, Vec::new(), Vec::new()) };
        let bins = (t_end * self.config.tensor.hz).floor() as usize;
        let edges: Vec<f64> = (0..=bins).map(|i| i as f64 / self.config.tensor.hz).collect();
        let mut x = vec![0.0; ep.channels.len() * bins];
        let mut mask = vec![false; x.len()];
        let cells = x.chunks_exact_mut(bins.max(1)).zip(mask.chunks_exact_mut(bins.max(1)));
        for (series, (x, mask)) in ep.channels.iter().zip(cells) {
            self.fill_bins(series, 0, &edges, x, mask);
        }
        (bins, x, mask)
    }

    /// Fills one channel's bins (`x` and `mask`, one cell per pair of
    /// consecutive `edges`) from its points, of which those from index `k` on
    /// are not before the first edge: one forward sweep over the sorted points.
    /// Cells start as 0 / false, which is what a bin with nothing to show keeps.
    /// Returns where the points at or after the last edge begin.
    fn fill_bins(&self, series: &Series, mut k: usize, edges: &[f64], x: &mut [f32], mask: &mut [bool]) -> usize {
        let (t, v) = (&series.t[..series.v.len()], &series.v[..]);
        for ((bin, x), present) in edges.windows(2).zip(x).zip(mask) {
            let (lo, hi) = (bin[0], bin[1]);
            let first = k;
            let mut sum = 0.0;
            while k < t.len() && t[k] < hi {
                sum += v[k];
                k += 1;
            }
            if k > first {
                *x = (sum / (k - first) as f64) as f32;
                *present = true;
            } else if let Some(p) = first.checked_sub(1) {
                // Empty: hold the latest point before the bin when recent enough.
                if lo - t[p] <= self.config.tensor.hold_s {
                    *x = v[p] as f32;
                    *present = true;
                }
            }
        }
        k
    }

    /// Tensors straight from archive bytes, without shards or a dataflow: the
    /// entry point for live inference on one episode.
    pub fn from_archive(&self, bytes: &[u8], key: EpisodeKey) -> Result<TensorFeatures, Failure> {
        let decoded = Decode::default().decode_bytes(bytes, key, None, "episode")?;
        Ok(self.apply(&crate::align::Align.apply(&decoded)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::channel_index;
    use crate::test_support::{aligned, seed_episode, tar_zst};

    fn tensors(members: Vec<(String, Vec<u8>)>) -> TensorFeatures {
        let raw: Vec<(&str, &[u8])> = members.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
        let key = EpisodeKey { host_id: "h".into(), episode_id: "e".into() };
        Tensor::default().from_archive(&tar_zst(&raw), key).unwrap()
    }

    const SEED_PHASES: [(f64, &str); 3] = [(0.0, "clean"), (10.0, "infected_running"), (25.0, "clean")];

    fn cell(f: &TensorFeatures, w: usize, channel: &str, t: usize) -> (f32, bool) {
        let i = w * f.width() + channel_index(channel).unwrap() * f.timesteps + t;
        (f.x[i], f.mask[i])
    }

    #[test]
    fn the_timeline_holds_the_tensor_cells_of_every_window() {
        let members = seed_episode(30.0, &SEED_PHASES, 100.0, false);
        let ep = crate::test_support::aligned_from(&members);
        let tensor = Tensor::default();
        let f = tensor.apply(&ep);
        let (bins, x, mask) = tensor.timeline(&ep);
        assert_eq!(bins, (ep.t_end.unwrap() * tensor.config.tensor.hz).floor() as usize);
        for (w, start) in f.windows.starts.iter().enumerate() {
            let first = (start * tensor.config.tensor.hz).round() as usize;
            for c in 0..N_CHANNELS {
                for t in 0..f.timesteps {
                    let i = w * f.width() + c * f.timesteps + t;
                    let j = c * bins + first + t;
                    assert_eq!((x[j], mask[j]), (f.x[i], f.mask[i]), "window {w} channel {c} step {t}");
                }
            }
        }
    }

    /// Each window swept whole, as before overlapping windows shared bins.
    fn swept(tensor: &Tensor, ep: &AlignedEpisode) -> TensorFeatures {
        let windows = tensor.config.window.windows(ep);
        let steps = tensor.config.timesteps();
        let mut x = vec![0.0; windows.len() * N_CHANNELS * steps];
        let mut mask = vec![false; x.len()];
        let mut cells = x.chunks_exact_mut(steps).zip(mask.chunks_exact_mut(steps));
        for &start in &windows.starts {
            let edges: Vec<f64> = (0..=steps).map(|i| start + i as f64 / tensor.config.tensor.hz).collect();
            for (series, (x, mask)) in ep.channels.iter().zip(&mut cells) {
                tensor.fill_bins(series, skip_before(&series.t, 0, start), &edges, x, mask);
            }
        }
        TensorFeatures { windows, timesteps: steps, x, mask }
    }

    #[test]
    fn shared_bins_are_the_bins_a_whole_sweep_gives_bit_for_bit() {
        let mut ep = crate::test_support::aligned_from(&seed_episode(60.0, &SEED_PHASES, 100.0, false));
        // Irregular points: gaps longer than the hold, repeated times, points
        // on bin edges (multiples of 0.25 s) and between them, NaN values.
        let mut rng = crate::rng::SplitMix64::new(7);
        let mut uniform = move || rng.below(1 << 20) as f64 / (1 << 20) as f64;
        for series in &mut ep.channels {
            let mut t = 0.0;
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            while t < 60.0 {
                ts.push(t);
                vs.push(if uniform() < 0.02 { f64::NAN } else { uniform() * 100.0 });
                t += match uniform() {
                    u if u < 0.1 => 0.0,
                    u if u < 0.2 => 3.0,
                    u if u < 0.6 => 0.25,
                    u => u * 0.4,
                };
            }
            *series = Series { t: ts.into(), v: vs.into() };
        }
        let mut shared = 0;
        for (window_s, stride_s, hz) in
            [(10.0, 5.0, 2.0), (20.0, 5.0, 2.0), (10.0, 2.5, 4.0), (7.3, 1.1, 3.0), (10.0, 3.0, 0.7), (6.0, 0.3, 10.0)]
        {
            let mut tensor = Tensor::default();
            tensor.config.window.window_s = window_s;
            tensor.config.window.stride_s = stride_s;
            tensor.config.tensor.hz = hz;
            let (fast, whole) = (tensor.apply(&ep), swept(&tensor, &ep));
            assert!(!whole.windows.starts.is_empty());
            let bits = |f: &TensorFeatures| f.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&whole), "{window_s} s every {stride_s} s at {hz} Hz");
            assert_eq!(fast.mask, whole.mask, "{window_s} s every {stride_s} s at {hz} Hz");
            let mut edges = Vec::new();
            for &start in &fast.windows.starts {
                let next: Vec<f64> = (0..=fast.timesteps).map(|i| start + i as f64 / hz).collect();
                shared += overlap(&edges, &next).is_some() as usize;
                edges = next;
            }
        }
        assert!(shared > 20, "most configurations share bins: {shared} windows did");
    }

    #[test]
    fn seed_tensor_windows_shape() {
        let f = tensors(seed_episode(30.0, &SEED_PHASES, 100.0, false));
        assert_eq!((f.windows.len(), f.timesteps, f.width()), (5, 20, 46 * 20));
        assert_eq!(f.x.len(), 5 * 46 * 20);
        let mean_mask = f.mask.iter().filter(|m| **m).count() as f64 / f.mask.len() as f64;
        assert!(mean_mask > 0.95, "{mean_mask}");
    }

    #[test]
    fn seed_counter_to_rate_constant_signal() {
        let f = tensors(seed_episode(30.0, &SEED_PHASES, 100.0, false));
        let (mut sum, mut n) = (0.0, 0);
        for w in 0..f.windows.len() {
            for t in 0..f.timesteps {
                if let (v, true) = cell(&f, w, "proc.cpu_user_jiffies", t) {
                    sum += v as f64;
                    n += 1;
                }
            }
        }
        let mean = sum / n as f64;
        assert!((90.0..110.0).contains(&mean), "{mean}");
    }

    #[test]
    fn seed_t_wall_ns_alignment_not_t_mono_ns() {
        let f = tensors(seed_episode(30.0, &SEED_PHASES, 100.0, true));
        let c = channel_index("netflow.pkts_in").unwrap();
        let cells: Vec<bool> = (0..f.windows.len())
            .flat_map(|w| (0..f.timesteps).map(move |t| (w, t)))
            .map(|(w, t)| f.mask[w * f.width() + c * f.timesteps + t])
            .collect();
        assert!(cells.iter().filter(|m| **m).count() as f64 / cells.len() as f64 > 0.5);
    }

    #[test]
    fn seed_no_labels_returns_empty() {
        let mut m = seed_episode(30.0, &SEED_PHASES, 100.0, false);
        m.retain(|(n, _)| !n.ends_with("labels.jsonl"));
        assert_eq!(tensors(m).x.len(), 0);
    }

    fn one_channel(points: &[(f64, f64)], hold_s: f64) -> TensorFeatures {
        let rows: Vec<(f64, String)> = points.iter().map(|(t, v)| (*t, format!("\"rss_bytes\":{v}"))).collect();
        let ep = aligned(&[(0.0, "clean")], Some(10.0), &[("telemetry-proc.jsonl", rows)]);
        let t = Tensor { config: TensorConfig { tensor: TensorSpec { hz: 2.0, hold_s }, ..Default::default() } };
        t.apply(&ep)
    }

    #[test]
    fn bins_average_and_boundaries_belong_to_the_later_bin() {
        let f = one_channel(&[(0.0, 2.0), (0.25, 4.0), (0.5, 10.0)], 0.0);
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 0), (3.0, true));
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 1), (10.0, true), "t=0.5 opens bin 1");
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 2), (0.0, false), "no hold with hold_s = 0");
    }

    #[test]
    fn hold_at_exactly_one_second_and_just_past_it() {
        // A point at 1.0 s: bin [2.0, 2.5) starts exactly 1.0 s later → held.
        let f = one_channel(&[(1.0, 7.0)], 1.0);
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 2), (7.0, true), "bin [1.0,1.5) itself");
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 3), (7.0, true), "0.5 s old");
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 4), (7.0, true), "exactly 1.0 s old");
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 5), (0.0, false), "1.5 s old");
        // Just past: a point at 0.999 s is 1.001 s older than bin 4's start.
        let f = one_channel(&[(0.999, 7.0)], 1.0);
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 4), (0.0, false));
        assert_eq!(cell(&f, 0, "proc.rss_bytes", 0), (0.0, false), "nothing before the first point");
    }

    #[test]
    fn a_channel_missing_in_a_window_is_zero_and_masked() {
        let f = tensors(seed_episode(30.0, &SEED_PHASES, 100.0, false));
        let g = channel_index("netflow.dns_query_count").unwrap();
        assert!(f.mask[g * f.timesteps..(g + 1) * f.timesteps].iter().all(|m| *m), "present with zeros");
        let f = one_channel(&[(0.5, 1.0)], 1.0);
        assert_eq!(cell(&f, 0, "guest.load_1m", 7), (0.0, false), "an absent source");
    }

    #[test]
    fn tensor_config_is_checked_and_sets_the_timesteps() {
        let c = TensorConfig { tensor: TensorSpec { hz: 4.0, hold_s: 1.0 }, ..Default::default() };
        assert_eq!(c.timesteps(), 40);
        assert!(TensorConfig { tensor: TensorSpec { hz: 0.0, hold_s: 1.0 }, ..Default::default() }.check().is_err());
        assert!(TensorConfig { tensor: TensorSpec { hz: 2.0, hold_s: -1.0 }, ..Default::default() }.check().is_err());
    }
}
