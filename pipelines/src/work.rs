//! One episode's journey through the operators: its index entry, the current
//! value (or the failure that stopped it) and what each operator did with it.

use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::Failure;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::Instant;

/// How a result came about in a run: an operator's for one episode, and a
/// sink's for one item (a model trained, a split evaluated), as `run.json`
/// counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Computed on this run.
    Computed,
    /// Reused from an earlier run: read from the cache, found current, or
    /// not needed at all because every result derived from it was reused.
    Cached,
    /// Attempted on this run, and failed (the episode failed here; the
    /// model's or split's line says why).
    Failed,
}

/// What one operator did with one episode.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StageSample {
    /// The operator's name (borrowed where it is made, owned where it is
    /// read from another process: one allocation fewer per operator and episode).
    pub operator: Cow<'static, str>,
    /// Time spent in it.
    pub nanos: u64,
    /// Computed, reused or failed.
    pub status: Status,
}

/// An episode in flight. The trace travels with it so that statistics are exact
/// across workers and processes without shared state.
#[derive(Clone, Debug)]
pub struct Work<T> {
    /// The episode, as the index names it.
    pub entry: IndexEntry,
    /// What each operator did so far.
    pub trace: Vec<StageSample>,
    /// The current value, or the failure that stopped the episode.
    pub state: Result<T, Failure>,
}

impl<T> Work<T> {
    /// Starts an episode's journey.
    pub fn start(entry: IndexEntry, value: T) -> Work<T> {
        Work { entry, trace: Vec::new(), state: Ok(value) }
    }

    /// Runs one operator on the value, timing it; failures pass through untouched.
    pub fn then<U>(self, operator: &'static str, f: impl FnOnce(T) -> Result<U, Failure>) -> Work<U> {
        self.step(operator, |value| {
            let out = f(value);
            let status = if out.is_ok() { Status::Computed } else { Status::Failed };
            (out, status)
        })
    }

    /// Like [`Work::then`], but `f` says how it got its result (computed, or
    /// reused from the cache).
    pub fn step<U>(self, operator: &'static str, f: impl FnOnce(T) -> (Result<U, Failure>, Status)) -> Work<U> {
        let Work { entry, mut trace, state } = self;
        let state = match state {
            Ok(value) => {
                let start = Instant::now();
                let (out, status) = f(value);
                trace.push(StageSample {
                    operator: Cow::Borrowed(operator),
                    nanos: start.elapsed().as_nanos() as u64,
                    status,
                });
                out
            }
            Err(failure) => Err(failure),
        };
        Work { entry, trace, state }
    }
}
