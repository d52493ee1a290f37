//! The column projection a table's `scan` receives, applied over a plan that
//! produces every column.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

/// `plan` with only the columns `projection` lists (by index), in that
/// order; `plan` itself when there is no projection or it keeps every
/// column in place.
pub fn project_scan(
    plan: Arc<dyn ExecutionPlan>,
    projection: Option<&Vec<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = plan.schema();
    let Some(columns) = projection else {
        return Ok(plan);
    };
    let identity =
        columns.len() == schema.fields().len() && columns.iter().enumerate().all(|(i, c)| i == *c);
    if identity {
        return Ok(plan);
    }
    let exprs = columns.iter().map(|&i| {
        let name = schema.field(i).name().clone();
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(&name, i));
        (column, name)
    });
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}
