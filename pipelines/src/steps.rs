//! One episode's steps through the operators, each reusing an earlier run's
//! result when the [`ResultStore`] has one for the same archive bytes and the
//! same chained fingerprint, and computing it otherwise.
//!
//! Decoding decides up front what the episode needs: when validation,
//! classification and the published features can all be reused, the archive
//! is not even opened; when something must be computed, the aligned episode
//! comes from the cache (Arrow IPC, no JSON parsing) or, failing that, from
//! the archive, and is then cached for the next run.

use crate::cache_codec::{decode_aligned, encode_aligned};
use crate::lineage::Lineage;
use crate::results::{FileIdentity, ResultName, ResultStore};
use crate::sinks::feature_sink::{FeatureChange, NewRows};
use crate::sinks::manifest::Published;
use crate::work::{Status, Work};
use epiflow_operators::align::Align;
use epiflow_operators::archive::{archive_path, sha256_hex};
use epiflow_operators::classify::{Classify, QualityRecord};
use epiflow_operators::decode::Decode;
use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::{AlignedEpisode, DecodedEpisode, Failure, FailureCode, Problem};
use epiflow_operators::tensor::{Tensor, TensorFeatures};
use epiflow_operators::validate::{Validate, ValidationRecord};
use epiflow_operators::window::{SummaryFeatures, Window};
use epiflow_operators::Operator;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::Arc;

/// The feature operators, and the features already published.
#[derive(Clone)]
pub struct FeatureSteps {
    pub window: Window,
    pub tensor: Tensor,
    /// Features published by an earlier run with the same lineage, or none.
    pub published: Arc<Published>,
}

/// Everything a worker needs to take an episode through the operators.
#[derive(Clone)]
pub struct Steps {
    /// `STORE/episodes`.
    pub episodes_root: PathBuf,
    pub decode: Decode,
    pub validate: Validate,
    pub classify: Classify,
    pub features: Option<FeatureSteps>,
    pub lineage: Lineage,
    pub store: Arc<dyn ResultStore>,
}

/// An episode between operators: what has been reused or computed so far.
#[derive(Clone, Debug, Default)]
pub struct Episode {
    /// sha256 of the archive's bytes.
    pub sha: String,
    decoded: Option<DecodedEpisode>,
    aligned: Option<AlignedEpisode>,
    pub validation: Option<ValidationRecord>,
    pub quality: Option<QualityRecord>,
    /// Windows of this episode already in the published shards.
    pub published_windows: Option<usize>,
    pub summary: Option<SummaryFeatures>,
    pub tensors: Option<TensorFeatures>,
}

impl Episode {
    /// Whether features are computed or kept for this episode.
    fn wants_features(&self, steps: &Steps) -> bool {
        steps.features.is_some() && self.validation.as_ref().is_some_and(|v| v.outcome.is_usable())
    }

    /// Whether some operator must run on the aligned episode.
    fn needs_aligned(&self, steps: &Steps) -> bool {
        self.validation.is_none()
            || self.quality.is_none()
            || (self.wants_features(steps) && self.published_windows.is_none())
    }

    /// The aligned episode an operator is about to compute on. Decoding loads
    /// it whenever [`Episode::needs_aligned`], so a miss here is a bug, which
    /// fails the episode instead of the run.
    fn aligned(&self) -> Result<&AlignedEpisode, Failure> {
        self.aligned.as_ref().ok_or_else(|| self.missing_aligned())
    }

    /// The episode after every operator: its archive's sha256, its records
    /// and, when it is usable and features are asked for, its feature rows,
    /// new or kept.
    pub fn finish(self) -> Result<(String, ValidationRecord, QualityRecord, Option<FeatureChange>), Failure> {
        let failure = self.missing_aligned();
        let (Some(validation), Some(quality)) = (self.validation, self.quality) else { return Err(failure) };
        let change = match (self.summary, self.tensors, self.published_windows) {
            (Some(summary), Some(tensors), _) => Some(FeatureChange::New(Box::new(NewRows {
                profile: validation.profile.clone(),
                sample_name: validation.sample_name.clone(),
                summary,
                tensors,
            }))),
            (_, _, Some(windows)) if validation.outcome.is_usable() => Some(FeatureChange::Keep { windows }),
            _ => None,
        };
        Ok((self.sha, validation, quality, change))
    }

