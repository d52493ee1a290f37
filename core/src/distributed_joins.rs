//! Hash joins a cluster can run correctly.
//!
//! DataFusion's `JoinSelection` broadcasts a small build side
//! (`PartitionMode::CollectLeft`) whatever the join type. In one process
//! that is right: the probe partitions share one record of which build rows
//! matched, and the last to finish emits the unmatched ones. On a cluster
//! every task has its own copy of the build side and its own record, so a
//! join that emits rows for the build side (LEFT, FULL, LEFT SEMI, LEFT
//! ANTI, LEFT MARK) would emit them once per task. Ballista's stage planner
//! notices and turns such a join into a partitioned one, but only after
//! DataFusion has placed the plan's exchanges: the operators above the join
//! still expect the single partition it used to produce, and an aggregate
//! without GROUP BY then answered once per partition, a LIMIT kept its rows
//! once per partition.
//!
//! Ballista also turns a broadcast join of a safe type into a partitioned
//! one when it cannot tell that the build side fits its broadcast limit
//! (`ballista.optimizer.broadcast_join_threshold_bytes`), as when a filter
//! hides the size, with the same result.
//!
//! [`PartitionUnbroadcastableJoins`] makes the same decision first, on the
//! cluster side only (embedded, broadcasting any join stays correct and
//! fast), twice. Right after `JoinSelection`, it only changes the joins'
//! mode, so that the rules that place exchanges and push limits into
//! operators see the partitioned join (a limit pushed into a filter or a
//! join above a broadcast holds for its one partition only). As the last of
//! the physical optimizer's rules, it catches a join whose statistics
//! changed in between: each becomes a partitioned one over hash exchanges,
//! with a limit pushed into it kept above a merge of its partitions, and
//! DataFusion's `EnsureRequirements` runs again, requiring the result's own
//! order and single partition where it had them. Ballista's planner then
//! finds nothing to change.

use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::{LexRequirement, OrderingRequirements};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::ensure_requirements::EnsureRequirements;
use datafusion::physical_optimizer::output_requirements::{
    OutputRequirementExec, OutputRequirements,
};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::StatisticsContext;
use datafusion::physical_plan::{Distribution, ExecutionPlanProperties};
use datafusion::physical_plan::{ExecutionPlan, Partitioning, StatisticsArgs};

/// Turns the broadcast hash joins a cluster cannot broadcast into
/// partitioned ones, in plans a cluster runs (sessions with Ballista's
/// settings registered), and fixes the distribution above them.
#[derive(Debug, Default, Clone, Copy)]
pub struct PartitionUnbroadcastableJoins {
    /// Whether this is the first pass, right after DataFusion's
    /// `JoinSelection`: it only changes the joins' mode, and the rules that
    /// follow place exchanges and push limits down to suit them. The last
    /// pass (`false`) catches a join whose statistics changed in between.
    early: bool,
}

impl PartitionUnbroadcastableJoins {
    /// The pass that runs right after `JoinSelection`.
    pub const EARLY: Self = Self { early: true };
    /// The pass that runs last, before the sanity check.
    pub const LAST: Self = Self { early: false };
}

/// Whether every output row of a `join_type` join is produced by a probe
/// row, so that tasks holding copies of the build side cannot repeat one.
pub(crate) fn probe_driven(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner
            | JoinType::Right
            | JoinType::RightSemi
            | JoinType::RightAnti
            | JoinType::RightMark
    )
}

/// Bytes a row of `data_type` is taken to need when only row counts are
/// known: the widths Ballista's planner assumes, so both decide alike.
fn assumed_width(data_type: &DataType) -> usize {
    match data_type {
        DataType::Boolean | DataType::Int8 | DataType::UInt8 => 1,
        DataType::Int16 | DataType::UInt16 => 2,
        DataType::Int32 | DataType::UInt32 | DataType::Float32 | DataType::Date32 => 4,
        DataType::Int64 | DataType::UInt64 | DataType::Float64 | DataType::Date64 => 8,
        DataType::Decimal128(..) => 16,
        _ => 32,
    }
}

