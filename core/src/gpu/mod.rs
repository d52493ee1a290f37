//! Placing operators on a GPU: the plan rewrite that replaces a supported
//! subtree by [`GpuFusedAggregateExec`], used by executors (on each decoded
//! stage plan) and by embedded sessions (as a physical optimizer rule).
//!
//! Supported today: a partial aggregate without GROUP BY (SUM, COUNT, MIN,
//! MAX over integer, date, decimal and float expressions) over an optional
//! filter, the shape of TPC-H Q6. Anything else stays on the CPU, with the
//! reason logged at debug level.

mod exec;
mod translate;

use std::sync::{Arc, OnceLock};

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use ember_gpu::{Aggregate, AggregateFunction, FusedAggregate, GpuDevice, GpuMode};

pub use exec::GpuFusedAggregateExec;
use translate::{UsedColumns, translate};

use crate::config::EmberConfig;

/// This process's GPU, or why it has none; detected once.
fn detected_gpu() -> &'static std::result::Result<Arc<GpuDevice>, String> {
    static DEVICE: OnceLock<std::result::Result<Arc<GpuDevice>, String>> = OnceLock::new();
    DEVICE.get_or_init(|| {
        GpuDevice::open(0).map_err(|e| {
            tracing::debug!("GPU path off: {e}");
            e.to_string()
        })
    })
}

/// This process's GPU (`None` where there is none).
pub fn process_gpu() -> Option<Arc<GpuDevice>> {
    detected_gpu().as_ref().ok().cloned()
}

/// The GPU to plan for under `mode`: `None` for `off` or where none is
/// present; an error for `force` without one.
pub fn gpu_for(mode: GpuMode) -> Result<Option<Arc<GpuDevice>>> {
    match mode {
        GpuMode::Off => Ok(None),
        GpuMode::Auto => Ok(process_gpu()),
        GpuMode::Force => match detected_gpu() {
            Ok(device) => Ok(Some(Arc::clone(device))),
            Err(reason) => Err(DataFusionError::Configuration(format!(
                "ember.gpu = force, but {reason}"
            ))),
        },
    }
}

/// Rewrites every supported subtree of `plan` to run on `device` (or, with
/// `None`, to the same operator running its CPU fallback: what tests use
/// where no GPU is present).
pub fn rewrite_for_gpu(
    plan: Arc<dyn ExecutionPlan>,
    device: Option<Arc<GpuDevice>>,
    min_rows: u64,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
            return Ok(Transformed::no(node));
        };
        match fused_aggregate(aggregate) {
            Ok((query, scan, columns)) => {
                let exec = GpuFusedAggregateExec::new(
                    Arc::clone(&node),
                    scan,
                    query,
                    columns,
                    device.clone(),
                    min_rows,
                )?;
                Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
            }
            Err(reason) => {
                tracing::debug!("aggregate stays on the CPU: {reason}");
                Ok(Transformed::no(node))
            }
        }
    })
    .map(|t| t.data)
}

/// What an aggregate subtree becomes on the GPU: the fused query, the plan
/// below it that feeds the kernel, and the input columns the kernel reads.
type FusedPlacement = (FusedAggregate, Arc<dyn ExecutionPlan>, Vec<usize>);

/// The [`FusedPlacement`] of an aggregate subtree, or why there is none.
fn fused_aggregate(aggregate: &AggregateExec) -> std::result::Result<FusedPlacement, String> {
    if *aggregate.mode() != AggregateMode::Partial {
        return Err("not a partial aggregate".to_string());
    }
    if !aggregate.group_expr().is_empty() {
        return Err("GROUP BY is not supported on the GPU yet".to_string());
    }
    if aggregate.filter_expr().iter().any(Option::is_some) {
        return Err("aggregate FILTER clauses".to_string());
    }
    let input = aggregate.input();
    let (scan, filter, projection): (Arc<dyn ExecutionPlan>, _, Option<Vec<usize>>) =
        match input.downcast_ref::<FilterExec>() {
            Some(filter) => (
                Arc::clone(filter.input()),
                Some(Arc::clone(filter.predicate())),
                filter.projection().as_ref().map(|p| p.to_vec()),
            ),
            None => (Arc::clone(input), None, None),
        };
    let scan_schema = scan.schema();
    let scan_types: Vec<_> = scan_schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let mut used = UsedColumns::default();
    let filter = filter
        .map(|predicate| translate(&predicate, None, &scan_types, &mut used))
        .transpose()?;
    let mut aggregates = Vec::new();
    for expr in aggregate.aggr_expr() {
        if expr.is_distinct() {
            return Err(format!("{}: DISTINCT", expr.name()));
        }
        let function = match expr.fun().name() {
            "sum" => AggregateFunction::Sum,
            "count" => AggregateFunction::Count,
            "min" => AggregateFunction::Min,
            "max" => AggregateFunction::Max,
            other => return Err(format!("aggregate `{other}`")),
        };
        let inputs = expr.expressions();
        let [input] = inputs.as_slice() else {
            return Err(format!("{} with {} arguments", expr.name(), inputs.len()));
        };
        let input = translate(input, projection.as_deref(), &scan_types, &mut used)?;
        aggregates.push(Aggregate::new(function, input));
    }
    let query = FusedAggregate { filter, aggregates };
    query
        .validate(&translate::gpu_types(&used, &scan_types))
        .map_err(|e| e.to_string())?;
    Ok((query, scan, used.scan))
}

/// The embedded session's physical optimizer rule: [`rewrite_for_gpu`]
/// where `ember.gpu` and the machine allow.
#[derive(Debug, Default)]
pub struct GpuPlacementRule;

impl PhysicalOptimizerRule for GpuPlacementRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let settings = config
            .extensions
            .get::<EmberConfig>()
            .cloned()
            .unwrap_or_default();
        match gpu_for(settings.gpu)? {
            Some(device) => rewrite_for_gpu(plan, Some(device), settings.gpu_min_rows),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "ember_gpu_placement"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
