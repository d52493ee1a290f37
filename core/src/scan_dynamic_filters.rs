//! Dynamic filters that drop rows right above the scans they reach.
//!
//! DataFusion gives a hash join's probe-side scan a dynamic filter made
//! from what the build side holds (and a top-k sort or a `min`/`max`
//! aggregate one made from what it has seen). Unless Parquet filter
//! pushdown (`datafusion.execution.parquet.pushdown_filters`) is on, a
//! scan uses such a filter only to skip whole files, row groups and pages
//! by their statistics: every row of a row group that may match is decoded
//! and travels on, through exchanges and other joins, to the join that
//! made the filter, which only then drops it. On TPC-H's Q7 that is 18
//! million `lineitem` rows carried through three joins where 1.5 million
//! match, because the supplier scan, filtered by a nation join above, still
//! hands all of its rows to the join below.
//!
//! Turning Parquet pushdown on is no answer: measured on TPC-H SF 10, a
//! scan evaluating predicates while decoding is slower than decoding whole
//! batches and filtering afterwards (Q6 0.83 s against 1.41 s, Q12 1.34 s
//! against 2.32 s), and with pushdown on for the dynamic filters alone Q4,
//! Q13, Q17 and Q21 took 30–75% longer while Q7 took half the time.
//!
//! [`DynamicFiltersInScans`] instead puts a [`DynamicRowFilterExec`] above
//! every scan (above the query's own filter, where one sits right over the
//! scan) while DataFusion's post-optimization filter pushdown, the phase
//! that hands out dynamic filters, runs: the scan still receives each
//! filter and prunes with it, and the node drops, batch by batch, the rows
//! the filters reject. The filters of partitioned hash joins are taken out
//! of the node again ([`unwrap_unfiltered_scans`]): they cost about a join
//! probe per row, and so is a join's own filter right below its probe side
//! (`ember.dynamic_filters_skip_direct_probes`): the join looks the same
//! rows up anyway. A filter that keeps nearly every row it sees costs work
//! and saves none, so the node stops evaluating it after a first sample
//! and only samples it again now and then ([`FilterSampling`]).
//!
//! `ember.dynamic_filters_in_scans` (on by default) turns it off.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::common::cast::as_boolean_array;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
    PushedDown,
};
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::StreamExt;

use crate::EmberConfig;
use crate::operator::only_child;

/// DataFusion's post-optimization filter pushdown with a
/// [`DynamicRowFilterExec`] above each scan, where
/// `ember.dynamic_filters_in_scans` asks for it (see the
/// [module documentation](self)). It takes the place of DataFusion's
/// `FilterPushdown(Post)` rule in Ember's sessions.
#[derive(Debug)]
pub struct DynamicFiltersInScans {
    pushdown: FilterPushdown,
}

impl Default for DynamicFiltersInScans {
    fn default() -> Self {
        Self::new()
    }
}

impl DynamicFiltersInScans {
    /// The rule, wrapping DataFusion's post-optimization filter pushdown.
    pub fn new() -> Self {
        Self {
            pushdown: FilterPushdown::new_post_optimization(),
        }
    }
}

impl PhysicalOptimizerRule for DynamicFiltersInScans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !EmberConfig::from_options(config).dynamic_filters_in_scans {
            return self.pushdown.optimize(plan, config);
        }
        let wrapped = wrap_scans(plan)?;
        let filtered = self.pushdown.optimize(wrapped, config)?;
        let skip_direct_probes =
            EmberConfig::from_options(config).dynamic_filters_skip_direct_probes;
        unwrap_unfiltered_scans(filtered, skip_direct_probes)
    }

    fn name(&self) -> &str {
        "ember_dynamic_filters_in_scans"
    }

    fn schema_check(&self) -> bool {
        self.pushdown.schema_check()
    }
}

