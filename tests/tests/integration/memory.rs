//! Queries bigger than their memory: TPC-H on a real two-executor cluster
//! whose executors have small pools, and embedded under a small limit. The
//! pools are small enough that DataFusion's hash joins fail in them (each
//! test checks that first, with `ember.adaptive_joins` off); with the
//! adaptive joins on, every answer must equal single-process DataFusion's
//! and something must have spilled. Also: a query that cannot fit fails
//! with one line naming the operator and the setting to raise, and no
//! spill file outlives its query.

use std::path::Path;

use ember::EmberContext;
use ember::tpch::{TpchGenerator, query};
use ember_memory::ByteSize;
use ember_tests::{
    compare, files_below, generate_tpch, is_ordered, reference_context, run_ember,
    start_cluster_with,
};

/// The scale factor: large enough that partitioned hash joins have build
/// sides of several MiB.
const SCALE_FACTOR: f64 = 0.1;

/// Each executor's memory (one task slot each, so a 4.8 MB pool per task):
/// DataFusion's hash joins fail in it (Q7's first), found by running the
/// queries with `ember.adaptive_joins` off at decreasing sizes.
const EXECUTOR_MEMORY: ByteSize = ByteSize::new(8 << 20);

/// The embedded session's memory (a 9.6 MB pool that two partitions
/// share): Q9's hash join fails in it. (With the joins in the order the
/// queries name their tables, Q21's failed in twice this; ordered by their
/// statistics, every query fits there.)
const EMBEDDED_MEMORY: ByteSize = ByteSize::new(16 << 20);

/// Two partitions, and joins planned partitioned (none broadcast), as at
/// larger scales.
const SETTINGS: [&str; 3] = [
    "SET datafusion.execution.target_partitions = 2",
    "SET datafusion.optimizer.hash_join_single_partition_threshold = 0",
    "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0",
];

async fn prepare(ctx: &EmberContext, generator: &TpchGenerator, dir: &Path) {
    for statement in generator.create_table_statements(dir) {
        ctx.run_sql(&statement).await.expect("tables register");
    }
    for setting in SETTINGS {
        ctx.run_sql(setting).await.expect("setting");
    }
}

/// With the adaptive joins off, some query must fail for lack of memory:
/// the pool is small enough for this test to mean something.
async fn assert_plain_hash_joins_fail(ctx: &EmberContext, mode: &str) {
    ctx.run_sql("SET ember.adaptive_joins = false")
        .await
        .unwrap();
    let mut refused = None;
    for n in 1..=22 {
        if let Err(e) = ctx.run_sql(query(n).unwrap()).await {
            let message = e.to_string();
            assert!(
                message.starts_with("out of memory: "),
                "{mode} q{n}: {message}"
            );
            refused = Some((n, message));
            break;
        }
    }
    let (n, message) = refused.unwrap_or_else(|| {
        panic!("{mode}: every query fits without adaptive joins; the pool is too large")
    });
    println!("{mode}, adaptive joins off: q{n} fails: {message}");
    ctx.run_sql("SET ember.adaptive_joins = true")
        .await
        .unwrap();
}

