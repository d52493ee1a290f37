//! Filters evaluate their most selective conjuncts first.
//!
//! DataFusion evaluates a filter's `a AND b AND …` in the order the query
//! wrote it, each conjunct on every row, except that once the conjuncts to
//! its left keep at most a fifth of a batch it evaluates the next one on
//! those rows, copying every column of the batch to get them and copying
//! the result back row by row. TPC-H's Q12 writes `l_shipmode IN (…)` and
//! two column comparisons before the one-year date range that keeps 1 row
//! in 7, so all of them ran on all 60 M rows at SF 10.
//!
//! [`EvaluateConjunctsInOrder`] sorts each filter's conjuncts by the share
//! of rows each is estimated to keep, fewest first. Equalities (`a = 1`,
//! `a = b`) stay plain conjuncts in front, as written, where DataFusion learns the
//! filter's equal columns and constants from; two or more others become an
//! [`OrderedConjunction`] after them, evaluated one after the other: once
//! less than half a batch is left, a conjunct reads only its own columns of
//! the rows still kept. A filter whose new predicate would change what it
//! tells the plan above (equal columns, constants, orderings) is left as
//! written. Comparisons of one column with literals (`d >= x AND d < y`)
//! stay together and are estimated together, as the range they make. The
//! estimates are [`crate::selectivity`]'s, from the filter input's
//! statistics, with a conjunct nothing is known of taken to keep half the
//! rows: the order only needs the more selective conjuncts first, not exact
//! counts. The filter's own estimate for the planner is kept as it was.
//!
//! The rule runs last but for the sanity check, after every rule that
//! pushes filters into scans, and leaves filters alone whose predicate is
//! volatile or dynamic. `ember.ordered_conjunctions` (on by default) turns
//! it off.

mod expr;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, DynamicFilterPhysicalExpr};
use datafusion::physical_expr::utils::{conjunction, split_conjunction};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::statistics::StatisticsContext;
use datafusion::physical_plan::{ExecutionPlan, Statistics, StatisticsArgs};

pub use expr::{ORDERED_CONJUNCTION_WIRE, OrderedConjunction};

use crate::EmberConfig;
use crate::selectivity::{SelectivityEstimate, as_percent, column_groups};

/// The share of rows a conjunct nothing is known of is taken to keep when
/// ordering conjuncts.
const UNKNOWN_SELECTIVITY: f64 = 0.5;

/// Gives each filter of two or more conjuncts an [`OrderedConjunction`],
/// most selective conjuncts first, where `ember.ordered_conjunctions` asks
/// for it (see the [module documentation](self)).
#[derive(Debug, Default, Clone, Copy)]
pub struct EvaluateConjunctsInOrder;

impl PhysicalOptimizerRule for EvaluateConjunctsInOrder {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !EmberConfig::from_options(config).ordered_conjunctions {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match ordered_filter(filter)? {
                Some(ordered) => Transformed::yes(ordered),
                None => Transformed::no(node),
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "ember_evaluate_conjuncts_in_order"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `filter` with its conjuncts in evaluation order, or `None` where it has
/// fewer than two, a volatile or dynamic one, is already in that order, or
/// the new predicate would change what the filter tells the plan above
/// (equal columns, constants).
///
/// Equalities (`a = 1`, `a = b`) stay plain conjuncts in front, in their
/// written order, where DataFusion reads the filter's equal columns and
/// constants from; the other conjuncts, where two or more, form the
/// [`OrderedConjunction`] after them.
fn ordered_filter(filter: &FilterExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let predicate = filter.predicate();
    let conjuncts = split_conjunction(predicate);
    let dynamic =
        predicate.exists(|expr| Ok(expr.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()))?;
    if conjuncts.len() < 2 || dynamic || is_volatile(predicate) {
        return Ok(None);
    }
    let statistics = StatisticsContext::new();
    let input_statistics = statistics
        .compute(filter.input().as_ref(), &StatisticsArgs::new())
        .ok();
    let (equalities, others): (Vec<_>, Vec<_>) = conjuncts
        .iter()
        .copied()
        .partition(|conjunct| is_equality(conjunct));
    let others = evaluation_order(&others, input_statistics.as_deref());
    let mut ordered: Vec<_> = equalities.into_iter().map(Arc::clone).collect();
    if others.len() >= 2 {
        ordered.push(Arc::new(OrderedConjunction::try_new(others)?));
    } else {
        ordered.extend(others);
    }
    let unchanged = ordered.len() == conjuncts.len()
        && ordered
            .iter()
            .zip(&conjuncts)
            .all(|(now, written)| Arc::ptr_eq(now, written));
    if unchanged {
        return Ok(None);
    }
    let reordered = conjunction(ordered);
    // The planner's estimate for the filter stays what DataFusion made of
    // the written conjunction, which it may no longer be able to analyse.
    let selectivity = statistics
        .compute(filter, &StatisticsArgs::new())
        .ok()
        .zip(input_statistics.as_deref())
        .and_then(|(output, input)| {
            let kept = *output.num_rows.get_value()? as f64;
            let rows = *input.num_rows.get_value()? as f64;
            (rows > 0.0).then(|| as_percent(kept / rows))
        })
        .unwrap_or(filter.default_selectivity());
    let rebuilt = FilterExecBuilder::from(filter)
        .with_predicate(reordered)
        .with_default_selectivity(selectivity)
        .build()?;
    let (before, after) = (
        filter.properties().equivalence_properties(),
        rebuilt.properties().equivalence_properties(),
    );
    if !before.eq_group().iter().eq(after.eq_group().iter())
        || before.oeq_class() != after.oeq_class()
    {
        return Ok(None);
    }
    Ok(Some(Arc::new(rebuilt)))
}

/// Whether `expr` is an equality, from which DataFusion learns a filter's
/// equal columns and constants.
fn is_equality(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<BinaryExpr>()
        .is_some_and(|binary| *binary.op() == Operator::Eq)
}

/// `conjuncts` in the order to evaluate them: groups of comparisons of one
/// column with literals, and every other conjunct on its own, fewest rows
/// kept first (the written order among equals); within a group likewise.
fn evaluation_order(
    conjuncts: &[&Arc<dyn PhysicalExpr>],
    statistics: Option<&Statistics>,
) -> Vec<Arc<dyn PhysicalExpr>> {
    let estimate = SelectivityEstimate::new(statistics, UNKNOWN_SELECTIVITY);
    let by_selectivity = |members: Vec<Arc<dyn PhysicalExpr>>| {
        let mut members: Vec<_> = members
            .into_iter()
            .map(|member| (estimate.of(&member), member))
            .collect();
        members.sort_by(|a, b| a.0.total_cmp(&b.0));
        members.into_iter().map(|(_, member)| member)
    };
    let mut groups: Vec<_> = column_groups(conjuncts)
        .into_iter()
        .map(|group| (estimate.of_group(&group.members), group.members))
        .collect();
    groups.sort_by(|a, b| a.0.total_cmp(&b.0));
    groups
        .into_iter()
        .flat_map(|(_, members)| by_selectivity(members))
        .collect()
}
