use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::test_support::{
    int64, parquet_file, physical_plan, printed_result, session_with_setting, shown,
};

/// `wide` (600,000 rows, `g` = row % 40) and `narrow` (300,000 rows,
/// `g` = row % 60) as Parquet files in `dir`, whose statistics give `g`'s
/// span but not its distinct values.
async fn files(dir: &tempfile::TempDir) -> (String, String) {
    let wide = RecordBatch::try_from_iter(vec![
        ("g", int64((0..600_000).map(|row| row % 40))),
        ("v", int64(0..600_000)),
    ])
    .unwrap();
    let narrow = RecordBatch::try_from_iter(vec![
        ("g", int64((0..300_000).map(|row| row % 60))),
        ("v", int64(0..300_000)),
    ])
    .unwrap();
    (
        parquet_file(dir, "wide.parquet", wide).await,
        parquet_file(dir, "narrow.parquet", narrow).await,
    )
}

/// A session reading both tables on two partitions: Ember's with
/// `ember.join_sides_by_group_estimates` as `on`, or DataFusion's own with
/// `ember` false.
async fn context(dir: &tempfile::TempDir, ember: bool, on: bool) -> SessionContext {
    let setting = (
        "ember.join_sides_by_group_estimates",
        if on { "true" } else { "false" },
    );
    let ctx = session_with_setting(ember, false, 2, setting);
    let (wide, narrow) = files(dir).await;
    ctx.register_parquet("wide", &wide, ParquetReadOptions::default())
        .await
        .unwrap();
    ctx.register_parquet("narrow", &narrow, ParquetReadOptions::default())
        .await
        .unwrap();
    ctx
}

/// The join types of the hash joins of a printed plan, top down.
fn join_types(plan: &str) -> Vec<String> {
    plan.lines()
        .filter(|line| line.contains("HashJoinExec"))
        .filter_map(|line| line.split("join_type=").nth(1))
        .map(|rest| rest.split(',').next().unwrap_or(rest).to_string())
        .collect()
}

/// `INTERSECT` joins the distinct values of `wide` (at most 40 groups by
/// `g`'s span, counted as 600,000 rows by DataFusion) with `narrow`: the
/// rule builds on the 40 groups (a left semi join over the aggregate)
/// where DataFusion builds on `narrow`'s 300,000 rows (a right semi join),
/// and both answer 0 to 39.
#[tokio::test]
async fn an_intersect_builds_on_its_distinct_groups() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "SELECT g FROM wide INTERSECT SELECT g FROM narrow ORDER BY g";
    let want = RecordBatch::try_from_iter(vec![("g", int64(0..40))]).unwrap();
    let want = pretty_format_batches(&[want]).unwrap().to_string();
    for (on, join_type) in [(true, "LeftSemi"), (false, "RightSemi")] {
        let ctx = context(&dir, true, on).await;
        let plan = physical_plan(&ctx, sql).await;
        let plan_shown = shown(&plan);
        assert_eq!(
            join_types(&plan_shown),
            vec![join_type],
            "on {on}\n{plan_shown}"
        );
        assert!(
            plan_shown.contains("mode=Partitioned"),
            "on {on}\n{plan_shown}"
        );
        assert_eq!(printed_result(&ctx, plan).await, want, "on {on}");
    }
    let reference = context(&dir, false, false).await;
    let batches = reference.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(pretty_format_batches(&batches).unwrap().to_string(), want);
}

/// Three tables intersected: DataFusion drops the outer distinct (the inner
/// semi join of distinct rows is distinct already), so the outer join's
/// side is the inner semi join, which keeps some of its aggregate's groups;
/// both semi joins build on those groups, and the answer is 0 to 39.
#[tokio::test]
async fn an_intersect_of_an_intersect_counts_the_groups_below_both() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "SELECT g FROM wide INTERSECT SELECT g FROM narrow \
               INTERSECT SELECT g FROM narrow ORDER BY g";
    let want = RecordBatch::try_from_iter(vec![("g", int64(0..40))]).unwrap();
    let want = pretty_format_batches(&[want]).unwrap().to_string();
    let ctx = context(&dir, true, true).await;
    let plan = physical_plan(&ctx, sql).await;
    let plan_shown = shown(&plan);
    assert_eq!(
        join_types(&plan_shown),
        vec!["LeftSemi", "LeftSemi"],
        "{plan_shown}"
    );
    assert_eq!(printed_result(&ctx, plan).await, want);
}

/// A join without an aggregate on either side keeps the sides DataFusion
/// chose, and joins answer as DataFusion does: the 300,000 rows of `narrow`
/// meet `wide` on `v`, `EXCEPT` keeps nothing of `wide` (all its values are
/// in `narrow`), and an inner join with a grouped `narrow` counts 15,000
/// rows of `wide` per value.
#[tokio::test]
async fn joins_answer_as_datafusion_does() {
    let dir = tempfile::tempdir().unwrap();
    let reference = context(&dir, false, false).await;
    for sql in [
        "SELECT count(*) AS n, sum(w.g) AS total FROM wide w JOIN narrow n ON w.v = n.v",
        "SELECT g FROM wide EXCEPT SELECT g FROM narrow ORDER BY g",
        "SELECT w.g, count(*) AS n FROM wide w \
         JOIN (SELECT g, max(v) AS top FROM narrow GROUP BY g) m ON w.g = m.g \
         GROUP BY w.g ORDER BY w.g",
    ] {
        let batches = reference.sql(sql).await.unwrap().collect().await.unwrap();
        let want = pretty_format_batches(&batches).unwrap().to_string();
        let mut plans = Vec::new();
        for on in [true, false] {
            let ctx = context(&dir, true, on).await;
            let plan = physical_plan(&ctx, sql).await;
            plans.push(join_types(&shown(&plan)));
            assert_eq!(printed_result(&ctx, plan).await, want, "on {on}: {sql}");
        }
        if sql.starts_with("SELECT count") {
            assert_eq!(plans[0], plans[1], "{sql}");
        }
    }
}
