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
        let group = group.max(1);
        let groups = train.width.div_ceil(group);
        let (mut n, mut sum, mut sum_sq) = (vec![0u64; groups], vec![0f64; groups], vec![0f64; groups]);
        for i in 0..train.rows() {
            for (j, &v) in train.row(i).iter().enumerate() {
                if present(train, i, j, v) {
                    let g = j / group;
                    n[g] += 1;
                    sum[g] += v as f64;
                }
            }
        }
        let mean: Vec<f64> = sum.iter().zip(&n).map(|(s, &n)| if n == 0 { 0.0 } else { s / n as f64 }).collect();
        for i in 0..train.rows() {
            for (j, &v) in train.row(i).iter().enumerate() {
                if present(train, i, j, v) {
                    let d = v as f64 - mean[j / group];
                    sum_sq[j / group] += d * d;
                }
            }
        }
        let std = sum_sq
            .iter()
            .zip(&n)
            .map(|(s, &n)| match n {
                0 => 1.0,
                n => match (s / n as f64).sqrt() {
                    sd if sd > 0.0 && sd.is_finite() => sd as f32,
                    _ => 1.0,
                },
            })
            .collect();
        Normalisation { group, mean: mean.into_iter().map(|m| m as f32).collect(), std }
    }

    /// Scales `windows` in place: `(x - mean) / std`, missing values 0.
    pub fn apply(&self, windows: &mut WindowRows) {
        let width = windows.width;
        for i in 0..windows.rows() {
            for j in 0..width {
                let v = windows.x[i * width + j];
                let g = j / self.group;
                windows.x[i * width + j] =
                    if present(windows, i, j, v) { (v - self.mean[g]) / self.std[g] } else { 0.0 };
            }
        }
    }
}

/// Whether cell `j` of row `i` holds a value.
fn present(w: &WindowRows, i: usize, j: usize, v: f32) -> bool {
    v.is_finite() && w.mask.as_ref().is_none_or(|m| m[i * w.width + j])
}

#[cfg(test)]
mod tests {
    use super::*;

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
