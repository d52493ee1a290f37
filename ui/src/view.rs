//! What the UI shows, as the JSON its routes serve: a job's summary and
//! its stages, the executors, the cached datasets. The scheduler fills
//! these from Ballista's state ([`crate::ClusterView`]); the history keeps
//! finished jobs' views on disk ([`crate::JobHistory`]).

use serde::{Deserialize, Serialize};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting to be planned.
    Queued,
    /// Its stages are running.
    Running,
    /// Its last stage finished.
    Completed,
    /// It failed; the summary's `error` says why.
    Failed,
    /// A client or the UI cancelled it.
    Cancelled,
}

impl JobStatus {
    /// Whether the job has ended (and will not change again).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// One job, as the jobs page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The scheduler's job id.
    pub job_id: String,
    /// The name it was submitted with (`ballista.job.name`).
    pub name: String,
    /// Where it stands.
    pub status: JobStatus,
    /// The SQL text it runs, with secret values masked, when the client
    /// sent it.
    pub sql: Option<String>,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub queued_at_ms: u64,
    /// When it started running, in milliseconds since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// When it ended, in milliseconds since the Unix epoch.
    pub ended_at_ms: Option<u64>,
    /// Its stages.
    pub stages_total: usize,
    /// Its stages that finished.
    pub stages_done: usize,
    /// Rows its last stage produced so far.
    pub output_rows: u64,
    /// Why it failed (or who cancelled it).
    pub error: Option<String>,
    /// Whether this comes from the history (the scheduler no longer holds
    /// the job in memory, for example after a restart).
    #[serde(default)]
    pub from_history: bool,
}

/// One job with its stages, as the job's page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The job.
    pub summary: JobSummary,
    /// Its stages, by stage id.
    pub stages: Vec<StageView>,
}

/// One stage of a job: a node of the stage DAG, with its tasks' progress
/// and its operators' metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageView {
    /// The stage id within the job.
    pub stage_id: usize,
    /// Ballista's name for its state: `Unresolved`, `Resolved`, `Running`,
    /// `Successful` or `Failed`.
    pub status: String,
    /// How many times it was attempted before this one (a lost executor's
    /// outputs are recomputed by a new attempt).
    pub attempt: usize,
    /// The stages whose shuffle outputs it reads: the DAG's edges.
    pub inputs: Vec<usize>,
    /// Its partitions, one task each.
    pub partitions: usize,
    /// Tasks that finished.
    pub tasks_done: usize,
    /// Tasks running now.
    pub tasks_running: usize,
    /// Task attempts that failed (and were retried, or failed the stage).
    pub tasks_failed: usize,
    /// Its tasks: finished, running and still to be scheduled.
    pub tasks_total: usize,
    /// Rows its leaf operators read (scans and shuffle reads).
    pub input_rows: u64,
    /// Bytes of shuffle output it read from the stages it depends on.
    pub input_bytes: u64,
    /// Rows it wrote (to its shuffle output, or to the client).
    pub output_rows: u64,
    /// Bytes of shuffle output it wrote.
    pub output_bytes: u64,
    /// Bytes its operators spilled to disk.
    pub spilled_bytes: u64,
    /// Spill files its operators wrote.
    pub spill_files: u64,
    /// CPU time its operators reported, summed over tasks, in
    /// milliseconds.
    pub compute_ms: u64,
    /// Wall time from its first task's start to its last task's end, in
    /// milliseconds.
    pub wall_ms: u64,
    /// The median of its finished tasks' run times, in milliseconds.
    pub task_ms_median: u64,
    /// The longest of its finished tasks' run times, in milliseconds.
    pub task_ms_max: u64,
    /// The executor that ran the slowest task.
    pub slowest_executor: Option<String>,
    /// Its physical plan, each operator with its metrics summed over the
    /// stage's tasks.
    pub plan: String,
    /// Why it failed.
    pub error: Option<String>,
}

/// One executor, as the executors page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorView {
    /// The executor's id.
    pub executor_id: String,
    /// `host:port` of its Flight service.
    pub address: String,
    /// Its task slots.
    pub slots: u32,
    /// Its slots running a task now.
    pub slots_in_use: u32,
    /// Its process's resident memory at its last heartbeat.
    pub rss_bytes: Option<u64>,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_secs: Option<u64>,
    /// `alive`, or `lost` (it stopped answering and its tasks moved).
    pub state: String,
    /// When it was found lost, in milliseconds since the Unix epoch.
    pub lost_at_ms: Option<u64>,
    /// What it reported of itself when asked (alive executors).
    #[serde(default)]
    pub usage: Option<ExecutorUsage>,
    /// Why it could not be asked.
    #[serde(default)]
    pub usage_error: Option<String>,
}

/// What an executor reports of its tasks, memory and disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorUsage {
    /// Tasks that finished since it started.
    pub tasks_succeeded: u64,
    /// Tasks that failed or were stopped since it started.
    pub tasks_failed: u64,
    /// Bytes its running tasks hold in their memory pools.
    pub memory_pool_used_bytes: u64,
    /// Its memory pool's size (0: unbounded).
    pub memory_pool_bytes: u64,
    /// Bytes of shuffle files on its disk.
    pub shuffle_disk_bytes: u64,
    /// Bytes of spill files on its disk.
    pub spill_disk_bytes: u64,
    /// Bytes of cached partitions in its memory.
    pub cache_memory_bytes: u64,
    /// Bytes of cached partitions on its disk.
    pub cache_disk_bytes: u64,
    /// Shuffle bytes its tasks wrote since it started.
    pub shuffle_bytes_written: u64,
    /// Bytes its tasks spilled since it started.
    pub spilled_bytes: u64,
}

/// One cached dataset (`cache()`, `persist()`), as the
/// storage page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheView {
    /// The cache's id.
    pub cache_id: String,
    /// Its partitions, when every one is held.
    pub complete_partitions: Option<usize>,
    /// Rows held, over all blocks.
    pub rows: u64,
    /// Bytes held, over all blocks.
    pub bytes: u64,
    /// Where each partition is held.
    pub blocks: Vec<CacheBlockView>,
}

/// One cached partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheBlockView {
    /// The partition.
    pub partition: usize,
    /// The executor holding it.
    pub endpoint: String,
    /// Where there: `memory` or `disk`.
    pub medium: String,
    /// Its rows.
    pub rows: u64,
    /// Its bytes.
    pub bytes: u64,
}

/// What a cancellation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The job was running or queued, and is being cancelled.
    Cancelled,
    /// The job had ended already.
    AlreadyFinished,
    /// No such job.
    NotFound,
}

/// The median and the largest of `durations` (0 for none).
pub fn median_and_max(mut durations: Vec<u64>) -> (u64, u64) {
    if durations.is_empty() {
        return (0, 0);
    }
    durations.sort_unstable();
    let middle = durations.len() / 2;
    let median = if durations.len().is_multiple_of(2) {
        (durations[middle - 1] + durations[middle]) / 2
    } else {
        durations[middle]
    };
    (median, durations[durations.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_and_max(vec![]), (0, 0));
        assert_eq!(median_and_max(vec![5]), (5, 5));
        assert_eq!(median_and_max(vec![9, 1, 5]), (5, 9));
        assert_eq!(median_and_max(vec![4, 1, 10, 2]), (3, 10));
    }

    #[test]
    fn statuses_serialize_in_snake_case() {
        let json = serde_json::to_string(&JobStatus::Cancelled).unwrap();
        assert_eq!(json, "\"cancelled\"");
        assert!(JobStatus::Failed.is_finished());
        assert!(!JobStatus::Running.is_finished());
    }
}
