//! One episode's steps through the stages, each reusing an earlier run's
//! result when the [`ResultStore`] has one for the same archive bytes and the
//! same chained fingerprint, and computing it otherwise.
//!
//! Decoding decides up front what the episode needs: it looks up every
//! registered stage's result, and when all of them can be reused the archive
//! is not even opened; when something must be computed, the aligned episode
//! comes from the cache (Arrow IPC, no JSON parsing) or, failing that, from
//! the archive, and is then cached for the next run.

use crate::cache_codec::{decode_aligned, encode_aligned};
use crate::lineage::Lineage;
use crate::record_codec;
use crate::results::{FileIdentity, ResultName, ResultStore};
use crate::sinks::feature_sink::{FeatureChange, NewRows};
use crate::sinks::manifest::Published;
use crate::stages::{Applies, Caching, ErasedStage, Held, Inputs, Results, Stages};
use crate::work::{Status, Work};
use epiflow_operators::align::Align;
use epiflow_operators::archive::{archive_path, sha256_hex};
use epiflow_operators::decode::Decode;
use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::{AlignedEpisode, DecodedEpisode, Failure, FailureCode, Problem};
use epiflow_operators::tensor::{Tensor, TensorFeatures};
use epiflow_operators::validate::Validate;
use epiflow_operators::window::{SummaryFeatures, Window};
use epiflow_operators::Operator;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Everything a worker needs to take an episode through the stages.
#[derive(Clone)]
pub struct Steps {
    /// `STORE/episodes`.
    pub episodes_root: PathBuf,
    /// How archives are read.
    pub decode: Decode,
    /// The stages that run after decode and align, in order.
    pub stages: Stages,
    /// With features: what an earlier run published under the same lineage.
    pub published: Option<Arc<Published>>,
    /// Each operator's chained fingerprint: the names of its results.
    pub lineage: Lineage,
    /// Where earlier results are found and new ones kept.
    pub store: Arc<dyn ResultStore>,
    /// The first stage found reading a record its inputs do not declare:
    /// the run fails with it rather than publish results whose cache keys
    /// miss what they depend on.
    pub undeclared_read: Arc<OnceLock<String>>,
}

/// An episode between operators: what has been reused or computed so far.
#[derive(Clone, Debug, Default)]
pub struct Episode {
    /// sha256 of the archive's bytes.
    pub sha: String,
    // Boxed: an episode is moved between operators several times, and an
    // inline decoded or aligned episode is a large memcpy each time.
    decoded: Option<Box<DecodedEpisode>>,
    aligned: Option<Box<AlignedEpisode>>,
    /// Each stage's result, reused or computed.
    pub results: Results,
}

/// What an episode leaves the stages with.
pub struct Finished {
    /// sha256 of the archive's bytes.
    pub sha: String,
    /// The records of the stages cached as records.
    pub records: Results,
    /// Its feature rows, new or kept, when it is usable and features are
    /// asked for.
    pub features: Option<FeatureChange>,
}

impl Episode {
    /// Whether `stage` computes on this episode: a stage for usable episodes
    /// waits for validation to say so (until then it is assumed to).
    fn applies(&self, stage: &dyn ErasedStage) -> bool {
        stage.applies() != Applies::Usable || self.usable() != Some(false)
    }

    /// Whether validation found the episode usable, once it has a record.
    fn usable(&self) -> Option<bool> {
        self.results.get::<Validate>().map(|v| v.outcome.is_usable())
    }

    /// Whether some stage must run on the aligned episode.
    fn needs_aligned(&self, stages: &Stages) -> bool {
        stages.iter().any(|s| self.applies(&**s) && !self.results.held(s.name()).is_done())
    }

    /// The episode after every stage: its records and, when it is usable
    /// and features are asked for, its feature rows, new or kept.
    pub fn finish(mut self, stages: &Stages, features: bool) -> Result<Finished, Failure> {
        let records_done = stages
            .iter()
            .filter(|&s| s.caching() == Caching::Record && self.applies(&**s))
            .all(|s| self.results.held(s.name()).is_done());
        if !records_done {
            return Err(self.missing_aligned());
        }
        let change = match features && self.usable() == Some(true) {
            false => None,
            true => self.feature_change(),
        };
        let mut records = std::mem::take(&mut self.results);
        records.retain(|name, _| stages.iter().any(|s| s.name() == name && s.caching() == Caching::Record));
        Ok(Finished { sha: self.sha, records, features: change })
    }

