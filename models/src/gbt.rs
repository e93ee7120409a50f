//! `gbt`: gradient-boosted trees on the summary features (SPEC section 13),
//! multi-class softmax, class-weighted, stopped early on the validation
//! side's multi-class log loss.
//!
//! The trees come from `hessboost`, a pure-Rust reimplementation of XGBoost
//! (builds with cargo alone, deterministic for a seed, multi-class
//! `softprob`, per-row weights, evaluation sets with early stopping that
//! keeps the best round). The other crates.io candidates fell short: `gbdt`
//! trains no multi-class model, `forust-ml` and `nanogbm` are binary only,
//! and `lightgbm3` / `xgb` build C++ through cmake.

use crate::scoring::class_weights;
use crate::stream::WindowSource;
use crate::CLASSES;
use epiflow_operators::rng::SplitMix64;
use epiflow_pipelines::feature_reader::WindowRows;
use hessboost::data::BinnedMatrix;
use hessboost::objective::Multiclass;
use hessboost::prelude::*;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

/// Boosting settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbtConfig {
    /// Most boosting rounds.
    pub rounds: usize,
    /// Deepest a tree grows.
    pub max_depth: usize,
    /// Learning rate.
    pub eta: f64,
    /// Rounds without a better validation log loss before stopping.
    pub patience: usize,
    /// Seed of the row and column sampling.
    pub seed: u64,
    /// Training threads.
    pub threads: usize,
}

impl Default for GbtConfig {
    fn default() -> Self {
        GbtConfig { rounds: 300, max_depth: 6, eta: 0.1, patience: 20, seed: 7, threads: 2 }
    }
}

/// A trained booster.
pub struct Gbt {
    model: BoostedModel,
    /// The round whose validation log loss was best (the model predicts with
    /// the rounds up to it).
    pub best_round: usize,
    /// Validation multi-class log loss at that round.
    pub best_val_logloss: Option<f64>,
    /// Rounds this fit built (after those of the booster it continued), the
    /// best and those after it that did not improve.
    pub rounds: usize,
}

/// The training side as the trees boost on it. A booster continues on
/// values (its trees split on values, not on this side's bins; an update's
/// side is small); trees from scratch boost on the bins alone.
enum Boosted {
    Values(DMatrix),
    Bins(BinnedMatrix),
}

impl Boosted {
    /// The bins of `values`, which are freed.
    fn bins_of(values: DMatrix) -> Result<Boosted, String> {
        BinnedMatrix::new(&values, MAX_BIN).map(Boosted::Bins).map_err(|e| e.to_string())
    }

    fn data(&self) -> hessboost::training::TrainingData<'_> {
        match self {
            Boosted::Values(values) => values.into(),
            Boosted::Bins(bins) => bins.into(),
        }
    }
}

