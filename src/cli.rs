//! Command-line interface (SPEC section 9).

use clap::{Args, Parser, Subcommand};
use epiflow_models::arch::Arch;
use epiflow_models::sink::ModelsConfig;
use epiflow_operators::channels::ChannelSet;
use epiflow_operators::split::Recipe;
use std::path::PathBuf;

/// epiflow: from a malware lab's telemetry corpus to validated, quality-checked,
/// windowed training data.
#[derive(Debug, Parser)]
#[command(name = "epiflow", version, about)]
pub struct Cli {
    #[command(flatten)]
    /// Options every command takes.
    pub global: Global,
    #[command(subcommand)]
    /// What to do.
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The receiver store (index.jsonl, episodes/).
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Where outputs go (default: STORE/derived; for synth: the store to write).
    #[arg(long, global = true, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Dataflow worker threads (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
    /// Configuration file (TOML).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print one machine-readable JSON summary on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// timely's own cluster mode: the same command started once per process.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// Processes in the cluster.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub processes: usize,
    /// This process's index (0 reads the index and writes the outputs).
    #[arg(long, default_value_t = 0, value_name = "I")]
    pub process: usize,
    /// One host:port per line, one line per process (default localhost:2101+i).
    #[arg(long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    /// One process: what commands without cluster options run on.
    pub fn local() -> ClusterArgs {
        ClusterArgs { processes: 1, process: 0, hostfile: None }
    }
}

/// Split configuration overrides (over the configuration file's `[split]`).
#[derive(Debug, Args, Clone)]
pub struct SplitArgs {
    /// The `host` split's test host (default: the host covering the most profiles).
    #[arg(long, value_name = "HOST")]
    pub test_host: Option<String>,
    /// Degraded episodes train too (default: accepted only).
    #[arg(long)]
    pub include_degraded: bool,
}

impl SplitArgs {
    /// `config` with these overrides applied.
    pub fn over(self, mut config: epiflow_operators::split::SplitConfig) -> epiflow_operators::split::SplitConfig {
        config.test_host = self.test_host.or(config.test_host);
        config.include_degraded |= self.include_degraded;
        config
    }
}

/// What `watch` and `serve` follow the index with.
#[derive(Debug, Args, Clone)]
pub struct FollowArgs {
    #[command(flatten)]
    /// Window configuration overrides.
    pub window: WindowArgs,
    #[command(flatten)]
    /// Split configuration overrides.
    pub split: SplitArgs,
    #[command(flatten)]
    /// timely's cluster mode.
    pub cluster: ClusterArgs,
}

/// Where and how `epiflow serve` listens.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8490", value_name = "ADDR")]
    pub addr: std::net::SocketAddr,
    /// Required on every route (Authorization: Bearer, or ?token=); needed
    /// on any address but the loopback.
    #[arg(long, env = "EPIFLOW_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The split whose models a replay uses when it names none.
    #[arg(long = "split", value_name = "RECIPE", value_parser = parse_recipe, default_value = "host")]
    pub recipe: Recipe,
}

/// Which models to train (over the configuration file's `[train]`).
#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    /// Train on this split: host, sample or time (repeatable).
    #[arg(long = "split", value_name = "RECIPE", value_parser = parse_recipe)]
    pub splits: Vec<Recipe>,
    /// Only this architecture: gbt, mlp, cnn, gru, lstm, transformer (repeatable; default: all).
    #[arg(long = "arch", value_name = "A", value_parser = parse_arch)]
    pub archs: Vec<Arch>,
    /// Only this channel set: realistic or oracle (repeatable; default: both).
    #[arg(long = "channels", value_name = "SET", value_parser = parse_channels)]
    pub channels: Vec<ChannelSet>,
    /// Train every model that is not current from scratch, never updating
    /// one from its checkpoint ([train.warm] max_share = 0).
    #[arg(long)]
    pub retrain: bool,
}

impl TrainArgs {
    /// `config` with these choices applied: each list given replaces the file's.
    pub fn over(self, mut config: ModelsConfig) -> ModelsConfig {
        config.splits = pick(self.splits, config.splits);
        config.archs = pick(self.archs, config.archs);
        config.channels = pick(self.channels, config.channels);
        if self.retrain {
            config.warm.max_share = 0.0;
        }
        config
    }
}

/// The list given on the command line, else the configuration file's.
fn pick<T>(given: Vec<T>, file: Vec<T>) -> Vec<T> {
    if given.is_empty() {
        file
    } else {
        given
    }
}

fn parse_recipe(s: &str) -> Result<Recipe, String> {
    Recipe::parse(s).ok_or_else(|| format!("unknown split {s:?}: expected host, sample or time"))
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    Arch::parse(s)
        .ok_or_else(|| format!("unknown architecture {s:?}: expected gbt, mlp, cnn, gru, lstm or transformer"))
}

fn parse_channels(s: &str) -> Result<ChannelSet, String> {
    ChannelSet::parse(s).ok_or_else(|| format!("unknown channel set {s:?}: expected realistic or oracle"))
}

/// What `run` and `train` take: the whole pipeline's options.
#[derive(Debug, Args, Clone)]
pub struct PipelineArgs {
    #[command(flatten)]
    /// Window configuration overrides.
    pub window: WindowArgs,
    #[command(flatten)]
    /// Split configuration overrides.
    pub split: SplitArgs,
    #[command(flatten)]
    /// Which models to train.
    pub train: TrainArgs,
    #[command(flatten)]
    /// timely's cluster mode.
    pub cluster: ClusterArgs,
}

