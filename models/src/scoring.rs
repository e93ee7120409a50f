//! How a classifier is judged: macro F1 over the phases, how well its
//! probabilities are calibrated, and the class weights that make training
//! care about rare phases as much as common ones.

use crate::CLASSES;
use serde::{Deserialize, Serialize};

/// Confusion counts: `counts[truth][predicted]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Confusion {
    /// `counts[truth][predicted]`, by class id.
    pub counts: [[u64; CLASSES]; CLASSES],
}

impl Confusion {
    /// Counts `predicted` against `truth`, window by window.
    pub fn of(truth: &[u8], predicted: &[u8]) -> Confusion {
        let mut c = Confusion::default();
        for (&t, &p) in truth.iter().zip(predicted) {
            c.counts[t as usize][p as usize] += 1;
        }
        c
    }

    /// Adds `times` copies of `other`'s counts (a bootstrap draw of an
    /// episode `times` times).
    pub fn add(&mut self, other: &Confusion, times: u64) {
        for (row, other_row) in self.counts.iter_mut().zip(&other.counts) {
            for (cell, other_cell) in row.iter_mut().zip(other_row) {
                *cell += other_cell * times;
            }
        }
    }

    /// The classes seen in the truth or in the predictions, in class order:
    /// the rows and columns a confusion matrix is shown with.
    pub fn labels(&self) -> Vec<usize> {
        (0..CLASSES)
            .filter(|&k| self.counts[k].iter().sum::<u64>() > 0 || self.counts.iter().any(|row| row[k] > 0))
            .collect()
    }

    /// F1 of each class that occurs in the truth (`None` for the others).
    pub fn f1(&self) -> [Option<f64>; CLASSES] {
        std::array::from_fn(|k| {
            let support: u64 = self.counts[k].iter().sum();
            if support == 0 {
                return None;
            }
            let tp = self.counts[k][k] as f64;
            let predicted: u64 = self.counts.iter().map(|row| row[k]).sum();
            let precision = if predicted == 0 { 0.0 } else { tp / predicted as f64 };
            let recall = tp / support as f64;
            Some(if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) })
        })
    }

    /// Mean F1 over the classes that occur in the truth: a phase absent from
    /// a side cannot be scored there, and is not averaged in as zero.
    pub fn macro_f1(&self) -> f64 {
        let scores: Vec<f64> = self.f1().into_iter().flatten().collect();
        if scores.is_empty() {
            0.0
        } else {
            scores.iter().sum::<f64>() / scores.len() as f64
        }
    }
}

/// Inverse class frequency, scaled so that the weighted count of every
/// present class is the same and the weights average 1 over the windows;
/// absent classes get 0.
pub fn class_weights(labels: &[u8]) -> [f32; CLASSES] {
    let mut n = [0u64; CLASSES];
    count_classes(&mut n, labels);
    weights_of_counts(&n)
}

/// Adds each of `labels` to its class's count (an id past the last class
/// counts as the last).
pub fn count_classes(counts: &mut [u64; CLASSES], labels: &[u8]) {
    for &label in labels {
        counts[usize::from(label).min(CLASSES - 1)] += 1;
    }
}

/// [`class_weights`] from the windows' count per class (what a streamed
/// pass counts without holding the labels).
pub fn weights_of_counts(n: &[u64; CLASSES]) -> [f32; CLASSES] {
    let total = n.iter().sum::<u64>() as f64;
    let present = n.iter().filter(|&&c| c > 0).count().max(1) as f64;
    n.map(|c| if c == 0 { 0.0 } else { (total / (present * c as f64)) as f32 })
}

/// The class with the highest probability in each row of `probs`
/// (`rows × CLASSES`); the first on ties.
pub fn argmax(probs: &[f32]) -> Vec<u8> {
    probs.chunks_exact(CLASSES).map(|row| top(row).0 as u8).collect()
}

/// The most likely class of one row and its probability; the first on ties.
fn top(row: &[f32]) -> (usize, f32) {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (k, &p)| if p > best.1 { (k, p) } else { best })
}

/// Equal-width confidence bins of the calibration figures.
pub const CALIBRATION_BINS: usize = 10;

/// How far a model's confidence is from how often it is right: the
/// dashboard shows its probabilities to people, who read 0.9 as "right nine
/// times in ten".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Expected calibration error: over [`CALIBRATION_BINS`] equal-width bins
    /// of the top probability, `Σ (windows in bin / windows) × |accuracy −
    /// mean confidence|` (0: calibrated; 1: always sure and always wrong).
    pub ece: f64,
    /// The bins that hold windows (the reliability chart's points).
    pub bins: Vec<CalibrationBin>,
}

/// One confidence bin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// `[low, high)` of the top probability (the last bin holds 1.0).
    pub low: f64,
    /// Upper bound of the bin.
    pub high: f64,
    /// Windows whose top probability falls in it.
    pub windows: u64,
    /// Mean top probability of its windows.
    pub confidence: f64,
    /// Share of its windows predicted right.
    pub accuracy: f64,
}

