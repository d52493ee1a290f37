//! Which process holds which cached partition, as the planner sees it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::error::Result;
use ember_proto::{CacheReport, CachedBlock};
use futures::future::BoxFuture;

use super::flight::{fetch_report, request_drop};
use super::store::BlockStore;

/// What the processes of a cluster (or the embedded process) hold of one
/// cache, and what they did with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStorage {
    /// The held partitions, by partition index; one holder per partition.
    pub blocks: Vec<CachedBlock>,
    /// Partitions computed from the lineage and kept, over all processes.
    pub partitions_computed: u64,
    /// Partitions served from the process's own store, over all processes.
    pub partitions_read_local: u64,
    /// Partitions sent to another process's task, over all processes.
    pub partitions_sent: u64,
}

impl CacheStorage {
    /// Merges the reports of several processes.
    pub fn from_reports(reports: impl IntoIterator<Item = CacheReport>) -> Self {
        let mut storage = CacheStorage::default();
        let mut blocks = BTreeMap::new();
        for report in reports {
            storage.partitions_computed += report.partitions_computed;
            storage.partitions_read_local += report.partitions_read_local;
            storage.partitions_sent += report.partitions_sent;
            for block in report.blocks {
                blocks.entry(block.partition).or_insert(block);
            }
        }
        storage.blocks = blocks.into_values().collect();
        storage
    }

    /// The partition count, if every partition `0..n` is held with the same
    /// count `n`.
    pub fn complete_partitions(&self) -> Option<usize> {
        let n = self.blocks.first()?.partitions as usize;
        let complete = self.blocks.len() == n
            && self
                .blocks
                .iter()
                .enumerate()
                .all(|(i, b)| b.partition as usize == i && b.partitions as usize == n);
        complete.then_some(n)
    }

    /// Rows over all held partitions.
    pub fn rows(&self) -> u64 {
        self.blocks.iter().map(|b| b.rows).sum()
    }
}

/// Finds the holders of cached partitions and frees them.
#[async_trait]
pub trait BlockDirectory: fmt::Debug + Send + Sync {
    /// What every reachable process holds of `cache_id`.
    async fn storage(&self, cache_id: &str) -> Result<CacheStorage>;

    /// Frees `cache_id` everywhere; returns how many partitions were freed.
    async fn drop_cache(&self, cache_id: &str) -> Result<usize>;
}

/// The directory of an embedded process: its own [`BlockStore`].
#[derive(Debug, Default)]
pub struct LocalBlockDirectory;

#[async_trait]
impl BlockDirectory for LocalBlockDirectory {
    async fn storage(&self, cache_id: &str) -> Result<CacheStorage> {
        Ok(CacheStorage::from_reports([
            BlockStore::global().report(cache_id, "")
        ]))
    }

    async fn drop_cache(&self, cache_id: &str) -> Result<usize> {
        Ok(BlockStore::global().drop_cache(cache_id))
    }
}

/// Lists the Flight endpoints (host:port) of the live executors.
pub type EndpointLister = Arc<dyn Fn() -> BoxFuture<'static, Vec<String>> + Send + Sync>;

/// The scheduler's directory: asks every registered executor over Flight.
/// An executor that does not answer (it died) holds nothing.
pub struct ExecutorBlockDirectory {
    endpoints: EndpointLister,
}

impl fmt::Debug for ExecutorBlockDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorBlockDirectory")
            .finish_non_exhaustive()
    }
}

impl ExecutorBlockDirectory {
    /// A directory over the executors that `endpoints` lists.
    pub fn new(endpoints: EndpointLister) -> Self {
        Self { endpoints }
    }
}

#[async_trait]
impl BlockDirectory for ExecutorBlockDirectory {
    async fn storage(&self, cache_id: &str) -> Result<CacheStorage> {
        let endpoints = (self.endpoints)().await;
        let answers = futures::future::join_all(
            endpoints
                .iter()
                .map(|endpoint| fetch_report(endpoint, cache_id)),
        )
        .await;
        let reports = answers.into_iter().zip(&endpoints).filter_map(|(answer, endpoint)| {
            answer
                .inspect_err(|e| tracing::debug!(%endpoint, error = %e, "executor holds no cached partitions"))
                .ok()
        });
        Ok(CacheStorage::from_reports(reports))
    }

    async fn drop_cache(&self, cache_id: &str) -> Result<usize> {
        let endpoints = (self.endpoints)().await;
        let answers =
            futures::future::join_all(endpoints.iter().map(|e| request_drop(e, cache_id))).await;
        Ok(answers.into_iter().filter_map(|a| a.ok()).sum())
    }
}

static DIRECTORY: OnceLock<Arc<dyn BlockDirectory>> = OnceLock::new();

/// Sets this process's directory; the scheduler calls it at start-up.
/// Returns `false` if one was already in use.
pub fn set_block_directory(directory: Arc<dyn BlockDirectory>) -> bool {
    DIRECTORY.set(directory).is_ok()
}

/// This process's directory ([`LocalBlockDirectory`] unless set).
pub fn block_directory() -> Arc<dyn BlockDirectory> {
    DIRECTORY
        .get_or_init(|| Arc::new(LocalBlockDirectory))
        .clone()
}
