//! Rust types that named functions take and return, and how each maps to
//! Arrow arrays and scalars.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::scalar::ScalarValue;

/// A value a named function takes or returns: `i64`, `f64`, `bool` or
/// `String` (SQL BIGINT, DOUBLE, BOOLEAN and VARCHAR; other types are cast
/// to these on the way in).
pub trait SqlValue: Clone + Send + Sync + 'static {
    /// The Arrow type of the values.
    fn data_type() -> DataType;
    /// Row `row` of `array` (of [`SqlValue::data_type`]); `None` for NULL.
    fn from_array(array: &ArrayRef, row: usize) -> Option<Self>;
    /// An array of `values`.
    fn into_array(values: Vec<Option<Self>>) -> ArrayRef;
    /// A scalar of `value`.
    fn to_scalar(value: Option<Self>) -> ScalarValue;
}

impl SqlValue for i64 {
    fn data_type() -> DataType {
        DataType::Int64
    }
    fn from_array(array: &ArrayRef, row: usize) -> Option<Self> {
        let array = array.as_primitive::<Int64Type>();
        array.is_valid(row).then(|| array.value(row))
    }
    fn into_array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(Int64Array::from(values))
    }
    fn to_scalar(value: Option<Self>) -> ScalarValue {
        ScalarValue::Int64(value)
    }
}

impl SqlValue for f64 {
    fn data_type() -> DataType {
        DataType::Float64
    }
    fn from_array(array: &ArrayRef, row: usize) -> Option<Self> {
        let array = array.as_primitive::<Float64Type>();
        array.is_valid(row).then(|| array.value(row))
    }
    fn into_array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(Float64Array::from(values))
    }
    fn to_scalar(value: Option<Self>) -> ScalarValue {
        ScalarValue::Float64(value)
    }
}

impl SqlValue for bool {
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn from_array(array: &ArrayRef, row: usize) -> Option<Self> {
        let array = array.as_boolean();
        array.is_valid(row).then(|| array.value(row))
    }
    fn into_array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(BooleanArray::from(values))
    }
    fn to_scalar(value: Option<Self>) -> ScalarValue {
        ScalarValue::Boolean(value)
    }
}

impl SqlValue for String {
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn from_array(array: &ArrayRef, row: usize) -> Option<Self> {
        let array = array.as_string::<i32>();
        array.is_valid(row).then(|| array.value(row).to_string())
    }
    fn into_array(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(StringArray::from(values))
    }
    fn to_scalar(value: Option<Self>) -> ScalarValue {
        ScalarValue::Utf8(value)
    }
}
