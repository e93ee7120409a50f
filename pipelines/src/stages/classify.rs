//! Quality classification (SPEC section 7) as a stage, published as
//! `quality.parquet`.

pub use epiflow_operators::classify::Classify;

use epiflow_operators::Operator;
use super::{IndexKey, Sections, Stage};
use crate::sinks::quality;
use epiflow_operators::classify::QualityRecord;
use epiflow_operators::index::IndexEntry;
use std::io;
use std::path::Path;

impl Stage for Classify {
    const PUBLISHES: Option<&'static str> = Some("quality.parquet");

    fn configure(sections: &Sections) -> Result<Self, String> {
        Ok(Classify { config: sections.get(Self::NAME)? })
    }

    /// The record names the episode.
    fn key(&self, entry: &IndexEntry) -> String {
        entry.key.to_string()
    }

    fn write_table(&self, path: &Path, rows: Vec<(&IndexKey, QualityRecord)>) -> io::Result<()> {
        let records: Vec<QualityRecord> = rows.into_iter().map(|(_, r)| r).collect();
        quality::write(path, &records)
    }
}
