//! Client-held tables (`parallelize`) on the wire: a [`MemTable`] encoded
//! as one Arrow IPC stream per partition inside the logical plan, so that
//! the scheduler can plan it and executors can read it. (DataFusion's own
//! physical encoding then carries the partitions to the executors.)

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use prost::Message;

/// The name a memory table goes by in Ember's logical envelope.
pub const MEMORY_TABLE: &str = "ember.memory_table";

/// `batches` of `schema` as one Arrow IPC stream.
pub(crate) fn encode_ipc_stream(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

/// The batches of an Arrow IPC stream [`encode_ipc_stream`] wrote.
pub(crate) fn decode_ipc_stream(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    StreamReader::try_new(bytes, None)?
        .collect::<std::result::Result<Vec<RecordBatch>, _>>()
        .map_err(DataFusionError::from)
}

/// `table`'s partitions as an encoded [`ember_proto::MemoryTable`].
pub fn encode_memory_table(table: &MemTable) -> Result<Vec<u8>> {
    let schema = datafusion::catalog::TableProvider::schema(table);
    let mut partitions = Vec::with_capacity(table.batches.len());
    for partition in &table.batches {
        let batches = partition.try_read().map_err(|_| {
            DataFusionError::Execution(
                "a parallelized table is being written while its query is planned".to_string(),
            )
        })?;
        partitions.push(encode_ipc_stream(&schema, &batches)?);
    }
    Ok(ember_proto::MemoryTable { partitions }.encode_to_vec())
}

/// The table [`encode_memory_table`] encoded, with `schema`.
pub fn decode_memory_table(payload: &[u8], schema: SchemaRef) -> Result<MemTable> {
    let message = ember_proto::MemoryTable::decode(payload).map_err(|e| {
        DataFusionError::Internal(format!("a parallelized table does not decode: {e}"))
    })?;
    let partitions = message
        .partitions
        .iter()
        .map(|bytes| decode_ipc_stream(bytes))
        .collect::<Result<Vec<_>>>()?;
    MemTable::try_new(schema, partitions)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[tokio::test]
    async fn partitions_survive_the_trip_with_their_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = |ids: Vec<i64>, names: Vec<Option<&str>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .unwrap()
        };
        let partitions = vec![
            vec![batch(vec![1, 2], vec![Some("a"), None])],
            vec![],
            vec![batch(vec![3], vec![Some("c")]), batch(vec![4], vec![None])],
        ];
        let table = MemTable::try_new(schema.clone(), partitions.clone()).unwrap();
        let decoded = decode_memory_table(&encode_memory_table(&table).unwrap(), schema).unwrap();
        assert_eq!(decoded.batches.len(), 3);
        for (expected, actual) in partitions.iter().zip(&decoded.batches) {
            assert_eq!(expected, &*actual.read().await);
        }
    }
}
