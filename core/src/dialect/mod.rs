//! Whose semantics answers follow: DataFusion's (PostgreSQL-like, the
//! default) or Spark's, as the `ember.dialect` setting says.
//!
//! Under `spark`, the differences that change answers are applied:
//!
//! * `/` on integers is fractional (`7 / 2` is `3.5`, a `DOUBLE`), and a
//!   zero divisor is still an error, as in Spark's ANSI mode
//!   ([`SparkSemanticsRule`]);
//! * `concat` of a NULL is NULL, not the other arguments joined
//!   ([`SparkSemanticsRule`]);
//! * `DECIMAL / DECIMAL` has Spark's result type and rounds half away from
//!   zero ([`spark_decimal_divide`]): `1.00 / 3.00` is `0.3333333333333`,
//!   not `0.333333`;
//! * `ORDER BY` without `NULLS FIRST`/`LAST` puts NULLs first in ascending
//!   and last in descending order ([`Dialect::default_null_ordering`],
//!   which the client plans SQL with).
//!
//! Overflow fails in both (see [`crate::checked_arithmetic`]), as in Spark's
//! ANSI mode. `docs/semantics.md` lists every difference.

use std::fmt;
use std::str::FromStr;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator, cast, lit, when,
};
use datafusion::optimizer::AnalyzerRule;

use crate::config::EmberConfig;

mod decimal_division;

pub use decimal_division::{
    SPARK_DECIMAL_DIVIDE, SparkDecimalDivide, spark_decimal_divide, spark_quotient_type,
};

/// Whose semantics a session's answers follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// DataFusion's: integer division truncates, NULLs sort last in
    /// ascending order (as in PostgreSQL).
    #[default]
    DataFusion,
    /// Spark's (ANSI mode, Spark 4's default).
    Spark,
}

impl Dialect {
    /// The `datafusion.sql_parser.default_null_ordering` SQL is planned with
    /// under this dialect; `None` keeps the session's.
    pub fn default_null_ordering(self) -> Option<&'static str> {
        match self {
            Dialect::DataFusion => None,
            Dialect::Spark => Some("nulls_min"),
        }
    }
}

impl FromStr for Dialect {
    type Err = String;

    fn from_str(value: &str) -> std::result::Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "datafusion" | "default" | "postgres" => Ok(Dialect::DataFusion),
            "spark" => Ok(Dialect::Spark),
            other => Err(format!(
                "`ember.dialect` must be datafusion or spark, not `{other}`"
            )),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::DataFusion => "datafusion",
            Dialect::Spark => "spark",
        })
    }
}

/// The analyzer rule of Spark's semantics, where `ember.dialect` is
/// `spark` (after type coercion, so every type is known): `a / b` on
/// integers becomes `CASE WHEN b = 0 THEN CAST(a / b AS DOUBLE) ELSE
/// CAST(a AS DOUBLE) / CAST(b AS DOUBLE) END`, fractional, and failing on a
/// zero divisor through the integer division, which DataFusion's does;
/// `a / b` on decimals becomes [`spark_decimal_divide`]`(a, b)`; and
/// `concat(a, b, ...)` becomes `CASE WHEN a IS NULL OR b IS NULL ... THEN
/// NULL ELSE concat(a, b, ...) END`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SparkSemanticsRule;

impl AnalyzerRule for SparkSemanticsRule {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        if EmberConfig::from_options(config).dialect != Dialect::Spark {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            // The columns the node's expressions may name: its inputs'.
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            // A division's type changes, and with it the schema of every
            // node above; each is recomputed from its inputs'.
            node.map_expressions(|expr| {
                let name = names.save(&expr);
                let rewritten = expr.transform_up(|expr| {
                    fractional_division(expr, &schema)?
                        .transform_data(|expr| {
                            decimal_division::spark_decimal_division(expr, &schema)
                        })?
                        .transform_data(|expr| null_propagating_concat(expr, &schema))
                })?;
                Ok(rewritten.update_data(|expr| name.restore(expr)))
            })?
            .map_data(|node| node.recompute_schema())
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "ember_spark_semantics"
    }
}

