//! The registry of per-episode stages: the one place that says which
//! operators run on an episode after it is decoded and aligned.
//!
//! A stage is an [`Operator`] on the aligned episode that also declares, in
//! its own file, what the engine needs to know ([`Stage`]): the stages it
//! reads, which episodes it applies to, how its result is cached and the table
//! it publishes. Everything else is derived from the registry by the engine:
//! the dataflow's chain of stages, the lineage (fingerprints), the cache
//! look-ups at decode time, whether the aligned episode must be loaded,
//! `run.json`'s operator table, `cache stats/gc`, the report that travels to
//! worker 0 (and its retraction), and the sinks that publish tables.
//!
//! A [`Registry`] lists stages by type; [`Registry::configure`] builds each
//! from its own configuration section (named by [`Operator::NAME`]) into the
//! [`Stages`] a run uses. Adding a stage is one new file in this folder and
//! one line in `registry!` below (`docs/operators.md` walks through one); a
//! stage written outside this crate registers with [`Registry::with`].

mod inputs;
mod results;

pub use inputs::Inputs;
pub use results::{Held, Results};

use crate::record_codec;
use epiflow_operators::fingerprint::{Fingerprint, Operator};
use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::{AlignedEpisode, Failure};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The stage whose record says whether an episode is usable.
const VALIDATE: &str = <validate::Validate as Operator>::NAME;

/// The stages of a standard run, in the order they run. One line per stage:
/// `module::Type`, the module being the stage's file in this folder.
macro_rules! registry {
    ($($module:ident :: $stage:ident),* $(,)?) => {
        $( mod $module; )*

        impl Registry {
            /// Every stage of a standard run, in order.
            pub fn standard() -> Registry {
                Registry::default() $( .with::<$module::$stage>() )*
            }
        }
    };
}

registry! {
    validate::Validate,
    classify::Classify,
    window::Window,
    tensor::Tensor,
}

/// Which episodes a stage computes on. Stages work on the aligned episode,
/// so an archive that could not be read never reaches one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applies {
    /// Episodes whose archive could be read (all but the errored ones).
    Readable,
    /// Accepted and degraded episodes: the ones features are written for.
    Usable,
}

/// How a stage's result outlives a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Caching {
    /// A record per episode in the result store (`OUT/cache/<stage>/<fp>/`),
    /// named by the archive's bytes and [`Stage::key`]; written with
    /// [`record_codec`], so it reads back equal. Any stage may use it.
    Record,
    /// Rows of the published feature shards, which the engine's shard sink
    /// writes from the summary windows and the tensors: kept while the
    /// features' lineage is unchanged. Only the built-in window and tensor
    /// stages are kept this way ([`Stages::check`] refuses any other), and
    /// they run only when features are asked for.
    FeatureShards,
}

/// What a stage's output must be: cached, sent between processes and
/// published, so serialisable, and shareable between operators.
pub trait Record: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static> Record for T {}

/// A per-episode stage: an [`Operator`] on the aligned episode, and how the
/// engine treats its result. Only [`Stage::configure`] has no default.
pub trait Stage: Operator<Input = AlignedEpisode, Output: Record> + Send + Sync + 'static {
    /// The stages whose results it reads: `align` for the aligned episode,
    /// plus any stage whose record [`Stage::compute`] takes from its
    /// [`Inputs`]. Their fingerprints are chained into this stage's, and
    /// `compute` sees exactly these: reading another stage's record fails
    /// the run, naming both.
    const INPUTS: &'static [&'static str] = &["align"];
    /// Which episodes it computes on.
    const APPLIES: Applies = Applies::Readable;
    /// How its result is kept between runs.
    const CACHING: Caching = Caching::Record;
    /// The file under `OUT` its records are published as, if any.
    const PUBLISHES: Option<&'static str> = None;

    /// The stage as the run's configuration sets it up, from its own
    /// section (`sections.get(Self::NAME)`: its defaults when absent).
    fn configure(sections: &Sections) -> Result<Self, String>
    where
        Self: Sized;

    /// What the result depends on besides the archive's bytes and the
    /// fingerprints (e.g. the episode's key): part of its cache key.
    fn key(&self, _entry: &IndexEntry) -> String {
        String::new()
    }

    /// Computes the result; `inputs` holds the records of the stages named
    /// in [`Stage::INPUTS`] (typed access: `inputs.get::<Validate>()`).
    fn compute(&self, aligned: &AlignedEpisode, _inputs: &Inputs) -> Self::Output {
        self.apply(aligned)
    }

    /// Its record for an episode that failed before it (unreadable archive),
    /// if it has one: validation reports every indexed episode.
    fn on_failure(&self, _entry: &IndexEntry, _failure: &Failure) -> Option<Self::Output> {
        None
    }

    /// Writes the published table from its rows (in key order, handed over
    /// so a writer can keep the records without copying them): by default
    /// one row per record, the episode's key then the record's fields (see
    /// [`crate::sinks::table`]).
    fn write_table(&self, path: &Path, rows: Vec<(&IndexKey, Self::Output)>) -> io::Result<()> {
        crate::sinks::table::write(path, &rows)
    }
}

