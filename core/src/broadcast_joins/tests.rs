use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::config::{distributed_session_config, session_config};
use crate::test_support::{
    ember_context, int64, memory_table, parquet_file, physical_plan, printed_count_and_total,
    printed_result, shown,
};

/// Rows of `facts`, the probe side.
const FACTS: i64 = 20_000;

/// A session with Ember's state, `ember.broadcast_join_probe_ratio` as
/// `ratio`, four partitions and DataFusion's broadcast limits at zero (so
/// that only Ember's rule broadcasts), over `facts` (`k` = row % 5,000,
/// `g` = row % 1,000, `v` = row), `groups` (`g` 0..10), `dims` (`k`
/// 0..1,000: 20 probe rows per build row, enough for a ratio of 4 on four
/// threads, which asks for 12) and `wide_dims` (`k` 0..5,000: 4 per build
/// row, too few).
fn context(ratio: u64, cluster: bool) -> SessionContext {
    let mut config = if cluster {
        distributed_session_config()
    } else {
        session_config()
    }
    .with_target_partitions(4);
    let options = config.options_mut();
    options
        .set("ember.broadcast_join_probe_ratio", &ratio.to_string())
        .unwrap();
    options.optimizer.hash_join_single_partition_threshold = 0;
    options.optimizer.hash_join_single_partition_threshold_rows = 0;
    let ctx = ember_context(config);
    let facts = memory_table(vec![
        ("k", int64((0..FACTS).map(|row| row % 5_000))),
        ("g", int64((0..FACTS).map(|row| row % 1_000))),
        ("v", int64(0..FACTS)),
    ]);
    ctx.register_table("facts", facts).unwrap();
    let groups = memory_table(vec![("g", int64(0..10))]);
    ctx.register_table("groups", groups).unwrap();
    for (name, keys) in [("dims", 1_000), ("wide_dims", 5_000)] {
        let table = memory_table(vec![("k", int64(0..keys))]);
        ctx.register_table(name, table).unwrap();
    }
    ctx
}

/// The printed `count(*)` and `sum(v)` of the facts whose `k` is below
/// `keys`.
fn facts_below(keys: i64) -> String {
    let rows: Vec<i64> = (0..FACTS).filter(|row| row % 5_000 < keys).collect();
    printed_count_and_total(rows.len(), rows.iter().sum())
}

/// `sql`'s join mode and printed answer in a session made by `context`.
async fn mode_and_answer(ctx: &SessionContext, sql: &str) -> (String, String) {
    let plan = physical_plan(ctx, sql).await;
    let shown = shown(&plan);
    let mode = ["Partitioned", "CollectLeft"]
        .into_iter()
        .find(|mode| shown.contains(&format!("HashJoinExec: mode={mode}")))
        .unwrap_or_else(|| panic!("no hash join in:\n{shown}"));
    (mode.to_string(), printed_result(ctx, plan).await)
}

/// A build side with 20 times fewer rows than its probe side is broadcast
/// on four threads, inner or as the side an outer join does not keep, with
/// the answer of the partitioned join; with the ratio at 0 the join stays
/// partitioned.
#[tokio::test]
async fn a_build_side_far_smaller_than_its_probe_side_is_broadcast() {
    let inner = "SELECT count(*) AS n, sum(f.v) AS total FROM facts f JOIN dims d ON f.k = d.k";
    let outer = "SELECT count(*) AS n, sum(f.v) AS total \
                 FROM facts f LEFT JOIN dims d ON f.k = d.k WHERE d.k IS NULL";
    let unmatched: Vec<i64> = (0..FACTS).filter(|row| row % 5_000 >= 1_000).collect();
    let unmatched = printed_count_and_total(unmatched.len(), unmatched.iter().sum());
    for (sql, want) in [(inner, facts_below(1_000)), (outer, unmatched)] {
        for (ratio, mode) in [(0, "Partitioned"), (4, "CollectLeft")] {
            let (found, answer) = mode_and_answer(&context(ratio, false), sql).await;
            assert_eq!(found, mode, "ratio {ratio}: {sql}");
            assert_eq!(answer, want, "ratio {ratio}: {sql}");
        }
    }
}

