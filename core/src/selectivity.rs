//! The share of rows a predicate keeps, estimated from its shape and its
//! input's statistics.
//!
//! DataFusion estimates a filter's rows by interval analysis of its
//! predicate, which reads comparisons of number, date and time columns with
//! literals only. Any other predicate (a string equality, a `LIKE`, a
//! comparison of two columns, or a conjunction holding one of them) keeps
//! `datafusion.optimizer.default_filter_selectivity` of its input, 20%: TPC-H's
//! `p_name LIKE 'forest%'` (1 part in 90) and `p_type = 'ECONOMY ANODIZED
//! STEEL'` (1 in 150) look like a fifth of `part`, too large to broadcast
//! and too large for the join order to put them first.
//!
//! [`SelectivityEstimate`] estimates the share of rows a predicate keeps.
//! Conjuncts are independent, except comparisons of one column with
//! literals (`d >= x AND d < y`), which are estimated together as the range
//! they make, from the column's minimum and maximum (numbers, decimals,
//! dates, times); equality from the column's distinct count, or for whole
//! numbers and dates from the span of its values. What statistics cannot
//! tell gets a fixed share: equality 1/10, a comparison of two columns 1/3,
//! `IS NULL` 1/20 (or the null count), a `LIKE` 1/10, halved for each of
//! its pattern's literal characters past the third (a longer pattern is
//! rarer: `'forest%'` keeps 1/80), `OR`, `NOT` and `IN` combined from those,
//! and anything else a share the caller chooses.
//!
//! [`EstimateFilterSelectivity`] gives each filter whose predicate
//! DataFusion's analysis cannot read that estimate as its planner estimate
//! (`FilterExec`'s default selectivity, in whole percents, at least 1%),
//! before Ember's join order and DataFusion's `JoinSelection` read it, so
//! both see a small filtered table as small. Predicates it knows nothing of
//! keep DataFusion's default. `ember.filter_selectivity_estimates` (on by
//! default) turns it off.

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
    BinaryExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal, NotExpr,
};
use datafusion::physical_expr::intervals::utils::check_support;
use datafusion::physical_expr::utils::split_conjunction;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::statistics::StatisticsContext;
use datafusion::physical_plan::{ExecutionPlan, Statistics, StatisticsArgs};

use crate::EmberConfig;

/// The share of rows an equality with a literal keeps where the column's
/// distinct count is unknown.
const EQUALITY_SELECTIVITY: f64 = 0.1;
/// The share of rows a `LIKE` pattern with a wildcard and up to
/// [`LIKE_SHORT_PATTERN`] literal characters keeps.
const LIKE_SELECTIVITY: f64 = 0.1;
/// The literal characters a `LIKE` pattern may have before each further one
/// halves the share it keeps.
const LIKE_SHORT_PATTERN: i32 = 3;
/// The share of rows a comparison that statistics cannot read keeps (two
/// columns, or a column without a minimum and maximum).
const COMPARISON_SELECTIVITY: f64 = 1.0 / 3.0;
/// The share of rows `IS NULL` keeps where the null count is unknown.
const NULL_SELECTIVITY: f64 = 0.05;

/// Sets the planner estimate of each filter whose predicate DataFusion's
/// interval analysis cannot read from Ember's [`SelectivityEstimate`],
/// where `ember.filter_selectivity_estimates` asks for it (see the
/// [module documentation](self)).
#[derive(Debug, Default, Clone, Copy)]
pub struct EstimateFilterSelectivity;

