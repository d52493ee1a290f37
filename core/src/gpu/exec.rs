//! [`GpuAggregateExec`]: a partial aggregate (with its filter and
//! projection, with or without GROUP BY) computed by a generated GPU kernel,
//! falling back to the CPU plan it replaced whenever the GPU cannot run it.
//!
//! Input is streamed in chunks of at least [`CHUNK_ROWS`] rows, each held
//! under the task's memory pool while it is copied to the device; each
//! chunk emits its own partial state, which the final aggregate merges. A
//! scan of a GPU-cached table (see [`super::cache`]) instead runs the kernel
//! over its partition's columns already in device memory.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, collect,
};
use ember_gpu::{AggregateValue, DeviceBatch, GpuDevice, GpuError, Group, HostBatch};
use futures::{StreamExt, TryStreamExt};

use crate::codec::single_input;

use super::cache::{CachedScan, cached_columns, keep_columns};
use super::output::{grouped_batch, ungrouped_batch};
use super::placement::{GpuKernel, GpuPlacement};

fn gpu_error(e: GpuError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The fewest rows the operator gathers before running a chunk.
pub const CHUNK_ROWS: usize = 1 << 22;

/// Runs a [`GpuPlacement`] on a GPU over each partition of its scan and
/// emits the partial aggregate state the replaced `AggregateExec` would.
pub struct GpuAggregateExec {
    /// The CPU subtree this replaces (`AggregateExec(Partial)` over its
    /// projection and filter over the scan): its schema, and the fallback.
    original: Arc<dyn ExecutionPlan>,
    placement: GpuPlacement,
    device: Option<Arc<GpuDevice>>,
    min_rows: u64,
    /// Set when the scan's table is GPU-cached.
    cached: Option<CachedScan>,
    /// Without a device, run the kernels' CPU references (not the
    /// replaced plan): how tests check kernels, placement and output on
    /// machines without a GPU.
    reference: bool,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for GpuAggregateExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuAggregateExec")
            .field("kernel", &self.placement.kernel)
            .field("columns", &self.placement.columns)
            .finish()
    }
}

impl GpuAggregateExec {
    /// Replaces `original` as `placement` says.
    pub fn new(
        original: Arc<dyn ExecutionPlan>,
        placement: GpuPlacement,
        device: Option<Arc<GpuDevice>>,
        min_rows: u64,
        cached: Option<CachedScan>,
    ) -> Self {
        let properties = Arc::clone(original.properties());
        Self {
            original,
            placement,
            device,
            min_rows,
            cached,
            reference: false,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// This operator, running the kernels' CPU references where it has no
    /// device.
    pub fn with_reference(mut self) -> Self {
        self.reference = true;
        self
    }
}

/// `plan` with the subtree `old` (found by pointer) replaced by `new`.
fn replace_leaf(
    plan: &Arc<dyn ExecutionPlan>,
    old: &Arc<dyn ExecutionPlan>,
    new: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if Arc::ptr_eq(plan, old) {
        return Ok(new);
    }
    let children = plan
        .children()
        .into_iter()
        .map(|child| replace_leaf(child, old, Arc::clone(&new)))
        .collect::<Result<Vec<_>>>()?;
    datafusion::physical_plan::execution_plan::replace_children_if_necessary(
        Arc::clone(plan),
        children,
    )
}

impl DisplayAs for GpuAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, aggregates, filter) = match &self.placement.kernel {
            GpuKernel::Ungrouped(q) => (
                "no grouping".to_string(),
                q.aggregates.len(),
                q.filter.is_some(),
            ),
            GpuKernel::Grouped(q) => (
                format!("{} keys", q.keys.len()),
                q.aggregates.len(),
                q.filter.is_some(),
            ),
        };
        write!(
            f,
            "GpuAggregateExec: {kind}, {aggregates} aggregates{}, columns={:?}{}, device={}",
            if filter { " with filter" } else { "" },
            self.placement.columns,
            if self.cached.is_some() {
                ", cached"
            } else {
                ""
            },
            self.device
                .as_ref()
                .map_or("none (CPU fallback)".to_string(), |d| d.name().to_string())
        )
    }
}

