//! `cache`, `persist`, `unpersist` and `map_partitions`, embedded and on a
//! real two-executor cluster: answers against plain Rust, and the
//! executors' own counters to show that a cached dataset is computed once,
//! read afterwards, and computed again from its lineage where an executor
//! that held partitions died.

use std::collections::BTreeMap;
use std::time::Duration;

use ember::EmberContext;
use ember::dataset::{CacheStorage, Dataset, StorageLevel, col, lit, sum};
use ember_tests::{http_get, start_cluster};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    id: i64,
    sensor: i64,
    value: i64,
}

/// 2000 readings of 10 sensors, with values that some filters drop.
fn readings() -> Vec<Reading> {
    (0..2000)
        .map(|id| Reading {
            id,
            sensor: id % 10,
            value: (id * 7919) % 1000 - 100,
        })
        .collect()
}

/// The dataset under test: readings with a positive value, doubled.
pub(crate) fn positive_doubled(ctx: &EmberContext) -> Dataset {
    ctx.parallelize_rows(&readings(), 4)
        .unwrap()
        .filter(col("value").gt(lit(0i64)))
        .unwrap()
        .with_column("value", col("value") * lit(2i64))
        .unwrap()
}

/// The same computation in plain Rust: (rows, sum of value per sensor).
pub(crate) fn expected() -> (usize, BTreeMap<i64, i64>) {
    let mut per_sensor = BTreeMap::new();
    let mut rows = 0;
    for r in readings().into_iter().filter(|r| r.value > 0) {
        rows += 1;
        *per_sensor.entry(r.sensor).or_insert(0) += r.value * 2;
    }
    (rows, per_sensor)
}

pub(crate) async fn per_sensor(data: &Dataset) -> BTreeMap<i64, i64> {
    #[derive(Deserialize)]
    struct Sum {
        sensor: i64,
        total: i64,
    }
    data.group_by(vec![col("sensor")])
        .agg(vec![sum(col("value")).alias("total")])
        .unwrap()
        .collect_as::<Sum>()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.sensor, s.total))
        .collect()
}

pub(crate) fn reads(storage: &CacheStorage) -> u64 {
    storage.partitions_read_local + storage.partitions_sent
}

fn job_count(scheduler: Option<&str>) -> usize {
    let Some(scheduler) = scheduler else { return 0 };
    let (status, body) = http_get(scheduler, "/api/jobs");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .unwrap()
        .len()
}

