//! What an executor reports of itself to the scheduler's web UI (tasks,
//! memory pool, disk used by shuffle, spill and cache): asked of each
//! executor over its Flight service with the action [`STATUS_ACTION`],
//! presenting the cluster's TLS and token like every peer call.

use datafusion::error::{DataFusionError, Result};
pub use ember_proto::ExecutorStatus;
use prost::Message;

/// The Flight action an executor answers with its [`ExecutorStatus`].
pub const STATUS_ACTION: &str = "ember.executor_status";

/// The Flight answer that carries `status`.
pub fn status_result(status: &ExecutorStatus) -> arrow_flight::Result {
    arrow_flight::Result {
        body: status.encode_to_vec().into(),
    }
}

/// Asks the executor serving Flight at `endpoint` for its status.
pub async fn fetch_executor_status(endpoint: &str) -> Result<ExecutorStatus> {
    let results = crate::cache::flight::action(endpoint, STATUS_ACTION, "").await?;
    let first = results.first().ok_or_else(|| {
        DataFusionError::External(
            format!("{endpoint} answered {STATUS_ACTION} with nothing").into(),
        )
    })?;
    ExecutorStatus::decode(first.body.as_ref()).map_err(|e| {
        DataFusionError::External(
            format!("{endpoint} answered {STATUS_ACTION} unreadably: {e}").into(),
        )
    })
}
