//! epiflow's run engine: every step of a run as a library call. A command
//! of the `epiflow` binary parses its arguments, makes one call here and
//! prints what it returns; an out-of-tree pipeline makes the same calls.
//!
//! - [`Job`]: a corpus job — store, output folder, cluster, configuration
//!   and stage registry — prepared into the dataflow's plan, run once over
//!   the index ([`Job::run`]) or following it ([`Job::follow`]), every
//!   output published; with `[train] splits`, the training and evaluation
//!   sinks after it ([`training`], [`evaluation`]).
//! - [`Job::explain`], [`Job::cache_stats`], [`Job::cache_gc`]: what a run
//!   would do, and what its cache holds.
//! - [`prune::run`]: the fake episodes listed, archived or deleted.
//! - [`infer::infer`]: a checkpoint run on archives, without shards.
//!
//! Progress, logs and the dashboard's producers hear a run through an
//! [`Observer`].

mod background;
pub mod cache;
pub mod cache_folders;
pub mod config;
pub mod error;
pub mod evaluation;
pub mod explain;
mod features;
mod follow;
pub mod infer;
mod job;
pub mod observer;
pub mod prune;
mod publish;
mod run_memo;
mod snapshot;
pub mod stats;
pub mod training;

pub use config::Config;
pub use error::{Error, Result};
pub use job::{Job, Mode};
pub use observer::{Logs, Observer, Part};
pub use stats::RunStats;

/// Locks `mutex`, poisoned or not: a poisoned lock only means another
/// thread panicked mid-update of state that stays usable.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
