//! The expressions the GPU path evaluates: a small typed tree that is both
//! compiled to CUDA C and interpreted on the CPU, with the same semantics.
//!
//! Values are 64-bit: integers, dates (days) and decimals (unscaled, with a
//! scale) are `Int`, floating point is `Float`. SQL semantics hold: an
//! operand that is NULL makes arithmetic and comparisons NULL, `AND`/`OR`
//! use three-valued logic, and a filter keeps only rows where the predicate
//! is TRUE. Integer arithmetic that leaves the 64-bit range is reported as
//! an overflow (the CPU interpreter uses 128-bit arithmetic and reports the
//! same), never wrapped.

use std::fmt::Write as _;

use crate::error::GpuError;

/// The type of a column or an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuType {
    /// A 64-bit integer holding `value * 10^-scale` (scale 0 for integers
    /// and dates).
    Int {
        /// Digits after the decimal point.
        scale: i8,
    },
    /// A 64-bit float.
    Float,
    /// The result of a comparison or a logical operator.
    Bool,
}

impl GpuType {
    /// The GPU type holding values of Arrow type `data_type`: integers and
    /// dates as `Int`, decimals as `Int` with their scale, floats as `Float`;
    /// `None` for every other type.
    pub fn from_arrow(data_type: &arrow::datatypes::DataType) -> Option<GpuType> {
        use arrow::datatypes::DataType;
        match data_type {
            DataType::Int32 | DataType::Int64 | DataType::Date32 => Some(GpuType::Int { scale: 0 }),
            DataType::Decimal128(_, scale) => Some(GpuType::Int { scale: *scale }),
            DataType::Float32 | DataType::Float64 => Some(GpuType::Float),
            _ => None,
        }
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithmeticOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl CompareOp {
    fn c_operator(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::NotEq => "!=",
            CompareOp::Lt => "<",
            CompareOp::LtEq => "<=",
            CompareOp::Gt => ">",
            CompareOp::GtEq => ">=",
        }
    }

    fn holds<T: PartialOrd>(self, left: T, right: T) -> bool {
        match self {
            CompareOp::Eq => left == right,
            CompareOp::NotEq => left != right,
            CompareOp::Lt => left < right,
            CompareOp::LtEq => left <= right,
            CompareOp::Gt => left > right,
            CompareOp::GtEq => left >= right,
        }
    }
}

/// An expression over the columns of a [`crate::HostBatch`].
#[derive(Debug, Clone, PartialEq)]
pub enum GpuExpr {
    /// The column at this index.
    Column(usize),
    /// An integer or decimal literal: `value * 10^-scale`.
    Int {
        /// The unscaled value.
        value: i64,
        /// Digits after the decimal point.
        scale: i8,
    },
    /// A floating-point literal.
    Float(f64),
    /// `left op right`.
    Arithmetic {
        /// The operator.
        op: ArithmeticOp,
        /// Left operand.
        left: Box<GpuExpr>,
        /// Right operand.
        right: Box<GpuExpr>,
    },
    /// `left op right`, a boolean.
    Compare {
        /// The operator.
        op: CompareOp,
        /// Left operand.
        left: Box<GpuExpr>,
        /// Right operand.
        right: Box<GpuExpr>,
    },
    /// `left AND right` (three-valued).
    And(Box<GpuExpr>, Box<GpuExpr>),
    /// `left OR right` (three-valued).
    Or(Box<GpuExpr>, Box<GpuExpr>),
    /// `NOT e`.
    Not(Box<GpuExpr>),
    /// `e IS NULL`.
    IsNull(Box<GpuExpr>),
}

impl GpuExpr {
    /// A column reference.
    pub fn col(index: usize) -> Self {
        GpuExpr::Column(index)
    }

    /// An integer literal.
    pub fn int(value: i64) -> Self {
        GpuExpr::Int { value, scale: 0 }
    }

