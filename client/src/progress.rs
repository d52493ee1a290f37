//! How far a running statement has got, and the progress line `ember sql`
//! keeps on standard error while one runs.
//!
//! Embedded, the rows the plan's scans have read so far are summed from
//! their live metrics; on a cluster, the job's stages and tasks are read
//! from the scheduler's REST API (`/api/jobs`, `/api/job/{id}/stages`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use datafusion::physical_plan::ExecutionPlan;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::context::EmberContext;

/// How far a running statement has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementProgress {
    /// An embedded statement.
    Embedded {
        /// Rows its scans have read so far.
        rows_read: usize,
    },
    /// A statement running as a cluster job.
    Cluster {
        /// Stages finished.
        stages_done: usize,
        /// Stages in all.
        stages: usize,
        /// Tasks finished.
        tasks_done: usize,
        /// Tasks running now.
        tasks_running: usize,
        /// Rows the job's stages have read so far (shuffled rows included).
        rows: usize,
    },
}

/// `1234567` as `1.2M`.
fn count(n: usize) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

impl fmt::Display for StatementProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded { rows_read } => write!(f, "{} rows read", count(*rows_read)),
            Self::Cluster {
                stages_done,
                stages,
                tasks_done,
                tasks_running,
                rows,
            } => write!(
                f,
                "stages {stages_done}/{stages} · tasks {tasks_done} done, {tasks_running} running \
                 · {} rows",
                count(*rows)
            ),
        }
    }
}

/// The rows `plan`'s leaves (its scans) have produced so far.
pub(crate) fn rows_read(plan: &dyn ExecutionPlan) -> usize {
    let children = plan.children();
    if children.is_empty() {
        return plan
            .metrics()
            .and_then(|metrics| metrics.output_rows())
            .unwrap_or(0);
    }
    children.iter().map(|child| rows_read(child.as_ref())).sum()
}

/// A progress line on standard error, shown from `after` on while a
/// statement runs and cleared when it ends.
#[derive(Debug)]
pub struct ProgressLine {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

/// How often the line asks how far the statement has got.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

impl ProgressLine {
    /// Starts following `context`'s running statement.
    pub fn start(context: EmberContext, after: Duration) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}") {
            bar.set_style(style);
        }
        let line = bar.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            line.enable_steady_tick(Duration::from_millis(120));
            loop {
                match context.statement_progress().await {
                    Some(progress) => line.set_message(progress.to_string()),
                    None => line.set_message("starting"),
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
        Self { bar, task }
    }

    /// Stops and clears the line.
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// What a running statement is, for [`EmberContext::statement_progress`].
#[derive(Debug, Clone)]
pub(crate) enum RunningStatement {
    /// Embedded: its physical plan, whose metrics fill as it runs.
    Embedded(Arc<dyn ExecutionPlan>),
    /// On a cluster: its job's name.
    Cluster(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_in_words() {
        assert_eq!(
            StatementProgress::Embedded {
                rows_read: 1_234_567
            }
            .to_string(),
            "1.2M rows read"
        );
        let cluster = StatementProgress::Cluster {
            stages_done: 2,
            stages: 5,
            tasks_done: 14,
            tasks_running: 4,
            rows: 999,
        };
        assert_eq!(
            cluster.to_string(),
            "stages 2/5 · tasks 14 done, 4 running · 999 rows"
        );
    }

    #[tokio::test]
    async fn an_embedded_plan_counts_the_rows_its_scans_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "x\n1\n2\n3\n").unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_csv("t", path.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let frame = ctx.sql("SELECT count(*) FROM t WHERE x > 1").await.unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        assert_eq!(rows_read(plan.as_ref()), 0);
        datafusion::physical_plan::collect(Arc::clone(&plan), Arc::new(frame.task_ctx()))
            .await
            .unwrap();
        assert_eq!(rows_read(plan.as_ref()), 3);
    }
}
