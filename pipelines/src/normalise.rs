//! Feature normalisation for training, fitted on the training side only
//! (SPEC section 13) and stored in each checkpoint so that inference scales
//! its inputs exactly as training did.
//!
//! Statistics are kept per *group* of consecutive columns: one group per
//! summary column (`group = 1`), or one per tensor channel (`group =
//! timesteps`, every time step of a channel sharing its mean and spread).
//! Missing values — NaN summaries, masked-out tensor cells — are left out of
//! the fit and become 0 (the mean) when applied.

use crate::feature_reader::WindowRows;
use serde::{Deserialize, Serialize};

/// Mean and standard deviation per group of columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Columns per group.
    pub group: usize,
    /// Mean per group, over the training side's present values.
    pub mean: Vec<f32>,
    /// Population standard deviation; 1 where a group has no spread or no value.
    pub std: Vec<f32>,
}

impl Normalisation {
    /// Fits the statistics of `train`'s present values, `group` columns per group.
    pub fn fit(train: &WindowRows, group: usize) -> Normalisation {
        let mut moments = Moments::new(train.width, group);
        moments.add(train);
        moments.finish()
    }

    /// Scales `windows` in place: `(x - mean) / std`, missing values 0.
    pub fn apply(&self, windows: &mut WindowRows) {
        let mut scaled = Vec::with_capacity(windows.x.len());
        for i in 0..windows.rows() {
            self.extend_scaled(windows, i, &mut scaled);
        }
        windows.x = scaled;
    }

    /// Appends window `i` of `windows`, scaled as [`Normalisation::apply`]
    /// scales it, to `out`: how streamed batches are scaled as they are cut.
    pub fn extend_scaled(&self, windows: &WindowRows, i: usize, out: &mut Vec<f32>) {
        out.extend(windows.row(i).iter().enumerate().map(|(j, &v)| {
            let g = j / self.group;
            if present(windows, i, j, v) {
                (v - self.mean[g]) / self.std[g]
            } else {
                0.0
            }
        }));
    }
}

/// The running count, mean and sum of squared deviations of each group's
/// present values (Welford's update): statistics fitted in one pass over
/// windows that arrive a batch at a time, as training streams them, and as
/// exact as the two-pass computation over all of them in memory.
#[derive(Clone, Debug)]
pub struct Moments {
    group: usize,
    n: Vec<u64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    /// No values yet, for windows of `width` columns, `group` per group.
    pub fn new(width: usize, group: usize) -> Moments {
        let group = group.max(1);
        let groups = width.div_ceil(group);
        Moments { group, n: vec![0; groups], mean: vec![0.0; groups], m2: vec![0.0; groups] }
    }

    /// Takes in every present value of `windows`.
    pub fn add(&mut self, windows: &WindowRows) {
        for i in 0..windows.rows() {
            for (j, &v) in windows.row(i).iter().enumerate() {
                if present(windows, i, j, v) {
                    let g = j / self.group;
                    self.n[g] += 1;
                    let d = v as f64 - self.mean[g];
                    self.mean[g] += d / self.n[g] as f64;
                    self.m2[g] += d * (v as f64 - self.mean[g]);
                }
            }
        }
    }

    /// Each group's mean and population standard deviation so far, in full
    /// precision; `None` for a group with no value.
    pub fn mean_std(&self) -> Vec<Option<(f64, f64)>> {
        (0..self.n.len())
            .map(|g| (self.n[g] > 0).then(|| (self.mean[g], (self.m2[g] / self.n[g] as f64).max(0.0).sqrt())))
            .collect()
    }

    /// The normalisation: a group without values, or whose spread is no
    /// more than rounding (below 1e-10 of its mean; f32 values that differ
    /// at all differ by more), keeps its values' scale (std 1).
    pub fn finish(self) -> Normalisation {
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for stats in self.mean_std() {
            let (m, sd) = stats.unwrap_or((0.0, 1.0));
            mean.push(m as f32);
            std.push(if sd.is_finite() && sd > 1e-10 * m.abs() && sd > 0.0 { sd as f32 } else { 1.0 });
        }
        Normalisation { group: self.group, mean, std }
    }
}