    /// A decimal literal, `value * 10^-scale`.
    pub fn decimal(value: i64, scale: i8) -> Self {
        GpuExpr::Int { value, scale }
    }

    fn arith(self, op: ArithmeticOp, other: GpuExpr) -> Self {
        GpuExpr::Arithmetic {
            op,
            left: Box::new(self),
            right: Box::new(other),
        }
    }

    fn compare(self, op: CompareOp, other: GpuExpr) -> Self {
        GpuExpr::Compare {
            op,
            left: Box::new(self),
            right: Box::new(other),
        }
    }

    /// `self = other`
    pub fn eq(self, other: GpuExpr) -> Self {
        self.compare(CompareOp::Eq, other)
    }
    /// `self < other`
    pub fn lt(self, other: GpuExpr) -> Self {
        self.compare(CompareOp::Lt, other)
    }
    /// `self <= other`
    pub fn lt_eq(self, other: GpuExpr) -> Self {
        self.compare(CompareOp::LtEq, other)
    }
    /// `self > other`
    pub fn gt(self, other: GpuExpr) -> Self {
        self.compare(CompareOp::Gt, other)
    }
    /// `self >= other`
    pub fn gt_eq(self, other: GpuExpr) -> Self {
        self.compare(CompareOp::GtEq, other)
    }
    /// `self AND other`
    pub fn and(self, other: GpuExpr) -> Self {
        GpuExpr::And(Box::new(self), Box::new(other))
    }
    /// `self OR other`
    pub fn or(self, other: GpuExpr) -> Self {
        GpuExpr::Or(Box::new(self), Box::new(other))
    }

    /// The type of this expression over columns of `columns` types.
    pub fn data_type(&self, columns: &[GpuType]) -> Result<GpuType, GpuError> {
        Ok(match self {
            GpuExpr::Column(i) => *columns
                .get(*i)
                .ok_or_else(|| GpuError::Unsupported(format!("column {i} does not exist")))?,
            GpuExpr::Int { scale, .. } => GpuType::Int { scale: *scale },
            GpuExpr::Float(_) => GpuType::Float,
            GpuExpr::Arithmetic { op, left, right } => {
                match (left.data_type(columns)?, right.data_type(columns)?) {
                    (GpuType::Int { scale: l }, GpuType::Int { scale: r }) => GpuType::Int {
                        scale: match op {
                            ArithmeticOp::Mul => l.checked_add(r).ok_or_else(|| {
                                GpuError::Unsupported("decimal scale out of range".into())
                            })?,
                            _ => l.max(r),
                        },
                    },
                    (GpuType::Bool, _) | (_, GpuType::Bool) => {
                        return Err(GpuError::Unsupported("arithmetic on a boolean".to_string()));
                    }
                    _ => GpuType::Float,
                }
            }
            GpuExpr::Compare { left, right, .. } => {
                let (l, r) = (left.data_type(columns)?, right.data_type(columns)?);
                if l == GpuType::Bool || r == GpuType::Bool {
                    return Err(GpuError::Unsupported("comparison of booleans".to_string()));
                }
                GpuType::Bool
            }
            GpuExpr::And(l, r) | GpuExpr::Or(l, r) => {
                for side in [l, r] {
                    if side.data_type(columns)? != GpuType::Bool {
                        return Err(GpuError::Unsupported("AND/OR of a non-boolean".to_string()));
                    }
                }
                GpuType::Bool
            }
            GpuExpr::Not(e) => {
                if e.data_type(columns)? != GpuType::Bool {
                    return Err(GpuError::Unsupported("NOT of a non-boolean".to_string()));
                }
                GpuType::Bool
            }
            GpuExpr::IsNull(e) => {
                e.data_type(columns)?;
                GpuType::Bool
            }
        })
    }
}

impl std::ops::Add for GpuExpr {
    type Output = GpuExpr;

