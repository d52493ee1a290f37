use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::logical_expr::{JoinType, LogicalPlan};
use datafusion::prelude::SessionContext;

use crate::config::session_config;
use crate::test_support::{ember_context, memory_table};

fn ints(values: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

fn strings(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

/// A session with Ember's state over small customer, orders, lineitem,
/// supplier, nation and part tables.
fn context() -> SessionContext {
    let ctx = ember_context(session_config());
    let tables = [
        (
            "customer",
            memory_table(vec![
                ("c_custkey", ints(&[1, 2, 3])),
                ("c_name", strings(&["a", "b", "c"])),
            ]),
        ),
        (
            "orders",
            memory_table(vec![
                ("o_orderkey", ints(&[10, 11, 12, 13])),
                ("o_custkey", ints(&[1, 1, 2, 3])),
            ]),
        ),
        (
            "lineitem",
            memory_table(vec![
                ("l_orderkey", ints(&[10, 10, 11, 12, 13, 13])),
                ("l_suppkey", ints(&[1, 2, 1, 2, 1, 2])),
                ("l_quantity", ints(&[3, 4, 1, 6, 2, 2])),
                ("l_partkey", ints(&[1, 2, 1, 2, 3, 1])),
            ]),
        ),
        (
            "part",
            memory_table(vec![
                ("p_partkey", ints(&[1, 2, 3])),
                ("p_brand", strings(&["X", "Y", "X"])),
            ]),
        ),
        (
            "supplier",
            memory_table(vec![
                ("s_suppkey", ints(&[1, 2])),
                ("s_nationkey", ints(&[7, 8])),
            ]),
        ),
        (
            "nation",
            memory_table(vec![
                ("n_nationkey", ints(&[7, 8])),
                ("n_name", strings(&["CANADA", "PERU"])),
            ]),
        ),
    ];
    for (name, provider) in tables {
        ctx.register_table(name, provider).unwrap();
    }
    ctx
}

/// TPC-H Q18's shape: orders whose lines add up to more than 5.
const BIG_ORDERS: &str = "
    SELECT c_name, o_orderkey, sum(l_quantity) AS quantity
    FROM customer, orders, lineitem
    WHERE o_orderkey IN (
            SELECT l_orderkey FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > 5)
        AND c_custkey = o_custkey
        AND o_orderkey = l_orderkey
    GROUP BY c_name, o_orderkey
    ORDER BY o_orderkey";

const BIG_ORDERS_ANSWER: &str = "\
+--------+------------+----------+
| c_name | o_orderkey | quantity |
+--------+------------+----------+
| a      | 10         | 7        |
| b      | 12         | 6        |
+--------+------------+----------+";

/// The first line of the left input of the plan's semi join, looking
/// through projections.
fn semi_join_input(plan: &LogicalPlan) -> Option<String> {
    if let LogicalPlan::Join(join) = plan
        && join.join_type == JoinType::LeftSemi
    {
        let mut input = join.left.as_ref();
        while let LogicalPlan::Projection(projection) = input {
            input = projection.input.as_ref();
        }
        return Some(input.display().to_string());
    }
    plan.inputs().into_iter().find_map(semi_join_input)
}

async fn optimized(ctx: &SessionContext, sql: &str) -> LogicalPlan {
    ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap()
}

async fn answer(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

#[tokio::test]
async fn an_in_subquery_filters_its_table_before_the_joins_above_it() {
    let ctx = context();
    let plan = optimized(&ctx, BIG_ORDERS).await;
    let input = semi_join_input(&plan).expect("a semi join");
    assert!(
        input.starts_with("TableScan: orders"),
        "the semi join should read orders directly, not {input}:\n{}",
        plan.display_indent()
    );
    assert_eq!(answer(&ctx, BIG_ORDERS).await, BIG_ORDERS_ANSWER);
}

#[tokio::test]
async fn the_setting_turns_the_rule_off_and_the_answer_is_the_same() {
    let ctx = context();
    set_push_down_semi_joins(&ctx, false).await;
    let plan = optimized(&ctx, BIG_ORDERS).await;
    let input = semi_join_input(&plan).expect("a semi join");
    assert!(
        input.starts_with("Inner Join"),
        "with the rule off the semi join stays on top: {input}"
    );
    assert_eq!(answer(&ctx, BIG_ORDERS).await, BIG_ORDERS_ANSWER);
}

#[tokio::test]
async fn a_semi_join_stays_above_a_join_with_a_filtered_table() {
    // TPC-H Q20's and Q21's shape: the join with the filtered nation keeps
    // fewer suppliers than the semi join would probe below it.
    let ctx = context();
    let sql = "
        SELECT s_suppkey FROM supplier, nation
        WHERE s_suppkey IN (SELECT l_suppkey FROM lineitem WHERE l_quantity > 5)
            AND s_nationkey = n_nationkey AND n_name = 'PERU'";
    let plan = optimized(&ctx, sql).await;
    let input = semi_join_input(&plan).expect("a semi join");
    assert!(input.starts_with("Inner Join"), "{input}");
    assert_eq!(
        answer(&ctx, sql).await,
        "\
+-----------+
| s_suppkey |
+-----------+
| 2         |
+-----------+"
    );
}

#[tokio::test]
async fn a_semi_join_whose_condition_uses_both_sides_stays_above_the_join() {
    // EXISTS whose correlation uses columns of both sides of the join
    // below (orders' key, customer's key) cannot move to either side.
    let ctx = context();
    let sql = "
        SELECT c_name, o_orderkey FROM customer, orders
        WHERE c_custkey = o_custkey
            AND EXISTS (SELECT 1 FROM lineitem
                        WHERE l_orderkey = o_orderkey AND l_suppkey <> c_custkey)
        ORDER BY o_orderkey";
    let plan = optimized(&ctx, sql).await;
    let input = semi_join_input(&plan).expect("a semi join");
    assert!(input.starts_with("Inner Join"), "{input}");
    assert_eq!(
        answer(&ctx, sql).await,
        "\
+--------+------------+
| c_name | o_orderkey |
+--------+------------+
| a      | 10         |
| c      | 13         |
+--------+------------+"
    );
}

/// TPC-H Q17's shape: lines of brand X parts with less than their part's
/// average quantity. Part 1's lines have 3, 1 and 2 (average 2), part 3's
/// one line has 2: only part 1's line of 1 is kept.
const SMALL_LINES: &str = "
    SELECT p_partkey, sum(l_quantity) AS total
    FROM lineitem, part
    WHERE p_partkey = l_partkey
        AND p_brand = 'X'
        AND l_quantity < (SELECT avg(l_quantity) FROM lineitem WHERE l_partkey = p_partkey)
    GROUP BY p_partkey";

const SMALL_LINES_ANSWER: &str = "\
+-----------+-------+
| p_partkey | total |
+-----------+-------+
| 1         | 1     |
+-----------+-------+";

/// The first line of the input of every aggregate in the plan.
fn aggregate_inputs(plan: &LogicalPlan) -> Vec<String> {
    let mut inputs: Vec<String> = plan
        .inputs()
        .into_iter()
        .flat_map(aggregate_inputs)
        .collect();
    if let LogicalPlan::Aggregate(aggregate) = plan {
        inputs.push(aggregate.input.display().to_string());
    }
    inputs
}

/// Fails unless the plan reads no keys added by `FilterAggregateByJoinKeys`.
fn assert_no_aggregate_filtered(plan: &LogicalPlan) {
    let text = plan.display_indent().to_string();
    assert!(!text.contains("__ember_join_keys"), "{text}");
}

async fn set_push_down_semi_joins(ctx: &SessionContext, on: bool) {
    ctx.sql(&format!("SET ember.push_down_semi_joins = {on}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_correlated_aggregate_groups_only_the_keys_its_join_can_match() {
    let ctx = context();
    let plan = optimized(&ctx, SMALL_LINES).await;
    let inputs = aggregate_inputs(&plan);
    let filtered: Vec<_> = inputs
        .iter()
        .filter(|input| {
            input.starts_with("LeftSemi Join: lineitem.l_partkey = __ember_join_keys.p_partkey")
        })
        .collect();
    assert_eq!(
        filtered.len(),
        1,
        "the subquery's aggregate, and only it, should read lines of brand X parts:\n{}",
        plan.display_indent()
    );
    assert_eq!(answer(&ctx, SMALL_LINES).await, SMALL_LINES_ANSWER);

    set_push_down_semi_joins(&ctx, false).await;
    let plan = optimized(&ctx, SMALL_LINES).await;
    assert_no_aggregate_filtered(&plan);
    assert_eq!(answer(&ctx, SMALL_LINES).await, SMALL_LINES_ANSWER);
}

#[tokio::test]
async fn an_aggregate_joined_with_a_whole_table_is_left_alone() {
    // Every part may match: filtering the lines by them saves nothing.
    let ctx = context();
    let sql = "
        SELECT p_partkey, total
        FROM part, (SELECT l_partkey, sum(l_quantity) AS total FROM lineitem GROUP BY l_partkey)
        WHERE p_partkey = l_partkey
        ORDER BY p_partkey";
    let plan = optimized(&ctx, sql).await;
    assert_no_aggregate_filtered(&plan);
    assert_eq!(
        answer(&ctx, sql).await,
        "\
+-----------+-------+
| p_partkey | total |
+-----------+-------+
| 1         | 6     |
| 2         | 10    |
| 3         | 2     |
+-----------+-------+"
    );
}

#[tokio::test]
async fn an_aggregate_an_outer_join_keeps_whole_is_left_alone() {
    // A left join keeps every group, matched or not.
    let ctx = context();
    let sql = "
        SELECT l_partkey, total, p_brand
        FROM (SELECT l_partkey, sum(l_quantity) AS total FROM lineitem GROUP BY l_partkey)
        LEFT JOIN (SELECT * FROM part WHERE p_brand = 'X') ON p_partkey = l_partkey
        ORDER BY l_partkey";
    let plan = optimized(&ctx, sql).await;
    assert_no_aggregate_filtered(&plan);
    assert_eq!(
        answer(&ctx, sql).await,
        "\
+-----------+-------+---------+
| l_partkey | total | p_brand |
+-----------+-------+---------+
| 1         | 6     | X       |
| 2         | 10    |         |
| 3         | 2     | X       |
+-----------+-------+---------+"
    );
}

/// TPC-H Q20's shape: suppliers with a line of a brand Y part whose
/// quantity is over half of that part's and supplier's total. The
/// correlated total is joined by a semi join whose other side is itself
/// semi-joined with the brand's parts: the total is taken over the lines of
/// those parts only. Brand Y is part 2, whose lines (both supplier 2's)
/// have 4 and 6 of a total of 10: only the line of 6 is over half.
#[tokio::test]
async fn an_aggregate_a_semi_join_reads_groups_only_the_keys_of_the_filtered_table_behind_it() {
    let ctx = context();
    let sql = "
        SELECT s_suppkey FROM supplier
        WHERE s_suppkey IN (
            SELECT l_suppkey FROM lineitem li
            WHERE li.l_partkey IN (SELECT p_partkey FROM part WHERE p_brand = 'Y')
                AND li.l_quantity > (
                    SELECT 0.5 * sum(l2.l_quantity) FROM lineitem l2
                    WHERE l2.l_partkey = li.l_partkey AND l2.l_suppkey = li.l_suppkey))
        ORDER BY s_suppkey";
    let want = "\
+-----------+
| s_suppkey |
+-----------+
| 2         |
+-----------+";
    let plan = optimized(&ctx, sql).await;
    let filtered = aggregate_inputs(&plan)
        .into_iter()
        .filter(|input| input.contains("= __ember_join_keys.p_partkey"))
        .count();
    assert_eq!(
        filtered,
        1,
        "the correlated total should read the lines of brand Y parts only:\n{}",
        plan.display_indent()
    );
    assert_eq!(answer(&ctx, sql).await, want);

    set_push_down_semi_joins(&ctx, false).await;
    let plan = optimized(&ctx, sql).await;
    assert_no_aggregate_filtered(&plan);
    assert_eq!(answer(&ctx, sql).await, want);
}
