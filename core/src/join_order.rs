//! Join order from statistics.
//!
//! DataFusion joins tables in the order a query names them: `FROM
//! supplier, lineitem, orders, customer, nation n1, nation n2` (TPC-H's
//! Q7) joins supplier with all of lineitem first and reaches the two
//! nations, which keep two rows of 25, last, so millions of rows flow
//! through every join. [`ReorderJoins`] takes each chain of inner equi-joins
//! (hash joins, with the column-only projections between them) as a graph
//! of inputs and join conditions, estimates from the inputs' statistics how
//! many rows each possible join makes, and builds the tree greedily: always
//! the pair of connected parts whose join makes the fewest rows first (a
//! nation with its suppliers, a nation with its customers, those customers'
//! orders, …), never a cross product.
//!
//! An estimate needs every input's row count (exact or inexact) from the
//! plan's statistics. The rows of joining `A` with `B` are `|A| · |B| / d`,
//! where `d`, for each condition `a = b`, is the smaller of the distinct
//! values the two columns' tables can hold: their rows, bounded by the
//! column's known distinct count or by the span of its integer values.
//! That treats each condition as a key/foreign-key join whose key lies in
//! the smaller table, and the filters on either input as independent of the
//! join, so a filtered dimension shrinks its fact table in proportion.
//! Several conditions between the same parts multiply their `d`s, but never
//! beyond the rows of the tables on either side (a composite key matches at
//! most one row of the table it is the key of).
//!
//! The new order replaces the query's only when its estimated cost (the
//! rows all its joins make) is at most half the query's order's: estimates
//! are rough, and an order that is about as good is left as written.
//! Outer, semi and anti joins, joins with a fetch, null-aware joins and
//! joins on expressions other than columns end a chain; the plans below
//! them are reordered on their own. The rule runs before DataFusion's
//! `JoinSelection`, which then picks each join's build side and mode.
//!
//! `ember.join_reordering` (on by default) turns it off.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{FieldRef, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{
    ColumnStatistics, JoinSide, JoinType, NullEquality, internal_datafusion_err,
};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::utils::{ColumnIndex, JoinFilter};
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::StatisticsContext;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions, StatisticsArgs,
};

use crate::EmberConfig;

/// The share of the written order's estimated cost a new order must come
/// under to replace it.
const REORDER_GAIN: f64 = 0.5;

/// The most inputs one chain may have to be reordered (a chain's inputs
/// are kept as a bit set).
const MAX_INPUTS: usize = 64;

/// Puts chains of inner equi-joins in the order their inputs' statistics
/// say makes the fewest intermediate rows, where `ember.join_reordering`
/// asks for it (see the [module documentation](self)).
#[derive(Debug, Default, Clone, Copy)]
pub struct ReorderJoins;

impl PhysicalOptimizerRule for ReorderJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !EmberConfig::from_options(config).join_reordering {
            return Ok(plan);
        }
        reorder(plan)
    }

    fn name(&self) -> &str {
        "ember_reorder_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` with each of its join chains reordered where that pays.
fn reorder(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if chained_join(&plan).is_none() {
        return Ok(plan
            .map_children(|child| {
                let reordered = reorder(Arc::clone(&child))?;
                Ok(if Arc::ptr_eq(&reordered, &child) {
                    Transformed::no(child)
                } else {
                    Transformed::yes(reordered)
                })
            })?
            .data);
    }
    let mut graph = JoinGraph::default();
    let (tree, output) = graph.collect(&plan);
    let written_inputs = std::mem::take(&mut graph.inputs);
    graph.inputs = written_inputs
        .iter()
        .map(|input| reorder(Arc::clone(input)))
        .collect::<Result<_>>()?;
    if let Some(reordered) = graph.reordered(&tree, &output, &plan)? {
        return Ok(reordered);
    }
    let inputs_changed = written_inputs
        .iter()
        .zip(&graph.inputs)
        .any(|(written, now)| !Arc::ptr_eq(written, now));
    if inputs_changed {
        replace_inputs(plan, &mut graph.inputs.iter())
    } else {
        Ok(plan)
    }
}

/// `plan`'s chain with its inputs replaced, in the order
/// [`JoinGraph::collect`] found them.
fn replace_inputs<'a>(
    plan: Arc<dyn ExecutionPlan>,
    inputs: &mut impl Iterator<Item = &'a Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if chained_join(&plan).is_some() || column_projection_over_join(&plan).is_some() {
        let children = plan
            .children()
            .into_iter()
            .map(|child| replace_inputs(Arc::clone(child), inputs))
            .collect::<Result<Vec<_>>>()?;
        return plan.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        );
    }
    inputs
        .next()
        .map(Arc::clone)
        .ok_or_else(|| internal_datafusion_err!("a join chain lost one of its inputs"))
}

