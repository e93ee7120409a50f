//! Sinks: corpus-level outputs written as Parquet, atomically.

pub mod parquet_io;
pub mod validation;
