//! Grouped aggregates with nearly as many groups as input rows, in one step.
//!
//! DataFusion plans a grouped aggregate over several partitions in two
//! steps: a partial aggregate in each input partition, a hash exchange on
//! the grouping columns, and a final aggregate that merges the partial
//! states of each group. The partial step pays where it reduces the rows
//! the exchange moves. Where nearly every group has only a few rows (TPC-H
//! Q18 sums `lineitem` by `l_orderkey`, four rows a group), it builds a hash
//! table as large as the final one, of states the final step hashes again,
//! and holds both in memory at once. DataFusion's own remedy, a partial
//! aggregate that stops grouping once its first rows
//! (`datafusion.execution.skip_partial_aggregation_probe_rows_threshold`)
//! show more groups than `…_probe_ratio_threshold` of the rows (0.8), does
//! not reach Q18's ratio of one group in four rows.
//!
//! [`OneStepHighCardinalityAggregates`] runs right after DataFusion's
//! `CombinePartialFinalAggregate`, once the exchanges are placed. A final
//! aggregate that reads a hash exchange of a partial aggregate, on the
//! partial aggregate's grouping columns, becomes one aggregate
//! (`SinglePartitioned`) over a hash exchange of the partial aggregate's
//! input, where the grouping columns' statistics estimate at least
//! `ember.one_step_aggregate_groups_percent` groups per hundred input rows.
//! Each grouping column is followed down to the node that makes it (a
//! scan, an aggregate, a union); the columns of one such node hold at most
//! the product of their distinct values there (their count, or the span of
//! their minimum and maximum) and at most its rows, so that three columns
//! of a 18,000-row `item` table never count as more than 18,000 groups;
//! the groups are the product over those nodes, at most the input's rows.
//! An aggregate of fewer than 100,000 estimated groups keeps both steps:
//! its partial hash table stays in the processor's caches, and estimates
//! of rows below joins err most (TPC-DS Q14 grouped millions of sales rows
//! into 2,500 item groups, but its semi joins were estimated to keep a few
//! thousand rows, and one step made it 6% slower). Aggregates
//! whose groups or input rows have no estimate, grouping sets, aggregates
//! that need ordered input and those with a limit are left alone. On a
//! cluster the exchange becomes a shuffle, which then moves every input
//! row instead of the partial states (TPC-H SF 10 Q18 was 15% slower in
//! one step on a local cluster): the rule is for embedded sessions only.

use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{PhysicalExpr, physical_exprs_equal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::StatisticsContext;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, StatisticsArgs,
};

use crate::config::EmberConfig;
use crate::join_order::{distinct_values, row_count};

/// Merges the partial and final steps of grouped aggregates whose
/// statistics estimate nearly as many groups as input rows (see the
/// [module documentation](self)).
#[derive(Debug, Default, Clone, Copy)]
pub struct OneStepHighCardinalityAggregates;

