//! The block store, and cached datasets in one process: the first full read
//! keeps every partition, later reads compute nothing, and the answers are
//! the lineage's exact answers.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::SessionContext;
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
};

use super::*;
use crate::EmberLogicalCodec;
use crate::config::session_config;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]))
}

fn batch(values: &[Option<i64>]) -> RecordBatch {
    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
}

fn values(batches: &[RecordBatch]) -> Vec<Option<i64>> {
    let mut out: Vec<Option<i64>> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            column.iter().collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn storage_levels_parse_and_print() {
    for level in [
        StorageLevel::Memory,
        StorageLevel::MemoryAndDisk,
        StorageLevel::Disk,
    ] {
        assert_eq!(level.as_str().parse::<StorageLevel>(), Ok(level));
    }
    assert_eq!("DISK_ONLY".parse::<StorageLevel>(), Ok(StorageLevel::Disk));
    let err = "tape".parse::<StorageLevel>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown storage level `tape`: expected memory, memory_and_disk or disk"
    );
}

#[test]
fn the_store_keeps_partitions_in_memory_or_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(&[Some(1), None, Some(3)]);
    let size = one.get_array_memory_size();
    // Room for one partition in memory.
    let store = BlockStore::new(dir.path(), size + size / 2);

    assert!(
        store
            .put(
                "c",
                0,
                3,
                StorageLevel::Memory,
                &schema(),
                vec![one.clone()]
            )
            .unwrap()
    );
    // Memory only, over budget: not kept.
    assert!(
        !store
            .put(
                "c",
                1,
                3,
                StorageLevel::Memory,
                &schema(),
                vec![one.clone()]
            )
            .unwrap()
    );
    // Memory and disk, over budget: written to disk.
    assert!(
        store
            .put(
                "c",
                1,
                3,
                StorageLevel::MemoryAndDisk,
                &schema(),
                vec![one.clone()]
            )
            .unwrap()
    );
    assert!(
        store
            .put(
                "c",
                2,
                3,
                StorageLevel::Disk,
                &schema(),
                vec![batch(&[Some(7)])]
            )
            .unwrap()
    );

    assert_eq!(
        values(&store.read("c", 0, 3).unwrap().unwrap()),
        [None, Some(1), Some(3)]
    );
    assert_eq!(
        values(&store.read("c", 1, 3).unwrap().unwrap()),
        [None, Some(1), Some(3)]
    );
    assert_eq!(values(&store.read("c", 2, 3).unwrap().unwrap()), [Some(7)]);
    // Another partition count is another plan: nothing found.
    assert!(store.read("c", 0, 4).unwrap().is_none());
    assert!(store.read("other", 0, 3).unwrap().is_none());

    let report = store.report("c", "h:1");
    let media: Vec<_> = report
        .blocks
        .iter()
        .map(|b| (b.partition, b.medium.as_str(), b.rows))
        .collect();
    assert_eq!(media, [(0, "memory", 3), (1, "disk", 3), (2, "disk", 1)]);
    assert_eq!(report.partitions_computed, 3);
    assert!(report.blocks.iter().all(|b| b.endpoint == "h:1"));
    assert!(dir.path().join("c").read_dir().unwrap().count() == 2);

    // Ids name directories: nothing that could leave the store's is taken.
    for bad in ["..", "../c", "a/b", "", "x y"] {
        assert_eq!(store.drop_cache(bad), 0, "{bad}");
        assert!(
            store
                .put(bad, 0, 1, StorageLevel::Disk, &schema(), vec![])
                .is_err(),
            "{bad}"
        );
    }
    assert!(dir.path().join("c").exists());
    assert_eq!(store.drop_cache("c"), 3);
    assert_eq!(store.memory_used(), 0);
    assert!(!dir.path().join("c").exists());
    assert_eq!(store.report("c", "").blocks.len(), 0);
}

#[test]
fn storage_is_complete_only_with_every_partition() {
    let block = |partition, partitions| ember_proto::CachedBlock {
        partition,
        partitions,
        ..Default::default()
    };
    let report = |blocks| ember_proto::CacheReport {
        blocks,
        partitions_computed: 1,
        ..Default::default()
    };
    let storage =
        CacheStorage::from_reports([report(vec![block(0, 2)]), report(vec![block(1, 2)])]);
    assert_eq!(storage.complete_partitions(), Some(2));
    assert_eq!(storage.partitions_computed, 2);
    let partial = CacheStorage::from_reports([report(vec![block(1, 2)])]);
    assert_eq!(partial.complete_partitions(), None);
    assert_eq!(CacheStorage::default().complete_partitions(), None);
}

/// Three partitions of numbers, with NULLs, as a table.
fn numbers() -> Arc<MemTable> {
    let partitions = vec![
        vec![batch(&[Some(1), Some(2), None])],
        vec![batch(&[Some(4)]), batch(&[Some(5), Some(6)])],
        vec![batch(&[Some(-7)])],
    ];
    Arc::new(MemTable::try_new(schema(), partitions).unwrap())
}

