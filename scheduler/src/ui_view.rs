//! The web UI's view of the cluster ([`ember_ui::ClusterView`]), read
//! from Ballista's job and executor state, and the recorder that keeps
//! finished jobs in the UI's history.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballista_core::JobId;
use ballista_core::serde::protobuf::executor_metric::Metric;
use ballista_core::serde::protobuf::{JobStatus as BallistaJobStatus, job_status, task_status};
use ballista_scheduler::cluster::JobState;
use ballista_scheduler::display::format_stage_metrics;
use ballista_scheduler::state::execution_graph::ExecutionGraphBox;
use ballista_scheduler::state::execution_stage::{ExecutionStage, TaskInfo};
use datafusion::physical_plan::metrics::{MetricValue, MetricsSet};
use datafusion::physical_plan::{ExecutionPlan, displayable};
use ember_core::cache::{CacheExec, block_directory};
use ember_ui::{
    CacheBlockView, CacheView, CancelOutcome, ClusterView, ExecutorUsage, ExecutorView, JobHistory,
    JobStatus, JobSummary, JobView, StageView, ViewError,
};

use crate::job_metrics::stage_metrics;
use crate::server::EmberSchedulerServer;

/// What Ballista's cancellation leaves as a job's error.
const CANCELLED_ERROR: &str = "Cancelled";

/// The cluster as the UI sees it, from the scheduler's state.
pub(crate) struct SchedulerClusterView {
    scheduler: Arc<EmberSchedulerServer>,
    jobs: Arc<dyn JobState>,
    /// Every executor seen, by id: alive ones are refreshed, gone ones
    /// kept as lost.
    executors: Mutex<BTreeMap<String, ExecutorView>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn state_error(e: impl std::fmt::Display) -> ViewError {
    ViewError::State(e.to_string())
}

impl SchedulerClusterView {
    pub(crate) fn new(scheduler: Arc<EmberSchedulerServer>, jobs: Arc<dyn JobState>) -> Self {
        Self {
            scheduler,
            jobs,
            executors: Mutex::new(BTreeMap::new()),
        }
    }

    /// A job's execution graph: a running job's live one (the job state
    /// holds only a copy saved at submission), else the job state's.
    async fn graph(&self, job_id: &str) -> Result<Option<ExecutionGraphBox>, ViewError> {
        let job_id = JobId::new(job_id.to_string());
        let running = self.scheduler.state.task_manager.get_running_job_cache();
        if let Some(job) = running.get(&job_id) {
            return Ok(Some(job.execution_graph.read().await.cloned()));
        }
        self.jobs
            .get_execution_graph(&job_id)
            .await
            .map_err(state_error)
    }

    /// The ids of the jobs the scheduler holds, with whether each has
    /// ended.
    async fn job_ids(&self) -> Result<Vec<(String, bool)>, ViewError> {
        let jobs = self
            .scheduler
            .state
            .task_manager
            .get_all_jobs()
            .await
            .map_err(state_error)?;
        Ok(jobs
            .into_iter()
            .map(|job| {
                let finished = job_status(&job.status).0.is_finished();
                (job.job_id.to_string(), finished)
            })
            .collect())
    }

    /// Merges the registered executors' `states` into those seen before:
    /// one seen before and gone now is lost.
    fn merge_executors(
        &self,
        states: Vec<(
            ballista_core::serde::scheduler::ExecutorMetadata,
            Option<Duration>,
            Vec<ballista_core::serde::protobuf::ExecutorMetric>,
        )>,
        in_use: &BTreeMap<String, u32>,
    ) -> Vec<ExecutorView> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut seen = self.executors.lock().unwrap_or_else(|e| e.into_inner());
        let mut alive = BTreeSet::new();
        for (metadata, heartbeat, metrics) in states {
            let rss_bytes = metrics.iter().find_map(|m| match m.metric {
                Some(Metric::ProcPhysicalMemory(bytes)) => Some(bytes),
                _ => None,
            });
            alive.insert(metadata.id.clone());
            seen.insert(
                metadata.id.clone(),
                ExecutorView {
                    slots_in_use: in_use.get(&metadata.id).copied().unwrap_or_default(),
                    executor_id: metadata.id,
                    address: format!("{}:{}", metadata.host, metadata.port),
                    slots: metadata.specification.vcores,
                    rss_bytes,
                    heartbeat_age_secs: heartbeat.map(|at| now.saturating_sub(at).as_secs()),
                    state: "alive".to_string(),
                    lost_at_ms: None,
                    usage: None,
                    usage_error: None,
                },
            );
        }
        for (id, executor) in seen.iter_mut() {
            if !alive.contains(id) && executor.state == "alive" {
                executor.state = "lost".to_string();
                executor.lost_at_ms = Some(now_ms());
                executor.slots_in_use = 0;
            }
        }
        seen.values().cloned().collect()
    }

