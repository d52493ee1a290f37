//! [`CachedDataset`]: the table a cached `Dataset` reads.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::{AsLogicalPlan, LogicalExtensionCodec};
use datafusion_proto::protobuf::LogicalPlanNode;
use prost::Message;

use super::StorageLevel;
use super::directory::block_directory;
use super::exec::CacheExec;

/// The wire name of a [`CachedDataset`] inside a logical plan.
pub const CACHED_DATASET: &str = "ember.cached_dataset";

/// A dataset whose partitions are kept where they are computed, the first
/// time an action reads them in full.
///
/// Planning it asks the process's [`BlockDirectory`](super::BlockDirectory)
/// which partitions are held: when all are, the plan reads them and the
/// lineage is not planned; otherwise the lineage is planned under a
/// [`CacheExec`] that reads the held partitions and computes the rest.
#[derive(Debug, Clone)]
pub struct CachedDataset {
    cache_id: String,
    level: StorageLevel,
    lineage: LogicalPlan,
    schema: SchemaRef,
}

impl CachedDataset {
    /// Caches `lineage` at `level` under a fresh id.
    pub fn new(lineage: LogicalPlan, level: StorageLevel) -> Self {
        Self::with_id(uuid::Uuid::new_v4().simple().to_string(), lineage, level)
    }

    fn with_id(cache_id: String, lineage: LogicalPlan, level: StorageLevel) -> Self {
        let schema = Arc::clone(lineage.schema().inner());
        Self {
            cache_id,
            level,
            lineage,
            schema,
        }
    }

    /// The cache's id.
    pub fn cache_id(&self) -> &str {
        &self.cache_id
    }

    /// The storage level.
    pub fn level(&self) -> StorageLevel {
        self.level
    }

    /// The plan that computes the dataset.
    pub fn lineage(&self) -> &LogicalPlan {
        &self.lineage
    }

    /// Encodes the table (its lineage with `codec`) for the wire.
    pub fn encode(&self, codec: &dyn LogicalExtensionCodec) -> Result<Vec<u8>> {
        let lineage = LogicalPlanNode::try_from_logical_plan(&self.lineage, codec)?;
        Ok(ember_proto::CachedDataset {
            cache_id: self.cache_id.clone(),
            level: self.level.as_str().to_string(),
            lineage: lineage.encode_to_vec(),
        }
        .encode_to_vec())
    }

    /// Decodes a table that [`encode`](Self::encode) wrote.
    pub fn decode(
        payload: &[u8],
        ctx: &TaskContext,
        codec: &dyn LogicalExtensionCodec,
    ) -> Result<Self> {
        let message = ember_proto::CachedDataset::decode(payload).map_err(|e| {
            DataFusionError::Internal(format!("cannot decode a cached dataset: {e}"))
        })?;
        let level = message
            .level
            .parse()
            .map_err(|e| DataFusionError::Internal(format!("cached dataset: {e}")))?;
        let lineage = LogicalPlanNode::decode(message.lineage.as_slice())
            .map_err(|e| DataFusionError::Internal(format!("cannot decode a cached lineage: {e}")))?
            .try_into_logical_plan(ctx, codec)?;
        Ok(Self::with_id(message.cache_id, lineage, level))
    }
}

#[async_trait]
impl TableProvider for CachedDataset {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let storage = block_directory().storage(&self.cache_id).await?;
        let exec = match storage.complete_partitions() {
            Some(partitions) => CacheExec::reading(
                self.cache_id.clone(),
                self.level,
                Arc::clone(&self.schema),
                partitions,
                storage.blocks,
            )?,
            None => {
                let lineage = state.create_physical_plan(&self.lineage).await?;
                CacheExec::materializing(
                    self.cache_id.clone(),
                    self.level,
                    lineage,
                    storage.blocks,
                )?
            }
        };
        crate::scan_projection::project_scan(Arc::new(exec), projection)
    }
}
