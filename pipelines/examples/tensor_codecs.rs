//! What writing a run's tensor columns costs under other Parquet settings:
//! reads every tensor shard under `FEATURES_DIR/tensors`, then writes their
//! `x` and `mask` columns again in memory, in 256-row groups, through
//! Parquet's column writers as the feature sink does, once per setting
//! (encoding of `x`, codec, values per column-writer batch), and through
//! epiflow's own pages (`ListPages`, what the sink writes), and prints the
//! best CPU time of five and the bytes. "whole rows" is a batch of the rows
//! that the default 1,024 levels reach, which Parquet otherwise finds by
//! walking the repetition levels. epiflow's pages are read back and
//! checked cell for cell.
//!
//! `cargo run --release -p epiflow-pipelines --example tensor_codecs -- OUT/features`

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_schema::{DataType, Field, Schema};
use epiflow_pipelines::sinks::list_pages::ListPages;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::data_type::{BoolType, FloatType};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use std::sync::Arc;
use std::time::Instant;

const ROWS: usize = 256;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: tensor_codecs FEATURES_DIR")?);
    let (mut groups, mut width) = (Vec::new(), 0usize);
    let mut shards: Vec<_> = std::fs::read_dir(dir.join("tensors"))?.collect::<Result<_, _>>()?;
    shards.sort_by_key(|e| e.path());
    for shard in shards {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(shard.path())?)?
            .with_batch_size(ROWS)
            .build()?;
        for batch in reader {
            let batch = batch?;
            let x = batch.column_by_name("x").ok_or("no x")?.as_fixed_size_list();
            width = x.value_length() as usize;
            let values = x.values().as_primitive::<Float32Type>().values().to_vec();
            let mask = batch.column_by_name("mask").ok_or("no mask")?.as_fixed_size_list();
            let bools: Vec<bool> = mask.values().as_boolean().iter().map(|b| b.unwrap_or(false)).collect();
            groups.push((values, bools));
        }
    }
    let cells: usize = groups.iter().map(|g| g.0.len()).sum();
    println!("{} row groups, {cells} cells of x ({:.0} MB as f32)", groups.len(), cells as f64 * 4e-6);
    let item = |t| Arc::new(Field::new("item", t, false));
    let schema = Schema::new(vec![
        Field::new("x", DataType::FixedSizeList(item(DataType::Float32), width as i32), false),
        Field::new("mask", DataType::FixedSizeList(item(DataType::Boolean), width as i32), false),
    ]);
    let parquet_schema = ArrowSchemaConverter::new().convert(&schema)?;
    let definition = vec![1i16; ROWS * width];
    let repetition: Vec<i16> = (0..ROWS * width).map(|i| i16::from(i % width != 0)).collect();
    let zstd = |l| Compression::ZSTD(ZstdLevel::try_new(l).expect("level"));
    // The values per column-writer batch; `None`: epiflow's pages instead.
    let rows = Some(1024usize.div_ceil(width) * width);
    let settings = [
        ("plain zstd1", Encoding::PLAIN, zstd(1), Some(1024)),
        ("plain zstd1 whole rows", Encoding::PLAIN, zstd(1), rows),
        ("epiflow's pages (zstd1)", Encoding::PLAIN, zstd(1), None),
        ("split zstd1", Encoding::BYTE_STREAM_SPLIT, zstd(1), Some(1024)),
        ("plain lz4", Encoding::PLAIN, Compression::LZ4_RAW, Some(1024)),
        ("plain none", Encoding::PLAIN, Compression::UNCOMPRESSED, Some(1024)),
        ("plain none whole rows", Encoding::PLAIN, Compression::UNCOMPRESSED, rows),
    ];
    let mut best = vec![f64::INFINITY; settings.len()];
    let mut sizes = vec![0usize; settings.len()];
    for _ in 0..5 {
        for (i, (_, encoding, compression, batch)) in settings.iter().enumerate() {
            let x_item = ColumnPath::new(vec!["x".into(), "list".into(), "item".into()]);
            let props = Arc::new(
                WriterProperties::builder()
                    .set_compression(*compression)
                    .set_dictionary_enabled(false)
                    .set_statistics_enabled(EnabledStatistics::None)
                    .set_column_encoding(x_item, *encoding)
                    .set_write_batch_size(batch.unwrap_or(1024))
                    .build(),
            );
            let start = Instant::now();
            let mut file = SerializedFileWriter::new(Vec::new(), parquet_schema.root_schema_ptr(), props)?;
            let columns: Vec<_> = (0..2).map(|i| file.schema_descr().column(i)).collect();
            let mut pages = ListPages::new(width, ZstdLevel::try_new(1)?);
            for (x, mask) in &groups {
                let mut group = file.next_row_group()?;
                if batch.is_none() {
                    pages.write_floats(&mut group, &columns[0], x)?;
                    pages.write_bools(&mut group, &columns[1], mask)?;
                    group.close()?;
                    continue;
                }
                let n = x.len();
                let mut column = group.next_column()?.ok_or("x")?;
                column.typed::<FloatType>().write_batch(x, Some(&definition[..n]), Some(&repetition[..n]))?;
                column.close()?;
                let mut column = group.next_column()?.ok_or("mask")?;
                column.typed::<BoolType>().write_batch(mask, Some(&definition[..n]), Some(&repetition[..n]))?;
                column.close()?;
                group.close()?;
            }
            let written = file.into_inner()?;
            best[i] = best[i].min(start.elapsed().as_secs_f64());
            sizes[i] = written.len();
            if batch.is_none() {
                check_reads_back(written, &groups)?;
            }
        }
    }
    for (i, (name, ..)) in settings.iter().enumerate() {
        println!("{name:>22}: best of 5 {:.3} s, {:.1} MB", best[i], sizes[i] as f64 * 1e-6);
    }
    Ok(())
}

/// Every `x` and `mask` cell of `file` equals the cell it was written from.
fn check_reads_back(file: Vec<u8>, groups: &[(Vec<f32>, Vec<bool>)]) -> Result<(), Box<dyn std::error::Error>> {
    let (mut x, mut mask) = (Vec::new(), Vec::new());
    for batch in ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file))?.build()? {
        let batch = batch?;
        x.extend(
            batch
                .column(0)
                .as_list::<i32>()
                .values()
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|v| v.to_bits()),
        );
        mask.extend(batch.column(1).as_list::<i32>().values().as_boolean().iter().map(|b| b == Some(true)));
    }
    let want_x = groups.iter().flat_map(|g| g.0.iter().map(|v| v.to_bits()));
    let want_mask = groups.iter().flat_map(|g| g.1.iter().copied());
    if x.into_iter().ne(want_x) || mask.into_iter().ne(want_mask) {
        return Err("own pages read back differently".into());
    }
    Ok(())
}
