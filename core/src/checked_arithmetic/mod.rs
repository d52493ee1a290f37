//! Checked arithmetic: integer and decimal arithmetic that gives the exact
//! answer or fails with one line naming the expression and its type, never a
//! wrapped number, as the `ember.checked_arithmetic` setting (on by default)
//! says.
//!
//! DataFusion wraps on overflow: `9223372036854775807 + 1` is
//! `-9223372036854775808`, and `sum` over BIGINTs wraps the same way. Ember
//! checks in three places, so that embedded sessions and clusters agree:
//!
//! * [`CheckedArithmeticRule`], an analyzer rule every process's session runs
//!   (the client, which plans, and the scheduler, which plans again): it
//!   folds arithmetic on integer literals with checks, so a constant that
//!   overflows fails at planning instead of being folded into a wrapped
//!   literal, and it widens `sum` over integers to `DECIMAL(38, 0)`, exact
//!   for any realistic number of rows, then narrows the result back to the
//!   type `sum` has, failing where it does not fit;
//! * [`CheckedConstantFolding`], an optimizer rule just before DataFusion's
//!   expression simplifier, folds integer literals the same way once
//!   optimization has brought them together (merged projections);
//! * [`check_overflow`], a physical rewrite: `+ - * / %` on integers and
//!   decimals, unary minus on integers, and casts to integer and decimal
//!   types that do not hold every value of their operand's type, in
//!   projections, filters and aggregates, become
//!   [`OverflowCheckedExpr`]s, and a decimal result at the largest
//!   precision is checked against it. Decimal `+ - *` on a batch whose
//!   largest operands cannot make a result of 39 digits skip the check
//!   per value (`bounded`): the same answers, computed in plain 128-bit
//!   arithmetic. Every session runs it among
//!   DataFusion's physical optimizer rules, before projection pushdown
//!   moves expressions into file scans; Ember's physical codec carries the
//!   checked expressions from the scheduler to the executors (a chain of
//!   one operator flat, as DataFusion encodes its own);
//! * window functions and sorts evaluate their operands themselves; the
//!   analyzer rule computes those that can overflow in a projection below
//!   them, so that the physical rewrite checks them there;
//! * `abs` and casts of literals were checked by DataFusion already.
//!
//! `avg` over integers averages in `DOUBLE`, which cannot overflow.

mod bounded;
mod expr;
mod logical;
mod operands;
mod physical;
#[cfg(test)]
mod tests;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;

pub use expr::{CheckedOperation, OverflowCheckedExpr};
pub use logical::{CheckedArithmeticRule, CheckedConstantFolding};
pub use physical::{check_overflow, check_overflow_with_settings};

/// The SQL name of a numeric type, as an overflow error names it.
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int8 => "TINYINT".to_string(),
        DataType::Int16 => "SMALLINT".to_string(),
        DataType::Int32 => "INT".to_string(),
        DataType::Int64 => "BIGINT".to_string(),
        DataType::UInt8 => "TINYINT UNSIGNED".to_string(),
        DataType::UInt16 => "SMALLINT UNSIGNED".to_string(),
        DataType::UInt32 => "INT UNSIGNED".to_string(),
        DataType::UInt64 => "BIGINT UNSIGNED".to_string(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        other => other.to_string(),
    }
}

/// The error an overflow gives: one line naming the expression and the type
/// its result did not fit in.
pub fn overflow_error(expression: impl std::fmt::Display, data_type: &DataType) -> DataFusionError {
    DataFusionError::Execution(format!(
        "numeric overflow: the result of `{expression}` does not fit in {} \
         (SET ember.checked_arithmetic = false wraps around instead)",
        sql_type_name(data_type)
    ))
}

/// Whether arithmetic on `data_type` is checked: integers and decimals.
fn is_checked_type(data_type: &DataType) -> bool {
    data_type.is_integer() || data_type.is_decimal()
}

/// Whether a cast from `from` to `to` is checked: a numeric value to an
/// integer or decimal type that does not hold every value of `from`.
fn is_checked_cast(from: &DataType, to: &DataType) -> bool {
    from.is_numeric() && is_checked_type(to) && !operands::holds_every_value(from, to)
}