/// `plan` with a [`DynamicRowFilterExec`] above each of its scans, or
/// above the filter right over a scan, so that the query's own predicate
/// has dropped its rows first.
pub fn wrap_scans(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let over_scan = plan.is::<DataSourceExec>()
        || plan
            .downcast_ref::<FilterExec>()
            .is_some_and(|filter| filter.input().is::<DataSourceExec>());
    if over_scan {
        return Ok(Arc::new(DynamicRowFilterExec::new(plan)));
    }
    let children = plan.children();
    if children.is_empty() {
        return Ok(plan);
    }
    let children = children
        .into_iter()
        .map(|child| wrap_scans(Arc::clone(child)))
        .collect::<Result<Vec<_>>>()?;
    plan.replace_children(
        children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// `plan` without the filters of partitioned hash joins in its
/// [`DynamicRowFilterExec`]s, nor, where `skip_direct_probes`, the filter
/// of the join that reads a node's rows directly, and without the
/// [`DynamicRowFilterExec`]s left with none.
///
/// A partitioned join's filter routes each row by the hash of its keys to
/// the build side of its partition and looks it up there: per row, about
/// the work of the join's own probe. Measured on TPC-H SF 10, evaluating it
/// above the scan cost more than the rows it dropped saved further up (Q17
/// 2.1 s against 3.1 s, though it dropped 99.9% of `lineitem`); the scan
/// still prunes row groups with it. The filters of joins that collect their
/// build side (a list of values or a range), of top-k sorts and of
/// `min`/`max` aggregates are cheap and stay, but for one case: a join's
/// own filter right below its probe side (with nothing between but
/// projections and round-robin exchanges) looks up every row in the join's
/// hash table, which the join then does again for the rows it keeps, and
/// saves nothing on the way (TPC-H Q5, 60 M `lineitem` rows looked up twice
/// in a 2.3 M-row table). `ember.dynamic_filters_skip_direct_probes` (on by
/// default) takes it out; the scan still prunes with it.
pub fn unwrap_unfiltered_scans(
    plan: Arc<dyn ExecutionPlan>,
    skip_direct_probes: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut partitioned_filters = Vec::new();
    plan.apply(|node| {
        partitioned_filters.extend(partitioned_join_filter_ids(node));
        Ok(TreeNodeRecursion::Continue)
    })?;
    strip_filters(plan, &partitioned_filters, &[], skip_direct_probes)
}

/// `plan` with the filters whose ids are in `dropped` taken out of its
/// [`DynamicRowFilterExec`]s, and those in `probed` out of the one whose
/// rows the join that made them reads directly (`plan` itself, or below it
/// through nodes that only pass rows on). Where `skip_direct_probes` is
/// off, `probed` stays empty.
fn strip_filters(
    plan: Arc<dyn ExecutionPlan>,
    dropped: &[u64],
    probed: &[u64],
    skip_direct_probes: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(filter) = plan.downcast_ref::<DynamicRowFilterExec>() {
        let input = strip_filters(Arc::clone(&filter.input), dropped, &[], skip_direct_probes)?;
        let kept: Vec<Arc<dyn PhysicalExpr>> = filter
            .filters
            .iter()
            .filter(|expr| !refers_to_any(expr, dropped) && !refers_to_any(expr, probed))
            .cloned()
            .collect();
        return Ok(if kept.is_empty() {
            input
        } else if kept.len() == filter.filters.len() && Arc::ptr_eq(&input, &filter.input) {
            plan
        } else {
            Arc::new(DynamicRowFilterExec {
                input,
                filters: kept,
            })
        });
    }
    let children = plan.children();
    if children.is_empty() {
        return Ok(plan);
    }
    let joins_filters = plan.is::<HashJoinExec>().then(|| filter_ids(&plan));
    let passes_rows_on = passes_rows_on(&plan);
    let probe_side = children.len() - 1;
    let children = children
        .into_iter()
        .enumerate()
        .map(|(at, child)| {
            let probed_below: &[u64] = match &joins_filters {
                Some(own) if skip_direct_probes && at == probe_side => own,
                Some(_) => &[],
                None if passes_rows_on => probed,
                None => &[],
            };
            strip_filters(Arc::clone(child), dropped, probed_below, skip_direct_probes)
        })
        .collect::<Result<Vec<_>>>()?;
    replace_children_if_necessary(plan, children)
}

/// Whether `plan` hands its input's rows on as they are, at no cost per
/// row worth sparing: a projection, a round-robin exchange, a cooperative
/// yield point.
fn passes_rows_on(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.is::<ProjectionExec>()
        || plan.is::<CooperativeExec>()
        || plan
            .downcast_ref::<RepartitionExec>()
            .is_some_and(|exchange| {
                matches!(exchange.partitioning(), Partitioning::RoundRobinBatch(_))
            })
}

/// The ids of the dynamic filters `node` makes when it is a hash join of
/// partitioned inputs; none for any other node.
pub fn partitioned_join_filter_ids(node: &Arc<dyn ExecutionPlan>) -> Vec<u64> {
    let partitioned = node
        .downcast_ref::<HashJoinExec>()
        .is_some_and(|join| *join.partition_mode() == PartitionMode::Partitioned);
    if !partitioned {
        return Vec::new();
    }
    filter_ids(node)
}

/// The ids of the dynamic filters `node` makes.
fn filter_ids(node: &Arc<dyn ExecutionPlan>) -> Vec<u64> {
    node.dynamic_expressions_produced()
        .iter()
        .filter_map(|filter| filter.expression_id())
        .collect()
}

/// Whether `expr` holds a dynamic filter whose id is in `ids`.
pub fn refers_to_any(expr: &Arc<dyn PhysicalExpr>, ids: &[u64]) -> bool {
    expr.exists(|node| Ok(node.expression_id().is_some_and(|id| ids.contains(&id))))
        .unwrap_or(false)
}

/// Drops the rows of its input that the dynamic filters pushed down to it
/// reject: the filters a hash join, a top-k sort or a `min`/`max`
/// aggregate above fills in as it runs. Its input is a scan, which still
/// gets each filter too, to skip what its statistics rule out, or, in an
/// executor's stage, a shuffle reader, which can do nothing with them: the
/// rows of a broadcast table that a join above will not match are dropped
/// before the join below hashes them.
///
/// Until a filter is filled in it lets every row through, so the answer
/// never depends on when it is; a filter that keeps nearly every row is
/// only sampled ([`FilterSampling`]). It has no metrics of its own: an
/// executor's stage metrics stay those of the scheduler's plan, node for
/// node.
#[derive(Debug)]
pub struct DynamicRowFilterExec {
    input: Arc<dyn ExecutionPlan>,
    filters: Vec<Arc<dyn PhysicalExpr>>,
}

impl DynamicRowFilterExec {
    /// Wraps `input`, with no filters yet.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            input,
            filters: Vec::new(),
        }
    }

    /// The filters pushed down to it.
    pub fn filters(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.filters
    }

    /// Its input.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for DynamicRowFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let filters: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
        write!(f, "DynamicRowFilterExec: [{}]", filters.join(", "))
    }
}

