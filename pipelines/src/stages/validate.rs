//! Validation (SPEC section 6) as a stage: every indexed episode gets a
//! record, an unreadable archive included, published as `validation.parquet`.

pub use epiflow_operators::validate::Validate;

use epiflow_operators::Operator;
use super::{IndexKey, Sections, Stage};
use crate::sinks::validation;
use epiflow_operators::index::IndexEntry;
use epiflow_operators::model::Failure;
use epiflow_operators::validate::ValidationRecord;
use std::io;
use std::path::Path;

impl Stage for Validate {
    const PUBLISHES: Option<&'static str> = Some("validation.parquet");

    fn configure(sections: &Sections) -> Result<Self, String> {
        Ok(Validate { config: sections.get(Self::NAME)? })
    }

    /// Besides the bytes, the record names the episode and compares the
    /// sha256 the index claims (a mismatch rejects).
    fn key(&self, entry: &IndexEntry) -> String {
        format!("{} {}", entry.key, entry.sha256.as_deref().unwrap_or("-"))
    }

    fn on_failure(&self, entry: &IndexEntry, failure: &Failure) -> Option<ValidationRecord> {
        Some(ValidationRecord::errored(entry, failure))
    }

    fn write_table(&self, path: &Path, rows: Vec<(&IndexKey, ValidationRecord)>) -> io::Result<()> {
        let records: Vec<ValidationRecord> = rows.into_iter().map(|(_, r)| r).collect();
        validation::write(path, &records)
    }
}
