//! Reading epiflow's feature shards from Rust: every tensor shard as
//! `(windows, 46, timesteps)` values, masks and labels.
//!
//! Usage: `cargo run --release --example read_shards -- STORE/derived/features`

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: read_shards FEATURES_DIR")?);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
    let steps = manifest["window"]["timesteps"].as_u64().ok_or("manifest without timesteps")? as usize;
    let (mut windows, mut present, mut per_label) = (0usize, 0usize, [0usize; 5]);
    let mut shards: Vec<_> = std::fs::read_dir(dir.join("tensors"))?.collect::<Result<_, _>>()?;
    shards.sort_by_key(|e| e.path());
    for shard in shards {
        for batch in ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(shard.path())?)?.build()? {
            let batch = batch?;
            let x = batch.column_by_name("x").ok_or("no x")?.as_fixed_size_list();
            let mask = batch.column_by_name("mask").ok_or("no mask")?.as_fixed_size_list();
            let labels = batch.column_by_name("label").ok_or("no label")?.as_primitive::<Int32Type>();
            let values = x.values().as_primitive::<Float32Type>().values(); // n × 46 × steps, channel-major
            assert_eq!(values.len(), batch.num_rows() * 46 * steps);
            present += mask.values().as_boolean().true_count();
            for label in labels.values() {
                per_label[*label as usize] += 1;
            }
            windows += batch.num_rows();
        }
    }
    println!(
        "{windows} windows of 46 x {steps}; {:.1}% of cells present; windows per class id: {per_label:?}",
        100.0 * present as f64 / (windows * 46 * steps).max(1) as f64
    );
    Ok(())
}
