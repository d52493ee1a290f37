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
//! producer whose scan is in the same stage (the probe side of a broadcast
//! join, most often) gets one; [`task_context_with_dynamic_filters`] turns
//! them on in the task's context too, which DataFusion checks again when
//! the join runs. A producer whose scan is behind a shuffle reader gets
//! none: the filter pushdown stops at the reader, and the join sees that no
//! scan of its probe side holds its filter.
//!
//! Both follow `ember.stage_dynamic_filters` (on by default).

use std::sync::Arc;

use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use ember_core::EmberConfig;

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
        FilterPushdown::new_post_optimization().optimize(plan, &options)
    }
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
    Arc::new(TaskContext::new(
        context.task_id(),
        context.session_id(),
        config,
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        context.runtime_env(),
    ))
}

/// Turns on every kind of dynamic filter DataFusion has.
fn turn_on_dynamic_filters(options: &mut ConfigOptions) {
    let optimizer = &mut options.optimizer;
    optimizer.enable_dynamic_filter_pushdown = true;
    optimizer.enable_join_dynamic_filter_pushdown = true;
    optimizer.enable_topk_dynamic_filter_pushdown = true;
    optimizer.enable_aggregate_dynamic_filter_pushdown = true;
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::datasource::source::DataSourceExec;
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

    fn sorted_values(batches: &[datafusion::arrow::array::RecordBatch]) -> Vec<i64> {
        let mut values: Vec<i64> = batches
            .iter()
            .flat_map(|batch| {
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("v is a BIGINT");
                (0..column.len())
                    .map(|row| column.value(row))
                    .collect::<Vec<_>>()
            })
            .collect();
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
