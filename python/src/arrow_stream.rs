//! Arrow's C stream interface through PyCapsules (the Arrow PyCapsule
//! protocol): results leave as a capsule named `arrow_array_stream` that
//! pyarrow, pandas, Polars and DuckDB import without copying, and driver
//! data enters from any object with `__arrow_c_stream__`.

use std::ffi::CStr;

use arrow::datatypes::SchemaRef;
use arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use arrow::record_batch::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::error::EmberError;

/// The capsule name the protocol fixes for a stream.
const STREAM_CAPSULE: &CStr = c"arrow_array_stream";

/// `batches` (of `schema`) as an `arrow_array_stream` capsule.
pub(crate) fn export_stream(
    py: Python<'_>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> PyResult<Bound<'_, PyCapsule>> {
    let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
    let stream = FFI_ArrowArrayStream::new(Box::new(reader));
    PyCapsule::new_with_value(py, stream, STREAM_CAPSULE)
}

/// The batches of `source`, any object with `__arrow_c_stream__` (a
/// pyarrow `Table` or `RecordBatchReader`, a Polars `DataFrame`, …), and
/// their schema.
pub(crate) fn import_stream(source: &Bound<'_, PyAny>) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
    if !source.hasattr("__arrow_c_stream__")? {
        let kind = source.get_type().name()?;
        return Err(EmberError::new_err(format!(
            "a {kind} cannot be read as Arrow data: pass a pyarrow Table or RecordBatchReader, \
             a pandas or Polars DataFrame, or any object with __arrow_c_stream__"
        )));
    }
    let capsule = source.call_method0("__arrow_c_stream__")?;
    let capsule = capsule
        .cast::<PyCapsule>()
        .map_err(|_| EmberError::new_err("__arrow_c_stream__ did not return a PyCapsule"))?;
    let pointer = capsule
        .pointer_checked(Some(STREAM_CAPSULE))
        .map_err(|_| {
            EmberError::new_err(
                "__arrow_c_stream__ returned a capsule not named arrow_array_stream",
            )
        })?
        .as_ptr() as *mut FFI_ArrowArrayStream;
    // SAFETY: the capsule is an `arrow_array_stream` capsule, whose pointer
    // is a valid FFI_ArrowArrayStream by the protocol; `from_raw` moves the
    // stream out and leaves a released one behind, which the capsule's
    // destructor then ignores.
    let stream = unsafe { FFI_ArrowArrayStream::from_raw(pointer) };
    let reader = ArrowArrayStreamReader::try_new(stream)
        .map_err(|e| EmberError::new_err(format!("cannot read the Arrow stream: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EmberError::new_err(format!("cannot read the Arrow stream: {e}")))?;
    Ok((schema, batches))
}
