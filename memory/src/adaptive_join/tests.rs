//! The adaptive join against DataFusion's own answers: over tables whose
//! build sides do not fit the pool (every join type falls back and matches
//! the hash join run with unlimited memory), and over tables that fit (no
//! fallback).

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::*;
use crate::{SpillTotals, adapt_hash_joins};

/// Rows per table: enough that a build side is several MiB.
const ROWS: i64 = 60_000;

/// A table of `rows` rows, `k` cycling through `keys` values (NULL every
/// 97th row), and a payload string.
fn table(rows: i64, keys: i64, tag: &str) -> MemTable {
    let (schema, batches) = batches_of(rows, keys, tag);
    MemTable::try_new(schema, vec![batches]).unwrap()
}

/// The schema and batches of [`table`].
fn batches_of(rows: i64, keys: i64, tag: &str) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    let batches = (0..rows)
        .collect::<Vec<_>>()
        .chunks(1024)
        .map(|chunk| {
            let k: Int64Array = chunk
                .iter()
                .map(|i| (i % 97 != 0).then_some(i % keys))
                .collect();
            let v: Int64Array = chunk.iter().copied().collect();
            let s: StringArray = chunk
                .iter()
                .map(|i| Some(format!("{tag}-{i:08}-padding-padding-padding")))
                .collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(k), Arc::new(v), Arc::new(s)],
            )
            .unwrap()
        })
        .collect::<Vec<_>>();
    (schema, batches)
}

/// A session whose queries may hold `pool` bytes (unlimited for `None`),
/// planning partitioned hash joins over 2 partitions.
fn session(pool: Option<usize>) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(2)
        .with_batch_size(1024);
    let options = config.options_mut();
    options.optimizer.prefer_hash_join = true;
    options.optimizer.hash_join_single_partition_threshold = 0;
    options.optimizer.hash_join_single_partition_threshold_rows = 0;
    options.execution.sort_spill_reservation_bytes = 64 * 1024;
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = pool {
        runtime = runtime.with_memory_pool(crate::memory_pool(crate::ByteSize::new(bytes as u64)));
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc().unwrap());
    ctx.register_table("big", Arc::new(table(ROWS, 20_000, "big")))
        .unwrap();
    ctx.register_table("other", Arc::new(table(ROWS, 15_000, "other")))
        .unwrap();
    ctx
}

/// The query's rows, sorted, as text.
fn sorted_text(batches: &[RecordBatch]) -> String {
    let text = pretty_format_batches(batches).unwrap().to_string();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

fn fallbacks(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut count = 0;
    if let Some(metrics) = plan.metrics() {
        count += metrics
            .sum_by_name(GRACE_FALLBACKS_METRIC)
            .map(|v| v.as_usize())
            .unwrap_or(0);
    }
    if plan.downcast_ref::<AdaptiveJoinExec>().is_some() {
        return count;
    }
    count + plan.children().iter().map(|c| fallbacks(c)).sum::<usize>()
}

const QUERIES: &[(&str, &str)] = &[
    (
        "inner",
        "SELECT b.k, b.s, o.s FROM big b JOIN other o ON b.k = o.k",
    ),
    (
        "inner with filter",
        "SELECT b.k, b.s, o.s FROM big b JOIN other o ON b.k = o.k AND b.v < o.v",
    ),
    (
        "left",
        "SELECT b.k, b.s, o.s FROM big b LEFT JOIN other o ON b.k = o.k AND (b.v + o.v) % 3 = 0",
    ),
    (
        "right",
        "SELECT b.s, o.k, o.s FROM big b RIGHT JOIN other o ON b.k = o.k AND (b.v + o.v) % 5 = 0",
    ),
    (
        "full",
        "SELECT b.s, o.s FROM big b FULL JOIN other o ON b.k = o.k AND b.v % 7 = o.v % 7",
    ),
    (
        "semi",
        "SELECT b.s FROM big b WHERE EXISTS (SELECT 1 FROM other o WHERE o.k = b.k AND o.v > b.v AND o.s > b.s)",
    ),
    (
        "anti",
        "SELECT b.s FROM big b WHERE NOT EXISTS (SELECT 1 FROM other o WHERE o.k = b.k AND o.v > b.v AND o.s > b.s)",
    ),
];

#[tokio::test]
async fn joins_whose_build_side_does_not_fit_fall_back_and_agree_with_datafusion() {
    let unlimited = session(None);
    let small = session(Some(2 << 20));
    for (name, sql) in QUERIES {
        let expected = sorted_text(&unlimited.sql(sql).await.unwrap().collect().await.unwrap());

        // DataFusion's own plan fails under this pool: the test can fail.
        let plain = plan(&small, sql).await;
        let err = collect(Arc::clone(&plain), small.task_ctx())
            .await
            .expect_err(&format!("{name}: the hash join should not fit"));
        assert!(is_resources_exhausted(&err), "{name}: {err}");

        let adapted =
            adapt_hash_joins(plan(&small, sql).await, AdaptiveJoinOptions::default()).unwrap();
        let batches = collect(Arc::clone(&adapted), small.task_ctx())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sorted_text(&batches), expected, "{name}");
        assert!(fallbacks(&adapted) > 0, "{name}: no partition fell back");
        let spilled = SpillTotals::of_plan(&adapted);
        assert!(spilled.spilled(), "{name}: nothing spilled: {spilled:?}");
    }
}

