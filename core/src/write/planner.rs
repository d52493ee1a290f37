//! The physical planner that turns DataFusion's single-task writes into
//! distributed, atomic ones.
//!
//! DataFusion plans `COPY ... TO` and `INSERT INTO` a listing table as a
//! `DataSinkExec`, which needs its whole input in one partition: on a
//! cluster, one task would write everything. [`EmberQueryPlanner`] plans as
//! DataFusion does, then replaces each such file write with
//!
//! ```text
//! WriteCommitExec                  one task: move staged files, _SUCCESS
//!   CoalescePartitionsExec         (a stage boundary on a cluster)
//!     StagedWriteExec              one task per partition: stage part files
//!       <the query>
//! ```
//!
//! The scheduler and embedded sessions plan with it; Ballista's adaptive
//! planner keeps a session's query planner, so the rewrite happens on a
//! cluster too.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;

use super::exec::{SinkSpec, StagedWriteExec, WriteCommitExec};
use crate::config::EmberConfig;

/// DataFusion's physical planner followed by [`distribute_writes`].
#[derive(Debug, Default)]
pub struct EmberQueryPlanner;

#[async_trait]
impl QueryPlanner for EmberQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session_state)
            .await?;
        distribute_writes(plan, session_state.config())
    }
}

/// Replaces every append of DataFusion's Parquet, CSV or JSON sinks in
/// `plan` with a staged write and its commit. Writes that need their input
/// in order (a sink with a sort order) or that overwrite are left to
/// DataFusion.
pub fn distribute_writes(
    plan: Arc<dyn ExecutionPlan>,
    config: &SessionConfig,
) -> Result<Arc<dyn ExecutionPlan>> {
    let requested_id = EmberConfig::from_session_config(config).write_id.0;
    plan.transform_up(|node| {
        let Some(sink_exec) = node.downcast_ref::<DataSinkExec>() else {
            return Ok(Transformed::no(node));
        };
        if sink_exec.sort_order().is_some() {
            return Ok(Transformed::no(node));
        }
        let Some(spec) = SinkSpec::from_sink(sink_exec.sink())? else {
            return Ok(Transformed::no(node));
        };
        if spec.config()?.insert_op != InsertOp::Append {
            return Ok(Transformed::no(node));
        }
        let write_id = if requested_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            requested_id.clone()
        };
        // Undo the funnel DataFusion put in front of its sink, except for a
        // single file, which one task writes.
        let (destination, single_file) = spec.destination()?;
        let mut input = sink_exec.input().clone();
        if let Some(coalesce) = input.downcast_ref::<CoalescePartitionsExec>() {
            input = coalesce.input().clone();
        }
        if single_file && input.output_partitioning().partition_count() > 1 {
            input = Arc::new(CoalescePartitionsExec::new(input));
        }
        let writer: Arc<dyn ExecutionPlan> =
            Arc::new(StagedWriteExec::try_new(input, spec, write_id.clone())?);
        let gathered: Arc<dyn ExecutionPlan> = if writer.output_partitioning().partition_count() > 1
        {
            Arc::new(CoalescePartitionsExec::new(writer))
        } else {
            writer
        };
        tracing::debug!(%destination, write_id, "distributing a write");
        Ok(Transformed::yes(Arc::new(WriteCommitExec::new(
            gathered,
            destination,
            single_file,
            write_id,
        ))))
    })
    .map(|t| t.data)
}
