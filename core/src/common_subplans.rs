//! A subquery the query uses more than once, computed once.
//!
//! DataFusion plans every reference to a common table expression or a view
//! on its own, and so does a query that repeats a subquery: TPC-H's Q15
//! aggregates three months of `lineitem` by supplier for its `revenue0`
//! view twice (once to join, once for the maximum), Q11 joins `partsupp`,
//! `supplier` and `nation` in the query and again in its `HAVING`
//! subquery, and TPC-DS repeats whole aggregations (Q14's `cross_items`
//! and `avg_sales`, Q47's and Q57's `v1`, Q23, Q24, Q95).
//!
//! [`ReuseCommonSubplans`] runs when every subplan has its final shape,
//! right before the post-optimization filter pushdown hands out dynamic
//! filters. It numbers each distinct
//! subplan (an operator as `EXPLAIN VERBOSE` describes it, its schema and
//! its children's numbers; a scan also by its object store and every file,
//! an in-memory table by the address of its data) and, from the root down,
//! puts a [`SharedSubplanExec`] in place of every occurrence of the
//! largest subplans that occur more than once. The uses share one run: the
//! first to start runs its copy, every partition in a task of its own, and
//! all of them read its batches, which are held in the session's memory
//! pool until every use has read them; once the pool has no room, the
//! rest goes to spill files in the session's temporary directory. A
//! subplan repeated inside different shared subplans is shared again among
//! them, in every copy: Q14's `cross_items` sits in each channel's
//! aggregate, and each of those is read twice; it runs once, for whichever
//! copies of the aggregates run.
//!
//! A subplan is shared only when that is both safe and worth it:
//!
//! * it aggregates, joins or computes a window (repeating a plain scan is
//!   cheaper than holding its rows);
//! * no expression in it is volatile (`random()` gives each use its own
//!   values) or reads the value of a scalar subquery (which `EXPLAIN`
//!   shows alike for every subquery);
//! * each dynamic filter it reads is made inside it. The filter pushdown
//!   that follows gives each copy the filters its own joins, top-k sorts
//!   and aggregates make, alike in every copy; a filter from above (a join
//!   that reads one use) belongs to that use only and stops at the
//!   [`SharedSubplanExec`];
//! * it ends (an unbounded input never does), and the plan has no
//!   recursive query (whose work table changes between iterations);
//! * every leaf below it is known: a file scan, an in-memory table, an
//!   empty relation. A leaf of another kind has no description that tells
//!   two different ones apart.
//!
//! Clusters are left alone: their stages cannot share an operator.
//! `ember.reuse_common_subplans` (on by default) turns it off.

mod shared_exec;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, replace_children_if_necessary};
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec,
};
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{DisplayFormatType, ExecutionPlan, ExecutionPlanProperties};

pub use shared_exec::{SharedResults, SharedSubplanExec};

use crate::EmberConfig;

/// Computes each subplan a query repeats once and lets every use read
/// that one result, where `ember.reuse_common_subplans` asks for it (see
/// the [module documentation](self)).
#[derive(Debug, Default, Clone, Copy)]
pub struct ReuseCommonSubplans;

