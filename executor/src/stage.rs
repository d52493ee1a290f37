//! The stage every task runs on an Ember executor: Ballista's stage, watched
//! over while it runs.

use std::fmt::{Debug, Display};
use std::sync::Arc;

use ballista_core::serde::protobuf::{
    RuntimeStatsReport, ShuffleWritePartition, TaskColumnStats, WindowStateReport,
};
use ballista_executor::execution_engine::QueryStageExecutor;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::MetricsSet;

use crate::job_watch::JobStatusSource;
use crate::status::TaskOutcome;
use crate::transport_failure::retryable_if_broken_connection;

/// A stage of job `job_id` that
/// - stops when the scheduler says the job has failed or was cancelled
///   (when it has a [`JobStatusSource`]; see [`crate::job_watch`]), and
/// - reports a broken connection to a peer executor as a retryable error
///   (see [`crate::transport_failure`]).
///
/// Everything else is the wrapped stage's.
#[derive(Debug)]
pub struct SupervisedStage {
    inner: Arc<dyn QueryStageExecutor>,
    job_id: String,
    jobs: Option<JobStatusSource>,
}

impl SupervisedStage {
    /// Wraps `inner`, a stage of job `job_id`; `jobs`: where to learn that
    /// the job has ended, if anywhere.
    pub fn new(
        inner: Arc<dyn QueryStageExecutor>,
        job_id: String,
        jobs: Option<JobStatusSource>,
    ) -> Self {
        Self {
            inner,
            job_id,
            jobs,
        }
    }

    /// Returns once the job has failed; never without a status source.
    async fn job_failed(&self) {
        match &self.jobs {
            Some(jobs) => jobs.wait_for_failure(&self.job_id).await,
            None => std::future::pending().await,
        }
    }
}

impl Display for SupervisedStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for SupervisedStage {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        let job_id = &self.job_id;
        // Sorts set aside a share of the task's pool, not DataFusion's fixed
        // 10 MiB, to merge their spill files; repartitions never spill.
        let context = ember_memory::task_context_within_pool(context);
        let context = crate::dynamic_filters::task_context_with_dynamic_filters(context);
        let running = crate::status::ExecutorMetrics::global()
            .map(|metrics| metrics.task_started(Arc::clone(context.memory_pool())));
        let result = self.run(job_id, task_id, context).await;
        if let Some(running) = running {
            let outcome = match &result {
                Ok(_) => TaskOutcome::Succeeded,
                Err(DataFusionError::Execution(message)) if message.starts_with(STOPPED) => {
                    TaskOutcome::Stopped
                }
                Err(_) => TaskOutcome::Failed,
            };
            let partitions = result.as_deref().unwrap_or_default();
            running.ended(outcome, partitions, &self.inner.collect_plan_metrics());
        }
        result
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(&self) -> Vec<RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(&self) -> Result<Vec<WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}

/// How the error of a task stopped with its job begins.
const STOPPED: &str = "job ";

impl SupervisedStage {
    /// Runs the wrapped stage until it ends or its job fails.
    async fn run(
        &self,
        job_id: &str,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        tokio::select! {
            result = self.inner.execute_query_stage(task_id, context) => {
                result.map_err(|error| {
                    let reported = retryable_if_broken_connection(error);
                    if matches!(reported, DataFusionError::IoError(_)) {
                        tracing::warn!(%job_id, task_id, error = %reported, "the task will be retried");
                    }
                    reported
                })
            }
            () = self.job_failed() => {
                tracing::info!(%job_id, task_id, "the job failed or was cancelled: task stopped");
                Err(DataFusionError::Execution(format!(
                    "{STOPPED}{job_id} failed or was cancelled; task {task_id} stopped"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ballista_core::error::BallistaError;
    use datafusion::arrow::error::ArrowError;

    use super::*;

    /// A stage that fails with the error it is given.
    #[derive(Debug)]
    struct FailingStage(fn() -> DataFusionError);

    impl Display for FailingStage {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FailingStage")
        }
    }

    #[async_trait::async_trait]
    impl QueryStageExecutor for FailingStage {
        async fn execute_query_stage(
            &self,
            _task_id: usize,
            _context: Arc<TaskContext>,
        ) -> Result<Vec<ShuffleWritePartition>> {
            Err((self.0)())
        }

        fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
            Vec::new()
        }
    }

    async fn run(error: fn() -> DataFusionError) -> DataFusionError {
        let stage = SupervisedStage::new(Arc::new(FailingStage(error)), "job-1".into(), None);
        stage
            .execute_query_stage(0, Arc::new(TaskContext::default()))
            .await
            .expect_err("the stage fails")
    }

    #[tokio::test]
    async fn a_broken_connection_fails_the_task_as_retryable_and_other_errors_pass_through() {
        let broken = run(|| {
            let status = "code: 'Unknown error', message: \"h2 protocol error: error reading a body from connection\"";
            DataFusionError::External(Box::new(BallistaError::ArrowError(Box::new(
                ArrowError::IpcError(status.into()),
            ))))
        })
        .await;
        assert!(matches!(broken, DataFusionError::IoError(_)), "{broken}");
        let query = run(|| DataFusionError::Execution("Arithmetic overflow".into())).await;
        assert!(matches!(query, DataFusionError::Execution(_)), "{query}");
    }
}