/// `plan` as a join a chain can hold: an inner hash join on columns, not
/// null-aware, without a projection, fetch or dynamic filter of its own.
fn chained_join(plan: &Arc<dyn ExecutionPlan>) -> Option<&HashJoinExec> {
    let join = plan.downcast_ref::<HashJoinExec>()?;
    let plain = *join.join_type() == JoinType::Inner
        && join.null_equality() == NullEquality::NullEqualsNothing
        && !join.null_aware
        && join.projection.is_none()
        && plan.fetch().is_none()
        && plan.dynamic_expressions_produced().is_empty()
        && join.on().iter().all(|(left, right)| {
            left.downcast_ref::<Column>().is_some() && right.downcast_ref::<Column>().is_some()
        });
    plain.then_some(join)
}

/// `plan` as a projection of plain columns right over a chained join: its
/// input and the input column of each output column.
fn column_projection_over_join(
    plan: &Arc<dyn ExecutionPlan>,
) -> Option<(&Arc<dyn ExecutionPlan>, Vec<usize>)> {
    let projection = plan.downcast_ref::<ProjectionExec>()?;
    chained_join(projection.input())?;
    let columns = projection
        .expr()
        .iter()
        .map(|expr| expr.expr.downcast_ref::<Column>().map(Column::index))
        .collect::<Option<Vec<_>>>()?;
    Some((projection.input(), columns))
}

/// One column of one of a join graph's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct InputColumn {
    input: usize,
    column: usize,
}

/// A set of a join graph's inputs, one bit each.
type InputSet = u64;

fn input_bit(input: usize) -> InputSet {
    1 << input
}

fn holds(set: InputSet, column: InputColumn) -> bool {
    set & input_bit(column.input) != 0
}

/// A join filter of the graph: `expression`'s column `i` is `columns[i]`,
/// of type `fields[i]`.
#[derive(Debug, Clone)]
struct GraphFilter {
    expression: Arc<dyn PhysicalExpr>,
    columns: Vec<InputColumn>,
    fields: Vec<FieldRef>,
    /// The inputs whose columns it reads (the first input where it reads
    /// none, so that it is applied once, at the first join above it).
    inputs: InputSet,
}

/// The shape of a join chain: which inputs, or which smaller chains, each
/// join joins.
#[derive(Debug, Clone)]
enum JoinTree {
    Input(usize),
    Join(Box<JoinTree>, Box<JoinTree>),
}

impl JoinTree {
    fn inputs(&self) -> InputSet {
        match self {
            JoinTree::Input(input) => input_bit(*input),
            JoinTree::Join(left, right) => left.inputs() | right.inputs(),
        }
    }

    fn is_join(&self) -> bool {
        matches!(self, JoinTree::Join(..))
    }
}

/// A chain of inner joins as a graph: its inputs, the equalities between
/// their columns and the filters over several of them.
#[derive(Debug, Default)]
struct JoinGraph {
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    conditions: Vec<(InputColumn, InputColumn)>,
    filters: Vec<GraphFilter>,
}

