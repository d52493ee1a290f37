//! [`AdaptiveJoinExec`]: a hash join that, when its build side does not fit
//! in the memory pool, hands its inputs to a grace hash join that spills.
//!
//! DataFusion's `HashJoinExec` holds its whole build side in memory and fails
//! the query when the pool refuses it. The adaptive join runs that very hash
//! join (same plan, same dynamic filters, same speed) over *taps* on its two
//! inputs. A tap passes batches through and remembers which build-side rows
//! the join has read. When the join fails to reserve memory for its build
//! side and has not yet read a probe row, the adaptive join takes both inputs
//! back (the rows read so far, the unread rest of the build stream and the
//! untouched probe stream) and joins them by a grace hash join instead
//! ([`grace`]): both sides hash-partitioned on the join keys into buckets on
//! disk, then joined bucket by bucket in memory (a bucket still too large is
//! split again, and one that cannot shrink, a single key holding most rows,
//! is joined by DataFusion's sort-merge join, which spills). Every partition
//! decides on its own, so only the partitions whose build side is too large
//! pay for writing their inputs to disk.
//!
//! A hash join's table cannot spill, and the pool gives operators that can
//! spill only what the others leave them: a build side that took the whole
//! pool would leave the sorts and aggregates of the same query, the fallback's
//! own sorts among them, nothing to work with. So each partition's build
//! side may take at most [`AdaptiveJoinOptions::build_memory_fraction`] of
//! the pool, shared among the join's partitions (all of which run at once);
//! a larger one falls back as if the pool had refused it.
//!
//! A broadcast (`CollectLeft`) join, planned when statistics say its build
//! side is small (they can be wrong), builds one table that every partition
//! probes. When it does not fit, the first partition to fall back splits the
//! build side into buckets once, and every partition joins its own probe
//! rows with those shared buckets. Only the join types that never emit
//! unmatched build rows (inner, right, right semi, anti and mark) are
//! adapted in that mode: the others need every partition's matches before a
//! build row can be emitted ([`AdaptiveJoinExec::supports`]).

mod fallback;
mod grace;
mod taps;

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::internal_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::distribution_requirements::InputDistributionRequirements;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricValue, MetricsSet,
};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions, Statistics,
};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};

use self::grace::{Buckets, GraceJoin};
use self::taps::{BuildInput, InputTapExec, InputTaps, JoinSide, ProbeInput, lock};

/// Metric: how many partitions fell back to the grace hash join.
pub const GRACE_FALLBACKS_METRIC: &str = "grace_fallbacks";

/// How adaptive joins share the memory pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveJoinOptions {
    /// The share of the memory pool the build sides of one join's partitions
    /// may take together (0 to 1; a broadcast join's one build side may take
    /// all of it); the rest is left to the operators that can spill.
    pub build_memory_fraction: f64,
}

impl Default for AdaptiveJoinOptions {
    fn default() -> Self {
        Self {
            build_memory_fraction: 0.5,
        }
    }
}

impl AdaptiveJoinOptions {
    /// The share of a pool of `limit` bytes that `tables` hash tables built
    /// at once may each take.
    fn budget(&self, limit: usize, tables: usize) -> usize {
        let fraction = self.build_memory_fraction.clamp(0.0, 1.0);
        (limit as f64 * fraction / tables.max(1) as f64) as usize
    }
}

/// A broadcast join's build side, split into buckets once for every
/// partition that falls back.
type SharedBuckets = Shared<BoxFuture<'static, Result<Arc<Buckets>, Arc<DataFusionError>>>>;

/// A partitioned hash join that falls back, per partition, to a grace hash
/// join that spills when its build side does not fit in memory. See the
/// [module documentation](self).
pub struct AdaptiveJoinExec {
    /// The join as planned; its inputs are this node's children.
    planned: Arc<HashJoinExec>,
    /// The same join (sharing its metrics and dynamic filter) reading its
    /// inputs through taps.
    tapped: Arc<HashJoinExec>,
    taps: Arc<InputTaps>,
    options: AdaptiveJoinOptions,
    metrics: ExecutionPlanMetricsSet,
    /// The sort-merge plans run so far for skewed buckets, whose spill
    /// metrics count as this node's.
    fallbacks: Arc<Mutex<Vec<Arc<dyn ExecutionPlan>>>>,
    /// A broadcast join's build side in buckets, once a partition fell back.
    shared_buckets: Arc<Mutex<Option<SharedBuckets>>>,
}

impl fmt::Debug for AdaptiveJoinExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveJoinExec")
            .field("planned", &self.planned)
            .finish_non_exhaustive()
    }
}

