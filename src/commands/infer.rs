//! `epiflow infer`: a trained model run on episode archives, without shards
//! (SPEC section 15). Per archive a table of its windows (or, with `--json`,
//! one object per window), then a summary: windows, accuracy against the
//! labels, latency per episode and per window.

use super::print_json;
use crate::cli::Global;
use epiflow_engine::config::Config;
use epiflow_engine::infer::{infer, InferSummary};
use epiflow_engine::Result;
use epiflow_models::predictor::{Inferred, Prediction};
use epiflow_operators::channels::Phase;
use epiflow_pipelines::stages::Registry;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(g: &Global, model: &Path, archives: &[PathBuf]) -> Result<ExitCode> {
    let config = Config::load(g.config.as_deref())?;
    let summary = infer(model, archives, &config, &Registry::standard(), |path, inferred| match g.json {
        true => print_windows_json(path, inferred),
        false if !g.quiet => {
            print!("{}", table(path, inferred));
            Ok(())
        }
        false => Ok(()),
    })?;
    match g.json {
        true => print_json(&json!({ "summary": summary }))?,
        false => println!("{}", summary_line(&summary)),
    }
    Ok(if summary.bad_archives > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn summary_line(s: &InferSummary) -> String {
    let accuracy = s.accuracy.map_or("no labels".into(), |a| format!("accuracy {:.1}%", a * 100.0));
    let episode = s.episode_ms_median.map_or("-".into(), |ms| format!("{ms:.1} ms"));
    let window = s.window_ms_median.map_or("-".into(), |ms| format!("{ms:.3} ms"));
    format!(
        "{} archives ({} bad), {} windows, {accuracy}; median latency {episode} per episode (decode included), \
         {window} per window (model)",
        s.archives, s.bad_archives, s.windows
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
