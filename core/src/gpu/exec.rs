//! [`GpuFusedAggregateExec`]: a partial aggregate without GROUP BY (with its
//! filter) computed by one generated GPU kernel per partition, falling back
//! to the CPU plan it replaced whenever the GPU cannot run it.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, collect,
};
use datafusion::scalar::ScalarValue;
use ember_gpu::{AggregateValue, FusedAggregate, GpuDevice, GpuError, HostBatch};
use futures::{StreamExt, TryStreamExt};

/// Runs `query` on a GPU over each partition of `input` and emits the
/// partial aggregate state the replaced `AggregateExec` would have.
pub struct GpuFusedAggregateExec {
    /// The CPU subtree this replaces (`AggregateExec(Partial)` over its
    /// filter over `input`): its schema, and the fallback.
    original: Arc<dyn ExecutionPlan>,
    /// The plan feeding the kernel (the scan under the filter).
    input: Arc<dyn ExecutionPlan>,
    query: FusedAggregate,
    /// Input columns the kernel reads, in kernel column order.
    columns: Vec<usize>,
    device: Option<Arc<GpuDevice>>,
    min_rows: u64,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for GpuFusedAggregateExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuFusedAggregateExec")
            .field("query", &self.query)
            .field("columns", &self.columns)
            .finish()
    }
}

impl GpuFusedAggregateExec {
    /// Replaces `original` (whose input chain ends in `input`).
    pub fn new(
        original: Arc<dyn ExecutionPlan>,
        input: Arc<dyn ExecutionPlan>,
        query: FusedAggregate,
        columns: Vec<usize>,
        device: Option<Arc<GpuDevice>>,
        min_rows: u64,
    ) -> Result<Self> {
        let properties = Arc::clone(original.properties());
        Ok(Self {
            original,
            input,
            query,
            columns,
            device,
            min_rows,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The original plan with its leaf `input` replaced by `leaf`.
    fn original_over(&self, leaf: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        replace_leaf(&self.original, &self.input, leaf)
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

impl DisplayAs for GpuFusedAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GpuFusedAggregateExec: {} aggregates{}, columns={:?}, device={}",
            self.query.aggregates.len(),
            if self.query.filter.is_some() {
                " with filter"
            } else {
                ""
            },
            self.columns,
            self.device
                .as_ref()
                .map_or("none (CPU fallback)".to_string(), |d| d.name().to_string())
        )
    }
}

impl ExecutionPlan for GpuFusedAggregateExec {
    fn name(&self) -> &str {
        "GpuFusedAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.pop().ok_or_else(|| {
            DataFusionError::Internal("GpuFusedAggregateExec needs an input".into())
        })?;
        let original = self.original_over(Arc::clone(&input))?;
        Ok(Arc::new(Self::new(
            original,
            input,
            self.query.clone(),
            self.columns.clone(),
            self.device.clone(),
            self.min_rows,
        )?))
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
        let gpu_rows = MetricBuilder::new(&self.metrics).counter("gpu_rows", partition);
        let cpu_rows = MetricBuilder::new(&self.metrics).counter("cpu_rows", partition);
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let schema = self.schema();
        let input_schema = self.input.schema();
        let query = self.query.clone();
        let columns = self.columns.clone();
        let device = self.device.clone();
        let min_rows = self.min_rows;
        let original = Arc::clone(&self.original);
        let leaf = Arc::clone(&self.input);
        let out_schema = Arc::clone(&schema);
        let output = futures::stream::once(async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if let Some(device) = device.filter(|_| rows as u64 >= min_rows) {
                // A value the plan's state type cannot hold falls back too.
                let attempt = run_on_gpu(&device, &query, &columns, &batches)
                    .map_err(|e| e.to_string())
                    .and_then(|values| {
                        state_batch(&out_schema, &values).map_err(|e| e.to_string())
                    });
                match attempt {
                    Ok(state) => {
                        gpu_rows.add(rows);
                        return Ok(vec![state]);
                    }
                    Err(e) => tracing::debug!("GPU aggregate falls back to the CPU: {e}"),
                }
            }
            cpu_rows.add(rows);
            let memory: Arc<dyn ExecutionPlan> =
                MemorySourceConfig::try_new_exec(&[batches], input_schema, None)?;
            // `collect` merges the plan's partitions, if it has several.
            collect(replace_leaf(&original, &leaf, memory)?, context).await
        })
        .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            output.boxed(),
        )))
    }
}

fn run_on_gpu(
    device: &GpuDevice,
    query: &FusedAggregate,
    columns: &[usize],
    batches: &[RecordBatch],
) -> std::result::Result<Vec<AggregateValue>, GpuError> {
    let selected: Vec<Vec<ArrayRef>> = batches
        .iter()
        .map(|b| columns.iter().map(|&c| Arc::clone(b.column(c))).collect())
        .collect();
    if selected.is_empty() {
        return Err(GpuError::Unsupported("an empty partition".to_string()));
    }
    let on_device = HostBatch::from_arrow(&selected)?.upload(device)?;
    query.run_gpu(device, &on_device)
}

/// One row of partial aggregate state: one column per aggregate (SUM, COUNT,
/// MIN and MAX each keep one state value).
fn state_batch(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    values: &[AggregateValue],
) -> Result<RecordBatch> {
    if schema.fields().len() != values.len() {
        return Err(DataFusionError::Internal(format!(
            "GPU aggregate produced {} values for {} state columns",
            values.len(),
            schema.fields().len()
        )));
    }
    let columns = schema
        .fields()
        .iter()
        .zip(values)
        .map(|(field, value)| scalar(field.data_type(), value)?.to_array())
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// `value` as a scalar of `data_type`, rescaling decimals.
fn scalar(data_type: &DataType, value: &AggregateValue) -> Result<ScalarValue> {
    let mismatch =
        || DataFusionError::Internal(format!("GPU aggregate value {value:?} as {data_type}"));
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
        // A state type of fewer digits than the value would lose them.
        assert!(scalar(&DataType::Decimal128(38, 1), &decimal).is_err());
        assert!(scalar(&DataType::Utf8, &decimal).is_err());
    }
}
