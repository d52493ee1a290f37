//! The lazy DataFrame (Ember's `Dataset`): transformations build a plan,
//! actions run it.

use datafusion::logical_expr::{Expr, SortExpr};
use ember::dataset::{JoinType, StorageLevel};
use ember::{Dataset, EmberContext};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::error::{EmberError, from_datafusion, to_py};
use crate::expr::{PyExpr, PySortExpr};

/// A lazy, distributed table: transformations (`select`, `filter`, `join`,
/// …) return new DataFrames and run nothing; actions (`collect`, `count`,
/// `to_pandas`, `write_parquet`, …) run the plan, embedded or on the
/// cluster. Arrow readers take it as it is (`__arrow_c_stream__`).
#[pyclass(name = "DataFrame", module = "ember", frozen)]
pub(crate) struct PyDataFrame {
    ctx: EmberContext,
    pub(crate) dataset: Dataset,
}

/// A DataFrame grouped by keys; `agg` aggregates each group.
#[pyclass(name = "GroupedDataFrame", module = "ember", frozen)]
pub(crate) struct PyGroupedDataFrame {
    ctx: EmberContext,
    dataset: Dataset,
    keys: Vec<Expr>,
}

impl PyDataFrame {
    pub(crate) fn new(ctx: EmberContext, dataset: Dataset) -> Self {
        Self { ctx, dataset }
    }

    fn derived(&self, dataset: ember::Result<Dataset>) -> PyResult<Self> {
        Ok(Self::new(self.ctx.clone(), dataset.map_err(to_py)?))
    }

    /// Runs `future`, interrupting the statement on Ctrl-C.
    fn run<F>(&self, py: Python<'_>, future: F) -> PyResult<F::Output>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        crate::runtime::wait_statement(py, &self.ctx, future)
    }

    /// An argument as an expression: an `Expr`, or a SQL expression in a
    /// string (`"price * 2"`, `"name"`).
    fn expression(&self, value: &Bound<'_, PyAny>) -> PyResult<Expr> {
        if let Ok(e) = value.extract::<PyExpr>() {
            return Ok(e.expr);
        }
        if let Ok(text) = value.extract::<String>() {
            return self
                .dataset
                .frame()
                .parse_sql_expr(&text)
                .map_err(from_datafusion);
        }
        let kind = value.get_type().name()?;
        Err(EmberError::new_err(format!(
            "a {kind} is not an expression: pass an ember.Expr or a SQL expression string"
        )))
    }

    fn expressions(&self, values: &Bound<'_, PyTuple>) -> PyResult<Vec<Expr>> {
        values.iter().map(|v| self.expression(&v)).collect()
    }

    /// A sort key: a `SortExpr`, an `Expr` (ascending), or a column name
    /// (ascending; `"-name"` descending).
    fn sort_key(&self, value: &Bound<'_, PyAny>) -> PyResult<SortExpr> {
        if let Ok(s) = value.extract::<PySortExpr>() {
            return Ok(s.sort);
        }
        if let Ok(text) = value.extract::<String>()
            && let Some(name) = text.strip_prefix('-')
        {
            return Ok(datafusion::prelude::col(name).sort(false, true));
        }
        Ok(self.expression(value)?.sort(true, false))
    }

    fn collect_batches(&self, py: Python<'_>) -> PyResult<Vec<arrow::record_batch::RecordBatch>> {
        let dataset = self.dataset.clone();
        self.run(py, async move { dataset.collect().await })?
            .map_err(to_py)
    }
}

/// The file formats a DataFrame writes.
#[derive(Clone, Copy)]
enum FileFormat {
    Parquet,
    Csv,
    Json,
}

