//! Warm-started updates: when a model's training side has grown by a small
//! share since it was last trained from scratch and nothing else it depends
//! on changed, it is updated from its checkpoint — the trees continue
//! boosting, a network fine-tunes for a few epochs — on the windows added
//! plus a seeded replay sample of the earlier ones, instead of training
//! anew for hours. Its card says so (`training.mode = "warm"`, the parent's
//! weights and the windows added). The same history of arrivals gives the
//! same weights: the parent, the data and the seeds decide everything.

use crate::checkpoint::{self, FittedEpisode, ModelCard};
use epiflow_operators::fingerprint::Fingerprint;
use epiflow_operators::split::Side;
use epiflow_pipelines::normalise::Normalisation;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// When and how models are updated from their checkpoints: `[train.warm]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmConfig {
    /// Largest growth of the training side, as a share of its windows when
    /// the model was last trained from scratch, that is learned by an
    /// update; past it the model is trained anew. 0 turns updates off
    /// (`--retrain`).
    pub max_share: f64,
    /// Networks: largest drift of the training side's normalisation from the
    /// one the checkpoint was trained with — a channel's mean moving by this
    /// many of its standard deviations, or its standard deviation changing
    /// by this factor (as a log ratio) — that an update accepts.
    pub max_drift: f64,
    /// Earlier training windows replayed per window added (a seeded sample
    /// of earlier episodes), so an update does not forget them.
    pub replay: f64,
    /// Networks: epochs of fine-tuning (the best on validation is kept).
    pub epochs: usize,
    /// Networks: the fine-tuning's peak learning rate, as a share of a full
    /// training's.
    pub lr_scale: f64,
    /// Trees: rounds an update may add (early stopping on validation).
    pub rounds: usize,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig { max_share: 0.05, max_drift: 0.1, replay: 20.0, epochs: 3, lr_scale: 0.1, rounds: 50 }
    }
}

/// A checkpoint a model can be updated from, and what was added since.
pub struct Parent {
    /// Its card.
    pub card: ModelCard,
    /// Its weights, checked against the card.
    pub weights: Vec<u8>,
    /// Training episodes placed since (host, episode).
    pub added: HashSet<(String, String)>,
    /// Training windows added since.
    pub windows_added: usize,
    /// Training windows it learned from.
    pub train_windows: usize,
}

impl Parent {
    /// The checkpoint in `dir`, when the model can be updated from it: it
    /// is whole; nothing it depends on but its training and validation
    /// episodes changed (`inputs_with` gives the model's inputs over another
    /// split fingerprint: over the card's, they must be the card's inputs);
    /// every episode it learned from is still placed on the same side with
    /// the same features (`now`: the current training and validation
    /// placements); and the training side has grown by at most
    /// `config.max_share` of its windows at the last full training.
    pub fn find(
        dir: &Path,
        config: &WarmConfig,
        now: &HashMap<(String, String), FittedEpisode>,
        inputs_with: impl Fn(&Fingerprint) -> String,
    ) -> Option<Parent> {
        if config.max_share <= 0.0 {
            return None;
        }
        let card = checkpoint::read_card(dir).ok()?;
        let split = Fingerprint::from_hex(&card.split.fingerprint)?;
        if inputs_with(&split) != card.inputs {
            return None;
        }
        let fitted = checkpoint::read_fitted(dir, &card).ok()?;
        let mut train_windows = 0;
        for old in &fitted {
            let current = now.get(&(old.host_id.clone(), old.episode_id.clone()))?;
            if current.side != old.side || current.sha256 != old.sha256 || current.windows != old.windows {
                return None;
            }
            if old.side == Side::Train {
                train_windows += old.windows?;
            }
        }
        let learned: HashSet<(&str, &str)> =
            fitted.iter().map(|e| (e.host_id.as_str(), e.episode_id.as_str())).collect();
        let (mut added, mut windows_added) = (HashSet::new(), 0);
        for (key, e) in now {
            if e.side == Side::Train && !learned.contains(&(e.host_id.as_str(), e.episode_id.as_str())) {
                added.insert(key.clone());
                windows_added += e.windows.unwrap_or(0);
            }
        }
        let weights = checkpoint::read_weights(dir, &card).ok()?;
        let parent = Parent { card, weights, added, windows_added, train_windows };
        let grown = (train_windows + windows_added) as f64;
        (grown <= parent.full_train_windows() as f64 * (1.0 + config.max_share)).then_some(parent)
    }

