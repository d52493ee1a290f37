//! Columns in the GPU path's layout: one contiguous 64-bit buffer per
//! column plus an optional validity bitmap, on the host ([`HostBatch`],
//! coalesced from any number of Arrow batches) and on the device
//! ([`DeviceBatch`]).
//!
//! String columns (Utf8, LargeUtf8, Utf8View and dictionaries of them) are
//! dictionary-coded on the host: the device sees integer codes, usable as
//! GROUP BY keys, and the strings stay on the host for the results.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
};
use cudarc::driver::CudaSlice;

use crate::device::GpuDevice;
use crate::error::GpuError;
use crate::expr::{GpuType, Value};

/// A column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Integers, dates (days since the epoch) and unscaled decimals.
    Int(Vec<i64>),
    /// Floating point.
    Float(Vec<f64>),
}

/// One column on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostColumn {
    /// The values' type.
    pub data_type: GpuType,
    /// The values (a NULL slot holds 0).
    pub values: ColumnValues,
    /// Bit `i` (LSB first, 32 per word) is set when row `i` is valid;
    /// `None` when every row is.
    pub validity: Option<Vec<u32>>,
    /// For a dictionary-coded string column, the strings the codes
    /// (`Int` values `0..len`) stand for.
    pub dictionary: Option<Arc<StringArray>>,
}

impl HostColumn {
    /// An integer, date or decimal column without a dictionary.
    pub fn ints(data_type: GpuType, values: Vec<i64>, validity: Option<Vec<u32>>) -> Self {
        Self {
            data_type,
            values: ColumnValues::Int(values),
            validity,
            dictionary: None,
        }
    }