/// Cache, read, unpersist, persist on disk and map_partitions on `ctx`.
async fn exercise_cache(ctx: &EmberContext, scheduler: Option<&str>) {
    let (rows, sums) = expected();

    // cache() is lazy: it submits nothing and keeps nothing.
    let jobs = job_count(scheduler);
    let cached = positive_doubled(ctx).cache().unwrap();
    assert_eq!(cached.storage_level(), Some(StorageLevel::MemoryAndDisk));
    assert_eq!(job_count(scheduler), jobs);
    assert_eq!(cached.storage().await.unwrap(), CacheStorage::default());

    // The first action computes every partition and keeps it.
    assert_eq!(cached.count().await.unwrap(), rows);
    let first = cached.storage().await.unwrap();
    let partitions = first
        .complete_partitions()
        .unwrap_or_else(|| panic!("not every partition is held: {first:?}"));
    assert_eq!(first.partitions_computed, partitions as u64);
    assert_eq!(reads(&first), 0);
    assert_eq!(first.rows(), rows as u64);
    assert!(
        first.blocks.iter().all(|b| b.medium == "memory"),
        "{first:?}"
    );

    // Later actions read the kept partitions: nothing is computed again.
    assert_eq!(per_sensor(&cached).await, sums);
    assert_eq!(cached.count().await.unwrap(), rows);
    let second = cached.storage().await.unwrap();
    assert_eq!(second.partitions_computed, partitions as u64, "{second:?}");
    assert_eq!(reads(&second), 2 * partitions as u64, "{second:?}");
    let plan = cached.explain().await.unwrap();
    assert!(plan.contains("CacheExec"), "{plan}");

    // unpersist frees every partition and hands back the lineage.
    let plain = cached.unpersist().await.unwrap();
    assert_eq!(plain.storage_level(), None);
    assert_eq!(cached.storage().await.unwrap().blocks, vec![]);
    assert_eq!(per_sensor(&plain).await, sums);
    let err = plain.storage().await.unwrap_err().to_string();
    assert!(err.contains("this dataset is not cached"), "{err}");

    // persist(Disk) keeps files; a Memory-only cache keeps batches.
    for (level, medium) in [
        (StorageLevel::Disk, "disk"),
        (StorageLevel::Memory, "memory"),
    ] {
        let kept = positive_doubled(ctx).persist(level).unwrap();
        assert_eq!(per_sensor(&kept).await, sums);
        assert_eq!(per_sensor(&kept).await, sums);
        let storage = kept.storage().await.unwrap();
        assert_eq!(
            storage.complete_partitions(),
            Some(partitions),
            "{level}: {storage:?}"
        );
        assert_eq!(
            storage.partitions_computed, partitions as u64,
            "{level}: {storage:?}"
        );
        assert_eq!(reads(&storage), partitions as u64, "{level}: {storage:?}");
        assert!(
            storage.blocks.iter().all(|b| b.medium == medium),
            "{level}: {storage:?}"
        );
        kept.unpersist().await.unwrap();
    }

    // A LIMIT that stops reading early keeps no partial partition.
    let limited = positive_doubled(ctx).cache().unwrap();
    let taken: usize = limited
        .take(3)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(taken, 3);
    let storage = limited.storage().await.unwrap();
    assert!(storage.blocks.iter().all(|b| b.rows > 0));
    assert_eq!(storage.complete_partitions(), None, "{storage:?}");
    limited.unpersist().await.unwrap();

    // map_partitions: one row per partition with its size.
    #[derive(Deserialize)]
    struct Size {
        rows: i64,
    }
    let mut sizes: Vec<i64> = ctx
        .parallelize_rows(&readings(), 4)
        .unwrap()
        .map_partitions("partition_size")
        .unwrap()
        .collect_as::<Size>()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.rows)
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [500, 500, 500, 500]);
    let err = positive_doubled(ctx)
        .map_partitions("no_such_function")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no partition function named `no_such_function`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_embedded() {
    let ctx = EmberContext::from_master("local").await.unwrap();
    exercise_cache(&ctx, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_on_a_two_executor_cluster() {
    let cluster = start_cluster(2).await;
    let scheduler = cluster.address().to_string();
    let ctx = EmberContext::from_master(&format!("df://{scheduler}"))
        .await
        .unwrap();
    exercise_cache(&ctx, Some(&scheduler)).await;
    // The storage route takes cache ids only: they name directories.
    let (status, body) = http_get(&scheduler, "/api/ember/cache/a%20b");
    assert_eq!(status, 400, "{body}");
}

/// `text` without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The Flight endpoint (host:port) each executor logged, by start order.
fn executor_endpoints(log_dir: &std::path::Path, executors: usize) -> Vec<String> {
    (0..executors)
        .map(|n| {
            let log = ["stderr.log", "log"]
                .iter()
                .map(|ext| {
                    std::fs::read_to_string(log_dir.join(format!("executor-{n}.{ext}")))
                        .unwrap_or_default()
                })
                .collect::<String>();
            let line = log
                .lines()
                .find(|l| l.contains("Arrow Flight service listening"))
                .unwrap_or_else(|| panic!("executor {n} logged no Flight address:\n{log}"));
            let line = strip_ansi(line);
            let address = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("address="))
                .unwrap_or_else(|| panic!("no address in {line}"));
            address.trim_matches('"').to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_lost_with_an_executor_are_computed_again_from_lineage() {
    let cluster = start_cluster(2).await;
    let scheduler = cluster.address().to_string();
    let ctx = EmberContext::from_master(&format!("df://{scheduler}"))
        .await
        .unwrap();
    let (rows, sums) = expected();
    let cached = positive_doubled(&ctx).cache().unwrap();
    assert_eq!(cached.count().await.unwrap(), rows);
    let before = cached.storage().await.unwrap();
    assert_eq!(before.complete_partitions(), Some(4), "{before:?}");

    // Kill the executor holding the most partitions.
    let endpoints = executor_endpoints(cluster.log_dir(), 2);
    let held = |endpoint: &str| {
        before
            .blocks
            .iter()
            .filter(|b| b.endpoint == endpoint)
            .count()
    };
    let victim = if held(&endpoints[0]) >= held(&endpoints[1]) {
        0
    } else {
        1
    };
    let survivor = &endpoints[1 - victim];
    let lost = held(&endpoints[victim]) as u64;
    assert!(lost > 0, "{before:?} {endpoints:?}");
    let pid = cluster.executor_pids()[victim];
    // SAFETY: plain kill(2) on a child process of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let remaining = cached.storage().await.unwrap();
    assert_eq!(remaining.blocks.len() as u64, 4 - lost, "{remaining:?}");
    assert!(remaining.blocks.iter().all(|b| &b.endpoint == survivor));

    // The next action recomputes only the lost partitions, on the survivor.
    assert_eq!(per_sensor(&cached).await, sums);
    let after = cached.storage().await.unwrap();
    assert_eq!(after.complete_partitions(), Some(4), "{after:?}");
    assert!(
        after.blocks.iter().all(|b| &b.endpoint == survivor),
        "{after:?}"
    );
    assert_eq!(
        after.partitions_computed,
        remaining.partitions_computed + lost,
        "{after:?}"
    );
    // And the one after that computes nothing.
    assert_eq!(cached.count().await.unwrap(), rows);
    let settled = cached.storage().await.unwrap();
    assert_eq!(settled.partitions_computed, after.partitions_computed);
}