impl PyDataFrame {
    /// Writes the rows as `format` files under `path`, partitioned by the
    /// columns `partition_by`.
    fn write(
        &self,
        py: Python<'_>,
        format: FileFormat,
        path: String,
        partition_by: Option<Vec<String>>,
    ) -> PyResult<()> {
        let dataset = self.dataset.clone();
        let by = partition_by.unwrap_or_default();
        self.run(py, async move {
            let by: Vec<&str> = by.iter().map(String::as_str).collect();
            match format {
                FileFormat::Parquet => dataset.write_parquet(&path, &by).await,
                FileFormat::Csv => dataset.write_csv(&path, &by).await,
                FileFormat::Json => dataset.write_json(&path, &by).await,
            }
        })?
        .map_err(to_py)
    }
}

/// How a join is named in Python, as Ember's join type.
fn join_type(how: &str) -> PyResult<JoinType> {
    Ok(match how.to_ascii_lowercase().as_str() {
        "inner" => JoinType::Inner,
        "left" | "left_outer" => JoinType::Left,
        "right" | "right_outer" => JoinType::Right,
        "full" | "outer" | "full_outer" => JoinType::Full,
        "semi" | "left_semi" => JoinType::LeftSemi,
        "anti" | "left_anti" => JoinType::LeftAnti,
        other => {
            return Err(EmberError::new_err(format!(
                "`{other}` is not a join: use inner, left, right, full, semi or anti"
            )));
        }
    })
}

/// A storage level's Python name as Ember's.
fn storage_level(level: &str) -> PyResult<StorageLevel> {
    level
        .parse::<StorageLevel>()
        .map_err(|e| EmberError::new_err(e.to_string()))
}

#[pymethods]
impl PyDataFrame {
    // ---- Transformations ----

    /// The columns or expressions given (`Expr`s or SQL strings).
    #[pyo3(signature = (*exprs))]
    fn select(&self, exprs: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let exprs = self.expressions(exprs)?;
        self.derived(self.dataset.select(exprs))
    }

    /// The rows where `predicate` (an `Expr` or a SQL string) holds.
    fn filter(&self, predicate: &Bound<'_, PyAny>) -> PyResult<Self> {
        let predicate = self.expression(predicate)?;
        self.derived(self.dataset.filter(predicate))
    }

    /// This DataFrame with the column `name` set to `expr` (added, or
    /// replaced).
    fn with_column(&self, name: &str, expr: &Bound<'_, PyAny>) -> PyResult<Self> {
        let expr = self.expression(expr)?;
        self.derived(self.dataset.with_column(name, expr))
    }

    /// This DataFrame without the columns given.
    #[pyo3(signature = (*columns))]
    fn drop(&self, columns: Vec<String>) -> PyResult<Self> {
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        self.derived(self.dataset.drop(&names))
    }

    /// This DataFrame with the column `old` renamed to `new`.
    fn rename(&self, old: &str, new: &str) -> PyResult<Self> {
        self.derived(self.dataset.rename(old, new))
    }

    /// Joins with `other`: on the columns `on` of both sides, or
    /// `left_on` with `right_on`; `how` is inner, left, right, full, semi
    /// or anti.
    #[pyo3(signature = (other, on=None, *, left_on=None, right_on=None, how="inner"))]
    fn join(
        &self,
        other: &PyDataFrame,
        on: Option<Vec<String>>,
        left_on: Option<Vec<String>>,
        right_on: Option<Vec<String>>,
        how: &str,
    ) -> PyResult<Self> {
        let (left, right) = match (on, left_on, right_on) {
            (Some(on), None, None) => (on.clone(), on),
            (None, Some(left), Some(right)) if left.len() == right.len() => (left, right),
            _ => {
                return Err(EmberError::new_err(
                    "join: give `on`, or `left_on` and `right_on` of the same length",
                ));
            }
        };
        let left: Vec<&str> = left.iter().map(String::as_str).collect();
        let right: Vec<&str> = right.iter().map(String::as_str).collect();
        self.derived(
            self.dataset
                .join(&other.dataset, join_type(how)?, &left, &right),
        )
    }

