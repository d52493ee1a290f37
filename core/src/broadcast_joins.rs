//! Broadcast hash joins chosen by cost, embedded.
//!
//! DataFusion's `JoinSelection` broadcasts a join's build side
//! (`PartitionMode::CollectLeft`) only under fixed limits
//! (`datafusion.optimizer.hash_join_single_partition_threshold`, 1 MiB,
//! and `…_rows`, 128 Ki rows). Any larger build side makes a partitioned
//! join, for which both inputs are hash-repartitioned. Where the probe side
//! is far larger than the build side (a fact table against filtered
//! dimensions: TPC-H Q5 joins 60 M `lineitem` rows with 2.3 M rows of
//! `orders` and `customer`), repartitioning the probe side costs more than
//! hashing the whole build side in one thread, which is what a broadcast
//! costs: one hash table that every partition then probes where its rows
//! already are.
//!
//! [`BroadcastJoinsByCost`] runs right after `JoinSelection` (before the
//! exchanges are placed) in embedded sessions, and broadcasts the build
//! side of a partitioned join whose probe side is estimated at
//! `ember.broadcast_join_probe_ratio` rows per build row for each thread
//! past the first, or more. Hashing a build row costs about as much as
//! repartitioning a few rows, and a broadcast hashes in one thread what a
//! partitioned join hashes in all of them: the more threads, the larger the
//! probe side must be. Only joins whose every output row comes from a probe
//! row are broadcast (inner, right, right semi/anti/mark), the ones
//! `ember-memory`'s adaptive join still spills for where the build side
//! does not fit; joins that emit unmatched build rows stay partitioned.
//! Clusters keep their own broadcast limit
//! ([`crate::distributed_joins`]): there a broadcast copies the build side
//! to every task.

use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::statistics::StatisticsContext;
use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs};

use crate::config::EmberConfig;

/// Broadcasts the build sides of embedded partitioned hash joins whose
/// probe sides are large enough against them (see the
/// [module documentation](self)).
#[derive(Debug, Default, Clone, Copy)]
pub struct BroadcastJoinsByCost;

impl PhysicalOptimizerRule for BroadcastJoinsByCost {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ratio = EmberConfig::from_options(config).broadcast_join_probe_ratio;
        let threads = config.execution.target_partitions as u64;
        if ratio == 0 || threads < 2 || config.extensions.get::<BallistaConfig>().is_some() {
            return Ok(plan);
        }
        let probe_rows_per_build_row = ratio.saturating_mul(threads - 1);
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if !broadcastable(join) || !probe_outweighs_build(join, probe_rows_per_build_row) {
                return Ok(Transformed::no(node));
            }
            let broadcast = join
                .builder()
                .with_partition_mode(PartitionMode::CollectLeft)
                .build_exec()?;
            Ok(Transformed::yes(broadcast))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "ember_broadcast_joins_by_cost"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `join` is a partitioned join whose build side may be broadcast:
/// every output row comes from a probe row (so one shared build side never
/// repeats or misses a row, and the adaptive join can still spill it), and
/// nothing but its mode would change.
fn broadcastable(join: &HashJoinExec) -> bool {
    *join.partition_mode() == PartitionMode::Partitioned
        && !join.null_aware
        && join.fetch().is_none()
        && matches!(
            join.join_type(),
            JoinType::Inner
                | JoinType::Right
                | JoinType::RightSemi
                | JoinType::RightAnti
                | JoinType::RightMark
        )
}

/// Whether `join`'s probe side is estimated at `ratio` rows per build row
/// or more; `false` where either side's rows are unknown.
fn probe_outweighs_build(join: &HashJoinExec, ratio: u64) -> bool {
    match (estimated_rows(join.left()), estimated_rows(join.right())) {
        (Some(build), Some(probe)) => build.saturating_mul(ratio) <= probe,
        _ => false,
    }
}

/// The rows `plan`'s statistics estimate it returns, where they know.
fn estimated_rows(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let statistics = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok()?;
    statistics.num_rows.get_value().map(|&rows| rows as u64)
}

#[cfg(test)]
mod tests;