impl PhysicalOptimizerRule for OneStepHighCardinalityAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let percent = EmberConfig::from_options(config).one_step_aggregate_groups_percent;
        if percent == 0 || config.extensions.get::<BallistaConfig>().is_some() {
            return Ok(plan);
        }
        let groups_per_row = percent as f64 / 100.0;
        plan.transform_down(|node| match one_step(&node, groups_per_row)? {
            Some(merged) => Ok(Transformed::new(merged, true, TreeNodeRecursion::Continue)),
            None => Ok(Transformed::no(node)),
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "ember_one_step_high_cardinality_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The two steps an aggregate may be merged from: its final step, the hash
/// exchange below it and the partial step below that.
struct TwoStepAggregate<'a> {
    last: &'a AggregateExec,
    exchange: &'a RepartitionExec,
    first: &'a AggregateExec,
}

impl<'a> TwoStepAggregate<'a> {
    /// `node` as a final aggregate over a hash exchange of its partial
    /// aggregate, where nothing but the two steps' modes tells them apart:
    /// one set of grouping columns, the same aggregates and filters, no
    /// limit, no ordered input or aggregate that needs one.
    fn of(node: &'a Arc<dyn ExecutionPlan>) -> Option<Self> {
        let last = node.downcast_ref::<AggregateExec>()?;
        let exchange = last.input().downcast_ref::<RepartitionExec>()?;
        let first = exchange.input().downcast_ref::<AggregateExec>()?;
        let same_steps = *last.mode() == AggregateMode::FinalPartitioned
            && *first.mode() == AggregateMode::Partial
            && first.group_expr().is_single()
            && !first.group_expr().is_empty()
            && physical_exprs_equal(
                &first.group_expr().output_exprs(),
                &last.group_expr().input_exprs(),
            )
            && first.aggr_expr() == last.aggr_expr()
            && first.filter_expr() == last.filter_expr()
            && last.limit_options().is_none()
            && first.limit_options().is_none()
            && first.input_order_mode() == &datafusion::physical_plan::InputOrderMode::Linear
            && first
                .aggr_expr()
                .iter()
                .all(|aggregate| aggregate.order_bys().is_empty())
            && !exchange.preserve_order();
        same_steps.then_some(Self {
            last,
            exchange,
            first,
        })
    }

    /// The exchange's hash keys as expressions over the partial step's
    /// input: each must be one of the partial step's grouping columns.
    fn keys_over_input(&self) -> Option<(Vec<Arc<dyn PhysicalExpr>>, usize)> {
        let Partitioning::Hash(keys, partitions) = self.exchange.partitioning() else {
            return None;
        };
        let grouping = self.first.group_expr().expr();
        let keys = keys
            .iter()
            .map(|key| {
                let column = key.downcast_ref::<Column>()?;
                let (expr, name) = grouping.get(column.index())?;
                (name == column.name()).then(|| Arc::clone(expr))
            })
            .collect::<Option<Vec<_>>>()?;
        Some((keys, *partitions))
    }

    /// The estimated groups and input rows ([`estimated_groups`]).
    fn groups_and_rows(&self, statistics: &StatisticsContext) -> Option<(f64, f64)> {
        estimated_groups(self.first.group_expr(), self.first.input(), statistics)
    }

    /// One `SinglePartitioned` aggregate with the partial step's grouping,
    /// aggregates and filters, over a hash exchange of its input on `keys`.
    fn merged(
        &self,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        partitions: usize,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = Arc::clone(self.first.input());
        let exchange = RepartitionExec::try_new(input, Partitioning::Hash(keys, partitions))?;
        let merged = AggregateExec::try_new(
            AggregateMode::SinglePartitioned,
            self.first.group_expr().clone(),
            self.first.aggr_expr().to_vec(),
            self.first.filter_expr().to_vec(),
            Arc::new(exchange),
            self.first.input_schema(),
        )?;
        Ok(Arc::new(merged))
    }
}

/// The estimated groups of grouping `group_by` over `input`, and
/// `input`'s rows. The grouping columns are followed down to the nodes that
/// make them (a scan, an aggregate, a union: through projections, filters,
/// exchanges and joins); the columns from one such node hold at most the
/// product of their distinct values there and at most its rows, and the
/// groups are the product over the nodes, at most the input's rows. `None`
/// where a grouping expression is not a column or its distinct values are
/// not known.
pub(crate) fn estimated_groups(
    group_by: &PhysicalGroupBy,
    input: &Arc<dyn ExecutionPlan>,
    statistics: &StatisticsContext,
) -> Option<(f64, f64)> {
    let rows = row_count(input, statistics)?;
    if rows < 1.0 {
        return None;
    }
    // Per node that makes grouping columns: its rows and the product
    // of those columns' distinct values.
    let mut origins: Vec<(Arc<dyn ExecutionPlan>, f64, f64)> = Vec::new();
    for (expr, _) in group_by.expr() {
        let column = expr.downcast_ref::<Column>()?;
        let (origin, index) = column_origin(input, column.index());
        let stats = statistics
            .compute(origin.as_ref(), &StatisticsArgs::new())
            .ok()?;
        let origin_rows = (*stats.num_rows.get_value()? as f64).max(1.0);
        let distinct = distinct_values(stats.column_statistics.get(index)?)?.max(1.0);
        match origins
            .iter_mut()
            .find(|(node, ..)| Arc::ptr_eq(node, &origin))
        {
            Some((_, _, product)) => *product *= distinct,
            None => origins.push((origin, origin_rows, distinct)),
        }
    }
    let groups: f64 = origins
        .iter()
        .map(|(_, origin_rows, product)| product.min(*origin_rows))
        .product();
    Some((groups.min(rows), rows))
}

/// The node below `plan` that makes its `column`, and the column's index
/// there: followed down through projections of columns, filters,
/// exchanges, merges of partitions, hash joins and the grouping columns of
/// aggregates.
pub(crate) fn column_origin(
    plan: &Arc<dyn ExecutionPlan>,
    column: usize,
) -> (Arc<dyn ExecutionPlan>, usize) {
    let (mut node, mut column) = (Arc::clone(plan), column);
    loop {
        let below = if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            let Some(source) = projection
                .expr()
                .get(column)
                .and_then(|projected| projected.expr.downcast_ref::<Column>())
            else {
                break;
            };
            Some((Arc::clone(projection.input()), source.index()))
        } else if let Some(filter) = node.downcast_ref::<FilterExec>() {
            match filter.projection() {
                Some(projection) => projection
                    .get(column)
                    .map(|&index| (Arc::clone(filter.input()), index)),
                None => Some((Arc::clone(filter.input()), column)),
            }
        } else if let Some(exchange) = node.downcast_ref::<RepartitionExec>() {
            Some((Arc::clone(exchange.input()), column))
        } else if let Some(merge) = node.downcast_ref::<CoalescePartitionsExec>() {
            Some((Arc::clone(merge.input()), column))
        } else if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            join_input_column(join, column)
        } else if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
            grouped_input_column(aggregate, column)
        } else {
            None
        };
        match below {
            Some((input, index)) => (node, column) = (input, index),
            None => break,
        }
    }
    (node, column)
}

