//! Split: which side of a held-out split each training episode is on (SPEC
//! section 12).
//!
//! Unlike the per-episode operators this one reads the whole corpus: the
//! default test host, the `time` cut-off and the profile checks all depend on
//! every eligible episode. Its input is one [`Candidate`] per episode that may
//! train (accepted — or degraded when asked — and not fake); its output places
//! every candidate on exactly one side, so no episode's windows can reach two
//! sides.

use crate::classify::QualityRecord;
use crate::fingerprint::Operator;
use crate::validate::{Outcome, ValidationRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The three held-out recipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Every episode of one lab host is test: does a model carry to a new machine?
    Host,
    /// About a fifth of the samples, by name hash: does it carry to new malware?
    Sample,
    /// The latest fifth of episodes by `t0`: does it carry forward in time?
    Time,
}

impl Recipe {
    /// All recipes, in the order outputs list them.
    pub const ALL: [Recipe; 3] = [Recipe::Host, Recipe::Sample, Recipe::Time];

    /// The name used in file names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Host => "host",
            Recipe::Sample => "sample",
            Recipe::Time => "time",
        }
    }

    /// Parses a recipe name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Recipe> {
        Recipe::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an episode's windows go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Learnt from.
    Train,
    /// Early stopping and model choice: 10% of the non-test episodes.
    Val,
    /// Held out: scored once, by evaluation.
    Test,
}

impl Side {
    /// All sides, in output order.
    pub const ALL: [Side; 3] = [Side::Train, Side::Val, Side::Test];

    /// The name written in split files.
    pub fn name(self) -> &'static str {
        match self {
            Side::Train => "train",
            Side::Val => "val",
            Side::Test => "test",
        }
    }

    /// Parses a side as written in split files.
    pub fn parse(name: &str) -> Option<Side> {
        Side::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What the split reads from the configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// For [`Recipe::Host`]: the test host; `None` picks the host whose
    /// episodes cover the most profiles (ties by name).
    pub test_host: Option<String>,
    /// Degraded episodes train too.
    pub include_degraded: bool,
}

/// One episode that may train, with what the recipes read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Candidate {
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id on that host.
    pub episode_id: String,
    /// Its workload profile (every candidate has one).
    pub profile: String,
    /// Its sample, which the `sample` recipe holds out by name.
    pub sample_name: Option<String>,
    /// When its labels begin, which the `time` recipe orders by.
    pub t0_wall_ns: Option<i64>,
}

impl Candidate {
    /// The candidate for an episode, if it may train: accepted (or degraded
    /// with `include_degraded`), classified and not fake, with a profile.
    pub fn of(validation: &ValidationRecord, quality: Option<&QualityRecord>, include_degraded: bool) -> Option<Self> {
        let trains = match validation.outcome {
            Outcome::Accepted => true,
            Outcome::Degraded => include_degraded,
            Outcome::Rejected | Outcome::Errored => false,
        };
        if !trains || quality.is_none_or(|q| q.fake) {
            return None;
        }
        Some(Candidate {
            host_id: validation.host_id.clone(),
            episode_id: validation.episode_id.clone(),
            profile: validation.profile.clone()?,
            sample_name: validation.sample_name.clone(),
            t0_wall_ns: validation.t0_wall_ns,
        })
    }
}

/// One episode's place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Assignment {
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id on that host.
    pub episode_id: String,
    /// Its workload profile.
    pub profile: String,
    /// Where the recipe puts it.
    pub side: Side,
}

/// A recipe's split of the candidates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// What the test side holds out.
    pub recipe: Recipe,
    /// The test host, for [`Recipe::Host`].
    pub test_host: Option<String>,
    /// Every placed candidate, sorted by (host, episode).
    pub assignments: Vec<Assignment>,
    /// Candidates the recipe cannot place (`sample` without a sample name,
    /// `time` without `t0`), sorted by (host, episode).
    pub unplaced: Vec<(String, String)>,
    /// Profiles on the training side that the test side lacks: reported,
    /// never averaged into a figure.
    pub untested_profiles: Vec<String>,
}

