//! A compiled module's functions as an Ember [`FunctionLibrary`]: scalar,
//! table-producing (`flat`), reduce and partition functions whose bodies
//! send batches into the module.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ListArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::scalar::ScalarValue;
use ember_core::functions::FunctionLibrary;
use serde::{Deserialize, Serialize};

use crate::error::WasmError;
use crate::manifest::{FunctionDecl, FunctionKind};
use crate::runtime::{CompiledModule, Limits};
use crate::wire::{BatchReader, BatchWriter, WireType, conform};

/// What a plan carries of a WebAssembly library: enough for another
/// process to load the same module under the same limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryDescriptor {
    /// The library's name.
    pub library: String,
    /// The module's SHA-256, in hex.
    pub sha256: String,
    /// The memory limit, in MiB.
    pub memory_mib: u64,
    /// The time limit per batch, in milliseconds.
    pub time_ms: u64,
}

impl LibraryDescriptor {
    /// Its encoding inside plans.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a descriptor [`LibraryDescriptor::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, WasmError> {
        serde_json::from_slice(bytes).map_err(|e| WasmError::NotALibrary {
            module: "(descriptor)".into(),
            reason: format!("its descriptor cannot be read: {e}"),
        })
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_mib: self.memory_mib,
            time_ms: self.time_ms,
        }
    }
}

/// The functions of `module` as a library called `name`.
pub fn function_library(name: &str, module: Arc<CompiledModule>) -> FunctionLibrary {
    let limits = module.limits();
    let descriptor = LibraryDescriptor {
        library: name.to_string(),
        sha256: module.hash().to_string(),
        memory_mib: limits.memory_mib,
        time_ms: limits.time_ms,
    };
    let mut library = FunctionLibrary::portable(name, descriptor.encode());
    for function in module.functions() {
        let call = ModuleCall {
            module: Arc::clone(&module),
            function: function.clone(),
        };
        library = match &function.kind {
            FunctionKind::Scalar { args, result } => library.scalar_batch(
                &function.name,
                args.iter().map(|a| a.data_type()).collect(),
                result.data_type(),
                Arc::new(move |arrays: &[ArrayRef], rows: usize| call.scalar(arrays, rows)),
            ),
            FunctionKind::Flat { arg, item } => library.scalar_batch(
                &function.name,
                vec![arg.data_type()],
                DataType::List(Arc::new(Field::new_list_field(item.data_type(), true))),
                Arc::new(move |arrays: &[ArrayRef], rows: usize| call.flat(arrays, rows)),
            ),
            FunctionKind::Reduce { value } => library.reduce_batch(
                &function.name,
                value.data_type(),
                Arc::new(move |values: &ArrayRef, state: &mut Option<ScalarValue>| {
                    call.fold(values, state)
                }),
            ),
            FunctionKind::Partitions { output } => {
                let schema: SchemaRef = Arc::new(Schema::new(
                    output
                        .iter()
                        .map(|(n, t)| Field::new(n, t.data_type(), true))
                        .collect::<Vec<_>>(),
                ));
                let out = Arc::clone(&schema);
                library.partitions(&function.name, schema, move |batches| {
                    call.partition(batches, &out)
                })
            }
        };
    }
    library
}

/// One function of a module, called with Arrow data.
struct ModuleCall {
    module: Arc<CompiledModule>,
    function: FunctionDecl,
}

impl ModuleCall {
    fn unsupported(&self, what: String) -> DataFusionError {
        WasmError::Unsupported {
            function: self.function.name.clone(),
            what,
        }
        .into()
    }

    fn bad_result(&self, reason: String) -> DataFusionError {
        WasmError::BadResult {
            function: self.function.name.clone(),
            reason,
        }
        .into()
    }

    /// Sends `columns` (name, type, values) and returns a reader of the
    /// answer's bytes.
    fn send(&self, rows: usize, columns: &[(&str, WireType, &ArrayRef)]) -> Result<Vec<u8>> {
        let mut writer = BatchWriter::new(rows, columns.len());
        for (name, wire, array) in columns {
            let array = conform(array, *wire)?;
            writer.column(name, *wire, array.as_ref());
        }
        Ok(self.module.call(&self.function, &writer.finish())?)
    }

    /// Reads the header of a result batch: its row and column counts.
    fn header(&self, reader: &mut BatchReader) -> Result<(usize, usize)> {
        let rows = reader.count().map_err(|e| self.bad_result(e))?;
        let columns = reader.count().map_err(|e| self.bad_result(e))?;
        Ok((rows, columns))
    }

