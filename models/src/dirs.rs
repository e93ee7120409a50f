//! Where the model sinks read and write. A run's training and evaluation
//! read the features and splits it just published and write beside them;
//! a followed job's training in the background reads a snapshot of one
//! publication instead (the follower publishes the next one meanwhile, and
//! removes the shards it no longer lists), and still writes the models and
//! reports into the output directory.

use std::path::{Path, PathBuf};

/// The directory the inputs are read from and the one outputs go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirs {
    /// Holds `features/` (manifest and shards) and `splits/`.
    pub inputs: PathBuf,
    /// Where `models/` and `eval/` are written.
    pub out: PathBuf,
}

impl Dirs {
    /// Inputs and outputs both under `out`: what a run and the `train` and
    /// `eval` commands use.
    pub fn of(out: &Path) -> Dirs {
        Dirs { inputs: out.to_path_buf(), out: out.to_path_buf() }
    }

    /// `features/` of the inputs.
    pub fn features(&self) -> PathBuf {
        self.inputs.join("features")
    }

    /// `splits/` of the inputs.
    pub fn splits(&self) -> PathBuf {
        self.inputs.join("splits")
    }
}