/// The dividend and divisor of `expr`, when it is a division.
fn division_operands(expr: &Expr) -> Option<(&Expr, &Expr)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Divide,
            right,
        }) => Some((left, right)),
        _ => None,
    }
}

/// `expr` as Spark divides, when it is a division of integers.
fn fractional_division(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Some((left, right)) = division_operands(&expr) else {
        return Ok(Transformed::no(expr));
    };
    let integer_type = |operand: &Expr| operand.get_type(schema).ok().filter(DataType::is_integer);
    let (Some(_), Some(divisor_type)) = (integer_type(left), integer_type(right)) else {
        return Ok(Transformed::no(expr));
    };
    let (left, right) = (left.clone(), right.clone());
    // Type coercion has run: the zero must have the divisor's type.
    let zero_divisor = right.clone().eq(lit(ScalarValue::new_zero(&divisor_type)?));
    let fraction = cast(left.clone(), DataType::Float64) / cast(right.clone(), DataType::Float64);
    let truncated = cast(left / right, DataType::Float64);
    Ok(Transformed::yes(
        when(zero_divisor, truncated).otherwise(fraction)?,
    ))
}

/// `expr` as Spark concatenates, when it is a `concat` call: NULL when any
/// argument is.
fn null_propagating_concat(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(call) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if call.name() != "concat" || call.args.is_empty() {
        return Ok(Transformed::no(expr));
    }
    let Some(any_null) = call
        .args
        .iter()
        .map(|arg| arg.clone().is_null())
        .reduce(Expr::or)
    else {
        return Ok(Transformed::no(expr));
    };
    let null = lit(ScalarValue::try_from(&expr.get_type(schema)?)?);
    Ok(Transformed::yes(when(any_null, null).otherwise(expr)?))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Float64Array, Int64Array};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::prelude::SessionContext;

    use crate::{object_store::runtime_env, session_config, session_state};

    fn context() -> SessionContext {
        let config = session_config();
        let runtime = runtime_env(&config, None).unwrap();
        SessionContext::new_with_state(session_state(config, runtime).unwrap())
    }

    async fn column(context: &SessionContext, sql: &str) -> std::sync::Arc<dyn Array> {
        let batches = context.sql(sql).await.unwrap().collect().await.unwrap();
        std::sync::Arc::clone(batches[0].column(0))
    }

    #[tokio::test]
    async fn spark_divides_integers_into_fractions_and_still_fails_on_zero() {
        let context = context();
        let truncated = column(&context, "SELECT 7 / 2 AS q").await;
        let truncated = truncated.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(truncated.value(0), 3);

        context.sql("SET ember.dialect = 'spark'").await.unwrap();
        let sql = "SELECT x / y AS q FROM (VALUES (7, 2), (-7, 2), (1, 3), (NULL, 0)) AS t(x, y) ORDER BY x";
        let fraction = column(&context, sql).await;
        let fraction = fraction.as_any().downcast_ref::<Float64Array>().unwrap();
        let values: Vec<Option<f64>> = fraction.iter().collect();
        assert_eq!(values, vec![Some(-3.5), Some(1.0 / 3.0), Some(3.5), None]);
        let constant = column(&context, "SELECT 7 / 2 AS q").await;
        assert_eq!(
            constant
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(0),
            3.5
        );
        for sql in [
            "SELECT 7 / 0",
            "SELECT x / y FROM (VALUES (1, 0)) AS t(x, y)",
        ] {
            let result = match context.sql(sql).await {
                Ok(frame) => frame.collect().await.map(|_| ()),
                Err(error) => Err(error),
            };
            let error = result.unwrap_err().to_string();
            assert!(error.contains("Divide by zero"), "{sql}: {error}");
        }
        // Decimals stay decimals.
        let decimal = column(&context, "SELECT CAST(7 AS DECIMAL(5, 0)) / 2 AS q").await;
        assert!(matches!(
            decimal.data_type(),
            datafusion::arrow::datatypes::DataType::Decimal128(..)
        ));
    }

    /// The quotients of `sql` (one decimal column) as text.
    async fn quotients(context: &SessionContext, sql: &str) -> (DataType, Vec<Option<String>>) {
        let array = column(context, sql).await;
        let data_type = array.data_type().clone();
        let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8).unwrap();
        let text = text
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        (
            data_type,
            text.iter().map(|v| v.map(str::to_string)).collect(),
        )
    }

    #[tokio::test]
    async fn spark_divides_decimals_at_its_scale_rounding_half_away_from_zero() {
        let context = context();
        let sql = "SELECT a / b AS q FROM (VALUES \
                   (CAST(1 AS DECIMAL(10, 2)), CAST(3 AS DECIMAL(10, 2))), \
                   (CAST(-2 AS DECIMAL(10, 2)), CAST(3 AS DECIMAL(10, 2))), \
                   (CAST(NULL AS DECIMAL(10, 2)), CAST(0 AS DECIMAL(10, 2))), \
                   (CAST(5 AS DECIMAL(10, 2)), CAST(4 AS DECIMAL(10, 2)))) AS t(a, b)";
        let (data_type, default) = quotients(&context, sql).await;
        assert_eq!(data_type, DataType::Decimal128(16, 6));
        assert_eq!(default[0].as_deref(), Some("0.333333"));
        assert_eq!(default[1].as_deref(), Some("-0.666666"));

        context.sql("SET ember.dialect = 'spark'").await.unwrap();
        let (data_type, spark) = quotients(&context, sql).await;
        assert_eq!(data_type, DataType::Decimal128(23, 13));
        assert_eq!(
            spark,
            vec![
                Some("0.3333333333333".to_string()),
                Some("-0.6666666666667".to_string()),
                None,
                Some("1.2500000000000".to_string()),
            ]
        );
        // Too many digits: the integer digits stay, the scale gives way.
        let (data_type, wide) = quotients(
            &context,
            "SELECT CAST(10 AS DECIMAL(38, 10)) / CAST(3 AS DECIMAL(38, 10)) AS q",
        )
        .await;
        assert_eq!(data_type, DataType::Decimal128(38, 6));
        assert_eq!(wide, vec![Some("3.333333".to_string())]);
        // A zero divisor still fails.
        let error = match context
            .sql("SELECT a / b FROM (VALUES (CAST(1 AS DECIMAL(5, 2)), CAST(0 AS DECIMAL(5, 2)))) AS t(a, b)")
            .await
        {
            Ok(frame) => frame.collect().await.map(|_| ()).unwrap_err(),
            Err(error) => error,
        };
        assert!(error.to_string().contains("Divide by zero"), "{error}");
    }

    #[tokio::test]
    async fn spark_concatenates_a_null_into_null() {
        let context = context();
        let sql = "SELECT concat(a, '-', b) AS c FROM (VALUES ('x', 'y'), ('x', NULL)) AS t(a, b) ORDER BY c";
        let strings = |array: std::sync::Arc<dyn Array>| -> Vec<Option<String>> {
            let array = datafusion::arrow::compute::cast(&array, &DataType::Utf8).unwrap();
            let array = array
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .unwrap();
            array.iter().map(|v| v.map(str::to_string)).collect()
        };
        assert_eq!(
            strings(column(&context, sql).await),
            vec![Some("x-".to_string()), Some("x-y".to_string())]
        );
        context.sql("SET ember.dialect = 'spark'").await.unwrap();
        assert_eq!(
            strings(column(&context, sql).await),
            vec![Some("x-y".to_string()), None]
        );
        // `||` was NULL already, in both.
        let piped = column(&context, "SELECT 'a' || NULL AS c").await;
        assert!(piped.is_null(0));
    }

    #[tokio::test]
    async fn an_unknown_dialect_is_refused_naming_the_choices() {
        let context = context();
        let error = context
            .sql("SET ember.dialect = 'mysql'")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("datafusion or spark"), "{error}");
    }
}
