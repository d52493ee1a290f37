//! The GPU placement: which plans are rewritten, and that the rewritten
//! plan gives the CPU plan's exact answer, through the CPU fallback here
//! and on the device where a GPU is present.

use std::sync::Arc;

use datafusion::arrow::array::{
    Date32Array, Decimal128Array, Int32Array, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{ExecutionPlan, displayable};
use datafusion::prelude::SessionContext;

use super::{GpuCachePolicy, process_gpu, rewrite_for_cpu_reference, rewrite_for_gpu};
use crate::config::session_config;
use crate::test_support::{physical_plan, printed_result};

fn no_cache() -> GpuCachePolicy {
    GpuCachePolicy::default()
}

/// lineitem's Q1 and Q6 columns (and an Int32 key), two partitions of
/// three batches, with NULLs.
fn lineitem() -> MemTable {
    let decimal = |name: &str| Field::new(name, DataType::Decimal128(15, 2), true);
    let schema = Arc::new(Schema::new(vec![
        decimal("l_quantity"),
        decimal("l_extendedprice"),
        decimal("l_discount"),
        Field::new("l_shipdate", DataType::Date32, true),
        decimal("l_tax"),
        Field::new("l_returnflag", DataType::Utf8View, true),
        Field::new("l_linestatus", DataType::Utf8, true),
        Field::new("l_suppkey", DataType::Int32, true),
    ]));
    let mut state = 7u64;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut batch = |rows: usize| {
        let column = |f: &mut dyn FnMut() -> i128| {
            Decimal128Array::from_iter((0..rows).map(|_| {
                let v = f();
                (v % 17 != 3).then_some(v)
            }))
            .with_precision_and_scale(15, 2)
            .unwrap()
        };
        let quantity = column(&mut || (1 + next(50)) as i128 * 100);
        let price = column(&mut || 90_000 + next(10_000_000) as i128);
        let discount = column(&mut || next(11) as i128);
        let shipdate: Date32Array = (0..rows)
            .map(|i| (i % 23 != 5).then(|| 8035 + next(2526) as i32))
            .collect();
        let tax = column(&mut || next(9) as i128);
        let flag: StringViewArray = (0..rows)
            .map(|i| (i % 29 != 7).then(|| ["A", "N", "R"][next(3) as usize]))
            .collect();
        let status: StringArray = (0..rows)
            .map(|_| Some(["F", "O"][next(2) as usize]))
            .collect();
        let suppkey: Int32Array = (0..rows)
            .map(|i| (i % 31 != 2).then(|| next(500) as i32 - 100))
            .collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(quantity),
                Arc::new(price),
                Arc::new(discount),
                Arc::new(shipdate),
                Arc::new(tax),
                Arc::new(flag),
                Arc::new(status),
                Arc::new(suppkey),
            ],
        )
        .unwrap()
    };
    let partitions = vec![
        vec![batch(5000), batch(1), batch(3333)],
        vec![batch(0), batch(7777), batch(12)],
    ];
    MemTable::try_new(schema, partitions).unwrap()
}

const Q6: &str = "SELECT sum(l_extendedprice * l_discount) AS revenue, count(*) AS n, \
    min(l_quantity) AS min_q, max(l_extendedprice) AS max_p, max(l_shipdate) AS last \
    FROM lineitem \
    WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01' \
      AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24";

/// TPC-H Q1 (its ORDER BY makes the answer's order exact).
const Q1: &str = "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty, \
    sum(l_extendedprice) AS sum_base_price, \
    sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price, \
    sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge, \
    avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price, \
    avg(l_discount) AS avg_disc, count(*) AS count_order \
    FROM lineitem WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL '90' DAY \
    GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus";

/// Grouped shapes beyond Q1: an integer key with many groups, a date key,
/// MIN/MAX/COUNT per group, an ungrouped AVG, and an aggregate over an
/// aggregate.
const GROUPED: &[&str] = &[
    "SELECT l_suppkey, count(l_discount) AS n, min(l_extendedprice) AS lo, \
     max(l_quantity) AS hi, sum(l_tax) AS t FROM lineitem \
     WHERE l_quantity < 30 GROUP BY l_suppkey ORDER BY l_suppkey",
    "SELECT l_shipdate, l_linestatus, sum(l_quantity * l_tax) AS s FROM lineitem \
     GROUP BY l_shipdate, l_linestatus ORDER BY l_shipdate, l_linestatus",
    "SELECT avg(l_extendedprice) AS a, avg(l_quantity) AS q, count(*) AS n FROM lineitem \
     WHERE l_discount > 0.03",
    // The outer COUNT of DISTINCT's two-step plan reads an aggregate.
    "SELECT count(DISTINCT l_quantity) AS d FROM lineitem",
];