    /// The smallest and largest valid value of an `Int` column (`None` for
    /// floats, or when no value is valid).
    pub fn int_range(&self) -> Option<(i64, i64)> {
        let ColumnValues::Int(values) = &self.values else {
            return None;
        };
        let mut range: Option<(i64, i64)> = None;
        match &self.validity {
            None => {
                for &v in values {
                    range = Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
                }
            }
            Some(_) => {
                for (row, &v) in values.iter().enumerate() {
                    if self.is_valid(row) {
                        range = Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
                    }
                }
            }
        }
        range
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match &self.values {
            ColumnValues::Int(v) => v.len(),
            ColumnValues::Float(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether row `row` is valid.
    pub fn is_valid(&self, row: usize) -> bool {
        self.validity
            .as_ref()
            .is_none_or(|bits| bits[row / 32] >> (row % 32) & 1 == 1)
    }

    pub(crate) fn value(&self, row: usize) -> Option<Value> {
        if !self.is_valid(row) {
            return None;
        }
        Some(match &self.values {
            ColumnValues::Int(v) => Value::Int(v[row] as i128),
            ColumnValues::Float(v) => Value::Float(v[row]),
        })
    }

    /// Coalesces Arrow arrays of one type (any offsets, any nulls) into one
    /// column. Supported: Int32, Int64, Date32, Decimal128 whose values fit
    /// in 64 bits, Float32 and Float64.
    pub fn from_arrays(arrays: &[ArrayRef]) -> Result<HostColumn, GpuError> {
        let Some(first) = arrays.first() else {
            return Err(GpuError::Unsupported("a column of no arrays".to_string()));
        };
        let data_type = first.data_type().clone();
        if is_string(&data_type) {
            return Self::dictionary_coded(arrays);
        }
        let rows: usize = arrays.iter().map(|a| a.len()).sum();
        let any_nulls = arrays.iter().any(|a| a.null_count() > 0);
        let mut validity = any_nulls.then(|| vec![0u32; rows.div_ceil(32)]);
        let gpu_type = GpuType::from_arrow(&data_type)
            .ok_or_else(|| GpuError::Unsupported(format!("columns of type {data_type}")))?;
        let mut ints = Vec::new();
        let mut floats = Vec::new();
        let mut row = 0usize;
        for array in arrays {
            if array.data_type() != &data_type {
                return Err(GpuError::Unsupported(format!(
                    "a column mixing {data_type} and {}",
                    array.data_type()
                )));
            }
            if let Some(bits) = validity.as_mut() {
                for i in 0..array.len() {
                    if array.is_valid(i) {
                        let r = row + i;
                        bits[r / 32] |= 1 << (r % 32);
                    }
                }
            }
            match &data_type {
                DataType::Int32 => ints.extend(
                    array
                        .as_primitive::<Int32Type>()
                        .values()
                        .iter()
                        .map(|&v| v as i64),
                ),
                DataType::Int64 => {
                    ints.extend_from_slice(array.as_primitive::<Int64Type>().values())
                }
                DataType::Date32 => ints.extend(
                    array
                        .as_primitive::<Date32Type>()
                        .values()
                        .iter()
                        .map(|&v| v as i64),
                ),
                DataType::Decimal128(..) => {
                    let decimals = array.as_primitive::<Decimal128Type>();
                    for (i, &v) in decimals.values().iter().enumerate() {
                        let v = if decimals.is_valid(i) { v } else { 0 };
                        ints.push(i64::try_from(v).map_err(|_| {
                            GpuError::Unsupported(format!(
                                "decimal value {v} does not fit in 64 bits"
                            ))
                        })?);
                    }
                }
                DataType::Float32 => floats.extend(
                    array
                        .as_primitive::<Float32Type>()
                        .values()
                        .iter()
                        .map(|&v| v as f64),
                ),
                DataType::Float64 => {
                    floats.extend_from_slice(array.as_primitive::<Float64Type>().values())
                }
                _ => unreachable!("checked above"),
            }
            row += array.len();
        }
        let values = match gpu_type {
            GpuType::Float => ColumnValues::Float(floats),
            _ => ColumnValues::Int(ints),
        };
        Ok(HostColumn {
            data_type: gpu_type,
            values,
            validity,
            dictionary: None,
        })
    }

    /// Codes string arrays (all of one string type) against a dictionary
    /// of their distinct values, in first-seen order.
    fn dictionary_coded(arrays: &[ArrayRef]) -> Result<HostColumn, GpuError> {
        let rows: usize = arrays.iter().map(|a| a.len()).sum();
        let mut codes = Vec::with_capacity(rows);
        let mut validity: Option<Vec<u32>> = None;
        let mut strings: Vec<String> = Vec::new();
        let mut index: HashMap<String, i64> = HashMap::new();
        let mut code_of = |s: &str| -> i64 {
            if let Some(&code) = index.get(s) {
                return code;
            }
            let code = strings.len() as i64;
            strings.push(s.to_string());
            index.insert(s.to_string(), code);
            code
        };
        for array in arrays {
            let array = arrow::compute::cast(array, &DataType::Utf8)
                .map_err(|e| GpuError::Unsupported(format!("a string column: {e}")))?;
            let array = array.as_string::<i32>();
            for i in 0..array.len() {
                if array.is_valid(i) {
                    codes.push(code_of(array.value(i)));
                } else {
                    let row = codes.len();
                    let bits = validity.get_or_insert_with(|| {
                        let mut bits = vec![u32::MAX; rows.div_ceil(32)];
                        if !rows.is_multiple_of(32)
                            && let Some(last) = bits.last_mut()
                        {
                            *last = (1u32 << (rows % 32)) - 1;
                        }
                        bits
                    });
                    bits[row / 32] &= !(1 << (row % 32));
                    codes.push(0);
                }
            }
        }
        Ok(HostColumn {
            data_type: GpuType::Int { scale: 0 },
            values: ColumnValues::Int(codes),
            validity,
            dictionary: Some(Arc::new(StringArray::from(strings))),
        })
    }
}

/// Whether columns of `data_type` are dictionary-coded strings on the GPU.
pub fn is_string(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_string(values),
        _ => false,
    }
}

/// Columns of equal length, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// The columns.
    pub columns: Vec<HostColumn>,
    /// Number of rows.
    pub rows: usize,
}

impl HostBatch {
    /// A batch of `columns`, which must have equal lengths.
    pub fn new(columns: Vec<HostColumn>) -> Result<HostBatch, GpuError> {
        let rows = columns.first().map_or(0, HostColumn::len);
        if columns.iter().any(|c| c.len() != rows) {
            return Err(GpuError::Unsupported(
                "columns of different lengths".to_string(),
            ));
        }
        Ok(HostBatch { columns, rows })
    }

