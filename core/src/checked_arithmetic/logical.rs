//! [`CheckedArithmeticRule`]: literal arithmetic folded with checks, and
//! `sum` over integers widened so that it cannot wrap.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator, Projection, Window,
    WindowFunctionDefinition, cast,
};
use datafusion::optimizer::{AnalyzerRule, OptimizerConfig, OptimizerRule};

use super::operands::compute_checked_operands;
use super::overflow_error;
use crate::config::EmberConfig;

/// The type `sum` over integers adds in: exact for up to 10^19 rows of the
/// largest BIGINT.
const WIDE_SUM_TYPE: DataType = DataType::Decimal128(38, 0);

/// The analyzer rule of checked arithmetic, where `ember.checked_arithmetic`
/// is on (it runs after DataFusion's type coercion, so every type is known):
///
/// * arithmetic, negation and casts between integer types on literals are
///   folded here, with checks, so that `9223372036854775807 + 1` fails at
///   planning (DataFusion's constant folding would wrap it), even in a
///   `CASE` branch that no row reaches;
/// * `sum(x)` over an integer `x`, in aggregates and windows, adds in
///   `DECIMAL(38, 0)` and is cast back to the type `sum` has (a checked
///   cast, so a sum that does not fit fails); the plan above sees the same
///   columns and types as before;
/// * arithmetic in window functions' arguments, `PARTITION BY` and
///   `ORDER BY`, and in sort keys, is computed in a projection below the
///   window or sort, where the physical rewrite checks it (see
///   `operands.rs`); the plan above sees the same columns.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckedArithmeticRule;

impl AnalyzerRule for CheckedArithmeticRule {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        if !EmberConfig::from_options(config).checked_arithmetic {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| {
            fold_node_literals(node)?.transform_data(widen_integer_sums)
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "ember_checked_arithmetic"
    }
}

/// The optimizer rule of checked arithmetic, where `ember.checked_arithmetic`
/// is on: it folds arithmetic on integer literals with checks, as
/// [`CheckedArithmeticRule`] does, just before DataFusion's expression
/// simplifier in each optimizer pass ([`crate::session_state`] places it).
/// Optimization brings constants together that the analyzer saw apart
/// (`SELECT d + 1 FROM (SELECT 9223372036854775807 AS d)` once projections
/// merge), and the simplifier would fold them wrapping around.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckedConstantFolding;

impl OptimizerRule for CheckedConstantFolding {
    fn name(&self) -> &str {
        "ember_checked_constant_folding"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        if !EmberConfig::from_options(&config.options()).checked_arithmetic {
            return Ok(Transformed::no(plan));
        }
        plan.transform_up_with_subqueries(fold_node_literals)
    }
}

/// `node` with the integer literal arithmetic of its expressions folded;
/// its columns keep their names (`1 + 1` would otherwise become `2`).
fn fold_node_literals(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let names = NamePreserver::new(&node);
    node.map_expressions(|expr| {
        let name = names.save(&expr);
        Ok(fold_literal_arithmetic(expr)?.update_data(|expr| name.restore(expr)))
    })
}

/// `expr` with arithmetic on integer literals folded, children first
/// (through DataFusion's traversal, which grows the stack for deep
/// expressions).
fn fold_literal_arithmetic(expr: Expr) -> Result<Transformed<Expr>> {
    expr.transform_up(fold_operation)
}

/// The literal `expr` evaluates to, when it is an operation on integer
/// literals; an error when that does not fit its type.
fn fold_operation(expr: Expr) -> Result<Transformed<Expr>> {
    let folded = match &expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Literal(l, _), Expr::Literal(r, _)) if both_integers(l, r) => {
                let result = match op {
                    Operator::Plus => l.add_checked(r),
                    Operator::Minus => l.sub_checked(r),
                    Operator::Multiply => l.mul_checked(r),
                    _ => return Ok(Transformed::no(expr)),
                };
                Some(result.map_err(|_| overflow_error(expr.human_display(), &l.data_type()))?)
            }
            _ => None,
        },
        Expr::Negative(operand) => match operand.as_ref() {
            Expr::Literal(value, _) if is_integer_value(value) => Some(
                value
                    .arithmetic_negate()
                    .map_err(|_| overflow_error(expr.human_display(), &value.data_type()))?,
            ),
            _ => None,
        },
        Expr::Cast(Cast {
            expr: operand,
            field,
        }) => match operand.as_ref() {
            Expr::Literal(value, _)
                if is_integer_value(value) && field.data_type().is_integer() =>
            {
                Some(
                    value
                        .cast_to(field.data_type())
                        .map_err(|_| overflow_error(expr.human_display(), field.data_type()))?,
                )
            }
            _ => None,
        },
        _ => None,
    };
    Ok(match folded {
        Some(value) => Transformed::yes(Expr::Literal(value, None)),
        None => Transformed::no(expr),
    })
}

