//! Plan rewrites that a session's `ember.*` settings drive, applied the same
//! way embedded (as physical optimizer rules, after DataFusion's own) and on
//! executors (to each decoded stage plan, through the executor's stage
//! rewrite hook).

use std::sync::Arc;

use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::config::EmberConfig;

/// The function of a [`SettingsRewrite`]: `plan` rewritten as `settings`
/// say, or unchanged where they do not apply.
pub type RewriteWithSettings =
    fn(Arc<dyn ExecutionPlan>, &EmberConfig) -> Result<Arc<dyn ExecutionPlan>>;

/// A physical plan rewrite driven by a session's `ember.*` settings. As a
/// [`PhysicalOptimizerRule`] it reads them from the session's options.
#[derive(Debug, Clone, Copy)]
pub struct SettingsRewrite {
    name: &'static str,
    rewrite: RewriteWithSettings,
}

impl SettingsRewrite {
    /// Places supported operators on the GPU where `ember.gpu` and the
    /// machine allow ([`crate::gpu::rewrite_with_settings`]).
    pub const GPU_PLACEMENT: Self = Self {
        name: "ember_gpu_placement",
        rewrite: crate::gpu::rewrite_with_settings,
    };

    /// Makes partitioned hash joins adaptive where `ember.adaptive_joins` is
    /// on ([`crate::memory::adapt_joins_with_settings`]).
    pub const ADAPTIVE_JOINS: Self = Self {
        name: "ember_adaptive_joins",
        rewrite: crate::memory::adapt_joins_with_settings,
    };

    /// Checks the plan's arithmetic for overflow where
    /// `ember.checked_arithmetic` is on
    /// ([`crate::checked_arithmetic::check_overflow_with_settings`]). Every
    /// session runs it among DataFusion's own physical optimizer rules
    /// ([`crate::session_state`]), so the checked expressions are in the
    /// plan the scheduler splits into stages.
    pub const CHECKED_ARITHMETIC: Self = Self {
        name: "ember_checked_arithmetic",
        rewrite: crate::checked_arithmetic::check_overflow_with_settings,
    };

    /// The rewrite's name, for logs and the optimizer.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `plan` rewritten as `settings` say.
    pub fn apply(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        settings: &EmberConfig,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        (self.rewrite)(plan, settings)
    }
}

impl PhysicalOptimizerRule for SettingsRewrite {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.apply(plan, &EmberConfig::from_options(config))
    }

    fn name(&self) -> &str {
        self.name
    }

    fn schema_check(&self) -> bool {
        true
    }
}
