//! Run configuration: a TOML file of sections. The engine's own settings
//! have a field each (`[decode]`, `[features]`, `[split]`, `[train]`,
//! `[eval]`, `[watch]`); every other section belongs to a registered stage, named by
//! the stage, and reaches that stage's `configure` through the registry —
//! the standard stages and those registered out of tree alike. A section no
//! one claims is an error listing the known ones, and unknown keys inside a
//! section are errors, so a typo never silently leaves a default in force.

use crate::error::{Error, Result};
use epiflow_models::eval::EvalConfig;
use epiflow_models::sink::ModelsConfig;
use epiflow_operators::decode::{Decode, DecodeConfig};
use epiflow_operators::split::SplitConfig;
use epiflow_operators::tensor::Tensor;
use epiflow_operators::window::Window;
use epiflow_operators::Operator;
use epiflow_pipelines::index_watch::WatchConfig;
use epiflow_pipelines::stages::{Registry, Sections, Stages};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything configurable: the engine's sections, and the stages' by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// How archives are read (`[decode]`): the engine's first operator,
    /// before any stage.
    pub decode: DecodeConfig,
    /// How feature shards are laid out (`[features]`).
    pub features: FeaturesConfig,
    /// The held-out splits (`[split]`: `test_host`, `include_degraded`).
    pub split: SplitConfig,
    /// The models a run trains (`[train]`: `splits`, `archs`, `channels`,
    /// `[train.neural]`, `[train.gbt]`).
    pub train: ModelsConfig,
    /// How test-side figures are resampled (`[eval]`: `resamples`, `seed`).
    pub eval: EvalConfig,
    /// How `watch` and `serve` hear of index changes (`[watch]`:
    /// `notifications`, `poll_ms`).
    pub watch: WatchConfig,
    /// Every other section, by name: a registered stage's configuration
    /// (`[validate]`, `[classify]`, `[window]`, `[tensor]`, or one
    /// registered out of tree), read only by that stage.
    #[serde(flatten)]
    pub stages: BTreeMap<String, toml::Value>,
    /// The file it was read from: every error about a section names it.
    #[serde(skip)]
    pub file: Option<PathBuf>,
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

/// Command-line overrides of the window stage's and the tensor stage's
/// sections.
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowOverrides {
    /// `[window] window_s`.
    pub window_s: Option<f64>,
    /// `[window] stride_s`.
    pub stride_s: Option<f64>,
    /// `[tensor] hz`.
    pub tensor_hz: Option<f64>,
    /// `[tensor] hold_s`.
    pub hold_s: Option<f64>,
}

impl Config {
    /// The sections the engine reads itself; every other one is a stage's.
    pub const SECTIONS: [&'static str; 6] = ["decode", "features", "split", "train", "eval", "watch"];

    /// Reads a configuration file; `None` gives the defaults. The stages'
    /// sections are read when a registry is configured with them
    /// ([`Config::stages`]).
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read configuration", path, e))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| Error::Usage(format!("configuration {}: {e}", path.display())))?;
        Ok(Config { file: Some(path.to_path_buf()), ..config })
    }

