//! `ember.connect()` and the context it returns: where datasets come
//! from (SQL, files, the catalog, driver data).

use std::path::PathBuf;

use ember::EmberContext;
use pyo3::prelude::*;

use crate::dataframe::PyDataFrame;
use crate::error::{EmberError, to_py};
use crate::runtime::wait;

/// An Ember session: embedded in this process, or a cluster's client.
#[pyclass(name = "Context", module = "ember", frozen)]
pub(crate) struct PyContext {
    pub(crate) ctx: EmberContext,
}

impl PyContext {
    /// Runs `future` (an action of this context), interrupting the
    /// statement it runs on Ctrl-C.
    pub(crate) fn wait<F>(&self, py: Python<'_>, future: F) -> PyResult<F::Output>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        crate::runtime::wait_statement(py, &self.ctx, future)
    }

    fn dataset(&self, dataset: ember::Dataset) -> PyDataFrame {
        PyDataFrame::new(self.ctx.clone(), dataset)
    }
}

/// A session: `master` is `None` (the `EMBER_MASTER` environment variable,
/// else embedded), `"local"` (embedded) or a scheduler (`"df://host:port"`
/// or `"host:port"`). On a secured cluster, `token_file` and the `tls_*`
/// paths say what to present (each defaults to its `EMBER_*` variable).
#[pyfunction]
#[pyo3(signature = (master=None, *, token_file=None, tls_ca=None, tls_cert=None, tls_key=None, tls_server_name=None))]
pub(crate) fn connect(
    py: Python<'_>,
    master: Option<String>,
    token_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_server_name: Option<String>,
) -> PyResult<PyContext> {
    let master = master
        .or_else(|| std::env::var(ember::dataset::MASTER_ENV).ok())
        .unwrap_or_default();
    let master = master.trim().to_string();
    let embedded = master.is_empty() || master == "local" || master.starts_with("local[");
    let ctx = if embedded {
        EmberContext::embedded().map_err(to_py)?
    } else {
        let mut security = ember_auth::SecurityOptions::from_env()
            .map_err(|e| EmberError::new_err(e.to_string()))?;
        security.token_file = token_file.or(security.token_file);
        security.tls_ca = tls_ca.or(security.tls_ca);
        security.tls_cert = tls_cert.or(security.tls_cert);
        security.tls_key = tls_key.or(security.tls_key);
        security.tls_server_name = tls_server_name.or(security.tls_server_name);
        wait(
            py,
            async move { EmberContext::connect_with(&master, &security).await },
            || {},
        )?
        .map_err(to_py)?
    };
    Ok(PyContext { ctx })
}

// `from_arrow`, `from_pandas` and `from_polars` are methods of a context in
// Python, as in PySpark (`spark.createDataFrame`) and DataFusion's package.
#[allow(clippy::wrong_self_convention)]
#[pymethods]
impl PyContext {
    /// `"embedded"`, or the scheduler's address.
    #[getter]
    fn master(&self) -> String {
        match self.ctx.mode() {
            ember::ExecutionMode::Embedded => "embedded".to_string(),
            ember::ExecutionMode::Cluster(addr) => addr.to_string(),
        }
    }

    /// One SQL statement: a query gives a lazy DataFrame; DDL and `SET`
    /// take effect now (and give an empty one).
    fn sql(&self, py: Python<'_>, query: String) -> PyResult<PyDataFrame> {
        let ctx = self.ctx.clone();
        let dataset = self.wait(py, async move { ctx.query(&query).await })?;
        Ok(self.dataset(dataset.map_err(to_py)?))
    }

    /// The Parquet files at `path` (a file, a directory or a glob; local
    /// or `s3://`).
    fn read_parquet(&self, py: Python<'_>, path: String) -> PyResult<PyDataFrame> {
        let ctx = self.ctx.clone();
        let dataset = self.wait(py, async move { ctx.read_parquet(&path).await })?;
        Ok(self.dataset(dataset.map_err(to_py)?))
    }

    /// The CSV files (with a header row) at `path`.
    fn read_csv(&self, py: Python<'_>, path: String) -> PyResult<PyDataFrame> {
        let ctx = self.ctx.clone();
        let dataset = self.wait(py, async move { ctx.read_csv(&path).await })?;
        Ok(self.dataset(dataset.map_err(to_py)?))
    }

