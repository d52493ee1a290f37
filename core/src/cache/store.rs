//! The process's store of cached partitions ("blocks").

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use ember_proto::{CacheReport, CachedBlock};

use super::StorageLevel;

/// Whether `cache_id` can name a cache: letters, digits, `-` and `_`, at
/// most 64 of them. Ids become directory names, and arrive from the network,
/// so nothing else is accepted.
pub fn valid_cache_id(cache_id: &str) -> bool {
    !cache_id.is_empty()
        && cache_id.len() <= 64
        && cache_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The memory budget of a store nobody configured: 1 GiB.
pub const DEFAULT_CACHE_MEMORY: usize = 1024 * 1024 * 1024;

/// Where a kept partition lives.
#[derive(Debug)]
enum Medium {
    /// Batches held in memory.
    Memory(Vec<RecordBatch>),
    /// An Arrow IPC file in the store's directory.
    Disk(PathBuf),
}

/// One kept partition.
#[derive(Debug)]
struct Block {
    partitions: usize,
    rows: u64,
    bytes: u64,
    medium: Medium,
}

/// What a process did with one cache, for reports.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    computed: u64,
    read_local: u64,
    sent: u64,
}

#[derive(Debug, Default)]
struct StoreState {
    blocks: HashMap<(String, usize), Arc<Block>>,
    counters: HashMap<String, Counters>,
    memory_used: usize,
}

/// Cached partitions held by this process, in memory or as files in its
/// work dir, keyed by cache id and partition.
///
/// A partition is found only when the asker expects the same partition count
/// it was stored with, so a lineage planned differently never reads the wrong
/// rows.
#[derive(Debug)]
pub struct BlockStore {
    dir: PathBuf,
    memory_limit: usize,
    state: Mutex<StoreState>,
}

static GLOBAL: OnceLock<BlockStore> = OnceLock::new();

impl BlockStore {
    /// A store that writes its files under `dir` and keeps at most
    /// `memory_limit` bytes of batches in memory.
    pub fn new(dir: impl Into<PathBuf>, memory_limit: usize) -> Self {
        Self {
            dir: dir.into(),
            memory_limit,
            state: Mutex::new(StoreState::default()),
        }
    }

    /// Sets up this process's store; executors call it at start-up with their
    /// work dir. Returns `false` if the store was already in use.
    pub fn configure_global(dir: impl Into<PathBuf>, memory_limit: usize) -> bool {
        GLOBAL.set(BlockStore::new(dir, memory_limit)).is_ok()
    }

