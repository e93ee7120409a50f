//! Run configuration: a TOML file whose sections are the operators' own
//! configurations. Unknown keys are errors, so a typo never silently leaves a
//! default in force.

use crate::error::{Error, Result};
use epiflow_operators::classify::ClassifyConfig;
use epiflow_operators::decode::DecodeConfig;
use epiflow_operators::validate::ValidateConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything configurable, by operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub decode: DecodeConfig,
    pub validate: ValidateConfig,
    pub classify: ClassifyConfig,
}

impl Config {
    /// Reads a configuration file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read configuration", path, e))?;
        toml::from_str(&text).map_err(|e| Error::Usage(format!("configuration {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_override_defaults_and_typos_are_errors() {
        let c: Config = toml::from_str("[validate]\nrow_gate_fraction = 0.25\n").unwrap();
        assert_eq!(c.validate.row_gate_fraction, 0.25);
        assert_eq!(c.validate.max_bad_row_fraction, 0.1);
        assert_eq!(c.decode, DecodeConfig::default());
        assert!(toml::from_str::<Config>("[validate]\nrow_gate = 0.25\n").is_err());
        assert!(toml::from_str::<Config>("[unknown]\n").is_err());
    }
}