    /// Groups by the keys given (`Expr`s or SQL strings); follow with
    /// `agg`.
    #[pyo3(signature = (*keys))]
    fn group_by(&self, keys: &Bound<'_, PyTuple>) -> PyResult<PyGroupedDataFrame> {
        Ok(PyGroupedDataFrame {
            ctx: self.ctx.clone(),
            dataset: self.dataset.clone(),
            keys: self.expressions(keys)?,
        })
    }

    /// Aggregates all rows into one (`df.agg(ember.sum(col("x")))`).
    #[pyo3(signature = (*aggregates))]
    fn agg(&self, aggregates: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let aggregates = self.expressions(aggregates)?;
        self.derived(self.dataset.group_by(Vec::new()).agg(aggregates))
    }

    /// Sorted by the keys given: `SortExpr`s (`col("x").desc()`), `Expr`s
    /// or column names (ascending; `"-x"` descending).
    #[pyo3(signature = (*keys))]
    fn sort(&self, keys: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let keys = keys
            .iter()
            .map(|k| self.sort_key(&k))
            .collect::<PyResult<Vec<_>>>()?;
        self.derived(self.dataset.sort(keys))
    }

    /// The first `n` rows.
    fn limit(&self, n: usize) -> PyResult<Self> {
        self.derived(self.dataset.limit(n))
    }

    /// The distinct rows.
    fn distinct(&self) -> PyResult<Self> {
        self.derived(self.dataset.distinct())
    }

    /// The rows of both (`UNION ALL`; columns match by position).
    fn union(&self, other: &PyDataFrame) -> PyResult<Self> {
        self.derived(self.dataset.union(&other.dataset))
    }

    /// Redistributed into `partitions` partitions: round robin, or by the
    /// hash of the columns `by`.
    #[pyo3(signature = (partitions, by=None))]
    fn repartition(&self, partitions: usize, by: Option<Vec<String>>) -> PyResult<Self> {
        match by {
            Some(columns) => {
                let keys = columns
                    .iter()
                    .map(|c| datafusion::prelude::col(c.as_str()))
                    .collect();
                self.derived(self.dataset.repartition_by(keys, partitions))
            }
            None => self.derived(self.dataset.repartition(partitions)),
        }
    }

    /// Kept where it is computed (in memory, spilling to disk) for the
    /// actions that follow; computed on the first action.
    fn cache(&self) -> PyResult<Self> {
        self.derived(self.dataset.cache())
    }

    /// Like `cache`, at `level`: `memory`, `disk` or `memory_and_disk`.
    #[pyo3(signature = (level="memory_and_disk"))]
    fn persist(&self, level: &str) -> PyResult<Self> {
        let level = storage_level(level)?;
        self.derived(self.dataset.persist(level))
    }

    /// Frees what `cache` or `persist` kept; the DataFrame of its lineage.
    fn unpersist(&self, py: Python<'_>) -> PyResult<Self> {
        let dataset = self.dataset.clone();
        let plain = self.run(py, async move { dataset.unpersist().await })?;
        self.derived(plain)
    }

    // ---- Actions ----

