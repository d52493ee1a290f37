//! `GET /metrics`: the cluster's metrics in Prometheus' text format, from
//! the scheduler (which every executor heartbeats to), so that one scrape
//! target sees the whole cluster.
//!
//! - Ballista's scheduler metrics (its `prometheus-metrics` feature):
//!   `job_submitted_total`, `job_completed_total`, `job_failed_total`,
//!   `job_cancelled_total`, `job_exec_time_seconds` (a histogram of query
//!   latency), `planning_time_ms`, `pending_task_queue_size`;
//! - the scheduler process's own (`process_resident_memory_bytes`,
//!   `process_cpu_seconds_total`, …);
//! - Ember's, read when scraped: `ember_jobs{status}` (the jobs the
//!   scheduler keeps, by state), `ember_running_job_stages{state}` and
//!   `ember_running_job_tasks{state}` (the running jobs' stages and
//!   tasks), `ember_executors`, and per executor
//!   (`executor` label) `ember_executor_vcores`,
//!   `ember_executor_rss_bytes`, `ember_executor_heartbeat_age_seconds`.
//!
//! The route sits behind the cluster's token like the rest of the REST API
//! (Prometheus sends it with `authorization: { credentials_file: … }`).

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ballista_core::serde::protobuf::executor_metric::Metric;
use ballista_core::serde::protobuf::job_status;
use prometheus::{IntGauge, IntGaugeVec, Opts};

use crate::server::EmberSchedulerServer;

/// Ember's gauges, registered once in the default registry.
struct ClusterGauges {
    jobs: IntGaugeVec,
    stages: IntGaugeVec,
    tasks: IntGaugeVec,
    executors: IntGauge,
    vcores: IntGaugeVec,
    rss: IntGaugeVec,
    heartbeat_age: IntGaugeVec,
}

fn gauge_vec(name: &str, help: &str, label: &str) -> prometheus::Result<IntGaugeVec> {
    let gauge = IntGaugeVec::new(Opts::new(name, help), &[label])?;
    prometheus::register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

impl ClusterGauges {
    fn register() -> prometheus::Result<Self> {
        let executors = IntGauge::new("ember_executors", "Executors registered")?;
        prometheus::register(Box::new(executors.clone()))?;
        Ok(Self {
            jobs: gauge_vec("ember_jobs", "Jobs the scheduler keeps, by state", "status")?,
            stages: gauge_vec(
                "ember_running_job_stages",
                "Stages of the running jobs, by state",
                "state",
            )?,
            tasks: gauge_vec(
                "ember_running_job_tasks",
                "Tasks of the running jobs' stages, by state",
                "state",
            )?,
            executors,
            vcores: gauge_vec(
                "ember_executor_vcores",
                "Cores (task slots) of each executor",
                "executor",
            )?,
            rss: gauge_vec(
                "ember_executor_rss_bytes",
                "Resident memory of each executor's process, at its last heartbeat",
                "executor",
            )?,
            heartbeat_age: gauge_vec(
                "ember_executor_heartbeat_age_seconds",
                "Seconds since each executor's last heartbeat",
                "executor",
            )?,
        })
    }

    /// The gauges, registered on first use.
    fn get() -> Result<&'static Self, String> {
        static GAUGES: OnceLock<Result<ClusterGauges, String>> = OnceLock::new();
        GAUGES
            .get_or_init(|| Self::register().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Reads the scheduler's jobs and executors into the gauges.
    async fn update(&self, scheduler: &EmberSchedulerServer) -> Result<(), String> {
        let jobs = scheduler
            .state
            .task_manager
            .get_all_jobs()
            .await
            .map_err(|e| e.to_string())?;
        self.jobs.reset();
        for status in ["queued", "running", "completed", "failed"] {
            self.jobs.with_label_values(&[status]).set(0);
        }
        for job in &jobs {
            let status = match &job.status.status {
                Some(job_status::Status::Queued(_)) => "queued",
                Some(job_status::Status::Running(_)) => "running",
                Some(job_status::Status::Successful(_)) => "completed",
                Some(job_status::Status::Failed(_)) => "failed",
                None => "unknown",
            };
            self.jobs.with_label_values(&[status]).inc();
        }
        self.count_running_stages(scheduler).await;
        let executors = scheduler
            .state
            .executor_manager
            .get_executors_state()
            .await
            .map_err(|e| e.to_string())?;
        self.executors.set(executors.len() as i64);
        for gauge in [&self.vcores, &self.rss, &self.heartbeat_age] {
            gauge.reset();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        for (metadata, heartbeat, metrics) in executors {
            let id = [metadata.id.as_str()];
            self.vcores
                .with_label_values(&id)
                .set(i64::from(metadata.specification.vcores));
            if let Some(at) = heartbeat {
                let age = now.saturating_sub(at).as_secs();
                self.heartbeat_age
                    .with_label_values(&id)
                    .set(i64::try_from(age).unwrap_or(i64::MAX));
            }
            for metric in metrics {
                if let Some(Metric::ProcPhysicalMemory(bytes)) = metric.metric {
                    self.rss
                        .with_label_values(&id)
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
            }
        }
        Ok(())
    }
}

impl ClusterGauges {
    /// Counts the running jobs' stages by state, and their tasks.
    async fn count_running_stages(&self, scheduler: &EmberSchedulerServer) {
        use ballista_core::serde::protobuf::task_status::Status;
        self.stages.reset();
        self.tasks.reset();
        for state in ["unresolved", "resolved", "running", "successful", "failed"] {
            self.stages.with_label_values(&[state]).set(0);
        }
        for state in ["running", "successful", "failed"] {
            self.tasks.with_label_values(&[state]).set(0);
        }
        let running = scheduler.state.task_manager.get_running_job_cache();
        for job in running.values() {
            let graph = job.execution_graph.read().await;
            for stage in graph.stages().values() {
                let state = stage.variant_name().to_ascii_lowercase();
                self.stages.with_label_values(&[state.as_str()]).inc();
                for task in stage.task_infos().unwrap_or_default() {
                    let state = match task.task_status {
                        Status::Running(_) => "running",
                        Status::Successful(_) => "successful",
                        Status::Failed(_) => "failed",
                    };
                    self.tasks.with_label_values(&[state]).inc();
                }
            }
        }
    }
}

/// The `/metrics` route, answering from `scheduler`.
pub(crate) fn routes(scheduler: Arc<EmberSchedulerServer>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(scheduler)
}

async fn metrics(State(scheduler): State<Arc<EmberSchedulerServer>>) -> Response {
    let updated = match ClusterGauges::get() {
        Ok(gauges) => gauges.update(&scheduler).await,
        Err(e) => Err(e),
    };
    if let Err(e) = updated {
        tracing::warn!("cannot read the cluster's state for /metrics: {e}");
    }
    match ember_core::telemetry::prometheus_text() {
        Ok((content_type, text)) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(reason) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{reason}\n")).into_response(),
    }
}