impl Calibration {
    /// The calibration of predictions `probs` (`rows × CLASSES`) against
    /// `truth`, window by window.
    pub fn of(probs: &[f32], truth: &[u8]) -> Calibration {
        let mut sums = [(0u64, 0.0f64, 0u64); CALIBRATION_BINS];
        for (row, &t) in probs.chunks_exact(CLASSES).zip(truth) {
            let (k, p) = top(row);
            let p = f64::from(p).clamp(0.0, 1.0);
            let bin = ((p * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
            sums[bin].0 += 1;
            sums[bin].1 += p;
            sums[bin].2 += u64::from(k == t as usize);
        }
        let total: u64 = sums.iter().map(|s| s.0).sum();
        let bins: Vec<CalibrationBin> = sums
            .iter()
            .enumerate()
            .filter(|(_, s)| s.0 > 0)
            .map(|(b, &(n, confidence, right))| CalibrationBin {
                low: b as f64 / CALIBRATION_BINS as f64,
                high: (b + 1) as f64 / CALIBRATION_BINS as f64,
                windows: n,
                confidence: confidence / n as f64,
                accuracy: right as f64 / n as f64,
            })
            .collect();
        let ece = bins.iter().map(|b| b.windows as f64 / total.max(1) as f64 * (b.accuracy - b.confidence).abs()).sum();
        Calibration { ece, bins }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row whose top class is `k` with probability `p`, the rest shared.
    fn row(k: usize, p: f32) -> [f32; CLASSES] {
        let mut r = [(1.0 - p) / (CLASSES - 1) as f32; CLASSES];
        r[k] = p;
        r
    }

    #[test]
    fn calibrated_predictions_have_no_calibration_error() {
        // Sure at 0.8 and right 8 times in 10; sure at 0.95 and right 19 in 20.
        let mut probs = Vec::new();
        let mut truth = Vec::new();
        for i in 0..10 {
            probs.extend(row(1, 0.8));
            truth.push(if i < 8 { 1 } else { 2 });
        }
        for i in 0..20 {
            probs.extend(row(0, 0.95));
            truth.push(if i < 19 { 0 } else { 3 });
        }
        let c = Calibration::of(&probs, &truth);
        assert!(c.ece.abs() < 1e-6, "{c:?}");
        assert_eq!(c.bins.iter().map(|b| (b.low, b.windows)).collect::<Vec<_>>(), [(0.8, 10), (0.9, 20)]);
        assert!((c.bins[0].accuracy - 0.8).abs() < 1e-12 && (c.bins[1].confidence - 0.95).abs() < 1e-6);
    }

    #[test]
    fn sure_and_wrong_is_the_worst_calibration() {
        let probs: Vec<f32> = (0..7).flat_map(|_| row(2, 1.0)).collect();
        let c = Calibration::of(&probs, &[0; 7]);
        assert_eq!(c.ece, 1.0);
        assert_eq!((c.bins.len(), c.bins[0].low, c.bins[0].accuracy), (1, 0.9, 0.0), "1.0 falls in the last bin");
        // Half the windows sure and wrong, half at 0.6 and always right: 0.5 × 1 + 0.5 × 0.4.
        let mut probs = probs[..5 * CLASSES].to_vec();
        probs.extend((0..5).flat_map(|_| row(4, 0.6)));
        let truth = [0, 0, 0, 0, 0, 4, 4, 4, 4, 4];
        assert!((Calibration::of(&probs, &truth).ece - 0.7).abs() < 1e-6);
        assert_eq!(Calibration::of(&[], &[]), Calibration { ece: 0.0, bins: Vec::new() });
    }

    #[test]
    fn macro_f1_by_hand_over_the_classes_present() {
        // Class 0: tp 2, fp 1, fn 0 → p 2/3, r 1, F1 0.8. Class 1: tp 1, fp 0,
        // fn 1 → p 1, r 1/2, F1 2/3. Classes 2–4 absent: not averaged.
        let c = Confusion::of(&[0, 0, 1, 1], &[0, 0, 1, 0]);
        assert!((c.f1()[0].unwrap() - 0.8).abs() < 1e-12);
        assert!((c.f1()[1].unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.f1()[2], None);
        assert!((c.macro_f1() - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(Confusion::of(&[3, 3], &[3, 3]).macro_f1(), 1.0);
    }

    #[test]
    fn the_matrix_covers_labels_only_predicted_and_macro_f1_scores_the_true_ones() {
        // Truth has phases 0 and 2; the model also predicts 4, which never occurs.
        let c = Confusion::of(&[0, 0, 2, 2, 2], &[0, 4, 2, 2, 4]);
        assert_eq!(c.labels(), vec![0, 2, 4], "rows and columns: truth ∪ predictions");
        assert_eq!((c.counts[0][4], c.counts[2][4], c.counts[4].iter().sum::<u64>()), (1, 1, 0));
        // Phase 0: p 1, r 1/2 → 2/3; phase 2: p 1, r 2/3 → 4/5; phase 4 has no
        // truth to score (its wrong predictions already cost 0's and 2's recall).
        assert_eq!(c.f1()[4], None);
        assert!((c.macro_f1() - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn adding_a_confusion_n_times_scales_its_counts() {
        let one = Confusion::of(&[0, 1], &[0, 0]);
        let mut sum = Confusion::default();
        sum.add(&one, 3);
        sum.add(&one, 0);
        assert_eq!((sum.counts[0][0], sum.counts[1][0], sum.counts[1][1]), (3, 3, 0));
    }

    #[test]
    fn class_weights_balance_the_present_classes() {
        let labels = [0, 0, 0, 1];
        let w = class_weights(&labels);
        assert_eq!(w, [4.0 / 6.0, 2.0, 0.0, 0.0, 0.0]);
        let total: f32 = labels.iter().map(|&l| w[l as usize]).sum();
        assert!((total - labels.len() as f32).abs() < 1e-6, "weights average 1 per window");
    }

    #[test]
    fn argmax_picks_the_most_likely_class_per_row() {
        let probs = [0.1, 0.6, 0.1, 0.1, 0.1, 0.3, 0.3, 0.2, 0.1, 0.1];
        assert_eq!(argmax(&probs), vec![1, 0]);
    }
}
