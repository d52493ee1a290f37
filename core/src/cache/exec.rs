//! [`CacheExec`]: reads a cached dataset's partitions, computing and keeping
//! those that are held nowhere.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use ember_proto::{CacheOperator, CachedBlock};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;

use super::StorageLevel;
use super::flight::fetch_block;
use super::store::BlockStore;
use crate::codec::ExtensionOperatorCodec;

/// Reads a cached dataset.
///
/// Partition `p` comes from this process's [`BlockStore`] if it holds it,
/// else from the holder the planner found, else (with an input: the lineage)
/// it is computed, and kept here once it has been read to the end. Without an
/// input, a partition that cannot be fetched is an error that names the
/// holder; the next action plans the lineage again for it.
///
/// The operator's first child is a tiny in-memory table with one row per
/// partition holding the partition's index. Ballista restricts each task's
/// plan to the task's partitions and renumbers them; the tokens are
/// restricted the same way as the lineage, so each task still knows which
/// partitions of the dataset it computes.
pub struct CacheExec {
    source: Arc<CachedPartitions>,
    blocks: Vec<CachedBlock>,
    tokens: Arc<dyn ExecutionPlan>,
    input: Option<Arc<dyn ExecutionPlan>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// What every task of a [`CacheExec`] needs to open a dataset partition,
/// worked out once per operator.
struct CachedPartitions {
    cache_id: String,
    level: StorageLevel,
    /// The dataset's partition count (the tasks may each see fewer).
    partitions: usize,
    /// The holder of each partition, where one was found (by index).
    holders: Vec<Option<String>>,
    /// Whether held partitions may be mixed with computed ones: only when the
    /// lineage puts every row in the same partition each time it runs.
    reuse_held: bool,
    schema: SchemaRef,
}

impl fmt::Debug for CacheExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheExec")
            .field("cache_id", &self.source.cache_id)
            .field("level", &self.source.level)
            .field("partitions", &self.source.partitions)
            .field("held", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

/// The name of the tokens' one column.
const TOKEN_COLUMN: &str = "ember_cache_partition";

/// One partition per dataset partition, each one row holding its index.
fn partition_tokens(partitions: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        TOKEN_COLUMN,
        DataType::UInt32,
        false,
    )]));
    let batches = (0..partitions as u32)
        .map(|p| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(UInt32Array::from(vec![p]))],
            )
            .map(|batch| vec![batch])
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(MemorySourceConfig::try_new_exec(&batches, schema, None)?)
}

impl CacheExec {
    /// Computes the cached dataset with `input` (the lineage's plan), reading
    /// the partitions in `blocks` where they are held.
    pub fn materializing(
        cache_id: impl Into<String>,
        level: StorageLevel,
        input: Arc<dyn ExecutionPlan>,
        blocks: Vec<CachedBlock>,
    ) -> Result<Self> {
        let partitions = input.output_partitioning().partition_count();
        let tokens = partition_tokens(partitions)?;
        Ok(Self::from_parts(
            cache_id.into(),
            level,
            partitions,
            blocks,
            input.schema(),
            tokens,
            Some(input),
        ))
    }

    /// Reads a dataset whose `partitions` partitions are all held, as
    /// `blocks` says; the lineage is not run.
    pub fn reading(
        cache_id: impl Into<String>,
        level: StorageLevel,
        schema: SchemaRef,
        partitions: usize,
        blocks: Vec<CachedBlock>,
    ) -> Result<Self> {
        let tokens = partition_tokens(partitions)?;
        Ok(Self::from_parts(
            cache_id.into(),
            level,
            partitions,
            blocks,
            schema,
            tokens,
            None,
        ))
    }

