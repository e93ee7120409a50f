//! Run configuration: a TOML file whose sections are the operators' own
//! configurations. Unknown keys are errors, so a typo never silently leaves a
//! default in force.

use crate::error::{Error, Result};
use epiflow_models::eval::EvalConfig;
use epiflow_models::sink::ModelsConfig;
use epiflow_operators::classify::ClassifyConfig;
use epiflow_operators::decode::DecodeConfig;
use epiflow_operators::split::SplitConfig;
use epiflow_operators::tensor::{TensorConfig, TensorSpec};
use epiflow_operators::validate::ValidateConfig;
use epiflow_operators::window::WindowSpec;
use epiflow_pipelines::stages::{Registry, Sections};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything configurable, by operator. A section no field names is the
/// configuration of a registered stage (`[<stage name>]`, see
/// `docs/operators.md`); any other name is an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub decode: DecodeConfig,
    pub validate: ValidateConfig,
    pub classify: ClassifyConfig,
    pub window: WindowSpec,
    pub tensor: TensorSpec,
    pub features: FeaturesConfig,
    /// The held-out splits (`[split]`: `test_host`, `include_degraded`).
    pub split: SplitConfig,
    /// The models a run trains (`[train]`: `splits`, `archs`, `channels`,
    /// `[train.neural]`, `[train.gbt]`).
    pub train: ModelsConfig,
    /// How test-side figures are resampled (`[eval]`: `resamples`, `seed`).
    pub eval: EvalConfig,
    /// The sections of registered stages that have no field above.
    #[serde(flatten)]
    pub stages: BTreeMap<String, toml::Value>,
}

/// How feature shards are laid out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Shards per feature kind. An episode's shard is a stable hash of its key,
    /// so it never moves while this stays the same.
    pub shards: usize,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig { shards: 32 }
    }
}

/// Command-line overrides of the window configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowOverrides {
    pub window_s: Option<f64>,
    pub stride_s: Option<f64>,
    pub tensor_hz: Option<f64>,
    pub hold_s: Option<f64>,
}

impl Config {
    /// Applies `--window-s` and friends over the file's values, and checks the
    /// result.
    pub fn with_overrides(mut self, o: WindowOverrides) -> Result<Config> {
        self.window.window_s = o.window_s.unwrap_or(self.window.window_s);
        self.window.stride_s = o.stride_s.unwrap_or(self.window.stride_s);
        self.tensor.hz = o.tensor_hz.unwrap_or(self.tensor.hz);
        self.tensor.hold_s = o.hold_s.unwrap_or(self.tensor.hold_s);
        self.tensor_config().check().map_err(Error::Usage)?;
        if self.features.shards == 0 {
            return Err(Error::Usage("features.shards must be at least 1".into()));
        }
        Ok(self)
    }

    /// The registered stages, each configured from its section. A section
    /// that names no stage and no field above is an error.
    pub fn stages(&self) -> Result<Registry> {
        let json = serde_json::to_value(self).map_err(|e| Error::Usage(format!("configuration: {e}")))?;
        let sections = match json {
            serde_json::Value::Object(map) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        let registry = Registry::standard(&Sections::new(sections)).map_err(Error::Usage)?;
        if let Some(unknown) = self.stages.keys().find(|name| !registry.iter().any(|s| s.name() == name.as_str())) {
            return Err(Error::Usage(format!("configuration: unknown section [{unknown}]")));
        }
        Ok(registry)
    }

    /// What the tensor operator reads.
    pub fn tensor_config(&self) -> TensorConfig {
        TensorConfig { window: self.window.clone(), tensor: self.tensor.clone() }
    }

    /// Reads a configuration file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read configuration", path, e))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| Error::Usage(format!("configuration {}: {e}", path.display())))?;
        config.stages().map_err(|e| Error::Usage(format!("{} in {}", e, path.display())))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::split::Recipe;

    #[test]
    fn sections_override_defaults_and_typos_are_errors() {
        let c: Config = toml::from_str("[validate]\nrow_gate_fraction = 0.25\n").unwrap();
        assert_eq!(c.validate.row_gate_fraction, 0.25);
        assert_eq!(c.validate.max_bad_row_fraction, 0.1);
        assert_eq!(c.decode, DecodeConfig::default());
        assert!(toml::from_str::<Config>("[validate]\nrow_gate = 0.25\n").is_err());
        let unknown: Config = toml::from_str("[unknown]\n").unwrap();
        let err = unknown.stages().err().unwrap().to_string();
        assert!(err.contains("unknown section [unknown]"), "{err}");
    }

    #[test]
    fn the_readme_configuration_parses_with_every_section() {
        let readme = include_str!("../README.md");
        let block = readme.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
        let c: Config = toml::from_str(block).unwrap();
        assert_eq!(c.split.test_host.as_deref(), Some("lab-rack-01"));
        assert_eq!((c.features.shards, c.classify.guest_min_load_delta), (32, 0.3));
        // The README documents the true defaults of the training settings.
        assert_eq!(c.eval, EvalConfig::default());
        assert_eq!(c.train, ModelsConfig { splits: vec![Recipe::Host], ..ModelsConfig::default() });
    }
}
