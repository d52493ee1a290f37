//! `cache`, `persist` and `unpersist`: keeping a dataset's partitions where
//! they were computed (see [`ember_core::cache`]).

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use ember_core::cache::{BlockDirectory, CacheStorage, CachedDataset, LocalBlockDirectory};

pub use ember_core::cache::StorageLevel;

use super::{Dataset, planning};
use crate::context::ExecutionMode;
use crate::error::{ClientError, Result};

impl Dataset {
    /// Keeps the rows in memory where they are computed, spilling to disk
    /// past the memory budget: `persist(StorageLevel::MemoryAndDisk)`.
    pub fn cache(&self) -> Result<Dataset> {
        self.persist(StorageLevel::MemoryAndDisk)
    }

    /// A dataset whose partitions are kept at `level` on the executors (or
    /// in this process, embedded) that compute them.
    ///
    /// Lazy like every transformation: the first action that reads every
    /// partition to the end keeps them, and later actions read them instead
    /// of running the lineage. If an executor that holds partitions dies,
    /// the next action computes those partitions again from the lineage.
    pub fn persist(&self, level: StorageLevel) -> Result<Dataset> {
        let lineage = self.frame.logical_plan().clone();
        let cached = Arc::new(CachedDataset::new(lineage, level));
        let frame = self
            .ctx
            .session()
            .read_table(cached.clone())
            .map_err(planning)?;
        let mut dataset = self.with(frame);
        dataset.cached = Some(cached);
        Ok(dataset)
    }

    /// The storage level, if this dataset is the one `cache` or `persist`
    /// returned.
    pub fn storage_level(&self) -> Option<StorageLevel> {
        self.cached.as_ref().map(|c| c.level())
    }

    fn cached(&self, what: &str) -> Result<&CachedDataset> {
        self.cached.as_deref().ok_or_else(|| {
            ClientError::Process(format!(
                "{what}: this dataset is not cached (call it on the dataset that cache() or \
                 persist() returned)"
            ))
        })
    }

    /// The scheduler of the dataset's cluster.
    fn scheduler(&self) -> Result<&crate::cluster::SchedulerConnection> {
        self.ctx.scheduler().ok_or_else(|| {
            ClientError::Process("this dataset's context is not connected to a cluster".into())
        })
    }

    /// Where the partitions are held now, and how often they were computed
    /// and read (Spark's storage tab).
    pub async fn storage(&self) -> Result<CacheStorage> {
        let cached = self.cached("storage")?;
        match self.ctx.mode() {
            ExecutionMode::Embedded => LocalBlockDirectory
                .storage(cached.cache_id())
                .await
                .map_err(planning),
            ExecutionMode::Cluster(_) => {
                crate::cluster::cache_storage(self.scheduler()?, cached.cache_id()).await
            }
        }
    }

    /// Frees the kept partitions everywhere and returns the uncached
    /// dataset (the lineage). Using this cached dataset again keeps its
    /// partitions again.
    pub async fn unpersist(&self) -> Result<Dataset> {
        let cached = self.cached("unpersist")?;
        let freed = match self.ctx.mode() {
            ExecutionMode::Embedded => LocalBlockDirectory
                .drop_cache(cached.cache_id())
                .await
                .map_err(planning)?,
            ExecutionMode::Cluster(_) => {
                crate::cluster::unpersist(self.scheduler()?, cached.cache_id()).await?
            }
        };
        tracing::debug!(cache_id = cached.cache_id(), freed, "unpersisted");
        let state = self.ctx.session().state();
        Ok(Dataset::from_frame(
            &self.ctx,
            DataFrame::new(state, cached.lineage().clone()),
        ))
    }
}
