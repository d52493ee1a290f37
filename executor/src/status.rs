//! What an executor tells of itself: tasks by outcome, task time, shuffle
//! and spill bytes, its tasks' memory pools, and the disk its shuffle,
//! spill and cache files take.
//!
//! - `GET /metrics` on the health port, in Prometheus' text format, beside
//!   `/healthz` and `/readyz` (plain HTTP, like the probes: counts and
//!   sizes only, no names, no SQL);
//! - the Flight action `ember.executor_status`
//!   ([`ember_core::executor_status`]), which the scheduler's web UI asks
//!   each executor for, with the cluster's TLS and token.
//!
//! Counters are kept by [`ExecutorMetrics::task_started`] around every task
//! ([`crate::stage::SupervisedStage`]); sizes are read when asked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ballista_core::serde::protobuf::ShuffleWritePartition;
use ballista_executor::health::ExecutorHealth;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::physical_plan::metrics::MetricsSet;
use ember_core::executor_status::ExecutorStatus;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskOutcome {
    /// It wrote its shuffle output.
    Succeeded,
    /// It failed.
    Failed,
    /// Its job failed or was cancelled, and it was stopped.
    Stopped,
}

impl TaskOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// Where the executor keeps files, and its pool's size.
#[derive(Debug, Clone, Default)]
struct Places {
    work_dir: PathBuf,
    cache_dir: PathBuf,
    pool_limit: u64,
}

/// The executor's metrics, registered once in the process's default
/// Prometheus registry.
pub(crate) struct ExecutorMetrics {
    tasks_running: IntGauge,
    tasks: IntCounterVec,
    task_seconds: Histogram,
    shuffle_bytes: IntCounter,
    shuffle_rows: IntCounter,
    spilled_bytes: IntCounter,
    spill_files: IntCounter,
    pool_used: IntGauge,
    pool_limit: IntGauge,
    disk: IntGaugeVec,
    cache_memory: IntGauge,
    /// The memory pools of the tasks running now.
    pools: Mutex<HashMap<u64, Arc<dyn MemoryPool>>>,
    next_task: AtomicU64,
    places: Mutex<Places>,
}

/// The directories spill files are made in: DataFusion's disk manager
/// makes `datafusion-…` directories in the work dir.
const SPILL_DIR_PREFIX: &str = "datafusion-";

