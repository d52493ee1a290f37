use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::SharedSubplanExec;
use crate::config::session_config;
use crate::session::session_state;
use crate::test_support::{
    ember_context, int64, memory_table, physical_plan, printed_result, shown,
};

const ROWS: i64 = 10_000;
const KEYS: i64 = 1_000;

/// `revenue` (Q15's view): the sum of `v` per `d`; the query keeps the
/// keys whose sum is the largest. Each `d` sums ten values, `d + 1000 k`
/// for k in 0..10, so the largest is d = 999 with 10 · 999 + 45,000.
const REPEATED_AGGREGATE: &str = "WITH revenue AS (SELECT d, sum(v) AS total FROM facts GROUP BY d) \
     SELECT d, total FROM revenue WHERE total = (SELECT max(total) FROM revenue)";

const LARGEST_REVENUE: &str = "\
+-----+-------+
| d   | total |
+-----+-------+
| 999 | 54990 |
+-----+-------+";

fn config(reuse: bool) -> SessionConfig {
    let mut config = session_config();
    config
        .options_mut()
        .set("ember.reuse_common_subplans", &reuse.to_string())
        .unwrap();
    config
}

/// Registers `facts` (d = row % 1000, v = row) and `other`, a table of the
/// same shape and sizes whose values are each ten times larger.
fn register_tables(ctx: &SessionContext) {
    let facts = memory_table(vec![
        ("d", int64((0..ROWS).map(|i| i % KEYS))),
        ("v", int64(0..ROWS)),
    ]);
    let other = memory_table(vec![
        ("d", int64((0..ROWS).map(|i| i % KEYS))),
        ("v", int64((0..ROWS).map(|i| i * 10))),
    ]);
    ctx.register_table("facts", facts).unwrap();
    ctx.register_table("other", other).unwrap();
}

fn context(reuse: bool) -> SessionContext {
    let ctx = ember_context(config(reuse));
    register_tables(&ctx);
    ctx
}

/// The shared operators of `plan`, in the order a walk from the root
/// meets them.
fn shared_uses(plan: &Arc<dyn ExecutionPlan>) -> Vec<&SharedSubplanExec> {
    let own = plan.downcast_ref::<SharedSubplanExec>().into_iter();
    own.chain(plan.children().into_iter().flat_map(shared_uses))
        .collect()
}

/// Whether `plan` produced any row when it last ran.
fn ran(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.metrics()
        .and_then(|metrics| metrics.output_rows())
        .is_some_and(|rows| rows > 0)
}

#[tokio::test]
async fn a_repeated_aggregate_runs_once_for_both_uses() {
    let ctx = context(true);
    let plan = physical_plan(&ctx, REPEATED_AGGREGATE).await;
    let uses = shared_uses(&plan);
    assert_eq!(uses.len(), 2, "{}", shown(&plan));
    assert!(Arc::ptr_eq(uses[0].results(), uses[1].results()));
    assert_eq!(uses[0].results().uses(), 2);
    let result = printed_result(&ctx, Arc::clone(&plan)).await;
    assert_eq!(result, LARGEST_REVENUE);
    // One copy of the aggregate ran; the other use read its result.
    let copies_that_ran = shared_uses(&plan)
        .iter()
        .filter(|shared| ran(shared.input()))
        .count();
    assert_eq!(copies_that_ran, 1, "{}", shown(&plan));

    let unshared = context(false);
    let plan = physical_plan(&unshared, REPEATED_AGGREGATE).await;
    assert!(shared_uses(&plan).is_empty(), "{}", shown(&plan));
    assert_eq!(printed_result(&unshared, plan).await, LARGEST_REVENUE);
}

#[tokio::test]
async fn a_plan_run_twice_answers_twice() {
    let ctx = context(true);
    let plan = physical_plan(&ctx, REPEATED_AGGREGATE).await;
    assert_eq!(shared_uses(&plan).len(), 2, "{}", shown(&plan));
    for _ in 0..2 {
        let result = printed_result(&ctx, Arc::clone(&plan)).await;
        assert_eq!(result, LARGEST_REVENUE);
    }
}

#[tokio::test]
async fn three_uses_share_one_run() {
    let ctx = context(true);
    // The per-key sums run from 45,000 (d = 0) to 54,990 (d = 999) and add
    // up to 10 · (0 + … + 999) + 1,000 · 45,000 = 49,995,000.
    let sql = "WITH revenue AS (SELECT d, sum(v) AS total FROM facts GROUP BY d) \
               SELECT (SELECT max(total) FROM revenue) + (SELECT min(total) FROM revenue) \
                    + (SELECT sum(total) FROM revenue) AS s";
    let plan = physical_plan(&ctx, sql).await;
    let uses = shared_uses(&plan);
    assert_eq!(uses.len(), 3, "{}", shown(&plan));
    assert!(uses.iter().all(|shared| shared.results().uses() == 3));
    assert!(uses.iter().all(|shared| shared.results().id() == 0));
    let expected = "\
+----------+
| s        |
+----------+
| 50094990 |
+----------+";
    assert_eq!(printed_result(&ctx, plan).await, expected);
}