#[tokio::test]
async fn joins_that_fit_stay_hash_joins() {
    let ctx = session(Some(512 << 20));
    for (name, sql) in QUERIES {
        let expected = sorted_text(&ctx.sql(sql).await.unwrap().collect().await.unwrap());
        let adapted =
            adapt_hash_joins(plan(&ctx, sql).await, AdaptiveJoinOptions::default()).unwrap();
        let text = datafusion::physical_plan::displayable(adapted.as_ref())
            .indent(false)
            .to_string();
        assert!(text.contains("AdaptiveJoinExec"), "{name}: {text}");
        let batches = collect(Arc::clone(&adapted), ctx.task_ctx()).await.unwrap();
        assert_eq!(sorted_text(&batches), expected, "{name}");
        assert_eq!(fallbacks(&adapted), 0, "{name}");
        assert!(!SpillTotals::of_plan(&adapted).spilled(), "{name}");
    }
}

/// A one-partition input yielding `items`.
fn input(schema: SchemaRef, items: Vec<Result<RecordBatch>>) -> Arc<dyn ExecutionPlan> {
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter(items),
    );
    Arc::new(fallback::TakenInputExec::new(Box::pin(stream)))
}

/// A partitioned inner join of `build` and `probe` on their first column.
fn join_on_first_column(
    build: Arc<dyn ExecutionPlan>,
    probe: Arc<dyn ExecutionPlan>,
) -> HashJoinExec {
    use datafusion::common::NullEquality;
    use datafusion::logical_expr::JoinType;
    use datafusion::physical_expr::PhysicalExprRef;
    use datafusion::physical_expr::expressions::Column;
    let on = vec![(
        Arc::new(Column::new("k", 0)) as PhysicalExprRef,
        Arc::new(Column::new("k", 0)) as PhysicalExprRef,
    )];
    HashJoinExec::try_new(
        build,
        probe,
        on,
        None,
        &JoinType::Inner,
        None,
        PartitionMode::Partitioned,
        NullEquality::NullEqualsNothing,
        false,
    )
    .unwrap()
}

#[tokio::test]
async fn a_build_side_that_fails_by_itself_fails_the_join_instead_of_losing_rows() {
    // The build side's own input runs out of memory after one batch: that is
    // not the join's failure, and no fallback may run over the rows left.
    let (schema, batches) = batches_of(20_000, 1_000, "big");
    let refused = DataFusionError::ResourcesExhausted("an operator below the join".into());
    let build = input(
        Arc::clone(&schema),
        vec![Ok(batches[0].clone()), Err(refused)],
    );
    let probe = input(
        Arc::clone(&schema),
        batches.iter().cloned().map(Ok).collect(),
    );
    let join = AdaptiveJoinExec::try_new(
        &join_on_first_column(build, probe),
        AdaptiveJoinOptions::default(),
    )
    .unwrap();
    let join: Arc<dyn ExecutionPlan> = Arc::new(join);
    let ctx = session(Some(64 << 20));
    let err = collect(Arc::clone(&join), ctx.task_ctx())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("an operator below the join"),
        "{err}"
    );
    assert_eq!(fallbacks(&join), 0);
}

