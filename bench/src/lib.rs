//! `ember-bench`: runs the 22 TPC-H queries on Ember embedded, on a local
//! Ember cluster (one scheduler, N executors on 127.0.0.1) and on
//! single-process DataFusion of the version Ember embeds, over Parquet data
//! that `ember datagen tpch` (or [`Suite::generate`]) wrote.
//!
//! Each query is run several times; its [`QueryRecord`] keeps the median,
//! minimum and maximum time, the peak resident memory of every process of
//! the engine, the rows returned and a digest of the result computed the way
//! `bench/peers/tpch_peers.py` computes it for DuckDB, Polars, Spark and the
//! others, so results can be compared across engines.

pub mod digest;
pub mod engines;
pub mod measure;
pub mod rss;
pub mod settings;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use digest::{result_answer, result_digest};
pub use engines::{BenchEngine, EngineKind};
pub use measure::measure;
pub use settings::{Alternate, SettingFlags, measure_alternating};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Ember (embedded or its cluster) failed.
    #[error("{0}")]
    Ember(#[from] ember::ClientError),
    /// DataFusion failed.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The TPC-H data could not be generated.
    #[error("{0}")]
    Tpch(#[from] ember::tpch::TpchError),
    /// The TPC-DS data could not be generated, or its queries read.
    #[error("{0}")]
    Tpcds(#[from] ember::tpcds::TpcdsError),
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
    /// The query's number in its benchmark (TPC-H or TPC-DS).
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

/// The benchmark whose tables an engine serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// TPC-H: 8 tables, 22 queries.
    Tpch,
    /// TPC-DS: 24 tables, 99 queries.
    Tpcds,
}

impl Suite {
    /// The suite's table names.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Suite::Tpch => &ember::tpch::TABLES,
            Suite::Tpcds => &ember::tpcds::TABLES,
        }
    }

    /// `CREATE EXTERNAL TABLE` statements for its Parquet tables under
    /// `dir`.
    pub fn create_table_statements(self, dir: &Path) -> Vec<String> {
        match self {
            Suite::Tpch => ember::tpch::TpchGenerator::default().create_table_statements(dir),
            Suite::Tpcds => ember::tpcds::TpcdsGenerator::default().create_table_statements(dir),
        }
    }

    /// Writes the suite's data at `scale_factor` as Parquet under `dir`
    /// (`parts` files per large table), unless `dir` already holds every
    /// table.
    pub fn generate(self, dir: &Path, scale_factor: f64, parts: usize) -> Result<(), BenchError> {
        if self.tables().iter().all(|t| dir.join(t).is_dir()) {
            return Ok(());
        }
        match self {
            Suite::Tpch => {
                let generator = ember::tpch::TpchGenerator {
                    scale_factor,
                    parts,
                    format: ember::tpch::DataFormat::Parquet,
                };
                generator.write_all(dir)?;
            }
            Suite::Tpcds => {
                let generator = ember::tpcds::TpcdsGenerator {
                    scale_factor,
                    parts,
                };
                generator.write_all(dir)?;
            }
        }
        Ok(())
    }
}

/// Runs a runner's `main` future on a fresh runtime; an error becomes
/// `error: ...` on standard error and exit status 1.
pub fn run_main(run: impl std::future::Future<Output = Result<(), String>>) {
    // As Ember's own binaries do (memory pages, thread stacks).
    if let Err(message) = ember_core::process::prepare() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(message) = runtime.block_on(run) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// The flags the suite runners (`ember-tpch-bench`, `ember-tpcds-bench`)
/// share: which engines run, on how many cores, where the cluster's
/// binaries are, and where the records and answers go.
#[derive(Debug, clap::Args)]
pub struct EngineFlags {
    /// Engines, comma-separated: embedded, cluster, datafusion.
    #[arg(
        long,
        default_value = "embedded,cluster,datafusion",
        value_delimiter = ','
    )]
    pub engines: Vec<String>,
    /// Executors of the cluster engine.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Cores every engine may use.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Directory of `ember-scheduler` and `ember-executor` (default: this
    /// binary's).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Where to write the records.
    #[arg(long)]
    pub out: PathBuf,
    /// Directory to write each result to, as `<engine>-q<N>.json` (rows as
    /// JSON lists, numbers unrounded), for `bench/peers/answers.py`.
    #[arg(long)]
    pub answers: Option<PathBuf>,
}

impl EngineFlags {
    /// The engines `--engines` names.
    pub fn kinds(&self) -> Result<Vec<EngineKind>, String> {
        self.engines
            .iter()
            .map(|e| engine_kind(e.trim(), self.executors))
            .collect()
    }

    /// Creates the `--answers` directory, if one is given.
    pub fn create_answers_dir(&self) -> Result<(), String> {
        match &self.answers {
            Some(dir) => std::fs::create_dir_all(dir)
                .map_err(|e| format!("--answers {}: {e}", dir.display())),
            None => Ok(()),
        }
    }

    /// Writes `records` to `--out` as JSON.
    pub fn write_records(&self, records: &[QueryRecord]) -> Result<(), String> {
        let json = serde_json::to_string_pretty(records).map_err(|e| e.to_string())?;
        std::fs::write(&self.out, json).map_err(|e| format!("{}: {e}", self.out.display()))
    }
}

/// The directory of `ember-scheduler` and `ember-executor`: `given`, else
/// this binary's.
pub fn bin_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(PathBuf::from))
            .ok_or_else(|| "cannot tell this binary's directory: give --bin-dir".to_string()),
    }
}

/// The engine a command line names: `embedded`, `cluster` (with
/// `executors` executors) or `datafusion`.
pub fn engine_kind(name: &str, executors: usize) -> Result<EngineKind, String> {
    match name {
        "embedded" => Ok(EngineKind::Embedded),
        "cluster" => Ok(EngineKind::Cluster { executors }),
        "datafusion" => Ok(EngineKind::DataFusion),
        other => Err(format!(
            "unknown engine `{other}`: expected embedded, cluster or datafusion"
        )),
    }
}

/// Every record has a digest, and every query's digests agree.
pub fn check(records: &[QueryRecord], queries: &[usize]) -> Result<(), String> {
    if let Some(failed) = records.iter().find(|r| r.error.is_some()) {
        return Err(format!(
            "{} failed q{}: {}",
            failed.engine,
            failed.query,
            failed.error.as_deref().unwrap_or_default()
        ));
    }
    for &query in queries {
        let answers: Vec<(&str, &str)> = records
            .iter()
            .filter(|r| r.query == query)
            .map(|r| (r.engine.as_str(), r.digest.as_deref().unwrap_or_default()))
            .collect();
        if answers.windows(2).any(|pair| pair[0].1 != pair[1].1) {
            return Err(format!("q{query}: the engines disagree: {answers:?}"));
        }
    }
    eprintln!(
        "check: {} queries, {} engines, identical results",
        queries.len(),
        records.len() / queries.len().max(1)
    );
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
