//! [`OverflowCheckedExpr`]: an arithmetic operation, negation or cast that
//! fails with one line naming itself when its result does not fit its type.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::kernels::numeric::{add, div, mul, neg, rem, sub};
use datafusion::arrow::datatypes::{
    DECIMAL128_MAX_PRECISION, DataType, Decimal128Type, FieldRef, Schema,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::Operator;
use datafusion::logical_expr::sort_properties::ExprProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, NegativeExpr};
use datafusion::physical_expr_common::datum::apply;
use datafusion::physical_expr_common::physical_expr::fmt_sql;
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;
use datafusion_proto::protobuf::physical_expr_node::ExprType;
use datafusion_proto::protobuf::{PhysicalExprNode, PhysicalExtensionExprNode};

use super::bounded::evaluate_bounded;
use super::operands::decimal_digits;
use super::{is_checked_type, overflow_error};

/// What an [`OverflowCheckedExpr`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckedOperation {
    /// A [`BinaryExpr`] (`+ - * / %`) that fails on overflow; its arrow
    /// overflow error is replaced by one naming the expression.
    Arithmetic,
    /// A [`NegativeExpr`], failing where the negation does not fit (the
    /// smallest value of a signed integer type).
    Negation,
    /// A [`CastExpr`] to an integer or decimal type; a value the cast cannot
    /// hold fails naming the cast.
    Cast,
}

const WIRE_NEGATION: &str = "ember.checked_negation";
const WIRE_CAST: &str = "ember.checked_cast";
/// Followed by the operator: `ember.checked_arithmetic:+`.
const WIRE_ARITHMETIC: &str = "ember.checked_arithmetic:";

/// The operators checked arithmetic covers, as the codec names them.
const OPERATORS: [(Operator, &str); 5] = [
    (Operator::Plus, "+"),
    (Operator::Minus, "-"),
    (Operator::Multiply, "*"),
    (Operator::Divide, "/"),
    (Operator::Modulo, "%"),
];

/// Whether checked arithmetic covers `op`.
pub(super) fn is_checked_operator(op: &Operator) -> bool {
    OPERATORS.iter().any(|(checked, _)| checked == op)
}

/// An operation whose overflow is an error naming the operation and its type
/// instead of a wrapped number or an anonymous arrow error.
///
/// It stands in the plan in place of the operation it checks, with the same
/// children (for a cast: the cast), so a chain of checked operations is no
/// deeper than the chain it replaced: DataFusion walks expressions
/// recursively, and a deeper tree would overflow the stack sooner.
#[derive(Debug, Clone, Eq)]
pub struct OverflowCheckedExpr {
    /// The checked operation itself: a [`BinaryExpr`] failing on overflow, a
    /// [`NegativeExpr`] or a [`CastExpr`].
    inner: Arc<dyn PhysicalExpr>,
    operation: CheckedOperation,
}

impl PartialEq for OverflowCheckedExpr {
    fn eq(&self, other: &Self) -> bool {
        self.inner.eq(&other.inner) && self.operation == other.operation
    }
}

impl Hash for OverflowCheckedExpr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.operation.hash(state);
    }
}

impl OverflowCheckedExpr {
    /// `binary`, failing on overflow; `None` for an operator that is not
    /// arithmetic.
    pub fn arithmetic(binary: &BinaryExpr) -> Option<Self> {
        if !is_checked_operator(binary.op()) {
            return None;
        }
        let checked = BinaryExpr::new(
            Arc::clone(binary.left()),
            *binary.op(),
            Arc::clone(binary.right()),
        )
        .with_fail_on_overflow(true);
        Some(Self {
            inner: Arc::new(checked),
            operation: CheckedOperation::Arithmetic,
        })
    }

    /// The negation of `operand`, failing on overflow.
    pub fn negation(operand: Arc<dyn PhysicalExpr>) -> Self {
        Self {
            inner: Arc::new(NegativeExpr::new(operand)),
            operation: CheckedOperation::Negation,
        }
    }

    /// `cast` (a [`CastExpr`]), naming itself when a value does not fit its
    /// type.
    pub fn cast(cast: Arc<dyn PhysicalExpr>) -> Self {
        Self {
            inner: cast,
            operation: CheckedOperation::Cast,
        }
    }

    /// How the expression is named on the wire, by Ember's physical codec
    /// (its children travel as the extension node's inputs).
    pub fn wire_name(&self) -> String {
        match self.operation {
            CheckedOperation::Arithmetic => {
                let op = self
                    .inner
                    .downcast_ref::<BinaryExpr>()
                    .and_then(|binary| OPERATORS.iter().find(|(op, _)| op == binary.op()))
                    .map_or("?", |(_, name)| *name);
                format!("{WIRE_ARITHMETIC}{op}")
            }
            CheckedOperation::Negation => WIRE_NEGATION.to_string(),
            CheckedOperation::Cast => WIRE_CAST.to_string(),
        }
    }