impl PhysicalOptimizerRule for EstimateFilterSelectivity {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !EmberConfig::from_options(config).filter_selectivity_estimates {
            return Ok(plan);
        }
        let unknown = f64::from(config.optimizer.default_filter_selectivity) / 100.0;
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match estimated_filter(filter, unknown)? {
                Some(estimated) => Transformed::yes(estimated),
                None => Transformed::no(node),
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "ember_estimate_filter_selectivity"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `filter` with Ember's estimate of its predicate as its default
/// selectivity, or `None` where DataFusion's analysis reads the predicate
/// or the estimate is what the filter already has. `unknown` is the share
/// assumed for predicates nothing is known of.
fn estimated_filter(filter: &FilterExec, unknown: f64) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let predicate = filter.predicate();
    if check_support(predicate, &filter.input().schema()) {
        return Ok(None);
    }
    let statistics = StatisticsContext::new()
        .compute(filter.input().as_ref(), &StatisticsArgs::new())
        .ok();
    let share = SelectivityEstimate::new(statistics.as_deref(), unknown).of_predicate(predicate);
    let percent = as_percent(share);
    if percent == filter.default_selectivity() {
        return Ok(None);
    }
    let estimated = FilterExecBuilder::from(filter)
        .with_default_selectivity(percent)
        .build()?;
    Ok(Some(Arc::new(estimated)))
}

/// A share of rows as the whole percent a `FilterExec` takes as its
/// default selectivity: rounded, at least 1 (a filter estimated to keep
/// nothing would make every plan above it look free).
pub(crate) fn as_percent(share: f64) -> u8 {
    (share * 100.0).round().clamp(1.0, 100.0) as u8
}

/// Comparisons of one column with literals, estimated together, or one
/// other conjunct.
pub(crate) struct ConjunctGroup {
    /// The column compared, for a group of comparisons.
    column: Option<usize>,
    /// The conjuncts, in the order given.
    pub(crate) members: Vec<Arc<dyn PhysicalExpr>>,
}

/// `conjuncts` grouped: the comparisons of each column with literals
/// together (where the first of them stood), every other conjunct on its
/// own.
pub(crate) fn column_groups(conjuncts: &[&Arc<dyn PhysicalExpr>]) -> Vec<ConjunctGroup> {
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
    groups
}

/// Estimates the share of rows predicates keep over an input with the
/// given statistics (see the [module documentation](self)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SelectivityEstimate<'a> {
    statistics: Option<&'a Statistics>,
    /// The share assumed for a predicate nothing is known of.
    unknown: f64,
}

impl<'a> SelectivityEstimate<'a> {
    /// Estimates over an input with `statistics` (where known), taking
    /// predicates nothing is known of to keep `unknown` of the rows.
    pub(crate) fn new(statistics: Option<&'a Statistics>, unknown: f64) -> Self {
        Self {
            statistics,
            unknown,
        }
    }

    /// The share of rows `predicate` keeps: its conjuncts' groups
    /// ([`column_groups`]) taken as independent.
    pub(crate) fn of_predicate(&self, predicate: &Arc<dyn PhysicalExpr>) -> f64 {
        column_groups(&split_conjunction(predicate))
            .iter()
            .map(|group| self.of_group(&group.members))
            .product()
    }

    /// The share of rows all of `members` (conjuncts on one column, or one
    /// conjunct) keep: as one range where each compares the column with a
    /// literal, otherwise as independent conjuncts.
    pub(crate) fn of_group(&self, members: &[Arc<dyn PhysicalExpr>]) -> f64 {
        let comparisons: Option<Vec<_>> = members.iter().map(column_comparison).collect();
        if let Some(comparisons) = comparisons
            && let Some(selectivity) = self.of_range(&comparisons)
        {
            return selectivity;
        }
        members.iter().map(|member| self.of(member)).product()
    }

