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
use crate::CLASSES;
use epiflow_pipelines::feature_reader::WindowRows;
use hessboost::objective::Multiclass;
use hessboost::prelude::*;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;

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
    /// Rounds built, the best and those after it that did not improve.
    pub rounds: usize,
}

impl Gbt {
    /// Trains on `train` (class-weighted by inverse frequency), stopping when
    /// `val`'s log loss has not improved for `config.patience` rounds.
    pub fn fit(train: &WindowRows, val: &WindowRows, config: &GbtConfig) -> Result<Gbt, String> {
        let weights = class_weights(&train.labels);
        let row_weights: Vec<f32> = train.labels.iter().map(|&l| weights[l as usize]).collect();
        let dtrain = matrix(train)?.with_weights(&row_weights).map_err(|e| e.to_string())?;
        let dval = matrix(val)?;
        let params = TrainingParams::builder()
            .objective(Objective::Softprob(Multiclass::new(CLASSES).map_err(|e| e.to_string())?))
            .max_depth(config.max_depth.max(1))
            .eta(config.eta)
            .seed(config.seed)
            .nthread(config.threads.max(1))
            .build()
            .map_err(|e| e.to_string())?;
        let mut trainer = Trainer::new(&params, &dtrain, config.rounds.max(1));
        if val.rows() > 0 {
            trainer = trainer.eval(&dval, "val");
            if let Some(patience) = NonZeroUsize::new(config.patience) {
                trainer = trainer.early_stopping_rounds(patience);
            }
        }
        let result = trainer.train().map_err(|e| e.to_string())?;
        let best_round = result.model.best_iteration().unwrap_or(result.model.num_boost_rounds().saturating_sub(1));
        let best_val_logloss = result.history.round(best_round).and_then(|r| r.score("val", "mlogloss"));
        let rounds = result.model.num_boost_rounds();
        Ok(Gbt { model: result.model, best_round, best_val_logloss, rounds })
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
        let probs = self.model.predict(&matrix(windows)?, Iterations::Best).map_err(|e| e.to_string())?;
        Ok((0..windows.rows()).flat_map(|i| probs.row(i).unwrap_or(&[]).iter().copied()).collect())
    }
}

/// The windows as a dense matrix with their labels (NaN = missing, which the
/// trees route by learnt default directions).
fn matrix(w: &WindowRows) -> Result<DMatrix, String> {
    let labels: Vec<f32> = w.labels.iter().map(|&l| l as f32).collect();
    DMatrix::from_dense(&w.x, w.rows(), w.width).and_then(|m| m.with_labels(&labels)).map_err(|e| e.to_string())
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
        let model = Gbt::fit(&train, &val, &config).unwrap();
        let predicted = argmax(&model.predict(&test).unwrap());
        let f1 = Confusion::of(&test.labels, &predicted).macro_f1();
        assert!(f1 > 0.95, "macro F1 {f1}");
        assert!(model.best_round < 199 && model.best_val_logloss.is_some(), "stopped early at {}", model.best_round);
    }

    #[test]
    fn a_booster_read_back_from_its_bytes_predicts_the_same() {
        let (train, val) = (windows(300, 4), windows(100, 5));
        let config = GbtConfig { rounds: 40, patience: 5, ..GbtConfig::default() };
        let model = Gbt::fit(&train, &val, &config).unwrap();
        let back = Gbt::from_bytes(&model.to_bytes().unwrap()).unwrap();
        assert_eq!(back.best_round, model.best_round);
        assert_eq!(back.predict(&val).unwrap(), model.predict(&val).unwrap());
    }

    #[test]
    fn the_same_seed_gives_the_same_probabilities() {
        let (train, val) = (windows(300, 4), windows(100, 5));
        let config = GbtConfig { rounds: 30, ..GbtConfig::default() };
        let a = Gbt::fit(&train, &val, &config).unwrap().predict(&val).unwrap();
        let b = Gbt::fit(&train, &val, &config).unwrap().predict(&val).unwrap();
        assert_eq!(a, b);
    }
}