    /// The expression [`Self::wire_name`] named, over its decoded `inputs`;
    /// `None` when `name` is not one of these. The decoded operation has
    /// lost its `fail_on_overflow` flag (the plan encoding does not carry
    /// it), which this sets again.
    pub fn from_wire(name: &[u8], inputs: &[Arc<dyn PhysicalExpr>]) -> Result<Option<Self>> {
        let name = std::str::from_utf8(name).unwrap_or_default();
        let malformed = || {
            DataFusionError::Internal(format!(
                "the Ember expression `{name}` cannot take {} inputs",
                inputs.len()
            ))
        };
        if let Some(op) = name.strip_prefix(WIRE_ARITHMETIC) {
            let Some((op, _)) = OPERATORS.iter().find(|(_, wire)| *wire == op) else {
                return Ok(None);
            };
            // A chain of one operator travels as its operands, innermost
            // first (see `try_to_proto`), as DataFusion's own operators do.
            let [first, rest @ ..] = inputs else {
                return Err(malformed());
            };
            if rest.is_empty() {
                return Err(malformed());
            }
            let mut chain = Arc::clone(first);
            let mut checked = None;
            for operand in rest {
                let binary = BinaryExpr::new(chain, *op, Arc::clone(operand));
                let link = Self::arithmetic(&binary).ok_or_else(malformed)?;
                chain = Arc::new(link.clone());
                checked = Some(link);
            }
            return Ok(checked);
        }
        let [input] = inputs else {
            return match name {
                WIRE_NEGATION | WIRE_CAST => Err(malformed()),
                _ => Ok(None),
            };
        };
        Ok(match name {
            WIRE_NEGATION => Some(Self::negation(Arc::clone(input))),
            WIRE_CAST if input.downcast_ref::<CastExpr>().is_some() => {
                Some(Self::cast(Arc::clone(input)))
            }
            WIRE_CAST => return Err(malformed()),
            _ => None,
        })
    }

    /// What this expression checks.
    pub fn operation(&self) -> CheckedOperation {
        self.operation
    }

    /// The checked operation: a [`BinaryExpr`], a [`NegativeExpr`] or a
    /// [`CastExpr`].
    pub fn inner(&self) -> &Arc<dyn PhysicalExpr> {
        &self.inner
    }

    /// The operands of the chain of checked `op`s this expression ends:
    /// for `a + b + c` (`(a + b) + c`), `[a, b, c]`.
    fn chain_operands(&self, op: Operator) -> Vec<&Arc<dyn PhysicalExpr>> {
        let mut operands = Vec::new();
        let mut link = self;
        while let Some(binary) = link.inner.downcast_ref::<BinaryExpr>() {
            operands.push(binary.right());
            match binary.left().downcast_ref::<OverflowCheckedExpr>() {
                Some(left)
                    if left.operation == CheckedOperation::Arithmetic
                        && left
                            .inner
                            .downcast_ref::<BinaryExpr>()
                            .is_some_and(|b| *b.op() == op) =>
                {
                    link = left;
                }
                _ => {
                    operands.push(binary.left());
                    break;
                }
            }
        }
        operands.reverse();
        operands
    }

    fn evaluate_arithmetic(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let Some(binary) = self.inner.downcast_ref::<BinaryExpr>() else {
            return self.inner.evaluate(batch);
        };
        let kernel = match binary.op() {
            Operator::Plus => add,
            Operator::Minus => sub,
            Operator::Multiply => mul,
            Operator::Divide => div,
            Operator::Modulo => rem,
            _ => return self.inner.evaluate(batch),
        };
        let left = binary.left().evaluate(batch)?;
        let right = binary.right().evaluate(batch)?;
        let (left_type, right_type) = (left.data_type(), right.data_type());
        if !(is_checked_type(&left_type) && is_checked_type(&right_type)) {
            // Not what the rewrite makes (a plan from elsewhere): evaluated
            // as the operation itself evaluates it.
            return self.inner.evaluate(batch);
        }
        if let Some(value) = evaluate_bounded(
            *binary.op(),
            &left,
            &right,
            &binary.data_type(batch.schema_ref())?,
        )? {
            return Ok(value);
        }
        // The kernels `BinaryExpr` runs when it fails on overflow.
        let value = apply(&left, &right, kernel).map_err(|error| {
            if is_arrow_overflow(&error) {
                self.overflow(batch.schema_ref())
            } else {
                error
            }
        })?;
        // Arrow checks a decimal result for overflowing 128 bits, not for
        // overflowing its precision. Below the largest precision the result
        // type holds any result of its operands; at it, the result may not,
        // unless the operands' precisions bound it.
        if let DataType::Decimal128(DECIMAL128_MAX_PRECISION, _) = value.data_type()
            && may_exceed_largest_precision(*binary.op(), &left_type, &right_type)
        {
            let array = value.to_array(1)?;
            if array
                .as_primitive::<Decimal128Type>()
                .validate_decimal_precision(DECIMAL128_MAX_PRECISION)
                .is_err()
            {
                return Err(self.overflow(batch.schema_ref()));
            }
        }
        Ok(value)
    }

