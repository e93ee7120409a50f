//! `epiflow infer`: a trained model run on episode archives, without shards
//! (SPEC section 15). Per archive a table of its windows (or, with `--json`,
//! one object per window), then a summary: windows, accuracy against the
//! labels, latency per episode and per window.

use super::print_json;
use super::validate::log_outcome;
use crate::cli::Global;
use crate::config::Config;
use crate::error::{Error, Result};
use epiflow_models::predictor::{Inferred, Prediction, Predictor};
use epiflow_operators::decode::Decode;
use epiflow_operators::registry::Phase;
use epiflow_operators::validate::Validate;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(g: &Global, model: &Path, archives: &[PathBuf]) -> Result<ExitCode> {
    let config = Config::load(g.config.as_deref())?;
    let decode = Decode { config: config.decode.clone(), ..Decode::default() };
    let predictor = Predictor::load(model, decode, Validate { config: config.validate.clone() })
        .map_err(|e| Error::Usage(format!("cannot use the model: {e}")))?;
    let mut tally = Tally::default();
    for path in archives {
        let inferred = predictor.infer_path(path);
        tally.add(&inferred);
        if !inferred.validation.outcome.is_usable() {
            log_outcome(&inferred.validation);
        }
        match g.json {
            true => print_windows_json(path, &inferred)?,
            false if !g.quiet => print!("{}", table(path, &inferred)),
            false => {}
        }
    }
    let summary = tally.summary(&predictor);
    match g.json {
        true => print_json(&json!({ "summary": summary }))?,
        false => println!("{}", summary_line(&summary)),
    }
    Ok(if tally.bad > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
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

    fn summary(&self, predictor: &Predictor) -> serde_json::Value {
        json!({
            "model": predictor.arch().name(),
            "window_s": predictor.window_s(),
            "archives": self.archives,
            "bad_archives": self.bad,
            "windows": self.windows,
            "accuracy": (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64),
            "episode_ms_median": quantile(&self.episode_ms, 0.5),
            "episode_ms_p95": quantile(&self.episode_ms, 0.95),
            "window_ms_median": quantile(&self.window_ms, 0.5),
            "window_ms_p95": quantile(&self.window_ms, 0.95),
        })
    }
}

/// The `q` quantile of `values` (nearest rank), `None` when there are none.
fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

fn summary_line(s: &serde_json::Value) -> String {
    let accuracy = s["accuracy"].as_f64().map_or("no labels".into(), |a| format!("accuracy {:.1}%", a * 100.0));
    let episode = s["episode_ms_median"].as_f64().map_or("-".into(), |ms| format!("{ms:.1} ms"));
    let window = s["window_ms_median"].as_f64().map_or("-".into(), |ms| format!("{ms:.3} ms"));
    format!(
        "{} archives ({} bad), {} windows, {accuracy}; median latency {episode} per episode (decode included), \
         {window} per window (model)",
        s["archives"], s["bad_archives"], s["windows"]
    )
}

/// One archive as a person reads it.
fn table(path: &Path, inferred: &Inferred) -> String {
    let v = &inferred.validation;
    let mut s = format!("{} ({}/{}): {}", path.display(), v.host_id, v.episode_id, v.outcome.name());
    if !v.outcome.is_usable() {
        return s + &format!(" [{}] {}\n", v.reasons.join(", "), v.detail.as_deref().unwrap_or(""));
    }
    s += &format!(", {} windows\n", inferred.windows.len());
    s += &format!("{:>9}  {:<17}", "start_s", "predicted");
    for p in Phase::ALL {
        s += &format!(" {:>16}", p.name());
    }
    s += &format!("  {}\n", "truth");
    for w in &inferred.windows {
        s += &format!("{:>9.1}  {:<17}", w.window_start_s, w.predicted.name());
        for p in w.probabilities {
            s += &format!(" {p:>16.4}");
        }
        s += &format!("  {}\n", w.truth.map_or("-", Phase::name));
    }
    s
}

/// One JSON object per window, or one saying why the archive has none.
fn print_windows_json(path: &Path, inferred: &Inferred) -> Result<()> {
    let v = &inferred.validation;
    let archive = json!({ "archive": path, "host_id": v.host_id, "episode_id": v.episode_id });
    if !v.outcome.is_usable() {
        let mut object = archive;
        object["outcome"] = json!(v.outcome.name());
        object["reasons"] = json!(v.reasons);
        object["detail"] = json!(v.detail);
        return print_json(&object);
    }
    for w in &inferred.windows {
        print_json(&window_json(&archive, w))?;
    }
    Ok(())
}

fn window_json(archive: &serde_json::Value, w: &Prediction) -> serde_json::Value {
    let probabilities: serde_json::Map<String, serde_json::Value> =
        Phase::ALL.iter().zip(w.probabilities).map(|(p, x)| (p.name().to_string(), json!(x))).collect();
    let mut object = archive.clone();
    object["window_start_s"] = json!(w.window_start_s);
    object["predicted"] = json!(w.predicted.name());
    object["probabilities"] = json!(probabilities);
    object["truth"] = json!(w.truth.map(Phase::name));
    object
}
