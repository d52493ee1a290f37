//! All 22 TPC-H queries at SF 0.01, embedded and on a real cluster (one
//! `ember-scheduler` and two `ember-executor` processes), compared with
//! single-process DataFusion on the same data: exact values (floats within a
//! relative 1e-9), in order where the query orders. On the cluster, with
//! each of the three ways a join can run there: hash joins broadcasting a
//! small side (the default), partitioned hash joins, and sort-merge joins.

use std::time::{Duration, Instant};

use ember::EmberContext;
use ember::tpch::{TpchGenerator, query};
use ember_tests::{compare, generate_tpch, is_ordered, reference_context, start_cluster};

pub(crate) async fn register_tables(
    ctx: &EmberContext,
    generator: &TpchGenerator,
    dir: &std::path::Path,
) {
    for statement in generator.create_table_statements(dir) {
        ctx.run_sql(&statement).await.expect("tables register");
    }
}

pub(crate) async fn run_all_queries(
    ctx: &EmberContext,
    generator: &TpchGenerator,
    dir: &std::path::Path,
    mode: &str,
) {
    let reference = reference_context(generator, dir).await;
    let mut failures = Vec::new();
    let mut total = Duration::ZERO;
    for n in 1..=22 {
        let sql = query(n).expect("query text");
        let expected = reference
            .sql(sql)
            .await
            .expect("reference plans")
            .collect()
            .await
            .expect("reference runs");
        let started = Instant::now();
        let actual = ctx.run_sql(sql).await;
        let elapsed = started.elapsed();
        total += elapsed;
        match actual {
            Ok(actual) => match compare(&expected, &actual, is_ordered(sql)) {
                Ok(rows) => println!(
                    "{mode} q{n}: {rows} rows match in {:.3}s",
                    elapsed.as_secs_f64()
                ),
                Err(diff) => failures.push(format!("q{n}: {diff}")),
            },
            Err(e) => failures.push(format!("q{n}: failed: {e}")),
        }
    }
    println!(
        "{mode}: 22 TPC-H queries at SF 0.01 took {:.3}s in all",
        total.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{mode}: {} queries differ from DataFusion:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_embedded_matches_datafusion() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let ctx = EmberContext::embedded().unwrap();
    register_tables(&ctx, &generator, data.path()).await;
    run_all_queries(&ctx, &generator, data.path(), "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_on_two_executor_cluster_matches_datafusion() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let cluster = start_cluster(2).await;
    let ctx = EmberContext::connect(&cluster.address().to_string())
        .await
        .expect("client connects");
    register_tables(&ctx, &generator, data.path()).await;
    let hash_joins = ctx
        .run_sql("SHOW datafusion.optimizer.prefer_hash_join")
        .await
        .unwrap();
    let shown = datafusion::arrow::util::pretty::pretty_format_batches(&hash_joins)
        .unwrap()
        .to_string();
    assert!(shown.contains("| true "), "hash joins by default: {shown}");
    // At SF 0.01 every build side is small enough to broadcast.
    run_all_queries(&ctx, &generator, data.path(), "cluster, hash joins").await;
    for setting in [
        "SET datafusion.optimizer.hash_join_single_partition_threshold = 0",
        "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0",
    ] {
        ctx.run_sql(setting).await.unwrap();
    }
    run_all_queries(
        &ctx,
        &generator,
        data.path(),
        "cluster, partitioned hash joins",
    )
    .await;
    ctx.run_sql("SET datafusion.optimizer.prefer_hash_join = false")
        .await
        .unwrap();
    run_all_queries(&ctx, &generator, data.path(), "cluster, sort-merge joins").await;
}