    fn evaluate_negation(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let Some(negative) = self.inner.downcast_ref::<NegativeExpr>() else {
            return self.inner.evaluate(batch);
        };
        // The operand's own errors pass through; only the negation's are
        // named.
        let negated = match negative.arg().evaluate(batch)? {
            ColumnarValue::Array(array) => neg(array.as_ref()).map(ColumnarValue::Array),
            ColumnarValue::Scalar(scalar) => {
                return scalar
                    .arithmetic_negate()
                    .map(ColumnarValue::Scalar)
                    .map_err(|_| self.overflow(batch.schema_ref()));
            }
        };
        negated.map_err(|_| self.overflow(batch.schema_ref()))
    }

    fn evaluate_cast(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let Some(cast) = self.inner.downcast_ref::<CastExpr>() else {
            return self.inner.evaluate(batch);
        };
        let value = cast.expr().evaluate(batch)?;
        value
            .cast_to(cast.cast_type(), Some(cast.cast_options()))
            .map_err(|_| self.overflow(batch.schema_ref()))
    }

    fn overflow(&self, schema: &Schema) -> DataFusionError {
        let data_type = self.inner.data_type(schema).unwrap_or(DataType::Null);
        overflow_error(fmt_sql(self), &data_type)
    }
}

/// Whether `op` on decimals of types `left` and `right`, whose values have
/// at most their precision's digits, can give a result of more than 38
/// digits (arrow computes it exactly in 128 bits, or fails).
fn may_exceed_largest_precision(op: Operator, left: &DataType, right: &DataType) -> bool {
    let (Some((p1, s1)), Some((p2, s2))) = (decimal_digits(left), decimal_digits(right)) else {
        return true;
    };
    let largest = i16::from(DECIMAL128_MAX_PRECISION);
    let digits = match op {
        Operator::Plus | Operator::Minus => (p1 - s1).max(p2 - s2) + s1.max(s2) + 1,
        Operator::Multiply => p1 + p2,
        // Arrow scales the dividend up to four more digits of scale than it
        // had, and the divisor's scale more; the quotient has no more
        // digits than the scaled dividend.
        Operator::Divide => p1 + ((s1 + 4).min(largest) - s1 + s2).max(0),
        // A remainder is smaller than its divisor.
        Operator::Modulo => p1.min(p2),
        _ => return true,
    };
    digits > largest
}

/// Whether `error` is (or wraps) arrow's arithmetic overflow.
fn is_arrow_overflow(error: &DataFusionError) -> bool {
    matches!(
        error.find_root(),
        DataFusionError::ArrowError(inner, _) if matches!(inner.as_ref(), ArrowError::ArithmeticOverflow(_))
    )
}

impl OverflowCheckedExpr {
    /// Writes the expression, as SQL where `sql` is set. A checked
    /// operation's operands that are themselves arithmetic of a lower
    /// precedence (or of the same, on the right of `-`, `/` or `%`) are
    /// put in parentheses: `BinaryExpr` would not see them through the
    /// checked expression, and `a * (1 - b)` would read `a * 1 - b`.
    fn write(&self, f: &mut fmt::Formatter<'_>, sql: bool) -> fmt::Result {
        let binary = match self.inner.downcast_ref::<BinaryExpr>() {
            Some(binary) if self.operation == CheckedOperation::Arithmetic => binary,
            _ if sql => return self.inner.fmt_sql(f),
            _ => return write!(f, "{}", self.inner),
        };
        let precedence = binary.op().precedence();
        let grouped_right = matches!(
            binary.op(),
            Operator::Minus | Operator::Divide | Operator::Modulo
        );
        let write_operand = |f: &mut fmt::Formatter<'_>, operand: &Arc<dyn PhysicalExpr>, right| {
            let parenthesize = arithmetic_precedence(operand.as_ref()).is_some_and(|inner| {
                inner < precedence || (right && grouped_right && inner == precedence)
            });
            if parenthesize {
                f.write_str("(")?;
            }
            if sql {
                operand.fmt_sql(f)?;
            } else {
                write!(f, "{operand}")?;
            }
            if parenthesize {
                f.write_str(")")?;
            }
            Ok(())
        };
        write_operand(f, binary.left(), false)?;
        write!(f, " {} ", binary.op())?;
        write_operand(f, binary.right(), true)
    }
}

