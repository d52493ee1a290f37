//! What a job spilled, for clients that report it (`ember sql --timing`):
//!
//! - `GET /api/ember/job/{id}/spill`: the spill files, bytes and rows of
//!   every operator of every stage the job ran, summed, as JSON.
//!
//! Ballista's REST API renders stage metrics only as text; this route reads
//! them from the job's execution graph in the scheduler's job state, which
//! keeps finished jobs until they are cleaned up.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ballista_core::JobId;
use ballista_scheduler::cluster::JobState;
use ballista_scheduler::state::execution_stage::ExecutionStage;
use datafusion::physical_plan::metrics::MetricsSet;
use ember_memory::SpillTotals;
use serde_json::json;

/// The job metric routes, answering from `jobs`.
pub(crate) fn routes(jobs: Arc<dyn JobState>) -> Router {
    Router::new()
        .route("/api/ember/job/{id}/spill", get(spill))
        .with_state(jobs)
}

/// A stage's operator metrics, summed over its tasks, once it has run
/// tasks.
pub(crate) fn stage_metrics(stage: &ExecutionStage) -> Option<&[MetricsSet]> {
    match stage {
        ExecutionStage::Successful(s) => Some(&s.stage_metrics),
        ExecutionStage::Running(s) => s.stage_metrics.as_deref(),
        ExecutionStage::Failed(s) => s.stage_metrics.as_deref(),
        ExecutionStage::UnResolved(_) | ExecutionStage::Resolved(_) => None,
    }
}

/// The spill totals of the stages' operator metrics.
fn stage_spill<'a>(stages: impl Iterator<Item = &'a ExecutionStage>) -> SpillTotals {
    let mut totals = SpillTotals::default();
    for stage in stages {
        totals += SpillTotals::of_metrics(stage_metrics(stage).unwrap_or_default());
    }
    totals
}

async fn spill(State(jobs): State<Arc<dyn JobState>>, Path(id): Path<String>) -> Response {
    match jobs.get_execution_graph(&JobId::new(id.clone())).await {
        Ok(Some(graph)) => {
            let totals = stage_spill(graph.stages().values());
            axum::Json(json!({
                "job_id": id,
                "spill_files": totals.files,
                "spilled_bytes": totals.bytes,
                "spilled_rows": totals.rows,
            }))
            .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, format!("no job `{id}`\n")).into_response(),
        Err(e) => {
            tracing::warn!(job = %id, "cannot read the job's execution graph: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read job `{id}`: {e}\n"),
            )
                .into_response()
        }
    }
}