    /// The executors registered now, merged into those seen before (which
    /// become lost when gone); with `ask`, each alive one is asked for its
    /// usage.
    async fn refresh_executors(&self, ask: bool) -> Result<Vec<ExecutorView>, ViewError> {
        let states = self
            .scheduler
            .state
            .executor_manager
            .get_executors_state()
            .await
            .map_err(state_error)?;
        // Tasks run only in running jobs: read their live graphs in place.
        let mut in_use: BTreeMap<String, u32> = BTreeMap::new();
        let running = self.scheduler.state.task_manager.get_running_job_cache();
        for job in running.values() {
            for task in job.execution_graph.read().await.running_tasks() {
                *in_use.entry(task.executor_id).or_default() += 1;
            }
        }
        let mut executors = self.merge_executors(states, &in_use);
        if ask {
            let asked = executors
                .iter()
                .filter(|e| e.state == "alive")
                .map(|e| async move { (e.executor_id.clone(), executor_usage(&e.address).await) });
            let answers: BTreeMap<String, Result<(ExecutorUsage, u64), String>> =
                futures::future::join_all(asked).await.into_iter().collect();
            for executor in &mut executors {
                match answers.get(&executor.executor_id) {
                    Some(Ok((usage, rss))) => {
                        executor.usage = Some(usage.clone());
                        if executor.rss_bytes.is_none() && *rss > 0 {
                            executor.rss_bytes = Some(*rss);
                        }
                    }
                    Some(Err(reason)) => executor.usage_error = Some(reason.clone()),
                    None => {}
                }
            }
        }
        Ok(executors)
    }
}

/// How long an executor has to answer for its usage.
const USAGE_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks the executor at `address` (its Flight endpoint) for its usage and
/// its resident memory.
async fn executor_usage(address: &str) -> Result<(ExecutorUsage, u64), String> {
    let status = tokio::time::timeout(
        USAGE_TIMEOUT,
        ember_core::executor_status::fetch_executor_status(address),
    )
    .await
    .map_err(|_| format!("{address} did not answer within {USAGE_TIMEOUT:?}"))?
    .map_err(|e| e.to_string())?;
    let usage = ExecutorUsage {
        tasks_succeeded: status.tasks_succeeded,
        tasks_failed: status.tasks_failed,
        memory_pool_used_bytes: status.memory_pool_used,
        memory_pool_bytes: status.memory_pool_limit,
        shuffle_disk_bytes: status.shuffle_disk_bytes,
        spill_disk_bytes: status.spill_disk_bytes,
        cache_memory_bytes: status.cache_memory_bytes,
        cache_disk_bytes: status.cache_disk_bytes,
        shuffle_bytes_written: status.shuffle_bytes_written,
        spilled_bytes: status.spilled_bytes,
    };
    Ok((usage, status.rss_bytes))
}

#[async_trait::async_trait]
impl ClusterView for SchedulerClusterView {
    async fn jobs(&self) -> Result<Vec<JobSummary>, ViewError> {
        let mut jobs = Vec::new();
        for (id, _) in self.job_ids().await? {
            if let Some(graph) = self.graph(&id).await? {
                jobs.push(job_view(&graph, false).summary);
            }
        }
        jobs.sort_by_key(|j| std::cmp::Reverse(j.queued_at_ms));
        Ok(jobs)
    }

    async fn job(&self, job_id: &str) -> Result<Option<JobView>, ViewError> {
        Ok(self
            .graph(job_id)
            .await?
            .map(|graph| job_view(&graph, true)))
    }

