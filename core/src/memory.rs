//! Where Ember's sessions place `ember-memory`'s adaptive joins, as the
//! session's `ember.adaptive_joins` setting says: embedded and on executors
//! alike through [`crate::settings_rewrite::SettingsRewrite::ADAPTIVE_JOINS`].

use std::sync::Arc;

use datafusion::error::Result;
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
