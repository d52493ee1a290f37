//! The columnar layout batches cross the module boundary in (the host's
//! half; `ember-udf` holds the module's half, and `wasm/README.md`
//! describes it):
//!
//! ```text
//! batch  := rows:u32 columns:u32 column*
//! column := name_len:u32 name tag:u8 nullable:u8 [validity: rows bytes] payload
//! payload:= rows × width bytes (little-endian)      for fixed-width tags
//!         | offsets: (rows + 1) × u32, bytes          for strings
//! ```
//!
//! A `flat` function's result is a batch of one column (each row's value
//! count, -1 for NULL) followed by `rows:u32` and the column of values.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int32Array, Int64Array, StringArray,
};
use datafusion::arrow::buffer::{Buffer, NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{ArrowNativeType, ToByteSlice};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
};

/// The type of values in one column of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// `bool`, one byte.
    Bool,
    /// `i32`.
    Int32,
    /// `i64`.
    Int64,
    /// `f32`.
    Float32,
    /// `f64`.
    Float64,
    /// UTF-8 text (`String`).
    Utf8,
    /// Days since 1970-01-01 (`Date`).
    Date,
    /// A 128-bit decimal of this precision and scale.
    Decimal(u8, i8),
}

impl WireType {
    /// Its tag in the layout.
    pub fn tag(self) -> u8 {
        match self {
            WireType::Bool => 1,
            WireType::Int32 => 2,
            WireType::Int64 => 3,
            WireType::Float32 => 4,
            WireType::Float64 => 5,
            WireType::Utf8 => 6,
            WireType::Date => 7,
            WireType::Decimal(..) => 8,
        }
    }

    /// The type a manifest names: `bool`, `i32`, `i64`, `f32`, `f64`,
    /// `str`, `date` or `decimal(P,S)`.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        Some(match name {
            "bool" => WireType::Bool,
            "i32" => WireType::Int32,
            "i64" => WireType::Int64,
            "f32" => WireType::Float32,
            "f64" => WireType::Float64,
            "str" => WireType::Utf8,
            "date" => WireType::Date,
            _ => {
                let inner = name.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, s) = inner.split_once(',')?;
                let (p, s) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
                if p == 0 || p > 38 || s > p as i8 {
                    return None;
                }
                WireType::Decimal(p, s)
            }
        })
    }

    /// The Arrow type of its values.
    pub fn data_type(self) -> DataType {
        match self {
            WireType::Bool => DataType::Boolean,
            WireType::Int32 => DataType::Int32,
            WireType::Int64 => DataType::Int64,
            WireType::Float32 => DataType::Float32,
            WireType::Float64 => DataType::Float64,
            WireType::Utf8 => DataType::Utf8,
            WireType::Date => DataType::Date32,
            WireType::Decimal(p, s) => DataType::Decimal128(p, s),
        }
    }

    /// The wire type an Arrow column of `data_type` crosses as, if any
    /// (narrower integers as `i32`, text of every kind as `str`).
    pub fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Boolean => WireType::Bool,
            DataType::Int8 | DataType::Int16 | DataType::Int32 => WireType::Int32,
            DataType::UInt8 | DataType::UInt16 => WireType::Int32,
            DataType::UInt32 | DataType::Int64 => WireType::Int64,
            DataType::Float32 => WireType::Float32,
            DataType::Float64 => WireType::Float64,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => WireType::Utf8,
            DataType::Date32 => WireType::Date,
            DataType::Decimal128(p, s) => WireType::Decimal(*p, *s),
            _ => return None,
        })
    }
}

/// Writes batches in the layout.
#[derive(Debug, Default)]
pub struct BatchWriter {
    out: Vec<u8>,
}

