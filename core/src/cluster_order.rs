//! Orders a cluster's results where Ballista would lose the order the plan
//! relies on.
//!
//! DataFusion places sorts as low as it can and lets operators that keep
//! their input's order carry it up. Two such operators do not keep it on a
//! cluster:
//!
//! * **Joins.** A hash join keeps the order of its probe side; for `...
//!   JOIN ... ORDER BY x` DataFusion sorts the probe side below the join.
//!   Ballista, though, chooses a join's build side once more when a stage's
//!   inputs have run (its `JoinSelection` over the resolved stage, from their
//!   real sizes), and swapping the sides makes the old build side the probe:
//!   the result came back ordered by nothing, or within each partition only.
//! * **Exchanges.** A hash repartition of one input partition keeps its
//!   order, and so does merging partitions into one of them; Ballista turns
//!   both into stage boundaries, whose shuffle readers promise no order. A
//!   window function above one was planned on the executor without the
//!   order it needs ("Expects PARTITION BY expression to be ordered").
//!
//! [`KeepOrderOnCluster`] runs last in plans a cluster runs (sessions with
//! Ballista's settings registered). Wherever something above relies on the
//! order such an operator passes through (the result's own order, an
//! operator that requires an input order, a limit), it sorts the operator's
//! output instead. Below a join it sorts above, it takes away the sorts
//! nothing else relies on any more. Embedded plans are left alone: no one
//! swaps their joins or cuts their exchanges.

use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::joins::{CrossJoinExec, HashJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

/// Sorts above the joins and exchanges of a cluster plan whose
/// passed-through order is relied on, so that Ballista's choice of build
/// side and its stage boundaries cannot lose it.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeepOrderOnCluster;

/// Whether Ballista may swap `plan`'s inputs once its stage's inputs are
/// known.
fn reorderable_join(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<HashJoinExec>() || plan.is::<CrossJoinExec>() || plan.is::<NestedLoopJoinExec>()
}

/// Whether Ballista makes `plan` a stage boundary whose reader promises no
/// order.
fn stage_boundary(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<CoalescePartitionsExec>()
        || plan
            .downcast_ref::<RepartitionExec>()
            .is_some_and(|r| matches!(r.partitioning(), Partitioning::Hash(..)))
}

/// Whether `plan` (whose own order is relied on when `relied_on`) relies on
/// the order of its child `index`.
fn relies_on_child_order(plan: &dyn ExecutionPlan, index: usize, relied_on: bool) -> bool {
    let required = plan
        .required_input_ordering()
        .get(index)
        .is_some_and(Option::is_some);
    // An operator whose order is relied on and has one relies on its
    // children's: a union's order is its inputs' even where DataFusion
    // says it maintains none of them (an input ordered by fewer keys, the
    // others being constant).
    let passed_on = relied_on
        && (plan
            .maintains_input_order()
            .get(index)
            .copied()
            .unwrap_or(false)
            || plan.output_ordering().is_some());
    // A limit keeps the first rows of its input: which ones depends on the
    // input's order.
    let limit =
        plan.fetch().is_some() || plan.is::<GlobalLimitExec>() || plan.is::<LocalLimitExec>();
    required || passed_on || limit
}

/// `plan`, sorted above its joins and exchanges where their order is relied
/// on; `relied_on` says whether anything above relies on `plan`'s order.
fn rewrite(plan: Arc<dyn ExecutionPlan>, relied_on: bool) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.children().is_empty() {
        return Ok(plan);
    }
    // A sort whose order nothing relies on, that neither limits its input
    // nor merges its partitions, can go.
    if !relied_on
        && let Some(sort) = plan.downcast_ref::<SortExec>()
        && sort.fetch().is_none()
        && sort.input().output_partitioning().partition_count()
            == plan.output_partitioning().partition_count()
    {
        return rewrite(Arc::clone(sort.input()), false);
    }
    let ordering = plan.output_ordering().cloned().filter(|_| relied_on);
    let join = ordering.is_some()
        && reorderable_join(plan.as_ref())
        && (plan.fetch().is_none() || plan.with_fetch(None).is_some());
    let boundary = ordering.is_some() && stage_boundary(plan.as_ref());
    let required = plan.required_input_ordering();
    let children = plan
        .children()
        .into_iter()
        .enumerate()
        .map(|(index, child)| {
            // Below a join sorted from above, its inputs' order is relied
            // on only where the join itself requires it.
            let relied = if join {
                required.get(index).is_some_and(Option::is_some)
            } else {
                relies_on_child_order(plan.as_ref(), index, relied_on)
            };
            rewrite(Arc::clone(child), relied)
        })
        .collect::<Result<Vec<_>>>()?;
    let fetch = plan.fetch();
    let mut rebuilt = replace_children_if_necessary(plan, children)?;
    let Some(ordering) = ordering.filter(|_| join || boundary) else {
        return Ok(rebuilt);
    };
    // A join that stops after `fetch` rows kept the first of them in the
    // order it passed through: the sort above keeps them instead.
    if join
        && fetch.is_some()
        && let Some(unlimited) = rebuilt.with_fetch(None)
    {
        rebuilt = unlimited;
    }
    let fetch = fetch.filter(|_| join);
    let several = rebuilt.output_partitioning().partition_count() > 1;
    Ok(Arc::new(
        SortExec::new(ordering, rebuilt)
            .with_preserve_partitioning(several)
            .with_fetch(fetch),
    ))
}

