//! Jobs whose recovery from a lost executor would count rows twice.
//!
//! Ballista hands a stage's shuffle output to the stage that reads it task
//! by task, as each task finishes. When an executor is lost (or a shuffle
//! fetch fails) while a stage is running and reads data from that
//! executor, Ballista rolls the running stage back and later runs *all* of
//! its partitions again, as a new attempt; but the outputs its finished
//! tasks already handed on (from executors that are still alive) stay with
//! the reading stage, or with the job's final output. The new attempt hands
//! the same partitions on again, and the reader sees those rows twice: a
//! wrong answer, not an error (it was seen on TPC-H Q18 with an executor
//! killed three quarters of the way through).
//!
//! [`StaleOutputGuard`] looks for that state before each task poll is
//! answered: a stage that is back to unresolved or resolved (so it will run
//! every partition again) while a later stage, or the job's output, still
//! holds outputs of it. Such a job is failed before the new attempt starts,
//! with a message starting [`RESUBMIT_MARKER`]; Ember's client submits the
//! query again when it sees it. Ballista only lets code outside it read a
//! job's stages, not change them, so failing the job and running it again
//! is the correct recovery open to Ember.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballista_core::serde::protobuf::{GetJobStatusResult, job_status};
use ballista_scheduler::state::execution_graph::ExecutionGraph;
use ballista_scheduler::state::execution_stage::ExecutionStage;
use tracing::warn;

use crate::server::EmberSchedulerServer;

pub use ember_core::RESUBMIT_MARKER;

/// How long a failed job's resubmission message is kept for the client
/// that polls its status.
const REMEMBERED_FOR: Duration = Duration::from_secs(600);

/// How often [`StaleOutputGuard::watch`] checks.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// Finds and fails jobs whose recovery would count rows twice; see the
/// module documentation.
#[derive(Clone, Default)]
pub(crate) struct StaleOutputGuard {
    /// Jobs failed for resubmission: the message their status carries, and
    /// when they were failed.
    failed: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl StaleOutputGuard {
    /// Fails every running job whose stages hold outputs of a stage that
    /// will run again from the start.
    pub(crate) async fn check(&self, scheduler: &EmberSchedulerServer) {
        let jobs = scheduler.state.task_manager.get_running_job_cache();
        for (job_id, job) in jobs.iter() {
            let reason = {
                let graph = job.execution_graph.read().await;
                stale_outputs(graph.as_ref())
            };
            let Some(reason) = reason else { continue };
            if !self.remember(job_id.as_str(), &reason) {
                continue;
            }
            warn!(job = %job_id, "{reason}; failing the job so that the client submits it again");
            if let Err(error) = scheduler.cancel_job(job_id.clone()).await {
                warn!(job = %job_id, "could not fail the job: {error}");
            }
        }
    }

    /// Checks every [`WATCH_EVERY`], for as long as the runtime runs: the
    /// push policy hands tasks out without a poll to check before.
    pub(crate) async fn watch(self, scheduler: EmberSchedulerServer) {
        let mut ticks = tokio::time::interval(WATCH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.check(&scheduler).await;
        }
    }

    /// Records that `job_id` is failed for resubmission; false when it
    /// already was.
    fn remember(&self, job_id: &str, reason: &str) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|_, (_, at)| at.elapsed() < REMEMBERED_FOR);
        if failed.contains_key(job_id) {
            return false;
        }
        let message = format!("{RESUBMIT_MARKER} {reason}");
        failed.insert(job_id.to_owned(), (message, Instant::now()));
        true
    }

    /// Replaces the error of a job this guard failed with the message that
    /// tells the client to submit it again.
    pub(crate) fn explain(&self, job_id: &str, result: &mut GetJobStatusResult) {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let Some((message, _)) = failed.get(job_id) else {
            return;
        };
        if let Some(status) = result.status.as_mut()
            && let Some(job_status::Status::Failed(failure)) = status.status.as_mut()
        {
            failure.error = message.clone();
        }
    }
}

/// Why `graph` would count some rows twice if it went on, if it would; see
/// [`stale_stage_outputs`].
pub(crate) fn stale_outputs(graph: &dyn ExecutionGraph) -> Option<String> {
    stale_stage_outputs(graph.stages(), !graph.output_locations().is_empty())
}