impl Gbt {
    /// Trains on `train` (class-weighted by inverse frequency), stopping when
    /// `val`'s log loss has not improved for `config.patience` rounds. Each
    /// side is gathered in one streamed pass, all of it or the seeded draw
    /// `sample` asks for (what bounds the trees' memory, see
    /// [`Gbt::bytes_per_window`]). The training side is
    /// binned as it is gathered and boosted from its bins alone
    /// (hessboost's `BinnedMatrix`, as XGBoost's `QuantileDMatrix`), which
    /// trains exactly as the matrix of values would. With `init`, boosting
    /// continues from that booster's best round (XGBoost's `xgb_model=`)
    /// for up to `config.rounds` more. Raising `stop` ends boosting after
    /// the round under way.
    pub fn fit(
        train: &dyn WindowSource,
        val: &dyn WindowSource,
        sample: Sample,
        config: &GbtConfig,
        init: Option<&Gbt>,
        stop: &AtomicBool,
    ) -> Result<Gbt, String> {
        let dtrain = {
            let (x, labels) = gather(train, sample.train, config.seed)?;
            let weights = class_weights(&labels);
            let row_weights: Vec<f32> = labels.iter().map(|&l| weights[l as usize]).collect();
            matrix(x, &labels, train.width())?.with_weights(&row_weights).map_err(|e| e.to_string())?
        };
        let dtrain = match init {
            Some(_) => Boosted::Values(dtrain),
            None => Boosted::bins_of(dtrain)?,
        };
        let (x, labels) = gather(val, sample.val, config.seed ^ 1)?;
        let dval = (!labels.is_empty()).then(|| matrix(x, &labels, val.width())).transpose()?;
        let params = TrainingParams::builder()
            .objective(Objective::Softprob(Multiclass::new(CLASSES).map_err(|e| e.to_string())?))
            .max_depth(config.max_depth.max(1))
            .eta(config.eta)
            .max_bin(MAX_BIN)
            .seed(config.seed)
            .nthread(config.threads.max(1))
            .build()
            .map_err(|e| e.to_string())?;
        let init = init.map(|gbt| gbt.model.slice(..=gbt.best_round, 1)).transpose().map_err(|e| e.to_string())?;
        let mut trainer = Trainer::new(&params, dtrain.data(), config.rounds.max(1)).on_round(|_| {
            match stop.load(Ordering::Relaxed) {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        });
        if let Some(init) = &init {
            trainer = trainer.init_model(init);
        }
        if let Some(dval) = &dval {
            trainer = trainer.eval(dval, "val");
            if let Some(patience) = NonZeroUsize::new(config.patience) {
                trainer = trainer.early_stopping_rounds(patience);
            }
        }
        let result = trainer.train().map_err(|e| e.to_string())?;
        let best_round = result.model.best_iteration().unwrap_or(result.model.num_boost_rounds().saturating_sub(1));
        let best_val_logloss = result.history.round(best_round).and_then(|r| r.score("val", "mlogloss"));
        let rounds = result.model.num_boost_rounds() - init.as_ref().map_or(0, |m| m.num_boost_rounds());
        Ok(Gbt { model: result.model, best_round, best_val_logloss, rounds })
    }

    /// Bytes of memory per training window of `width` values while the
    /// trees train: the values while they are binned (4 per value), the bins
    /// (hessboost keeps each value's bin row-wise in 2 bytes and column-wise
    /// in 1), and the per-window label, weight, gradients and margins.
    pub fn bytes_per_window(width: usize) -> usize {
        width * (4 + 2 + 1) + 4 * (2 + 3 * CLASSES)
    }

    /// Bytes of memory per validation window of `width` values: its values
    /// (scored every round), label and margins.
    pub fn bytes_per_validation_window(width: usize) -> usize {
        width * 4 + 4 * (1 + CLASSES)
    }

    /// The booster in hessboost's binary format, for a checkpoint (the best
    /// round is stored with the trees).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        self.model.encode(ModelFormat::Binary).map_err(|e| e.to_string())
    }

    /// A booster back from [`Gbt::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Gbt, String> {
        let model = BoostedModel::decode(bytes, ModelFormat::Binary).map_err(|e| e.to_string())?;
        let best_round = model.best_iteration().unwrap_or(model.num_boost_rounds().saturating_sub(1));
        let rounds = model.num_boost_rounds();
        Ok(Gbt { model, best_round, best_val_logloss: None, rounds })
    }

    /// Class probabilities, `rows × CLASSES`, from the rounds up to the best.
    pub fn predict(&self, windows: &WindowRows) -> Result<Vec<f32>, String> {
        let probs = self.model.predict(&values(windows)?, Iterations::Best).map_err(|e| e.to_string())?;
        Ok((0..windows.rows()).flat_map(|i| probs.row(i).unwrap_or(&[]).iter().copied()).collect())
    }
}

/// Histogram bins per feature: hessboost's default, one byte per value.
const MAX_BIN: usize = 256;

/// Which windows of each side the trees take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Of the training side.
    pub train: Draw,
    /// Of the validation side.
    pub val: Draw,
}

impl Sample {
    /// Every window of both sides.
    pub const ALL: Sample = Sample { train: Draw::ALL, val: Draw::ALL };

