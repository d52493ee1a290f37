//! An optimizer rule that applies a semi join (`IN (subquery)`,
//! `EXISTS`) below the inner joins it sits on, on the one table whose rows
//! it filters, so that those joins get fewer rows.
//!
//! DataFusion turns `o_orderkey IN (SELECT l_orderkey ...)` into a left semi
//! join on top of the query's `FROM` joins: in TPC-H Q18 every row of
//! `customer ⋈ orders ⋈ lineitem` (all of `lineitem`) is joined first and
//! only then filtered down to the few orders the subquery keeps. A semi join
//! only removes rows of its left input, by columns of that input, so it
//! commutes with an inner join when its keys (and any condition of its own)
//! use columns of one side only: `(A ⋈ B) ⋉ S = (A ⋉ S) ⋈ B`.
//!
//! Moving it is not always cheaper: the semi join then probes every row of
//! `A`, where before it probed the join's result, which is smaller when the
//! other side `B` is filtered. So the rule moves a semi join below an inner
//! join only when `B` is a table read whole (no filter, no limit): then each
//! row of `A` meets as many rows of `B` as the join has, the join's result
//! is at least as large as the rows of `A` that find a partner, and
//! filtering `A` first can only save work. The rule is on by default and
//! `SET ember.push_down_semi_joins = false` turns it off.
//!
//! The second rule here, [`FilterAggregateByJoinKeys`], adds a semi join of
//! its own: below a grouped aggregate that an inner join reads, it drops the
//! rows whose key the join cannot match (TPC-H Q17's correlated average).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, Projection};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use crate::config::EmberConfig;

mod aggregate;

pub use aggregate::FilterAggregateByJoinKeys;

/// Moves a left semi join below the inner joins of its left input, onto the
/// side whose columns it uses, when the other side is a whole table (see the
/// module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct PushDownSemiJoin;

impl OptimizerRule for PushDownSemiJoin {
    fn name(&self) -> &str {
        "ember_push_down_semi_join"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(semi) = &plan else {
            return Ok(Transformed::no(plan));
        };
        if semi.join_type != JoinType::LeftSemi || !enabled(config) {
            return Ok(Transformed::no(plan));
        }
        let used = left_columns_used(semi);
        match push_below(&semi.left, semi, &used)? {
            Some(pushed) => Ok(Transformed::yes(pushed)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// Whether the session lets Ember's semi-join rules rewrite plans
/// (`ember.push_down_semi_joins`, on unless set off).
fn enabled(config: &dyn OptimizerConfig) -> bool {
    EmberConfig::from_options(&config.options()).push_down_semi_joins
}

/// The columns of the semi join's left input that its keys and condition
/// use.
fn left_columns_used(semi: &Join) -> HashSet<Column> {
    let left = semi.left.schema();
    let mut used: HashSet<Column> = semi
        .on
        .iter()
        .flat_map(|(l, _)| l.column_refs())
        .cloned()
        .collect();
    if let Some(filter) = &semi.filter {
        used.extend(
            filter
                .column_refs()
                .into_iter()
                .filter(|c| left.has_column(c))
                .cloned(),
        );
    }
    used
}

/// `plan` (the semi join's left input, or a part of it) with `semi` applied
/// below its inner join, or `None` where the rule does not apply. `used`:
/// the columns of `plan` that `semi` uses. Looks through projections that
/// only pass columns on, which keep the columns' names.
fn push_below(
    plan: &LogicalPlan,
    semi: &Join,
    used: &HashSet<Column>,
) -> Result<Option<LogicalPlan>> {
    let wrap = |input: Arc<LogicalPlan>| with_inputs(semi, input, semi.right.clone());
    match plan {
        LogicalPlan::Projection(projection) if passes_columns_on(&projection.expr) => {
            let Some(input) = push_below(&projection.input, semi, used)? else {
                return Ok(None);
            };
            Ok(Some(LogicalPlan::Projection(Projection::try_new(
                projection.expr.clone(),
                Arc::new(input),
            )?)))
        }
        LogicalPlan::Join(join) if join.join_type == JoinType::Inner => {
            let on_left = used.iter().all(|c| join.left.schema().has_column(c));
            let on_right = used.iter().all(|c| join.right.schema().has_column(c));
            let (left, right) = if on_left && is_whole_table(&join.right) {
                (Arc::new(wrap(join.left.clone())?), join.right.clone())
            } else if on_right && is_whole_table(&join.left) {
                (join.left.clone(), Arc::new(wrap(join.right.clone())?))
            } else {
                return Ok(None);
            };
            Ok(Some(with_inputs(join, left, right)?))
        }
        _ => Ok(None),
    }
}

/// `join` over new inputs, whose schemas hold the columns its keys and
/// condition use.
fn with_inputs(
    join: &Join,
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Join(Join::try_new(
        left,
        right,
        join.on.clone(),
        join.filter.clone(),
        join.join_type,
        join.join_constraint,
        join.null_equality,
        join.null_aware,
    )?))
}

/// Whether every expression is a bare column, so that the projection's
/// output columns are its input's, under the same names.
fn passes_columns_on(exprs: &[Expr]) -> bool {
    exprs.iter().all(|e| matches!(e, Expr::Column(_)))
}

/// Whether `plan` reads a table whole: a scan with no filter and no limit,
/// under any projections of columns and aliases.
fn is_whole_table(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => scan.filters.is_empty() && scan.fetch.is_none(),
        LogicalPlan::Projection(projection) if passes_columns_on(&projection.expr) => {
            is_whole_table(&projection.input)
        }
        LogicalPlan::SubqueryAlias(alias) => is_whole_table(&alias.input),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
