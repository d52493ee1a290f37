//! Arithmetic in window-function operands and sort keys, computed in a
//! projection below the window or sort so that the physical rewrite checks
//! it ([`compute_checked_operands`]).
//!
//! The physical rewrite checks the expressions of projections, filters and
//! aggregates. A window function evaluates its arguments, `PARTITION BY` and
//! `ORDER BY` itself, and a sort evaluates its keys itself (`ORDER BY x * 2`
//! where `x * 2` is not selected), where DataFusion's physical window and
//! sort expressions offer no way to replace them. Computing those operands
//! in a projection first puts them where the rewrite checks them; the window
//! or sort then reads plain columns, and a projection above gives back the
//! node's own schema.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DFSchemaRef};
use datafusion::error::Result;
use datafusion::logical_expr::{
    BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Projection, Sort, SortExpr, Window,
};

use super::expr::is_checked_operator;
use super::{is_checked_cast, is_checked_type};

/// The prefix of the columns holding computed operands; the projection
/// above the window or sort drops them again.
const OPERAND_PREFIX: &str = "__ember_checked_operand_";

/// `node` with the arithmetic its window functions or sort keys evaluate
/// computed in a projection below it; unchanged where they evaluate none
/// that can overflow.
pub(super) fn compute_checked_operands(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    match node {
        LogicalPlan::Window(window) => compute_window_operands(window),
        LogicalPlan::Sort(sort) => compute_sort_keys(sort),
        other => Ok(Transformed::no(other)),
    }
}

fn compute_window_operands(window: Window) -> Result<Transformed<LogicalPlan>> {
    let mut operands = ComputedOperands::new(window.input.schema());
    let mut window_expr = Vec::with_capacity(window.window_expr.len());
    for expr in &window.window_expr {
        let function = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::WindowFunction(function) = function else {
            window_expr.push(expr.clone());
            continue;
        };
        let mut rewritten = function.as_ref().clone();
        let params = &mut rewritten.params;
        for arg in params.args.iter_mut().chain(params.partition_by.iter_mut()) {
            *arg = operands.column_for(arg)?;
        }
        for sort in params.order_by.iter_mut() {
            sort.expr = operands.column_for(&sort.expr)?;
        }
        if rewritten == **function {
            window_expr.push(expr.clone());
        } else {
            let name = expr.name_for_alias()?;
            window_expr.push(Expr::WindowFunction(Box::new(rewritten)).alias(name));
        }
    }
    if operands.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Window(window)));
    }
    let input = operands.projection_over(Arc::clone(&window.input))?;
    let computed = Window::try_new(window_expr, Arc::new(input))?;
    project_back(LogicalPlan::Window(computed), &window.schema)
}

fn compute_sort_keys(sort: Sort) -> Result<Transformed<LogicalPlan>> {
    let mut operands = ComputedOperands::new(sort.input.schema());
    let keys = sort
        .expr
        .iter()
        .map(|key| {
            Ok(SortExpr {
                expr: operands.column_for(&key.expr)?,
                ..key.clone()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if operands.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Sort(sort)));
    }
    let input = operands.projection_over(Arc::clone(&sort.input))?;
    let computed = Sort {
        expr: keys,
        input: Arc::new(input),
        fetch: sort.fetch,
    };
    project_back(LogicalPlan::Sort(computed), sort.input.schema())
}

/// The operands computed below one node, each once, as named columns.
struct ComputedOperands<'a> {
    schema: &'a DFSchemaRef,
    computed: Vec<(Expr, String)>,
}

impl<'a> ComputedOperands<'a> {
    fn new(schema: &'a DFSchemaRef) -> Self {
        Self {
            schema,
            computed: Vec::new(),
        }
    }

    /// A column holding `expr` where it can overflow, `expr` itself
    /// otherwise.
    fn column_for(&mut self, expr: &Expr) -> Result<Expr> {
        if !can_overflow(expr, self.schema)? {
            return Ok(expr.clone());
        }
        let name = match self.computed.iter().find(|(computed, _)| computed == expr) {
            Some((_, name)) => name.clone(),
            None => {
                let name = self.unused_name();
                self.computed.push((expr.clone(), name.clone()));
                name
            }
        };
        Ok(Expr::Column(Column::from_name(name)))
    }

