//! Uncorrelated scalar subqueries that fail on a cluster too when they
//! return more than one row.
//!
//! Embedded, DataFusion runs `(SELECT a FROM t)` in a physical operator that
//! fails when the subquery returns more than one row. That operator cannot
//! cross stages, so Ballista turns it off
//! (`datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery =
//! false`) and DataFusion rewrites every scalar subquery into a left join,
//! which answered one row per subquery row instead of failing.
//!
//! [`SingleRowScalarSubqueries`], an analyzer rule, wraps each uncorrelated
//! scalar subquery that could return more than one row, where the rewrite is
//! on: the subquery's value becomes
//! `ember_scalar_subquery_value(value, count(*) OVER ())`, which returns
//! the value and fails with the embedded error when the count is above one.
//! A subquery known to return at most one row (an aggregate without GROUP
//! BY, a `LIMIT 1`) is left as it is.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Column, ScalarValue, exec_err};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::functions_aggregate::count::count_all_window;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Subquery, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The function's name, as plans carry it between processes.
pub const SCALAR_SUBQUERY_VALUE: &str = "ember_scalar_subquery_value";

/// The error a scalar subquery of more than one row fails with, the same
/// embedded and on a cluster.
const MORE_THAN_ONE_ROW: &str = "Scalar subquery returned more than one row";

/// The name of the row count column the wrapper adds.
const ROWS_COLUMN: &str = "__ember_scalar_subquery_rows";

/// `ember_scalar_subquery_value(value, rows)`: `value`, or an error when
/// `rows` (the subquery's row count) is above one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ScalarSubqueryValue {
    signature: Signature,
}

impl Default for ScalarSubqueryValue {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The function, for registries.
pub fn scalar_subquery_value() -> ScalarUDF {
    ScalarUDF::from(ScalarSubqueryValue::default())
}

impl ScalarUDFImpl for ScalarSubqueryValue {
    fn name(&self) -> &str {
        SCALAR_SUBQUERY_VALUE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value, rows] = <[ColumnarValue; 2]>::try_from(args.args).map_err(|_| {
            datafusion::error::DataFusionError::Internal(format!(
                "{SCALAR_SUBQUERY_VALUE} takes two arguments"
            ))
        })?;
        let too_many = match &rows {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) => *n > 1,
            ColumnarValue::Array(array) if *array.data_type() == DataType::Int64 => array
                .as_primitive::<Int64Type>()
                .iter()
                .any(|n| n.is_some_and(|n| n > 1)),
            _ => false,
        };
        if too_many {
            return exec_err!("{MORE_THAN_ONE_ROW}");
        }
        Ok(value)
    }
}

/// Wraps uncorrelated scalar subqueries where DataFusion rewrites them into
/// joins; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleRowScalarSubqueries;

/// Whether `plan` already ends in the wrapper.
fn is_wrapped(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(projection) => projection.expr.iter().any(|e| {
            matches!(e.clone().unalias(), Expr::ScalarFunction(f) if f.name() == SCALAR_SUBQUERY_VALUE)
        }),
        _ => false,
    }
}

/// `plan` (one column) with its value passed through the check of its row
/// count.
fn wrapped(plan: &LogicalPlan) -> Result<LogicalPlan> {
    let (qualifier, field) = plan.schema().qualified_field(0);
    let value = Expr::Column(Column::new(qualifier.cloned(), field.name()));
    let windowed = LogicalPlanBuilder::from(plan.clone())
        .window(vec![count_all_window().alias(ROWS_COLUMN)])?
        .build()?;
    let checked = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(scalar_subquery_value()),
        vec![value, Expr::Column(Column::from_name(ROWS_COLUMN))],
    ))
    .alias_qualified(qualifier.cloned(), field.name());
    LogicalPlanBuilder::from(windowed)
        .project(vec![checked])?
        .build()
}

impl AnalyzerRule for SingleRowScalarSubqueries {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        if config
            .optimizer
            .enable_physical_uncorrelated_scalar_subquery
        {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| {
                expr.transform_up(|e| match e {
                    Expr::ScalarSubquery(subquery)
                        if subquery.outer_ref_columns.is_empty()
                            && subquery.subquery.schema().fields().len() == 1
                            && subquery.subquery.max_rows().is_none_or(|n| n > 1)
                            && !is_wrapped(&subquery.subquery) =>
                    {
                        let checked = wrapped(&subquery.subquery)?;
                        Ok(Transformed::yes(Expr::ScalarSubquery(Subquery {
                            subquery: Arc::new(checked),
                            ..subquery
                        })))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "ember_single_row_scalar_subqueries"
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::config::session_config;
    use crate::object_store::runtime_env;

    /// A session that rewrites scalar subqueries into joins, as a cluster's
    /// does, with `t` of `rows` rows.
    async fn joined_subqueries(rows: usize) -> SessionContext {
        let mut config = session_config();
        config
            .options_mut()
            .optimizer
            .enable_physical_uncorrelated_scalar_subquery = false;
        let runtime = runtime_env(&config, None).unwrap();
        let ctx = SessionContext::new_with_state(crate::session_state(config, runtime).unwrap());
        let values: Vec<String> = (1..=rows).map(|i| format!("({i})")).collect();
        ctx.sql(&format!(
            "CREATE TABLE t (a BIGINT) AS VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<String>> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
        Ok(text.to_string().lines().map(str::to_string).collect())
    }

    #[tokio::test]
    async fn a_subquery_of_many_rows_fails_where_it_becomes_a_join() {
        let ctx = joined_subqueries(3).await;
        let error = run(&ctx, "SELECT (SELECT a FROM t) AS x")
            .await
            .unwrap_err();
        assert!(error.to_string().contains(MORE_THAN_ONE_ROW), "{error}");
        // In a filter too.
        let error = run(&ctx, "SELECT a FROM t WHERE a = (SELECT a FROM t)")
            .await
            .unwrap_err();
        assert!(error.to_string().contains(MORE_THAN_ONE_ROW), "{error}");
    }

    #[tokio::test]
    async fn a_subquery_of_one_row_or_none_answers() {
        let ctx = joined_subqueries(1).await;
        let lines = run(&ctx, "SELECT (SELECT a FROM t) + 1 AS x")
            .await
            .unwrap();
        assert!(lines.iter().any(|l| l.contains("| 2 ")), "{lines:?}");
        let lines = run(&ctx, "SELECT (SELECT a FROM t WHERE a > 5) AS x")
            .await
            .unwrap();
        assert_eq!(lines.len(), 5, "one NULL row: {lines:?}");
    }

    #[tokio::test]
    async fn a_subquery_of_at_most_one_row_is_left_alone() {
        let ctx = joined_subqueries(3).await;
        let plan = ctx
            .sql("SELECT (SELECT max(a) FROM t) AS x, (SELECT a FROM t LIMIT 1) AS y")
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap();
        assert!(
            !plan
                .display_indent()
                .to_string()
                .contains(SCALAR_SUBQUERY_VALUE),
            "{plan}"
        );
        let lines = run(&ctx, "SELECT (SELECT max(a) FROM t) AS x")
            .await
            .unwrap();
        assert!(lines.iter().any(|l| l.contains("| 3 ")), "{lines:?}");
    }
}