impl JoinGraph {
    /// The conditions between the parts holding `left` and `right`, each
    /// as its (left, right) columns.
    fn conditions_between(
        &self,
        left: InputSet,
        right: InputSet,
    ) -> impl Iterator<Item = (InputColumn, InputColumn)> + '_ {
        self.conditions.iter().filter_map(move |&(a, b)| {
            if holds(left, a) && holds(right, b) {
                Some((a, b))
            } else if holds(left, b) && holds(right, a) {
                Some((b, a))
            } else {
                None
            }
        })
    }

    /// Adds the chain `plan` heads to the graph: its tree and which input
    /// column each of its output columns is.
    fn collect(&mut self, plan: &Arc<dyn ExecutionPlan>) -> (JoinTree, Vec<InputColumn>) {
        if let Some(join) = chained_join(plan) {
            let (left_tree, left) = self.collect(join.left());
            let (right_tree, right) = self.collect(join.right());
            for (left_key, right_key) in join.on() {
                if let (Some(l), Some(r)) = (
                    left_key.downcast_ref::<Column>(),
                    right_key.downcast_ref::<Column>(),
                ) {
                    self.conditions.push((left[l.index()], right[r.index()]));
                }
            }
            if let Some(filter) = join.filter() {
                let columns: Vec<InputColumn> = filter
                    .column_indices()
                    .iter()
                    .map(|index| match index.side {
                        JoinSide::Left => left[index.index],
                        _ => right[index.index],
                    })
                    .collect();
                let inputs = columns
                    .iter()
                    .fold(0, |set, column| set | input_bit(column.input));
                self.filters.push(GraphFilter {
                    expression: Arc::clone(filter.expression()),
                    columns,
                    fields: filter.schema().fields().iter().cloned().collect(),
                    inputs: if inputs == 0 { 1 } else { inputs },
                });
            }
            let tree = JoinTree::Join(Box::new(left_tree), Box::new(right_tree));
            return (tree, left.into_iter().chain(right).collect());
        }
        if let Some((input, columns)) = column_projection_over_join(plan) {
            let (tree, below) = self.collect(input);
            return (tree, columns.into_iter().map(|at| below[at]).collect());
        }
        let input = self.inputs.len();
        self.inputs.push(Arc::clone(plan));
        let columns = (0..plan.schema().fields().len())
            .map(|column| InputColumn { input, column })
            .collect();
        (JoinTree::Input(input), columns)
    }

    /// The chain `root` (whose tree is `written` and whose output columns
    /// are `output`) in a better order, or `None` where the estimates do
    /// not find one clearly better or cannot be made.
    fn reordered(
        &self,
        written: &JoinTree,
        output: &[InputColumn],
        root: &Arc<dyn ExecutionPlan>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(join) = chained_join(root) else {
            return Ok(None);
        };
        if self.inputs.len() < 3 || self.inputs.len() > MAX_INPUTS {
            return Ok(None);
        }
        let Some(estimates) = Estimates::new(self) else {
            return Ok(None);
        };
        let (Some(written_cost), Some((tree, cost))) =
            (estimates.cost(written), estimates.greedy())
        else {
            return Ok(None);
        };
        if cost > written_cost * REORDER_GAIN {
            return Ok(None);
        }
        tracing::debug!(
            inputs = self.inputs.len(),
            written_cost,
            cost,
            "joins reordered by their statistics"
        );
        let builder = ChainBuilder {
            graph: self,
            output,
            mode: *join.partition_mode(),
        };
        let (plan, columns) = builder.build(&tree)?;
        builder
            .project_output(plan, &columns, &root.schema())
            .map(Some)
    }
}

/// Where a join condition's column comes from: the distinct values its
/// table can hold and that table's rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnOrigin {
    /// The distinct values the column's table can hold.
    pub(crate) distinct: f64,
    /// The rows of that table.
    pub(crate) table_rows: f64,
}

/// The rows of an inner join of `left_rows` rows with `right_rows` rows on
/// `keys`: for each condition, the origins of its left and its right
/// column, each with an identity of the table it comes from. Each condition
/// is taken as a key/foreign-key join whose key lies in the smaller table
/// (divide by the fewer distinct values of its two columns), several
/// conditions multiply their divisors, but never beyond the rows of the
/// tables on either side (a composite key matches at most one row of the
/// table it is the key of). `None` where `keys` is empty.
pub(crate) fn key_join_rows<T: std::hash::Hash + Eq>(
    left_rows: f64,
    right_rows: f64,
    keys: impl IntoIterator<Item = ((T, ColumnOrigin), (T, ColumnOrigin))>,
) -> Option<f64> {
    let mut divisor = 1.0_f64;
    let mut left_tables: HashMap<T, f64> = HashMap::new();
    let mut right_tables: HashMap<T, f64> = HashMap::new();
    for ((left_table, lo), (right_table, ro)) in keys {
        divisor *= lo.distinct.min(ro.distinct).max(1.0);
        let entry = left_tables.entry(left_table).or_default();
        *entry = entry.max(lo.table_rows);
        let entry = right_tables.entry(right_table).or_default();
        *entry = entry.max(ro.table_rows);
    }
    if left_tables.is_empty() {
        return None;
    }
    let product = |tables: &HashMap<T, f64>| tables.values().product::<f64>();
    let cap = product(&left_tables).min(product(&right_tables)).max(1.0);
    Some((left_rows * right_rows / divisor.min(cap)).max(1.0))
}

