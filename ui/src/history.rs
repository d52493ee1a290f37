//! Finished jobs kept on disk, so that the UI shows them after the
//! scheduler forgets them (its retention, or a restart).
//!
//! Each finished job's [`JobView`] is one file, `<job id>.job.json`,
//! written to a temporary name and renamed, so a crash leaves a whole file
//! or none. The same directory holds Ballista's event log of each job
//! (`<job id>.eventlog`, task by task), which the scheduler writes when
//! given the directory; both are removed once older than the history's
//! retention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::view::{JobSummary, JobView};

/// The suffix of a job's view file.
const VIEW_SUFFIX: &str = ".job.json";
/// The suffixes of Ballista's event log files for a job.
const EVENT_LOG_SUFFIXES: &[&str] = &[".eventlog", ".eventlog.running"];

/// Why the history cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The directory cannot be created or read.
    #[error("cannot use the job history directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A job's view cannot be written.
    #[error("cannot write job {job_id}'s history to {path}: {source}")]
    Write {
        /// The job.
        job_id: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Finished jobs' views in a directory, kept for a while.
#[derive(Debug)]
pub struct JobHistory {
    dir: PathBuf,
    keep_for: Duration,
    /// The summaries of the jobs on disk, with when each was written.
    index: Mutex<BTreeMap<String, (JobSummary, SystemTime)>>,
}

/// Whether `job_id` can name a file: Ballista's ids are alphanumeric.
fn is_safe_job_id(job_id: &str) -> bool {
    !job_id.is_empty()
        && job_id.len() <= 128
        && job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl JobHistory {
    /// Opens (creating) the history in `dir`, keeping jobs for `keep_for`,
    /// and indexes the jobs already there; files that cannot be read are
    /// skipped with a warning.
    pub fn open(dir: impl Into<PathBuf>, keep_for: Duration) -> Result<Self, HistoryError> {
        let dir = dir.into();
        let directory_error = |source| HistoryError::Directory {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(directory_error)?;
        let mut index = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(directory_error)? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Some(job_id) = file_job_id(&path, VIEW_SUFFIX) else {
                continue;
            };
            match read_view(&path) {
                Ok(view) => {
                    let written = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or_else(|_| SystemTime::now());
                    index.insert(job_id, (history_summary(view.summary), written));
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), "skipping a job history file: {reason}");
                }
            }
        }
        tracing::info!(dir = %dir.display(), jobs = index.len(), "job history opened");
        Ok(Self {
            dir,
            keep_for,
            index: Mutex::new(index),
        })
    }

    /// The directory it keeps jobs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn view_path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}{VIEW_SUFFIX}"))
    }

    /// Whether `job_id` is recorded.
    pub fn contains(&self, job_id: &str) -> bool {
        self.lock().contains_key(job_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (JobSummary, SystemTime)>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a finished job's view, replacing any earlier record of it.
    pub fn record(&self, view: &JobView) -> Result<(), HistoryError> {
        let job_id = view.summary.job_id.clone();
        let path = self.view_path(&job_id);
        let write_error = |source| HistoryError::Write {
            job_id: job_id.clone(),
            path: path.clone(),
            source,
        };
        if !is_safe_job_id(&job_id) {
            return Err(write_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the job id cannot name a file",
            )));
        }
        let json = serde_json::to_vec(view).map_err(|e| write_error(e.into()))?;
        let staged = self.dir.join(format!(".{job_id}{VIEW_SUFFIX}.tmp"));
        std::fs::write(&staged, json).map_err(write_error)?;
        std::fs::rename(&staged, &path).map_err(write_error)?;
        self.lock().insert(
            job_id,
            (history_summary(view.summary.clone()), SystemTime::now()),
        );
        Ok(())
    }

    /// The recorded jobs' summaries, newest first.
    pub fn summaries(&self) -> Vec<JobSummary> {
        let mut summaries: Vec<JobSummary> = self.lock().values().map(|(s, _)| s.clone()).collect();
        summaries.sort_by_key(|s| std::cmp::Reverse(s.queued_at_ms));
        summaries
    }

    /// A recorded job's view.
    pub fn get(&self, job_id: &str) -> Option<JobView> {
        if !self.contains(job_id) {
            return None;
        }
        match read_view(&self.view_path(job_id)) {
            Ok(mut view) => {
                view.summary = history_summary(view.summary);
                Some(view)
            }
            Err(reason) => {
                tracing::warn!(job = job_id, "cannot read the job's history: {reason}");
                None
            }
        }
    }

    /// Removes the jobs recorded longer ago than the retention, with their
    /// event logs; returns how many.
    pub fn prune(&self, now: SystemTime) -> usize {
        let expired: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, (_, written))| {
                now.duration_since(*written).unwrap_or_default() > self.keep_for
            })
            .map(|(id, _)| id.clone())
            .collect();
        for job_id in &expired {
            self.lock().remove(job_id);
            let mut files = vec![self.view_path(job_id)];
            files.extend(
                EVENT_LOG_SUFFIXES
                    .iter()
                    .map(|suffix| self.dir.join(format!("{job_id}{suffix}"))),
            );
            for file in files {
                if let Err(e) = std::fs::remove_file(&file)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %file.display(), "cannot remove an expired job's history: {e}");
                }
            }
        }
        expired.len()
    }
}

