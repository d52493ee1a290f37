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
//! probe side must be. The probe side's rows are counted after the dynamic
//! filters of the broadcast joins above it: where one of them keys on
//! columns of this join's probe side alone (by name), the scan drops the
//! rows its build side cannot match, estimated as its build rows against the
//! key's distinct values (TPC-H Q21: the suppliers of one nation drop most of the
//! `lineitem` rows that meet the `orders` rows below them). A side that is
//! itself an inner join is counted as [`crate::join_order`] counts it, a
//! key/foreign-key join of the tables its keys come from, where DataFusion's
//! statistics undercount it or know nothing (TPC-H Q8: the 3.6 M
//! `lineitem` rows of one region's orders, against 13 K parts of one type,
//! are broadcast against). Only joins whose
//! every output row comes from a probe
//! row are broadcast (inner, right, right semi/anti/mark), the ones
//! `ember-memory`'s adaptive join still spills for where the build side
//! does not fit; joins that emit unmatched build rows stay partitioned.
//! Clusters keep their own broadcast limit
//! ([`crate::distributed_joins`]): there a broadcast copies the build side
//! to every task.

use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use datafusion::common::JoinType;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::StatisticsContext;
use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs};

use crate::config::EmberConfig;
use crate::distributed_joins::probe_driven;
use crate::join_order::{distinct_values, key_join_rows, origin_statistics, row_count};
use crate::one_step_aggregates::column_origin;

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
        let probe_rows_per_build_row = ratio.saturating_mul(threads - 1) as f64;
        // One walk's statistics for the whole pass: it reads only the nodes
        // of `plan`, which stay alive until it returns.
        let statistics = StatisticsContext::new();
        broadcast_by_cost(plan, probe_rows_per_build_row, &[], &statistics)
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
        && probe_driven(*join.join_type())
}

/// A dynamic filter that a broadcast join above a subplan pushes into its
/// probe side: the rows whose key (`columns`, together) its build side
/// lacks are dropped at the scan, all but `kept` of them.
#[derive(Debug, Clone)]
struct ProbeSideFilter {
    /// The names of the probe side's key columns. The filter is one
    /// predicate over all of them: it reaches only a subplan that holds
    /// them all.
    columns: Vec<String>,
    /// The share of rows the filter is estimated to keep: the build side's
    /// rows against the key's distinct values.
    kept: f64,
}

/// `plan` with its joins broadcast where the probe side has `ratio` rows
/// per build row or more, top down: `filters` are the dynamic filters of
/// the broadcast joins above, which shrink the probe side of a join below
/// them where its probe side (not its build side) holds their key column.
fn broadcast_by_cost(
    plan: Arc<dyn ExecutionPlan>,
    ratio: f64,
    filters: &[ProbeSideFilter],
    statistics: &StatisticsContext,
) -> Result<Arc<dyn ExecutionPlan>> {
    let Some(join) = plan.downcast_ref::<HashJoinExec>() else {
        let children = plan
            .children()
            .into_iter()
            .map(|child| broadcast_by_cost(Arc::clone(child), ratio, filters, statistics))
            .collect::<Result<Vec<_>>>()?;
        return replace_children_if_necessary(plan, children);
    };
    let build = estimated_rows(join.left(), statistics);
    let broadcast = broadcastable(join)
        && match (build, estimated_rows(join.right(), statistics)) {
            (Some(build), Some(probe)) => build * ratio <= probe * share_kept(filters, join),
            _ => false,
        };
    let mut probe_filters = filters.to_vec();
    if (broadcast || *join.partition_mode() == PartitionMode::CollectLeft)
        && drops_unmatched_probe_rows(*join.join_type())
        && let Some(build) = build
    {
        probe_filters.extend(own_probe_filter(join, build, statistics));
    }
    let children = vec![
        broadcast_by_cost(Arc::clone(join.left()), ratio, filters, statistics)?,
        broadcast_by_cost(Arc::clone(join.right()), ratio, &probe_filters, statistics)?,
    ];
    if broadcast {
        return join
            .builder()
            .with_partition_mode(PartitionMode::CollectLeft)
            .with_new_children(children)?
            .build_exec();
    }
    replace_children_if_necessary(plan, children)
}

