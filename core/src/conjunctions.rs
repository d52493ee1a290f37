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
//! written. Comparisons of one column
//! with literals (`d >= x AND d < y`) stay together and are estimated
//! together, as the range they make. Estimates come from the filter input's statistics:
//! a comparison of a column with literals, from the column's minimum and
//! maximum, and equality from its distinct count where known; what
//! statistics cannot tell gets a fixed share (equality 1/10, `LIKE` 1/10,
//! a comparison of two columns 1/3, anything else 1/2), as the order only
//! needs the more selective conjuncts first, not exact counts. The filter's
//! own estimate for the planner is kept as it was.
//!
//! The rule runs last but for the sanity check, after every rule that
//! pushes filters into scans, and leaves filters alone whose predicate is
//! volatile or dynamic. `ember.ordered_conjunctions` (on by default) turns
//! it off.

mod expr;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, DynamicFilterPhysicalExpr, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr,
    Literal, NotExpr,
};
use datafusion::physical_expr::utils::{conjunction, split_conjunction};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::statistics::StatisticsContext;
use datafusion::physical_plan::{ExecutionPlan, Statistics, StatisticsArgs};

pub use expr::{ORDERED_CONJUNCTION_WIRE, OrderedConjunction};

use crate::EmberConfig;

/// The share of rows an equality with a literal keeps where the column's
/// distinct count is unknown.
const EQUALITY_SELECTIVITY: f64 = 0.1;
/// The share of rows a `LIKE` keeps.
const LIKE_SELECTIVITY: f64 = 0.1;
/// The share of rows a comparison that statistics cannot read keeps (two
/// columns, or a column without a minimum and maximum).
const COMPARISON_SELECTIVITY: f64 = 1.0 / 3.0;
/// The share of rows any other predicate keeps.
const OTHER_SELECTIVITY: f64 = 0.5;
/// The share of rows `IS NULL` keeps where the null count is unknown.
const NULL_SELECTIVITY: f64 = 0.05;

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
            (rows > 0.0).then(|| (kept / rows * 100.0).round().clamp(1.0, 100.0) as u8)
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

/// Comparisons of one column with literals, estimated together, or one
/// other conjunct.
struct ConjunctGroup {
    /// The column compared, for a group of comparisons.
    column: Option<usize>,
    members: Vec<Arc<dyn PhysicalExpr>>,
}

/// `conjuncts` in the order to evaluate them: groups of comparisons of one
/// column with literals, and every other conjunct on its own, fewest rows
/// kept first (the written order among equals); within a group likewise.
fn evaluation_order(
    conjuncts: &[&Arc<dyn PhysicalExpr>],
    statistics: Option<&Statistics>,
) -> Vec<Arc<dyn PhysicalExpr>> {
    let mut groups: Vec<ConjunctGroup> = Vec::new();
    for conjunct in conjuncts {
        let column = column_comparison(conjunct).map(|comparison| comparison.column.index());
        match groups
            .iter_mut()
            .find(|group| column.is_some() && group.column == column)
        {
            Some(group) => group.members.push(Arc::clone(conjunct)),
            None => groups.push(ConjunctGroup {
                column,
                members: vec![Arc::clone(conjunct)],
            }),
        }
    }
    let by_selectivity = |members: Vec<Arc<dyn PhysicalExpr>>| {
        let mut members: Vec<_> = members
            .into_iter()
            .map(|member| (selectivity_of(&member, statistics), member))
            .collect();
        members.sort_by(|a, b| a.0.total_cmp(&b.0));
        members.into_iter().map(|(_, member)| member)
    };
    let mut groups: Vec<_> = groups
        .into_iter()
        .map(|group| (group_selectivity(&group.members, statistics), group.members))
        .collect();
    groups.sort_by(|a, b| a.0.total_cmp(&b.0));
    groups
        .into_iter()
        .flat_map(|(_, members)| by_selectivity(members))
        .collect()
}

/// The estimated share of rows all of `members` (conjuncts on one column,
/// or one conjunct) keep: as one range where each compares the column with
/// a literal, otherwise as independent conjuncts.
fn group_selectivity(members: &[Arc<dyn PhysicalExpr>], statistics: Option<&Statistics>) -> f64 {
    let comparisons: Option<Vec<_>> = members.iter().map(column_comparison).collect();
    if let Some(comparisons) = comparisons
        && let Some(selectivity) = range_selectivity(&comparisons, statistics)
    {
        return selectivity;
    }
    members
        .iter()
        .map(|member| selectivity_of(member, statistics))
        .product()
}

/// `column op literal`, with the literal written on either side.
struct ColumnComparison<'a> {
    column: &'a Column,
    op: Operator,
    value: &'a ScalarValue,
}

/// `expr` as a comparison of a column with a literal, if it is one.
fn column_comparison(expr: &Arc<dyn PhysicalExpr>) -> Option<ColumnComparison<'_>> {
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    let op = *binary.op();
    if !matches!(
        op,
        Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
    ) {
        return None;
    }
    let (left, right) = (binary.left(), binary.right());
    if let (Some(column), Some(literal)) = (
        left.downcast_ref::<Column>(),
        right.downcast_ref::<Literal>(),
    ) {
        return Some(ColumnComparison {
            column,
            op,
            value: literal.value(),
        });
    }
    let (column, literal) = (
        right.downcast_ref::<Column>()?,
        left.downcast_ref::<Literal>()?,
    );
    Some(ColumnComparison {
        column,
        op: op.swap()?,
        value: literal.value(),
    })
}