#[tokio::test]
async fn a_cached_dataset_is_computed_once_and_then_read() {
    let ctx = SessionContext::new_with_config(session_config().with_target_partitions(3));
    ctx.register_table("numbers", numbers()).unwrap();
    let lineage = ctx
        .sql("SELECT x * 10 AS x FROM numbers WHERE x IS NULL OR x > 1")
        .await
        .unwrap()
        .into_unoptimized_plan();
    let expected = values(
        &ctx.execute_logical_plan(lineage.clone())
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    );
    assert_eq!(expected, [None, Some(20), Some(40), Some(50), Some(60)]);

    let cached = Arc::new(CachedDataset::new(lineage, StorageLevel::MemoryAndDisk));
    let id = cached.cache_id().to_string();
    ctx.register_table("cached", cached).unwrap();
    let storage = || async { block_directory().storage(&id).await.unwrap() };

    let plan = ctx
        .sql("SELECT x FROM cached")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    assert!(
        displayable(plan.as_ref())
            .indent(true)
            .to_string()
            .contains("computing the rest")
    );
    let first = values(&collect(plan, ctx.task_ctx()).await.unwrap());
    assert_eq!(first, expected);
    let after_first = storage().await;
    assert_eq!(
        after_first.complete_partitions(),
        Some(after_first.blocks.len())
    );
    assert_eq!(
        after_first.partitions_computed,
        after_first.blocks.len() as u64
    );
    assert_eq!(after_first.rows(), expected.len() as u64);

    // All held: the lineage is not planned, nothing is computed again.
    let plan = ctx
        .sql("SELECT x FROM cached")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let shown = displayable(plan.as_ref()).indent(true).to_string();
    assert!(!shown.contains("computing the rest"), "{shown}");
    assert!(!shown.contains("FilterExec"), "{shown}");
    // The one source left is the partition tokens.
    assert_eq!(shown.matches("DataSourceExec").count(), 1, "{shown}");
    let second = values(&collect(plan, ctx.task_ctx()).await.unwrap());
    assert_eq!(second, expected);
    let sum = ctx
        .sql("SELECT sum(x), count(x), count(*) FROM cached")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let shown = datafusion::arrow::util::pretty::pretty_format_batches(&sum)
        .unwrap()
        .to_string();
    // 20 + 40 + 50 + 60, four values, five rows (one NULL).
    assert_eq!(
        shown.lines().nth(3).unwrap(),
        "| 170           | 4               | 5        |",
        "{shown}"
    );
    let after = storage().await;
    assert_eq!(after.partitions_computed, after_first.partitions_computed);
    assert_eq!(
        after.partitions_read_local,
        2 * after_first.blocks.len() as u64
    );

    assert_eq!(
        block_directory().drop_cache(&id).await.unwrap(),
        after_first.blocks.len()
    );
    assert_eq!(storage().await.blocks.len(), 0);
}

#[tokio::test]
async fn a_cached_dataset_travels_with_its_lineage() {
    let ctx = SessionContext::new_with_config(session_config());
    ctx.register_table("numbers", numbers()).unwrap();
    let lineage = ctx
        .sql("SELECT x FROM numbers WHERE x > 1")
        .await
        .unwrap()
        .into_unoptimized_plan();
    let cached = Arc::new(CachedDataset::new(lineage, StorageLevel::Disk));
    let id = cached.cache_id().to_string();
    let plan = ctx.read_table(cached).unwrap().into_unoptimized_plan();
    let codec = EmberLogicalCodec::default();
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &codec).unwrap();
    let decoded =
        logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
    let shown = format!("{decoded:?}");
    assert!(shown.contains("TableScan"), "{shown}");
    let batches = ctx
        .execute_logical_plan(decoded)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(values(&batches), [Some(2), Some(4), Some(5), Some(6)]);
    // The decoded table kept the id: its partitions are the original's.
    assert!(
        block_directory()
            .storage(&id)
            .await
            .unwrap()
            .complete_partitions()
            .is_some()
    );
    block_directory().drop_cache(&id).await.unwrap();
}

#[tokio::test]
async fn the_cache_operator_travels_in_both_forms() {
    use crate::EmberPhysicalCodec;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;

    let ctx = SessionContext::new();
    let codec = EmberPhysicalCodec::default();
    let block = ember_proto::CachedBlock {
        partition: 0,
        partitions: 1,
        endpoint: "h:1".into(),
        ..Default::default()
    };
    let forms: Vec<Arc<dyn ExecutionPlan>> = vec![
        Arc::new(
            CacheExec::reading("r", StorageLevel::Memory, schema(), 1, vec![block.clone()])
                .unwrap(),
        ),
        Arc::new(
            CacheExec::materializing(
                "m",
                StorageLevel::Disk,
                Arc::new(EmptyExec::new(schema())),
                vec![block],
            )
            .unwrap(),
        ),
    ];
    for plan in forms {
        let node = PhysicalPlanNode::try_from_physical_plan(Arc::clone(&plan), &codec).unwrap();
        let back = node
            .try_into_physical_plan(&ctx.task_ctx(), &codec)
            .unwrap();
        assert_eq!(
            displayable(back.as_ref()).indent(true).to_string(),
            displayable(plan.as_ref()).indent(true).to_string()
        );
        assert_eq!(back.schema(), schema());
    }
}