impl ExecutionPlan for GpuAggregateExec {
    fn name(&self) -> &str {
        "GpuAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.placement.scan]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = single_input(&children, "GpuAggregateExec")?;
        // A new scan may read other files: its columns are not cached.
        let cached = if Arc::ptr_eq(&scan, &self.placement.scan) {
            self.cached.clone()
        } else {
            None
        };
        let original = replace_leaf(&self.original, &self.placement.scan, Arc::clone(&scan))?;
        let mut placement = self.placement.clone();
        placement.scan = scan;
        let mut exec = Self::new(
            original,
            placement,
            self.device.clone(),
            self.min_rows,
            cached,
        );
        exec.reference = self.reference;
        Ok(Arc::new(exec))
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

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let run = ChunkRunner {
            original: Arc::clone(&self.original),
            placement: self.placement.clone(),
            schema: self.schema(),
            device: self.device.clone(),
            reference: self.reference,
            min_rows: self.min_rows,
            context: Arc::clone(&context),
            gpu_rows: MetricBuilder::new(&self.metrics).counter("gpu_rows", partition),
            cpu_rows: MetricBuilder::new(&self.metrics).counter("cpu_rows", partition),
            cached_rows: MetricBuilder::new(&self.metrics).counter("gpu_cached_rows", partition),
            times: StageTimes::new(&self.metrics, partition),
        };
        let reservation = MemoryConsumer::new(format!("GpuAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let cached = match (&self.device, &self.cached) {
            (Some(_), Some(cached)) => cached
                .keys(partition, &self.placement.columns)
                .map(|keys| (cached.clone(), keys)),
            _ => None,
        };
        let schema = self.schema();
        let output = match cached {
            Some((cached, keys)) => {
                futures::stream::once(run.run_cached(cached, keys, partition, reservation))
                    .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
                    .try_flatten()
                    .boxed()
            }
            None => {
                let input = self.placement.scan.execute(partition, context)?;
                run.run_chunks(input, reservation)
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, output)))
    }
}

/// What a kernel (or its CPU reference) computed.
enum KernelOutput {
    /// One value per aggregate (no GROUP BY).
    Values(Vec<AggregateValue>),
    /// One row of states per group.
    Groups(Vec<Group>),
}

/// What one partition's execution needs.
struct ChunkRunner {
    original: Arc<dyn ExecutionPlan>,
    placement: GpuPlacement,
    schema: datafusion::arrow::datatypes::SchemaRef,
    device: Option<Arc<GpuDevice>>,
    reference: bool,
    min_rows: u64,
    context: Arc<TaskContext>,
    gpu_rows: Count,
    cpu_rows: Count,
    cached_rows: Count,
    times: StageTimes,
}

/// Where a partition's time goes: waiting for input (the scan's reading and
/// decoding), coalescing it into the kernel's layout, copying it to the
/// device, and the kernel (with its result's copy back).
struct StageTimes {
    input: Time,
    coalesce: Time,
    upload: Time,
    kernel: Time,
}

impl StageTimes {
    fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let time = |name: &'static str| MetricBuilder::new(metrics).subset_time(name, partition);
        Self {
            input: time("input_time"),
            coalesce: time("coalesce_time"),
            upload: time("upload_time"),
            kernel: time("kernel_time"),
        }
    }
}

impl ChunkRunner {
    /// The kernel's columns of `batches`, in device memory.
    fn to_device(
        &self,
        device: &GpuDevice,
        batches: &[RecordBatch],
    ) -> std::result::Result<DeviceBatch, GpuError> {
        let host = {
            let _timer = self.times.coalesce.timer();
            self.host_batch(batches)?
        };
        let _timer = self.times.upload.timer();
        host.upload(device)
    }