    /// `self + other`
    fn add(self, other: GpuExpr) -> GpuExpr {
        self.arith(ArithmeticOp::Add, other)
    }
}

impl std::ops::Sub for GpuExpr {
    type Output = GpuExpr;

    /// `self - other`
    fn sub(self, other: GpuExpr) -> GpuExpr {
        self.arith(ArithmeticOp::Sub, other)
    }
}

impl std::ops::Mul for GpuExpr {
    type Output = GpuExpr;

    /// `self * other`
    fn mul(self, other: GpuExpr) -> GpuExpr {
        self.arith(ArithmeticOp::Mul, other)
    }
}

/// A value of the CPU interpreter: integers are 128-bit so that overflow
/// of the 64-bit device arithmetic can be detected exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    Int(i128),
    Float(f64),
    Bool(bool),
}

fn pow10(exp: i8) -> i128 {
    10i128.pow(exp.max(0) as u32)
}

fn to_float(value: i128, scale: i8) -> f64 {
    value as f64 / pow10(scale) as f64
}

fn fits_i64(value: i128) -> Result<i128, GpuError> {
    if value < i64::MIN as i128 || value > i64::MAX as i128 {
        Err(GpuError::Overflow)
    } else {
        Ok(value)
    }
}

/// Evaluates `expr` on row `row` with the CPU interpreter. `column` gives a
/// column's value at a row (`None` for NULL).
pub(crate) fn evaluate(
    expr: &GpuExpr,
    types: &[GpuType],
    row: usize,
    column: &dyn Fn(usize, usize) -> Option<Value>,
) -> Result<Option<Value>, GpuError> {
    Ok(match expr {
        GpuExpr::Column(i) => column(*i, row),
        GpuExpr::Int { value, .. } => Some(Value::Int(*value as i128)),
        GpuExpr::Float(v) => Some(Value::Float(*v)),
        GpuExpr::Arithmetic { op, left, right } => {
            let Some((l, r, lt, rt)) = operands(left, right, types, row, column)? else {
                return Ok(None);
            };
            match (l, r, lt, rt) {
                (
                    Value::Int(l),
                    Value::Int(r),
                    GpuType::Int { scale: ls },
                    GpuType::Int { scale: rs },
                ) => {
                    let value = match op {
                        ArithmeticOp::Mul => l * r,
                        ArithmeticOp::Add => {
                            let (l, r) = align_scales(l, ls, r, rs)?;
                            l + r
                        }
                        ArithmeticOp::Sub => {
                            let (l, r) = align_scales(l, ls, r, rs)?;
                            l - r
                        }
                    };
                    Some(Value::Int(fits_i64(value)?))
                }
                _ => {
                    let l = as_float(l, lt);
                    let r = as_float(r, rt);
                    Some(Value::Float(match op {
                        ArithmeticOp::Add => l + r,
                        ArithmeticOp::Sub => l - r,
                        ArithmeticOp::Mul => l * r,
                    }))
                }
            }
        }
        GpuExpr::Compare { op, left, right } => {
            let Some((l, r, lt, rt)) = operands(left, right, types, row, column)? else {
                return Ok(None);
            };
            Some(Value::Bool(match (l, r, lt, rt) {
                (
                    Value::Int(l),
                    Value::Int(r),
                    GpuType::Int { scale: ls },
                    GpuType::Int { scale: rs },
                ) => {
                    let (l, r) = align_scales(l, ls, r, rs)?;
                    op.holds(l, r)
                }
                _ => op.holds(as_float(l, lt), as_float(r, rt)),
            }))
        }
        GpuExpr::And(l, r) => {
            let l = as_bool(evaluate(l, types, row, column)?);
            let r = as_bool(evaluate(r, types, row, column)?);
            match (l, r) {
                (Some(false), _) | (_, Some(false)) => Some(Value::Bool(false)),
                (Some(true), Some(true)) => Some(Value::Bool(true)),
                _ => None,
            }
        }
        GpuExpr::Or(l, r) => {
            let l = as_bool(evaluate(l, types, row, column)?);
            let r = as_bool(evaluate(r, types, row, column)?);
            match (l, r) {
                (Some(true), _) | (_, Some(true)) => Some(Value::Bool(true)),
                (Some(false), Some(false)) => Some(Value::Bool(false)),
                _ => None,
            }
        }
        GpuExpr::Not(e) => as_bool(evaluate(e, types, row, column)?).map(|b| Value::Bool(!b)),
        GpuExpr::IsNull(e) => Some(Value::Bool(evaluate(e, types, row, column)?.is_none())),
    })
}