impl ExecutionPlan for DynamicRowFilterExec {
    fn name(&self) -> &str {
        "DynamicRowFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // A hash join looks for its filter among the expressions below it
        // before it fills it in.
        for filter in &self.filters {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            input: only_child(self.name(), children)?,
            filters: self.filters.clone(),
        }))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        // The scan prunes with them.
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        if phase != FilterPushdownPhase::Post {
            return Ok(FilterPushdownPropagation::if_all(child_pushdown_result));
        }
        // What the scan does not apply to every row, this node does.
        let kept: Vec<Arc<dyn PhysicalExpr>> = child_pushdown_result
            .parent_filters
            .iter()
            .filter(|result| matches!(result.all(), PushedDown::No))
            .map(|result| Arc::clone(&result.filter))
            .collect();
        let accepted = vec![PushedDown::Yes; child_pushdown_result.parent_filters.len()];
        if kept.is_empty() {
            return Ok(FilterPushdownPropagation::with_parent_pushdown_result(
                accepted,
            ));
        }
        let node = Self {
            input: Arc::clone(&self.input),
            filters: self.filters.iter().cloned().chain(kept).collect(),
        };
        Ok(
            FilterPushdownPropagation::with_parent_pushdown_result(accepted)
                .with_updated_node(Arc::new(node) as Arc<dyn ExecutionPlan>),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let mut filters: Vec<(Arc<dyn PhysicalExpr>, FilterSampling)> = self
            .filters
            .iter()
            .map(|filter| (Arc::clone(filter), FilterSampling::default()))
            .collect();
        let filtered = input.filter_map(move |batch| {
            let kept = batch.and_then(|batch| keep_rows(batch, &mut filters));
            std::future::ready(match kept {
                Ok(batch) if batch.num_rows() == 0 => None,
                other => Some(other),
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, filtered)))
    }
}