    /// Streams `input` in chunks of at least [`CHUNK_ROWS`] rows.
    fn run_chunks(
        self,
        input: SendableRecordBatchStream,
        reservation: MemoryReservation,
    ) -> futures::stream::BoxStream<'static, Result<RecordBatch>> {
        let chunk_rows = CHUNK_ROWS.max(self.min_rows as usize);
        let runner = Arc::new(self);
        let state = (input, reservation, false, false);
        futures::stream::try_unfold(state, move |(mut input, reservation, mut done, mut ran)| {
            let runner = Arc::clone(&runner);
            async move {
                if done {
                    return Ok::<_, DataFusionError>(None);
                }
                let mut batches = Vec::new();
                let mut rows = 0usize;
                while rows < chunk_rows {
                    let next = {
                        let _timer = runner.times.input.timer();
                        input.next().await
                    };
                    match next {
                        Some(batch) => {
                            let batch = batch?;
                            reservation.try_grow(batch.get_array_memory_size())?;
                            rows += batch.num_rows();
                            batches.push(batch);
                        }
                        None => {
                            done = true;
                            break;
                        }
                    }
                }
                // An empty partition still emits the CPU plan's state
                // (one row without GROUP BY), once.
                let output = if rows > 0 || !ran {
                    runner.run_chunk(batches).await?
                } else {
                    Vec::new()
                };
                ran = true;
                reservation.free();
                Ok(Some((output, (input, reservation, done, ran))))
            }
        })
        .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// One chunk: on the GPU where it can, else through the CPU plan.
    async fn run_chunk(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if let Some(device) = self
            .device
            .as_ref()
            .filter(|_| rows as u64 >= self.min_rows)
        {
            let attempt = self
                .to_device(device, &batches)
                .map_err(|e| e.to_string())
                .and_then(|on_device| self.run_kernel(device, &on_device));
            match attempt {
                Ok(state) => {
                    self.gpu_rows.add(rows);
                    return Ok(vec![state]);
                }
                Err(e) => tracing::debug!("GPU aggregate falls back to the CPU: {e}"),
            }
        } else if self.device.is_none() && self.reference && rows > 0 {
            let host = self.host_batch(&batches).map_err(gpu_error)?;
            return Ok(vec![self.run_reference(&host)?]);
        }
        self.run_cpu(batches, rows).await
    }

    /// The kernel's CPU reference over `host`; its state batch.
    fn run_reference(&self, host: &HostBatch) -> Result<RecordBatch> {
        let output = match &self.placement.kernel {
            GpuKernel::Ungrouped(query) => {
                KernelOutput::Values(query.run_cpu(host).map_err(gpu_error)?)
            }
            GpuKernel::Grouped(query) => {
                KernelOutput::Groups(query.run_cpu(host).map_err(gpu_error)?)
            }
        };
        self.state_batch(output, |k| host.columns[k].dictionary.clone())
    }

    /// The partial state batch of a kernel's `output`; `dictionary(k)` is
    /// what the codes of kernel column `k` stand for, if it is a string
    /// column.
    fn state_batch(
        &self,
        output: KernelOutput,
        dictionary: impl Fn(usize) -> Option<Arc<StringArray>>,
    ) -> Result<RecordBatch> {
        let states = &self.placement.states;
        match (&self.placement.kernel, output) {
            (_, KernelOutput::Values(values)) => ungrouped_batch(&self.schema, states, &values),
            (GpuKernel::Grouped(query), KernelOutput::Groups(groups)) => {
                let dictionaries: Vec<_> = query.keys.iter().map(|&k| dictionary(k)).collect();
                grouped_batch(&self.schema, states, &dictionaries, &groups)
            }
            (GpuKernel::Ungrouped(_), KernelOutput::Groups(_)) => Err(DataFusionError::Internal(
                "an ungrouped GPU aggregate produced groups".to_string(),
            )),
        }
    }

