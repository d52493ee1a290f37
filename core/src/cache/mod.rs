//! Cached datasets: `Dataset::cache()` and `persist(level)`.
//!
//! A cached dataset is a [`CachedDataset`] table whose rows are its lineage's
//! (the logical plan that computes it). Planning it yields a [`CacheExec`]:
//!
//! - while some partitions are held nowhere, the operator runs the lineage
//!   and, for each partition it computes in full, keeps the batches in the
//!   [`BlockStore`] of the process that computed them (an executor, or the
//!   embedded process); partitions already held are read instead;
//! - once every partition is held, the operator is a leaf: the lineage is not
//!   planned at all, and each task reads its partition from its own store or
//!   fetches it from the holder over Arrow Flight ([`flight`]).
//!
//! Which partitions are held, and where, is asked of the planning process's
//! [`BlockDirectory`] when the plan is made: the scheduler asks every
//! executor; an embedded process asks its own store. An executor that died
//! answers nothing, so the partitions it held are computed again from the
//! lineage by the next action: the recovery Spark users know.

pub mod directory;
pub mod exec;
pub mod flight;
pub mod provider;
pub mod store;

use std::fmt;
use std::str::FromStr;

pub use directory::{
    BlockDirectory, CacheStorage, ExecutorBlockDirectory, LocalBlockDirectory, block_directory,
    set_block_directory,
};
pub use ember_proto::{CacheReport, CachedBlock};
pub use exec::{CacheExec, CacheOperatorCodec};
pub use provider::{CACHED_DATASET, CachedDataset};
pub use store::{BlockStore, valid_cache_id};

/// Where a cached dataset's partitions are kept (Spark's storage levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StorageLevel {
    /// In memory; a partition that does not fit the store's memory budget is
    /// not kept, and is computed again when next needed.
    Memory,
    /// In memory, written to the work dir when the memory budget is full
    /// (what `cache()` uses).
    #[default]
    MemoryAndDisk,
    /// As Arrow IPC files in the work dir only.
    Disk,
}

impl StorageLevel {
    /// The level's name on the wire and in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageLevel::Memory => "memory",
            StorageLevel::MemoryAndDisk => "memory_and_disk",
            StorageLevel::Disk => "disk",
        }
    }
}

impl fmt::Display for StorageLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A storage level name that is not one of Ember's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown storage level `{0}`: expected memory, memory_and_disk or disk")]
pub struct UnknownStorageLevel(pub String);

impl FromStr for StorageLevel {
    type Err = UnknownStorageLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "memory" | "memory_only" => Ok(StorageLevel::Memory),
            "memory_and_disk" => Ok(StorageLevel::MemoryAndDisk),
            "disk" | "disk_only" => Ok(StorageLevel::Disk),
            _ => Err(UnknownStorageLevel(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
