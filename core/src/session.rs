//! The session state and function registry shared by every Ember process.

use std::sync::Arc;

use ballista_core::extension::{
    ballista_aggregate_functions, ballista_scalar_functions, ballista_window_functions,
};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionConfig;

use crate::aggregated_join_sides::BuildAggregatedSides;
use crate::broadcast_joins::BroadcastJoinsByCost;
use crate::checked_arithmetic::{CheckedArithmeticRule, CheckedConstantFolding};
use crate::cluster_order::KeepOrderOnCluster;
use crate::common_subplans::ReuseCommonSubplans;
use crate::conjunctions::EvaluateConjunctsInOrder;
use crate::dialect::SparkSemanticsRule;
use crate::distributed_joins::PartitionUnbroadcastableJoins;
use crate::grouping_sets::AggregateBeforeGroupingSets;
use crate::join_order::ReorderJoins;
use crate::one_step_aggregates::OneStepHighCardinalityAggregates;
use crate::scalar_subquery::{SingleRowScalarSubqueries, scalar_subquery_value};
use crate::scan_dynamic_filters::DynamicFiltersInScans;
use crate::selectivity::EstimateFilterSelectivity;
use crate::semi_join::{FilterAggregateByJoinKeys, PushDownSemiJoin};
use crate::settings_rewrite::SettingsRewrite;
use crate::write::EmberQueryPlanner;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;

/// Builds a session state from a configuration and a runtime environment.
///
/// The state has DataFusion's default planners, optimizer rules, functions
/// and table formats, plus the functions Ballista adds, Ember's query planner
/// (which turns file writes into distributed, atomic ones), the analyzer rule
/// rule of Spark's semantics ([`SparkSemanticsRule`], where `ember.dialect`
/// asks for them), the analyzer and physical rule of checked arithmetic
/// ([`CheckedArithmeticRule`], [`physical_optimizer_rules`]), the analyzer
/// rule that keeps scalar subqueries to one row where DataFusion makes them
/// joins ([`SingleRowScalarSubqueries`], with its function) and two optimizer
/// rules of Ember's, [`PushDownSemiJoin`] and [`FilterAggregateByJoinKeys`].
/// Ember's named functions (every
/// library registered with [`crate::functions::register_library`]) are
/// registered here too, so that the client (which plans), the scheduler (which re-plans
/// physically) and the executors (which decode plans) resolve the same names.
pub fn session_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> Result<SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .with_query_planner(Arc::new(EmberQueryPlanner))
        .with_analyzer_rule(Arc::new(SparkSemanticsRule))
        .with_analyzer_rule(Arc::new(CheckedArithmeticRule))
        .with_analyzer_rule(Arc::new(SingleRowScalarSubqueries))
        .with_optimizer_rule(Arc::new(PushDownSemiJoin))
        .with_optimizer_rule(Arc::new(FilterAggregateByJoinKeys))
        .with_optimizer_rules(optimizer_rules())
        .with_physical_optimizer_rules(physical_optimizer_rules())
        .build();
    state.register_udf(Arc::new(scalar_subquery_value()))?;
    state.register_udf(Arc::new(crate::dialect::spark_decimal_divide()))?;
    let (scalars, aggregates) = crate::functions::registered_functions();
    for function in scalars {
        state.register_udf(function)?;
    }
    for function in aggregates {
        state.register_udaf(function)?;
    }
    Ok(state)
}

/// DataFusion's logical optimizer rules, with Ember's checked constant
/// folding ([`CheckedConstantFolding`]) just before its expression
/// simplifier, which would fold overflowing constants wrapping around.
fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    let at = rules
        .iter()
        .position(|rule| rule.name() == "simplify_expressions")
        .unwrap_or(0);
    rules.insert(at, Arc::new(CheckedConstantFolding));
    rules
}

