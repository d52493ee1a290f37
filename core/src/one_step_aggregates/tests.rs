use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::test_support::{
    int64, memory_table, parquet_file, physical_plan, printed_result, session_with_setting, shown,
};

/// Rows of `facts`.
const FACTS: i64 = 240_000;

/// `facts` as a Parquet file in `dir`: `k` = row % 120,000 (two rows a
/// group, a span of half the rows), `g` = row % 10 (24,000 rows a group)
/// and `v` = row.
async fn facts_file(dir: &tempfile::TempDir) -> String {
    let batch = RecordBatch::try_from_iter(vec![
        ("k", int64((0..FACTS).map(|row| row % 120_000))),
        ("g", int64((0..FACTS).map(|row| row % 10))),
        ("v", int64(0..FACTS)),
    ])
    .unwrap();
    parquet_file(dir, "facts.parquet", batch).await
}

/// A session with Ember's state on four partitions and
/// `ember.one_step_aggregate_groups_percent` as `percent`, reading `facts`
/// from `file`, `memory_facts`, the same rows in memory (without
/// statistics), and `small_facts` (a Parquet file in `dir`).
async fn context(
    dir: &tempfile::TempDir,
    file: &str,
    percent: u64,
    cluster: bool,
) -> SessionContext {
    let percent = percent.to_string();
    let setting = ("ember.one_step_aggregate_groups_percent", percent.as_str());
    let ctx = session_with_setting(true, cluster, 4, setting);
    ctx.register_parquet("facts", file, ParquetReadOptions::default())
        .await
        .unwrap();
    let memory_facts = memory_table(vec![
        ("k", int64((0..FACTS).map(|row| row % 120_000))),
        ("g", int64((0..FACTS).map(|row| row % 10))),
        ("v", int64(0..FACTS)),
    ]);
    ctx.register_table("memory_facts", memory_facts).unwrap();
    // 20,000 rows of two a group: as many groups per row as `facts`, but
    // 10,000 groups, fewer than one step needs.
    let small_facts = RecordBatch::try_from_iter(vec![
        ("k", int64((0..20_000).map(|row| row % 10_000))),
        ("v", int64(0..20_000)),
    ])
    .unwrap();
    let small_facts = parquet_file(dir, "small_facts.parquet", small_facts).await;
    ctx.register_parquet("small_facts", &small_facts, ParquetReadOptions::default())
        .await
        .unwrap();
    ctx
}

/// The aggregate modes in `sql`'s physical plan, top down, and its printed
/// answer.
async fn modes_and_answer(ctx: &SessionContext, sql: &str) -> (Vec<String>, String) {
    let plan = physical_plan(ctx, sql).await;
    let modes = shown(&plan)
        .lines()
        .filter_map(|line| line.split("AggregateExec: mode=").nth(1))
        .map(|rest| rest.split(',').next().unwrap_or(rest).to_string())
        .collect();
    (modes, printed_result(ctx, plan).await)
}

/// Grouped by `k`, whose span is half the rows (120,000 groups), the
/// aggregate runs in one step at 50 groups per hundred rows, and in two at
/// 51 and with the rule off; all answer as the rows say: each `k` has the
/// rows `k` and `k` + 120,000. (The groups are picked by `min(v)`, which is
/// `k`: a condition on `k` would filter the rows before they are grouped,
/// and leave too few for one step.)
#[tokio::test]
async fn an_aggregate_with_a_group_per_two_rows_runs_in_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let file = facts_file(&dir).await;
    let sql = "SELECT k, count(*) AS n, sum(v) AS total, min(v) AS low, \
               count(DISTINCT v) AS distinct_values FROM facts GROUP BY k \
               HAVING min(v) % 1000 = 7 ORDER BY k";
    let keys: Vec<i64> = (7..120_000).step_by(1_000).collect();
    let want = RecordBatch::try_from_iter(vec![
        ("k", int64(keys.iter().copied())),
        ("n", int64(keys.iter().map(|_| 2))),
        ("total", int64(keys.iter().map(|k| 2 * k + 120_000))),
        ("low", int64(keys.iter().copied())),
        ("distinct_values", int64(keys.iter().map(|_| 2))),
    ])
    .unwrap();
    let want = pretty_format_batches(&[want]).unwrap().to_string();
    let two_steps = vec!["FinalPartitioned", "Partial"];
    for (percent, steps) in [
        (50, vec!["SinglePartitioned"]),
        (51, two_steps.clone()),
        (0, two_steps),
    ] {
        let ctx = context(&dir, &file, percent, false).await;
        let (modes, answer) = modes_and_answer(&ctx, sql).await;
        assert_eq!(modes, steps, "percent {percent}");
        assert_eq!(answer, want, "percent {percent}");
    }
}