/// All 22 queries, compared with DataFusion; returns the bytes spilled.
async fn assert_all_queries_match(
    ctx: &EmberContext,
    generator: &TpchGenerator,
    dir: &Path,
    mode: &str,
) -> usize {
    let reference = reference_context(generator, dir).await;
    let mut failures = Vec::new();
    let mut spilled = 0;
    for n in 1..=22 {
        let sql = query(n).unwrap();
        let expected = reference.sql(sql).await.unwrap().collect().await.unwrap();
        match ctx.run_sql(sql).await {
            Ok(actual) => match compare(&expected, &actual, is_ordered(sql)) {
                Ok(rows) => {
                    let spill = ctx
                        .last_statement_spill()
                        .await
                        .unwrap()
                        .unwrap_or_default();
                    println!("{mode} q{n}: {rows} rows match, {spill}");
                    spilled += spill.bytes;
                }
                Err(diff) => failures.push(format!("q{n}: {diff}")),
            },
            Err(e) => failures.push(format!("q{n}: failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{mode}: {} queries differ from DataFusion:\n{}",
        failures.len(),
        failures.join("\n")
    );
    spilled
}

/// Files left under `dir` in DataFusion's spill directories.
fn spill_files(dir: &Path) -> Vec<String> {
    files_below(dir)
        .into_iter()
        .filter(|path| path.contains("datafusion-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_on_a_cluster_of_small_executors_spills_and_matches_datafusion() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), SCALE_FACTOR);
    let cluster = start_cluster_with(2, |options| {
        options.cores_per_executor = 1;
        options.executor_memory = Some(EXECUTOR_MEMORY);
    })
    .await;
    let ctx = EmberContext::connect(&cluster.address().to_string())
        .await
        .expect("client connects");
    prepare(&ctx, &generator, data.path()).await;
    assert_plain_hash_joins_fail(&ctx, "cluster").await;
    let spilled = assert_all_queries_match(&ctx, &generator, data.path(), "cluster").await;
    assert!(spilled > 0, "nothing spilled on the cluster");
    let left = spill_files(&cluster.work_dir());
    assert!(
        left.is_empty(),
        "spill files outlived their tasks: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_embedded_under_a_small_limit_spills_and_matches_datafusion() {
    let data = tempfile::tempdir().unwrap();
    let spill_dir = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), SCALE_FACTOR);
    let ctx = EmberContext::embedded().unwrap();
    ctx.set_process_memory(EMBEDDED_MEMORY).unwrap();
    ctx.run_sql(&format!(
        "SET datafusion.runtime.temp_directory = '{}'",
        spill_dir.path().display()
    ))
    .await
    .unwrap();
    prepare(&ctx, &generator, data.path()).await;
    assert_eq!(
        ctx.memory_limit(),
        Some(ember_memory::pool_for_process(EMBEDDED_MEMORY))
    );
    assert_plain_hash_joins_fail(&ctx, "embedded").await;
    let spilled = assert_all_queries_match(&ctx, &generator, data.path(), "embedded").await;
    assert!(spilled > 0, "nothing spilled embedded");
    let left = spill_files(spill_dir.path());
    assert!(
        left.is_empty(),
        "spill files outlived their queries: {left:?}"
    );
}

#[test]
fn a_query_that_cannot_fit_fails_with_one_line_naming_the_operator_and_the_setting() {
    // One group whose accumulator holds every comment: nothing can spill it.
    let (code, stdout, stderr) = run_ember(
        &[
            "sql",
            "--memory",
            "4MiB",
            "-c",
            "SELECT array_agg(v) FROM (SELECT repeat('x', 100) || CAST(value AS VARCHAR) AS v \
             FROM generate_series(1, 400000))",
        ],
        None,
    );
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    let line = lines[0];
    assert!(
        line.starts_with("error: out of memory: Failed to allocate additional"),
        "{line}"
    );
    assert!(line.contains("--memory"), "names the setting: {line}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn timing_says_what_a_statement_spilled() {
    // A window over every row needs them sorted: about 76 MB of rows, two
    // sorts sharing a pool of 77 MB (60% of 128 MiB), must spill.
    let (code, stdout, stderr) = run_ember(
        &[
            "sql",
            "--memory",
            "128MiB",
            "--timing",
            "-c",
            "SELECT max(position) FROM (SELECT row_number() OVER (ORDER BY pad DESC, value) AS position \
             FROM (SELECT value, repeat('x', 50) || CAST(value AS VARCHAR) AS pad \
             FROM generate_series(1, 1000000)))",
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1000000"), "the answer: {stdout}");
    assert!(stderr.contains("Time: "), "{stderr}");
    assert!(stderr.contains(", spilled "), "the sort spilled: {stderr}");
}

/// The value of metric `name` in `line` (`name=VALUE`, up to a comma or
/// bracket).
fn metric<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    Some(rest[..rest.find([',', ']']).unwrap_or(rest.len())].trim())
}

#[test]
fn explain_analyze_shows_what_a_join_spilled() {
    // The build side (300,000 keys) takes more than its share of a 19 MB
    // pool, so the join falls back to a grace hash join that spills.
    let (code, stdout, stderr) = run_ember(
        &[
            "sql",
            "--memory",
            "32MiB",
            "-c",
            "EXPLAIN ANALYZE SELECT count(*) \
             FROM (SELECT value AS k, repeat('x', 100) AS p FROM generate_series(1, 300000)) a \
             JOIN (SELECT value AS k FROM generate_series(1, 300000)) b ON a.k = b.k",
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    let join = stdout
        .lines()
        .find(|line| line.contains("AdaptiveJoinExec: fallback=grace"))
        .unwrap_or_else(|| panic!("an adaptive join in the plan: {stdout}"));
    assert_ne!(metric(join, "grace_fallbacks"), Some("0"), "{join}");
    assert!(metric(join, "grace_fallbacks").is_some(), "{join}");
    assert_ne!(metric(join, "spill_count"), Some("0"), "{join}");
    assert!(
        metric(join, "spilled_bytes").is_some_and(|b| b != "0.0 B"),
        "{join}"
    );
}