impl Split {
    /// Episodes per side and profile.
    pub fn counts(&self) -> BTreeMap<Side, BTreeMap<String, usize>> {
        let mut counts: BTreeMap<Side, BTreeMap<String, usize>> = Side::ALL.map(|s| (s, BTreeMap::new())).into();
        for a in &self.assignments {
            *counts.entry(a.side).or_default().entry(a.profile.clone()).or_default() += 1;
        }
        counts
    }

    /// The side of one episode, if it is placed.
    pub fn side_of(&self, host_id: &str, episode_id: &str) -> Option<Side> {
        self.assignments
            .binary_search_by(|a| (a.host_id.as_str(), a.episode_id.as_str()).cmp(&(host_id, episode_id)))
            .ok()
            .map(|i| self.assignments[i].side)
    }
}

/// Why a split cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// Test episodes of a profile that training never sees: a figure for it
    /// would measure nothing the model learnt.
    UntrainedProfiles {
        /// The split.
        recipe: Recipe,
        /// The profiles tested but never trained on.
        profiles: Vec<String>,
    },
    /// `--test-host` names a host with no eligible episode.
    UnknownTestHost {
        /// The host asked for.
        host: String,
        /// The hosts with an eligible episode.
        known: Vec<String>,
    },
    /// Nothing eligible to split.
    NoCandidates,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::UntrainedProfiles { recipe, profiles } => write!(
                f,
                "{recipe} split: profile{} {} in the test set but missing from training",
                if profiles.len() == 1 { "" } else { "s" },
                profiles.join(", ")
            ),
            SplitError::UnknownTestHost { host, known } => {
                write!(f, "test host {host} has no episode that may train (hosts: {})", known.join(", "))
            }
            SplitError::NoCandidates => {
                f.write_str("no episode may train: none is accepted (or degraded with --include-degraded) and not fake")
            }
        }
    }
}

impl std::error::Error for SplitError {}

/// The split operator for one recipe.
#[derive(Clone, Debug)]
pub struct SplitOp {
    /// What the test side holds out.
    pub recipe: Recipe,
    /// The test host and whether degraded episodes train.
    pub config: SplitConfig,
}

/// The identity the fingerprint hashes: the recipe and the configuration.
#[derive(Serialize)]
struct SplitIdentity<'a> {
    recipe: Recipe,
    config: &'a SplitConfig,
}

impl Operator for SplitOp {
    const NAME: &'static str = "split";
    const VERSION: u32 = 1;
    type Config = SplitConfig;
    type Input = Vec<Candidate>;
    type Output = Result<Split, SplitError>;

    fn config(&self) -> &SplitConfig {
        &self.config
    }

    fn fingerprint(&self) -> crate::Fingerprint {
        let identity = serde_json::to_vec(&SplitIdentity { recipe: self.recipe, config: &self.config });
        crate::Fingerprint::of_parts(&[
            Self::NAME.as_bytes(),
            &Self::VERSION.to_le_bytes(),
            &identity.unwrap_or_default(),
        ])
    }

