//! Where a write stages its files, and how staged files are committed or
//! removed.
//!
//! A write to `<destination>` with id `<write_id>` stages every task's files
//! under `<dir>/_temporary/<write_id>/<task>/`, where `<dir>` is the
//! destination directory (or, for a single-file destination, the directory
//! that holds it). Committing moves each staged file to the same relative
//! place under the destination; removing deletes the whole staging area.
//! Readers never see staged files: listings skip `_`-prefixed entries (see
//! [`crate::object_store::HiddenFileFilter`]).

use std::sync::Arc;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::stream::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;

use super::abandoned_writes::TaskWriteGate;

/// The directory under a destination where writes stage their files.
pub const STAGING_DIR: &str = "_temporary";
/// The marker a committed directory write leaves in its destination.
pub const SUCCESS_MARKER: &str = "_SUCCESS";

/// The staging layout of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingArea {
    /// The store holding the destination, e.g. `s3://bucket/`.
    pub store_url: ObjectStoreUrl,
    /// The destination directory (a single-file destination's parent).
    pub destination_dir: Path,
    /// The single file the write produces, when it produces one.
    pub single_file: Option<Path>,
    /// `<destination_dir>/_temporary/<write_id>`.
    pub root: Path,
}

impl StagingArea {
    /// The staging area of write `write_id` to `destination`.
    pub fn new(destination: &ListingTableUrl, single_file: bool, write_id: &str) -> Self {
        let prefix = destination.prefix().clone();
        let (destination_dir, single_file) = if single_file {
            let parts: Vec<_> = prefix.parts().collect();
            let parent = Path::from_iter(parts[..parts.len().saturating_sub(1)].iter().cloned());
            (parent, Some(prefix))
        } else {
            (prefix, None)
        };
        let root = destination_dir.clone().join(STAGING_DIR).join(write_id);
        Self {
            store_url: destination.object_store(),
            destination_dir,
            single_file,
            root,
        }
    }

    /// The directory one task attempt writes into. Attempts never share one,
    /// so a retried task cannot mix its files with a failed attempt's.
    pub fn task_dir(&self, partition: usize, attempt: &str) -> Path {
        self.root
            .clone()
            .join(format!("part-{partition:05}-{attempt}"))
    }

    /// The URL of a path in this area's store, as DataFusion's file sinks
    /// take it (a trailing `/` marks a directory).
    pub fn url_of(&self, path: &Path, directory: bool) -> String {
        let base = self.store_url.as_str().trim_end_matches('/');
        format!("{base}/{path}{}", if directory { "/" } else { "" })
    }

    /// Where a staged file goes when the write commits: its place below the
    /// task directory, under the destination (or the destination file itself).
    pub fn committed_path(&self, staged: &Path) -> Result<Path> {
        if let Some(file) = &self.single_file {
            return Ok(file.clone());
        }
        let below_root: Vec<_> = staged
            .prefix_match(&self.root)
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "staged file {staged} is outside the staging area {}",
                    self.root
                ))
            })?
            .collect();
        // Skip the task directory.
        let mut path = self.destination_dir.clone();
        for part in below_root.into_iter().skip(1) {
            path = path.clone().join(part);
        }
        Ok(path)
    }

    /// The store of this area.
    pub fn store(&self, runtime: &RuntimeEnv) -> Result<Arc<dyn ObjectStore>> {
        runtime.object_store(&self.store_url)
    }

    /// Whether this area lies on the local file system.
    fn is_local(&self) -> bool {
        self.store_url.as_str().starts_with("file://")
    }

    /// Deletes everything staged under this area (and, on the local file
    /// system, the directories left behind). Returns how many files were
    /// removed.
    pub async fn remove(&self, runtime: &RuntimeEnv) -> Result<usize> {
        let store = self.store(runtime)?;
        let count = remove_staged_dir(store.as_ref(), &self.root, self.is_local()).await?;
        if self.is_local() {
            // A single-file write's directory is the file's parent, which
            // the write does not own: leave it.
            let own_dir = self.single_file.is_none().then_some(&self.destination_dir);
            remove_empty_local_dirs(&self.destination_dir, own_dir);
        }
        Ok(count)
    }
}

