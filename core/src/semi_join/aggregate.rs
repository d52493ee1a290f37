//! An optimizer rule that filters a grouped aggregate's input to the keys
//! its join can match, before the aggregate, with a semi join.
//!
//! DataFusion decorrelates a scalar subquery such as TPC-H Q17's
//! `(SELECT 0.2 * avg(l_quantity) FROM lineitem WHERE l_partkey = p_partkey)`
//! into an aggregate of the whole table by the correlated key, joined with
//! the outer query afterwards: at SF 10 all 60 M lines are grouped into 2 M
//! parts, of which the join keeps the 2,000-odd that the outer query's
//! filter on `part` lets through.
//!
//! Each group of an aggregate depends only on the input rows with its key,
//! and an inner join on that key keeps only the groups whose key the other
//! side holds. The other side's keys all come from one table, the one that
//! has the key column below the other side's inner joins; so the aggregate
//! can drop, before grouping, every input row whose key that table does not
//! hold: `(A ⋈ γ_k(B)) = (A ⋈ γ_k(B ⋉_k T))`, with `T` the table of `A` that
//! provides the key. The same holds for either side of a semi join, and for
//! the side of an outer, anti or mark join that the join does not return
//! whole (a group nothing matches there changes nothing). Where the other
//! side's key is itself the key of a semi join (`ps_partkey IN (SELECT
//! p_partkey FROM part WHERE …)`, as in TPC-H Q20), its values are among
//! the keys of that semi join's filtered table, which then serves as `T`.
//! The rule applies this when `T` is a filtered table
//! (a filter, or a scan's filter, over one table): reading it again is cheap
//! and its keys are fewer than the table's. Where `T` is read whole, every
//! key may match and nothing is saved, so the rule leaves the plan alone.
//! `SET ember.push_down_semi_joins = false` turns it off with
//! [`PushDownSemiJoin`](super::PushDownSemiJoin).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, NullEquality};
use datafusion::error::Result;
use datafusion::logical_expr::{
    Aggregate, Expr, Join, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::{enabled, is_whole_table, passes_columns_on, with_inputs};

/// The alias of the keys that the rule's semi joins read, by which it also
/// knows an aggregate it has already filtered.
const JOIN_KEYS_ALIAS: &str = "__ember_join_keys";

/// Filters the input of a grouped aggregate, joined on its group key with
/// an inner or semi join (or on the side an outer or anti join does not
/// keep whole), to the keys of the filtered table that the other side of
/// the join takes that key from (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct FilterAggregateByJoinKeys;

impl OptimizerRule for FilterAggregateByJoinKeys {
    fn name(&self) -> &str {
        "ember_filter_aggregate_by_join_keys"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(join) = &plan else {
            return Ok(Transformed::no(plan));
        };
        // `IS NOT DISTINCT FROM` keys match NULL with NULL, which the semi
        // join would drop.
        if join.null_equality != NullEquality::NullEqualsNothing || !enabled(config) {
            return Ok(Transformed::no(plan));
        }
        let (left_filterable, right_filterable) = filterable_sides(join.join_type);
        for (left_key, right_key) in &join.on {
            let (Expr::Column(left_key), Expr::Column(right_key)) = (left_key, right_key) else {
                continue;
            };
            if left_filterable
                && let Some(left) = filter_aggregate(&join.left, left_key, &join.right, right_key)?
            {
                let rewritten = with_inputs(join, Arc::new(left), join.right.clone())?;
                return Ok(Transformed::yes(rewritten));
            }
            if right_filterable
                && let Some(right) = filter_aggregate(&join.right, right_key, &join.left, left_key)?
            {
                let rewritten = with_inputs(join, join.left.clone(), Arc::new(right))?;
                return Ok(Transformed::yes(rewritten));
            }
        }
        Ok(Transformed::no(plan))
    }
}

/// Which sides of a `join_type` join (left, right) may lose the rows whose
/// key the other side lacks without changing what the join returns: both
/// of an inner or semi join; only the side an outer, anti or mark join
/// does not return every row of.
fn filterable_sides(join_type: JoinType) -> (bool, bool) {
    match join_type {
        JoinType::Inner | JoinType::LeftSemi | JoinType::RightSemi => (true, true),
        JoinType::Left | JoinType::LeftAnti | JoinType::LeftMark => (false, true),
        JoinType::Right | JoinType::RightAnti | JoinType::RightMark => (true, false),
        JoinType::Full => (false, false),
    }
}

/// `aggregate_side` with its aggregate's input filtered to the values of
/// `other_key` in the table of `other_side` that provides them, or `None`
/// where the rule does not apply. `key`: the column of `aggregate_side` that
/// the join compares with `other_key`.
fn filter_aggregate(
    aggregate_side: &LogicalPlan,
    key: &Column,
    other_side: &LogicalPlan,
    other_key: &Column,
) -> Result<Option<LogicalPlan>> {
    let Some((table, table_key)) = key_table(other_side, other_key) else {
        return Ok(None);
    };
    if !is_filtered_table(table) {
        return Ok(None);
    }
    let keys = LogicalPlanBuilder::from(table.clone())
        .project(vec![Expr::Column(table_key.clone())])?
        .alias(JOIN_KEYS_ALIAS)?
        .build()?;
    let keys_column = Column::new(Some(JOIN_KEYS_ALIAS), table_key.name.clone());
    filter_groups(aggregate_side, key, &keys, &keys_column)
}

/// The part of `plan` whose rows provide `column`, with the column there
/// that holds every value `column` can take: the input of `plan`'s inner
/// joins (and projections of columns) that holds it; for a semi join's key,
/// the other side's filtered table whose key it must match
/// (`ps_partkey IN (SELECT p_partkey FROM part WHERE …)` holds only the
/// parts the filter keeps).
fn key_table<'a>(plan: &'a LogicalPlan, column: &Column) -> Option<(&'a LogicalPlan, Column)> {
    match plan {
        LogicalPlan::Join(join) if join.join_type == JoinType::Inner => {
            if join.left.schema().has_column(column) {
                key_table(&join.left, column)
            } else if join.right.schema().has_column(column) {
                key_table(&join.right, column)
            } else {
                None
            }
        }
        LogicalPlan::Join(join)
            if matches!(join.join_type, JoinType::LeftSemi | JoinType::RightSemi) =>
        {
            semi_join_key_table(join, column)
        }
        LogicalPlan::Projection(projection) if passes_columns_on(&projection.expr) => {
            key_table(&projection.input, column)
        }
        _ => plan
            .schema()
            .has_column(column)
            .then(|| (plan, column.clone())),
    }
}

