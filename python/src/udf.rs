//! Python functions over Arrow arrays, as SQL scalar functions of an
//! embedded session: each call gets a batch's columns as pyarrow arrays
//! and returns one (or anything `pyarrow.array` takes). They run in this
//! process only: a cluster's executors have no Python, so registering one
//! on a cluster fails, saying what to use instead.

use std::ffi::CStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, make_array};
use arrow::datatypes::DataType;
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::error::EmberError;
use crate::expr::PyExpr;

/// The capsule names of the Arrow C data interface.
const SCHEMA_CAPSULE: &CStr = c"arrow_schema";
const ARRAY_CAPSULE: &CStr = c"arrow_array";

/// A registered Python function; calling it with expressions gives the
/// expression that applies it (`double(col("x"))`).
#[pyclass(name = "UserFunction", module = "ember", frozen)]
pub(crate) struct PyUserFunction {
    udf: ScalarUDF,
}

#[pymethods]
impl PyUserFunction {
    #[pyo3(signature = (*args))]
    fn __call__(&self, args: &Bound<'_, PyTuple>) -> PyResult<PyExpr> {
        let exprs = args
            .iter()
            .map(|a| {
                a.extract::<PyExpr>()
                    .map(|e| e.expr)
                    .or_else(|_| crate::expr::literal(&a))
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(self.udf.call(exprs).into())
    }

    /// The name SQL calls it by.
    #[getter]
    fn name(&self) -> String {
        self.udf.name().to_string()
    }

    fn __repr__(&self) -> String {
        format!("ember.UserFunction({})", self.udf.name())
    }
}

/// A type given as a SQL name (`"bigint"`) or a pyarrow type.
pub(crate) fn data_type(value: &Bound<'_, PyAny>) -> PyResult<DataType> {
    if let Ok(name) = value.extract::<String>() {
        return crate::expr::sql_type(&name);
    }
    if value.hasattr("__arrow_c_schema__")? {
        let capsule = value.call_method0("__arrow_c_schema__")?;
        let capsule = capsule
            .cast::<PyCapsule>()
            .map_err(|_| EmberError::new_err("__arrow_c_schema__ did not return a PyCapsule"))?;
        let schema =
            capsule.pointer_checked(Some(SCHEMA_CAPSULE))?.as_ptr() as *const FFI_ArrowSchema;
        // SAFETY: an `arrow_schema` capsule holds a valid FFI_ArrowSchema,
        // borrowed here while the capsule lives.
        let schema = unsafe { &*schema };
        return DataType::try_from(schema)
            .map_err(|e| EmberError::new_err(format!("cannot read the type: {e}")));
    }
    let kind = value.get_type().name()?;
    Err(EmberError::new_err(format!(
        "a {kind} is not a type: pass a SQL type name (\"bigint\") or a pyarrow type"
    )))
}

/// `array` as a pyarrow array, through the Arrow C data interface.
fn to_pyarrow<'py>(py: Python<'py>, array: &ArrayRef) -> PyResult<Bound<'py, PyAny>> {
    let (ffi_array, ffi_schema) =
        to_ffi(&array.to_data()).map_err(|e| EmberError::new_err(e.to_string()))?;
    let schema = PyCapsule::new_with_value(py, ffi_schema, SCHEMA_CAPSULE)?;
    let array = PyCapsule::new_with_value(py, ffi_array, ARRAY_CAPSULE)?;
    py.import("pyarrow")?
        .getattr("Array")?
        .call_method1("_import_from_c_capsule", (schema, array))
}

/// A pyarrow array (or anything `pyarrow.array` takes) as an Arrow array.
fn from_pyarrow(value: &Bound<'_, PyAny>) -> PyResult<ArrayRef> {
    let value = if value.hasattr("__arrow_c_array__")? {
        value.clone()
    } else {
        value
            .py()
            .import("pyarrow")?
            .call_method1("array", (value,))?
    };
    let capsules = value.call_method0("__arrow_c_array__")?;
    let (schema, array): (Bound<'_, PyAny>, Bound<'_, PyAny>) = capsules.extract()?;
    let schema = schema
        .cast::<PyCapsule>()
        .map_err(|_| EmberError::new_err("__arrow_c_array__ did not return capsules"))?;
    let array = array
        .cast::<PyCapsule>()
        .map_err(|_| EmberError::new_err("__arrow_c_array__ did not return capsules"))?;
    let array = array.pointer_checked(Some(ARRAY_CAPSULE))?.as_ptr() as *mut FFI_ArrowArray;
    let schema = schema.pointer_checked(Some(SCHEMA_CAPSULE))?.as_ptr() as *const FFI_ArrowSchema;
    // SAFETY: the capsules are `arrow_schema` and `arrow_array` capsules
    // (checked by name); the array is moved out (its capsule keeps a
    // released one), the schema only borrowed while its capsule lives.
    let data = unsafe {
        let ffi_array = FFI_ArrowArray::from_raw(array);
        from_ffi(ffi_array, &*schema)
    }
    .map_err(|e| EmberError::new_err(format!("cannot read the function's result: {e}")))?;
    Ok(make_array(data))
}

/// Calls `function` with a batch's columns; its result as an array of
/// `return_type` with one value per row.
fn call_python(
    function: &Py<PyAny>,
    name: &str,
    return_type: &DataType,
    args: &[ColumnarValue],
) -> datafusion::error::Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let rows = arrays.first().map(|a| a.len());
    let failed =
        |e: PyErr| DataFusionError::Execution(format!("Python function {name} failed: {e}"));
    let result = Python::attach(|py| -> PyResult<ArrayRef> {
        let inputs = arrays
            .iter()
            .map(|a| to_pyarrow(py, a))
            .collect::<PyResult<Vec<_>>>()?;
        let output = function.bind(py).call1(PyTuple::new(py, inputs)?)?;
        from_pyarrow(&output)
    })
    .map_err(failed)?;
    if result.data_type() != return_type {
        return Err(DataFusionError::Execution(format!(
            "Python function {name} returned {} values where it was declared to return {return_type}",
            result.data_type()
        )));
    }
    if let Some(rows) = rows
        && result.len() != rows
    {
        return Err(DataFusionError::Execution(format!(
            "Python function {name} returned {} values for {rows} rows",
            result.len()
        )));
    }
    Ok(ColumnarValue::Array(result))
}

/// The scalar function `name` that calls `function`.
pub(crate) fn python_udf(
    name: &str,
    function: Py<PyAny>,
    input_types: Vec<DataType>,
    return_type: DataType,
) -> PyUserFunction {
    let function = Arc::new(function);
    let label = name.to_string();
    let returns = return_type.clone();
    let udf = create_udf(
        name,
        input_types,
        return_type,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| call_python(&function, &label, &returns, args)),
    );
    PyUserFunction { udf }
}

impl PyUserFunction {
    /// The DataFusion function.
    pub(crate) fn udf(&self) -> &ScalarUDF {
        &self.udf
    }
}
