//! Decimal division as Spark divides: [`spark_decimal_divide`], the
//! function `DECIMAL / DECIMAL` becomes under `ember.dialect = 'spark'`.
//!
//! DataFusion gives a quotient of `DECIMAL(p1, s1) / DECIMAL(p2, s2)` the
//! scale `s1 + 4`, truncated: `1.00 / 3.00` is `0.333333`. Spark gives it
//! the scale `max(6, s1 + p2 + 1)` and rounds half away from zero: the same
//! division is `0.3333333333333` (`DECIMAL(23, 13)`), and `2.00 / 3.00`
//! ends in `7`. Where that asks for more than 38 digits, Spark keeps the
//! integer digits and gives up scale, down to 6 (its default
//! `spark.sql.decimalOperations.allowPrecisionLoss`).

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric::div;
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options};
use datafusion::arrow::datatypes::{
    DECIMAL128_MAX_PRECISION, DECIMAL256_MAX_PRECISION, DECIMAL256_MAX_SCALE, DataType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue, exec_err, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::checked_arithmetic::overflow_error;

/// The function's name, as plans carry it between processes.
pub const SPARK_DECIMAL_DIVIDE: &str = "ember_spark_decimal_divide";

/// The smallest scale Spark gives a quotient whose digits it must cut.
const SPARK_MINIMUM_ADJUSTED_SCALE: i32 = 6;

/// `ember_spark_decimal_divide(a, b)`: `a / b` for decimals `a` and `b`,
/// with Spark's result type and rounding.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkDecimalDivide {
    signature: Signature,
}

impl Default for SparkDecimalDivide {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The function, for registries.
pub fn spark_decimal_divide() -> ScalarUDF {
    ScalarUDF::from(SparkDecimalDivide::default())
}

/// `expr` as Spark divides, when it is a division of two decimals.
pub(super) fn spark_decimal_division(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Some((left, right)) = super::division_operands(&expr) else {
        return Ok(Transformed::no(expr));
    };
    let decimal = |operand: &Expr| {
        operand
            .get_type(schema)
            .is_ok_and(|t| matches!(t, DataType::Decimal128(..)))
    };
    if !(decimal(left) && decimal(right)) {
        return Ok(Transformed::no(expr));
    }
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(
            Arc::new(spark_decimal_divide()),
            vec![left.clone(), right.clone()],
        ),
    )))
}

/// The precision and scale Spark gives `DECIMAL(p1, s1) / DECIMAL(p2, s2)`.
pub fn spark_quotient_type(p1: u8, s1: i8, p2: u8, s2: i8) -> (u8, i8) {
    let (p1, s1, p2, s2) = (i32::from(p1), i32::from(s1), i32::from(p2), i32::from(s2));
    let largest = i32::from(DECIMAL128_MAX_PRECISION);
    let scale = SPARK_MINIMUM_ADJUSTED_SCALE.max(s1 + p2 + 1);
    let precision = p1 - s1 + s2 + scale;
    let (precision, scale) = if precision <= largest {
        (precision, scale)
    } else {
        // Integer digits first; the scale gives way, down to six digits.
        let integer_digits = precision - scale;
        let minimum_scale = scale.min(SPARK_MINIMUM_ADJUSTED_SCALE);
        (largest, (largest - integer_digits).max(minimum_scale))
    };
    // Both lie in 1..=38 and 0..=38 here; the conversions cannot fail.
    (
        u8::try_from(precision).unwrap_or(DECIMAL128_MAX_PRECISION),
        i8::try_from(scale).unwrap_or(0),
    )
}

fn decimal_operands(arg_types: &[DataType]) -> Result<(u8, i8, u8, i8)> {
    match arg_types {
        [DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)] => Ok((*p1, *s1, *p2, *s2)),
        other => plan_err!("{SPARK_DECIMAL_DIVIDE} divides two decimals, not {other:?}"),
    }
}

impl ScalarUDFImpl for SparkDecimalDivide {
    fn name(&self) -> &str {
        SPARK_DECIMAL_DIVIDE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let (p1, s1, p2, s2) = decimal_operands(arg_types)?;
        let (precision, scale) = spark_quotient_type(p1, s1, p2, s2);
        Ok(DataType::Decimal128(precision, scale))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars = args
            .args
            .iter()
            .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [dividend, divisor] = arrays.as_slice() else {
            return exec_err!("{SPARK_DECIMAL_DIVIDE} takes two arguments");
        };
        let quotient = divide(dividend, divisor)?;
        if scalars {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &quotient, 0,
            )?));
        }
        Ok(ColumnarValue::Array(quotient))
    }
}

/// `dividend / divisor` (decimal arrays) at Spark's scale, rounded half
/// away from zero: divided in 256 bits with at least one digit more than
/// that scale, then rounded by the cast to the result type.
fn divide(dividend: &ArrayRef, divisor: &ArrayRef) -> Result<ArrayRef> {
    let (p1, s1, p2, s2) =
        decimal_operands(&[dividend.data_type().clone(), divisor.data_type().clone()])?;
    let (precision, scale) = spark_quotient_type(p1, s1, p2, s2);
    // Arrow's quotient has the dividend's scale plus four.
    let dividend_scale = s1.max(scale.saturating_add(1).saturating_sub(4));
    let scaled_by = u8::try_from(dividend_scale - s1).unwrap_or(0);
    let wide_dividend = DataType::Decimal256(
        p1.saturating_add(scaled_by).min(DECIMAL256_MAX_PRECISION),
        dividend_scale.min(DECIMAL256_MAX_SCALE),
    );
    let dividend = cast(dividend, &wide_dividend)?;
    let divisor = cast(divisor, &DataType::Decimal256(p2, s2))?;
    let result_type = DataType::Decimal128(precision, scale);
    let overflow = || {
        overflow_error(
            format!("DECIMAL({p1}, {s1}) / DECIMAL({p2}, {s2})"),
            &result_type,
        )
    };
    let quotient = div(&dividend, &divisor).map_err(|error| match error {
        ArrowError::ArithmeticOverflow(_) => overflow(),
        other => DataFusionError::from(other),
    })?;
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(&quotient, &result_type, &options).map_err(|_| overflow())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotient_types_follow_spark() {
        // DECIMAL(10, 2) / DECIMAL(10, 2): scale 13, precision 23.
        assert_eq!(spark_quotient_type(10, 2, 10, 2), (23, 13));
        // TPC-DS's DECIMAL(7, 2) sums (DECIMAL(17, 2)) divided.
        assert_eq!(spark_quotient_type(17, 2, 17, 2), (37, 20));
        // Too many digits: integer digits kept, scale down to six.
        assert_eq!(spark_quotient_type(38, 10, 38, 10), (38, 6));
        assert_eq!(spark_quotient_type(38, 2, 5, 2), (38, 6));
        assert_eq!(spark_quotient_type(1, 0, 1, 0), (7, 6));
    }
}