fn is_integer_value(value: &ScalarValue) -> bool {
    value.data_type().is_integer() && !value.is_null()
}

fn both_integers(left: &ScalarValue, right: &ScalarValue) -> bool {
    is_integer_value(left) && is_integer_value(right) && left.data_type() == right.data_type()
}

/// `node` with its `sum`s over integers widened, under a projection that
/// narrows them back, and the arithmetic its window functions and sort keys
/// evaluate computed below it ([`compute_checked_operands`]); `node`
/// unchanged where it has neither.
fn widen_integer_sums(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    match node {
        LogicalPlan::Aggregate(aggregate) => widen_aggregate(aggregate),
        LogicalPlan::Window(window) => widen_window(window),
        other => compute_checked_operands(other),
    }
}

fn widen_aggregate(aggregate: Aggregate) -> Result<Transformed<LogicalPlan>> {
    let (aggr_expr, widened) = widen_sums(&aggregate.aggr_expr, aggregate.input.schema())?;
    if widened.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
    }
    let wide = Aggregate::try_new(
        Arc::clone(&aggregate.input),
        aggregate.group_expr.clone(),
        aggr_expr,
    )?;
    narrow_back(LogicalPlan::Aggregate(wide), &aggregate.schema, &widened)
}

fn widen_window(window: Window) -> Result<Transformed<LogicalPlan>> {
    let (window_expr, widened) = widen_sums(&window.window_expr, window.input.schema())?;
    if widened.is_empty() {
        return compute_checked_operands(LogicalPlan::Window(window));
    }
    let wide = Window::try_new(window_expr, Arc::clone(&window.input))?;
    let wide = compute_checked_operands(LogicalPlan::Window(wide))?.data;
    narrow_back(wide, &window.schema, &widened)
}

/// `exprs` (a node's aggregate or window expressions over `input_schema`)
/// with their integer `sum`s widened and named as before, and the names of
/// those widened.
fn widen_sums(exprs: &[Expr], input_schema: &DFSchemaRef) -> Result<(Vec<Expr>, HashSet<String>)> {
    let mut widened = HashSet::new();
    let mut rewritten = Vec::with_capacity(exprs.len());
    for expr in exprs {
        match widen_sum(expr, input_schema)? {
            Some(wide) => {
                let name = expr.name_for_alias()?;
                rewritten.push(wide.alias(name.clone()));
                widened.insert(name);
            }
            None => rewritten.push(expr.clone()),
        }
    }
    Ok((rewritten, widened))
}

/// A projection over `wide` giving back `schema` (the node's schema before
/// widening): the `widened` columns cast back to their type.
fn narrow_back(
    wide: LogicalPlan,
    schema: &DFSchemaRef,
    widened: &HashSet<String>,
) -> Result<Transformed<LogicalPlan>> {
    let exprs = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            if qualifier.is_none() && widened.contains(field.name()) {
                cast(column, field.data_type().clone())
                    .alias_qualified(qualifier.cloned(), field.name())
            } else {
                column
            }
        })
        .collect();
    let projection = Projection::try_new(exprs, Arc::new(wide))?;
    Ok(Transformed::yes(LogicalPlan::Projection(projection)))
}

/// `expr` (an aggregate or window expression, perhaps aliased) adding in
/// [`WIDE_SUM_TYPE`], when it is a `sum` over integers.
fn widen_sum(expr: &Expr, schema: &DFSchemaRef) -> Result<Option<Expr>> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    match expr {
        Expr::AggregateFunction(AggregateFunction { func, params })
            if func.name() == "sum" && params.args.len() == 1 =>
        {
            if !params.args[0].get_type(schema)?.is_integer() {
                return Ok(None);
            }
            let mut params = params.clone();
            params.args[0] = cast(params.args[0].clone(), WIDE_SUM_TYPE);
            Ok(Some(Expr::AggregateFunction(AggregateFunction {
                func: Arc::clone(func),
                params,
            })))
        }
        Expr::WindowFunction(window) => match &window.fun {
            WindowFunctionDefinition::AggregateUDF(func)
                if func.name() == "sum" && window.params.args.len() == 1 =>
            {
                if !window.params.args[0].get_type(schema)?.is_integer() {
                    return Ok(None);
                }
                let mut wide: WindowFunction = window.as_ref().clone();
                wide.params.args[0] = cast(wide.params.args[0].clone(), WIDE_SUM_TYPE);
                Ok(Some(Expr::WindowFunction(Box::new(wide))))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}