    /// This process's store (by default under the system's temp dir, with a
    /// budget of [`DEFAULT_CACHE_MEMORY`]).
    pub fn global() -> &'static BlockStore {
        GLOBAL.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("ember-cache-{}", std::process::id()));
            BlockStore::new(dir, DEFAULT_CACHE_MEMORY)
        })
    }

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        // A panic while holding the lock leaves counters, never torn blocks.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether partition `partition` of `cache_id`, out of `partitions`, is
    /// held here.
    pub fn contains(&self, cache_id: &str, partition: usize, partitions: usize) -> bool {
        self.block(cache_id, partition, partitions).is_some()
    }

    fn block(&self, cache_id: &str, partition: usize, partitions: usize) -> Option<Arc<Block>> {
        self.lock()
            .blocks
            .get(&(cache_id.to_string(), partition))
            .filter(|b| b.partitions == partitions)
            .cloned()
    }

    /// The batches of a held partition, or `None` if it is not held here.
    pub fn read(
        &self,
        cache_id: &str,
        partition: usize,
        partitions: usize,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let Some(block) = self.block(cache_id, partition, partitions) else {
            return Ok(None);
        };
        match &block.medium {
            Medium::Memory(batches) => Ok(Some(batches.clone())),
            Medium::Disk(path) => read_ipc_file(path).map(Some),
        }
    }

    /// Keeps a computed partition at `level`. Returns whether it was kept: a
    /// [`StorageLevel::Memory`] partition over the memory budget is not.
    pub fn put(
        &self,
        cache_id: &str,
        partition: usize,
        partitions: usize,
        level: StorageLevel,
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<bool> {
        if !valid_cache_id(cache_id) {
            return Err(DataFusionError::Execution(format!(
                "`{cache_id}` is not a cache id"
            )));
        }
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let in_memory = level != StorageLevel::Disk && {
            let mut state = self.lock();
            let fits = state.memory_used + size <= self.memory_limit;
            if fits {
                state.memory_used += size;
            }
            fits
        };
        let block = if in_memory {
            Block {
                partitions,
                rows,
                bytes: size as u64,
                medium: Medium::Memory(batches),
            }
        } else if level == StorageLevel::Memory {
            tracing::debug!(
                cache_id,
                partition,
                size,
                "cached partition over the memory budget is not kept"
            );
            return Ok(false);
        } else {
            let path = self
                .dir
                .join(cache_id)
                .join(format!("{partition}-of-{partitions}.arrow"));
            let bytes = write_ipc_file(&path, schema, &batches)?;
            Block {
                partitions,
                rows,
                bytes,
                medium: Medium::Disk(path),
            }
        };
        let mut state = self.lock();
        let old = state
            .blocks
            .insert((cache_id.to_string(), partition), Arc::new(block));
        if let Some(old) = old {
            release(&mut state, &old);
        }
        state
            .counters
            .entry(cache_id.to_string())
            .or_default()
            .computed += 1;
        Ok(true)
    }

    /// Counts a partition served to a task of this process.
    pub fn note_read_local(&self, cache_id: &str) {
        self.lock()
            .counters
            .entry(cache_id.to_string())
            .or_default()
            .read_local += 1;
    }

    /// Counts a partition sent to another process.
    pub fn note_sent(&self, cache_id: &str) {
        self.lock()
            .counters
            .entry(cache_id.to_string())
            .or_default()
            .sent += 1;
    }

    /// What this process holds of `cache_id`; `endpoint` is how others reach
    /// it (empty for the embedded process).
    pub fn report(&self, cache_id: &str, endpoint: &str) -> CacheReport {
        let state = self.lock();
        let mut blocks: Vec<CachedBlock> = state
            .blocks
            .iter()
            .filter(|((id, _), _)| id == cache_id)
            .map(|((_, partition), block)| CachedBlock {
                partition: *partition as u32,
                partitions: block.partitions as u32,
                endpoint: endpoint.to_string(),
                rows: block.rows,
                bytes: block.bytes,
                medium: match block.medium {
                    Medium::Memory(_) => "memory".to_string(),
                    Medium::Disk(_) => "disk".to_string(),
                },
            })
            .collect();
        blocks.sort_by_key(|b| b.partition);
        let counters = state.counters.get(cache_id).copied().unwrap_or_default();
        CacheReport {
            blocks,
            partitions_computed: counters.computed,
            partitions_read_local: counters.read_local,
            partitions_sent: counters.sent,
        }
    }

    /// Frees every partition of `cache_id` and forgets its counters; returns
    /// how many partitions were freed.
    pub fn drop_cache(&self, cache_id: &str) -> usize {
        if !valid_cache_id(cache_id) {
            return 0;
        }
        let mut state = self.lock();
        let keys: Vec<_> = state
            .blocks
            .keys()
            .filter(|(id, _)| id == cache_id)
            .cloned()
            .collect();
        for key in &keys {
            if let Some(block) = state.blocks.remove(key) {
                release(&mut state, &block);
            }
        }
        state.counters.remove(cache_id);
        drop(state);
        let dir = self.dir.join(cache_id);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a cache's files");
        }
        keys.len()
    }

    /// Bytes of batches held in memory.
    pub fn memory_used(&self) -> usize {
        self.lock().memory_used
    }
}

/// Returns a dropped block's memory to the budget and deletes its file.
fn release(state: &mut StoreState, block: &Block) {
    match &block.medium {
        Medium::Memory(_) => {
            state.memory_used = state.memory_used.saturating_sub(block.bytes as usize)
        }
        Medium::Disk(path) => {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!(
        "cannot {what} cached partition {}: {e}",
        path.display()
    ))
}

/// Writes batches to an IPC file through a temporary name, so a reader never
/// sees half a file; returns the file's size.
fn write_ipc_file(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| io_error("create the directory of", path, e))?;
    }
    let partial = path.with_extension("arrow.partial");
    let file = File::create(&partial).map_err(|e| io_error("write", path, e))?;
    let mut writer = FileWriter::try_new(file, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    std::fs::rename(&partial, path).map_err(|e| io_error("write", path, e))?;
    let size = std::fs::metadata(path)
        .map_err(|e| io_error("stat", path, e))?
        .len();
    Ok(size)
}

fn read_ipc_file(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|e| io_error("read", path, e))?;
    let reader = FileReader::try_new(file, None)?;
    reader
        .map(|batch| batch.map_err(DataFusionError::from))
        .collect()
}