    /// The rows the shard sink gets: new ones when window and tensor
    /// computed, the published ones when they were kept.
    fn feature_change(&mut self) -> Option<FeatureChange> {
        let (summary, tensors) = (self.results.take(Window::NAME), self.results.take(Tensor::NAME));
        if let Held::Kept(windows) = summary {
            return Some(FeatureChange::Keep { windows });
        }
        let validation = self.results.get::<Validate>()?;
        let rows = NewRows {
            profile: validation.profile.clone(),
            sample_name: validation.sample_name.clone(),
            summary: summary.into_typed::<SummaryFeatures>()?,
            tensors: tensors.into_typed::<TensorFeatures>()?,
        };
        Some(FeatureChange::New(Box::new(rows)))
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

    /// The key a stage's record is stored under: the archive's sha256, then
    /// whatever else the stage says the record depends on.
    fn record_key(sha: &str, extra: &str) -> String {
        match extra.is_empty() {
            true => sha.to_string(),
            false => format!("{sha} {extra}"),
        }
    }

    /// What an earlier run left for `stage` on this episode.
    fn lookup(&self, stage: &dyn ErasedStage, entry: &IndexEntry, sha: &str, first_epoch: bool) -> Held {
        match stage.caching() {
            Caching::Record => {
                let key = Steps::record_key(sha, &stage.key(entry));
                let Some(line) = self.store.get_record(self.name(stage.name(), &key)) else { return Held::Missing };
                stage.decode(&line).unwrap_or_else(|why| {
                    tracing::warn!(
                        "{}: cached {} record cannot be read back ({why}); computing it again",
                        entry.key,
                        stage.name()
                    );
                    Held::Unreadable(why)
                })
            }
            Caching::FeatureShards => {
                let published = self.published.as_ref().filter(|_| first_epoch);
                published.and_then(|p| p.windows_of(&entry.key.to_string(), sha)).map_or(Held::Missing, Held::Kept)
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
            if let Some(failure) = self.cached_failure(&sha) {
                return (Err(failure), Status::Cached);
            }
            let mut ep = Episode { sha, ..Episode::default() };
            for stage in self.stages.iter() {
                if ep.applies(&**stage) {
                    let held = self.lookup(&**stage, &entry, &ep.sha, first_epoch);
                    ep.results.set(stage.name(), held);
                }
            }
            if !ep.needs_aligned(&self.stages) {
                return (Ok(ep), Status::Cached);
            }
            if let Some(aligned) = self.cached_aligned(&ep.sha, &entry) {
                ep.aligned = Some(Box::new(aligned));
                return (Ok(ep), Status::Cached);
            }
            let bytes = match bytes.take().map_or_else(|| self.decode.read_archive(&path), Ok) {
                Ok(bytes) => bytes,
                Err(failure) => return (Err(failure), Status::Failed),
            };
            let file = path.display().to_string();
            match self.decode.decode_hashed(&bytes, ep.sha.clone(), entry.key.clone(), entry.sha256.clone(), &file) {
                Ok(decoded) => {
                    ep.decoded = Some(Box::new(decoded));
                    (Ok(ep), Status::Computed)
                }
                Err(failure) => {
                    if self.store.keeps_results() {
                        self.put_record(Decode::NAME, &ep.sha, record_codec::encode(&failure));
                    }
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
                let aligned = Box::new(Align.apply(&decoded));
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

    /// One registered stage: reused when decoding found its result, else
    /// computed on the aligned episode and, for a record, stored. Episodes it
    /// does not apply to pass untouched and untimed.
    pub fn stage(&self, stage: &dyn ErasedStage, w: Work<Episode>) -> Work<Episode> {
        if !w.state.as_ref().is_ok_and(|ep| ep.applies(stage)) {
            return w;
        }
        let extra = stage.key(&w.entry);
        w.step(stage.name(), |mut ep| {
            let held = ep.results.held(stage.name());
            if held.is_done() {
                return (Ok(ep), Status::Cached);
            }
            let status = match held {
                Held::Unreadable(_) => Status::Failed,
                _ => Status::Computed,
            };
            let Some(aligned) = ep.aligned.as_ref() else { return (Err(ep.missing_aligned()), Status::Failed) };
            let inputs = Inputs::new(stage.inputs(), &ep.results);
            let result = stage.compute(aligned, &inputs);
            if let Some(read) = inputs.undeclared() {
                let why = format!(
                    "stage {} read the {read} record, which its INPUTS do not declare (add \"{read}\" to them)",
                    stage.name()
                );
                let failure = Failure {
                    code: FailureCode::IoError,
                    problem: Problem::at(&ep.sha, None, &why),
                    bytes: None,
                    sha256: Some(ep.sha.clone()),
                };
                let _ = self.undeclared_read.set(why);
                return (Err(failure), Status::Failed);
            }
            if stage.caching() == Caching::Record && self.store.keeps_results() {
                if let Some(line) = result.encode() {
                    self.put_record(stage.name(), &Steps::record_key(&ep.sha, &extra), line);
                }
            }
            ep.results.set(stage.name(), result);
            (Ok(ep), status)
        })
    }

    /// A decode failure an earlier run recorded for these bytes.
    fn cached_failure(&self, sha: &str) -> Option<Failure> {
        let line = self.store.get_record(self.name(Decode::NAME, sha))?;
        record_codec::decode(&line)
            .map_err(|why| tracing::warn!("cached decode failure of {sha} cannot be read back ({why}); decoding again"))
            .ok()
    }

    /// Stores a record, unless it did not encode (then says why).
    fn put_record(&self, operator: &'static str, key: &str, line: Result<String, String>) {
        match line {
            Ok(line) => self.store.put_record(self.name(operator, key), &line),
            Err(why) => tracing::warn!("{operator} record {key} not cached: {why}"),
        }
    }
}
