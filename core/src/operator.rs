//! Helpers Ember's own physical operators share.

use std::sync::Arc;

use datafusion::common::internal_err;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;

/// The one child in `children`, given to an operator named `operator` that
/// takes exactly one; an internal error naming it otherwise.
pub fn only_child(
    operator: &str,
    mut children: Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    match (children.pop(), children.is_empty()) {
        (Some(child), true) => Ok(child),
        (child, _) => internal_err!(
            "{operator} takes one child, got {}",
            children.len() + usize::from(child.is_some())
        ),
    }
}