    fn from_parts(
        cache_id: String,
        level: StorageLevel,
        partitions: usize,
        blocks: Vec<CachedBlock>,
        schema: SchemaRef,
        tokens: Arc<dyn ExecutionPlan>,
        input: Option<Arc<dyn ExecutionPlan>>,
    ) -> Self {
        let mut holders = vec![None; partitions];
        for block in &blocks {
            let p = block.partition as usize;
            if block.partitions as usize == partitions && p < partitions {
                holders[p] = Some(block.endpoint.clone());
            }
        }
        let partitioning = match &input {
            Some(input) => input.output_partitioning().clone(),
            None => {
                Partitioning::UnknownPartitioning(tokens.output_partitioning().partition_count())
            }
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        let source = CachedPartitions {
            cache_id,
            level,
            partitions,
            holders,
            reuse_held: input.as_ref().is_none_or(|i| !deals_rows_round_robin(i)),
            schema,
        };
        Self {
            source: Arc::new(source),
            blocks,
            tokens,
            input,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The cache's id.
    pub fn cache_id(&self) -> &str {
        &self.source.cache_id
    }
}

impl CachedPartitions {
    /// Opens dataset partition `global`, which this task numbers `local`,
    /// computing it with `input` (the lineage) where it must be.
    fn open(
        &self,
        global: usize,
        local: usize,
        input: Option<Arc<dyn ExecutionPlan>>,
        context: Arc<TaskContext>,
        metrics: CacheMetrics,
    ) -> Result<SendableRecordBatchStream> {
        let store = BlockStore::global();
        let schema = Arc::clone(&self.schema);
        let compute = input.map(|input| Compute {
            input,
            context,
            cache_id: self.cache_id.clone(),
            level: self.level,
            partitions: self.partitions,
            computed: metrics.computed.clone(),
        });
        // A lineage whose partitions differ from run to run is computed whole
        // again, and kept anew.
        if !self.reuse_held
            && let Some(compute) = compute
        {
            return compute.run(global, local);
        }
        if let Some(batches) = store.read(&self.cache_id, global, self.partitions)? {
            store.note_read_local(&self.cache_id);
            metrics.read_local.add(1);
            return Ok(batches_stream(schema, batches));
        }
        let holder = self
            .holders
            .get(global)
            .cloned()
            .flatten()
            .filter(|h| !h.is_empty());
        match (holder, compute) {
            (Some(endpoint), compute) => {
                let cache_id = self.cache_id.clone();
                let partitions = self.partitions;
                let fetched = metrics.fetched;
                let stream_schema = Arc::clone(&schema);
                let stream = futures::stream::once(async move {
                    match fetch_block(&endpoint, &cache_id, global, partitions).await {
                        Ok(batches) => {
                            fetched.add(1);
                            Ok(batches_stream(stream_schema, batches))
                        }
                        Err(e) => match compute {
                            Some(compute) => {
                                tracing::info!(%cache_id, partition = global, %endpoint, error = %e,
                                    "cached partition unreachable; computing it from its lineage");
                                compute.run(global, local)
                            }
                            None => Err(lost_block(
                                &cache_id,
                                global,
                                &format!("could not be fetched from {endpoint}: {e}"),
                            )),
                        },
                    }
                })
                .try_flatten();
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
            }
            (None, Some(compute)) => compute.run(global, local),
            (None, None) => Err(lost_block(&self.cache_id, global, "is held by no executor")),
        }
    }
}

impl DisplayAs for CacheExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = &self.source;
        let held = source.holders.iter().filter(|h| h.is_some()).count();
        write!(
            f,
            "CacheExec: cache={}, level={}, held={held}/{}{}",
            source.cache_id,
            source.level,
            source.partitions,
            if self.input.is_some() {
                ", computing the rest"
            } else {
                ""
            }
        )
    }
}

/// Per-partition counters shown by `EXPLAIN ANALYZE`.
struct CacheMetrics {
    read_local: Count,
    fetched: Count,
    computed: Count,
}

impl ExecutionPlan for CacheExec {
    fn name(&self) -> &str {
        "CacheExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        std::iter::once(&self.tokens)
            .chain(self.input.iter())
            .collect()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut children = children.into_iter();
        let (Some(tokens), input) = (children.next(), children.next()) else {
            return Err(DataFusionError::Internal(
                "CacheExec needs its partition tokens".into(),
            ));
        };
        if input.is_some() != self.input.is_some() || children.next().is_some() {
            return Err(DataFusionError::Internal(
                "CacheExec keeps the number of its inputs".into(),
            ));
        }
        Ok(Arc::new(Self::from_parts(
            self.source.cache_id.clone(),
            self.source.level,
            self.source.partitions,
            self.blocks.clone(),
            Arc::clone(&self.source.schema),
            tokens,
            input,
        )))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // The tokens and the lineage must keep their partitions aligned, and
        // more partitions dealt round-robin below would make the kept
        // partitions depend on the run.
        vec![false; self.children().len()]
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let metrics = CacheMetrics {
            read_local: MetricBuilder::new(&self.metrics)
                .counter("partitions_read_local", partition),
            fetched: MetricBuilder::new(&self.metrics).counter("partitions_fetched", partition),
            computed: MetricBuilder::new(&self.metrics).counter("partitions_computed", partition),
        };
        // Which dataset partition this task's `partition` is.
        let tokens = self.tokens.execute(partition, Arc::clone(&context))?;
        let source = Arc::clone(&self.source);
        let input = self.input.clone();
        let stream = futures::stream::once(async move {
            let batches: Vec<RecordBatch> = tokens.try_collect().await?;
            let global = batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .and_then(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<UInt32Array>()
                        .map(|a| a.value(0))
                })
                .ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "CacheExec partition {partition} has no token"
                    ))
                })?;
            source.open(global as usize, partition, input, context, metrics)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.source.schema),
            stream,
        )))
    }
}