/// Aggregates the rule must leave in two steps: few groups per row (`g`,
/// 24,000 rows a group), few groups however many per row (`small_facts`,
/// 10,000), groups whose number nothing estimates (a table in memory has
/// no statistics, an expression is no column), an aggregate that needs
/// its input ordered, and any aggregate on a cluster, where the exchange
/// is a shuffle.
#[tokio::test]
async fn aggregates_with_few_or_unknown_groups_keep_two_steps() {
    let dir = tempfile::tempdir().unwrap();
    let file = facts_file(&dir).await;
    let cases = [
        (
            "SELECT g, sum(v) AS total FROM facts GROUP BY g ORDER BY g",
            false,
        ),
        (
            "SELECT k, sum(v) AS total FROM small_facts GROUP BY k ORDER BY k",
            false,
        ),
        (
            "SELECT k, sum(v) AS total FROM memory_facts GROUP BY k ORDER BY k",
            false,
        ),
        (
            "SELECT k + 1 AS k1, sum(v) AS total FROM facts GROUP BY k + 1 ORDER BY k1",
            false,
        ),
        (
            "SELECT k, array_agg(v ORDER BY v DESC) AS vs FROM facts GROUP BY k ORDER BY k",
            false,
        ),
        (
            "SELECT k, sum(v) AS total FROM facts GROUP BY k ORDER BY k",
            true,
        ),
    ];
    for (sql, cluster) in cases {
        let ctx = context(&dir, &file, 1, cluster).await;
        let plan = physical_plan(&ctx, sql).await;
        let shown = shown(&plan);
        assert!(
            shown.contains("mode=Partial") && !shown.contains("mode=SinglePartitioned"),
            "cluster {cluster}: {sql}\n{shown}"
        );
    }
}

/// Grouped by two columns of a 10-row table joined to `facts` on `g`,
/// each column with a span of 9,001 values: their product, 81 million,
/// would count every one of the join's 240,000 rows as a group of its own,
/// but the columns come from one table of 10 rows, so the aggregate keeps
/// its two steps (at most 10 groups), and answers as the rows say: each of
/// the 10 keys joins 24,000 facts.
#[tokio::test]
async fn columns_of_one_table_count_at_most_its_rows_as_groups() {
    let dir = tempfile::tempdir().unwrap();
    let file = facts_file(&dir).await;
    let dims = RecordBatch::try_from_iter(vec![
        ("key", int64(0..10)),
        ("a", int64((0..10).map(|key| key * 1_000))),
        ("b", int64((0..10).map(|key| key * 1_000 + 1))),
    ])
    .unwrap();
    let dims = parquet_file(&dir, "dims.parquet", dims).await;
    let sql = "SELECT d.a, d.b, count(*) AS n FROM facts f JOIN dims d ON f.g = d.key \
               GROUP BY d.a, d.b ORDER BY d.a";
    let ctx = context(&dir, &file, 50, false).await;
    ctx.register_parquet("dims", &dims, ParquetReadOptions::default())
        .await
        .unwrap();
    let (modes, answer) = modes_and_answer(&ctx, sql).await;
    assert_eq!(modes, vec!["FinalPartitioned", "Partial"]);
    let want = RecordBatch::try_from_iter(vec![
        ("a", int64((0..10).map(|key| key * 1_000))),
        ("b", int64((0..10).map(|key| key * 1_000 + 1))),
        ("n", int64((0..10).map(|_| 24_000))),
    ])
    .unwrap();
    assert_eq!(answer, pretty_format_batches(&[want]).unwrap().to_string());
}
