//! The `metrics` producer: a split's evaluation report as the Models scene
//! shows it.

use super::events::{Event, Metrics, ModelMetrics};
use epiflow_models::report::Report;
use epiflow_operators::split::Recipe;

/// The `metrics` event of one split's report.
pub fn of(report: &Report) -> Event {
    let models = report
        .models
        .iter()
        .map(|m| {
            let figures = ModelMetrics {
                macro_f1: m.macro_f1,
                ci: m.ci.map(|ci| [ci.low, ci.high]),
                per_class_f1: m.per_class_f1.clone(),
                test_episodes: report.test.episodes,
            };
            (m.model.clone(), figures)
        })
        .collect();
    Event::Metrics(Metrics { recipe: report.recipe.name().to_string(), models })
}

/// The `metrics` event of a recipe whose report went away: no models.
pub fn empty(recipe: Recipe) -> Event {
    Event::Metrics(Metrics { recipe: recipe.name().to_string(), models: Default::default() })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `host` report with one model, as `report.json` holds it.
    pub(crate) fn report() -> Report {
        let breakdown = serde_json::json!({ "macro_f1": 0.8, "episodes": 3, "windows": 90 });
        serde_json::from_value(serde_json::json!({
            "recipe": "host", "version": 1, "inputs": "x", "resamples": 1000, "seed": 7, "confidence": 0.95,
            "test": { "episodes": 12, "windows": 400, "hosts": { "lab-rack-01": 12 }, "profiles": { "io-walk": 3 } },
            "untested_profiles": [],
            "models": [{
                "model": "gbt-realistic", "arch": "gbt", "channels": "realistic", "weights_sha256": "s", "val_macro_f1": 0.97,
                "macro_f1": 0.91, "ci": { "low": 0.85, "high": 0.95 },
                "per_class_f1": { "clean": 0.97, "dormant": 0.88 },
                "per_profile": { "io-walk": breakdown }, "per_host": { "lab-rack-01": breakdown },
                "confusion": { "labels": ["clean"], "counts": [[3]] }, "confusion_png": "c.png",
                "calibration": { "ece": 0.05, "bins": [] }, "reliability_png": "r.png"
            }],
            "pairs": [], "skipped": [], "macro_f1_png": "m.png"
        }))
        .unwrap()
    }

    #[test]
    fn metrics_carry_each_model_with_its_interval() {
        let Event::Metrics(m) = of(&report()) else { panic!("not metrics") };
        assert_eq!(m.recipe, "host");
        let gbt = &m.models["gbt-realistic"];
        assert_eq!((gbt.macro_f1, gbt.ci, gbt.test_episodes), (0.91, Some([0.85, 0.95]), 12));
        assert_eq!(gbt.per_class_f1["dormant"], 0.88);
    }
}