/// The input of `aggregate` and the column in it that the aggregate's
/// output `column` groups by, where the column is a grouping column that
/// is a column of the input: an aggregate's grouping column holds at most
/// the distinct values of the input's column (TPC-DS Q14's `INTERSECT`
/// groups the distinct rows of another `INTERSECT`). Grouping sets, whose
/// columns also hold NULLs, end the walk.
fn grouped_input_column(
    aggregate: &AggregateExec,
    column: usize,
) -> Option<(Arc<dyn ExecutionPlan>, usize)> {
    let group_by = aggregate.group_expr();
    if !group_by.is_single() {
        return None;
    }
    let (expr, _) = group_by.expr().get(column)?;
    let source = expr.downcast_ref::<Column>()?;
    Some((Arc::clone(aggregate.input()), source.index()))
}

/// The input of `join` and the column in it that the join's output
/// `column` holds, where the output column is an input's.
fn join_input_column(
    join: &HashJoinExec,
    column: usize,
) -> Option<(Arc<dyn ExecutionPlan>, usize)> {
    let column = match &join.projection {
        Some(projection) => *projection.get(column)?,
        None => column,
    };
    let left_columns = join.left().schema().fields().len();
    let right_columns = join.right().schema().fields().len();
    let (left, right) = (Arc::clone(join.left()), Arc::clone(join.right()));
    match join.join_type() {
        JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
            if column < left_columns {
                Some((left, column))
            } else {
                Some((right, column - left_columns))
            }
        }
        JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
            (column < left_columns).then_some((left, column))
        }
        JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
            (column < right_columns).then_some((right, column))
        }
    }
}

/// The fewest estimated groups for which an aggregate runs in one step:
/// the hash table of fewer groups stays in the processor's caches, where
/// the partial step costs little and still spares the exchange rows.
const MIN_GROUPS: f64 = 100_000.0;

/// `node` aggregated in one step, where it is a two-step aggregate with at
/// least [`MIN_GROUPS`] estimated groups, and `groups_per_row` of its input
/// rows, and whose merged form has the same output.
fn one_step(
    node: &Arc<dyn ExecutionPlan>,
    groups_per_row: f64,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(aggregate) = TwoStepAggregate::of(node) else {
        return Ok(None);
    };
    let Some((keys, partitions)) = aggregate.keys_over_input() else {
        return Ok(None);
    };
    // A context of its own: its cache is keyed by the nodes' addresses,
    // which nodes made since the walk replaced others may reuse.
    let statistics = &StatisticsContext::new();
    if aggregate
        .groups_and_rows(statistics)
        .is_none_or(|(groups, rows)| groups < MIN_GROUPS || groups < groups_per_row * rows)
    {
        return Ok(None);
    }
    let merged = aggregate.merged(keys, partitions)?;
    let same_output = merged.schema().fields() == aggregate.last.schema().fields()
        && merged.output_partitioning().partition_count()
            == node.output_partitioning().partition_count();
    Ok(same_output.then_some(merged))
}

#[cfg(test)]
mod tests;