    /// Whether every window of both sides is kept.
    pub fn takes_all(&self) -> bool {
        self.train.keep >= 1.0 && self.val.keep >= 1.0
    }
}

/// A seeded draw of a side's windows: each kept with probability `keep`,
/// and never more than `most`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// Probability of keeping a window.
    pub keep: f64,
    /// Most windows kept.
    pub most: usize,
}

impl Draw {
    /// Every window.
    pub const ALL: Draw = Draw { keep: 1.0, most: usize::MAX };

    /// About `most` of a side's `windows`: all of them when they are no more.
    pub fn of(windows: usize, most: usize) -> Draw {
        Draw { keep: (most as f64 / windows.max(1) as f64).min(1.0), most }
    }
}

/// A side's values and labels in one streamed pass, as `draw` keeps them.
fn gather(source: &dyn WindowSource, draw: Draw, seed: u64) -> Result<(Vec<f32>, Vec<u8>), String> {
    let mut rng = SplitMix64::new(seed);
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    source.chunks(None, &mut |chunk| {
        for i in 0..chunk.rows() {
            let kept = draw.keep >= 1.0 || ((rng.next_u64() >> 11) as f64) < draw.keep * (1u64 << 53) as f64;
            if kept && labels.len() < draw.most {
                x.extend_from_slice(chunk.row(i));
                labels.push(chunk.labels[i]);
            }
        }
    })?;
    Ok((x, labels))
}

/// Windows as a dense matrix with their labels (NaN = missing, which the
/// trees route by learnt default directions).
fn matrix(x: Vec<f32>, labels: &[u8], width: usize) -> Result<DMatrix, String> {
    let targets: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    DMatrix::from_dense_vec(x, labels.len(), width).and_then(|m| m.with_labels(&targets)).map_err(|e| e.to_string())
}

/// The windows of `w` as a matrix to predict on.
fn values(w: &WindowRows) -> Result<DMatrix, String> {
    DMatrix::from_dense(&w.x, w.rows(), w.width).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{argmax, Confusion};
    use crate::test_data::windows;

    #[test]
    fn learns_a_clear_signature_and_stops_on_validation() {
        let (train, val, test) = (windows(600, 1), windows(200, 2), windows(300, 3));
        let config = GbtConfig { rounds: 200, patience: 10, ..GbtConfig::default() };
        let model = Gbt::fit(&train, &val, Sample::ALL, &config, None, &AtomicBool::new(false)).unwrap();
        let predicted = argmax(&model.predict(&test).unwrap());
        let f1 = Confusion::of(&test.labels, &predicted).macro_f1();
        assert!(f1 > 0.95, "macro F1 {f1}");
        assert!(model.best_round < 199 && model.best_val_logloss.is_some(), "stopped early at {}", model.best_round);
    }

    #[test]
    fn a_booster_read_back_from_its_bytes_predicts_the_same() {
        let (train, val) = (windows(300, 4), windows(100, 5));
        let config = GbtConfig { rounds: 40, patience: 5, ..GbtConfig::default() };
        let model = Gbt::fit(&train, &val, Sample::ALL, &config, None, &AtomicBool::new(false)).unwrap();
        let back = Gbt::from_bytes(&model.to_bytes().unwrap()).unwrap();
        assert_eq!(back.best_round, model.best_round);
        assert_eq!(back.predict(&val).unwrap(), model.predict(&val).unwrap());
    }

    #[test]
    fn the_same_seed_gives_the_same_probabilities() {
        let (train, val) = (windows(300, 4), windows(100, 5));
        let config = GbtConfig { rounds: 30, ..GbtConfig::default() };
        let a =
            Gbt::fit(&train, &val, Sample::ALL, &config, None, &AtomicBool::new(false)).unwrap().predict(&val).unwrap();
        let b =
            Gbt::fit(&train, &val, Sample::ALL, &config, None, &AtomicBool::new(false)).unwrap().predict(&val).unwrap();
        assert_eq!(a, b);
    }
}