    /// The share of rows `expr` keeps on its own.
    pub(crate) fn of(&self, expr: &Arc<dyn PhysicalExpr>) -> f64 {
        if let Some(comparison) = column_comparison(expr)
            && let Some(selectivity) = self.of_range(&[comparison])
        {
            return selectivity;
        }
        if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
            return self.of_binary(binary);
        }
        if let Some(in_list) = expr.downcast_ref::<InListExpr>() {
            let kept = (in_list.list().len() as f64 * EQUALITY_SELECTIVITY).min(1.0);
            return if in_list.negated() { 1.0 - kept } else { kept };
        }
        if let Some(like) = expr.downcast_ref::<LikeExpr>() {
            let kept = like_selectivity(like.pattern());
            return if like.negated() { 1.0 - kept } else { kept };
        }
        if let Some(not) = expr.downcast_ref::<NotExpr>() {
            return 1.0 - self.of(not.arg());
        }
        if let Some(is_null) = expr.downcast_ref::<IsNullExpr>() {
            return self.null_share(is_null.arg());
        }
        if let Some(is_not_null) = expr.downcast_ref::<IsNotNullExpr>() {
            return 1.0 - self.null_share(is_not_null.arg());
        }
        self.unknown
    }

    /// The share of rows a binary expression keeps (one that is not a
    /// comparison of a column with a literal whose statistics are known).
    fn of_binary(&self, binary: &BinaryExpr) -> f64 {
        let (left, right) = (binary.left(), binary.right());
        match binary.op() {
            Operator::And => self.of(left) * self.of(right),
            Operator::Or => {
                let (a, b) = (self.of(left), self.of(right));
                a + b - a * b
            }
            Operator::Eq | Operator::IsNotDistinctFrom => EQUALITY_SELECTIVITY,
            Operator::NotEq | Operator::IsDistinctFrom => 1.0 - EQUALITY_SELECTIVITY,
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => COMPARISON_SELECTIVITY,
            Operator::LikeMatch | Operator::ILikeMatch => like_selectivity(right),
            Operator::NotLikeMatch | Operator::NotILikeMatch => 1.0 - like_selectivity(right),
            _ => self.unknown,
        }
    }

    /// The share of rows the comparisons of one column with literals keep
    /// together, from the column's minimum, maximum and distinct count;
    /// `None` where the statistics lack them or the values are not
    /// numbers, dates or times.
    fn of_range(&self, comparisons: &[ColumnComparison<'_>]) -> Option<f64> {
        let column = comparisons.first()?.column.index();
        let stats = self.statistics?.column_statistics.get(column)?;
        let (min_value, max_value) = (stats.min_value.get_value()?, stats.max_value.get_value()?);
        let (min, max) = (as_number(min_value)?, as_number(max_value)?);
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
                Precision::Exact(count) | Precision::Inexact(count) if count > 0 => {
                    1.0 / count as f64
                }
                _ if is_discrete(min_value) => 1.0 / (max - min + 1.0),
                _ => EQUALITY_SELECTIVITY,
            });
        }
        if max <= min {
            return Some(1.0);
        }
        Some(((high - low) / (max - min)).clamp(0.0, 1.0))
    }

    /// The share of `expr`'s values that are null: from the column's null
    /// count where `expr` is a column with one, else [`NULL_SELECTIVITY`].
    fn null_share(&self, expr: &Arc<dyn PhysicalExpr>) -> f64 {
        let share = || {
            let statistics = self.statistics?;
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
}

/// The share of rows matching a `LIKE` pattern keeps: the share of an
/// equality where it has no wildcard, all where it has nothing but
/// wildcards, otherwise [`LIKE_SELECTIVITY`], halved for each literal
/// character past [`LIKE_SHORT_PATTERN`]. A pattern that is not a literal
/// string keeps [`LIKE_SELECTIVITY`].
fn like_selectivity(pattern: &Arc<dyn PhysicalExpr>) -> f64 {
    let text = pattern
        .downcast_ref::<Literal>()
        .and_then(|literal| match literal.value() {
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)) => Some(text.as_str()),
            _ => None,
        });
    let Some(text) = text else {
        return LIKE_SELECTIVITY;
    };
    let (mut literal_characters, mut wildcards, mut escaped) = (0, 0, false);
    for character in text.chars() {
        match character {
            _ if escaped => {
                literal_characters += 1;
                escaped = false;
            }
            '\\' => escaped = true,
            '%' | '_' => wildcards += 1,
            _ => literal_characters += 1,
        }
    }
    if wildcards == 0 {
        EQUALITY_SELECTIVITY
    } else if literal_characters == 0 {
        1.0
    } else {
        LIKE_SELECTIVITY * 0.5f64.powi((literal_characters - LIKE_SHORT_PATTERN).max(0))
    }
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

/// Whether a column whose values are like `value` holds whole steps only
/// (integers, days), so that its span bounds its distinct values.
fn is_discrete(value: &ScalarValue) -> bool {
    matches!(
        value,
        ScalarValue::Int8(_)
            | ScalarValue::Int16(_)
            | ScalarValue::Int32(_)
            | ScalarValue::Int64(_)
            | ScalarValue::UInt8(_)
            | ScalarValue::UInt16(_)
            | ScalarValue::UInt32(_)
            | ScalarValue::UInt64(_)
            | ScalarValue::Date32(_)
    )
}