impl BatchWriter {
    /// A batch of `rows` rows and `columns` columns, to which the columns
    /// are then added in order.
    pub fn new(rows: usize, columns: usize) -> Self {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&(rows as u32).to_le_bytes());
        out.extend_from_slice(&(columns as u32).to_le_bytes());
        Self { out }
    }

    /// Adds `array` (already of `wire`'s Arrow type, see [`conform`]) as
    /// column `name`.
    pub fn column(&mut self, name: &str, wire: WireType, array: &dyn Array) {
        let out = &mut self.out;
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(wire.tag());
        match array.logical_nulls() {
            Some(nulls) if nulls.null_count() > 0 => {
                out.push(1);
                out.extend(nulls.iter().map(u8::from));
            }
            _ => out.push(0),
        }
        match wire {
            WireType::Bool => {
                let values = array.as_boolean();
                out.extend((0..values.len()).map(|i| u8::from(values.value(i))));
            }
            WireType::Int32 => extend_le(out, array.as_primitive::<Int32Type>().values()),
            WireType::Int64 => extend_le(out, array.as_primitive::<Int64Type>().values()),
            WireType::Float32 => extend_le(out, array.as_primitive::<Float32Type>().values()),
            WireType::Float64 => extend_le(out, array.as_primitive::<Float64Type>().values()),
            WireType::Date => extend_le(out, array.as_primitive::<Date32Type>().values()),
            WireType::Decimal(..) => {
                extend_le(out, array.as_primitive::<Decimal128Type>().values())
            }
            WireType::Utf8 => {
                let text = array.as_string::<i32>();
                let offsets = text.value_offsets();
                let first = offsets[0];
                if first == 0 && cfg!(target_endian = "little") {
                    out.extend_from_slice(offsets.to_byte_slice());
                } else {
                    for offset in offsets {
                        out.extend_from_slice(&((offset - first) as u32).to_le_bytes());
                    }
                }
                let end = offsets[offsets.len() - 1] as usize;
                out.extend_from_slice(&text.values()[first as usize..end]);
            }
        }
    }

    /// Appends a bare row count (before a `flat` result's second column).
    pub fn count(&mut self, rows: usize) {
        self.out.extend_from_slice(&(rows as u32).to_le_bytes());
    }

    /// The encoded batch.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

trait LittleEndian: Copy {
    const WIDTH: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! little_endian {
    ($($t:ty),*) => {$(
        impl LittleEndian for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                let mut word = [0u8; std::mem::size_of::<$t>()];
                word.copy_from_slice(bytes);
                <$t>::from_le_bytes(word)
            }
        }
    )*};
}

little_endian!(i32, i64, f32, f64, i128, u32);

fn extend_le<T: LittleEndian + ArrowNativeType>(out: &mut Vec<u8>, values: &[T]) {
    if cfg!(target_endian = "little") {
        // The layout is little-endian: the values' memory is the layout.
        out.extend_from_slice(values.to_byte_slice());
    } else {
        out.reserve(values.len() * T::WIDTH);
        for value in values {
            value.put(out);
        }
    }
}

/// `array` cast to the Arrow type of `wire` (text of every kind to
/// `Utf8`, narrow integers to `Int32`, …).
pub fn conform(array: &ArrayRef, wire: WireType) -> datafusion::error::Result<ArrayRef> {
    let target = wire.data_type();
    if array.data_type() == &target {
        Ok(Arc::clone(array))
    } else {
        Ok(cast(array, &target)?)
    }
}

/// One column read back from a module.
#[derive(Debug)]
pub struct ReadColumn {
    /// Its name.
    pub name: String,
    /// Its values.
    pub array: ArrayRef,
}