    fn scalar(&self, arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let FunctionKind::Scalar { args, result } = &self.function.kind else {
            return Err(self.bad_result("not a scalar function".into()));
        };
        let columns: Vec<_> = args
            .iter()
            .zip(arrays)
            .map(|(wire, array)| ("", *wire, array))
            .collect();
        let bytes = self.send(rows, &columns)?;
        let mut reader = BatchReader::new(&bytes);
        let (got, _) = self.header(&mut reader)?;
        if got != rows {
            return Err(self.bad_result(format!("{got} rows for {rows}")));
        }
        let column = reader
            .column(rows, *result)
            .map_err(|e| self.bad_result(e))?;
        Ok(column.array)
    }

    fn flat(&self, arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let FunctionKind::Flat { arg, item } = &self.function.kind else {
            return Err(self.bad_result("not a flat function".into()));
        };
        let input = arrays
            .first()
            .ok_or_else(|| self.bad_result("no argument".into()))?;
        let bytes = self.send(rows, &[("", *arg, input)])?;
        let mut reader = BatchReader::new(&bytes);
        let (got, _) = self.header(&mut reader)?;
        if got != rows {
            return Err(self.bad_result(format!("{got} rows for {rows}")));
        }
        let lengths = reader
            .column(rows, WireType::Int32)
            .map_err(|e| self.bad_result(e))?;
        let lengths = lengths
            .array
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int32Array>()
            .ok_or_else(|| self.bad_result("its lengths are not i32".into()))?
            .values()
            .to_vec();
        let count = reader.count().map_err(|e| self.bad_result(e))?;
        let values = reader
            .column(count, *item)
            .map_err(|e| self.bad_result(e))?;
        let total: i64 = lengths.iter().map(|&l| i64::from(l.max(0))).sum();
        if total != count as i64 {
            return Err(self.bad_result(format!("{count} values where its lengths add to {total}")));
        }
        let valid = NullBuffer::from_iter(lengths.iter().map(|&l| l >= 0));
        let offsets = OffsetBuffer::from_lengths(lengths.iter().map(|&l| l.max(0) as usize));
        let field = Arc::new(Field::new_list_field(item.data_type(), true));
        Ok(Arc::new(ListArray::try_new(
            field,
            offsets,
            values.array,
            Some(valid),
        )?))
    }

    /// Folds `values` into `state`: the module reduces the batch, then its
    /// result with the state so far.
    fn fold(&self, values: &ArrayRef, state: &mut Option<ScalarValue>) -> Result<()> {
        let FunctionKind::Reduce { value } = &self.function.kind else {
            return Err(self.bad_result("not a reduce function".into()));
        };
        if values.len() == values.null_count() {
            return Ok(());
        }
        let reduced = self.reduce_once(*value, values)?;
        let combined = match state.take() {
            Some(previous) if !previous.is_null() => {
                let pair = ScalarValue::iter_to_array([previous, reduced])?;
                self.reduce_once(*value, &pair)?
            }
            _ => reduced,
        };
        *state = (!combined.is_null()).then_some(combined);
        Ok(())
    }

    fn reduce_once(&self, value: WireType, values: &ArrayRef) -> Result<ScalarValue> {
        let bytes = self.send(values.len(), &[("", value, values)])?;
        let mut reader = BatchReader::new(&bytes);
        let (rows, _) = self.header(&mut reader)?;
        if rows != 1 {
            return Err(self.bad_result(format!("{rows} rows where a reduce gives one")));
        }
        let column = reader.column(1, value).map_err(|e| self.bad_result(e))?;
        ScalarValue::try_from_array(&column.array, 0)
    }

    fn partition(&self, batches: Vec<RecordBatch>, output: &SchemaRef) -> Result<Vec<RecordBatch>> {
        let Some(first) = batches.first() else {
            return Ok(vec![]);
        };
        let input = concat_batches(&first.schema(), &batches)?;
        let schema = input.schema();
        let mut columns = Vec::with_capacity(input.num_columns());
        for (field, array) in schema.fields().iter().zip(input.columns()) {
            let wire = WireType::of(field.data_type()).ok_or_else(|| {
                self.unsupported(format!(
                    "column `{}` of type {}",
                    field.name(),
                    field.data_type()
                ))
            })?;
            columns.push((field.name().as_str(), wire, array));
        }
        let bytes = self.send(input.num_rows(), &columns)?;
        let mut reader = BatchReader::new(&bytes);
        let (rows, count) = self.header(&mut reader)?;
        if count != output.fields().len() {
            return Err(self.bad_result(format!(
                "{count} columns where {} are declared",
                output.fields().len()
            )));
        }
        let mut arrays = Vec::with_capacity(count);
        for field in output.fields() {
            let wire = WireType::of(field.data_type())
                .ok_or_else(|| self.unsupported(format!("type {}", field.data_type())))?;
            let column = reader.column(rows, wire).map_err(|e| self.bad_result(e))?;
            arrays.push(column.array);
        }
        if arrays.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![RecordBatch::try_new(Arc::clone(output), arrays)?])
    }
}