/// Whether cell `j` of row `i` holds a value.
fn present(w: &WindowRows, i: usize, j: usize, v: f32) -> bool {
    v.is_finite() && w.mask.as_ref().is_none_or(|m| m[i * w.width + j])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The in-memory figures: every present value of every window at once,
    /// the mean first, then the squared deviations from it.
    fn two_pass(all: &WindowRows, group: usize) -> Vec<Option<(f64, f64)>> {
        let groups = all.width.div_ceil(group);
        let mut values = vec![Vec::new(); groups];
        for i in 0..all.rows() {
            for (j, &v) in all.row(i).iter().enumerate() {
                if present(all, i, j, v) {
                    values[j / group].push(v as f64);
                }
            }
        }
        values
            .iter()
            .map(|vs| {
                (!vs.is_empty()).then(|| {
                    let mean = vs.iter().sum::<f64>() / vs.len() as f64;
                    (mean, (vs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / vs.len() as f64).sqrt())
                })
            })
            .collect()
    }

    /// Windows from proptest's draws: values on a per-column scale and
    /// offset (large offsets are where a naive sum of squares fails), some
    /// NaN, and for tensors some cells masked out.
    fn drawn(cells: &[(f32, bool, bool)], width: usize, tensors: bool) -> WindowRows {
        let rows = cells.len() / width;
        let x = cells[..rows * width]
            .iter()
            .enumerate()
            .map(|(k, &(v, nan, _))| {
                let column = (k % width) as f32;
                if nan {
                    f32::NAN
                } else {
                    1e4 * column + v * (1.0 + column)
                }
            })
            .collect();
        let mask = tensors.then(|| cells[..rows * width].iter().map(|&(_, _, on)| on).collect());
        windows(x, width, mask)
    }

    proptest! {
        #[test]
        fn streaming_moments_equal_the_in_memory_figures(
            cells in proptest::collection::vec((-1e3f32..1e3, proptest::bool::weighted(0.1), proptest::bool::weighted(0.8)), 0..600),
            width in 1usize..7,
            group in 1usize..4,
            tensors in any::<bool>(),
            cuts in proptest::collection::vec(0usize..100, 0..8),
        ) {
            let all = drawn(&cells, width, tensors);
            // The same windows in shards of drawn sizes, one at a time.
            let mut moments = Moments::new(width, group);
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c * all.rows() / 100).collect();
            bounds.extend([0, all.rows()]);
            bounds.sort_unstable();
            for pair in bounds.windows(2) {
                let mut shard = WindowRows { width, ..WindowRows::default() };
                for i in pair[0]..pair[1] {
                    shard.push_row(&all, i);
                }
                moments.add(&shard);
            }
            let (streamed, reference) = (moments.mean_std(), two_pass(&all, group));
            prop_assert_eq!(streamed.len(), reference.len());
            for (s, r) in streamed.iter().zip(&reference) {
                match (s, r) {
                    (Some((sm, ss)), Some((rm, rs))) => {
                        prop_assert!((sm - rm).abs() <= 1e-9 * rm.abs().max(rs.abs()).max(f64::MIN_POSITIVE), "mean {} vs {}", sm, rm);
                        prop_assert!((ss - rs).abs() <= 1e-9 * rs.abs().max(1e-9 * rm.abs()), "std {} vs {}", ss, rs);
                    }
                    (None, None) => {}
                    _ => prop_assert!(false, "a group has values in one and not the other"),
                }
            }
            let fitted = Normalisation::fit(&all, group);
            prop_assert_eq!(fitted, moments.finish(), "one pass or shard by shard, the same normalisation");
        }
    }

    fn windows(x: Vec<f32>, width: usize, mask: Option<Vec<bool>>) -> WindowRows {
        let rows = x.len() / width;
        WindowRows { width, x, mask, labels: vec![0; rows], episode: vec![0; rows] }
    }

    #[test]
    fn summary_columns_are_scaled_by_their_own_present_values() {
        // Column 0: 1, 3 (NaN left out) → mean 2, std 1. Column 1: constant → std 1.
        let train = windows(vec![1.0, 5.0, 3.0, 5.0, f32::NAN, 5.0], 2, None);
        let norm = Normalisation::fit(&train, 1);
        assert_eq!((norm.mean.clone(), norm.std.clone()), (vec![2.0, 5.0], vec![1.0, 1.0]));
        let mut test = windows(vec![4.0, 6.0, f32::NAN, 5.0], 2, None);
        norm.apply(&mut test);
        assert_eq!(test.x, vec![2.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn tensor_channels_share_statistics_over_time_and_masked_cells_do_not_count() {
        // Two channels × 2 steps; channel 0's masked cell (100) is ignored.
        let x = vec![2.0, 100.0, 7.0, 9.0, 4.0, 6.0, 7.0, 9.0];
        let mask = vec![true, false, true, true, true, true, true, true];
        let train = windows(x, 4, Some(mask));
        let norm = Normalisation::fit(&train, 2);
        assert_eq!(norm.mean, vec![4.0, 8.0]);
        assert!((norm.std[0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-6 && norm.std[1] == 1.0);
        let mut scaled = train.clone();
        norm.apply(&mut scaled);
        assert_eq!(scaled.x[1], 0.0, "a masked cell becomes the mean");
        assert_eq!(scaled.x[2], -1.0);
    }
}