/// Window configuration overrides (over the configuration file).
#[derive(Debug, Args, Clone, Copy)]
pub struct WindowArgs {
    /// Window length in seconds (default 10).
    #[arg(long, value_name = "S")]
    pub window_s: Option<f64>,
    /// Window stride in seconds (default 5).
    #[arg(long, value_name = "S")]
    pub stride_s: Option<f64>,
    /// Tensor time steps per second (default 2).
    #[arg(long, value_name = "HZ")]
    pub tensor_hz: Option<f64>,
    /// How old a held point may be, in seconds (default 1).
    #[arg(long, value_name = "S")]
    pub hold_s: Option<f64>,
}

impl From<WindowArgs> for epiflow_engine::config::WindowOverrides {
    fn from(a: WindowArgs) -> Self {
        epiflow_engine::config::WindowOverrides {
            window_s: a.window_s,
            stride_s: a.stride_s,
            tensor_hz: a.tensor_hz,
            hold_s: a.hold_s,
        }
    }
}

/// `epiflow prune`: `--store`, or the earlier tool's flags.
#[derive(Debug, Args, Clone)]
pub struct PruneArgs {
    /// Folder of `<host_id>/<episode_id>.tar.zst` (instead of --store).
    #[arg(long, value_name = "DIR")]
    pub episodes_root: Option<PathBuf>,
    /// The index to read and rewrite (instead of --store).
    #[arg(long, value_name = "FILE")]
    pub index: Option<PathBuf>,
    /// Where --archive moves archives (default with --store: STORE/archive).
    #[arg(long, value_name = "DIR")]
    pub archive_root: Option<PathBuf>,
    /// Only these reasons flag an episode (repeatable; default: every reason).
    #[arg(long = "reason", value_name = "R")]
    pub reasons: Vec<String>,
    /// Only episodes of this lab host.
    #[arg(long, value_name = "H")]
    pub host: Option<String>,
    /// Move flagged archives to the archive folder and drop their index rows.
    #[arg(long)]
    pub archive: bool,
    /// Delete flagged archives and drop their index rows.
    #[arg(long)]
    pub delete: bool,
}

/// The commands (SPEC section 9).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a realistic synthetic receiver store (with truth.jsonl).
    Synth {
        /// Episodes to write.
        #[arg(long)]
        episodes: usize,
        /// Lab hosts (the last one is a contended laptop).
        #[arg(long, default_value_t = 4)]
        hosts: usize,
        /// Random seed: the same seed gives the same store.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Nominal episode length in seconds.
        #[arg(long, default_value_t = crate::synth::DEFAULT_DURATION_S)]
        duration_s: f64,
    },
    /// Validate every indexed episode; writes validation.parquet.
    Validate {
        /// timely's cluster mode.
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Windows and tensors for every usable episode → features/ shards.
    Features {
        /// Window configuration overrides.
        #[command(flatten)]
        window: WindowArgs,
        /// timely's cluster mode.
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// The whole pipeline, reusing every result an earlier run left in OUT/cache;
    /// with --split (or [train] splits), the models too.
    Run(PipelineArgs),
    /// Bring the features and splits up to date (as `run`), then train the
    /// models of --split: every architecture and channel set unless narrowed.
    Train(PipelineArgs),
    /// Score the checkpoints of --split on the split's test side (train
    /// them first): OUT/eval/<recipe>/report.json, report.md and charts.
    Eval {
        /// Which models.
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Keep running: bring every output of `run` up to date as episodes are
    /// appended to the index (or pruned from it), the models of --split (or
    /// [train] splits) in the background. Ctrl-C stops it cleanly.
    Watch {
        /// What is followed, and how.
        #[command(flatten)]
        follow: FollowArgs,
        /// Which models follow the store.
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Keep the outputs current as `watch` does and serve the live dashboard
    /// (SPEC section 15): the page, its event stream, Prometheus metrics and
    /// the JSON routes. Ctrl-C stops it cleanly.
    Serve {
        /// What is followed, and how.
        #[command(flatten)]
        follow: FollowArgs,
        /// Where and how the dashboard listens.
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Classify the windows of episode archives with a trained model, without
    /// shards (SPEC section 15): per window the start, the predicted phase,
    /// the five probabilities and the labelled phase.
    Infer {
        /// A checkpoint folder (OUT/models/<recipe>/<arch>-<channels>).
        #[arg(long, value_name = "DIR")]
        model: std::path::PathBuf,
        /// Episode archives (.tar.zst).
        #[arg(required = true, value_name = "ARCHIVE")]
        archives: Vec<std::path::PathBuf>,
    },
    /// Show the operator graph (each stage's version, configuration, inputs,
    /// fingerprint and output) and what a `run` with this configuration would
    /// recompute, for how many episodes; runs nothing.
    Explain {
        /// Window configuration overrides.
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Inspect or trim the result cache (OUT/cache).
    Cache {
        /// Stats or gc.
        #[command(subcommand)]
        action: CacheAction,
        /// Window configuration overrides.
        #[command(flatten)]
        window: WindowArgs,
    },
    /// List (default), archive or delete the episodes classified as fake.
    Prune(PruneArgs),
    /// Synthesize a small store in a temporary folder and run everything on it.
    Demo {
        /// Keep everything in DIR instead of a temporary folder.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Episodes in the demo store.
        #[arg(long, default_value_t = 300)]
        episodes: usize,
    },
}

/// What `epiflow cache` does.
#[derive(Debug, Subcommand, Clone, Copy)]
pub enum CacheAction {
    /// Entries and bytes per operator and fingerprint; live ones are those
    /// the current configuration uses.
    Stats,
    /// Removes every entry no current fingerprint uses.
    Gc,
}

/// Logs go to stderr; `RUST_LOG` overrides the level chosen by -v/-q.
pub fn init_logging(global: &Global) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