/// Whether `plan` deals rows to partitions round-robin, so that running it
/// again puts rows in other partitions.
fn deals_rows_round_robin(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let here = plan
        .downcast_ref::<RepartitionExec>()
        .is_some_and(|r| matches!(r.partitioning(), Partitioning::RoundRobinBatch(_)));
    here || plan.children().into_iter().any(deals_rows_round_robin)
}

fn lost_block(cache_id: &str, partition: usize, what: &str) -> DataFusionError {
    DataFusionError::Execution(format!(
        "cached partition {partition} of cache {cache_id} {what}; run the action again to \
         compute it from its lineage"
    ))
}

fn batches_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter(batches.into_iter().map(Ok)),
    ))
}

/// Computes a partition from the lineage and keeps it once read to the end.
struct Compute {
    input: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
    cache_id: String,
    level: StorageLevel,
    partitions: usize,
    computed: Count,
}

impl Compute {
    /// Computes dataset partition `global`, the lineage's `local`.
    fn run(self, global: usize, local: usize) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(local, Arc::clone(&self.context))?;
        Ok(Box::pin(KeepingStream {
            schema: input.schema(),
            input,
            batches: Vec::new(),
            keep: Some(self),
            partition: global,
        }))
    }
}

/// Passes a partition's batches on, and keeps them in the process's store
/// when the input ends. A stream dropped early (a `LIMIT` above) keeps
/// nothing.
struct KeepingStream {
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    batches: Vec<RecordBatch>,
    keep: Option<Compute>,
    partition: usize,
}

impl Stream for KeepingStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.input.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => self.batches.push(batch.clone()),
            Poll::Ready(Some(Err(_))) => self.keep = None,
            Poll::Ready(None) => {
                if let Some(keep) = self.keep.take() {
                    let batches = std::mem::take(&mut self.batches);
                    let stored = BlockStore::global().put(
                        &keep.cache_id,
                        self.partition,
                        keep.partitions,
                        keep.level,
                        &self.schema,
                        batches,
                    );
                    match stored {
                        Ok(true) => keep.computed.add(1),
                        Ok(false) => {}
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl RecordBatchStream for KeepingStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// Codec of [`CacheExec`] (`ember.cache`).
#[derive(Debug, Default)]
pub struct CacheOperatorCodec;

impl ExtensionOperatorCodec for CacheOperatorCodec {
    fn name(&self) -> &str {
        "ember.cache"
    }

    fn try_encode(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<u8>>> {
        let Some(exec) = node.downcast_ref::<CacheExec>() else {
            return Ok(None);
        };
        let mut schema = Vec::new();
        StreamWriter::try_new(&mut schema, &exec.source.schema)?.finish()?;
        let message = CacheOperator {
            cache_id: exec.source.cache_id.clone(),
            level: exec.source.level.as_str().to_string(),
            partitions: exec.source.partitions as u32,
            blocks: exec.blocks.clone(),
            schema,
        };
        Ok(Some(message.encode_to_vec()))
    }

    fn decode(
        &self,
        payload: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let message = CacheOperator::decode(payload).map_err(|e| {
            DataFusionError::Internal(format!("cannot decode a cache operator: {e}"))
        })?;
        let level = message
            .level
            .parse()
            .map_err(|e| DataFusionError::Internal(format!("cache operator: {e}")))?;
        let schema = StreamReader::try_new(message.schema.as_slice(), None)?.schema();
        let (tokens, input) = match inputs {
            [tokens] => (tokens, None),
            [tokens, input] => (tokens, Some(Arc::clone(input))),
            _ => {
                return Err(DataFusionError::Internal(
                    "CacheExec takes its tokens and at most one input".into(),
                ));
            }
        };
        Ok(Arc::new(CacheExec::from_parts(
            message.cache_id,
            level,
            message.partitions as usize,
            message.blocks,
            schema,
            Arc::clone(tokens),
            input,
        )))
    }
}