    async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, ViewError> {
        let Some(graph) = self.graph(job_id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        if job_status(graph.status()).0.is_finished() {
            return Ok(CancelOutcome::AlreadyFinished);
        }
        self.scheduler
            .cancel_job(JobId::new(job_id.to_string()))
            .await
            .map_err(|e| ViewError::Cancel {
                job_id: job_id.to_string(),
                reason: e.to_string(),
            })?;
        Ok(CancelOutcome::Cancelled)
    }

    async fn executors(&self) -> Result<Vec<ExecutorView>, ViewError> {
        self.refresh_executors(true).await
    }

    async fn storage(&self) -> Result<Vec<CacheView>, ViewError> {
        let mut cache_ids = BTreeSet::new();
        for (id, _) in self.job_ids().await? {
            if let Some(graph) = self.graph(&id).await? {
                for stage in graph.stages().values() {
                    collect_cache_ids(stage.plan(), &mut cache_ids);
                }
            }
        }
        let directory = block_directory();
        let mut caches = Vec::new();
        for cache_id in cache_ids {
            let storage = directory.storage(&cache_id).await.map_err(state_error)?;
            if storage.blocks.is_empty() {
                // Unpersisted, or its executors are gone.
                continue;
            }
            caches.push(CacheView {
                complete_partitions: storage.complete_partitions(),
                rows: storage.rows(),
                bytes: storage.blocks.iter().map(|b| b.bytes).sum(),
                blocks: storage
                    .blocks
                    .iter()
                    .map(|b| CacheBlockView {
                        partition: b.partition as usize,
                        endpoint: b.endpoint.clone(),
                        medium: b.medium.clone(),
                        rows: b.rows,
                        bytes: b.bytes,
                    })
                    .collect(),
                cache_id,
            });
        }
        Ok(caches)
    }
}

fn collect_cache_ids(plan: &dyn ExecutionPlan, ids: &mut BTreeSet<String>) {
    visit_plan(plan, &mut |node| {
        if let Some(cache) = node.downcast_ref::<CacheExec>() {
            ids.insert(cache.cache_id().to_string());
        }
    });
}

/// A job's status, its error and its times (queued, started, ended).
fn job_status(status: &BallistaJobStatus) -> (JobStatus, Option<String>, [Option<u64>; 3]) {
    match &status.status {
        Some(job_status::Status::Queued(q)) => {
            (JobStatus::Queued, None, [Some(q.queued_at), None, None])
        }
        Some(job_status::Status::Running(r)) => (
            JobStatus::Running,
            None,
            [Some(r.queued_at), Some(r.started_at), None],
        ),
        Some(job_status::Status::Successful(s)) => (
            JobStatus::Completed,
            None,
            [Some(s.queued_at), Some(s.started_at), Some(s.ended_at)],
        ),
        Some(job_status::Status::Failed(f)) => {
            let status = if f.error.starts_with(CANCELLED_ERROR) {
                JobStatus::Cancelled
            } else {
                JobStatus::Failed
            };
            (
                status,
                Some(f.error.clone()),
                [Some(f.queued_at), Some(f.started_at), Some(f.ended_at)],
            )
        }
        None => (JobStatus::Queued, None, [None, None, None]),
    }
}

/// The UI's view of a job; with `plans`, each stage's plan with metrics.
pub(crate) fn job_view(graph: &ExecutionGraphBox, plans: bool) -> JobView {
    let (status, error, [queued, started, ended]) = job_status(graph.status());
    let mut stages: Vec<StageView> = graph
        .stages()
        .values()
        .map(|stage| stage_view(stage, plans))
        .collect();
    stages.sort_by_key(|s| s.stage_id);
    // Shuffle bytes a stage reads are those its inputs wrote.
    let written: BTreeMap<usize, u64> = stages
        .iter()
        .map(|s| (s.stage_id, s.output_bytes))
        .collect();
    for stage in &mut stages {
        stage.input_bytes = stage.inputs.iter().filter_map(|i| written.get(i)).sum();
    }
    let output_rows = graph
        .stages()
        .values()
        .filter(|stage| stage.output_links().is_empty())
        .map(|stage| {
            stage_metrics(stage)
                .map(root_output_rows)
                .unwrap_or_default()
        })
        .sum();
    let text = ember_core::EmberConfig::from_session_config(&graph.session_config()).statement_text;
    let sql = (!text.is_empty()).then(|| ember_ui::mask_sql_secrets(&text));
    let stages_done = stages.iter().filter(|s| s.status == "Successful").count();
    JobView {
        summary: JobSummary {
            job_id: graph.job_id().to_string(),
            name: graph.job_name().to_string(),
            status,
            sql,
            queued_at_ms: queued.unwrap_or_else(|| graph.start_time()),
            started_at_ms: started.filter(|t| *t > 0),
            ended_at_ms: ended.filter(|t| *t > 0),
            stages_total: stages.len(),
            stages_done,
            output_rows,
            error,
            from_history: false,
        },
        stages: if plans { stages } else { Vec::new() },
    }
}

fn root_output_rows(metrics: &[MetricsSet]) -> u64 {
    metrics
        .first()
        .and_then(|set| set.output_rows())
        .unwrap_or_default() as u64
}

/// Calls `visit` on every node of `plan`, in pre-order (the order in which
/// a stage's operator metrics come).
fn visit_plan(plan: &dyn ExecutionPlan, visit: &mut dyn FnMut(&dyn ExecutionPlan)) {
    visit(plan);
    for child in plan.children() {
        visit_plan(child.as_ref(), visit);
    }
}

/// The stage's leaf operators' output rows (what it read), pairing the
/// plan's nodes in pre-order with the metrics, which come in that order.
fn leaf_rows(plan: &dyn ExecutionPlan, metrics: &[MetricsSet]) -> u64 {
    let mut leaves = Vec::new();
    let mut index = 0usize;
    visit_plan(plan, &mut |node| {
        if node.children().is_empty() {
            leaves.push(index);
        }
        index += 1;
    });
    if index != metrics.len() {
        return 0;
    }
    leaves
        .into_iter()
        .filter_map(|i| metrics[i].output_rows())
        .sum::<usize>() as u64
}

/// The compute time (ns) its operators reported, over all operators.
fn compute_nanos(metrics: &[MetricsSet]) -> u64 {
    metrics
        .iter()
        .flat_map(|set| set.iter())
        .map(|metric| match metric.value() {
            MetricValue::ElapsedCompute(t) => t.value() as u64,
            _ => 0,
        })
        .sum()
}

struct TaskTotals {
    done: usize,
    running: usize,
    failed: usize,
    output_bytes: u64,
    wall_ms: u64,
    durations: Vec<(u64, String)>,
}

fn task_totals(tasks: &[TaskInfo]) -> TaskTotals {
    let mut totals = TaskTotals {
        done: 0,
        running: 0,
        failed: 0,
        output_bytes: 0,
        wall_ms: 0,
        durations: Vec::new(),
    };
    let (mut first, mut last) = (u128::MAX, 0u128);
    let now = u128::from(now_ms());
    for task in tasks {
        // A running task reports its start only when it ends: until then
        // its launch stands in.
        let started = if task.start_exec_time > 0 {
            task.start_exec_time
        } else {
            task.launch_time
        };
        if started > 0 {
            first = first.min(started);
        }
        match &task.task_status {
            task_status::Status::Successful(s) => {
                totals.done += 1;
                totals.output_bytes += s.partitions.iter().map(|p| p.num_bytes).sum::<u64>();
                let took = task.end_exec_time.saturating_sub(task.start_exec_time) as u64;
                totals.durations.push((took, s.executor_id.clone()));
                last = last.max(task.end_exec_time);
            }
            task_status::Status::Running(_) => {
                totals.running += 1;
                last = last.max(now);
            }
            task_status::Status::Failed(_) => {
                totals.failed += 1;
                last = last.max(task.end_exec_time);
            }
        }
    }
    if first != u128::MAX && last > first {
        totals.wall_ms = (last - first) as u64;
    }
    totals
}

fn stage_view(stage: &ExecutionStage, with_plan: bool) -> StageView {
    let (stage_id, attempt, partitions, mut inputs, pending, error) = match stage {
        ExecutionStage::UnResolved(s) => (
            s.stage_id,
            s.stage_attempt_num,
            0,
            s.inputs.keys().copied().collect::<Vec<_>>(),
            0,
            None,
        ),
        ExecutionStage::Resolved(s) => (
            s.stage_id,
            s.stage_attempt_num,
            s.partitions,
            s.inputs.keys().copied().collect(),
            s.partitions,
            None,
        ),
        ExecutionStage::Running(s) => (
            s.stage_id,
            s.stage_attempt_num,
            s.partitions,
            s.inputs.keys().copied().collect(),
            s.pending.remaining(),
            None,
        ),
        ExecutionStage::Successful(s) => (
            s.stage_id,
            s.stage_attempt_num,
            s.partitions,
            s.inputs.keys().copied().collect(),
            0,
            None,
        ),
        ExecutionStage::Failed(s) => (
            s.stage_id,
            s.stage_attempt_num,
            s.partitions,
            Vec::new(),
            0,
            Some(s.error_message.clone()),
        ),
    };
    if inputs.is_empty() {
        // A failed stage keeps no inputs: read them off its plan's readers.
        inputs = shuffle_inputs(stage.plan());
    }
    inputs.sort_unstable();
    let tasks = task_totals(stage.task_infos().unwrap_or_default());
    let metrics = stage_metrics(stage).unwrap_or_default();
    let spill = ember_memory::SpillTotals::of_metrics(metrics);
    let (task_ms_median, task_ms_max) =
        ember_ui::view::median_and_max(tasks.durations.iter().map(|(ms, _)| *ms).collect());
    let slowest_executor = tasks
        .durations
        .iter()
        .max_by_key(|(ms, _)| *ms)
        .map(|(_, executor)| executor.clone());
    let plan = if !with_plan {
        String::new()
    } else if metrics.is_empty() {
        displayable(stage.plan()).indent(false).to_string()
    } else {
        format_stage_metrics(stage.plan(), metrics)
    };
    StageView {
        stage_id,
        status: stage.variant_name().to_string(),
        attempt,
        inputs,
        partitions,
        tasks_done: tasks.done,
        tasks_running: tasks.running,
        tasks_failed: tasks.failed,
        tasks_total: tasks.done + tasks.running + pending,
        input_rows: leaf_rows(stage.plan(), metrics),
        input_bytes: 0,
        output_rows: root_output_rows(metrics),
        output_bytes: tasks.output_bytes,
        spilled_bytes: spill.bytes as u64,
        spill_files: spill.files as u64,
        compute_ms: compute_nanos(metrics) / 1_000_000,
        wall_ms: tasks.wall_ms,
        task_ms_median,
        task_ms_max,
        slowest_executor,
        plan,
        error,
    }
}

/// The stages a plan's shuffle readers read.
fn shuffle_inputs(plan: &dyn ExecutionPlan) -> Vec<usize> {
    use ballista_core::execution_plans::{ShuffleReaderExec, UnresolvedShuffleExec};
    let mut ids = BTreeSet::new();
    visit_plan(plan, &mut |node| {
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
            ids.insert(reader.stage_id);
        } else if let Some(reader) = node.downcast_ref::<UnresolvedShuffleExec>() {
            ids.insert(reader.stage_id);
        }
    });
    ids.into_iter().collect()
}

