//! Partition functions: a named Rust function that turns a whole partition's
//! batches into new batches (Spark's `mapPartitions`), and the table and
//! operator that run one over a plan.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use datafusion_proto::logical_plan::{AsLogicalPlan, LogicalExtensionCodec};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use crate::codec::{ExtensionOperatorCodec, single_input};

/// The body of a partition function.
pub type PartitionBody = dyn Fn(Vec<RecordBatch>) -> Result<Vec<RecordBatch>> + Send + Sync;

/// A named function over whole partitions, with the schema of what it
/// returns.
pub struct PartitionFunction {
    name: String,
    output: SchemaRef,
    body: Arc<PartitionBody>,
    /// The portable library's descriptor, for a function that travels
    /// inside plans.
    descriptor: Option<Arc<[u8]>>,
}

impl fmt::Debug for PartitionFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionFunction")
            .field("name", &self.name)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl PartitionFunction {
    /// `body` under `name`, returning batches of schema `output`.
    pub fn new(name: &str, output: SchemaRef, body: Arc<PartitionBody>) -> Self {
        Self {
            name: name.to_string(),
            output,
            body,
            descriptor: None,
        }
    }

    /// This function, as one of the portable library `descriptor`
    /// describes.
    pub(crate) fn with_descriptor(mut self, descriptor: Option<Arc<[u8]>>) -> Self {
        self.descriptor = descriptor;
        self
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema of its output.
    pub fn output(&self) -> &SchemaRef {
        &self.output
    }

    /// Applies the function, checking that its batches have the declared
    /// schema.
    fn apply(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let output = (self.body)(batches)
            .map_err(|e| DataFusionError::Execution(format!("function `{}`: {e}", self.name)))?;
        for batch in &output {
            if batch.schema().fields() != self.output.fields() {
                return Err(DataFusionError::Execution(format!(
                    "function `{}` returned batches of schema {:?}, not the declared {:?}",
                    self.name,
                    batch.schema(),
                    self.output
                )));
            }
        }
        Ok(output)
    }
}

/// The partition function `name`: from the portable library `descriptor`
/// describes when there is one, else from this process's libraries; or an
/// error naming it.
fn lookup(name: &str, descriptor: Option<&[u8]>) -> Result<Arc<PartitionFunction>> {
    if let Some(descriptor) = descriptor.filter(|d| !d.is_empty()) {
        let library = super::load_portable_library(descriptor)?;
        return library
            .partition_functions()
            .iter()
            .find(|f| f.name() == name)
            .cloned()
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "function library `{}` has no partition function `{name}`",
                    library.name()
                ))
            });
    }
    super::partition_function(name).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "this process has no partition function named `{name}`: named functions must be \
             registered in the client, the scheduler and every executor"
        ))
    })
}

/// The wire name of a [`MapPartitionsTable`] inside a logical plan.
pub const MAP_PARTITIONS: &str = "ember.map_partitions";

/// The rows a partition function makes of each partition of an input plan.
#[derive(Debug, Clone)]
pub struct MapPartitionsTable {
    function: Arc<PartitionFunction>,
    input: LogicalPlan,
}

impl MapPartitionsTable {
    /// `function` (registered in this process) over `input`'s partitions.
    pub fn try_new(function: &str, input: LogicalPlan) -> Result<Self> {
        Ok(Self {
            function: lookup(function, None)?,
            input,
        })
    }

    /// Encodes the table (the function's name and the input plan).
    pub fn encode(&self, codec: &dyn LogicalExtensionCodec) -> Result<Vec<u8>> {
        let input = LogicalPlanNode::try_from_logical_plan(&self.input, codec)?;
        Ok(ember_proto::MapPartitions {
            function: self.function.name.clone(),
            input: input.encode_to_vec(),
            library: self
                .function
                .descriptor
                .as_deref()
                .unwrap_or_default()
                .to_vec(),
        }
        .encode_to_vec())
    }

    /// Decodes a table that [`encode`](Self::encode) wrote.
    pub fn decode(
        payload: &[u8],
        ctx: &TaskContext,
        codec: &dyn LogicalExtensionCodec,
    ) -> Result<Self> {
        let message = ember_proto::MapPartitions::decode(payload)
            .map_err(|e| DataFusionError::Internal(format!("cannot decode map_partitions: {e}")))?;
        let input = LogicalPlanNode::decode(message.input.as_slice())
            .map_err(|e| DataFusionError::Internal(format!("cannot decode map_partitions: {e}")))?
            .try_into_logical_plan(ctx, codec)?;
        Ok(Self {
            function: lookup(&message.function, Some(&message.library))?,
            input,
        })
    }
}

#[async_trait]
impl TableProvider for MapPartitionsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.function.output)
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
        let input = state.create_physical_plan(&self.input).await?;
        let exec = MapPartitionsExec::new(Arc::clone(&self.function), input);
        crate::scan_projection::project_scan(Arc::new(exec), projection)
    }
}

/// Runs a partition function over each partition of its input.
#[derive(Debug)]
pub struct MapPartitionsExec {
    function: Arc<PartitionFunction>,
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl MapPartitionsExec {
    /// `function` over `input`.
    pub fn new(function: Arc<PartitionFunction>, input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&function.output)),
            datafusion::physical_plan::Partitioning::UnknownPartitioning(
                input.output_partitioning().partition_count(),
            ),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            function,
            input,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for MapPartitionsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MapPartitionsExec: function={}", self.function.name)
    }
}

impl ExecutionPlan for MapPartitionsExec {
    fn name(&self) -> &str {
        "MapPartitionsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = single_input(&children, "MapPartitionsExec")?;
        Ok(Arc::new(Self::new(Arc::clone(&self.function), input)))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let function = Arc::clone(&self.function);
        let output = futures::stream::once(async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            let produced = tokio::task::spawn_blocking(move || function.apply(batches))
                .await
                .map_err(|e| {
                    DataFusionError::Execution(format!("partition function panicked: {e}"))
                })??;
            Ok::<_, DataFusionError>(futures::stream::iter(produced.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.function.output),
            output,
        )))
    }
}

/// Codec of [`MapPartitionsExec`] (`ember.map_partitions`): the function
/// travels by name, followed (after a NUL byte) by its portable library's
/// descriptor when it has one.
#[derive(Debug, Default)]
pub struct MapPartitionsCodec;

impl ExtensionOperatorCodec for MapPartitionsCodec {
    fn name(&self) -> &str {
        MAP_PARTITIONS
    }

    fn try_encode(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<u8>>> {
        Ok(node.downcast_ref::<MapPartitionsExec>().map(|exec| {
            let mut payload = exec.function.name.as_bytes().to_vec();
            if let Some(descriptor) = &exec.function.descriptor {
                payload.push(0);
                payload.extend_from_slice(descriptor);
            }
            payload
        }))
    }

    fn decode(
        &self,
        payload: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (name, descriptor) = match payload.iter().position(|&b| b == 0) {
            Some(at) => (&payload[..at], Some(&payload[at + 1..])),
            None => (payload, None),
        };
        let name = std::str::from_utf8(name).map_err(|_| {
            DataFusionError::Internal("a partition function's name must be UTF-8".into())
        })?;
        let input = single_input(inputs, "MapPartitionsExec")?;
        Ok(Arc::new(MapPartitionsExec::new(
            lookup(name, descriptor)?,
            input,
        )))
    }
}
