use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;

use super::{DynamicRowFilterExec, FilterSampling};
use crate::config::session_config;
use crate::test_support::{ember_context, memory_table, physical_plan, printed_result, shown};

const FACT_ROWS: i64 = 10_000;

/// A session with Ember's state over `fact` (k = 0..1000 ten times, v = the
/// row number) and `dim` (k = 0..10, named `even` or `odd`).
fn context() -> SessionContext {
    let ctx = ember_context(session_config());
    let fact = memory_table(vec![
        (
            "k",
            Arc::new(Int64Array::from_iter_values(
                (0..FACT_ROWS).map(|i| i % 1000),
            )) as ArrayRef,
        ),
        ("v", Arc::new(Int64Array::from_iter_values(0..FACT_ROWS))),
    ]);
    let names: Vec<&str> = (0..10)
        .map(|k| if k % 2 == 0 { "even" } else { "odd" })
        .collect();
    let dim = memory_table(vec![
        (
            "k",
            Arc::new(Int64Array::from_iter_values(0..10)) as ArrayRef,
        ),
        ("name", Arc::new(StringArray::from(names))),
    ]);
    ctx.register_table("fact", fact).unwrap();
    ctx.register_table("dim", dim).unwrap();
    ctx
}

const JOIN: &str = "SELECT d.name, count(*) AS n, sum(f.v) AS total \
     FROM fact f JOIN dim d ON f.k = d.k WHERE d.name = 'odd' GROUP BY d.name";

/// Rows the joins of `plan` read from their probe sides.
fn probe_rows(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = Some(plan)
        .filter(|node| node.name().contains("Join"))
        .and_then(|join| join.metrics())
        .and_then(|metrics| metrics.sum_by_name("input_rows"))
        .map_or(0, |rows| rows.as_usize());
    own + plan.children().into_iter().map(probe_rows).sum::<usize>()
}

#[tokio::test]
async fn a_joins_probe_side_drops_the_rows_its_build_side_cannot_match_at_the_scan() {
    let ctx = context();
    // The join reads the scan directly: its own filter is evaluated there
    // only with this setting off.
    ctx.sql("SET ember.dynamic_filters_skip_direct_probes = false")
        .await
        .unwrap();
    let filtered = physical_plan(&ctx, JOIN).await;
    assert!(
        shown(&filtered).contains("DynamicRowFilterExec: [DynamicFilter"),
        "{}",
        shown(&filtered)
    );
    let with_filter = printed_result(&ctx, Arc::clone(&filtered)).await;
    // Five of the thousand keys are odd keys of `dim`: ten rows each.
    assert_eq!(probe_rows(&filtered), 50);

    ctx.sql("SET ember.dynamic_filters_in_scans = false")
        .await
        .unwrap();
    let plain = physical_plan(&ctx, JOIN).await;
    assert!(
        !shown(&plain).contains("DynamicRowFilterExec"),
        "{}",
        shown(&plain)
    );
    let without_filter = printed_result(&ctx, Arc::clone(&plain)).await;
    assert_eq!(probe_rows(&plain), FACT_ROWS as usize);
    assert_eq!(with_filter, without_filter);
    // Keys 1, 3, 5, 7 and 9, at rows k, k + 1000, ..., k + 9000.
    let total: i64 = [1i64, 3, 5, 7, 9]
        .iter()
        .map(|k| (0..10).map(|i| k + 1000 * i).sum::<i64>())
        .sum();
    assert!(
        with_filter.contains(&format!("| odd  | 50 | {total} |")),
        "{with_filter}"
    );
}

