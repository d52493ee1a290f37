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

    /// Deletes everything staged under this area (and, on the local file
    /// system, the directories left behind). Returns how many files were
    /// removed.
    pub async fn remove(&self, runtime: &RuntimeEnv) -> Result<usize> {
        let store = self.store(runtime)?;
        let staged: Vec<Path> = store
            .list(Some(&self.root))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        let count = staged.len();
        let locations = futures::stream::iter(staged.into_iter().map(Ok)).boxed();
        store
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await?;
        let mut count = count;
        if self.store_url.as_str().starts_with("file://") {
            // Listings leave out the temporary files of uploads still in
            // progress (`<name>#<n>`); the directories' removal takes them,
            // and counts them, so that a caller passing again until nothing
            // is found waits for a task still writing.
            count += count_local_files(&std::path::PathBuf::from(format!("/{}", self.root)));
            // A single-file write's directory is the file's parent, which
            // the write does not own: leave it.
            let own_dir = self.single_file.is_none().then_some(&self.destination_dir);
            remove_local_dirs(&self.root, &self.destination_dir, own_dir);
        }
        Ok(count)
    }
}

/// Removes one task attempt's staging directory unless the attempt
/// finished: a task of a failed or cancelled job is dropped wherever it
/// was, and what it had staged goes with it, even when the client's own
/// clean-up of the staging area has already passed. The removal is a
/// second line of defence behind the client's, and a process that exits
/// cancels it, so its failures are logged at debug level only: a failed
/// statement keeps its one line of error.
#[derive(Debug)]
pub struct UnfinishedTaskDir {
    store: Arc<dyn ObjectStore>,
    store_url: ObjectStoreUrl,
    dir: Path,
    finished: bool,
}

impl UnfinishedTaskDir {
    /// Guards `dir`, a task directory of `area`, in `store`.
    pub fn new(area: &StagingArea, store: Arc<dyn ObjectStore>, dir: Path) -> Self {
        Self {
            store,
            store_url: area.store_url.clone(),
            dir,
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
        let (store, dir) = (Arc::clone(&self.store), self.dir.clone());
        let local = self.store_url.as_str().starts_with("file://");
        drop(runtime.spawn(async move {
            let staged = store.list(Some(&dir)).map_ok(|meta| meta.location).boxed();
            let removed = store.delete_stream(staged).try_collect::<Vec<_>>().await;
            match removed {
                Ok(files) if !files.is_empty() => {
                    tracing::debug!(%dir, files = files.len(), "removed an unfinished task's files")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(%dir, "cannot remove an unfinished task's files: {e}"),
            }
            if local {
                let _ = std::fs::remove_dir_all(format!("/{dir}"));
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

/// Removes the (now empty) local staging directories, then `_temporary`
/// itself when no other write uses it, then `own_dir` (a directory
/// destination) when the write left it empty.
fn remove_local_dirs(root: &Path, destination_dir: &Path, own_dir: Option<&Path>) {
    let local = |p: &Path| std::path::PathBuf::from(format!("/{p}"));
    let _ = std::fs::remove_dir_all(local(root));
    let staging = destination_dir.clone().join(STAGING_DIR);
    let _ = std::fs::remove_dir(local(&staging));
    if let Some(dir) = own_dir {
        let _ = std::fs::remove_dir(local(dir));
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

    #[tokio::test]
    async fn uploads_in_progress_are_removed_and_counted() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        let out = ListingTableUrl::parse(format!("{}/", dir.path().join("out").display())).unwrap();
        let runtime = RuntimeEnv::default();
        let area = StagingArea::new(&out, false, "w5");
        let store = area.store(&runtime).unwrap();
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
        let out = ListingTableUrl::parse(format!("{}/", dir.path().join("out").display())).unwrap();
        let runtime = RuntimeEnv::default();
        let area = StagingArea::new(&out, false, "w6");
        let store = area.store(&runtime).unwrap();
        let local = |p: &Path| std::path::PathBuf::from(format!("/{p}"));

        let finished = area.task_dir(0, "d");
        store
            .put(&finished.clone().join("x.csv"), "1\n".into())
            .await
            .unwrap();
        UnfinishedTaskDir::new(&area, Arc::clone(&store), finished.clone()).finish();

        let stopped = area.task_dir(1, "e");
        store
            .put(&stopped.clone().join("y.csv"), "2\n".into())
            .await
            .unwrap();
        let upload = store
            .put_multipart(&stopped.clone().join("z.csv"))
            .await
            .unwrap();
        std::mem::forget(upload);
        drop(UnfinishedTaskDir::new(
            &area,
            Arc::clone(&store),
            stopped.clone(),
        ));

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while local(&stopped).exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(!local(&stopped).exists(), "the stopped task's files stay");
        assert!(local(&finished).join("x.csv").exists());
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