#[tokio::test]
async fn a_refused_build_side_falls_back_with_every_row() {
    // Driven without SQL: every build row, those the hash join read before
    // the pool refused it and those it had not, reaches the sort-merge join.
    let (schema, batches) = batches_of(20_000, 1_000, "big");
    let expected_rows: usize = {
        let build = input(
            Arc::clone(&schema),
            batches.iter().cloned().map(Ok).collect(),
        );
        let probe = input(
            Arc::clone(&schema),
            batches.iter().cloned().map(Ok).collect(),
        );
        let join: Arc<dyn ExecutionPlan> = Arc::new(join_on_first_column(build, probe));
        let out = collect(join, session(None).task_ctx()).await.unwrap();
        out.iter().map(RecordBatch::num_rows).sum()
    };
    let build = input(
        Arc::clone(&schema),
        batches.iter().cloned().map(Ok).collect(),
    );
    let probe = input(
        Arc::clone(&schema),
        batches.iter().cloned().map(Ok).collect(),
    );
    let join = AdaptiveJoinExec::try_new(
        &join_on_first_column(build, probe),
        AdaptiveJoinOptions::default(),
    )
    .unwrap();
    let join: Arc<dyn ExecutionPlan> = Arc::new(join);
    let out = collect(Arc::clone(&join), session(Some(1 << 20)).task_ctx())
        .await
        .unwrap();
    assert_eq!(
        out.iter().map(RecordBatch::num_rows).sum::<usize>(),
        expected_rows
    );
    assert_eq!(fallbacks(&join), 1);
}

/// Plans broadcast (`CollectLeft`) joins from now on: every build side
/// counts as small.
async fn broadcast_joins(ctx: &SessionContext) {
    for setting in [
        "SET datafusion.optimizer.hash_join_single_partition_threshold = 100000000",
        "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 100000000",
    ] {
        ctx.sql(setting).await.unwrap();
    }
}

fn display(plan: &Arc<dyn ExecutionPlan>) -> String {
    datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string()
}

#[tokio::test]
async fn broadcast_joins_that_do_not_fit_split_their_build_side_once_for_every_partition() {
    let unlimited = session(None);
    let small = session(Some(2 << 20));
    broadcast_joins(&small).await;
    for (name, sql) in QUERIES
        .iter()
        .filter(|(name, _)| matches!(*name, "inner" | "inner with filter" | "right"))
    {
        let expected = sorted_text(&unlimited.sql(sql).await.unwrap().collect().await.unwrap());
        let adapted =
            adapt_hash_joins(plan(&small, sql).await, AdaptiveJoinOptions::default()).unwrap();
        let text = display(&adapted);
        assert!(
            text.contains("AdaptiveJoinExec") && text.contains("CollectLeft"),
            "{name}: {text}"
        );
        let batches = collect(Arc::clone(&adapted), small.task_ctx())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sorted_text(&batches), expected, "{name}");
        assert_eq!(fallbacks(&adapted), 2, "{name}: both partitions fall back");
    }
}

#[tokio::test]
async fn broadcast_joins_that_emit_unmatched_build_rows_are_left_alone() {
    let ctx = session(None);
    broadcast_joins(&ctx).await;
    let sql = "SELECT b.k, b.s, o.s FROM big b LEFT JOIN other o ON b.k = o.k";
    let left = adapt_hash_joins(plan(&ctx, sql).await, AdaptiveJoinOptions::default()).unwrap();
    let text = display(&left);
    assert!(text.contains("CollectLeft"), "{text}");
    assert!(!text.contains("AdaptiveJoinExec"), "{text}");
}