/// Keeps finished jobs in the history: each second, every job that has
/// ended and is not recorded yet is written; each minute, expired records
/// are removed. It also refreshes the executors, so that one that goes
/// away is listed as lost even while no one looks.
pub(crate) struct HistoryRecorder {
    view: Arc<SchedulerClusterView>,
    history: Arc<JobHistory>,
}

/// How often the recorder looks for finished jobs.
const RECORD_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired records are removed.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

impl HistoryRecorder {
    pub(crate) fn new(view: Arc<SchedulerClusterView>, history: Arc<JobHistory>) -> Self {
        Self { view, history }
    }

    /// Records finished jobs not recorded yet; returns how many.
    pub(crate) async fn record_finished(&self) -> Result<usize, ViewError> {
        let mut recorded = 0;
        for (id, finished) in self.view.job_ids().await? {
            // Only an ended job's graph is read (and copied), once.
            if !finished || self.history.contains(&id) {
                continue;
            }
            let Some(graph) = self.view.graph(&id).await? else {
                continue;
            };
            match self.history.record(&job_view(&graph, true)) {
                Ok(()) => recorded += 1,
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(recorded)
    }

    /// Runs until the runtime ends.
    pub(crate) async fn run(self) {
        let mut last_prune = std::time::Instant::now();
        self.history.prune(SystemTime::now());
        loop {
            tokio::time::sleep(RECORD_INTERVAL).await;
            if let Err(e) = self.record_finished().await {
                tracing::warn!("cannot record finished jobs: {e}");
            }
            if let Err(e) = self.view.refresh_executors(false).await {
                tracing::debug!("cannot refresh the executors: {e}");
            }
            if last_prune.elapsed() >= PRUNE_INTERVAL {
                let removed = self.history.prune(SystemTime::now());
                if removed > 0 {
                    tracing::info!(removed, "expired jobs removed from the history");
                }
                last_prune = std::time::Instant::now();
            }
        }
    }
}