    /// Training windows when the model was last trained from scratch (the
    /// parent's own, for a card written before they were recorded).
    pub fn full_train_windows(&self) -> usize {
        match self.card.training.full_train_windows {
            0 => self.train_windows,
            full => full,
        }
    }

    /// The placements an update learns from: the validation side as it is
    /// now, the training episodes added, and a sample of the earlier
    /// training episodes drawn with `seed` (each kept with the probability
    /// that replays `config.replay` earlier windows per window added).
    pub fn update_sides(
        &self,
        now: &HashMap<(String, String), FittedEpisode>,
        config: &WarmConfig,
        seed: u64,
    ) -> HashMap<(String, String), Side> {
        let keep = (config.replay * self.windows_added as f64 / self.train_windows.max(1) as f64).min(1.0);
        now.iter()
            .filter(|(key, e)| match e.side {
                Side::Train => self.added.contains(*key) || draw(seed, key) < keep,
                _ => true,
            })
            .map(|(key, e)| (key.clone(), e.side))
            .collect()
    }

    /// Whether a network's normalisation may stay the parent's with the
    /// training side now scaled as `now`: no channel drifted past
    /// `config.max_drift`.
    pub fn scale_holds(&self, now: &Normalisation, config: &WarmConfig) -> bool {
        self.card.normalisation.as_ref().is_some_and(|was| drift(was, now) <= config.max_drift)
    }
}

/// The largest drift between two normalisations of the same columns: a
/// mean's move in the old standard deviations, or a standard deviation's
/// log ratio (infinite when they do not describe the same columns).
pub fn drift(was: &Normalisation, now: &Normalisation) -> f64 {
    if was.mean.len() != now.mean.len() || was.std.len() != now.std.len() {
        return f64::INFINITY;
    }
    let means = was.mean.iter().zip(&now.mean).zip(&was.std).map(|((a, b), s)| ((b - a) / s).abs() as f64);
    let stds = was.std.iter().zip(&now.std).map(|(a, b)| (b / a).ln().abs() as f64);
    means.chain(stds).fold(0.0, f64::max)
}

/// A uniform draw in [0, 1) for an episode, from `seed` alone.
fn draw(seed: u64, (host, episode): &(String, String)) -> f64 {
    let digest = Fingerprint::of_parts(&[&seed.to_le_bytes(), host.as_bytes(), episode.as_bytes()]).0;
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default()) as f64 / 2f64.powi(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_the_largest_move_of_a_mean_or_a_spread() {
        let was = Normalisation { group: 1, mean: vec![0.0, 10.0], std: vec![1.0, 2.0] };
        assert_eq!(drift(&was, &was), 0.0);
        let moved = Normalisation { group: 1, mean: vec![0.0, 11.0], std: vec![1.0, 2.0] };
        assert!((drift(&was, &moved) - 0.5).abs() < 1e-9, "one mean moved by half its deviation");
        let spread = Normalisation { group: 1, mean: vec![0.0, 10.0], std: vec![2.0, 2.0] };
        assert!((drift(&was, &spread) - 2f64.ln()).abs() < 1e-6);
        let other = Normalisation { group: 1, mean: vec![0.0], std: vec![1.0] };
        assert!(drift(&was, &other).is_infinite());
    }

    #[test]
    fn the_replay_sample_is_seeded_and_keeps_about_its_share() {
        let keys: Vec<(String, String)> = (0..2000).map(|i| ("h".to_string(), format!("e{i}"))).collect();
        let kept = |seed| keys.iter().filter(|k| draw(seed, k) < 0.25).count();
        assert_eq!(kept(7), kept(7));
        assert!((400..600).contains(&kept(7)), "{}", kept(7));
        let a: Vec<bool> = keys.iter().map(|k| draw(7, k) < 0.25).collect();
        let b: Vec<bool> = keys.iter().map(|k| draw(8, k) < 0.25).collect();
        assert_ne!(a, b, "another seed draws another sample");
    }
}
