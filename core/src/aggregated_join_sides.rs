//! Hash join sides chosen with the groups an aggregated input makes.
//!
//! DataFusion's `JoinSelection` builds a partitioned hash join on the side
//! its statistics say is smaller. An aggregate's statistics count as many
//! rows as its input unless its grouping columns' distinct counts are
//! known, which Parquet files do not record; so an aggregate of millions of
//! rows into a few thousand groups counts as millions. `INTERSECT` and
//! `EXCEPT` are such joins: TPC-DS Q14's `cross_items` intersects the
//! distinct brand, class and category of 1.6 M store sales (3,840 rows) with
//! those of 860,000 catalog sales, and the 860,000 rows became the build
//! side, hashed in 200 ms, where hashing the 3,840 and probing with the
//! rest costs a few milliseconds.
//!
//! [`BuildAggregatedSides`] runs right after `JoinSelection`. For each
//! partitioned hash join whose sides may swap, it estimates a side that is
//! an aggregate (under projections, filters, exchanges, sorts and semi
//! joins, which never add rows) by its groups,
//! as [`crate::one_step_aggregates`] does (each grouping column followed
//! down to the node that makes it; the columns of one node hold at most the
//! product of their distinct values there and at most its rows), other
//! sides by their statistics, and swaps the join's sides where the build
//! side is estimated at more than twice the probe side and one of the two
//! estimates is an aggregate's. Broadcast joins keep their sides: their
//! build side is small by DataFusion's size limits or Ember's broadcast
//! rule. `ember.join_sides_by_group_estimates` turns the rule off.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::statistics::StatisticsContext;

use crate::config::EmberConfig;
use crate::join_order::row_count;
use crate::one_step_aggregates::estimated_groups;

/// How many times the probe side's estimated rows the build side's must
/// exceed for the sides to swap: estimates err, and a swap on a near tie
/// gains little.
const SWAP_RATIO: f64 = 2.0;

/// Swaps the sides of partitioned hash joins whose build side is estimated
/// larger once aggregates count their groups (see the
/// [module documentation](self)).
#[derive(Debug, Default, Clone, Copy)]
pub struct BuildAggregatedSides;

impl PhysicalOptimizerRule for BuildAggregatedSides {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !EmberConfig::from_options(config).join_sides_by_group_estimates
            || !config.optimizer.join_reordering
        {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            // A context per join: its cache is keyed by the nodes'
            // addresses, which nodes made since the walk replaced others
            // may reuse.
            let statistics = StatisticsContext::new();
            match swapped(&node, &statistics)? {
                Some(swapped) => Ok(Transformed::yes(swapped)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "ember_build_aggregated_sides"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` with its sides swapped, where it is a partitioned hash join
/// whose build side is estimated at more than [`SWAP_RATIO`] times its
/// probe side, one of them an aggregate estimated by its groups.
fn swapped(
    node: &Arc<dyn ExecutionPlan>,
    statistics: &StatisticsContext,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(join) = node.downcast_ref::<HashJoinExec>() else {
        return Ok(None);
    };
    if *join.partition_mode() != PartitionMode::Partitioned
        || join.null_aware
        || join.fetch().is_some()
        || !join.join_type().supports_swap()
    {
        return Ok(None);
    }
    let (Some(build), Some(probe)) = (
        estimated_rows(join.left(), statistics),
        estimated_rows(join.right(), statistics),
    ) else {
        return Ok(None);
    };
    let by_groups = build.by_groups || probe.by_groups;
    if !by_groups || build.rows <= SWAP_RATIO * probe.rows {
        return Ok(None);
    }
    join.swap_inputs(PartitionMode::Partitioned).map(Some)
}

/// A join side's estimated rows.
#[derive(Debug, Clone, Copy)]
struct SideEstimate {
    rows: f64,
    /// Whether the side is an aggregate estimated by its groups.
    by_groups: bool,
}

/// `side`'s estimated rows: an aggregate's groups where `side` is one
/// (under operators that never add rows, see [`aggregate_below`]) and its groups are fewer than its statistics say, else its
/// statistics' rows.
fn estimated_rows(
    side: &Arc<dyn ExecutionPlan>,
    statistics: &StatisticsContext,
) -> Option<SideEstimate> {
    let rows = row_count(side, statistics);
    let groups = aggregate_below(side)
        .and_then(|(grouping, input)| estimated_groups(grouping.group_expr(), input, statistics))
        .map(|(groups, _)| groups);
    match (rows, groups) {
        (Some(rows), Some(groups)) if groups < rows => Some(SideEstimate {
            rows: groups,
            by_groups: true,
        }),
        (None, Some(groups)) => Some(SideEstimate {
            rows: groups,
            by_groups: true,
        }),
        (Some(rows), _) => Some(SideEstimate {
            rows,
            by_groups: false,
        }),
        (None, None) => None,
    }
}

/// The aggregate that groups the rows of `side`, found under projections,
/// filters, exchanges, merges of partitions, sorts and the kept side of
/// semi and anti joins (none of which adds rows), and the input its grouping
/// reads: its own for a one-step aggregate, its partial step's for a final
/// one. `None` for grouping sets and aggregates without grouping.
fn aggregate_below(
    side: &Arc<dyn ExecutionPlan>,
) -> Option<(&AggregateExec, &Arc<dyn ExecutionPlan>)> {
    let mut node = side;
    let aggregate = loop {
        node = if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            projection.input()
        } else if let Some(filter) = node.downcast_ref::<FilterExec>() {
            filter.input()
        } else if let Some(exchange) = node.downcast_ref::<RepartitionExec>() {
            exchange.input()
        } else if let Some(merge) = node.downcast_ref::<CoalescePartitionsExec>() {
            merge.input()
        } else if let Some(sort) = node.downcast_ref::<SortExec>() {
            sort.input()
        } else if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            // A semi or anti join keeps some rows of one side.
            match join.join_type() {
                JoinType::LeftSemi | JoinType::LeftAnti => join.left(),
                JoinType::RightSemi | JoinType::RightAnti => join.right(),
                _ => return None,
            }
        } else {
            break node.downcast_ref::<AggregateExec>()?;
        };
    };
    let grouping = match aggregate.mode() {
        AggregateMode::Single | AggregateMode::SinglePartitioned => aggregate,
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            let mut below = aggregate.input();
            while let Some(exchange) = below.downcast_ref::<RepartitionExec>() {
                below = exchange.input();
            }
            let partial = below.downcast_ref::<AggregateExec>()?;
            (*partial.mode() == AggregateMode::Partial).then_some(partial)?
        }
        AggregateMode::Partial | AggregateMode::PartialReduce => return None,
    };
    let group_by = grouping.group_expr();
    (group_by.is_single() && !group_by.is_empty()).then_some((grouping, grouping.input()))
}

#[cfg(test)]
mod tests;