/// [`key_table`] of a semi join's `column`: where it is one of the join's
/// keys, the filtered table the other side's key comes from, else the
/// table it comes from on the side the join returns.
fn semi_join_key_table<'a>(join: &'a Join, column: &Column) -> Option<(&'a LogicalPlan, Column)> {
    let left_semi = join.join_type == JoinType::LeftSemi;
    let (kept, filtering) = if left_semi {
        (&join.left, &join.right)
    } else {
        (&join.right, &join.left)
    };
    if !kept.schema().has_column(column) {
        return None;
    }
    let keys_match_values = join.null_equality == NullEquality::NullEqualsNothing;
    let matched = join.on.iter().find_map(|(left, right)| {
        let (kept_key, filtering_key) = if left_semi {
            (left, right)
        } else {
            (right, left)
        };
        let (Expr::Column(kept_key), Expr::Column(filtering_key)) = (kept_key, filtering_key)
        else {
            return None;
        };
        if !keys_match_values || kept_key != column {
            return None;
        }
        key_table(filtering, filtering_key).filter(|(table, _)| is_filtered_table(table))
    });
    matched.or_else(|| key_table(kept, column))
}

/// Whether `plan` reads one table and filters it: a filter, or a scan with
/// filters or a limit, under projections of columns and aliases.
fn is_filtered_table(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Filter(filter) => reads_one_table(&filter.input),
        LogicalPlan::TableScan(_) => !is_whole_table(plan),
        LogicalPlan::Projection(projection) if passes_columns_on(&projection.expr) => {
            is_filtered_table(&projection.input)
        }
        LogicalPlan::SubqueryAlias(alias) => is_filtered_table(&alias.input),
        _ => false,
    }
}