    /// The newline-delimited JSON files at `path`.
    fn read_json(&self, py: Python<'_>, path: String) -> PyResult<PyDataFrame> {
        let ctx = self.ctx.clone();
        let dataset = self.wait(py, async move { ctx.read_json(&path).await })?;
        Ok(self.dataset(dataset.map_err(to_py)?))
    }

    /// The table or view `name` of the catalog.
    fn table(&self, py: Python<'_>, name: String) -> PyResult<PyDataFrame> {
        let ctx = self.ctx.clone();
        let dataset = self.wait(py, async move { ctx.table(&name).await })?;
        Ok(self.dataset(dataset.map_err(to_py)?))
    }

    /// Driver data as a DataFrame, in `partitions` partitions: `data` is
    /// anything with `__arrow_c_stream__` (a pyarrow Table or
    /// RecordBatchReader, a Polars DataFrame). On a cluster the rows
    /// travel with the plan, so keep them small (up to some megabytes).
    #[pyo3(signature = (data, partitions=1))]
    fn from_arrow(&self, data: &Bound<'_, PyAny>, partitions: usize) -> PyResult<PyDataFrame> {
        let (schema, batches) = crate::arrow_stream::import_stream(data)?;
        let batches = if batches.is_empty() {
            vec![arrow::record_batch::RecordBatch::new_empty(schema)]
        } else {
            batches
        };
        let dataset = self
            .ctx
            .parallelize(batches, partitions.max(1))
            .map_err(to_py)?;
        Ok(self.dataset(dataset))
    }

    /// A pandas DataFrame as a DataFrame, in `partitions` partitions (its
    /// index is dropped).
    #[pyo3(signature = (df, partitions=1))]
    fn from_pandas(&self, df: &Bound<'_, PyAny>, partitions: usize) -> PyResult<PyDataFrame> {
        let py = df.py();
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("preserve_index", false)?;
        let table = py.import("pyarrow")?.getattr("Table")?.call_method(
            "from_pandas",
            (df,),
            Some(&kwargs),
        )?;
        self.from_arrow(&table, partitions)
    }

    /// A Polars DataFrame as a DataFrame, in `partitions` partitions.
    #[pyo3(signature = (df, partitions=1))]
    fn from_polars(&self, df: &Bound<'_, PyAny>, partitions: usize) -> PyResult<PyDataFrame> {
        let table = df.call_method0("to_arrow")?;
        self.from_arrow(&table, partitions)
    }

    /// Registers a Python function as the SQL scalar function `name`:
    /// it gets a batch's columns as pyarrow arrays (of `input_types`) and
    /// returns one array of `return_type` (types as SQL names such as
    /// `"bigint"`, or pyarrow types). Embedded only: on a cluster it
    /// fails, naming what to use instead. The returned object applies it
    /// in the DataFrame API (`f(col("x"))`).
    fn register_udf(
        &self,
        name: &str,
        function: Bound<'_, PyAny>,
        input_types: Vec<Bound<'_, PyAny>>,
        return_type: &Bound<'_, PyAny>,
    ) -> PyResult<crate::udf::PyUserFunction> {
        if let ember::ExecutionMode::Cluster(addr) = self.ctx.mode() {
            return Err(EmberError::new_err(format!(
                "Python function {name}: Python functions run only embedded, and this session \
                 runs on the cluster at {addr}; use SQL or DataFrame expressions, or a named \
                 Rust function built into the cluster (docs/rust-jobs.md)"
            )));
        }
        if !function.is_callable() {
            return Err(EmberError::new_err(format!(
                "Python function {name}: what was given is not callable"
            )));
        }
        let inputs = input_types
            .iter()
            .map(crate::udf::data_type)
            .collect::<PyResult<Vec<_>>>()?;
        let output = crate::udf::data_type(return_type)?;
        let function = crate::udf::python_udf(name, function.unbind(), inputs, output);
        self.ctx.session().register_udf(function.udf().clone());
        Ok(function)
    }

    /// Registers `df` as the view `name`, for SQL.
    fn register_view(&self, name: &str, df: &PyDataFrame) -> PyResult<()> {
        df.dataset.create_view(name).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("ember.Context({})", self.master())
    }
}
