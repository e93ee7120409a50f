//! Inference without shards (SPEC section 15) over a list of archives: one
//! checkpoint classifies each archive's windows with its own window
//! configuration, channel set and normalisation, and the run adds up
//! windows, accuracy against the labels and latency.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::observer::log_outcome;
use epiflow_models::predictor::{Inferred, Predictor};
use epiflow_operators::validate::Validate;
use epiflow_pipelines::stages::Registry;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What an inference over archives adds up to. Fields in name order, as
/// `--json` has always printed them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InferSummary {
    /// Share of labelled windows predicted right; `None` without labels.
    pub accuracy: Option<f64>,
    /// Archives read.
    pub archives: usize,
    /// Of which not usable (validation's outcome says why).
    pub bad_archives: usize,
    /// Median and 95th percentile of the milliseconds to decode and predict
    /// a usable episode with windows.
    pub episode_ms_median: Option<f64>,
    /// See `episode_ms_median`.
    pub episode_ms_p95: Option<f64>,
    /// The checkpoint's architecture.
    pub model: &'static str,
    /// Median and 95th percentile of the model's milliseconds per window.
    pub window_ms_median: Option<f64>,
    /// See `window_ms_median`.
    pub window_ms_p95: Option<f64>,
    /// The checkpoint's window length.
    pub window_s: f64,
    /// Windows classified.
    pub windows: usize,
}

/// Loads the checkpoint in `model` (decoding and validating as `config`
/// and `registry` say), classifies each of `archives` in turn, hands each
/// result to `each` as it comes, and returns the summary. An unusable
/// archive is logged and counted, never an error; a checkpoint that cannot
/// be used is a usage error.
pub fn infer(
    model: &Path,
    archives: &[PathBuf],
    config: &Config,
    registry: &Registry,
    mut each: impl FnMut(&Path, &Inferred) -> Result<()>,
) -> Result<InferSummary> {
    let stages = config.stages(registry)?;
    let validate = stages.stage::<Validate>().cloned().unwrap_or_default();
    let predictor = Predictor::load(model, config.decode(), validate)
        .map_err(|e| Error::Usage(format!("cannot use the model: {e}")))?;
    let mut tally = Tally::default();
    for path in archives {
        let inferred = predictor.infer_path(path);
        tally.add(&inferred);
        if !inferred.validation.outcome.is_usable() {
            log_outcome(&inferred.validation);
        }
        each(path, &inferred)?;
    }
    Ok(tally.summary(&predictor))
}

/// What the summary adds up.
#[derive(Default)]
struct Tally {
    archives: usize,
    bad: usize,
    windows: usize,
    correct: usize,
    labelled: usize,
    /// Per usable episode with windows: milliseconds to decode and predict
    /// it, and the model's milliseconds per window.
    episode_ms: Vec<f64>,
    window_ms: Vec<f64>,
}

impl Tally {
    fn add(&mut self, inferred: &Inferred) {
        self.archives += 1;
        if !inferred.validation.outcome.is_usable() {
            self.bad += 1;
            return;
        }
        self.windows += inferred.windows.len();
        for w in &inferred.windows {
            if let Some(truth) = w.truth {
                self.labelled += 1;
                self.correct += usize::from(truth == w.predicted);
            }
        }
        if !inferred.windows.is_empty() {
            self.episode_ms.push((inferred.decode_s + inferred.predict_s) * 1e3);
            self.window_ms.push(inferred.predict_s * 1e3 / inferred.windows.len() as f64);
        }
    }

    fn summary(&self, predictor: &Predictor) -> InferSummary {
        InferSummary {
            accuracy: (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64),
            archives: self.archives,
            bad_archives: self.bad,
            episode_ms_median: quantile(&self.episode_ms, 0.5),
            episode_ms_p95: quantile(&self.episode_ms, 0.95),
            model: predictor.arch().name(),
            window_ms_median: quantile(&self.window_ms, 0.5),
            window_ms_p95: quantile(&self.window_ms, 0.95),
            window_s: predictor.window_s(),
            windows: self.windows,
        }
    }
}

/// The `q` quantile of `values` (nearest rank), `None` when there are none.
fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&values, 0.5), Some(3.0));
        assert_eq!(quantile(&values, 0.95), Some(5.0));
        assert_eq!(quantile(&values, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
