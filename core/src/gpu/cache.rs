//! The device-resident column cache: columns of chosen Parquet tables kept
//! in GPU memory by the process that read them, so that later queries skip
//! Parquet decoding and host-to-device copies.
//!
//! `ember.gpu_cache_tables` names the tables by location (a path or URL
//! prefix, as in `CREATE EXTERNAL TABLE … LOCATION`; `*` for every table).
//! A column is cached per scan partition (its files with their sizes,
//! modification times and byte ranges), so a rewritten file is a miss, and
//! it is filled by the first query that reads it. The cache holds at most
//! half the device's memory; past that, queries upload as usual.
//!
//! Cached columns must be every row of their files, whatever the query's
//! filter: a filling scan therefore reads its file group with no pruning
//! predicate (the GPU kernel applies the whole filter), and reads only its
//! own group, so that no sibling partition can take its files.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::expressions::lit;
use datafusion::physical_plan::ExecutionPlan;
use ember_gpu::{DeviceColumn, GpuDevice};

/// Which tables' columns stay in device memory: the parsed
/// `ember.gpu_cache_tables`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuCachePolicy {
    /// URL prefixes (`file:///…`, `s3://bucket/…`); empty caches nothing.
    prefixes: Vec<String>,
    /// `*`: every table.
    all: bool,
}

impl GpuCachePolicy {
    /// Parses a comma-separated list of table locations (local paths are
    /// made absolute `file://` URLs), or `*`.
    pub fn parse(setting: &str) -> GpuCachePolicy {
        let mut policy = GpuCachePolicy::default();
        for entry in setting.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                policy.all = true;
            } else if entry.contains("://") {
                policy.prefixes.push(entry.to_string());
            } else {
                let path = std::path::absolute(entry)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| entry.to_string());
                policy.prefixes.push(format!("file://{path}"));
            }
        }
        policy
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        !self.all && self.prefixes.is_empty()
    }

    /// Whether the file at `url` belongs to a cached table.
    pub fn covers(&self, url: &str) -> bool {
        self.all || self.prefixes.iter().any(|p| url.starts_with(p.as_str()))
    }
}

/// A Parquet scan whose partitions' columns can be cached.
#[derive(Debug, Clone)]
pub struct CachedScan {
    /// The scan, as planned.
    scan: Arc<DataSourceExec>,
    /// Per partition: the identity of its files (paths, sizes, times,
    /// ranges), the cache key's first half.
    partitions: Vec<String>,
    /// The scan's output column names, the key's second half.
    names: Vec<String>,
}

impl CachedScan {
    /// `scan` as a cached scan, when it reads Parquet files that `policy`
    /// covers, all of them.
    pub fn new(scan: &Arc<dyn ExecutionPlan>, policy: &GpuCachePolicy) -> Option<CachedScan> {
        if policy.is_empty() {
            return None;
        }
        let exec = scan.downcast_ref::<DataSourceExec>()?;
        let (config, _) = exec.downcast_to_file_source::<ParquetSource>()?;
        if config.limit.is_some() {
            return None;
        }
        // `file:///` or `s3://bucket/`, and a location without a leading /.
        let store = config.object_store_url.as_str();
        let mut partitions = Vec::new();
        for group in &config.file_groups {
            let mut identity = String::new();
            for file in group.iter() {
                let url = format!("{store}{}", file.object_meta.location);
                if !policy.covers(&url) {
                    return None;
                }
                let _ = write!(
                    identity,
                    "{url}|{}|{}|{:?};",
                    file.object_meta.size,
                    file.object_meta.last_modified.timestamp_micros(),
                    file.range.as_ref().map(|r| (r.start, r.end))
                );
            }
            partitions.push(identity);
        }
        let names = scan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Some(CachedScan {
            scan: Arc::new(exec.clone()),
            partitions,
            names,
        })
    }

    /// The cache keys of partition `partition`'s `columns`.
    pub fn keys(&self, partition: usize, columns: &[usize]) -> Option<Vec<String>> {
        let files = self.partitions.get(partition)?;
        columns
            .iter()
            .map(|&c| Some(format!("{files}#{}", self.names.get(c)?)))
            .collect()
    }

    /// A scan of partition `partition`'s files only, as its single
    /// partition, without the pruning predicate: every row of the files.
    pub fn filling_scan(
        &self,
        partition: usize,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let (config, source) = self
            .scan
            .downcast_to_file_source::<ParquetSource>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "a cached scan that is not a Parquet scan".to_string(),
                )
            })?;
        let group = config.file_groups.get(partition).cloned().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!(
                "no file group {partition} in a cached scan"
            ))
        })?;
        // A predicate that is always true prunes nothing.
        let unpruned = source.with_predicate(lit(true));
        let config = FileScanConfigBuilder::from(config.clone())
            .with_source(Arc::new(unpruned))
            .with_file_groups(vec![group])
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// Cached device columns by key, within a byte budget.
#[derive(Default)]
struct ColumnCacheState {
    columns: HashMap<String, Arc<DeviceColumn>>,
    bytes: usize,
}

/// This process's device column cache.
fn cache() -> &'static Mutex<ColumnCacheState> {
    static CACHE: OnceLock<Mutex<ColumnCacheState>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The cached columns under `keys`, if every one is cached.
pub fn cached_columns(keys: &[String]) -> Option<Vec<Arc<DeviceColumn>>> {
    let state = cache().lock().ok()?;
    keys.iter().map(|k| state.columns.get(k).cloned()).collect()
}

/// Keeps `columns` under `keys` where the budget (half the device's
/// memory) allows; returns whether they were kept.
pub fn keep_columns(device: &GpuDevice, keys: &[String], columns: &[Arc<DeviceColumn>]) -> bool {
    let Ok(mut state) = cache().lock() else {
        return false;
    };
    let budget = device.memory().map_or(0, |(_, total)| total / 2);
    let new: usize = keys
        .iter()
        .zip(columns)
        .filter(|(k, _)| !state.columns.contains_key(*k))
        .map(|(_, c)| c.device_bytes())
        .sum();
    if state.bytes + new > budget {
        tracing::debug!(
            "GPU cache full ({} of {budget} bytes): {new} more bytes are not kept",
            state.bytes
        );
        return false;
    }
    for (key, column) in keys.iter().zip(columns) {
        if !state.columns.contains_key(key) {
            state.bytes += column.device_bytes();
            state.columns.insert(key.clone(), Arc::clone(column));
        }
    }
    true
}

/// Bytes of device memory the cache holds.
pub fn cached_bytes() -> usize {
    cache().lock().map_or(0, |s| s.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_match_table_locations_by_prefix() {
        let policy = GpuCachePolicy::parse(" /data/tpch/lineitem , s3://bucket/orders/");
        assert!(policy.covers("file:///data/tpch/lineitem/part-0.parquet"));
        assert!(policy.covers("s3://bucket/orders/a.parquet"));
        assert!(!policy.covers("s3://bucket/customer/a.parquet"));
        assert!(GpuCachePolicy::parse("").is_empty());
        assert!(GpuCachePolicy::parse("*").covers("s3://any/thing"));
    }
}
