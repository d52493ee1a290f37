//! The GPU placement: which plans are rewritten, and that the rewritten
//! plan gives the CPU plan's exact answer, through the CPU fallback here
//! and on the device where a GPU is present.

use std::sync::Arc;

use datafusion::arrow::array::{Date32Array, Decimal128Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::SessionContext;

use super::{GpuPlacementRule, process_gpu, rewrite_for_gpu};
use crate::config::session_config;

/// lineitem's Q6 columns, two partitions of three batches, with NULLs.
fn lineitem() -> MemTable {
    let decimal = |name: &str| Field::new(name, DataType::Decimal128(15, 2), true);
    let schema = Arc::new(Schema::new(vec![
        decimal("l_quantity"),
        decimal("l_extendedprice"),
        decimal("l_discount"),
        Field::new("l_shipdate", DataType::Date32, true),
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
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(quantity),
                Arc::new(price),
                Arc::new(discount),
                Arc::new(shipdate),
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

async fn context() -> SessionContext {
    // 16 partitions, as on a 16-core machine: the plan then repartitions.
    let ctx = SessionContext::new_with_config(session_config().with_target_partitions(16));
    ctx.register_table("lineitem", Arc::new(lineitem()))
        .unwrap();
    ctx
}

async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

async fn run(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> String {
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

fn shows_gpu_operator(plan: &Arc<dyn ExecutionPlan>) -> bool {
    displayable(plan.as_ref())
        .indent(true)
        .to_string()
        .contains("GpuFusedAggregateExec")
}

#[tokio::test]
async fn q6_shape_is_rewritten_and_the_fallback_gives_the_cpu_answer() {
    let ctx = context().await;
    let cpu = plan(&ctx, Q6).await;
    assert!(!shows_gpu_operator(&cpu));
    let expected = run(&ctx, cpu).await;
    assert!(expected.contains("revenue"), "{expected}");

    // No device: the operator is placed and runs its CPU fallback. (A
    // fresh plan: some operators cannot run twice.)
    let rewritten = rewrite_for_gpu(plan(&ctx, Q6).await, None, 0).unwrap();
    assert!(
        shows_gpu_operator(&rewritten),
        "{}",
        displayable(rewritten.as_ref()).indent(true)
    );
    assert_eq!(run(&ctx, rewritten).await, expected);
}

#[tokio::test]
async fn unsupported_shapes_stay_on_the_cpu() {
    let ctx = context().await;
    for sql in [
        "SELECT l_discount, sum(l_quantity) FROM lineitem GROUP BY l_discount",
        "SELECT avg(l_quantity) FROM lineitem",
        "SELECT sum(l_quantity) FILTER (WHERE l_discount > 0.05) FROM lineitem",
    ] {
        let cpu = plan(&ctx, sql).await;
        let rewritten = rewrite_for_gpu(cpu, None, 0).unwrap();
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
    let cpu = plan(&ctx, Q6).await;
    let options = ctx.copied_config();
    let err = datafusion::physical_optimizer::PhysicalOptimizerRule::optimize(
        &GpuPlacementRule,
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
    let expected = run(&ctx, plan(&ctx, Q6).await).await;
    let on_gpu = rewrite_for_gpu(plan(&ctx, Q6).await, Some(device), 0).unwrap();
    assert_eq!(run(&ctx, Arc::clone(&on_gpu)).await, expected);
    let text =
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(on_gpu.as_ref())
            .indent(true)
            .to_string();
    assert!(text.contains("gpu_rows="), "{text}");
    println!("{text}");
}
