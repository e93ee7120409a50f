//! Honest uncertainty for test-side figures (SPEC section 14).
//!
//! The windows of one episode are strongly correlated (one sample, one VM,
//! the same minutes), so resampling windows would give intervals far too
//! narrow. Every resample here draws whole test episodes with replacement,
//! and a figure is recomputed from the drawn episodes' confusion counts.
//! Two models are compared on the *same* resamples (a paired bootstrap), so
//! the episodes that are hard for both do not widen the interval of the gap.

use crate::scoring::Confusion;
use epiflow_operators::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Confidence of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// A gap is significant when its p-value, adjusted for the number of
/// comparisons (Holm), is below this level. Written out rather than
/// computed as `1 - CONFIDENCE`, which in floating point is a hair above
/// 0.05 and would let a p-value of exactly 0.05 through.
pub const SIGNIFICANCE: f64 = 0.05;

/// Bootstrap resamples of a list of episodes: how often each resample draws
/// each episode.
pub struct Resamples {
    episodes: usize,
    /// `draws[r * episodes + e]`: times resample `r` drew episode `e`. An
    /// episode drawn 65,535 times in one resample would need millions of
    /// test episodes; the count saturates there.
    draws: Vec<u16>,
}

impl Resamples {
    /// `resamples` resamples of `episodes` episodes, each drawing as many
    /// episodes as there are, with replacement, from `seed`.
    pub fn draw(episodes: usize, resamples: usize, seed: u64) -> Resamples {
        let mut rng = SplitMix64::new(seed);
        let mut draws = vec![0u16; episodes * resamples];
        for resample in draws.chunks_exact_mut(episodes.max(1)) {
            for _ in 0..episodes {
                let e = rng.below(episodes);
                resample[e] = resample[e].saturating_add(1);
            }
        }
        Resamples { episodes, draws }
    }

    /// Macro F1 in each resample, for a model whose confusion on episode `e`
    /// is `per_episode[e]`. Empty when there are no episodes.
    pub fn macro_f1s(&self, per_episode: &[Confusion]) -> Vec<f64> {
        if self.episodes == 0 {
            return Vec::new();
        }
        self.draws
            .chunks_exact(self.episodes)
            .map(|times| {
                let mut drawn = Confusion::default();
                for (confusion, &n) in per_episode.iter().zip(times) {
                    if n > 0 {
                        drawn.add(confusion, n as u64);
                    }
                }
                drawn.macro_f1()
            })
            .collect()
    }
}

/// A central [`CONFIDENCE`] interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The central [`CONFIDENCE`] interval of bootstrap values (percentile
/// method, nearest rank); `None` without values.
pub fn interval(values: &[f64]) -> Option<Interval> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    let at = |q: f64| sorted[(q * (sorted.len() - 1) as f64).round() as usize];
    Some(Interval { low: at(tail), high: at(1.0 - tail) })
}

/// The macro-F1 gap between two models on the same test episodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// `a − b` on the whole test side.
    pub gap: f64,
    /// Interval of the gap over the shared resamples.
    pub ci: Option<Interval>,
    /// Two-sided bootstrap p-value of "no gap": twice the share of resamples
    /// on the far side of zero, counted with the observed sample (+1 in
    /// numerator and denominator), so it is never 0 and is 1 when the two
    /// models agree in every resample.
    pub p_value: f64,
    /// `p_value` adjusted for every comparison made with it (Holm's
    /// step-down method over the split's pairs; see [`holm`]).
    pub p_adjusted: f64,
    /// `p_adjusted < SIGNIFICANCE`.
    pub significant: bool,
}

/// The gap `a − b`, from both models' whole-test-side macro F1 and their
/// macro F1 in the same resamples.
pub fn paired_gap(a: f64, b: f64, a_resampled: &[f64], b_resampled: &[f64]) -> Gap {
    let gaps: Vec<f64> = a_resampled.iter().zip(b_resampled).map(|(x, y)| x - y).collect();
    let not_above = gaps.iter().filter(|&&g| g <= 0.0).count();
    let not_below = gaps.iter().filter(|&&g| g >= 0.0).count();
    let p_value = (2.0 * (not_above.min(not_below) + 1) as f64 / (gaps.len() + 1) as f64).min(1.0);
    Gap { gap: a - b, ci: interval(&gaps), p_value, p_adjusted: p_value, significant: p_value < SIGNIFICANCE }
}

/// The smallest p-value [`paired_gap`] can give with `resamples` resamples:
/// no resample on the far side of zero, `2 / (resamples + 1)`.
pub fn smallest_p(resamples: usize) -> f64 {
    (2.0 / (resamples + 1) as f64).min(1.0)
}

/// Whether `p`, adjusted over `comparisons` by Bonferroni's factor (Holm's
/// for the smallest p-value), is below [`SIGNIFICANCE`].
fn adjusted_passes(p: f64, comparisons: usize) -> bool {
    (p * comparisons as f64).min(1.0) < SIGNIFICANCE
}