/// An episode's key as tables are sorted: `(host_id, episode_id)`.
pub type IndexKey = (String, String);

/// A stage with its types erased, as the engine holds it. Implemented for
/// every [`Stage`]; implement it directly only to wrap one (tests that
/// pretend a version changed).
pub trait ErasedStage: Send + Sync {
    /// [`Operator::NAME`].
    fn name(&self) -> &'static str;
    /// [`Operator::VERSION`].
    fn version(&self) -> u32;
    /// The configuration it reads, as hashed into its fingerprint.
    fn config(&self) -> serde_json::Value;
    /// Its own fingerprint (name, version, configuration), before chaining.
    fn own_fingerprint(&self) -> Fingerprint;
    /// [`Stage::INPUTS`].
    fn inputs(&self) -> &'static [&'static str];
    /// [`Stage::APPLIES`].
    fn applies(&self) -> Applies;
    /// [`Stage::CACHING`].
    fn caching(&self) -> Caching;
    /// [`Stage::PUBLISHES`].
    fn publishes(&self) -> Option<&'static str>;
    /// See [`Stage::key`].
    fn key(&self, entry: &IndexEntry) -> String;
    /// Computes the result (never [`Held::Missing`]).
    fn compute(&self, aligned: &AlignedEpisode, inputs: &Inputs) -> Held;
    /// See [`Stage::on_failure`].
    fn on_failure(&self, entry: &IndexEntry, failure: &Failure) -> Option<Held>;
    /// Reads a cached record back.
    fn decode(&self, line: &str) -> Result<Held, String>;
    /// Writes the published table from each episode's result.
    fn write_table(&self, path: &Path, rows: &[(&IndexKey, &Held)]) -> io::Result<()>;
    /// Whether `record` of this stage, with its floats replaced by
    /// `float()`, reads back equal from the cache (the compliance check).
    fn round_trips(&self, record: &Held, float: &mut dyn FnMut() -> f64) -> Result<(), String>;
    /// The stage itself, for typed look-up ([`Stages::stage`]).
    fn as_any(&self) -> &dyn Any;
}

/// The erased form of a [`Stage`].
struct Erased<S>(S);

