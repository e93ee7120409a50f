//! One episode's journey through the operators: its index entry, the current
//! value (or the failure that stopped it) and what each operator did with it.

use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::Failure;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How an operator's result for one episode came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// Computed on this run.
    Computed,
    /// Reused from an earlier run: read from the cache, or not needed at all
    /// because every result derived from it was reused.
    Cached,
    /// Computed on this run, and the episode failed here.
    Failed,
}

/// What one operator did with one episode.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StageSample {
    pub operator: String,
    pub nanos: u64,
    pub status: Status,
}

/// An episode in flight. The trace travels with it so that statistics are exact
/// across workers and processes without shared state.
#[derive(Clone, Debug)]
pub struct Work<T> {
    pub entry: IndexEntry,
    pub trace: Vec<StageSample>,
    pub state: Result<T, Failure>,
}

impl<T> Work<T> {
    /// Starts an episode's journey.
    pub fn start(entry: IndexEntry, value: T) -> Work<T> {
        Work { entry, trace: Vec::new(), state: Ok(value) }
    }

    /// Runs one operator on the value, timing it; failures pass through untouched.
    pub fn then<U>(self, operator: &str, f: impl FnOnce(T) -> Result<U, Failure>) -> Work<U> {
        self.step(operator, |value| {
            let out = f(value);
            let status = if out.is_ok() { Status::Computed } else { Status::Failed };
            (out, status)
        })
    }

    /// Like [`Work::then`], but `f` says how it got its result (computed, or
    /// reused from the cache).
    pub fn step<U>(self, operator: &str, f: impl FnOnce(T) -> (Result<U, Failure>, Status)) -> Work<U> {
        let Work { entry, mut trace, state } = self;
        let state = match state {
            Ok(value) => {
                let start = Instant::now();
                let (out, status) = f(value);
                trace.push(StageSample {
                    operator: operator.to_string(),
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
