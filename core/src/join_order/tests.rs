use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::config::session_config;
use crate::test_support::{
    ember_context, int64, memory_table, physical_plan, printed_count_and_total, printed_result,
    shown,
};

const FACT_ROWS: i64 = 10_000;
const DIM_ROWS: i64 = 1_000;
const GROUPS: i64 = 10;

/// A session with Ember's state, `ember.join_reordering` as `reorder`, over
/// `facts` (d = row % 1000, v = row), `dims` (d = 0..1000, g = d % 10,
/// h = d % 7) and `groups` (g = 0..10, name = "n" and g).
fn context(reorder: bool) -> SessionContext {
    let mut config = session_config();
    config
        .options_mut()
        .set("ember.join_reordering", &reorder.to_string())
        .unwrap();
    let ctx = ember_context(config);
    let facts = memory_table(vec![
        ("d", int64((0..FACT_ROWS).map(|i| i % DIM_ROWS))),
        ("v", int64(0..FACT_ROWS)),
    ]);
    let dims = memory_table(vec![
        ("d", int64(0..DIM_ROWS)),
        ("g", int64((0..DIM_ROWS).map(|d| d % GROUPS))),
        ("h", int64((0..DIM_ROWS).map(|d| d % 7))),
    ]);
    let names: Vec<String> = (0..GROUPS).map(|g| format!("n{g}")).collect();
    let groups = memory_table(vec![
        ("g", int64(0..GROUPS)),
        ("name", Arc::new(StringArray::from(names)) as ArrayRef),
    ]);
    ctx.register_table("facts", facts).unwrap();
    ctx.register_table("dims", dims).unwrap();
    ctx.register_table("groups", groups).unwrap();
    ctx
}

/// The rows all the hash joins of `plan` produced.
fn join_output_rows(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = Some(plan)
        .filter(|node| node.name() == "HashJoinExec")
        .and_then(|join| join.metrics())
        .and_then(|metrics| metrics.output_rows())
        .unwrap_or(0);
    own + plan
        .children()
        .into_iter()
        .map(join_output_rows)
        .sum::<usize>()
}

/// The answer of `plan` and the rows its joins produced.
async fn run(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> (String, usize) {
    let answer = printed_result(ctx, Arc::clone(&plan)).await;
    (answer, join_output_rows(&plan))
}

/// The line numbers, in the indented plan, of the joins on `key`.
fn join_lines(shown: &str, key: &str) -> Vec<usize> {
    shown
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("HashJoinExec") && line.contains(&format!("({key}@")))
        .map(|(at, _)| at)
        .collect()
}

/// Written fact first, the chain's cheapest join (a dimension with its one
/// selected group) comes last; reordered, it comes first, the answer stays,
/// and the joins make fewer rows.
#[tokio::test]
async fn a_filtered_dimension_joins_before_the_facts() {
    let sql = "SELECT count(*) AS n, sum(f.v) AS total FROM facts f, dims d, groups g \
               WHERE f.d = d.d AND d.g = g.g AND g.name = 'n3'";
    let rows: Vec<i64> = (0..FACT_ROWS)
        .filter(|i| (i % DIM_ROWS) % GROUPS == 3)
        .collect();
    let want = printed_count_and_total(rows.len(), rows.iter().sum());

    let written = context(false);
    let written_plan = physical_plan(&written, sql).await;
    let (answer, written_rows) = run(&written, Arc::clone(&written_plan)).await;
    assert_eq!(answer, want);

    let reordered = context(true);
    let reordered_plan = physical_plan(&reordered, sql).await;
    let shown = shown(&reordered_plan);
    let (answer, reordered_rows) = run(&reordered, reordered_plan).await;
    assert_eq!(answer, want);

    // The join on the groups' key sits below (is printed after) the join on
    // the dimension's key.
    let (on_groups, on_dims) = (join_lines(&shown, "g"), join_lines(&shown, "d"));
    assert_eq!((on_groups.len(), on_dims.len()), (1, 1), "{shown}");
    assert!(on_groups[0] > on_dims[0], "{shown}");
    assert!(
        reordered_rows < written_rows,
        "joins made {reordered_rows} rows reordered, {written_rows} as written"
    );
}

/// A filter over two inputs (two copies of one table, as TPC-H's Q7 reads
/// `nation` twice) is applied where both have joined, and the answer is
/// the written order's.
#[tokio::test]
async fn a_filter_over_two_inputs_survives_the_reordering() {
    let sql = "SELECT count(*) AS n, sum(f.v) AS total \
               FROM facts f, dims d, groups g1, groups g2 \
               WHERE f.d = d.d AND d.g = g1.g AND d.h = g2.g \
               AND ((g1.name = 'n3' AND g2.name = 'n4') OR (g1.name = 'n4' AND g2.name = 'n3'))";
    let rows: Vec<i64> = (0..FACT_ROWS)
        .filter(|i| {
            let d = i % DIM_ROWS;
            let (g, h) = (d % GROUPS, d % 7);
            (g == 3 && h == 4) || (g == 4 && h == 3)
        })
        .collect();
    let want = printed_count_and_total(rows.len(), rows.iter().sum());
    for reorder in [false, true] {
        let ctx = context(reorder);
        let plan = physical_plan(&ctx, sql).await;
        let shown = shown(&plan);
        let (answer, _) = run(&ctx, plan).await;
        assert_eq!(answer, want, "join_reordering={reorder}:\n{shown}");
    }
    let shown = shown(&physical_plan(&context(true), sql).await);
    let (on_groups, on_dims) = (join_lines(&shown, "g"), join_lines(&shown, "d"));
    assert!(
        on_groups.iter().all(|&line| line > on_dims[0]),
        "the groups join the dimension before the facts do:\n{shown}"
    );
}

/// A chain already in a good order keeps its plan.
#[tokio::test]
async fn a_good_written_order_is_kept() {
    let sql = "SELECT count(*) AS n, sum(f.v) AS total \
               FROM groups g JOIN dims d ON d.g = g.g JOIN facts f ON f.d = d.d \
               WHERE g.name = 'n3'";
    let off = shown(&physical_plan(&context(false), sql).await);
    let on = shown(&physical_plan(&context(true), sql).await);
    assert_eq!(on, off);
}

/// An outer join ends a chain: a plan whose joins are not all inner keeps
/// its order, and its answer.
#[tokio::test]
async fn an_outer_join_ends_the_chain() {
    let sql = "SELECT count(*) AS n, sum(f.v) AS total \
               FROM facts f LEFT JOIN dims d ON f.d = d.d AND d.h = 1 \
               JOIN groups g ON f.d % 10 = g.g WHERE g.name = 'n3'";
    let rows: Vec<i64> = (0..FACT_ROWS).filter(|i| i % 10 == 3).collect();
    let want = printed_count_and_total(rows.len(), rows.iter().sum());
    let off = physical_plan(&context(false), sql).await;
    let ctx = context(true);
    let on = physical_plan(&ctx, sql).await;
    assert_eq!(shown(&on), shown(&off));
    assert_eq!(run(&ctx, on).await.0, want);
}