/// Both operands of a binary expression with their types, or `None` when
/// either is NULL.
type Operands = (Value, Value, GpuType, GpuType);

fn operands(
    left: &GpuExpr,
    right: &GpuExpr,
    types: &[GpuType],
    row: usize,
    column: &dyn Fn(usize, usize) -> Option<Value>,
) -> Result<Option<Operands>, GpuError> {
    let (lt, rt) = (left.data_type(types)?, right.data_type(types)?);
    Ok(
        match (
            evaluate(left, types, row, column)?,
            evaluate(right, types, row, column)?,
        ) {
            (Some(l), Some(r)) => Some((l, r, lt, rt)),
            _ => None,
        },
    )
}

/// Two decimals brought to the larger of their scales, as the device does
/// (64-bit, overflow reported).
fn align_scales(l: i128, ls: i8, r: i128, rs: i8) -> Result<(i128, i128), GpuError> {
    let target = ls.max(rs);
    Ok((
        fits_i64(l * pow10(target - ls))?,
        fits_i64(r * pow10(target - rs))?,
    ))
}

fn as_float(value: Value, ty: GpuType) -> f64 {
    match (value, ty) {
        (Value::Int(v), GpuType::Int { scale }) => to_float(v, scale),
        (Value::Int(v), _) => v as f64,
        (Value::Float(v), _) => v,
        (Value::Bool(b), _) => b as u8 as f64,
    }
}

fn as_bool(value: Option<Value>) -> Option<bool> {
    match value {
        Some(Value::Bool(b)) => Some(b),
        _ => None,
    }
}

/// CUDA C for an expression: `emit` appends statements to `code` that
/// leave the value in `v{n}` and its validity in `ok{n}`, and returns `n`.
pub(crate) struct CudaEmitter<'a> {
    pub(crate) types: &'a [GpuType],
    pub(crate) code: String,
    next: usize,
}

impl<'a> CudaEmitter<'a> {
    pub(crate) fn new(types: &'a [GpuType]) -> Self {
        Self {
            types,
            code: String::new(),
            next: 0,
        }
    }

    fn fresh(&mut self) -> usize {
        self.next += 1;
        self.next
    }

