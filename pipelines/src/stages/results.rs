//! Every stage's result for one episode, held without one field per stage:
//! a short list of (stage name, result) with typed access by stage type.

use super::{Record, Stage};
use crate::record_codec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// One stage's result for one episode.
#[derive(Clone, Default)]
pub enum Held {
    /// Not known yet: neither found in the cache nor computed.
    #[default]
    Missing,
    /// Computed on this run or read back from the cache.
    Value(Arc<dyn AnyRecord>),
    /// A value as it crossed from another process (see [`Held::typed`]).
    Encoded(String),
    /// Published by an earlier run and kept there (a shard stage's rows):
    /// this many windows.
    Kept(usize),
    /// The cached record could not be read back (why): the stage computes
    /// it again and counts the episode as failed.
    Unreadable(String),
}

/// A record of any stage, shareable and encodable without knowing its type.
pub trait AnyRecord: Send + Sync {
    /// The record, to downcast to its type.
    fn as_any(&self) -> &dyn Any;
    /// The shared record, to take it out without a copy when it is the last.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// The record as [`record_codec`] writes it.
    fn encode(&self) -> Result<String, String>;
    /// The record's `Debug` form.
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<T: Record> AnyRecord for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
    fn encode(&self) -> Result<String, String> {
        record_codec::encode(self)
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Held {
    /// A computed or decoded record.
    pub fn value<T: Record>(record: T) -> Held {
        Held::Value(Arc::new(record))
    }

    /// Whether the stage has nothing more to do for the episode.
    pub fn is_done(&self) -> bool {
        matches!(self, Held::Value(_) | Held::Encoded(_) | Held::Kept(_))
    }

    /// The record as `T`: borrowed when it was made in this process,
    /// decoded when it came from another; `None` when there is none or it is
    /// of another type.
    pub fn typed<T: Record>(&self) -> Option<Cow<'_, T>> {
        match self {
            Held::Value(value) => value.as_any().downcast_ref::<T>().map(Cow::Borrowed),
            Held::Encoded(line) => record_codec::decode::<T>(line).ok().map(Cow::Owned),
            Held::Missing | Held::Kept(_) | Held::Unreadable(_) => None,
        }
    }

    /// The record as `T`, moved out when this is its only holder (large
    /// feature records are not copied on their way to the sink).
    pub fn into_typed<T: Record>(self) -> Option<T> {
        match self {
            Held::Value(value) => {
                let typed = value.into_any().downcast::<T>().ok()?;
                Some(Arc::try_unwrap(typed).unwrap_or_else(|shared| (*shared).clone()))
            }
            other => other.typed::<T>().map(Cow::into_owned),
        }
    }

    /// The record as the cache stores it.
    pub fn encode(&self) -> Option<Result<String, String>> {
        match self {
            Held::Value(value) => Some(value.encode()),
            Held::Encoded(line) => Some(Ok(line.clone())),
            Held::Missing | Held::Kept(_) | Held::Unreadable(_) => None,
        }
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Missing => f.write_str("Missing"),
            Held::Value(value) => value.debug(f),
            Held::Encoded(line) => write!(f, "Encoded({line})"),
            Held::Kept(windows) => write!(f, "Kept({windows})"),
            Held::Unreadable(why) => write!(f, "Unreadable({why})"),
        }
    }
}

/// How a result crosses between processes: a value goes encoded.
#[derive(Serialize, Deserialize)]
enum Wire {
    Missing,
    Encoded(String),
    Kept(usize),
    Unreadable(String),
}

impl Serialize for Held {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Held::Missing => Wire::Missing,
            Held::Value(value) => Wire::Encoded(value.encode().map_err(serde::ser::Error::custom)?),
            Held::Encoded(line) => Wire::Encoded(line.clone()),
            Held::Kept(windows) => Wire::Kept(*windows),
            Held::Unreadable(why) => Wire::Unreadable(why.clone()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Held {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Held, D::Error> {
        Ok(match Wire::deserialize(d)? {
            Wire::Missing => Held::Missing,
            Wire::Encoded(line) => Held::Encoded(line),
            Wire::Kept(windows) => Held::Kept(windows),
            Wire::Unreadable(why) => Held::Unreadable(why),
        })
    }
}

/// The results of an episode's stages, by stage name, in registry order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results(Vec<(Cow<'static, str>, Held)>);

impl Results {
    /// The result of stage `name` ([`Held::Missing`] when it has none).
    pub fn held(&self, name: &str) -> &Held {
        self.0.iter().find(|(n, _)| n == name).map_or(&Held::Missing, |(_, held)| held)
    }

    /// Sets the result of stage `name`.
    pub fn set(&mut self, name: &'static str, held: Held) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, slot)) => *slot = held,
            None => self.0.push((Cow::Borrowed(name), held)),
        }
    }

    /// The record of stage `S`, typed (see [`Held::typed`]).
    pub fn get<S: Stage>(&self) -> Option<Cow<'_, S::Output>> {
        self.held(S::NAME).typed::<S::Output>()
    }

    /// Takes stage `name`'s result out, leaving it missing.
    pub fn take(&mut self, name: &str) -> Held {
        self.0.iter_mut().find(|(n, _)| n == name).map_or(Held::Missing, |(_, held)| std::mem::take(held))
    }

    /// Only the results `keep` selects by stage name.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Held) -> bool) {
        self.0.retain(|(name, held)| keep(name, held));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::classify::{Classify, QualityRecord, Verdict};
    use epiflow_operators::validate::Validate;
    use epiflow_operators::Operator;

    fn quality() -> QualityRecord {
        QualityRecord {
            host_id: "h".into(),
            episode_id: "e".into(),
            reasons: vec!["no_activity".into()],
            fake: true,
            sample_name: None,
            module_name: Some("m".into()),
            sources: [Verdict::Flat; 4],
        }
    }

    #[test]
    fn typed_access_finds_a_stage_record_and_nothing_else() {
        let mut results = Results::default();
        results.set(Classify::NAME, Held::value(quality()));
        assert_eq!(results.get::<Classify>().unwrap().module_name.as_deref(), Some("m"));
        assert!(results.get::<Validate>().is_none(), "validate has no result");
        results.set(Validate::NAME, Held::value(quality()));
        assert!(results.get::<Validate>().is_none(), "a record of another type is not returned");
    }

    #[test]
    fn results_cross_processes_encoded_and_read_back_typed() {
        let mut results = Results::default();
        results.set(Classify::NAME, Held::value(quality()));
        results.set("window", Held::Kept(3));
        let wire = serde_json::to_string(&results).unwrap();
        let back: Results = serde_json::from_str(&wire).unwrap();
        assert!(matches!(back.held(Classify::NAME), Held::Encoded(_)));
        assert_eq!(back.get::<Classify>().unwrap().reasons, ["no_activity"]);
        assert!(matches!(back.held("window"), Held::Kept(3)));
    }
}