async fn context() -> SessionContext {
    // 16 partitions, as on a 16-core machine: the plan then repartitions.
    let ctx = SessionContext::new_with_config(session_config().with_target_partitions(16));
    ctx.register_table("lineitem", Arc::new(lineitem()))
        .unwrap();
    ctx
}

fn shows_gpu_operator(plan: &Arc<dyn ExecutionPlan>) -> bool {
    displayable(plan.as_ref())
        .indent(true)
        .to_string()
        .contains("GpuAggregateExec")
}

#[tokio::test]
async fn q6_shape_is_rewritten_and_the_fallback_gives_the_cpu_answer() {
    let ctx = context().await;
    let cpu = physical_plan(&ctx, Q6).await;
    assert!(!shows_gpu_operator(&cpu));
    let expected = printed_result(&ctx, cpu).await;
    assert!(expected.contains("revenue"), "{expected}");

    // No device: the operator is placed and runs its CPU fallback. (A
    // fresh plan: some operators cannot run twice.)
    let rewritten = rewrite_for_gpu(physical_plan(&ctx, Q6).await, None, 0, &no_cache()).unwrap();
    assert!(
        shows_gpu_operator(&rewritten),
        "{}",
        displayable(rewritten.as_ref()).indent(true)
    );
    assert_eq!(printed_result(&ctx, rewritten).await, expected);
}

#[tokio::test]
async fn unsupported_shapes_stay_on_the_cpu() {
    let ctx = context().await;
    for sql in [
        "SELECT l_discount, sum(l_quantity) FROM lineitem GROUP BY l_discount",
        "SELECT l_suppkey + 1, sum(l_quantity) FROM lineitem GROUP BY l_suppkey + 1",
        "SELECT median(l_quantity) FROM lineitem",
        "SELECT sum(l_quantity) FILTER (WHERE l_discount > 0.05) FROM lineitem",
    ] {
        let cpu = physical_plan(&ctx, sql).await;
        let rewritten = rewrite_for_gpu(cpu, None, 0, &no_cache()).unwrap();
        assert!(!shows_gpu_operator(&rewritten), "{sql} was rewritten");
    }
}