    /// Coalesces Arrow batches: `batches[b][c]` is column `c` of batch `b`.
    pub fn from_arrow(batches: &[Vec<ArrayRef>]) -> Result<HostBatch, GpuError> {
        let width = batches.first().map_or(0, Vec::len);
        let columns = (0..width)
            .map(|c| {
                let arrays: Vec<ArrayRef> = batches.iter().map(|b| b[c].clone()).collect();
                HostColumn::from_arrays(&arrays)
            })
            .collect::<Result<Vec<_>, _>>()?;
        HostBatch::new(columns)
    }

    /// The columns' types.
    pub fn types(&self) -> Vec<GpuType> {
        self.columns.iter().map(|c| c.data_type).collect()
    }

    /// Bytes the batch takes on the device.
    pub fn device_bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|c| c.len() * 8 + c.validity.as_ref().map_or(0, |v| v.len() * 4))
            .sum()
    }

    /// Copies the batch to `device` (checking its free memory first).
    pub fn upload(&self, device: &GpuDevice) -> Result<DeviceBatch, GpuError> {
        device.reserve(self.device_bytes())?;
        let stream = device.stream();
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let values = match &c.values {
                    ColumnValues::Int(v) => DeviceValues::Int(stream.clone_htod(v)?),
                    ColumnValues::Float(v) => DeviceValues::Float(stream.clone_htod(v)?),
                };
                let validity = match &c.validity {
                    Some(bits) => Some(stream.clone_htod(bits)?),
                    None => None,
                };
                Ok(Arc::new(DeviceColumn {
                    data_type: c.data_type,
                    values,
                    validity,
                    rows: c.len(),
                    range: c.int_range(),
                    dictionary: c.dictionary.clone(),
                }))
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        Ok(DeviceBatch {
            columns,
            rows: self.rows,
        })
    }
}

/// A column's values on the device.
pub enum DeviceValues {
    /// 64-bit integers.
    Int(CudaSlice<i64>),
    /// 64-bit floats.
    Float(CudaSlice<f64>),
}

/// One column on the device.
pub struct DeviceColumn {
    /// The values' type.
    pub data_type: GpuType,
    /// The values.
    pub values: DeviceValues,
    /// The validity bitmap, if any row is NULL.
    pub validity: Option<CudaSlice<u32>>,
    /// Number of rows.
    pub rows: usize,
    /// The smallest and largest valid value of an `Int` column.
    pub range: Option<(i64, i64)>,
    /// For a dictionary-coded string column, what its codes stand for.
    pub dictionary: Option<Arc<StringArray>>,
}

impl DeviceColumn {
    /// Bytes this column takes on the device.
    pub fn device_bytes(&self) -> usize {
        self.rows * 8 + self.validity.as_ref().map_or(0, |v| v.len() * 4)
    }
}

/// Columns resident in device memory. Columns are shared, so a cached
/// table's columns serve any query reading a subset of them.
pub struct DeviceBatch {
    /// The columns.
    pub columns: Vec<Arc<DeviceColumn>>,
    /// Number of rows.
    pub rows: usize,
}

impl DeviceBatch {
    /// A batch of `columns`, which must have equal lengths.
    pub fn new(columns: Vec<Arc<DeviceColumn>>) -> Result<DeviceBatch, GpuError> {
        let rows = columns.first().map_or(0, |c| c.rows);
        if columns.iter().any(|c| c.rows != rows) {
            return Err(GpuError::Unsupported(
                "device columns of different lengths".to_string(),
            ));
        }
        Ok(DeviceBatch { columns, rows })
    }

    /// The columns' types.
    pub fn types(&self) -> Vec<GpuType> {
        self.columns.iter().map(|c| c.data_type).collect()
    }
}