/// The share of rows the comparisons of one column with literals keep
/// together, from the column's minimum, maximum and distinct count; `None`
/// where the statistics lack them or the values are not numbers, dates or
/// times.
fn range_selectivity(
    comparisons: &[ColumnComparison<'_>],
    statistics: Option<&Statistics>,
) -> Option<f64> {
    let column = comparisons.first()?.column.index();
    let stats = statistics?.column_statistics.get(column)?;
    let min = as_number(stats.min_value.get_value()?)?;
    let max = as_number(stats.max_value.get_value()?)?;
    let (mut low, mut high, mut equality) = (min, max, false);
    for comparison in comparisons {
        let value = as_number(comparison.value)?;
        match comparison.op {
            Operator::Gt | Operator::GtEq => low = low.max(value),
            Operator::Lt | Operator::LtEq => high = high.min(value),
            _ => {
                low = low.max(value);
                high = high.min(value);
                equality = true;
            }
        }
    }
    if high < low {
        return Some(0.0);
    }
    if equality {
        return Some(match stats.distinct_count {
            Precision::Exact(count) | Precision::Inexact(count) if count > 0 => 1.0 / count as f64,
            _ => EQUALITY_SELECTIVITY,
        });
    }
    if max <= min {
        return Some(1.0);
    }
    Some(((high - low) / (max - min)).clamp(0.0, 1.0))
}

/// A number, date or time as a point on a line (decimals scaled, dates in
/// days, times in their unit).
fn as_number(value: &ScalarValue) -> Option<f64> {
    Some(match value {
        ScalarValue::Int8(Some(v)) => f64::from(*v),
        ScalarValue::Int16(Some(v)) => f64::from(*v),
        ScalarValue::Int32(Some(v)) | ScalarValue::Date32(Some(v)) => f64::from(*v),
        ScalarValue::Int64(Some(v))
        | ScalarValue::Date64(Some(v))
        | ScalarValue::TimestampSecond(Some(v), _)
        | ScalarValue::TimestampMillisecond(Some(v), _)
        | ScalarValue::TimestampMicrosecond(Some(v), _)
        | ScalarValue::TimestampNanosecond(Some(v), _) => *v as f64,
        ScalarValue::UInt8(Some(v)) => f64::from(*v),
        ScalarValue::UInt16(Some(v)) => f64::from(*v),
        ScalarValue::UInt32(Some(v)) => f64::from(*v),
        ScalarValue::UInt64(Some(v)) => *v as f64,
        ScalarValue::Float32(Some(v)) => f64::from(*v),
        ScalarValue::Float64(Some(v)) => *v,
        ScalarValue::Decimal128(Some(v), _, scale) => *v as f64 / 10f64.powi(i32::from(*scale)),
        _ => return None,
    })
}

/// The estimated share of rows `expr` keeps on its own (see the
/// [module documentation](self) for the shares assumed where statistics
/// cannot tell).
fn selectivity_of(expr: &Arc<dyn PhysicalExpr>, statistics: Option<&Statistics>) -> f64 {
    if let Some(comparison) = column_comparison(expr)
        && let Some(selectivity) = range_selectivity(&[comparison], statistics)
    {
        return selectivity;
    }
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        let (left, right) = (binary.left(), binary.right());
        return match binary.op() {
            Operator::And => selectivity_of(left, statistics) * selectivity_of(right, statistics),
            Operator::Or => {
                let (a, b) = (
                    selectivity_of(left, statistics),
                    selectivity_of(right, statistics),
                );
                a + b - a * b
            }
            Operator::Eq | Operator::IsNotDistinctFrom => EQUALITY_SELECTIVITY,
            Operator::NotEq | Operator::IsDistinctFrom => 1.0 - EQUALITY_SELECTIVITY,
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => COMPARISON_SELECTIVITY,
            Operator::LikeMatch | Operator::ILikeMatch => LIKE_SELECTIVITY,
            Operator::NotLikeMatch | Operator::NotILikeMatch => 1.0 - LIKE_SELECTIVITY,
            _ => OTHER_SELECTIVITY,
        };
    }
    if let Some(in_list) = expr.downcast_ref::<InListExpr>() {
        let kept = (in_list.list().len() as f64 * EQUALITY_SELECTIVITY).min(1.0);
        return if in_list.negated() { 1.0 - kept } else { kept };
    }
    if let Some(like) = expr.downcast_ref::<LikeExpr>() {
        return if like.negated() {
            1.0 - LIKE_SELECTIVITY
        } else {
            LIKE_SELECTIVITY
        };
    }
    if let Some(not) = expr.downcast_ref::<NotExpr>() {
        return 1.0 - selectivity_of(not.arg(), statistics);
    }
    if let Some(is_null) = expr.downcast_ref::<IsNullExpr>() {
        return null_share(is_null.arg(), statistics);
    }
    if let Some(is_not_null) = expr.downcast_ref::<IsNotNullExpr>() {
        return 1.0 - null_share(is_not_null.arg(), statistics);
    }
    OTHER_SELECTIVITY
}

/// The share of `expr`'s values that are null: from the column's null
/// count where `expr` is a column with one, else [`NULL_SELECTIVITY`].
fn null_share(expr: &Arc<dyn PhysicalExpr>, statistics: Option<&Statistics>) -> f64 {
    let share = || {
        let statistics = statistics?;
        let column = expr.downcast_ref::<Column>()?;
        let nulls = *statistics
            .column_statistics
            .get(column.index())?
            .null_count
            .get_value()? as f64;
        let rows = *statistics.num_rows.get_value()? as f64;
        (rows > 0.0).then(|| (nulls / rows).clamp(0.0, 1.0))
    };
    share().unwrap_or(NULL_SELECTIVITY)
}