/// Deletes every file below `dir` in `store` and, where `local`, the
/// directory itself; returns how many files that was.
async fn remove_staged_dir(store: &dyn ObjectStore, dir: &Path, local: bool) -> Result<usize> {
    let staged: Vec<Path> = store
        .list(Some(dir))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await?;
    let mut count = staged.len();
    let locations = futures::stream::iter(staged.into_iter().map(Ok)).boxed();
    store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await?;
    if local {
        // Listings leave out the temporary files of uploads still in
        // progress (`<name>#<n>`); the directory's removal takes them, and
        // counts them, so that a caller passing again until nothing is
        // found waits for a task still writing.
        let dir = local_path(dir);
        count += count_local_files(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(count)
}

/// Removes one task attempt's staging directory unless the attempt
/// finished: a task of a failed or cancelled job is dropped wherever it
/// was, and what it had staged goes with it, even when the client's own
/// clean-up of the staging area has already passed. The removal first
/// closes the task's [`TaskWriteGate`] and waits for the writes under way,
/// whose files and directories would otherwise appear after it. It is a
/// second line of defence behind the client's, and a process that exits
/// cancels it, so its failures are logged at debug level only: a failed
/// statement keeps its one line of error.
#[derive(Debug)]
pub struct UnfinishedTaskDir {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    local: bool,
    gate: Arc<TaskWriteGate>,
    finished: bool,
}

impl UnfinishedTaskDir {
    /// Guards `dir`, a task directory of `area` in `store` that the task
    /// writes through `gate`.
    pub fn new(
        area: &StagingArea,
        store: Arc<dyn ObjectStore>,
        dir: Path,
        gate: Arc<TaskWriteGate>,
    ) -> Self {
        Self {
            store,
            dir,
            local: area.is_local(),
            gate,
            finished: false,
        }
    }

    /// The attempt finished: its files stay for the commit.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for UnfinishedTaskDir {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(dir = %self.dir, "cannot remove an unfinished task's files outside a runtime");
            return;
        };
        let (store, dir, local) = (Arc::clone(&self.store), self.dir.clone(), self.local);
        let gate = Arc::clone(&self.gate);
        drop(runtime.spawn(async move {
            gate.close().await;
            match remove_staged_dir(store.as_ref(), &dir, local).await {
                Ok(0) => {}
                Ok(files) => tracing::debug!(%dir, files, "removed an unfinished task's files"),
                Err(e) => tracing::debug!(%dir, "cannot remove an unfinished task's files: {e}"),
            }
        }));
    }
}

/// How many files lie below `dir` on the local file system.
fn count_local_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => count_local_files(&entry.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Where a path of the local file system's store lies on disk.
fn local_path(path: &Path) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/{path}"))
}