fn register<C: prometheus::core::Collector + Clone + 'static>(
    collector: C,
) -> prometheus::Result<C> {
    prometheus::register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl ExecutorMetrics {
    fn register() -> prometheus::Result<Self> {
        Ok(Self {
            tasks_running: register(IntGauge::new(
                "ember_executor_tasks_running",
                "Tasks running now",
            )?)?,
            tasks: register(IntCounterVec::new(
                Opts::new(
                    "ember_executor_tasks_total",
                    "Tasks that ended, by outcome (succeeded, failed, stopped with their job)",
                ),
                &["outcome"],
            )?)?,
            task_seconds: register(Histogram::with_opts(
                HistogramOpts::new("ember_executor_task_seconds", "Run time of each task").buckets(
                    vec![
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    ],
                ),
            )?)?,
            shuffle_bytes: register(IntCounter::new(
                "ember_executor_shuffle_write_bytes_total",
                "Bytes of shuffle output its tasks wrote",
            )?)?,
            shuffle_rows: register(IntCounter::new(
                "ember_executor_shuffle_write_rows_total",
                "Rows of shuffle output its tasks wrote",
            )?)?,
            spilled_bytes: register(IntCounter::new(
                "ember_executor_spilled_bytes_total",
                "Bytes its tasks' operators spilled to disk",
            )?)?,
            spill_files: register(IntCounter::new(
                "ember_executor_spill_files_total",
                "Spill files its tasks' operators wrote",
            )?)?,
            pool_used: register(IntGauge::new(
                "ember_executor_memory_pool_used_bytes",
                "Bytes its running tasks hold in their memory pools",
            )?)?,
            pool_limit: register(IntGauge::new(
                "ember_executor_memory_pool_bytes",
                "The memory pool's size for all its tasks (0: unbounded)",
            )?)?,
            disk: register(IntGaugeVec::new(
                Opts::new(
                    "ember_executor_disk_bytes",
                    "Bytes of files it keeps, by kind (shuffle, spill, cache)",
                ),
                &["kind"],
            )?)?,
            cache_memory: register(IntGauge::new(
                "ember_executor_cache_memory_bytes",
                "Bytes of cached partitions it keeps in memory",
            )?)?,
            pools: Mutex::new(HashMap::new()),
            next_task: AtomicU64::new(0),
            places: Mutex::new(Places::default()),
        })
    }

    /// The process's metrics; `None` when they could not be registered
    /// (the reason is logged once).
    pub(crate) fn global() -> Option<&'static Self> {
        static METRICS: OnceLock<Option<ExecutorMetrics>> = OnceLock::new();
        METRICS
            .get_or_init(|| match Self::register() {
                Ok(metrics) => Some(metrics),
                Err(e) => {
                    tracing::warn!("the executor's metrics cannot be registered: {e}");
                    None
                }
            })
            .as_ref()
    }

    /// Tells where the executor keeps its files and how large its pool is.
    pub(crate) fn configure(&self, work_dir: &Path, cache_dir: &Path, pool_limit: Option<u64>) {
        *self.places.lock().unwrap_or_else(|e| e.into_inner()) = Places {
            work_dir: work_dir.to_path_buf(),
            cache_dir: cache_dir.to_path_buf(),
            pool_limit: pool_limit.unwrap_or(0),
        };
    }

    /// Counts a task as running, with its memory pool, until the returned
    /// guard reports how it ended (or drops).
    pub(crate) fn task_started(&'static self, pool: Arc<dyn MemoryPool>) -> RunningTask {
        let id = self.next_task.fetch_add(1, Ordering::Relaxed);
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, pool);
        self.tasks_running.inc();
        RunningTask {
            metrics: self,
            id,
            started: Instant::now(),
            ended: false,
        }
    }

    fn remove(&self, id: u64) {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.tasks_running.dec();
    }

    /// Reads the sizes (pools, disk, cache) into the gauges.
    fn refresh(&self) {
        let used: usize = self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|pool| pool.reserved())
            .sum();
        self.pool_used.set(used as i64);
        let places = self
            .places
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.pool_limit.set(places.pool_limit as i64);
        let (shuffle, spill) = work_dir_bytes(&places.work_dir);
        let cache_disk = dir_bytes(&places.cache_dir);
        self.disk
            .with_label_values(&["shuffle"])
            .set(shuffle as i64);
        self.disk.with_label_values(&["spill"]).set(spill as i64);
        self.disk
            .with_label_values(&["cache"])
            .set(cache_disk as i64);
        let cache_memory = ember_core::cache::BlockStore::global().memory_used();
        self.cache_memory.set(cache_memory as i64);
    }

    /// The status the scheduler's web UI shows.
    pub(crate) fn status(&self) -> ExecutorStatus {
        self.refresh();
        let ended = |outcome: TaskOutcome| self.tasks.with_label_values(&[outcome.label()]).get();
        let gauge = |g: &IntGauge| g.get().max(0) as u64;
        ExecutorStatus {
            tasks_running: gauge(&self.tasks_running),
            tasks_succeeded: ended(TaskOutcome::Succeeded),
            tasks_failed: ended(TaskOutcome::Failed) + ended(TaskOutcome::Stopped),
            memory_pool_used: gauge(&self.pool_used),
            memory_pool_limit: gauge(&self.pool_limit),
            shuffle_disk_bytes: self.disk.with_label_values(&["shuffle"]).get().max(0) as u64,
            spill_disk_bytes: self.disk.with_label_values(&["spill"]).get().max(0) as u64,
            cache_memory_bytes: gauge(&self.cache_memory),
            cache_disk_bytes: self.disk.with_label_values(&["cache"]).get().max(0) as u64,
            shuffle_bytes_written: self.shuffle_bytes.get(),
            spilled_bytes: self.spilled_bytes.get(),
            rss_bytes: resident_bytes(),
        }
    }
}