    fn apply(&self, candidates: &Vec<Candidate>) -> Result<Split, SplitError> {
        if candidates.is_empty() {
            return Err(SplitError::NoCandidates);
        }
        let mut sorted: Vec<&Candidate> = candidates.iter().collect();
        sorted.sort();
        sorted.dedup_by(|a, b| (&a.host_id, &a.episode_id) == (&b.host_id, &b.episode_id));
        let (test, placed, test_host) = match self.recipe {
            Recipe::Host => {
                let host = self.test_host(&sorted)?;
                let test = sorted.iter().map(|c| c.host_id == host).collect();
                (test, vec![true; sorted.len()], Some(host))
            }
            Recipe::Sample => {
                let test = sorted.iter().map(|c| c.sample_name.as_deref().is_some_and(sample_is_test)).collect();
                (test, sorted.iter().map(|c| c.sample_name.is_some()).collect(), None)
            }
            Recipe::Time => {
                let (test, placed) = latest_fifth(&sorted);
                (test, placed, None)
            }
        };
        let mut split = Split {
            recipe: self.recipe,
            test_host,
            assignments: Vec::new(),
            unplaced: Vec::new(),
            untested_profiles: Vec::new(),
        };
        for ((c, test), placed) in sorted.iter().zip(test).zip(placed) {
            if !placed {
                split.unplaced.push((c.host_id.clone(), c.episode_id.clone()));
                continue;
            }
            let side = if test {
                Side::Test
            } else if hash_u64(&c.episode_id).is_multiple_of(10) {
                Side::Val
            } else {
                Side::Train
            };
            split.assignments.push(Assignment {
                host_id: c.host_id.clone(),
                episode_id: c.episode_id.clone(),
                profile: c.profile.clone(),
                side,
            });
        }
        let profiles = |side: Side| -> BTreeSet<&str> {
            split.assignments.iter().filter(|a| a.side == side).map(|a| a.profile.as_str()).collect()
        };
        let (train, tested) = (profiles(Side::Train), profiles(Side::Test));
        let untrained: Vec<String> = tested.difference(&train).map(|p| p.to_string()).collect();
        if !untrained.is_empty() {
            return Err(SplitError::UntrainedProfiles { recipe: self.recipe, profiles: untrained });
        }
        split.untested_profiles = train.difference(&tested).map(|p| p.to_string()).collect();
        Ok(split)
    }
}

impl SplitOp {
    /// The configured test host, or the host covering the most profiles
    /// (ties by name); candidates sorted by host.
    fn test_host(&self, sorted: &[&Candidate]) -> Result<String, SplitError> {
        let mut profiles: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for c in sorted {
            profiles.entry(&c.host_id).or_default().insert(&c.profile);
        }
        match &self.config.test_host {
            Some(host) if profiles.contains_key(host.as_str()) => Ok(host.clone()),
            Some(host) => Err(SplitError::UnknownTestHost {
                host: host.clone(),
                known: profiles.keys().map(|h| h.to_string()).collect(),
            }),
            // max_by_key keeps the last maximum; iterate names in reverse so
            // that the first name wins a tie.
            None => {
                Ok(profiles.iter().rev().max_by_key(|(_, p)| p.len()).map(|(h, _)| h.to_string()).unwrap_or_default())
            }
        }
    }
}

