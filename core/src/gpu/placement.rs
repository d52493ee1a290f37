//! Which aggregate subtrees a GPU kernel can compute, and how: the kernel,
//! the plan feeding it, the input columns it reads, and where each column
//! of the partial aggregate's output comes from.
//!
//! The supported shape is `AggregateExec(Partial)` over an optional
//! `ProjectionExec` over an optional `FilterExec` over any input (a scan):
//! the projection's and the filter's expressions are folded into the
//! kernel, so the kernel reads the scan's columns directly.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use ember_gpu::{Aggregate, AggregateFunction, FusedAggregate, GroupedAggregate, is_string};

use super::translate::{UsedColumns, gpu_types, translate};

/// The kernel a placement runs.
#[derive(Debug, Clone)]
pub enum GpuKernel {
    /// Aggregates without GROUP BY: one row of state.
    Ungrouped(FusedAggregate),
    /// Aggregates per group: one row of state per group.
    Grouped(GroupedAggregate),
}

/// Where one state column of the partial aggregate's output comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSource {
    /// The value (sum, minimum, maximum, or count for an ungrouped COUNT)
    /// of kernel aggregate `i`.
    Value(usize),
    /// The count of non-NULL inputs of kernel aggregate `i` (grouped).
    Count(usize),
}

/// How an aggregate subtree runs on the GPU.
#[derive(Debug, Clone)]
pub struct GpuPlacement {
    /// The kernel.
    pub kernel: GpuKernel,
    /// The plan below the replaced subtree, which feeds the kernel.
    pub scan: Arc<dyn ExecutionPlan>,
    /// The scan's columns the kernel reads, in kernel column order.
    pub columns: Vec<usize>,
    /// One source per state column, in output order (after the group
    /// columns).
    pub states: Vec<StateSource>,
}