/// The resamples needed for a gap to be able to pass the Holm-adjusted test
/// among `comparisons` pairs: its smallest p-value times their number must
/// fall below [`SIGNIFICANCE`].
pub fn resamples_to_resolve(comparisons: usize) -> usize {
    let passes = |resamples| adjusted_passes(smallest_p(resamples), comparisons);
    // 2m / α − 1 solves it exactly; the steps settle float rounding.
    let mut resamples = ((2.0 * comparisons as f64 / SIGNIFICANCE) as usize).saturating_sub(2).max(1);
    while !passes(resamples) {
        resamples += 1;
    }
    resamples
}

/// Adjusts the p-values of `gaps`, tested together, for their number (Holm)
/// and decides significance on the adjusted values.
pub fn adjust(gaps: &mut [&mut Gap]) {
    let raw: Vec<f64> = gaps.iter().map(|g| g.p_value).collect();
    for (gap, adjusted) in gaps.iter_mut().zip(holm(&raw)) {
        gap.p_adjusted = adjusted;
        gap.significant = adjusted < SIGNIFICANCE;
    }
}

/// Holm's step-down adjustment of `m` p-values, in their order: the `i`-th
/// smallest (from 1) becomes `max over j ≤ i of min(1, (m − j + 1) · p(j))`.
/// It controls the chance of any false "significant" among all `m` at the
/// level asked, without assuming the tests independent; the adjusted values
/// keep the raw values' order, and equal raw values get equal adjusted ones.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An episode of `n` windows of `phase`, `wrong` of them predicted as
    /// the next phase.
    fn episode(phase: u8, n: usize, wrong: usize) -> Confusion {
        let truth = vec![phase; n];
        let predicted: Vec<u8> = (0..n).map(|i| if i < wrong { (phase + 1) % 5 } else { phase }).collect();
        Confusion::of(&truth, &predicted)
    }

    #[test]
    fn perfect_predictions_score_one_in_every_resample() {
        let perfect: Vec<Confusion> = (0..30).map(|e| episode((e % 5) as u8, 10, 0)).collect();
        let f1s = Resamples::draw(perfect.len(), 1000, 7).macro_f1s(&perfect);
        assert_eq!(f1s.len(), 1000);
        assert!(f1s.iter().all(|&f| f == 1.0));
        assert_eq!(interval(&f1s), Some(Interval { low: 1.0, high: 1.0 }));
    }

    #[test]
    fn identical_models_have_no_gap_and_no_significance() {
        let model: Vec<Confusion> = (0..30).map(|e| episode((e % 5) as u8, 10, e % 4)).collect();
        let resamples = Resamples::draw(model.len(), 1000, 7);
        let (a, b) = (resamples.macro_f1s(&model), resamples.macro_f1s(&model.clone()));
        let gap = paired_gap(0.8, 0.8, &a, &b);
        assert_eq!(gap.gap, 0.0);
        assert_eq!(gap.ci, Some(Interval { low: 0.0, high: 0.0 }));
        assert_eq!(gap.p_value, 1.0);
        assert!(!gap.significant);
    }

    #[test]
    fn a_model_better_on_every_episode_is_significantly_better() {
        let better: Vec<Confusion> = (0..30).map(|e| episode((e % 5) as u8, 10, 0)).collect();
        let worse: Vec<Confusion> = (0..30).map(|e| episode((e % 5) as u8, 10, 2)).collect();
        let resamples = Resamples::draw(better.len(), 1000, 7);
        let (a, b) = (resamples.macro_f1s(&better), resamples.macro_f1s(&worse));
        let gap = paired_gap(1.0, 0.8, &a, &b);
        let ci = gap.ci.unwrap();
        assert!(ci.low > 0.0 && ci.high <= 1.0, "{ci:?}");
        assert!((gap.p_value - 2.0 / 1001.0).abs() < 1e-12, "no resample at or below zero: {}", gap.p_value);
        assert!(gap.significant);
        let reversed = paired_gap(0.8, 1.0, &b, &a);
        assert!(reversed.significant && reversed.gap < 0.0 && reversed.ci.unwrap().high < 0.0);
    }

    #[test]
    fn resamples_draw_whole_episodes_not_windows() {
        // Episode 0: 100 windows of phase 0, all right. Episode 1: one window
        // of phase 1, predicted as phase 2. A resample is two episode draws,
        // so only three mixtures can occur, whatever the window counts.
        let model = [episode(0, 100, 0), episode(1, 1, 1)];
        let resamples = Resamples::draw(2, 1000, 11);
        assert!(resamples.draws.chunks_exact(2).all(|r| r.iter().sum::<u16>() == 2));
        let mixture = |times: [u64; 2]| {
            let mut c = Confusion::default();
            c.add(&model[0], times[0]);
            c.add(&model[1], times[1]);
            c.macro_f1()
        };
        let possible = [mixture([2, 0]), mixture([1, 1]), mixture([0, 2])];
        let f1s = resamples.macro_f1s(&model);
        assert!(f1s.iter().all(|f| possible.contains(f)), "a resample mixed windows across episodes");
        for p in possible {
            assert!(f1s.contains(&p), "all three mixtures occur in 1000 resamples");
        }
    }

    #[test]
    fn resamples_repeat_for_a_seed_and_differ_between_seeds() {
        assert_eq!(Resamples::draw(20, 50, 3).draws, Resamples::draw(20, 50, 3).draws);
        assert_ne!(Resamples::draw(20, 50, 3).draws, Resamples::draw(20, 50, 4).draws);
        assert!(Resamples::draw(0, 50, 3).macro_f1s(&[]).is_empty());
    }

    #[test]
    fn holm_adjusts_as_computed_by_hand() {
        // m = 4, sorted 0.01, 0.02, 0.03, 0.04: ×4, ×3, ×2, ×1 → 0.04, 0.06,
        // 0.06, 0.04 → running maximum 0.04, 0.06, 0.06, 0.06.
        let adjusted = holm(&[0.03, 0.01, 0.04, 0.02]);
        let expected = [0.06, 0.04, 0.06, 0.06];
        assert!(adjusted.iter().zip(expected).all(|(a, e)| (a - e).abs() < 1e-12), "{adjusted:?}");
        // Ties: 0.01, 0.01, 0.5 → 0.03, 0.03 (max(0.03, 0.02)), 0.5.
        let tied = holm(&[0.5, 0.01, 0.01]);
        assert!(tied.iter().zip([0.5, 0.03, 0.03]).all(|(a, e)| (a - e).abs() < 1e-12), "{tied:?}");
        // Capped at 1, and one test is left alone.
        assert_eq!(holm(&[0.4, 0.5, 0.9]), [1.0, 1.0, 1.0]);
        assert_eq!(holm(&[0.03]), [0.03]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn holm_keeps_the_order_of_the_raw_p_values_and_never_lowers_one() {
        let mut rng = SplitMix64::new(5);
        for _ in 0..200 {
            let raw: Vec<f64> = (0..1 + rng.below(30)).map(|_| rng.below(10_000) as f64 / 10_000.0).collect();
            let adjusted = holm(&raw);
            for i in 0..raw.len() {
                assert!(adjusted[i] >= raw[i] && adjusted[i] <= 1.0);
                for j in 0..raw.len() {
                    if raw[i] <= raw[j] {
                        assert!(adjusted[i] <= adjusted[j], "{raw:?} → {adjusted:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn enough_resamples_let_the_best_gap_pass_holm_and_fewer_do_not() {
        for comparisons in [1, 15, 66] {
            let needed = resamples_to_resolve(comparisons);
            let best = |resamples| smallest_p(resamples) * comparisons as f64;
            assert!(best(needed) < SIGNIFICANCE, "{comparisons}: {needed}");
            assert!(best(needed - 1) >= SIGNIFICANCE, "{comparisons}: {needed} is the fewest");
        }
        // 2 × 66 / (n + 1) < 0.05 ⇔ n + 1 > 2640; at n = 2639 the product is 0.05 exactly.
        assert_eq!(resamples_to_resolve(66), 2640);
        assert!(!adjusted_passes(smallest_p(2639), 66), "exactly 0.05 is not below 0.05");
        assert!((smallest_p(1000) - 2.0 / 1001.0).abs() < 1e-15);
    }

    #[test]
    fn more_resamples_from_the_same_seed_begin_with_the_same_draws() {
        let model: Vec<Confusion> = (0..40).map(|e| episode((e % 5) as u8, 10, e % 3)).collect();
        let few = Resamples::draw(model.len(), 1000, 7).macro_f1s(&model);
        let more = Resamples::draw(model.len(), 2639, 7).macro_f1s(&model);
        assert_eq!(more.len(), 2639);
        assert_eq!(few[..], more[..1000], "the intervals see the same resamples either way");
        assert_ne!(more[..1000], Resamples::draw(model.len(), 1000, 8).macro_f1s(&model)[..]);
    }

    #[test]
    fn significance_is_decided_on_the_adjusted_p_value() {
        let gap = |p_value| Gap { gap: 0.1, ci: None, p_value, p_adjusted: p_value, significant: p_value < 0.05 };
        let (mut a, mut b, mut c) = (gap(0.01), gap(0.02), gap(0.04));
        assert!(a.significant && b.significant && c.significant, "each alone");
        adjust(&mut [&mut a, &mut b, &mut c]);
        assert_eq!((a.p_adjusted, b.p_adjusted, c.p_adjusted), (0.03, 0.04, 0.04));
        assert!(a.significant && b.significant && c.significant);
        let (mut a, mut b, mut c, mut d) = (gap(0.01), gap(0.02), gap(0.04), gap(0.3));
        adjust(&mut [&mut a, &mut b, &mut c, &mut d]);
        assert!((a.p_adjusted - 0.04).abs() < 1e-12 && a.significant);
        assert!((b.p_adjusted - 0.06).abs() < 1e-12 && !b.significant, "0.02 alone would have passed");
        assert_eq!(a.p_value, 0.01, "the raw value is kept");
    }

    #[test]
    fn the_interval_is_the_central_95_percent() {
        let values: Vec<f64> = (0..=1000).rev().map(f64::from).collect();
        assert_eq!(interval(&values), Some(Interval { low: 25.0, high: 975.0 }));
        assert_eq!(interval(&[]), None);
    }
}