/// The first 8 bytes of a string's sha256, big-endian.
fn hash_u64(s: &str) -> u64 {
    let digest = Sha256::digest(s.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// Whether a sample's episodes are test in the `sample` recipe.
pub fn sample_is_test(sample_name: &str) -> bool {
    hash_u64(sample_name).is_multiple_of(5)
}

/// For the `time` recipe: (test, placed) per candidate. The latest fifth of
/// the episodes with a `t0` (rounded up, ties in `t0` by host and episode)
/// are test; episodes without `t0` are not placed.
fn latest_fifth(sorted: &[&Candidate]) -> (Vec<bool>, Vec<bool>) {
    let mut timed: Vec<(i64, usize)> =
        sorted.iter().enumerate().filter_map(|(i, c)| Some((c.t0_wall_ns?, i))).collect();
    timed.sort();
    let n_test = timed.len().div_ceil(5);
    let mut test = vec![false; sorted.len()];
    for &(_, i) in &timed[timed.len() - n_test..] {
        test[i] = true;
    }
    (test, sorted.iter().map(|c| c.t0_wall_ns.is_some()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(host: &str, episode: &str, profile: &str, sample: &str, t0: i64) -> Candidate {
        Candidate {
            host_id: host.into(),
            episode_id: episode.into(),
            profile: profile.into(),
            sample_name: Some(sample.into()),
            t0_wall_ns: Some(t0),
        }
    }

    /// 4 hosts × 3 profiles × 10 episodes; host `h2` lacks profile `c`.
    fn corpus() -> Vec<Candidate> {
        let mut out = Vec::new();
        for h in 0..4 {
            for p in ["a", "b", "c"] {
                if h == 2 && p == "c" {
                    continue;
                }
                for e in 0..10 {
                    let t0 = (e * 4 + h) as i64 * 1_000;
                    out.push(candidate(&format!("h{h}"), &format!("h{h}-{p}-{e}"), p, &format!("{p}-sample{e}"), t0));
                }
            }
        }
        out
    }

    fn split(recipe: Recipe, config: SplitConfig, candidates: &Vec<Candidate>) -> Result<Split, SplitError> {
        SplitOp { recipe, config }.apply(candidates)
    }

    #[test]
    fn every_candidate_is_on_exactly_one_side() {
        let corpus = corpus();
        for recipe in Recipe::ALL {
            let s = split(recipe, SplitConfig::default(), &corpus).unwrap();
            let keys: BTreeSet<(&str, &str)> =
                s.assignments.iter().map(|a| (a.host_id.as_str(), a.episode_id.as_str())).collect();
            assert_eq!(keys.len(), s.assignments.len(), "{recipe}: an episode on two sides");
            assert_eq!(keys.len() + s.unplaced.len(), corpus.len(), "{recipe}: every candidate accounted for");
            for side in Side::ALL {
                assert!(s.assignments.iter().any(|a| a.side == side), "{recipe}: no {} episode", side.name());
            }
        }
    }

    #[test]
    fn host_recipe_defaults_to_the_host_covering_most_profiles_first_by_name() {
        let s = split(Recipe::Host, SplitConfig::default(), &corpus()).unwrap();
        // h0, h1 and h3 cover 3 profiles; h0 wins the tie by name.
        assert_eq!(s.test_host.as_deref(), Some("h0"));
        assert!(s.assignments.iter().all(|a| (a.side == Side::Test) == (a.host_id == "h0")));
        let chosen = SplitConfig { test_host: Some("h3".into()), ..Default::default() };
        let s = split(Recipe::Host, chosen, &corpus()).unwrap();
        assert_eq!(s.counts()[&Side::Test].values().sum::<usize>(), 30);
    }

    #[test]
    fn a_test_profile_missing_from_training_is_an_error_naming_it() {
        // Only h0 runs profile "d": with h0 as the test host, training never sees it.
        let mut corpus = corpus();
        corpus.push(candidate("h0", "h0-d-0", "d", "d-sample", 5));
        let chosen = SplitConfig { test_host: Some("h0".into()), ..Default::default() };
        let err = split(Recipe::Host, chosen, &corpus).unwrap_err();
        assert_eq!(err, SplitError::UntrainedProfiles { recipe: Recipe::Host, profiles: vec!["d".into()] });
        assert_eq!(err.to_string(), "host split: profile d in the test set but missing from training");
    }

    #[test]
    fn profiles_the_test_side_lacks_are_reported_untested() {
        // h2 lacks profile c: as the test host, c is trained on but never tested.
        let chosen = SplitConfig { test_host: Some("h2".into()), ..Default::default() };
        let s = split(Recipe::Host, chosen, &corpus()).unwrap();
        assert_eq!(s.untested_profiles, vec!["c".to_string()]);
        let unknown = SplitConfig { test_host: Some("h9".into()), ..Default::default() };
        assert!(split(Recipe::Host, unknown, &corpus()).unwrap_err().to_string().contains("h9"));
    }

    #[test]
    fn sample_recipe_tests_every_episode_of_a_sample_whose_hash_is_zero_mod_5() {
        let s = split(Recipe::Sample, SplitConfig::default(), &corpus()).unwrap();
        for (a, c) in s.assignments.iter().zip({
            let mut c = corpus();
            c.sort();
            c
        }) {
            assert_eq!(a.side == Side::Test, sample_is_test(c.sample_name.as_deref().unwrap()), "{}", a.episode_id);
        }
        let names = ["a-sample0", "a-sample1", "a-sample7", "a-sample8", "a-sample9"];
        assert_eq!(names.map(sample_is_test), PYTHON_SAMPLE_IS_TEST);
    }

    /// `int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % 5 == 0`
    /// for the names above, computed with Python's hashlib.
    const PYTHON_SAMPLE_IS_TEST: [bool; 5] = [false, true, true, true, false];

    #[test]
    fn time_recipe_tests_the_latest_fifth_and_leaves_out_episodes_without_t0() {
        let mut corpus = corpus();
        corpus[0].t0_wall_ns = None;
        let s = split(Recipe::Time, SplitConfig::default(), &corpus).unwrap();
        assert_eq!(s.unplaced, vec![(corpus[0].host_id.clone(), corpus[0].episode_id.clone())]);
        let timed = corpus.len() - 1;
        let test: Vec<i64> = corpus
            .iter()
            .filter(|c| s.side_of(&c.host_id, &c.episode_id) == Some(Side::Test))
            .map(|c| c.t0_wall_ns.unwrap())
            .collect();
        assert_eq!(test.len(), timed.div_ceil(5));
        let latest_train = corpus
            .iter()
            .filter(|c| matches!(s.side_of(&c.host_id, &c.episode_id), Some(Side::Train | Side::Val)))
            .filter_map(|c| c.t0_wall_ns)
            .max()
            .unwrap();
        assert!(test.iter().all(|&t| t >= latest_train), "every test episode starts no earlier than any training one");
    }

    #[test]
    fn validation_is_a_tenth_of_the_rest_by_episode_id_hash_and_recipes_are_deterministic() {
        let corpus = corpus();
        let s = split(Recipe::Sample, SplitConfig::default(), &corpus).unwrap();
        for a in &s.assignments {
            if a.side != Side::Test {
                assert_eq!(a.side == Side::Val, hash_u64(&a.episode_id).is_multiple_of(10), "{}", a.episode_id);
            }
        }
        let mut shuffled = corpus.clone();
        shuffled.reverse();
        assert_eq!(split(Recipe::Sample, SplitConfig::default(), &shuffled).unwrap(), s, "input order does not matter");
    }

    #[test]
    fn only_accepted_non_fake_episodes_with_a_profile_may_train() {
        use crate::classify::Verdict;
        let record = |outcome| ValidationRecord {
            host_id: "h".into(),
            episode_id: "e".into(),
            sha256: None,
            archive_bytes: None,
            outcome,
            reasons: vec![],
            profile: Some("p".into()),
            sample_name: Some("s".into()),
            duration_s: None,
            rows: [None; 4],
            bad_rows: None,
            t0_wall_ns: Some(1),
            detail: None,
        };
        let quality = |fake| QualityRecord {
            host_id: "h".into(),
            episode_id: "e".into(),
            reasons: vec![],
            fake,
            sample_name: None,
            module_name: None,
            sources: [Verdict::Unknown; 4],
        };
        let ok = quality(false);
        assert!(Candidate::of(&record(Outcome::Accepted), Some(&ok), false).is_some());
        assert!(Candidate::of(&record(Outcome::Accepted), Some(&quality(true)), false).is_none(), "fake");
        assert!(Candidate::of(&record(Outcome::Accepted), None, false).is_none(), "not classified");
        assert!(Candidate::of(&record(Outcome::Degraded), Some(&ok), false).is_none());
        assert!(Candidate::of(&record(Outcome::Degraded), Some(&ok), true).is_some(), "--include-degraded");
        assert!(Candidate::of(&record(Outcome::Rejected), Some(&ok), true).is_none());
        let no_profile = ValidationRecord { profile: None, ..record(Outcome::Accepted) };
        assert!(Candidate::of(&no_profile, Some(&ok), false).is_none());
    }
}
