//! Tasks of a job that failed or was cancelled stop.
//!
//! Executors that pull their tasks (Ember's default) have no endpoint through
//! which the scheduler could cancel a running task: a cancelled job's tasks
//! would run on to their end, and a write would go on staging files that the
//! client has already removed. So while a stage runs,
//! [`SupervisedStage`](crate::stage::SupervisedStage) asks the scheduler for
//! its job's status ([`JobStatusSource`]) every [`JOB_STATUS_INTERVAL`]; once
//! the job has failed (a cancelled job fails), it drops the stage, which stops
//! its operators and removes the files they were writing, and fails the task.
//! A scheduler that does not answer leaves the task running: only a job the
//! scheduler says has failed is stopped.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ballista_core::serde::protobuf::GetJobStatusParams;
use ballista_core::serde::protobuf::job_status::Status;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use tonic::transport::{Channel, Endpoint};

/// How often a running task asks whether its job has ended.
pub const JOB_STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// How long one status request may take before the task stops waiting for
/// that answer (and asks again at the next interval).
const STATUS_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The scheduler's job statuses, as seen from an executor.
#[derive(Debug, Clone)]
pub struct JobStatusSource {
    endpoint: Endpoint,
    /// Made on the first request, inside the executor's runtime.
    client: Arc<OnceLock<SchedulerGrpcClient<Channel>>>,
}

impl JobStatusSource {
    /// A source that asks the scheduler at `host:port`; it connects on the
    /// first request, and again after a broken connection.
    pub fn new(host: &str, port: u16) -> std::result::Result<Self, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))?
            .timeout(STATUS_REQUEST_TIMEOUT)
            .connect_timeout(STATUS_REQUEST_TIMEOUT);
        Ok(Self {
            endpoint,
            client: Arc::new(OnceLock::new()),
        })
    }

    fn client(&self) -> SchedulerGrpcClient<Channel> {
        self.client
            .get_or_init(|| SchedulerGrpcClient::new(self.endpoint.connect_lazy()))
            .clone()
    }

    /// Whether the scheduler says job `job_id` has failed (or was cancelled).
    /// `false` when it cannot be asked.
    pub async fn has_failed(&self, job_id: &str) -> bool {
        let request = GetJobStatusParams {
            job_id: job_id.to_string(),
        };
        match self.client().get_job_status(request).await {
            Ok(response) => matches!(
                response.into_inner().status.and_then(|s| s.status),
                Some(Status::Failed(_))
            ),
            Err(status) => {
                tracing::debug!(job_id, %status, "cannot ask the scheduler for the job's status");
                false
            }
        }
    }

    /// Returns once the scheduler says job `job_id` has failed, asking every
    /// [`JOB_STATUS_INTERVAL`].
    pub async fn wait_for_failure(&self, job_id: &str) {
        loop {
            tokio::time::sleep(JOB_STATUS_INTERVAL).await;
            if self.has_failed(job_id).await {
                return;
            }
        }
    }
}