/// The number of filters of each [`DynamicRowFilterExec`] in `plan`.
fn row_filters(plan: &Arc<dyn ExecutionPlan>) -> Vec<usize> {
    let mut counts = Vec::new();
    plan.apply(|node| {
        if let Some(filter) = node.downcast_ref::<DynamicRowFilterExec>() {
            counts.push(filter.filters().len());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    counts
}

/// A join that reads a scan directly looks every row up in its hash table
/// anyway: its own filter is not evaluated above that scan, and the join
/// probes all of `fact`, with the same answer.
#[tokio::test]
async fn a_joins_own_filter_is_not_evaluated_right_below_its_probe_side() {
    let ctx = context();
    let plan = physical_plan(&ctx, JOIN).await;
    let shown_plan = shown(&plan);
    assert!(
        shown_plan.contains("HashJoinExec: mode=CollectLeft"),
        "{shown_plan}"
    );
    assert_eq!(row_filters(&plan), Vec::<usize>::new(), "{shown_plan}");
    let skipped = printed_result(&ctx, Arc::clone(&plan)).await;
    assert_eq!(probe_rows(&plan), FACT_ROWS as usize);
    ctx.sql("SET ember.dynamic_filters_skip_direct_probes = false")
        .await
        .unwrap();
    let evaluated = physical_plan(&ctx, JOIN).await;
    assert_eq!(row_filters(&evaluated), vec![1], "{}", shown(&evaluated));
    assert_eq!(skipped, printed_result(&ctx, evaluated).await);
}

/// Two broadcast joins on `fact`, one above the other, built here as
/// physical plans so that `fact` is the probe side of both whatever the
/// planner would choose: the upper join's filter reaches `fact`'s scan
/// through the lower join and still drops rows there; only the lower
/// join's own filter, which it would look up again, is left out.
#[tokio::test]
async fn a_filter_from_a_join_further_up_still_drops_rows_at_the_scan() {
    use datafusion::common::{JoinType, NullEquality};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};

    use super::DynamicFiltersInScans;

    fn scan(columns: Vec<(&str, Vec<i64>)>) -> Arc<dyn ExecutionPlan> {
        let batch = RecordBatch::try_from_iter(
            columns
                .into_iter()
                .map(|(name, values)| (name, Arc::new(Int64Array::from(values)) as ArrayRef)),
        )
        .unwrap();
        MemorySourceConfig::try_new_exec(&[vec![batch.clone()]], batch.schema(), None).unwrap()
    }
    fn broadcast_join(
        build: Arc<dyn ExecutionPlan>,
        probe: Arc<dyn ExecutionPlan>,
        build_key: Column,
        probe_key: Column,
    ) -> Arc<dyn ExecutionPlan> {
        let on = vec![(
            Arc::new(build_key) as Arc<dyn PhysicalExpr>,
            Arc::new(probe_key) as Arc<dyn PhysicalExpr>,
        )];
        Arc::new(
            HashJoinExec::try_new(
                build,
                probe,
                on,
                None,
                &JoinType::Inner,
                None,
                PartitionMode::CollectLeft,
                NullEquality::NullEqualsNothing,
                false,
            )
            .unwrap(),
        )
    }

    // `fact` as in `context`; the odd keys; twenty values of `v` in rows
    // of the odd keys (k, k + 1000, k + 2000 and k + 3000).
    let fact = scan(vec![
        ("k", (0..FACT_ROWS).map(|i| i % 1000).collect()),
        ("v", (0..FACT_ROWS).collect()),
    ]);
    let odd = scan(vec![("odd_k", vec![1, 3, 5, 7, 9])]);
    let picked: Vec<i64> = [1i64, 3, 5, 7, 9]
        .iter()
        .flat_map(|k| (0..4).map(move |i| k + 1000 * i))
        .collect();
    let total: i64 = picked.iter().sum();
    let low = scan(vec![("low_v", picked)]);
    // Lower: odd_k = k, its output (odd_k, k, v); upper: low_v = v.
    let lower = broadcast_join(odd, fact, Column::new("odd_k", 0), Column::new("k", 0));
    let upper = broadcast_join(low, lower, Column::new("low_v", 0), Column::new("v", 2));

    let mut config = session_config();
    let plan = DynamicFiltersInScans::new()
        .optimize(Arc::clone(&upper), config.options())
        .unwrap();
    assert_eq!(row_filters(&plan), vec![1], "{}", shown(&plan));
    let task = SessionContext::new_with_config(config.clone()).task_ctx();
    let batches = collect(Arc::clone(&plan), task).await.unwrap();
    let rows: usize = batches.iter().map(|batch| batch.num_rows()).sum();
    let summed: i64 = batches
        .iter()
        .flat_map(|batch| {
            // The upper join's output: (low_v, odd_k, k, v).
            let v = batch
                .column(3)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            v.values().to_vec()
        })
        .sum();
    assert_eq!((rows, summed), (20, total));
    // The lower join probes the twenty rows the upper join's filter
    // keeps at the scan, the upper one the twenty it outputs.
    assert_eq!(probe_rows(&plan), 40, "{}", shown(&plan));

    config
        .options_mut()
        .set("ember.dynamic_filters_skip_direct_probes", "false")
        .unwrap();
    let both = DynamicFiltersInScans::new()
        .optimize(upper, config.options())
        .unwrap();
    assert_eq!(row_filters(&both), vec![2], "{}", shown(&both));
}

#[tokio::test]
async fn a_scan_no_dynamic_filter_reaches_keeps_its_plan() {
    let ctx = context();
    for sql in [
        "SELECT sum(v) FROM fact WHERE v > 3",
        "SELECT k, count(*) FROM fact GROUP BY k",
    ] {
        let plan = physical_plan(&ctx, sql).await;
        assert!(
            !shown(&plan).contains("DynamicRowFilterExec"),
            "{sql}: {}",
            shown(&plan)
        );
    }
}

#[tokio::test]
async fn an_outer_joins_preserved_side_keeps_every_row() {
    let ctx = context();
    let sql = "SELECT count(*) AS n FROM fact f LEFT JOIN dim d ON f.k = d.k AND d.name = 'odd'";
    let plan = physical_plan(&ctx, sql).await;
    let rows = printed_result(&ctx, plan).await;
    assert!(rows.contains(&format!("| {FACT_ROWS} |")), "{rows}");
}

#[test]
fn a_filter_that_drops_little_is_sampled_and_watched_again() {
    let mut sampling = FilterSampling::default();
    let batch = 8 * 1024;
    let window = FilterSampling::WINDOW_ROWS / batch;
    // Useful: drops half of every batch, evaluated on every batch.
    for _ in 0..2 * window {
        assert!(sampling.evaluate_next());
        sampling.record(batch, batch / 2);
    }
    // Keeps every row for a window: sampled from then on.
    for _ in 0..window {
        assert!(sampling.evaluate_next());
        sampling.record(batch, batch);
    }
    let evaluated = (0..FilterSampling::SAMPLE_EVERY * 4)
        .filter(|_| sampling.evaluate_next())
        .count();
    assert_eq!(evaluated, 4);
    // A sample that drops most rows makes it useful again.
    while !sampling.evaluate_next() {}
    sampling.record(FilterSampling::WINDOW_ROWS, 10);
    assert!((0..10).all(|_| sampling.evaluate_next()));
}

#[tokio::test]
async fn a_partitioned_joins_filter_only_prunes() {
    let ctx = context();
    for setting in [
        "SET datafusion.execution.target_partitions = 2",
        "SET datafusion.optimizer.hash_join_single_partition_threshold = 0",
        "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0",
        "SET ember.broadcast_join_probe_ratio = 0",
    ] {
        ctx.sql(setting).await.unwrap();
    }
    let partitioned = physical_plan(&ctx, JOIN).await;
    let shown_plan = shown(&partitioned);
    assert!(shown_plan.contains("mode=Partitioned"), "{shown_plan}");
    assert!(!shown_plan.contains("DynamicRowFilterExec"), "{shown_plan}");
    let rows = printed_result(&ctx, partitioned).await;
    ctx.sql("SET ember.dynamic_filters_in_scans = false")
        .await
        .unwrap();
    assert_eq!(
        rows,
        printed_result(&ctx, physical_plan(&ctx, JOIN).await).await
    );
}

#[tokio::test]
async fn drops_the_rows_its_dynamic_filter_rejects_once_filled_in() {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::config::ConfigOptions;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::{
        BinaryExpr, Column, DynamicFilterPhysicalExpr, lit,
    };
    use datafusion::physical_plan::filter_pushdown::{
        ChildFilterPushdownResult, ChildPushdownResult, FilterPushdownPhase, PushedDown,
    };

    use super::DynamicRowFilterExec;

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|batch| {
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                column.values().to_vec()
            })
            .collect()
    }

    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]))],
    )
    .unwrap();
    let input = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap();
    let a: Arc<dyn PhysicalExpr> = Arc::new(Column::new("a", 0));
    let dynamic = Arc::new(DynamicFilterPhysicalExpr::new(
        vec![Arc::clone(&a)],
        lit(true),
    ));
    // The input could not take the filter: the node keeps it.
    let pushed = ChildPushdownResult {
        parent_filters: vec![ChildFilterPushdownResult {
            filter: Arc::clone(&dynamic) as Arc<dyn PhysicalExpr>,
            child_results: vec![PushedDown::No],
        }],
        self_filters: vec![Vec::new()],
    };
    let node = Arc::new(DynamicRowFilterExec::new(input));
    let propagation = node
        .handle_child_pushdown_result(FilterPushdownPhase::Post, pushed, &ConfigOptions::default())
        .unwrap();
    assert!(matches!(propagation.filters.as_slice(), [PushedDown::Yes]));
    let filtered = propagation.updated_node.expect("the node keeps the filter");
    let node = filtered.downcast_ref::<DynamicRowFilterExec>().unwrap();
    assert_eq!(node.filters().len(), 1);
    assert!(filtered.metrics().is_none());

    let task = SessionContext::new().task_ctx();
    let before = collect(Arc::clone(&filtered), Arc::clone(&task))
        .await
        .unwrap();
    assert_eq!(values(&before), vec![1, 2, 3, 4, 5]);
    dynamic
        .update(Arc::new(BinaryExpr::new(a, Operator::Lt, lit(3i64))))
        .unwrap();
    let after = collect(Arc::clone(&filtered), Arc::clone(&task))
        .await
        .unwrap();
    assert_eq!(values(&after), vec![1, 2]);
    dynamic.update(lit(false)).unwrap();
    assert!(values(&collect(filtered, task).await.unwrap()).is_empty());
}
