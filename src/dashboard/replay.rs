//! The `replay` producer: one episode's telemetry and the model's
//! predictions, paced by a clock running `speed` seconds of episode per
//! second. The replay is planned whole when it starts — every telemetry bin
//! (the tensors' binning and hold over the whole episode) and every window's
//! prediction (through the [`Predictor`], as `epiflow infer` gives it) at the
//! episode time its clock passes — and the server publishes each step when
//! it is due.

use super::events::{Event, Prediction, ReplayStarted, Telemetry};
use epiflow_models::predictor::Predictor;
use epiflow_operators::channels::{Phase, CHANNELS};
use epiflow_operators::model::AlignedEpisode;
use epiflow_operators::validate::ValidationRecord;
use std::time::{Duration, Instant};

/// One event of a replay and the episode time at which it is due.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Seconds of episode time since the first label.
    pub at_s: f64,
    /// The event.
    pub event: Event,
}

/// A replay, planned.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    /// The replay's number, in its every event.
    pub id: u64,
    /// The `replay_started` event.
    pub started: Event,
    /// Seconds of episode per second of wall time.
    pub speed: f64,
    /// Every later event, in the order they are due.
    pub steps: Vec<Step>,
}

impl Replay {
    /// Plans replay `id` of `aligned` (which `validation` judged) with
    /// `predictor` at `speed`.
    pub fn plan(
        id: u64,
        predictor: &Predictor,
        aligned: &AlignedEpisode,
        validation: &ValidationRecord,
        speed: f64,
    ) -> Result<Replay, String> {
        if !(speed.is_finite() && speed > 0.0) {
            return Err(format!("speed must be positive, got {speed}"));
        }
        let channels = predictor.channels().indices();
        let tensor = predictor.tensor();
        let hz = tensor.config.tensor.hz;
        let (bins, x, mask) = tensor.timeline(aligned);
        let mut steps: Vec<Step> = (0..bins)
            .map(|b| {
                let t_s = b as f64 / hz;
                let values = channels
                    .iter()
                    .map(|&c| (CHANNELS[c].name.to_string(), mask[c * bins + b].then_some(f64::from(x[c * bins + b]))))
                    .collect();
                let truth = aligned.phase_at(t_s + 0.5 / hz).map(|p| p.name().to_string());
                Step { at_s: t_s + 1.0 / hz, event: Event::Telemetry(Telemetry { replay: id, t_s, values, truth }) }
            })
            .collect();
        let start = Instant::now();
        let predictions = predictor.infer_aligned(aligned)?;
        let latency_ms = start.elapsed().as_secs_f64() * 1e3 / predictions.len().max(1) as f64;
        steps.extend(predictions.into_iter().map(|p| Step {
            at_s: p.window_start_s + predictor.window_s(),
            event: Event::Prediction(Prediction {
                replay: id,
                window_start_s: p.window_start_s,
                probabilities: Phase::ALL.iter().map(|ph| ph.name().to_string()).zip(p.probabilities).collect(),
                predicted: p.predicted.name().to_string(),
                truth: p.truth.map(|t| t.name().to_string()),
                latency_ms,
            }),
        }));
        steps.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let started = Event::ReplayStarted(ReplayStarted {
            replay: id,
            host_id: validation.host_id.clone(),
            episode_id: validation.episode_id.clone(),
            profile: validation.profile.clone(),
            sample_name: validation.sample_name.clone(),
            outcome: validation.outcome.name().to_string(),
            duration_s: validation.duration_s,
            model: predictor.model_name(),
            channels: channels.iter().map(|&c| CHANNELS[c].name.to_string()).collect(),
            speed,
        });
        Ok(Replay { id, started, speed, steps })
    }

    /// How many steps are due once `elapsed` wall time has passed since the
    /// replay started.
    pub fn due(&self, elapsed: Duration) -> usize {
        let clock = elapsed.as_secs_f64() * self.speed;
        self.steps.partition_point(|s| s.at_s <= clock)
    }

    /// Wall time from the replay's start until step `next` is due; `None`
    /// after the last.
    pub fn due_at(&self, next: usize) -> Option<Duration> {
        self.steps.get(next).map(|s| Duration::from_secs_f64(s.at_s / self.speed))
    }
}