    /// A cached partition: its columns from device memory, filled first
    /// (from every row of its files) if need be.
    async fn run_cached(
        self,
        cached: CachedScan,
        keys: Vec<String>,
        partition: usize,
        reservation: MemoryReservation,
    ) -> Result<Vec<RecordBatch>> {
        let Some(device) = self.device.clone() else {
            return Err(DataFusionError::Internal(
                "a cached GPU scan without a device".to_string(),
            ));
        };
        let cached_columns = cached_columns(&keys);
        let cached_failed = cached_columns.is_some();
        if let Some(columns) = cached_columns {
            let attempt = DeviceBatch::new(columns)
                .map_err(|e| e.to_string())
                .and_then(|batch| Ok((batch.rows, self.run_kernel(&device, &batch)?)));
            match attempt {
                Ok((rows, state)) => {
                    self.gpu_rows.add(rows);
                    self.cached_rows.add(rows);
                    return Ok(vec![state]);
                }
                Err(e) => tracing::debug!("GPU aggregate over cached columns: {e}"),
            }
        }
        // Fill: every row of the partition's files, once. (After a kernel
        // that failed over cached columns, the rows are for the CPU plan:
        // uploading them again would fail the same way.)
        let scan = cached.filling_scan(partition)?;
        let mut stream = scan.execute(0, Arc::clone(&self.context))?;
        let mut batches = Vec::new();
        loop {
            let next = {
                let _timer = self.times.input.timer();
                stream.next().await
            };
            let Some(batch) = next else { break };
            let batch = batch?;
            reservation.try_grow(batch.get_array_memory_size())?;
            batches.push(batch);
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if cached_failed {
            return self.run_cpu(batches, rows).await;
        }
        let attempt = self
            .to_device(&device, &batches)
            .map_err(|e| e.to_string())
            .and_then(|on_device| {
                keep_columns(&device, &keys, &on_device.columns);
                self.run_kernel(&device, &on_device)
            });
        match attempt {
            Ok(state) => {
                self.gpu_rows.add(rows);
                Ok(vec![state])
            }
            Err(e) => {
                tracing::debug!("GPU aggregate falls back to the CPU: {e}");
                self.run_cpu(batches, rows).await
            }
        }
    }

    /// The kernel's columns of `batches`, coalesced.
    fn host_batch(&self, batches: &[RecordBatch]) -> std::result::Result<HostBatch, GpuError> {
        if batches.is_empty() {
            return Err(GpuError::Unsupported("an empty partition".to_string()));
        }
        let selected: Vec<Vec<ArrayRef>> = batches
            .iter()
            .map(|b| {
                self.placement
                    .columns
                    .iter()
                    .map(|&c| Arc::clone(b.column(c)))
                    .collect()
            })
            .collect();
        HostBatch::from_arrow(&selected)
    }

    /// Runs the kernel over columns in device memory; its state batch.
    fn run_kernel(
        &self,
        device: &GpuDevice,
        batch: &DeviceBatch,
    ) -> std::result::Result<RecordBatch, String> {
        let _timer = self.times.kernel.timer();
        let output = match &self.placement.kernel {
            GpuKernel::Ungrouped(query) => query.run_gpu(device, batch).map(KernelOutput::Values),
            GpuKernel::Grouped(query) => query.run_gpu(device, batch).map(KernelOutput::Groups),
        }
        .map_err(|e| e.to_string())?;
        self.state_batch(output, |k| batch.columns[k].dictionary.clone())
            .map_err(|e| e.to_string())
    }

    /// The replaced CPU plan over `batches`.
    async fn run_cpu(&self, batches: Vec<RecordBatch>, rows: usize) -> Result<Vec<RecordBatch>> {
        self.cpu_rows.add(rows);
        let memory: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[batches], self.placement.scan.schema(), None)?;
        let plan = replace_leaf(&self.original, &self.placement.scan, memory)?;
        // `collect` merges the plan's partitions, if it has several.
        collect(plan, Arc::clone(&self.context)).await
    }
}
