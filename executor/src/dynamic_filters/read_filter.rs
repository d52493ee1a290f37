//! [`ShuffleReadFilterExec`]: where the dynamic filters of a stage meet the
//! rows it reads from other stages.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::cast::as_boolean_array;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ScalarValue, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
    PushedDown,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::StreamExt;

/// Filters the rows of its input, a shuffle reader, with the dynamic
/// filters pushed down to it: the filters a hash join, a top-k sort or a
/// `min`/`max` aggregate above it in the same stage fills in as it runs. A
/// Parquet scan prunes with such filters; a shuffle reader cannot, so this
/// node drops the rows they reject as they arrive, before they reach the
/// build side of a join (where the rows of a whole table would otherwise
/// be hashed, and joined, only to be dropped later).
///
/// Until a filter is filled in it lets every row through, so the answer
/// never depends on when it is. It has no metrics of its own: a stage's
/// metrics stay those of the scheduler's plan, node for node.
#[derive(Debug)]
pub(crate) struct ShuffleReadFilterExec {
    input: Arc<dyn ExecutionPlan>,
    filters: Vec<Arc<dyn PhysicalExpr>>,
}

impl ShuffleReadFilterExec {
    /// Wraps `input`, with no filters yet.
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            input,
            filters: Vec::new(),
        }
    }

    /// The filters pushed down to it.
    pub(crate) fn filters(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.filters
    }

    /// Its input.
    pub(crate) fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for ShuffleReadFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let filters: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
        write!(f, "ShuffleReadFilterExec: [{}]", filters.join(", "))
    }
}

impl ExecutionPlan for ShuffleReadFilterExec {
    fn name(&self) -> &str {
        "ShuffleReadFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // A hash join looks for its filter among the expressions below it
        // before it fills it in.
        for filter in &self.filters {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!(
                "ShuffleReadFilterExec takes one child, got {}",
                children.len()
            );
        }
        Ok(Arc::new(Self {
            input: children.swap_remove(0),
            filters: self.filters.clone(),
        }))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        // The reader cannot use them; this node keeps them.
        Ok(FilterDescription::all_unsupported(
            &parent_filters,
            &self.children(),
        ))
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let pushed: Vec<Arc<dyn PhysicalExpr>> = child_pushdown_result
            .parent_filters
            .iter()
            .map(|result| Arc::clone(&result.filter))
            .collect();
        // Only dynamic filters travel in the post-optimization phase; the
        // static ones were placed when the scheduler planned the query.
        if phase != FilterPushdownPhase::Post || pushed.is_empty() {
            return Ok(FilterPushdownPropagation::if_all(child_pushdown_result));
        }
        let accepted = vec![PushedDown::Yes; pushed.len()];
        let node = Self {
            input: Arc::clone(&self.input),
            filters: self.filters.iter().cloned().chain(pushed).collect(),
        };
        Ok(
            FilterPushdownPropagation::with_parent_pushdown_result(accepted)
                .with_updated_node(Arc::new(node) as Arc<dyn ExecutionPlan>),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let filters = self.filters.clone();
        let filtered = input.filter_map(move |batch| {
            let kept = batch.and_then(|batch| keep_rows(batch, &filters));
            std::future::ready(match kept {
                Ok(batch) if batch.num_rows() == 0 => None,
                other => Some(other),
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, filtered)))
    }
}

/// The rows of `batch` every filter keeps.
fn keep_rows(mut batch: RecordBatch, filters: &[Arc<dyn PhysicalExpr>]) -> Result<RecordBatch> {
    for filter in filters {
        if batch.num_rows() == 0 {
            break;
        }
        // A filter not filled in yet is `true`: nothing to do.
        batch = match filter.evaluate(&batch)? {
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => batch,
            ColumnarValue::Scalar(_) => batch.slice(0, 0),
            ColumnarValue::Array(mask) => filter_record_batch(&batch, as_boolean_array(&mask)?)?,
        };
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{
        BinaryExpr, Column, DynamicFilterPhysicalExpr, lit,
    };
    use datafusion::physical_plan::collect;
    use datafusion::physical_plan::filter_pushdown::ChildFilterPushdownResult;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::dynamic_filters::bigint_values;

    #[tokio::test]
    async fn drops_the_rows_its_dynamic_filter_rejects_once_filled_in() {
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
        let pushed = ChildPushdownResult {
            parent_filters: vec![ChildFilterPushdownResult {
                filter: Arc::clone(&dynamic) as Arc<dyn PhysicalExpr>,
                child_results: vec![PushedDown::No],
            }],
            self_filters: vec![Vec::new()],
        };
        let node = Arc::new(ShuffleReadFilterExec::new(input));
        let propagation = node
            .handle_child_pushdown_result(
                FilterPushdownPhase::Post,
                pushed,
                &ConfigOptions::default(),
            )
            .unwrap();
        assert!(matches!(propagation.filters.as_slice(), [PushedDown::Yes]));
        let filtered = propagation.updated_node.expect("the node keeps the filter");
        let read = filtered
            .downcast_ref::<ShuffleReadFilterExec>()
            .expect("still a ShuffleReadFilterExec");
        assert_eq!(read.filters().len(), 1);
        assert!(filtered.metrics().is_none());

        let task = SessionContext::new().task_ctx();
        let before = collect(Arc::clone(&filtered), Arc::clone(&task))
            .await
            .unwrap();
        assert_eq!(bigint_values(&before), vec![1, 2, 3, 4, 5]);
        dynamic
            .update(Arc::new(BinaryExpr::new(a, Operator::Lt, lit(3i64))))
            .unwrap();
        let after = collect(Arc::clone(&filtered), Arc::clone(&task))
            .await
            .unwrap();
        assert_eq!(bigint_values(&after), vec![1, 2]);
        dynamic.update(lit(false)).unwrap();
        let none = collect(filtered, task).await.unwrap();
        assert!(bigint_values(&none).is_empty());
    }
}