/// Row estimates for a join graph's inputs and for joins of them.
struct Estimates<'a> {
    graph: &'a JoinGraph,
    rows: Vec<f64>,
    origins: HashMap<InputColumn, ColumnOrigin>,
}

impl<'a> Estimates<'a> {
    /// Estimates for `graph`, or `None` where an input's row count is
    /// unknown. (A context of its own: its cache is keyed by the plans'
    /// addresses, which plans rewritten since may reuse.)
    fn new(graph: &'a JoinGraph) -> Option<Self> {
        let statistics = &StatisticsContext::new();
        let rows = graph
            .inputs
            .iter()
            .map(|input| row_count(input, statistics))
            .collect::<Option<Vec<_>>>()?;
        let mut origins = HashMap::new();
        for &(left, right) in &graph.conditions {
            for column in [left, right] {
                let input = &graph.inputs[column.input];
                let origin =
                    column_origin(input, column.column, statistics).unwrap_or(ColumnOrigin {
                        distinct: rows[column.input],
                        table_rows: rows[column.input],
                    });
                origins.insert(column, origin);
            }
        }
        Some(Self {
            graph,
            rows,
            origins,
        })
    }

    /// The rows of joining the parts `left` (of `left_rows`) and `right`
    /// (of `right_rows`), or `None` where no condition connects them.
    fn join_rows(
        &self,
        left: InputSet,
        left_rows: f64,
        right: InputSet,
        right_rows: f64,
    ) -> Option<f64> {
        let keys = self
            .graph
            .conditions_between(left, right)
            .map(|(l, r)| ((l.input, self.origins[&l]), (r.input, self.origins[&r])));
        key_join_rows(left_rows, right_rows, keys)
    }

    /// The rows `tree` makes and its cost: the rows all its joins make.
    fn estimate(&self, tree: &JoinTree) -> Option<(f64, f64)> {
        match tree {
            JoinTree::Input(input) => Some((self.rows[*input], 0.0)),
            JoinTree::Join(left, right) => {
                let (left_rows, left_cost) = self.estimate(left)?;
                let (right_rows, right_cost) = self.estimate(right)?;
                let rows = self.join_rows(left.inputs(), left_rows, right.inputs(), right_rows)?;
                Some((rows, left_cost + right_cost + rows))
            }
        }
    }

    /// The estimated cost of `tree`.
    fn cost(&self, tree: &JoinTree) -> Option<f64> {
        self.estimate(tree).map(|(_, cost)| cost)
    }

    /// The greedy order: while several parts remain, join the two connected
    /// ones whose join makes the fewest rows, the smaller one building.
    fn greedy(&self) -> Option<(JoinTree, f64)> {
        struct Part {
            tree: JoinTree,
            inputs: InputSet,
            rows: f64,
            cost: f64,
        }
        let mut parts: Vec<Part> = (0..self.graph.inputs.len())
            .map(|input| Part {
                tree: JoinTree::Input(input),
                inputs: input_bit(input),
                rows: self.rows[input],
                cost: 0.0,
            })
            .collect();
        while parts.len() > 1 {
            let mut best: Option<(usize, usize, f64)> = None;
            for i in 0..parts.len() {
                for j in i + 1..parts.len() {
                    let (a, b) = (&parts[i], &parts[j]);
                    let Some(rows) = self.join_rows(a.inputs, a.rows, b.inputs, b.rows) else {
                        continue;
                    };
                    if best.is_none_or(|(_, _, fewest)| rows < fewest) {
                        best = Some((i, j, rows));
                    }
                }
            }
            let (i, j, rows) = best?;
            let b = parts.swap_remove(j);
            let a = parts.swap_remove(i);
            let (build, probe) = if a.rows <= b.rows { (a, b) } else { (b, a) };
            parts.push(Part {
                inputs: build.inputs | probe.inputs,
                cost: build.cost + probe.cost + rows,
                tree: JoinTree::Join(Box::new(build.tree), Box::new(probe.tree)),
                rows,
            });
        }
        parts.pop().map(|part| (part.tree, part.cost))
    }
}

/// The rows `plan`'s statistics give it, exact or estimated, where they
/// know.
pub(crate) fn row_count(
    plan: &Arc<dyn ExecutionPlan>,
    statistics: &StatisticsContext,
) -> Option<f64> {
    let stats = statistics
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok()?;
    stats.num_rows.get_value().map(|rows| *rows as f64)
}