#[tokio::test]
async fn force_without_a_gpu_is_a_clear_error() {
    if process_gpu().is_some() {
        println!("skipped: this machine has a GPU");
        return;
    }
    let ctx = context().await;
    ctx.sql("SET ember.gpu = 'force'").await.unwrap();
    let cpu = physical_plan(&ctx, Q6).await;
    let options = ctx.copied_config();
    let err = datafusion::physical_optimizer::PhysicalOptimizerRule::optimize(
        &crate::settings_rewrite::SettingsRewrite::GPU_PLACEMENT,
        cpu,
        options.options(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ember.gpu = force, but no GPU: "), "{err}");
}

#[tokio::test]
async fn gpu_answers_equal_the_cpu_plan_where_a_gpu_is_present() {
    let Some(device) = process_gpu() else {
        println!("skipped: no GPU on this machine");
        return;
    };
    let ctx = context().await;
    let expected = printed_result(&ctx, physical_plan(&ctx, Q6).await).await;
    let on_gpu =
        rewrite_for_gpu(physical_plan(&ctx, Q6).await, Some(device), 0, &no_cache()).unwrap();
    assert_eq!(printed_result(&ctx, Arc::clone(&on_gpu)).await, expected);
    let text =
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(on_gpu.as_ref())
            .indent(true)
            .to_string();
    assert!(text.contains("gpu_rows="), "{text}");
    println!("{text}");
}

#[tokio::test]
async fn q1_and_grouped_shapes_are_rewritten_and_give_the_cpu_answer() {
    let ctx = context().await;
    for sql in std::iter::once(&Q1).chain(GROUPED) {
        let expected = printed_result(&ctx, physical_plan(&ctx, sql).await).await;
        // The fallback (no device): the replaced CPU plan per chunk.
        let fallback =
            rewrite_for_gpu(physical_plan(&ctx, sql).await, None, 0, &no_cache()).unwrap();
        assert!(
            shows_gpu_operator(&fallback),
            "{sql}:\n{}",
            displayable(fallback.as_ref()).indent(true)
        );
        assert_eq!(
            printed_result(&ctx, fallback).await,
            expected,
            "{sql}: fallback"
        );
        // The kernels' CPU references: translation, kernel semantics and
        // state output, against DataFusion's own answer.
        let reference = rewrite_for_cpu_reference(physical_plan(&ctx, sql).await).unwrap();
        assert_eq!(
            printed_result(&ctx, reference).await,
            expected,
            "{sql}: reference"
        );
    }
}

#[tokio::test]
async fn q6_through_the_kernel_reference_gives_the_cpu_answer() {
    let ctx = context().await;
    let expected = printed_result(&ctx, physical_plan(&ctx, Q6).await).await;
    let reference = rewrite_for_cpu_reference(physical_plan(&ctx, Q6).await).unwrap();
    assert!(shows_gpu_operator(&reference));
    assert_eq!(printed_result(&ctx, reference).await, expected);
}

#[tokio::test]
async fn grouped_gpu_answers_equal_the_cpu_plan_where_a_gpu_is_present() {
    let Some(device) = process_gpu() else {
        println!("skipped: no GPU on this machine");
        return;
    };
    let ctx = context().await;
    for sql in std::iter::once(&Q1).chain(GROUPED) {
        let expected = printed_result(&ctx, physical_plan(&ctx, sql).await).await;
        let on_gpu = rewrite_for_gpu(
            physical_plan(&ctx, sql).await,
            Some(Arc::clone(&device)),
            0,
            &no_cache(),
        )
        .unwrap();
        assert_eq!(printed_result(&ctx, on_gpu).await, expected, "{sql}");
    }
}

/// The first partial aggregate's placement in `plan`.
fn first_placement(plan: &Arc<dyn ExecutionPlan>) -> Option<super::GpuPlacement> {
    use datafusion::physical_plan::aggregates::AggregateExec;
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>()
        && let Ok(placement) = super::placement(aggregate)
    {
        return Some(placement);
    }
    plan.children().into_iter().find_map(first_placement)
}

async fn rows_of(plan: Arc<dyn ExecutionPlan>, partition: usize, ctx: &SessionContext) -> usize {
    use futures::TryStreamExt;
    let batches: Vec<RecordBatch> = plan
        .execute(partition, ctx.task_ctx())
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    batches.iter().map(RecordBatch::num_rows).sum()
}

#[tokio::test]
async fn a_cache_fill_reads_every_row_of_its_partition_whatever_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new_with_config(session_config().with_target_partitions(4));
    ctx.sql("SET datafusion.execution.parquet.max_row_group_size = 100")
        .await
        .unwrap();
    // Three files of 1000 rows, k ascending, so row groups prune by k.
    for file in 0..3 {
        let path = dir.path().join(format!("part-{file}.parquet"));
        ctx.sql(&format!(
            "COPY (SELECT value AS k, value * 2 AS v FROM generate_series(0, 999)) \
             TO '{}' STORED AS PARQUET",
            path.display()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    }
    let location = dir.path().to_str().unwrap();
    ctx.register_parquet("t", location, Default::default())
        .await
        .unwrap();
    let plan = physical_plan(&ctx, "SELECT sum(v) FROM t WHERE k >= 950").await;
    let placement = first_placement(&plan).expect("the aggregate is placeable");
    let scan = Arc::clone(&placement.scan);

    assert!(super::CachedScan::new(&scan, &GpuCachePolicy::parse("/elsewhere")).is_none());
    let cached = super::CachedScan::new(&scan, &GpuCachePolicy::parse(location))
        .expect("the table's files are covered");
    let partitions = scan.properties().partitioning.partition_count();
    let (mut pruned, mut filled) = (0, 0);
    let mut keys = Vec::new();
    for p in 0..partitions {
        pruned += rows_of(Arc::clone(&scan), p, &ctx).await;
        filled += rows_of(cached.filling_scan(p).unwrap(), 0, &ctx).await;
        keys.push(cached.keys(p, &placement.columns).unwrap());
    }
    // The planned scan skips row groups; the filling scans read them all.
    assert!(pruned < 3000, "the planned scan read {pruned} rows");
    assert_eq!(filled, 3000);
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), partitions, "one identity per partition");
}
