//! `ember-bench`: runs the 22 TPC-H queries on Ember embedded, on a local
//! Ember cluster (one scheduler, N executors on 127.0.0.1) and on
//! single-process DataFusion of the version Ember embeds, over Parquet data
//! that `ember datagen tpch` (or [`generate`]) wrote.
//!
//! Each query is run several times; its [`QueryRecord`] keeps the median,
//! minimum and maximum time, the peak resident memory of every process of
//! the engine, the rows returned and a digest of the result computed the way
//! `bench/peers/tpch_peers.py` computes it for DuckDB, Polars, Spark and the
//! others, so results can be compared across engines.

pub mod digest;
pub mod engines;
pub mod rss;

use std::path::Path;

use serde::Serialize;

pub use digest::{result_answer, result_digest};
pub use engines::{BenchEngine, EngineKind};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Ember (embedded or its cluster) failed.
    #[error("{0}")]
    Ember(#[from] ember::ClientError),
    /// DataFusion failed.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The data could not be generated.
    #[error("{0}")]
    Tpch(#[from] ember::tpch::TpchError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// One engine's measurements of one query, as the peers' runner writes them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryRecord {
    /// `ember-embedded`, `ember-cluster-<N>` or `datafusion`.
    pub engine: String,
    /// The engine's version.
    pub version: String,
    /// The TPC-H query number.
    pub query: usize,
    /// Median wall time in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// Fastest run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Slowest run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Rows returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// Digest of the result (see [`result_digest`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Peak resident memory of each of the engine's processes during the
    /// query's runs, in bytes, by process name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peak_rss: Vec<(String, u64)>,
    /// Bytes the query's operators spilled to disk in its last run (Ember
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spilled_bytes: Option<u64>,
    /// Why the query did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Median, minimum and maximum of `times` (which must not be empty).
pub fn summarize(times: &[f64]) -> (f64, f64, f64) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[n - 1])
}

/// Writes TPC-H at `scale_factor` as Parquet under `dir` (`parts` files per
/// table), unless `dir` already holds every table.
pub fn generate(dir: &Path, scale_factor: f64, parts: usize) -> Result<(), BenchError> {
    let complete = ember::tpch::TABLES.iter().all(|t| dir.join(t).is_dir());
    if complete {
        return Ok(());
    }
    let generator = ember::tpch::TpchGenerator {
        scale_factor,
        parts,
        format: ember::tpch::DataFormat::Parquet,
    };
    generator.write_all(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_take_the_middle_run() {
        assert_eq!(summarize(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(summarize(&[5.0]), (5.0, 5.0, 5.0));
    }
}
