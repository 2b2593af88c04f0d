//! Row tables for people and tools: written as CSV and Parquet through polars, one pair of
//! files per table. Every stage that reports per-block or per-solution figures (scores, costs,
//! search results) writes through here; it knows nothing of what the columns mean.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct TableError {
    pub path: PathBuf,
    pub problem: String,
}

/// One column's values.
pub enum Values {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Text(Vec<String>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }
}

/// Writes `columns` (all of one length) to `<stem>.csv` and `<stem>.parquet`; returns both
/// paths.
pub fn write_table(stem: &Path, columns: Vec<(&str, Values)>) -> Result<(PathBuf, PathBuf), TableError> {
    let csv = stem.with_extension("csv");
    let parquet = stem.with_extension("parquet");
    let fail = |path: &Path, problem: String| TableError {
        path: path.to_path_buf(),
        problem,
    };
    let height = columns.first().map_or(0, |(_, v)| v.len());
    let columns: Vec<Column> = columns
        .into_iter()
        .map(|(name, values)| match values {
            Values::Int(v) => Column::new(name.into(), v),
            Values::Float(v) => Column::new(name.into(), v),
            Values::Text(v) => Column::new(name.into(), v),
        })
        .collect();
    let mut frame = DataFrame::new(height, columns).map_err(|e| fail(stem, e.to_string()))?;
    let file = File::create(&csv).map_err(|e| fail(&csv, e.to_string()))?;
    CsvWriter::new(file)
        .finish(&mut frame)
        .map_err(|e| fail(&csv, e.to_string()))?;
    let file = File::create(&parquet).map_err(|e| fail(&parquet, e.to_string()))?;
    ParquetWriter::new(file)
        .finish(&mut frame)
        .map_err(|e| fail(&parquet, e.to_string()))?;
    Ok((csv, parquet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_csv_and_parquet_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (csv, parquet) = write_table(
            &dir.path().join("t"),
            vec![
                ("layer", Values::Int(vec![0, 1])),
                (
                    "block",
                    Values::Text(vec!["kv1 + ffn96".into(), "attn_noop + ffn_noop".into()]),
                ),
                ("kl_div", Values::Float(vec![0.25, 1.5])),
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(csv).unwrap(),
            "layer,block,kl_div\n0,kv1 + ffn96,0.25\n1,attn_noop + ffn_noop,1.5\n"
        );
        let frame = ParquetReader::new(File::open(parquet).unwrap()).finish().unwrap();
        assert_eq!(frame.shape(), (2, 3));
        assert_eq!(frame.column("kl_div").unwrap().f64().unwrap().get(1), Some(1.5));
    }
}
