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
//! scheduler says has failed is stopped. The tasks of one job on an executor
//! share the scheduler's answers, so the executor asks about each job at
//! most once per interval, however many of its tasks run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ballista_core::serde::protobuf::GetJobStatusParams;
use ballista_core::serde::protobuf::job_status::Status;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ember_auth::{BearerInterceptor, ClientSecurity};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A scheduler client that presents the cluster's token.
type SchedulerClient = SchedulerGrpcClient<InterceptedService<Channel, BearerInterceptor>>;

/// How often a running task asks whether its job has ended.
pub const JOB_STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// How long one status request may take before the task stops waiting for
/// that answer (and asks again at the next interval).
const STATUS_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an answer about a job no task has asked about again is kept.
const FORGET_ANSWERS_AFTER: Duration = Duration::from_secs(60);

/// The scheduler's job statuses, as seen from an executor.
#[derive(Debug, Clone)]
pub struct JobStatusSource {
    endpoint: Endpoint,
    /// Adds the token to each request.
    interceptor: BearerInterceptor,
    /// Made on the first request, inside the executor's runtime.
    client: Arc<OnceLock<SchedulerClient>>,
    /// The last answer about each job (whether it has failed), and when it
    /// came.
    answers: Arc<Mutex<HashMap<String, (Instant, bool)>>>,
}

impl JobStatusSource {
    /// A source that asks the scheduler at `host:port`, with TLS and the
    /// token as `security` says; it connects on the first request, and
    /// again after a broken connection.
    pub fn new(
        host: &str,
        port: u16,
        security: &ClientSecurity,
    ) -> std::result::Result<Self, tonic::transport::Error> {
        let endpoint = security
            .endpoint(&format!("{host}:{port}"))?
            .timeout(STATUS_REQUEST_TIMEOUT)
            .connect_timeout(STATUS_REQUEST_TIMEOUT);
        Ok(Self {
            endpoint,
            interceptor: security.interceptor(),
            client: Arc::new(OnceLock::new()),
            answers: Arc::default(),
        })
    }

    fn client(&self) -> SchedulerClient {
        self.client
            .get_or_init(|| {
                SchedulerGrpcClient::with_interceptor(
                    self.endpoint.connect_lazy(),
                    self.interceptor.clone(),
                )
            })
            .clone()
    }

    /// Whether the scheduler says job `job_id` has failed (or was cancelled).
    /// `false` when it cannot be asked. An answer less than
    /// [`JOB_STATUS_INTERVAL`] old is given again without asking.
    pub async fn has_failed(&self, job_id: &str) -> bool {
        if let Some(failed) = self.recent_answer(job_id) {
            return failed;
        }
        let failed = self.ask(job_id).await;
        let now = Instant::now();
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|_, (at, _)| now.duration_since(*at) < FORGET_ANSWERS_AFTER);
        answers.insert(job_id.to_string(), (now, failed));
        failed
    }

    fn recent_answer(&self, job_id: &str) -> Option<bool> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers
            .get(job_id)
            .filter(|(at, _)| at.elapsed() < JOB_STATUS_INTERVAL)
            .map(|&(_, failed)| failed)
    }

    async fn ask(&self, job_id: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tasks_of_a_job_share_an_answer_for_one_interval() {
        // Nothing listens on port 1: the answer is "not failed".
        let source =
            JobStatusSource::new("127.0.0.1", 1, &ember_auth::ClientSecurity::default()).unwrap();
        assert!(source.recent_answer("job-1").is_none());
        assert!(!source.has_failed("job-1").await);
        let other_task = source.clone();
        assert_eq!(other_task.recent_answer("job-1"), Some(false));
        assert!(other_task.recent_answer("job-2").is_none());
        tokio::time::sleep(JOB_STATUS_INTERVAL).await;
        assert!(other_task.recent_answer("job-1").is_none());
    }
}
