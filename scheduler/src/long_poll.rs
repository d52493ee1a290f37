//! Task launch driven by events for executors that pull their tasks.
//!
//! A Ballista executor in pull mode asks the scheduler for work
//! (`PollWork`, which also carries its task statuses and serves as its
//! heartbeat); when the answer is empty it sleeps 50 ms and asks again. So
//! every stage of a query waits, on average, half of that sleep before an
//! idle executor picks up its tasks: over the ten or twenty stages of a
//! TPC-DS query, that was most of the difference between a cluster and the
//! same query embedded.
//!
//! [`LongPollScheduler`] serves Ballista's scheduler gRPC service and holds
//! an idle executor's empty `PollWork` answer until work is available
//! (Ballista's `on_work_available` callback: a job submitted, a stage
//! runnable) or [`MAX_HOLD`] has passed, then asks again on the executor's
//! behalf. Only an executor with every task slot free is held: it has no
//! running task whose status could wait behind the held call, and its
//! heartbeat is recorded on every inner poll. Every other call passes
//! through unchanged.

use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::*;
use futures::{Stream, TryStreamExt};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::plan_depth::PlanDepthGuard;
use crate::server::EmberSchedulerServer;
use crate::stale_outputs::StaleOutputGuard;

/// The longest an idle executor's poll is held; Ballista's own retry paths
/// (a task reset after an executor loss, a failed task queued again) do not
/// signal new work, so they wait at most this long.
pub(crate) const MAX_HOLD: Duration = Duration::from_millis(500);

/// Ballista's scheduler service with long polling for idle executors; see
/// the module documentation.
#[derive(Clone)]
pub(crate) struct LongPollScheduler {
    inner: EmberSchedulerServer,
    work_available: Arc<Notify>,
    /// Checked before every poll is answered, so that no task of a job
    /// whose recovery would count rows twice is handed out.
    guard: StaleOutputGuard,
    /// Refuses submitted plans nested too deeply to plan.
    plans: PlanDepthGuard,
}

impl LongPollScheduler {
    /// Wraps `inner`; `work_available` must be notified (`notify_waiters`)
    /// whenever tasks become schedulable. `guard` is checked before each
    /// poll is answered and explains the jobs it failed.
    pub(crate) fn new(
        inner: EmberSchedulerServer,
        work_available: Arc<Notify>,
        guard: StaleOutputGuard,
        plans: PlanDepthGuard,
    ) -> Self {
        Self {
            inner,
            work_available,
            guard,
            plans,
        }
    }
}

/// Whether an executor polling with `params` has all of its task slots free.
fn is_idle(params: &PollWorkParams) -> bool {
    params
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.specification.as_ref())
        .map(
            |spec| -> ballista_core::serde::scheduler::ExecutorSpecification {
                spec.clone().into()
            },
        )
        .is_some_and(|spec| spec.vcores > 0 && params.num_free_vcores >= spec.vcores)
}

/// What asking again on an idle executor's behalf takes: its registration
/// and free slots, without the statuses (the first poll recorded them), and
/// the connection's address, which Ballista reads where the registration
/// names no host.
struct Repoll {
    params: PollWorkParams,
    connect_info: Option<ConnectInfo<SocketAddr>>,
}

impl Repoll {
    fn of(request: &Request<PollWorkParams>) -> Self {
        let polled = request.get_ref();
        Self {
            params: PollWorkParams {
                metadata: polled.metadata.clone(),
                num_free_vcores: polled.num_free_vcores,
                task_status: Vec::new(),
            },
            connect_info: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .cloned(),
        }
    }

    fn request(&self) -> Request<PollWorkParams> {
        let mut request = Request::new(self.params.clone());
        if let Some(info) = self.connect_info {
            request.extensions_mut().insert(info);
        }
        request
    }
}

/// Whether a `PollWork` answer gives the executor anything to do.
fn has_work(result: &PollWorkResult) -> bool {
    !result.tasks.is_empty() || !result.jobs_to_clean.is_empty()
}

#[tonic::async_trait]
impl SchedulerGrpc for LongPollScheduler {
    async fn poll_work(
        &self,
        request: Request<PollWorkParams>,
    ) -> Result<Response<PollWorkResult>, Status> {
        // A busy executor's poll (and the statuses it carries) passes
        // straight through.
        self.guard.check(&self.inner).await;
        if !is_idle(request.get_ref()) {
            return SchedulerGrpc::poll_work(&self.inner, request).await;
        }
        let repoll = Repoll::of(&request);
        let deadline = tokio::time::Instant::now() + MAX_HOLD;
        let mut request = request;
        loop {
            // Registered before asking, so a notification that arrives
            // while the inner poll runs is not lost.
            let mut notified = pin!(self.work_available.notified());
            notified.as_mut().enable();
            let response = SchedulerGrpc::poll_work(&self.inner, request).await?;
            if has_work(response.get_ref()) || tokio::time::Instant::now() >= deadline {
                return Ok(response);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return Ok(response),
            }
            request = repoll.request();
            self.guard.check(&self.inner).await;
        }
    }