    /// Applies `--window-s` and friends over the file's values (the window
    /// and tensor stages check them when configured).
    pub fn with_overrides(mut self, o: WindowOverrides) -> Result<Config> {
        let overrides = [
            (Window::NAME, "window_s", o.window_s),
            (Window::NAME, "stride_s", o.stride_s),
            (Tensor::NAME, "hz", o.tensor_hz),
            (Tensor::NAME, "hold_s", o.hold_s),
        ];
        for (section, key, value) in overrides {
            let Some(value) = value else { continue };
            let table =
                self.stages.entry(section.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
            // A section that is not a table stays as written: configuring
            // its stage says what is wrong with it.
            if let toml::Value::Table(table) = table {
                table.insert(key.to_string(), toml::Value::Float(value));
            }
        }
        if self.features.shards == 0 {
            return Err(Error::Usage("features.shards must be at least 1".into()));
        }
        Ok(self)
    }

    /// The stages' sections, as the registry reads them.
    pub fn sections(&self) -> Result<Sections> {
        let sections = self
            .stages
            .iter()
            .map(|(name, table)| {
                let json =
                    serde_json::to_value(table).map_err(|e| Error::Usage(format!("configuration [{name}]: {e}")))?;
                Ok((name.clone(), json))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Sections::new(sections))
    }

    /// `registry`'s stages, each configured from its section. A section
    /// that neither the engine nor a registered stage claims is an error
    /// naming the known ones.
    pub fn stages(&self, registry: &Registry) -> Result<Stages> {
        let in_file = |e: String| match &self.file {
            Some(path) => Error::Usage(format!("{e} in {}", path.display())),
            None => Error::Usage(e),
        };
        if let Some(unknown) = self.stages.keys().find(|name| !registry.names().any(|s| s == name.as_str())) {
            let mut known: Vec<&str> = Config::SECTIONS.into_iter().chain(registry.names()).collect();
            known.sort_unstable();
            let known = known.join(", ");
            return Err(in_file(format!("configuration: unknown section [{unknown}]; known sections: {known}")));
        }
        registry.configure(&self.sections()?).map_err(in_file)
    }

    /// The decoder of this configuration.
    pub fn decode(&self) -> Decode {
        Decode { config: self.decode.clone(), ..Decode::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::classify::Classify;
    use epiflow_operators::split::Recipe;
    use epiflow_operators::validate::Validate;

    #[test]
    fn sections_override_defaults_and_typos_are_errors() {
        let c: Config = toml::from_str("[validate]\nrow_gate_fraction = 0.25\n").unwrap();
        let stages = c.stages(&Registry::standard()).unwrap();
        let validate = &stages.stage::<Validate>().unwrap().config;
        assert_eq!(validate.row_gate_fraction, 0.25);
        assert_eq!(validate.max_bad_row_fraction, 0.1);
        assert_eq!(c.decode, DecodeConfig::default());
        let typo: Config = toml::from_str("[validate]\nrow_gate = 0.25\n").unwrap();
        let err = typo.stages(&Registry::standard()).err().unwrap().to_string();
        assert!(err.starts_with("configuration [validate]: unknown field `row_gate`"), "{err}");
        assert!(toml::from_str::<Config>("[split]\ntest = 1\n").is_err(), "the engine's sections are typed");
        let unknown: Config = toml::from_str("[unknown]\n").unwrap();
        let err = unknown.stages(&Registry::standard()).err().unwrap().to_string();
        assert_eq!(
            err,
            "configuration: unknown section [unknown]; known sections: classify, decode, eval, features, split, \
             tensor, train, validate, watch, window"
        );
    }

    #[test]
    fn an_error_about_a_section_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.toml");
        std::fs::write(&path, "[classify]\nguest_min_load = 1\n").unwrap();
        let err = Config::load(Some(&path)).unwrap().stages(&Registry::standard()).err().unwrap().to_string();
        assert!(err.starts_with("configuration [classify]: unknown field `guest_min_load`"), "{err}");
        assert!(err.ends_with(&format!(" in {}", path.display())), "{err}");
    }

    #[test]
    fn overrides_reach_the_window_and_tensor_stages_and_are_checked_there() {
        let c: Config = toml::from_str("[window]\nstride_s = 2\n").unwrap();
        let o = WindowOverrides { window_s: Some(20.0), tensor_hz: Some(4.0), ..Default::default() };
        let stages = c.with_overrides(o).unwrap().stages(&Registry::standard()).unwrap();
        let window = &stages.stage::<Window>().unwrap().spec;
        assert_eq!((window.window_s, window.stride_s), (20.0, 2.0), "an integer in the file reads as seconds");
        let tensor = &stages.stage::<Tensor>().unwrap().config;
        assert_eq!((tensor.window.window_s, tensor.tensor.hz, tensor.timesteps()), (20.0, 4.0, 80));
        let zero = WindowOverrides { tensor_hz: Some(0.0), ..Default::default() };
        let err = Config::default().with_overrides(zero).unwrap().stages(&Registry::standard()).err().unwrap();
        assert!(err.to_string().starts_with("tensor hz 0 gives no time step"), "{err}");
    }

    #[test]
    fn the_readme_configuration_parses_with_every_section() {
        let readme = include_str!("../../README.md");
        let block = readme.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
        let c: Config = toml::from_str(block).unwrap();
        let stages = c.stages(&Registry::standard()).unwrap();
        assert_eq!(c.split.test_host.as_deref(), Some("lab-rack-01"));
        assert_eq!((c.features.shards, stages.stage::<Classify>().unwrap().config.guest_min_load_delta), (32, 0.3));
        // The README documents the true defaults of the training settings.
        assert_eq!(c.eval, EvalConfig::default());
        assert_eq!(c.watch, WatchConfig::default());
        assert_eq!(c.train, ModelsConfig { splits: vec![Recipe::Host], ..ModelsConfig::default() });
    }
}