/// A task counted as running; [`RunningTask::ended`] records how it ended.
pub(crate) struct RunningTask {
    metrics: &'static ExecutorMetrics,
    id: u64,
    started: Instant,
    ended: bool,
}

impl RunningTask {
    /// Records the task's end: its outcome, run time, what it wrote
    /// (`partitions`) and what its operators spilled (`operators`).
    pub(crate) fn ended(
        mut self,
        outcome: TaskOutcome,
        partitions: &[ShuffleWritePartition],
        operators: &[MetricsSet],
    ) {
        let metrics = self.metrics;
        metrics
            .task_seconds
            .observe(self.started.elapsed().as_secs_f64());
        metrics.tasks.with_label_values(&[outcome.label()]).inc();
        for partition in partitions {
            metrics.shuffle_bytes.inc_by(partition.num_bytes);
            metrics.shuffle_rows.inc_by(partition.num_rows);
        }
        let spill = ember_memory::SpillTotals::of_metrics(operators);
        metrics.spilled_bytes.inc_by(spill.bytes as u64);
        metrics.spill_files.inc_by(spill.files as u64);
        self.ended = true;
        metrics.remove(self.id);
    }
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        if !self.ended {
            // Dropped unfinished (its future was dropped): it was stopped.
            self.metrics
                .tasks
                .with_label_values(&[TaskOutcome::Stopped.label()])
                .inc();
            self.metrics.remove(self.id);
        }
    }
}

/// The process's resident memory (`/proc/self/statm`); 0 where unknown.
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page_size).unwrap_or(0)
}

/// Bytes of files below `dir`, following no links.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Bytes of shuffle files and of spill files in the work dir.
fn work_dir_bytes(work_dir: &Path) -> (u64, u64) {
    let (mut shuffle, mut spill) = (0, 0);
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let bytes = match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&path),
            Ok(kind) if kind.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        };
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPILL_DIR_PREFIX)
        {
            spill += bytes;
        } else {
            shuffle += bytes;
        }
    }
    (shuffle, spill)
}

/// The health port's routes: the probes and `/metrics`.
fn routes(health: ExecutorHealth) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<ExecutorHealth>) -> Response {
    if health.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no successful heartbeat yet\n",
        )
            .into_response()
    }
}

async fn metrics() -> Response {
    if let Some(metrics) = ExecutorMetrics::global() {
        metrics.refresh();
    }
    match ember_core::telemetry::prometheus_text() {
        Ok((content_type, text)) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(reason) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{reason}\n")).into_response(),
    }
}

/// Serves the health port (`/healthz`, `/readyz`, `/metrics`) on `addr`
/// until `shutdown` fires.
pub(crate) fn spawn_health_server(
    addr: SocketAddr,
    health: ExecutorHealth,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "executor health and metrics listening");
        axum::serve(listener, routes(health))
            .with_graceful_shutdown(async move {
                let _ = shutdown.await;
            })
            .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_dir_sizes_split_shuffle_from_spill() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("job1/1/0")).unwrap();
        std::fs::write(dir.path().join("job1/1/0/data.arrow"), vec![0u8; 300]).unwrap();
        std::fs::create_dir_all(dir.path().join("datafusion-abc")).unwrap();
        std::fs::write(dir.path().join("datafusion-abc/spill.arrow"), vec![0u8; 70]).unwrap();
        assert_eq!(work_dir_bytes(dir.path()), (300, 70));
        assert_eq!(work_dir_bytes(&dir.path().join("missing")), (0, 0));
    }
}