impl<S: Stage> ErasedStage for Erased<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self.0.config()).unwrap_or_default()
    }
    fn own_fingerprint(&self) -> Fingerprint {
        self.0.fingerprint()
    }
    fn inputs(&self) -> &'static [&'static str] {
        S::INPUTS
    }
    fn applies(&self) -> Applies {
        S::APPLIES
    }
    fn caching(&self) -> Caching {
        S::CACHING
    }
    fn publishes(&self) -> Option<&'static str> {
        S::PUBLISHES
    }
    fn key(&self, entry: &IndexEntry) -> String {
        self.0.key(entry)
    }
    fn compute(&self, aligned: &AlignedEpisode, inputs: &Inputs) -> Held {
        Held::value(self.0.compute(aligned, inputs))
    }
    fn on_failure(&self, entry: &IndexEntry, failure: &Failure) -> Option<Held> {
        self.0.on_failure(entry, failure).map(Held::value)
    }
    fn decode(&self, line: &str) -> Result<Held, String> {
        record_codec::decode::<S::Output>(line).map(Held::value)
    }
    fn write_table(&self, path: &Path, rows: &[(&IndexKey, &Held)]) -> io::Result<()> {
        let typed = rows
            .iter()
            .map(|(key, held)| {
                let record = held.typed::<S::Output>().ok_or_else(|| {
                    io::Error::other(format!("{}: no {} record for {}/{}", path.display(), S::NAME, key.0, key.1))
                })?;
                Ok((*key, record.into_owned()))
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.0.write_table(path, typed)
    }
    fn round_trips(&self, record: &Held, float: &mut dyn FnMut() -> f64) -> Result<(), String> {
        let typed = record.typed::<S::Output>().ok_or_else(|| format!("{record:?} is no {} record", S::NAME))?;
        record_codec::round_trips(&*typed, float).map_err(|e| format!("{}: {e}", S::NAME))
    }
    fn as_any(&self) -> &dyn Any {
        &self.0
    }
}

/// Builds one registered stage from the run's configuration.
type Build = Arc<dyn Fn(&Sections) -> Result<Arc<dyn ErasedStage>, String> + Send + Sync>;

/// One registered stage: the section it claims (its name) and how it is
/// built from the configuration.
#[derive(Clone)]
struct Registration {
    name: &'static str,
    build: Build,
}

/// The stages a run may use, by type and in order, before any configuration
/// is read. [`Registry::configure`] builds them.
#[derive(Clone, Default)]
pub struct Registry {
    registrations: Vec<Registration>,
}

impl Registry {
    /// This registry with stage `S` appended (it runs after the others),
    /// built from its section when the registry is configured.
    pub fn with<S: Stage>(mut self) -> Registry {
        let build: Build = Arc::new(|sections: &Sections| {
            let stage: Arc<dyn ErasedStage> = Arc::new(Erased(S::configure(sections)?));
            Ok(stage)
        });
        self.registrations.push(Registration { name: S::NAME, build });
        self
    }

    /// This registry with a stage that is already built appended: its
    /// section, if any, is its builder's business (tests that wrap a stage
    /// to pretend its version changed).
    pub fn with_erased(mut self, stage: Arc<dyn ErasedStage>) -> Registry {
        let name = stage.name();
        let build: Build = Arc::new(move |_: &Sections| Ok(Arc::clone(&stage)));
        self.registrations.push(Registration { name, build });
        self
    }

    /// The registered stages' names, in order: the configuration sections
    /// they claim.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.registrations.iter().map(|r| r.name)
    }

    /// Every registered stage built from its section of `sections`, checked
    /// as a whole ([`Stages::check`]).
    pub fn configure(&self, sections: &Sections) -> Result<Stages, String> {
        let stages = self.registrations.iter().map(|r| (r.build)(sections)).collect::<Result<Vec<_>, _>>()?;
        let stages = Stages { stages };
        stages.check()?;
        Ok(stages)
    }
}

/// The stages a job runs, configured, in order.
#[derive(Clone, Default)]
pub struct Stages {
    stages: Vec<Arc<dyn ErasedStage>>,
}

impl Stages {
    /// The stages, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ErasedStage>> {
        self.stages.iter()
    }

    /// The stage of type `S`, to read its configuration.
    pub fn stage<S: Stage>(&self) -> Option<&S> {
        self.stages.iter().find_map(|s| s.as_any().downcast_ref::<S>())
    }

    /// The stages that run without features: those not kept in the
    /// feature shards.
    pub fn without_feature_shards(&self) -> Stages {
        let stages = self.stages.iter().filter(|s| s.caching() != Caching::FeatureShards).cloned().collect();
        Stages { stages }
    }

    /// Checks what the compiler cannot: names are unique, every input is
    /// `decode`, `align` or a stage registered earlier, a stage for usable
    /// episodes comes after validation, which says which they are, and only
    /// the built-in window and tensor stages are kept in the feature shards
    /// (the shard sink writes their rows and no other's).
    pub fn check(&self) -> Result<(), String> {
        let mut seen: Vec<&str> = vec!["decode", "align"];
        for stage in &self.stages {
            let name = stage.name();
            if seen.contains(&name) {
                return Err(format!("stage {name} is registered twice"));
            }
            if let Some(input) = stage.inputs().iter().find(|i| !seen.contains(i)) {
                return Err(format!("stage {name} reads {input}, which is not registered before it"));
            }
            if stage.applies() == Applies::Usable && !seen.contains(&VALIDATE) {
                return Err(format!("stage {name} applies to usable episodes but comes before {VALIDATE}"));
            }
            let any = stage.as_any();
            if stage.caching() == Caching::FeatureShards && !(any.is::<window::Window>() || any.is::<tensor::Tensor>())
            {
                return Err(format!(
                    "stage {name} is kept in the feature shards, which hold only the window and tensor stages' rows; \
                     cache it as a record"
                ));
            }
            seen.push(name);
        }
        Ok(())
    }
}

