//! `ember-ui`: the scheduler's web UI.
//!
//! A page of its own for jobs (running and finished, with a cancel
//! button), a job (the stage DAG, each stage's tasks, rows, bytes, spill
//! and skew, its plan with metrics, its error), the executors and the
//! cached datasets. The HTML, script and style sheet are compiled into the
//! binary ([`assets`]): nothing is fetched from elsewhere. The page reads
//! JSON from this crate's routes ([`routes`]), which answer from a
//! [`ClusterView`] (the scheduler implements it over Ballista's state)
//! and, for jobs the scheduler no longer holds, from the [`JobHistory`]
//! on disk.
//!
//! On a cluster with a token, the page asks for it once and keeps it in an
//! `HttpOnly`, `SameSite=Strict` cookie ([`ember_auth::TOKEN_COOKIE`]),
//! which the scheduler's token layer accepts like a bearer token.

pub mod assets;
mod history;
mod mask;
mod routes;
pub mod view;

pub use history::{HistoryError, JobHistory};
pub use mask::{MASKED, mask_sql_secrets};
pub use routes::{OPEN_PATHS, UiState, routes};
pub use view::{
    CacheBlockView, CacheView, CancelOutcome, ExecutorUsage, ExecutorView, JobStatus, JobSummary,
    JobView, StageView,
};

/// Why the cluster's state cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The scheduler's state cannot be read.
    #[error("cannot read the scheduler's state: {0}")]
    State(String),
    /// A cancellation could not be made.
    #[error("cannot cancel job {job_id}: {reason}")]
    Cancel {
        /// The job.
        job_id: String,
        /// Why.
        reason: String,
    },
}

/// The cluster as the UI sees it: the scheduler implements it over
/// Ballista's job and executor state.
#[async_trait::async_trait]
pub trait ClusterView: Send + Sync + 'static {
    /// The jobs the scheduler holds, newest first.
    async fn jobs(&self) -> Result<Vec<JobSummary>, ViewError>;
    /// One job with its stages; `None` when the scheduler does not hold it.
    async fn job(&self, job_id: &str) -> Result<Option<JobView>, ViewError>;
    /// Cancels a queued or running job.
    async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, ViewError>;
    /// The executors, alive and lost.
    async fn executors(&self) -> Result<Vec<ExecutorView>, ViewError>;
    /// The cached datasets the cluster holds.
    async fn storage(&self) -> Result<Vec<CacheView>, ViewError>;
}