impl PhysicalOptimizerRule for ReuseCommonSubplans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !EmberConfig::from_options(config).reuse_common_subplans
            || config.extensions.get::<BallistaConfig>().is_some()
        {
            return Ok(plan);
        }
        reuse_common_subplans(plan)
    }

    fn name(&self) -> &str {
        "ember_reuse_common_subplans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` with the largest subplans it repeats shared between their uses.
pub fn reuse_common_subplans(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.exists(|node| Ok(node.downcast_ref::<RecursiveQueryExec>().is_some()))? {
        return Ok(plan);
    }
    let mut catalog = SubplanCatalog::default();
    catalog.describe(&plan)?;
    let uses = catalog.count_uses(&plan);
    if uses.values().all(|&count| count < 2) {
        return Ok(plan);
    }
    catalog.share(plan, &uses)
}

/// What the rule knows of the subplans of one plan.
#[derive(Default)]
struct SubplanCatalog {
    /// Each distinct subplan's number, by its operator's description, its
    /// schema and its children's numbers.
    numbers: HashMap<(String, SchemaRef, Vec<usize>), usize>,
    /// Each node's subplan, by the node's address.
    nodes: HashMap<usize, Subplan>,
    /// How often each shareable subplan occurs in the plan.
    occurrences: HashMap<usize, usize>,
}

/// One node of the plan as the rule sees it.
#[derive(Debug, Clone, Copy)]
struct Subplan {
    /// Its number; `None` where it cannot be told apart from another.
    number: Option<usize>,
    /// Whether sharing it would be safe and save work.
    shareable: bool,
}

/// What a subplan holds, gathered from the leaves up.
#[derive(Debug, Default)]
struct Contents {
    /// Whether it aggregates, joins or computes a window.
    works: bool,
    volatile: bool,
    /// Whether an expression in it reads a scalar subquery's value, which
    /// `EXPLAIN` shows alike for every subquery.
    reads_subquery_value: bool,
    /// The dynamic filters its expressions read.
    reads: HashSet<u64>,
    /// The dynamic filters its operators make.
    makes: HashSet<u64>,
}

impl SubplanCatalog {
    /// Numbers `node` and everything below it; returns what it holds.
    fn describe(&mut self, node: &Arc<dyn ExecutionPlan>) -> Result<(Option<usize>, Contents)> {
        let mut contents = Contents::default();
        let mut child_numbers = Some(Vec::new());
        for child in node.children() {
            let (number, below) = self.describe(child)?;
            child_numbers = child_numbers.zip(number).map(|(mut numbers, number)| {
                numbers.push(number);
                numbers
            });
            contents.works |= below.works;
            contents.volatile |= below.volatile;
            contents.reads_subquery_value |= below.reads_subquery_value;
            contents.reads.extend(below.reads);
            contents.makes.extend(below.makes);
        }
        contents.works |= works(node);
        node.apply_expressions(&mut |expr| {
            contents.volatile |= is_volatile(expr);
            expr.apply(|part| {
                contents.reads.extend(part.expression_id());
                contents.reads_subquery_value |=
                    part.downcast_ref::<ScalarSubqueryExpr>().is_some();
                Ok(TreeNodeRecursion::Continue)
            })?;
            Ok(TreeNodeRecursion::Continue)
        })?;
        contents.makes.extend(
            node.dynamic_expressions_produced()
                .iter()
                .filter_map(|filter| filter.expression_id()),
        );
        let number = describe_operator(node)
            .zip(child_numbers)
            .map(|(description, children)| {
                let next = self.numbers.len();
                *self
                    .numbers
                    .entry((description, node.schema(), children))
                    .or_insert(next)
            });
        let shareable = number.is_some()
            && contents.works
            && !contents.volatile
            && !contents.reads_subquery_value
            && contents.reads.is_subset(&contents.makes)
            && matches!(node.boundedness(), Boundedness::Bounded);
        if let Some(number) = number.filter(|_| shareable) {
            *self.occurrences.entry(number).or_default() += 1;
        }
        self.nodes
            .insert(address(node), Subplan { number, shareable });
        Ok((number, contents))
    }

    /// The subplan to share in place of `node`, if it is one: shareable
    /// and occurring more than once.
    fn repeated(&self, node: &Arc<dyn ExecutionPlan>) -> Option<usize> {
        let subplan = self.nodes.get(&address(node))?;
        subplan
            .number
            .filter(|number| subplan.shareable && self.occurrences.get(number) > Some(&1))
    }

    /// Counts, from the root down, the uses each repeated subplan would
    /// get: one per occurrence that runs. Every occurrence of a shared
    /// subplan is a use, but only one copy of it runs, so what is repeated
    /// inside it is counted in one copy alone: Q14's `cross_items` counts
    /// once for each channel's aggregate that holds it, however often that
    /// aggregate is read.
    fn count_uses(&self, plan: &Arc<dyn ExecutionPlan>) -> HashMap<usize, usize> {
        let mut uses = HashMap::new();
        self.count_uses_below(plan, &mut uses);
        uses
    }

    fn count_uses_below(&self, node: &Arc<dyn ExecutionPlan>, uses: &mut HashMap<usize, usize>) {
        if let Some(number) = self.repeated(node) {
            let count = uses.entry(number).or_default();
            *count += 1;
            if *count > 1 {
                return;
            }
        }
        for child in node.children() {
            self.count_uses_below(child, uses);
        }
    }

    /// `plan` with each repeated subplan that has two uses or more (as
    /// counted by [`Self::count_uses`]) replaced by a [`SharedSubplanExec`],
    /// in every copy of it, so that whichever copy runs reads the subplans
    /// it repeats from their one run.
    fn share(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        uses: &HashMap<usize, usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut shared = HashMap::new();
        self.share_below(plan, uses, &mut shared)
    }

    fn share_below(
        &self,
        node: Arc<dyn ExecutionPlan>,
        uses: &HashMap<usize, usize>,
        shared: &mut HashMap<usize, Arc<SharedResults>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let number = self.repeated(&node);
        let children = node
            .children()
            .into_iter()
            .map(|child| self.share_below(Arc::clone(child), uses, shared))
            .collect::<Result<Vec<_>>>()?;
        let node = replace_children_if_necessary(node, children)?;
        let Some(number) = number else {
            return Ok(node);
        };
        let count = uses.get(&number).copied().unwrap_or(0);
        if count < 2 {
            return Ok(node);
        }
        let next = shared.len();
        let results = shared
            .entry(number)
            .or_insert_with(|| Arc::new(SharedResults::new(next, count)));
        Ok(Arc::new(SharedSubplanExec::new(node, Arc::clone(results))))
    }
}

fn address(node: &Arc<dyn ExecutionPlan>) -> usize {
    Arc::as_ptr(node) as *const () as usize
}

/// Whether `node` does work worth sharing: an aggregate, a join, a window.
fn works(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.downcast_ref::<AggregateExec>().is_some()
        || node.downcast_ref::<HashJoinExec>().is_some()
        || node.downcast_ref::<SortMergeJoinExec>().is_some()
        || node.downcast_ref::<NestedLoopJoinExec>().is_some()
        || node.downcast_ref::<CrossJoinExec>().is_some()
        || node.downcast_ref::<BoundedWindowAggExec>().is_some()
        || node.downcast_ref::<WindowAggExec>().is_some()
}

/// `node` alone (not its children), in enough detail to tell it from any
/// operator that computes something else; `None` for a leaf whose
/// description cannot tell it apart from another leaf of its kind.
fn describe_operator(node: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let line = VerboseLine(node.as_ref()).to_string();
    if !node.children().is_empty()
        || node.downcast_ref::<EmptyExec>().is_some()
        || node.downcast_ref::<PlaceholderRowExec>().is_some()
    {
        return Some(line);
    }
    let source = node.downcast_ref::<DataSourceExec>()?.data_source();
    if let Some(files) = source.downcast_ref::<FileScanConfig>() {
        return Some(format!("{} {line}", files.object_store_url));
    }
    let memory = source.downcast_ref::<MemorySourceConfig>()?;
    // Two tables of equal shape read alike: their arrays tell them apart.
    let mut described = line;
    for partition in memory.partitions() {
        described.push_str(" [");
        for batch in partition {
            for column in batch.columns() {
                let array = Arc::as_ptr(column) as *const ();
                described.push_str(&format!("{array:p}/{} ", column.len()));
            }
        }
        described.push(']');
    }
    Some(described)
}

/// One operator as `EXPLAIN VERBOSE` shows it.
struct VerboseLine<'a>(&'a dyn ExecutionPlan);

impl fmt::Display for VerboseLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_as(DisplayFormatType::Verbose, f)
    }
}
