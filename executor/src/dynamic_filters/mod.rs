//! Dynamic filters within a stage.
//!
//! Embedded, DataFusion lets a hash join filter the scan of its probe side
//! with what its build side holds, a top-k sort filter its scan with the
//! k-th value so far, and a `min`/`max` aggregate its scan with the extreme
//! so far ("dynamic filters"). Clusters plan with them off: a filter made in
//! one stage cannot reach a scan in another, and the scheduler's plan is
//! split into stages after it is optimized. Within one task, though, the
//! producer and the scan run in the same process, as they do embedded.
//!
//! [`StageDynamicFilters`] runs DataFusion's post-optimization filter
//! pushdown over each decoded stage plan with dynamic filters on, so every
//! producer whose scan is in the same stage gets one, and puts a
//! [`DynamicRowFilterExec`] over each shuffle reader that a filter reaches,
//! which drops the rows the filter rejects as they are read: the rows of a
//! broadcast table that a join above will not match, before the join below
//! hashes them. [`task_context_with_dynamic_filters`] turns the filters on
//! in the task's context too, which DataFusion checks again when a join
//! runs.
//!
//! A hash join of partitioned inputs gets no dynamic filter: DataFusion
//! routes its filter by hashing the keys modulo the partitions the join
//! sees, and a task sees only its own share of the stage's partitions,
//! numbered from 0. No reader in the probe side of such a join is wrapped,
//! and a stage in which such a join would still get a filter (a scan in its
//! probe side) keeps its plan as it was.
//!
//! Both follow `ember.stage_dynamic_filters` (on by default). Where
//! `ember.dynamic_filters_in_scans` is on too, the stage's scans get
//! [`DynamicRowFilterExec`]s as well, as embedded plans do, which drop the
//! rows a filter rejects right above the scan.

use std::sync::Arc;

use ballista_core::execution_plans::ShuffleReaderExec;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use datafusion::prelude::SessionConfig;
use ember_core::EmberConfig;
use ember_core::scan_dynamic_filters::{
    DynamicRowFilterExec, partitioned_join_filter_ids, refers_to_any, unwrap_unfiltered_scans,
    wrap_scans,
};

use crate::engine::StagePlanRewrite;

/// The stage rewrite that gives the hash joins, top-k sorts and `min`/`max`
/// aggregates of a stage dynamic filters on the scans in the same stage,
/// where `ember.stage_dynamic_filters` is on.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageDynamicFilters;

impl StagePlanRewrite for StageDynamicFilters {
    fn name(&self) -> &str {
        "ember_stage_dynamic_filters"
    }

    fn rewrite(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !EmberConfig::from_session_config(config).stage_dynamic_filters {
            return Ok(plan);
        }
        let mut options = ConfigOptions::clone(config.options());
        turn_on_dynamic_filters(&mut options);
        let mut wrapped = wrap_shuffle_readers(Arc::clone(&plan), false)?;
        let scans_filtered = EmberConfig::from_session_config(config).dynamic_filters_in_scans;
        if scans_filtered {
            wrapped = wrap_scans(wrapped)?;
        }
        let filtered = FilterPushdown::new_post_optimization().optimize(wrapped, &options)?;
        if partitioned_join_filters_itself(&filtered)? {
            tracing::debug!("a partitioned hash join would filter its own probe side: stage kept");
            return Ok(plan);
        }
        let skip_direct_probes =
            EmberConfig::from_session_config(config).dynamic_filters_skip_direct_probes;
        unwrap_unfiltered_scans(filtered, skip_direct_probes)
    }
}