/// The precedence of `expr`'s operator, when it is a binary operation,
/// checked or not.
fn arithmetic_precedence(expr: &dyn PhysicalExpr) -> Option<u8> {
    let expr = match expr.downcast_ref::<OverflowCheckedExpr>() {
        Some(checked) => checked.inner.as_ref(),
        None => expr,
    };
    expr.downcast_ref::<BinaryExpr>()
        .map(|binary| binary.op().precedence())
}

impl fmt::Display for OverflowCheckedExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

impl PhysicalExpr for OverflowCheckedExpr {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.inner.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.inner.nullable(input_schema)
    }

    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        match self.operation {
            CheckedOperation::Arithmetic => self.evaluate_arithmetic(batch),
            CheckedOperation::Negation => self.evaluate_negation(batch),
            CheckedOperation::Cast => self.evaluate_cast(batch),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        match self.operation {
            CheckedOperation::Arithmetic | CheckedOperation::Negation => self.inner.children(),
            CheckedOperation::Cast => vec![&self.inner],
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let inner = match self.operation {
            // A binary expression keeps its `fail_on_overflow` flag.
            CheckedOperation::Arithmetic | CheckedOperation::Negation => {
                Arc::clone(&self.inner).with_new_children(children)?
            }
            CheckedOperation::Cast => {
                let [cast] = <[_; 1]>::try_from(children).map_err(|children| {
                    DataFusionError::Internal(format!(
                        "a checked cast has one child, not {}",
                        children.len()
                    ))
                })?;
                cast
            }
        };
        Ok(Arc::new(Self {
            inner,
            operation: self.operation,
        }))
    }

    fn get_properties(&self, children: &[ExprProperties]) -> Result<ExprProperties> {
        // Checking changes no value that fits, so order and range are the
        // checked operation's.
        match (self.operation, children) {
            (CheckedOperation::Cast, [cast]) => Ok(cast.clone()),
            (CheckedOperation::Cast, _) => Ok(ExprProperties::new_unknown()),
            _ => self.inner.get_properties(children),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, true)
    }

    /// A chain of one checked operator (`a + b + … + z`) is encoded flat, as
    /// one extension node over its operands, as DataFusion encodes its own
    /// operators: nested, a long chain would pass the decoder's nesting
    /// limit. Other checked operations go through Ember's codec as they
    /// are.
    fn try_to_proto(&self, ctx: &PhysicalExprEncodeCtx<'_>) -> Result<Option<PhysicalExprNode>> {
        let Some(binary) = self.inner.downcast_ref::<BinaryExpr>() else {
            return Ok(None);
        };
        if self.operation != CheckedOperation::Arithmetic {
            return Ok(None);
        }
        let operands = self.chain_operands(*binary.op());
        Ok(Some(PhysicalExprNode {
            expr_id: None,
            expr_type: Some(ExprType::Extension(PhysicalExtensionExprNode {
                expr: self.wire_name().into_bytes(),
                inputs: ctx.encode_children_expressions(operands)?,
            })),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_results_are_checked_against_38_digits_only_where_they_can_exceed_them() {
        let decimal = DataType::Decimal128;
        let cases = [
            // TPC-H's `l_extendedprice * (1 - l_discount)`.
            (Operator::Multiply, decimal(15, 2), decimal(23, 2), false),
            (Operator::Multiply, decimal(20, 0), decimal(19, 0), true),
            (Operator::Multiply, decimal(38, 4), decimal(23, 2), true),
            (Operator::Plus, decimal(36, 2), decimal(36, 2), false),
            (Operator::Minus, decimal(37, 2), decimal(30, 6), true),
            (Operator::Plus, decimal(38, 0), decimal(1, 0), true),
            (Operator::Divide, decimal(30, 2), decimal(5, 2), false),
            (Operator::Divide, decimal(34, 2), decimal(5, 2), true),
            (Operator::Modulo, decimal(38, 0), decimal(38, 0), false),
        ];
        for (op, left, right, may_exceed) in cases {
            assert_eq!(
                may_exceed_largest_precision(op, &left, &right),
                may_exceed,
                "{left} {op} {right}"
            );
        }
    }
}