impl PhysicalOptimizerRule for KeepOrderOnCluster {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if config.extensions.get::<BallistaConfig>().is_none() {
            return Ok(plan);
        }
        // The result's own order is relied on whenever it has one.
        let relied_on = plan.output_ordering().is_some();
        rewrite(plan, relied_on)
    }

    fn name(&self) -> &str {
        "ember_keep_order_on_cluster"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use crate::config::{distributed_session_config, session_config};
    use crate::object_store::runtime_env;

    /// A session with `config`, a table `small` of 5 rows and `big` of
    /// 20,000 (enough for DataFusion to repartition it).
    async fn context(config: SessionConfig) -> SessionContext {
        let runtime = runtime_env(&config, None).unwrap();
        let ctx = SessionContext::new_with_state(crate::session_state(config, runtime).unwrap());
        for (name, n) in [("small", 5), ("big", 20_000)] {
            ctx.sql(&format!(
                "CREATE TABLE {name} AS SELECT value % 5 AS k, (value * 7919) % 1000 AS v \
                 FROM generate_series(1, {n})"
            ))
            .await
            .unwrap();
        }
        ctx
    }

    /// The physical plan of `sql`, one operator per line.
    async fn plan(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        displayable(plan.as_ref())
            .indent(false)
            .to_string()
            .lines()
            .map(|line| line.trim().to_string())
            .collect()
    }

    /// The line of the first operator named `name`.
    fn line_of(plan: &[String], name: &str) -> usize {
        plan.iter()
            .position(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {plan:#?}"))
    }

    const JOIN_ORDERED: &str = "SELECT big.v FROM small JOIN big ON small.k = big.k ORDER BY big.v";

    #[tokio::test]
    async fn a_cluster_sorts_above_a_join_not_through_it() {
        let mut config = distributed_session_config();
        config.options_mut().execution.target_partitions = 1;
        let plan = plan(&context(config).await, JOIN_ORDERED).await;
        assert!(
            line_of(&plan, "SortExec") < line_of(&plan, "HashJoinExec"),
            "{plan:#?}"
        );
        assert_eq!(
            plan.iter().filter(|l| l.starts_with("SortExec")).count(),
            1,
            "{plan:#?}"
        );
    }

    #[tokio::test]
    async fn embedded_the_order_flows_through_the_join() {
        let mut config = session_config();
        config.options_mut().execution.target_partitions = 1;
        let plan = plan(&context(config).await, JOIN_ORDERED).await;
        assert!(
            line_of(&plan, "SortExec") > line_of(&plan, "HashJoinExec"),
            "{plan:#?}"
        );
    }

    /// Windows over one partition (a constant key), then over a hash
    /// exchange of it, which keeps its order embedded.
    const WINDOWS: &str = "SELECT first_value(v) OVER (PARTITION BY 1461 ORDER BY k, v) AS a, \
         row_number() OVER (PARTITION BY k * 2 ORDER BY k, v) AS b, \
         lag(v) OVER (PARTITION BY k ORDER BY k, v) AS c FROM big";

    #[tokio::test]
    async fn a_cluster_sorts_above_an_exchange_a_window_relies_on() {
        let mut config = distributed_session_config();
        config.options_mut().execution.target_partitions = 2;
        let ctx = context(config).await;
        let plan = plan(&ctx, WINDOWS).await;
        // No window reads an exchange, a stage boundary on a cluster.
        for (at, line) in plan.iter().enumerate() {
            if line.starts_with("BoundedWindowAggExec") {
                let input = &plan[at + 1];
                assert!(
                    !input.starts_with("RepartitionExec")
                        && !input.starts_with("CoalescePartitionsExec"),
                    "{plan:#?}"
                );
            }
        }
        let answer = ctx
            .sql(&format!("SELECT count(*) FROM ({WINDOWS})"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(answer[0].num_rows(), 1);
    }
}