/// The job id a file of `suffix` is named after.
fn file_job_id(path: &Path, suffix: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let id = name.strip_suffix(suffix)?;
    is_safe_job_id(id).then(|| id.to_string())
}

fn read_view(path: &Path) -> Result<JobView, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn history_summary(mut summary: JobSummary) -> JobSummary {
    summary.from_history = true;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::JobStatus;

    fn view(job_id: &str, queued_at_ms: u64) -> JobView {
        JobView {
            summary: JobSummary {
                job_id: job_id.to_string(),
                name: format!("ember-{job_id}"),
                status: JobStatus::Completed,
                sql: Some("SELECT 1".to_string()),
                queued_at_ms,
                started_at_ms: Some(queued_at_ms + 1),
                ended_at_ms: Some(queued_at_ms + 10),
                stages_total: 1,
                stages_done: 1,
                output_rows: 1,
                error: None,
                from_history: false,
            },
            stages: Vec::new(),
        }
    }

    #[test]
    fn recorded_jobs_survive_reopening_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let history = JobHistory::open(dir.path(), Duration::from_secs(60)).unwrap();
        history.record(&view("aaa", 1)).unwrap();
        history.record(&view("bbb", 2)).unwrap();
        std::fs::write(dir.path().join("bbb.eventlog"), "{}\n").unwrap();
        std::fs::write(dir.path().join("ccc.job.json"), "not json").unwrap();
        drop(history);

        let history = JobHistory::open(dir.path(), Duration::from_secs(60)).unwrap();
        let ids: Vec<_> = history.summaries().into_iter().map(|s| s.job_id).collect();
        assert_eq!(ids, ["bbb", "aaa"]);
        let job = history.get("aaa").unwrap();
        assert!(job.summary.from_history);
        assert_eq!(job.summary.sql.as_deref(), Some("SELECT 1"));
        assert!(history.get("ccc").is_none());

        assert_eq!(history.prune(SystemTime::now()), 0);
        let later = SystemTime::now() + Duration::from_secs(120);
        assert_eq!(history.prune(later), 2);
        assert!(history.summaries().is_empty());
        assert!(!dir.path().join("bbb.job.json").exists());
        assert!(!dir.path().join("bbb.eventlog").exists());
    }

    #[test]
    fn refuses_ids_that_are_not_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let history = JobHistory::open(dir.path(), Duration::from_secs(60)).unwrap();
        let error = history.record(&view("../x", 1)).unwrap_err();
        assert!(
            error.to_string().contains("cannot write job ../x"),
            "{error}"
        );
        assert!(history.get("../x").is_none());
    }
}
