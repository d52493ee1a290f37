//! Expressions: `col`, `lit`, operators and aggregate functions, each a
//! DataFusion expression underneath.

use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::prelude::{col as df_col, lit as df_lit};
use pyo3::basic::CompareOp;
use pyo3::prelude::*;

use crate::error::EmberError;

/// A column expression (`ember.col("x") + 1`); build with `col`, `lit` and
/// the aggregate functions, combine with Python's operators (`&`, `|` and
/// `~` for and, or and not).
#[pyclass(name = "Expr", module = "ember", frozen, from_py_object)]
#[derive(Clone)]
pub(crate) struct PyExpr {
    pub(crate) expr: Expr,
}

/// A sort key: an expression with its direction (`col("x").desc()`).
#[pyclass(name = "SortExpr", module = "ember", frozen, from_py_object)]
#[derive(Clone)]
pub(crate) struct PySortExpr {
    pub(crate) sort: SortExpr,
}

impl From<Expr> for PyExpr {
    fn from(expr: Expr) -> Self {
        Self { expr }
    }
}

/// A Python value as a literal expression.
pub(crate) fn literal(value: &Bound<'_, PyAny>) -> PyResult<Expr> {
    if value.is_none() {
        return Ok(df_lit(datafusion::scalar::ScalarValue::Null));
    }
    // bool first: a Python bool is an int too.
    if let Ok(v) = value.cast::<pyo3::types::PyBool>() {
        return Ok(df_lit(v.is_true()));
    }
    if let Ok(v) = value.extract::<i64>() {
        return Ok(df_lit(v));
    }
    if let Ok(v) = value.extract::<f64>() {
        return Ok(df_lit(v));
    }
    if let Ok(v) = value.extract::<String>() {
        return Ok(df_lit(v));
    }
    let kind = value.get_type().name()?;
    Err(EmberError::new_err(format!(
        "a {kind} cannot be a literal: use an int, float, str, bool or None"
    )))
}

/// An operand: an `Expr` as it is, any other value as a literal.
fn operand(value: &Bound<'_, PyAny>) -> PyResult<Expr> {
    match value.extract::<PyExpr>() {
        Ok(e) => Ok(e.expr),
        Err(_) => literal(value),
    }
}

#[pymethods]
impl PyExpr {
    fn __add__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((self.expr.clone() + operand(other)?).into())
    }
    fn __radd__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((operand(other)? + self.expr.clone()).into())
    }
    fn __sub__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((self.expr.clone() - operand(other)?).into())
    }
    fn __rsub__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((operand(other)? - self.expr.clone()).into())
    }
    fn __mul__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((self.expr.clone() * operand(other)?).into())
    }
    fn __rmul__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((operand(other)? * self.expr.clone()).into())
    }
    fn __truediv__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((self.expr.clone() / operand(other)?).into())
    }
    fn __rtruediv__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((operand(other)? / self.expr.clone()).into())
    }
    fn __mod__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok((self.expr.clone() % operand(other)?).into())
    }
    fn __neg__(&self) -> Self {
        (-self.expr.clone()).into()
    }
    fn __and__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(self.expr.clone().and(operand(other)?).into())
    }
    fn __or__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(self.expr.clone().or(operand(other)?).into())
    }
    fn __invert__(&self) -> Self {
        (!self.expr.clone()).into()
    }
    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Self> {
        let left = self.expr.clone();
        let right = operand(other)?;
        Ok(match op {
            CompareOp::Lt => left.lt(right),
            CompareOp::Le => left.lt_eq(right),
            CompareOp::Eq => left.eq(right),
            CompareOp::Ne => left.not_eq(right),
            CompareOp::Gt => left.gt(right),
            CompareOp::Ge => left.gt_eq(right),
        }
        .into())
    }
    fn __bool__(&self) -> PyResult<bool> {
        Err(EmberError::new_err(
            "an Expr has no truth value: combine conditions with &, | and ~, not and, or and not",
        ))
    }

    /// This expression under another name.
    fn alias(&self, name: &str) -> Self {
        self.expr.clone().alias(name).into()
    }

    /// Whether the value is null.
    fn is_null(&self) -> Self {
        self.expr.clone().is_null().into()
    }

    /// Whether the value is not null.
    fn is_not_null(&self) -> Self {
        self.expr.clone().is_not_null().into()
    }

    /// Whether the value is one of `values`.
    fn isin(&self, values: Vec<Bound<'_, PyAny>>) -> PyResult<Self> {
        let list = values.iter().map(operand).collect::<PyResult<Vec<_>>>()?;
        Ok(self.expr.clone().in_list(list, false).into())
    }

    /// Whether the value lies between `low` and `high`, both included.
    fn between(&self, low: &Bound<'_, PyAny>, high: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(self
            .expr
            .clone()
            .between(operand(low)?, operand(high)?)
            .into())
    }

    /// The value as `to`, a SQL type name (`"bigint"`, `"double"`,
    /// `"varchar"`, `"date"`, `"decimal(12,2)"`, …).
    fn cast(&self, to: &str) -> PyResult<Self> {
        let data_type = sql_type(to)?;
        Ok(Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(self.expr.clone()),
            data_type,
        ))
        .into())
    }

    /// Ascending sort key (nulls last).
    fn asc(&self) -> PySortExpr {
        PySortExpr {
            sort: self.expr.clone().sort(true, false),
        }
    }

    /// Descending sort key (nulls first, as in SQL's `DESC`).
    fn desc(&self) -> PySortExpr {
        PySortExpr {
            sort: self.expr.clone().sort(false, true),
        }
    }

    fn __repr__(&self) -> String {
        format!("Expr({})", self.expr)
    }
}

