//! A kernel's results as the partial aggregate state batches the replaced
//! `AggregateExec` would have emitted: group columns (for GROUP BY), then
//! the state columns, in the plan's own types.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::scalar::ScalarValue;
use ember_gpu::{AggregateValue, Group};

use super::placement::StateSource;

/// One row of state from an ungrouped kernel's values.
pub(crate) fn ungrouped_batch(
    schema: &SchemaRef,
    states: &[StateSource],
    values: &[AggregateValue],
) -> Result<RecordBatch> {
    check_width(schema, 0, states)?;
    let columns = schema
        .fields()
        .iter()
        .zip(states)
        .map(|(field, source)| {
            let value = match source {
                StateSource::Value(i) => values.get(*i).copied(),
                StateSource::Count(_) => None,
            }
            .ok_or_else(|| internal(format!("no value for state {source:?}")))?;
            scalar(field.data_type(), &value)?.to_array()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// One row per group: the keys (strings through `dictionaries`, one per
/// key, `None` for integer keys), then the state columns.
pub(crate) fn grouped_batch(
    schema: &SchemaRef,
    states: &[StateSource],
    dictionaries: &[Option<Arc<StringArray>>],
    groups: &[Group],
) -> Result<RecordBatch> {
    let keys = dictionaries.len();
    check_width(schema, keys, states)?;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (k, dictionary) in dictionaries.iter().enumerate() {
        let values = groups.iter().map(|g| g.keys[k]);
        let target = schema.field(k).data_type();
        let array: ArrayRef = match dictionary {
            Some(strings) => {
                let codes = values.map(|v| v.map(|code| strings.value(code as usize)));
                Arc::new(StringArray::from_iter(codes))
            }
            None => match target {
                DataType::Int32 | DataType::Date32 => {
                    let narrow = values
                        .map(|v| v.map(i32::try_from).transpose())
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| internal(format!("GROUP BY key {k}: {e}")))?;
                    let array = datafusion::arrow::array::Int32Array::from(narrow);
                    Arc::new(array)
                }
                _ => Arc::new(Int64Array::from_iter(values)),
            },
        };
        // Int32 to Date32 keeps the days; strings take the plan's string type.
        columns.push(cast(&array, target)?);
    }
    for (i, source) in states.iter().enumerate() {
        let data_type = schema.field(keys + i).data_type();
        let scalars = groups
            .iter()
            .map(|g| {
                let value = match source {
                    StateSource::Value(a) => g.states.get(*a).map(|s| s.value),
                    StateSource::Count(a) => {
                        g.states.get(*a).map(|s| AggregateValue::Count(s.count))
                    }
                }
                .ok_or_else(|| internal(format!("no value for state {source:?}")))?;
                scalar(data_type, &value)
            })
            .collect::<Result<Vec<_>>>()?;
        columns.push(if scalars.is_empty() {
            datafusion::arrow::array::new_empty_array(data_type)
        } else {
            ScalarValue::iter_to_array(scalars)?
        });
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

fn check_width(schema: &SchemaRef, keys: usize, states: &[StateSource]) -> Result<()> {
    if schema.fields().len() != keys + states.len() {
        return Err(internal(format!(
            "GPU aggregate produced {} columns for a state of {}",
            keys + states.len(),
            schema.fields().len()
        )));
    }
    Ok(())
}

fn internal(message: String) -> DataFusionError {
    DataFusionError::Internal(message)
}

/// `value` as a scalar of `data_type`, rescaling decimals. A value the
/// type cannot hold is an error (the caller then uses the CPU).
pub(crate) fn scalar(data_type: &DataType, value: &AggregateValue) -> Result<ScalarValue> {
    let mismatch = || internal(format!("GPU aggregate value {value:?} as {data_type}"));
    Ok(match (data_type, value) {
        (_, AggregateValue::Null) => ScalarValue::try_from(data_type)?,
        (DataType::Int64, AggregateValue::Count(n)) => ScalarValue::Int64(Some(*n as i64)),
        (DataType::UInt64, AggregateValue::Count(n)) => ScalarValue::UInt64(Some(*n)),
        (DataType::Decimal128(p, s), AggregateValue::Int { value, scale }) => {
            let shift = (*s as i32) - (*scale as i32);
            let value = if shift >= 0 {
                value
                    .checked_mul(10i128.pow(shift as u32))
                    .ok_or_else(mismatch)?
            } else {
                return Err(mismatch());
            };
            ScalarValue::Decimal128(Some(value), *p, *s)
        }
        (DataType::Int64, AggregateValue::Int { value, scale: 0 }) => {
            ScalarValue::Int64(Some(i64::try_from(*value).map_err(|_| mismatch())?))
        }
        (DataType::Int32, AggregateValue::Int { value, scale: 0 }) => {
            ScalarValue::Int32(Some(i32::try_from(*value).map_err(|_| mismatch())?))
        }
        (DataType::Date32, AggregateValue::Int { value, scale: 0 }) => {
            ScalarValue::Date32(Some(i32::try_from(*value).map_err(|_| mismatch())?))
        }
        // A float state of an integer input (the plan casts it to Float64,
        // which the kernel computes exactly): converted once, at the end.
        (DataType::Float64, AggregateValue::Int { value, scale }) => {
            ScalarValue::Float64(Some(*value as f64 / 10f64.powi(*scale as i32)))
        }
        (DataType::Float64, AggregateValue::Float(v)) => ScalarValue::Float64(Some(*v)),
        // MIN/MAX of a Float32 column: its values widened exactly to f64.
        (DataType::Float32, AggregateValue::Float(v)) => ScalarValue::Float32(Some(*v as f32)),
        _ => return Err(mismatch()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_values_take_the_plan_types_or_are_refused() {
        let float = AggregateValue::Float(1.5);
        assert_eq!(
            scalar(&DataType::Float32, &float).unwrap(),
            ScalarValue::Float32(Some(1.5))
        );
        let decimal = AggregateValue::Int {
            value: 175,
            scale: 2,
        };
        assert_eq!(
            scalar(&DataType::Decimal128(38, 4), &decimal).unwrap(),
            ScalarValue::Decimal128(Some(17500), 38, 4)
        );
        assert_eq!(
            scalar(&DataType::Float64, &decimal).unwrap(),
            ScalarValue::Float64(Some(1.75))
        );
        // A state type of fewer digits than the value would lose them.
        assert!(scalar(&DataType::Decimal128(38, 1), &decimal).is_err());
        assert!(scalar(&DataType::Utf8, &decimal).is_err());
    }
}
