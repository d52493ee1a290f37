//! Ember's errors as Python exceptions: one class, `ember.EmberError`,
//! carrying Ember's one-line message.

use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::PyException;

create_exception!(
    ember,
    EmberError,
    PyException,
    "An error from Ember: its message is one line that names the culprit."
);

/// A client error as an `EmberError`.
pub(crate) fn to_py(error: ember::ClientError) -> PyErr {
    EmberError::new_err(error.to_string())
}

/// A DataFusion error as an `EmberError`.
pub(crate) fn from_datafusion(error: datafusion::error::DataFusionError) -> PyErr {
    to_py(ember::ClientError::from_datafusion(error))
}
