//! The six event types of SPEC section 15. On the wire (server.rs) each is
//! one Server-Sent Event: `id`, `event` (the type) and `data`, one JSON
//! object holding the `type`, the `time` in Unix nanoseconds and the type's
//! fields ([`Stamped::data`]).

use serde::Serialize;
use std::collections::BTreeMap;

/// One event, as a producer makes it (the hub numbers and stamps it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A replay begins.
    ReplayStarted(ReplayStarted),
    /// One tensor bin of a replay.
    Telemetry(Telemetry),
    /// One window of a replay, classified.
    Prediction(Prediction),
    /// A split's evaluation.
    Metrics(Metrics),
    /// The pipeline's work.
    Perf(Perf),
    /// The corpus per profile.
    Profiles(Profiles),
}

impl Event {
    /// The type's name: the SSE `event` field and the JSON `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ReplayStarted(_) => "replay_started",
            Event::Telemetry(_) => "telemetry",
            Event::Prediction(_) => "prediction",
            Event::Metrics(_) => "metrics",
            Event::Perf(_) => "perf",
            Event::Profiles(_) => "profiles",
        }
    }

    /// For the events that describe the current state (what a new client
    /// receives first), which state they replace: `perf`, `profiles`, and
    /// `metrics` per recipe. `None` for a replay's events.
    pub fn state_key(&self) -> Option<String> {
        match self {
            Event::Metrics(m) => Some(format!("metrics/{}", m.recipe)),
            Event::Perf(_) => Some("perf".into()),
            Event::Profiles(_) => Some("profiles".into()),
            Event::ReplayStarted(_) | Event::Telemetry(_) | Event::Prediction(_) => None,
        }
    }
}

/// A replay begins.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplayStarted {
    /// The replay's number, which its other events carry.
    pub replay: u64,
    /// The lab host that shipped the episode.
    pub host_id: String,
    /// The episode's id on that host.
    pub episode_id: String,
    /// Its workload profile.
    pub profile: Option<String>,
    /// Its sample.
    pub sample_name: Option<String>,
    /// Its validation outcome.
    pub outcome: String,
    /// Its length.
    pub duration_s: Option<f64>,
    /// `<recipe>/<arch>-<channels>`: the model classifying it.
    pub model: String,
    /// The channels the model reads, whose values `telemetry` carries.
    pub channels: Vec<String>,
    /// Episode seconds per wall second.
    pub speed: f64,
}

/// One tensor bin of a replay, as its clock passes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Telemetry {
    /// The replay.
    pub replay: u64,
    /// The bin's start, in seconds since the episode's first label.
    pub t_s: f64,
    /// Channel → value after alignment and hold, or null.
    pub values: BTreeMap<String, Option<f64>>,
    /// The labelled phase at the bin.
    pub truth: Option<String>,
}

/// One window of a replay, classified as its clock passes the window's end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// The replay.
    pub replay: u64,
    /// Seconds since the episode's first label.
    pub window_start_s: f64,
    /// Phase → probability.
    pub probabilities: BTreeMap<String, f32>,
    /// The most probable phase.
    pub predicted: String,
    /// The labelled phase at the window's centre.
    pub truth: Option<String>,
    /// The model's time for the window.
    pub latency_ms: f64,
}

/// A split's evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    /// The split (`host`, `sample`, `time`).
    pub recipe: String,
    /// Model (`<arch>-<channels>`) → its figures.
    pub models: BTreeMap<String, ModelMetrics>,
}

/// One model's figures on its test side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelMetrics {
    /// Test macro F1.
    pub macro_f1: f64,
    /// The 95% bootstrap interval `[low, high]`, when there is one.
    pub ci: Option<[f64; 2]>,
    /// F1 per phase.
    pub per_class_f1: BTreeMap<String, f64>,
    /// Test episodes scored.
    pub test_episodes: usize,
}

/// The pipeline's work.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Perf {
    /// Per operator: its counts, as in `run.json`.
    pub operators: BTreeMap<String, OperatorPerf>,
    /// Episodes the update went through per second of its wall time.
    pub episodes_per_s: f64,
    /// Episodes in the corpus.
    pub episodes: u64,
    /// Feature windows published.
    pub windows: u64,
    /// The publication this describes (the features' generation).
    pub generation: u64,
}

/// One operator's counts, as in `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OperatorPerf {
    /// Episodes it computed.
    pub computed: u64,
    /// Episodes it reused.
    pub cached: u64,
    /// Episodes it failed on.
    pub failed: u64,
    /// Time inside it, summed over workers.
    pub busy_s: f64,
}

/// The corpus per profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Profiles {
    /// Profile → its figures.
    pub profiles: BTreeMap<String, ProfileStats>,
}

/// One profile's episodes, fakes, windows and models.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProfileStats {
    /// Outcome → episodes.
    pub outcomes: BTreeMap<String, u64>,
    /// Prune reason → fake episodes.
    pub fake: BTreeMap<String, u64>,
    /// Feature windows published.
    pub windows: u64,
    /// `<recipe>/<model>` → macro F1 on this profile's test episodes.
    pub macro_f1: BTreeMap<String, f64>,
}

/// An event as the hub sent it: numbered and stamped.
#[derive(Clone, Debug, PartialEq)]
pub struct Stamped {
    /// Increasing from 1, never reused within a server's life.
    pub id: u64,
    /// Unix nanoseconds when it was published.
    pub time_ns: i64,
    /// The event itself.
    pub event: Event,
}

/// The `data` object: the event's fields with its type and time.
#[derive(Serialize)]
struct Data<'a> {
    #[serde(flatten)]
    event: &'a Event,
    time: i64,
}

impl Stamped {
    /// The `data` JSON object.
    pub fn data(&self) -> serde_json::Value {
        serde_json::to_value(Data { event: &self.event, time: self.time_ns }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_s_data_holds_its_type_time_and_fields() {
        let perf = Event::Perf(Perf {
            operators: [("decode".to_string(), OperatorPerf { computed: 3, cached: 1, failed: 0, busy_s: 0.5 })].into(),
            episodes_per_s: 8.0,
            episodes: 4,
            windows: 70,
            generation: 2,
        });
        let stamped = Stamped { id: 7, time_ns: 1_700_000_000_000_000_000, event: perf };
        let data = stamped.data();
        assert_eq!(data["type"], "perf");
        assert_eq!(data["time"], 1_700_000_000_000_000_000i64);
        assert_eq!(data["operators"]["decode"]["computed"], 3);
        assert_eq!(data["generation"], 2);
    }

    #[test]
    fn every_type_names_itself_as_the_spec_does() {
        let metrics = Event::Metrics(Metrics { recipe: "host".into(), models: BTreeMap::new() });
        let profiles = Event::Profiles(Profiles::default());
        for (event, name) in [(&metrics, "metrics"), (&profiles, "profiles")] {
            assert_eq!(event.name(), name);
            assert_eq!(serde_json::to_value(event).unwrap()["type"], name);
        }
        assert_eq!(metrics.state_key().as_deref(), Some("metrics/host"));
        let telemetry = Event::Telemetry(Telemetry { replay: 1, t_s: 0.5, values: BTreeMap::new(), truth: None });
        assert_eq!((telemetry.name(), telemetry.state_key()), ("telemetry", None));
    }
}