/// Removes `_temporary` below `destination_dir` when no other write uses it
/// (it is empty), then `own_dir` (a directory destination) when the write
/// left it empty.
fn remove_empty_local_dirs(destination_dir: &Path, own_dir: Option<&Path>) {
    let staging = destination_dir.clone().join(STAGING_DIR);
    let _ = std::fs::remove_dir(local_path(&staging));
    if let Some(dir) = own_dir {
        let _ = std::fs::remove_dir(local_path(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_writes_commit_below_the_destination() {
        let dest = ListingTableUrl::parse("s3://lake/out/").unwrap();
        let area = StagingArea::new(&dest, false, "w1");
        assert_eq!(area.root.as_ref(), "out/_temporary/w1");
        let task = area.task_dir(3, "a");
        assert_eq!(task.as_ref(), "out/_temporary/w1/part-00003-a");
        let staged = task.clone().join("k=1").clone().join("f.parquet");
        assert_eq!(
            area.committed_path(&staged).unwrap().as_ref(),
            "out/k=1/f.parquet"
        );
        assert_eq!(
            area.url_of(&task, true),
            "s3://lake/out/_temporary/w1/part-00003-a/"
        );
    }

    #[tokio::test]
    async fn removing_a_single_file_staging_area_keeps_the_parent_directory() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("reports");
        std::fs::create_dir(&parent).unwrap();
        let file = ListingTableUrl::parse(parent.join("total.csv").to_str().unwrap()).unwrap();
        let runtime = RuntimeEnv::default();
        let area = StagingArea::new(&file, true, "w3");
        let store = area.store(&runtime).unwrap();
        let staged = area.task_dir(0, "a").join("total.csv");
        store.put(&staged, "1\n".into()).await.unwrap();
        assert_eq!(area.remove(&runtime).await.unwrap(), 1);
        assert!(!parent.join(STAGING_DIR).exists());
        assert!(parent.exists(), "the parent directory is the user's");

        // A directory destination the write left empty goes.
        let out = ListingTableUrl::parse(format!("{}/", dir.path().join("out").display())).unwrap();
        let area = StagingArea::new(&out, false, "w4");
        store
            .put(&area.task_dir(0, "b").join("x.csv"), "1\n".into())
            .await
            .unwrap();
        assert_eq!(area.remove(&runtime).await.unwrap(), 1);
        assert!(!dir.path().join("out").exists());
    }

    /// A write `write_id` to the directory `out` below `dir` on the local
    /// file system, and its store.
    fn directory_write(
        dir: &std::path::Path,
        write_id: &str,
        runtime: &RuntimeEnv,
    ) -> (StagingArea, Arc<dyn ObjectStore>) {
        let out = ListingTableUrl::parse(format!("{}/", dir.join("out").display())).unwrap();
        let area = StagingArea::new(&out, false, write_id);
        let store = area.store(runtime).unwrap();
        (area, store)
    }

    #[tokio::test]
    async fn uploads_in_progress_are_removed_and_counted() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        let runtime = RuntimeEnv::default();
        let (area, store) = directory_write(dir.path(), "w5", &runtime);
        // An open multipart upload: a `<name>#<n>` file no listing shows.
        let _upload = store
            .put_multipart(&area.task_dir(0, "c").join("x.csv"))
            .await
            .unwrap();
        assert_eq!(area.remove(&runtime).await.unwrap(), 1);
        assert!(!dir.path().join("out").exists());
        assert_eq!(area.remove(&runtime).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unfinished_task_removes_its_files_and_a_finished_one_keeps_them() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        let runtime = RuntimeEnv::default();
        let (area, store) = directory_write(dir.path(), "w6", &runtime);

        let finished = area.task_dir(0, "d");
        store
            .put(&finished.clone().join("x.csv"), "1\n".into())
            .await
            .unwrap();
        let gate = Arc::new(TaskWriteGate::default());
        UnfinishedTaskDir::new(&area, Arc::clone(&store), finished.clone(), gate).finish();

        // The stopped task writes through its gate, as tasks do: one file
        // landed, one upload open, and one put dropped half-way, whose
        // blocking file creation goes on after the task has gone.
        let stopped = area.task_dir(1, "e");
        let gate = Arc::new(TaskWriteGate::default());
        let task_store =
            crate::write::AbandonedWriteUndo::new(Arc::clone(&store), Arc::clone(&gate));
        task_store
            .put(&stopped.clone().join("y.csv"), "2\n".into())
            .await
            .unwrap();
        let upload = task_store
            .put_multipart(&stopped.clone().join("z.csv"))
            .await
            .unwrap();
        std::mem::forget(upload);
        let late_path = stopped.clone().join("late").join("w.csv");
        let late = task_store.put(&late_path, vec![3u8; 1 << 20].into());
        assert!(futures::FutureExt::now_or_never(Box::pin(late)).is_none());
        drop(UnfinishedTaskDir::new(
            &area,
            Arc::clone(&store),
            stopped.clone(),
            gate,
        ));

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while local_path(&stopped).exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Nothing the late put does reappears after the removal.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !local_path(&stopped).exists(),
            "the stopped task's directory stays, with {:?}",
            count_local_files(&local_path(&stopped))
        );
        assert!(local_path(&finished).join("x.csv").exists());
    }

    #[test]
    fn single_file_writes_stage_beside_the_file() {
        let dest = ListingTableUrl::parse("s3://lake/reports/total.csv").unwrap();
        let area = StagingArea::new(&dest, true, "w2");
        assert_eq!(area.root.as_ref(), "reports/_temporary/w2");
        let staged = area.task_dir(0, "b").clone().join("total.csv");
        assert_eq!(
            area.committed_path(&staged).unwrap().as_ref(),
            "reports/total.csv"
        );
    }
}