/// Joins the rule must leave partitioned: a build side too large against
/// its probe side, a join that emits the build side's unmatched rows (a
/// broadcast would need the one shared record of matches the adaptive join
/// cannot spill), and any join on a cluster.
#[tokio::test]
async fn joins_without_the_ratio_or_with_unmatched_build_rows_stay_partitioned() {
    let wide = "SELECT count(*) AS n, sum(f.v) AS total FROM facts f JOIN wide_dims d ON f.k = d.k";
    let build_kept = "SELECT count(*) AS n, sum(d.k) AS total \
                      FROM dims d LEFT JOIN facts f ON f.k = d.k";
    let inner = "SELECT count(*) AS n, sum(f.v) AS total FROM facts f JOIN dims d ON f.k = d.k";
    // Each of the 1,000 keys of `dims` is in `facts` four times.
    let each_key_four_times = printed_count_and_total(4_000, 4 * (0..1_000).sum::<i64>());
    for (sql, cluster, want) in [
        (wide, false, facts_below(5_000)),
        (build_kept, false, each_key_four_times),
        (inner, true, facts_below(1_000)),
    ] {
        let ctx = context(4, cluster);
        let (found, answer) = mode_and_answer(&ctx, sql).await;
        assert_eq!(found, "Partitioned", "cluster {cluster}: {sql}");
        if !cluster {
            assert_eq!(answer, want, "{sql}");
        }
    }
}

/// The printed `count(*)` and `sum(v)` of the facts whose `k` is below
/// 1,000 and whose `g` is below 10.
fn facts_below_with_small_g() -> String {
    let rows: Vec<i64> = (0..FACTS)
        .filter(|row| row % 5_000 < 1_000 && row % 1_000 < 10)
        .collect();
    printed_count_and_total(rows.len(), rows.iter().sum())
}

/// `facts` as a Parquet file in `dir`, whose statistics give `g`'s minimum
/// and maximum (an in-memory table's give neither).
async fn facts_parquet(dir: &tempfile::TempDir) -> String {
    let batch = RecordBatch::try_from_iter(vec![
        ("k", int64((0..FACTS).map(|row| row % 5_000))),
        ("g", int64((0..FACTS).map(|row| row % 1_000))),
        ("v", int64(0..FACTS)),
    ])
    .unwrap();
    parquet_file(dir, "facts.parquet", batch).await
}

/// A broadcast join above whose build side keeps 1% of the probe side's
/// key values (10 of `g`'s 1,000) filters the scan of `facts` below it: the
/// join of `facts` with `dims` under it then has too few probe rows left
/// (200 estimated against 1,000 build rows) and stays partitioned, though
/// `facts`' 20,000 rows alone would broadcast `dims`. Same answer either
/// way.
#[tokio::test]
async fn a_probe_side_a_broadcast_above_filters_is_counted_after_its_filter() {
    let sql = "SELECT count(*) AS n, sum(f.v) AS total \
               FROM facts f JOIN dims d ON f.k = d.k JOIN groups t ON f.g = t.g";
    let want = facts_below_with_small_g();
    let dir = tempfile::tempdir().unwrap();
    let file = facts_parquet(&dir).await;
    for (ratio, upper, lower) in [
        (0, "Partitioned", "Partitioned"),
        (4, "CollectLeft", "Partitioned"),
    ] {
        let ctx = context(ratio, false);
        ctx.deregister_table("facts").unwrap();
        let options = ParquetReadOptions::default();
        ctx.register_parquet("facts", &file, options).await.unwrap();
        assert_inner_joins_and_answer(&ctx, sql, &[(upper, "g"), (lower, "k")], &want, ratio).await;
    }
}

/// Plans `sql` in `ctx` with its joins in the order the query names them,
/// and asserts that it holds an inner hash join in each `(mode, key)` of
/// `joins` (the key the first column of its condition) and answers `want`.
async fn assert_inner_joins_and_answer(
    ctx: &SessionContext,
    sql: &str,
    joins: &[(&str, &str)],
    want: &str,
    ratio: u64,
) {
    ctx.sql("SET ember.join_reordering = false").await.unwrap();
    let plan = physical_plan(ctx, sql).await;
    let shown = shown(&plan);
    for (mode, key) in joins {
        let join = format!("HashJoinExec: mode={mode}, join_type=Inner, on=[({key}@");
        assert!(
            shown.contains(&join),
            "ratio {ratio}: no {join} in\n{shown}"
        );
    }
    assert_eq!(
        printed_result(ctx, plan).await,
        want,
        "ratio {ratio}:\n{shown}"
    );
}