/// Where `column` of `plan` comes from, followed down through projections,
/// filters and exchanges to the node that makes it.
fn column_origin(
    plan: &Arc<dyn ExecutionPlan>,
    column: usize,
    statistics: &StatisticsContext,
) -> Option<ColumnOrigin> {
    let (mut node, mut column) = (Arc::clone(plan), column);
    loop {
        let below = if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            let Some(source) = projection.expr()[column].expr.downcast_ref::<Column>() else {
                break;
            };
            column = source.index();
            Arc::clone(projection.input())
        } else if let Some(filter) = node.downcast_ref::<FilterExec>() {
            if let Some(projection) = filter.projection() {
                column = *projection.get(column)?;
            }
            Arc::clone(filter.input())
        } else if let Some(exchange) = node.downcast_ref::<RepartitionExec>() {
            Arc::clone(exchange.input())
        } else {
            break;
        };
        node = below;
    }
    origin_statistics(&node, column, statistics)
}

/// The distinct values `column` of `node` can hold and `node`'s rows, from
/// `node`'s statistics: its distinct count or the span of its values, at
/// most the rows; `None` where the rows are unknown.
pub(crate) fn origin_statistics(
    node: &Arc<dyn ExecutionPlan>,
    column: usize,
    statistics: &StatisticsContext,
) -> Option<ColumnOrigin> {
    let stats = statistics
        .compute(node.as_ref(), &StatisticsArgs::new())
        .ok()?;
    let table_rows = (*stats.num_rows.get_value()? as f64).max(1.0);
    let distinct = distinct_values(stats.column_statistics.get(column)?)
        .map_or(table_rows, |distinct| distinct.min(table_rows));
    Some(ColumnOrigin {
        distinct: distinct.max(1.0),
        table_rows,
    })
}

/// The fewest distinct values a column's statistics allow: its distinct
/// count, and for a column of whole numbers, dates or times the span of
/// its values; `None` where they know neither.
pub(crate) fn distinct_values(column: &ColumnStatistics) -> Option<f64> {
    let count = column.distinct_count.get_value().map(|&count| count as f64);
    let span = match (column.min_value.get_value(), column.max_value.get_value()) {
        (Some(min), Some(max)) if !min.data_type().is_floating() => {
            max.distance(min).map(|span| span as f64 + 1.0)
        }
        _ => None,
    };
    match (count, span) {
        (Some(count), Some(span)) => Some(count.min(span)),
        (count, span) => count.or(span),
    }
}

/// Builds the plan of a reordered chain.
struct ChainBuilder<'a> {
    graph: &'a JoinGraph,
    output: &'a [InputColumn],
    mode: PartitionMode,
}