/// Whether `plan` reads one table, through filters, projections of columns
/// and aliases.
fn reads_one_table(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::Filter(filter) => reads_one_table(&filter.input),
        LogicalPlan::Projection(projection) if passes_columns_on(&projection.expr) => {
            reads_one_table(&projection.input)
        }
        LogicalPlan::SubqueryAlias(alias) => reads_one_table(&alias.input),
        _ => false,
    }
}

/// `plan` with the input of the aggregate that groups by `key` semi-joined
/// with `keys` on `keys_column`, or `None` where `key` is not a group key of
/// an aggregate under aliases, projections and filters (`HAVING`), or that
/// aggregate is already filtered.
fn filter_groups(
    plan: &LogicalPlan,
    key: &Column,
    keys: &LogicalPlan,
    keys_column: &Column,
) -> Result<Option<LogicalPlan>> {
    let below = match plan {
        LogicalPlan::SubqueryAlias(alias) => {
            let Ok(index) = alias.schema.index_of_column(key) else {
                return Ok(None);
            };
            let input_key = Column::from(alias.input.schema().qualified_field(index));
            filter_groups(&alias.input, &input_key, keys, keys_column)?
        }
        LogicalPlan::Projection(projection) => {
            let Ok(index) = projection.schema.index_of_column(key) else {
                return Ok(None);
            };
            let Expr::Column(input_key) = projection.expr[index].clone().unalias() else {
                return Ok(None);
            };
            filter_groups(&projection.input, &input_key, keys, keys_column)?
        }
        LogicalPlan::Filter(filter) => filter_groups(&filter.input, key, keys, keys_column)?,
        LogicalPlan::Aggregate(aggregate) => {
            return filter_aggregate_input(aggregate, key, keys, keys_column);
        }
        _ => return Ok(None),
    };
    match below {
        Some(input) => Ok(Some(plan.with_new_exprs(plan.expressions(), vec![input])?)),
        None => Ok(None),
    }
}

/// `aggregate` over its input semi-joined with `keys`, when `key` is one of
/// its group keys (a column, without grouping sets) and its input is not
/// filtered by this rule already.
fn filter_aggregate_input(
    aggregate: &Aggregate,
    key: &Column,
    keys: &LogicalPlan,
    keys_column: &Column,
) -> Result<Option<LogicalPlan>> {
    let Ok(index) = aggregate.schema.index_of_column(key) else {
        return Ok(None);
    };
    let grouping_sets = aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)));
    let Some(Expr::Column(input_key)) = aggregate.group_expr.get(index) else {
        return Ok(None);
    };
    if grouping_sets || is_filtered_by_this_rule(&aggregate.input)? {
        return Ok(None);
    }
    let semi = Join::try_new(
        aggregate.input.clone(),
        Arc::new(keys.clone()),
        vec![(
            Expr::Column(input_key.clone()),
            Expr::Column(keys_column.clone()),
        )],
        None,
        JoinType::LeftSemi,
        JoinConstraint::On,
        NullEquality::NullEqualsNothing,
        false,
    )?;
    Ok(Some(LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(LogicalPlan::Join(semi)),
        aggregate.group_expr.clone(),
        aggregate.aggr_expr.clone(),
    )?)))
}

/// Whether `plan` reads keys this rule added, so that optimizer passes after
/// the first do not filter the same aggregate again.
fn is_filtered_by_this_rule(plan: &LogicalPlan) -> Result<bool> {
    plan.exists(|node| {
        Ok(matches!(node, LogicalPlan::SubqueryAlias(alias)
            if alias.alias.table() == JOIN_KEYS_ALIAS))
    })
}