    /// The failure of an operator that found no aligned episode to work on.
    fn missing_aligned(&self) -> Failure {
        Failure {
            code: FailureCode::IoError,
            problem: Problem::at(&self.sha, None, "aligned episode unavailable"),
            bytes: None,
            sha256: Some(self.sha.clone()),
        }
    }
}

impl Steps {
    fn name<'a>(&self, operator: &'static str, key: &'a str) -> ResultName<'a> {
        ResultName { operator, fingerprint: self.lineage.get(operator).unwrap_or_default(), key }
    }

    /// A small result from the store, if there is one that parses.
    fn record<T: DeserializeOwned>(&self, operator: &'static str, key: &str) -> Option<T> {
        let json = self.store.get_record(self.name(operator, key))?;
        serde_json::from_str(&json).ok()
    }

    fn put_record<T: serde::Serialize>(&self, operator: &'static str, key: &str, value: &T) {
        if self.store.keeps_results() {
            if let Ok(json) = serde_json::to_string(value) {
                self.store.put_record(self.name(operator, key), &json);
            }
        }
    }

    /// Decode: learns the archive's sha256 (remembered by file identity, so an
    /// unchanged archive is not read), looks up every reusable result, and
    /// loads the aligned episode only when an operator will need it.
    ///
    /// `first_epoch`: whether rows published before this run may stand for
    /// the episode. The first epoch carries the whole index; later ones (of
    /// `epiflow watch`) carry only new or changed entries, whose earlier rows
    /// the sink has already dropped.
    pub fn decode(&self, entry: IndexEntry, first_epoch: bool) -> Work<Episode> {
        let path = archive_path(&self.episodes_root, &entry.key.host_id, &entry.key.episode_id);
        let keys = ResultKeys::of(&entry);
        Work::start(entry.clone(), ()).step(Decode::NAME, |()| {
            let id = FileIdentity::of(&path);
            let known = id.and_then(|id| self.store.known_sha(&path, id));
            let (sha, mut bytes) = match known {
                Some(sha) => (sha, None),
                None => match self.decode.read_archive(&path) {
                    Err(failure) => return (Err(failure), Status::Failed),
                    Ok(bytes) => {
                        let sha = sha256_hex(&bytes);
                        if let Some(id) = id {
                            self.store.remember_sha(&path, id, &sha);
                        }
                        (sha, Some(bytes))
                    }
                },
            };
            if let Some(failure) = self.record::<Failure>(Decode::NAME, &sha) {
                return (Err(failure), Status::Cached);
            }
            let mut ep = Episode {
                validation: self.record(Validate::NAME, &keys.validation(&sha)),
                quality: self.record(Classify::NAME, &keys.quality(&sha)),
                published_windows: self
                    .features
                    .as_ref()
                    .filter(|_| first_epoch)
                    .and_then(|f| f.published.windows_of(&keys.episode, &sha)),
                sha,
                ..Episode::default()
            };
            if !ep.needs_aligned(self) {
                return (Ok(ep), Status::Cached);
            }
            if let Some(aligned) = self.cached_aligned(&ep.sha, &entry) {
                ep.aligned = Some(aligned);
                return (Ok(ep), Status::Cached);
            }
            let bytes = match bytes.take().map_or_else(|| self.decode.read_archive(&path), Ok) {
                Ok(bytes) => bytes,
                Err(failure) => return (Err(failure), Status::Failed),
            };
            let file = path.display().to_string();
            match self.decode.decode_hashed(&bytes, ep.sha.clone(), entry.key.clone(), entry.sha256.clone(), &file) {
                Ok(decoded) => {
                    ep.decoded = Some(decoded);
                    (Ok(ep), Status::Computed)
                }
                Err(failure) => {
                    self.put_record(Decode::NAME, &ep.sha, &failure);
                    (Err(failure), Status::Failed)
                }
            }
        })
    }

    /// The cached aligned episode of these bytes, made this entry's: the key
    /// and the index's claimed sha256 are the entry's, not those of whichever
    /// entry first brought the bytes.
    fn cached_aligned(&self, sha: &str, entry: &IndexEntry) -> Option<AlignedEpisode> {
        let bytes = self.store.get_blob(self.name(Align::NAME, sha))?;
        let mut aligned = decode_aligned(&bytes).ok()?;
        aligned.facts.key = entry.key.clone();
        aligned.facts.expected_sha256 = entry.sha256.clone();
        Some(aligned)
    }