impl ChainBuilder<'_> {
    /// The plan of `tree` and which input column each of its output
    /// columns is; a join keeps only the columns something above it reads.
    fn build(&self, tree: &JoinTree) -> Result<(Arc<dyn ExecutionPlan>, Vec<InputColumn>)> {
        let (left_tree, right_tree) = match tree {
            JoinTree::Input(input) => {
                let plan = Arc::clone(&self.graph.inputs[*input]);
                let columns = (0..plan.schema().fields().len())
                    .map(|column| InputColumn {
                        input: *input,
                        column,
                    })
                    .collect();
                return Ok((plan, columns));
            }
            JoinTree::Join(left, right) => (left, right),
        };
        let (left, left_columns) = self.build(left_tree)?;
        let (right, right_columns) = self.build(right_tree)?;
        let (left_set, right_set) = (left_tree.inputs(), right_tree.inputs());
        let on = self
            .graph
            .conditions_between(left_set, right_set)
            .map(|(l, r)| {
                Ok((
                    column_of(&left, &left_columns, l)?,
                    column_of(&right, &right_columns, r)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let filters: Vec<&GraphFilter> = self
            .graph
            .filters
            .iter()
            .filter(|filter| {
                let within = |set: InputSet| filter.inputs & !set == 0;
                within(left_set | right_set)
                    && !(left_tree.is_join() && within(left_set))
                    && !(right_tree.is_join() && within(right_set))
            })
            .collect();
        let filter = join_filter(&filters, &left_columns, &right_columns)?;
        let join: Arc<dyn ExecutionPlan> = Arc::new(HashJoinExec::try_new(
            left,
            right,
            on,
            filter,
            &JoinType::Inner,
            None,
            self.mode,
            NullEquality::NullEqualsNothing,
            false,
        )?);
        let columns: Vec<InputColumn> = left_columns.into_iter().chain(right_columns).collect();
        let set = left_set | right_set;
        let kept: Vec<usize> = (0..columns.len())
            .filter(|&at| self.read_above(set, columns[at]))
            .collect();
        if kept.len() == columns.len() {
            return Ok((join, columns));
        }
        let schema = join.schema();
        let exprs = kept.iter().map(|&at| {
            let name = schema.field(at).name();
            (
                Arc::new(Column::new(name, at)) as Arc<dyn PhysicalExpr>,
                name.clone(),
            )
        });
        let projection = Arc::new(ProjectionExec::try_new(exprs, join)?);
        Ok((projection, kept.into_iter().map(|at| columns[at]).collect()))
    }

    /// Whether anything above the part holding `set` reads `column`: the
    /// chain's output, a condition with another part, or a filter not yet
    /// applied.
    fn read_above(&self, set: InputSet, column: InputColumn) -> bool {
        self.output.contains(&column)
            || self
                .graph
                .conditions
                .iter()
                .any(|&(a, b)| (a == column && !holds(set, b)) || (b == column && !holds(set, a)))
            || self
                .graph
                .filters
                .iter()
                .any(|filter| filter.inputs & !set != 0 && filter.columns.contains(&column))
    }

    /// `plan` (whose columns are `columns`) with the chain's output columns,
    /// in the written order and under the written names.
    fn project_output(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        columns: &[InputColumn],
        written: &Schema,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let exprs = self
            .output
            .iter()
            .zip(written.fields())
            .map(|(column, field)| Ok((column_of(&plan, columns, *column)?, field.name().clone())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new_with_schema_metadata(
            exprs, plan, written,
        )?))
    }
}

/// The column of `plan` (whose columns are `columns`) that is `column`.
fn column_of(
    plan: &Arc<dyn ExecutionPlan>,
    columns: &[InputColumn],
    column: InputColumn,
) -> Result<Arc<dyn PhysicalExpr>> {
    let at = columns
        .iter()
        .position(|held| *held == column)
        .ok_or_else(|| internal_datafusion_err!("a reordered join lost a column it needs"))?;
    Ok(Arc::new(Column::new(plan.schema().field(at).name(), at)))
}

/// The join filter applying all of `filters` to a join of a part with
/// columns `left` and one with columns `right`.
fn join_filter(
    filters: &[&GraphFilter],
    left: &[InputColumn],
    right: &[InputColumn],
) -> Result<Option<JoinFilter>> {
    let mut read: Vec<InputColumn> = Vec::new();
    let mut indices: Vec<ColumnIndex> = Vec::new();
    let mut fields: Vec<FieldRef> = Vec::new();
    let mut combined: Option<Arc<dyn PhysicalExpr>> = None;
    for filter in filters {
        let expression = Arc::clone(&filter.expression)
            .transform(|expr| {
                let Some(column) = expr.downcast_ref::<Column>() else {
                    return Ok(Transformed::no(expr));
                };
                let source = filter.columns[column.index()];
                let at = match read.iter().position(|held| *held == source) {
                    Some(at) => at,
                    None => {
                        let index = match left.iter().position(|held| *held == source) {
                            Some(index) => ColumnIndex {
                                index,
                                side: JoinSide::Left,
                            },
                            None => ColumnIndex {
                                index: right.iter().position(|held| *held == source).ok_or_else(
                                    || internal_datafusion_err!("a join filter lost a column"),
                                )?,
                                side: JoinSide::Right,
                            },
                        };
                        read.push(source);
                        indices.push(index);
                        fields.push(Arc::clone(&filter.fields[column.index()]));
                        read.len() - 1
                    }
                };
                Ok(Transformed::yes(
                    Arc::new(Column::new(column.name(), at)) as Arc<dyn PhysicalExpr>
                ))
            })?
            .data;
        combined = Some(match combined {
            None => expression,
            Some(before) => Arc::new(BinaryExpr::new(before, Operator::And, expression)),
        });
    }
    Ok(combined
        .map(|expression| JoinFilter::new(expression, indices, Arc::new(Schema::new(fields)))))
}

#[cfg(test)]
mod tests;
