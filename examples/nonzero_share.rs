//! A worked example of adding a stage, written as `docs/operators.md` says:
//! the share of non-zero points per channel of every usable episode. It runs
//! in the real pipeline, is fingerprinted and cached like the built-in
//! stages, and is published as `OUT/nonzero_share.parquet`.
//!
//! Usage: `cargo run --release --example nonzero_share -- STORE OUT [CONFIG]`
//! — `CONFIG` a TOML file whose `[nonzero_share]` section (`zero = 0.5`)
//! reaches the stage, like any other section reaches its stage.
//!
//! In-tree, the same file would go to `pipelines/src/stages/` with one line
//! in the `registry!` there; out of tree, [`Registry::with`] adds it to the
//! standard stages, as `main` does.

use epiflow_engine::{Config, Job, Logs, Mode, RunStats};
use epiflow_operators::model::AlignedEpisode;
use epiflow_operators::Operator;
use epiflow_pipelines::stages::{Applies, Registry, Sections, Stage};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// What the stage reads from its `[nonzero_share]` section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NonZeroConfig {
    /// Values whose magnitude is at most this count as zero.
    pub zero: f64,
}

/// Per channel, in registry order: the share of its points that are
/// non-zero (NaN when the channel has no point), and how many points it has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NonZeroShare {
    /// Non-zero points over points, per channel.
    pub share: Vec<f64>,
    /// Points, per channel.
    pub points: Vec<u64>,
}

/// The operator: plain Rust, aligned episode in, record out.
#[derive(Clone, Debug, Default)]
pub struct NonZero {
    /// What counts as zero.
    pub config: NonZeroConfig,
}

impl Operator for NonZero {
    const NAME: &'static str = "nonzero_share";
    const VERSION: u32 = 1;
    type Config = NonZeroConfig;
    type Input = AlignedEpisode;
    type Output = NonZeroShare;

    fn config(&self) -> &NonZeroConfig {
        &self.config
    }

    fn apply(&self, episode: &AlignedEpisode) -> NonZeroShare {
        let (share, points) = episode
            .channels
            .iter()
            .map(|series| {
                let points = series.v.iter().filter(|v| !v.is_nan()).count();
                let nonzero = series.v.iter().filter(|v| v.abs() > self.config.zero).count();
                (nonzero as f64 / points as f64, points as u64)
            })
            .unzip();
        NonZeroShare { share, points }
    }
}

/// How the engine treats it: for usable episodes, cached as a record (the
/// default), published as a table.
impl Stage for NonZero {
    const APPLIES: Applies = Applies::Usable;
    const PUBLISHES: Option<&'static str> = Some("nonzero_share.parquet");

    fn configure(sections: &Sections) -> Result<Self, String> {
        Ok(NonZero { config: sections.get(Self::NAME)? })
    }
}

/// The standard stages followed by this one.
pub fn registry() -> Registry {
    Registry::standard().with::<NonZero>()
}

/// `epiflow run` over the standard stages and this one, on `store` into
/// `out`, configured by the TOML file `config` (the defaults without one):
/// the engine's one library call. Returns what `run.json` says.
pub fn run(store: &Path, out: &Path, config: Option<&Path>) -> Result<RunStats, Box<dyn std::error::Error>> {
    let job = Job { config: Config::load(config)?, registry: registry(), ..Job::new(store, out) };
    let stats = job.run(Mode::Run, Arc::new(Logs))?;
    Ok(stats.ok_or("one process: the leader returns the statistics")?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(store), Some(out), config) = (args.next(), args.next(), args.next()) else {
        return Err("usage: nonzero_share STORE OUT [CONFIG]".into());
    };
    let stats = run(store.as_ref(), out.as_ref(), config.as_deref().map(Path::new))?;
    for (name, o) in &stats.operators {
        println!("{name:<14} computed {:>6}  cached {:>6}  failed {:>4}", o.computed, o.cached, o.failed);
    }
    println!("wrote {}", Path::new(&out).join("nonzero_share.parquet").display());
    Ok(())
}
