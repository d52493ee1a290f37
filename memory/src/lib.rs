//! `ember-memory`: queries that finish within the memory they are given.
//!
//! DataFusion's sorts, aggregates and sort-merge joins spill to disk when
//! the memory pool refuses them more; its hash join does not, and a query
//! whose join build side outgrows the pool fails. This crate owns what
//! Ember adds so that every query completes within its memory:
//!
//! * [`adaptive_join`]: [`AdaptiveJoinExec`], a hash join that falls back,
//!   per partition, to a grace hash join that spills when its build side
//!   does not fit; [`adapt_hash_joins`] puts it in place of every partitioned
//!   hash join of a physical plan (embedded sessions as a physical optimizer
//!   rule, executors on each stage plan);
//! * [`pool`]: the memory an embedded session may use by default (a share of
//!   the machine's or container's memory) and the pool that enforces it;
//! * [`spill`]: what a query spilled, summed over its operators;
//! * [`size`]: byte sizes as users write them (`512MiB`, `4GiB`);
//! * [`allocator`]: the allocator tuned to give freed memory back at once.
//!
//! It knows nothing of settings or processes: callers decide when to adapt
//! a plan and how large a pool is.

pub mod adaptive_join;
pub mod allocator;
pub mod pool;
pub mod size;
pub mod spill;

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::HashJoinExec;

pub use adaptive_join::{AdaptiveJoinExec, AdaptiveJoinOptions, is_resources_exhausted};
pub use pool::{
    EMBEDDED_MEMORY_FRACTION, OVERCOMMIT_PERCENT, POOL_FRACTION, SoftLimitPool,
    default_embedded_limit, machine_memory, memory_pool, pool_for_process, sort_merge_reservation,
    task_context_with, task_context_within_pool,
};
pub use size::{ByteSize, ParseByteSizeError};
pub use spill::SpillTotals;

/// Replaces every hash join of `plan` that [`AdaptiveJoinExec::supports`]
/// by an [`AdaptiveJoinExec`]; other nodes are kept as they are.
pub fn adapt_hash_joins(
    plan: Arc<dyn ExecutionPlan>,
    options: AdaptiveJoinOptions,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| match node.downcast_ref::<HashJoinExec>() {
        Some(join) if AdaptiveJoinExec::supports(join) => Ok(Transformed::yes(Arc::new(
            AdaptiveJoinExec::try_new(join, options)?,
        )
            as Arc<dyn ExecutionPlan>)),
        _ => Ok(Transformed::no(node)),
    })
    .map(|transformed| transformed.data)
}