/// The rows of `batch` every filter keeps, each filter evaluated where its
/// [`FilterSampling`] says so.
fn keep_rows(
    mut batch: RecordBatch,
    filters: &mut [(Arc<dyn PhysicalExpr>, FilterSampling)],
) -> Result<RecordBatch> {
    for (filter, sampling) in filters {
        if batch.num_rows() == 0 {
            break;
        }
        if !sampling.evaluate_next() {
            continue;
        }
        let rows = batch.num_rows();
        // A filter not filled in yet is `true`: nothing to do.
        batch = match filter.evaluate(&batch)? {
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => batch,
            ColumnarValue::Scalar(_) => batch.slice(0, 0),
            ColumnarValue::Array(mask) => filter_record_batch(&batch, as_boolean_array(&mask)?)?,
        };
        sampling.record(rows, batch.num_rows());
    }
    Ok(batch)
}

/// When a [`DynamicRowFilterExec`] evaluates one of its filters: on every
/// batch while the filter drops at least [`Self::USEFUL_DROP`] of the rows
/// it sees, judged over windows of [`Self::WINDOW_ROWS`] rows; after a
/// window in which it dropped less, only on every
/// [`Self::SAMPLE_EVERY`]th batch (the join that made it drops the rows
/// anyway), until a sampled window shows it useful again, as a top-k
/// sort's filter becomes when its bound tightens.
#[derive(Debug, Default, Clone, Copy)]
pub struct FilterSampling {
    seen: usize,
    kept: usize,
    skipping: bool,
    skipped_batches: usize,
}

impl FilterSampling {
    /// Rows over which a filter's use is judged.
    pub const WINDOW_ROWS: usize = 64 * 1024;
    /// The smallest share of rows a filter must drop to be evaluated on
    /// every batch (one in ten).
    pub const USEFUL_DROP: f64 = 0.1;
    /// How often a filter judged useless is still evaluated, in batches.
    pub const SAMPLE_EVERY: usize = 16;

    /// Whether to evaluate the filter on the next batch.
    pub fn evaluate_next(&mut self) -> bool {
        if !self.skipping {
            return true;
        }
        self.skipped_batches += 1;
        if self.skipped_batches >= Self::SAMPLE_EVERY {
            self.skipped_batches = 0;
            return true;
        }
        false
    }

    /// Records one evaluation: `rows` in, `kept` out.
    pub fn record(&mut self, rows: usize, kept: usize) {
        self.seen += rows;
        self.kept += kept;
        let window = if self.skipping {
            Self::WINDOW_ROWS / Self::SAMPLE_EVERY
        } else {
            Self::WINDOW_ROWS
        };
        if self.seen < window {
            return;
        }
        let dropped = 1.0 - self.kept as f64 / self.seen as f64;
        self.skipping = dropped < Self::USEFUL_DROP;
        self.seen = 0;
        self.kept = 0;
    }
}

#[cfg(test)]
mod tests;