/// The [`GpuPlacement`] of an aggregate subtree, or why there is none.
pub fn placement(aggregate: &AggregateExec) -> Result<GpuPlacement, String> {
    if *aggregate.mode() != AggregateMode::Partial {
        return Err("not a partial aggregate".to_string());
    }
    if aggregate.filter_expr().iter().any(Option::is_some) {
        return Err("aggregate FILTER clauses".to_string());
    }
    if !aggregate.group_expr().is_single() {
        return Err("GROUPING SETS, CUBE or ROLLUP".to_string());
    }

    // Peel the projection and the filter off the input.
    let mut input = Arc::clone(aggregate.input());
    let mut projection: Option<Vec<Arc<dyn PhysicalExpr>>> = None;
    if let Some(project) = input.downcast_ref::<ProjectionExec>() {
        projection = Some(project.expr().iter().map(|e| Arc::clone(&e.expr)).collect());
        input = Arc::clone(project.input());
    }
    let (scan, filter, filter_projection): (Arc<dyn ExecutionPlan>, _, Option<Vec<usize>>) =
        match input.downcast_ref::<FilterExec>() {
            Some(filter) => (
                Arc::clone(filter.input()),
                Some(Arc::clone(filter.predicate())),
                filter.projection().as_ref().map(|p| p.to_vec()),
            ),
            None => (input, None, None),
        };
    let scan_types: Vec<DataType> = scan
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    // An expression over the aggregate's input, over the filter's output.
    let unproject = |expr: &Arc<dyn PhysicalExpr>| -> Result<Arc<dyn PhysicalExpr>, String> {
        match &projection {
            None => Ok(Arc::clone(expr)),
            Some(exprs) => inline_projection(expr, exprs),
        }
    };

    let mut used = UsedColumns::default();
    let filter = filter
        .map(|predicate| translate(&predicate, None, &scan_types, &mut used))
        .transpose()?;

    let mut keys = Vec::new();
    for (expr, name) in aggregate.group_expr().expr() {
        let expr = unproject(expr)?;
        let Some(column) = expr.downcast_ref::<Column>() else {
            return Err(format!("GROUP BY expression `{name}` (only columns)"));
        };
        let scan_column = match &filter_projection {
            Some(p) => *p
                .get(column.index())
                .ok_or_else(|| format!("GROUP BY column {name} outside the projection"))?,
            None => column.index(),
        };
        let data_type = &scan_types[scan_column];
        let supported = is_string(data_type)
            || matches!(
                data_type,
                DataType::Int32 | DataType::Int64 | DataType::Date32
            );
        if !supported {
            return Err(format!("GROUP BY `{name}` of type {data_type}"));
        }
        keys.push(used.key_index(scan_column));
    }

    let grouped = !keys.is_empty();
    let mut aggregates = Vec::new();
    let mut states = Vec::new();
    for expr in aggregate.aggr_expr() {
        if expr.is_distinct() {
            return Err(format!("{}: DISTINCT", expr.name()));
        }
        let inputs = expr.expressions();
        let [input] = inputs.as_slice() else {
            return Err(format!("{} with {} arguments", expr.name(), inputs.len()));
        };
        let input = translate(
            &unproject(input)?,
            filter_projection.as_deref(),
            &scan_types,
            &mut used,
        )?;
        let state_fields = expr.state_fields().map_err(|e| e.to_string())?.len();
        let index = aggregates.len();
        let (function, sources) = match (expr.fun().name(), grouped) {
            ("sum", _) => (AggregateFunction::Sum, vec![StateSource::Value(index)]),
            ("min", _) => (AggregateFunction::Min, vec![StateSource::Value(index)]),
            ("max", _) => (AggregateFunction::Max, vec![StateSource::Value(index)]),
            ("count", true) => (AggregateFunction::Count, vec![StateSource::Count(index)]),
            ("count", false) => (AggregateFunction::Count, vec![StateSource::Value(index)]),
            // AVG's state is (count, sum).
            ("avg", true) => (
                AggregateFunction::Avg,
                vec![StateSource::Count(index), StateSource::Value(index)],
            ),
            ("avg", false) => {
                aggregates.push(Aggregate::new(AggregateFunction::Count, input.clone()));
                (
                    AggregateFunction::Sum,
                    vec![StateSource::Value(index + 1), StateSource::Value(index)],
                )
            }
            (other, _) => return Err(format!("aggregate `{other}`")),
        };
        if sources.len() != state_fields {
            return Err(format!(
                "{} keeps {state_fields} state values, not {}",
                expr.name(),
                sources.len()
            ));
        }
        // The ungrouped AVG's COUNT went in first; its SUM goes before it.
        aggregates.insert(index, Aggregate::new(function, input));
        states.extend(sources);
    }
    let types = gpu_types(&used, &scan_types);
    let kernel = if grouped {
        let query = GroupedAggregate {
            filter,
            keys,
            aggregates,
        };
        query.validate(&types).map_err(|e| e.to_string())?;
        GpuKernel::Grouped(query)
    } else {
        let query = FusedAggregate { filter, aggregates };
        query.validate(&types).map_err(|e| e.to_string())?;
        GpuKernel::Ungrouped(query)
    };
    Ok(GpuPlacement {
        kernel,
        scan,
        columns: used.scan,
        states,
    })
}

/// `expr` (over a projection's output) over the projection's input.
fn inline_projection(
    expr: &Arc<dyn PhysicalExpr>,
    projected: &[Arc<dyn PhysicalExpr>],
) -> Result<Arc<dyn PhysicalExpr>, String> {
    Arc::clone(expr)
        .transform_up(|node| match node.downcast_ref::<Column>() {
            Some(column) => match projected.get(column.index()) {
                Some(inner) => Ok(Transformed::yes(Arc::clone(inner))),
                None => datafusion::common::plan_err!(
                    "column {} outside the projection",
                    column.index()
                ),
            },
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
        .map_err(|e| e.to_string())
}
