//! Where Ember's sessions place `ember-memory`'s adaptive joins: embedded
//! as a physical optimizer rule, on executors through the same function
//! applied to each stage plan, both as the session's `ember.adaptive_joins`
//! setting says.

use std::sync::Arc;

use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::config::EmberConfig;

/// `plan` with its partitioned hash joins made adaptive
/// ([`ember_memory::adapt_hash_joins`]) where `ember.adaptive_joins` is on;
/// unchanged otherwise.
pub fn adapt_joins_with_settings(
    plan: Arc<dyn ExecutionPlan>,
    settings: &EmberConfig,
) -> Result<Arc<dyn ExecutionPlan>> {
    if settings.adaptive_joins {
        let options = ember_memory::AdaptiveJoinOptions {
            build_memory_fraction: settings.hash_join_memory_percent.min(100) as f64 / 100.0,
        };
        ember_memory::adapt_hash_joins(plan, options)
    } else {
        Ok(plan)
    }
}

/// The embedded session's physical optimizer rule:
/// [`adapt_joins_with_settings`]. It runs last, after DataFusion has chosen
/// every join's mode and pushed its dynamic filters down.
#[derive(Debug, Default)]
pub struct AdaptiveJoinRule;

impl PhysicalOptimizerRule for AdaptiveJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let settings = config
            .extensions
            .get::<EmberConfig>()
            .cloned()
            .unwrap_or_default();
        adapt_joins_with_settings(plan, &settings)
    }

    fn name(&self) -> &str {
        "ember_adaptive_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