/// Whether `build` is known to be smaller than `threshold` bytes, from its
/// statistics: its byte size, else its rows times an assumed row width.
fn known_to_fit(build: &dyn ExecutionPlan, threshold: usize) -> bool {
    let Ok(stats) = StatisticsContext::new().compute(build, &StatisticsArgs::new()) else {
        return false;
    };
    if let Some(&bytes) = stats.total_byte_size.get_value()
        && bytes != 0
    {
        return bytes < threshold;
    }
    match stats.num_rows.get_value() {
        Some(&rows) if rows != 0 => {
            let width: usize = build
                .schema()
                .fields()
                .iter()
                .map(|f| assumed_width(f.data_type()))
                .sum();
            rows.saturating_mul(width.max(8)) < threshold
        }
        _ => false,
    }
}

/// `join` as a partitioned join over hash exchanges of both inputs. A
/// join that stops after `fetch` rows (a LIMIT pushed into it, which held
/// for its one output partition) keeps that limit per partition, under a
/// limit of the whole.
fn partitioned(join: &HashJoinExec, partitions: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let mut build = Arc::clone(join.left());
    if let Some(coalesce) = build.downcast_ref::<CoalescePartitionsExec>() {
        build = Arc::clone(coalesce.input());
    }
    let (build_keys, probe_keys): (Vec<_>, Vec<_>) = join
        .on()
        .iter()
        .map(|(l, r)| (Arc::clone(l), Arc::clone(r)))
        .unzip();
    let build = RepartitionExec::try_new(build, Partitioning::Hash(build_keys, partitions))?;
    let probe = RepartitionExec::try_new(
        Arc::clone(join.right()),
        Partitioning::Hash(probe_keys, partitions),
    )?;
    let partitioned = join
        .builder()
        .with_partition_mode(PartitionMode::Partitioned)
        .with_new_children(vec![Arc::new(build), Arc::new(probe)])?
        .build_exec()?;
    Ok(match join.fetch() {
        Some(fetch) => Arc::new(GlobalLimitExec::new(
            Arc::new(CoalescePartitionsExec::new(partitioned)),
            0,
            Some(fetch),
        )),
        None => partitioned,
    })
}

impl PhysicalOptimizerRule for PartitionUnbroadcastableJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(ballista) = config.extensions.get::<BallistaConfig>() else {
            return Ok(plan);
        };
        let threshold = ballista.broadcast_join_threshold_bytes();
        let partitions = config.execution.target_partitions.max(1);
        // What the result promised: its order, where it was one ordered
        // partition (an ORDER BY below a broadcast join is kept by the
        // join, and by nothing once the join has several partitions).
        let ordered = (plan.output_partitioning().partition_count() == 1)
            .then(|| plan.output_ordering().cloned())
            .flatten();
        let rewritten = plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            // Ballista runs a null-aware anti join in one task: it is right.
            // Statistics are computed only for the broadcasts in question.
            if *join.partition_mode() != PartitionMode::CollectLeft
                || join.null_aware
                || (probe_driven(*join.join_type())
                    && threshold != 0
                    && known_to_fit(join.left().as_ref(), threshold))
            {
                return Ok(Transformed::no(node));
            }
            if self.early {
                let join = join
                    .builder()
                    .with_partition_mode(PartitionMode::Partitioned)
                    .build_exec()?;
                return Ok(Transformed::yes(join));
            }
            Ok(Transformed::yes(partitioned(join, partitions)?))
        })?;
        if !rewritten.transformed || self.early {
            return Ok(rewritten.data);
        }
        // The result's own order and single partition, recorded first: the
        // first pass recorded them and has taken the record away since.
        let plan: Arc<dyn ExecutionPlan> = match ordered {
            Some(ordering) => Arc::new(OutputRequirementExec::new(
                rewritten.data,
                Some(OrderingRequirements::from(LexRequirement::from(ordering))),
                Distribution::SinglePartition,
                None,
            )),
            None => OutputRequirements::new_add_mode().optimize(rewritten.data, config)?,
        };
        let plan = EnsureRequirements::new().optimize(plan, config)?;
        OutputRequirements::new_remove_mode().optimize(plan, config)
    }

    fn name(&self) -> &str {
        if self.early {
            "ember_partition_unbroadcastable_joins_early"
        } else {
            "ember_partition_unbroadcastable_joins"
        }
    }

    fn schema_check(&self) -> bool {
        true
    }
}
