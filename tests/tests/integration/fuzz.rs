//! The differential fuzzer at CI's size: a few hundred generated queries
//! (seed 1), and the queries earlier runs found (`fuzz/regressions.sql`),
//! on Ember embedded, on a real 2-executor cluster and on DuckDB
//! (from the benchmark venv, which `scripts/test` sets up), every answer
//! compared. The 10,000-query run is `fuzz/run.sh`, with its results under
//! `fuzz/results/`.

use std::time::Duration;

use ember_fuzz::regressions::regressions;
use ember_fuzz::{FuzzOptions, duckdb};
use ember_tests::bin_dir;

/// How many queries CI runs.
const QUERIES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_queries_answer_alike_embedded_on_a_cluster_and_on_duckdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = FuzzOptions {
        seed: 1,
        queries: QUERIES,
        scale_factor: 0.002,
        data: dir.path().join("tpch"),
        executors: 2,
        threads: 2,
        bin_dir: bin_dir().to_path_buf(),
        python: duckdb::default_python(),
        timeout: Duration::from_secs(120),
    };
    let report = ember_fuzz::run(&options, |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.queries(), QUERIES);
    // The kept regressions ran too, before the generated queries.
    assert_eq!(report.regressions(), regressions().len());
    assert!(
        report.differences.is_empty(),
        "{} queries differ:\n{}",
        report.differences.len(),
        report.to_markdown("CI")
    );
    // A generator whose queries every engine rejects tests nothing.
    assert!(
        report.agreed() * 10 >= QUERIES * 9,
        "only {} of {QUERIES} queries were answered:\n{}",
        report.agreed(),
        report.to_markdown("CI")
    );
}
