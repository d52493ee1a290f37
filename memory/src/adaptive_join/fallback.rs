//! The plan an adaptive join runs instead of its hash join: both inputs
//! sorted on the join keys (sorts that spill), then merged by DataFusion's
//! sort-merge join (which spills the rows of a key it cannot hold).

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::internal_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalExprRef, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::{HashJoinExec, SortMergeJoinExec};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};

/// A leaf that yields one stream, once: an input the adaptive join took back
/// from its hash join.
pub(crate) struct TakenInputExec {
    stream: Mutex<Option<SendableRecordBatchStream>>,
    properties: Arc<PlanProperties>,
}

impl TakenInputExec {
    pub(crate) fn new(stream: SendableRecordBatchStream) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(stream.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            stream: Mutex::new(Some(stream)),
            properties: Arc::new(properties),
        }
    }
}

impl fmt::Debug for TakenInputExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakenInputExec").finish_non_exhaustive()
    }
}

impl DisplayAs for TakenInputExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TakenInputExec")
    }
}

impl ExecutionPlan for TakenInputExec {
    fn name(&self) -> &str {
        "TakenInputExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("TakenInputExec has no children");
        }
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let taken = self.stream.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (partition, taken) {
            (0, Some(stream)) => Ok(stream),
            (0, None) => internal_err!("TakenInputExec can be executed only once"),
            (p, _) => internal_err!("TakenInputExec has one partition, not {}", p + 1),
        }
    }
}

/// `input` sorted ascending, nulls first, on `keys`.
fn sorted_on(
    input: SendableRecordBatchStream,
    keys: impl Iterator<Item = PhysicalExprRef>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let ordering = LexOrdering::new(keys.map(|expr| PhysicalSortExpr {
        expr,
        options: SortOptions::default(),
    }));
    let Some(ordering) = ordering else {
        return internal_err!("an adaptive join needs at least one join key");
    };
    Ok(Arc::new(SortExec::new(
        ordering,
        Arc::new(TakenInputExec::new(input)),
    )))
}

/// The sort-merge join that computes what `join` would over `build` and
/// `probe`, with `join`'s output schema (its projection applied).
pub(crate) fn sort_merge_plan(
    join: &HashJoinExec,
    build: SendableRecordBatchStream,
    probe: SendableRecordBatchStream,
) -> Result<Arc<dyn ExecutionPlan>> {
    let on = join.on().to_vec();
    let left = sorted_on(build, on.iter().map(|(l, _)| Arc::clone(l)))?;
    let right = sorted_on(probe, on.iter().map(|(_, r)| Arc::clone(r)))?;
    let sort_options = vec![SortOptions::default(); on.len()];
    let merged: Arc<dyn ExecutionPlan> = Arc::new(SortMergeJoinExec::try_new(
        left,
        right,
        on,
        join.filter().cloned(),
        *join.join_type(),
        sort_options,
        join.null_equality(),
    )?);
    let Some(projection) = &join.projection else {
        return Ok(merged);
    };
    let schema: SchemaRef = merged.schema();
    let columns = projection.iter().map(|&index| {
        let name = schema.field(index).name().clone();
        ProjectionExpr {
            expr: Arc::new(Column::new(&name, index)) as Arc<dyn PhysicalExpr>,
            alias: name,
        }
    });
    Ok(Arc::new(ProjectionExec::try_new(columns, merged)?))
}
