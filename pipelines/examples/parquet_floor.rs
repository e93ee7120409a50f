//! What arrow-rs's Parquet writer costs for the tensor shard's columns, with
//! nothing of epiflow around it: the same 920 float32 values and 920 booleans
//! per row, written as the contract's `fixed_size_list` columns and, for
//! comparison, as plain flat columns. The difference is the price of the list
//! levels (a repetition and a definition level for every cell).
//!
//! `cargo run --release -p epiflow-pipelines --example parquet_floor`

use arrow_array::{ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use std::sync::Arc;
use std::time::Instant;

const WIDTH: usize = 920;
const ROWS: usize = 256;

fn main() {
    let x: Vec<f32> = (0..ROWS * WIDTH).map(|i| ((i * 7919) % 1000) as f32 * 0.13).collect();
    let mask: Vec<bool> = (0..ROWS * WIDTH).map(|i| i % 7 != 0).collect();
    let float_item = Arc::new(Field::new("item", DataType::Float32, false));
    let bool_item = Arc::new(Field::new("item", DataType::Boolean, false));
    let lists = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("x", DataType::FixedSizeList(float_item.clone(), WIDTH as i32), false),
            Field::new("mask", DataType::FixedSizeList(bool_item.clone(), WIDTH as i32), false),
        ])),
        vec![
            Arc::new(FixedSizeListArray::new(float_item, WIDTH as i32, Arc::new(Float32Array::from(x.clone())), None)),
            Arc::new(FixedSizeListArray::new(
                bool_item,
                WIDTH as i32,
                Arc::new(BooleanArray::from(mask.clone())),
                None,
            )),
        ],
    )
    .expect("list batch");
    let flat = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float32, false),
            Field::new("mask", DataType::Boolean, false),
        ])),
        vec![Arc::new(Float32Array::from(x)) as ArrayRef, Arc::new(BooleanArray::from(mask))],
    )
    .expect("flat batch");

    for compression in [Compression::ZSTD(ZstdLevel::try_new(1).expect("level")), Compression::UNCOMPRESSED] {
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .build();
        for (layout, batch) in [("fixed_size_list", &lists), ("flat", &flat)] {
            let runs = 20;
            let start = Instant::now();
            for _ in 0..runs {
                let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props.clone())).expect("writer");
                writer.write(batch).expect("write");
                writer.close().expect("close");
            }
            let per_file = start.elapsed().as_secs_f64() / runs as f64;
            let cells = (ROWS * WIDTH * 2) as f64;
            println!(
                "{compression:?} {layout:>15}: {:.2} ms per {ROWS}-row group, {:.1} ns per cell",
                per_file * 1e3,
                per_file / cells * 1e9
            );
        }
    }
}
