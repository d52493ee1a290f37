//! `ember._ember`: the native module of the `ember` Python package.
//!
//! A thin binding of the `ember` crate: [`context::PyContext`] wraps an
//! `EmberContext` (embedded or a cluster's client), [`dataframe::PyDataFrame`]
//! a lazy `Dataset`, [`expr::PyExpr`] a DataFusion expression. Results
//! leave through the Arrow C stream interface (`__arrow_c_stream__`) and
//! driver data enters through it, so pyarrow, pandas, Polars and DuckDB
//! exchange data with Ember without copying its buffers. No engine logic
//! lives here: every operation is the `ember` crate's.

mod arrow_stream;
mod context;
mod dataframe;
mod error;
mod expr;
mod runtime;
mod udf;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _ember(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EmberError", m.py().get_type::<error::EmberError>())?;
    m.add_class::<context::PyContext>()?;
    m.add_class::<dataframe::PyDataFrame>()?;
    m.add_class::<dataframe::PyGroupedDataFrame>()?;
    m.add_class::<expr::PyExpr>()?;
    m.add_class::<expr::PySortExpr>()?;
    m.add_class::<udf::PyUserFunction>()?;
    expr::register_functions(m)?;
    m.add_function(wrap_pyfunction!(context::connect, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
