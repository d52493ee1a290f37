//! [`check_overflow`]: the physical rewrite that makes a plan's arithmetic,
//! negations and numeric casts [`OverflowCheckedExpr`]s.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, NegativeExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

use super::{OverflowCheckedExpr, is_checked_cast, is_checked_type};
use crate::config::EmberConfig;

/// `plan` with its overflows checked ([`check_overflow`]) where
/// `ember.checked_arithmetic` is on; unchanged otherwise.
pub fn check_overflow_with_settings(
    plan: Arc<dyn ExecutionPlan>,
    settings: &EmberConfig,
) -> Result<Arc<dyn ExecutionPlan>> {
    if settings.checked_arithmetic {
        check_overflow(plan)
    } else {
        Ok(plan)
    }
}

/// `plan` with the expressions its projections, filters and aggregates
/// evaluate checked for overflow: integer and decimal `+ - * / %`, unary
/// minus on integers and casts to integer and decimal types fail with one
/// line naming the expression and its type where their result does not fit.
/// Other operators, and plans without such expressions, are unchanged.
pub fn check_overflow(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(check_node).map(|t| t.data)
}

/// The rewritten plan node, or `None` where nothing in it needs checking.
type CheckedNode = Result<Option<Arc<dyn ExecutionPlan>>>;

fn check_node(node: Arc<dyn ExecutionPlan>) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let checked = if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        check_projection(projection)?
    } else if let Some(filter) = node.downcast_ref::<FilterExec>() {
        check_filter(filter)?
    } else if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
        check_aggregate(aggregate)?
    } else {
        None
    };
    Ok(match checked {
        Some(checked) => Transformed::yes(checked),
        None => Transformed::no(node),
    })
}

fn check_projection(projection: &ProjectionExec) -> CheckedNode {
    let schema = projection.input().schema();
    let mut changed = false;
    let mut exprs = Vec::with_capacity(projection.expr().len());
    for projected in projection.expr() {
        let checked = check_expr(Arc::clone(&projected.expr), &schema)?;
        changed |= checked.transformed;
        exprs.push(ProjectionExpr {
            expr: checked.data,
            alias: projected.alias.clone(),
        });
    }
    if !changed {
        return Ok(None);
    }
    let checked = ProjectionExec::try_new(exprs, Arc::clone(projection.input()))?;
    Ok(Some(Arc::new(checked)))
}

fn check_filter(filter: &FilterExec) -> CheckedNode {
    let checked = check_expr(Arc::clone(filter.predicate()), &filter.input().schema())?;
    if !checked.transformed {
        return Ok(None);
    }
    let rebuilt = FilterExecBuilder::from(filter)
        .with_predicate(checked.data)
        .build()?;
    Ok(Some(Arc::new(rebuilt)))
}

fn check_aggregate(aggregate: &AggregateExec) -> CheckedNode {
    // Only the modes that read the input evaluate its expressions; a final
    // aggregate merges states.
    let reads_input = matches!(
        aggregate.mode(),
        AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
    );
    if !reads_input {
        return Ok(None);
    }
    let schema = aggregate.input().schema();
    let mut changed = false;
    let mut group_exprs = Vec::with_capacity(aggregate.group_expr().expr().len());
    for (expr, name) in aggregate.group_expr().expr() {
        let checked = check_expr(Arc::clone(expr), &schema)?;
        changed |= checked.transformed;
        group_exprs.push((checked.data, name.clone()));
    }
    let group_changed = changed;
    let mut aggr_exprs = Vec::with_capacity(aggregate.aggr_expr().len());
    for function in aggregate.aggr_expr() {
        let all = function.all_expressions();
        let mut args = Vec::with_capacity(all.args.len());
        let mut function_changed = false;
        for arg in all.args {
            let checked = check_expr(arg, &schema)?;
            function_changed |= checked.transformed;
            args.push(checked.data);
        }
        match function_changed
            .then(|| function.with_new_expressions(args, all.order_by_exprs))
            .flatten()
        {
            Some(rewritten) => {
                changed = true;
                aggr_exprs.push(Arc::new(rewritten));
            }
            None => aggr_exprs.push(Arc::clone(function)),
        }
    }
    if !changed {
        return Ok(None);
    }
    if !group_changed {
        return Ok(Some(Arc::new(aggregate.with_new_aggr_exprs(aggr_exprs))));
    }
    let group_by = aggregate.group_expr();
    let group_by = PhysicalGroupBy::new(
        group_exprs,
        group_by.null_expr().to_vec(),
        group_by.groups().to_vec(),
        group_by.has_grouping_set(),
    );
    let rebuilt = AggregateExec::try_new(
        *aggregate.mode(),
        group_by,
        aggr_exprs,
        aggregate.filter_expr().to_vec(),
        Arc::clone(aggregate.input()),
        aggregate.input_schema(),
    )?
    .with_limit_options(aggregate.limit_options());
    Ok(Some(Arc::new(rebuilt)))
}

/// `expr` with its arithmetic, negations and numeric casts checked, children
/// first (through DataFusion's traversal, which grows the stack for deep
/// expressions). An expression checked already is left as it is.
pub(super) fn check_expr(
    expr: Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    expr.transform_down_up(
        |expr| {
            Ok(if expr.downcast_ref::<OverflowCheckedExpr>().is_some() {
                Transformed::new(expr, false, TreeNodeRecursion::Jump)
            } else {
                Transformed::no(expr)
            })
        },
        |expr| {
            Ok(match check_operation(&expr, schema)? {
                Some(checked) => Transformed::yes(Arc::new(checked) as Arc<dyn PhysicalExpr>),
                None => Transformed::no(expr),
            })
        },
    )
}

/// The checked form of `expr` itself, when it is an operation that can
/// overflow.
fn check_operation(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Option<OverflowCheckedExpr>> {
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        let numeric = is_checked_type(&binary.left().data_type(schema)?)
            && is_checked_type(&binary.right().data_type(schema)?);
        return Ok(numeric
            .then(|| OverflowCheckedExpr::arithmetic(binary))
            .flatten());
    }
    if let Some(negative) = expr.downcast_ref::<NegativeExpr>() {
        let signed = negative.arg().data_type(schema)?.is_signed_integer();
        return Ok(signed.then(|| OverflowCheckedExpr::negation(Arc::clone(negative.arg()))));
    }
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        let from = cast.expr().data_type(schema)?;
        let checked = is_checked_cast(&from, cast.cast_type());
        return Ok(checked.then(|| OverflowCheckedExpr::cast(Arc::clone(expr))));
    }
    Ok(None)
}