/// DataFusion's physical optimizer rules, with Ember's overflow checks
/// ([`SettingsRewrite::CHECKED_ARITHMETIC`]) before the first projection
/// pushdown, which moves projected expressions into file scans: checked
/// there, they travel inside the scan to the executors (Ember's physical
/// codec carries them) and file scans evaluate them checked; and, last but
/// for the sanity check, [`PartitionUnbroadcastableJoins`], which gives a
/// cluster partitioned joins (and the exchanges above them) where it could
/// not broadcast the build side, then [`KeepOrderOnCluster`], which sorts
/// where a cluster would lose an order the plan relies on (above joins whose
/// sides Ballista may swap, above exchanges that become stage boundaries),
/// then [`EvaluateConjunctsInOrder`], which has filters evaluate their most
/// selective conjuncts first, after every rule that pushes filters into
/// scans;
/// [`BuildAggregatedSides`], right after DataFusion's `JoinSelection`,
/// which builds partitioned joins on an aggregated side where its groups
/// make it the smaller, then [`BroadcastJoinsByCost`], which broadcasts
/// build sides that are small against their probe sides (embedded only);
/// [`AggregateBeforeGroupingSets`], right after DataFusion's
/// `CombinePartialFinalAggregate`, which aggregates grouping sets by all
/// their columns before expanding them, then
/// [`OneStepHighCardinalityAggregates`], which aggregates in one step where
/// the statistics estimate nearly as many groups as rows (embedded only);
/// [`EstimateFilterSelectivity`], which estimates the rows of filters
/// DataFusion cannot analyse, then [`ReorderJoins`], right before
/// DataFusion's `JoinSelection`, so that chains of inner joins follow their
/// inputs' statistics rather than the order the query names its tables in;
/// [`ReuseCommonSubplans`], which computes a subquery the plan repeats once
/// (embedded only), and right after it [`DynamicFiltersInScans`] in place of
/// DataFusion's post-optimization filter pushdown, so that dynamic filters
/// drop rows inside Parquet scans.
fn physical_optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .position(|rule| rule.name() == "ProjectionPushdown")
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(SettingsRewrite::CHECKED_ARITHMETIC));
    // Last but for the sanity check, to see the joins as Ballista will.
    let at = rules
        .iter()
        .position(|rule| rule.name() == "SanityCheckPlan")
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(PartitionUnbroadcastableJoins::LAST));
    // After it, to see the joins and exchanges it placed.
    rules.insert(at + 1, Arc::new(KeepOrderOnCluster));
    // After every rule that reads or pushes down filter predicates.
    rules.insert(at + 2, Arc::new(EvaluateConjunctsInOrder));
    // Once the exchanges are placed and DataFusion has merged the steps of
    // aggregates that have none between them.
    if let Some(at) = rules
        .iter()
        .position(|rule| rule.name() == "CombinePartialFinalAggregate")
    {
        rules.insert(at + 1, Arc::new(OneStepHighCardinalityAggregates));
        rules.insert(at + 1, Arc::new(AggregateBeforeGroupingSets));
    }
    let at = rules
        .iter()
        .position(|rule| rule.name() == "join_selection")
        .map_or(0, |at| at + 1);
    rules.insert(at, Arc::new(PartitionUnbroadcastableJoins::EARLY));
    // Embedded only, where the rule above does nothing: broadcasts by the
    // sides' rows, before the exchanges are placed for the joins' modes.
    rules.insert(at, Arc::new(BroadcastJoinsByCost));
    // Before it, so that it sees the sides' final roles.
    rules.insert(at, Arc::new(BuildAggregatedSides));
    // Before `JoinSelection`, which picks the reordered joins' build sides.
    let at = rules
        .iter()
        .position(|rule| rule.name() == "join_selection")
        .unwrap_or(0);
    rules.insert(at, Arc::new(ReorderJoins));
    // Before the join order and JoinSelection read the filters' estimates.
    rules.insert(at, Arc::new(EstimateFilterSelectivity));
    // In place of DataFusion's post-optimization filter pushdown, right
    // after the shared subplans are chosen: a dynamic filter from above a
    // shared subplan belongs to one use and stops at it.
    if let Some(at) = rules
        .iter()
        .position(|rule| rule.name() == "FilterPushdown(Post)")
    {
        rules[at] = Arc::new(DynamicFiltersInScans::new());
        rules.insert(at, Arc::new(ReuseCommonSubplans));
    }
    rules
}

/// The function registry executors resolve function names from when they
/// decode a stage plan: every function of [`session_state`].
pub fn function_registry(state: &SessionState) -> Arc<BallistaFunctionRegistry> {
    Arc::new(BallistaFunctionRegistry::from(state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::session_config, object_store::runtime_env};

    #[test]
    fn registry_holds_the_session_functions() {
        let config = session_config();
        let runtime = runtime_env(&config, None).unwrap();
        let state = session_state(config, runtime).unwrap();
        let registry = function_registry(&state);
        for name in ["abs", "upper", "date_trunc"] {
            assert!(registry.scalar_functions.contains_key(name), "{name}");
        }
        for name in ["sum", "avg", "count"] {
            assert!(registry.aggregate_functions.contains_key(name), "{name}");
        }
        assert!(registry.window_functions.contains_key("row_number"));
    }
}
