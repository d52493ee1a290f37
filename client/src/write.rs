//! The client's side of a distributed write: it names the write (so it knows
//! where the write stages its files) and, when the job fails, removes what
//! the tasks staged, so that nothing is left at the destination.

use std::time::{Duration, Instant};

use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::listing::{ListingTable, ListingTableUrl};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use ember_core::write::StagingArea;

use crate::context::with_settings;
use crate::error::{ClientError, Result};

/// How long after each pass over a discarded write's staging area it is
/// passed over again (until a pass finds nothing).
const LATE_FILE_GRACE: Duration = Duration::from_millis(500);

/// How long a discarded write's passes go on while they still find files.
const DISCARD_PASSES_FOR: Duration = Duration::from_secs(10);

/// A write about to run: its destination and id.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    destination: ListingTableUrl,
    write_id: String,
}

impl PendingWrite {
    /// If `frame` writes files (`COPY`, `INSERT INTO` a listing table),
    /// gives the write a fresh id (the `ember.write_id` setting of the
    /// frame's session) and returns the frame with it.
    pub fn prepare(frame: DataFrame) -> Result<(DataFrame, Option<PendingWrite>)> {
        let Some(destination) = write_destination(frame.logical_plan())? else {
            return Ok((frame, None));
        };
        let write_id = uuid::Uuid::new_v4().simple().to_string();
        let frame = with_settings(frame, &[("ember.write_id".to_string(), write_id.clone())])?;
        Ok((
            frame,
            Some(PendingWrite {
                destination,
                write_id,
            }),
        ))
    }

    /// The write's id.
    pub fn write_id(&self) -> &str {
        &self.write_id
    }

    /// Removes whatever the failed or cancelled write staged, and what its
    /// tasks still stage. Tasks stop at their next await point, executors
    /// stop a failed job's tasks once they see it has failed, and a file
    /// write under way finishes on a blocking thread: a file or directory
    /// made in the meantime is removed by a later pass. Passes run every
    /// [`LATE_FILE_GRACE`] until one finds nothing (at least two), for at
    /// most [`DISCARD_PASSES_FOR`].
    pub async fn discard(&self, runtime: &RuntimeEnv) {
        let started = Instant::now();
        self.remove_staged(runtime).await;
        loop {
            tokio::time::sleep(LATE_FILE_GRACE).await;
            let removed = self.remove_staged(runtime).await;
            if removed == 0 || started.elapsed() >= DISCARD_PASSES_FOR {
                break;
            }
        }
    }

    /// Removes whatever the write has staged, and returns how many files
    /// that was. Failures to remove are logged, not returned: the write's
    /// own error is the one to report.
    async fn remove_staged(&self, runtime: &RuntimeEnv) -> usize {
        let mut removed = 0;
        // The staging area sits in the destination directory, or beside a
        // single-file destination; the id is unique, so clean both.
        for single_file in [false, true] {
            let area = StagingArea::new(&self.destination, single_file, &self.write_id);
            match area.remove(runtime).await {
                Ok(0) => {}
                Ok(files) => {
                    removed += files;
                    tracing::info!(
                        destination = %self.destination,
                        files,
                        "removed the staged files of a failed write"
                    )
                }
                Err(e) => tracing::warn!(
                    destination = %self.destination,
                    "cannot remove the staged files of a failed write: {e}"
                ),
            }
        }
        removed
    }
}

/// Where `plan` writes files, if it does.
fn write_destination(plan: &LogicalPlan) -> Result<Option<ListingTableUrl>> {
    let url = match plan {
        LogicalPlan::Copy(copy) => Some(copy.output_url.clone()),
        LogicalPlan::Dml(DmlStatement {
            op: WriteOp::Insert(_),
            target,
            ..
        }) => source_as_provider(target).ok().and_then(|provider| {
            provider
                .downcast_ref::<ListingTable>()
                .and_then(|table| table.table_paths().first().map(|p| p.to_string()))
        }),
        _ => None,
    };
    url.map(|u| ListingTableUrl::parse(&u).map_err(ClientError::from_datafusion))
        .transpose()
}