    /// Align: the decoded rows onto `t_wall_ns`, cached in columnar form.
    pub fn align(&self, w: Work<Episode>) -> Work<Episode> {
        w.step(Align::NAME, |mut ep| match ep.decoded.take() {
            Some(decoded) => {
                let aligned = Align.apply(&decoded);
                if self.store.keeps_results() {
                    if let Ok(bytes) = encode_aligned(&aligned) {
                        self.store.put_blob(self.name(Align::NAME, &ep.sha), &bytes);
                    }
                }
                ep.aligned = Some(aligned);
                (Ok(ep), Status::Computed)
            }
            None => (Ok(ep), Status::Cached),
        })
    }

    /// Validate: the acceptance record.
    pub fn validate(&self, w: Work<Episode>) -> Work<Episode> {
        let key = ResultKeys::of(&w.entry);
        self.record_step(
            w,
            Validate::NAME,
            |sha| key.validation(sha),
            |ep| &mut ep.validation,
            |a| self.validate.apply(a),
        )
    }

    /// Classify: the quality record.
    pub fn classify(&self, w: Work<Episode>) -> Work<Episode> {
        let key = ResultKeys::of(&w.entry);
        self.record_step(w, Classify::NAME, |sha| key.quality(sha), |ep| &mut ep.quality, |a| self.classify.apply(a))
    }

    /// An operator with a small record as its result: reused when decoding
    /// found it in the store, else computed on the aligned episode and stored
    /// under `key(sha)`.
    fn record_step<R: serde::Serialize>(
        &self,
        w: Work<Episode>,
        operator: &'static str,
        key: impl FnOnce(&str) -> String,
        slot: fn(&mut Episode) -> &mut Option<R>,
        compute: impl FnOnce(&AlignedEpisode) -> R,
    ) -> Work<Episode> {
        w.step(operator, |mut ep| {
            if slot(&mut ep).is_some() {
                return (Ok(ep), Status::Cached);
            }
            let record = match ep.aligned() {
                Ok(aligned) => compute(aligned),
                Err(failure) => return (Err(failure), Status::Failed),
            };
            self.put_record(operator, &key(&ep.sha), &record);
            *slot(&mut ep) = Some(record);
            (Ok(ep), Status::Computed)
        })
    }

    /// Window: summary features of a usable episode whose features are not
    /// already published. Other episodes pass untouched and untimed.
    pub fn window(&self, w: Work<Episode>) -> Work<Episode> {
        self.feature_step(w, Window::NAME, |f, ep, aligned| ep.summary = Some(f.window.apply(aligned)))
    }

    /// Tensor: the tensors of the same episodes.
    pub fn tensor(&self, w: Work<Episode>) -> Work<Episode> {
        self.feature_step(w, Tensor::NAME, |f, ep, aligned| ep.tensors = Some(f.tensor.apply(aligned)))
    }

    fn feature_step(
        &self,
        w: Work<Episode>,
        name: &'static str,
        compute: impl FnOnce(&FeatureSteps, &mut Episode, &AlignedEpisode),
    ) -> Work<Episode> {
        let wanted = w.state.as_ref().is_ok_and(|ep| ep.wants_features(self));
        let Some(features) = self.features.as_ref().filter(|_| wanted) else { return w };
        w.step(name, |mut ep| {
            if ep.published_windows.is_some() {
                return (Ok(ep), Status::Cached);
            }
            let Some(aligned) = ep.aligned.take() else { return (Err(ep.missing_aligned()), Status::Failed) };
            compute(features, &mut ep, &aligned);
            ep.aligned = Some(aligned);
            (Ok(ep), Status::Computed)
        })
    }
}

/// The keys a validation and a quality record are stored under. Besides the
/// archive's bytes, a validation record depends on the episode's key and on
/// the sha256 the index claims (a mismatch rejects); a quality record on the
/// key.
struct ResultKeys {
    episode: String,
    claim: String,
}

impl ResultKeys {
    fn of(entry: &IndexEntry) -> ResultKeys {
        ResultKeys { episode: entry.key.to_string(), claim: entry.sha256.clone().unwrap_or_else(|| "-".into()) }
    }

    fn validation(&self, sha: &str) -> String {
        format!("{sha} {} {}", self.episode, self.claim)
    }

    fn quality(&self, sha: &str) -> String {
        format!("{sha} {}", self.episode)
    }
}
