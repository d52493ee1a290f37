//! Decimal `+`, `-` and `*` without a check per value, where a batch's
//! largest operands show that no result can overflow.
//!
//! Arrow's checked kernels test every 128-bit result for overflow, and a
//! checked 128-bit multiplication costs several times a plain one: on TPC-H
//! Q1 (SF 10), `l_extendedprice * (1 - l_discount) * (1 + l_tax)` took about
//! a quarter of the query's CPU time. Yet the values rarely come near the
//! bounds their types allow. [`evaluate_bounded`] takes the largest
//! magnitude of each operand in the batch; where the largest possible result
//! has fewer than 38 digits, no value's result can overflow 128 bits or the
//! largest precision, and the batch is computed with plain (wrapping)
//! arithmetic, which then never wraps. Otherwise it declines, and the
//! checked kernel runs as before: the answers, and the errors, are the same.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Decimal128Array};
use datafusion::arrow::compute::{binary, unary};
use datafusion::arrow::datatypes::{DataType, Decimal128Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, Operator};

/// The smallest magnitude with 39 digits: every result below it fits 128
/// bits and the largest decimal precision, 38.
const TOO_LARGE: u128 = 10u128.pow(38);

/// `left op right` computed without a check per value, where `op` is `+`,
/// `-` or `*` on two decimals of which at most one is a scalar, the result
/// type is the one arrow's kernel gives (`result_type`), and the operands'
/// largest magnitudes bound every result below 10^38; `None` where any of
/// that does not hold, for the checked kernel to compute.
pub(super) fn evaluate_bounded(
    op: Operator,
    left: &ColumnarValue,
    right: &ColumnarValue,
    result_type: &DataType,
) -> Result<Option<ColumnarValue>> {
    let (DataType::Decimal128(_, s1), DataType::Decimal128(_, s2)) =
        (left.data_type(), right.data_type())
    else {
        return Ok(None);
    };
    let DataType::Decimal128(precision, scale) = *result_type else {
        return Ok(None);
    };
    let (s1, s2, scale_i) = (i16::from(s1), i16::from(s2), i16::from(scale));
    // The factors that bring each operand to the result's scale, as arrow
    // rescales them; none for a product, whose scale is the operands' sum.
    let (left_factor, right_factor) = match op {
        Operator::Multiply if scale_i == s1 + s2 => (1, 1),
        Operator::Plus | Operator::Minus if scale_i == s1.max(s2) => {
            match (ten_to(scale_i - s1), ten_to(scale_i - s2)) {
                (Some(left), Some(right)) => (left, right),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let (Some(left_bound), Some(right_bound)) = (largest_magnitude(left), largest_magnitude(right))
    else {
        return Ok(None);
    };
    let scaled = |bound: u128, factor: i128| bound.checked_mul(factor.unsigned_abs());
    let worst = match op {
        Operator::Multiply => left_bound.checked_mul(right_bound),
        _ => scaled(left_bound, left_factor)
            .zip(scaled(right_bound, right_factor))
            .and_then(|(left, right)| left.checked_add(right)),
    };
    if worst.is_none_or(|worst| worst >= TOO_LARGE) {
        return Ok(None);
    }
    let result = match op {
        Operator::Multiply => apply(left, right, |a, b| a.wrapping_mul(b)),
        Operator::Plus if left_factor == 1 && right_factor == 1 => {
            apply(left, right, |a, b| a.wrapping_add(b))
        }
        Operator::Minus if left_factor == 1 && right_factor == 1 => {
            apply(left, right, |a, b| a.wrapping_sub(b))
        }
        Operator::Plus => apply(left, right, |a, b| {
            a.wrapping_mul(left_factor)
                .wrapping_add(b.wrapping_mul(right_factor))
        }),
        _ => apply(left, right, |a, b| {
            a.wrapping_mul(left_factor)
                .wrapping_sub(b.wrapping_mul(right_factor))
        }),
    };
    let Some(result) = result else {
        return Ok(None);
    };
    let result = result.with_precision_and_scale(precision, scale)?;
    Ok(Some(ColumnarValue::Array(Arc::new(result))))
}

/// 10 to the `exponent`, for exponents from 0 to 38.
fn ten_to(exponent: i16) -> Option<i128> {
    10i128.checked_pow(u32::try_from(exponent).ok()?)
}

/// The largest magnitude among `value`'s values: every slot of an array,
/// null or not (a null slot's value is computed too, and must not wrap);
/// `None` for a null scalar or anything but a decimal.
fn largest_magnitude(value: &ColumnarValue) -> Option<u128> {
    match value {
        ColumnarValue::Array(array) => {
            let values = array.as_primitive_opt::<Decimal128Type>()?.values();
            Some(
                values
                    .iter()
                    .map(|value| value.unsigned_abs())
                    .max()
                    .unwrap_or(0),
            )
        }
        ColumnarValue::Scalar(ScalarValue::Decimal128(Some(value), _, _)) => {
            Some(value.unsigned_abs())
        }
        ColumnarValue::Scalar(_) => None,
    }
}

/// `op` over each pair of values, an array and an array or a scalar in
/// either order; `None` for two scalars.
fn apply(
    left: &ColumnarValue,
    right: &ColumnarValue,
    op: impl Fn(i128, i128) -> i128,
) -> Option<Decimal128Array> {
    let scalar = |value: &ColumnarValue| match value {
        ColumnarValue::Scalar(ScalarValue::Decimal128(Some(value), _, _)) => Some(*value),
        _ => None,
    };
    let array = |value: &ColumnarValue| match value {
        ColumnarValue::Array(array) => array.as_primitive_opt::<Decimal128Type>().cloned(),
        ColumnarValue::Scalar(_) => None,
    };
    match (array(left), array(right)) {
        (Some(left), Some(right)) if left.len() == right.len() => binary(&left, &right, op).ok(),
        (Some(left), None) => {
            let right = scalar(right)?;
            Some(unary(&left, |a| op(a, right)))
        }
        (None, Some(right)) => {
            let left = scalar(left)?;
            Some(unary(&right, |b| op(left, b)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::compute::kernels::numeric::{add, mul, sub};
    use datafusion::arrow::datatypes::DataType;

    use super::*;

    fn decimals(values: &[Option<i128>], precision: u8, scale: i8) -> ColumnarValue {
        let array = Decimal128Array::from(values.to_vec())
            .with_precision_and_scale(precision, scale)
            .unwrap();
        ColumnarValue::Array(Arc::new(array))
    }

    fn scalar(value: i128, precision: u8, scale: i8) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Decimal128(Some(value), precision, scale))
    }

    /// The result of arrow's checked kernel for `op`, as a decimal array.
    fn checked(op: Operator, left: &ColumnarValue, right: &ColumnarValue) -> Decimal128Array {
        let kernel = match op {
            Operator::Plus => add,
            Operator::Minus => sub,
            _ => mul,
        };
        let value = datafusion::physical_expr_common::datum::apply(left, right, kernel).unwrap();
        value
            .to_array(1)
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .clone()
    }

    fn bounded(
        op: Operator,
        left: &ColumnarValue,
        right: &ColumnarValue,
    ) -> Option<Decimal128Array> {
        let want = checked(op, left, right);
        let value = evaluate_bounded(op, left, right, want.data_type()).unwrap()?;
        Some(
            value
                .to_array(1)
                .unwrap()
                .as_primitive::<Decimal128Type>()
                .clone(),
        )
    }

    #[test]
    fn small_operands_give_the_checked_kernels_answers_and_types() {
        let price = decimals(&[Some(9_999_999), None, Some(-12_345), Some(0)], 15, 2);
        let discount = decimals(&[Some(10), Some(7), None, Some(100)], 15, 2);
        let one = scalar(1, 20, 0);
        for (op, left, right) in [
            (Operator::Multiply, &price, &discount),
            (Operator::Plus, &price, &discount),
            (Operator::Minus, &price, &discount),
            (Operator::Minus, &one, &discount),
            (Operator::Plus, &one, &discount),
            (Operator::Multiply, &price, &one),
            (Operator::Minus, &price, &one),
        ] {
            let want = checked(op, left, right);
            let got = bounded(op, left, right).unwrap_or_else(|| panic!("{op} declined"));
            assert_eq!(got, want, "{op}");
            assert_eq!(got.data_type(), want.data_type(), "{op}");
        }
    }

    #[test]
    fn operands_that_could_overflow_are_left_to_the_checked_kernel() {
        // The largest magnitudes, 10^20 and 10^18, could make a product of
        // 39 digits: declined, though no row's product has that many.
        let large = decimals(&[Some(10i128.pow(20)), Some(1)], 38, 0);
        let other = decimals(&[Some(1), Some(10i128.pow(18))], 38, 0);
        assert!(bounded(Operator::Multiply, &large, &other).is_none());
        let huge = decimals(&[Some(10i128.pow(37) * 9)], 38, 0);
        assert!(
            evaluate_bounded(Operator::Plus, &huge, &huge, &DataType::Decimal128(38, 0))
                .unwrap()
                .is_none()
        );
        // A null scalar or a result type arrow would not give: declined.
        let null = ColumnarValue::Scalar(ScalarValue::Decimal128(None, 15, 2));
        let small = decimals(&[Some(1)], 15, 2);
        let declined = |op, left: &ColumnarValue, right: &ColumnarValue, result: DataType| {
            evaluate_bounded(op, left, right, &result)
                .unwrap()
                .is_none()
        };
        assert!(declined(
            Operator::Plus,
            &small,
            &null,
            DataType::Decimal128(16, 2)
        ));
        assert!(declined(
            Operator::Multiply,
            &small,
            &small,
            DataType::Decimal128(31, 2)
        ));
        assert!(declined(
            Operator::Divide,
            &small,
            &small,
            DataType::Decimal128(38, 6)
        ));
    }

    #[test]
    fn a_large_value_in_a_null_slot_is_not_computed_unchecked() {
        // The null slot holds a value whose product would overflow: the
        // batch goes to the checked kernel, which skips null slots.
        let values = Decimal128Array::from(vec![Some(10i128.pow(30)), Some(2)])
            .with_precision_and_scale(38, 0)
            .unwrap();
        let nulls = datafusion::arrow::buffer::NullBuffer::from(vec![false, true]);
        let with_null = Decimal128Array::new(values.values().clone(), Some(nulls))
            .with_precision_and_scale(38, 0)
            .unwrap();
        let left = ColumnarValue::Array(Arc::new(with_null));
        let right = decimals(&[Some(10i128.pow(10)), Some(3)], 38, 0);
        assert!(bounded(Operator::Multiply, &left, &right).is_none());
    }
}
