//! Runs Flight SQL statements as cluster jobs, and cancels a job whose
//! client stopped waiting for it.
//!
//! Ballista's frontend answers `GetFlightInfo` once the job has finished,
//! so a client that cancels a query (ADBC's `AdbcStatementCancel`, a BI
//! tool's stop button) or disconnects aborts that call. The scheduler's own
//! backend would go on running the job for nobody; this one submits the
//! job itself, and cancels it when the call is dropped before the job
//! reached a final state.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::JobId;
use ballista_core::error::{BallistaError, Result};
use ballista_core::serde::protobuf::{JobStatus, SuccessfulJob, job_status};
use ballista_flight_sql::{QueryBackend, QueryResult};
use ballista_scheduler::cluster::JobState;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::logical_plan::AsLogicalPlan;
use datafusion_proto::physical_plan::AsExecutionPlan;

/// Job statuses buffered between the scheduler and a waiting statement.
const STATUS_BUFFER: usize = 16;

/// How long a finished job's execution graph is looked for in the job
/// state (the job's success is announced just before the graph is stored).
const GRAPH_WAIT: Duration = Duration::from_millis(200);

/// The Flight SQL frontend's backend on an Ember scheduler: sessions are
/// the scheduler's, statements are cluster jobs, and a job whose statement
/// is dropped unfinished is cancelled.
pub struct ClusterQueryBackend<T: 'static + AsLogicalPlan, U: 'static + AsExecutionPlan> {
    scheduler: SchedulerServer<T, U>,
    jobs: Arc<dyn JobState>,
}

impl<T: 'static + AsLogicalPlan, U: 'static + AsExecutionPlan> ClusterQueryBackend<T, U> {
    /// Runs statements on `scheduler`, reading finished jobs from `jobs`
    /// (the scheduler's job state).
    pub fn new(scheduler: SchedulerServer<T, U>, jobs: Arc<dyn JobState>) -> Self {
        Self { scheduler, jobs }
    }

    /// The schema of the finished job's result files: its final stage's,
    /// which is what the files carry (nullability included, which clients
    /// check), or the plan's, planned again, when the graph is gone.
    async fn result_schema(
        &self,
        job_id: &JobId,
        ctx: &SessionContext,
        plan: &LogicalPlan,
    ) -> Result<SchemaRef> {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(graph) = self.jobs.get_execution_graph(job_id).await? {
                let last = graph
                    .stages()
                    .values()
                    .find(|stage| stage.output_links().is_empty())
                    .map(|stage| stage.plan().schema());
                if let Some(schema) = last {
                    return Ok(schema);
                }
            }
            if started.elapsed() >= GRAPH_WAIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(ctx.state().create_physical_plan(plan).await?.schema())
    }
}

/// Cancels a job when dropped, unless told it finished.
struct CancelUnlessFinished<T: 'static + AsLogicalPlan, U: 'static + AsExecutionPlan> {
    scheduler: SchedulerServer<T, U>,
    job_id: Option<JobId>,
}

impl<T: 'static + AsLogicalPlan, U: 'static + AsExecutionPlan> CancelUnlessFinished<T, U> {
    /// The job reached a final state: nothing to cancel.
    fn finished(&mut self) {
        self.job_id = None;
    }
}

impl<T: 'static + AsLogicalPlan, U: 'static + AsExecutionPlan> Drop for CancelUnlessFinished<T, U> {
    fn drop(&mut self) {
        let Some(job_id) = self.job_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(job = %job_id, "no runtime to cancel the abandoned Flight SQL job on");
            return;
        };
        let scheduler = self.scheduler.clone();
        runtime.spawn(async move {
            tracing::info!(job = %job_id, "the Flight SQL client stopped waiting; cancelling its job");
            if let Err(e) = scheduler.cancel_job(job_id.clone()).await {
                tracing::warn!(job = %job_id, "cannot cancel the abandoned Flight SQL job: {e}");
            }
        });
    }
}

#[async_trait::async_trait]
impl<T: 'static + AsLogicalPlan, U: 'static + AsExecutionPlan> QueryBackend
    for ClusterQueryBackend<T, U>
{
    async fn session(&self, session_id: &str) -> Result<Arc<SessionContext>> {
        QueryBackend::session(&self.scheduler, session_id).await
    }

    async fn close_session(&self, session_id: &str) -> Result<()> {
        QueryBackend::close_session(&self.scheduler, session_id).await
    }

    async fn execute(
        &self,
        job_name: &str,
        ctx: Arc<SessionContext>,
        plan: LogicalPlan,
    ) -> Result<QueryResult> {
        let (subscriber, mut statuses) = tokio::sync::mpsc::channel::<JobStatus>(STATUS_BUFFER);
        let job_id = self
            .scheduler
            .submit_job(job_name, ctx.clone(), &plan, Some(subscriber))
            .await?;
        let mut guard = CancelUnlessFinished {
            scheduler: self.scheduler.clone(),
            job_id: Some(job_id.clone()),
        };
        while let Some(status) = statuses.recv().await {
            match status.status {
                Some(job_status::Status::Successful(SuccessfulJob {
                    partition_location, ..
                })) => {
                    guard.finished();
                    let schema = self.result_schema(&job_id, &ctx, &plan).await?;
                    return Ok(QueryResult {
                        job_id: job_id.to_string(),
                        schema,
                        partitions: partition_location,
                    });
                }
                Some(job_status::Status::Failed(failed)) => {
                    guard.finished();
                    return Err(BallistaError::General(format!(
                        "job {job_id} failed: {}",
                        failed.error
                    )));
                }
                _ => {}
            }
        }
        Err(BallistaError::General(format!(
            "job {job_id} ended without a final status"
        )))
    }
}
