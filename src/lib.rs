//! The `epiflow` command line: argument parsing, the commands (each one
//! call into `epiflow-engine`, then printing), the live dashboard's server
//! and the synthetic store generator.

pub mod allocator;
pub mod cli;
pub mod commands;
pub mod dashboard;
pub mod progress;
pub mod synth;
pub mod tables;