    /// Emits `expr`; returns the variable number.
    pub(crate) fn emit(&mut self, expr: &GpuExpr) -> Result<usize, GpuError> {
        let ty = expr.data_type(self.types)?;
        let n = self.fresh();
        let c_type = match ty {
            GpuType::Int { .. } => "long long",
            GpuType::Float => "double",
            GpuType::Bool => "bool",
        };
        match expr {
            GpuExpr::Column(i) => {
                let _ = writeln!(
                    self.code,
                    "    {c_type} v{n} = c{i}[row]; bool ok{n} = is_valid(valid{i}, row);"
                );
            }
            GpuExpr::Int { value, .. } => {
                let _ = writeln!(
                    self.code,
                    "    long long v{n} = {value}LL; bool ok{n} = true;"
                );
            }
            GpuExpr::Float(v) => {
                let _ = writeln!(self.code, "    double v{n} = {v:?}; bool ok{n} = true;");
            }
            GpuExpr::Arithmetic { op, left, right } => {
                let (lt, rt) = (left.data_type(self.types)?, right.data_type(self.types)?);
                let l = self.emit(left)?;
                let r = self.emit(right)?;
                match (lt, rt) {
                    (GpuType::Int { scale: ls }, GpuType::Int { scale: rs }) => {
                        let expr = match op {
                            ArithmeticOp::Mul => format!("mul_checked(v{l}, v{r}, &overflow)"),
                            _ => {
                                let target = ls.max(rs);
                                let lv = self.rescale(l, target - ls);
                                let rv = self.rescale(r, target - rs);
                                let f = if *op == ArithmeticOp::Add {
                                    "add_checked"
                                } else {
                                    "sub_checked"
                                };
                                format!("{f}({lv}, {rv}, &overflow)")
                            }
                        };
                        let _ = writeln!(
                            self.code,
                            "    bool ok{n} = ok{l} && ok{r}; long long v{n} = ok{n} ? {expr} : 0;"
                        );
                    }
                    _ => {
                        let lv = self.float_of(l, lt);
                        let rv = self.float_of(r, rt);
                        let sym = match op {
                            ArithmeticOp::Add => "+",
                            ArithmeticOp::Sub => "-",
                            ArithmeticOp::Mul => "*",
                        };
                        let _ = writeln!(
                            self.code,
                            "    bool ok{n} = ok{l} && ok{r}; double v{n} = {lv} {sym} {rv};"
                        );
                    }
                }
            }
            GpuExpr::Compare { op, left, right } => {
                let (lt, rt) = (left.data_type(self.types)?, right.data_type(self.types)?);
                let l = self.emit(left)?;
                let r = self.emit(right)?;
                let (lv, rv) = match (lt, rt) {
                    (GpuType::Int { scale: ls }, GpuType::Int { scale: rs }) => {
                        let target = ls.max(rs);
                        (self.rescale(l, target - ls), self.rescale(r, target - rs))
                    }
                    _ => (self.float_of(l, lt), self.float_of(r, rt)),
                };
                let _ = writeln!(
                    self.code,
                    "    bool ok{n} = ok{l} && ok{r}; bool v{n} = ok{n} && ({lv} {} {rv});",
                    op.c_operator()
                );
            }
            GpuExpr::And(left, right) => {
                let l = self.emit(left)?;
                let r = self.emit(right)?;
                let _ = writeln!(
                    self.code,
                    "    bool f{n} = (ok{l} && !v{l}) || (ok{r} && !v{r}); \
                     bool ok{n} = f{n} || (ok{l} && ok{r}); bool v{n} = !f{n} && ok{n};"
                );
            }
            GpuExpr::Or(left, right) => {
                let l = self.emit(left)?;
                let r = self.emit(right)?;
                let _ = writeln!(
                    self.code,
                    "    bool t{n} = (ok{l} && v{l}) || (ok{r} && v{r}); \
                     bool ok{n} = t{n} || (ok{l} && ok{r}); bool v{n} = t{n};"
                );
            }
            GpuExpr::Not(e) => {
                let e = self.emit(e)?;
                let _ = writeln!(
                    self.code,
                    "    bool ok{n} = ok{e}; bool v{n} = ok{e} && !v{e};"
                );
            }
            GpuExpr::IsNull(e) => {
                let e = self.emit(e)?;
                let _ = writeln!(self.code, "    bool ok{n} = true; bool v{n} = !ok{e};");
            }
        }
        Ok(n)
    }

    /// `v{n}` multiplied by 10^by, overflow-checked.
    fn rescale(&mut self, n: usize, by: i8) -> String {
        if by <= 0 {
            format!("v{n}")
        } else {
            format!("mul_checked(v{n}, {}LL, &overflow)", pow10(by))
        }
    }

    fn float_of(&mut self, n: usize, ty: GpuType) -> String {
        match ty {
            GpuType::Int { scale } if scale != 0 => {
                format!("((double)v{n} / {:?})", pow10(scale) as f64)
            }
            GpuType::Int { .. } => format!("((double)v{n})"),
            _ => format!("v{n}"),
        }
    }
}
