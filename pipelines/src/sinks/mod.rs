//! Sinks: corpus-level outputs written as Parquet, atomically.
pub mod feature_sink;
pub mod features;
pub mod list_pages;
pub mod manifest;
pub mod parquet_io;
pub mod quality;
pub mod splits;
pub mod table;
pub mod validation;
