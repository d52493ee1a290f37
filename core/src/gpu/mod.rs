//! Placing operators on a GPU: the plan rewrite that replaces a supported
//! subtree by [`GpuAggregateExec`], used by executors (on each decoded
//! stage plan) and by embedded sessions (as a physical optimizer rule).
//!
//! Supported today: a partial aggregate (SUM, COUNT, MIN, MAX, AVG over
//! integer, date, decimal and float expressions) over an optional
//! projection and filter, without GROUP BY (the shape of TPC-H Q6) or
//! grouped by integer, date and string columns (the shape of Q1). Anything
//! else stays on the CPU, with the reason logged at debug level.

mod cache;
mod exec;
mod output;
mod placement;
mod translate;

use std::sync::{Arc, OnceLock};

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use ember_gpu::{GpuDevice, GpuMode};

pub use cache::{CachedScan, GpuCachePolicy, cached_bytes};
pub use exec::{CHUNK_ROWS, GpuAggregateExec};
pub use placement::{GpuKernel, GpuPlacement, StateSource, placement};

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
/// where no GPU is present). Scans of tables `cache` covers keep their
/// columns in device memory.
pub fn rewrite_for_gpu(
    plan: Arc<dyn ExecutionPlan>,
    device: Option<Arc<GpuDevice>>,
    min_rows: u64,
    cache: &GpuCachePolicy,
) -> Result<Arc<dyn ExecutionPlan>> {
    rewrite(plan, device, min_rows, cache, false)
}

/// [`rewrite_for_gpu`] as a session's Ember settings ask: on this process's
/// GPU where `ember.gpu` allows (`force` without one is an error), with
/// `ember.gpu_min_rows` and `ember.gpu_cache_tables`; the plan unchanged
/// otherwise. Executors (per stage) and embedded sessions both use it.
pub fn rewrite_with_settings(
    plan: Arc<dyn ExecutionPlan>,
    settings: &EmberConfig,
) -> Result<Arc<dyn ExecutionPlan>> {
    match gpu_for(settings.gpu)? {
        Some(device) => rewrite_for_gpu(
            plan,
            Some(device),
            settings.gpu_min_rows,
            &GpuCachePolicy::parse(&settings.gpu_cache_tables),
        ),
        None => Ok(plan),
    }
}

/// [`rewrite_for_gpu`] without a device, running the kernels' CPU
/// references instead: the GPU path's translation, kernel semantics and
/// output on any machine (what tests compare with the CPU plan).
pub fn rewrite_for_cpu_reference(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    rewrite(plan, None, 0, &GpuCachePolicy::default(), true)
}

fn rewrite(
    plan: Arc<dyn ExecutionPlan>,
    device: Option<Arc<GpuDevice>>,
    min_rows: u64,
    cache: &GpuCachePolicy,
    reference: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
            return Ok(Transformed::no(node));
        };
        match placement(aggregate) {
            Ok(placement) => {
                let cached = device
                    .as_ref()
                    .and_then(|_| CachedScan::new(&placement.scan, cache));
                let mut exec = GpuAggregateExec::new(
                    Arc::clone(&node),
                    placement,
                    device.clone(),
                    min_rows,
                    cached,
                );
                if reference {
                    exec = exec.with_reference();
                }
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

#[cfg(test)]
mod tests;