#[tokio::test]
async fn equal_plans_over_different_tables_stay_apart() {
    let ctx = context(true);
    // `facts` and `other` have the same schema and sizes and go by the
    // same alias, so the two aggregates read alike in `EXPLAIN`; their
    // data differ.
    let sql = "SELECT (SELECT max(t) FROM (SELECT d, sum(v) AS t FROM facts x GROUP BY d)) AS a, \
                      (SELECT max(t) FROM (SELECT d, sum(v) AS t FROM other x GROUP BY d)) AS b";
    let plan = physical_plan(&ctx, sql).await;
    assert!(shared_uses(&plan).is_empty(), "{}", shown(&plan));
    let expected = "\
+-------+--------+
| a     | b      |
+-------+--------+
| 54990 | 549900 |
+-------+--------+";
    assert_eq!(printed_result(&ctx, plan).await, expected);
}

#[tokio::test]
async fn volatile_subplans_are_computed_for_each_use() {
    let ctx = context(true);
    // Shared, both uses would read the same random values and every key
    // would match; computed for each, none does.
    let sql = "WITH noisy AS (SELECT d, sum(v * random()) AS total FROM facts GROUP BY d) \
               SELECT count(*) FROM noisy a JOIN noisy b ON a.d = b.d AND a.total = b.total";
    let plan = physical_plan(&ctx, sql).await;
    assert!(shared_uses(&plan).is_empty(), "{}", shown(&plan));
    let expected = "\
+----------+
| count(*) |
+----------+
| 0        |
+----------+";
    assert_eq!(printed_result(&ctx, plan).await, expected);
}

#[tokio::test]
async fn a_shared_result_larger_than_the_memory_pool_spills() {
    // 128 KiB: room for the join's 1,000-row build side, not for its
    // 10,000 output rows of two 64-bit columns held for the second use.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(128 * 1024, 1.0)
        .build_arc()
        .unwrap();
    let mut config = config(true);
    config
        .options_mut()
        .set("datafusion.execution.batch_size", "100")
        .unwrap();
    let ctx = SessionContext::new_with_state(session_state(config, runtime).unwrap());
    register_tables(&ctx);
    let keys = memory_table(vec![
        ("d", int64(0..KEYS)),
        ("w", int64((0..KEYS).map(|d| d * 2))),
    ]);
    ctx.register_table("keys", keys).unwrap();
    // Each use: every row of `facts` once, v summing to 0 + … + 9,999 =
    // 49,995,000 and w = 2 · (row % 1000) to 2 · 10 · (0 + … + 999) =
    // 9,990,000.
    let sql = "WITH joined AS (SELECT f.v, k.w FROM facts f JOIN keys k ON f.d = k.d) \
               SELECT count(*) AS n, sum(v) AS t, sum(w) AS s \
               FROM (SELECT * FROM joined UNION ALL SELECT * FROM joined) u";
    let plan = physical_plan(&ctx, sql).await;
    let uses = shared_uses(&plan);
    assert_eq!(uses.len(), 2, "{}", shown(&plan));
    let expected = "\
+-------+----------+----------+
| n     | t        | s        |
+-------+----------+----------+
| 20000 | 99990000 | 19980000 |
+-------+----------+----------+";
    assert_eq!(printed_result(&ctx, Arc::clone(&plan)).await, expected);
    let spilled = shared_uses(&plan)[0]
        .metrics()
        .and_then(|metrics| metrics.spill_count())
        .unwrap_or(0);
    assert!(spilled > 0, "nothing spilled: {}", shown(&plan));
}

#[tokio::test]
async fn a_repeat_inside_two_shared_subplans_runs_once() {
    let ctx = context(true);
    // `a` and `b` are each read twice and each hold `x`: x is computed
    // once, for whichever copy of `a` and of `b` runs. With x's sums
    // 10 d + 45,000 for d in 0..1000, `a` adds one to each and `b` takes
    // one off: 49,996,000 + 54,991 + 49,994,000 + 44,999.
    let sql = "WITH x AS (SELECT d, sum(v) AS total FROM facts GROUP BY d), \
                    a AS (SELECT d, max(total) + 1 AS m FROM x GROUP BY d), \
                    b AS (SELECT d, min(total) - 1 AS n FROM x GROUP BY d) \
               SELECT (SELECT sum(m) FROM a) + (SELECT max(m) FROM a) \
                    + (SELECT sum(n) FROM b) + (SELECT min(n) FROM b) AS s";
    let plan = physical_plan(&ctx, sql).await;
    let uses = shared_uses(&plan);
    let by_uses = |count: usize| {
        uses.iter()
            .filter(|shared| shared.results().uses() == count)
            .count()
    };
    // Two uses of `a`, two of `b`, and in each of their four copies one of
    // `x`, which counts the two copies that run.
    assert_eq!(uses.len(), 8, "{}", shown(&plan));
    assert_eq!(by_uses(2), 8, "{}", shown(&plan));
    let expected = "\
+-----------+
| s         |
+-----------+
| 100089990 |
+-----------+";
    assert_eq!(printed_result(&ctx, Arc::clone(&plan)).await, expected);
    // The uses of `x` are those with no shared subplan inside.
    let copies_of_x_that_ran = shared_uses(&plan)
        .iter()
        .filter(|shared| shared_uses(shared.input()).is_empty() && ran(shared.input()))
        .count();
    assert_eq!(copies_of_x_that_ran, 1, "{}", shown(&plan));
}