/// A broadcast join above keyed on a column of `facts` and one of the
/// table `facts` meets below it (`(g, tag)`, `tag` from `tagged_dims`)
/// filters no scan: its filter needs both columns, which no one side
/// below has. The join below is counted with all of `facts`' rows and is
/// broadcast, where a filter on `g` alone would have kept it partitioned
/// (the test above). Same answer either way.
#[tokio::test]
async fn a_filter_over_columns_of_both_sides_below_is_not_counted() {
    let sql = "SELECT count(*) AS n, sum(f.v) AS total \
               FROM facts f JOIN tagged_dims d ON f.k = d.k \
               JOIN pairs t ON f.g = t.g AND d.tag = t.tag";
    // `pairs` holds (g, g) for g below 10, and `tag` is `k` % 10, which is
    // `g` % 10: the rows whose `g` is below 10.
    let want = facts_below_with_small_g();
    let dir = tempfile::tempdir().unwrap();
    let file = facts_parquet(&dir).await;
    for (ratio, broadcast_joins) in [(0, 0), (4, 2)] {
        let ctx = context(ratio, false);
        ctx.deregister_table("facts").unwrap();
        let options = ParquetReadOptions::default();
        ctx.register_parquet("facts", &file, options).await.unwrap();
        let tagged = memory_table(vec![
            ("k", int64(0..1_000)),
            ("tag", int64((0..1_000).map(|k| k % 10))),
        ]);
        ctx.register_table("tagged_dims", tagged).unwrap();
        let pairs = memory_table(vec![("g", int64(0..10)), ("tag", int64(0..10))]);
        ctx.register_table("pairs", pairs).unwrap();
        ctx.sql("SET ember.join_reordering = false").await.unwrap();
        let plan = physical_plan(&ctx, sql).await;
        let shown = shown(&plan);
        assert_eq!(
            shown.matches("HashJoinExec: mode=CollectLeft").count(),
            broadcast_joins,
            "ratio {ratio}:\n{shown}"
        );
        assert!(
            shown.contains("join_type=Inner, on=[(k@"),
            "ratio {ratio}: the join of facts and tagged_dims is not below:\n{shown}"
        );
        assert_eq!(
            printed_result(&ctx, plan).await,
            want,
            "ratio {ratio}:\n{shown}"
        );
    }
}

/// The probe side of the join on `g` is itself a join: `facts` (20,000
/// rows) with the tenth of `keyed` whose `flag` is 0 (500 of its 5,000
/// keys). Counted as Ember's join order counts it, that join makes 2,000
/// rows (the filter keeps a tenth of the keys, so a tenth of the facts),
/// 20 per row of `hundred`: enough to broadcast `hundred` at a ratio of 4
/// on four threads. DataFusion's own estimate (500 rows: the 20,000 facts
/// times the 500 keys, over the facts' 20,000 rows as their distinct
/// keys) would keep it partitioned. Same answer either way.
#[tokio::test]
async fn a_probe_side_that_is_a_join_is_counted_as_a_key_join() {
    let sql = "SELECT count(*) AS n, sum(f.v) AS total \
               FROM facts f JOIN keyed o ON f.k = o.k JOIN hundred t ON f.g = t.g \
               WHERE o.flag = 0";
    let rows: Vec<i64> = (0..FACTS)
        .filter(|row| row % 5_000 % 10 == 0 && row % 1_000 < 100)
        .collect();
    let want = printed_count_and_total(rows.len(), rows.iter().sum());
    let dir = tempfile::tempdir().unwrap();
    let facts = facts_parquet(&dir).await;
    let keyed = RecordBatch::try_from_iter(vec![
        ("k", int64(0..5_000)),
        ("flag", int64((0..5_000).map(|k| k % 10))),
    ])
    .unwrap();
    let keyed = parquet_file(&dir, "keyed.parquet", keyed).await;
    for (ratio, mode) in [(0, "Partitioned"), (4, "CollectLeft")] {
        let ctx = context(ratio, false);
        ctx.deregister_table("facts").unwrap();
        for (name, file) in [("facts", &facts), ("keyed", &keyed)] {
            let options = ParquetReadOptions::default();
            ctx.register_parquet(name, file, options).await.unwrap();
        }
        let hundred = memory_table(vec![("g", int64(0..100))]);
        ctx.register_table("hundred", hundred).unwrap();
        assert_inner_joins_and_answer(&ctx, sql, &[(mode, "g")], &want, ratio).await;
    }
}