/// Why a job with `stages` would count some rows twice if it went on, if
/// it would: a stage that will run all of its partitions again while its
/// earlier outputs are still held by a stage that reads them, or (for the
/// final stage) by the job's output (`has_output`).
pub(crate) fn stale_stage_outputs(
    stages: &HashMap<usize, ExecutionStage>,
    has_output: bool,
) -> Option<String> {
    for (stage_id, stage) in stages {
        let will_rerun = matches!(
            stage,
            ExecutionStage::UnResolved(_) | ExecutionStage::Resolved(_)
        );
        if !will_rerun {
            continue;
        }
        let readers = stage.output_links();
        if readers.is_empty() && has_output {
            return Some(format!(
                "executor lost while final stage {stage_id} was running; \
                 its finished tasks' results would be returned twice"
            ));
        }
        for reader_id in readers {
            let held = match stages.get(reader_id) {
                Some(ExecutionStage::UnResolved(reader)) => reader.inputs.get(stage_id),
                Some(ExecutionStage::Resolved(reader)) => reader.inputs.get(stage_id),
                _ => None,
            };
            if held.is_some_and(|output| {
                output
                    .partition_locations
                    .values()
                    .any(|locations| !locations.is_empty())
            }) {
                return Some(format!(
                    "executor lost while stage {stage_id} was running; stage {reader_id} \
                     would read the output of its finished tasks twice"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use ballista_core::serde::scheduler::{
        ExecutorMetadata, ExecutorOperatingSystemSpecification, ExecutorSpecification, PartitionId,
        PartitionLocation, PartitionStats,
    };
    use ballista_scheduler::state::execution_stage::{StageOutput, UnresolvedStage};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::prelude::SessionConfig;

    use super::*;

    /// An unresolved stage `stage_id` at `attempt` whose output goes to
    /// `reader` (none for the final stage), reading `inputs`.
    fn unresolved(
        stage_id: usize,
        attempt: usize,
        reader: Option<usize>,
        inputs: HashMap<usize, StageOutput>,
    ) -> ExecutionStage {
        ExecutionStage::UnResolved(UnresolvedStage::new_with_inputs(
            stage_id,
            attempt,
            Arc::new(EmptyExec::new(Arc::new(Schema::empty()))),
            reader.into_iter().collect(),
            inputs,
            HashSet::new(),
            Arc::new(SessionConfig::new()),
        ))
    }

    /// What a finished task of `stage_id` on `executor` hands on.
    fn output_of(stage_id: usize, executor: &str, partitions: usize) -> StageOutput {
        let mut output = StageOutput::new();
        for partition_id in 0..partitions {
            output.add_partition(PartitionLocation {
                map_partition_id: 0,
                partition_id: PartitionId {
                    job_id: "job".into(),
                    stage_id,
                    partition_id,
                },
                executor_meta: ExecutorMetadata {
                    id: executor.to_owned(),
                    host: "127.0.0.1".to_owned(),
                    port: 50051,
                    grpc_port: 50052,
                    specification: ExecutorSpecification::default(),
                    os_info: ExecutorOperatingSystemSpecification::default(),
                },
                partition_stats: PartitionStats::default(),
                file_id: Some(0),
                is_sort_shuffle: false,
            });
        }
        output
    }

    #[test]
    fn a_stage_to_rerun_whose_reader_holds_its_outputs_is_stale() {
        // Stage 1 was rolled back (it will run every partition again) while
        // stage 2 still holds what one of its tasks handed on.
        let stages = HashMap::from([
            (1, unresolved(1, 1, Some(2), HashMap::new())),
            (
                2,
                unresolved(2, 0, None, HashMap::from([(1, output_of(1, "alive", 4))])),
            ),
        ]);
        let reason = stale_stage_outputs(&stages, false).expect("stale");
        assert!(
            reason.contains("stage 1") && reason.contains("stage 2"),
            "{reason}"
        );
    }

    #[test]
    fn a_stage_not_yet_run_holds_nothing() {
        let stages = HashMap::from([
            (1, unresolved(1, 0, Some(2), HashMap::new())),
            (
                2,
                unresolved(2, 0, None, HashMap::from([(1, StageOutput::new())])),
            ),
        ]);
        assert_eq!(stale_stage_outputs(&stages, false), None);
    }

    #[test]
    fn a_final_stage_to_rerun_with_results_already_out_is_stale() {
        let stages = HashMap::from([(1, unresolved(1, 1, None, HashMap::new()))]);
        assert!(stale_stage_outputs(&stages, true).is_some());
        assert_eq!(stale_stage_outputs(&stages, false), None);
    }
}