    /// Runs the plan; its rows as a stream of Arrow data (the Arrow
    /// PyCapsule protocol: `pyarrow.table(df)`, `polars.DataFrame(df)`,
    /// `duckdb.sql("select * from df")` read it without copying).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, pyo3::types::PyCapsule>> {
        // The schema is the plan's; a requested one is not negotiated.
        let _ = requested_schema;
        let batches = self.collect_batches(py)?;
        let schema = self.dataset.schema();
        let batches = batches
            .into_iter()
            .map(|b| b.with_schema(schema.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                EmberError::new_err(format!("the result does not match its plan's schema: {e}"))
            })?;
        crate::arrow_stream::export_stream(py, schema, batches)
    }

    /// Runs the plan; its rows as a `pyarrow.Table`.
    fn to_arrow<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("pyarrow")?
            .getattr("RecordBatchReader")?
            .call_method1("from_stream", (slf,))?
            .call_method0("read_all")
    }

    /// Runs the plan; its rows as a list of `pyarrow.RecordBatch`.
    fn collect<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::to_arrow(slf)?.call_method0("to_batches")
    }

    /// Runs the plan; its rows as a `pandas.DataFrame`.
    fn to_pandas<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::to_arrow(slf)?.call_method0("to_pandas")
    }

    /// Runs the plan; its rows as a `polars.DataFrame`.
    fn to_polars<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let table = Self::to_arrow(slf)?;
        slf.py()
            .import("polars")?
            .call_method1("from_arrow", (table,))
    }

    /// Prints the first `n` rows as a table.
    #[pyo3(signature = (n=20))]
    fn show(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        let table = self.show_string(py, n)?;
        py.import("builtins")?.call_method1("print", (table,))?;
        Ok(())
    }

    /// The number of rows.
    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        let dataset = self.dataset.clone();
        self.run(py, async move { dataset.count().await })?
            .map_err(to_py)
    }

    /// The plan as text: logical, optimized and physical (and, on a
    /// cluster, its stages).
    fn explain(&self, py: Python<'_>) -> PyResult<String> {
        let dataset = self.dataset.clone();
        self.run(py, async move { dataset.explain().await })?
            .map_err(to_py)
    }

    /// The first `n` rows as a text table.
    #[pyo3(signature = (n=20))]
    fn show_string(&self, py: Python<'_>, n: usize) -> PyResult<String> {
        let dataset = self.dataset.clone();
        let batches = self
            .run(py, async move { dataset.take(n).await })?
            .map_err(to_py)?;
        arrow::util::pretty::pretty_format_batches(&batches)
            .map(|table| table.to_string())
            .map_err(|e| EmberError::new_err(e.to_string()))
    }

    /// Writes the rows as Parquet files under `path` (a directory, local
    /// or `s3://`), one directory level per column of `partition_by`;
    /// atomic: all files appear, or none.
    #[pyo3(signature = (path, partition_by=None))]
    fn write_parquet(
        &self,
        py: Python<'_>,
        path: String,
        partition_by: Option<Vec<String>>,
    ) -> PyResult<()> {
        self.write(py, FileFormat::Parquet, path, partition_by)
    }

    /// Writes the rows as CSV files (with a header row), as
    /// `write_parquet` does.
    #[pyo3(signature = (path, partition_by=None))]
    fn write_csv(
        &self,
        py: Python<'_>,
        path: String,
        partition_by: Option<Vec<String>>,
    ) -> PyResult<()> {
        self.write(py, FileFormat::Csv, path, partition_by)
    }

    /// Writes the rows as newline-delimited JSON files, as `write_parquet`
    /// does.
    #[pyo3(signature = (path, partition_by=None))]
    fn write_json(
        &self,
        py: Python<'_>,
        path: String,
        partition_by: Option<Vec<String>>,
    ) -> PyResult<()> {
        self.write(py, FileFormat::Json, path, partition_by)
    }

    /// The column names.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.dataset
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The schema, as text (`name: type` per line).
    #[getter]
    fn schema_string(&self) -> String {
        self.dataset
            .schema()
            .fields()
            .iter()
            .map(|f| {
                format!(
                    "{}: {}{}",
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { "" } else { " not null" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The storage level of `cache`/`persist`, or `None`.
    #[getter]
    fn storage_level(&self) -> Option<String> {
        self.dataset.storage_level().map(|l| l.to_string())
    }

    fn __repr__(&self) -> String {
        format!("ember.DataFrame[{}]", self.columns().join(", "))
    }
}

#[pymethods]
impl PyGroupedDataFrame {
    /// One row per group: the keys and the aggregates given (`Expr`s such
    /// as `ember.sum(col("x")).alias("total")`, or SQL strings).
    #[pyo3(signature = (*aggregates))]
    fn agg(&self, aggregates: &Bound<'_, PyTuple>) -> PyResult<PyDataFrame> {
        let parent = PyDataFrame::new(self.ctx.clone(), self.dataset.clone());
        let aggregates = parent.expressions(aggregates)?;
        parent.derived(self.dataset.group_by(self.keys.clone()).agg(aggregates))
    }
}