impl AdaptiveJoinExec {
    /// Whether `join` can be adapted: a partitioned join (each partition
    /// builds its own table), or a broadcast one that never emits unmatched
    /// build rows; with no row limit, not a null-aware anti join (`NOT IN`,
    /// whose answer depends on NULLs in every bucket), and whose output is
    /// not ordered (the grace join orders it differently).
    pub fn supports(join: &HashJoinExec) -> bool {
        let mode = match join.partition_mode() {
            PartitionMode::Partitioned => true,
            PartitionMode::CollectLeft => matches!(
                join.join_type(),
                JoinType::Inner
                    | JoinType::Right
                    | JoinType::RightSemi
                    | JoinType::RightAnti
                    | JoinType::RightMark
            ),
            PartitionMode::Auto => false,
        };
        mode && !join.null_aware
            && join.fetch().is_none()
            && join.properties().output_ordering().is_none()
    }

    /// Whether every partition probes one shared build side.
    fn broadcast(&self) -> bool {
        *self.planned.partition_mode() == PartitionMode::CollectLeft
    }

    /// Wraps `join`, which must be [supported](Self::supports).
    pub fn try_new(join: &HashJoinExec, options: AdaptiveJoinOptions) -> Result<Self> {
        if !Self::supports(join) {
            return internal_err!("AdaptiveJoinExec cannot adapt this join: {join:?}");
        }
        let planned = Arc::new(join.builder().build()?);
        let taps = Arc::new(InputTaps::default());
        let build = InputTapExec::new(Arc::clone(join.left()), JoinSide::Build, Arc::clone(&taps));
        let probe = InputTapExec::new(Arc::clone(join.right()), JoinSide::Probe, Arc::clone(&taps));
        let tapped = Arc::new(
            join.builder()
                .with_new_children(vec![Arc::new(build), Arc::new(probe)])?
                .build()?,
        );
        Ok(Self {
            planned,
            tapped,
            taps,
            options,
            metrics: ExecutionPlanMetricsSet::new(),
            fallbacks: Arc::default(),
            shared_buckets: Arc::default(),
        })
    }

    /// The hash join as planned.
    pub fn hash_join(&self) -> &HashJoinExec {
        &self.planned
    }

    /// `join` adapted, or unchanged when it cannot be.
    pub(crate) fn adapt_or_keep(
        join: Arc<dyn ExecutionPlan>,
        options: AdaptiveJoinOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match join.downcast_ref::<HashJoinExec>() {
            Some(hash) if Self::supports(hash) => Ok(Arc::new(Self::try_new(hash, options)?)),
            _ => Ok(join),
        }
    }
}

impl DisplayAs for AdaptiveJoinExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "AdaptiveJoinExec: fallback=grace, ")?;
        self.planned.fmt_as(t, f)
    }
}

