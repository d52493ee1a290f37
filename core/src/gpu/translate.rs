//! DataFusion physical expressions to the GPU path's [`GpuExpr`]: the
//! subset a generated kernel evaluates. Anything else is `Err(reason)`, and
//! the plan stays on the CPU.

use crate::checked_arithmetic::{CheckedOperation, OverflowCheckedExpr};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CastExpr, Column, IsNullExpr, Literal, NotExpr,
};
use datafusion::scalar::ScalarValue;
use ember_gpu::{GpuExpr, GpuType, is_string};

/// Maps the scan's columns that expressions use to the GPU batch's columns,
/// in first-use order.
#[derive(Debug, Default, Clone)]
pub(crate) struct UsedColumns {
    /// `scan[i]` is the scan column feeding GPU column `i`.
    pub(crate) scan: Vec<usize>,
}

impl UsedColumns {
    /// The GPU column of a GROUP BY key read from `scan_column`.
    pub(crate) fn key_index(&mut self, scan_column: usize) -> usize {
        self.gpu_index(scan_column)
    }

    fn gpu_index(&mut self, scan_column: usize) -> usize {
        match self.scan.iter().position(|&c| c == scan_column) {
            Some(i) => i,
            None => {
                self.scan.push(scan_column);
                self.scan.len() - 1
            }
        }
    }
}

/// Translates `expr`, whose column indices refer to the scan's schema
/// through `projection` (`projection[i]` is the scan column of input
/// column `i`; `None` when the input is the scan itself).
pub(crate) fn translate(
    expr: &Arc<dyn PhysicalExpr>,
    projection: Option<&[usize]>,
    scan_types: &[DataType],
    used: &mut UsedColumns,
) -> Result<GpuExpr, String> {
    if let Some(column) = expr.downcast_ref::<Column>() {
        let scan_column = match projection {
            Some(p) => *p
                .get(column.index())
                .ok_or_else(|| format!("column {} outside the projection", column.index()))?,
            None => column.index(),
        };
        let data_type = scan_types
            .get(scan_column)
            .ok_or_else(|| format!("column {scan_column} outside the scan"))?;
        GpuType::from_arrow(data_type)
            .ok_or_else(|| format!("column `{}` of type {data_type}", column.name()))?;
        return Ok(GpuExpr::col(used.gpu_index(scan_column)));
    }
    if let Some(literal) = expr.downcast_ref::<Literal>() {
        return literal_expr(literal.value());
    }
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        let left = translate(binary.left(), projection, scan_types, used)?;
        let right = translate(binary.right(), projection, scan_types, used)?;
        return Ok(match binary.op() {
            Operator::Plus => left + right,
            Operator::Minus => left - right,
            Operator::Multiply => left * right,
            Operator::Eq => left.eq(right),
            Operator::NotEq => GpuExpr::Not(Box::new(left.eq(right))),
            Operator::Lt => left.lt(right),
            Operator::LtEq => left.lt_eq(right),
            Operator::Gt => left.gt(right),
            Operator::GtEq => left.gt_eq(right),
            Operator::And => left.and(right),
            Operator::Or => left.or(right),
            other => return Err(format!("operator {other}")),
        });
    }
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        // Casts that keep the value: widening integers, and decimals to
        // other precisions or scales (the GPU types carry their own scale,
        // and results are rescaled to the plan's types at the end).
        let inner = translate(cast.expr(), projection, scan_types, used)?;
        let inner_type = inner
            .data_type(&gpu_types(used, scan_types))
            .map_err(|e| e.to_string())?;
        return match (cast.cast_type(), inner_type) {
            (DataType::Float64, _) => Ok(inner),
            (DataType::Int64 | DataType::Int32 | DataType::Date32, GpuType::Int { scale: 0 }) => {
                Ok(inner)
            }
            (DataType::Decimal128(..), GpuType::Int { .. }) => Ok(inner),
            (other, from) => Err(format!("cast of {from:?} to {other}")),
        };
    }
    if let Some(checked) = expr.downcast_ref::<OverflowCheckedExpr>() {
        // The GPU kernels report overflow themselves; a negation has no
        // kernel.
        return match checked.operation() {
            CheckedOperation::Arithmetic | CheckedOperation::Cast => {
                translate(checked.inner(), projection, scan_types, used)
            }
            CheckedOperation::Negation => Err(format!("expression `{expr}`")),
        };
    }
    if let Some(not) = expr.downcast_ref::<NotExpr>() {
        let inner = translate(not.arg(), projection, scan_types, used)?;
        return Ok(GpuExpr::Not(Box::new(inner)));
    }
    if let Some(is_null) = expr.downcast_ref::<IsNullExpr>() {
        let inner = translate(is_null.arg(), projection, scan_types, used)?;
        return Ok(GpuExpr::IsNull(Box::new(inner)));
    }
    Err(format!("expression `{expr}`"))
}

/// The GPU types of the used columns, in GPU column order (string keys
/// are dictionary codes: integers).
pub(crate) fn gpu_types(used: &UsedColumns, scan_types: &[DataType]) -> Vec<GpuType> {
    used.scan
        .iter()
        .map(|&c| match GpuType::from_arrow(&scan_types[c]) {
            Some(ty) => ty,
            None if is_string(&scan_types[c]) => GpuType::Int { scale: 0 },
            None => GpuType::Bool,
        })
        .collect()
}

fn literal_expr(value: &ScalarValue) -> Result<GpuExpr, String> {
    Ok(match value {
        ScalarValue::Int64(Some(v)) => GpuExpr::int(*v),
        ScalarValue::Int32(Some(v)) => GpuExpr::int(*v as i64),
        ScalarValue::Date32(Some(v)) => GpuExpr::int(*v as i64),
        ScalarValue::Decimal128(Some(v), _, scale) => GpuExpr::decimal(
            i64::try_from(*v).map_err(|_| format!("decimal literal {v} beyond 64 bits"))?,
            *scale,
        ),
        ScalarValue::Float64(Some(v)) => GpuExpr::Float(*v),
        ScalarValue::Float32(Some(v)) => GpuExpr::Float(*v as f64),
        other => return Err(format!("literal {other:?}")),
    })
}
