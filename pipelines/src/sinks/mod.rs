//! Sinks: corpus-level outputs written as Parquet, atomically.
pub mod features;
pub mod parquet_io;
pub mod quality;
pub mod validation;