impl ExecutionPlan for AdaptiveJoinExec {
    fn name(&self) -> &str {
        "AdaptiveJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.planned.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.planned.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.planned.apply_expressions(f)
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.planned.input_distribution_requirements()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // The sort-merge fallback reorders both inputs.
        vec![false, false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.planned.benefits_from_input_partitioning()
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let join = Arc::clone(&self.planned).replace_children(children, options)?;
        Self::adapt_or_keep(join, self.options)
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

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Self::adapt_or_keep(Arc::clone(&self.planned).reset_state()?, self.options)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.planned.statistics_from_inputs(input_stats, args)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.planned.child_stats_requests(partition)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let broadcast = self.broadcast();
        let partitions = self.planned.properties().partitioning.partition_count();
        let limit = match context.memory_pool().memory_limit() {
            MemoryLimit::Finite(limit) => Some(limit),
            _ => None,
        };
        // One table per partition, built at once; or one for all of them,
        // whose buckets every partition then builds at once.
        let build_budget = limit.map(|l| {
            self.options
                .budget(l, if broadcast { 1 } else { partitions })
        });
        let bucket_budget = limit.map(|l| self.options.budget(l, partitions));
        let build_partition = if broadcast { 0 } else { partition };
        let build = self
            .taps
            .build(build_partition, broadcast, build_budget, || {
                self.planned
                    .left()
                    .execute(build_partition, Arc::clone(&context))
            })?;
        let probe = self
            .planned
            .right()
            .execute(partition, Arc::clone(&context))?;
        let probe = self.taps.probe(partition, probe, build);
        let hash = self.tapped.execute(partition, Arc::clone(&context))?;
        Ok(Box::pin(AdaptiveJoinStream {
            schema: self.schema(),
            state: JoinState::Hash(hash),
            partition,
            broadcast,
            probe,
            taps: Arc::clone(&self.taps),
            grace: GraceJoin::new(
                Arc::clone(&self.planned),
                context,
                bucket_budget,
                &self.metrics,
                partition,
                Arc::clone(&self.fallbacks),
            ),
            shared_buckets: Arc::clone(&self.shared_buckets),
            fallback_count: MetricBuilder::new(&self.metrics)
                .counter(GRACE_FALLBACKS_METRIC, partition),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        let mut set = self.planned.metrics().unwrap_or_default();
        for metric in self.metrics.clone_inner().iter() {
            set.push(Arc::clone(metric));
        }
        let fallbacks = self.fallbacks.lock().unwrap_or_else(|e| e.into_inner());
        for plan in fallbacks.iter() {
            push_spill_metrics(plan, &mut set);
        }
        Some(set)
    }
}

/// Adds the spill metrics of every node of `plan` to `set`.
fn push_spill_metrics(plan: &Arc<dyn ExecutionPlan>, set: &mut MetricsSet) {
    if let Some(metrics) = plan.metrics() {
        for metric in metrics.iter() {
            if matches!(
                metric.value(),
                MetricValue::SpillCount(_)
                    | MetricValue::SpilledBytes(_)
                    | MetricValue::SpilledRows(_)
            ) {
                set.push(Arc::clone(metric));
            }
        }
    }
    for child in plan.children() {
        push_spill_metrics(child, set);
    }
}

/// Whether `error` is the memory pool refusing a reservation.
pub fn is_resources_exhausted(error: &DataFusionError) -> bool {
    matches!(error.find_root(), DataFusionError::ResourcesExhausted(_))
}

enum JoinState {
    /// Running the hash join.
    Hash(SendableRecordBatchStream),
    /// Splitting both inputs into buckets on disk.
    Splitting(BoxFuture<'static, Result<SendableRecordBatchStream>>),
    /// Joining the buckets.
    Grace(SendableRecordBatchStream),
    /// Failed, or ended.
    Done,
}

struct AdaptiveJoinStream {
    schema: SchemaRef,
    state: JoinState,
    partition: usize,
    broadcast: bool,
    probe: Arc<Mutex<ProbeInput>>,
    taps: Arc<InputTaps>,
    grace: GraceJoin,
    shared_buckets: Arc<Mutex<Option<SharedBuckets>>>,
    fallback_count: Count,
}

impl AdaptiveJoinStream {
    /// Starts the grace hash join over the failed hash join's inputs, or
    /// gives `error` back when the join can no longer give them up.
    fn fall_back(
        &mut self,
        error: DataFusionError,
    ) -> Result<BoxFuture<'static, Result<SendableRecordBatchStream>>> {
        let mut probe_input = lock(&self.probe);
        let build_input = Arc::clone(probe_input.build());
        let buckets = if self.broadcast {
            // The first partition here takes the shared build side and
            // splits it for all.
            let mut shared = lock(&self.shared_buckets);
            match shared.as_ref() {
                Some(buckets) => buckets.clone(),
                None => {
                    let Some(split) = self.split_build(&build_input) else {
                        return Err(error);
                    };
                    *shared = Some(split.clone());
                    split
                }
            }
        } else {
            let Some(split) = self.split_build(&build_input) else {
                return Err(error);
            };
            split
        };
        let Some(probe) = probe_input.take() else {
            return Err(error);
        };
        tracing::info!(
            partition = self.partition,
            build_rows_read = lock(&build_input).rows_read(),
            "hash join build side does not fit in memory ({}); \
             switching to a grace hash join that spills",
            error.find_root()
        );
        self.fallback_count.add(1);
        let grace = self.grace.clone();
        Ok(async move {
            let build = buckets.await.map_err(DataFusionError::Shared)?;
            grace.join_with(build, probe).await
        }
        .boxed())
    }
}

impl AdaptiveJoinStream {
    /// Takes the build side back and starts splitting it into buckets, a
    /// future any partition may await; `None` once the build side is gone.
    fn split_build(&self, build_input: &Mutex<BuildInput>) -> Option<SharedBuckets> {
        let build = lock(build_input).take()?;
        let grace = self.grace.clone();
        Some(
            async move {
                grace
                    .split_build(build)
                    .await
                    .map(Arc::new)
                    .map_err(Arc::new)
            }
            .boxed()
            .shared(),
        )
    }
}

impl Stream for AdaptiveJoinStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match &mut self.state {
                JoinState::Hash(stream) => match stream.poll_next_unpin(cx) {
                    Poll::Ready(Some(Err(error))) if is_resources_exhausted(&error) => {
                        // Dropping the hash join first releases what it
                        // holds (and tells its dynamic filter this
                        // partition is gone).
                        self.state = JoinState::Done;
                        match self.fall_back(error) {
                            Ok(split) => self.state = JoinState::Splitting(split),
                            Err(error) => return Poll::Ready(Some(Err(error))),
                        }
                    }
                    other => return other,
                },
                JoinState::Splitting(split) => match split.poll_unpin(cx) {
                    Poll::Ready(Ok(stream)) => self.state = JoinState::Grace(stream),
                    Poll::Ready(Err(error)) => {
                        self.state = JoinState::Done;
                        return Poll::Ready(Some(Err(error)));
                    }
                    Poll::Pending => return Poll::Pending,
                },
                JoinState::Grace(stream) => return stream.poll_next_unpin(cx),
                JoinState::Done => return Poll::Ready(None),
            }
        }
    }
}

impl RecordBatchStream for AdaptiveJoinStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

impl Drop for AdaptiveJoinStream {
    fn drop(&mut self) {
        self.taps
            .remove(self.partition, &self.probe, self.broadcast);
    }
}

#[cfg(test)]
mod tests;
