//! Rows as `serde` values: what `parallelize_rows` takes (through Arrow's
//! JSON decoder) and `collect_as` returns (through JSON values built from
//! the arrays, so floats stay exact).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::infer_json_schema_from_iterator;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use crate::error::{ClientError, Result};

fn rows_error(what: &str, err: impl std::fmt::Display) -> ClientError {
    ClientError::Process(format!("{what}: {err}"))
}

/// One record batch of `rows`, its schema inferred from them.
pub fn rows_to_batch<T: Serialize>(rows: &[T]) -> Result<RecordBatch> {
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| rows_error("parallelize: a row does not serialize", e))?;
    if values.is_empty() {
        return Err(ClientError::Process(
            "parallelize: no rows (an empty dataset needs a schema)".to_string(),
        ));
    }
    let schema = infer_json_schema_from_iterator(values.iter().map(Ok))
        .map_err(|e| rows_error("parallelize: rows without one schema", e))?;
    let mut decoder = ReaderBuilder::new(Arc::new(schema))
        .with_batch_size(values.len())
        .build_decoder()
        .map_err(|e| rows_error("parallelize", e))?;
    decoder
        .serialize(&values)
        .map_err(|e| rows_error("parallelize: a row does not fit the schema", e))?;
    decoder
        .flush()
        .map_err(|e| rows_error("parallelize", e))?
        .ok_or_else(|| ClientError::Process("parallelize: no rows".to_string()))
}

/// The rows of `batches` as `T`s, fields matched by column name. Integers,
/// floats (exactly), strings and booleans keep their JSON kinds; every
/// other type arrives as its display string.
pub fn batches_to_rows<T: DeserializeOwned>(batches: &[RecordBatch]) -> Result<Vec<T>> {
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let columns: Vec<Vec<Value>> = batch
            .columns()
            .iter()
            .map(column_values)
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            let object: Map<String, Value> = schema
                .fields()
                .iter()
                .zip(&columns)
                .map(|(field, values)| (field.name().clone(), values[row].clone()))
                .collect();
            rows.push(
                serde_json::from_value(Value::Object(object))
                    .map_err(|e| rows_error("collect_as: a row does not fit", e))?,
            );
        }
    }
    Ok(rows)
}

/// A column's values as JSON values.
fn column_values(column: &ArrayRef) -> Result<Vec<Value>> {
    let as_values = |values: Vec<Option<Value>>| -> Vec<Value> {
        values
            .into_iter()
            .map(|v| v.unwrap_or(Value::Null))
            .collect()
    };
    let integers = |column: &ArrayRef| -> Result<Vec<Value>> {
        let wide = cast(column, &DataType::Int64).map_err(|e| rows_error("collect_as", e))?;
        Ok(as_values(
            wide.as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(Value::from))
                .collect(),
        ))
    };
    Ok(match column.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => integers(column)?,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => integers(column)?,
        DataType::UInt64 => as_values(
            column
                .as_primitive::<UInt64Type>()
                .iter()
                .map(|v| v.map(Value::from))
                .collect(),
        ),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let wide = cast(column, &DataType::Float64).map_err(|e| rows_error("collect_as", e))?;
            as_values(
                wide.as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)))
                    .collect(),
            )
        }
        DataType::Boolean => as_values(
            column
                .as_boolean()
                .iter()
                .map(|v| v.map(Value::Bool))
                .collect(),
        ),
        DataType::Null => vec![Value::Null; column.len()],
        _ => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(|e| rows_error("collect_as", e))?;
            (0..column.len())
                .map(|i| {
                    if column.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(formatter.value(i).to_string())
                    }
                })
                .collect()
        }
    })
}
