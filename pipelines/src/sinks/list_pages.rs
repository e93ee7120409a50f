//! A tensor file's list columns (`x`, `mask`) as Parquet data pages made
//! here rather than by Parquet's column writer.
//!
//! Every cell of a `fixed_size_list` of non-null items is present and each
//! list starts a row, so the levels of a page are the same runs whatever its
//! values: per row, a repetition level 0 then `width − 1` ones, and one run
//! of definition level 1 over every cell. Parquet's column writer took the
//! levels as one `i16` per cell and walked them one by one, three times
//! (to cut batches at row ends, then to encode each kind), and copied the
//! values through buffers it grew page by page: more than zstd itself
//! (BENCHMARKS.md). Here a page is its levels' run headers, the cells'
//! plain bytes and one zstd frame, written by Parquet's own page writer.
//! The column chunk's metadata says what Parquet's writer would (plain
//! values, RLE levels, no statistics: the file's properties turn them off
//! for these columns anyway), without an offset index, which no reader of
//! these columns uses: a row group is the smallest part anyone skips.

use arrow_buffer::ToByteSlice;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::writer::{SerializedPageWriter, SerializedRowGroupWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use std::io;
use std::ops::Range;

/// Bytes of values a page holds at most (Parquet's default page size); a
/// page holds at least one row.
const PAGE_BYTES: usize = 1 << 20;

/// Writes list column chunks of rows `width` cells long in zstd pages,
/// reusing one zstd context and one page buffer.
pub struct ListPages {
    width: usize,
    level: ZstdLevel,
    /// One row's repetition levels as RLE runs (bit width 1: a varint header,
    /// then the value in one byte).
    row_levels: Vec<u8>,
    /// Made at the first page: making it can fail, and writing may.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    page: Vec<u8>,
}

impl ListPages {
    /// Pages for lists of `width` cells (46 × time steps), compressed at `level`.
    pub fn new(width: usize, level: ZstdLevel) -> ListPages {
        let mut row_levels = rle_run(1, 0);
        if width > 1 {
            row_levels.extend(rle_run(width - 1, 1));
        }
        ListPages { width, level, row_levels, compressor: None, page: Vec::new() }
    }

    /// Cells per list.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Writes `cells` (whole rows) as the next column of `group`, float list
    /// column `column`.
    pub fn write_floats<W: io::Write + Send>(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, W>,
        column: &ColumnDescPtr,
        cells: &[f32],
    ) -> io::Result<()> {
        let row_bytes = self.width * 4;
        self.write_chunk(group, column, cells.len(), row_bytes, |page, range| {
            // Plain floats are little-endian IEEE 754: the host's bytes, as
            // Parquet's own writer takes them.
            page.extend_from_slice(cells[range].to_byte_slice());
        })
    }

    /// Writes `cells` (whole rows) as the next column of `group`, boolean
    /// list column `column`: plain booleans are bits, the first cell in the
    /// lowest bit of the first byte.
    pub fn write_bools<W: io::Write + Send>(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, W>,
        column: &ColumnDescPtr,
        cells: &[bool],
    ) -> io::Result<()> {
        let row_bytes = self.width.div_ceil(8);
        self.write_chunk(group, column, cells.len(), row_bytes, |page, range| {
            page.extend(
                cells[range]
                    .chunks(8)
                    .map(|byte| byte.iter().enumerate().fold(0u8, |bits, (i, &on)| bits | (u8::from(on) << i))),
            );
        })
    }

    /// One column chunk of `cells` cells: pages of as many rows as fit in
    /// [`PAGE_BYTES`] at `row_bytes` a row, `put_values` appending the plain
    /// bytes of a range of cells.
    fn write_chunk<W: io::Write + Send>(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, W>,
        column: &ColumnDescPtr,
        cells: usize,
        row_bytes: usize,
        mut put_values: impl FnMut(&mut Vec<u8>, Range<usize>),
    ) -> io::Result<()> {
        if self.width == 0 || !cells.is_multiple_of(self.width) {
            return Err(io::Error::other(format!("{cells} cells are not whole lists of {}", self.width)));
        }
        let rows = cells / self.width;
        let page_rows = (PAGE_BYTES / row_bytes.max(1)).max(1);
        let mut sink = TrackedWrite::new(Vec::new());
        let mut pages = SerializedPageWriter::new(&mut sink);
        let mut uncompressed = 0;
        for first in (0..rows).step_by(page_rows) {
            let n = page_rows.min(rows - first);
            let range = first * self.width..(first + n) * self.width;
            self.page.clear();
            // A data page (v1): repetition levels, then definition levels,
            // each after its length, then the values.
            self.page.extend(len_u32(n * self.row_levels.len())?.to_le_bytes());
            for _ in 0..n {
                self.page.extend_from_slice(&self.row_levels);
            }
            let definition = rle_run(range.len(), 1);
            self.page.extend(len_u32(definition.len())?.to_le_bytes());
            self.page.extend_from_slice(&definition);
            put_values(&mut self.page, range.clone());
            let compressor = match &mut self.compressor {
                Some(compressor) => compressor,
                None => self.compressor.insert(zstd::bulk::Compressor::new(self.level.compression_level())?),
            };
            let data = compressor.compress(&self.page)?;
            let page = Page::DataPage {
                buf: Bytes::from(data),
                num_values: len_u32(range.len())?,
                encoding: Encoding::PLAIN,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            };
            let spec = pages.write_page(CompressedPage::new(page, self.page.len())).map_err(io::Error::other)?;
            uncompressed += spec.uncompressed_size;
        }
        let chunk = sink.into_inner().map_err(io::Error::other)?;
        let as_i64 = |n: usize| i64::try_from(n).map_err(io::Error::other);
        let metadata = ColumnChunkMetaData::builder(column.clone())
            .set_compression(Compression::ZSTD(self.level))
            .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
            .set_total_compressed_size(as_i64(chunk.len())?)
            .set_total_uncompressed_size(as_i64(uncompressed)?)
            .set_num_values(as_i64(cells)?)
            .set_data_page_offset(0)
            .build()
            .map_err(io::Error::other)?;
        let close = ColumnCloseResult {
            bytes_written: chunk.len() as u64,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        group.append_column(&Bytes::from(chunk), close).map_err(io::Error::other)
    }
}

/// An RLE run of `count` levels `value` at bit width 1: the count shifted
/// left by one (the low bit 0 says "run") as a varint, then the value.
fn rle_run(count: usize, value: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    let mut header = (count as u64) << 1;
    while header >= 0x80 {
        out.push(header as u8 | 0x80);
        header >>= 7;
    }
    out.push(header as u8);
    out.push(value);
    out
}

/// `n` as a page's 32-bit count or length.
fn len_u32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::other(format!("{n} is more than a Parquet page holds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_header_is_the_count_doubled_as_a_varint() {
        assert_eq!(rle_run(1, 0), [2, 0]);
        assert_eq!(rle_run(919, 1), [0xae, 0x0e, 1], "919 * 2 = 1838 = 0x0e << 7 | 0x2e");
        let pages = |width| ListPages::new(width, ZstdLevel::default()).row_levels;
        assert_eq!(pages(3), [2, 0, 4, 1]);
        assert_eq!(pages(1), [2, 0], "a list of one cell has no run of ones");
    }
}