    /// A column name neither the input nor an operand computed before has.
    fn unused_name(&self) -> String {
        let taken = |name: &str| {
            self.schema.has_column_with_unqualified_name(name)
                || self.computed.iter().any(|(_, computed)| computed == name)
        };
        let mut n = self.computed.len();
        loop {
            let name = format!("{OPERAND_PREFIX}{n}");
            if !taken(&name) {
                return name;
            }
            n += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.computed.is_empty()
    }

    /// `input`'s columns and the computed operands.
    fn projection_over(self, input: Arc<LogicalPlan>) -> Result<LogicalPlan> {
        let exprs = columns_of(input.schema())
            .chain(
                self.computed
                    .into_iter()
                    .map(|(expr, name)| expr.alias(name)),
            )
            .collect();
        Ok(LogicalPlan::Projection(Projection::try_new(exprs, input)?))
    }
}

/// A projection over `node` giving back `schema` (the node's schema before
/// its operands were computed below it).
fn project_back(node: LogicalPlan, schema: &DFSchema) -> Result<Transformed<LogicalPlan>> {
    let projection = Projection::try_new(columns_of(schema).collect(), Arc::new(node))?;
    Ok(Transformed::yes(LogicalPlan::Projection(projection)))
}

fn columns_of(schema: &DFSchema) -> impl Iterator<Item = Expr> + '_ {
    schema
        .iter()
        .map(|(qualifier, field)| Expr::Column(Column::new(qualifier.cloned(), field.name())))
}

/// Whether evaluating `expr` over `schema` runs an operation the physical
/// rewrite checks: integer or decimal arithmetic, negation of a signed
/// integer, or a cast to an integer or decimal type that does not hold
/// every value of its operand's type.
pub(super) fn can_overflow(expr: &Expr, schema: &DFSchema) -> Result<bool> {
    expr.exists(|expr| {
        Ok(match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                is_checked_operator(op)
                    && is_checked_type(&left.get_type(schema)?)
                    && is_checked_type(&right.get_type(schema)?)
            }
            Expr::Negative(operand) => operand.get_type(schema)?.is_signed_integer(),
            Expr::Cast(Cast { expr, field }) => {
                is_checked_cast(&expr.get_type(schema)?, field.data_type())
            }
            _ => false,
        })
    })
}

/// Whether every value of type `from` converts to type `to` exactly: an
/// integer to a wider integer of the same signedness or to a decimal with
/// room for its digits, a decimal to one with as many digits on each side
/// of the point.
pub(super) fn holds_every_value(from: &DataType, to: &DataType) -> bool {
    if let Some((low, high)) = integer_range(to) {
        // A decimal's fraction is cut off, which is no overflow; its integer
        // digits must fit.
        let from_range = integer_range(from).or_else(|| {
            let (precision, scale) = decimal_digits(from)?;
            let largest = 10_i128.checked_pow(u32::try_from(precision - scale).ok()?)? - 1;
            Some((-largest, largest))
        });
        return from_range
            .is_some_and(|(from_low, from_high)| low <= from_low && from_high <= high);
    }
    match (decimal_digits(from), decimal_digits(to)) {
        (Some((p1, s1)), Some((p2, s2))) => s1 <= s2 && p1 - s1 <= p2 - s2,
        _ => false,
    }
}

/// The smallest and largest value of an integer type.
fn integer_range(data_type: &DataType) -> Option<(i128, i128)> {
    Some(match data_type {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => (i64::MIN.into(), i64::MAX.into()),
        DataType::UInt8 => (0, u8::MAX.into()),
        DataType::UInt16 => (0, u16::MAX.into()),
        DataType::UInt32 => (0, u32::MAX.into()),
        DataType::UInt64 => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// The precision and scale of a decimal type, and those an integer type
/// needs as a decimal (`BIGINT`: 19 digits, scale 0).
pub(super) fn decimal_digits(data_type: &DataType) -> Option<(i16, i16)> {
    Some(match data_type {
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => (i16::from(*p), i16::from(*s)),
        DataType::Int8 | DataType::UInt8 => (3, 0),
        DataType::Int16 | DataType::UInt16 => (5, 0),
        DataType::Int32 | DataType::UInt32 => (10, 0),
        DataType::Int64 => (19, 0),
        DataType::UInt64 => (20, 0),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_conversions_hold_every_value_and_narrowing_ones_do_not() {
        use DataType::*;
        for (from, to) in [
            (Int32, Int64),
            (UInt32, Int64),
            (Int64, Decimal128(19, 0)),
            (Int64, Decimal128(38, 0)),
            (Int32, Decimal128(12, 2)),
            (Decimal128(15, 2), Decimal128(16, 3)),
            (Decimal128(4, 2), Int8),
            (Decimal128(18, 0), Int64),
        ] {
            assert!(holds_every_value(&from, &to), "{from} -> {to}");
        }
        for (from, to) in [
            (Int64, Int32),
            (Int32, UInt64),
            (Int64, Decimal128(18, 0)),
            (Int32, Decimal128(11, 2)),
            (Decimal128(15, 2), Decimal128(15, 3)),
            (Decimal128(15, 2), Decimal128(16, 1)),
            (Decimal128(3, 0), Int8),
            (Decimal128(5, 2), Int8),
            (Float64, Int64),
        ] {
            assert!(!holds_every_value(&from, &to), "{from} -> {to}");
        }
    }
}
