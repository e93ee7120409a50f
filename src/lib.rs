//! The `epiflow` command line: configuration, run statistics and the commands
//! that drive the dataflows of `epiflow-pipelines`.

pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod progress;
pub mod prune;
pub mod stats;
pub mod synth;