/// The rows `plan` is estimated to make: an inner hash join on columns by
/// [`inner_join_rows`], projections, merges and exchanges of partitions as
/// their input, anything else by its statistics.
///
/// DataFusion's statistics divide a join's rows by the larger of its key
/// columns' distinct values as they stand after the filters and joins
/// below, or know nothing where a side is itself a join: TPC-H Q8's
/// `orders` of one region's customers (900 K rows) against `lineitem`
/// (60 M) come out at 900 K rows where 3.6 M match, too few to broadcast
/// the 13 K parts of one type joined with them next.
fn estimated_rows(plan: &Arc<dyn ExecutionPlan>, statistics: &StatisticsContext) -> Option<f64> {
    if let Some(join) = plan.downcast_ref::<HashJoinExec>()
        && let Some(rows) = inner_join_rows(join, statistics)
    {
        return Some(rows);
    }
    let passes_rows_on = plan.is::<ProjectionExec>()
        || plan.is::<CoalescePartitionsExec>()
        || plan.is::<RepartitionExec>();
    match plan.children().as_slice() {
        [input] if passes_rows_on => estimated_rows(input, statistics),
        _ => row_count(plan, statistics),
    }
}

/// The rows of `join`, an inner join on columns, as Ember's join order
/// estimates them ([`key_join_rows`]): each key column's distinct values
/// are those of the table it comes from (followed down through filters,
/// projections, exchanges and joins), so that a filter on the key's side
/// shrinks the join in proportion. `None` for other joins and where a
/// side's rows or a key's table's rows are unknown.
fn inner_join_rows(join: &HashJoinExec, statistics: &StatisticsContext) -> Option<f64> {
    if *join.join_type() != JoinType::Inner {
        return None;
    }
    let left_rows = estimated_rows(join.left(), statistics)?;
    let right_rows = estimated_rows(join.right(), statistics)?;
    let key_origin = |side: &Arc<dyn ExecutionPlan>, key: &Arc<dyn PhysicalExpr>| {
        let (node, column) = column_origin(side, key.downcast_ref::<Column>()?.index());
        let origin = origin_statistics(&node, column, statistics)?;
        // The table's identity: its node, alive for the whole pass.
        Some((Arc::as_ptr(&node).cast::<()>() as usize, origin))
    };
    let keys = join
        .on()
        .iter()
        .map(|(left, right)| {
            Some((
                key_origin(join.left(), left)?,
                key_origin(join.right(), right)?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    key_join_rows(left_rows, right_rows, keys)
}

/// Whether a `join_type` join drops the probe rows its build side cannot
/// match, so that its dynamic filter may drop them at the probe side's scan.
fn drops_unmatched_probe_rows(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::RightSemi
    )
}

/// The dynamic filter broadcast `join` pushes into its probe side: one
/// predicate over all of its probe side's key columns, keeping the build
/// side's `build_rows` against the most distinct values any of those
/// columns has (a key of several columns has at least as many). None where
/// a key is not a plain column or no column's distinct values are known.
fn own_probe_filter(
    join: &HashJoinExec,
    build_rows: f64,
    statistics: &StatisticsContext,
) -> Option<ProbeSideFilter> {
    let columns = join
        .on()
        .iter()
        .map(|(_, probe_key)| Some(probe_key.downcast_ref::<Column>()?.name().to_string()))
        .collect::<Option<Vec<_>>>()?;
    let distinct = columns
        .iter()
        .filter_map(|column| distinct_values_of(join.right(), column, statistics))
        .reduce(f64::max)?;
    Some(ProbeSideFilter {
        columns,
        kept: (build_rows / distinct.max(1.0)).min(1.0),
    })
}

/// The distinct values of the column named `name` in `plan`, from the
/// statistics of the highest node in `plan` (itself or below, following the
/// name) that knows them: joins and aggregates above a scan often lose the
/// minimum and maximum the scan has.
fn distinct_values_of(
    plan: &Arc<dyn ExecutionPlan>,
    name: &str,
    statistics: &StatisticsContext,
) -> Option<f64> {
    let index = plan.schema().index_of(name).ok()?;
    let known = statistics
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok()
        .and_then(|known| distinct_values(known.column_statistics.get(index)?));
    known.or_else(|| {
        plan.children()
            .into_iter()
            .find_map(|child| distinct_values_of(child, name, statistics))
    })
}

/// The share of `join`'s probe rows that the dynamic filters from above
/// keep: those whose every key column only its probe side has (by name; a
/// column both sides name is not counted). A filter over columns of both
/// sides (TPC-H Q5's `(l_suppkey, c_nationkey)` above `orders ⋈ lineitem`)
/// reaches neither side's scan.
fn share_kept(filters: &[ProbeSideFilter], join: &HashJoinExec) -> f64 {
    let (build, probe) = (join.left().schema(), join.right().schema());
    filters
        .iter()
        .filter(|filter| {
            filter.columns.iter().all(|column| {
                probe.column_with_name(column).is_some() && build.column_with_name(column).is_none()
            })
        })
        .map(|filter| filter.kept)
        .product()
}

#[cfg(test)]
mod tests;