#[pymethods]
impl PySortExpr {
    fn __repr__(&self) -> String {
        format!("SortExpr({})", self.sort)
    }
}

/// A SQL type name as an Arrow type, as `CAST(x AS type)` reads it.
pub(crate) fn sql_type(name: &str) -> PyResult<datafusion::arrow::datatypes::DataType> {
    let ctx = datafusion::prelude::SessionContext::new();
    let plan = ctx
        .state()
        .create_logical_expr(
            &format!("CAST(NULL AS {name})"),
            &datafusion::common::DFSchema::empty(),
        )
        .map_err(|e| EmberError::new_err(format!("`{name}` is not a SQL type: {e}")))?;
    match plan {
        Expr::Cast(cast) => Ok(cast.field.data_type().clone()),
        other => Err(EmberError::new_err(format!(
            "`{name}` is not a SQL type (read as {other})"
        ))),
    }
}

/// The column `name`.
#[pyfunction]
fn col(name: &str) -> PyExpr {
    df_col(name).into()
}

/// A literal value: an int, float, str, bool or None.
#[pyfunction]
fn lit(value: &Bound<'_, PyAny>) -> PyResult<PyExpr> {
    literal(value).map(PyExpr::from)
}

/// The sum of `expr`.
#[pyfunction]
fn sum(expr: PyExpr) -> PyExpr {
    datafusion::functions_aggregate::expr_fn::sum(expr.expr).into()
}

/// The mean of `expr`.
#[pyfunction]
fn avg(expr: PyExpr) -> PyExpr {
    datafusion::functions_aggregate::expr_fn::avg(expr.expr).into()
}

/// The smallest value of `expr`.
#[pyfunction]
fn min(expr: PyExpr) -> PyExpr {
    datafusion::functions_aggregate::expr_fn::min(expr.expr).into()
}

/// The largest value of `expr`.
#[pyfunction]
fn max(expr: PyExpr) -> PyExpr {
    datafusion::functions_aggregate::expr_fn::max(expr.expr).into()
}

/// The number of rows where `expr` is not null; of all rows without one.
#[pyfunction]
#[pyo3(signature = (expr=None))]
fn count(expr: Option<PyExpr>) -> PyExpr {
    match expr {
        Some(e) => datafusion::functions_aggregate::expr_fn::count(e.expr).into(),
        None => datafusion::functions_aggregate::expr_fn::count(df_lit(1i64)).into(),
    }
}

/// The number of distinct non-null values of `expr`.
#[pyfunction]
fn count_distinct(expr: PyExpr) -> PyExpr {
    datafusion::functions_aggregate::expr_fn::count_distinct(expr.expr).into()
}

/// The function `name` of Ember's SQL (a scalar function such as `upper`,
/// `round` or `date_trunc`, or an aggregate such as `stddev`) applied to
/// `args` (`Expr`s, or values as literals).
#[pyfunction]
#[pyo3(signature = (name, *args))]
fn func(name: &str, args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<PyExpr> {
    let args = args
        .iter()
        .map(|a| operand(&a))
        .collect::<PyResult<Vec<_>>>()?;
    let registry = function_registry();
    if let Some(udf) = registry.udfs.get(name) {
        return Ok(udf.call(args).into());
    }
    if let Some(udaf) = registry.udafs.get(name) {
        return Ok(udaf.call(args).into());
    }
    Err(EmberError::new_err(format!(
        "`{name}` is not a function of Ember's SQL"
    )))
}

/// Ember's SQL functions, by name (aliases included).
struct FunctionRegistry {
    udfs: std::collections::HashMap<String, std::sync::Arc<datafusion::logical_expr::ScalarUDF>>,
    udafs:
        std::collections::HashMap<String, std::sync::Arc<datafusion::logical_expr::AggregateUDF>>,
}

fn function_registry() -> &'static FunctionRegistry {
    static REGISTRY: std::sync::OnceLock<FunctionRegistry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        let state = datafusion::prelude::SessionContext::new().state();
        let mut udfs = std::collections::HashMap::new();
        for udf in state.scalar_functions().values() {
            udfs.insert(udf.name().to_string(), udf.clone());
            for alias in udf.aliases() {
                udfs.insert(alias.clone(), udf.clone());
            }
        }
        let mut udafs = std::collections::HashMap::new();
        for udaf in state.aggregate_functions().values() {
            udafs.insert(udaf.name().to_string(), udaf.clone());
            for alias in udaf.aliases() {
                udafs.insert(alias.clone(), udaf.clone());
            }
        }
        FunctionRegistry { udfs, udafs }
    })
}

/// Adds the expression functions to the module.
pub(crate) fn register_functions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(col, m)?)?;
    m.add_function(wrap_pyfunction!(lit, m)?)?;
    m.add_function(wrap_pyfunction!(sum, m)?)?;
    m.add_function(wrap_pyfunction!(avg, m)?)?;
    m.add_function(wrap_pyfunction!(min, m)?)?;
    m.add_function(wrap_pyfunction!(max, m)?)?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    m.add_function(wrap_pyfunction!(count_distinct, m)?)?;
    m.add_function(wrap_pyfunction!(func, m)?)?;
    Ok(())
}