/// The run's configuration by section (`[validate]`, `[window]`, ...), as
/// JSON: each stage reads its own in [`Stage::configure`].
#[derive(Clone, Debug, Default)]
pub struct Sections(BTreeMap<String, serde_json::Value>);

impl Sections {
    /// Sections from a map of section name to its table.
    pub fn new(sections: BTreeMap<String, serde_json::Value>) -> Sections {
        Sections(sections)
    }

    /// Section `name` as `C`: its defaults when the section is absent, an
    /// error naming the section when it does not parse.
    pub fn get<C: DeserializeOwned + Default>(&self, name: &str) -> Result<C, String> {
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(C::default()),
            Some(value) => C::deserialize(value).map_err(|e| format!("configuration [{name}]: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::classify::Classify;
    use epiflow_operators::window::Window;

    #[test]
    fn the_standard_registry_is_well_formed() {
        let stages = Registry::standard().configure(&Sections::default()).unwrap();
        assert!(stages.stage::<epiflow_operators::validate::Validate>().is_some());
        let names: Vec<_> = Registry::standard().names().collect();
        assert_eq!(names, ["validate", "classify", "window", "tensor"]);
        let without: Vec<_> = stages.without_feature_shards().iter().map(|s| s.name()).collect();
        assert_eq!(without, ["validate", "classify"]);
    }

    #[test]
    fn each_stage_is_configured_from_its_own_section() {
        let sections = Sections::new(
            [
                ("classify".to_string(), serde_json::json!({"guest_min_load_delta": 0.9})),
                ("window".to_string(), serde_json::json!({"window_s": 20.0})),
            ]
            .into(),
        );
        let stages = Registry::standard().configure(&sections).unwrap();
        assert_eq!(stages.stage::<Classify>().unwrap().config.guest_min_load_delta, 0.9);
        assert_eq!(stages.stage::<Window>().unwrap().spec.window_s, 20.0);
        let tensor = stages.stage::<epiflow_operators::tensor::Tensor>().unwrap();
        assert_eq!(tensor.config.window.window_s, 20.0, "the tensors cut the windows the window stage cuts");
    }

    #[test]
    fn a_stage_registered_twice_or_before_its_input_is_refused() {
        let sections = Sections::default();
        let twice = Registry::standard().with::<Classify>();
        assert_eq!(twice.configure(&sections).err().unwrap(), "stage classify is registered twice");
        let first = Registry::default().with::<Reads>().with::<Classify>();
        assert_eq!(
            first.configure(&sections).err().unwrap(),
            "stage reads-classify reads classify, which is not registered before it"
        );
        let early = Registry::default().with::<Window>();
        assert_eq!(
            early.configure(&sections).err().unwrap(),
            "stage window applies to usable episodes but comes before validate"
        );
    }

    #[test]
    fn only_the_window_and_tensor_stages_are_kept_in_the_feature_shards() {
        let err = Registry::standard().with::<Sharded>().configure(&Sections::default()).err().unwrap();
        assert!(err.starts_with("stage sharded is kept in the feature shards"), "{err}");
    }

    /// A test operator that computes nothing of note: what a test stage
    /// declares is all that matters.
    macro_rules! test_operator {
        ($type:ident, $name:literal) => {
            #[derive(Clone, Default)]
            struct $type;

            impl Operator for $type {
                const NAME: &'static str = $name;
                const VERSION: u32 = 1;
                type Config = ();
                type Input = AlignedEpisode;
                type Output = u8;
                fn config(&self) -> &() {
                    &()
                }
                fn apply(&self, _: &AlignedEpisode) -> u8 {
                    0
                }
            }
        };
    }

    test_operator!(Reads, "reads-classify");

    /// Reads classify's record.
    impl Stage for Reads {
        const INPUTS: &'static [&'static str] = &["align", "classify"];
        fn configure(_: &Sections) -> Result<Self, String> {
            Ok(Reads)
        }
    }

    test_operator!(Sharded, "sharded");

    /// Asks to be kept in the feature shards.
    impl Stage for Sharded {
        const APPLIES: Applies = Applies::Usable;
        const CACHING: Caching = Caching::FeatureShards;
        fn configure(_: &Sections) -> Result<Self, String> {
            Ok(Sharded)
        }
    }

    #[test]
    fn a_section_that_does_not_parse_names_itself() {
        let sections = Sections::new([("validate".to_string(), serde_json::json!({"row_gate": 1}))].into());
        let err = Registry::standard().configure(&sections).err().unwrap();
        assert!(err.starts_with("configuration [validate]:"), "{err}");
    }
}
