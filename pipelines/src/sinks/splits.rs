//! `OUT/splits/<recipe>.parquet` and `<recipe>.json` (SPEC section 12): who
//! is on which side, and the counts a reader checks before trusting a figure.

use super::parquet_io::{write_batch, writer_properties};
use crate::output::write_atomically;
use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use epiflow_operators::split::{Assignment, Recipe, Side, Split};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// The split file's schema, in column order.
pub fn schema() -> Schema {
    Schema::new(
        ["host_id", "episode_id", "profile", "side"].map(|name| Field::new(name, DataType::Utf8, false)).to_vec(),
    )
}

/// The summary written beside the split: counts per side and profile, the
/// untested profiles, the test host and the episodes the recipe could not
/// place — or, when the recipe has no split, the error.
pub fn summary(recipe: Recipe, split: &Result<Split, String>) -> serde_json::Value {
    match split {
        Err(error) => json!({ "recipe": recipe.name(), "error": error }),
        Ok(split) => {
            let counts: BTreeMap<&str, BTreeMap<String, usize>> =
                split.counts().into_iter().map(|(side, profiles)| (side.name(), profiles)).collect();
            let episodes: BTreeMap<&str, usize> =
                Side::ALL.iter().map(|s| (s.name(), counts.get(s.name()).map_or(0, |p| p.values().sum()))).collect();
            json!({
                "recipe": recipe.name(),
                "test_host": split.test_host,
                "episodes": episodes,
                "counts": counts,
                "untested_profiles": split.untested_profiles,
                "unplaced": split.unplaced.len(),
            })
        }
    }
}

/// Writes one recipe's files atomically under `dir`. A recipe without a
/// split gets its JSON (with the error) and loses any earlier Parquet file,
/// so nothing downstream trains on a split that no longer holds.
pub fn write(dir: &Path, recipe: Recipe, split: &Result<Split, String>) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let parquet = dir.join(format!("{}.parquet", recipe.name()));
    match split {
        Ok(split) => {
            let column = |f: fn(&Assignment) -> &str| -> ArrayRef {
                Arc::new(split.assignments.iter().map(|a| Some(f(a))).collect::<StringArray>())
            };
            let columns = vec![
                column(|a| &a.host_id),
                column(|a| &a.episode_id),
                column(|a| &a.profile),
                column(|a| a.side.name()),
            ];
            let batch = RecordBatch::try_new(Arc::new(schema()), columns).map_err(io::Error::other)?;
            write_batch(&parquet, &batch, writer_properties(64 * 1024).build())?;
        }
        Err(_) => match std::fs::remove_file(&parquet) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    let text = serde_json::to_vec_pretty(&summary(recipe, split)).map_err(io::Error::other)?;
    write_atomically(&dir.join(format!("{}.json", recipe.name())), |w| w.write_all(&text))
}

/// One recipe's summary (`<recipe>.json`, as [`summary`] made it) from
/// `dir`; `None` when there is none or it does not parse.
pub fn read_summary(dir: &Path, recipe: Recipe) -> Option<serde_json::Value> {
    let text = std::fs::read(dir.join(format!("{}.json", recipe.name()))).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Reads one recipe's placements back from `dir`. When the recipe has no
/// split file the error says why: the recipe's own error from its summary,
/// or that no run has written it.
pub fn read(dir: &Path, recipe: Recipe) -> Result<Vec<Assignment>, String> {
    let parquet = dir.join(format!("{}.parquet", recipe.name()));
    let file = match std::fs::File::open(&parquet) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(match read_summary(dir, recipe).as_ref().and_then(|s| s["error"].as_str()) {
                Some(error) => error.to_string(),
                None => format!("no {recipe} split in {}: run `epiflow run` first", dir.display()),
            });
        }
        Err(e) => return Err(format!("{}: {e}", parquet.display())),
    };
    let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", parquet.display());
    let batches = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| bad(&e))?;
    let mut out = Vec::new();
    for batch in batches {
        let batch = batch.map_err(|e| bad(&e))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| bad(&format!("no string column {name}")))
        };
        let (hosts, episodes, profiles, sides) =
            (column("host_id")?, column("episode_id")?, column("profile")?, column("side")?);
        for row in 0..batch.num_rows() {
            let side =
                Side::parse(sides.value(row)).ok_or_else(|| bad(&format!("unknown side {}", sides.value(row))))?;
            out.push(Assignment {
                host_id: hosts.value(row).to_string(),
                episode_id: episodes.value(row).to_string(),
                profile: profiles.value(row).to_string(),
                side,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split() -> Split {
        let a =
            |e: &str, p: &str, side| Assignment { host_id: "h".into(), episode_id: e.into(), profile: p.into(), side };
        Split {
            recipe: Recipe::Sample,
            test_host: None,
            assignments: vec![a("e1", "x", Side::Train), a("e2", "y", Side::Train), a("e3", "x", Side::Test)],
            unplaced: vec![("h".into(), "e4".into())],
            untested_profiles: vec!["y".into()],
        }
    }

    #[test]
    fn the_split_file_reads_back_row_for_row_and_the_summary_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), Recipe::Sample, &Ok(split())).unwrap();
        let file = std::fs::File::open(dir.path().join("sample.parquet")).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
        let col = |i: usize| -> Vec<String> {
            batch.column(i).as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect()
        };
        assert_eq!(col(1), ["e1", "e2", "e3"]);
        assert_eq!(col(3), ["train", "train", "test"]);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("sample.json")).unwrap()).unwrap();
        assert_eq!(summary["episodes"], json!({"train": 2, "val": 0, "test": 1}));
        assert_eq!(summary["counts"]["train"], json!({"x": 1, "y": 1}));
        assert_eq!((summary["untested_profiles"].clone(), summary["unplaced"].clone()), (json!(["y"]), json!(1)));
    }

    #[test]
    fn read_gives_back_the_assignments_or_says_why_there_are_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), Recipe::Sample).unwrap_err().contains("run `epiflow run` first"));
        write(dir.path(), Recipe::Sample, &Ok(split())).unwrap();
        assert_eq!(read(dir.path(), Recipe::Sample).unwrap(), split().assignments);
        write(dir.path(), Recipe::Sample, &Err("sample split: profile z is missing".into())).unwrap();
        assert_eq!(read(dir.path(), Recipe::Sample).unwrap_err(), "sample split: profile z is missing");
    }

    #[test]
    fn a_recipe_that_fails_keeps_its_error_and_loses_its_old_split() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), Recipe::Sample, &Ok(split())).unwrap();
        write(dir.path(), Recipe::Sample, &Err("sample split: profile z …".into())).unwrap();
        assert!(!dir.path().join("sample.parquet").exists());
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("sample.json")).unwrap()).unwrap();
        assert_eq!(summary["error"], "sample split: profile z …");
    }
}
