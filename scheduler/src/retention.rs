//! Letting go of finished jobs, so that a scheduler's memory stays flat over
//! months of queries.
//!
//! Ballista keeps a finished job's status and execution graph (its plans,
//! stages and task metrics) in memory until a timer fires, an hour after
//! the job ended by default; under a steady stream of queries that is
//! hundreds of megabytes. [`FinishedJobRetention`] keeps finished jobs for a
//! set time and a set count, whichever drops a job first, so `/api/jobs`
//! still shows the recent ones.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballista_core::serde::protobuf::job_status::Status;
use ballista_scheduler::cluster::JobState;

/// How long, and how many, finished jobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// A finished job is dropped this long after it ended.
    pub keep_for: Duration,
    /// At most this many finished jobs are kept; the oldest go first.
    pub keep_at_most: usize,
    /// Time between two passes.
    pub interval: Duration,
}

/// Drops finished jobs from the scheduler's job state; see the module
/// documentation.
pub(crate) struct FinishedJobRetention {
    jobs: Arc<dyn JobState>,
    settings: RetentionSettings,
}

impl FinishedJobRetention {
    /// Retention of `jobs`' finished jobs.
    pub(crate) fn new(jobs: Arc<dyn JobState>, settings: RetentionSettings) -> Self {
        Self { jobs, settings }
    }

    /// One pass every interval, forever.
    pub(crate) async fn run(self) {
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.pass().await;
        }
    }

    /// Drops the finished jobs past the time or the count; returns how many.
    pub(crate) async fn pass(&self) -> usize {
        let finished = match self.jobs.get_jobs().await {
            Ok(finished) => finished,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list finished jobs");
                return 0;
            }
        };
        let mut ended = Vec::with_capacity(finished.len());
        for job_id in finished {
            if let Ok(Some(status)) = self.jobs.get_job_status(&job_id).await {
                let ended_at = match status.status {
                    Some(Status::Successful(job)) => job.ended_at,
                    Some(Status::Failed(job)) => job.ended_at,
                    _ => continue,
                };
                ended.push((ended_at, job_id));
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let doomed = jobs_to_drop(ended, now_ms, &self.settings);
        for job_id in &doomed {
            if let Err(e) = self.jobs.remove_job(job_id).await {
                tracing::warn!(job = %job_id, error = %e, "cannot drop a finished job");
            }
        }
        if !doomed.is_empty() {
            tracing::debug!(dropped = doomed.len(), "dropped finished jobs");
        }
        doomed.len()
    }
}

/// The jobs of `ended` (end time in milliseconds, id) that are older than
/// `keep_for` at `now_ms`, or beyond the newest `keep_at_most`.
fn jobs_to_drop<Id>(
    mut ended: Vec<(u64, Id)>,
    now_ms: u64,
    settings: &RetentionSettings,
) -> Vec<Id> {
    // Newest first.
    ended.sort_by_key(|(ended_at, _)| std::cmp::Reverse(*ended_at));
    let keep_for_ms = settings.keep_for.as_millis() as u64;
    ended
        .into_iter()
        .enumerate()
        .filter(|(rank, (ended_at, _))| {
            *rank >= settings.keep_at_most || now_ms.saturating_sub(*ended_at) > keep_for_ms
        })
        .map(|(_, (_, id))| id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_jobs_past_the_count_or_the_time() {
        let settings = RetentionSettings {
            keep_for: Duration::from_secs(60),
            keep_at_most: 2,
            interval: Duration::from_secs(1),
        };
        let now = 1_000_000;
        let ended = vec![
            (now - 1_000, "b"),
            (now - 120_000, "old"),
            (now, "a"),
            (now - 2_000, "c"),
        ];
        let mut dropped = jobs_to_drop(ended, now, &settings);
        dropped.sort();
        assert_eq!(dropped, vec!["c", "old"]);
        let recent = vec![(now, "a")];
        assert!(jobs_to_drop(recent, now, &settings).is_empty());
    }
}
