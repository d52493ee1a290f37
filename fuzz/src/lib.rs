//! `ember-fuzz`: differential SQL fuzzing of Ember against DuckDB.
//!
//! A seeded generator ([`QueryGenerator`]) writes queries over the TPC-H
//! tables — joins of every kind, group-bys with HAVING, window functions,
//! IN, EXISTS and scalar subqueries, derived tables, set operations, CASE,
//! NULL-heavy predicates, casts, string and date functions. [`run`] sends
//! each one to Ember embedded, to a local Ember cluster and to DuckDB (a
//! Python process over the same Parquet files) and records every
//! disagreement in a [`FuzzReport`].
//!
//! The generator writes only SQL whose answer the two engines must agree
//! on; where Ember's semantics differ from DuckDB's by design (integer
//! division, decimal-to-integer casts, division by zero), the construct is
//! left out, and the difference is listed in `docs/semantics.md`.

pub mod answer;
pub mod duckdb;
pub mod expr;
pub mod query;
pub mod regressions;
pub mod report;
pub mod rng;
pub mod run;
pub mod schema;

use std::path::PathBuf;

pub use query::{Query, QueryGenerator, Shape};
pub use run::{Difference, DifferenceKind, FuzzOptions, FuzzReport, run};

/// Errors that stop a fuzzing run (a disagreement does not: it is recorded).
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// DuckDB could not be started.
    #[error(
        "DuckDB is not available through {python}: {reason} (bench/peers/setup-venv duckdb installs it)",
        python = python.display()
    )]
    NoDuckDb {
        /// The Python tried.
        python: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// The DuckDB runner stopped answering.
    #[error("the DuckDB runner failed: {0}")]
    DuckDbDied(String),
    /// Ember could not be started, or its cluster stopped answering, or the
    /// data could not be generated.
    #[error("{0}")]
    Ember(#[from] ember_bench::BenchError),
}