/// `plan` with a [`DynamicRowFilterExec`] over each shuffle reader that
/// is not on the probe side of a partitioned hash join (`in_partitioned_probe`:
/// whether `plan` itself is).
fn wrap_shuffle_readers(
    plan: Arc<dyn ExecutionPlan>,
    in_partitioned_probe: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.is::<ShuffleReaderExec>() {
        return Ok(if in_partitioned_probe {
            plan
        } else {
            Arc::new(DynamicRowFilterExec::new(plan))
        });
    }
    let partitioned = plan
        .downcast_ref::<HashJoinExec>()
        .is_some_and(is_partitioned);
    let children = plan.children();
    if children.is_empty() {
        return Ok(plan);
    }
    let probe = children.len() - 1;
    let children = children
        .into_iter()
        .enumerate()
        .map(|(at, child)| {
            wrap_shuffle_readers(
                Arc::clone(child),
                in_partitioned_probe || (partitioned && at == probe),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    plan.replace_children(
        children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// Whether a partitioned hash join in `plan` got a dynamic filter that
/// something on its probe side evaluates.
fn partitioned_join_filters_itself(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    let mut found = false;
    plan.apply(|node| {
        let ids = partitioned_join_filter_ids(node);
        if let Some(join) = node.downcast_ref::<HashJoinExec>()
            && !ids.is_empty()
        {
            found = evaluates_any(join.right(), &ids)?;
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

/// Whether a node of `plan` evaluates an expression whose id is in `ids`.
fn evaluates_any(plan: &Arc<dyn ExecutionPlan>, ids: &[u64]) -> Result<bool> {
    let stopped = plan.apply(|node| {
        node.apply_expressions(&mut |root| {
            Ok(if refers_to_any(root, ids) {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
    })?;
    Ok(stopped == TreeNodeRecursion::Stop)
}

/// Whether `join` joins partitioned inputs, partition by partition.
fn is_partitioned(join: &HashJoinExec) -> bool {
    *join.partition_mode() == PartitionMode::Partitioned
}

/// `context` with DataFusion's dynamic filters on, where
/// `ember.stage_dynamic_filters` is on; `context` itself otherwise. A hash
/// join checks the setting again when it runs, and keeps its filter empty
/// without it.
pub fn task_context_with_dynamic_filters(context: Arc<TaskContext>) -> Arc<TaskContext> {
    let config = context.session_config();
    if !EmberConfig::from_session_config(config).stage_dynamic_filters
        || config
            .options()
            .optimizer
            .enable_join_dynamic_filter_pushdown
    {
        return context;
    }
    let mut config = config.clone();
    turn_on_dynamic_filters(config.options_mut());
    ember_memory::task_context_with(&context, config, context.runtime_env())
}

/// Turns on every kind of dynamic filter DataFusion has.
fn turn_on_dynamic_filters(options: &mut ConfigOptions) {
    let optimizer = &mut options.optimizer;
    optimizer.enable_dynamic_filter_pushdown = true;
    optimizer.enable_join_dynamic_filter_pushdown = true;
    optimizer.enable_topk_dynamic_filter_pushdown = true;
    optimizer.enable_aggregate_dynamic_filter_pushdown = true;
}

/// The values of the first column of `batches`, a BIGINT without NULLs.
#[cfg(test)]
fn bigint_values(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<i64> {
    use datafusion::arrow::array::{Array, Int64Array};
    batches
        .iter()
        .flat_map(|batch| {
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("the first column is a BIGINT");
            column.values().to_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::common::NullEquality;
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::logical_expr::JoinType;
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    use super::*;

    /// Rows the plan's scans produced, all partitions together.
    fn scanned_rows(plan: &Arc<dyn ExecutionPlan>) -> usize {
        let own = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|scan| scan.metrics())
            .and_then(|metrics| metrics.output_rows())
            .unwrap_or(0);
        own + plan.children().into_iter().map(scanned_rows).sum::<usize>()
    }

    fn sorted_values(batches: &[RecordBatch]) -> Vec<i64> {
        let mut values = bigint_values(batches);
        values.sort_unstable();
        values
    }

    /// A session planned as on a cluster (dynamic filters off), with a
    /// 10,000-row Parquet table in row groups of 1,000 and a 2-row table.
    async fn cluster_session(dir: &std::path::Path) -> SessionContext {
        let ctx = SessionContext::new_with_config(ember_core::distributed_session_config());
        let probe = dir.join("probe.parquet");
        ctx.sql(&format!(
            "COPY (SELECT value AS k, value * 2 AS v FROM generate_series(1, 10000)) \
             TO '{}' STORED AS PARQUET OPTIONS ('format.max_row_group_size' '1000')",
            probe.display()
        ))
        .await
        .expect("COPY plans")
        .collect()
        .await
        .expect("the probe table is written");
        ctx.register_parquet(
            "probe",
            probe.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .expect("the probe table registers");
        ctx.sql("CREATE TABLE build AS VALUES (CAST(5 AS BIGINT)), (CAST(7 AS BIGINT))")
            .await
            .expect("the build table is created")
            .collect()
            .await
            .expect("the build table is created");
        ctx
    }

    #[tokio::test]
    async fn a_broadcast_join_prunes_its_probe_scan_within_the_stage() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = cluster_session(dir.path()).await;
        let sql = "SELECT p.v FROM build b JOIN probe p ON b.column1 = p.k";
        // Two plans of the same query, so that their scans' metrics are
        // their own.
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let to_filter = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.contains("CollectLeft"), "{shown}");
        assert!(!shown.contains("DynamicFilter"), "{shown}");

        let config = ctx.copied_config();
        let filtered = StageDynamicFilters.rewrite(to_filter, &config).unwrap();
        let shown = displayable(filtered.as_ref()).indent(true).to_string();
        assert!(shown.contains("DynamicFilter"), "{shown}");

        let task = ctx.task_ctx();
        let unfiltered_rows = collect(Arc::clone(&plan), Arc::clone(&task)).await.unwrap();
        let filtered_rows = collect(
            Arc::clone(&filtered),
            task_context_with_dynamic_filters(task),
        )
        .await
        .unwrap();
        assert_eq!(sorted_values(&unfiltered_rows), vec![10, 14]);
        assert_eq!(sorted_values(&filtered_rows), vec![10, 14]);
        assert_eq!(scanned_rows(&plan), 10_000);
        // Only the first row group holds keys between 5 and 7.
        assert_eq!(scanned_rows(&filtered), 1_000);
    }

    /// A shuffle reader of `schema` (never executed).
    fn reader(stage_id: usize, schema: &SchemaRef, partitions: usize) -> Arc<dyn ExecutionPlan> {
        Arc::new(
            ShuffleReaderExec::try_new(
                stage_id,
                vec![Vec::new(); partitions],
                Arc::clone(schema),
                Partitioning::UnknownPartitioning(partitions),
            )
            .unwrap(),
        )
    }

    fn hash_join(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        mode: PartitionMode,
    ) -> Arc<dyn ExecutionPlan> {
        let on = vec![(
            Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>,
            Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>,
        )];
        Arc::new(
            HashJoinExec::try_new(
                left,
                right,
                on,
                None,
                &JoinType::Inner,
                Some(vec![0]),
                mode,
                NullEquality::NullEqualsNothing,
                false,
            )
            .unwrap(),
        )
    }

    fn shape(plan: &Arc<dyn ExecutionPlan>) -> String {
        displayable(plan.as_ref()).indent(false).to_string()
    }

    /// The stages of the shuffle readers that `plan` filters, in plan order.
    fn filtered_readers(plan: &Arc<dyn ExecutionPlan>) -> Vec<usize> {
        let mut stages = Vec::new();
        plan.apply(|node| {
            if let Some(read) = node.downcast_ref::<DynamicRowFilterExec>() {
                assert!(!read.filters().is_empty());
                let reader = read.input().downcast_ref::<ShuffleReaderExec>().unwrap();
                stages.push(reader.stage_id);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        stages
    }

    #[test]
    fn readers_feeding_broadcast_joins_are_filtered_and_partitioned_probes_are_not() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        // A broadcast join whose build side is another stage's table, below
        // a broadcast join with a small build side: the upper join's filter
        // reaches the lower join's build-side reader.
        let lower = hash_join(
            Arc::new(CoalescePartitionsExec::new(reader(1, &schema, 2))),
            reader(2, &schema, 2),
            PartitionMode::CollectLeft,
        );
        let upper = hash_join(
            Arc::new(CoalescePartitionsExec::new(reader(3, &schema, 1))),
            lower,
            PartitionMode::CollectLeft,
        );
        let mut config = ember_core::distributed_session_config();
        let rewritten = StageDynamicFilters
            .rewrite(Arc::clone(&upper), &config)
            .unwrap();
        let shown = shape(&rewritten);
        assert!(shown.contains("DynamicFilter"), "{shown}");
        // Stage 1 (the lower build side) by the upper join's filter. Stage
        // 2, which the lower join probes directly, is not filtered by that
        // join's own filter: the join looks its rows up anyway.
        assert_eq!(filtered_readers(&rewritten), vec![1], "{shown}");
        config
            .options_mut()
            .set("ember.dynamic_filters_skip_direct_probes", "false")
            .unwrap();
        let rewritten = StageDynamicFilters
            .rewrite(Arc::clone(&upper), &config)
            .unwrap();
        let shown = shape(&rewritten);
        assert_eq!(filtered_readers(&rewritten), vec![1, 2], "{shown}");

        // The same joins partitioned: nothing on their probe sides is
        // wrapped, and no filter is made.
        let lower = hash_join(
            reader(1, &schema, 2),
            reader(2, &schema, 2),
            PartitionMode::Partitioned,
        );
        let upper = hash_join(reader(3, &schema, 2), lower, PartitionMode::Partitioned);
        let rewritten = StageDynamicFilters
            .rewrite(Arc::clone(&upper), &config)
            .unwrap();
        let shown = shape(&rewritten);
        assert!(!shown.contains("DynamicRowFilterExec"), "{shown}");
        assert!(!shown.contains("DynamicFilter"), "{shown}");
    }

    #[tokio::test]
    async fn a_partitioned_join_over_a_scan_keeps_its_plan() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = cluster_session(dir.path()).await;
        let scan = ctx
            .sql("SELECT k FROM probe")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        assert!(scan.is::<DataSourceExec>(), "{}", shape(&scan));
        let schema = scan.schema();
        // One partition on each side, which DataFusion routes a filter
        // over; the scan, on the join's probe side, would take it.
        let join = hash_join(reader(1, &schema, 1), scan, PartitionMode::Partitioned);
        let rewritten = StageDynamicFilters
            .rewrite(Arc::clone(&join), &ctx.copied_config())
            .unwrap();
        assert!(Arc::ptr_eq(&join, &rewritten), "{}", shape(&rewritten));
    }

    #[tokio::test]
    async fn the_setting_turns_them_off() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = cluster_session(dir.path()).await;
        ctx.sql("SET ember.stage_dynamic_filters = false")
            .await
            .unwrap();
        let plan = ctx
            .sql("SELECT p.v FROM build b JOIN probe p ON b.column1 = p.k")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let config = ctx.copied_config();
        let rewritten = StageDynamicFilters
            .rewrite(Arc::clone(&plan), &config)
            .unwrap();
        let shown = displayable(rewritten.as_ref()).indent(true).to_string();
        assert!(!shown.contains("DynamicFilter"), "{shown}");
        let task = ctx.task_ctx();
        let unchanged = task_context_with_dynamic_filters(Arc::clone(&task));
        assert!(Arc::ptr_eq(&task, &unchanged));
    }
}
