//! The six architectures (SPEC section 13) and what each reads.

use epiflow_pipelines::sinks::features::FeatureKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A model family; its name is used on the command line and in paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Gradient-boosted trees on the summary features.
    Gbt,
    /// A multi-layer perceptron on the summary features.
    Mlp,
    /// 1-D convolutions over time on the tensors.
    Cnn,
    /// A GRU over the tensors' time steps.
    Gru,
    /// An LSTM over the tensors' time steps.
    Lstm,
    /// Self-attention over the tensors' time steps.
    Transformer,
}

impl Arch {
    /// Every architecture, in report order.
    pub const ALL: [Arch; 6] = [Arch::Gbt, Arch::Mlp, Arch::Cnn, Arch::Gru, Arch::Lstm, Arch::Transformer];

    /// The name on the command line and in checkpoint paths.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gbt => "gbt",
            Arch::Mlp => "mlp",
            Arch::Cnn => "cnn",
            Arch::Gru => "gru",
            Arch::Lstm => "lstm",
            Arch::Transformer => "transformer",
        }
    }

    /// Parses a name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Which feature files the architecture reads.
    pub fn input(self) -> FeatureKind {
        match self {
            Arch::Gbt | Arch::Mlp => FeatureKind::Summary,
            Arch::Cnn | Arch::Gru | Arch::Lstm | Arch::Transformer => FeatureKind::Tensors,
        }
    }

    /// Time one training window takes, relative to `gbt` (from the
    /// windows/s in BENCHMARKS.md). The training sink starts the slowest
    /// models first, so that no slow one starts last while a core idles.
    pub fn relative_cost(self) -> u32 {
        match self {
            Arch::Gbt => 1,
            Arch::Mlp => 3,
            Arch::Cnn => 18,
            Arch::Gru => 40,
            Arch::Lstm => 51,
            Arch::Transformer => 113,
        }
    }

    /// The version of the architecture's layers and sizes: part of every
    /// checkpoint's inputs, so changing a network retrains it.
    pub fn version(self) -> u32 {
        1
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_the_inputs_follow_the_spec_table() {
        for arch in Arch::ALL {
            assert_eq!(Arch::parse(arch.name()), Some(arch));
        }
        assert_eq!(Arch::parse("rnn"), None);
        let summary: Vec<Arch> = Arch::ALL.into_iter().filter(|a| a.input() == FeatureKind::Summary).collect();
        assert_eq!(summary, [Arch::Gbt, Arch::Mlp]);
    }
}