/// Reads batches in the layout, checking every length against the bytes.
pub struct BatchReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> BatchReader<'a> {
    /// A reader of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| "the batch is shorter than its header says".to_string())?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// Reads a `u32`.
    pub fn count(&mut self) -> Result<usize, String> {
        Ok(u32::get(self.take(4)?) as usize)
    }

    /// Reads one column of `rows` rows, which must be of type `expected`
    /// (whose precision and scale a decimal takes).
    pub fn column(&mut self, rows: usize, expected: WireType) -> Result<ReadColumn, String> {
        let name_len = self.count()?;
        let name = String::from_utf8(self.take(name_len)?.to_vec())
            .map_err(|_| "a column name is not UTF-8".to_string())?;
        let tag = self.take(1)?[0];
        if tag != expected.tag() {
            return Err(format!(
                "column `{name}` has type tag {tag}, not the declared {expected:?}"
            ));
        }
        let nullable = self.take(1)?[0] != 0;
        let nulls = if nullable {
            let validity = self.take(rows)?;
            Some(NullBuffer::from_iter(validity.iter().map(|&v| v != 0)))
        } else {
            None
        };
        let array: ArrayRef = match expected {
            WireType::Bool => {
                let values = self.take(rows)?;
                Arc::new(BooleanArray::new(
                    values.iter().map(|&v| v != 0).collect(),
                    nulls,
                ))
            }
            WireType::Int32 => Arc::new(Int32Array::new(self.fixed(rows)?, nulls)),
            WireType::Int64 => Arc::new(Int64Array::new(self.fixed(rows)?, nulls)),
            WireType::Float32 => Arc::new(Float32Array::new(self.fixed(rows)?, nulls)),
            WireType::Float64 => Arc::new(Float64Array::new(self.fixed(rows)?, nulls)),
            WireType::Date => Arc::new(Date32Array::new(self.fixed(rows)?, nulls)),
            WireType::Decimal(p, s) => Arc::new(
                Decimal128Array::new(self.fixed::<i128>(rows)?, nulls)
                    .with_precision_and_scale(p, s)
                    .map_err(|e| e.to_string())?,
            ),
            WireType::Utf8 => {
                // Offsets under 2 GiB read the same as u32 and i32.
                let offsets = self.fixed::<i32>(rows + 1)?;
                let ordered = offsets.first() == Some(&0)
                    && offsets.windows(2).all(|pair| pair[0] <= pair[1]);
                if !ordered {
                    return Err(format!("column `{name}` has text offsets out of order"));
                }
                let len = offsets.last().copied().unwrap_or(0) as usize;
                let data = self.take(len)?;
                let offsets = datafusion::arrow::buffer::OffsetBuffer::new(offsets);
                Arc::new(
                    StringArray::try_new(offsets, data.to_vec().into(), nulls)
                        .map_err(|e| format!("column `{name}` is not valid text: {e}"))?,
                )
            }
        };
        Ok(ReadColumn { name, array })
    }

    fn fixed<T: LittleEndian + ArrowNativeType>(
        &mut self,
        rows: usize,
    ) -> Result<ScalarBuffer<T>, String> {
        let bytes = self.take(rows * T::WIDTH)?;
        if cfg!(target_endian = "little") {
            // One copy into Arrow's aligned memory.
            return Ok(ScalarBuffer::new(Buffer::from_slice_ref(bytes), 0, rows));
        }
        Ok(bytes.chunks_exact(T::WIDTH).map(T::get).collect())
    }

    /// Whether every byte was read.
    pub fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_survive_the_round_trip() {
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(-3)]));
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), Some(""), None]));
        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(1234), Some(-5), None])
                .with_precision_and_scale(15, 2)
                .unwrap(),
        );
        let mut writer = BatchWriter::new(3, 3);
        writer.column("i", WireType::Int64, ints.as_ref());
        writer.column("t", WireType::Utf8, text.slice(0, 3).as_ref());
        writer.column("d", WireType::Decimal(15, 2), decimals.as_ref());
        let bytes = writer.finish();
        let mut reader = BatchReader::new(&bytes);
        assert_eq!(reader.count().unwrap(), 3);
        assert_eq!(reader.count().unwrap(), 3);
        let i = reader.column(3, WireType::Int64).unwrap();
        let t = reader.column(3, WireType::Utf8).unwrap();
        let d = reader.column(3, WireType::Decimal(15, 2)).unwrap();
        assert!(reader.at_end());
        assert_eq!((i.name.as_str(), &i.array), ("i", &ints));
        assert_eq!(&t.array, &text);
        assert_eq!(&d.array, &decimals);
    }

    #[test]
    fn a_sliced_text_column_is_sent_from_its_first_offset() {
        let text = StringArray::from(vec!["skip", "kept", "also"]);
        let sliced: ArrayRef = Arc::new(text.slice(1, 2));
        let mut writer = BatchWriter::new(2, 1);
        writer.column("", WireType::Utf8, sliced.as_ref());
        let bytes = writer.finish();
        let mut reader = BatchReader::new(&bytes);
        reader.count().unwrap();
        reader.count().unwrap();
        let column = reader.column(2, WireType::Utf8).unwrap();
        assert_eq!(&column.array, &sliced);
    }

    #[test]
    fn text_offsets_out_of_order_are_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        for word in [2u32, 1, 0] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(&[WireType::Utf8.tag(), 0]);
        for offset in [0i32, 5, 2] {
            bytes.extend_from_slice(&offset.to_le_bytes());
        }
        bytes.extend_from_slice(b"hello");
        let mut reader = BatchReader::new(&bytes);
        reader.count().unwrap();
        reader.count().unwrap();
        let error = reader.column(2, WireType::Utf8).unwrap_err();
        assert!(error.contains("out of order"), "{error}");
    }

    #[test]
    fn a_truncated_batch_is_an_error_not_a_panic() {
        let mut writer = BatchWriter::new(2, 1);
        writer.column("", WireType::Int64, &Int64Array::from(vec![1, 2]));
        let bytes = writer.finish();
        let mut reader = BatchReader::new(&bytes[..bytes.len() - 3]);
        reader.count().unwrap();
        reader.count().unwrap();
        assert!(reader.column(2, WireType::Int64).is_err());
    }

    #[test]
    fn manifest_types_parse() {
        assert_eq!(
            WireType::parse("decimal(15,2)"),
            Some(WireType::Decimal(15, 2))
        );
        assert_eq!(WireType::parse("str"), Some(WireType::Utf8));
        assert_eq!(WireType::parse("decimal(40,2)"), None);
        assert_eq!(WireType::parse("u128"), None);
    }
}