    async fn register_executor(
        &self,
        request: Request<RegisterExecutorParams>,
    ) -> Result<Response<RegisterExecutorResult>, Status> {
        SchedulerGrpc::register_executor(&self.inner, request).await
    }

    async fn heart_beat_from_executor(
        &self,
        request: Request<HeartBeatParams>,
    ) -> Result<Response<HeartBeatResult>, Status> {
        SchedulerGrpc::heart_beat_from_executor(&self.inner, request).await
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusParams>,
    ) -> Result<Response<UpdateTaskStatusResult>, Status> {
        SchedulerGrpc::update_task_status(&self.inner, request).await
    }

    async fn create_update_session(
        &self,
        request: Request<CreateUpdateSessionParams>,
    ) -> Result<Response<CreateUpdateSessionResult>, Status> {
        SchedulerGrpc::create_update_session(&self.inner, request).await
    }

    async fn remove_session(
        &self,
        request: Request<RemoveSessionParams>,
    ) -> Result<Response<RemoveSessionResult>, Status> {
        SchedulerGrpc::remove_session(&self.inner, request).await
    }

    type ExecuteQueryPushStream =
        Pin<Box<dyn Stream<Item = Result<GetJobStatusResult, Status>> + Send + 'static>>;

    async fn execute_query_push(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Result<Response<Self::ExecuteQueryPushStream>, Status> {
        self.plans.check(request.get_ref())?;
        let response = SchedulerGrpc::execute_query_push(&self.inner, request).await?;
        let guard = self.guard.clone();
        Ok(response.map(|statuses| {
            let explained = statuses.map_ok(move |mut result| {
                let job_id = result.status.as_ref().map(|status| status.job_id.clone());
                if let Some(job_id) = job_id {
                    guard.explain(&job_id, &mut result);
                }
                result
            });
            Box::pin(explained) as Self::ExecuteQueryPushStream
        }))
    }

    async fn execute_query(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Result<Response<ExecuteQueryResult>, Status> {
        self.plans.check(request.get_ref())?;
        SchedulerGrpc::execute_query(&self.inner, request).await
    }

    async fn get_job_status(
        &self,
        request: Request<GetJobStatusParams>,
    ) -> Result<Response<GetJobStatusResult>, Status> {
        let job_id = request.get_ref().job_id.clone();
        let mut response = SchedulerGrpc::get_job_status(&self.inner, request).await?;
        self.guard.explain(&job_id, response.get_mut());
        Ok(response)
    }

    async fn get_job_metrics(
        &self,
        request: Request<GetJobMetricsParams>,
    ) -> Result<Response<GetJobMetricsResult>, Status> {
        SchedulerGrpc::get_job_metrics(&self.inner, request).await
    }

    async fn executor_stopped(
        &self,
        request: Request<ExecutorStoppedParams>,
    ) -> Result<Response<ExecutorStoppedResult>, Status> {
        SchedulerGrpc::executor_stopped(&self.inner, request).await
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobParams>,
    ) -> Result<Response<CancelJobResult>, Status> {
        SchedulerGrpc::cancel_job(&self.inner, request).await
    }

    async fn clean_job_data(
        &self,
        request: Request<CleanJobDataParams>,
    ) -> Result<Response<CleanJobDataResult>, Status> {
        SchedulerGrpc::clean_job_data(&self.inner, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(vcores: u32, free: u32) -> PollWorkParams {
        PollWorkParams {
            metadata: Some(ExecutorRegistration {
                specification: Some(ExecutorSpecification {
                    resources: vec![ExecutorResource {
                        resource: Some(executor_resource::Resource::Vcores(vcores)),
                    }],
                }),
                ..Default::default()
            }),
            num_free_vcores: free,
            task_status: Vec::new(),
        }
    }

    #[test]
    fn only_an_executor_with_every_slot_free_is_idle() {
        assert!(is_idle(&params(2, 2)));
        assert!(!is_idle(&params(2, 1)));
        assert!(!is_idle(&params(0, 0)));
        assert!(!is_idle(&PollWorkParams::default()));
    }
}
